//! Issue 14, item 5: "Test connection" of an Income Access integration
//! before it is saved, over the API (`POST /api/v1/integrations/test` and
//! `POST /api/v1/properties/{id}/integrations/test`) and the dashboard,
//! against the testkit's fake Income Access (and a closed port, a web
//! server that is not Income Access, a private address): each outcome, the
//! address to whitelist, the key never echoed, nothing saved.

use crate::support::browser::Browser;
use crate::support::{self, Backend, MASTER_KEY, TestDb, TestServer};
use chrono::{Days, NaiveDate, Utc};
use clicktrail_testkit::income_access::{Decimal, FAKE_KEY, FakeIncomeAccess, FakePlayer};
use serde_json::{Value, json};

const EGRESS: &str = "203.0.113.7";
const WRONG_KEY: &str = "ffffffffffffffffffffffffffffffff";

fn yesterday() -> NaiveDate {
    let today = Utc::now().date_naive();
    today.checked_sub_days(Days::new(1)).unwrap_or(today)
}

/// A SQLite server whose configuration declares its outbound address.
async fn server(allow_private_networks: bool) -> TestServer {
    let db = TestDb::new(Backend::Sqlite).await;
    let mut cfg = support::config(&db);
    cfg.egress_ips = vec![EGRESS.parse().expect("ip")];
    cfg.allow_private_networks = allow_private_networks;
    // Nothing polls behind the tests' back.
    cfg.polling.enabled = false;
    TestServer::start_with(db, cfg).await
}

/// The fake with two players active yesterday.
async fn fake_with_rows() -> FakeIncomeAccess {
    let fake = FakeIncomeAccess::start().await.expect("fake");
    let day = yesterday();
    fake.handle
        .add_player(FakePlayer::new("1001", "AZDxon08eryN7wEjRWeJq0000001", day));
    fake.handle
        .add_commission("1001", day, Decimal::new(1250, 2));
    fake.handle.add_player(FakePlayer::new("1002", "", day));
    fake
}

fn body(pid: &str, key: &str, api_url: &str) -> Value {
    json!({"property_id": pid, "catalog": "galapartners",
           "credentials": {"security_key": key}, "settings": {"api_url": api_url}})
}

async fn test(s: &TestServer, body: Value) -> (u16, Value) {
    s.post("/api/v1/integrations/test", MASTER_KEY, body).await
}

