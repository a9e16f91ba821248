// What the browser specs share: the clicktrail server started from its
// binary on a free loopback port with a fresh SQLite database, Debian's
// chromium with a fresh profile, and a page that collects console errors
// and takes numbered screenshots.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import net from "node:net";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const artifacts = join(here, "artifacts");
const bin = resolve(process.env.E2E_CLICKTRAIL_BIN || join(here, "../../target/debug/clicktrail"));
const chromePath = process.env.CHROMIUM || "/usr/bin/chromium";

export const EMAIL = "owner@example.com";
export const PASSWORD = "a long enough password";

export function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
    s.on("error", rej);
  });
}

async function waitFor(url, ms = 30000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} did not come up`);
}

/// Starts the server (allowed to call loopback addresses, where the fakes
/// listen) and chromium. `env` adds CLICKTRAIL_* settings.
export async function start(name, env = {}) {
  assert.ok(existsSync(bin), `clicktrail binary not found at ${bin} (set E2E_CLICKTRAIL_BIN)`);
  assert.ok(existsSync(chromePath), `chromium not found at ${chromePath} (apt-get install -y chromium)`);
  mkdirSync(artifacts, { recursive: true });
  const dataDir = mkdtempSync(join(tmpdir(), `clicktrail-${name}-`));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const server = spawn(bin, ["serve"], {
    env: {
      // The server refuses unknown CLICKTRAIL_* variables: pass none through.
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("CLICKTRAIL_"))),
      CLICKTRAIL_LISTEN: `127.0.0.1:${port}`,
      CLICKTRAIL_DATABASE_URL: `sqlite://${dataDir}/e2e.db`,
      CLICKTRAIL_DATA_DIR: dataDir,
      CLICKTRAIL_ALLOW_PRIVATE_NETWORKS: "true",
      CLICKTRAIL_LOG: "warn",
      ...env,
    },
    stdio: ["ignore", "inherit", "inherit"],
  });
  const exited = new Promise((r) => server.once("exit", r));
  await waitFor(`${base}/healthz`);
  // A fresh profile (user data dir) for every run.
  const browser = await chromium.launchPersistentContext(join(dataDir, "chromium-profile"), {
    executablePath: chromePath,
    headless: true,
    viewport: { width: 1360, height: 900 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const stop = async () => {
    await browser.close();
    server.kill("SIGTERM");
    await exited;
    rmSync(dataDir, { recursive: true, force: true });
  };
  return { base, browser, stop };
}

/// A new page whose console errors land in `problems`, and `snap(name)`,
/// which saves a numbered full-page screenshot as artifacts/<prefix>-NN-<name>.png.
export async function openPage(browser, prefix) {
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (m) => { if (m.type() === "error") problems.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`${page.url()}: ${e.message}`));
  let shot = 0;
  const snap = async (name) => {
    shot += 1;
    const file = `${prefix ? `${prefix}-` : ""}${String(shot).padStart(2, "0")}-${name}.png`;
    await page.screenshot({ path: join(artifacts, file), fullPage: true });
  };
  return { page, problems, snap };
}

/// First run: the setup form creates the owner, then logs in.
export async function setupAndLogin(page, base) {
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/setup$/);
  await page.fill("[name='email']", EMAIL);
  await page.fill("[name='password']", PASSWORD);
  await page.fill("[name='password_confirm']", PASSWORD);
  await Promise.all([page.waitForURL(/\/login/), page.click("main button[type=submit]")]);
  await page.fill("[name='email']", EMAIL);
  await page.fill("[name='password']", PASSWORD);
  await Promise.all([page.waitForURL(/\/properties$/), page.click("main button[type=submit]")]);
}
