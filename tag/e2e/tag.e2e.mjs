// The tag end to end, in Debian's chromium, against the real server: a
// bingo review site on its own origin (e2e/site.mjs) with the install
// snippet in <head> and Income Access (Gala Partners) installed on its
// property. Checks the final hrefs, the events the tag sends and what the
// server stores of them (through the API), the clicks (plain, middle,
// keyboard, target=_blank), a lost click beacon, the visitor across pages
// and subdomains, the command queue, and a page whose tracking server is
// slow or down. No page may log a console error or throw.
//
//   npm run e2e            (in tag/; see e2e/README.md)

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { after, before, test } from 'node:test';

import { Server, asVisitor, clickPrefix, launchBrowser, serverBinary, sleep, until } from './harness.mjs';
import { GO_GALA_TARGET, LATE, LINKS, startSite } from './site.mjs';

const CID = '([A-Za-z0-9_-]{28})';
const esc = (s) => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
/** What the browser makes of an href in the HTML source. */
const decoded = (src) => src.replace(/&amp;/g, '&');
/** The click id in `href` when it is `want` with its {cid} filled, else null. */
const cidIn = (want, href) => new RegExp('^' + esc(want).replace(esc('{cid}'), CID) + '$').exec(href)?.[1] ?? null;

let server, site, browser, property, snippet, siteUrl, collectUrl, tagUrl;

before(async () => {
  const bin = await serverBinary();
  [server, site, browser] = await Promise.all([Server.start(bin), startSite(() => snippet), launchBrowser()]);
  siteUrl = `http://localhost:${site.port}`;
  collectUrl = `${server.base}/collect`;
  // On-site conversions are the property's opt-in (docs/COLLECTOR.md): this
  // site's own Lead is meant to convert.
  const [st, p] = await server.api('POST', '/properties', {
    name: 'Bingo reviews',
    domains: ['localhost', 'site.localtest'],
    settings: { onsite: { enabled: true, events: ['Lead'] } },
  });
  assert.equal(st, 201, JSON.stringify(p));
  ({ id: property, snippet, tag_url: tagUrl } = p);
  assert.equal(tagUrl, `${server.base}/t/${property}.js`);
  const [st2, i] = await server.api('POST', `/properties/${property}/integrations`, {
    catalog: 'galapartners',
    credentials: { security_key: '0123456789abcdef0123456789abcdef' },
    settings: { api_url: 'http://127.0.0.1:9/api/affreporting.asp' },
  });
  assert.equal(st2, 201, JSON.stringify(i));
  // The served tag now carries the Income Access group.
  const tag = await (await fetch(tagUrl)).text();
  assert.match(tag, /"key":"incomeaccess"/);
});

after(async () => {
  await browser?.close();
  await server?.stop();
  site?.server.close();
});

test('the served tag: configured, cacheable, at most 3 KB gzipped; an unknown property gets a JS comment', async () => {
  const r = await fetch(tagUrl);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-type'), /javascript/);
  assert.match(r.headers.get('cache-control'), /max-age=\d+/);
  const etag = r.headers.get('etag');
  assert.ok(etag);
  const body = await r.text();
  assert.ok(!body.includes('__CLICKTRAIL_CONFIG__'));
  assert.ok(body.includes(`"collect":"${collectUrl}"`), 'the collector URL');
  const gz = gzipSync(body, { level: 9 }).length;
  console.log(`# served tag with Gala Partners: ${body.length} bytes, ${gz} bytes gzipped`);
  assert.ok(gz <= 3072, `${gz} bytes gzipped`);
  assert.equal((await fetch(tagUrl, { headers: { 'if-none-match': etag } })).status, 304);
  const unknown = await fetch(`${server.base}/t/${property.replace(/.$/, (c) => (c == 'a' ? 'b' : 'a'))}.js`);
  assert.equal(unknown.status, 404);
  assert.match(await unknown.text(), /^\/\*.*\*\/\s*$/s);
});

