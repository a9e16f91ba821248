//! Income Access at scale, end to end: "a 100,000-row report parsed and
//! applied in under 5 seconds with memory bounded (streaming)".
//!
//! A real server (in-process, SQLite or PostgreSQL) with a `galapartners`
//! integration pointing at the Income Access fake of `clicktrail-testkit`.
//! The fake holds N players, each registered today with a commission
//! today, whose `affcustomid` is a click the database knows (N sessions
//! and N clicks are preloaded), so the month's AccountReport has N rows
//! (plus the totals row the parser drops) and a poll records N `Lead` and
//! N `Purchase` conversions, attributed to their click's session.
//!
//! The fake runs in a child process (this same example, re-executed), so
//! that it builds its report (tens of MB, in memory) outside the process
//! whose memory is measured: the peak RSS printed is the server's alone.
//!
//! Stages, each timed:
//! 1. the fake alone: the report requested and read to the end (the cost
//!    of producing and transferring it, a floor for any poll);
//! 2. the connector alone: the same report fetched and parsed with
//!    `incomeaccess::open_report`, and each row diffed against no snapshot
//!    (no storage);
//! 3. the poll: `POST /api/v1/integrations/{id}/poll`, from the request to
//!    its answer (every conversion and snapshot committed), with the
//!    process's peak RSS over the poll (VmHWM reset just before it) and the
//!    conversions counted in the store afterwards;
//! 4. the same poll again: nothing new may be recorded;
//! 5. the storage steps of one 1000-row chunk (snapshot lookup, the click /
//!    session / visitor-session lookups the poller decides the chunk with,
//!    on the read pool, the snapshot upserts), each timed alone on the
//!    filled database.
//!
//! While a poll runs, the conversions committed so far are printed every
//! second; after it, the CPU each kind of thread used.
//!
//! ```text
//! cargo run --release -p clicktrail --example bench_incomeaccess -- 100000 [sqlite|postgres] [xml|csv]
//! ```
//! Arguments, in any order: rows (default 100000), backend (`sqlite`,
//! default, or `postgres`), report format (`xml`, default, or `csv`).
//! PostgreSQL is reached at postgres://postgres@127.0.0.1:5432 (a database
//! is created and dropped).

mod support;

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use clicktrail::app;
use clicktrail_networks::incomeaccess::{self, IncomeAccessSettings, ReportFormat, SecurityKey};
use clicktrail_store::conversions::lookup;
use clicktrail_store::{Backend, Db, args, integrations};
use clicktrail_testkit::income_access::{Decimal, FakeIncomeAccess, FakePlayer};
use futures::StreamExt as _;
use serde_json::{Value, json};
use support::{BenchDb, MASTER_KEY, api};

/// Click ids and visitor ids are numbered from here (all ten digits).
const FIRST: u64 = 1_000_000_000;
const PRELOAD_BATCH: usize = 5000;
const TARGET: Duration = Duration::from_secs(5);

fn click_id(i: u64) -> String {
    format!("benchclickia{}", FIRST + i)
}

// ---------------------------------------------------------------------------
// Memory of this process.

/// A `kB` field of /proc/<pid>/status, in MiB.
fn status_mib(pid: &str, field: &str) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: f64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb / 1024.0)
    })
}

fn rss() -> f64 {
    status_mib("self", "VmRSS").unwrap_or(0.0)
}

fn hwm() -> f64 {
    status_mib("self", "VmHWM").unwrap_or(0.0)
}

/// Resets VmHWM to the current RSS (Linux: `5` in clear_refs).
fn reset_hwm() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds (user + system) used so far by each thread of this
/// process, summed by thread name (`tokio-runtime-w`, `sqlx-sqlite-wor`,
/// `conversion-writ`...).
fn thread_cpu() -> std::collections::BTreeMap<String, f64> {
    let mut out = std::collections::BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = stat[open + 1..close].to_owned();
        // After the name: state (field 3), ..., utime (14), stime (15).
        let f: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        // USER_HZ is 100 on Linux.
        *out.entry(name).or_insert(0.0) += (ticks(11) + ticks(12)) / 100.0;
    }
    out
}

