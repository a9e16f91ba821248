//! The dashboard's integration, destination, conversion-log, live-events
//! and link-checker pages against the real server, with local fakes of the
//! outside services.

use std::time::Duration;

use clicktrail_testkit::meta::FakeMeta;
use serde_json::json;

use crate::support::browser::{Browser, attr_after};
use crate::support::{self, Backend, TestServer, wait_for_some};

const CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";

async fn collect(t: &TestServer, body: serde_json::Value) {
    let r = t
        .http
        .post(t.url("/collect"))
        .header("user-agent", CHROME)
        .body(body.to_string())
        .send()
        .await
        .expect("collect");
    assert_eq!(r.status().as_u16(), 202);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalog_install_and_integration_page() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "example.com", "GBP").await;

    // The searchable grid.
    let grid = b.get(&format!("/p/{pid}/catalog")).await;
    assert_eq!(grid.status, 200);
    assert!(grid.body.contains("data-key=\"galapartners\""));
    assert!(grid.body.contains("data-key=\"clickbank\""));
    assert!(
        grid.body.contains("data-filter=\".netcard\""),
        "client-side search"
    );
    let searched = b.get(&format!("/p/{pid}/catalog?q=gala")).await;
    let gala_card = searched
        .body
        .find("data-key=\"galapartners\"")
        .expect("gala card");
    assert!(
        !searched.body[gala_card..gala_card + 80].contains("hidden"),
        "gala shown"
    );
    let cb = searched
        .body
        .find("data-key=\"clickbank\"")
        .expect("clickbank card");
    assert!(
        searched.body[cb..cb + 80].contains("hidden"),
        "clickbank hidden by the search"
    );

    // The integration page: technical details, standard conversions, steps.
    let page = b.get(&format!("/p/{pid}/catalog/galapartners")).await;
    assert_eq!(page.status, 200);
    let details = &page.body[page.body.find("id=\"technical-details\"").expect("details")..];
    assert!(details.contains("<code>incomeaccess</code>"));
    assert!(details.contains("<code>c</code>"));
    assert!(details.contains("API Integration"));
    let conv = &page.body[page
        .body
        .find("id=\"standard-conversions\"")
        .expect("conversions")..];
    assert!(conv.contains("OutboundClick") && conv.contains("Lead") && conv.contains("Purchase"));
    assert!(conv.contains("When a free registration is recorded in Gala Partners."));
    assert!(page.body.contains("security key"), "setup steps");
    assert!(page.body.contains("name=\"credentials.security_key\""));
    assert!(
        page.body
            .contains("name=\"m_source\" value=\"registration\""),
        "default mapping"
    );

    // Invalid install: errors next to the fields, nothing installed.
    let bad = b
        .submit(
            &format!("/p/{pid}/catalog/galapartners"),
            &format!("/p/{pid}/catalog/galapartners"),
            &[
                ("settings.api_url", "ftp://nope"),
                ("settings.poll_interval_minutes", "1"),
                ("m_source", "registration"),
                ("m_event", "Lead"),
                ("m_value", "none"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.has_error_for("credentials.security_key"));
    assert!(bad.has_error_for("settings.api_url"));
    assert!(bad.has_error_for("settings.poll_interval_minutes"));
    let bad_map = b
        .submit(
            &format!("/p/{pid}/catalog/galapartners"),
            &format!("/p/{pid}/catalog/galapartners"),
            &[
                ("credentials.security_key", "KEY123"),
                (
                    "settings.api_url",
                    "http://127.0.0.1:9/api/affreporting.asp",
                ),
                ("m_source", "registration"),
                ("m_event", "9 not a name"),
                ("m_value", "reported"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
            ],
        )
        .await;
    assert_eq!(bad_map.status, 422);
    assert!(bad_map.has_error_for("mapping.0"));

    // A valid install (the API URL refuses connections: the poll fails and
    // the page shows it).
    let ok = b
        .submit(
            &format!("/p/{pid}/catalog/galapartners"),
            &format!("/p/{pid}/catalog/galapartners"),
            &[
                ("credentials.security_key", "SECRETKEY123456"),
                (
                    "settings.api_url",
                    "http://127.0.0.1:9/api/affreporting.asp",
                ),
                ("m_source", "registration"),
                ("m_event", "Lead"),
                ("m_value", "none"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
                ("m_source", "commission"),
                ("m_event", "Purchase"),
                ("m_value", "reported"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let loc = ok.location().expect("location").to_owned();
    assert!(
        loc.contains("/integrations/") && loc.ends_with("done=installed"),
        "{loc}"
    );
    let ip = b.get(&loc).await;
    assert_eq!(ip.status, 200);
    assert!(ip.body.contains("Installed."));
    // Gala Partners is read through its API and takes no postback: no
    // postback URL to paste anywhere.
    assert!(!ip.body.contains("data-copy=\"postback-url\""));
    assert!(!ip.body.contains(&format!("{}/postback/", t.base)));
    assert!(
        !ip.body.contains("SECRETKEY123456"),
        "key never shown in clear"
    );
    assert!(ip.body.contains("SE…56"), "masked key shown");
    // Poll now: the failure is recorded and explained.
    let poll = b
        .submit(
            &loc,
            &format!("{}/poll", loc.split('?').next().unwrap()),
            &[],
        )
        .await;
    assert!(
        poll.status == 303 || poll.status == 409,
        "{}: {}",
        poll.status,
        poll.body
    );
    let after = b.get(loc.split('?').next().unwrap()).await;
    let last_error = attr_after(&after.body, "data-test=\"last-error\">").unwrap_or_default();
    assert!(!last_error.is_empty());
    assert!(
        !after
            .body
            .contains("data-test=\"last-error\"><span class=\"muted\">none"),
        "an error is shown"
    );

    // Event mapping editing: invalid row refused, valid saved.
    let base = loc.split('?').next().unwrap().to_owned();
    let bad = b
        .submit(
            &base,
            &format!("{base}/mapping"),
            &[
                ("m_source", ""),
                ("m_event", "Lead"),
                ("m_value", "reported"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("mapping.0"));
    let good = b
        .submit(
            &base,
            &format!("{base}/mapping"),
            &[
                ("m_source", "registration"),
                ("m_event", "CompleteRegistration"),
                ("m_value", "none"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "no"),
                ("m_source", "commission"),
                ("m_event", "Purchase"),
                ("m_value", "reported"),
                ("m_amount", ""),
                ("m_currency", ""),
                ("m_send", "yes"),
            ],
        )
        .await;
    assert_eq!(good.status, 303, "{}", good.body);
    let shown = b.get(&base).await;
    assert!(shown.body.contains("value=\"CompleteRegistration\""));
    // Settings: a bad URL is refused next to its field; a key left empty is kept.
    let bad = b
        .submit(
            &base,
            &base,
            &[("settings.api_url", "not a url"), ("status", "active")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("settings.api_url"));
    let paused = b
        .submit(
            &base,
            &base,
            &[
                (
                    "settings.api_url",
                    "http://127.0.0.1:9/api/affreporting.asp",
                ),
                ("status", "paused"),
            ],
        )
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    let list = b.get(&format!("/p/{pid}/integrations")).await;
    assert!(list.body.contains(">paused<"));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destinations_conversion_log_and_live_events() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "example.com", "EUR").await;
    let meta = FakeMeta::start("123456789", "GOODTOKEN0123456789")
        .await
        .expect("fake meta");

    // Destination form errors, next to the fields.
    let new = format!("/p/{pid}/destinations/new/meta_capi");
    let form = b.get(&new).await;
    assert!(form.body.contains("Pixel (dataset) id"));
    assert!(form.body.contains("Test event code"));
    let bad = b
        .submit(
            &new,
            &new,
            &[
                ("name", "Meta"),
                ("settings.pixel_id", "abc"),
                ("event_mapping", "Lead Purchase"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.has_error_for("event_mapping"));
    let bad = b
        .submit(
            &new,
            &new,
            &[("name", "Meta"), ("settings.pixel_id", "abc")],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.has_error_for("settings.pixel_id"));
    assert!(bad.has_error_for("credentials.access_token"));

    let ok = b
        .submit(
            &new,
            &new,
            &[
                ("name", "Meta"),
                ("settings.pixel_id", "123456789"),
                ("credentials.access_token", "GOODTOKEN0123456789"),
                ("settings.endpoint", &meta.base_url()),
                ("event_mapping", "Lead = Lead\nPurchase = Purchase"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let dpage = ok
        .location()
        .expect("location")
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let d = b.get(&dpage).await;
    assert!(d.body.contains(">active<"));
    assert!(!d.body.contains("GOODTOKEN0123456789"));

    // Send a test event: the platform's answer is shown.
    let test = b.submit(&dpage, &format!("{dpage}/test"), &[]).await;
    assert_eq!(test.status, 200);
    assert!(
        test.body.contains("data-test=\"test-result\""),
        "{}",
        test.body
    );
    assert!(
        test.body.contains("events_received") || test.body.contains("delivered"),
        "{}",
        test.body
    );

    // Pause and resume.
    let p = b
        .submit(&dpage, &format!("{dpage}/pause"), &[("paused", "true")])
        .await;
    assert_eq!(p.status, 303);
    assert!(b.get(&dpage).await.body.contains(">paused<"));
    let r = b
        .submit(&dpage, &format!("{dpage}/pause"), &[("paused", "false")])
        .await;
    assert_eq!(r.status, 303);
    assert!(b.get(&dpage).await.body.contains(">active<"));

    // A click, then conversions through the real postback URL.
    let page = "https://example.com/review?utm_source=facebook&utm_medium=paid_social&utm_campaign=spring&fbclid=fbc123";
    collect(&t, json!({"property_id": pid, "events": [
        {"event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView", "ts": chrono::Utc::now().timestamp_millis(), "visitor_id": "visitor-live-01", "url": page},
        {"event_id": uuid::Uuid::new_v4().to_string(), "name": "OutboundClick", "ts": chrono::Utc::now().timestamp_millis(), "visitor_id": "visitor-live-01", "url": page,
         "click_id": "liveclick000000001", "link": {"url": "https://track.net.example/?subid=liveclick000000001", "tracking_group": "net"}}
    ]})).await;
    let (status, integ) = t
        .api(reqwest::Method::POST, &format!("/api/v1/properties/{pid}/integrations"), support::MASTER_KEY,
            Some(json!({"catalog": "custom", "settings": {"tracking_group": "net", "subid_param": "subid"}})))
        .await;
    assert_eq!(status, 201, "{integ}");
    let postback = integ["postback_url"]
        .as_str()
        .expect("postback url")
        .to_owned();
    for q in [
        "subid=liveclick000000001&payout=25&currency=EUR&txid=A1",
        "subid=nosuchclick0000000&payout=5&currency=EUR&txid=A2",
    ] {
        let r = t
            .http
            .get(format!("{postback}?{q}"))
            .send()
            .await
            .expect("postback");
        assert_eq!(r.status().as_u16(), 200);
    }

    // The conversion log: badges, error hint, filters.
    let log = b.get(&format!("/p/{pid}/conversions")).await;
    assert_eq!(log.status, 200);
    assert!(log.body.contains("data-status=\"validated\""));
    assert!(log.body.contains("data-status=\"error\""));
    assert!(log.body.contains("unknown_click_id"));
    assert!(
        log.body.contains("The link was probably not AutoTagged"),
        "plain-language hint"
    );
    let only_errors = b.get(&format!("/p/{pid}/conversions?status=error")).await;
    assert!(!only_errors.body.contains("data-status=\"validated\""));
    let by_code = b
        .get(&format!("/p/{pid}/conversions?error_code=duplicate"))
        .await;
    assert!(!by_code.body.contains("data-conversion="));
    let bad_filter = b
        .get(&format!("/p/{pid}/conversions?status=nope&from=yesterday"))
        .await;
    assert_eq!(bad_filter.status, 422);
    assert!(bad_filter.has_error_for("status") && bad_filter.has_error_for("from"));

    // Its detail: attribution, raw payload, the delivery to Meta.
    let at = log
        .body
        .find("data-status=\"validated\" data-conversion=\"")
        .expect("validated row");
    let cid = attr_after(&log.body[at..], "data-conversion=\"").expect("id");
    let detail = wait_for_some(Duration::from_secs(10), "the delivery to Meta", || async {
        let page = b.get(&format!("/p/{pid}/conversions/{cid}")).await;
        page.body.contains(">delivered<").then_some(page)
    })
    .await;
    assert!(detail.body.contains("spring"), "campaign attribution");
    assert!(detail.body.contains("fbc"), "ad click ids");
    assert!(detail.body.contains("liveclick000000001"));
    assert!(
        detail.body.contains("&quot;payout&quot;") || detail.body.contains("payout"),
        "raw payload"
    );
    assert!(detail.body.contains(">delivered<"), "{}", detail.body);
    assert!(
        detail.body.contains("events_received"),
        "the platform's answer"
    );

    // A refused token on a real delivery: the destination needs attention,
    // a banner says so (and the test send shows the platform's refusal).
    meta.set_access_token("ANOTHERTOKEN000000000");
    let test = b.submit(&dpage, &format!("{dpage}/test"), &[]).await;
    assert_eq!(test.status, 200);
    assert!(test.body.contains("data-test=\"test-result\""));
    collect(&t, json!({"property_id": pid, "events": [
        {"event_id": uuid::Uuid::new_v4().to_string(), "name": "OutboundClick", "ts": chrono::Utc::now().timestamp_millis(), "visitor_id": "visitor-live-01", "url": page,
         "click_id": "liveclick000000002", "link": {"url": "https://track.net.example/?subid=liveclick000000002", "tracking_group": "net"}}
    ]})).await;
    let r = t
        .http
        .get(format!(
            "{postback}?subid=liveclick000000002&payout=7&currency=EUR&txid=A3"
        ))
        .send()
        .await
        .expect("postback");
    assert_eq!(r.status().as_u16(), 200);
    wait_for_some(
        Duration::from_secs(15),
        "the needs-attention banner",
        || async {
            let list = b.get(&format!("/p/{pid}/destinations")).await;
            list.body
                .contains("data-test=\"needs-attention\"")
                .then_some(())
        },
    )
    .await;
    assert!(
        b.get(&dpage)
            .await
            .body
            .contains("data-test=\"needs-attention\"")
    );

    // Live events: the page and its feed.
    let live = b.get(&format!("/p/{pid}/live")).await;
    assert!(live.body.contains("liveclick000000001"));
    let feed = b.get(&format!("/p/{pid}/live.json")).await;
    let v: serde_json::Value = serde_json::from_str(&feed.body).expect("json");
    assert!(v["events"].as_array().is_some_and(|e| e.len() >= 3), "{v}");
    let cursor = v["cursor"].as_str().expect("cursor").to_owned();
    let empty = b.get(&format!("/p/{pid}/live.json?after={cursor}")).await;
    let v: serde_json::Value = serde_json::from_str(&empty.body).expect("json");
    assert_eq!(v["events"].as_array().map(Vec::len), Some(0));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_checker_lists_links_and_their_groups() {
    // A page of "the site", served locally.
    let html = r#"<html><body>
        <a href="https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1">Gala</a>
        <a href="https://www.clickbank.example/x" data-tracking-group="none">opted out</a>
        <a href="https://offer.example/?c=--CLICK-ID--">token</a>
        <a href="/go/gala">redirect plugin</a>
        <a href="https://hop.clickbank.net/?affiliate=me">clickbank</a>
    </body></html>"#;
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(move || async move { axum::response::Html(html) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Local", "127.0.0.1", "EUR").await;
    let (status, _) = t
        .api(reqwest::Method::POST, &format!("/api/v1/properties/{pid}/integrations"), support::MASTER_KEY,
            Some(json!({"catalog": "galapartners", "credentials": {"security_key": "K1234567890"}, "settings": {"api_url": "http://127.0.0.1:9/affreporting.asp"}})))
        .await;
    assert_eq!(status, 201);

    let page = format!("/p/{pid}/link-checker");
    let bad = b
        .submit(&page, &page, &[("url", "https://elsewhere.example/")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("url"));
    let bad = b.submit(&page, &page, &[("url", "not a url")]).await;
    assert!(bad.has_error_for("url"));

    let r = b
        .submit(&page, &page, &[("url", &format!("http://{addr}/page"))])
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("5 link(s), 2 AutoTagged"), "{}", r.body);
    let gala = &r.body[r.body.find("C.ashx?btag=a_1").unwrap()..];
    assert!(gala[..gala.find("</tr>").unwrap()].contains("<code>incomeaccess</code>"));
    assert!(gala.contains("c=CLICKID_PREVIEW"), "tagged preview");
    assert!(r.body.contains("AutoScan"), "the /go/ link");
    let cb = &r.body[r.body.find("hop.clickbank.net").unwrap()..];
    assert!(
        cb[..cb.find("</tr>").unwrap()].contains("not tagged"),
        "a known network that is not installed"
    );
    t.stop().await;
}
