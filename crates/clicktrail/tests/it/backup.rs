//! `clicktrail backup` and `clicktrail restore` with real processes: a
//! backup taken under collector and postback load, restored into another
//! data directory, holds every event and conversion acknowledged before
//! it started, and the restored server runs with the same key (postback
//! tokens work). A restore refuses a used target and a damaged backup.
//! PostgreSQL: `backup` points to `pg_dump`, and a `pg_dump` /
//! `pg_restore` round trip keeps every table and serves postbacks.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::support::{
    self, Backend, CHROME_UA, MASTER_KEY, TestDb, TestServer, outbound_click, pageview,
};
use serde_json::{Value, json};

/// A free loopback port for a `clicktrail serve` started by hand (these
/// runs use the key file, not the harness's master key, so they do not go
/// through `support::process`).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}
use tokio::sync::Mutex;

/// Where a command-line run of clicktrail keeps its data.
#[derive(Clone)]
struct Place {
    dir: PathBuf,
    url: String,
}

impl Place {
    fn of(db: &TestDb) -> Place {
        Place {
            dir: db.dir.clone(),
            url: db.url.clone(),
        }
    }

    fn db_file(&self) -> PathBuf {
        self.dir.join("ct.db")
    }

    /// The binary, configured for this place only (no master key: the key
    /// is `secret.key` in the data directory).
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_clicktrail"));
        c.args(args)
            .current_dir(&self.dir)
            .env("CLICKTRAIL_DATABASE_URL", &self.url)
            .env("CLICKTRAIL_DATA_DIR", &self.dir)
            .env("CLICKTRAIL_LOG", "warn")
            .env_remove("CLICKTRAIL_MASTER_KEY");
        c
    }

    /// Runs a command to its end, on a blocking thread.
    async fn run(&self, args: &[&str]) -> Output {
        let mut c = self.command(args);
        tokio::task::spawn_blocking(move || c.output().expect("run clicktrail"))
            .await
            .expect("join")
    }

    fn serve(&self, port: u16) -> Server {
        let child = self
            .command(&["serve"])
            .env("CLICKTRAIL_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn clicktrail");
        Server(Some(child))
    }
}

/// A server process, killed if the test ends without stopping it.
struct Server(Option<Child>);