/// What each kind of thread used between two [`thread_cpu`] readings,
/// busiest first.
fn cpu_between(
    before: &std::collections::BTreeMap<String, f64>,
    after: &std::collections::BTreeMap<String, f64>,
) -> String {
    let mut used: Vec<(&str, f64)> = after
        .iter()
        .map(|(k, v)| (k.as_str(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v >= 0.01)
        .collect();
    used.sort_by(|a, b| b.1.total_cmp(&a.1));
    let total: f64 = used.iter().map(|(_, v)| v).sum();
    let parts: Vec<String> = used.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
    format!("{total:.2} s CPU ({})", parts.join(", "))
}

/// Samples VmRSS every 5 ms on a thread of its own until stopped; the
/// maximum is a check on VmHWM where clear_refs is not allowed.
struct RssSampler {
    stop: Arc<AtomicBool>,
    max_kb: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    fn start() -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let max_kb = Arc::new(AtomicU64::new(0));
        let (s, m) = (stop.clone(), max_kb.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let kb = (rss() * 1024.0) as u64;
                m.fetch_max(kb, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Self {
            stop,
            max_kb,
            thread: Some(thread),
        }
    }

    /// Stops and returns the largest RSS seen, in MiB.
    fn finish(mut self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.max_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

// ---------------------------------------------------------------------------
// The fake, in a child process.

/// Child mode (`--fake N`): starts the fake, fills it, prints
/// `READY <report_url> <key>` and serves until its stdin closes.
fn serve_fake(n: u64) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fake = FakeIncomeAccess::start().await.expect("fake Income Access");
        let today = Utc::now().date_naive();
        for i in 0..n {
            let player = format!("{}", 5_000_000 + i);
            fake.handle
                .add_player(FakePlayer::new(&player, &click_id(i), today));
            // 1.00 to 9.99 GBP.
            fake.handle
                .add_commission(&player, today, Decimal::new(100 + (i % 900) as i64, 2));
        }
        println!("READY {} {}", fake.report_url, fake.key());
        std::io::stdout().flush().expect("stdout");
        // Serve until the parent closes our stdin (or dies).
        tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
                sink.clear();
            }
        })
        .await
        .expect("stdin");
        drop(fake);
    });
}

struct FakeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    report_url: String,
    key: String,
}

impl FakeProcess {
    fn spawn(n: u64) -> Self {
        let exe = std::env::current_exe().expect("current exe");
        let mut child = Command::new(exe)
            .arg("--fake")
            .arg(n.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fake process");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("fake stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("fake READY line");
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("READY"), "fake said {line:?}");
        let report_url = parts.next().expect("report url").to_owned();
        let key = parts.next().expect("key").to_owned();
        Self {
            child,
            stdin,
            report_url,
            key,
        }
    }

    fn peak_mib(&self) -> f64 {
        status_mib(&self.child.id().to_string(), "VmHWM").unwrap_or(0.0)
    }

