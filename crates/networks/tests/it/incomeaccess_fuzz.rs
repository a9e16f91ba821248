//! Fuzzing of the Income Access parsers and delta rules with proptest: no
//! input may panic, well-formed reports must come back field for field, and
//! the delta rules must keep their invariants (the values emitted for a
//! period add up to its last total; a repeated row emits nothing). Each
//! test prints how many inputs it ran (`--nocapture` to see).

use std::collections::BTreeMap;

use clicktrail_domain::conversion::SourceStatus;
use clicktrail_domain::money::Amount;
use clicktrail_networks::incomeaccess::{
    DeltaConfig, ReportRow, RowPeriod, RowReader, Snapshot, diff,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases(default: u32) -> u32 {
    std::env::var("IA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Parses `body` completely: rows until the end or the first error.
fn parse_all(body: &[u8], period: RowPeriod) -> (Vec<ReportRow>, Option<String>) {
    futures::executor::block_on(async {
        let mut r = RowReader::new(body, period);
        let mut rows = Vec::new();
        loop {
            match r.next_row().await {
                Ok(Some(row)) => rows.push(row),
                Ok(None) => return (rows, None),
                Err(e) => {
                    // Every error has a stable code and a message.
                    assert!(!e.code().is_empty() && !e.message().is_empty());
                    return (rows, Some(e.code().to_owned()));
                }
            }
        }
    })
}

fn run<S: Strategy>(
    name: &str,
    n: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config {
        cases: n,
        failure_persistence: None,
        ..Config::default()
    });
    let count = std::cell::Cell::new(0u64);
    let result = runner.run(&strategy, |v| {
        count.set(count.get() + 1);
        test(v)
    });
    eprintln!("{name}: {} inputs", count.get());
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    run(
        "arbitrary bytes",
        cases(3000),
        proptest::collection::vec(any::<u8>(), 0..2048),
        |bytes| {
            parse_all(&bytes, RowPeriod::Fixed("2024-05".into()));
            parse_all(&bytes, RowPeriod::FromRow);
            Ok(())
        },
    );
}

/// Pieces of SOAP reports, CSV reports and error pages, shuffled together.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"x\">".to_owned()),
        Just("<SOAP-ENV:Body>".to_owned()),
        Just("</SOAP-ENV:Body></SOAP-ENV:Envelope>".to_owned()),
        Just("<reportresponse>".to_owned()),
        Just("</reportresponse>".to_owned()),
        Just("<row>".to_owned()),
        Just("</row>".to_owned()),
        Just("<rowid>2</rowid>".to_owned()),
        Just("<rowid>1</rowid>".to_owned()),
        Just("<SOAP-ENV:Fault><faultstring>".to_owned()),
        Just("</faultstring></SOAP-ENV:Fault>".to_owned()),
        Just("no permission 1".to_owned()),
        Just("No Records".to_owned()),
        Just("inactive report".to_owned()),
        Just("<!DOCTYPE html><html>".to_owned()),
        Just("<![CDATA[x<y]]>".to_owned()),
        Just("<!-- c -->".to_owned()),
        Just("&amp;&lt;&#x41;&nbsp;&".to_owned()),
        Just("<?xml version=\"1.0\"?>".to_owned()),
        Just("<a b='1'/>".to_owned()),
        Just("\"rowid\",\"affcustomid\",\"totalcommission\"\r\n".to_owned()),
        Just("\"1\",\"abc\",\"1.5\"\r\n".to_owned()),
        Just("\"2\",\"\",\"9\"\n".to_owned()),
        Just("\"unterminated".to_owned()),
        Just(",,,\r\n".to_owned()),
        Just("\u{feff}".to_owned()),
        "[a-zA-Z0-9 ./:-]{0,12}",
        "<[a-zA-Z]{1,8}>",
        "</[a-zA-Z]{1,8}>",
        "<[A-Za-z]{1,6}>[0-9.,-]{0,8}</[A-Za-z]{1,6}>",
    ]
}

#[test]
fn report_like_documents_never_panic() {
    run(
        "report-like documents",
        cases(3000),
        proptest::collection::vec(token(), 0..40),
        |parts| {
            let doc = parts.concat();
            let (rows, _) = parse_all(doc.as_bytes(), RowPeriod::Fixed("2024-05".into()));
            // Totals rows never come out.
            prop_assert!(rows.iter().all(|r| !r.is_totals()));
            parse_all(doc.as_bytes(), RowPeriod::FromRow);
            Ok(())
        },
    );
}

