//! Issue 13 regressions, on SQLite and PostgreSQL: purchases injected
//! through the anonymous collector (finding 4), negative postback payouts
//! (5), AutoScan amplification (10) and uneven outbound checks (13).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clicktrail_testkit::both;
use clicktrail_testkit::meta::FakeMeta;
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::delivery::count_to_send;
use crate::support::{
    self, Backend, CHROME_UA, MASTER_KEY, TestServer, outbound_click, pageview, urlenc, wait_for,
    wait_for_some,
};

const META_PIXEL: &str = "1234567890";
const META_TOKEN: &str = "EAAB-test-token-0123456789";

async fn meta_destination(s: &TestServer, pid: &str, meta: &FakeMeta) {
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/destinations"),
            MASTER_KEY,
            json!({"kind": "meta_capi", "name": "Meta",
                   "settings": {"pixel_id": META_PIXEL, "endpoint": meta.base_url()},
                   "credentials": {"access_token": META_TOKEN}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
}

async fn patch_settings(s: &TestServer, pid: &str, settings: Value) {
    let (st, v) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/properties/{pid}"),
            MASTER_KEY,
            Some(json!({ "settings": settings })),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

/// The conversion log, oldest first.
async fn log(s: &TestServer, pid: &str) -> Vec<Value> {
    let (_, l) = s
        .get(
            &format!("/api/v1/properties/{pid}/conversions?limit=500"),
            MASTER_KEY,
        )
        .await;
    let mut v = l["conversions"].as_array().cloned().unwrap_or_default();
    v.reverse();
    v
}

/// How long the server may take to write what a test waits for.
const WAIT: Duration = Duration::from_secs(20);

/// Waits until `f` holds, or fails after [`WAIT`].
async fn until<F, Fut>(what: &str, f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(WAIT, what, f).await;
}

/// The conversion log once it has at least `n` entries, oldest first.
async fn log_len_at_least(s: &TestServer, pid: &str, n: usize) -> Vec<Value> {
    wait_for_some(WAIT, &format!("{n} log entries"), || async {
        let out = log(s, pid).await;
        (out.len() >= n).then_some(out)
    })
    .await
}

fn purchase(id: u32, visitor: &str, value: f64) -> Value {
    json!({"event_id": format!("0190f1a2-7d3c-7abc-8def-{id:012}"), "name": "Purchase",
           "ts": support::now_ms(), "visitor_id": visitor,
           "url": "https://site.example/thanks", "value": value, "currency": "EUR"})
}

fn body(pid: &str, events: Vec<Value>) -> Value {
    json!({"property_id": pid, "events": events})
}

const ORIGIN: (&str, &str) = ("origin", "https://site.example");
const UA: (&str, &str) = ("user-agent", CHROME_UA);

both!(
    injected_purchases_never_reach_meta,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
        meta_destination(&s, &pid, &meta).await;
        let landing = "https://site.example/?utm_source=facebook&fbclid=IwAR_inject";
        let pv = pageview(
            "0190f1a2-7d3c-7abc-8def-0000000000aa",
            "v_inject_01",
            landing,
        );
        assert_eq!(s.collect(&body(&pid, vec![pv]), &[UA, ORIGIN]).await.0, 202);

        // Not opted in: stored as traffic, refused as a conversion.
        let (st, v) = s
            .collect(
                &body(&pid, vec![purchase(1, "v_inject_01", 50.0)]),
                &[UA, ORIGIN],
            )
            .await;
        assert_eq!((st, v["accepted"].as_i64()), (202, Some(1)), "{v}");
        let entries = log_len_at_least(&s, &pid, 1).await;
        assert_eq!(entries[0]["error_code"], "onsite_disabled", "{entries:?}");

        patch_settings(
            &s,
            &pid,
            json!({"onsite": {"enabled": true, "events": ["Lead", "Purchase"], "max_value": 1000}}),
        )
        .await;
        // A foreign Origin is refused outright.
        let (st, v) = s
            .collect(
                &body(&pid, vec![purchase(2, "v_inject_01", 50.0)]),
                &[UA, ("origin", "https://evil.example")],
            )
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (403, Some("domain_not_allowed"))
        );
        // No Origin (a script anywhere), values out of bounds, an event not
        // allowed: traffic, each refused with its reason.
        let cases = [
            (
                purchase(3, "v_inject_01", 50.0),
                vec![UA],
                "origin_required",
            ),
            (
                purchase(4, "v_inject_01", 999_999_999.99),
                vec![UA, ORIGIN],
                "value_out_of_bounds",
            ),
            (
                purchase(5, "v_inject_01", -5000.0),
                vec![UA, ORIGIN],
                "value_out_of_bounds",
            ),
            (
                json!({"event_id": "0190f1a2-7d3c-7abc-8def-000000000006", "name": "Subscribe",
                   "ts": support::now_ms(), "visitor_id": "v_inject_01",
                   "url": "https://site.example/thanks"}),
                vec![UA, ORIGIN],
                "event_not_allowed",
            ),
        ];
        for (i, (ev, headers, code)) in cases.iter().enumerate() {
            let (st, v) = s.collect(&body(&pid, vec![ev.clone()]), headers).await;
            assert_eq!(st, 202, "{v}");
            let entries = log_len_at_least(&s, &pid, i + 2).await;
            assert_eq!(entries[i + 1]["status"], "error", "{code}: {entries:?}");
            assert_eq!(entries[i + 1]["error_code"], *code, "{entries:?}");
        }
        // A real purchase from the site, within bounds, is a conversion.
        let (st, _) = s
            .collect(
                &body(&pid, vec![purchase(7, "v_inject_01", 49.5)]),
                &[UA, ORIGIN],
            )
            .await;
        assert_eq!(st, 202);
        let entries = log_len_at_least(&s, &pid, 6).await;
        assert_eq!(entries[5]["status"], "validated", "{entries:?}");
        // Every conversion is written (the log has all six), so every
        // delivery it queued is queued: once none is left to send, Meta has
        // all it will ever get.
        until("every delivery sent", || async {
            count_to_send(&s.server.services.db).await == 0
        })
        .await;
        let events = meta.events();
        assert_eq!(
            events.len(),
            1,
            "only the real purchase reaches Meta: {events:?}"
        );
        assert_eq!(events[0]["custom_data"]["value"].as_f64(), Some(49.5));
        s.stop().await;
    }
);

fn sign(secret: &str, ts: i64, body: &str) -> String {
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}.{body}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

both!(signed_server_conversions, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    // Server-side only: browsers may not send conversions at all.
    patch_settings(
        &s,
        &pid,
        json!({"onsite": {"enabled": true, "events": ["Purchase"], "browser": false}}),
    )
    .await;
    let (_, p) = s
        .get(&format!("/api/v1/properties/{pid}"), MASTER_KEY)
        .await;
    let secret = p["server_secret"]
        .as_str()
        .expect("server_secret")
        .to_owned();
    let send = |b: String, ts: i64, sig: String| {
        s.http
            .post(s.url("/collect/server"))
            .header("content-type", "application/json")
            .header("user-agent", CHROME_UA)
            .header("x-clicktrail-timestamp", ts.to_string())
            .header("x-clicktrail-signature", sig)
            .body(b)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let good = body(&pid, vec![purchase(11, "v_server_01", 20.0)]).to_string();
    // A wrong signature, an old (replayed) one, none at all: refused.
    let r = send(good.clone(), now, sign("cts_wrong", now, &good))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_signature"
    );
    let old = now - 3600;
    let r = send(good.clone(), old, sign(&secret, old, &good))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "signature_expired"
    );
    let r = s
        .http
        .post(s.url("/collect/server"))
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(log(&s, &pid).await.is_empty(), "nothing was stored");
    // The good signature: a conversion.
    let r = send(good.clone(), now, sign(&secret, now, &good))
        .await
        .unwrap();
    assert_eq!(r.status(), 202, "{:?}", r.text().await);
    let entries = log_len_at_least(&s, &pid, 1).await;
    assert_eq!(entries[0]["status"], "validated", "{entries:?}");
    // The same purchase from a browser is refused: the property takes
    // server-side conversions only.
    let (st, _) = s
        .collect(
            &body(&pid, vec![purchase(12, "v_server_01", 20.0)]),
            &[UA, ORIGIN],
        )
        .await;
    assert_eq!(st, 202);
    let entries = log_len_at_least(&s, &pid, 2).await;
    assert_eq!(
        entries[1]["error_code"], "signature_required",
        "{entries:?}"
    );
    s.stop().await;
});

