// The tag's extension: what only some pages need, kept out of the main tag
// (src/main.ts) so that stays small: the pixels, identify's hashing,
// AutoScan and forms. An ES module, built into dist/clicktrail-ext.min.js and
// served, the same for every property, as `GET /t/ext/{build hash}.js`; the
// main tag imports it on first use and passes in what each function needs.
// Importing it does nothing else. Its exports are the Ext interface of
// src/types.ts; tag/README.md, "Extension", has the protocol.

import { sha256 } from './ids';
import { byName } from './links';
import type { Ext, Obj } from './types';

const w = window as any;
/** Meta's standard events go through fbq('track'), others through fbq('trackCustom'). */
const META_STANDARD =
  /^(AddPaymentInfo|AddToCart|AddToWishlist|CompleteRegistration|Contact|CustomizeProduct|Donate|FindLocation|InitiateCheckout|Lead|Purchase|Schedule|Search|StartTrial|SubmitApplication|Subscribe|ViewContent)$/;

/** AutoScan answers for this page: link -> group key, null (none), 0 (asked). */
const scanned = new Map<string, string | null | 0>();
const scanQueue: string[] = [];

/** Asks the scan endpoint about the queued links, 20 a request, then has the page tagged again. */
const flushScan = (scan: string, retag: () => void) => {
  try {
    while (scanQueue.length) {
      const batch = scanQueue.splice(0, 20);
      fetch(scan + '?' + batch.map((u) => 'u=' + encodeURIComponent(u)).join('&'))
        .then((r) => r.json())
        .then((j) => {
          // Unanswered and failed links stay "asked": not asked again on this page.
          j.results.map((r: Obj) => scanned.set(r.url, r.group));
          retag();
        })
        .catch(() => {});
    }
  } catch {
    // no fetch: no AutoScan
  }
};

export const p: Ext['p'] = (on, { name, event_id: id, link, props, value, currency }) => {
  // Not for PageView (the pixels' own snippets send theirs), nor for names
  // the collector refuses (the server will never send those).
  if (name == 'PageView' || !/^[A-Za-z]\w{0,39}$/.test(name)) return;
  // OutboundClick: its link; a track() event: its properties, value and currency.
  const params = link ? { tracking_group: link.tracking_group, link_url: link.url } : { ...props, value, currency };
  for (const fire of [
    on.meta != false && (() => w.fbq(META_STANDARD.test(name) ? 'track' : 'trackCustom', name, params, { eventID: id })),
    on.google != false && (() => w.gtag('event', name, { ...params, event_id: id })),
    on.tiktok != false && (() => w.ttq.track(name, params, { event_id: id })),
  ])
    try {
      // (A pixel missing from the page throws here too.)
      if (fire) fire();
    } catch {
      // one broken pixel does not stop the others
    }
};

export const h: Ext['h'] = async (a, user) => {
  const em = String(a.email || '')
    .trim()
    .toLowerCase();
  // Digits only, with the country code: "+44 (0)20 7946-0958" -> 442079460958.
  const ph = String(a.phone || '')
    .replace(/\(0\)|\D/g, '')
    .replace(/^0+/, '');
  const u = { ...user };
  if (em) u.em = await sha256(em);
  if (ph) u.ph = await sha256(ph);
  return u;
};

export const s: Ext['s'] = (u, C, retag) => {
  // By origin and path: redirect plugins ignore the query (which may hold
  // our own click id).
  const key = u.origin + u.pathname;
  if (!scanned.has(key)) {
    scanned.set(key, 0);
    scanQueue.push(key);
    setTimeout(flushScan, 50, C.scan, retag);
  }
  return byName(C.groups, scanned.get(key) || '');
};

export const f: Ext['f'] = (tag) => {
  for (const form of document.querySelectorAll('form[action]')) {
    const [id, , g] = tag(form, 'action') || [];
    // A GET form replaces the action's query with its fields: the click id
    // goes into a hidden field, an existing hidden one of that name or a new
    // one (never into a field the visitor fills).
    if (g && (form as HTMLFormElement).method != 'post') {
      const input =
        ((form as HTMLFormElement).elements.namedItem(g.param) as HTMLInputElement) ||
        form.appendChild(Object.assign(document.createElement('input'), { type: 'hidden', name: g.param }));
      if (input.type == 'hidden') input.value = id!;
    }
  }
};
