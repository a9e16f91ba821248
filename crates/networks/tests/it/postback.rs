//! Postback parsing, table-driven: every alias group, precedence, macros,
//! statuses, timestamps, bodies, limits and error codes.

use chrono::{TimeZone, Utc};
use clicktrail_domain::conversion::{SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::money::{Amount, Currency};
use clicktrail_networks::postback::{
    CLICK_ID_ALIASES, CURRENCY_ALIASES, EVENT_ALIASES, MAX_BODY_BYTES, MAX_PARAMS, MAX_VALUE_LEN,
    PostbackBody, PostbackError, PostbackOptions, STATUS_ALIASES, TIMESTAMP_ALIASES,
    TRANSACTION_ID_ALIASES, VALUE_ALIASES, parse_json, parse_pairs, parse_request, parse_timestamp,
};
use serde_json::json;

const OPTS: PostbackOptions<'static> = PostbackOptions {
    subid_param: Some("c"),
    default_event: "commission",
};

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn parse(list: &[(&str, &str)]) -> SourceEvent {
    parse_pairs(&pairs(list), &OPTS).unwrap_or_else(|e| panic!("{list:?}: {e}"))
}

fn parse_err(list: &[(&str, &str)]) -> PostbackError {
    match parse_pairs(&pairs(list), &OPTS) {
        Ok(ev) => panic!("{list:?} parsed: {ev:?}"),
        Err(e) => e,
    }
}

#[test]
fn every_click_id_alias_is_read() {
    for alias in CLICK_ID_ALIASES {
        let ev = parse(&[(alias, "ABCDEFGHijklmnop1234")]);
        assert_eq!(
            ev.click_id.as_deref(),
            Some("ABCDEFGHijklmnop1234"),
            "{alias}"
        );
    }
    // The integration's own parameter, and the Income Access custom id.
    assert_eq!(
        parse(&[("c", "own-click-id-123456")]).click_id.as_deref(),
        Some("own-click-id-123456")
    );
    assert_eq!(
        parse(&[("affcustomid", "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ")])
            .click_id
            .as_deref(),
        Some("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ")
    );
}

#[test]
fn names_match_case_insensitively_ignoring_separators() {
    for name in [
        "Click-ID", "CLICKID", "click_id", "Click_Id", "cLiCk-Id", "SUB-ID", "Aff_Sub",
    ] {
        assert!(
            parse(&[(name, "abcdefghijklmnop")]).click_id.is_some(),
            "{name}"
        );
    }
    let ev = parse(&[
        ("Transaction-ID", "T1"),
        ("PAYOUT", "3"),
        ("Currency_Code", "usd"),
        ("Event_Name", "Sale"),
    ]);
    assert_eq!(ev.transaction_id.as_deref(), Some("T1"));
    assert_eq!(ev.value.map(|d| d.to_string()).as_deref(), Some("3"));
    assert_eq!(ev.currency, Some(Currency::USD));
    assert_eq!(ev.source_event, "Sale");
}

#[test]
fn click_id_precedence() {
    // Own subid parameter first.
    assert_eq!(
        parse(&[("click_id", "from-click-id"), ("c", "from-own")])
            .click_id
            .as_deref(),
        Some("from-own")
    );
    // Then the alias order: click_id before subid before tid.
    assert_eq!(
        parse(&[
            ("tid", "from-tid"),
            ("subid", "from-subid"),
            ("click_id", "from-click-id")
        ])
        .click_id
        .as_deref(),
        Some("from-click-id")
    );
    assert_eq!(
        parse(&[("tid", "from-tid"), ("subid", "from-subid")])
            .click_id
            .as_deref(),
        Some("from-subid")
    );
    // An unreplaced macro in a higher alias falls through to the next.
    assert_eq!(
        parse(&[("c", "{c}"), ("subid", "real-one")])
            .click_id
            .as_deref(),
        Some("real-one")
    );
    // Same name twice: the first (query before body) wins.
    assert_eq!(
        parse(&[("click_id", "first"), ("click_id", "second")])
            .click_id
            .as_deref(),
        Some("first")
    );
    // Without an own parameter, aliases still work.
    let opts = PostbackOptions {
        subid_param: None,
        default_event: "sale",
    };
    assert_eq!(
        parse_pairs(&pairs(&[("sid", "x-sid")]), &opts).map(|e| e.click_id),
        Ok(Some("x-sid".to_owned()))
    );
    // An own parameter outside the alias list.
    let opts = PostbackOptions {
        subid_param: Some("subId1"),
        default_event: "sale",
    };
    let ev = parse_pairs(
        &pairs(&[("clickid", "generic"), ("SubId1", "impact")]),
        &opts,
    )
    .expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("impact"));
}

