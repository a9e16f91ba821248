//! `clicktrail demo`: the real server on a separate demo database
//! (`clicktrail-demo-data/`), filled with three weeks of simulated traffic,
//! clicks, conversions, spend and deliveries, so a newcomer sees a living
//! dashboard in one command.
//!
//! Everything goes through the real ingest paths:
//! - traffic: wire-format `/collect` bodies, decoded and checked by the
//!   collector's decoder, enriched by the same code (user agent, bot, traffic
//!   source, channel) and committed by the same ingest queue. The collector
//!   stamps events with the server's clock (client times are not trusted),
//!   so the *history* is submitted to the ingest queue directly with a
//!   backdated receive time: the only thing skipped is the HTTP hop. From
//!   the moment the server is up, a visitor simulator keeps sending events
//!   to its own `POST /collect` over HTTP, so the live events page moves;
//! - conversions: HTTP postbacks to the demo integration's own
//!   `/postback/{token}` URL, with the network's `timestamp` parameter
//!   backdating them (the wire format allows it);
//! - deliveries: a Meta Conversions API destination whose endpoint is a
//!   small local fake of the Graph API started by the demo, so the real
//!   outbox delivers to it;
//! - spend: the dashboard's CSV import code.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::routing::post;
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use clicktrail_store::spend::{self as sq, SpendSource};
use clicktrail_store::{auth as store_auth, properties, users};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use clicktrail_engine::config::Config;
use clicktrail_engine::ingest::IngestQueue;

use crate::app::{self, RunningServer};

/// What seeding the demo's history needs of the server.
struct Seeder<'a> {
    db: &'a clicktrail_store::Db,
    enricher: &'a clicktrail_engine::enrich::Enricher,
    ingest: &'a IngestQueue,
}

pub const DEMO_EMAIL: &str = "demo@clicktrail.local";
pub const DEMO_PASSWORD: &str = "clicktrail-demo";
const DEMO_DIR: &str = "clicktrail-demo-data";
const DAYS: i64 = 21;
const META_NAME: &str = "Meta (demo fake)";

/// Where the demo keeps its data (never the real database).
pub fn demo_config(mut cfg: Config) -> Config {
    cfg.data_dir = DEMO_DIR.into();
    cfg.database_url = format!("sqlite://{DEMO_DIR}/demo.db");
    // The fake ad platform listens on loopback.
    cfg.allow_private_networks = true;
    cfg
}

struct Source {
    utm: &'static str,
    referrer: Option<&'static str>,
    campaigns: &'static [&'static str],
    weight: u32,
    /// Ad click id parameter the source adds.
    click_param: Option<&'static str>,
    conv_rate: f64,
}

const SOURCES: &[Source] = &[
    Source {
        utm: "utm_source=facebook&utm_medium=paid_social",
        referrer: Some("https://m.facebook.com/"),
        campaigns: &["bingo-spring", "casino-welcome", "sports-cup"],
        weight: 30,
        click_param: Some("fbclid"),
        conv_rate: 0.05,
    },
    Source {
        utm: "utm_source=google&utm_medium=cpc",
        referrer: Some("https://www.google.com/"),
        campaigns: &["brand-search", "casino-generic"],
        weight: 25,
        click_param: Some("gclid"),
        conv_rate: 0.08,
    },
    Source {
        utm: "utm_source=tiktok&utm_medium=paid_social",
        referrer: None,
        campaigns: &["slots-creators"],
        weight: 10,
        click_param: Some("ttclid"),
        conv_rate: 0.03,
    },
    Source {
        utm: "",
        referrer: Some("https://www.google.com/"),
        campaigns: &[],
        weight: 20,
        click_param: None,
        conv_rate: 0.04,
    },
    Source {
        utm: "",
        referrer: None,
        campaigns: &[],
        weight: 10,
        click_param: None,
        conv_rate: 0.04,
    },
    Source {
        utm: "utm_source=newsletter&utm_medium=email",
        referrer: None,
        campaigns: &["weekly-picks"],
        weight: 5,
        click_param: None,
        conv_rate: 0.1,
    },
];

const PAGES: &[&str] = &[
    "/",
    "/best-bingo-sites",
    "/gala-bingo-review",
    "/casino-bonuses",
    "/sports-betting-offers",
    "/blog/how-to-play-bingo",
];
const UAS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
];
const BOT_UA: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

fn pick_source(rng: &mut StdRng) -> &'static Source {
    let total: u32 = SOURCES.iter().map(|s| s.weight).sum();
    let mut n = rng.random_range(0..total);
    for s in SOURCES {
        if n < s.weight {
            return s;
        }
        n -= s.weight;
    }
    &SOURCES[0]
}

