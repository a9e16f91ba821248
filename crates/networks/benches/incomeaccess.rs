//! Benchmark of the Income Access connector: a 100,000-row report (XML and
//! CSV) parsed and diffed, streaming. The report is generated on the fly by
//! an `AsyncRead`, so the process never holds the document; the peak RSS
//! printed (VmHWM) shows the parser's memory stays bounded while tens of
//! megabytes go through it. A last phase fetches the same report over HTTP
//! from the testkit fake (which builds its body in memory, so that phase's
//! RSS includes the fake's copy of the document).
//!
//! Run: `cargo bench -p clicktrail-networks --bench incomeaccess [-- ROWS]`.
//! Exits with status 1 when a parse+diff of the report takes 5 s of CPU or more
//! (CPU time of the benchmark's thread: wall time is printed too, but on a
//! shared machine it mostly measures the neighbours).

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use clicktrail_networks::incomeaccess::{
    DeltaConfig, FetchSummary, IncomeAccessSettings, ReportFormat, RowPeriod, RowReader,
    SecurityKey, Snapshot, diff, open_report,
};
use clicktrail_testkit::income_access::{Decimal, FAKE_KEY, FakeIncomeAccess, FakePlayer};
use tokio::io::{AsyncRead, ReadBuf};

const LIMIT: Duration = Duration::from_secs(5);

/// The report of poll `pass`: from the second poll on, every tenth player's
/// total has risen and every hundredth (offset 1) has fallen.
fn total_cents(i: u64, pass: u32) -> i64 {
    let base = i64::try_from(i % 5_000).unwrap_or(0) * 3 + 17;
    let mut t = base;
    if pass >= 1 && i.is_multiple_of(10) {
        t += 125;
    }
    if pass >= 1 && i % 100 == 1 {
        t -= 50;
    }
    t
}

fn cents(c: i64) -> String {
    Decimal::new(c, 2).to_string()
}

type Fields = Vec<(&'static str, Cow<'static, str>)>;

fn row_fields(i: u64, pass: u32, total: u64) -> Fields {
    let commission = cents(total_cents(i, pass));
    vec![
        ("rowid", "1".into()),
        (
            "currencysymbol",
            if i.is_multiple_of(3) { "EUR" } else { "GBP" }.into(),
        ),
        ("totalrecords", total.to_string().into()),
        ("merchantname", "Gala Bingo & Casino".into()),
        ("memberid", "25020".into()),
        ("username", "affiliate_one".into()),
        ("siteid", "31512".into()),
        ("bannerid", "18926".into()),
        ("creativename", "Text_Link_WH_Sport".into()),
        ("bannertype", "Text Links".into()),
        ("playerid", (1_000_000 + i).to_string().into()),
        ("merchplayername", format!("player{i}").into()),
        ("affcustomid", format!("ck{i:014}QfdSVGM3YZTZ").into()),
        ("playercountry", "GB".into()),
        (
            "registrationdate",
            format!("05/{:02}/2024", 1 + i % 28).into(),
        ),
        ("firstdeposit", "05/03/2024".into()),
        ("Deposits", "25.00".into()),
        ("trans_value", "3".into()),
        ("Commission", commission.clone().into()),
        ("totalcommission", commission.into()),
        ("netrevenue", "2.55".into()),
        ("activedays", "1".into()),
        ("prod4bets", "1".into()),
        ("revsharecommission", "1.02".into()),
        ("prod1commission", "-0.18".into()),
        ("prod4netrevenue", "3".into()),
        ("clicks", "0".into()),
    ]
}

/// Writes a report row by row into a small buffer as it is read.
struct Generator {
    format: ReportFormat,
    rows: u64,
    pass: u32,
    next: u64,
    stage: u8,
    buf: Vec<u8>,
    pos: usize,
}

impl Generator {
    fn new(format: ReportFormat, rows: u64, pass: u32) -> Self {
        Self {
            format,
            rows,
            pass,
            next: 0,
            stage: 0,
            buf: Vec::with_capacity(4096),
            pos: 0,
        }
    }

    /// Fills `buf` with the next piece; false at the end.
    fn refill(&mut self) -> bool {
        self.buf.clear();
        self.pos = 0;
        match (self.stage, self.format) {
            (0, ReportFormat::Xml) => {
                self.buf.extend_from_slice(
                    b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<SOAP-ENV:Envelope \
                      xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body><reportresponse>",
                );
                self.stage = 1;
            }
            (0, ReportFormat::Csv) => {
                self.buf
                    .extend_from_slice(b"\"AccountReport\"\r\n\"2024/05/01 - 2024/05/31\"\r\n\r\n");
                let names: Vec<String> = row_fields(0, 0, 0)
                    .iter()
                    .map(|(k, _)| format!("\"{k}\""))
                    .collect();
                self.buf.extend_from_slice(names.join(",").as_bytes());
                self.buf.extend_from_slice(b"\r\n");
                self.stage = 1;
            }
            (1, format) => {
                // A few rows per refill.
                for _ in 0..8 {
                    if self.next >= self.rows {
                        self.stage = 2;
                        break;
                    }
                    let fields = row_fields(self.next, self.pass, self.rows);
                    self.next += 1;
                    write_row(&mut self.buf, format, &fields);
                }
            }
            (2, format) => {
                let mut totals = row_fields(0, 0, self.rows);
                for (k, v) in &mut totals {
                    *v = match *k {
                        "rowid" => "2".into(),
                        "totalcommission" | "Commission" => "123456.78".into(),
                        _ => "".into(),
                    };
                }
                write_row(&mut self.buf, format, &totals);
                if format == ReportFormat::Xml {
                    self.buf.extend_from_slice(
                        b"</reportresponse></SOAP-ENV:Body></SOAP-ENV:Envelope>",
                    );
                }
                self.stage = 3;
            }
            _ => return false,
        }
        true
    }
}