async fn installed(s: &TestServer, pid: &str) -> usize {
    let (st, v) = s
        .get(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["integrations"].as_array().map_or(0, Vec::len)
}

/// A web server on loopback that answers every request with `status` and
/// an HTML page, as a wrong URL would.
async fn html_server(status: u16) -> (String, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move || async move {
        (
            axum::http::StatusCode::from_u16(status).expect("status"),
            [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
            "<!DOCTYPE html><html><head><title>Welcome</title></head><body><h1>It works!</h1></body></html>",
        )
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/api/affreporting.asp"), task)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_with_rows_and_saves_nothing() {
    let s = server(true).await;
    let pid = s.property(&["site.example"]).await;
    let fake = fake_with_rows().await;

    let (st, v) = test(&s, body(&pid, &fake.key(), &fake.report_url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "works", "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(v["rows"], 2, "two players, the totals row dropped: {v}");
    let day = yesterday();
    assert_eq!(v["day"], day.format("%Y-%m-%d").to_string());
    assert_eq!(v["egress_ips"], json!([EGRESS]));
    assert!(v["egress_hint"].as_str().unwrap().contains(EGRESS), "{v}");
    assert!(
        v["request"].as_str().unwrap().contains("key=REDACTED"),
        "{v}"
    );
    assert!(!v.to_string().contains(FAKE_KEY), "the key is never echoed");

    // One request, for one day, with the poll's parameters.
    let reqs = fake.handle.requests();
    assert_eq!(reqs.len(), 1);
    let d = day.format("%Y/%m/%d").to_string();
    assert_eq!(reqs[0].param("reportstartdate"), Some(d.as_str()));
    assert_eq!(reqs[0].param("reportenddate"), Some(d.as_str()));
    assert_eq!(reqs[0].param("reportname"), Some("AccountReport"));
    assert!(reqs[0].key_ok);
    assert_eq!(installed(&s, &pid).await, 0, "a test saves nothing");

    // The per-property route takes an install's body; the back office's
    // whole report URL carries the key.
    let generated = format!(
        "{}?key={}&reportname=AccountReport&reportformat=csv&reportmerchantid=0",
        fake.report_url,
        fake.key()
    );
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations/test"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "settings": {"api_url": generated}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["outcome"].as_str(), v["rows"].as_u64()),
        (Some("works"), Some(2))
    );
    assert!(!v.to_string().contains(FAKE_KEY), "{v}");
    assert_eq!(fake.handle.requests()[1].param("reportformat"), Some("csv"));

    // An empty day still works.
    let empty = FakeIncomeAccess::start().await.expect("fake");
    let (st, v) = test(&s, body(&pid, &empty.key(), &empty.report_url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (v["outcome"].as_str(), v["rows"].as_u64()),
        (Some("works"), Some(0))
    );
    assert_eq!(installed(&s, &pid).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_key_and_ip_not_whitelisted() {
    let s = server(true).await;
    let pid = s.property(&["site.example"]).await;
    let fake = fake_with_rows().await;

    let (st, v) = test(&s, body(&pid, WRONG_KEY, &fake.report_url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "wrong_key", "{v}");
    assert_eq!(v["ok"], false);
    assert!(v.get("rows").is_none(), "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("security key"),
        "{v}"
    );
    assert!(
        !v.to_string().contains(WRONG_KEY),
        "not even a wrong key is echoed"
    );
    assert_eq!(fake.handle.request_count(), 1);

    // A key that cannot be one is refused as an install refuses it,
    // without asking the program.
    let (st, v) = test(&s, body(&pid, "not a key", &fake.report_url)).await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["error"]["fields"][0]["field"], "credentials.security_key",
        "{v}"
    );
    assert!(!v.to_string().contains("not a key"), "{v}");
    assert_eq!(fake.handle.request_count(), 1, "no request");

    // The back office whitelists another address than ours (127.0.0.1).
    fake.handle
        .set_whitelist(Some(vec!["198.51.100.1".parse().expect("ip")]));
    let (st, v) = test(&s, body(&pid, &fake.key(), &fake.report_url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "ip_not_whitelisted", "{v}");
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains(EGRESS) && msg.contains("whitelist"), "{msg}");
    assert_eq!(v["egress_ips"], json!([EGRESS]));
    assert!(!v.to_string().contains(FAKE_KEY), "{v}");
    assert_eq!(installed(&s, &pid).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_not_income_access() {
    let s = server(true).await;
    let pid = s.property(&["site.example"]).await;

    // A closed port: bound, then released.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let (st, v) = test(
        &s,
        body(
            &pid,
            FAKE_KEY,
            &format!("http://127.0.0.1:{port}/api/affreporting.asp"),
        ),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "unreachable", "{v}");

    // A web server that is not Income Access: a page, or a 404.
    let (url, _page) = html_server(200).await;
    let (st, v) = test(&s, body(&pid, FAKE_KEY, &url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "not_income_access", "{v}");
    assert!(v["message"].as_str().unwrap().contains("API URL"), "{v}");
    let (url, _missing) = html_server(404).await;
    let (st, v) = test(&s, body(&pid, FAKE_KEY, &url)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "not_income_access", "{v}");
    assert!(!v.to_string().contains(FAKE_KEY), "{v}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_addresses_are_refused_like_an_install() {
    let s = server(false).await;
    let pid = s.property(&["site.example"]).await;
    for url in [
        "http://127.0.0.1/api/affreporting.asp",
        "http://10.1.2.3/api/affreporting.asp",
        "http://localhost/api/affreporting.asp",
    ] {
        let (st, t) = test(&s, body(&pid, FAKE_KEY, url)).await;
        let (ist, i) = s
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "galapartners", "credentials": {"security_key": FAKE_KEY},
                       "settings": {"api_url": url}}),
            )
            .await;
        assert_eq!((st, ist), (422, 422), "{t} / {i}");
        assert_eq!(
            t["error"], i["error"],
            "the test refuses what an install refuses"
        );
        assert_eq!(t["error"]["fields"][0]["field"], "settings.api_url", "{t}");
        assert_eq!(
            t["error"]["fields"][0]["code"], "address_not_allowed",
            "{t}"
        );
    }
    assert_eq!(installed(&s, &pid).await, 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_before_any_request() {
    let s = server(true).await;
    let pid = s.property(&["site.example"]).await;
    let fake = fake_with_rows().await;

    // The install's field problems, the same ones.
    let bad =
        json!({"catalog": "galapartners", "settings": {"api_url": "ftp://x", "window_days": 0}});
    let (st, t) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations/test"),
            MASTER_KEY,
            bad.clone(),
        )
        .await;
    let (ist, i) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            bad,
        )
        .await;
    assert_eq!((st, ist), (422, 422), "{t} / {i}");
    assert_eq!(t["error"], i["error"]);

    // A postback network has no API to test.
    let (st, v) = test(
        &s,
        json!({"property_id": pid, "catalog": "custom",
               "settings": {"tracking_group": "mynet", "subid_param": "sub1"}}),
    )
    .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("postback_only")),
        "{v}"
    );

    // Someone else's (or no) property, no property at all.
    let (st, v) = test(&s, body("nope", FAKE_KEY, &fake.report_url)).await;
    assert_eq!(st, 404, "{v}");
    let (st, v) = s
        .post(
            "/api/v1/integrations/test",
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": FAKE_KEY},
                   "settings": {"api_url": fake.report_url}}),
        )
        .await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("invalid_body")),
        "{v}"
    );
    let (st, _) = s
        .post(
            "/api/v1/integrations/test",
            "not-a-token",
            body(&pid, FAKE_KEY, &fake.report_url),
        )
        .await;
    assert_eq!(st, 401);
    assert_eq!(fake.handle.request_count(), 0, "no request was made");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_button_shows_the_result_above_the_form() {
    let s = server(true).await;
    let b = Browser::new(&s.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "site.example", "EUR").await;
    let fake = fake_with_rows().await;
    let page_url = format!("/p/{pid}/catalog/galapartners");

    let page = b.get(&page_url).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("data-test=\"test-connection\""),
        "the button"
    );
    assert!(
        page.body.contains(&format!(
            "formaction=\"/p/{pid}/catalog/galapartners/test\""
        )),
        "it posts the form to the test route"
    );
    let advanced = &page.body[page.body.find("data-test=\"advanced\"").expect("Advanced")..];
    let advanced = &advanced[..advanced.find("</details>").expect("end of Advanced")];
    for field in [
        "report_name",
        "value_field",
        "merchant_id",
        "report_format",
        "period",
        "timeout_secs",
    ] {
        assert!(
            advanced.contains(&format!("name=\"settings.{field}\"")),
            "{field} folded"
        );
    }
    assert!(!advanced.contains("name=\"settings.api_url\""));
    let egress = &page.body[page.body.find("data-test=\"egress\"").expect("egress")..];
    assert!(egress[..300].contains(EGRESS), "the address to whitelist");

    let mapping = [
        ("m_source", "registration"),
        ("m_event", "Lead"),
        ("m_value", "none"),
        ("m_amount", ""),
        ("m_currency", ""),
        ("m_send", "yes"),
    ];
    let test_url = format!("{page_url}/test");
    let key = fake.key();
    let mut fields = vec![
        ("credentials.security_key", key.as_str()),
        ("settings.api_url", fake.report_url.as_str()),
        ("settings.value_field", "Commission"),
    ];
    fields.extend(mapping);
    let answer = b.submit(&page_url, &test_url, &fields).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let result_at = answer
        .body
        .find("data-test=\"test-result\"")
        .expect("the result");
    assert!(
        result_at < answer.body.find("id=\"install\"").expect("the form"),
        "above the form"
    );
    assert!(
        answer.body.contains("data-outcome=\"works\""),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("data-test=\"key-again\""),
        "the key must be given again"
    );
    assert!(!answer.body.contains(&key), "the key is not sent back");
    assert!(
        answer
            .body
            .contains(&format!("value=\"{}\"", fake.report_url)),
        "what was typed is kept"
    );
    assert!(answer.body.contains("value=\"Commission\""));

    // Refused: the page names the address to whitelist.
    fake.handle
        .set_whitelist(Some(vec!["198.51.100.1".parse().expect("ip")]));
    let answer = b.submit(&page_url, &test_url, &fields).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("data-outcome=\"ip_not_whitelisted\""),
        "{}",
        answer.body
    );
    let ip = &answer.body[answer.body.find("data-test=\"whitelist-ip\"").expect("ip")..];
    assert!(ip[..200].contains(EGRESS), "{ip}");
    fake.handle.set_whitelist(None);

    // A pasted report URL: its key is not sent back either.
    let generated = format!("{}?key={key}&reportname=ACIDReport", fake.report_url);
    let mut pasted = vec![("settings.api_url", generated.as_str())];
    pasted.extend(mapping);
    let answer = b.submit(&page_url, &test_url, &pasted).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("data-outcome=\"works\""),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains(&key), "the key is not sent back");
    assert!(
        answer
            .body
            .contains(&format!("value=\"{}\"", fake.report_url))
    );
    assert!(
        answer
            .body
            .contains("<option value=\"ACIDReport\" selected")
    );

    // A field problem shows next to its field, as installing would.
    let mut bad = vec![("settings.api_url", "ftp://nope")];
    bad.extend(mapping);
    let answer = b.submit(&page_url, &test_url, &bad).await;
    assert_eq!(answer.status, 422);
    assert!(answer.has_error_for("settings.api_url"));
    assert!(answer.has_error_for("credentials.security_key"));
    assert!(!answer.body.contains("data-test=\"test-result\""));

    // An installed integration's settings form tests with the saved key.
    let done = b.submit(&page_url, &page_url, &fields).await;
    assert_eq!(done.status, 303, "{}", done.body);
    let at = done
        .location()
        .expect("location")
        .split('?')
        .next()
        .expect("path")
        .to_owned();
    let answer = b
        .submit(
            &at,
            &format!("{at}/test"),
            &[
                ("settings.api_url", fake.report_url.as_str()),
                ("settings.report_name", "AccountReport"),
                ("status", "active"),
            ],
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains("data-outcome=\"works\""),
        "{}",
        answer.body
    );
    assert!(!answer.body.contains("data-test=\"key-again\""));
    assert!(!answer.body.contains(&key));
    s.stop().await;
}
