//! Conversions in, end to end on SQLite and PostgreSQL: postbacks (every
//! outcome code, repeats, reversals, body forms), the Income Access
//! connector against the fake server, the conversion log, and direct
//! linking through `/go/`.

use std::time::{Duration, Instant};

use chrono::Utc;
use clicktrail_testkit::both;
use clicktrail_testkit::income_access::{Decimal, FakeIncomeAccess, FakeMode, FakePlayer};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    self, Backend, CHROME_UA, MASTER_KEY, TestServer, pageview, urlenc, wait_for_some,
};

/// A landing from Google Ads (one gclid per visitor `n`).
fn google_landing(n: u32) -> String {
    format!(
        "https://site.example/bonus?utm_source=google&utm_medium=cpc&utm_campaign=bingo&gclid=Cj0_gclid_{n}"
    )
}

async fn postback(s: &TestServer, url: &str, query: &str) -> (u16, Value) {
    let r = s.http.get(format!("{url}?{query}")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

both!(postback_outcomes, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let (_, url) = s.install_custom(&pid).await;
    let cid = s.landing_click(&pid, 1, &google_landing(1)).await;

    // Ten identical postbacks: one conversion, nine duplicates.
    let q = format!("sub1={cid}&payout=12.50&currency=eur&txid=T-1&event=sale");
    let mut statuses = Vec::new();
    for _ in 0..10 {
        let (st, v) = postback(&s, &url, &q).await;
        assert_eq!(st, 200, "{v}");
        statuses.push((
            v["status"].as_str().unwrap().to_owned(),
            v["error_code"].as_str().map(str::to_owned),
        ));
    }
    assert_eq!(statuses[0], ("validated".to_owned(), None));
    assert!(
        statuses[1..]
            .iter()
            .all(|x| x == &("error".to_owned(), Some("duplicate".to_owned()))),
        "{statuses:?}"
    );

    let ts_before = (Utc::now() - chrono::Duration::hours(2)).timestamp();
    let ts_late = (Utc::now() + chrono::Duration::days(40)).timestamp();
    let cases = [
        ("payout=1&txid=T-2".to_string(), "missing_click_id"),
        (
            "clickid=QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ&txid=T-3".to_string(),
            "unknown_click_id",
        ),
        (
            format!("subid={cid}&txid=T-4&event=mystery"),
            "unmapped_event",
        ),
        (
            format!("subid={cid}&txid=T-5&timestamp={ts_before}"),
            "before_click",
        ),
        (
            format!("subid={cid}&txid=T-6&timestamp={ts_late}"),
            "outside_window",
        ),
        (format!("subid={cid}&status=reversed"), "invalid_payload"),
        ("subid={clickid}&txid=T-7".to_string(), "missing_click_id"),
    ];
    for (q, code) in &cases {
        let (st, v) = postback(&s, &url, q).await;
        assert_eq!(st, 200, "{q}: {v}");
        assert_eq!(v["error_code"], *code, "{q}: {v}");
    }
    // A reversal adjusts the earlier conversion; it is not a new one.
    let (st, v) = postback(
        &s,
        &url,
        &format!("sub1={cid}&txid=T-1&event=sale&status=reversed"),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("adjustment")), "{v}");
    // Form and JSON bodies.
    let r = s
        .http
        .post(&url)
        .form(&[("sub1", cid.as_str()), ("amount", "3"), ("order_id", "T-8")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "validated");
    let r = s
        .http
        .post(&url)
        .json(&json!({"clickid": cid, "revenue": 4.5, "trans_id": "T-9", "goal": "lead"}))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "validated");
    // What cannot be read is a 4xx; an unknown token a 404.
    let (st, v) = postback(&s, &url, &format!("sub1={cid}&payout=lots")).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (400, Some("invalid_value"))
    );
    let (st, _) = postback(&s, &format!("{}/postback/nope", s.base), "x=1").await;
    assert_eq!(st, 404);

    // The conversion log: newest first, filters, hints, attribution.
    let (st, log) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?limit=100"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(st, 200);
    let entries = log["conversions"].as_array().unwrap();
    assert_eq!(entries.len(), 10 + cases.len() + 3);
    let first = entries
        .iter()
        .find(|e| e["transaction_id"] == "T-1" && e["status"] == "validated")
        .unwrap();
    assert_eq!(first["event_name"], "Purchase");
    assert_eq!(first["value"], 12.5);
    assert_eq!(
        first["adjusted_value"], 0.0,
        "the reversal took the whole value back"
    );
    assert_eq!(first["currency"], "EUR");
    assert_eq!(first["attribution"]["source"], "google");
    assert_eq!(first["attribution"]["channel"], "paid_search");
    assert_eq!(first["attribution"]["campaign"], "bingo");
    let (_, errs) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?error_code=unknown_click_id"),
            MASTER_KEY,
        )
        .await;
    let e = &errs["conversions"][0];
    assert!(e["hint"].as_str().unwrap().contains("AutoTag"), "{e}");
    assert_eq!(errs["conversions"].as_array().unwrap().len(), 1);
    // Cursor pagination walks everything once.
    let mut seen = 0;
    let mut cursor = String::new();
    loop {
        let (_, page) = s
            .get(
                &format!("/api/v1/properties/{pid}/conversions?limit=4&cursor={cursor}"),
                MASTER_KEY,
            )
            .await;
        seen += page["conversions"].as_array().unwrap().len();
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, entries.len());
    let (st, v) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?status=bogus"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("validation_failed"))
    );
    s.stop().await;
});

