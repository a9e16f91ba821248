//! Load generator and benchmark driver for clicktrail.
//!
//! `clicktrail-loadgen bench` starts a release `clicktrail serve` on a fresh
//! SQLite or PostgreSQL database and an axum server that only answers 204,
//! drives both with the same realistic collector load (varied user agents,
//! landing URLs with utm and ad click ids, 20% OutboundClicks with
//! tag-minted click ids), and prints events/s, p50/p99 latency and the
//! server's peak RSS, then repeats the measurement with millions of events
//! already stored. See docs/PERFORMANCE.md.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const MASTER_KEY: &str = "loadgen-master-key-0123456789";

#[derive(Parser)]
#[command(about = "Load generator and benchmarks for clicktrail")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

#[derive(Subcommand)]
enum Cmd {
    /// An axum server that answers every request with 204 (the baseline).
    NullServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// Posts collector events to a running server.
    Collect {
        #[arg(long)]
        target: String,
        #[arg(long)]
        property: String,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Runs the full collector benchmark (starts the servers itself).
    Bench {
        /// The release server binary (default: next to this one).
        #[arg(long)]
        server_bin: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        /// Seconds per measured phase.
        #[arg(long, default_value_t = 15)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Events per request (the tag sends 1; site backends batch).
        #[arg(long, default_value_t = 1)]
        batch: usize,
        /// Fixed rate (events/s) of the latency phase.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Events stored before the "as data grows" phase (0: skip).
        #[arg(long, default_value_t = 0)]
        preseed: u64,
        /// Write the results as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// Postback throughput: records clicks, then sends postbacks (10% repeats).
    PostbackBench {
        #[arg(long)]
        server_bin: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        #[arg(long, default_value_t = 15)]
        duration: u64,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// `/go/{slug}` latency at a fixed rate.
    GoBench {
        #[arg(long)]
        server_bin: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "sqlite")]
        db: Db,
        #[arg(long, default_value_t = 15)]
        duration: u64,
        #[arg(long, default_value_t = 500)]
        rate: u64,
    },
}

#[derive(clap::Args, Clone)]
struct LoadArgs {
    #[arg(long, default_value_t = 15)]
    duration: u64,
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Requests per second (0: as fast as the server answers).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    #[arg(long, default_value_t = 1)]
    batch: usize,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One worker thread: the server under test needs the other core.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        match cli.cmd {
            Cmd::NullServer { listen } => null_server(listen).await,
            Cmd::Collect {
                target,
                property,
                load,
            } => {
                let r = run_load(&target, &property, &load, Mode::Collect).await?;
                r.print("collect");
                Ok(())
            }
            Cmd::Bench {
                server_bin,
                db,
                duration,
                concurrency,
                batch,
                rate,
                preseed,
                json,
            } => {
                bench(
                    server_bin,
                    db,
                    duration,
                    concurrency,
                    batch,
                    rate,
                    preseed,
                    json,
                )
                .await
            }
            Cmd::PostbackBench {
                server_bin,
                db,
                duration,
                concurrency,
            } => postback_bench(server_bin, db, duration, concurrency).await,
            Cmd::GoBench {
                server_bin,
                db,
                duration,
                rate,
            } => go_bench(server_bin, db, duration, rate).await,
        }
    })
}

async fn null_server(listen: SocketAddr) -> anyhow::Result<()> {
    let app = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    let l = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(l, app).await?;
    Ok(())
}

// ---------------------------------------------------------------- workload

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.0.0 Safari/537.36 Edg/123.0.2420.97",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/458.0.0.38.108]",
    "Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; Pixel 7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/123.0.6312.118 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 12; SM-A515F Build/SP1A.210812.016; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/122.0.6261.119 Mobile Safari/537.36 [FB_IAB/FB4A;FBAV/453.0.0.48.108;]",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:124.0) Gecko/20100101 Firefox/124.0",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 musical_ly_33.7.0 BytedanceWebview/d8a21c6",
];

