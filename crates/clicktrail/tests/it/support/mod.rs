//! Test support for the server's integration tests: a real server started
//! in-process on port 0 against a fresh SQLite file or a fresh PostgreSQL
//! database (created here, dropped by `stop`), and small HTTP helpers.

// Each test binary uses a different part of this module, so some items
// are unused in each; `expect(dead_code)` would fail in the binaries that
// use everything.
#![allow(dead_code)]

use std::path::PathBuf;
use std::time::Duration;

use clicktrail::app::{self, RunningServer};
use clicktrail::config::{Config, Secret};
use serde_json::{Value, json};

pub const MASTER_KEY: &str = "test-master-key-0123456789";
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Declares one async test per backend: `both!(name, |backend| async move { ... });`
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::support::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::support::Backend::Postgres).await
            }
        }
    };
}

/// A database for one test.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = std::env::temp_dir().join(unique("clicktrail-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}/ct.db", dir.display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = unique("ct_test");
                pg_admin(&format!("CREATE DATABASE {name}")).await;
                TestDb {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub async fn drop_db(self) {
        if let Some(name) = &self.pg_name {
            pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn pg_admin(sql: &str) {
    use sqlx::Connection;
    let mut conn = match sqlx::PgConnection::connect(PG_ADMIN).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL is not reachable at {PG_ADMIN} ({e}); start it with `.ci/run` or pg_ctlcluster"
        ),
    };
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .expect("admin statement");
    let _ = conn.close().await;
}

/// The configuration of a test server on `db`.
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

/// A started server with an HTTP client.
pub struct TestServer {
    pub server: RunningServer,
    pub db: TestDb,
    pub http: reqwest::Client,
    pub base: String,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        let db = TestDb::new(backend).await;
        let cfg = config(&db);
        Self::start_with(db, cfg).await
    }

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

    pub async fn stop(self) {
        self.server.stop().await.expect("clean shutdown");
        self.db.drop_db().await;
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

/// A free loopback port, for a server started as a child process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// One value, form-urlencoded (for query strings).
pub fn urlenc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl TestServer {
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