both!(income_access_end_to_end, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let fake = FakeIncomeAccess::start().await.unwrap();
    let cid = s.landing_click(&pid, 2, &google_landing(2)).await;
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": fake.key()},
                   "settings": {"api_url": fake.report_url}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let iid = v["id"].as_str().unwrap().to_owned();
    let key = fake.key();
    assert!(!v.to_string().contains(&key), "credentials are masked");

    let today = Utc::now().date_naive();
    fake.handle.add_player(FakePlayer::new("1001", &cid, today));
    fake.handle
        .add_commission("1001", today, Decimal::new(102, 2));
    fake.handle.add_player(FakePlayer::new("1002", "", today));
    let (st, p) = poll(&s, &iid).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["poll"]["status"], "ok", "{p}");
    let (_, log) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?status=validated"),
            MASTER_KEY,
        )
        .await;
    let mut names: Vec<String> = log["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["Lead", "Purchase"]);
    for e in log["conversions"].as_array().unwrap() {
        assert_eq!(e["click_id"], cid);
        assert_eq!(e["attribution"]["channel"], "paid_search");
        assert_eq!(e["attribution"]["source"], "google");
        assert_eq!(e["source_kind"], "api");
    }
    let purchase = log["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_name"] == "Purchase")
        .unwrap();
    assert_eq!(purchase["value"], 1.02);
    assert_eq!(purchase["currency"], "GBP");
    // The click's session carries the gclid that Google Ads will need.
    let (_, c) = s
        .get(
            &format!("/api/v1/properties/{pid}/clicks/{cid}"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(c["traffic_source"]["click_ids"]["gclid"], "Cj0_gclid_2");
    // The player without a click id is logged, not dropped.
    let (_, miss) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?error_code=missing_click_id"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(miss["conversions"].as_array().unwrap().len(), 1);

    // Re-polling the same data adds nothing.
    let before = count(&s, &pid).await;
    assert_eq!(poll(&s, &iid).await.1["poll"]["status"], "ok");
    assert_eq!(count(&s, &pid).await, before);
    // A rise is a Purchase worth the rise; a fall an adjustment.
    fake.handle
        .add_commission("1001", today, Decimal::new(50, 2));
    poll(&s, &iid).await;
    let (_, log) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?status=validated"),
            MASTER_KEY,
        )
        .await;
    let mut values: Vec<f64> = log["conversions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event_name"] == "Purchase")
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    values.sort_by(f64::total_cmp);
    assert_eq!(values, [0.5, 1.02]);
    fake.handle
        .add_commission("1001", today, Decimal::new(-30, 2));
    poll(&s, &iid).await;
    let (_, adj) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?status=adjustment"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(adj["conversions"].as_array().unwrap().len(), 1, "{adj}");
    assert_eq!(adj["conversions"][0]["value"], -0.3);

    // A wrong key: the integration says what to do.
    fake.handle.set_mode(FakeMode::NoPermission(1));
    let (_, p) = poll(&s, &iid).await;
    assert_eq!(p["poll"]["error_code"], "no_permission");
    let (_, i) = s
        .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
        .await;
    assert_eq!(i["last_error_code"], "no_permission");
    assert!(i["last_error"].as_str().unwrap().contains("IP"), "{i}");
    assert_eq!(i["status"], "error");
    fake.handle.set_mode(FakeMode::HtmlErrorPage);
    assert_eq!(
        poll(&s, &iid).await.1["poll"]["error_code"],
        "html_error_page"
    );
    fake.handle.set_mode(FakeMode::Normal);
    assert_eq!(poll(&s, &iid).await.1["poll"]["status"], "ok");
    let (_, i) = s
        .get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
        .await;
    assert_eq!(i["status"], "active");
    // Install validation.
    let (st, v) = s
        .post(&format!("/api/v1/properties/{pid}/integrations"), MASTER_KEY,
              json!({"catalog": "galapartners", "credentials": {"security_key": "k"}, "settings": {"api_url": "ftp://x"}}))
        .await;
    assert_eq!(st, 422, "{v}");
    let (st, _) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "nope"}),
        )
        .await;
    assert_eq!(st, 422);
    s.stop().await;
});