impl Server {
    /// SIGTERM, and waits for a clean exit.
    async fn stop(mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill -TERM");
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .expect("join")
            .expect("wait");
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy()
        .build()
        .expect("client")
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("server at {base} did not become healthy");
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// What the load got acknowledged: event ids (202 from the collector)
/// and transaction ids (200 `validated` from the postback URL).
#[derive(Default)]
struct Acked {
    events: HashSet<String>,
    transactions: HashSet<String>,
}

/// Collector and postback load until `stop`.
fn load(
    http: reqwest::Client,
    base: String,
    pid: String,
    postback_url: String,
    clicks: Vec<String>,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Acked>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for t in 0..4u64 {
        let (http, base, pid, stop, acked) = (
            http.clone(),
            base.clone(),
            pid.clone(),
            stop.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<String> = (0..5)
                    .map(|i| format!("0190f1a2-7d3c-7abc-{t:04x}-{:012x}", n * 5 + i))
                    .collect();
                n += 1;
                let events: Vec<Value> = ids
                    .iter()
                    .map(|id| pageview(id, &format!("v_load_{t:04}"), "https://site.example/"))
                    .collect();
                let r = http
                    .post(format!("{base}/collect"))
                    .header("content-type", "text/plain")
                    .body(json!({"property_id": pid, "events": events}).to_string())
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().as_u16() == 202 => acked.lock().await.events.extend(ids),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    for t in 0..2usize {
        let (http, url, clicks, stop, acked) = (
            http.clone(),
            postback_url.clone(),
            clicks.clone(),
            stop.clone(),
            acked.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let txid = format!("TX-{t}-{n}");
                let cid = &clicks[(n + t) % clicks.len()];
                n += 1;
                let r = http
                    .get(format!(
                        "{url}?sub1={cid}&payout=1.50&txid={txid}&event=sale"
                    ))
                    .send()
                    .await;
                let validated = match r {
                    Ok(r) if r.status().as_u16() == 200 => r
                        .json::<Value>()
                        .await
                        .is_ok_and(|v| v["status"] == "validated"),
                    _ => false,
                };
                if validated {
                    acked.lock().await.transactions.insert(txid);
                } else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }));
    }
    tasks
}

/// Waits until the load got at least `events` events and `transactions`
/// conversions acknowledged.
async fn wait_for_acks(acked: &Mutex<Acked>, events: usize, transactions: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        {
            let a = acked.lock().await;
            if a.events.len() >= events && a.transactions.len() >= transactions {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the load got {} events and {} conversions acknowledged",
                a.events.len(),
                a.transactions.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Event ids and transaction ids in the SQLite database at `url`.
async fn stored(url: &str) -> (HashSet<String>, HashSet<String>) {
    let db = clicktrail_store::Db::connect(url, &Default::default())
        .await
        .expect("open the restored database");
    let events: Vec<(String,)> = db
        .fetch_all("SELECT event_id FROM events", clicktrail_store::args![])
        .await
        .expect("events");
    let conversions: Vec<(Option<String>,)> = db
        .fetch_all(
            "SELECT transaction_id FROM conversions",
            clicktrail_store::args![],
        )
        .await
        .expect("conversions");
    db.close().await;
    (
        events.into_iter().map(|r| r.0).collect(),
        conversions.into_iter().filter_map(|r| r.0).collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_load_restores_every_acknowledged_row() {
    let source_db = TestDb::new(Backend::Sqlite).await;
    let source = Place::of(&source_db);
    let http = client();

    // An API token, then the server (with a generated secret.key).
    let out = source
        .run(&["token", "create", "--workspace", "default"])
        .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = source.serve(port);
    wait_healthy(&http, &base).await;

    let r = http
        .post(format!("{base}/api/v1/properties"))
        .bearer_auth(&token)
        .json(&json!({"name": "Site", "domains": ["site.example"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let pid = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = http
        .post(format!("{base}/api/v1/properties/{pid}/integrations"))
        .bearer_auth(&token)
        .json(&json!({"catalog": "custom", "settings": {"tracking_group": "mynet", "subid_param": "sub1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let integration = r.json::<Value>().await.unwrap();
    let postback_url = integration["postback_url"].as_str().unwrap().to_owned();
    let integration_id = integration["id"].as_str().unwrap().to_owned();
    // Clicks for the postbacks to name.
    let mut clicks = Vec::new();
    for n in 0..8u32 {
        let pv = format!("0190f1a2-7d3c-7abc-8def-{n:012}");
        let cid = format!("AZDxon08eryN7wEjRWeJq{n:07}");
        let visitor = format!("v_visitor_{n:04}");
        let link = format!("https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c={cid}");
        let click_event = format!("0190f1a2-7d3c-7abc-9def-{n:012}");
        let body = json!({"property_id": pid, "events": [
            pageview(&pv, &visitor, "https://site.example/?utm_source=google&utm_medium=cpc"),
            outbound_click(&click_event, &visitor, "https://site.example/", &cid, &link, &pv),
        ]});
        let r = http
            .post(format!("{base}/collect"))
            .header("content-type", "text/plain")
            .header("user-agent", CHROME_UA)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        clicks.push(cid);
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Acked::default()));
    let tasks = load(
        http.clone(),
        base.clone(),
        pid.clone(),
        postback_url.clone(),
        clicks.clone(),
        stop.clone(),
        acked.clone(),
    );
    wait_for_acks(&acked, 200, 20).await;

    // What was acknowledged before the backup started must be in it.
    let before = {
        let a = acked.lock().await;
        (a.events.clone(), a.transactions.clone())
    };
    let file = source.dir.join("backups").join("ct-backup.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = source.run(&["backup", file.to_str().unwrap()]).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "backup failed: {stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("backup written"), "{stdout}");
    assert!(stdout.contains("integrity check ok"), "{stdout}");
    assert!(stdout.contains("events "), "{stdout}");
    assert!(stdout.contains("conversions "), "{stdout}");
    assert!(stdout.contains("ct-backup.db.key"), "{stdout}");
    // The load went on through the backup, and after it.
    let (n_events, n_tx) = {
        let a = acked.lock().await;
        (a.events.len(), a.transactions.len())
    };
    wait_for_acks(&acked, n_events + 100, n_tx + 5).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    server.stop().await;

    let key_beside = source.dir.join("backups").join("ct-backup.db.key");
    assert_eq!(
        std::fs::read(&key_beside).unwrap(),
        std::fs::read(source.dir.join("secret.key")).unwrap(),
        "the key file is copied beside the backup"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&key_beside), 0o600);
    }

    // Restored into an empty data directory elsewhere.
    let target_db = TestDb::new(Backend::Sqlite).await;
    let target = Place::of(&target_db);
    let out = target.run(&["restore", file.to_str().unwrap()]).await;
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "restore failed: {stdout}{}",
        text(&out.stderr)
    );
    assert!(stdout.contains("restored"), "{stdout}");
    assert!(stdout.contains("integrity check ok"), "{stdout}");
    assert_eq!(
        std::fs::read(target.dir.join("secret.key")).unwrap(),
        std::fs::read(source.dir.join("secret.key")).unwrap(),
        "the key is restored"
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&target.db_file()), 0o600);
        assert_eq!(mode(&target.dir.join("secret.key")), 0o600);
    }

    // A server starts on it, with the same tokens and key.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let server = target.serve(port);
    wait_healthy(&http, &base).await;
    let r = http
        .get(format!("{base}/api/v1/integrations/{integration_id}"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "the API token works");
    let v = r.json::<Value>().await.unwrap();
    let restored_url = v["postback_url"].as_str().unwrap().to_owned();
    let token_path = |u: &str| u[u.find("/postback/").expect("a postback URL")..].to_owned();
    assert_eq!(
        token_path(&restored_url),
        token_path(&postback_url),
        "the postback token decrypts with the restored key"
    );
    let r = http
        .get(format!(
            "{base}{}?sub1={}&payout=2&txid=AFTER-RESTORE&event=sale",
            token_path(&postback_url),
            clicks[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "validated");
    server.stop().await;

    let (events, transactions) = stored(&target.url).await;
    let lost_events: Vec<_> = before.0.difference(&events).collect();
    let lost_tx: Vec<_> = before.1.difference(&transactions).collect();
    assert!(
        lost_events.is_empty() && lost_tx.is_empty(),
        "acknowledged before the backup but not restored: {} of {} events, {} of {} conversions \
         ({lost_tx:?})",
        lost_events.len(),
        before.0.len(),
        lost_tx.len(),
        before.1.len()
    );
    assert!(transactions.contains("AFTER-RESTORE"));
    drop(source_db);
    drop(target_db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restore_refuses_a_used_target_and_a_damaged_backup() {
    let db = TestDb::new(Backend::Sqlite).await;
    let place = Place::of(&db);
    // A database with a key: a server started on it once.
    let port = free_port();
    let http = client();
    let server = place.serve(port);
    wait_healthy(&http, &format!("http://127.0.0.1:{port}")).await;
    server.stop().await;
    let file = place.dir.join("b.db");
    let out = place.run(&["backup", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));

    // Into the directory it came from: the database is there.
    let out = place.run(&["restore", file.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("already exists"), "{stderr}");
    assert!(stderr.contains("--force"), "{stderr}");

    // A damaged backup changes nothing in an empty directory.
    let empty_db = TestDb::new(Backend::Sqlite).await;
    let empty = Place::of(&empty_db);
    let damaged = place.dir.join("damaged.db");
    let mut bytes = std::fs::read(&file).unwrap();
    for page in bytes.chunks_mut(4096).skip(1) {
        page[..64].fill(0xA5);
    }
    std::fs::write(&damaged, bytes).unwrap();
    std::fs::copy(place.dir.join("b.db.key"), place.dir.join("damaged.db.key")).unwrap();
    let out = empty.run(&["restore", damaged.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("integrity check"), "{stderr}");
    let garbage = place.dir.join("garbage.db");
    std::fs::write(&garbage, "no database here ".repeat(500)).unwrap();
    let out = empty.run(&["restore", garbage.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("not a SQLite database"), "{stderr}");
    // Without its key a restore is refused too (the server would not start).
    std::fs::copy(&file, place.dir.join("keyless.db")).unwrap();
    let keyless = place.dir.join("keyless.db");
    let out = empty.run(&["restore", keyless.to_str().unwrap()]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no key for this backup"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&empty.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "nothing written: {left:?}");

    // With --force, the server stopped: replaced, the old one kept aside.
    let out = place
        .run(&["restore", "--force", file.to_str().unwrap()])
        .await;
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("kept as"), "{stdout}");
    drop(db);
    drop(empty_db);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_on_postgres_point_to_pg_dump() {
    let db = TestDb::new(Backend::Sqlite).await;
    let place = Place {
        dir: db.dir.clone(),
        url: "postgres://postgres:hunter2@127.0.0.1:5432/clicktrail".into(),
    };
    let out = place.run(&["backup", "x.dump"]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pg_dump --format=custom"), "{stderr}");
    assert!(stderr.contains("Backup and restore"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "no password in messages: {stderr}"
    );
    let out = place.run(&["restore", "x.dump"]).await;
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("pg_restore"), "{stderr}");
    drop(db);
}

/// Row counts of every table of the PostgreSQL database at `url`.
async fn pg_counts(url: &str) -> Vec<(String, i64)> {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url).await.expect("connect");
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .expect("tables");
    let mut out = Vec::new();
    for (t,) in tables {
        let (n,): (i64,) = sqlx::query_as(&format!("SELECT count(*) FROM \"{t}\""))
            .fetch_one(&mut conn)
            .await
            .expect("count");
        out.push((t, n));
    }
    let _ = conn.close().await;
    out
}

fn pg_tool(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_pg_dump_and_pg_restore_round_trip() {
    if Command::new("pg_dump").arg("--version").output().is_err() {
        eprintln!("skipped: pg_dump is not installed");
        return;
    }
    let s = TestServer::start(Backend::Postgres).await;
    let pid = s.property(&["site.example"]).await;
    let (integration_id, postback_url) = s.install_custom(&pid).await;
    for n in 0..3u32 {
        let cid = s
            .landing_click(&pid, n, "https://site.example/?gclid=abc")
            .await;
        let r = s
            .http
            .get(format!("{postback_url}?sub1={cid}&payout=3&txid=PG-{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.json::<Value>().await.unwrap()["status"], "validated");
    }
    // Dumped while the server runs, as in production.
    let dump = s.db.dir.join("clicktrail.dump");
    let out = pg_tool(
        "pg_dump",
        &[
            "--format=custom",
            "--file",
            dump.to_str().unwrap(),
            &s.db.url,
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let TestServer { server, db, .. } = s;
    server.stop().await.expect("clean shutdown");
    let before = pg_counts(&db.url).await;
    assert!(
        before.iter().any(|(t, n)| t == "conversions" && *n == 3),
        "{before:?}"
    );

    let fresh = TestDb::new(Backend::Postgres).await;
    let out = pg_tool(
        "pg_restore",
        &[
            "--no-owner",
            "--exit-on-error",
            "--single-transaction",
            "--dbname",
            &fresh.url,
            dump.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        pg_counts(&fresh.url).await,
        before,
        "every table, every row"
    );

    // The server starts on the restored database and serves a postback of
    // the integration that was there.
    let cfg = support::config(&fresh);
    let restored = TestServer::start_with(fresh, cfg).await;
    let (st, v) = restored
        .get(
            &format!("/api/v1/integrations/{integration_id}"),
            MASTER_KEY,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let path = &postback_url[postback_url.find("/postback/").unwrap()..];
    let cid = format!("AZDxon08eryN7wEjRWeJq{:07}", 1);
    let r = restored
        .http
        .get(restored.url(&format!("{path}?sub1={cid}&payout=4&txid=PG-AFTER")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "validated");
    restored.stop().await;
    drop(db);
}
