//! Setting up a site, end to end on SQLite and PostgreSQL: Income Access
//! links on a program's own media domain are AutoTagged (tag, `/go/`, link
//! checker) and their conversions come back attributed; every catalog entry
//! installs with only what it truly needs; and a public URL that a live site
//! cannot use (loopback, plain http) is said plainly in the first-run
//! message, on the property page and in its setup checklist.

use std::time::Duration;

use chrono::Utc;
use clicktrail::config::Config;
use clicktrail_testkit::both;
use clicktrail_testkit::income_access::{FakeIncomeAccess, FakePlayer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::process::Serve;
use crate::support::{self, Backend, CHROME_UA, MASTER_KEY, TestDb, TestServer, wait_for_some};

/// Gala Partners' link as its back office gives it (shared/reference/income-access.md).
const GALA_MEDIA_LINK: &str = "https://media.galapartners.co.uk/redirect.aspx?pid=91731&bid=1195";
const HIGH_MEDIA_LINK: &str =
    "https://media.highaffiliates.com/redirect.aspx?pid=15225&lpid=245&bid=1825";

/// Serves `html` at `http://127.0.0.1:<port>/page`; returns the page URL.
async fn serve_page(html: &'static str) -> String {
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        // Lives as long as the test.
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/page")
}

/// The table row of the link checker's answer that holds `href`.
fn checker_row<'a>(body: &'a str, href: &str) -> &'a str {
    let at = body
        .find(href)
        .unwrap_or_else(|| panic!("{href} not listed: {body}"));
    let start = body[..at].rfind("<tr").expect("row start");
    let end = at + body[at..].find("</tr>").expect("row end");
    &body[start..end]
}

both!(income_access_media_domain_links, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let browser = Browser::new(&s.base);
    browser.setup_and_login().await;
    let pid = browser
        .create_property("Bingo reviews", "127.0.0.1", "GBP")
        .await;
    let fake = FakeIncomeAccess::start().await.expect("fake Income Access");
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": fake.key()},
                   "settings": {"api_url": fake.report_url}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let iid = v["id"].as_str().expect("id").to_owned();

    // The tag gets the shape rule with the property's groups.
    let tag = s
        .http
        .get(s.url(&format!("/t/{pid}.js")))
        .send()
        .await
        .expect("tag");
    assert_eq!(tag.status(), 200);
    let tag = tag.text().await.expect("tag text");
    assert!(
        tag.contains("/redirect.aspx"),
        "no media-domain rule in the tag"
    );

    // Direct linking to the media domain: the redirect carries c=<click id>.
    let (st, l) = s
        .post(
            &format!("/api/v1/properties/{pid}/links"),
            MASTER_KEY,
            json!({"slug": "gala", "destination_url": GALA_MEDIA_LINK}),
        )
        .await;
    assert_eq!(st, 201, "{l}");
    let r = s
        .http
        .get(s.url("/go/gala?utm_source=google&utm_medium=cpc&gclid=Cj0_media_1"))
        .header("user-agent", CHROME_UA)
        .send()
        .await
        .expect("go");
    assert_eq!(r.status(), 302);
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let prefix = format!("{GALA_MEDIA_LINK}&c=");
    assert!(
        location.starts_with(&prefix),
        "the media-domain link went out without c=: {location}"
    );
    let cid = location[prefix.len()..].to_owned();
    assert!(cid.len() >= 16, "{location}");

    // The program reports the click id back as the ACID: attributed, not
    // unknown_click_id.
    let today = Utc::now().date_naive();
    fake.handle.add_player(FakePlayer::new("2001", &cid, today));
    let (st, p) = s
        .api(
            Method::POST,
            &format!("/api/v1/integrations/{iid}/poll"),
            MASTER_KEY,
            None,
        )
        .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["poll"]["status"], "ok", "{p}");
    let (_, log) = s
        .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
        .await;
    let conversions = log["conversions"].as_array().expect("conversions");
    assert_eq!(conversions.len(), 1, "{log}");
    assert_eq!(conversions[0]["status"], "validated", "{log}");
    assert_eq!(conversions[0]["event_name"], "Lead");
    assert_eq!(conversions[0]["click_id"], cid.as_str());
    assert_eq!(conversions[0]["attribution"]["source"], "google");

    // The link checker says what the tag will do with such links.
    let page = serve_page(
        r#"<html><body>
        <a href="https://media.galapartners.co.uk/redirect.aspx?pid=91731&amp;bid=1195">Gala Bingo</a>
        <a href="https://media.highaffiliates.com/redirect.aspx?pid=15225&amp;lpid=245&amp;bid=1825">High</a>
        <a href="https://media.galapartners.co.uk/redirect.aspx?pid=91731">no bid</a>
        </body></html>"#,
    )
    .await;
    let checker = format!("/p/{pid}/link-checker");
    let r = browser.submit(&checker, &checker, &[("url", &page)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("3 link(s), 2 AutoTagged"), "{}", r.body);
    for href in [GALA_MEDIA_LINK, HIGH_MEDIA_LINK] {
        let row = checker_row(&r.body, &href.replace('&', "&amp;"));
        assert!(row.contains("data-tagged=\"true\""), "{row}");
        assert!(row.contains("<code>incomeaccess</code>"), "{row}");
        assert!(row.contains("c=CLICKID_PREVIEW"), "{row}");
    }
    let row = checker_row(&r.body, "redirect.aspx?pid=91731<");
    assert!(row.contains("data-tagged=\"false\""), "{row}");
    s.stop().await;
});