both!(direct_linking, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let (iid, url) = s.install_custom(&pid).await;
    let (st, l) = s
        .post(&format!("/api/v1/properties/{pid}/links"), MASTER_KEY,
              json!({"slug": "bingo-offer", "destination_url": "https://offer.example/land?a=1&sub1=#top", "integration": iid}))
        .await;
    assert_eq!(st, 201, "{l}");
    let (st, _) = s
        .post(
            &format!("/api/v1/properties/{pid}/links"),
            MASTER_KEY,
            json!({"slug": "bingo-offer", "destination_url": "https://offer.example/"}),
        )
        .await;
    assert_eq!(st, 409);
    let r = s
        .http
        .get(s.url("/go/bingo-offer?utm_source=tiktok&utm_medium=paid&ttclid=TT_123"))
        .header("user-agent", CHROME_UA)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302);
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with("_ctv=")
    );
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(
        loc.starts_with("https://offer.example/land?a=1&sub1="),
        "{loc}"
    );
    assert!(loc.ends_with("#top"), "{loc}");
    let cid = loc
        .split("sub1=")
        .nth(1)
        .unwrap()
        .split('#')
        .next()
        .unwrap()
        .to_owned();
    let (st, c) = s
        .get(
            &format!("/api/v1/properties/{pid}/clicks/{cid}"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["click"]["origin"], "redirect");
    assert_eq!(c["traffic_source"]["source"], "tiktok");
    assert_eq!(c["traffic_source"]["click_ids"]["ttclid"], "TT_123");
    let (_, v) = postback(&s, &url, &format!("sub1={cid}&payout=5&txid=G-1")).await;
    assert_eq!(v["status"], "validated");
    assert_eq!(
        s.http.get(s.url("/go/nope")).send().await.unwrap().status(),
        404
    );
    s.stop().await;
});