both!(negative_payouts_are_reversals, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    meta_destination(&s, &pid, &meta).await;
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "custom", "settings": {"tracking_group": "mynet", "subid_param": "sub1"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let url = v["postback_url"].as_str().unwrap().to_owned();
    let landing = "https://site.example/?utm_source=facebook&fbclid=IwAR_negative";
    let pv = "0190f1a2-7d3c-7abc-8def-0000000000bb";
    let cid = "AZDxon08eryN7wEjRWeJq0000077";
    let clicked = body(
        &pid,
        vec![
            pageview(pv, "v_negative_1", landing),
            outbound_click(
                "0190f1a2-7d3c-7abc-9def-0000000000bb",
                "v_negative_1",
                landing,
                cid,
                "https://mynet.example/?sub1=x",
                pv,
            ),
        ],
    );
    assert_eq!(s.collect(&clicked, &[UA]).await.0, 202);
    let postback = |q: String| {
        let url = url.clone();
        let http = s.http.clone();
        async move {
            let r = http.get(format!("{url}?{q}")).send().await.unwrap();
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (st, v) = postback(format!(
        "sub1={cid}&txid=T-1&payout=50&currency=EUR&event=sale"
    ))
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("validated")), "{v}");
    until("Meta receives the purchase", || async {
        meta.events().len() == 1
    })
    .await;

    // A negative payout for T-1 adjusts it; one for a transaction never
    // seen, or naming none, reverses nothing and is refused.
    let (_, v) = postback(format!(
        "sub1={cid}&txid=T-1&payout=-20&currency=EUR&event=sale"
    ))
    .await;
    assert_eq!(v["status"], "adjustment", "{v}");
    let (_, v) = postback(format!("sub1={cid}&txid=T-404&payout=-5000&event=sale")).await;
    assert_eq!(
        (v["status"].as_str(), v["error_code"].as_str()),
        (Some("error"), Some("invalid_payload")),
        "{v}"
    );
    let (_, v) = postback(format!("sub1={cid}&payout=-5000&event=sale")).await;
    assert_eq!(
        (v["status"].as_str(), v["error_code"].as_str()),
        (Some("error"), Some("invalid_payload")),
        "{v}"
    );
    // The original now counts 30.
    let entries = log(&s, &pid).await;
    let original = entries.iter().find(|e| e["status"] == "validated").unwrap();
    assert_eq!(original["value"].as_f64(), Some(50.0));

    // A later purchase reaches Meta; delivery is in order, so anything
    // queued before it has gone by then.
    let (_, v) = postback(format!(
        "sub1={cid}&txid=T-2&payout=10&currency=EUR&event=sale"
    ))
    .await;
    assert_eq!(v["status"], "validated", "{v}");
    // Every postback was answered after its conversion was written, so
    // every delivery is queued: once none is left to send, Meta has all it
    // will ever get.
    until("every delivery sent", || async {
        count_to_send(&s.server.services.db).await == 0
    })
    .await;
    let events = meta.events();
    assert_eq!(events.len(), 2, "{events:?}");
    for e in &events {
        let value = e["custom_data"]["value"].as_f64().unwrap_or(0.0);
        assert!(value >= 0.0, "a negative event reached Meta: {e}");
    }
    s.stop().await;
});