const SOURCES: &[(&str, &str, &str)] = &[
    ("google", "cpc", "gclid"),
    ("facebook", "paid_social", "fbclid"),
    ("tiktok", "paid", "ttclid"),
    ("bing", "cpc", "msclkid"),
    ("newsletter", "email", ""),
    ("", "", ""),
];

const PAGES: &[&str] = &[
    "/",
    "/best-bingo-sites",
    "/reviews/gala-bingo",
    "/casino-bonuses",
    "/blog/how-to-win",
];

struct Visitor {
    id: String,
    pageview: Option<uuid::Uuid>,
}

/// Realistic tag traffic: visitors land (utm + ad click id), browse, and
/// one event in five is an OutboundClick on an Income Access link.
struct Workload {
    visitors: Vec<Visitor>,
}

impl Workload {
    fn new(n: usize) -> Self {
        let mut rng = rand::rng();
        let visitors = (0..n)
            .map(|_| Visitor {
                id: format!("v{}", rng.random::<u64>()),
                pageview: None,
            })
            .collect();
        Workload { visitors }
    }

    fn event(&mut self) -> (Value, &'static str) {
        let mut rng = rand::rng();
        let i = rng.random_range(0..self.visitors.len());
        let ua = USER_AGENTS
            .choose(&mut rng)
            .copied()
            .unwrap_or(USER_AGENTS[0]);
        let now = now_ms();
        let v = &mut self.visitors[i];
        let page = PAGES.choose(&mut rng).copied().unwrap_or("/");
        if let (Some(pv), true) = (v.pageview, rng.random_bool(0.2)) {
            let click_id = clicktrail_domain::clickid::mint(pv);
            let link = format!(
                "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_31512b_1195c_&affid=25020&siteid=31512&adid=1195&c={click_id}"
            );
            let ev = json!({"event_id": uuid::Uuid::now_v7().to_string(), "name": "OutboundClick", "ts": now,
                "visitor_id": v.id, "url": format!("https://bench.example{page}"), "pageview_id": pv.to_string(),
                "click_id": click_id, "link": {"url": link, "tracking_group": "incomeaccess", "text": "Claim bonus"}});
            return (ev, ua);
        }
        let pv = uuid::Uuid::now_v7();
        let landing = v.pageview.is_none();
        v.pageview = Some(pv);
        let mut url = format!("https://bench.example{page}");
        let mut referrer = String::new();
        if landing {
            let (src, med, click) = *SOURCES.choose(&mut rng).unwrap_or(&SOURCES[0]);
            if !src.is_empty() {
                url.push_str(&format!(
                    "?utm_source={src}&utm_medium={med}&utm_campaign=spring_{}",
                    rng.random_range(0..20)
                ));
                if !click.is_empty() {
                    url.push_str(&format!("&{click}={}", uuid::Uuid::new_v4().simple()));
                }
            } else {
                referrer = "https://www.google.com/".into();
            }
        }
        let ev = json!({"event_id": pv.to_string(), "name": "PageView", "ts": now, "visitor_id": v.id, "url": url,
            "referrer": referrer, "title": "Best bingo sites", "cookies": {"fbp": format!("fb.1.{now}.{}", rng.random::<u32>())}});
        (ev, ua)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

// ---------------------------------------------------------------- running load

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Collect,
    /// Any server: the same bodies to the null server.
    Null,
}

#[derive(Default)]
struct Results {
    requests_ok: u64,
    events_ok: u64,
    errors: BTreeMap<String, u64>,
    elapsed: Duration,
    latency: Option<Histogram<u64>>,
}

impl Results {
    fn rate(&self) -> f64 {
        self.events_ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn pct(&self, q: f64) -> f64 {
        self.latency
            .as_ref()
            .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            .unwrap_or(0.0)
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<40} {:>9.0} events/s  {:>8.0} req/s  p50 {:>7.2} ms  p99 {:>7.2} ms  p99.9 {:>7.2} ms  errors {:?}",
            self.rate(),
            self.requests_ok as f64 / self.elapsed.as_secs_f64().max(1e-9),
            self.pct(0.5),
            self.pct(0.99),
            self.pct(0.999),
            self.errors
        );
    }

