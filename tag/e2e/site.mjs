// The "affiliate site" of the end-to-end tests: a small bingo review site on
// its own origin with the install snippet in <head>, Income Access links in
// the forms they take on real sites (shared/reference/income-access.md),
// a redirect plugin (/go/...) that forwards its query string, cloaked and
// hand-tagged links, links that must stay untouched, forms, and links added
// after load. Every page's links are described in LINKS so the tests can
// check each final href against what it must be ("{cid}" stands for the
// link's click id).

import http from 'node:http';

/** Where the redirect plugin sends /go/gala (no `c`: the plugin forwards ours). */
export const GO_GALA_TARGET = 'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_567c_&affid=1234&siteid=1234&adid=567';

/**
 * The landing page's links: id -> [href as the HTML source writes it, the
 * href the tag must leave (null: untouched), link text].
 */
export const LINKS = {
  // The forms seen on public affiliate sites, `&` escaped as `&amp;` in the
  // source as most CMSs write it (the browser decodes it).
  'ia-empty': [
    'https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_31512b_18926c_&amp;affid=25020&amp;siteid=31512&amp;adid=18926&amp;c=',
    'https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_31512b_18926c_&affid=25020&siteid=31512&adid=18926&c={cid}',
    'Pinnacle: bet now',
  ],
  'ia-missing': [
    'https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_15755b_56c_&affid=11359&siteid=15755&adid=56',
    'https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_15755b_56c_&affid=11359&siteid=15755&adid=56&c={cid}',
    'FanDuel',
  ],
  'ia-deeplink': [
    'https://wlsuperbet.adsrv.eacdn.com/C.ashx?btag=a_46644b_432c_&amp;affid=873&amp;siteid=46644&amp;adid=432&amp;c=&amp;asclurl=https://superbet.bet.br/registro?bonus=X',
    'https://wlsuperbet.adsrv.eacdn.com/C.ashx?btag=a_46644b_432c_&affid=873&siteid=46644&adid=432&c={cid}&asclurl=https://superbet.bet.br/registro?bonus=X',
    'Superbet',
  ],
  // No `c` and a deep link last: the subid goes before the deep link.
  'ia-deeplink-noc': [
    'https://wlsuperbet.adsrv.eacdn.com/C.ashx?btag=a_46644b_433c_&amp;affid=873&amp;asclurl=https://superbet.bet.br/cassino?promo=Y',
    'https://wlsuperbet.adsrv.eacdn.com/C.ashx?btag=a_46644b_433c_&affid=873&c={cid}&asclurl=https://superbet.bet.br/cassino?promo=Y',
    'Superbet casino',
  ],
  'ia-fragment': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_568c_&amp;c=#join',
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_568c_&c={cid}#join',
    'Gala Bingo',
  ],
  'ia-fragment-noc': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_569c_#terms',
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_569c_&c={cid}#terms',
    'Gala Bingo terms',
  ],
  // Escaped twice by a CMS: the href itself holds `&amp;`, repaired.
  'ia-double-escaped': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_570c_&amp;amp;affid=1234&amp;amp;c=',
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_570c_&affid=1234&c={cid}',
    'Gala Casino',
  ],
  // A stale value copied from a dashboard is replaced (README, AutoTag).
  'ia-stale': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_571c_&amp;c=homepage_banner',
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_571c_&c={cid}',
    'Gala Spins',
  ],
  'ia-protocol-relative': [
    '//wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_572c_&amp;c=',
    '//wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_572c_&c={cid}',
    'Gala Poker',
  ],
  'ia-blank': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_573c_&amp;affid=1234&amp;c=',
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_573c_&affid=1234&c={cid}',
    'Claim 50 free spins',
  ],
  'ia-middle': [
    'https://wlcoral.adsrv.eacdn.com/C.ashx?btag=a_88b_9c_&amp;c=',
    'https://wlcoral.adsrv.eacdn.com/C.ashx?btag=a_88b_9c_&c={cid}',
    'Coral',
  ],
  'ia-key': [
    'https://wlladbrokes.adsrv.eacdn.com/C.ashx?btag=a_77b_8c_&amp;c=',
    'https://wlladbrokes.adsrv.eacdn.com/C.ashx?btag=a_77b_8c_&c={cid}',
    'Ladbrokes',
  ],
  // Manual tagging: a cloaked link with the group as a rel token, an
  // untracked brand URL with data-tracking-group (an alias, any case).
  'rel-cloaked': ['/offers/gala-bingo', '/offers/gala-bingo?c={cid}', 'Gala Bingo (review offer)'],
  'data-group': [
    'https://www.galabingo.com/welcome?promo=BINGO50#top',
    'https://www.galabingo.com/welcome?promo=BINGO50&c={cid}#top',
    'Gala welcome offer',
  ],
  'data-group-alias': ['/partners/gala-casino', '/partners/gala-casino?c={cid}', 'Gala Casino partner page'],
  // The token, in any parameter, and in a path.
  token: [
    'https://partners.example.net/click?aff=77&amp;sub1=--CLICK-ID--&amp;campaign=spring',
    'https://partners.example.net/click?aff=77&sub1={cid}&campaign=spring',
    'Partner offer',
  ],
  'token-path': [
    'https://track.example.net/c/--click-id--/offer?x=1',
    'https://track.example.net/c/{cid}/offer?x=1',
    'Another partner',
  ],
  // Income Access on a program's own media domain: known by its shape
  // (/redirect.aspx with pid and bid), whatever the host.
  'ia-media-domain': [
    'https://media.highaffiliates.com/redirect.aspx?pid=15225&amp;lpid=245&amp;bid=1825',
    'https://media.highaffiliates.com/redirect.aspx?pid=15225&lpid=245&bid=1825&c={cid}',
    'High Affiliates',
  ],
  // AutoScan: the redirect plugin leads to Income Access; the other /go/
  // link leads to a page of the site itself.
  'go-gala': ['/go/gala', '/go/gala?c={cid}', 'Visit Gala Bingo'],
  'go-newsletter': ['/go/newsletter', null, 'Newsletter'],
  // Never touched.
  'plain-external': ['https://www.example.org/news?c=&amp;page=2', null, 'News'],
  'ia-other-path': ['https://wlpinnacle.adsrv.eacdn.com/terms.html?c=', null, 'Pinnacle terms'],
  'ia-opted-out': [
    'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_574c_&amp;c=my_own_id',
    null,
    'Gala (opted out)',
  ],
  mailto: ['mailto:bonus@example.org?subject=c=', null, 'Mail us'],
  tel: ['tel:+441234567890', null, 'Call us'],
  javascript: ['javascript:void(0)', null, 'Do nothing'],
  fragment: ['#top', null, 'Top'],
  relative: ['/about', null, 'About'],
  page2: ['/reviews/gala-bingo', null, 'Gala Bingo review'],
};

