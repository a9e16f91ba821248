// The built tag in a jsdom page: PageView, ids and cookies, AutoTag, manual
// tagging, AutoScan, OutboundClick, SPA navigation, the command API, consent
// and pixels. (Real-browser end-to-end tests run against the server.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXT_URL, config, page, wait } from './support/harness.ts';

const PIN = 'https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_31512b_18926c_&affid=25020&siteid=31512&adid=18926&c=';
const SUP =
  'https://wlsuperbet.adsrv.eacdn.com/C.ashx?btag=a_46644b_432c_&affid=873&siteid=46644&adid=432&c=&asclurl=https://superbet.bet.br/registro?bonus=X';
const CLICK_ID = /^[A-Za-z0-9_-]{28}$/;
const UUID7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const body = (links: string) =>
  `<!doctype html><html><head><title>Best casinos</title></head><body>${links}</body></html>`;
/** Objects from the page's realm as plain JSON values (deepEqual compares prototypes). */
const plain = (x: unknown) => JSON.parse(JSON.stringify(x));
const href = (p: ReturnType<typeof page>, id: string) => p.doc.getElementById(id)!.getAttribute('href')!;
const subid = (h: string) => new URL(h, 'https://x.test/').searchParams.get('c');
const click = (p: ReturnType<typeof page>, id: string, init: MouseEventInit = {}, type = 'click') => {
  const ev = new p.win.MouseEvent(type, { bubbles: true, cancelable: true, ...init });
  p.doc.getElementById(id)!.dispatchEvent(ev);
  return ev;
};

test('PageView on load with the visit data; visitor and session cookies on the registrable domain', async () => {
  const p = page();
  p.doc.cookie = '_fbp=fb.1.1700000000000.123456789; path=/';
  await p.loadTag();
  const [pv] = p.events();
  assert.equal(p.sent[0].url, 'https://track.example.net/collect');
  assert.equal(p.sent[0].body.property_id, 'k3j5q8x2m9w4');
  assert.equal(pv.name, 'PageView');
  assert.match(pv.event_id, UUID7);
  assert.equal(pv.url, 'https://blog.example.co.uk/reviews/best-casinos?utm_source=facebook&fbclid=IwAR0abc');
  assert.equal(pv.referrer, 'https://l.facebook.com/');
  assert.equal(pv.title, 'Best casinos');
  assert.match(pv.visitor_id, /^[A-Za-z0-9_-]{20}$/);
  assert.match(pv.session_hint, /^[A-Za-z0-9_-]{16}$/);
  assert.deepEqual(pv.cookies, { fbp: 'fb.1.1700000000000.123456789' });
  assert.equal(typeof pv.ts, 'number');
  assert.equal(pv.pageview_id, pv.event_id);
  const cookies = p.dom.cookieJar.getCookiesSync('https://www.example.co.uk/');
  const ctv = cookies.find((c) => c.key == '_ctv')!;
  assert.equal(ctv.value, pv.visitor_id);
  assert.equal(ctv.domain, 'example.co.uk', 'set on the registrable domain, visible to www.');
  assert.equal(ctv.sameSite, 'lax');
  assert.ok(ctv.secure);
  assert.ok(cookies.find((c) => c.key == '_cts')!.value.startsWith(pv.session_hint + '.'));
  assert.ok(!cookies.some((c) => c.key == '_ctd'), 'the probe cookie is removed');
  assert.equal(p.win.localStorage.getItem('_ctv'), JSON.stringify(pv.visitor_id));
  assert.deepEqual(p.errors, []);
});

test('the visitor id survives into the next page; the session continues without new campaign values', async () => {
  const a = page();
  await a.loadTag();
  const first = a.events()[0];
  const b = page({ url: 'https://www.example.co.uk/other' });
  for (const c of a.dom.cookieJar.getCookiesSync('https://www.example.co.uk/')) b.dom.cookieJar.setCookieSync(c, 'https://www.example.co.uk/');
  await b.loadTag();
  const second = b.events()[0];
  assert.equal(second.visitor_id, first.visitor_id);
  assert.equal(second.session_hint, first.session_hint);
  // New ad click id on a landing: new session, same visitor.
  const c = page({ url: 'https://www.example.co.uk/?gclid=Cj0KCQ' });
  for (const k of b.dom.cookieJar.getCookiesSync('https://www.example.co.uk/')) c.dom.cookieJar.setCookieSync(k, 'https://www.example.co.uk/');
  await c.loadTag();
  assert.equal(c.events()[0].visitor_id, first.visitor_id);
  assert.notEqual(c.events()[0].session_hint, first.session_hint);
});