/// A site whose `/go/{n}` links redirect through 5 hops to a page, and
/// `/loop` to itself; counts every request it gets.
async fn redirecting_site() -> (u16, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let site = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            let path = uri.path().to_owned();
            let next = if path == "/loop" {
                Some("/loop".to_owned())
            } else if let Some(rest) = path.strip_prefix("/go/") {
                Some(format!("/hop/1/{rest}"))
            } else if let Some(rest) = path.strip_prefix("/hop/") {
                let (n, tail) = rest.split_once('/').unwrap_or(("9", ""));
                let n: u32 = n.parse().unwrap_or(9);
                (n < 4).then(|| format!("/hop/{}/{tail}", n + 1))
            } else {
                None
            };
            match next {
                Some(l) => (axum::http::StatusCode::FOUND, [("location", l)]).into_response(),
                None => (axum::http::StatusCode::OK, "page").into_response(),
            }
        }
    });
    use axum::response::IntoResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, site).await.unwrap() });
    (port, hits)
}

both!(autoscan_is_bounded, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["127.0.0.1"]).await;
    let (port, hits) = redirecting_site().await;
    let scan = |links: Vec<String>| {
        let q: Vec<String> = links.iter().map(|l| format!("u={}", urlenc(l))).collect();
        let req = s.http.get(s.url(&format!("/t/{pid}/scan?{}", q.join("&"))));
        async move {
            let r = req.send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    // 20 links of 5 redirects each: 120 requests unbounded.
    let links: Vec<String> = (0..20)
        .map(|i| format!("http://127.0.0.1:{port}/go/offer{i}"))
        .collect();
    let v = scan(links.clone()).await;
    let first = hits.load(Ordering::SeqCst);
    assert!(first <= 24, "one scan made {first} outbound requests");
    assert!(
        v["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["error"] == "rate_limited"),
        "{v}"
    );
    // The same links again, with junk tracking parameters: the property's
    // budget caps the total whatever is asked.
    for round in 0..5 {
        let junk: Vec<String> = links
            .iter()
            .map(|l| format!("{l}?utm_source=junk{round}&gclid=g{round}"))
            .collect();
        scan(junk).await;
    }
    let total = hits.load(Ordering::SeqCst);
    eprintln!("autoscan: 20 five-hop links: one scan {first} outbound requests, six scans {total}");
    assert!(total <= 60, "six scans made {total} outbound requests");
    s.stop().await;
});

both!(autoscan_caches_failures, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["127.0.0.1"]).await;
    let (port, hits) = redirecting_site().await;
    let link = format!("http://127.0.0.1:{port}/loop");
    let q = format!("u={}", urlenc(&link));
    for _ in 0..5 {
        let v: Value = s
            .http
            .get(s.url(&format!("/t/{pid}/scan?{q}&utm_source=x")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["results"][0]["error"], "redirect_loop", "{v}");
    }
    let n = hits.load(Ordering::SeqCst);
    assert!(
        n <= 2,
        "a failing link was fetched {n} times for five scans"
    );
    s.stop().await;
});

