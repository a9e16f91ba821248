// Issue 14, in a real browser against the real server: an affiliate sets
// up an Income Access program by pasting the report URL its back office
// generated, tests the connection against a local fake of the reporting
// API (an old key: refused as the wrong key; this server not whitelisted:
// refused as such; then it works, rows seen), installs it (the key kept
// out of the saved URL and out of every page), and the link checker finds
// the site's redirect-plugin link that drops the click id on the way to
// the program, with the parameter-forwarding fix. No console error may
// appear; screenshots go to tests/e2e/artifacts/setup-*.png.
//
//   npm ci && E2E_CLICKTRAIL_BIN=/path/to/clicktrail npm test
//
// Needs what dashboard.spec.mjs needs (support.mjs starts both).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { start, openPage, setupAndLogin } from "./support.mjs";
import { FakeIncomeAccess, daysAgo } from "./fake-income-access.mjs";

// The key the back office shows now, and the one it showed before a new
// key was generated (Income Access keys are 32 hex digits).
const KEY = "0123456789abcdef0123456789abcdef";
const OLD_KEY = "fedcba9876543210fedcba9876543210";
// The address this server's requests come from, as the operator
// configures it (egress_ips): the fake sees loopback.
const EGRESS = "127.0.0.1";
// Where the site's redirect plugin sends visitors: a white-label Income
// Access link. The link checker reads it and never requests it.
const AFFILIATE = "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_31512b_1195c_";

let app, fake, site, siteBase;
const siteQueries = { "/go/casino": [], "/go/bingo": [] };

// A page of the affiliate's site with two links of its redirect plugin:
// /go/casino drops the query string on the way to the program (the
// plugin's parameter forwarding off), /go/bingo passes it on.
const PAGE = `<!DOCTYPE html><html><head><title>Casino reviews</title></head><body>
  <p><a href="/go/casino">Play at Gala Casino</a></p>
  <p><a href="/go/bingo">Play at Gala Bingo</a></p>
</body></html>`;

