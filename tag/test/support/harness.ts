// Runs the built tag in a jsdom window with a configuration substituted, the
// way the server serves it. The browser APIs jsdom lacks (sendBeacon, fetch,
// crypto.subtle, TextEncoder) are provided here, recording what the tag sends.
// jsdom cannot import() an ES module, so the tag's one `import(` becomes a
// call of the page's __import, which loads the built extension (or fails, or
// hangs, as the test asks) the way a browser would: evaluated once, in the
// page.
import { JSDOM, VirtualConsole } from 'jsdom';
import { webcrypto } from 'node:crypto';
import { PLACEHOLDER, buildExt, buildTag } from '../../build.mjs';
import type { Config } from '../../src/types.ts';

let built: Promise<string> | undefined;
let builtExt: Promise<string> | undefined;
/** The tag built from the current sources (once per test process). */
export const tagSource = () => (built ??= buildTag());
/** The extension built from the current sources. */
export const extSource = () => (builtExt ??= buildExt());

export const EXT_URL = 'https://track.example.net/t/ext/9f3c2a7be41d6058.js';

/**
 * The extension module as a script that evaluates to its namespace: the ES
 * module minus its closing `export{local as name,...}`, in a function.
 */
const extAsScript = (source: string) => {
  const m = /export\s*\{([^}]*)\};?\s*$/.exec(source);
  if (!m) throw new Error('the extension does not end with one export list');
  const names = m[1].split(',').map((x) => {
    const [local, exported = local] = x.trim().split(/\s+as\s+/);
    return `${exported}:${local}`;
  });
  return `(()=>{${source.slice(0, m.index)};return{${names.join(',')}}})()`;
};

export const config = (over: Partial<Config> = {}): Config => ({
  v: 1,
  property: 'k3j5q8x2m9w4',
  collect: 'https://track.example.net/collect',
  scan: 'https://track.example.net/t/k3j5q8x2m9w4/scan',
  ext: EXT_URL,
  groups: [
    {
      key: 'incomeaccess',
      aliases: ['galapartners'],
      param: 'c',
      patterns: [
        { hosts: ['wl*.adsrv.eacdn.com'], paths: ['/C.ashx'], query: ['btag'] },
        { hosts: ['*'], paths: ['/redirect.aspx'], query: ['pid', 'bid'] },
      ],
    },
  ],
  autoscan_prefixes: ['/go/', '/out/', '/recommends/', '/visit/', '/link/', '/refer/'],
  session_timeout_min: 30,
  consent_required: false,
  pixels: { meta: true, google: true, tiktok: true },
  ...over,
});

/** JSON as the server's serde_json writes it: object keys sorted. */
export const serverJson = (v: unknown): string =>
  JSON.stringify(v, (_, x) =>
    x && typeof x == 'object' && !Array.isArray(x) ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, x[k]])) : x,
  );

export const withConfig = (source: string, cfg: Config) => source.replace(PLACEHOLDER, serverJson(cfg));

export interface Sent {
  url: string;
  body: any;
  via: 'beacon' | 'fetch';
}

export interface Page {
  dom: JSDOM;
  win: any;
  doc: Document;
  /** Events sent to the collector, in order. */
  events: () => any[];
  sent: Sent[];
  /** GET requests to the scan endpoint: their `u` parameters. */
  scans: string[][];
  /** Pixel calls: [pixel, ...args]. */
  pixelCalls: any[][];
  /** URLs the tag imported (the extension). */
  imports: string[];
  errors: unknown[];
  /** Loads the tag (optionally after `before` ran in the page). */
  loadTag: (cfg?: Config) => Promise<void>;
}

export interface PageOptions {
  url?: string;
  html?: string;
  /** sendBeacon's answer (false: queue full, fetch is the fallback); 'missing' removes it. */
  beacon?: boolean | 'missing';
  /** The scan endpoint's answer for a `u` value (undefined: no group). */
  scan?: (u: string) => string | undefined;
  /** Make every fetch fail, like a server that is down. */
  down?: boolean;
  /** The extension's import: loads (default), fails, or never settles. */
  ext?: 'ok' | 'fail' | 'hang';
  pixels?: boolean;
}

export const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function page(opts: PageOptions = {}): Page {
  // jsdom cannot follow link navigations; everything else it reports counts.
  const virtualConsole = new VirtualConsole();
  const errors: unknown[] = [];
  virtualConsole.on('jsdomError', (e) => /navigation/.test(e.message) || errors.push(e));
  virtualConsole.on('error', (e) => errors.push(e));
  const dom = new JSDOM(opts.html ?? '<!doctype html><html><head><title>Best casinos</title></head><body></body></html>', {
    url: opts.url ?? 'https://blog.example.co.uk/reviews/best-casinos?utm_source=facebook&fbclid=IwAR0abc',
    referrer: 'https://l.facebook.com/',
    runScripts: 'outside-only',
    pretendToBeVisual: true,
    virtualConsole,
  });
  const win = dom.window as any;
  const sent: Sent[] = [];
  const scans: string[][] = [];
  const pixelCalls: any[][] = [];
  const imports: string[] = [];
  let extModule: Promise<unknown> | undefined;
  win.__import = (url: string) => {
    imports.push(url);
    if (opts.down || opts.ext == 'fail' || url != EXT_URL)
      return Promise.reject(new TypeError('Failed to fetch dynamically imported module: ' + url));
    if (opts.ext == 'hang') return new Promise(() => {});
    // One module per page, evaluated when first imported.
    return (extModule ??= extSource().then((src) => win.eval(extAsScript(src))));
  };
  win.addEventListener('error', (e: any) => errors.push(e.error ?? e.message));
  win.TextEncoder = TextEncoder;
  Object.defineProperty(win.crypto, 'subtle', { value: webcrypto.subtle });
  if (opts.beacon !== 'missing')
    win.navigator.sendBeacon = (url: string, data: unknown) => {
      if (opts.down || opts.beacon === false) return false;
      // A string body goes as text/plain: no CORS preflight.
      if (typeof data != 'string') throw new Error('beacon body must be a string');
      sent.push({ url, body: JSON.parse(data), via: 'beacon' });
      return true;
    };
  win.fetch = (url: string, init: any = {}) => {
    if (opts.down) return Promise.reject(new TypeError('Failed to fetch'));
    if (init.method == 'POST') {
      if (!init.keepalive) throw new Error('fallback fetch must use keepalive');
      sent.push({ url, body: JSON.parse(init.body), via: 'fetch' });
      return Promise.resolve({ ok: true, json: async () => ({}) });
    }
    const u = new URL(url);
    const asked = u.searchParams.getAll('u');
    scans.push(asked);
    const results = asked.map((x) => ({ url: x, group: opts.scan?.(x) ?? null }));
    return Promise.resolve({ ok: true, json: async () => ({ results }) });
  };
  if (opts.pixels) {
    win.fbq = (...a: any[]) => pixelCalls.push(['fbq', ...a]);
    win.gtag = (...a: any[]) => pixelCalls.push(['gtag', ...a]);
    win.ttq = { track: (...a: any[]) => pixelCalls.push(['ttq', ...a]) };
  }
  return {
    dom,
    win,
    doc: win.document,
    sent,
    scans,
    pixelCalls,
    imports,
    errors,
    events: () => sent.map((s) => s.body),
    loadTag: async (cfg = config()) => {
      win.eval(withConfig(await tagSource(), cfg).replace('import(', '__import('));
    },
  };
}