#[test]
fn missing_click_id_is_not_an_error() {
    let ev = parse(&[("payout", "5")]);
    assert_eq!(ev.click_id, None);
    let ev = parse(&[
        ("click_id", ""),
        ("subid", "  "),
        ("tid", "null"),
        ("sid", "{sid}"),
    ]);
    assert_eq!(ev.click_id, None);
    let ev = parse(&[]);
    assert_eq!(ev.click_id, None);
    assert_eq!(ev.source_event, "commission");
    assert_eq!(ev.kind, SourceKind::Postback);
    assert_eq!(ev.status, SourceStatus::Approved);
    assert_eq!(ev.raw.value(), json!({}));
}

#[test]
fn unreplaced_macros_count_as_absent() {
    for m in [
        "{clickid}",
        "[subid]",
        "%subid%",
        "#subid#",
        "{{sub1}}",
        "!!!clickRef!!!",
        "!!afftrack!!",
        "${epi}",
        "[[[subid]]]",
        "#s2#",
        "{SubId1}",
        "undefined",
        "NULL",
        "None",
    ] {
        let ev = parse(&[
            ("click_id", m),
            ("value", m),
            ("currency", m),
            ("transaction_id", m),
            ("status", m),
            ("timestamp", m),
            ("event", m),
        ]);
        assert_eq!(ev.click_id, None, "{m}");
        assert_eq!(ev.value, None, "{m}");
        assert_eq!(ev.currency, None, "{m}");
        assert_eq!(ev.transaction_id, None, "{m}");
        assert_eq!(ev.status, SourceStatus::Approved, "{m}");
        assert_eq!(ev.occurred_at, None, "{m}");
        assert_eq!(ev.source_event, "commission", "{m}");
        // The raw payload keeps what was sent.
        assert_eq!(ev.raw.value()["click_id"], json!(m));
    }
}

#[test]
fn value_aliases_and_formats() {
    for alias in VALUE_ALIASES {
        assert_eq!(
            parse(&[(alias, "2.55")])
                .value
                .map(|d| d.to_string())
                .as_deref(),
            Some("2.55"),
            "{alias}"
        );
    }
    let v = |s: &str| parse(&[("value", s)]).value.map(|d| d.to_string());
    assert_eq!(v("-0.18").as_deref(), Some("-0.18"));
    assert_eq!(v("1,234.50").as_deref(), Some("1234.5"));
    assert_eq!(v("12,5").as_deref(), Some("12.5"));
    assert_eq!(v(" 7 ").as_deref(), Some("7"));
    // Precedence: value before commission before payout before amount.
    let ev = parse(&[("amount", "100"), ("payout", "10"), ("commission", "5")]);
    assert_eq!(ev.value.map(|d| d.to_string()).as_deref(), Some("5"));
    for bad in ["abc", "1e9", "NaN", "99999999999999999", "1.2.3"] {
        let e = parse_err(&[("payout", bad)]);
        assert_eq!(e.code(), "invalid_value", "{bad}");
        assert_eq!(e.field(), Some("payout"));
    }
}