/** The landing URL of a visit from a Facebook ad. */
const landing = () =>
  `${siteUrl}/?utm_source=facebook&utm_medium=paid_social&utm_campaign=spring_bingo&fbclid=IwAR0e2eTestClickId_abc`;

/** Waits for AutoTag to finish on the landing page (AutoScan and the late link included); returns id -> href. */
const landingHrefs = (page, prefix) =>
  until(
    'AutoTag to tag every link of the landing page',
    async () => {
      const h = await page.$$eval('#links a, #late', (as) => Object.fromEntries(as.map((a) => [a.id, a.getAttribute('href')])));
      return h['go-gala'] != '/go/gala' && h.late?.includes(prefix) ? h : null;
    },
    15000,
    50,
  );

test('AutoTag: affiliate links get the click id, everything else stays as it is', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'autotag', async (v) => {
    const page = await v.newPage();
    await page.goto(landing());
    const pv = await v.waitSent('PageView', page);
    const prefix = clickPrefix(pv.event_id);
    const hrefs = await landingHrefs(page, prefix);

    // Each link as it must be: the click id filled or added, everything
    // else (parameters, their order, the fragment, the form of the href)
    // intact; the others untouched.
    const ids = {};
    for (const [id, [src, want]] of Object.entries(LINKS)) {
      if (want == null) {
        assert.equal(hrefs[id], decoded(src), `${id} must be left alone`);
        continue;
      }
      const cid = cidIn(want, hrefs[id]);
      assert.ok(cid, `${id}: ${hrefs[id]} is not ${want}`);
      assert.ok(cid.startsWith(prefix), `${id}: the click id ${cid} is not of this pageview (${prefix})`);
      ids[id] = cid;
    }
    assert.equal(new Set(Object.values(ids)).size, Object.keys(ids).length, 'one click id per link');
    assert.ok(cidIn(LATE[1], hrefs.late)?.startsWith(prefix), `the link added after load: ${hrefs.late}`);

    // Forms: a GET form gets a hidden field, a POST form the subid in its
    // action, a form of no group nothing.
    const forms = await until('the forms to be tagged', () =>
      page.evaluate(() => {
        const c = document.querySelector('#form-get input[name=c]');
        return (
          c && {
            hidden: [c.type, c.value],
            post: document.getElementById('form-post').getAttribute('action'),
            search: [document.getElementById('form-search').getAttribute('action'), document.querySelectorAll('#form-search input').length],
          }
        );
      }),
    );
    assert.equal(forms.hidden[0], 'hidden');
    assert.ok(forms.hidden[1].startsWith(prefix) && forms.hidden[1].length == 28, forms.hidden[1]);
    assert.ok(cidIn('https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_577c_&c={cid}', forms.post), forms.post);
    assert.deepEqual(forms.search, ['/search', 1]);

    // AutoScan: the server followed the redirect plugin (HEAD, not a visit).
    const scans = site.requests.filter((r) => r.path.startsWith('/go/'));
    assert.deepEqual(scans.map((r) => `${r.method} ${r.path}`).sort(), ['HEAD /go/gala', 'HEAD /go/newsletter']);

    // Running AutoTag again (any DOM change schedules a pass) changes nothing.
    await page.evaluate(() => document.body.appendChild(document.createElement('p')));
    await sleep(400);
    const again = await page.$$eval('#links a, #late', (as) => Object.fromEntries(as.map((a) => [a.id, a.getAttribute('href')])));
    assert.deepEqual(again, hrefs);

    // A link that appears and is clicked before the next pass is tagged by the click itself.
    const instant = await page.evaluate(() => {
      const a = document.createElement('a');
      a.href = 'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_599c_&c=';
      a.textContent = 'Instant offer';
      document.body.appendChild(a);
      a.addEventListener('click', (e) => e.preventDefault());
      a.click();
      return a.getAttribute('href');
    });
    const instantId = cidIn('https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_599c_&c={cid}', instant);
    assert.ok(instantId?.startsWith(prefix), instant);
    const oc = await until('the OutboundClick of the instant link', () => v.sent('OutboundClick', page).find((e) => e.click_id == instantId));
    assert.equal(oc.link.url, instant);

    // The PageView as sent, and as the server keeps it: a click id that was
    // never clicked resolves through its pageview to the visit's session.
    const [ctv] = await v.cookie('_ctv');
    const [cts] = await v.cookie('_cts');
    assert.equal(pv.url, landing());
    assert.equal(pv.title, 'Best UK bingo bonuses');
    assert.equal(pv.visitor_id, ctv.value);
    assert.equal(pv.session_hint, cts.value.split('.')[0]);
    assert.equal(pv.cookies.fbp, 'fb.1.1732400000000.1122334455');
    assert.ok(ctv.expires - Date.now() / 1000 > 364 * 86400, 'the visitor cookie lasts a year');
    const resolved = await until('the pageview to be stored', () => server.click(property, ids['ia-empty']));
    assert.equal(resolved.click.origin, 'pageview');
    assert.equal(resolved.click.pageview_id, pv.event_id);
    assert.equal(resolved.click.visitor_id, ctv.value);
    assert.equal(resolved.click.page_url, landing());
    const ts = resolved.traffic_source;
    assert.equal(ts.source, 'facebook');
    assert.equal(ts.medium, 'paid_social');
    assert.equal(ts.campaign, 'spring_bingo');
    assert.equal(ts.landing_url, landing());
    assert.equal(ts.fbp, 'fb.1.1732400000000.1122334455');
    assert.equal(ts.is_bot, false);
    assert.ok(JSON.stringify(ts.click_ids).includes('IwAR0e2eTestClickId_abc'), JSON.stringify(ts.click_ids));
    // The ids of --CLICK-ID-- links resolve the same way.
    assert.equal((await server.click(property, ids.token)).click.pageview_id, pv.event_id);

    // Submitting the GET form carries the click id to the network, once.
    await page.click('#form-get-submit');
    const sent = new URL(await until('the form to reach the network', () => v.landed.find((u) => u.includes('a_1234b_576c_'))));
    assert.deepEqual(sent.searchParams.getAll('c'), [forms.hidden[1]]);
    assert.equal(sent.searchParams.get('btag'), 'a_1234b_576c_');
    assert.equal(sent.searchParams.get('nickname'), 'jane');
  });
});

