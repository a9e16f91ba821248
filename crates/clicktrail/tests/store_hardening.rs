//! The store under more than one process, its files and its claims
//! (issue 13: findings 3, 8, 9 and 12): two servers on one database taking
//! postbacks that move the same rollup rows, poll claims left by a crash,
//! the modes of the data files, and tracked-link slugs per property.

mod support;

use std::sync::Arc;

use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{Backend, CHROME_UA, MASTER_KEY, TestServer, outbound_click, pageview};

/// Records a session landing from ad campaign `n` on landing page `n`,
/// and a click; returns the click id.
async fn click(s: &TestServer, pid: &str, n: u32) -> String {
    let pv = format!("0190f1a2-7d3c-7abc-8def-{n:012}");
    let cid = format!("AZDxon08eryN7wEjRWeJq{n:07}");
    let landing = format!(
        "https://site.example/bonus{n}?utm_source=google&utm_medium=cpc&utm_campaign=c{n}&utm_content=ad{n}&gclid=Cj0_gclid_{n}"
    );
    let link = format!("https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c={cid}");
    let body = json!({"property_id": pid, "events": [
        pageview(&pv, &format!("v_visitor_{n:04}"), &landing),
        outbound_click(&format!("0190f1a2-7d3c-7abc-9def-{n:012}"), &format!("v_visitor_{n:04}"), &landing, &cid, &link, &pv),
    ]});
    let (st, v) = s.collect(&body, &[("user-agent", CHROME_UA)]).await;
    assert_eq!(st, 202, "{v}");
    cid
}

async fn install_custom(s: &TestServer, pid: &str) -> String {
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "custom", "settings": {"tracking_group": "mynet", "subid_param": "sub1"}}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    v["postback_url"].as_str().unwrap().to_owned()
}

/// Finding 3: two processes on one database commit conversions that
/// count in the same rollup rows. Each transaction locks those rows in
/// one global order, and one that still meets another (a deadlock, a
/// busy database) is written again: no postback is refused.
async fn two_processes_share_rollups(b: Backend) {
    const POSTBACKS: u32 = 1500;
    // Many distinct attributions: a group commit then moves hundreds of
    // rollup rows, most of them shared with the other process's.
    const CLICKS: u32 = 96;
    let a = TestServer::start(b).await;
    let second = clicktrail::app::start(support::config(&a.db))
        .await
        .expect("second server starts");
    let bases = Arc::new([a.base.clone(), second.base_url()]);
    let pid = a.property(&["site.example"]).await;
    let url = install_custom(&a, &pid).await;
    let path = url.split_once("/postback/").unwrap().1.to_owned();
    let mut clicks = Vec::new();
    for n in 0..CLICKS {
        clicks.push(click(&a, &pid, n).await);
    }
    let clicks = Arc::new(clicks);
    let http = a.http.clone();
    let answers: Vec<(u16, Value)> = futures::stream::iter(0..POSTBACKS)
        .map(|i| {
            let (http, bases, clicks, path) =
                (http.clone(), bases.clone(), clicks.clone(), path.clone());
            async move {
                let cid = &clicks[(i as usize) % clicks.len()];
                let base = &bases[(i as usize) % 2];
                let r = http
                    .get(format!(
                        "{base}/postback/{path}?sub1={cid}&payout=1.25&currency=EUR&txid=T-{i}&event=sale"
                    ))
                    .send()
                    .await
                    .expect("postback");
                (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(st, v)| *st != 200 || v["status"] != "validated")
        .collect();
    let unavailable = answers
        .iter()
        .filter(|(_, v)| v["error"]["code"] == "storage_unavailable")
        .count();
    assert_eq!(unavailable, 0, "storage_unavailable answers: {refused:?}");
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    // Every conversion counted once, from both processes.
    let (total,): (i64,) = a
        .server
        .services
        .db
        .fetch_one(
            "SELECT CAST(SUM(conversions) AS BIGINT) FROM rollup_conversions_hourly \
             WHERE model = 'last' AND dim = 'total'",
            clicktrail_store::args![],
        )
        .await
        .unwrap();
    assert_eq!(total, i64::from(POSTBACKS));
    second.stop().await.expect("second server stops");
    a.stop().await;
}

mod two_processes {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        two_processes_share_rollups(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        two_processes_share_rollups(Backend::Sqlite).await
    }
}