fn field_name() -> impl Strategy<Value = String> {
    "[a-zA-Z][a-zA-Z0-9_]{0,15}".prop_filter("not rowid", |n| !n.eq_ignore_ascii_case("rowid"))
}

/// A value with the characters that need escaping or quoting.
fn value() -> impl Strategy<Value = String> {
    "[ -~éß€\"',&<>]{0,20}"
}

fn rows_strategy() -> impl Strategy<Value = (Vec<String>, Vec<Vec<String>>)> {
    proptest::collection::btree_set(field_name(), 1..8).prop_flat_map(|names| {
        // Case-insensitive duplicates would make the expected map ambiguous.
        let mut seen = std::collections::HashSet::new();
        let names: Vec<String> = names
            .into_iter()
            .filter(|n| seen.insert(n.to_ascii_lowercase()))
            .collect();
        let width = names.len();
        (
            Just(names),
            proptest::collection::vec(proptest::collection::vec(value(), width), 0..20),
        )
    })
}

fn xml_escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn xml_reports_round_trip() {
    run(
        "xml round trip",
        cases(1000),
        rows_strategy(),
        |(names, rows)| {
            let mut doc = String::from(
                "<?xml version=\"1.0\"?><SOAP-ENV:Envelope xmlns:SOAP-ENV=\"x\"><SOAP-ENV:Body><reportresponse>",
            );
            for r in &rows {
                doc.push_str("<row><rowid>1</rowid>");
                for (n, v) in names.iter().zip(r) {
                    doc.push_str(&format!("<{n}>{}</{n}>", xml_escape(v)));
                }
                doc.push_str("</row>\n");
            }
            doc.push_str(
                "<row><rowid>2</rowid></row></reportresponse></SOAP-ENV:Body></SOAP-ENV:Envelope>",
            );
            let (parsed, err) = parse_all(doc.as_bytes(), RowPeriod::Fixed("2024-05".into()));
            prop_assert_eq!(err, None);
            prop_assert_eq!(parsed.len(), rows.len());
            for (p, r) in parsed.iter().zip(&rows) {
                for (n, v) in names.iter().zip(r) {
                    // Text is trimmed by the parser, as programs pad values.
                    prop_assert_eq!(p.get(n), Some(v.trim()), "field {}", n);
                    prop_assert_eq!(p.get(&n.to_ascii_uppercase()), Some(v.trim()));
                }
            }
            Ok(())
        },
    );
}

fn csv_quote(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

#[test]
fn csv_reports_round_trip() {
    let preamble = proptest::collection::vec("[A-Za-z0-9 /:.-]{0,30}", 0..4);
    run(
        "csv round trip",
        cases(1000),
        (preamble, rows_strategy(), any::<bool>()),
        |(pre, (names, rows), crlf)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut doc = String::new();
            for line in &pre {
                // A preamble line must not look like the header.
                let l = line
                    .replace("rowid", "row id")
                    .replace("affcustomid", "acid");
                doc.push_str(&csv_quote(&l));
                doc.push_str(nl);
            }
            doc.push_str("\"rowid\"");
            for n in &names {
                doc.push(',');
                doc.push_str(&csv_quote(n));
            }
            doc.push_str(nl);
            for r in &rows {
                doc.push_str("\"1\"");
                for v in r {
                    doc.push(',');
                    doc.push_str(&csv_quote(v));
                }
                doc.push_str(nl);
            }
            doc.push_str("\"2\"");
            doc.push_str(&",\"\"".repeat(names.len()));
            doc.push_str(nl);
            let (parsed, err) = parse_all(doc.as_bytes(), RowPeriod::Fixed("2024-05".into()));
            prop_assert_eq!(err, None, "{}", doc);
            prop_assert_eq!(parsed.len(), rows.len());
            for (p, r) in parsed.iter().zip(&rows) {
                for (n, v) in names.iter().zip(r) {
                    prop_assert_eq!(p.get(n), Some(v.as_str()));
                }
            }
            Ok(())
        },
    );
}