    fn stop(mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// The server side.

/// N sessions (paid search from Google) and a click on an Income Access
/// link in each, one hour ago.
async fn preload(db: &Db, property: &str, n: u64) {
    let now = chrono::Utc::now().timestamp_millis();
    let source = match db.backend() {
        Backend::Sqlite => "(SELECT CAST(value AS INTEGER) AS i FROM json_each($2)) AS x",
        Backend::Postgres => {
            "(SELECT value::bigint AS i FROM json_array_elements_text($2::json)) AS x"
        }
    };
    let sessions = format!(
        "INSERT INTO sessions (property_id, visitor_id, started_at, last_seen_at, landing_url, landing_page, \
         utm_source, utm_medium, utm_campaign, source, medium, channel, gclid, device, is_bot, user_agent, ip, \
         pageviews, events) \
         SELECT $1, 'visitor.' || x.i, $3, $3, 'https://bench.example/bonus?utm_source=google&utm_medium=cpc', \
         '/bonus', 'google', 'cpc', 'bingo', 'google', 'cpc', 'paid_search', 'Cj0_gclid_' || x.i, 'desktop', $4, \
         'Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0', '203.0.113.0', 2, 3 FROM {source}"
    );
    let mut i = 0u64;
    while i < n {
        let end = (i + PRELOAD_BATCH as u64).min(n);
        let ids: Vec<u64> = (i..end).map(|k| FIRST + k).collect();
        db.execute(
            &sessions,
            args![
                property,
                serde_json::to_string(&ids).expect("ids"),
                now - 3_600_000,
                false
            ],
        )
        .await
        .expect("sessions");
        i = end;
    }
    // 'visitor.' is 8 characters: the number starts at 9.
    db.execute(
        "INSERT INTO clicks (property_id, click_id, origin, ts, session_id, visitor_id, page_url, link_url, \
         link_group) \
         SELECT property_id, 'benchclickia' || substr(visitor_id, 9), 'tag', $2, id, visitor_id, \
         'https://bench.example/bonus', 'https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c=', 'incomeaccess' \
         FROM sessions WHERE property_id = $1",
        args![property, now - 3_000_000],
    )
    .await
    .expect("clicks");
    // A real database's statistics grew with it (autovacuum); a bulk load
    // has none until autovacuum catches up, and plans as for empty tables.
    if db.backend() == Backend::Postgres {
        db.execute("ANALYZE", args![]).await.expect("analyze");
    }
}

async fn count(db: &Db, sql: &str, property: &str) -> i64 {
    let (n,): (i64,) = db.fetch_one(sql, args![property]).await.expect("count");
    n
}

/// (event_name, status, count) of the property's conversions.
async fn breakdown(db: &Db, property: &str) -> Vec<(Option<String>, String, i64)> {
    db.fetch_all(
        "SELECT event_name, status, COUNT(*) FROM conversions WHERE property_id = $1 \
         GROUP BY event_name, status ORDER BY event_name, status",
        args![property],
    )
    .await
    .expect("breakdown")
}

/// Prints how many conversions are committed, every second, until stopped.
fn progress(db: Db, property: String, started: Instant) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let count_sql = "SELECT COUNT(*) FROM conversions WHERE property_id = $1";
        let mut last = count(&db, count_sql, &property).await;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let n = count(&db, count_sql, &property).await;
            eprintln!(
                "    t={:5.1} s: {n} conversions committed (+{}/s), RSS {:.0} MiB",
                started.elapsed().as_secs_f64(),
                n - last,
                rss()
            );
            last = n;
        }
    })
}

struct Poll {
    seconds: f64,
    answer: Value,
    rss_before: f64,
    peak: f64,
    sampled_peak: f64,
    rss_after: f64,
    cpu: String,
}

async fn timed_poll(
    http: &reqwest::Client,
    base: &str,
    iid: &str,
    db: &Db,
    property: &str,
) -> Poll {
    let rss_before = rss();
    let hwm_reset = reset_hwm();
    let sampler = RssSampler::start();
    let cpu_before = thread_cpu();
    let started = Instant::now();
    let ticker = progress(db.clone(), property.to_owned(), started);
    let answer = api(http, base, &format!("/integrations/{iid}/poll"), json!({})).await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = cpu_between(&cpu_before, &thread_cpu());
    ticker.abort();
    let sampled_peak = sampler.finish();
    let peak = if hwm_reset { hwm() } else { sampled_peak };
    Poll {
        seconds,
        answer,
        rss_before,
        peak,
        sampled_peak,
        rss_after: rss(),
        cpu,
    }
}

// ---------------------------------------------------------------------------
// Stages 1 and 2: the fake alone, the connector alone.

/// Reads the report to the end without keeping it: (bytes, seconds).
async fn fetch_only(url: &str) -> (u64, f64) {
    let started = Instant::now();
    let resp = reqwest::get(url).await.expect("report");
    assert!(resp.status().is_success(), "report: {}", resp.status());
    let mut body = resp.bytes_stream();
    let mut bytes = 0u64;
    while let Some(chunk) = body.next().await {
        bytes += chunk.expect("report body").len() as u64;
    }
    (bytes, started.elapsed().as_secs_f64())
}

