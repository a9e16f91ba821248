//! The delivery tests' fixtures: servers tuned for fast retries (in-process
//! or as child processes), an API client, destinations on the testkit's
//! fake platforms, fixture conversions written the way the conversion code
//! writes them (conversion row, then `plan` + `insert_planned` in the same
//! transaction), the deliveries as stored, and a proxy that holds a
//! platform's answers back.

use std::time::Duration;

use clicktrail::config::Config;
use clicktrail_domain::PropertyId;
use clicktrail_engine::crypto::Keyring;
use clicktrail_store::deliveries::{self, PARKED_AT, PlannedDelivery};
use clicktrail_store::{Db, Tx, args};
use serde_json::{Value, json};

use super::process::{ChildServer, Serve};
use super::{Backend, MASTER_KEY, TestDb, TestServer};

pub const META_PIXEL: &str = "1234567890123456";
pub const META_TOKEN: &str = "EAABfakeMetaAccessToken0123456789";
pub const TIKTOK_PIXEL: &str = "CFAKEPIXEL0123";
pub const TIKTOK_TOKEN: &str = "tiktok-fake-access-token-0123";
pub const GA4_ID: &str = "G-FAKE12345";
pub const GA4_SECRET: &str = "ga4-fake-api-secret";
pub const GOOGLE_LEAD_ACTION: &str = "customers/1234567890/conversionActions/111";
pub const GOOGLE_PURCHASE_ACTION: &str = "customers/1234567890/conversionActions/222";

/// The configuration of a delivery test server: fast polls and retries,
/// no scheduled polling.
pub fn config(db: &TestDb) -> Config {
    let mut cfg = super::config(db);
    cfg.polling.enabled = false;
    cfg.delivery.poll_interval_ms = 50;
    cfg.delivery.backoff_base_secs = 1;
    cfg.delivery.backoff_max_secs = 2;
    cfg.delivery.timeout_secs = 3;
    cfg.delivery.max_attempts = 8;
    cfg
}

/// A server with [`config`] on a fresh database of `backend`.
pub async fn server(backend: Backend) -> TestServer {
    server_with(backend, |_| {}).await
}

/// A server with [`config`] changed by `tune`.
pub async fn server_with(backend: Backend, tune: impl FnOnce(&mut Config)) -> TestServer {
    let db = TestDb::new(backend).await;
    let mut cfg = config(&db);
    tune(&mut cfg);
    TestServer::start_with(db, cfg).await
}

/// `clicktrail serve` on `db` with the same tuning as [`config`], its data
/// directory `name` (each server its own instance id).
pub async fn child(db: &TestDb, name: &str) -> ChildServer {
    Serve::new(&db.url, &db.dir.join(name))
        .env("CLICKTRAIL_ALLOW_PRIVATE_NETWORKS", "true")
        .env("CLICKTRAIL_POLLING__ENABLED", "false")
        .env("CLICKTRAIL_DELIVERY__POLL_INTERVAL_MS", "50")
        .env("CLICKTRAIL_DELIVERY__TIMEOUT_SECS", "2")
        .env("CLICKTRAIL_DELIVERY__BACKOFF_BASE_SECS", "1")
        .env("CLICKTRAIL_DELIVERY__BACKOFF_MAX_SECS", "2")
        .start()
        .await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
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
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("client"),
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
pub async fn convert(server: &TestServer, property_id: &str, specs: &[ConvSpec]) -> Vec<Conv> {
    let state = &server.server.services;
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

/// Deliveries tried at least once (whatever came of it).
pub async fn count_tried(db: &Db) -> i64 {
    let (n,): (i64,) = db
        .fetch_one(
            "SELECT COUNT(*) FROM deliveries WHERE last_attempt_at IS NOT NULL",
            args![],
        )
        .await
        .expect("tried");
    n
}

/// Deliveries parked until their destination is resumed or fixed: no
/// worker claims them before that.
pub async fn count_parked(db: &Db) -> i64 {
    let (n,): (i64,) = db
        .fetch_one(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'retrying') \
             AND next_attempt_at >= $1",
            args![PARKED_AT],
        )
        .await
        .expect("parked");
    n
}

/// Deliveries a worker may still send: waiting and not parked. None left
/// means nothing more will reach a platform.
pub async fn count_to_send(db: &Db) -> i64 {
    let (n,): (i64,) = db
        .fetch_one(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'retrying') \
             AND next_attempt_at < $1",
            args![PARKED_AT],
        )
        .await
        .expect("to send");
    n
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
