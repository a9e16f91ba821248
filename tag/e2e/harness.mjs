// What the end-to-end tests stand on: the real clicktrail server (built with
// cargo unless CLICKTRAIL_BIN names a binary) on a free port with a fresh
// SQLite database, its API, Debian's chromium driven by playwright-core, and
// browser contexts ("visitors") that record every console error and page
// error and stub the affiliate networks' hosts (nothing leaves the machine).

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const WORKSPACE = resolve(here, '../..');
export const ARTIFACTS = join(here, 'artifacts');
export const MASTER_KEY = 'e2e-master-key-0123456789abcdef';
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

export const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** Polls `f` until it returns a truthy value (returned) or `ms` pass (throws, naming `what`). */
export async function until(what, f, ms = 10000, every = 100) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what} (last: ${last?.stack || JSON.stringify(last)})`);
    await sleep(every);
  }
}

export function freePort() {
  return new Promise((ok, fail) => {
    const s = net.createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

/**
 * The clicktrail binary: CLICKTRAIL_BIN, else `cargo build -p clicktrail`
 * (a no-op when it is up to date; it embeds tag/dist, so a rebuilt tag
 * rebuilds the server) and the executable cargo reports.
 */
export async function serverBinary() {
  if (process.env.CLICKTRAIL_BIN) {
    const bin = resolve(process.env.CLICKTRAIL_BIN);
    assert.ok(existsSync(bin), `CLICKTRAIL_BIN=${bin} does not exist`);
    return bin;
  }
  const cargo = spawn('cargo', ['build', '-p', 'clicktrail', '--message-format=json-render-diagnostics'], {
    cwd: WORKSPACE,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  cargo.stdout.on('data', (c) => (out += c));
  const code = await new Promise((ok, fail) => cargo.once('error', fail).once('exit', ok));
  assert.equal(code, 0, 'cargo build -p clicktrail failed');
  for (const line of out.split('\n')) {
    if (!line.startsWith('{')) continue;
    const m = JSON.parse(line);
    if (m.reason == 'compiler-artifact' && m.target?.name == 'clicktrail' && m.executable) return m.executable;
  }
  throw new Error('cargo did not report the clicktrail executable');
}

/** A running `clicktrail serve` on a fresh SQLite database in its own temporary directory. */
export class Server {
  static async start(bin) {
    const dir = mkdtempSync(join(tmpdir(), 'clicktrail-tag-e2e-'));
    const port = await freePort();
    // Only the variables set here: the server refuses unknown CLICKTRAIL_*
    // keys (CLICKTRAIL_BIN included) and would read them.
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('CLICKTRAIL_')));
    Object.assign(env, {
      CLICKTRAIL_LISTEN: `127.0.0.1:${port}`,
      CLICKTRAIL_DATABASE_URL: `sqlite://${dir}/e2e.db`,
      CLICKTRAIL_MASTER_KEY: MASTER_KEY,
      CLICKTRAIL_DATA_DIR: dir,
      CLICKTRAIL_ALLOW_PRIVATE_NETWORKS: 'true',
      CLICKTRAIL_LOG: 'warn',
    });
    mkdirSync(ARTIFACTS, { recursive: true });
    const log = createWriteStream(join(ARTIFACTS, 'server.log'));
    // (cwd: the temporary directory, so no clicktrail.toml is picked up.)
    const proc = spawn(bin, ['serve'], { cwd: dir, env, stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout.pipe(log);
    proc.stderr.pipe(log);
    const s = new Server(proc, `http://127.0.0.1:${port}`, dir);
    await until(
      'the server to answer /healthz',
      async () => {
        assert.equal(proc.exitCode, null, `the server exited (${proc.exitCode}); see e2e/artifacts/server.log`);
        return (await fetch(`${s.base}/healthz`)).ok;
      },
      30000,
      100,
    );
    return s;
  }

  constructor(proc, base, dir) {
    this.proc = proc;
    this.base = base;
    this.dir = dir;
  }

  async stop() {
    if (this.proc.exitCode != null) return;
    const exited = new Promise((ok) => this.proc.once('exit', ok));
    this.proc.kill('SIGTERM');
    await Promise.race([exited, sleep(10000)]);
    if (this.proc.exitCode == null && this.proc.signalCode == null) {
      this.proc.kill('SIGKILL');
      await exited;
    }
  }

  /** An API call with the master key: [status, JSON body]. */
  async api(method, path, body) {
    const r = await fetch(this.base + '/api/v1' + path, {
      method,
      headers: { authorization: `Bearer ${MASTER_KEY}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body && JSON.stringify(body),
    });
    const text = await r.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = text;
    }
    return [r.status, json];
  }

  /** A stored click (or one resolved from its pageview), or undefined while there is none. */
  async click(property, clickId) {
    const [status, body] = await this.api('GET', `/properties/${property}/clicks/${clickId}`);
    if (status == 404) return undefined;
    assert.equal(status, 200, JSON.stringify(body));
    return body;
  }
}

/** Desktop Chrome's user agent for this chromium's version (a headless one is a bot to the server). */
export const userAgent = (version) =>
  `Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/${version.split('.')[0]}.0.0.0 Safari/537.36`;

/**
 * Debian's chromium, headless, in a fresh profile (playwright's launch
 * makes a temporary one). `*.site.localtest` is the site on 127.0.0.1;
 * every other name but localhost fails to resolve, so nothing can leave the
 * machine (the networks' hosts are answered by the visitors' routes).
 */
export async function launchBrowser() {
  assert.ok(existsSync(CHROMIUM), `chromium not found at ${CHROMIUM} (apt-get install -y chromium)`);
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--host-resolver-rules=MAP site.localtest 127.0.0.1, MAP *.site.localtest 127.0.0.1, MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
    ],
  });
}

/** Hosts the tests stand in for: their pages are answered in the browser. */
const NETWORKS = /^https?:\/\/([^/]*\.adsrv\.eacdn\.com|www\.galabingo\.com|superbet\.bet\.br|partners\.example\.net|track\.example\.net|www\.example\.org|media\.highaffiliates\.com)(:\d+)?\//i;

/**
 * A browser context: one visitor with its own cookies. Records console
 * errors and page errors of every page it opens (`problems`), the pages the
 * networks were asked for (`landed`), and every event the tag sent to the
 * collector with the collector's answer (`events`, in order).
 *
 * The networks' pages are answered by a route, except where playwright does
 * not route: a redirect's target (playwright routes only the first request
 * of a chain) and a tab opened by a middle click (its navigation starts
 * before the route is in place). There the browser shows its error page
 * (the name does not resolve); `landed` still has the request, from the
 * page's request events, and the tab's history where it went.
 */
export class Visitor {
  static async open(browser, collectUrl, name) {
    const context = await browser.newContext({
      userAgent: userAgent(browser.version()),
      viewport: { width: 1280, height: 900 },
      locale: 'en-GB',
    });
    const v = new Visitor(context, collectUrl, name);
    await context.route(NETWORKS, (route) =>
      route.fulfill({
        status: 200,
        contentType: 'text/html; charset=utf-8',
        body: '<!doctype html><title>Welcome</title><link rel="icon" href="data:,"><h1>Welcome offer</h1>',
      }),
    );
    context.on('page', (p) => v.watch(p));
    return v;
  }

  constructor(context, collectUrl, name) {
    this.context = context;
    this.collectUrl = collectUrl;
    this.name = name;
    this.problems = [];
    this.landed = [];
    this.events = [];
    /** Console errors that are expected (matched by a predicate on the message). */
    this.allowed = [];
  }

  watch(page) {
    page.on('console', (m) => {
      if (m.type() != 'error') return;
      const text = `${m.text()} (${m.location().url || page.url()})`;
      if (!this.allowed.some((ok) => ok(m, text))) this.problems.push(`console error on ${page.url()}: ${text}`);
    });
    page.on('pageerror', (e) => this.problems.push(`page error on ${page.url()}: ${e.stack || e.message}`));
    page.on('request', (r) => {
      if (NETWORKS.test(r.url())) this.landed.push(r.url());
      if (r.url() != this.collectUrl || r.method() != 'POST') return;
      let event;
      try {
        event = JSON.parse(r.postData() || '');
      } catch {
        this.problems.push(`unreadable collector body: ${r.postData()}`);
        return;
      }
      const entry = { event, status: undefined, page };
      this.events.push(entry);
      r.response()
        .then((resp) => (entry.status = resp ? resp.status() : 'no response'))
        .catch((e) => (entry.status = `failed: ${e.message}`));
    });
  }

  async newPage() {
    return this.context.newPage();
  }

  /** The events of `name` sent so far (optionally only those from `page`). */
  sent(name, page) {
    return this.events.filter((e) => e.event.name == name && (!page || e.page == page)).map((e) => e.event);
  }

  /** Waits for the `n`-th (1-based) event named `name` from `page` and returns it. */
  async waitSent(name, page, n = 1, ms = 5000) {
    return until(`${this.name}: ${n} ${name} event(s)`, () => this.sent(name, page)[n - 1], ms, 25);
  }

  async cookie(name) {
    return (await this.context.cookies()).filter((c) => c.name == name);
  }

  /** Screenshots of every open page into e2e/artifacts/ (for a failed test). */
  async screenshots(label) {
    mkdirSync(ARTIFACTS, { recursive: true });
    let n = 0;
    for (const p of this.context.pages()) {
      await p.screenshot({ path: join(ARTIFACTS, `${label}-${++n}.png`), fullPage: true, timeout: 5000 }).catch(() => {});
    }
  }

  /** Closes the context and checks that no page had an error and the collector took every event. */
  async close() {
    await this.context.close();
    const refused = this.events.filter((e) => typeof e.status == 'number' && e.status != 202);
    assert.deepEqual(
      refused.map((e) => [e.status, e.event.name]),
      [],
      `${this.name}: the collector refused events`,
    );
    assert.deepEqual(this.problems, [], `${this.name}: errors in the pages`);
  }
}

/** The 22-character click-id prefix of a pageview's UUID (docs/COLLECTOR.md, "Click ids"). */
export const clickPrefix = (pageviewUuid) => Buffer.from(pageviewUuid.replace(/-/g, ''), 'hex').toString('base64url');

/** Runs `f` with a fresh visitor; on failure, screenshots; always closes and checks it. */
export async function asVisitor(browser, collectUrl, name, f) {
  const v = await Visitor.open(browser, collectUrl, name);
  try {
    await f(v);
  } catch (e) {
    await v.screenshots(name.replace(/\W+/g, '-'));
    await v.context.close().catch(() => {});
    throw e;
  }
  await v.close();
}
