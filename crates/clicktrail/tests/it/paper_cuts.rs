//! Paper cuts of the dashboard and the API: the last poll in words (and as
//! an object in the API), a session's ad click ids as an object, domains
//! that are no host names refused by name, time zone and currency asked at
//! creation, mapping placeholders in the property's currency, and the
//! postback URL and "Last poll" shown only where they mean something.

use std::time::Duration;

use chrono::Utc;
use clicktrail_testkit::both;
use clicktrail_testkit::income_access::{Decimal, FakeIncomeAccess, FakeMode, FakePlayer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::{Backend, MASTER_KEY, TestServer, wait_for_some};

/// The inside of the first element after `marker` up to `end`.
fn section<'a>(body: &'a str, marker: &str, end: &str) -> &'a str {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {body}"))
        + marker.len();
    let rest = &body[at..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

async fn poll(t: &TestServer, iid: &str) -> Value {
    let (st, v) = t
        .api(
            Method::POST,
            &format!("/api/v1/integrations/{iid}/poll"),
            MASTER_KEY,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

both!(
    the_last_poll_in_words_and_objects_in_the_api,
    |backend: Backend| async move {
        let t = TestServer::start(backend).await;
        let b = Browser::new(&t.base);
        b.setup_and_login().await;
        let pid = b.create_property("Site", "site.example", "GBP").await;
        let fake = FakeIncomeAccess::start().await.expect("fake");
        let landing =
            "https://site.example/bonus?utm_source=google&utm_medium=cpc&gclid=Cj0_paper_cut";
        let cid = t.landing_click(&pid, 1, landing).await;
        // The report is ready before the install: the first poll, which the
        // install starts at once, reads all of it.
        let today = Utc::now().date_naive();
        fake.handle.add_player(FakePlayer::new("1001", &cid, today));
        fake.handle
            .add_commission("1001", today, Decimal::new(1250, 2));
        fake.handle.add_player(FakePlayer::new("1002", "", today));
        let (st, v) = t
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "galapartners", "credentials": {"security_key": fake.key()},
                   "settings": {"api_url": fake.report_url}}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        let iid = v["id"].as_str().expect("id").to_owned();
        let page = format!("/p/{pid}/integrations/{iid}");

        // The API: the last poll's summary is an object, not JSON in a string.
        let i = wait_for_some(Duration::from_secs(30), "the first poll", || async {
            let (_, i) = t
                .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
                .await;
            i["last_poll_at"].is_i64().then_some(i)
        })
        .await;
        let status = &i["last_poll_status"];
        assert!(status.is_object(), "{i}");
        assert_eq!(status["status"], "ok");
        assert!(status["rows"].as_u64().is_some_and(|n| n >= 2), "{status}");
        assert_eq!(status["outcomes"]["validated"], 2, "{status}");
        assert_eq!(status["outcomes"]["missing_click_id"], 1, "{status}");
        // So is a session's click ids, in the session as in its traffic source.
        let (_, c) = t
            .get(
                &format!("/api/v1/properties/{pid}/clicks/{cid}"),
                MASTER_KEY,
            )
            .await;
        assert_eq!(
            c["session"]["click_ids"],
            json!({"gclid": "Cj0_paper_cut"}),
            "{c}"
        );
        assert_eq!(c["traffic_source"]["click_ids"]["gclid"], "Cj0_paper_cut");

        // The dashboard: a sentence, never the JSON.
        let shown = b.get(&page).await;
        assert_eq!(shown.status, 200);
        let last = section(&shown.body, "data-test=\"last-poll\">", "</td>");
        assert!(last.starts_with("<time datetime=\""), "{last}");
        assert!(
            last.contains("just now</time>: ") || last.contains("minute ago</time>: "),
            "{last}"
        );
        assert!(
            last.contains(" rows, 2 conversions recorded, 1 not attributed (missing_click_id 1)"),
            "{last}"
        );
        assert!(!shown.body.contains("outcomes"), "no JSON on the page");
        // An API-only integration: no postback URL; mapping examples in GBP.
        assert!(!shown.body.contains("postback-url"));
        assert!(!shown.body.contains("/postback/"));
        assert!(
            shown
                .body
                .contains("placeholder=\"GBP\" aria-label=\"Fixed currency\"")
        );
        assert!(!shown.body.contains("placeholder=\"EUR\""));
        let install = b.get(&format!("/p/{pid}/catalog/galapartners")).await;
        assert!(
            install
                .body
                .contains("placeholder=\"GBP\" aria-label=\"Fixed currency\"")
        );

        // The conversion's page names the session's click ids in words.
        let (_, log) = t
            .get(
                &format!("/api/v1/properties/{pid}/conversions?status=validated"),
                MASTER_KEY,
            )
            .await;
        let conv = log["conversions"][0]["id"].as_str().expect("conversion");
        let detail = b.get(&format!("/p/{pid}/conversions/{conv}")).await;
        assert!(
            detail
                .body
                .contains("Ad click ids of the session: gclid <code>Cj0_paper_cut</code>"),
            "{}",
            detail.body
        );
        assert!(!detail.body.contains("{&quot;gclid"));

        // A failed poll: the error in words, with its code.
        fake.handle.set_mode(FakeMode::NoPermission(1));
        assert_eq!(poll(&t, &iid).await["poll"]["error_code"], "no_permission");
        let (_, i) = t
            .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
            .await;
        assert_eq!(i["last_poll_status"]["error_code"], "no_permission", "{i}");
        let failed = b.get(&page).await;
        let last = section(&failed.body, "data-test=\"last-poll\">", "</td>");
        assert!(
            last.contains("<span class=\"bad\">failed</span> — ")
                && last.ends_with("<span class=\"muted\">(<code>no_permission</code>)</span>"),
            "{last}"
        );
        let message = i["last_error"].as_str().expect("last_error");
        let escaped = message
            .replace('&', "&amp;")
            .replace('"', "&quot;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        assert!(last.contains(&escaped), "{last}");

        // A postback integration: its URL, and no "Last poll" anywhere.
        let (custom, postback_url) = t.install_custom(&pid).await;
        let custom_page = b.get(&format!("/p/{pid}/integrations/{custom}")).await;
        assert!(custom_page.body.contains("data-copy=\"postback-url\""));
        assert!(custom_page.body.contains(&postback_url));
        assert!(!custom_page.body.contains("Last poll"));
        assert!(!custom_page.body.contains("never"));
        let list = b.get(&format!("/p/{pid}/integrations")).await;
        assert!(!list.body.contains("never"), "{}", list.body);
        let custom_row = section(&list.body, &format!("/integrations/{custom}\""), "</tr>");
        assert!(
            custom_row
                .contains("title=\"This integration receives postbacks; it is not polled.\">–"),
            "{custom_row}"
        );
        let gala_row = section(&list.body, &format!("/integrations/{iid}\""), "</tr>");
        assert!(
            gala_row.contains("<time datetime=") && gala_row.contains("failed"),
            "{gala_row}"
        );
        t.stop().await;
    }
);

both!(
    domains_time_zone_and_currency,
    |backend: Backend| async move {
        let t = TestServer::start(backend).await;

        // The API: a value that is no host name is refused, named.
        for (bad, why) in [
            ("my casino site", "contains spaces"),
            ("casino", "has no dot"),
            ("my_casino.example", "'_'"),
        ] {
            let (st, v) = t
                .post(
                    "/api/v1/properties",
                    MASTER_KEY,
                    json!({"name": "Casino", "domains": ["ok.example", bad]}),
                )
                .await;
            assert_eq!(st, 422, "{v}");
            let f = &v["error"]["fields"][0];
            assert_eq!(
                (&f["field"], &f["code"]),
                (&json!("domains"), &json!("invalid_domain")),
                "{v}"
            );
            let message = f["message"].as_str().expect("message");
            assert!(
                message.starts_with(&format!("{bad:?} is not a host name")),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }

        // Time zone and currency at creation; the defaults are today's.
        let (st, v) = t
            .post(
                "/api/v1/properties",
                MASTER_KEY,
                json!({"name": "Plain", "domains": ["plain.example"]}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(
            (&v["settings"]["timezone"], &v["settings"]["currency"]),
            (&json!("UTC"), &json!("USD"))
        );
        let (st, v) = t
            .post(
                "/api/v1/properties",
                MASTER_KEY,
                json!({"name": "Casino", "domains": ["https://Casino.example:8443/bonus"],
                   "timezone": "Europe/Malta", "currency": "eur"}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["domains"], json!(["casino.example"]));
        assert_eq!(v["settings"]["timezone"], "Europe/Malta");
        assert_eq!(v["settings"]["currency"], "EUR");
        let id = v["id"].as_str().expect("id").to_owned();
        let (st, v) = t
            .post(
                "/api/v1/properties",
                MASTER_KEY,
                json!({"name": "Mars", "domains": ["mars.example"], "timezone": "Mars/Olympus",
                   "settings": {"timezone": "UTC"}, "currency": "EURO"}),
            )
            .await;
        assert_eq!(st, 422, "{v}");
        let fields: Vec<(&str, &str)> = v["error"]["fields"]
            .as_array()
            .expect("fields")
            .iter()
            .map(|f| (f["field"].as_str().unwrap(), f["code"].as_str().unwrap()))
            .collect();
        assert_eq!(
            fields,
            [
                ("currency", "invalid_currency"),
                ("timezone", "invalid_timezone")
            ]
        );
        // Changed alone, the time zone keeps the other settings.
        let (st, v) = t
            .api(
                Method::PATCH,
                &format!("/api/v1/properties/{id}"),
                MASTER_KEY,
                Some(json!({"timezone": "America/New_York"})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["settings"]["timezone"], "America/New_York");
        assert_eq!(v["settings"]["currency"], "EUR");

        // The dashboard's form: the same refusals, a time zone asked.
        let b = Browser::new(&t.base);
        b.setup_and_login().await;
        let form = b.get("/properties/new").await;
        assert!(
            form.body
                .contains("name=\"timezone\" type=\"text\" value=\"UTC\"")
        );
        assert!(form.body.contains("list=\"timezones\""));
        assert!(form.body.contains("<option value=\"Europe/Malta\">"));
        let r = b
            .submit(
                "/properties/new",
                "/properties/new",
                &[
                    ("name", "Casino"),
                    ("domains", "my casino site"),
                    ("currency", "EUR"),
                    ("timezone", "Europe/Atlantis"),
                ],
            )
            .await;
        assert_eq!(r.status, 422);
        assert!(r.has_error_for("domains") && r.has_error_for("timezone"));
        assert!(
            r.body
                .contains("&quot;my casino site&quot; is not a host name: it contains spaces"),
            "{}",
            r.body
        );
        let r = b
            .submit(
                "/properties/new",
                "/properties/new",
                &[
                    ("name", "Two sites"),
                    ("domains", "a.example b.example, c.example"),
                    ("currency", "inr"),
                    ("timezone", "Asia/Kolkata"),
                ],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
        let pid = r
            .location()
            .expect("location")
            .trim_start_matches("/p/")
            .split('?')
            .next()
            .expect("id")
            .to_owned();
        let (_, v) = t
            .get(&format!("/api/v1/properties/{pid}"), MASTER_KEY)
            .await;
        assert_eq!(v["domains"], json!(["a.example", "b.example", "c.example"]));
        assert_eq!(v["settings"]["timezone"], "Asia/Kolkata");
        assert_eq!(v["settings"]["currency"], "INR");
        let settings = b.get(&format!("/p/{pid}/settings")).await;
        assert!(
            settings
                .body
                .contains("name=\"timezone\" type=\"text\" value=\"Asia/Kolkata\"")
        );
        // A property made without a time zone (the form before it asked one)
        // is in UTC.
        let plain = b.create_property("Plain", "plain.example", "EUR").await;
        let (_, v) = t
            .get(&format!("/api/v1/properties/{plain}"), MASTER_KEY)
            .await;
        assert_eq!(v["settings"]["timezone"], "UTC");
        t.stop().await;
    }
);
