//! Durability with a real process: every event acknowledged with a 2xx is
//! in the database after `kill -9`, and after a graceful SIGTERM shutdown.

mod support;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{MASTER_KEY, free_port, pageview};
use tokio::sync::Mutex;

fn spawn_server(db_url: &str, dir: &std::path::Path, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_clicktrail"))
        .arg("serve")
        .env("CLICKTRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("CLICKTRAIL_DATABASE_URL", db_url)
        .env("CLICKTRAIL_MASTER_KEY", MASTER_KEY)
        .env("CLICKTRAIL_DATA_DIR", dir)
        .env("CLICKTRAIL_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn clicktrail")
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
    panic!("server did not become healthy");
}

/// Loads the server from several tasks until `stop`; returns acknowledged ids.
async fn load(
    http: reqwest::Client,
    base: String,
    pid: String,
    stop: Arc<AtomicBool>,
) -> HashSet<String> {
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let mut tasks = Vec::new();
    for t in 0..8 {
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
                let ids: Vec<String> = (0..10)
                    .map(|i| format!("0190f1a2-7d3c-7abc-{t:04x}-{:012x}", n * 10 + i))
                    .collect();
                n += 1;
                let events: Vec<_> = ids
                    .iter()
                    .map(|id| pageview(id, &format!("v_visitor_{t:04}"), "https://site.example/"))
                    .collect();
                let body = json!({"property_id": pid, "events": events}).to_string();
                match http
                    .post(format!("{base}/collect"))
                    .header("content-type", "text/plain")
                    .body(body)
                    .send()
                    .await
                {
                    Ok(r) if r.status().as_u16() == 202 => acked.lock().await.extend(ids),
                    _ => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }

    acked.lock().await.clone()
}

async fn stored_ids(db_url: &str) -> HashSet<String> {
    let db = clicktrail_store::Db::connect(db_url, &Default::default())
        .await
        .unwrap();
    let rows: Vec<(String,)> = db
        .fetch_all("SELECT event_id FROM events", clicktrail_store::args![])
        .await
        .unwrap();
    db.close().await;
    rows.into_iter().map(|r| r.0).collect()
}

async fn scenario(graceful: bool) {
    let db = support::TestDb::new(support::Backend::Sqlite).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap();
    let mut child = spawn_server(&db.url, &db.dir, port);
    wait_healthy(&http, &base).await;
    let r = http
        .post(format!("{base}/api/v1/properties"))
        .bearer_auth(MASTER_KEY)
        .json(&json!({"name": "s", "domains": ["site.example"]}))
        .send()
        .await
        .unwrap();
    let pid = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let stop = Arc::new(AtomicBool::new(false));
    let loader = tokio::spawn(load(http.clone(), base.clone(), pid, stop.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    if graceful {
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let status = tokio::task::spawn_blocking(move || child.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    } else {
        child.kill().unwrap(); // SIGKILL
        let _ = child.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let acked = loader.await.unwrap();
    assert!(
        acked.len() > 100,
        "the load must have been acknowledged before the stop ({} events)",
        acked.len()
    );

    let stored = stored_ids(&db.url).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost (of {})",
        lost.len(),
        acked.len()
    );
    // And the database opens and serves again.
    let port2 = free_port();
    let mut child = spawn_server(&db.url, &db.dir, port2);
    wait_healthy(&http, &format!("http://127.0.0.1:{port2}")).await;
    child.kill().unwrap();
    let _ = child.wait();
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_loses_nothing() {
    scenario(true).await;
}
