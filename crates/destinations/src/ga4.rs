//! GA4 Measurement Protocol: events built from our conversions, checked
//! against the documented limits before sending (the collect endpoint
//! answers 2xx even to malformed events, so nobody else will), and the
//! classification of answers, including the debug endpoint's
//! `validationMessages` used in test mode.
//!
//! `POST {base}/mp/collect?measurement_id=G-..&api_secret=..` with
//! `{client_id, timestamp_micros?, consent?, events: [{name, params}]}`;
//! one `client_id` per request, so a batch is split per visitor.

use chrono::{DateTime, Utc};
use clicktrail_domain::consent::Consent;
use clicktrail_domain::delivery::OutboundConversion;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::http::by_status;
use crate::kind::{DestinationKind, window_passed};
use crate::mapping::ga4_name_problem;
use crate::outcome::{Classified, ItemOutcome};

pub const MAX_EVENTS: usize = 25;
pub const MAX_PARAMS: usize = 25;
pub const MAX_NAME_CHARS: usize = 40;
pub const MAX_VALUE_CHARS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ga4Event {
    pub name: String,
    pub params: Map<String, Value>,
}

/// One conversion ready for GA4: its visitor, its time and its event.
#[derive(Debug, Clone, PartialEq)]
pub struct Ga4Item {
    pub client_id: String,
    pub timestamp_micros: i64,
    pub consent: Consent,
    pub event: Ga4Event,
}

/// Builds the event for one conversion, or says why it is not sent:
/// `Skipped` / `no_client_id` without a visitor id, `Permanent` /
/// `outside_window` past the 72 hours GA4 lets events be backdated, and
/// `Permanent` / `ga4_limits` when the event breaks the documented limits.
pub fn build_item(c: &OutboundConversion, now: DateTime<Utc>) -> Result<Ga4Item, ItemOutcome> {
    let Some(client_id) = c
        .visitor_id
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
    else {
        return Err(ItemOutcome::skipped(
            "no_client_id",
            "GA4 needs the visitor id as client_id",
        ));
    };
    if window_passed(DestinationKind::Ga4, c, now) {
        return Err(ItemOutcome::permanent(
            "outside_window",
            "GA4 accepts events backdated by at most 72 hours",
        ));
    }
    let mut params = Map::new();
    if let Some(m) = c.money() {
        params.insert("value".into(), json!(m.amount.to_f64()));
        params.insert("currency".into(), json!(m.currency.as_str()));
    }
    params.insert("transaction_id".into(), json!(c.conversion_id));
    // Optional context goes only when it fits the limits, rather than cut.
    if let Some(url) = c
        .page_url
        .as_deref()
        .filter(|u| !u.is_empty() && u.chars().count() <= MAX_VALUE_CHARS)
    {
        params.insert("page_location".into(), json!(url));
    }
    let item = Ga4Item {
        client_id: client_id.to_owned(),
        timestamp_micros: c.occurred_at.min(now).timestamp_micros(),
        consent: c.consent,
        event: Ga4Event {
            name: c.event_name.clone(),
            params,
        },
    };
    check_limits(&build_body(
        &item.client_id,
        item.timestamp_micros,
        item.consent,
        &[&item.event],
    ))
    .map_err(|why| ItemOutcome::permanent("ga4_limits", why))?;
    Ok(item)
}

/// The request body. `consent` goes as `{ad_user_data, ad_personalization}`
/// (`GRANTED` / `DENIED`), each purpose only when known, and not at all when
/// nothing is.
pub fn build_body(
    client_id: &str,
    timestamp_micros: i64,
    consent: Consent,
    events: &[&Ga4Event],
) -> Value {
    let mut body =
        json!({ "client_id": client_id, "timestamp_micros": timestamp_micros, "events": events });
    if let (false, Some(obj)) = (consent.is_unknown(), body.as_object_mut()) {
        let mut c = Map::new();
        for (key, state) in [
            ("ad_user_data", consent.ad_user_data),
            ("ad_personalization", consent.ad_personalization),
        ] {
            if let Some(v) = state.google() {
                c.insert(key.into(), json!(v));
            }
        }
        obj.insert("consent".into(), Value::Object(c));
    }
    body
}