/** Extra attributes of some links. */
const ATTRS = {
  'ia-blank': ' target="_blank" rel="noopener"',
  'ia-key': ' target="_blank"',
  'rel-cloaked': ' rel="nofollow sponsored incomeaccess"',
  'data-group': ' data-tracking-group="incomeaccess"',
  'data-group-alias': ' data-tracking-group="GalaPartners"',
  'ia-opted-out': ' data-tracking-group="none"',
};

/** The link added by the page's own script after load. */
export const LATE = [
  'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_575c_&amp;c=',
  'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_575c_&c={cid}',
];

const page = ({ title, head = '', body, snippet }) => `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${title}</title>
<link rel="icon" href="data:,">
${head}
${snippet}
</head>
<body>
${body}
</body>
</html>
`;

const landing = (snippet) =>
  page({
    title: 'Best UK bingo bonuses',
    snippet,
    // The Meta pixel's browser cookie, as its own snippet would have set it.
    head: '<script>document.cookie = "_fbp=fb.1.1732400000000.1122334455; path=/";</script>',
    body: `
<h1 id="top">Best UK bingo bonuses</h1>
<script>
  // Called right after the snippet, long before the tag can have arrived:
  // the queue must replay them, in order.
  clicktrail('identify', {email: ' Jane.Doe@Example.com '});
  clicktrail('track', 'Lead', {value: 5, currency: 'EUR', form: 'newsletter'});
</script>
<ul id="links">
${Object.entries(LINKS)
  .map(([id, [href, , text]]) => `<li><a id="${id}" href="${href}"${ATTRS[id] || ''}>${text}</a></li>`)
  .join('\n')}
</ul>
<form id="form-get" method="get" action="https://wlgala.adsrv.eacdn.com/C.ashx">
  <input type="hidden" name="btag" value="a_1234b_576c_">
  <input type="text" name="nickname" value="jane">
  <button id="form-get-submit">Join Gala Bingo</button>
</form>
<form id="form-post" method="post" action="https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_577c_&amp;c=">
  <button>Join Gala Casino</button>
</form>
<form id="form-search" method="get" action="/search"><input name="q"></form>
<div id="late-box"></div>
<script>
  // A widget that renders its offers after load.
  setTimeout(function () {
    document.getElementById('late-box').innerHTML =
      '<a id="late" href="${LATE[0]}">Late offer</a>';
  }, 400);
</script>
`,
  });

