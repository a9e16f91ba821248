//! Dashboard performance: a million events stored, then each page's server
//! time. Ignored by default (it takes a minute or two); run it with
//!
//!     cargo test --release -p clicktrail --test it dashboard_bench -- --ignored --nocapture
//!
//! (`CLICKTRAIL_BENCH_PG=1` runs it on PostgreSQL too, `CLICKTRAIL_BENCH_EVENTS`
//! changes the count). Events go through the real ingest path minus the
//! HTTP hop: wire-format bodies decoded by the collector's decoder, enriched
//! by the server's enricher and committed by the server's ingest queue, with
//! receive times spread over 30 days (the collector itself stamps events
//! with the current time). Conversions go through the postback service,
//! spend through the CSV import. Page times are measured over HTTP
//! (loopback) and from the report page's `Server-Timing` header.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::{Backend, TestServer};

const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];
const SOURCES: &[&str] = &[
    "utm_source=facebook&utm_medium=paid_social",
    "utm_source=google&utm_medium=cpc",
    "utm_source=tiktok&utm_medium=paid_social",
    "utm_source=newsletter&utm_medium=email",
    "utm_source=bing&utm_medium=cpc",
    "",
];

/// Submits one batch through the collector's decoder, enricher and queue.
/// What [`ingest`] needs of the server (cloned into tasks).
#[derive(Clone)]
struct Ingest {
    services: clicktrail_engine::Services,
    ingest: clicktrail_engine::ingest::IngestQueue,
}

async fn ingest(state: &Ingest, pid: &str, ua: &str, at_ms: i64, events: Vec<Value>) {
    let body = json!({"property_id": pid, "events": events}).to_string();
    let batch =
        clicktrail_domain::collect::decode(body.as_bytes(), at_ms + 300_000).expect("decode");
    let property = state
        .services
        .properties
        .get(&batch.property_id)
        .await
        .expect("db")
        .expect("property");
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(axum::http::header::USER_AGENT, ua.parse().expect("ua"));
    let peer: SocketAddr = ([198, 51, 100, 9], 1234).into();
    let facts = state.services.enricher.request_facts(&headers, Some(peer));
    let ip = state
        .services
        .enricher
        .stored_ip(property.settings.ip_handling, facts.ip);
    let evs: Vec<IngestEvent> = batch
        .events
        .into_iter()
        .map(|ev| IngestEvent {
            property_id: pid.to_owned(),
            received_at_ms: ev.client_ts_ms,
            session_timeout_ms: property.settings.session_timeout_ms(),
            seed: Arc::new(clicktrail_engine::enrich::session_seed(
                &ev,
                &facts,
                ip.clone(),
            )),
            event: ev,
            click_origin: ClickOrigin::Tag,
            onsite: None,
        })
        .collect();
    loop {
        match state.ingest.submit(evs.clone()).await {
            Ok(_) => return,
            Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
        }
    }
}

struct Timing {
    page: String,
    wall_ms: Vec<f64>,
    server_ms: Vec<f64>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied().unwrap_or(0.0)
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(0.0, f64::max)
}