test('the command queue: identify and track called before the tag loads reach the server, a validated Lead', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'queue', async (v) => {
    const page = await v.newPage();
    await page.goto(landing());
    const pv = await v.waitSent('PageView', page);
    const lead = await v.waitSent('Lead', page);
    assert.equal(lead.value, 5);
    assert.equal(lead.currency, 'EUR');
    assert.deepEqual(lead.props, { form: 'newsletter' });
    assert.equal(lead.pageview_id, pv.event_id);
    // identify came first: the Lead carries the hash, never the address.
    assert.equal(lead.user?.em, createHash('sha256').update('jane.doe@example.com').digest('hex'));
    assert.ok(!v.events.some((e) => /jane\.doe/i.test(JSON.stringify(e.event).replace(lead.user.em, ''))), 'the clear email was sent');
    const entry = await until(
      'the Lead in the conversion log',
      async () => {
        const [st, log] = await server.api('GET', `/properties/${property}/conversions?limit=100`);
        assert.equal(st, 200, JSON.stringify(log));
        return log.conversions.find((c) => c.event_id == lead.event_id);
      },
      10000,
      200,
    );
    assert.equal(entry.status, 'validated', JSON.stringify(entry));
    assert.equal(entry.event_name, 'Lead');
    assert.equal(entry.value, 5);
    assert.equal(entry.currency, 'EUR');
    assert.equal(entry.attribution.visitor_id, lead.visitor_id);
    assert.equal(entry.attribution.source, 'facebook');
  });
});

