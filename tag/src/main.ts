// The clicktrail tag: visitor and session ids, PageView (load and SPA
// navigation), AutoTag / manual tagging / AutoScan, OutboundClick, the
// clicktrail() command API, consent and browser pixels. Every entry point
// (load, commands, DOM, history and timer callbacks) is guarded, so nothing
// here throws into the page, blocks it or delays a navigation. tag/README.md
// documents the behaviour. Written for size (it ships in every page, under
// a gzip budget checked by test/size.test.ts): terse on purpose.

import { b64, clickId, rnd, sha256, uuid7, uuidText } from './ids';
import { byName, linkGroup, rewrite } from './links';
import type { Config, Group } from './types';

declare const __CLICKTRAIL_CONFIG__: Config;

type Obj = Record<string, any>;
/** What AutoTag did to one element: click id, pageview id, group. */
type Tagged = [id: string, pageview: string, group?: Group];

const w = window as any;
const d = document;
const loc = location;
const YEAR = 31536000;
const noop = () => {};
/** `f` made harmless: whatever it throws stays here. */
const guard =
  <A extends any[]>(f: (...a: A) => unknown) =>
  (...a: A) => {
    try {
      f(...a);
    } catch {
      // the page comes first
    }
  };
const noHash = (u: string) => u.split('#')[0];
/** Landing parameters whose new values start a new session: utm_* and the ad click ids. */
const CAMPAIGN = /[?&](utm_\w+|[gw]braid|li_fat_id|sccid|epik|rdt_cid|\w*cl(ic)?k?id)=[^&]*/gi;
/** Meta's standard events go through fbq('track'), others through fbq('trackCustom'). */
const META_STANDARD =
  /^(AddPaymentInfo|AddToCart|AddToWishlist|CompleteRegistration|Contact|CustomizeProduct|Donate|FindLocation|InitiateCheckout|Lead|Purchase|Schedule|Search|StartTrial|SubmitApplication|Subscribe|ViewContent)$/;

let C: Config;
let consent: boolean;
let started = 0;
let dom = '';
let vid = '';
let sid = '';
let campaign: string;
let user: Obj | undefined;
let pv: Uint8Array;
let pvId: string;
let pageUrl: string;
let referrer = d.referrer;
let chain: Promise<unknown> = Promise.resolve();
let timer: any;
const tagged = new WeakMap<Element, Tagged>();
/** Elements found untracked, with the href they had: skipped until it changes (or AutoScan answers). */
let untracked = new WeakMap<Element, string>();
/** AutoScan answers for this page: link -> group key, null (none), 0 (asked). */
const scanned = new Map<string, string | null | 0>();
const scanQueue: string[] = [];

const getCookie = (name: string): string | undefined => (d.cookie.match('(^|; )' + name + '=([^;]*)') || [])[2];

/** Sets (maxAge > 0) or deletes (maxAge 0) a first-party cookie on `domain` ('' = host-only). */
const setCookie = (name: string, value: string | number, maxAge: number, domain = dom) =>
  (d.cookie = `${name}=${value};path=/;max-age=${maxAge}${domain && ';domain=' + domain};SameSite=Lax${
    loc.protocol == 'https:' ? ';Secure' : ''
  }`);

/** localStorage get (no value), set, or remove (value ''); storage may be blocked. */
const store = (key: string, value?: string): any => {
  try {
    const s: Obj = localStorage;
    return value == null ? s[key] : value ? (s[key] = value) : delete s[key];
  } catch {
    // blocked or full
  }
};

const touchSession = () => setCookie('_cts', sid + '.' + campaign, C.session_timeout_min * 60);

/** Visitor and session ids, from first-party storage (renewed) or new. */
const identifyVisitor = () => {
  // The registrable domain (example.co.uk for blog.example.co.uk) is the
  // shortest suffix of the host that takes a cookie: browsers refuse cookies
  // on public suffixes. None (host-only cookies) for single-label hosts.
  const labels = loc.hostname.split('.');
  for (let i = 1; ++i <= labels.length && !getCookie('_ctd'); ) setCookie('_ctd', 1, 9, (dom = labels.slice(-i).join('.')));
  if (getCookie('_ctd')) setCookie('_ctd', '', 0);
  else dom = '';
  vid = vid || getCookie('_ctv') || store('_ctv') || b64(rnd(15));
  setCookie('_ctv', vid, YEAR);
  store('_ctv', vid);
  // A session continues unless the landing URL carries campaign values that
  // differ from the ones it started with (kept as a hash in the cookie).
  let h = 5381;
  for (const c of (loc.search.match(CAMPAIGN) || []).join()) h = ((h * 33) ^ c.charCodeAt(0)) >>> 0;
  const [oldSid, oldCampaign] = (getCookie('_cts') || '').split('.');
  campaign = h != 5381 ? h.toString(36) : oldCampaign || '';
  sid = oldSid && campaign == oldCampaign ? oldSid : b64(rnd(12));
  touchSession();
};

