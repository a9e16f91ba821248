//! Delivery throughput and latency, end to end: a real server (in-process,
//! SQLite or PostgreSQL) with Meta (and optionally TikTok) destinations
//! pointing at the local fakes; validated conversions are recorded at a
//! steady rate the way the conversion writer does (conversion rows, then
//! `delivery::queue_in`, in one group-committed transaction every 10 ms or
//! as soon as the previous one committed when behind, then a wake-up); the
//! workers claim, batch, send and record.
//!
//! Reports: conversions and deliveries per second from the first
//! acceptance to the last recorded delivery, and the time from a
//! conversion's commit to its first delivery attempt (p50 / p99 / max).
//!
//! ```text
//! cargo run --release -p clicktrail --example bench_delivery -- sqlite 2500 10
//! cargo run --release -p clicktrail --example bench_delivery -- postgres 2500 10 meta,tiktok
//! ```
//! Arguments: backend (`sqlite` | `postgres`), conversions per second,
//! seconds, destinations (`meta`, `meta,tiktok`). PostgreSQL is reached at
//! postgres://postgres@127.0.0.1:5432 (a database is created and dropped).

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use clicktrail::app;
use clicktrail_domain::PropertyId;
use clicktrail_engine::conversions::QueueItem;
use clicktrail_engine::delivery::queue_in;
use clicktrail_store::{Db, args};
use clicktrail_testkit::meta::FakeMeta;
use clicktrail_testkit::tiktok::FakeTiktok;
use serde_json::{Value, json};
use support::{BenchDb, api};

const SESSIONS: i64 = 2000;

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn preload(db: &Db, property: &str) {
    let now = chrono::Utc::now().timestamp_millis();
    let mut tx = db.begin().await.expect("begin");
    for i in 0..SESSIONS {
        let (sid,): (i64,) = tx
            .fetch_one(
                "INSERT INTO sessions (property_id, visitor_id, started_at, last_seen_at, landing_url, landing_page, \
                 source, medium, channel, fbclid, fbc, fbp, ttclid, ttp, device, is_bot, user_agent, ip, \
                 pageviews, events) VALUES ($1, $2, $3, $3, 'https://bench.example/offer?fbclid=x', '/offer', \
                 'facebook', 'paid', 'Paid Social', $4, $5, $6, $7, $8, 'desktop', $9, \
                 'Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0', '203.0.113.0', 1, 2) RETURNING id",
                args![
                    property,
                    format!("visitor.{i:08}"),
                    now - 3_600_000,
                    format!("IwAR{i:08}"),
                    format!("fb.1.{}.IwAR{i:08}", now - 3_600_000),
                    format!("fb.1.{}.{}", now - 7_200_000, 100_000 + i),
                    format!("E.C.P.{i:08}"),
                    format!("ttp{i:08}"),
                    false
                ],
            )
            .await
            .expect("session");
        tx.execute(
            "INSERT INTO clicks (property_id, click_id, origin, ts, session_id, visitor_id, page_url) \
             VALUES ($1, $2, 'tag', $3, $4, $5, 'https://bench.example/offer')",
            args![
                property,
                format!("benchclick{i:08}"),
                now - 3_000_000,
                sid,
                format!("visitor.{i:08}")
            ],
        )
        .await
        .expect("click");
    }
    tx.commit().await.expect("commit");
}

struct Run {
    conversions: usize,
    deliveries: i64,
    seconds: f64,
    p50: i64,
    p99: i64,
    max: i64,
}

