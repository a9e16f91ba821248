//! Shared by the `delivery_*` integration tests: databases (SQLite files,
//! throw-away PostgreSQL databases), servers started in-process or as
//! child processes, an API client, and fixture conversions written the way
//! the conversion code writes them (conversion row, then `plan` +
//! `insert_planned` in the same transaction).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clicktrail::app::{self, RunningServer};
use clicktrail::config::{Config, Secret};
use clicktrail_domain::PropertyId;
use clicktrail_engine::crypto::Keyring;
use clicktrail_store::deliveries::{self, PlannedDelivery};
use clicktrail_store::{Db, DbOptions, Tx, args};
use serde_json::{Value, json};

pub const MASTER_KEY: &str = "delivery-tests-master-key-0123456789";
pub const META_PIXEL: &str = "1234567890123456";
pub const META_TOKEN: &str = "EAABfakeMetaAccessToken0123456789";
pub const TIKTOK_PIXEL: &str = "CFAKEPIXEL0123";
pub const TIKTOK_TOKEN: &str = "tiktok-fake-access-token-0123";
pub const GA4_ID: &str = "G-FAKE12345";
pub const GA4_SECRET: &str = "ga4-fake-api-secret";
pub const GOOGLE_LEAD_ACTION: &str = "customers/1234567890/conversionActions/111";
pub const GOOGLE_PURCHASE_ACTION: &str = "customers/1234567890/conversionActions/222";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A database of its own for one test; dropped afterwards.
pub struct TestDb {
    pub url: String,
    pub dir: PathBuf,
    pg_name: Option<String>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

async fn pg_admin() -> sqlx::PgPool {
    let connect = || {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect(PG_ADMIN)
    };
    match connect().await {
        Ok(p) => p,
        Err(_) => {
            // Not running: start the local cluster (see the test notes).
            let version = std::fs::read_dir("/etc/postgresql")
                .ok()
                .and_then(|mut d| d.next())
                .and_then(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .unwrap_or_else(|| "15".into());
            let _ = Command::new("pg_ctlcluster")
                .args(["--skip-systemctl-redirect", &version, "main", "start"])
                .status();
            tokio::time::sleep(Duration::from_secs(2)).await;
            connect().await.expect("PostgreSQL at 127.0.0.1:5432")
        }
    }
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = std::env::temp_dir().join(unique("ct-dlv-"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}/ct.db", dir.display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = unique("ct_test_");
                let admin = pg_admin().await;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&admin)
                    .await
                    .expect("create test database");
                admin.close().await;
                TestDb {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    /// A connection of the test's own (fixtures, checks).
    pub async fn connect(&self) -> Db {
        let db = Db::connect(&self.url, &DbOptions::default())
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        db
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop may run inside a runtime: use a thread with its own.
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    if let Ok(admin) = sqlx::postgres::PgPoolOptions::new()
                        .max_connections(1)
                        .connect(PG_ADMIN)
                        .await
                    {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&admin)
                                .await;
                        admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// The configuration of a test server: fast polls and retries.
pub fn test_config(db: &TestDb) -> Config {
    let mut cfg = Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: db.url.clone(),
        master_key: Some(serde_json::from_value::<Secret>(json!(MASTER_KEY)).expect("secret")),
        allow_private_networks: true,
        data_dir: db.dir.join("data"),
        log: "warn".into(),
        ..Config::default()
    };
    cfg.polling.enabled = false;
    cfg.delivery.poll_interval_ms = 50;
    cfg.delivery.backoff_base_secs = 1;
    cfg.delivery.backoff_max_secs = 2;
    cfg.delivery.timeout_secs = 3;
    cfg.delivery.max_attempts = 8;
    cfg
}

pub async fn start(cfg: Config) -> RunningServer {
    app::start(cfg).await.expect("server starts")
}

pub fn keyring() -> Keyring {
    Keyring::from_ikm(MASTER_KEY.as_bytes())
}

// ---- the API --------------------------------------------------------------------

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api {
            base: base.to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: token.to_owned(),
            ..self.clone()
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(&self.token).send().await.expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}/api/v1{path}", self.base)))
            .await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .post(format!("{}/api/v1{path}", self.base))
                .json(&body),
        )
        .await
    }

    pub async fn post_empty(&self, path: &str) -> (u16, Value) {
        self.send(self.http.post(format!("{}/api/v1{path}", self.base)))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(
            self.http
                .patch(format!("{}/api/v1{path}", self.base))
                .json(&body),
        )
        .await
    }

    pub async fn property(&self) -> String {
        let (s, v) = self
            .post(
                "/properties",
                json!({"name": "Casino reviews", "domains": ["casino-reviews.example"]}),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().expect("property id").to_owned()
    }

    /// Creates a destination and returns its id.
    pub async fn destination(&self, property: &str, body: Value) -> String {
        let (s, v) = self
            .post(&format!("/properties/{property}/destinations"), body)
            .await;
        assert_eq!(s, 201, "{v}");
        v["id"].as_str().expect("destination id").to_owned()
    }
}

pub fn meta_destination(endpoint: &str) -> Value {
    json!({"kind": "meta_capi", "name": "Meta",
           "settings": {"pixel_id": META_PIXEL, "endpoint": endpoint},
           "credentials": {"access_token": META_TOKEN}})
}

pub fn tiktok_destination(endpoint: &str) -> Value {
    json!({"kind": "tiktok", "settings": {"pixel_code": TIKTOK_PIXEL, "endpoint": endpoint},
           "credentials": {"access_token": TIKTOK_TOKEN}})
}

pub fn ga4_destination(endpoint: &str) -> Value {
    json!({"kind": "ga4", "settings": {"measurement_id": GA4_ID, "endpoint": endpoint},
           "credentials": {"api_secret": GA4_SECRET}})
}

pub fn google_destination(fake: &clicktrail_testkit::google_ads::FakeGoogleAds) -> Value {
    let a = fake.account();
    json!({"kind": "google_ads",
           "settings": {"customer_id": a.customer_id, "endpoint": fake.base_url(),
                        "token_endpoint": fake.token_url(),
                        "conversion_actions": {"Lead": GOOGLE_LEAD_ACTION, "Purchase": GOOGLE_PURCHASE_ACTION}},
           "credentials": {"developer_token": a.developer_token, "client_id": a.client_id,
                           "client_secret": a.client_secret, "refresh_token": a.refresh_token}})
}

// ---- fixture conversions ------------------------------------------------------------

/// A conversion to create, with its click's session.
#[derive(Debug, Clone)]
pub struct ConvSpec {
    pub event: String,
    pub value_micros: Option<i64>,
    pub currency: Option<String>,
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    pub ttp: Option<String>,
    /// Stored form of the address.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub em_hash: Option<String>,
    pub occurred_ago: Duration,
    pub click_ago: Duration,
}

pub const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36";
pub const RAW_IP: &str = "203.0.113.77";

impl ConvSpec {
    /// A Lead with every identifier, the address stored encrypted.
    pub fn lead(n: usize) -> ConvSpec {
        let now = chrono::Utc::now().timestamp_millis();
        let fbclid = format!("IwAR0fbclid{n}x");
        ConvSpec {
            event: "Lead".into(),
            value_micros: None,
            currency: None,
            gclid: Some(format!("Cj0KCQgclid{n}")),
            gbraid: None,
            fbc: Some(format!("fb.1.{}.{fbclid}", now - 3_600_000)),
            fbclid: Some(fbclid),
            fbp: Some(format!("fb.1.{}.{}", now - 7_200_000, 1_000_000 + n)),
            ttclid: Some(format!("E.C.P.ttclid{n}")),
            ttp: Some(format!("ttp{n}abcdef")),
            ip: Some(format!("e:{}", keyring().encrypt(RAW_IP.as_bytes()))),
            user_agent: Some(UA.into()),
            em_hash: Some(
                "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f".into(),
            ),
            occurred_ago: Duration::from_secs(60),
            click_ago: Duration::from_secs(1800),
        }
    }

    pub fn purchase(n: usize, value_micros: i64) -> ConvSpec {
        ConvSpec {
            event: "Purchase".into(),
            value_micros: Some(value_micros),
            currency: Some("EUR".into()),
            ..ConvSpec::lead(n)
        }
    }
}

/// A stored fixture conversion.
#[derive(Debug, Clone)]
pub struct Conv {
    pub id: String,
    pub event_id: String,
    pub visitor_id: String,
    pub spec: ConvSpec,
}

/// Writes the session, click and validated conversion rows of `spec`
/// inside `tx` (what the conversion code will have done by then).
pub async fn write_conversion(tx: &mut Tx<'_>, property_id: &str, spec: &ConvSpec) -> Conv {
    let now = chrono::Utc::now().timestamp_millis();
    let visitor = unique("v.");
    let click_id = unique("ck");
    let click_ts = now - i64::try_from(spec.click_ago.as_millis()).unwrap_or(0);
    let occurred = now - i64::try_from(spec.occurred_ago.as_millis()).unwrap_or(0);
    let landing = format!(
        "https://casino-reviews.example/best-bonus?utm_source=facebook&fbclid={}",
        spec.fbclid.clone().unwrap_or_default()
    );
    let (session_id,): (i64,) = tx
        .fetch_one(
            "INSERT INTO sessions (property_id, visitor_id, started_at, last_seen_at, landing_url, landing_page, \
             referrer, source, medium, channel, gclid, gbraid, fbclid, fbc, fbp, ttclid, ttp, device, is_bot, \
             user_agent, ip, em_hash, pageviews, events) \
             VALUES ($1, $2, $3, $3, $4, '/best-bonus', 'https://www.facebook.com/', 'facebook', 'paid', \
             'Paid Social', $5, $6, $7, $8, $9, $10, $11, 'desktop', $12, $13, $14, $15, 1, 2) RETURNING id",
            args![
                property_id,
                visitor.as_str(),
                click_ts - 60_000,
                landing.as_str(),
                spec.gclid.clone(),
                spec.gbraid.clone(),
                spec.fbclid.clone(),
                spec.fbc.clone(),
                spec.fbp.clone(),
                spec.ttclid.clone(),
                spec.ttp.clone(),
                false,
                spec.user_agent.clone(),
                spec.ip.clone(),
                spec.em_hash.clone()
            ],
        )
        .await
        .expect("insert session");
    tx.execute(
        "INSERT INTO clicks (property_id, click_id, origin, ts, session_id, visitor_id, page_url, link_url, link_group) \
         VALUES ($1, $2, 'tag', $3, $4, $5, 'https://casino-reviews.example/best-bonus', \
         'https://record.galapartners.co.uk/_x', 'incomeaccess')",
        args![property_id, click_id.as_str(), click_ts, session_id, visitor.as_str()],
    )
    .await
    .expect("insert click");
    let id = format!("cv_{}", clicktrail_domain::ids::random_base36(20));
    let event_id = uuid::Uuid::new_v4().to_string();
    tx.execute(
        "INSERT INTO conversions (id, property_id, source_kind, source_event, transaction_id, dedup_key, status, \
         event_name, event_id, value_micros, currency, source_status, send_to_destinations, occurred_at, \
         received_at, click_id, click_ts, session_id, visitor_id, channel, source, medium, landing_page, raw) \
         VALUES ($1, $2, 'postback', 'sale', $3, $3, 'validated', $4, $5, $6, $7, 'approved', $8, $9, $10, $11, \
         $12, $13, $14, 'Paid Social', 'facebook', 'paid', '/best-bonus', '{}')",
        args![
            id.as_str(),
            property_id,
            format!("tx-{id}"),
            spec.event.as_str(),
            event_id.as_str(),
            spec.value_micros,
            spec.currency.clone(),
            true,
            occurred,
            now,
            click_id.as_str(),
            click_ts,
            session_id,
            visitor.as_str()
        ],
    )
    .await
    .expect("insert conversion");
    Conv {
        id,
        event_id,
        visitor_id: visitor,
        spec: spec.clone(),
    }
}

/// Records validated conversions the way the conversion code does: rows,
/// then `plan` + `insert_planned` in the same transaction, commit, wake.
pub async fn convert(server: &RunningServer, property_id: &str, specs: &[ConvSpec]) -> Vec<Conv> {
    let state = &server.services;
    let pid = PropertyId::parse(property_id).expect("property id");
    let mut tx = state.db.begin().await.expect("begin");
    let mut out = Vec::new();
    for spec in specs {
        let conv = write_conversion(&mut tx, property_id, spec).await;
        let planned = clicktrail_engine::delivery::plan(&state.delivery, &pid, &spec.event, true)
            .await
            .expect("plan");
        deliveries::insert_planned(&mut tx, &conv.id, property_id, &planned)
            .await
            .expect("insert planned");
        out.push(conv);
    }
    tx.commit().await.expect("commit");
    state.delivery.wake();
    out
}

/// The same through a separate connection (servers in child processes):
/// the plan is given.
pub async fn convert_with(
    db: &Db,
    property_id: &str,
    specs: &[ConvSpec],
    planned: &[PlannedDelivery],
) -> Vec<Conv> {
    let mut tx = db.begin().await.expect("begin");
    let mut out = Vec::new();
    for spec in specs {
        let conv = write_conversion(&mut tx, property_id, spec).await;
        deliveries::insert_planned(&mut tx, &conv.id, property_id, planned)
            .await
            .expect("insert planned");
        out.push(conv);
    }
    tx.commit().await.expect("commit");
    out
}

/// Polls `check` until it holds or `limit` passes.
pub async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deliveries by status.
pub async fn status_counts(db: &Db) -> std::collections::HashMap<String, i64> {
    let rows: Vec<(String, i64)> = db
        .fetch_all(
            "SELECT status, COUNT(*) FROM deliveries GROUP BY status",
            args![],
        )
        .await
        .expect("counts");
    rows.into_iter().collect()
}

pub async fn count_status(db: &Db, status: &str) -> i64 {
    status_counts(db).await.get(status).copied().unwrap_or(0)
}

/// One delivery of a conversion, as the conversion log shows it.
pub async fn delivery_of(
    db: &Db,
    conversion_id: &str,
) -> Vec<clicktrail_engine::delivery::DeliveryView> {
    clicktrail_engine::delivery::deliveries_for_conversions(db, &[conversion_id])
        .await
        .expect("views")
        .remove(conversion_id)
        .unwrap_or_default()
}

// ---- servers in child processes ----------------------------------------------------------

/// A `clicktrail serve` child process.
pub struct ChildServer {
    pub child: Child,
    pub base: String,
}

impl ChildServer {
    pub async fn start(db: &TestDb, name: &str) -> ChildServer {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
            l.local_addr().expect("addr").port()
        };
        let dir = db.dir.join(name);
        std::fs::create_dir_all(&dir).expect("child dir");
        let child = Command::new(env!("CARGO_BIN_EXE_clicktrail"))
            .arg("serve")
            .current_dir(&dir)
            .env("CLICKTRAIL_LISTEN", format!("127.0.0.1:{port}"))
            .env("CLICKTRAIL_DATABASE_URL", &db.url)
            .env("CLICKTRAIL_MASTER_KEY", MASTER_KEY)
            .env("CLICKTRAIL_ALLOW_PRIVATE_NETWORKS", "true")
            .env("CLICKTRAIL_DATA_DIR", dir.join("data"))
            .env("CLICKTRAIL_LOG", "warn")
            .env("CLICKTRAIL_POLLING__ENABLED", "false")
            .env("CLICKTRAIL_DELIVERY__POLL_INTERVAL_MS", "50")
            .env("CLICKTRAIL_DELIVERY__TIMEOUT_SECS", "2")
            .env("CLICKTRAIL_DELIVERY__BACKOFF_BASE_SECS", "1")
            .env("CLICKTRAIL_DELIVERY__BACKOFF_MAX_SECS", "2")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn clicktrail serve");
        // Owned before waiting, so a failed start still kills it.
        let mut server = ChildServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let started = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{}/healthz", server.base)).send().await
                && r.status().is_success()
            {
                break;
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("child server exited: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "child server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        server
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A counter from the child's `/metrics`, summed over label sets whose
    /// text contains `labels`.
    pub async fn metric(&self, name: &str, labels: &str) -> f64 {
        let text = reqwest::get(format!("{}/metrics", self.base))
            .await
            .expect("metrics")
            .text()
            .await
            .unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l.contains(labels))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---- a platform whose answers are late ----------------------------------------------------

/// A TCP proxy in front of a fake platform: requests pass at once (the
/// platform records them), answers are held back by a settable delay. A
/// server killed during that delay has had its conversions accepted
/// without learning it: the case a resend with the same ids must cover.
pub struct SlowAnswers {
    pub base: String,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowAnswers {
    pub async fn start(upstream: &str) -> SlowAnswers {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU64, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let delay = delay_ms.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let delay = delay.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    let (mut cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    let up = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut cr, &mut sw).await;
                        let _ = sw.shutdown().await;
                    });
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        let ms = delay.load(Ordering::Relaxed);
                        if ms > 0 {
                            tokio::time::sleep(Duration::from_millis(ms)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                    up.abort();
                });
            }
        });
        SlowAnswers {
            base,
            delay_ms,
            task,
        }
    }

    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl Drop for SlowAnswers {
    fn drop(&mut self) {
        self.task.abort();
    }
}
