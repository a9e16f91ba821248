//! The spine against the real server on SQLite and PostgreSQL: auth and
//! tenancy, the collector (formats, de-duplication, refusals with stable
//! codes, CORS, domains), sessions and clicks, lost-beacon click ids.

use clicktrail_testkit::both;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    self, Backend, CHROME_UA, MASTER_KEY, TestServer, now_ms, outbound_click, pageview,
};

const PV: &str = "0190f1a2-7d3c-7abc-8def-0123456789ab";
const CLICK: &str = "AZDxon08eryN7wEjRWeJqwAAAAAA";
const IA_LINK: &str = "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&affid=3&siteid=1&adid=2&c=AZDxon08eryN7wEjRWeJqwAAAAAA";

async fn token_for(s: &TestServer, workspace: &str) -> String {
    let ws = clicktrail_store::auth::ensure_workspace(&s.server.services.db, workspace)
        .await
        .unwrap();
    clicktrail_store::auth::create_token(&s.server.services.db, ws.id, "test")
        .await
        .unwrap()
        .1
}

both!(auth_and_tenancy, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let (st, v) = s.get("/api/v1/properties", "nope").await;
    assert_eq!(st, 401);
    assert_eq!(v["error"]["code"], "unauthorized");
    let resp = s
        .http
        .get(s.url("/api/v1/properties"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let a = token_for(&s, "alpha").await;
    let bt = token_for(&s, "beta").await;
    let (st, p) = s
        .post(
            "/api/v1/properties",
            &a,
            json!({"name": "A site", "domains": ["a.example"]}),
        )
        .await;
    assert_eq!(st, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    assert!(
        p["tag_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/t/{id}.js"))
    );
    assert!(
        p["snippet"]
            .as_str()
            .unwrap()
            .contains(&format!("/t/{id}.js"))
    );
    assert_eq!(id.len(), 16);

    // Workspace B sees nothing of A: 404, never 403.
    assert_eq!(s.get(&format!("/api/v1/properties/{id}"), &bt).await.0, 404);
    assert_eq!(
        s.get(&format!("/api/v1/properties/{id}/clicks/{CLICK}"), &bt)
            .await
            .0,
        404
    );
    assert_eq!(
        s.get(&format!("/api/v1/properties/{id}/conversions"), &bt)
            .await
            .0,
        404
    );
    assert_eq!(
        s.get(&format!("/api/v1/properties/{id}/integrations"), &bt)
            .await
            .0,
        404
    );
    let (st, _) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/properties/{id}"),
            &bt,
            Some(json!({"name": "stolen"})),
        )
        .await;
    assert_eq!(st, 404);
    let (_, list) = s.get("/api/v1/properties", &bt).await;
    assert_eq!(list["properties"].as_array().unwrap().len(), 0);
    // A and the master key see it.
    assert_eq!(s.get(&format!("/api/v1/properties/{id}"), &a).await.0, 200);
    assert_eq!(
        s.get(&format!("/api/v1/properties/{id}"), MASTER_KEY)
            .await
            .0,
        200
    );
    // A workspace token cannot pick another workspace.
    let (st, _) = s
        .post(
            "/api/v1/properties",
            &a,
            json!({"name": "x", "domains": ["b.example"], "workspace": "beta"}),
        )
        .await;
    assert_eq!(st, 403);
    // Validation names each field.
    let (st, v) = s
        .post(
            "/api/v1/properties",
            &a,
            json!({"name": "", "domains": ["not a domain"], "settings": {"attribution_window_days": 3}}),
        )
        .await;
    assert_eq!(st, 422);
    let fields: Vec<&str> = v["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"name")
            && fields.contains(&"domains")
            && fields.contains(&"settings.attribution_window_days"),
        "{v}"
    );
    let (st, v) = s
        .http
        .post(s.url("/api/v1/properties"))
        .bearer_auth(&a)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(st, 400);
    assert_eq!(
        v.json::<Value>().await.unwrap()["error"]["code"],
        "invalid_json"
    );
    s.stop().await;
});