async fn run(bench_db: &BenchDb, rate: usize, seconds: u64, kinds: &[&str]) -> Run {
    let cfg = bench_db.config();
    let server = app::start(cfg).await.expect("server");
    let state = &server;
    let base = server.base_url();
    let http = reqwest::Client::new();

    let meta = FakeMeta::start("1234567890123456", "EAABbenchToken0123456789")
        .await
        .expect("fake meta");
    let tiktok = FakeTiktok::start("CBENCHPIXEL01", "tiktok-bench-token-0123")
        .await
        .expect("fake tiktok");
    let property = api(
        &http,
        &base,
        "/properties",
        json!({"name": "bench", "domains": ["bench.example"]}),
    )
    .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    for kind in kinds {
        let body = match *kind {
            "meta" => {
                json!({"kind": "meta_capi", "settings": {"pixel_id": "1234567890123456", "endpoint": meta.base_url()},
                             "credentials": {"access_token": "EAABbenchToken0123456789"}})
            }
            "tiktok" => {
                json!({"kind": "tiktok", "settings": {"pixel_code": "CBENCHPIXEL01", "endpoint": tiktok.base_url()},
                               "credentials": {"access_token": "tiktok-bench-token-0123"}})
            }
            other => panic!("unknown destination {other}"),
        };
        api(
            &http,
            &base,
            &format!("/properties/{property}/destinations"),
            body,
        )
        .await;
    }
    preload(&state.services.db, &property).await;
    let pid = PropertyId::parse(&property).expect("property id");

    // The load: one transaction every 10 ms.
    let per_tick = rate.div_ceil(100).max(1);
    let total = rate * seconds as usize;
    let mut accepted: HashMap<String, i64> = HashMap::with_capacity(total);
    let source = match state.services.db.backend() {
        clicktrail_store::Backend::Sqlite => "(SELECT value ->> 'id' AS id, value ->> 'event_id' AS event_id, \
             value ->> 'at' AS at, value ->> 'click_id' AS click_id, value ->> 'click_ts' AS click_ts, \
             value ->> 'session_id' AS session_id, value ->> 'visitor_id' AS visitor_id FROM json_each($2)) AS x"
            .to_owned(),
        clicktrail_store::Backend::Postgres => "json_to_recordset($2::json) AS x(id text, event_id text, at bigint, \
             click_id text, click_ts bigint, session_id bigint, visitor_id text)"
            .to_owned(),
    };
    let insert_sql = format!(
        "INSERT INTO conversions (id, property_id, source_kind, source_event, status, event_name, event_id, \
         value_micros, currency, source_status, send_to_destinations, occurred_at, received_at, click_id, \
         click_ts, session_id, visitor_id, raw) \
         SELECT x.id, $1, 'postback', 'sale', 'validated', 'Purchase', x.event_id, 25000000, 'EUR', 'approved', \
         true, x.at, x.at, x.click_id, x.click_ts, x.session_id, x.visitor_id, '{{}}' FROM {source}"
    );
    let started = Instant::now();
    let mut n: usize = 0;
    while n < total {
        // Like a group-committing writer: every 10 ms, or at once when
        // behind, one transaction with everything due by now.
        let due = ((rate as f64 * started.elapsed().as_secs_f64()) as usize).min(total);
        if due < n + per_tick && due < total {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let batch = (due - n).min(2000);
        let now = chrono::Utc::now().timestamp_millis();
        let mut tx = state.services.db.begin().await.expect("begin");
        let mut ids = Vec::with_capacity(batch);
        let mut rows = Vec::with_capacity(batch);
        for _ in 0..batch {
            let s = (n as i64) % SESSIONS;
            let id = format!("cv_bench{n:012}");
            rows.push(json!({
                "id": id, "event_id": format!("ev-{id}"), "at": now,
                "click_id": format!("benchclick{s:08}"), "click_ts": now - 3_000_000,
                "session_id": s + 1, "visitor_id": format!("visitor.{s:08}"),
            }));
            ids.push(id);
            n += 1;
        }
        // One statement per transaction, as the conversion writer does.
        tx.execute(
            &insert_sql,
            args![property.as_str(), Value::Array(rows).to_string()],
        )
        .await
        .expect("conversions");
        let items: Vec<QueueItem<'_>> = ids
            .iter()
            .map(|id| QueueItem {
                conversion_id: id,
                property_id: &pid,
                event_name: "Purchase",
                send_to_destinations: true,
            })
            .collect();
        queue_in(&state.services.delivery, &mut tx, &items)
            .await
            .expect("queue");
        tx.commit().await.expect("commit");
        let at = chrono::Utc::now().timestamp_millis();
        for id in ids {
            accepted.insert(id, at);
        }
        state.services.delivery.wake();
    }
    let produced_in = started.elapsed();
    let expected = (total * kinds.len()) as i64;
    loop {
        let (done,): (i64,) = state
            .services
            .db
            .fetch_one(
                "SELECT COUNT(*) FROM deliveries WHERE status = 'delivered'",
                args![],
            )
            .await
            .expect("count");
        if done >= expected {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(seconds * 10 + 60),
            "only {done} of {expected} delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<(String, i64, i64)> = state
        .services
        .db
        .fetch_all(
            "SELECT dl.conversion_id, MIN(a.at), MAX(dl.delivered_at) FROM deliveries dl \
             JOIN delivery_attempts a ON a.delivery_id = dl.id GROUP BY dl.id, dl.conversion_id",
            args![],
        )
        .await
        .expect("attempts");
    let first_accept = accepted.values().copied().min().unwrap_or(0);
    let last_delivered = rows.iter().map(|r| r.2).max().unwrap_or(0);
    let mut lat: Vec<i64> = rows
        .iter()
        .filter_map(|(cid, first, _)| accepted.get(cid).map(|acc| (first - acc).max(0)))
        .collect();
    lat.sort_unstable();
    let events = meta.events().len() + tiktok.events().len();
    assert_eq!(
        events as i64, expected,
        "each delivery reached its fake once"
    );
    eprintln!(
        "  produced {total} conversions in {:.2} s; fakes received {events} events",
        produced_in.as_secs_f64()
    );
    server.stop().await.expect("stop");
    Run {
        conversions: total,
        deliveries: expected,
        seconds: (last_delivered - first_accept).max(1) as f64 / 1000.0,
        p50: percentile(&lat, 50.0),
        p99: percentile(&lat, 99.0),
        max: lat.last().copied().unwrap_or(0),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map_or("sqlite", String::as_str).to_owned();
    let rate: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2500);
    let seconds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(10);
    let kinds_arg = args.get(3).cloned().unwrap_or_else(|| "meta".into());
    let kinds: Vec<&str> = kinds_arg.split(',').collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bench_db = BenchDb::create(&backend).await;
        eprintln!("delivery bench: {backend}, {rate} conversions/s for {seconds} s, destinations {kinds_arg}");
        let r = run(&bench_db, rate, seconds, &kinds).await;
        println!(
            "{backend}: {} conversions ({} deliveries) in {:.2} s = {:.0} conversions/s, {:.0} deliveries/s; \
             accepted -> first attempt p50 {} ms, p99 {} ms, max {} ms",
            r.conversions,
            r.deliveries,
            r.seconds,
            r.conversions as f64 / r.seconds,
            r.deliveries as f64 / r.seconds,
            r.p50,
            r.p99,
            r.max
        );
        bench_db.remove().await;
    });
}