test('OutboundClick: click, middle click, keyboard and target=_blank are recorded; right click is not', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'clicks', async (v) => {
    const page = await v.newPage();
    await page.goto(landing());
    const pv = await v.waitSent('PageView', page);
    const hrefs = await landingHrefs(page, clickPrefix(pv.event_id));
    const idOf = (id) => cidIn(LINKS[id][1], hrefs[id]);
    const clicked = (id) => until(`the OutboundClick of #${id}`, () => v.sent('OutboundClick', page).find((e) => e.click_id == idOf(id)));

    // target=_blank, twice: one click id, so one event for the server.
    for (let n = 0; n < 2; n++) {
      const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#ia-blank')]);
      await popup.waitForLoadState();
      assert.equal(popup.url(), hrefs['ia-blank']);
    }
    // Middle click: a new tab (its history says where it went: see Visitor).
    const [tab] = await Promise.all([v.context.waitForEvent('page'), page.click('#ia-middle', { button: 'middle' })]);
    await tab.waitForLoadState();
    const cdp = await v.context.newCDPSession(tab);
    const history = await cdp.send('Page.getNavigationHistory');
    assert.deepEqual(history.entries.map((e) => e.url), [hrefs['ia-middle']]);
    await tab.close();
    // Keyboard: Enter on the focused link.
    await page.focus('#ia-key');
    const [popup2] = await Promise.all([page.waitForEvent('popup'), page.keyboard.press('Enter')]);
    await popup2.waitForLoadState();
    assert.equal(popup2.url(), hrefs['ia-key']);
    // A right click opens a menu, not the link.
    await page.click('#ia-empty', { button: 'right' });

    for (const id of ['ia-blank', 'ia-middle', 'ia-key']) {
      const e = await clicked(id);
      assert.equal(e.event_id, e.click_id);
      assert.equal(e.pageview_id, pv.event_id);
      assert.equal(e.url, landing());
      assert.deepEqual(e.link, { url: hrefs[id], tracking_group: 'incomeaccess', text: LINKS[id][2] });
      const stored = await until(`the click of #${id} on the server`, async () => (await server.click(property, e.click_id))?.click.origin == 'tag' && server.click(property, e.click_id));
      assert.equal(stored.click.link_url, hrefs[id]);
      assert.equal(stored.click.link_group, 'incomeaccess');
      assert.equal(stored.click.link_text, LINKS[id][2]);
      assert.equal(stored.click.pageview_id, pv.event_id);
      assert.equal(stored.click.page_url, landing());
      assert.equal(stored.click.visitor_id, pv.visitor_id);
      assert.equal(stored.traffic_source.source, 'facebook');
    }
    assert.equal(v.sent('OutboundClick', page).filter((e) => e.click_id == idOf('ia-blank')).length, 2);
    assert.ok(!v.sent('OutboundClick', page).some((e) => e.click_id == idOf('ia-empty')), 'a right click was counted');

    // A plain click on the AutoScanned redirect link: the redirect plugin
    // forwards the click id to the network.
    const goId = idOf('go-gala');
    await page.click('#go-gala');
    const arrived = await until('the redirect to reach the network', () => v.landed.find((u) => u.includes('a_1234b_567c_')));
    assert.equal(arrived, `${GO_GALA_TARGET}&c=${goId}`);
    const e = await until('the OutboundClick of #go-gala', () => v.sent('OutboundClick').find((x) => x.click_id == goId));
    assert.deepEqual(e.link, { url: `${siteUrl}/go/gala?c=${goId}`, tracking_group: 'incomeaccess', text: 'Visit Gala Bingo' });
    const stored = await until('the /go/gala click on the server', async () => (await server.click(property, goId))?.click.origin == 'tag');
    assert.ok(stored);
  });
});