/** Sends one event (when allowed) and returns its id. */
const send = (name: string, extra: Obj): string => {
  const e = {
    event_id: uuidText(uuid7()),
    name,
    ts: Date.now(),
    visitor_id: vid,
    session_hint: sid,
    url: loc.href,
    pageview_id: pvId,
    user,
    ...extra,
  };
  const body = JSON.stringify({ property_id: C.property, events: [e] });
  if (consent && started) {
    touchSession();
    navigator.sendBeacon?.(C.collect, new Blob([body], { type: 'text/plain' })) ||
      fetch(C.collect, { method: 'POST', body, keepalive: true }).catch(noop);
  }
  return e.event_id;
};

/** Fires the page's own pixels with the event id the server uses too. */
const pixels = (name: string, id: string, params: Obj) => {
  const on = C.pixels;
  [
    on.meta != false && (() => w.fbq(META_STANDARD.test(name) ? 'track' : 'trackCustom', name, params, { eventID: id })),
    on.google != false && (() => w.gtag('event', name, { ...params, event_id: id })),
    on.tiktok != false && (() => w.ttq.track(name, params, { event_id: id })),
  ].map((f) => f && guard(f)());
};

/** Sends the current page's PageView, now or (returned function) a moment later. */
const pageview = (id = pvId, url = loc.href, ref = referrer) =>
  guard(() =>
    send('PageView', {
      event_id: id,
      pageview_id: id,
      url,
      referrer: ref,
      // Read when sent: a router sets the title after it navigates.
      title: d.title,
      cookies: { fbp: getCookie('_fbp'), fbc: getCookie('_fbc'), ttp: getCookie('_ttp') },
      screen: screen.width + 'x' + screen.height,
      lang: navigator.language,
    }),
  );

/** Asks the scan endpoint about queued same-site redirect links, 20 a request. */
const flushScan = guard(() => {
  while (scanQueue.length) {
    const batch = scanQueue.splice(0, 20);
    fetch(C.scan + '?' + batch.map((u) => 'u=' + encodeURIComponent(u)).join('&'))
      .then((r) => r.json())
      .then((j) => {
        // Unanswered and failed links stay "asked": not asked again on this page.
        j.results.map((r: Obj) => scanned.set(r.url, r.group));
        untracked = new WeakMap();
        tagAll();
      })
      .catch(noop);
  }
});

/**
 * The group AutoScan found for a same-site link under an AutoScan prefix
 * (asked by origin and path: redirect plugins ignore the query); queues the
 * question for a link not asked yet.
 */
const scanGroup = (u: URL) => {
  const key = u.origin + u.pathname;
  if (
    C.scan &&
    u.host == loc.host &&
    !scanned.has(key) &&
    C.autoscan_prefixes.some((p) => !u.pathname.toLowerCase().indexOf(p.toLowerCase()))
  ) {
    scanned.set(key, 0);
    scanQueue.push(key);
    setTimeout(flushScan, 50);
  }
  return byName(C.groups, scanned.get(key) || '');
};

/**
 * AutoTag for one link or form: sets its subid / token from its click id (one
 * per element per pageview) and returns what was done, or undefined when the
 * element is not tracked. Re-running on the same pageview changes nothing.
 */
const tagElement = (el: Element): Tagged | undefined => {
  const attr = el.tagName == 'FORM' ? 'action' : 'href';
  const raw = el.getAttribute(attr)!;
  const old = tagged.get(el) || ([] as never as Tagged);
  if (!consent || !started || raw == null || untracked.get(el) == raw) return;
  if (old[1] == pvId && raw.includes(old[0])) return old;
  // A click id of ours in the href stands for the token it replaced: a new
  // pageview puts a fresh id in its place.
  const m = linkGroup(
    C.groups,
    d.baseURI,
    old[0] ? raw.split(old[0]).join('--CLICK-ID--') : raw,
    (n) => el.getAttribute(n),
    scanGroup,
  );
  if (!m) {
    untracked.set(el, raw);
    return;
  }
  const g = m[1];
  const id = old[1] == pvId ? old[0] : clickId(pv);
  const h = rewrite(m[0], g?.param, id);
  if (h != raw) el.setAttribute(attr, h);
  if (attr < 'b' /* a form */ && g && (el as HTMLFormElement).method != 'post') {
    // A GET form replaces the action's query with its fields: the id goes
    // into a hidden field (never into a field the visitor fills).
    const input =
      ((el as HTMLFormElement).elements.namedItem(g.param) as HTMLInputElement) ||
      el.appendChild(Object.assign(d.createElement('input'), { type: 'hidden', name: g.param }));
    if (input.type == 'hidden') input.value = id;
  }
  const t: Tagged = [id, pvId, g];
  tagged.set(el, t);
  return t;
};