/// One simulated visit: its wire-format events and, maybe, a click.
struct Visit {
    ua: &'static str,
    body: Value,
    click_id: Option<String>,
    converts: bool,
    at_ms: i64,
}

fn simulate_visit(rng: &mut StdRng, pid: &str, at_ms: i64) -> Visit {
    let src = pick_source(rng);
    let bot = rng.random_bool(0.04);
    let ua = if bot { BOT_UA } else { *pick(rng, UAS) };
    let visitor = format!("demo{}", clicktrail_domain::ids::random_base36(16));
    let page = *pick(rng, PAGES);
    let mut query = src.utm.to_owned();
    if !src.campaigns.is_empty() {
        let c = *pick(rng, src.campaigns);
        query.push_str(&format!(
            "&utm_campaign={c}&utm_content=ad-{}",
            rng.random_range(1..4)
        ));
    }
    if let Some(p) = src.click_param {
        query.push_str(&format!(
            "&{p}=demo{}",
            clicktrail_domain::ids::random_base36(20)
        ));
    }
    let url = if query.is_empty() {
        format!("https://demo-casino-reviews.example{page}")
    } else {
        format!(
            "https://demo-casino-reviews.example{page}?{}",
            query.trim_start_matches('&')
        )
    };
    let mut events = vec![json!({
        "event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView", "ts": at_ms,
        "visitor_id": visitor, "url": url, "referrer": src.referrer, "title": "Demo casino reviews",
    })];
    let pages = rng.random_range(1..4);
    for _ in 1..pages {
        events.push(json!({
            "event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView", "ts": at_ms + 30_000,
            "visitor_id": visitor, "url": format!("https://demo-casino-reviews.example{}", pick(rng, PAGES)),
        }));
    }
    let mut click_id = None;
    if !bot && rng.random_bool(0.35) {
        let id = format!("demo{}", clicktrail_domain::ids::random_token(24));
        let (link, group) = if rng.random_bool(0.6) {
            (
                format!("https://wlgalapartners.adsrv.eacdn.com/C.ashx?btag=a_1b_2&c={id}"),
                "incomeaccess",
            )
        } else {
            (
                format!("https://track.demo-network.example/click?offer=7&subid={id}"),
                "demonet",
            )
        };
        events.push(json!({
            "event_id": uuid::Uuid::new_v4().to_string(), "name": "OutboundClick", "ts": at_ms + 60_000,
            "visitor_id": visitor, "url": url, "click_id": id,
            "link": {"url": link, "tracking_group": group, "text": "Claim the bonus"},
        }));
        click_id = Some(id);
    }
    let converts = click_id.is_some() && rng.random_bool((src.conv_rate * 4.0).min(0.9));
    Visit {
        ua,
        body: json!({"property_id": pid, "events": events}),
        click_id,
        converts,
        at_ms,
    }
}

/// Commits one simulated request through the collector's decoder, the
/// enricher and the ingest queue, at time `at_ms`.
async fn ingest_at(state: &Seeder<'_>, v: &Visit) -> anyhow::Result<()> {
    let body = v.body.to_string();
    // The decoder checks client times against "now": the visit's own time.
    let batch = clicktrail_domain::collect::decode(body.as_bytes(), v.at_ms + 300_000)
        .map_err(|e| anyhow::anyhow!("demo event refused: {}", e.message))?;
    let property = properties::get(state.db, &batch.property_id)
        .await?
        .context("demo property")?;
    let mut headers = axum::http::HeaderMap::new();
    if let Ok(ua) = axum::http::HeaderValue::from_str(v.ua) {
        headers.insert(axum::http::header::USER_AGENT, ua);
    }
    let peer: SocketAddr = ([203, 0, 113, 7], 443).into();
    let facts = state.enricher.request_facts(&headers, Some(peer));
    let stored_ip = state
        .enricher
        .stored_ip(property.settings.ip_handling, facts.ip);
    let events: Vec<IngestEvent> = batch
        .events
        .into_iter()
        .map(|ev| {
            let seed = Arc::new(clicktrail_engine::enrich::session_seed(
                &ev,
                &facts,
                stored_ip.clone(),
            ));
            IngestEvent {
                property_id: property.id.as_str().to_owned(),
                received_at_ms: ev.client_ts_ms.min(chrono::Utc::now().timestamp_millis()),
                session_timeout_ms: property.settings.session_timeout_ms(),
                event: ev,
                seed,
                click_origin: ClickOrigin::Tag,
                onsite: None,
            }
        })
        .collect();
    state
        .ingest
        .submit(events)
        .await
        .map_err(|_| anyhow::anyhow!("the ingest queue refused demo events"))?;
    Ok(())
}