/// A row of a player whose fields are random or plausible.
fn delta_row() -> impl Strategy<Value = (String, String, Option<String>, String, String)> {
    (
        prop_oneof![
            Just(String::new()),
            Just("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ".to_owned()),
            "[ -~]{0,70}"
        ],
        prop_oneof![Just(String::new()), Just("77".to_owned()), "[ -~]{0,10}"],
        proptest::option::of(prop_oneof![
            Just("GBP".to_owned()),
            Just("eur".to_owned()),
            Just("£".to_owned()),
            "[ -~]{0,4}"
        ]),
        prop_oneof![
            "-?[0-9]{1,6}(\\.[0-9]{1,4})?",
            "[ -~]{0,12}",
            Just("1,234.50".to_owned())
        ],
        prop_oneof![
            Just("2024-05".to_owned()),
            Just("2024-06".to_owned()),
            "[0-9-]{0,10}"
        ],
    )
}

#[test]
fn diff_never_panics() {
    let cfg = DeltaConfig::new(
        Some("totalcommission".into()),
        "2024-06-01T00:00:00Z".parse().unwrap(),
    );
    run(
        "diff of random rows",
        cases(3000),
        proptest::collection::vec(delta_row(), 1..6),
        |rows| {
            let mut snap: Option<Snapshot> = None;
            for (acid, player, currency, total, period) in rows {
                let mut fields = vec![
                    ("affcustomid".to_owned(), acid),
                    ("playerid".to_owned(), player),
                    ("totalcommission".to_owned(), total),
                    ("registrationdate".to_owned(), "05/03/2024".to_owned()),
                ];
                if let Some(c) = currency {
                    fields.push(("currencysymbol".to_owned(), c));
                }
                let row = ReportRow::new(fields, Some(period));
                if let Ok(d) = diff(snap.as_ref(), &row, &cfg) {
                    // The snapshot survives JSON.
                    let json = serde_json::to_string(&d.snapshot).unwrap();
                    let back: Snapshot = serde_json::from_str(&json).unwrap();
                    prop_assert_eq!(&back, &d.snapshot);
                    // Repeating the row emits nothing.
                    let again = diff(Some(&d.snapshot), &row, &cfg).unwrap();
                    prop_assert!(again.events.is_empty());
                    prop_assert!(!again.changed);
                    snap = Some(d.snapshot);
                }
            }
            Ok(())
        },
    );
}

#[test]
fn emitted_values_add_up_to_the_totals() {
    let cfg = DeltaConfig::new(
        Some("totalcommission".into()),
        "2024-06-01T00:00:00Z".parse().unwrap(),
    );
    let step = (0usize..3, -100_000i64..100_000);
    run(
        "delta sums",
        cases(2000),
        proptest::collection::vec(step, 1..30),
        |steps| {
            let mut snap: Option<Snapshot> = None;
            let mut emitted: BTreeMap<String, Amount> = BTreeMap::new();
            let mut last: BTreeMap<String, Amount> = BTreeMap::new();
            let mut ids = std::collections::HashSet::new();
            let mut registrations = 0;
            for (p, cents) in steps {
                let period = format!("2024-0{}", p + 1);
                let total = Amount::from_micros(cents * 10_000);
                let row = ReportRow::new(
                    vec![
                        ("affcustomid".into(), "abcdefghijklmnop".into()),
                        ("playerid".into(), "1".into()),
                        ("totalcommission".into(), total.to_string()),
                    ],
                    Some(period.clone()),
                );
                let d = diff(snap.as_ref(), &row, &cfg).unwrap();
                for e in &d.events {
                    prop_assert!(
                        ids.insert(e.transaction_id.clone().unwrap()),
                        "ids are unique"
                    );
                    if e.source_event == "registration" {
                        registrations += 1;
                        continue;
                    }
                    let v = e.value.unwrap();
                    prop_assert!(!v.is_zero());
                    prop_assert_eq!(e.status == SourceStatus::Reversed, v.is_negative());
                    let sum = emitted.entry(period.clone()).or_default();
                    *sum = sum.saturating_add(v);
                }
                last.insert(period, total);
                snap = Some(d.snapshot);
            }
            prop_assert_eq!(registrations, 1);
            for (period, total) in &last {
                prop_assert_eq!(emitted.get(period).copied().unwrap_or_default(), *total);
            }
            Ok(())
        },
    );
}