async fn run(backend: Backend) {
    let target: usize = std::env::var("CLICKTRAIL_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let t = TestServer::start(backend).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Bench", "bench.example", "EUR").await;
    let state = &t.server;
    let mut settings = serde_json::Map::new();
    settings.insert("tracking_group".into(), json!("benchnet"));
    settings.insert("subid_param".into(), json!("subid"));
    let property = state
        .services
        .properties
        .get(&clicktrail_domain::PropertyId::parse(&pid).expect("pid"))
        .await
        .expect("db")
        .expect("property");
    let integration = state
        .services
        .integrations
        .install(
            &property,
            clicktrail_engine::integrations::InstallRequest {
                catalog: "custom".into(),
                name: None,
                credentials: serde_json::Map::new(),
                settings,
                event_mapping: None,
            },
        )
        .await
        .expect("install");
    let token = state
        .services
        .integrations
        .postback_token(&integration)
        .expect("token");

    // Traffic.
    let mut rng = StdRng::seed_from_u64(42);
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - 30 * 86_400_000;
    let started = Instant::now();
    let mut n = 0usize;
    let mut clicks: Vec<(String, i64)> = Vec::new();
    let mut pending: Vec<Value> = Vec::new();
    let mut visit = 0u64;
    while n < target {
        // Batches of visits sharing a user agent and a time: ~2000 events.
        let ua = UAS[rng.random_range(0..UAS.len())];
        let at = start + (n as i64 * (30 * 86_400_000) / target as i64);
        while pending.len() < 2000 {
            visit += 1;
            let visitor = format!("bench-visitor-{visit:010}");
            let src = SOURCES[rng.random_range(0..SOURCES.len())];
            let camp = rng.random_range(0..40);
            let page = format!("/page-{}", rng.random_range(0..500));
            let mut url = format!("https://bench.example{page}");
            if !src.is_empty() {
                url.push_str(&format!(
                    "?{src}&utm_campaign=campaign-{camp}&utm_content=ad-{camp}-{}",
                    rng.random_range(0..5)
                ));
            }
            pending.push(json!({"event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView", "ts": at, "visitor_id": visitor, "url": url}));
            if rng.random_bool(0.6) {
                pending.push(json!({"event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView", "ts": at, "visitor_id": visitor,
                    "url": format!("https://bench.example/page-{}", rng.random_range(0..500))}));
            }
            if rng.random_bool(0.3) {
                let cid = format!("benchclick{visit:012}");
                let host = if rng.random_bool(0.5) {
                    "wlgala.adsrv.eacdn.com"
                } else {
                    "track.benchnet.example"
                };
                pending.push(json!({"event_id": uuid::Uuid::new_v4().to_string(), "name": "OutboundClick", "ts": at, "visitor_id": visitor, "url": url,
                    "click_id": cid, "link": {"url": format!("https://{host}/?subid={cid}"), "tracking_group": "benchnet"}}));
                clicks.push((cid, at));
            }
        }
        // The wire format takes at most 100 events a request; the queue
        // batches requests into one transaction as it does for the collector.
        let batch: Vec<Value> = std::mem::take(&mut pending);
        n += batch.len();
        let mut jobs = Vec::new();
        for chunk in batch.chunks(100) {
            let st = Ingest {
                services: state.services.clone(),
                ingest: state.ingest.clone(),
            };
            let pid = pid.clone();
            let chunk = chunk.to_vec();
            jobs.push(tokio::spawn(async move {
                ingest(&st, &pid, ua, at, chunk).await
            }));
        }
        for j in jobs {
            j.await.expect("ingest task");
        }
    }
    let ingest_secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {n} events in {ingest_secs:.1} s ({:.0} events/s), {} clicks",
        n as f64 / ingest_secs,
        clicks.len()
    );

    // Conversions: 10,000 through the postback service.
    let started = Instant::now();
    let convs = clicks.len().min(10_000);
    for (i, (cid, at)) in clicks.iter().take(convs).enumerate() {
        let q = format!(
            "subid={cid}&payout={}.50&currency=EUR&txid=bench-{i}&timestamp={}",
            rng.random_range(1..90),
            (at + 600_000) / 1000
        );
        state
            .services
            .integrations
            .receive_postback(&token, Some(&q), None, b"")
            .await
            .expect("postback");
    }
    println!(
        "{convs} conversions in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Spend: 30 days x 40 campaigns x 5 ads.
    let mut csv = String::from("date,platform,campaign,ad set,ad,spend,currency\n");
    for d in 0..30 {
        let day = chrono::DateTime::from_timestamp_millis(start + d * 86_400_000)
            .expect("day")
            .format("%Y-%m-%d");
        for c in 0..40 {
            for a in 0..5 {
                csv.push_str(&format!(
                    "{day},meta,campaign-{c},set,ad-{c}-{a},{}.25,EUR\n",
                    rng.random_range(1..40)
                ));
            }
        }
    }
    let spend = b.get(&format!("/p/{pid}/spend")).await;
    let r = b
        .post(
            &format!("/p/{pid}/spend"),
            &[("_csrf", &spend.csrf()), ("csv", &csv)],
        )
        .await;
    assert_eq!(r.status, 303);

    // Pages.
    let pages = [
        ("reports, 30 days, last click", format!("/p/{pid}/reports")),
        (
            "reports, 30 days, first click, bots",
            format!("/p/{pid}/reports?model=first&bots=1"),
        ),
        (
            "reports, 7 days",
            format!(
                "/p/{pid}/reports?from={}",
                chrono::DateTime::from_timestamp_millis(now - 6 * 86_400_000)
                    .expect("d")
                    .format("%Y-%m-%d")
            ),
        ),
        (
            "reports, today (hourly)",
            format!(
                "/p/{pid}/reports?from={}",
                chrono::Utc::now().format("%Y-%m-%d")
            ),
        ),
        (
            "CSV export, campaigns",
            format!("/p/{pid}/reports/export.csv?table=campaign"),
        ),
        ("ad spend and ROAS", format!("/p/{pid}/spend")),
        ("overview (checklist)", format!("/p/{pid}")),
        ("conversion log", format!("/p/{pid}/conversions")),
        (
            "conversion log, errors",
            format!("/p/{pid}/conversions?status=error"),
        ),
        ("live events", format!("/p/{pid}/live")),
        ("integrations", format!("/p/{pid}/integrations")),
        ("catalog", format!("/p/{pid}/catalog")),
        ("properties", "/properties".to_owned()),
    ];
    let mut timings = Vec::new();
    for (name, path) in &pages {
        let mut t = Timing {
            page: (*name).to_owned(),
            wall_ms: Vec::new(),
            server_ms: Vec::new(),
        };
        for i in 0..6 {
            let s = Instant::now();
            let r = b.get(path).await;
            let wall = s.elapsed().as_secs_f64() * 1000.0;
            assert_eq!(r.status, 200, "{path}");
            if i == 0 {
                continue; // warm-up
            }
            t.wall_ms.push(wall);
            if let Some(st) = r.headers.get("server-timing").and_then(|v| v.to_str().ok())
                && let Some(d) = st.split("dur=").nth(1).and_then(|d| d.parse::<f64>().ok())
            {
                t.server_ms.push(d);
            }
        }
        timings.push(t);
    }
    println!(
        "\n| page | median (ms) | max (ms) | server time, median (ms) |\n|---|---:|---:|---:|"
    );
    for t in &timings {
        let server = if t.server_ms.is_empty() {
            "–".to_owned()
        } else {
            format!("{:.1}", median(&t.server_ms))
        };
        println!(
            "| {} | {:.1} | {:.1} | {server} |",
            t.page,
            median(&t.wall_ms),
            max(&t.wall_ms)
        );
    }
    for t in &timings {
        assert!(
            median(&t.wall_ms) < 200.0,
            "{} takes {:.1} ms",
            t.page,
            median(&t.wall_ms)
        );
    }
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: seeds a million events; run with --release -- --ignored --nocapture"]
async fn report_pages_with_a_million_events() {
    run(Backend::Sqlite).await;
    if std::env::var("CLICKTRAIL_BENCH_PG").is_ok() {
        run(Backend::Postgres).await;
    }
}