/// Checks a request body against the Measurement Protocol's documented
/// limits: 1 to 25 events; per event a valid, unreserved name and at most
/// 25 params with valid names; string values up to 100 characters.
pub fn check_limits(body: &Value) -> Result<(), String> {
    if body
        .get("client_id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err("client_id is required".into());
    }
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or("events must be a list")?;
    if events.is_empty() || events.len() > MAX_EVENTS {
        return Err(format!(
            "a request carries 1 to {MAX_EVENTS} events, not {}",
            events.len()
        ));
    }
    for e in events {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        if let Some(p) = ga4_name_problem(name, true) {
            return Err(format!("event name {name:?} {p}"));
        }
        let Some(params) = e.get("params").and_then(Value::as_object) else {
            continue;
        };
        if params.len() > MAX_PARAMS {
            return Err(format!(
                "event {name:?} has {} params; at most {MAX_PARAMS}",
                params.len()
            ));
        }
        for (k, v) in params {
            if let Some(p) = ga4_name_problem(k, false) {
                return Err(format!("param name {k:?} of {name:?} {p}"));
            }
            match v {
                Value::String(s) if s.chars().count() > MAX_VALUE_CHARS => {
                    return Err(format!(
                        "param {k:?} of {name:?} is longer than {MAX_VALUE_CHARS} characters"
                    ));
                }
                Value::String(_) | Value::Number(_) | Value::Bool(_) => {}
                Value::Array(_) if k == "items" => {}
                _ => {
                    return Err(format!(
                        "param {k:?} of {name:?} must be a string or a number"
                    ));
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DebugAnswer {
    #[serde(default)]
    validation_messages: Vec<ValidationMessage>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ValidationMessage {
    #[serde(default)]
    field_path: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    validation_code: String,
}

/// Classifies GA4's answer. `debug`: the request went to the validation
/// endpoint, whose `validationMessages` list problems.
pub fn classify(
    status: u16,
    retry_after: Option<std::time::Duration>,
    body: &[u8],
    debug: bool,
) -> Classified {
    let answer = (debug && (200..300).contains(&status))
        .then(|| serde_json::from_slice::<DebugAnswer>(body).ok())
        .flatten();
    if let Some(a) = answer {
        return match a.validation_messages.first() {
            Some(m) => {
                let detail = format!(
                    "{} ({}, at {})",
                    m.description, m.validation_code, m.field_path
                );
                Classified::all(
                    detail.clone(),
                    ItemOutcome::permanent("ga4_validation", detail),
                )
            }
            None => Classified::all(
                "validated: no validation messages",
                ItemOutcome::Delivered { duplicate: false },
            ),
        };
    }
    Classified::all(
        format!("HTTP {status}"),
        by_status(status, retry_after, &format!("HTTP {status}")),
    )
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use clicktrail_domain::Currency;
    use clicktrail_domain::money::Amount;

    use super::*;

    fn conversion() -> OutboundConversion {
        OutboundConversion {
            conversion_id: "cv_ga".into(),
            event_id: "ev_ga".into(),
            event_name: "purchase".into(),
            conversion_action: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            click_at: None,
            value: Some(Amount::parse("10.5").unwrap()),
            currency: Some(Currency::EUR),
            page_url: Some("https://site.example/a".into()),
            referrer: None,
            visitor_id: Some("vis.123".into()),
            client_ip: None,
            user_agent: None,
            ids: Default::default(),
            hashed_email: None,
            hashed_phone: None,
            consent: Consent::all(true),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 13, 0, 0).unwrap()
    }

    #[test]
    fn payload() {
        let it = build_item(&conversion(), now()).unwrap();
        let body = build_body(&it.client_id, it.timestamp_micros, it.consent, &[&it.event]);
        assert_eq!(
            body,
            json!({
                "client_id": "vis.123",
                "timestamp_micros": 1772366400000000i64,
                "consent": {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"},
                "events": [{"name": "purchase", "params": {
                    "value": 10.5, "currency": "EUR", "transaction_id": "cv_ga", "page_location": "https://site.example/a"
                }}]
            })
        );
        // Each purpose as known; no consent at all when nothing is.
        let mut c = conversion();
        c.consent.ad_personalization = clicktrail_domain::consent::ConsentState::Denied;
        let it = build_item(&c, now()).unwrap();
        let body = build_body(&it.client_id, it.timestamp_micros, it.consent, &[&it.event]);
        assert_eq!(
            body["consent"],
            json!({"ad_user_data": "GRANTED", "ad_personalization": "DENIED"})
        );
        c.consent = Consent {
            ad_user_data: clicktrail_domain::consent::ConsentState::Denied,
            ..Consent::UNKNOWN
        };
        let it = build_item(&c, now()).unwrap();
        let body = build_body(&it.client_id, it.timestamp_micros, it.consent, &[&it.event]);
        assert_eq!(body["consent"], json!({"ad_user_data": "DENIED"}));
        c.consent = Consent::UNKNOWN;
        let it = build_item(&c, now()).unwrap();
        let body = build_body(&it.client_id, it.timestamp_micros, it.consent, &[&it.event]);
        assert!(body.get("consent").is_none(), "{body}");

        let mut c = conversion();
        c.page_url = Some(format!("https://site.example/{}", "x".repeat(200)));
        assert!(
            build_item(&c, now())
                .unwrap()
                .event
                .params
                .get("page_location")
                .is_none()
        );
    }

    #[test]
    fn refusals() {
        let mut c = conversion();
        c.visitor_id = None;
        assert_eq!(
            build_item(&c, now()).unwrap_err().reason(),
            Some("no_client_id")
        );
        let c = conversion();
        assert_eq!(
            build_item(&c, now() + chrono::Duration::hours(80))
                .unwrap_err()
                .reason(),
            Some("outside_window")
        );
        let mut c = conversion();
        c.event_name = "first_open".into();
        let e = build_item(&c, now()).unwrap_err();
        assert_eq!(e.reason(), Some("ga4_limits"));
        assert!(e.detail().unwrap().contains("reserves"));
        let mut c = conversion();
        c.conversion_id = "x".repeat(101);
        assert_eq!(
            build_item(&c, now()).unwrap_err().reason(),
            Some("ga4_limits")
        );
    }

    #[test]
    fn limits() {
        let ev = |name: &str, params: Value| json!({"name": name, "params": params});
        let body = |events: Vec<Value>| json!({"client_id": "c", "events": events});
        assert!(check_limits(&body(vec![ev("purchase", json!({"value": 1}))])).is_ok());
        assert!(check_limits(&body(vec![])).is_err());
        assert!(check_limits(&body(vec![ev("a", json!({})); 26])).is_err());
        assert!(check_limits(&body(vec![ev("a", json!({})); 25])).is_ok());
        assert!(check_limits(&body(vec![ev(&"a".repeat(41), json!({}))])).is_err());
        assert!(check_limits(&body(vec![ev("has-dash", json!({}))])).is_err());
        assert!(check_limits(&body(vec![ev("9lives", json!({}))])).is_err());
        let many: Map<String, Value> = (0..26).map(|i| (format!("p{i}"), json!(i))).collect();
        assert!(check_limits(&body(vec![ev("a", Value::Object(many))])).is_err());
        assert!(check_limits(&body(vec![ev("a", json!({"p": "x".repeat(101)}))])).is_err());
        assert!(check_limits(&body(vec![ev("a", json!({"p": "x".repeat(100)}))])).is_ok());
        assert!(check_limits(&body(vec![ev("a", json!({"google_x": 1}))])).is_err());
        assert!(check_limits(&json!({"events": [ev("a", json!({}))]})).is_err());
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(204, None, b"", false).outcome(0),
            ItemOutcome::Delivered { duplicate: false }
        );
        let dbg = json!({"validationMessages": [{"fieldPath": "events", "description": "Event at index: [0] has invalid name [_badEvent].", "validationCode": "NAME_INVALID"}]});
        let c = classify(200, None, dbg.to_string().as_bytes(), true);
        assert_eq!(c.outcome(0).reason(), Some("ga4_validation"));
        assert_eq!(
            classify(200, None, br#"{"validationMessages": []}"#, true).outcome(0),
            ItemOutcome::Delivered { duplicate: false }
        );
        assert!(matches!(
            classify(503, None, b"", false).outcome(0),
            ItemOutcome::Retry { .. }
        ));
        assert_eq!(
            classify(400, None, b"", false).outcome(0).reason(),
            Some("http_400")
        );
    }
}