both!(
    collector_records_sessions_and_clicks,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let landing = "https://www.site.example/review?utm_source=google&utm_medium=cpc&utm_campaign=spring&gclid=Cj0KCQ_abc&fbclid=IwAR_Xy-Z";
        let body = json!({"property_id": pid, "events": [
            pageview(PV, "v_visitor_0001", landing),
            outbound_click("0190f1a2-7d3c-7abc-8def-0123456789ac", "v_visitor_0001", landing, CLICK, IA_LINK, PV),
        ]});
        let (st, v) = s
            .collect(
                &body,
                &[
                    ("user-agent", CHROME_UA),
                    ("origin", "https://www.site.example"),
                ],
            )
            .await;
        assert_eq!(st, 202, "{v}");
        assert_eq!(v, json!({"accepted": 2, "duplicates": 0}));
        // A retried beacon is stored once.
        let (st, v) = s.collect(&body, &[("user-agent", CHROME_UA)]).await;
        assert_eq!(st, 202);
        assert_eq!(v, json!({"accepted": 0, "duplicates": 2}));
        // A single event without `events`, as application/json.
        let mut single = pageview(
            "0190f1a2-7d3c-7abc-8def-0123456789ad",
            "v_visitor_0001",
            "https://www.site.example/next",
        );
        single["property_id"] = json!(pid);
        let r = s
            .http
            .post(s.url("/collect"))
            .json(&single)
            .header("user-agent", CHROME_UA)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);

        let (st, c) = s
            .get(
                &format!("/api/v1/properties/{pid}/clicks/{CLICK}"),
                MASTER_KEY,
            )
            .await;
        assert_eq!(st, 200, "{c}");
        assert_eq!(c["click"]["origin"], "tag");
        assert_eq!(c["click"]["link_group"], "incomeaccess");
        let t = &c["traffic_source"];
        assert_eq!(t["source"], "google");
        assert_eq!(t["medium"], "cpc");
        assert_eq!(t["campaign"], "spring");
        assert_eq!(t["channel"], "paid_search");
        assert_eq!(t["click_ids"]["gclid"], "Cj0KCQ_abc");
        assert_eq!(t["click_ids"]["fbclid"], "IwAR_Xy-Z");
        assert!(
            t["fbc"].as_str().unwrap().ends_with(".IwAR_Xy-Z"),
            "fbc keeps fbclid byte for byte"
        );
        assert_eq!(t["browser"], "Chrome");
        assert_eq!(t["device"], "desktop");
        assert_eq!(t["is_bot"], false);
        assert_eq!(
            c["session"]["pageviews"], 2,
            "the second page continues the session"
        );

        // A tag-minted click id whose OutboundClick never arrived resolves
        // through its pageview.
        let lost = "AZDxon08eryN7wEjRWeJqwZZZZZZ";
        let (st, c) = s
            .get(
                &format!("/api/v1/properties/{pid}/clicks/{lost}"),
                MASTER_KEY,
            )
            .await;
        assert_eq!(st, 200, "{c}");
        assert_eq!(c["click"]["origin"], "pageview");
        assert_eq!(c["traffic_source"]["source"], "google");
        assert_eq!(
            s.get(
                &format!("/api/v1/properties/{pid}/clicks/QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ"),
                MASTER_KEY
            )
            .await
            .0,
            404
        );

        // A new campaign starts a new session; a bot is flagged.
        let body = json!({"property_id": pid, "events": [
            pageview("0190f1a2-7d3c-7abc-8def-0123456789ae", "v_visitor_0001", "https://site.example/?utm_source=newsletter&utm_medium=email"),
            outbound_click("0190f1a2-7d3c-7abc-8def-0123456789af", "v_visitor_0001", "https://site.example/", "AZDxon08eryN7wEjRWeJqwBBBBBB", IA_LINK, "0190f1a2-7d3c-7abc-8def-0123456789ae"),
        ]});
        assert_eq!(s.collect(&body, &[("user-agent", CHROME_UA)]).await.0, 202);
        let (_, c2) = s
            .get(
                &format!("/api/v1/properties/{pid}/clicks/AZDxon08eryN7wEjRWeJqwBBBBBB"),
                MASTER_KEY,
            )
            .await;
        assert_ne!(c2["session"]["id"], c["session"]["id"]);
        assert_eq!(c2["traffic_source"]["channel"], "email");
        let body = json!({"property_id": pid, "events": [
            outbound_click("0190f1a2-7d3c-7abc-8def-0123456789b0", "v_bot_000001", "https://site.example/", "AZDxon08eryN7wEjRWeJqwCCCCCC", IA_LINK, PV),
        ]});
        assert_eq!(
            s.collect(
                &body,
                &[(
                    "user-agent",
                    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                )]
            )
            .await
            .0,
            202
        );
        let (_, c3) = s
            .get(
                &format!("/api/v1/properties/{pid}/clicks/AZDxon08eryN7wEjRWeJqwCCCCCC"),
                MASTER_KEY,
            )
            .await;
        assert_eq!(c3["traffic_source"]["is_bot"], true);
        s.stop().await;
    }
);