fn write_row(buf: &mut Vec<u8>, format: ReportFormat, fields: &Fields) {
    match format {
        ReportFormat::Xml => {
            buf.extend_from_slice(b"\r\n<row>");
            for (k, v) in fields {
                let _ = write!(buf, "<{k}>");
                for part in v.split('&').enumerate() {
                    if part.0 > 0 {
                        buf.extend_from_slice(b"&amp;");
                    }
                    buf.extend_from_slice(part.1.as_bytes());
                }
                let _ = write!(buf, "</{k}>");
            }
            buf.extend_from_slice(b"</row>");
        }
        ReportFormat::Csv => {
            for (n, (_, v)) in fields.iter().enumerate() {
                if n > 0 {
                    buf.push(b',');
                }
                let _ = write!(buf, "\"{v}\"");
            }
            buf.extend_from_slice(b"\r\n");
        }
    }
}

impl AsyncRead for Generator {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        while this.pos >= this.buf.len() {
            if !this.refill() {
                return Poll::Ready(Ok(()));
            }
        }
        let n = out.remaining().min(this.buf.len() - this.pos);
        out.put_slice(&this.buf[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

fn vm(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// CPU time of this thread (the current-thread runtime runs everything on
/// it), so that figures do not depend on what else the machine runs.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn cfg() -> DeltaConfig {
    DeltaConfig::new(
        Some("totalcommission".into()),
        "2024-06-01T00:00:00Z".parse().unwrap_or_default(),
    )
}

struct Outcome {
    summary: FetchSummary,
    events: u64,
    row_errors: u64,
    elapsed: Duration,
    cpu: Duration,
}

/// Parses (and, with `snapshots`, diffs and stores) one report.
async fn run<R: AsyncRead + Unpin>(
    reader: R,
    snapshots: Option<&mut HashMap<String, Vec<u8>>>,
) -> Outcome {
    let started = Instant::now();
    let cpu = cpu_time();
    let cfg = cfg();
    let mut r = RowReader::new(reader, RowPeriod::Fixed("2024-05".into()));
    let (mut events, mut row_errors) = (0u64, 0u64);
    let mut snapshots = snapshots;
    loop {
        let row = match r.next_row().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            Err(e) => {
                eprintln!("parse error: {e}");
                std::process::exit(2);
            }
        };
        let Some(store) = snapshots.as_deref_mut() else {
            continue;
        };
        let key = row.snapshot_key().unwrap_or_default();
        let prev: Option<Snapshot> = store.get(&key).and_then(|j| serde_json::from_slice(j).ok());
        match diff(prev.as_ref(), &row, &cfg) {
            Ok(d) => {
                events += d.events.len() as u64;
                let json = if d.changed {
                    serde_json::to_vec(&d.snapshot).ok()
                } else {
                    None
                };
                if let Some(json) = json {
                    store.insert(d.key, json);
                }
            }
            Err(_) => row_errors += 1,
        }
    }
    Outcome {
        summary: r.summary(),
        events,
        row_errors,
        elapsed: started.elapsed(),
        cpu: cpu_time().saturating_sub(cpu),
    }
}

fn report(label: &str, o: &Outcome, failures: &mut Vec<String>, limit: bool) {
    let secs = o.elapsed.as_secs_f64();
    let cpu = o.cpu.as_secs_f64();
    let rows = o.summary.rows as f64;
    println!(
        "{label:<32} {:>7} rows {:>6.1} MB  wall {:>6.3} s  cpu {:>6.3} s {:>8.0} rows/s (cpu) {:>6.1} MB/s  events {:>6}  row errors {}  totals dropped {}  peak RSS {:.1} MB",
        o.summary.rows,
        o.summary.bytes as f64 / 1e6,
        secs,
        cpu,
        rows / cpu.max(1e-9),
        o.summary.bytes as f64 / 1e6 / cpu.max(1e-9),
        o.events,
        o.row_errors,
        o.summary.totals_rows,
        vm("VmHWM:"),
    );
    if limit && o.cpu >= LIMIT {
        failures.push(format!("{label}: {cpu:.2} s of CPU"));
    }
}

fn main() {
    let rows: u64 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with('-'))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100_000);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio: {e}");
            std::process::exit(2);
        }
    };
    println!(
        "Income Access connector benchmark: {rows} rows ({} build), peak RSS at start {:.1} MB",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        vm("VmHWM:")
    );
    let mut failures = Vec::new();
    rt.block_on(async {
        for format in [ReportFormat::Xml, ReportFormat::Csv] {
            // The synthetic source alone, to tell its cost from the parser's.
            let (started, cpu) = (Instant::now(), cpu_time());
            let mut g = Generator::new(format, rows, 0);
            let bytes = tokio::io::copy(&mut g, &mut tokio::io::sink()).await.unwrap_or(0);
            println!(
                "{:<32} {:>7} rows {:>6.1} MB  wall {:>6.3} s  cpu {:>6.3} s (included in the figures below)",
                format!("{format:?} generator alone"),
                rows,
                bytes as f64 / 1e6,
                started.elapsed().as_secs_f64(),
                cpu_time().saturating_sub(cpu).as_secs_f64()
            );
        }
        for format in [ReportFormat::Xml, ReportFormat::Csv] {
            let o = run(Generator::new(format, rows, 0), None).await;
            report(&format!("{format:?} parse only"), &o, &mut failures, true);
        }
        println!("  (peak RSS above is for streaming the whole report: the document is never held)");
        // Each format's snapshots stay alive to the end: freeing 100,000
        // small buffers between phases fragments glibc's heap and slows the
        // next phase's allocations, a cost of this in-memory stand-in for
        // the server's database, not of the connector.
        let mut kept = Vec::new();
        for format in [ReportFormat::Xml, ReportFormat::Csv] {
            let mut store = HashMap::new();
            let first = run(Generator::new(format, rows, 0), Some(&mut store)).await;
            report(&format!("{format:?} parse+diff, first poll"), &first, &mut failures, true);
            let again = run(Generator::new(format, rows, 0), Some(&mut store)).await;
            report(&format!("{format:?} parse+diff, same data"), &again, &mut failures, true);
            let second = run(Generator::new(format, rows, 1), Some(&mut store)).await;
            report(&format!("{format:?} parse+diff, 11% changed"), &second, &mut failures, true);
            let bytes: usize = store.iter().map(|(k, v)| k.len() + v.len()).sum();
            println!(
                "  snapshots held for the diff (the server keeps them in its database): {} keys, {:.1} MB of JSON",
                store.len(),
                bytes as f64 / 1e6
            );
            kept.push(store);
        }
        http_phase(rows, &mut failures).await;
        drop(kept);
    });
    if failures.is_empty() {
        println!(
            "OK: every parse+diff of {rows} rows took less than {} s",
            LIMIT.as_secs()
        );
    } else {
        println!("TOO SLOW: {}", failures.join("; "));
        std::process::exit(1);
    }
}

