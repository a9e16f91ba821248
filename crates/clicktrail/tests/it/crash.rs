//! Durability with a real process: every event acknowledged with a 2xx is
//! in the database after `kill -9`, and after a graceful SIGTERM shutdown,
//! both landing while the server is under load.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use tokio::sync::Mutex;

use crate::support::process::Serve;
use crate::support::{Backend, MASTER_KEY, TestDb, pageview, wait_for};

/// Events acknowledged before the server is stopped: enough that the stop
/// lands in the middle of a steady load.
const ACKED_BEFORE_STOP: usize = 500;

/// Loads the server from several tasks until `stop`, adding the ids of
/// acknowledged events to `acked`.
async fn load(
    http: reqwest::Client,
    base: String,
    pid: String,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<HashSet<String>>>,
) {
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
    let db = TestDb::new(Backend::Sqlite).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap();
    let mut child = Serve::new(&db.url, &db.dir).start().await;
    let base = child.base.clone();
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
    let acked = Arc::new(Mutex::new(HashSet::new()));
    let loader = tokio::spawn(load(
        http.clone(),
        base.clone(),
        pid,
        stop.clone(),
        acked.clone(),
    ));
    wait_for(
        Duration::from_secs(60),
        "the load to be acknowledged",
        || async { acked.lock().await.len() >= ACKED_BEFORE_STOP },
    )
    .await;
    if graceful {
        let status = child.terminate().await;
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    } else {
        child.kill().await; // SIGKILL
    }
    stop.store(true, Ordering::Relaxed);
    loader.await.unwrap();
    let acked = acked.lock().await.clone();

    let stored = stored_ids(&db.url).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost (of {})",
        lost.len(),
        acked.len()
    );
    // And the database opens and serves again.
    let mut again = Serve::new(&db.url, &db.dir).start().await;
    again.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    scenario(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_loses_nothing() {
    scenario(true).await;
}