both!(collector_refusals, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let ok = pageview(PV, "v_visitor_0001", "https://site.example/");
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or("").to_owned();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"property_id": "doesnotexist0000", "events": [ok.clone()]}),
            404,
            "unknown_property",
        ),
        (json!({"events": [ok.clone()]}), 400, "missing_field"),
        (json!({"property_id": pid, "events": []}), 400, "no_events"),
        (
            json!({"property_id": pid, "events": vec![ok.clone(); 51]}),
            400,
            "too_many_events",
        ),
        (
            json!({"property_id": pid, "events": [pageview(PV, "v_visitor_0001", "https://evil.example/")]}),
            403,
            "domain_not_allowed",
        ),
        (
            json!({"property_id": pid, "events": [{"event_id": PV, "name": "PageView", "ts": now_ms() + 3 * 86_400_000, "visitor_id": "v_visitor_0001", "url": "https://site.example/"}]}),
            400,
            "invalid_timestamp",
        ),
        (
            json!({"property_id": pid, "events": [{"event_id": PV, "name": "PageView", "ts": now_ms(), "visitor_id": "v_visitor_0001", "url": format!("https://site.example/?{}", "x".repeat(5000))}]}),
            400,
            "invalid_event",
        ),
        (
            json!({"property_id": pid, "events": [{"event_id": PV, "name": "OutboundClick", "ts": now_ms(), "visitor_id": "v_visitor_0001", "url": "https://site.example/"}]}),
            400,
            "missing_field",
        ),
        (
            json!({"property_id": pid, "events": [{"event_id": PV, "name": "PageView", "ts": now_ms(), "visitor_id": "v_visitor_0001", "url": "https://site.example/", "user": {"em": "a@b.c"}}]}),
            400,
            "invalid_event",
        ),
    ];
    for (body, status, want) in cases {
        let (st, v) = s.collect(&body, &[]).await;
        assert_eq!((st, code(&v).as_str()), (status, want), "{body}");
    }
    for (raw, status, want) in [
        (b"{not json".to_vec(), 400, "invalid_json"),
        (vec![0xff, 0xfe, 0x00], 400, "invalid_utf8"),
        (vec![b' '; 70 * 1024], 413, "body_too_large"),
    ] {
        // A fresh connection per case: the server answers 413 without reading
        // the whole body and closes that connection, which would race the
        // next request on a pooled one.
        let r = reqwest::Client::new()
            .post(s.url("/collect"))
            .header("content-type", "text/plain")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(code(&r.json().await.unwrap()), want);
    }
    let r = s
        .http
        .post(s.url("/collect"))
        .header("content-type", "application/xml")
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // Origin not on the property's domains.
    let (st, v) = s
        .collect(
            &json!({"property_id": pid, "events": [ok.clone()]}),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!((st, code(&v).as_str()), (403, "domain_not_allowed"));
    // CORS: an allowed origin is echoed; the preflight answers.
    let r = s
        .http
        .post(s.url("/collect"))
        .header("origin", "https://shop.site.example")
        .body(json!({"property_id": pid, "events": [ok]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.site.example"
    );
    let r = s
        .http
        .request(Method::OPTIONS, s.url("/collect"))
        .header("origin", "https://site.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    // Refusals are counted by reason.
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for reason in [
        "unknown_property",
        "domain_not_allowed",
        "invalid_json",
        "body_too_large",
        "too_many_events",
    ] {
        assert!(
            metrics.contains(&format!(
                "clicktrail_collect_rejected_total{{reason=\"{reason}\"}}"
            )),
            "{reason}"
        );
    }
    assert!(metrics.contains("clicktrail_http_request_duration_seconds_bucket"));
    let h = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(h.status(), 200);
    s.stop().await;
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_503_with_retry_after() {
    let db = support::TestDb::new(Backend::Sqlite).await;
    let mut cfg = support::config(&db);
    cfg.ingest.queue_capacity = 1;
    cfg.ingest.max_batch_events = 1;
    let s = TestServer::start_with(db, cfg).await;
    let pid = s.property(&["site.example"]).await;
    let mut tasks = Vec::new();
    for i in 0..200 {
        let http = s.http.clone();
        let url = s.url("/collect");
        let ev = pageview(
            &format!("0190f1a2-7d3c-7abc-8def-{i:012}"),
            &format!("v_visitor_{i:04}"),
            "https://site.example/",
        );
        let body = json!({"property_id": pid, "events": [ev]}).to_string();
        tasks.push(tokio::spawn(async move {
            let r = http
                .post(url)
                .header("content-type", "text/plain")
                .body(body)
                .send()
                .await
                .unwrap();
            (
                r.status().as_u16(),
                r.headers().get("retry-after").is_some(),
            )
        }));
    }
    let mut accepted = 0;
    let mut overloaded = 0;
    for t in tasks {
        match t.await.unwrap() {
            (202, _) => accepted += 1,
            (503, true) => overloaded += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(accepted + overloaded, 200);
    assert!(
        overloaded > 0,
        "a queue of one must overflow under 200 concurrent requests"
    );
    // Every acknowledged event is stored, and only those.
    let n: (i64,) = s
        .server
        .services
        .db
        .fetch_one("SELECT COUNT(*) FROM events", clicktrail_store::args![])
        .await
        .unwrap();
    assert_eq!(n.0, accepted);
    s.stop().await;
}

/// A postback refused before it is parsed (its body too large) still ends
/// in one counted outcome, like every postback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_postback_body_is_counted() {
    let s = TestServer::start(Backend::Sqlite).await;
    let pid = s.property(&["site.example"]).await;
    let (_, url) = s.install_custom(&pid).await;
    let r = s
        .http
        .post(&url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b'a'; 70 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "body_too_large");
    let metrics = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("clicktrail_postbacks_total{outcome=\"body_too_large\"}"),
        "{metrics}"
    );
    s.stop().await;
}
