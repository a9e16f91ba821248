// The clicktrail tag: visitor and session ids, PageView (load and SPA
// navigation), AutoTag / manual tagging, OutboundClick, the clicktrail()
// command API and consent. What only some pages need (pixels, identify's
// hashing, AutoScan's questions, forms) is in the extension, src/ext.ts,
// imported on first use. Every entry point (load, commands, DOM, history,
// timer and promise callbacks) is guarded, so nothing here throws into the
// page, blocks it or delays a navigation. tag/README.md documents the behaviour. Written
// for size (it ships in every page, under a gzip budget checked by
// test/size.test.ts): terse on purpose.

import { b64, clickId, rnd, uuid7, uuidText } from './ids';
import { glob, linkGroup, rewrite } from './links';
import type { Config, Ext, Group, Obj, User } from './types';

declare const __CLICKTRAIL_CONFIG__: Config;
/** The property's configuration, as the server substituted it. */
const C = __CLICKTRAIL_CONFIG__;

/** What AutoTag did to one element: click id, pageview id, group, resolved href. */
type Tagged = [id: string, pageview: string, group: Group | undefined, url: string];

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
/** The page's URL without its fragment: what a navigation changes. */
const here = () => loc.href.split('#')[0];
/** Landing parameters whose new values start a new session: utm_* and the ad click ids. */
const CAMPAIGN = /[?&](utm_\w+|[gw]braid|li_fat_id|sccid|epik|rdt_cid|\w*cl(ic)?k?id)=[^&]*/gi;

let consent: boolean;
/** The visitor's own choice (the consent command, or _ctc from an earlier page); undefined without one. */
let chosen: boolean | undefined;
let started = 0;
let dom = '';
let vid = '';
let sid = '';
let campaign: string;
let user: User | undefined;
let pv: Uint8Array;
let pvId: string;
let pageUrl: string;
let referrer = d.referrer;
let chain: Promise<unknown> = Promise.resolve();
let timer: any;
/** The extension once loaded (undefined before, and for good when it failed). */
let X: Ext | undefined;
let extension: Promise<Ext | undefined>;
/** Bumped by retag: elements found untracked before are looked at again. */
let generation = 0;

const getCookie = (name: string): string | undefined => (d.cookie.match('(^|; )' + name + '=([^;]*)') || [])[2];

/** Sets (maxAge > 0) or deletes (maxAge 0) a first-party cookie on `domain` ('' = host-only). */
const setCookie = (name: string, value: string | number, maxAge: number, domain = dom) =>
  (d.cookie = `${name}=${value};path=/;max-age=${maxAge}${domain && ';domain=' + domain};SameSite=Lax${
    loc.protocol == 'https:' ? ';Secure' : ''
  }`);