/// What an install of each catalog entry truly needs: Income Access
/// programs a security key and their report URL; every other entry nothing.
fn needs(entry: &Value) -> Value {
    if entry["connector"] == "incomeaccess" {
        json!({"credentials": {"security_key": "0123456789abcdef0123456789abcdef"},
               "settings": {"api_url": "http://127.0.0.1:9/api/affreporting.asp"}})
    } else {
        json!({})
    }
}

both!(
    every_catalog_entry_installs_with_what_it_needs,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let (st, catalog) = s.get("/api/v1/catalog", MASTER_KEY).await;
        assert_eq!(st, 200, "{catalog}");
        let entries = catalog["entries"].as_array().expect("entries");
        assert!(entries.len() >= 13, "{catalog}");
        let mut failures = Vec::new();
        for e in entries {
            let key = e["key"].as_str().expect("key");
            let mut body = needs(e);
            body["catalog"] = json!(key);
            let (st, v) = s
                .post(
                    &format!("/api/v1/properties/{pid}/integrations"),
                    MASTER_KEY,
                    body,
                )
                .await;
            if st != 201 {
                failures.push(format!("{key}: {st} {v}"));
                continue;
            }
            let postback = v["postback_url"].as_str().unwrap_or_default();
            if !postback.starts_with(&format!("{}/postback/", s.base)) {
                failures.push(format!("{key}: postback_url {postback:?}"));
            }
            let (_, i) = s
                .get(
                    &format!(
                        "/api/v1/integrations/{}",
                        v["id"].as_str().unwrap_or_default()
                    ),
                    MASTER_KEY,
                )
                .await;
            // The catalog's own group and subid parameter apply (for custom,
            // the defaults of its settings are exactly these).
            if i["tracking_group"] != e["tracking_group"]["key"]
                || i["subid_param"] != e["subid_param"]
            {
                failures.push(format!(
                    "{key}: group/subid {} {}",
                    i["tracking_group"], i["subid_param"]
                ));
            }
            if e["postback"].is_object()
                && !i["postback_template"]
                    .as_str()
                    .is_some_and(|t| t.starts_with(postback))
            {
                failures.push(format!(
                    "{key}: postback_template {}",
                    i["postback_template"]
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "entries that do not install bare:\n{}",
            failures.join("\n")
        );

        // A bare custom install works end to end: its postback, keyed by the
        // default subid parameter's click id, validates a conversion.
        let cid = "AZDxon08eryN7wEjRWeJq0000042";
        let pv = "0190f1a2-7d3c-7abc-8def-000000000042";
        let body = json!({"property_id": pid, "events": [
            support::pageview(pv, "v_visitor_0042", "https://site.example/"),
            support::outbound_click("0190f1a2-7d3c-7abc-9def-000000000042", "v_visitor_0042",
                "https://site.example/", cid, &format!("https://network.example/offer?subid={cid}"), pv),
        ]});
        let (st, v) = s.collect(&body, &[("user-agent", CHROME_UA)]).await;
        assert_eq!(st, 202, "{v}");
        let (st, v) = s
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "custom"}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["settings"]["subid_param"], "subid", "{v}");
        assert_eq!(v["settings"]["tracking_group"], "custom", "{v}");
        let url = v["postback_url"].as_str().expect("postback_url").to_owned();
        // The click is written by the ingest queue: wait for it, with a
        // deadline, then post back once.
        wait_for_some(Duration::from_secs(20), "the click written", || async {
            let (st, _) = s
                .get(
                    &format!("/api/v1/properties/{pid}/clicks/{cid}"),
                    MASTER_KEY,
                )
                .await;
            (st == 200).then_some(())
        })
        .await;
        let r = s
            .http
            .get(format!(
                "{url}?click_id={cid}&payout=7.5&currency=EUR&txid=BARE-1"
            ))
            .send()
            .await
            .expect("postback");
        assert_eq!(r.status(), 200);
        let outcome: Value = r.json().await.expect("json");
        assert_eq!(outcome["status"], "validated", "{outcome}");
        s.stop().await;
    }
);