const review = (snippet) =>
  page({
    title: 'Gala Bingo review',
    snippet,
    // A stand-in for Meta's pixel: records its calls.
    head: '<script>window.fbqCalls = []; window.fbq = function () { fbqCalls.push(Array.prototype.slice.call(arguments)); };</script>',
    body: `
<h1>Gala Bingo review</h1>
<p><a id="r-join" target="_blank" href="https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_580c_&amp;c=">Join Gala Bingo</a></p>
<p><a id="r-go" href="/go/gala">Visit Gala Bingo</a></p>
<p><button id="spa-next" type="button">Next review</button></p>
<p><a id="home" href="/">Home</a></p>
<script>
  // A single-page app's router: the next review without a page load.
  document.getElementById('spa-next').addEventListener('click', function () {
    history.pushState({}, '', '/reviews/gala-casino');
    document.title = 'Gala Casino review';
    document.querySelector('h1').textContent = 'Gala Casino review';
  });
</script>
`,
  });

const simple = (snippet, title) =>
  page({
    title,
    snippet,
    body: `<h1>${title}</h1>
<p><a id="offer" target="_blank" href="https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_590c_&amp;c=">Gala Bingo</a></p>
<p><a id="offer-self" href="https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_591c_&amp;c=">Gala Bingo here</a></p>
<p><a id="home" href="/">Home</a></p>`,
  });

/**
 * Starts the site on 127.0.0.1 (the browser reaches it as `localhost` and
 * as `*.site.localtest`). `snippet()` gives the snippet to embed (the
 * property is created after the site is up). Returns the server and the
 * log of requests it saw.
 */
export async function startSite(snippet) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://site.invalid');
    requests.push({ method: req.method, path: url.pathname, query: url.search, ua: req.headers['user-agent'] || '' });
    const html = (status, text) => {
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(req.method == 'HEAD' ? undefined : text);
    };
    // The redirect plugin: 302 to the target with the incoming query string
    // appended (README, AutoScan: plugins must forward parameters).
    const redirect = (target) => {
      const q = url.search.slice(1);
      res.writeHead(302, { location: q ? target + (target.includes('?') ? '&' : '?') + q : target, 'cache-control': 'no-store' });
      res.end();
    };
    switch (url.pathname) {
      case '/':
        return html(200, landing(snippet()));
      case '/reviews/gala-bingo':
      case '/reviews/gala-casino':
        return html(200, review(snippet()));
      case '/about':
      case '/newsletter':
      case '/search':
        return html(200, simple(snippet(), url.pathname.slice(1)));
      case '/go/gala':
      case '/offers/gala-bingo':
      case '/partners/gala-casino':
        return redirect(GO_GALA_TARGET);
      case '/go/newsletter':
        return redirect('/newsletter');
      default:
        return html(404, '<!doctype html><title>Not found</title><h1>Not found</h1>');
    }
  });
  await new Promise((ok, fail) => server.once('error', fail).listen(0, '127.0.0.1', ok));
  return { server, port: server.address().port, requests };
}