    fn json(&self) -> Value {
        json!({"events_per_sec": self.rate(), "requests_ok": self.requests_ok, "events_ok": self.events_ok,
               "p50_ms": self.pct(0.5), "p99_ms": self.pct(0.99), "p999_ms": self.pct(0.999),
               "errors": self.errors, "seconds": self.elapsed.as_secs_f64()})
    }
}

struct Shared {
    workload: Mutex<Workload>,
    hist: Mutex<Histogram<u64>>,
    ok_requests: AtomicU64,
    ok_events: AtomicU64,
    errors: Mutex<BTreeMap<String, u64>>,
}

fn client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(4096)
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()?)
}

async fn one_request(
    http: &reqwest::Client,
    url: &str,
    property: &str,
    batch: usize,
    sh: &Shared,
    started: Instant,
) {
    let (events, ua) = {
        let mut w = sh.workload.lock().await;
        let mut evs = Vec::with_capacity(batch);
        let mut ua = USER_AGENTS[0];
        for _ in 0..batch {
            let (e, u) = w.event();
            ua = u;
            evs.push(e);
        }
        (evs, ua)
    };
    let n = events.len() as u64;
    let body = json!({"property_id": property, "events": events}).to_string();
    let r = http
        .post(url)
        .header("content-type", "text/plain;charset=UTF-8")
        .header("user-agent", ua)
        .header("origin", "https://bench.example")
        .body(body)
        .send()
        .await;
    let micros = started.elapsed().as_micros() as u64;
    match r {
        Ok(resp) if resp.status().is_success() => {
            sh.ok_requests.fetch_add(1, Ordering::Relaxed);
            sh.ok_events.fetch_add(n, Ordering::Relaxed);
            let _ = resp.bytes().await;
            let _ = sh.hist.lock().await.record(micros.max(1));
        }
        Ok(resp) => {
            *sh.errors
                .lock()
                .await
                .entry(resp.status().as_u16().to_string())
                .or_default() += 1;
        }
        Err(e) => {
            let kind = if e.is_timeout() {
                "timeout"
            } else if e.is_connect() {
                "connect"
            } else {
                "transport"
            };
            *sh.errors.lock().await.entry(kind.into()).or_default() += 1;
        }
    }
}