test('a lost OutboundClick beacon: the click id still resolves through its pageview', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'lost-beacon', async (v) => {
    const page = await v.newPage();
    // The click's beacon is blocked (an ad blocker, a tab closed at once).
    const blocked = [];
    await page.route(collectUrl, (route) => {
      if (!(route.request().postData() || '').includes('"OutboundClick"')) return route.continue();
      blocked.push(JSON.parse(route.request().postData()));
      return route.abort('blockedbyclient');
    });
    v.allowed.push((m, text) => text.includes(collectUrl));
    await page.goto(`${siteUrl}/about`);
    const pv = await v.waitSent('PageView', page);
    const href = await until('#offer to be tagged', () => page.$eval('#offer', (a) => a.getAttribute('href').match(/&c=(.+)$/)?.[1]));
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#offer')]);
    await popup.waitForLoadState();
    await until('the OutboundClick to be blocked', () => blocked.length == 1);
    assert.equal(blocked[0].click_id, href);
    const r = await until('the click id to resolve', () => server.click(property, href));
    await sleep(300);
    const again = await server.click(property, href);
    assert.equal(again.click.origin, 'pageview', 'the OutboundClick reached the server after all');
    assert.equal(r.click.pageview_id, pv.event_id);
    assert.equal(r.click.visitor_id, pv.visitor_id);
    assert.equal(r.click.page_url, `${siteUrl}/about`);
    assert.ok(r.session, 'the session of the click');
  });
});

test('one visitor across two pages, a single-page app navigation and the site pixel', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'two-pages', async (v) => {
    const page = await v.newPage();
    await page.goto(landing());
    const pv1 = await v.waitSent('PageView', page);
    const landingHrefsNow = await landingHrefs(page, clickPrefix(pv1.event_id));
    const [ctv1] = await v.cookie('_ctv');
    const [cts1] = await v.cookie('_cts');

    await Promise.all([page.waitForURL(`${siteUrl}/reviews/gala-bingo`), page.click('#page2')]);
    const pv2 = await v.waitSent('PageView', page, 2);
    const [ctv2] = await v.cookie('_ctv');
    const [cts2] = await v.cookie('_cts');
    assert.equal(ctv2.value, ctv1.value, 'the visitor cookie changed');
    assert.equal(cts2.value, cts1.value, 'the session changed');
    assert.equal(pv2.visitor_id, pv1.visitor_id);
    assert.equal(pv2.session_hint, pv1.session_hint);
    assert.equal(pv2.referrer, landing());
    assert.notEqual(pv2.event_id, pv1.event_id);

    // A click on the second page: the pixel fires with the click id as its
    // event id, and the server puts the click in the landing's session.
    const join = await until('#r-join to be tagged', () => page.$eval('#r-join', (a) => a.getAttribute('href').match(/&c=(.+)$/)?.[1]));
    assert.ok(join.startsWith(clickPrefix(pv2.event_id)));
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#r-join')]);
    await popup.waitForLoadState();
    const link = `https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1234b_580c_&c=${join}`;
    const calls = await until('the pixel to fire', async () => {
      const c = await page.evaluate(() => window.fbqCalls);
      return c.length && c;
    });
    assert.deepEqual(calls, [['trackCustom', 'OutboundClick', { tracking_group: 'incomeaccess', link_url: link }, { eventID: join }]]);
    const second = await until('the click on the server', async () => (await server.click(property, join))?.click.origin == 'tag' && server.click(property, join));
    const first = await server.click(property, cidIn(LINKS['ia-empty'][1], landingHrefsNow['ia-empty']));
    assert.equal(second.click.visitor_id, ctv1.value);
    assert.equal(second.click.session_id, first.click.session_id, 'the second page is in the landing session');
    assert.equal(second.traffic_source.source, 'facebook');

    // A router's navigation: a PageView of the new URL and title, the
    // previous URL as referrer, fresh click ids.
    await page.click('#spa-next');
    const pv3 = await v.waitSent('PageView', page, 3);
    assert.equal(pv3.url, `${siteUrl}/reviews/gala-casino`);
    assert.equal(pv3.referrer, `${siteUrl}/reviews/gala-bingo`);
    assert.equal(pv3.title, 'Gala Casino review');
    assert.equal(pv3.visitor_id, pv1.visitor_id);
    const fresh = await until('fresh click ids', () =>
      page.$eval('#r-join', (a) => a.getAttribute('href').match(/&c=(.+)$/)?.[1]).then((c) => c != join && c),
    );
    assert.ok(fresh.startsWith(clickPrefix(pv3.event_id)), fresh);
    assert.equal(await page.$eval('#r-go', (a) => a.getAttribute('href')).then((h) => h.startsWith('/go/gala?c=' + clickPrefix(pv3.event_id))), true);
  });
});

