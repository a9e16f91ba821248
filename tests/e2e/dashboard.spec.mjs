// The newcomer's path through the dashboard, in a real browser against the
// real server: setup -> login -> create a property -> copy the snippet ->
// install Gala Partners with a key (read through its API: no postback URL
// shown) -> install the Custom postback integration -> add a Meta
// destination -> a conversion driven through the real collector and that
// integration's postback shows in the conversion
// log (delivered to a local fake of Meta) and in the reports -> a tracked
// link is created and listed with its URL -> logout.
// No console error may appear on any page. Screenshots of every page go to
// tests/e2e/artifacts/ (not committed).
//
//   npm ci && E2E_CLICKTRAIL_BIN=/path/to/clicktrail npm test
//
// Needs Debian's chromium (/usr/bin/chromium; `apt-get install -y chromium`)
// and a built `clicktrail` binary (E2E_CLICKTRAIL_BIN, default
// ../../target/debug/clicktrail).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { start, openPage, EMAIL, PASSWORD } from "./support.mjs";

const PIXEL = "987654321";
const TOKEN = "EAAE2ETOKEN00000000000000000";

let app, base, browser, fakeMeta, metaEvents = [];

before(async () => {
  // A local stand-in for Meta's Graph API.
  fakeMeta = http.createServer((req, res) => {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      let n = 0;
      try { n = (JSON.parse(body).data || []).length; } catch { /* form body */ }
      metaEvents.push({ url: req.url, body });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ events_received: n, messages: [], fbtrace_id: "e2e-fake" }));
    });
  });
  await new Promise((r) => fakeMeta.listen(0, "127.0.0.1", r));
  app = await start("e2e");
  ({ base, browser } = app);
});

after(async () => {
  if (app) await app.stop();
  if (fakeMeta) fakeMeta.close();
});