test('the visitor id falls back to localStorage when the cookie is gone', async () => {
  const a = page();
  await a.loadTag();
  const b = page();
  assert.equal(a.win.localStorage.getItem('_ctv'), JSON.stringify(a.events()[0].visitor_id));
  b.win.localStorage.setItem('_ctv', JSON.stringify(a.events()[0].visitor_id));
  await b.loadTag();
  assert.equal(b.events()[0].visitor_id, a.events()[0].visitor_id);
});

test('host-only cookies on a single-label host', async () => {
  const p = page({ url: 'http://localhost:8080/page' });
  await p.loadTag();
  const ctv = p.dom.cookieJar.getCookiesSync('http://localhost:8080/').find((c) => c.key == '_ctv')!;
  assert.ok(ctv.hostOnly);
  assert.ok(!ctv.secure, 'no Secure on http');
});

test('AutoTag: Income Access links get the click id; everything else is untouched', async () => {
  const p = page({
    html: body(`
      <a id=pin href="${PIN}">Pinnacle</a>
      <a id=sup href="${SUP}">Superbet</a>
      <a id=bf href="https://ads.betfair.com/redirect.aspx?pid=1260644&bid=8663#x">Betfair</a>
      <a id=amp href="https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_15755b_56c_&amp;amp;affid=11359&amp;amp;c=">FanDuel</a>
      <a id=other href="https://en.wikipedia.org/wiki/Affiliate?c=">Wiki</a>
      <a id=js href="javascript:void(0)" data-tracking-group="incomeaccess">JS</a>
      <a id=mail href="mailto:a@example.com?subject=--CLICK-ID--">Mail</a>
      <a id=bad href="https://wl pinnacle.adsrv.eacdn.com/C.ashx?btag=a&c=">Bad</a>
      <a id=nohref>No href</a>`),
  });
  await p.loadTag();
  const id = subid(href(p, 'pin'))!;
  assert.match(id, CLICK_ID);
  assert.equal(href(p, 'pin'), PIN + id);
  assert.equal(id.slice(0, 22), Buffer.from(p.events()[0].event_id.replace(/-/g, ''), 'hex').toString('base64url'), 'click id names its pageview');
  assert.equal(href(p, 'sup'), SUP.replace('&c=&', `&c=${subid(href(p, 'sup'))}&`));
  assert.notEqual(subid(href(p, 'sup')), id, 'one click id per link');
  assert.match(href(p, 'bf'), /^https:\/\/ads\.betfair\.com\/redirect\.aspx\?pid=1260644&bid=8663&c=[\w-]{28}#x$/);
  assert.match(href(p, 'amp'), /^https:\/\/wlfanduelus\.adsrv\.eacdn\.com\/C\.ashx\?btag=a_15755b_56c_&affid=11359&c=[\w-]{28}$/);
  assert.equal(href(p, 'other'), 'https://en.wikipedia.org/wiki/Affiliate?c=');
  assert.equal(href(p, 'js'), 'javascript:void(0)');
  assert.equal(href(p, 'mail'), 'mailto:a@example.com?subject=--CLICK-ID--');
  assert.equal(href(p, 'bad'), 'https://wl pinnacle.adsrv.eacdn.com/C.ashx?btag=a&c=');
  // A second pass (any DOM change) changes nothing.
  const before = [...p.doc.querySelectorAll('a')].map((a) => a.getAttribute('href'));
  p.doc.body.append(p.doc.createElement('div'));
  await wait(250);
  assert.deepEqual([...p.doc.querySelectorAll('a')].map((a) => a.getAttribute('href')), before);
  assert.deepEqual(p.errors, []);
});

test('manual tagging: data-tracking-group, rel tokens, --CLICK-ID--, opt-out', async () => {
  const p = page({
    html: body(`
      <a id=dtg href="https://example.foo/goto/galapartners" data-tracking-group="IncomeAccess">Gala</a>
      <a id=rel href="/out/gala" rel="nofollow sponsored galapartners">Gala</a>
      <a id=tok href="https://partner.example.net/t?sub=--CLICK-ID--&x=1">Token</a>
      <a id=both href="${PIN.replace('&c=', '&c=--CLICK-ID--')}">Both</a>
      <a id=none href="${PIN}" data-tracking-group="none">Opted out</a>
      <a id=plain href="/about" rel="nofollow">About</a>`),
  });
  await p.loadTag();
  assert.match(href(p, 'dtg'), /^https:\/\/example\.foo\/goto\/galapartners\?c=[\w-]{28}$/);
  assert.match(href(p, 'rel'), /^\/out\/gala\?c=[\w-]{28}$/);
  assert.match(href(p, 'tok'), /^https:\/\/partner\.example\.net\/t\?sub=[\w-]{28}&x=1$/);
  assert.match(href(p, 'both'), /&c=[\w-]{28}$/);
  assert.equal(href(p, 'none'), PIN);
  assert.equal(href(p, 'plain'), '/about');
});

test('links added later are tagged (MutationObserver), and so are changed hrefs', async () => {
  const p = page({ html: body('<div id=list></div>') });
  await p.loadTag();
  const a = p.doc.createElement('a');
  a.id = 'late';
  a.href = PIN;
  p.doc.getElementById('list')!.append(a);
  await wait(250);
  const id = subid(href(p, 'late'))!;
  assert.match(id, CLICK_ID);
  // The site rewrites the href: tagged again, with the same click id.
  a.setAttribute('href', 'https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_');
  await wait(250);
  assert.equal(href(p, 'late'), `https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c=${id}`);
});

test('OutboundClick on click, middle click, modifier click and target=_blank; never prevents navigation', async () => {
  const p = page({
    html: body(`<a id=pin href="${PIN}"> Pinnacle
      <b id=inner>sports</b>  </a><a id=blank target=_blank href="${SUP}">Superbet</a><a id=plain href="/x">x</a>`),
  });
  await p.loadTag();
  const pvId = p.events()[0].event_id;
  const ev = click(p, 'inner');
  assert.equal(ev.defaultPrevented, false);
  const [, oc] = p.events();
  const id = subid(href(p, 'pin'));
  assert.equal(oc.name, 'OutboundClick');
  assert.equal(oc.click_id, id);
  assert.equal(oc.event_id, id);
  assert.equal(oc.pageview_id, pvId);
  assert.deepEqual(oc.link, { url: PIN + id, tracking_group: 'incomeaccess', text: 'Pinnacle sports' });
  click(p, 'pin', { button: 1 }, 'auxclick');
  click(p, 'pin', { ctrlKey: true });
  click(p, 'pin', { metaKey: true });
  click(p, 'blank');
  click(p, 'pin', { button: 2 }, 'auxclick'); // context menu: not a navigation
  click(p, 'plain');
  const clicks = p.events().filter((e) => e.name == 'OutboundClick');
  assert.equal(clicks.length, 5);
  assert.equal(clicks[4].click_id, subid(href(p, 'blank')));
  assert.ok(p.sent.every((s) => s.via == 'beacon'));
});

test('an SVG link is tracked with its resolved URL', async () => {
  const p = page({ html: body(`<svg><a id=svg href="${PIN}"><text id=t>Banner</text></a></svg>`) });
  await p.loadTag();
  click(p, 't');
  const oc = p.events().find((e) => e.name == 'OutboundClick');
  assert.equal(oc?.link.url, PIN + oc?.click_id);
  assert.equal(oc?.link.text, 'Banner');
});

test('a link added just before its click is tagged by the click itself', async () => {
  const p = page();
  await p.loadTag();
  p.doc.body.insertAdjacentHTML('beforeend', `<a id=fresh href="${PIN}">x</a>`);
  click(p, 'fresh');
  const oc = p.events().find((e) => e.name == 'OutboundClick');
  assert.ok(oc);
  assert.equal(href(p, 'fresh'), PIN + oc.click_id);
});

const FORMS = `
      <form id=get action="https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_"><input name=q></form>
      <form id=post method=POST action="https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_"></form>
      <form id=site action="/search"></form>
      <form id=visible action="https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_"><input id=vis name=c value=mine></form>`;

test('forms (the extension): GET forms get a hidden subid field, POST forms the action URL', async () => {
  const p = page({ html: body(FORMS) });
  await p.loadTag();
  await wait(20);
  assert.deepEqual(p.imports, [EXT_URL], 'forms load the extension');
  const get = p.doc.getElementById('get') as HTMLFormElement;
  const hidden = get.querySelector('input[type=hidden][name=c]') as HTMLInputElement;
  assert.match(hidden.value, CLICK_ID);
  assert.match(p.doc.getElementById('post')!.getAttribute('action')!, /&c=[\w-]{28}$/);
  assert.equal(p.doc.getElementById('site')!.getAttribute('action'), '/search');
  assert.equal(p.doc.querySelectorAll('#site input').length, 0);
  assert.equal((p.doc.getElementById('vis') as HTMLInputElement).value, 'mine', 'a visible field is the visitor\'s');
  // A form added later, and a new page view: tagged, then with a fresh id.
  p.doc.body.insertAdjacentHTML('beforeend', '<form id=late action="https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_9b_9c_"></form>');
  await wait(250);
  const late = () => (p.doc.querySelector('#late input[name=c]') as HTMLInputElement).value;
  assert.match(late(), CLICK_ID);
  const first = late();
  p.win.history.pushState({}, '', '/elsewhere');
  await wait(250);
  assert.match(late(), CLICK_ID);
  assert.notEqual(late(), first);
  assert.equal(p.doc.querySelectorAll('#late input').length, 1);
  assert.equal(p.doc.getElementById('late')!.getAttribute('action'), `https://wlfanduelus.adsrv.eacdn.com/C.ashx?btag=a_9b_9c_&c=${late()}`);
  assert.deepEqual(p.errors, []);
});

test('no extension without forms, pixels, AutoScan links or identify', async () => {
  const p = page({ html: body(`<a id=pin href="${PIN}">x</a><a href="/about">about</a>`) });
  await p.loadTag();
  click(p, 'pin');
  p.win.clicktrail('track', 'Lead', { value: 1 });
  await wait(250);
  assert.equal(p.events().length, 3);
  assert.deepEqual(p.imports, []);
});

test('the extension fails to load: links, events and clicks are whole; forms, pixels, hashes, AutoScan skipped', async () => {
  for (const mode of ['fail', 'hang'] as const) {
    const p = page({
      ext: mode,
      pixels: true,
      html: body(`<a id=pin href="${PIN}">x</a><a id=go href="/go/pinnacle">go</a>${FORMS}`),
      scan: () => 'incomeaccess',
    });
    await p.loadTag();
    p.win.clicktrail('identify', { email: 'a@b.test' });
    p.win.clicktrail('track', 'Lead', { value: 3, currency: 'EUR' });
    click(p, 'pin');
    // A hanging extension counts as failed after 5 seconds; commands wait
    // that long, events and clicks do not.
    await wait(mode == 'hang' ? 5200 : 50);
    const names = p.events().map((e) => e.name);
    assert.deepEqual(names, ['PageView', 'OutboundClick', 'Lead'], mode);
    const lead = p.events()[2];
    assert.equal(lead.user, undefined, 'no hashes');
    assert.equal(lead.value, 3);
    assert.match(href(p, 'pin'), /&c=[\w-]{28}$/);
    assert.equal(href(p, 'go'), '/go/pinnacle', 'no AutoScan');
    assert.equal(p.scans.length, 0);
    assert.equal(p.doc.querySelectorAll('#get input[type=hidden]').length, 0, 'no form tagging');
    assert.deepEqual(p.pixelCalls, []);
    assert.equal(p.imports.length, 1, 'asked once');
    assert.deepEqual(p.errors, [], mode);
  }
});

test('AutoScan: same-site redirect links are asked about in batches and tagged with the answer', async () => {
  const links = Array.from({ length: 25 }, (_, i) => `<a id=go${i} href="/go/offer-${i}">o</a>`).join('');
  const p = page({
    html: body(`${links}<a id=dup href="/go/offer-0#top">dup</a><a id=rec href="/Recommends/pinnacle?x=1">r</a>
      <a id=ext href="https://elsewhere.example/go/x">e</a><a id=blog href="/blog/go/x">b</a>`),
    scan: (u) => (/offer-(1|24)$|pinnacle/.test(u) ? 'incomeaccess' : undefined),
  });
  await p.loadTag();
  await wait(200);
  const asked = p.scans.flat();
  assert.deepEqual(p.scans.map((s) => s.length), [20, 6]);
  assert.equal(new Set(asked).size, asked.length, 'each link asked once');
  assert.ok(asked.includes('https://blog.example.co.uk/go/offer-0'));
  assert.ok(asked.includes('https://blog.example.co.uk/Recommends/pinnacle'));
  assert.ok(!asked.some((u) => u.includes('elsewhere') || u.includes('/blog/')));
  assert.match(href(p, 'go1'), /^\/go\/offer-1\?c=[\w-]{28}$/);
  assert.match(href(p, 'go24'), /^\/go\/offer-24\?c=[\w-]{28}$/);
  assert.match(href(p, 'rec'), /^\/Recommends\/pinnacle\?x=1&c=[\w-]{28}$/);
  assert.equal(href(p, 'go2'), '/go/offer-2');
  // Answers are cached for the page: new links to the same target are not asked again.
  p.doc.body.insertAdjacentHTML('beforeend', '<a id=again href="/go/offer-1">again</a>');
  await wait(300);
  assert.equal(p.scans.length, 2);
  assert.match(href(p, 'again'), /^\/go\/offer-1\?c=[\w-]{28}$/);
});

test('no AutoScan when the configuration turns it off', async () => {
  const p = page({ html: body('<a id=go href="/go/x">x</a>') });
  await p.loadTag(config({ scan: null }));
  await wait(150);
  assert.equal(p.scans.length, 0);
});

test('SPA navigation: a new PageView and fresh click ids', async () => {
  const p = page({ html: body(`<a id=pin href="${PIN}">x</a>`) });
  await p.loadTag();
  const first = p.events()[0];
  const oldId = subid(href(p, 'pin'))!;
  // (No DOM change: the history calls alone are noticed.)
  p.win.history.pushState({}, '', '/next?page=2');
  // The router sets the title a moment later.
  setTimeout(() => (p.doc.title = 'Next'), 20);
  p.win.history.replaceState({}, '', '/next?page=2'); // same URL: no PageView
  p.win.history.pushState({}, '', '/next?page=2#section'); // fragment only: none either
  assert.equal(p.events().length, 1, 'sent a moment later, not at once');
  await wait(200);
  const views = p.events().filter((e) => e.name == 'PageView');
  assert.equal(views.length, 2);
  assert.equal(views[1].url, 'https://blog.example.co.uk/next?page=2#section');
  assert.equal(views[1].referrer, 'https://blog.example.co.uk/reviews/best-casinos?utm_source=facebook&fbclid=IwAR0abc');
  assert.equal(views[1].title, 'Next');
  assert.equal(views[1].visitor_id, first.visitor_id);
  const newId = subid(href(p, 'pin'))!;
  assert.notEqual(newId, oldId);
  assert.equal(newId.slice(0, 22), Buffer.from(views[1].event_id.replace(/-/g, ''), 'hex').toString('base64url'));
  assert.equal(href(p, 'pin'), PIN + newId);
  p.win.history.back(); // to the fragment-less entry: the same page
  await wait(250);
  assert.equal(p.events().filter((e) => e.name == 'PageView').length, 2);
  p.win.history.back(); // to the landing page
  await wait(250);
  const last = p.events().filter((e) => e.name == 'PageView')[2];
  assert.equal(last?.url, 'https://blog.example.co.uk/reviews/best-casinos?utm_source=facebook&fbclid=IwAR0abc', 'popstate');
  // A router's redirect right after a navigation is one page view, of where it ends.
  p.win.history.pushState({}, '', '/old-path');
  p.win.history.replaceState({}, '', '/new-path');
  await wait(250);
  const after = p.events().filter((e) => e.name == 'PageView').slice(3);
  assert.deepEqual(
    after.map((e) => e.url),
    ['https://blog.example.co.uk/new-path'],
  );
  assert.deepEqual(p.errors, []);
});

test('SPA navigation with the DOM changing: links of the new view get the new pageview', async () => {
  const p = page({ html: body(`<main id=view><a id=a1 href="${PIN}">x</a></main>`) });
  await p.loadTag();
  p.win.history.pushState({}, '', '/second');
  p.doc.getElementById('view')!.innerHTML = `<a id=a2 href="${SUP}">y</a>`;
  await wait(250);
  const views = p.events().filter((e) => e.name == 'PageView');
  assert.equal(views.length, 2);
  const id = subid(href(p, 'a2'))!;
  assert.equal(id.slice(0, 22), Buffer.from(views[1].event_id.replace(/-/g, ''), 'hex').toString('base64url'));
});

test('queued commands replay in order; track and identify', async () => {
  const p = page({ pixels: true });
  p.win.eval(`window.clicktrail = function(){ (clicktrail.q = clicktrail.q || []).push(arguments) };
    clicktrail('identify', {email: '  John.Doe@Example.COM ', phone: '+44 (0)20 7946-0958'});
    clicktrail('track', 'Lead', {value: 12.5, currency: 'EUR', form: 'signup'});
    clicktrail('track', 'bad name!');`);
  await p.loadTag();
  await wait(50);
  const [pv, lead] = p.events();
  assert.equal(pv.name, 'PageView');
  assert.equal(lead.name, 'Lead');
  assert.match(lead.event_id, UUID7);
  assert.equal(lead.pageview_id, pv.event_id);
  assert.equal(lead.value, 12.5);
  assert.equal(lead.currency, 'EUR');
  assert.deepEqual(lead.props, { form: 'signup' });
  const { createHash } = await import('node:crypto');
  const sha = (s: string) => createHash('sha256').update(s).digest('hex');
  assert.deepEqual(lead.user, { em: sha('john.doe@example.com'), ph: sha('442079460958') });
  // A name the collector refuses is its to refuse; no pixel fires for it.
  assert.equal(p.events()[2].name, 'bad name!');
  assert.equal(p.events().length, 3);
  assert.ok(!JSON.stringify(p.sent).includes('Example.COM'), 'clear values never leave');
  assert.deepEqual(p.imports, [EXT_URL], 'one import for pixels and identify');
  assert.equal(p.win.localStorage.getItem('_ctu'), JSON.stringify(lead.user));
  assert.deepEqual(plain(p.pixelCalls), [
    ['fbq', 'track', 'Lead', { form: 'signup', value: 12.5, currency: 'EUR' }, { eventID: lead.event_id }],
    ['gtag', 'event', 'Lead', { form: 'signup', value: 12.5, currency: 'EUR', event_id: lead.event_id }],
    ['ttq', 'Lead', { form: 'signup', value: 12.5, currency: 'EUR' }, { event_id: lead.event_id }],
  ]);
  // Direct calls after load.
  p.win.clicktrail('track', 'BonusClaimed');
  await wait(10);
  assert.equal(p.events()[3].name, 'BonusClaimed');
  assert.equal(p.pixelCalls[3][1], 'trackCustom');
  assert.equal(p.events()[3].user.em, lead.user.em);
  // The hashes are kept for the next page.
  const q = page();
  q.win.localStorage.setItem('_ctu', p.win.localStorage.getItem('_ctu'));
  await q.loadTag();
  assert.deepEqual(q.events()[0].user, lead.user);
});

test('pixels on OutboundClick use the click id as event id; config can switch a pixel off', async () => {
  const p = page({ pixels: true, html: body(`<a id=pin href="${PIN}">x</a>`) });
  p.win.gtag = () => {
    throw new Error('broken gtag');
  };
  await p.loadTag(config({ pixels: { meta: true, google: true, tiktok: false } }));
  // The PageView had the extension imported: here before the first click.
  assert.deepEqual(p.imports, [EXT_URL]);
  await wait(20);
  click(p, 'pin');
  await wait(0);
  const id = subid(href(p, 'pin'));
  assert.deepEqual(plain(p.pixelCalls), [
    ['fbq', 'trackCustom', 'OutboundClick', { tracking_group: 'incomeaccess', link_url: PIN + id }, { eventID: id }],
  ]);
  assert.equal(p.events()[1].name, 'OutboundClick', 'a broken pixel does not stop the event');
  assert.deepEqual(p.errors, []);
});

test('events sent before the extension arrived fire their pixels when it does, once each', async () => {
  const p = page({ html: body(`<a id=pin target=_blank href="${PIN}">x</a>`) });
  await p.loadTag();
  // The pixel snippet runs after the tag: the first event that sees it asks for the extension.
  p.win.fbq = (...a: any[]) => p.pixelCalls.push(['fbq', ...a]);
  click(p, 'pin');
  p.win.clicktrail('track', 'Purchase', { value: 9, currency: 'USD' });
  assert.deepEqual(p.pixelCalls, []);
  await wait(50);
  const [, oc, purchase] = p.events();
  assert.deepEqual(
    plain(p.pixelCalls).map((c: any[]) => [c[1], c[2], c[4]]),
    [
      ['trackCustom', 'OutboundClick', { eventID: oc.event_id }],
      ['track', 'Purchase', { eventID: purchase.event_id }],
    ],
  );
  await wait(250);
  assert.equal(p.pixelCalls.length, 2);
});

test('consent required: nothing stored or sent before consent, everything after', async () => {
  const p = page({ html: body(`<a id=pin href="${PIN}">x</a>`) });
  await p.loadTag(config({ consent_required: true }));
  p.win.clicktrail('track', 'Lead');
  click(p, 'pin');
  await wait(20);
  assert.equal(p.sent.length, 0);
  assert.equal(href(p, 'pin'), PIN, 'no click ids before consent');
  assert.equal(p.doc.cookie, '');
  assert.equal(p.win.localStorage.length, 0);
  p.win.clicktrail('consent', true);
  assert.equal(p.events()[0].name, 'PageView');
  assert.equal(p.events()[0].consent, true, 'the grant is sent');
  assert.match(href(p, 'pin'), /&c=[\w-]{28}$/);
  assert.match(p.doc.cookie, /_ctv=/);
  // The choice is remembered on the next page.
  const q = page();
  for (const c of p.dom.cookieJar.getCookiesSync('https://blog.example.co.uk/')) q.dom.cookieJar.setCookieSync(c, 'https://blog.example.co.uk/');
  await q.loadTag(config({ consent_required: true }));
  assert.equal(q.events()[0]?.name, 'PageView');
  assert.equal(q.events()[0]?.consent, true, 'the remembered grant is sent too');
});

test('no consent choice: events carry no consent field', async () => {
  const p = page();
  await p.loadTag();
  p.win.clicktrail('track', 'Lead');
  await wait(20);
  assert.deepEqual(p.events().map((e) => [e.name, 'consent' in e]), [['PageView', false], ['Lead', false]]);
});

test('consent withdrawn: cookies and stored hashes removed, nothing sent, remembered', async () => {
  const p = page({ html: body(`<a id=pin href="${PIN}">x</a>`) });
  await p.loadTag();
  p.win.clicktrail('identify', { email: 'a@b.test' });
  await wait(20);
  p.win.clicktrail('consent', false);
  const n = p.sent.length;
  click(p, 'pin');
  p.win.clicktrail('track', 'Lead');
  await wait(20);
  assert.equal(p.sent.length, n);
  assert.doesNotMatch(p.doc.cookie, /_ctv|_cts/);
  assert.match(p.doc.cookie, /_ctc=0/);
  assert.equal(p.win.localStorage.getItem('_ctv'), null);
  assert.equal(p.win.localStorage.getItem('_ctu'), null);
  const q = page();
  for (const c of p.dom.cookieJar.getCookiesSync('https://blog.example.co.uk/')) q.dom.cookieJar.setCookieSync(c, 'https://blog.example.co.uk/');
  await q.loadTag();
  assert.equal(q.sent.length, 0, 'a refusal holds on the next page');
});

test('consent withdrawn while identify waits for the extension: nothing kept, nothing sent', async () => {
  const p = page();
  await p.loadTag();
  p.win.clicktrail('identify', { email: 'a@b.test' });
  p.win.clicktrail('track', 'Lead');
  p.win.clicktrail('consent', false);
  await wait(50);
  assert.equal(p.win.localStorage.getItem('_ctu'), null);
  assert.deepEqual(p.events().map((e) => e.name), ['PageView']);
});

test('server down or beacons unavailable: the page never sees an error', async () => {
  const down = page({ down: true, html: body(`<a id=pin href="${PIN}">x</a><a id=go href="/go/x">x</a>`) });
  await down.loadTag();
  click(down, 'pin');
  await wait(150);
  assert.deepEqual(down.errors, []);
  assert.match(href(down, 'pin'), /&c=[\w-]{28}$/, 'links are still tagged');
  const noBeacon = page({ beacon: 'missing' });
  await noBeacon.loadTag();
  assert.equal(noBeacon.sent[0].via, 'fetch');
  const full = page({ beacon: false });
  await full.loadTag();
  assert.equal(full.sent[0].via, 'fetch');
});

test('loaded twice, the tag runs once', async () => {
  const p = page();
  await p.loadTag();
  await p.loadTag();
  assert.equal(p.events().length, 1);
});

test('a broken configuration or page API never throws into the page', async () => {
  const p = page({ html: body(`<a id=pin href="${PIN}">x</a>`) });
  await p.loadTag({ ...config(), groups: null as never });
  click(p, 'pin');
  p.win.clicktrail('track', 'Lead', null);
  p.win.clicktrail('identify', null);
  p.win.clicktrail();
  await wait(20);
  assert.deepEqual(p.errors, []);
});