test('the visitor cookie lives on the registrable domain: www. and blog. share it', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'subdomains', async (v) => {
    const www = await v.newPage();
    await www.goto(`http://www.site.localtest:${site.port}/about`);
    const pv1 = await v.waitSent('PageView', www);
    const blog = await v.newPage();
    await blog.goto(`http://blog.site.localtest:${site.port}/newsletter`);
    const pv2 = await v.waitSent('PageView', blog);
    const cookies = await v.cookie('_ctv');
    assert.deepEqual(
      cookies.map((c) => [c.domain, c.value]),
      [['.site.localtest', pv1.visitor_id]],
    );
    assert.equal(pv2.visitor_id, pv1.visitor_id);
    assert.equal(pv2.session_hint, pv1.session_hint);
    assert.deepEqual(await v.cookie('_ctd'), [], 'the domain probe cookie is left behind');
    // The events were taken (202) by the collector: Visitor.close checks it.
    await until('the collector to answer', () => v.events.every((e) => e.status));
  });
});

test('a slow tracking server never holds the page up', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'slow-server', async (v) => {
    const page = await v.newPage();
    await page.route(tagUrl, async (route) => {
      await sleep(2000);
      return route.continue();
    });
    const t0 = Date.now();
    await page.goto(landing(), { waitUntil: 'domcontentloaded' });
    assert.ok(Date.now() - t0 < 1500, `DOMContentLoaded took ${Date.now() - t0} ms`);
    assert.ok(await page.isVisible('#ia-empty'));
    assert.equal(await page.$eval('#ia-empty', (a) => a.getAttribute('href')), decoded(LINKS['ia-empty'][0]));
    assert.equal(await page.evaluate(() => window.clicktrail.q.length), 2, 'the queued commands');
    const pv = await v.waitSent('PageView', page, 1, 8000);
    await landingHrefs(page, clickPrefix(pv.event_id));
    await v.waitSent('Lead', page);
  });
});

test('with the tracking server down, pages work and throw nothing', { timeout: 60000 }, async () => {
  await asVisitor(browser, collectUrl, 'server-down', async (v) => {
    // Requests to the stopped server fail; the browser says so in the
    // console. Those are the only errors allowed.
    v.allowed.push((m, text) => text.includes(server.base));
    // A page that had its tag when the server went away.
    const page = await v.newPage();
    await page.goto(`${siteUrl}/about`);
    await v.waitSent('PageView', page);
    const href = await until('#offer to be tagged', () => page.$eval('#offer', (a) => a.getAttribute('href').match(/&c=.+$/) && a.getAttribute('href')));
    await server.stop();
    const [popup] = await Promise.all([page.waitForEvent('popup'), page.click('#offer')]);
    await popup.waitForLoadState();
    assert.equal(popup.url(), href);
    await page.evaluate(() => window.clicktrail('track', 'Purchase', { value: 10, currency: 'EUR' }));
    await v.waitSent('Purchase', page);
    await Promise.all([page.waitForURL(/a_1234b_591c_/), page.click('#offer-self')]);

    // A page loaded while the server is down: no tag, nothing tagged, the
    // queue in place, the links work.
    const down = await v.newPage();
    await down.goto(landing());
    await sleep(500);
    assert.equal(await down.evaluate(() => typeof window.clicktrail == 'function' && window.clicktrail.q.length), 2);
    assert.equal(await down.$eval('#ia-empty', (a) => a.getAttribute('href')), decoded(LINKS['ia-empty'][0]));
    await down.evaluate(() => window.clicktrail('track', 'Lead', { value: 1, currency: 'EUR' }));
    await Promise.all([down.waitForURL(decoded(LINKS['ia-empty'][0])), down.click('#ia-empty')]);
    assert.equal(await down.textContent('h1'), 'Welcome offer');
  });
});