function startSite() {
  return new Promise((resolve) => {
    const server = http.createServer((req, res) => {
      const url = new URL(req.url, "http://site");
      if (url.pathname === "/review") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
        return res.end(PAGE);
      }
      if (url.pathname in siteQueries) {
        siteQueries[url.pathname].push(url.search);
        const to = url.pathname === "/go/bingo" && url.search ? `${AFFILIATE}&${url.search.slice(1)}` : AFFILIATE;
        res.writeHead(302, { location: to });
        return res.end();
      }
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("not found");
    });
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

before(async () => {
  fake = await new FakeIncomeAccess(KEY).listen();
  fake.whitelist = [EGRESS];
  // A player who registered yesterday (the day a connection test asks
  // for) and earned a commission that day.
  fake.addPlayer("5001", "", daysAgo(1), [[daysAgo(1), 1250]]);
  site = await startSite();
  siteBase = `http://127.0.0.1:${site.address().port}`;
  app = await start("setup", { CLICKTRAIL_EGRESS_IPS: EGRESS });
});

after(async () => {
  if (app) await app.stop();
  if (fake) fake.close();
  if (site) site.close();
});

test("paste a generated Income Access URL, test it, install it, and find the redirect that drops the click id", async () => {
  const { base, browser } = app;
  const { page, problems, snap } = await openPage(browser, "setup");
  const html = () => page.content();
  const testResult = () => page.locator("[data-test=test-result]");
  const apiUrl = () => page.inputValue("[name='settings.api_url']");
  // Clicks "Test connection" (of the form in `scope`) and waits for the
  // page with its answer; a refused form fails here, with the page's text.
  const testConnection = async (scope = "main") => {
    const [resp] = await Promise.all([
      page.waitForNavigation(),
      page.click(`${scope} button[data-test=test-connection]`),
    ]);
    const main = await page.innerText("main");
    assert.equal(resp.status(), 200, `Test connection answered ${resp.status()}: ${main}`);
    assert.equal(await testResult().count(), 1, `no test result on the page: ${main}`);
    return testResult();
  };

  await setupAndLogin(page, base);

  // A property for the site (served from 127.0.0.1 here).
  await page.click("text=Add a property");
  await page.fill("[name='name']", "Casino reviews");
  await page.fill("[name='domains']", "127.0.0.1");
  await page.fill("[name='currency']", "GBP");
  await Promise.all([page.waitForURL(/\/p\/[0-9a-z]+\?done=created/), page.click("main button[type=submit]")]);

  // Its integrations: the Income Access entry of the catalog.
  await page.click("nav.tabs >> text=Integrations");
  await page.click("text=Open the Integration Catalog");
  await page.fill("#catalog-search", "income access");
  await page.click("a.netcard[data-key=incomeaccess]");
  await page.waitForSelector("form#install");
  await snap("income-access");
  assert.match(await page.innerText("[data-test=egress]"), /IP address to whitelist: 127\.0\.0\.1/);

  // 1. The URL generated before the key was renewed: the wrong key.
  await page.fill("[name='settings.api_url']", fake.generatedUrl(OLD_KEY));
  await testConnection();
  await snap("test-wrong-key");
  assert.equal(await testResult().getAttribute("data-outcome"), "wrong_key");
  let text = await testResult().innerText();
  assert.match(text, /Test connection: wrong security key/);
  assert.match(text, /The program refused the security key \(no permission 1\)/);
  assert.match(text, /IP address to whitelist: 127\.0\.0\.1/);
  assert.match(text, /Nothing was saved/);
  // The URL comes back without its key, and the key is nowhere on the page.
  assert.equal(await apiUrl(), fake.reportUrl);
  assert.ok(!(await html()).includes(OLD_KEY), "the key is not sent back to the page");
  assert.equal(await page.inputValue("[name='settings.report_format']"), "csv", "the format taken from the URL");

  // 2. The current key, but the program does not let this server in.
  fake.whitelist = ["203.0.113.99"];
  await page.fill("[name='settings.api_url']", fake.generatedUrl(KEY));
  await testConnection();
  await snap("test-not-whitelisted");
  assert.equal(await testResult().getAttribute("data-outcome"), "ip_not_whitelisted");
  text = await testResult().innerText();
  assert.match(text, /Test connection: this server's IP is not whitelisted/);
  assert.match(text, /add 127\.0\.0\.1 to the IP whitelist/);
  assert.match(text, /IP address to whitelist: 127\.0\.0\.1/);

  // 3. Whitelisted: it works, and says how many rows it saw.
  fake.whitelist = [EGRESS];
  await page.fill("[name='settings.api_url']", fake.generatedUrl(KEY));
  await testConnection();
  await snap("test-works");
  assert.equal(await testResult().getAttribute("data-outcome"), "works");
  text = await testResult().innerText();
  assert.match(text, /Test connection: it works/);
  assert.match(text, new RegExp(`the AccountReport report for ${daysAgo(1)} with 1 row\\.`));
  assert.doesNotMatch(text, /IP address to whitelist/);
  assert.match(await page.innerText("[data-test=key-again]"), /enter it again \(or paste the report URL again\)/);
  assert.ok(!(await html()).includes(KEY), "the key is not sent back to the page");
  // What the program was asked: yesterday alone, as the pasted URL says,
  // with the key that was pasted.
  const asked = fake.requests.at(-1);
  assert.equal(asked.keyOk, true);
  assert.equal(asked.params.reportname, "AccountReport");
  assert.equal(asked.params.reportformat, "csv");
  assert.equal(asked.params.reportstartdate, daysAgo(1).replaceAll("-", "/"));
  assert.equal(asked.params.reportenddate, daysAgo(1).replaceAll("-", "/"));

  // Install, with the URL pasted again (the key was not sent back).
  await page.fill("[name='settings.api_url']", fake.generatedUrl(KEY));
  await Promise.all([page.waitForURL(/\/integrations\/.+done=installed/), page.click("button[data-test=install]")]);
  await snap("installed");
  assert.match(await page.innerText("main"), /Installed\. Follow the remaining steps below\./);
  assert.equal((await page.innerText("h1")).trim(), "Income Access");
  assert.equal((await page.innerText("div.heading .badge")).trim(), "active");
  // The saved settings: the URL without its key, the report and format
  // taken out of it; the key shown masked only.
  assert.equal(await apiUrl(), fake.reportUrl);
  assert.equal(await page.inputValue("[name='settings.report_name']"), "AccountReport");
  assert.equal(await page.inputValue("[name='settings.report_format']"), "csv");
  assert.equal(await page.inputValue("[name='credentials.security_key']"), "");
  const credentials = page.locator("tr", { has: page.locator("th", { hasText: "Credentials" }) });
  assert.equal((await credentials.innerText()).trim(), "Credentials\tsecurity_key: 01…ef");
  assert.ok(!(await html()).includes(KEY), "the key is not on the integration's page");
  // The saved key works: Test connection with nothing typed. (The first
  // poll may run meanwhile: the test's request is the one for yesterday
  // alone.)
  const seen = fake.requests.length;
  await testConnection("#settings");
  assert.equal(await testResult().getAttribute("data-outcome"), "works");
  const yesterday = daysAgo(1).replaceAll("-", "/");
  const tests = fake.requests.slice(seen)
    .filter((r) => r.params.reportstartdate === yesterday && r.params.reportenddate === yesterday);
  assert.equal(tests.length, 1, JSON.stringify(fake.requests.slice(seen)));
  assert.equal(tests[0].keyOk, true, "the saved key was sent");
  // The list of integrations shows it installed.
  await page.click("nav.tabs >> text=Integrations");
  const row = page.locator("tr", { has: page.locator("a", { hasText: "Income Access" }) });
  assert.equal(await row.count(), 1);
  assert.match(await row.innerText(), /Income Access\s+API Integration\s+active/);
  await snap("integrations");

  // The link checker on a page of the site: /go/casino loses the click id
  // on its way to the program, /go/bingo keeps it.
  await page.click("nav.tabs >> text=Link checker");
  await page.fill("[name='url']", `${siteBase}/review`);
  await page.click("main form button[type=submit]");
  await page.waitForSelector("[data-test=redirect-links]");
  await snap("link-checker");
  const dropped = page.locator("[data-test=redirect-links] tr[data-outcome=click_id_dropped]");
  assert.equal(await dropped.count(), 1);
  text = await dropped.innerText();
  assert.match(text, /\/go\/casino/);
  assert.match(text, /incomeaccess/);
  assert.match(text, /click id dropped/);
  assert.match(await dropped.locator("[data-test=fix]").innerText(), /Fix: Turn on parameter forwarding/);
  const kept = page.locator("[data-test=redirect-links] tr[data-outcome=click_id_kept]");
  assert.equal(await kept.count(), 1);
  assert.match(await kept.innerText(), /\/go\/bingo[\s\S]*click id kept/);
  assert.equal(await kept.locator("[data-test=fix]").count(), 0);
  // The checker did send a click id (as c, Income Access' subid) to the
  // plugin link that dropped it.
  assert.ok(siteQueries["/go/casino"].some((q) => /^\?c=[0-9A-Za-z_-]+$/.test(q)), JSON.stringify(siteQueries));

  assert.deepEqual(problems, [], "no console errors");
  await page.close();
});