#[test]
fn currency_aliases() {
    for alias in CURRENCY_ALIASES {
        assert_eq!(
            parse(&[(alias, "gbp")]).currency,
            Some(Currency::GBP),
            "{alias}"
        );
    }
    assert_eq!(parse(&[("currency", "€")]).currency, Some(Currency::EUR));
    for bad in ["EURO", "E1R", "dollars"] {
        assert_eq!(
            parse_err(&[("currency", bad)]).code(),
            "invalid_currency",
            "{bad}"
        );
    }
}

#[test]
fn transaction_id_aliases() {
    for alias in TRANSACTION_ID_ALIASES {
        assert_eq!(
            parse(&[(alias, " TX-9 ")]).transaction_id.as_deref(),
            Some("TX-9"),
            "{alias}"
        );
    }
    assert_eq!(
        parse(&[("order_id", "O"), ("txid", "X"), ("transaction_id", "T")])
            .transaction_id
            .as_deref(),
        Some("T")
    );
}

#[test]
fn event_aliases_and_default() {
    for alias in EVENT_ALIASES {
        assert_eq!(
            parse(&[(alias, "registration")]).source_event,
            "registration",
            "{alias}"
        );
    }
    assert_eq!(
        parse(&[("goal", "deposit"), ("event", "lead")]).source_event,
        "lead"
    );
    assert_eq!(parse(&[("click_id", "x")]).source_event, "commission");
    assert_eq!(
        parse_err(&[("event", &"e".repeat(101))]).code(),
        "field_too_long"
    );
}

#[test]
fn statuses() {
    for alias in STATUS_ALIASES {
        assert_eq!(
            parse(&[(alias, "pending")]).status,
            SourceStatus::Pending,
            "{alias}"
        );
    }
    let s = |v: &str| parse(&[("status", v)]).status;
    assert_eq!(s("approved"), SourceStatus::Approved);
    assert_eq!(s("APPROVED"), SourceStatus::Approved);
    assert_eq!(s("1"), SourceStatus::Approved);
    assert_eq!(s("declined"), SourceStatus::Rejected);
    assert_eq!(s("rejected"), SourceStatus::Rejected);
    assert_eq!(s("reversed"), SourceStatus::Reversed);
    assert_eq!(s("Chargeback"), SourceStatus::Reversed);
    assert_eq!(s("refunded"), SourceStatus::Reversed);
    assert_eq!(s(""), SourceStatus::Approved);
    let e = parse_err(&[("status", "banana")]);
    assert_eq!(e.code(), "invalid_status");
    assert_eq!(e.field(), Some("status"));
}

#[test]
fn timestamps() {
    let at = |y, mo, d, h, mi, s| {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .expect("valid date")
    };
    let cases = [
        ("1700000000", at(2023, 11, 14, 22, 13, 20)),
        ("1700000000000", at(2023, 11, 14, 22, 13, 20)),
        ("2024-05-01T10:00:00Z", at(2024, 5, 1, 10, 0, 0)),
        ("2024-05-01T10:00:00+02:00", at(2024, 5, 1, 8, 0, 0)),
        ("2024-05-01T10:00:00 02:00", at(2024, 5, 1, 8, 0, 0)),
        ("2024-05-01T10:00:00-0500", at(2024, 5, 1, 15, 0, 0)),
        (
            "2024-05-01T10:00:00.250Z",
            at(2024, 5, 1, 10, 0, 0) + chrono::Duration::milliseconds(250),
        ),
        ("2024-05-01T10:00:00", at(2024, 5, 1, 10, 0, 0)),
        ("2024-05-01 10:00:00", at(2024, 5, 1, 10, 0, 0)),
        ("2024-05-01 10:00", at(2024, 5, 1, 10, 0, 0)),
        ("2024-05-01", at(2024, 5, 1, 0, 0, 0)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_timestamp(text), Some(want), "{text}");
        assert_eq!(
            parse(&[("timestamp", text)]).occurred_at,
            Some(want),
            "{text}"
        );
    }
    assert_eq!(
        parse_timestamp("1700000000.5"),
        Some(at(2023, 11, 14, 22, 13, 20) + chrono::Duration::milliseconds(500))
    );
    for alias in TIMESTAMP_ALIASES {
        assert_eq!(
            parse(&[(alias, "1700000000")]).occurred_at,
            Some(at(2023, 11, 14, 22, 13, 20)),
            "{alias}"
        );
    }
    for bad in [
        "yesterday",
        "99",
        "-5",
        "1700000000000000000",
        "2024-13-01",
        "2024-05-01T25:00:00",
        "01/05/2024",
        "1.2.3",
    ] {
        assert_eq!(parse_timestamp(bad), None, "{bad}");
        let e = parse_err(&[("date", bad)]);
        assert_eq!(e.code(), "invalid_timestamp", "{bad}");
        assert_eq!(e.field(), Some("date"));
    }
}