/// A server on `db` whose public URL is `public_url` (None: the default).
async fn server_with_public_url(b: Backend, public_url: Option<&str>) -> TestServer {
    let db = TestDb::new(b).await;
    let cfg = Config {
        public_url: public_url.map(|u| u.parse().expect("url")),
        ..support::config(&db)
    };
    TestServer::start_with(db, cfg).await
}

/// The overview of a new property on `domains`: (warning block, the
/// checklist's public-URL step).
async fn overview(s: &TestServer, b: &Browser, domains: &str) -> (Option<String>, String) {
    let pid = b.create_property("Site", domains, "EUR").await;
    let page = b.get(&format!("/p/{pid}")).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let warning = page
        .body
        .find("data-test=\"public-url-warning\"")
        .map(|at| {
            let end = at + page.body[at..].find("</div>").expect("warning end");
            page.body[at..end].to_owned()
        });
    let step_at = page
        .body
        .find("Tracking address reachable from your site")
        .expect("the checklist's public-URL step");
    let li = page.body[..step_at].rfind("<li").expect("step start");
    let end = step_at + page.body[step_at..].find("</li>").expect("step end");
    // The snippet is written with the public base either way.
    assert!(page.body.contains(&format!(
        "{}/t/{pid}.js",
        s.server.services.properties.public_base()
    )));
    (warning, page.body[li..end].to_owned())
}

