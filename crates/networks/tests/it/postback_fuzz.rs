//! Property-based fuzzing of the postback parser: arbitrary parameters,
//! arbitrary JSON and arbitrary bytes never panic, and what parses keeps its
//! invariants. Each property counts its inputs; run with `--nocapture` to
//! see the totals.

use std::sync::atomic::{AtomicUsize, Ordering};

use clicktrail_networks::postback::{
    CLICK_ID_ALIASES, MAX_EVENT_LEN, PostbackBody, PostbackOptions, TIMESTAMP_ALIASES,
    VALUE_ALIASES, is_present, parse_json, parse_pairs, parse_request, parse_timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::Value;

const CASES: u32 = 3000;

fn opts() -> PostbackOptions<'static> {
    PostbackOptions {
        subid_param: Some("c"),
        default_event: "commission",
    }
}

/// Names: mostly real aliases (so the interesting paths run), some noise.
fn name() -> impl Strategy<Value = String> {
    let known: Vec<&'static str> = CLICK_ID_ALIASES
        .iter()
        .chain(VALUE_ALIASES)
        .chain(TIMESTAMP_ALIASES)
        .chain(&[
            "currency",
            "status",
            "event",
            "transaction_id",
            "c",
            "Click-ID",
            "PAYOUT",
        ])
        .copied()
        .collect();
    prop_oneof![
        3 => proptest::sample::select(known).prop_map(str::to_owned),
        1 => "[a-zA-Z_\\-]{0,12}",
        1 => any::<String>(),
    ]
}

/// Values: macros, numbers, dates, words, noise.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        "[{\\[%#!$<]{1,3}[a-zA-Z_]{1,8}[}\\]%#!$>]{1,3}",
        "-?[0-9]{1,12}(\\.[0-9]{1,8})?",
        "[0-9,.]{1,10}",
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}([T ][0-9]{2}:[0-9]{2}(:[0-9]{2})?)?([+ Z-][0-9]{2}:?[0-9]{2})?",
        proptest::sample::select(vec![
            "approved",
            "pending",
            "declined",
            "chargeback",
            "EUR",
            "gbp",
            "£",
            "null",
            ""
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        value().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((name(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

fn check_event(ev: &clicktrail_domain::conversion::SourceEvent) {
    if let Some(c) = &ev.click_id {
        assert!(
            is_present(c),
            "click id {c:?} should have counted as absent"
        );
        assert_eq!(c.trim(), c);
    }
    if let Some(t) = &ev.transaction_id {
        assert!(is_present(t));
    }
    assert!(!ev.source_event.trim().is_empty());
    assert!(ev.source_event.len() <= MAX_EVENT_LEN);
    assert!(ev.raw.value().is_object());
}

/// Runs a property over `CASES` generated inputs with proptest's runner
/// (shrinking failures), prints how many inputs ran, and returns the count.
fn run<S: Strategy>(
    label: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> usize {
    let ran = AtomicUsize::new(0);
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        ..ProptestConfig::default()
    });
    let result = runner.run(&strategy, |v| {
        ran.fetch_add(1, Ordering::Relaxed);
        test(v)
    });
    if let Err(e) = result {
        panic!("{label}: {e}");
    }
    let n = ran.load(Ordering::Relaxed);
    eprintln!("postback fuzz {label}: {n} inputs, no panic");
    assert!(n >= CASES as usize, "{label}: only {n} inputs ran");
    n
}

#[test]
fn arbitrary_pairs_never_panic() {
    let parsed = AtomicUsize::new(0);
    let with_click = AtomicUsize::new(0);
    let lists = prop_oneof![
        proptest::collection::vec((name(), value()), 0..8),
        proptest::collection::vec((name(), value()), 0..120)
    ];
    run("pairs", lists, |list| {
        let first = parse_pairs(&list, &opts());
        let second = parse_pairs(&list, &opts());
        prop_assert_eq!(&first, &second, "parsing is deterministic");
        match &first {
            Ok(ev) => {
                check_event(ev);
                parsed.fetch_add(1, Ordering::Relaxed);
                if ev.click_id.is_some() {
                    with_click.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(e) => prop_assert!(!e.code().is_empty()),
        }
        if list.len() > 100 {
            prop_assert!(first.is_err());
        }
        Ok(())
    });
    let (parsed, with_click) = (parsed.into_inner(), with_click.into_inner());
    eprintln!(
        "postback fuzz pairs: {parsed} parsed, {with_click} with a click id, the rest refused with a code"
    );
    // The generator must reach the success paths, not only errors.
    assert!(parsed > 0 && with_click > 0);
}

#[test]
fn arbitrary_json_never_panics() {
    let parsed = AtomicUsize::new(0);
    run(
        "json",
        (
            json_value(),
            proptest::collection::vec((name(), value()), 0..5),
        ),
        |(body, query)| {
            let text = body.to_string();
            match parse_json(&query, text.as_bytes(), &opts()) {
                Ok(ev) => {
                    check_event(&ev);
                    prop_assert!(body.is_object());
                    parsed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => prop_assert!(!e.code().is_empty()),
            }
            Ok(())
        },
    );
    let parsed = parsed.into_inner();
    eprintln!("postback fuzz json: {parsed} parsed");
    assert!(parsed > 0);
}

#[test]
fn arbitrary_bytes_never_panic() {
    let ct = proptest::option::of(proptest::sample::select(vec![
        "application/json",
        "application/x-www-form-urlencoded",
        "text/plain",
        "x/y",
    ]));
    run(
        "bytes",
        (
            proptest::option::of(any::<String>()),
            proptest::collection::vec(any::<u8>(), 0..400),
            ct,
        ),
        |(query, body, ct)| {
            if let Ok(ev) =
                parse_request(query.as_deref(), PostbackBody::detect(ct, &body), &opts())
            {
                check_event(&ev);
            }
            Ok(())
        },
    );
}

#[test]
fn arbitrary_timestamps_never_panic() {
    run(
        "timestamps",
        prop_oneof![value(), any::<String>(), "[0-9.]{0,25}"],
        |s| {
            if let Some(t) = parse_timestamp(&s) {
                let year = chrono::Datelike::year(&t);
                prop_assert!((2000..=2100).contains(&year));
            }
            Ok(())
        },
    );
}