#[test]
fn raw_keeps_every_parameter() {
    let ev = parse(&[("click_id", "a"), ("x", "1"), ("x", "2"), ("x", "3")]);
    assert_eq!(
        ev.raw.value(),
        json!({"click_id": "a", "x": ["1", "2", "3"]})
    );
    assert_eq!(ev.adjusts, None);
}

#[test]
fn query_string_and_form_body() {
    let opts = PostbackOptions {
        subid_param: Some("tid"),
        default_event: "sale",
    };
    let ev = parse_request(
        Some("tid=abcdefghijklmnop&payout=9.99&currency=USD&txid=R1&ts=2024-05-01T10%3A00%3A00%2B02%3A00"),
        PostbackBody::Empty,
        &opts,
    )
    .expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("abcdefghijklmnop"));
    assert_eq!(ev.value.map(|d| d.to_string()).as_deref(), Some("9.99"));
    assert_eq!(
        ev.occurred_at,
        Some(
            Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0)
                .single()
                .expect("date")
        )
    );

    // An unescaped + decodes to a space, and the offset is repaired.
    let ev = parse_request(
        Some("ts=2024-05-01T10:00:00+02:00"),
        PostbackBody::Empty,
        &opts,
    )
    .expect("parses");
    assert_eq!(
        ev.occurred_at,
        Some(
            Utc.with_ymd_and_hms(2024, 5, 1, 8, 0, 0)
                .single()
                .expect("date")
        )
    );

    // The form body is read after the query: the query wins.
    let body = b"tid=from-body&value=3&event=lead";
    let ev = parse_request(
        Some("tid=from-query"),
        PostbackBody::detect(Some("application/x-www-form-urlencoded"), body),
        &opts,
    )
    .expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("from-query"));
    assert_eq!(ev.source_event, "lead");
    assert_eq!(
        ev.raw.value(),
        json!({"tid": ["from-query", "from-body"], "value": "3", "event": "lead"})
    );

    // No content type: a form body is still read.
    let ev = parse_request(
        None,
        PostbackBody::detect(None, b"clickid=abc&sum=4"),
        &opts,
    )
    .expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("abc"));
}