const tagAll = guard(() => {
  timer = 0;
  d.querySelectorAll('a[href],form[action]').forEach(tagElement);
});

const newPageview = () => {
  pv = uuid7();
  pvId = uuidText(pv);
  pageUrl = noHash(loc.href);
};

const onNavigate = guard(() => {
  if (noHash(loc.href) != pageUrl) {
    referrer = pageUrl;
    newPageview();
    tagAll();
    setTimeout(pageview(), 100);
  }
});

const begin = () => {
  identifyVisitor();
  if (!started++) {
    try {
      user = JSON.parse(store('_ctu')) || user;
    } catch {
      // not ours
    }
    pageview()();
    tagAll();
    new MutationObserver(() => (timer = timer || setTimeout(tagAll, 150))).observe(d.documentElement, {
      childList: true,
      subtree: true,
      attributes: true,
      attributeFilter: ['href', 'action'],
    });
  }
};

/** Runs `f` after earlier commands (identify hashes asynchronously). */
const later = (f: () => unknown) => (chain = chain.then(f).catch(noop));

const command = (name: string, a?: any, b?: Obj) => {
  if (name == 'consent') {
    consent = a === true;
    if (!consent) {
      setCookie('_ctv', '', 0);
      setCookie('_cts', '', 0);
      store('_ctv', '');
      store('_ctu', '');
    }
    if (consent) begin();
    // Remembered (on the registrable domain once known) for the next pages.
    setCookie('_ctc', +consent, YEAR);
  }
  if (consent && name == 'track' && /^[A-Za-z]\w{0,39}$/.test(a))
    later(() => {
      const { value, currency, ...props } = b || {};
      pixels(a, send(a, { value, currency, props }), { ...props, value, currency });
    });
  if (consent && name == 'identify')
    later(async () => {
      const em = String(a.email || '')
        .trim()
        .toLowerCase();
      // Digits only, with the country code: "+44 (0)20 7946-0958" -> 442079460958.
      const ph = String(a.phone || '')
        .replace(/\(0\)|\D/g, '')
        .replace(/^0+/, '');
      const u: Obj = { ...user };
      if (em) u.em = await sha256(em);
      if (ph) u.ph = await sha256(ph);
      store('_ctu', JSON.stringify((user = u)));
    });
};

guard(() => {
  if (w.clicktrail?.l) return;
  C = __CLICKTRAIL_CONFIG__;
  const queue: IArguments[] = w.clicktrail?.q || [];
  const api = (w.clicktrail = guard(command as (...a: any[]) => void));
  (api as any).l = 1;
  newPageview();
  const c = getCookie('_ctc');
  consent = c ? c > '0' : !C.consent_required;
  // OutboundClick on a primary click (mouse, ctrl/cmd/shift-click, Enter on a
  // focused link) or a middle click (auxclick); never stops or delays the
  // navigation. Its event_id is the click id: repeats of one link on one
  // pageview count once.
  const onClick = guard((e: MouseEvent) => {
    const a = (e.target as Element).closest?.('a[href]')!;
    const [id, , g] = (e.button == +(e.type != 'click') && a && tagElement(a)) || [];
    if (id) {
      // (Not a.href: an SVG link's is an object.)
      const url = new URL(a.getAttribute('href')!, d.baseURI).href;
      send('OutboundClick', {
        event_id: id,
        click_id: id,
        link: { url, tracking_group: g?.key, text: a.textContent!.replace(/\s+/g, ' ').trim().slice(0, 200) },
      });
      pixels('OutboundClick', id, { tracking_group: g?.key, link_url: url });
    }
  });
  d.addEventListener('click', onClick, true);
  d.addEventListener('auxclick', onClick, true);
  for (const m of ['pushState', 'replaceState']) {
    const orig = (history as any)[m];
    (history as any)[m] = function (this: History) {
      const r = orig.apply(this, arguments);
      onNavigate();
      return r;
    };
  }
  addEventListener('popstate', onNavigate);
  for (const args of queue) api(...args);
  if (consent) begin();
})();