async fn run_load(
    target: &str,
    property: &str,
    load: &LoadArgs,
    mode: Mode,
) -> anyhow::Result<Results> {
    let http = client()?;
    let url = match mode {
        Mode::Collect => format!("{target}/collect"),
        Mode::Null => format!("{target}/collect"),
    };
    let sh = Arc::new(Shared {
        workload: Mutex::new(Workload::new(50_000)),
        hist: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3)?),
        ok_requests: AtomicU64::new(0),
        ok_events: AtomicU64::new(0),
        errors: Mutex::new(BTreeMap::new()),
    });
    let start = Instant::now();
    let end = start + Duration::from_secs(load.duration);
    if load.rate == 0 {
        // Closed loop: `concurrency` clients, each sending as soon as it
        // got an answer.
        let mut tasks = Vec::new();
        for _ in 0..load.concurrency {
            let (http, url, property, sh) =
                (http.clone(), url.clone(), property.to_owned(), sh.clone());
            let batch = load.batch;
            tasks.push(tokio::spawn(async move {
                while Instant::now() < end {
                    one_request(&http, &url, &property, batch, &sh, Instant::now()).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    } else {
        // Open loop at a fixed rate; latency counts from the scheduled send
        // time, so a stalled server is not hidden (no coordinated omission).
        let interval = Duration::from_secs_f64(1.0 / load.rate as f64);
        let limit = Arc::new(tokio::sync::Semaphore::new(load.concurrency.max(1) * 32));
        let mut tasks = Vec::new();
        let mut i: u32 = 0;
        loop {
            let scheduled = start + interval * i;
            if scheduled >= end {
                break;
            }
            tokio::time::sleep_until(scheduled.into()).await;
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let (http, url, property, sh) =
                (http.clone(), url.clone(), property.to_owned(), sh.clone());
            let batch = load.batch;
            tasks.push(tokio::spawn(async move {
                one_request(&http, &url, &property, batch, &sh, scheduled).await;
                drop(permit);
            }));
            i += 1;
        }
        for t in tasks {
            let _ = t.await;
        }
    }
    let elapsed = start.elapsed();
    let hist = sh.hist.lock().await.clone();
    let errors = sh.errors.lock().await.clone();
    Ok(Results {
        requests_ok: sh.ok_requests.load(Ordering::Relaxed),
        events_ok: sh.ok_events.load(Ordering::Relaxed),
        errors,
        elapsed,
        latency: Some(hist),
    })
}

// ---------------------------------------------------------------- processes

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// VmHWM (peak RSS) and VmRSS of a process, in MiB.
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(0.0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

fn server_bin(arg: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let bin = match arg {
        Some(b) => b,
        None => std::env::current_exe()?.with_file_name("clicktrail"),
    };
    if !bin.exists() {
        bail!(
            "{} not found: build it with `cargo build --release -p clicktrail`",
            bin.display()
        );
    }
    Ok(bin)
}

struct ServerUnderTest {
    proc: Proc,
    base: String,
    dir: PathBuf,
    pg_db: Option<String>,
}

async fn start_server(bin: &PathBuf, db: Db) -> anyhow::Result<ServerUnderTest> {
    let dir = std::env::temp_dir().join(format!(
        "clicktrail-bench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir)?;
    let (url, pg_db) = match db {
        Db::Sqlite => (format!("sqlite://{}/bench.db", dir.display()), None),
        Db::Postgres => {
            let name = format!("ct_bench_{}", uuid::Uuid::new_v4().simple());
            pg_admin(&format!("CREATE DATABASE {name}")).await?;
            (
                format!("postgres://postgres@127.0.0.1:5432/{name}"),
                Some(name),
            )
        }
    };
    let port = free_port()?;
    let child = Command::new(bin)
        .arg("serve")
        .env("CLICKTRAIL_LISTEN", format!("127.0.0.1:{port}"))
        .env("CLICKTRAIL_DATABASE_URL", &url)
        .env("CLICKTRAIL_MASTER_KEY", MASTER_KEY)
        .env("CLICKTRAIL_DATA_DIR", &dir)
        .env("CLICKTRAIL_LOG", "warn")
        .env("CLICKTRAIL_POLLING__ENABLED", "false")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&base).await?;
    Ok(ServerUnderTest {
        proc: Proc(child),
        base,
        dir,
        pg_db,
    })
}

impl ServerUnderTest {
    async fn finish(self) {
        drop(self.proc);
        if let Some(db) = &self.pg_db {
            let _ = pg_admin(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn pid(&self) -> u32 {
        self.proc.0.id()
    }
}

async fn pg_admin(sql: &str) -> anyhow::Result<()> {
    let db = clicktrail_store::Db::connect(
        "postgres://postgres@127.0.0.1:5432/postgres",
        &Default::default(),
    )
    .await?;
    db.execute(sql, vec![]).await?;
    db.close().await;
    Ok(())
}

async fn wait_healthy(base: &str) -> anyhow::Result<()> {
    let http = client()?;
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{base} did not become healthy")
}

async fn api(base: &str, path: &str, body: Value) -> anyhow::Result<Value> {
    let r = client()?
        .post(format!("{base}{path}"))
        .bearer_auth(MASTER_KEY)
        .json(&body)
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("{path}: {status} {v}");
    }
    Ok(v)
}

async fn create_property(base: &str) -> anyhow::Result<String> {
    let v = api(
        base,
        "/api/v1/properties",
        json!({"name": "bench", "domains": ["bench.example"]}),
    )
    .await?;
    Ok(v["id"].as_str().unwrap_or_default().to_owned())
}

// ---------------------------------------------------------------- benches

#[expect(clippy::too_many_arguments, reason = "the command line's options")]
async fn bench(
    server_bin_arg: Option<PathBuf>,
    db: Db,
    duration: u64,
    concurrency: usize,
    batch: usize,
    rate: u64,
    preseed: u64,
    json_out: Option<PathBuf>,
) -> anyhow::Result<()> {
    let bin = server_bin(server_bin_arg)?;
    let load = LoadArgs {
        duration,
        concurrency,
        rate: 0,
        batch,
    };
    let mut out = serde_json::Map::new();
    println!(
        "clicktrail collector benchmark: {db:?}, {concurrency} clients, {batch} event(s)/request, {duration} s phases"
    );

    // Baseline: the same load against a handler that only answers 204.
    let port = free_port()?;
    let null = Proc(
        Command::new(std::env::current_exe()?)
            .args(["null-server", "--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .spawn()?,
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_null = format!("http://127.0.0.1:{port}");
    let _ = run_load(
        &base_null,
        "abcdefghij012345",
        &LoadArgs {
            duration: 2,
            ..load.clone()
        },
        Mode::Null,
    )
    .await?;
    let r_null = run_load(&base_null, "abcdefghij012345", &load, Mode::Null).await?;
    r_null.print("204-only axum handler (max)");
    drop(null);
    out.insert("null_max".into(), r_null.json());

    let s = start_server(&bin, db).await?;
    let pid = create_property(&s.base).await?;
    let _ = run_load(
        &s.base,
        &pid,
        &LoadArgs {
            duration: 2,
            ..load.clone()
        },
        Mode::Collect,
    )
    .await?;
    let r_max = run_load(&s.base, &pid, &load, Mode::Collect).await?;
    r_max.print("clicktrail /collect (max)");
    let (hwm, rss) = rss_mib(s.pid());
    println!("{:<40} peak RSS {hwm:.0} MiB, now {rss:.0} MiB", "");
    println!(
        "{:<40} ratio to the 204 handler: {:.2}",
        "",
        r_max.rate() / r_null.rate().max(1e-9)
    );
    out.insert("empty_max".into(), r_max.json());
    out.insert(
        "ratio_to_204".into(),
        json!(r_max.rate() / r_null.rate().max(1e-9)),
    );

    let fixed = LoadArgs {
        rate: (rate / batch.max(1) as u64).max(1),
        ..load.clone()
    };
    // Steady state, not the recovery from the overload just before: let the
    // WAL checkpoint catch up, then warm up at the rate.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let _ = run_load(
        &s.base,
        &pid,
        &LoadArgs {
            duration: 2,
            ..fixed.clone()
        },
        Mode::Collect,
    )
    .await?;
    let r_fixed = run_load(&s.base, &pid, &fixed, Mode::Collect).await?;
    r_fixed.print(&format!("clicktrail /collect at {rate} events/s"));
    out.insert("fixed_rate".into(), r_fixed.json());
    let (hwm, _) = rss_mib(s.pid());
    out.insert("peak_rss_mib".into(), json!(hwm));

    if preseed > 0 {
        let t = Instant::now();
        let seed = LoadArgs {
            duration: 1,
            concurrency: 16,
            rate: 0,
            batch: 50,
        };
        let mut stored = r_max.events_ok + r_fixed.events_ok;
        while stored < preseed {
            let r = run_load(
                &s.base,
                &pid,
                &LoadArgs {
                    duration: 10,
                    ..seed.clone()
                },
                Mode::Collect,
            )
            .await?;
            stored += r.events_ok;
            eprintln!("  preseeded {stored} events ({:.0} events/s)", r.rate());
        }
        println!(
            "{:<40} {stored} events stored in {:.0} s",
            "preseed",
            t.elapsed().as_secs_f64()
        );
        let r_full = run_load(&s.base, &pid, &load, Mode::Collect).await?;
        r_full.print(&format!(
            "clicktrail /collect (max, {}M stored)",
            stored / 1_000_000
        ));
        println!(
            "{:<40} vs empty database: {:.2}",
            "",
            r_full.rate() / r_max.rate().max(1e-9)
        );
        let (hwm, rss) = rss_mib(s.pid());
        println!("{:<40} peak RSS {hwm:.0} MiB, now {rss:.0} MiB", "");
        out.insert("full_max".into(), r_full.json());
        out.insert("stored_events".into(), json!(stored));
        out.insert(
            "full_vs_empty".into(),
            json!(r_full.rate() / r_max.rate().max(1e-9)),
        );
        out.insert("peak_rss_mib".into(), json!(hwm));
    }
    s.finish().await;
    if let Some(p) = json_out {
        std::fs::write(&p, serde_json::to_string_pretty(&Value::Object(out))?)?;
    }
    Ok(())
}

async fn postback_bench(
    server_bin_arg: Option<PathBuf>,
    db: Db,
    duration: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let bin = server_bin(server_bin_arg)?;
    let s = start_server(&bin, db).await?;
    let pid = create_property(&s.base).await?;
    let int = api(
        &s.base,
        &format!("/api/v1/properties/{pid}/integrations"),
        json!({"catalog": "custom", "settings": {"tracking_group": "bench", "subid_param": "subid"}}),
    )
    .await?;
    let postback = int["postback_url"].as_str().unwrap_or_default().to_owned();
    // Clicks to convert: a pageview per visitor; conversions name click ids
    // minted from those pageviews (the lost-beacon path) or stored clicks.
    let http = client()?;
    let mut pageviews = Vec::new();
    for chunk in 0..200 {
        let evs: Vec<Value> = (0..50)
            .map(|i| {
                let pv = uuid::Uuid::now_v7();
                pageviews.push(pv);
                json!({"event_id": pv.to_string(), "name": "PageView", "ts": now_ms(), "visitor_id": format!("v{chunk}_{i}_bench"),
                       "url": "https://bench.example/?utm_source=google&utm_medium=cpc&gclid=abc"})
            })
            .collect();
        http.post(format!("{}/collect", s.base))
            .body(json!({"property_id": pid, "events": evs}).to_string())
            .send()
            .await?;
    }
    let pageviews = Arc::new(pageviews);
    let ok = Arc::new(AtomicU64::new(0));
    let dup = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let counter = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let start = Instant::now();
    let end = start + Duration::from_secs(duration);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, postback, pageviews) = (http.clone(), postback.clone(), pageviews.clone());
        let (ok, dup, bad, counter, hist) = (
            ok.clone(),
            dup.clone(),
            bad.clone(),
            counter.clone(),
            hist.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                // One postback in ten repeats an earlier transaction.
                let tx = if n % 10 == 9 { n - 5 } else { n };
                let pv = pageviews[(tx as usize) % pageviews.len()];
                let click = clicktrail_domain::clickid::mint(pv);
                let t = Instant::now();
                let r = http
                    .get(format!(
                        "{postback}?subid={click}&payout=2.50&currency=GBP&txid=T{tx}&event=sale"
                    ))
                    .send()
                    .await;
                match r {
                    Ok(resp) if resp.status().is_success() => {
                        let v: Value = resp.json().await.unwrap_or(Value::Null);
                        if v["error_code"] == "duplicate" {
                            dup.fetch_add(1, Ordering::Relaxed);
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                        let _ = hist.lock().await.record(t.elapsed().as_micros() as u64);
                    }
                    _ => {
                        bad.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let secs = start.elapsed().as_secs_f64();
    let h = hist.lock().await;
    println!(
        "postbacks: {:.0}/s accepted ({} ok, {} of them duplicates, {} failed), p50 {:.2} ms, p99 {:.2} ms",
        ok.load(Ordering::Relaxed) as f64 / secs,
        ok.load(Ordering::Relaxed),
        dup.load(Ordering::Relaxed),
        bad.load(Ordering::Relaxed),
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0
    );
    s.finish().await;
    Ok(())
}

async fn go_bench(
    server_bin_arg: Option<PathBuf>,
    db: Db,
    duration: u64,
    rate: u64,
) -> anyhow::Result<()> {
    let bin = server_bin(server_bin_arg)?;
    let s = start_server(&bin, db).await?;
    let pid = create_property(&s.base).await?;
    let int = api(
        &s.base,
        &format!("/api/v1/properties/{pid}/integrations"),
        json!({"catalog": "custom", "settings": {"tracking_group": "bench", "subid_param": "subid"}}),
    )
    .await?;
    api(
        &s.base,
        &format!("/api/v1/properties/{pid}/links"),
        json!({"slug": "offer", "destination_url": "https://offer.example/land?a=1", "integration": int["id"]}),
    )
    .await?;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()?;
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1, 60_000_000, 3,
    )?));
    let bad = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::new();
    let mut i = 0u32;
    loop {
        let scheduled = start + interval * i;
        if scheduled >= start + Duration::from_secs(duration) {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, hist, bad, base) = (http.clone(), hist.clone(), bad.clone(), s.base.clone());
        tasks.push(tokio::spawn(async move {
            let r = http
                .get(format!(
                    "{base}/go/offer?utm_source=tiktok&utm_medium=paid&ttclid=T{i}"
                ))
                .header("user-agent", USER_AGENTS[(i as usize) % USER_AGENTS.len()])
                .send()
                .await;
            match r {
                Ok(resp) if resp.status().as_u16() == 302 => {
                    let _ = hist
                        .lock()
                        .await
                        .record(scheduled.elapsed().as_micros() as u64);
                }
                _ => {
                    bad.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
        i += 1;
    }
    for t in tasks {
        let _ = t.await;
    }
    // The server's own view: time spent in the handler, from its metrics.
    let metrics = client()?
        .get(format!("{}/metrics", s.base))
        .send()
        .await?
        .text()
        .await?;
    let server_p99 = histogram_quantile(
        &metrics,
        "clicktrail_http_request_duration_seconds",
        "/go/{slug}",
        0.99,
    );
    let h = hist.lock().await;
    println!(
        "/go at {rate}/s: client p50 {:.2} ms, p99 {:.2} ms; server-side p99 <= {} ({} failed)",
        h.value_at_quantile(0.5) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        server_p99
            .map(|s| format!("{:.1} ms", s * 1000.0))
            .unwrap_or_else(|| "?".into()),
        bad.load(Ordering::Relaxed)
    );
    s.finish().await;
    Ok(())
}

/// The upper bound of the bucket holding quantile `q` of a Prometheus
/// histogram for one route (summed over status codes).
fn histogram_quantile(text: &str, name: &str, route: &str, q: f64) -> Option<f64> {
    let mut buckets: BTreeMap<String, f64> = BTreeMap::new();
    let prefix = format!("{name}_bucket{{");
    for line in text
        .lines()
        .filter(|l| l.starts_with(&prefix) && l.contains(&format!("route=\"{route}\"")))
    {
        let le = line.split("le=\"").nth(1)?.split('"').next()?.to_owned();
        let v: f64 = line.rsplit(' ').next()?.parse().ok()?;
        *buckets.entry(le).or_default() += v;
    }
    let mut pairs: Vec<(f64, f64)> = buckets
        .into_iter()
        .map(|(le, v)| {
            (
                if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap_or(f64::INFINITY)
                },
                v,
            )
        })
        .collect();
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = pairs.last()?.1;
    pairs
        .into_iter()
        .find(|(_, c)| *c >= q * total)
        .map(|(le, _)| le)
}