#[test]
fn json_body() {
    let body = json!({
        "clickid": "top-level",
        "payout": 12.5,
        "currency": "eur",
        "approved": true,
        "conversion": {"subid": "nested", "transaction_id": 12345, "status": "pending"},
        "items": [1, 2, 3],
        "note": null,
    })
    .to_string();
    let ev = parse_json(&[], body.as_bytes(), &OPTS).expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("top-level"));
    assert_eq!(ev.value.map(|d| d.to_string()).as_deref(), Some("12.5"));
    assert_eq!(ev.currency, Some(Currency::EUR));
    // Nested one level: numbers become strings.
    assert_eq!(ev.transaction_id.as_deref(), Some("12345"));
    assert_eq!(ev.status, SourceStatus::Pending);
    assert_eq!(ev.raw.value()["conversion"]["subid"], json!("nested"));
    assert_eq!(ev.raw.value()["items"], json!([1, 2, 3]));

    // Top level beats nested, query beats body.
    let body = json!({"data": {"click_id": "nested"}, "subid": "top"}).to_string();
    assert_eq!(
        parse_json(&[], body.as_bytes(), &OPTS)
            .expect("parses")
            .click_id
            .as_deref(),
        Some("nested")
    );
    let body = json!({"data": {"subid": "nested"}, "subid": "top"}).to_string();
    assert_eq!(
        parse_json(&[], body.as_bytes(), &OPTS)
            .expect("parses")
            .click_id
            .as_deref(),
        Some("top")
    );
    let ev = parse_json(&pairs(&[("subid", "query")]), body.as_bytes(), &OPTS).expect("parses");
    assert_eq!(ev.click_id.as_deref(), Some("query"));
    assert_eq!(ev.raw.value()["subid"], json!(["query", "top"]));

    // Exponent numbers are read as floats.
    let ev = parse_json(&[], br#"{"value": 1.5e2}"#, &OPTS).expect("parses");
    assert_eq!(ev.value.map(|d| d.to_string()).as_deref(), Some("150"));
    // Deeper nesting is kept raw but not searched.
    let ev = parse_json(&[], br#"{"a": {"b": {"click_id": "deep"}}}"#, &OPTS).expect("parses");
    assert_eq!(ev.click_id, None);

    // Through parse_request with content-type detection.
    let body = br#"{"click_id": "json-id", "value": "1"}"#;
    for ct in [
        Some("application/json"),
        Some("text/plain;charset=UTF-8"),
        None,
    ] {
        let ev = parse_request(None, PostbackBody::detect(ct, body), &OPTS).expect("parses");
        assert_eq!(ev.click_id.as_deref(), Some("json-id"), "{ct:?}");
    }
}

#[test]
fn json_errors() {
    for bad in [
        &b"[1,2]"[..],
        b"\"text\"",
        b"{",
        b"{\"a\": }",
        b"\xff\xfe",
        b"null",
        b"12",
    ] {
        let e = parse_json(&[], bad, &OPTS).expect_err("invalid");
        assert_eq!(
            e.code(),
            "invalid_json",
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    let e = parse_request(
        None,
        PostbackBody::detect(Some("application/json"), b"{nope"),
        &OPTS,
    )
    .expect_err("invalid");
    assert_eq!(e.code(), "invalid_json");
}

#[test]
fn limits() {
    let many: Vec<(String, String)> = (0..=MAX_PARAMS)
        .map(|i| (format!("p{i}"), "v".to_owned()))
        .collect();
    assert_eq!(
        parse_pairs(&many, &OPTS).expect_err("too many").code(),
        "too_many_parameters"
    );
    assert!(parse_pairs(&many[..MAX_PARAMS], &OPTS).is_ok());

    let obj: serde_json::Map<String, serde_json::Value> = (0..=MAX_PARAMS)
        .map(|i| (format!("p{i}"), json!(i)))
        .collect();
    let body = serde_json::Value::Object(obj).to_string();
    assert_eq!(
        parse_json(&[], body.as_bytes(), &OPTS)
            .expect_err("too many")
            .code(),
        "too_many_parameters"
    );
    // Nested keys count too.
    let inner: serde_json::Map<String, serde_json::Value> = (0..=MAX_PARAMS)
        .map(|i| (format!("p{i}"), json!("x")))
        .collect();
    let body = json!({"data": inner}).to_string();
    assert_eq!(
        parse_json(&[], body.as_bytes(), &OPTS)
            .expect_err("too many")
            .code(),
        "too_many_parameters"
    );

    let long_name = "n".repeat(101);
    assert_eq!(parse_err(&[(&long_name, "v")]).code(), "field_too_long");
    let long_value = "v".repeat(MAX_VALUE_LEN + 1);
    let e = parse_err(&[("note", &long_value)]);
    assert_eq!(e.code(), "field_too_long");
    assert_eq!(e.field(), Some("note"));

    let huge = vec![b' '; MAX_BODY_BYTES + 1];
    assert_eq!(
        parse_json(&[], &huge, &OPTS).expect_err("too large").code(),
        "payload_too_large"
    );
    let huge_form = "a=b&".repeat(MAX_BODY_BYTES / 4 + 1);
    assert_eq!(
        parse_request(None, PostbackBody::Form(huge_form.as_bytes()), &OPTS)
            .expect_err("too large")
            .code(),
        "payload_too_large"
    );
}

#[test]
fn error_codes_are_stable_snake_case() {
    let errors = [
        PostbackError::TooManyParameters { max: 1 },
        PostbackError::FieldTooLong {
            field: "x".into(),
            max: 1,
        },
        PostbackError::PayloadTooLarge { max: 1 },
        PostbackError::InvalidJson("x".into()),
        PostbackError::InvalidValue {
            field: "x".into(),
            value: "y".into(),
        },
        PostbackError::InvalidCurrency {
            field: "x".into(),
            value: "y".into(),
        },
        PostbackError::InvalidTimestamp {
            field: "x".into(),
            value: "y".into(),
        },
        PostbackError::InvalidStatus {
            field: "x".into(),
            value: "y".into(),
        },
    ];
    let codes: Vec<&str> = errors.iter().map(PostbackError::code).collect();
    assert_eq!(
        codes,
        [
            "too_many_parameters",
            "field_too_long",
            "payload_too_large",
            "invalid_json",
            "invalid_value",
            "invalid_currency",
            "invalid_timestamp",
            "invalid_status"
        ]
    );
    for e in &errors {
        assert!(!e.to_string().is_empty());
    }
}

#[test]
fn gala_partners_payload_example() {
    // The seed's conversion payload, as a JSON body: affcustomid is the click
    // id, currencysymbol the currency.
    let body = json!({
        "netrevenue": "2.55", "affcustomid": "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ", "activedays": "1",
        "revsharecommission": "1.02", "rowid": "1", "currencysymbol": "GBP", "totalcommission": "1.02",
        "prod1commission": "-0.18", "bannerid": "1195", "clicks": "0"
    })
    .to_string();
    let ev = parse_json(&[], body.as_bytes(), &OPTS).expect("parses");
    assert_eq!(
        ev.click_id.as_deref(),
        Some("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ")
    );
    assert_eq!(ev.currency, Some(Currency::GBP));
    assert_eq!(ev.source_event, "commission");
}

#[test]
fn a_negative_amount_is_a_reversal_of_its_transaction() {
    let ev = parse(&[
        ("c", "ABCDEFGHijklmnop1234"),
        ("txid", "T-9"),
        ("payout", "-5000"),
    ]);
    assert_eq!(ev.status, SourceStatus::Reversed);
    assert_eq!(
        ev.adjusts.as_deref(),
        Some("T-9"),
        "a partial adjustment of T-9"
    );
    assert_eq!(ev.value, Some(Amount::parse("-5000").unwrap()));
    // Without a transaction id it reverses nothing: the conversion log
    // refuses it (the domain's `adjustment_target` is empty).
    let ev = parse(&[("c", "ABCDEFGHijklmnop1234"), ("payout", "-5")]);
    assert_eq!(ev.status, SourceStatus::Reversed);
    assert_eq!(ev.adjusts, None);
    // A positive amount and an explicit reversal keep their meaning.
    let ev = parse(&[("txid", "T-9"), ("payout", "5")]);
    assert_eq!((ev.status, ev.adjusts), (SourceStatus::Approved, None));
    let ev = parse(&[("txid", "T-9"), ("payout", "-5"), ("status", "reversed")]);
    assert_eq!((ev.status, ev.adjusts), (SourceStatus::Reversed, None));
}