/// The warning codes the API gives with a new property on `domain`.
async fn api_warnings(s: &TestServer, domain: &str) -> Vec<String> {
    let (st, v) = s
        .post(
            "/api/v1/properties",
            MASTER_KEY,
            json!({"name": "Site", "domains": [domain]}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let warnings = v["warnings"].as_array().expect("warnings").clone();
    for w in &warnings {
        assert!(w["message"].as_str().is_some_and(|m| !m.is_empty()), "{w}");
        assert!(
            w["fix"].as_str().unwrap().contains("CLICKTRAIL_PUBLIC_URL"),
            "{w}"
        );
    }
    warnings
        .iter()
        .map(|w| w["code"].as_str().unwrap().to_owned())
        .collect()
}

both!(
    public_url_that_cannot_track_is_said_plainly,
    |b: Backend| async move {
        // The default public URL: the server's own loopback address.
        let s = server_with_public_url(b, None).await;
        let browser = Browser::new(&s.base);
        browser.setup_and_login().await;
        let (warning, step) = overview(&s, &browser, "casino-reviews.co.uk").await;
        let warning = warning.expect("a loopback public URL with a live domain is warned about");
        assert!(
            warning.contains("data-code=\"public_url_local\""),
            "{warning}"
        );
        assert!(warning.contains(&s.base), "names the address: {warning}");
        assert!(
            warning.contains("CLICKTRAIL_PUBLIC_URL") && warning.contains("public_url"),
            "{warning}"
        );
        assert!(step.contains("data-done=\"false\""), "{step}");
        assert!(
            step.contains("CLICKTRAIL_PUBLIC_URL"),
            "says what to set: {step}"
        );
        // The API says it too, to whoever installs through it.
        assert_eq!(
            api_warnings(&s, "casino-reviews.co.uk").await,
            ["public_url_local"]
        );
        // A property served on this machine only is fine with a local server.
        let (warning, step) = overview(&s, &browser, "localhost").await;
        assert_eq!(warning, None);
        assert!(step.contains("data-done=\"true\""), "{step}");
        assert!(api_warnings(&s, "localhost").await.is_empty());
        s.stop().await;

        // Reachable, but plain http: mixed content on https sites.
        let s = server_with_public_url(b, Some("http://track.example.com")).await;
        let browser = Browser::new(&s.base);
        browser.setup_and_login().await;
        let (warning, step) = overview(&s, &browser, "casino-reviews.co.uk").await;
        let warning = warning.expect("plain http is warned about");
        assert!(
            warning.contains("data-code=\"public_url_plain_http\""),
            "{warning}"
        );
        assert!(warning.contains("mixed content"), "{warning}");
        assert!(step.contains("data-done=\"false\""), "{step}");
        assert_eq!(
            api_warnings(&s, "casino-reviews.co.uk").await,
            ["public_url_plain_http"]
        );
        s.stop().await;

        // https: nothing to say.
        let s = server_with_public_url(b, Some("https://track.example.com")).await;
        let browser = Browser::new(&s.base);
        browser.setup_and_login().await;
        let (warning, step) = overview(&s, &browser, "casino-reviews.co.uk").await;
        assert_eq!(warning, None);
        assert!(step.contains("data-done=\"true\""), "{step}");
        assert!(api_warnings(&s, "casino-reviews.co.uk").await.is_empty());
        s.stop().await;
    }
);

/// Runs `clicktrail serve` until it answers `/healthz`, stops it with
/// SIGTERM and returns everything it printed on stdout.
async fn first_run_output(db: &TestDb, public_url: Option<&str>) -> String {
    let mut serve = Serve::new(&db.url, &db.dir).env("CLICKTRAIL_LOG", "error");
    if let Some(u) = public_url {
        serve = serve.env("CLICKTRAIL_PUBLIC_URL", u);
    }
    let mut child = serve.start().await;
    let status = child.terminate().await;
    let out = child.printed().await;
    assert!(status.success(), "{status}: {out}");
    out
}

both!(
    first_run_message_warns_about_the_default_public_url,
    |b: Backend| async move {
        let db = TestDb::new(b).await;
        let out = first_run_output(&db, None).await;
        assert!(out.contains("First run."), "{out}");
        assert!(
            out.contains("WARNING: the public URL is http://127.0.0.1:"),
            "the default public URL goes unmentioned:\n{out}"
        );
        assert!(out.contains("(the default"), "{out}");
        assert!(out.contains("track nothing"), "{out}");
        assert!(
            out.contains("CLICKTRAIL_PUBLIC_URL"),
            "says what to set:\n{out}"
        );
        drop(db);

        let db = TestDb::new(b).await;
        let out = first_run_output(&db, Some("https://track.example.com")).await;
        assert!(out.contains("First run."), "{out}");
        assert!(out.contains("https://track.example.com/"), "{out}");
        assert!(!out.contains("WARNING"), "nothing to warn about:\n{out}");
        drop(db);
    }
);

both!(
    income_access_generated_url_pasted_whole,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let fake = FakeIncomeAccess::start().await.expect("fake Income Access");
        let key = fake.key();
        // What Reports -> API Reports shows: one URL with the key inside.
        let generated = format!(
            "{}?key={key}&reportname=ACIDReport&reportformat=csv&reportmerchantid=0",
            fake.report_url
        );

        // A different key beside it: which one is meant cannot be guessed.
        let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": "another-key-0000"},
                   "settings": {"api_url": generated}}),
        )
        .await;
        assert_eq!(st, 422, "{v}");
        assert_eq!(
            v["error"]["fields"][0]["field"], "credentials.security_key",
            "{v}"
        );
        assert_eq!(v["error"]["fields"][0]["code"], "conflicting_key", "{v}");
        assert!(
            !v.to_string().contains(&key),
            "the key is never echoed: {v}"
        );

        let (st, v) = s
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "galapartners", "settings": {"api_url": generated}}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let iid = v["id"].as_str().expect("id").to_owned();
        let (_, i) = s
            .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
            .await;
        assert_eq!(i["settings"]["api_url"], fake.report_url.as_str(), "{i}");
        assert_eq!(i["settings"]["report_name"], "ACIDReport", "{i}");
        assert_eq!(i["settings"]["report_format"], "csv", "{i}");
        assert!(i["credentials"]["security_key"].is_string(), "{i}");
        assert!(
            !i.to_string().contains(&key),
            "the key is stored encrypted, shown masked: {i}"
        );

        // The key taken from the URL is the one the poll sends.
        let poll = |iid: String| {
            let s = &s;
            async move {
                s.api(
                    Method::POST,
                    &format!("/api/v1/integrations/{iid}/poll"),
                    MASTER_KEY,
                    None,
                )
                .await
            }
        };
        let (st, p) = poll(iid.clone()).await;
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["poll"]["status"], "ok", "{p}");
        let sent = fake.handle.requests();
        let last = sent.last().expect("a report request");
        assert!(last.key_ok, "the poll sent the key taken from the URL");
        assert_eq!(last.param("reportname"), Some("ACIDReport"));
        assert_eq!(last.param("reportformat"), Some("csv"));

        // A new key generated later invalidates the old URL: pasting the new
        // URL replaces the stored key.
        fake.handle.set_key("fedcba9876543210fedcba9876543210");
        let (st, p) = poll(iid.clone()).await;
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["poll"]["error_code"], "no_permission", "{p}");
        let (st, v) = s
        .api(
            Method::PUT,
            &format!("/api/v1/integrations/{iid}"),
            MASTER_KEY,
            Some(json!({"settings": {"api_url": format!(
                "{}?key=fedcba9876543210fedcba9876543210&reportname=AccountReport&reportformat=xml",
                fake.report_url
            )}})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let (_, p) = poll(iid.clone()).await;
        assert_eq!(p["poll"]["status"], "ok", "{p}");
        let (_, i) = s
            .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
            .await;
        assert_eq!(i["settings"]["api_url"], fake.report_url.as_str(), "{i}");
        assert_eq!(i["settings"]["report_name"], "AccountReport", "{i}");

        // Only the key: the security key field still works.
        let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "incomeaccess", "credentials": {"security_key": "fedcba9876543210fedcba9876543210"},
                   "settings": {"api_url": fake.report_url}}),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        s.stop().await;
    }
);