async fn http_phase(rows: u64, failures: &mut Vec<String>) {
    let fake = match FakeIncomeAccess::start().await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("fake server: {e}");
            return;
        }
    };
    let day = NaiveDate::from_ymd_opt(2024, 5, 3).unwrap_or_default();
    for i in 0..rows {
        let id = (1_000_000 + i).to_string();
        fake.handle
            .add_player(FakePlayer::new(&id, &format!("ck{i:014}QfdSVGM3YZTZ"), day));
        fake.handle
            .add_commission(&id, day, Decimal::new(total_cents(i, 0), 2));
    }
    let Ok(mut settings) =
        IncomeAccessSettings::from_json(&serde_json::json!({"api_url": fake.report_url}))
    else {
        return;
    };
    let Ok(key) = SecurityKey::new(FAKE_KEY) else {
        return;
    };
    let client = reqwest::Client::new();
    let today = NaiveDate::from_ymd_opt(2024, 5, 20).unwrap_or_default();
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        settings.report_format = format;
        let mut store: HashMap<String, Vec<u8>> = HashMap::new();
        let cfg = cfg();
        let started = Instant::now();
        let cpu = cpu_time();
        let mut events = 0u64;
        let mut summary = FetchSummary::default();
        for req in settings.plan(today) {
            let mut reader = match open_report(&client, &req, &key).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("http: {e}");
                    return;
                }
            };
            loop {
                match reader.next_row().await {
                    Ok(Some(row)) => {
                        if let Ok(d) = diff(None, &row, &cfg) {
                            events += d.events.len() as u64;
                            if let Ok(json) = serde_json::to_vec(&d.snapshot) {
                                store.insert(d.key, json);
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        eprintln!("http: {e}");
                        return;
                    }
                }
            }
            summary = reader.summary();
        }
        let o = Outcome {
            summary,
            events,
            row_errors: 0,
            elapsed: started.elapsed(),
            cpu: cpu_time().saturating_sub(cpu),
        };
        report(
            &format!("{format:?} over HTTP from the fake"),
            &o,
            failures,
            true,
        );
    }
    println!(
        "  (the fake builds each answer in memory: the HTTP phase's RSS includes its copy of the report)"
    );
}