/// What the connector alone costs.
struct ConnectorOnly {
    rows: u64,
    events: u64,
    /// Fetch + parse.
    parse_secs: f64,
    /// Fetch + parse + diff against no snapshot + snapshot JSON.
    diff_secs: f64,
}

/// Fetches, parses and diffs (against no snapshot) every row of the
/// month's report, without storage.
async fn connector_only(settings: &IncomeAccessSettings, key: &SecurityKey) -> ConnectorOnly {
    let client = reqwest::Client::new();
    let now = Utc::now();
    let cfg = settings.delta_config(now);
    let mut rows = 0u64;
    let started = Instant::now();
    for req in settings.plan(now.date_naive()) {
        let mut reader = incomeaccess::open_report(&client, &req, key)
            .await
            .expect("open report");
        while reader.next_row().await.expect("row").is_some() {
            rows += 1;
        }
    }
    let parse_secs = started.elapsed().as_secs_f64();
    let mut events = 0u64;
    let started = Instant::now();
    for req in settings.plan(now.date_naive()) {
        let mut reader = incomeaccess::open_report(&client, &req, key)
            .await
            .expect("open report");
        while let Some(row) = reader.next_row().await.expect("row") {
            let d = incomeaccess::diff(None, &row, &cfg).expect("diff");
            events += d.events.len() as u64;
            // What the poller stores per changed row.
            let _ = serde_json::to_string(&d.snapshot).expect("snapshot");
        }
    }
    let diff_secs = started.elapsed().as_secs_f64();
    ConnectorOnly {
        rows,
        events,
        parse_secs,
        diff_secs,
    }
}

/// Milliseconds of the fastest of three runs of `f`.
async fn best_of_3<F, Fut>(mut f: F) -> f64
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut best = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        f().await;
        best = best.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    best
}