/** localStorage, as JSON: get (no value), set, or remove (value ''). Undefined when blocked or not ours. */
const store = (key: string, value?: unknown): any => {
  try {
    const s: Obj = localStorage;
    return value == null ? JSON.parse(s[key]) : value ? (s[key] = JSON.stringify(value)) : delete s[key];
  } catch {
    // blocked, full, or not JSON
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
  let h = 0;
  for (const c of (loc.search.match(CAMPAIGN) || []).join()) h = (h * 31 + c.charCodeAt(0)) | 0;
  const [oldSid, oldCampaign] = (getCookie('_cts') || '.').split('.');
  campaign = h ? h.toString(36) : oldCampaign;
  sid = oldSid && campaign == oldCampaign ? oldSid : b64(rnd(12));
  touchSession();
};

/**
 * The extension (an ES module), imported on first use: resolves to it, or
 * to undefined when it failed or took more than 5 seconds (then for the rest
 * of the page). Once it is there, untracked links get another look
 * (AutoScan).
 */
const ext = () =>
  (extension ||= Promise.race([import(C.ext), new Promise<undefined>((done) => setTimeout(done, 5e3))])
    .then((x) => (X = x), noop)
    .finally(retag));

/** Runs `f` with the extension once it is there; never when it failed. Never rejects. */
const withExt = <T>(f: (x: Ext) => T) =>
  ext()
    .then((x) => x && f(x))
    .catch(noop) as Promise<Awaited<T> | void>;

/**
 * Sends one event (when allowed); has the page's own pixels (if it has any)
 * fire it with the same id.
 */
const send = (name: string, extra: Obj) => {
  const e = {
    property_id: C.property,
    event_id: uuidText(uuid7()),
    name,
    ts: Date.now(),
    visitor_id: vid,
    session_hint: sid,
    url: loc.href,
    pageview_id: pvId,
    user,
    // The visitor's own choice (true here: nothing is sent without consent);
    // without one the server follows the property's consent_required.
    consent: chosen,
    ...extra,
  };
  // One event is a whole request body; a string is sent as text/plain (no
  // CORS preflight).
  const body = JSON.stringify(e);
  // (With consent, begin ran: the ids are there.)
  if (consent) {
    touchSession();
    navigator.sendBeacon?.(C.collect, body) ||
      fetch(C.collect, { method: 'POST', body, keepalive: true }).catch(noop);
    // (For the PageView on load too, which so has the extension ready before
    // the first click: its pixel fires while the page is still there.)
    if (w.fbq || w.gtag || w.ttq) withExt((x) => x.p(C.pixels, e));
  }
};

/** Sends the current page's PageView. */
const pageview = () =>
  send('PageView', {
    event_id: pvId,
    referrer,
    title: d.title,
    cookies: { fbp: getCookie('_fbp'), fbc: getCookie('_fbc'), ttp: getCookie('_ttp') },
  });

/**
 * The group AutoScan found for a same-site link under an AutoScan prefix.
 * The extension asks and answers; the first such link imports it. (Falsy,
 * not only undefined, when there is none: linkGroup only tests it.)
 */
const scanGroup = (u: URL) =>
  (C.scan && u.host == loc.host && C.autoscan_prefixes.some((p) => glob(p + '*', u.pathname)) && (ext(), X?.s(u, C, retag))) as
    | Group
    | undefined;

/**
 * AutoTag for one link or form: sets its subid / token from its click id (one
 * per element per pageview) and returns what was done, or undefined when the
 * element is not tracked. Re-running on the same pageview changes nothing.
 */
const tagElement = (el: Element & { _ct?: Tagged; _cu?: string }, attr = 'href'): Tagged | undefined => {
  const raw = el.getAttribute(attr)!;
  const old = el._ct || ([] as never as Tagged);
  // (_cu: the generation and href of an element found untracked, skipped until either changes.)
  if (!consent || el._cu == generation + raw) return;
  // A click id of ours in the href stands for the token it replaced: a new
  // pageview puts a fresh id in its place.
  const m = linkGroup(
    C.groups,
    d.baseURI,
    raw.split(old[0]).join('--CLICK-ID--'),
    el,
    scanGroup,
  );
  if (!m) {
    el._cu = generation + raw;
    return;
  }
  const g = m[1];
  const id = old[1] == pvId ? old[0] : clickId(pv);
  const h = rewrite(m[0], g, id);
  if (h != raw) el.setAttribute(attr, h);
  // (Not el.href: an SVG link's is an object.)
  return (el._ct = [id, pvId, g, new URL(h, d.baseURI).href]);
};

/**
 * An AutoTag pass. It first notices a single-page app's navigation (the URL
 * changed beyond its fragment since the last pass): a new PageView, and
 * fresh click ids for every link. Passes run a moment after the DOM, the
 * history (pushState, replaceState, popstate) or AutoScan answers change
 * (soon), so a router has set the new page's title by then, and a redirect
 * right after a navigation is one page view.
 */
const tagAll = guard(() => {
  timer = 0;
  if (here() != pageUrl) {
    referrer = pageUrl;
    newPageview();
    pageview();
  }
  for (const a of d.querySelectorAll('a[href]')) tagElement(a);
  // Forms are the extension's (it tags them with tagElement).
  if (d.querySelector('form[action]')) withExt((x) => x.f(tagElement));
});

const soon = () => (timer ||= setTimeout(tagAll, 150));

/** Looks at every element again, the untracked ones included. */
const retag = () => {
  generation++;
  tagAll();
};

const newPageview = () => {
  pv = uuid7();
  pvId = uuidText(pv);
  pageUrl = here();
};

const begin = () => {
  identifyVisitor();
  if (!started++) {
    user = store('_ctu') || user;
    pageview();
    tagAll();
    new MutationObserver(soon).observe(d.documentElement, {
      childList: true,
      subtree: true,
      // (Implies attributes: true.)
      attributeFilter: ['href', 'action'],
    });
  }
};

/** Runs `f` after earlier commands (identify waits for the extension and hashes). */
const later = (f: () => unknown) => (chain = chain.then(f).catch(noop));

const command = (name: string, a?: any, b?: Obj) => {
  if (name == 'consent') {
    consent = chosen = a === true;
    if (!consent) for (const k of ['_ctv', '_cts', '_ctu']) setCookie(k, '', 0), store(k, '');
    if (consent) begin();
    // Remembered (on the registrable domain once known) for the next pages.
    setCookie('_ctc', +consent, YEAR);
  }
  // (The collector refuses names it does not take, and the extension fires
  // no pixel for them.)
  if (consent && name == 'track')
    later(() => {
      const { value, currency, ...props } = b || {};
      send(a, { value, currency, props });
    });
  if (consent && name == 'identify')
    later(() =>
      withExt((x) => x.h(a, user)).then((u) => {
        // (Not kept when consent was withdrawn meanwhile.)
        if (u && consent) store('_ctu', (user = u));
      }),
    );
};

guard(() => {
  const prev = w.clicktrail;
  if (prev?.l) return;
  const queue: IArguments[] = prev?.q || [];
  const api = (w.clicktrail = guard(command as (...a: any[]) => void));
  (api as any).l = 1;
  newPageview();
  // OutboundClick on a primary click (mouse, ctrl/cmd/shift-click, Enter on a
  // focused link) or a middle click (auxclick); never stops or delays the
  // navigation. Its event_id is the click id: repeats of one link on one
  // pageview count once.
  const onClick = guard((e: MouseEvent) => {
    // (A target that is no element throws here: nothing to do.)
    const a = (e.target as Element).closest('a[href]')!;
    const [id, , g, url] = (e.button == +(e.type != 'click') && a && tagElement(a)) || [];
    if (id) {
      const text = a.textContent!.replace(/\s+/g, ' ').trim().slice(0, 200);
      send('OutboundClick', { event_id: id, click_id: id, link: { url, tracking_group: g?.key, text } });
    }
  });
  d.addEventListener('click', onClick, true);
  d.addEventListener('auxclick', onClick, true);
  for (const m of ['pushState', 'replaceState']) {
    const orig = (history as any)[m];
    // (Both return nothing; one that throws navigated nowhere.)
    (history as any)[m] = (...a: unknown[]) => (orig.apply(history, a), soon());
  }
  addEventListener('popstate', soon);
  const c = getCookie('_ctc');
  consent = c ? (chosen = c > '0') : !C.consent_required;
  for (const args of queue) api(...args);
  if (consent) begin();
})();
