//! The one harness of the server's integration tests: a real server started
//! in-process on port 0 ([`TestServer`]) against a database of its own
//! (`clicktrail_testkit::db::TestDb`, SQLite or PostgreSQL, dropped with
//! it), waiting for a condition with a deadline ([`wait_for`]), and small
//! HTTP and event helpers. The submodules add a dashboard browser
//! ([`browser`]), the delivery tests' fixtures ([`delivery`]) and
//! `clicktrail serve` run as a child process ([`process`]).
//!
//! Every test module shares one process and runs beside the others, so
//! nothing here touches process-wide state: no fixed port, no environment
//! variable set, and metrics read from the shared recorder are only
//! checked for presence, never for an exact count.

pub mod browser;
pub mod delivery;
pub mod process;

use std::future::Future;
use std::time::{Duration, Instant};

use clicktrail::app::{self, RunningServer};
use clicktrail::config::{Config, Secret};
use clicktrail_store::{Db, DbOptions};
use serde_json::{Value, json};

pub use clicktrail_testkit::db::{Backend, TestDb};

pub const MASTER_KEY: &str = "test-master-key-0123456789";

/// The configuration of a test server on `db`: port 0, the test master
/// key, private networks allowed (the fakes listen on loopback).
pub fn config(db: &TestDb) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: db.url.clone(),
        master_key: Some(serde_json::from_value::<Secret>(json!(MASTER_KEY)).expect("secret")),
        allow_private_networks: true,
        data_dir: db.dir.clone(),
        log: "warn".into(),
        ..Config::default()
    }
}

/// A connection of the test's own to `db` (fixtures, checks, or a database
/// whose server runs in a child process), migrated.
pub async fn open(db: &TestDb) -> Db {
    let conn = Db::connect(&db.url, &DbOptions::default())
        .await
        .expect("connect");
    conn.migrate().await.expect("migrate");
    conn
}

/// Polls `check` until it gives a value; fails the test naming `what` once
/// `limit` has passed.
pub async fn wait_for_some<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `check` until it holds; fails the test naming `what` once `limit`
/// has passed.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_some(limit, what, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await;
}

/// A server started in-process, its database and an HTTP client.
pub struct TestServer {
    pub server: RunningServer,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestServer {
    /// A server on a fresh database of `backend`, with [`config`].
    pub async fn start(backend: Backend) -> TestServer {
        let db = TestDb::new(backend).await;
        let cfg = config(&db);
        Self::start_with(db, cfg).await
    }

    /// A server on `db` with `cfg` (usually [`config`] changed).
    pub async fn start_with(db: TestDb, cfg: Config) -> TestServer {
        let server = app::start(cfg).await.expect("server starts");
        let base = server.base_url();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()
            .expect("client");
        TestServer {
            server,
            db,
            http,
            base,
        }
    }

    /// Stops the server cleanly, then drops its database.
    pub async fn stop(self) {
        self.server.stop().await.expect("clean shutdown");
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn api(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let v = resp.json::<Value>().await.unwrap_or(Value::Null);
        (status, v)
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.api(reqwest::Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.api(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// Creates a property on `domains` with the master key; returns its id.
    pub async fn property(&self, domains: &[&str]) -> String {
        let (s, v) = self
            .post(
                "/api/v1/properties",
                MASTER_KEY,
                json!({"name": "Site", "domains": domains}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().expect("id").to_owned()
    }

    /// Posts a collector body; returns (status, json).
    pub async fn collect(&self, body: &Value, headers: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .http
            .post(self.url("/collect"))
            .header("content-type", "text/plain")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("collect");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Installs the `custom` network (tracking group `mynet`, subid
    /// parameter `sub1`) on `pid`; returns its id and postback URL.
    pub async fn install_custom(&self, pid: &str) -> (String, String) {
        let (st, v) = self
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "custom", "settings": {"tracking_group": "mynet", "subid_param": "sub1"}}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        (
            v["id"].as_str().expect("id").to_owned(),
            v["postback_url"].as_str().expect("postback_url").to_owned(),
        )
    }

    /// Records visitor `n` landing on `landing` and clicking an Income
    /// Access link; returns the click id (one per `n`).
    pub async fn landing_click(&self, pid: &str, n: u32, landing: &str) -> String {
        let pv = format!("0190f1a2-7d3c-7abc-8def-{n:012}");
        let cid = format!("AZDxon08eryN7wEjRWeJq{n:07}");
        let visitor = format!("v_visitor_{n:04}");
        let link = format!("https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c={cid}");
        let click_event = format!("0190f1a2-7d3c-7abc-9def-{n:012}");
        let body = json!({"property_id": pid, "events": [
            pageview(&pv, &visitor, landing),
            outbound_click(&click_event, &visitor, landing, &cid, &link, &pv),
        ]});
        let (st, v) = self.collect(&body, &[("user-agent", CHROME_UA)]).await;
        assert_eq!(st, 202, "{v}");
        cid
    }
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";

/// A PageView event.
pub fn pageview(event_id: &str, visitor: &str, url: &str) -> Value {
    json!({"event_id": event_id, "name": "PageView", "ts": now_ms(), "visitor_id": visitor, "url": url,
           "referrer": "https://www.google.com/", "title": "Best offers"})
}

/// An OutboundClick event.
pub fn outbound_click(
    event_id: &str,
    visitor: &str,
    page: &str,
    click_id: &str,
    link: &str,
    pageview: &str,
) -> Value {
    json!({"event_id": event_id, "name": "OutboundClick", "ts": now_ms(), "visitor_id": visitor, "url": page,
           "click_id": click_id, "pageview_id": pageview,
           "link": {"url": link, "tracking_group": "incomeaccess", "text": "Join now"}})
}

/// One value, form-urlencoded (for query strings).
pub fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}