both!(tag_and_autoscan, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s
        .property(&["127.0.0.1", "localhost", "site.example"])
        .await;
    let r = s
        .http
        .get(s.url(&format!("/t/{pid}.js")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let body = r.text().await.unwrap();
    assert!(!body.contains("__CLICKTRAIL_CONFIG__"));
    assert!(body.contains("\"groups\":[]"), "no integration yet");
    let r = s
        .http
        .get(s.url(&format!("/t/{pid}.js")))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    // Installing an integration changes the served configuration at once.
    s.install_custom(&pid).await;
    let (st, _) = s.post(&format!("/api/v1/properties/{pid}/integrations"), MASTER_KEY,
        json!({"catalog": "galapartners", "credentials": {"security_key": "0123456789abcdef0123456789abcdef"},
               "settings": {"api_url": "http://127.0.0.1:9/api/affreporting.asp"}})).await;
    assert_eq!(st, 201);
    let body = s
        .http
        .get(s.url(&format!("/t/{pid}.js")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("\"incomeaccess\"") && body.contains("\"mynet\""),
        "groups baked in"
    );
    let r = s
        .http
        .get(s.url("/t/doesnotexist0000.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().starts_with("/* clicktrail"));

    // AutoScan: a same-site redirect plugin leading to an Income Access
    // link; the affiliate tracker itself is never requested.
    let site = axum::Router::new()
        .route(
            "/go/gala",
            axum::routing::any(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [(
                        "location",
                        "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c=",
                    )],
                )
            }),
        )
        .route(
            "/go/plain",
            axum::routing::any(|| async {
                (
                    axum::http::StatusCode::FOUND,
                    [("location", "https://example.org/")],
                )
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });
    let scan = |q: String| {
        s.http
            .get(s.url(&format!("/t/{pid}/scan?{q}")))
            .header("origin", "http://127.0.0.1")
            .send()
    };
    let u1 = format!("http://127.0.0.1:{port}/go/gala");
    let u2 = format!("http://localhost:{port}/go/gala");
    let u3 = "http://evil.example/go/x".to_owned();
    let q = format!("u={}&u={}&u={}", urlenc(&u1), urlenc(&u2), urlenc(&u3));
    let r = scan(q).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "http://127.0.0.1"
    );
    let v: Value = r.json().await.unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["url"], u1);
    assert_eq!(results[0]["group"], "incomeaccess");
    assert_eq!(results[2]["error"], "domain_not_allowed");
    s.stop().await;
});

async fn poll(s: &TestServer, iid: &str) -> (u16, Value) {
    s.api(
        Method::POST,
        &format!("/api/v1/integrations/{iid}/poll"),
        MASTER_KEY,
        None,
    )
    .await
}

async fn count(s: &TestServer, pid: &str) -> usize {
    let (_, l) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?limit=500"),
            MASTER_KEY,
        )
        .await;
    l["conversions"].as_array().unwrap().len()
}

// A chunk decided beside the writer (a poller's) may be overtaken by a
// commit before it is written: the writer decides such drafts again.
both!(
    drafts_decided_early_are_checked_again,
    |b: Backend| async move {
        use clicktrail_domain::conversion::{SourceEvent, SourceKind, SourceStatus};
        use clicktrail_engine::conversions::{Pending, decide_batch};
        use std::sync::Arc;

        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let (iid, _) = s.install_custom(&pid).await;
        let state = &s.server;
        let integration = clicktrail_store::integrations::get(&state.services.db, &iid)
            .await
            .unwrap()
            .unwrap();
        let property = state
            .services
            .properties
            .get(&clicktrail_domain::PropertyId::parse(&pid).unwrap())
            .await
            .unwrap()
            .unwrap();
        let cid = "AZDxon08eryN7wEjRWeJq0000042";
        let pending = Pending {
            property,
            mapping: Arc::new(serde_json::from_str(&integration.event_mapping).unwrap()),
            integration: Some(Arc::new(integration)),
            received_at_ms: support::now_ms(),
            event_id: None,
            event: SourceEvent {
                kind: SourceKind::Postback,
                source_event: "sale".into(),
                click_id: Some(cid.into()),
                transaction_id: Some("T-early".into()),
                value: Some(clicktrail_domain::money::Amount::from_micros(10_000_000)),
                currency: None,
                status: SourceStatus::Approved,
                occurred_at: None,
                adjusts: None,
                raw: Default::default(),
            },
            forced_error: None,
            session_id: None,
        };
        let early = decide_batch(
            &mut clicktrail_store::Reads::Pool(&state.services.db),
            &[&pending],
        )
        .await
        .unwrap();
        assert_eq!(early[0].row.error_code.as_deref(), Some("unknown_click_id"));
        let decided = state.conversions.decide(vec![pending]).await.unwrap();
        // The click is recorded after the decision, before the write.
        assert_eq!(s.landing_click(&pid, 42, &google_landing(42)).await, cid);
        let written = state
            .conversions
            .submit_decided(decided, None)
            .await
            .unwrap();
        assert_eq!(
            written[0].outcome(),
            (clicktrail_domain::conversion::LogStatus::Validated, None)
        );
        let (_, log) = s
            .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
            .await;
        assert_eq!(log["conversions"][0]["attribution"]["source"], "google");
        s.stop().await;
    }
);

both!(onsite_conversions, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    // On-site conversions are an opt-in, from browsers on the site.
    let (st, v) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/properties/{pid}"),
            MASTER_KEY,
            Some(json!({"settings": {"onsite": {"enabled": true, "events": ["Lead"]}}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let origin = ("origin", "https://site.example");
    let pv = "0190f1a2-7d3c-7abc-8def-00000000aaaa";
    let lead = "0190f1a2-7d3c-7abc-8def-00000000bbbb";
    let landing =
        "https://site.example/?utm_source=facebook&utm_medium=paid_social&fbclid=IwAR_onsite";
    let body = json!({"property_id": pid, "events": [
        pageview(pv, "v_onsite_0001", landing),
        {"event_id": lead, "name": "Lead", "ts": support::now_ms(), "visitor_id": "v_onsite_0001",
         "url": "https://site.example/thanks", "value": 7.5, "currency": "EUR", "pageview_id": pv},
        {"event_id": "0190f1a2-7d3c-7abc-8def-00000000cccc", "name": "Scrolled", "ts": support::now_ms(),
         "visitor_id": "v_onsite_0001", "url": "https://site.example/thanks"},
    ]});
    assert_eq!(
        s.collect(&body, &[("user-agent", CHROME_UA), origin])
            .await
            .0,
        202
    );
    // The job follows committed events.
    let entries = wait_for_some(Duration::from_secs(5), "the on-site conversion", || async {
        let (_, log) = s
            .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
            .await;
        let entries = log["conversions"].as_array().cloned().unwrap_or_default();
        (!entries.is_empty()).then_some(entries)
    })
    .await;
    assert_eq!(
        entries.len(),
        1,
        "only the conversion event becomes a conversion: {entries:?}"
    );
    let e = &entries[0];
    assert_eq!(e["status"], "validated");
    assert_eq!(e["event_name"], "Lead");
    assert_eq!(
        e["event_id"], lead,
        "the browser pixel's event id, for de-duplication"
    );
    assert_eq!(e["value"], 7.5);
    assert_eq!(e["click_id"], Value::Null);
    assert_eq!(e["attribution"]["source"], "facebook");
    // Sending the same beacon again changes nothing.
    assert_eq!(
        s.collect(&body, &[("user-agent", CHROME_UA), origin])
            .await
            .1["duplicates"],
        3
    );
    // A second follower (as another process would run) driven until it has
    // caught up: a pass may lose the cursor race to the server's own one,
    // and each pass has committed what it wrote when it returns. Either way
    // nothing doubles.
    let mut follower = Default::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !matches!(
        clicktrail_engine::onsite::run_once(&s.server.onsite, &mut follower).await,
        Ok(0)
    ) {
        assert!(
            Instant::now() < deadline,
            "a second follower never caught up"
        );
    }
    assert_eq!(count(&s, &pid).await, 1);
    s.stop().await;
});