both!(private_api_url_refused_at_save, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let path = format!("/api/v1/properties/{pid}/integrations");
    let install = |api_url: &str| {
        s.post(
            &path,
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": "0123456789abcdef0123456789abcdef"},
                   "settings": {"api_url": api_url}}),
        )
    };
    for bad in [
        "http://169.254.169.254/api/affreporting.asp",
        "http://metadata.google.internal/api/affreporting.asp",
    ] {
        let (st, v) = install(bad).await;
        assert_eq!(st, 422, "{bad}: {v}");
        assert_eq!(v["error"]["fields"][0]["field"], "settings.api_url", "{v}");
        assert_eq!(
            v["error"]["fields"][0]["code"], "address_not_allowed",
            "{v}"
        );
    }
    // Allowed at install (private networks are, in tests), refused at edit.
    let (st, v) = install("http://127.0.0.1:9/api/affreporting.asp").await;
    assert_eq!(st, 201, "{v}");
    let id = v["id"].as_str().unwrap();
    let (st, v) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/integrations/{id}"),
            MASTER_KEY,
            Some(json!({"settings": {"api_url": "http://169.254.169.254/latest/meta-data/"}})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["error"]["fields"][0]["code"], "address_not_allowed",
        "{v}"
    );
    s.stop().await;

    // Without CLICKTRAIL_ALLOW_PRIVATE_NETWORKS a private address is
    // refused like the metadata one.
    let db = support::TestDb::new(b).await;
    let mut cfg = support::config(&db);
    cfg.allow_private_networks = false;
    let s = TestServer::start_with(db, cfg).await;
    let pid = s.property(&["site.example"]).await;
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": "0123456789abcdef0123456789abcdef"},
                   "settings": {"api_url": "http://10.1.2.3/api/affreporting.asp"}}),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(
        v["error"]["fields"][0]["code"], "address_not_allowed",
        "{v}"
    );
    s.stop().await;
});