test("a newcomer sets up, installs Gala Partners, a postback and Meta, and sees a conversion", async () => {
  const context = browser;
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: base });
  const { page, problems, snap } = await openPage(context);

  // First run: / leads to the setup form.
  await page.goto(`${base}/`);
  assert.match(page.url(), /\/setup$/);
  await snap("setup");
  await page.fill("[name='email']", EMAIL);
  await page.fill("[name='password']", PASSWORD);
  await page.fill("[name='password_confirm']", PASSWORD);
  await Promise.all([page.waitForURL(/\/login/), page.click("main button[type=submit]")]);
  await snap("login");

  // Login.
  await page.fill("[name='email']", EMAIL);
  await page.fill("[name='password']", PASSWORD);
  await Promise.all([page.waitForURL(/\/properties$/), page.click("main button[type=submit]")]);
  await snap("properties-empty");

  // Create a property.
  await page.click("text=Add a property");
  await page.fill("[name='name']", "Bingo reviews");
  await page.fill("[name='domains']", "bingo-reviews.example");
  await page.fill("[name='currency']", "EUR");
  await Promise.all([page.waitForURL(/\/p\/[0-9a-z]+\?done=created/), page.click("main button[type=submit]")]);
  const pid = new URL(page.url()).pathname.split("/")[2];
  await snap("overview");

  // Copy the snippet.
  await page.click("button[data-copy=snippet]");
  await page.waitForSelector("button[data-copy=snippet].copied");
  const copied = await page.evaluate(() => navigator.clipboard.readText());
  assert.ok(copied.includes(`/t/${pid}.js`), `the clipboard holds the snippet: ${copied}`);

  // The Integration Catalog: search, open Gala Partners, install with a key.
  await page.click("nav.tabs >> text=Integrations");
  await page.click("text=Open the Integration Catalog");
  await page.fill("#catalog-search", "gala");
  assert.equal(await page.isVisible("a.netcard[data-key=galapartners]"), true);
  assert.equal(await page.isVisible("a.netcard[data-key=clickbank]"), false);
  await snap("catalog-search");
  await page.click("a.netcard[data-key=galapartners]");
  await page.waitForSelector("#technical-details");
  await snap("gala-partners");
  await page.fill("[name='credentials.security_key']", "GALA-SECURITY-KEY-123");
  await page.fill("[name='settings.api_url']", "http://127.0.0.1:9/api/affreporting.asp");
  await Promise.all([page.waitForURL(/\/integrations\/.+done=installed/), page.click("button[data-test=install]")]);
  await snap("gala-installed");
  // Gala Partners takes no postback: its page shows none, and its last poll
  // in words.
  assert.equal(await page.locator("#postback-url").count(), 0, "no postback URL on an API integration");
  assert.doesNotMatch(await page.textContent("[data-test=last-poll]"), /[{}]/);

  // The Custom postback integration, installed with its defaults: its page
  // shows the postback URL (with the placeholders to replace) and no poll.
  await page.click("nav.tabs >> text=Integrations");
  await page.click("text=Open the Integration Catalog");
  await page.click("a.netcard[data-key=custom]");
  await Promise.all([page.waitForURL(/\/integrations\/.+done=installed/), page.click("button[data-test=install]")]);
  await snap("custom-installed");
  assert.equal(await page.locator("[data-test=last-poll]").count(), 0, "no last poll on a postback integration");
  const postbackUrl = (await page.textContent("#postback-url")).trim().split("?")[0];
  assert.ok(postbackUrl.startsWith(`${base}/postback/`), postbackUrl);

  // A Meta destination (pointed at the local fake).
  await page.click("nav.tabs >> text=Destinations");
  await page.click("a.netcard[data-kind=meta_capi]");
  await page.fill("[name='settings.pixel_id']", PIXEL);
  await page.fill("[name='credentials.access_token']", TOKEN);
  const metaPort = fakeMeta.address().port;
  await page.fill("[name='settings.endpoint']", `http://127.0.0.1:${metaPort}`);
  await snap("meta-form");
  await Promise.all([page.waitForURL(/\/destinations\/.+done=created/), page.click("button[data-test=save-destination]")]);
  await snap("meta-destination");

  // A visit and a click through the real collector, then the network's
  // postback for that click.
  const now = Date.now();
  const landing = "https://bingo-reviews.example/gala?utm_source=facebook&utm_medium=paid_social&utm_campaign=e2e-spring&fbclid=E2EFBCLID";
  const clickId = "e2eclickid0000000001";
  const collect = await fetch(`${base}/collect`, {
    method: "POST",
    headers: { "content-type": "text/plain", "user-agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36" },
    body: JSON.stringify({ property_id: pid, events: [
      { event_id: crypto.randomUUID(), name: "PageView", ts: now, visitor_id: "e2e-visitor-0001", url: landing },
      { event_id: crypto.randomUUID(), name: "OutboundClick", ts: now, visitor_id: "e2e-visitor-0001", url: landing, click_id: clickId,
        link: { url: `https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1&c=${clickId}`, tracking_group: "incomeaccess", text: "Play" } },
    ] }),
  });
  assert.equal(collect.status, 202);
  const pb = await fetch(`${postbackUrl}?click_id=${clickId}&value=12.50&currency=EUR&transaction_id=e2e-1`);
  assert.equal(pb.status, 200);
  const outcome = await pb.json();
  assert.equal(outcome.status, "validated", JSON.stringify(outcome));

  // The conversion log shows it, validated, and delivered to Meta.
  await page.click("nav.tabs >> text=Conversion log");
  await page.waitForSelector("tr[data-status=validated]");
  await snap("conversion-log");
  await page.click("tr[data-status=validated] a");
  for (let i = 0; i < 50 && !(await page.isVisible(".delivery .badge.good")); i++) {
    await new Promise((r) => setTimeout(r, 200));
    await page.reload();
  }
  assert.equal(await page.isVisible(".delivery .badge.good"), true, "delivered");
  await snap("conversion-detail");
  assert.ok(metaEvents.length >= 1, "the fake Meta received the event");

  // The reports count it.
  await page.click("nav.tabs >> text=Reports");
  await page.waitForSelector("[data-kpi=conversions]");
  assert.equal((await page.textContent("[data-kpi=conversions] .value")).trim(), "1");
  assert.equal((await page.textContent("[data-kpi=revenue] .value")).trim(), "12.50");
  assert.equal((await page.textContent("[data-kpi=visits] .value")).trim(), "1");
  await snap("reports");

  // A tracked link for direct linking: created in the dashboard, its
  // tracked URL shown and copied, and listed with its tracking group.
  await page.click("nav.tabs >> text=Links");
  await page.waitForSelector("button[data-test=create-link]");
  await page.fill("[name='destination_url']", "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_");
  await page.fill("[name='slug']", "gala-spring");
  await Promise.all([page.waitForURL(/\/links\/.+done=created/), page.click("button[data-test=create-link]")]);
  const tracked = (await page.textContent("#tracked-url")).trim();
  assert.equal(tracked, `${base}/go/${pid}/gala-spring`);
  await page.click("button[data-copy=tracked-url]");
  await page.waitForSelector("button[data-copy=tracked-url].copied");
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), tracked);
  await snap("link");
  await page.click("nav.tabs >> text=Links");
  const linkRow = page.locator("tr[data-link=gala-spring]");
  assert.equal(await linkRow.count(), 1);
  const rowText = await linkRow.innerText();
  assert.ok(rowText.includes(tracked), rowText);
  assert.ok(rowText.includes("incomeaccess"), `the destination's tracking group: ${rowText}`);
  await snap("links");

  // The other pages load without errors.
  for (const [tab, name] of [["Live events", "live"], ["Link checker", "link-checker"], ["Ad spend", "spend"], ["Settings", "settings"], ["Overview", "overview-done"]]) {
    await page.click(`nav.tabs >> text=${tab}`);
    await page.waitForLoadState("load");
    await snap(name);
  }
  // Every step is green but the public URL's: this server is on loopback
  // while the property's domain is not, and the page says so.
  assert.equal(await page.locator(".checklist li.done").count(), 5, "every other checklist step is green");
  assert.equal(await page.locator(".checklist li.todo").count(), 1);
  assert.match(await page.locator(".checklist li.todo").innerText(), /Tracking address reachable/);
  assert.equal(await page.locator("[data-test=public-url-warning]").count(), 1);
  await page.click("nav.main >> text=API tokens");
  await snap("tokens");
  await page.click("nav.main >> text=Members");
  await snap("members");

  // Logout.
  await Promise.all([page.waitForURL(/\/login\?done=logout/), page.click("button[data-test=logout]")]);
  await snap("logged-out");
  await page.goto(`${base}/p/${pid}/reports`);
  assert.match(page.url(), /\/login\?next=/);

  assert.deepEqual(problems, [], "no console errors");
  await page.close();
});