/// A tiny stand-in for the Meta Graph API: accepts every batch, answers
/// like Meta does.
async fn start_fake_meta() -> anyhow::Result<SocketAddr> {
    async fn events(body: axum::body::Bytes) -> axum::Json<Value> {
        let n = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v["data"].as_array().map(Vec::len))
            .unwrap_or(0);
        axum::Json(json!({"events_received": n, "messages": [], "fbtrace_id": "demo-fake-meta"}))
    }
    let app = Router::new().route("/{version}/{pixel}/events", post(events));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

async fn api(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    path: &str,
    body: Value,
) -> anyhow::Result<Value> {
    let r = http
        .post(format!("{base}/api/v1{path}"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    anyhow::ensure!(status.is_success(), "demo setup {path}: {status} {v}");
    Ok(v)
}

/// Fills a fresh demo database; returns the property id.
async fn seed(server: &RunningServer, meta: SocketAddr) -> anyhow::Result<String> {
    let state = &server.services;
    let base = server.base_url();
    let ws = store_auth::ensure_workspace(&state.db, "default").await?;
    let hash = clicktrail_dashboard::accounts::hash_password(DEMO_PASSWORD.to_owned())
        .await
        .map_err(|_| anyhow::anyhow!("hashing the demo password"))?;
    users::create_first_admin(&state.db, ws.id, DEMO_EMAIL, &hash).await?;
    let (token_info, token) = store_auth::create_token(&state.db, ws.id, "demo setup").await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;

    let p = api(&http, &base, &token, "/properties", json!({"name": "Demo casino reviews", "domains": ["demo-casino-reviews.example"], "settings": {"currency": "GBP"}})).await?;
    let pid = p["id"].as_str().context("property id")?.to_owned();
    let gala = api(&http, &base, &token, &format!("/properties/{pid}/integrations"), json!({
        "catalog": "custom", "name": "Gala Partners (postback demo)",
        "settings": {"tracking_group": "incomeaccess", "subid_param": "c", "hosts": ["*.adsrv.eacdn.com"]}
    })).await?;
    let demonet = api(&http, &base, &token, &format!("/properties/{pid}/integrations"), json!({
        "catalog": "custom", "name": "Demo Network",
        "settings": {"tracking_group": "demonet", "subid_param": "subid", "hosts": ["track.demo-network.example"]}
    })).await?;
    api(
        &http,
        &base,
        &token,
        &format!("/properties/{pid}/destinations"),
        json!({
            "kind": "meta_capi", "name": META_NAME,
            "settings": {"pixel_id": "123456789012345", "endpoint": format!("http://{meta}")},
            "credentials": {"access_token": "EAADEMO0000000000000000000000000"}
        }),
    )
    .await?;

    let mut rng = StdRng::seed_from_u64(20_260_101);
    let seeder = Seeder {
        db: &state.db,
        enricher: &state.enricher,
        ingest: &server.ingest,
    };
    let now = chrono::Utc::now().timestamp_millis();
    let start = now - DAYS * 86_400_000;
    let mut conversions: Vec<(String, &'static str, i64, bool)> = Vec::new();
    let mut day_start = start;
    let mut n = 0usize;
    while day_start < now {
        let weekday_boost = if (day_start / 86_400_000) % 7 >= 5 {
            1.3
        } else {
            1.0
        };
        let visits = (rng.random_range(180..260) as f64 * weekday_boost) as i64;
        for _ in 0..visits {
            let at = day_start + rng.random_range(0..86_400_000);
            if at >= now - 60_000 {
                continue;
            }
            let v = simulate_visit(&mut rng, &pid, at);
            ingest_at(&seeder, &v).await?;
            n += 1;
            if let (Some(c), true) = (&v.click_id, v.converts) {
                let gala_link = v.body["events"]
                    .as_array()
                    .and_then(|e| e.last())
                    .and_then(|e| e["link"]["tracking_group"].as_str())
                    == Some("incomeaccess");
                let conv_at = (v.at_ms + rng.random_range(5..180) * 60_000).min(now - 1_000);
                conversions.push((
                    c.clone(),
                    if gala_link { "gala" } else { "demonet" },
                    conv_at,
                    rng.random_bool(0.4),
                ));
            }
        }
        day_start += 86_400_000;
    }
    tracing::info!(
        visits = n,
        conversions = conversions.len(),
        "demo: traffic seeded"
    );

    // Conversions: HTTP postbacks, backdated with the network's timestamp.
    let token_of = |v: &Value| v["postback_url"].as_str().unwrap_or("").to_owned();
    let (gala_url, demonet_url) = (token_of(&gala), token_of(&demonet));
    for (i, (click, net, at, lead)) in conversions.iter().enumerate() {
        let url = if *net == "gala" {
            &gala_url
        } else {
            &demonet_url
        };
        let (event, value) = if *lead {
            ("lead", 0.0)
        } else {
            ("sale", f64::from(rng.random_range(500..9_000u32)) / 100.0)
        };
        let q = format!(
            "click_id={click}&event={event}&value={value:.2}&currency=GBP&transaction_id=demo-{i}&timestamp={}",
            at / 1000
        );
        let _ = http.get(format!("{url}?{q}")).send().await?;
    }
    // A few errors for the conversion log to explain.
    for (i, q) in [
        "click_id=unknownclick0000000001&value=12.50&currency=GBP",
        "value=40&currency=GBP&transaction_id=no-click",
        "click_id=unknownclick0000000002&value=abc",
    ]
    .iter()
    .enumerate()
    {
        let _ = http
            .get(format!("{gala_url}?{q}&transaction_id=demo-err-{i}"))
            .send()
            .await?;
    }

    // Spend, through the CSV import.
    let mut csv = String::from("date,platform,campaign,ad set,ad,spend,currency\n");
    for d in 0..DAYS {
        let day = (start / 86_400_000) + d;
        let date = clicktrail_dashboard::ui::date(day);
        for (platform, campaign, lo, hi) in [
            ("meta", "bingo-spring", 20, 45),
            ("meta", "casino-welcome", 30, 60),
            ("meta", "sports-cup", 10, 25),
            ("google_ads", "brand-search", 8, 15),
            ("google_ads", "casino-generic", 25, 50),
            ("tiktok", "slots-creators", 10, 30),
        ] {
            for ad in 1..4 {
                let cents = rng.random_range(lo * 100..hi * 100) / 3;
                csv.push_str(&format!(
                    "{date},{platform},{campaign},set-1,ad-{ad},{}.{:02},GBP\n",
                    cents / 100,
                    cents % 100
                ));
            }
        }
    }
    let lines = clicktrail_dashboard::spend::parse_csv(&csv)
        .map_err(|e| anyhow::anyhow!("demo spend: {:?}", e.first()))?;
    sq::import(
        &state.db,
        &pid,
        SpendSource::Csv,
        "demo-spend.csv",
        None,
        &lines,
    )
    .await?;
    store_auth::revoke_token(&state.db, ws.id, token_info.id).await?;
    Ok(pid)
}

/// The fake Graph API listens on a new port at each start: point the demo
/// destination at it (through the API, like a user editing it).
async fn repoint_fake_meta(
    server: &RunningServer,
    p: &properties::Property,
    meta: SocketAddr,
) -> anyhow::Result<()> {
    let state = &server.services;
    let Some(d) = clicktrail_store::deliveries::list_destinations(&state.db, p.id.as_str())
        .await?
        .into_iter()
        .find(|d| d.name == META_NAME)
    else {
        return Ok(());
    };
    let (info, token) = store_auth::create_token(&state.db, p.workspace_id, "demo restart").await?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()?;
    let r = http
        .patch(format!(
            "{}/api/v1/destinations/{}",
            server.base_url(),
            d.id
        ))
        .bearer_auth(&token)
        .json(&json!({"settings": {"endpoint": format!("http://{meta}")}}))
        .send()
        .await;
    store_auth::revoke_token(&state.db, p.workspace_id, info.id).await?;
    r?.error_for_status()?;
    Ok(())
}

/// Keeps a trickle of visits going through the real `POST /collect`.
async fn live_visitors(base: String, pid: String, stop: tokio_util::sync::CancellationToken) {
    let Ok(http) = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    else {
        return;
    };
    let mut rng = StdRng::from_os_rng();
    loop {
        let wait = Duration::from_millis(rng.random_range(2_000..6_000));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let v = simulate_visit(&mut rng, &pid, chrono::Utc::now().timestamp_millis());
        let _ = http
            .post(format!("{base}/collect"))
            .header("user-agent", v.ua)
            .header("content-type", "text/plain")
            .body(v.body.to_string())
            .send()
            .await;
    }
}

/// Runs the demo until Ctrl-C (or the returned server is stopped).
pub async fn start(cfg: Config, reset: bool) -> anyhow::Result<RunningServer> {
    let cfg = demo_config(cfg);
    if reset {
        let _ = std::fs::remove_dir_all(DEMO_DIR);
    }
    let server = app::start(cfg).await.context("starting the demo server")?;
    let meta = start_fake_meta().await?;
    let pid = match properties::list(&server.services.db, None).await?.first() {
        Some(p) => {
            repoint_fake_meta(&server, p, meta).await?;
            p.id.as_str().to_owned()
        }
        None => {
            println!(
                "Filling the demo database with {DAYS} days of simulated traffic (a minute or so)..."
            );
            seed(&server, meta).await?
        }
    };
    tokio::spawn(live_visitors(
        server.base_url(),
        pid,
        server.shutdown_token(),
    ));
    Ok(server)
}