/// The storage steps of one 1000-row chunk of the poll, each timed alone
/// on the filled database (a chunk from the middle of the report): the
/// snapshot lookup, the conversion writer's lookups (clicks, their
/// sessions, their visitors' sessions in the attribution window) and the
/// snapshot upserts (in a transaction rolled back).
async fn chunk_steps(db: &Db, property: &str, iid: &str, n: u64) {
    let size = n.min(1000);
    let offset = (n - size) / 2;
    let rows: Vec<(String, String)> = db
        .fetch_all(
            "SELECT row_key, snapshot FROM connector_snapshots WHERE integration_id = $1 \
             ORDER BY row_key LIMIT $2 OFFSET $3",
            args![iid, size as i64, offset as i64],
        )
        .await
        .expect("snapshots");
    let keys: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    let ids: Vec<String> = (offset..offset + size).map(click_id).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let visitors: Vec<String> = (offset..offset + size)
        .map(|i| format!("visitor.{}", FIRST + i))
        .collect();
    let visitors: Vec<&str> = visitors.iter().map(String::as_str).collect();
    let since = Utc::now().timestamp_millis() - 30 * 86_400_000;

    let snaps = best_of_3(|| async {
        let got = integrations::snapshots(db, iid, &keys)
            .await
            .expect("snapshot lookup");
        assert_eq!(got.len(), keys.len());
    })
    .await;
    // The lookups a poller makes on the read pool to decide a chunk.
    let mut reads = clicktrail_store::Reads::Pool(db);
    let mut session_ids = Vec::new();
    let mut t_clicks = f64::MAX;
    let mut t_sessions = f64::MAX;
    let mut t_visitors = f64::MAX;
    let mut t_put = f64::MAX;
    for _ in 0..3 {
        let t = Instant::now();
        let clicks = lookup::clicks(&mut reads, property, &ids)
            .await
            .expect("clicks");
        t_clicks = t_clicks.min(t.elapsed().as_secs_f64() * 1000.0);
        session_ids = clicks.values().map(|c| c.session_id).collect();
        let t = Instant::now();
        lookup::sessions(&mut reads, &session_ids)
            .await
            .expect("sessions");
        t_sessions = t_sessions.min(t.elapsed().as_secs_f64() * 1000.0);
        let t = Instant::now();
        let vs = lookup::visitor_sessions(&mut reads, property, &visitors, since)
            .await
            .expect("visitor sessions");
        t_visitors = t_visitors.min(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(vs.len(), visitors.len());
    }
    let mut tx = db.begin().await.expect("begin");
    for k in 0..3 {
        let t = Instant::now();
        integrations::put_snapshots(
            &mut tx,
            &format!("bench-probe-{k}"),
            &rows,
            Utc::now().timestamp_millis(),
        )
        .await
        .expect("put snapshots");
        t_put = t_put.min(t.elapsed().as_secs_f64() * 1000.0);
    }
    tx.rollback().await.expect("rollback");
    assert_eq!(session_ids.len(), ids.len());
    let chunks = n.div_ceil(1000) as f64;
    let sum = snaps + t_clicks + t_sessions + t_visitors + t_put;
    println!(
        "  5. one {size}-row chunk's storage steps alone, ms (x{chunks:.0} chunks): snapshot lookup {snaps:.1}, \
         clicks {t_clicks:.1}, sessions {t_sessions:.1}, visitors' sessions {t_visitors:.1}, \
         snapshot upserts {t_put:.1} => {:.2} s of the poll",
        sum * chunks / 1000.0
    );
}

// ---------------------------------------------------------------------------

/// Runs the stages; true when every check passed.
async fn run(bench_db: &BenchDb, n: u64, format: &str, fake: &FakeProcess) -> bool {
    let cfg = bench_db.config();
    let server = app::start(cfg).await.expect("server");
    let state = &server;
    let db = state.services.db.clone();
    let base = server.base_url();
    let http = reqwest::Client::new();

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
    let t = Instant::now();
    preload(&db, &property, n).await;
    eprintln!(
        "  preloaded {n} sessions and clicks in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    let installed = api(
        &http,
        &base,
        &format!("/properties/{property}/integrations"),
        json!({"catalog": "galapartners", "credentials": {"security_key": fake.key},
               "settings": {"api_url": fake.report_url, "report_format": format}}),
    )
    .await;
    let iid = installed["id"].as_str().expect("integration id").to_owned();

    // 1. The fake alone.
    let mut settings = IncomeAccessSettings::new(url::Url::parse(&fake.report_url).expect("url"));
    settings.report_format = if format == "csv" {
        ReportFormat::Csv
    } else {
        ReportFormat::Xml
    };
    let key = SecurityKey::new(&fake.key).expect("key");
    let plan = settings.plan(Utc::now().date_naive());
    let mut report_bytes = 0;
    let mut fake_secs = 0.0;
    for req in &plan {
        let (b, s) = fetch_only(req.url(&key).as_str()).await;
        report_bytes += b;
        fake_secs += s;
    }
    println!(
        "  1. fake alone: {} request(s), {:.1} MB of {format} produced and read in {fake_secs:.2} s",
        plan.len(),
        report_bytes as f64 / 1e6
    );
    // 2. The connector alone.
    let c = connector_only(&settings, &key).await;
    println!(
        "  2. connector alone: {} rows fetched + parsed in {:.2} s; fetched + parsed + diffed ({} events) in \
         {:.2} s",
        c.rows, c.parse_secs, c.events, c.diff_secs
    );

    // 3. The poll.
    let count_sql = "SELECT COUNT(*) FROM conversions WHERE property_id = $1";
    let before = count(&db, count_sql, &property).await;
    let p = timed_poll(&http, &base, &iid, &db, &property).await;
    let after = count(&db, count_sql, &property).await;
    let snapshots = count(
        &db,
        "SELECT COUNT(*) FROM connector_snapshots WHERE integration_id = $1",
        &iid,
    )
    .await;
    let poll = &p.answer["poll"];
    let rows = poll["rows"].as_u64().unwrap_or(0);
    let recorded = after - before;
    println!(
        "  3. poll: status {}, {} rows, {} events -> {recorded} conversions recorded, {snapshots} snapshots, \
         in {:.2} s = {:.0} rows/s (server's own duration_ms {}); outcomes {}",
        poll["status"],
        rows,
        poll["events"],
        p.seconds,
        rows as f64 / p.seconds,
        poll["duration_ms"],
        poll["outcomes"]
    );
    println!(
        "     memory: RSS {:.0} MiB before, peak {:.0} MiB during the poll ({:+.0} MiB; sampled peak {:.0}), \
         {:.0} MiB after; report was {:.1} MB",
        p.rss_before,
        p.peak,
        p.peak - p.rss_before,
        p.sampled_peak,
        p.rss_after,
        report_bytes as f64 / 1e6
    );
    println!("     cpu: {}", p.cpu);
    for (name, status, c) in breakdown(&db, &property).await {
        println!(
            "     {:<9} {:<10} {c}",
            name.unwrap_or_else(|| "-".into()),
            status
        );
    }
    let (validated,): (i64,) = db
        .fetch_one(
            "SELECT COUNT(*) FROM conversions WHERE property_id = $1 AND status = 'validated' \
             AND click_id IS NOT NULL AND channel = 'paid_search'",
            args![property.as_str()],
        )
        .await
        .expect("validated");
    // Through the API too: the conversion log lists them.
    let log: Value = http
        .get(format!(
            "{base}/api/v1/properties/{property}/conversions?status=validated&limit=1"
        ))
        .bearer_auth(MASTER_KEY)
        .send()
        .await
        .expect("conversion log")
        .json()
        .await
        .expect("conversion log json");
    let listed = log["conversions"].as_array().map_or(0, Vec::len);
    let mut ok = poll["status"] == "ok"
        && rows == n
        && recorded == 2 * n as i64
        && validated == 2 * n as i64
        && snapshots == n as i64
        && listed == 1;
    println!(
        "     expected {n} rows and {} validated, attributed conversions (a Lead and a Purchase per row): {}",
        2 * n,
        if ok { "yes" } else { "NO" }
    );

    // 4. Again: nothing new.
    let q = timed_poll(&http, &base, &iid, &db, &property).await;
    let again = count(&db, count_sql, &property).await;
    let poll2 = &q.answer["poll"];
    let idempotent = poll2["status"] == "ok" && again == after && poll2["events"] == 0;
    println!(
        "  4. re-poll: status {}, {} rows, {} events, {} new conversions, in {:.2} s = {:.0} rows/s; \
         peak RSS {:+.0} MiB; idempotent: {}",
        poll2["status"],
        poll2["rows"],
        poll2["events"],
        again - after,
        q.seconds,
        poll2["rows"].as_f64().unwrap_or(0.0) / q.seconds,
        q.peak - q.rss_before,
        if idempotent { "yes" } else { "NO" }
    );
    println!("     cpu: {}", q.cpu);
    ok &= idempotent;
    chunk_steps(&db, &property, &iid, n).await;
    println!(
        "  process peak RSS (VmHWM since the last reset) {:.0} MiB; fake process peak {:.0} MiB",
        hwm(),
        fake.peak_mib()
    );
    println!(
        "  target: {n} rows applied in under {:.0} s: {} ({:.2} s)",
        TARGET.as_secs_f64(),
        if Duration::from_secs_f64(p.seconds) < TARGET {
            "met"
        } else {
            "MISSED"
        },
        p.seconds
    );
    server.stop().await.expect("stop");
    ok
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--fake") {
        let n = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
        serve_fake(n);
        return;
    }
    let n: u64 = args.iter().find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let backend = if args.iter().any(|a| a == "postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let format = if args.iter().any(|a| a == "csv") {
        "csv"
    } else {
        "xml"
    };

    let t = Instant::now();
    let fake = FakeProcess::spawn(n);
    eprintln!(
        "Income Access bench: {n} rows, {backend}, {format}; fake filled (process {}) in {:.2} s",
        fake.child.id(),
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let ok = rt.block_on(async {
        let bench_db = BenchDb::create(backend).await;
        let ok = run(&bench_db, n, format, &fake).await;
        bench_db.remove().await;
        ok
    });
    fake.stop();
    if !ok {
        eprintln!("FAILED: see the lines above");
        std::process::exit(1);
    }
}
