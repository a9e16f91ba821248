//! Google Ads click conversions: `ClickConversion`s built from our
//! conversions, the upload request, and the classification of Google's
//! answers, including partial failures that name the failing rows.
//!
//! `POST {base}/v26/customers/{customer_id}:uploadClickConversions` with
//! `{"conversions": [...], "partialFailure": true, "validateOnly"?}` and the
//! headers `Authorization: Bearer`, `developer-token`, `login-customer-id`.
//! JSON names are the protobuf fields in lowerCamelCase; the test suite
//! checks what we build against Google's own descriptors (`proto/`).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clicktrail_domain::consent::ConsentState;
use clicktrail_domain::delivery::OutboundConversion;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hashing::checked_digest;
use crate::http::by_status;
use crate::kind::{DestinationKind, window_passed};
use crate::meta::valid_ip;
use crate::outcome::{Classified, ItemOutcome, Verdict};

/// One `ClickConversion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClickConversion {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gclid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gbraid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wbraid: Option<String>,
    pub conversion_action: String,
    /// `yyyy-mm-dd hh:mm:ss+00:00`.
    pub conversion_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency_code: Option<String>,
    /// Our conversion id: Google de-duplicates on it.
    pub order_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_identifiers: Vec<UserIdentifier>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consent: Option<Consent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_ip_address: Option<String>,
}

/// One identifier per `UserIdentifier` (a protobuf oneof).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserIdentifier {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hashed_phone_number: Option<String>,
}

/// `Consent`: each purpose `GRANTED` or `DENIED`, absent when unknown.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Consent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad_user_data: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ad_personalization: Option<&'static str>,
}

impl Consent {
    /// The conversion's consent, or `None` (no field) when nothing is known.
    pub fn of(c: &clicktrail_domain::consent::Consent) -> Option<Consent> {
        (!c.is_unknown()).then(|| Consent {
            ad_user_data: c.ad_user_data.google(),
            ad_personalization: c.ad_personalization.google(),
        })
    }
}

/// `conversionDateTime` in UTC with its explicit zone.
pub fn date_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S+00:00").to_string()
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Builds the `ClickConversion` for one conversion, or says why it is not
/// sent: `Skipped` / `no_google_click_id` without gclid, gbraid or wbraid;
/// `Permanent` without a conversion action or past the 90-day click window.
///
/// Exactly one click id goes (gclid first, then gbraid, then wbraid: Google
/// refuses two). The click's consent goes as `consent` (`adUserData`,
/// `adPersonalization`) when known; when ad user data was denied, the
/// hashed identifiers and the IP are left out too.
pub fn build_conversion(
    c: &OutboundConversion,
    now: DateTime<Utc>,
) -> Result<ClickConversion, ItemOutcome> {
    let gclid = non_empty(c.ids.gclid.as_deref());
    let gbraid = non_empty(c.ids.gbraid.as_deref());
    let wbraid = non_empty(c.ids.wbraid.as_deref());
    let (gclid, gbraid, wbraid) = match (gclid, gbraid, wbraid) {
        (Some(g), _, _) => (Some(g), None, None),
        (None, Some(b), _) => (None, Some(b), None),
        (None, None, Some(w)) => (None, None, Some(w)),
        (None, None, None) => {
            return Err(ItemOutcome::skipped(
                "no_google_click_id",
                "the attributed click has no gclid, gbraid or wbraid",
            ));
        }
    };
    let Some(action) = non_empty(c.conversion_action.as_deref()) else {
        return Err(ItemOutcome::permanent(
            "no_conversion_action",
            "no conversion action is mapped for this event",
        ));
    };
    if window_passed(DestinationKind::GoogleAds, c, now) {
        return Err(ItemOutcome::permanent(
            "outside_window",
            "Google accepts conversions up to 90 days after the click",
        ));
    }
    let (conversion_value, currency_code) = match c.money() {
        Some(m) => (
            Some(m.amount.to_f64()),
            Some(m.currency.as_str().to_owned()),
        ),
        None => (None, None),
    };
    let denied = c.consent.ad_user_data == ConsentState::Denied;
    let mut user_identifiers = Vec::new();
    if !denied {
        if let Some(h) = checked_digest(c.hashed_email.as_deref()) {
            user_identifiers.push(UserIdentifier {
                hashed_email: Some(h),
                hashed_phone_number: None,
            });
        }
        if let Some(h) = checked_digest(c.hashed_phone.as_deref()) {
            user_identifiers.push(UserIdentifier {
                hashed_email: None,
                hashed_phone_number: Some(h),
            });
        }
    }
    Ok(ClickConversion {
        gclid,
        gbraid,
        wbraid,
        conversion_action: action,
        conversion_date_time: date_time(c.occurred_at.min(now)),
        conversion_value,
        currency_code,
        order_id: c.conversion_id.clone(),
        user_identifiers,
        consent: Consent::of(&c.consent),
        user_ip_address: if denied {
            None
        } else {
            valid_ip(c.client_ip.as_deref())
        },
    })
}

/// The `UploadClickConversionsRequest` body (the customer id travels in
/// the URL).
pub fn build_body(conversions: &[&ClickConversion], validate_only: bool) -> Value {
    let mut body = json!({ "conversions": conversions, "partialFailure": true });
    if let (true, Some(obj)) = (validate_only, body.as_object_mut()) {
        obj.insert("validateOnly".into(), json!(true));
    }
    body
}

// ---- classification ------------------------------------------------------

/// `ConversionUploadError` codes meaning "already uploaded": a resend of
/// the same conversion, so it counts as delivered.
pub const DUPLICATE_CODES: &[&str] = &[
    "CLICK_CONVERSION_ALREADY_EXISTS",
    "DUPLICATE_CLICK_CONVERSION_IN_REQUEST",
    "ORDER_ID_ALREADY_IN_USE",
    "DUPLICATE_ORDER_ID",
];

/// Codes that clear by themselves within hours (Google says to retry
/// after about 6 hours).
pub const RETRY_LATER_CODES: &[&str] = &["TOO_RECENT_CONVERSION_ACTION", "TOO_RECENT_EVENT"];

/// How long to wait on [`RETRY_LATER_CODES`].
pub const RETRY_LATER_DELAY: Duration = Duration::from_secs(6 * 3600);

/// `ConversionUploadError` codes about the account rather than the row.
pub const ACCOUNT_CODES: &[&str] = &[
    "UNAUTHORIZED_CUSTOMER",
    "CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS",
];

/// Row errors named in our documentation; like every code not listed
/// above, they are permanent. Listed so a test can check the names against
/// the API's enum.
pub const PERMANENT_NAMED_CODES: &[&str] = &[
    "UNPARSEABLE_GCLID",
    "CLICK_NOT_FOUND",
    "EXPIRED_EVENT",
    "CONVERSION_PRECEDES_EVENT",
    "GBRAID_WBRAID_BOTH_SET",
    "INVALID_CUSTOMER_FOR_CLICK",
    "NO_CONVERSION_ACTION_FOUND",
];

/// `QuotaError` codes: all retryable except a refused project.
pub const QUOTA_RETRY_CODES: &[&str] = &[
    "RESOURCE_EXHAUSTED",
    "RESOURCE_TEMPORARILY_EXHAUSTED",
    "EXCESSIVE_SHORT_TERM_QUERY_RESOURCE_CONSUMPTION",
    "EXCESSIVE_LONG_TERM_QUERY_RESOURCE_CONSUMPTION",
];

/// The outcome of one `GoogleAdsError`, from its `errorCode` (category,
/// e.g. `conversionUploadError`, and enum value).
pub fn error_outcome(
    category: &str,
    code: &str,
    message: &str,
    retry_after: Option<Duration>,
) -> ItemOutcome {
    let reason = code.to_ascii_lowercase();
    let detail = format!("{message} ({code})");
    match category {
        "conversionUploadError" => {
            if DUPLICATE_CODES.contains(&code) {
                ItemOutcome::Delivered { duplicate: true }
            } else if RETRY_LATER_CODES.contains(&code) {
                ItemOutcome::retry(Some(RETRY_LATER_DELAY), &reason, detail)
            } else if code == "TOO_MANY_CONVERSIONS_IN_REQUEST" {
                ItemOutcome::retry(retry_after, &reason, detail)
            } else if ACCOUNT_CODES.contains(&code) {
                ItemOutcome::auth(&reason, detail)
            } else {
                ItemOutcome::permanent(&reason, detail)
            }
        }
        "authenticationError" | "authorizationError" => ItemOutcome::auth(&reason, detail),
        "quotaError" if QUOTA_RETRY_CODES.contains(&code) => {
            ItemOutcome::retry(retry_after, "quota_exhausted", detail)
        }
        "quotaError" => ItemOutcome::auth(&reason, detail),
        "internalError" => ItemOutcome::retry(retry_after, "internal_error", detail),
        _ => ItemOutcome::permanent(&reason, detail),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    #[serde(default)]
    code: i64,
    #[serde(default)]
    message: String,
    #[serde(default)]
    details: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UploadResponse {
    #[serde(default)]
    partial_failure_error: Option<Status>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: Status,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GoogleAdsError {
    #[serde(default)]
    error_code: BTreeMap<String, Value>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    details: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(default)]
    field_path_elements: Vec<FieldPathElement>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldPathElement {
    #[serde(default)]
    field_name: String,
    #[serde(default)]
    index: Option<i64>,
}

/// One error found in a `google.rpc.Status`'s `GoogleAdsFailure` details.
struct FoundError {
    /// Index into `conversions`, when the error names a row.
    row: Option<usize>,
    outcome: ItemOutcome,
    message: String,
}

/// `"30s"` / `"1.5s"` (protobuf `Duration` in JSON).
fn parse_proto_duration(v: &Value) -> Option<Duration> {
    let s = v.as_str()?.strip_suffix('s')?;
    let secs: f64 = s.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn errors_of(status: &Status, retry_after: Option<Duration>) -> Vec<FoundError> {
    let mut found = Vec::new();
    for d in &status.details {
        let is_failure = d
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with(".errors.GoogleAdsFailure"));
        let Some(errors) = d
            .get("errors")
            .and_then(Value::as_array)
            .filter(|_| is_failure)
        else {
            continue;
        };
        for e in errors {
            let Ok(e) = serde_json::from_value::<GoogleAdsError>(e.clone()) else {
                continue;
            };
            let Some((category, code)) = e.error_code.iter().next() else {
                continue;
            };
            let code = code.as_str().unwrap_or("UNKNOWN");
            let hint = e
                .details
                .as_ref()
                .and_then(|d| d.pointer("/quotaErrorDetails/retryDelay"))
                .and_then(parse_proto_duration)
                .or(retry_after);
            let row = e.location.as_ref().and_then(|l| {
                l.field_path_elements
                    .iter()
                    .find(|p| p.field_name == "conversions")
                    // proto3 may leave out a zero index.
                    .map(|p| p.index.unwrap_or(0))
                    .and_then(|i| usize::try_from(i).ok())
            });
            found.push(FoundError {
                row,
                outcome: error_outcome(category, code, &e.message, hint),
                message: e.message,
            });
        }
    }
    found
}

fn worst(a: ItemOutcome, b: ItemOutcome) -> ItemOutcome {
    if b.severity() > a.severity() { b } else { a }
}

/// Classifies Google's answer to an upload of `n` conversions.
pub fn classify(status: u16, retry_after: Option<Duration>, body: &[u8], n: usize) -> Classified {
    if (200..300).contains(&status) {
        let Ok(resp) = serde_json::from_slice::<UploadResponse>(body) else {
            return Classified::all(
                "uploaded (unreadable answer)",
                ItemOutcome::Delivered { duplicate: false },
            );
        };
        let Some(pf) = resp
            .partial_failure_error
            .filter(|s| s.code != 0 || !s.details.is_empty())
        else {
            return Classified::all(
                format!("{n} conversion(s) uploaded"),
                ItemOutcome::Delivered { duplicate: false },
            );
        };
        let found = errors_of(&pf, retry_after);
        if found.is_empty() {
            // Google said something failed without saying what: try again.
            return Classified::all(
                format!("partial failure without details: {}", pf.message),
                ItemOutcome::retry(retry_after, "unexpected_response", pf.message),
            );
        }
        let mut items = vec![ItemOutcome::Delivered { duplicate: false }; n];
        for f in &found {
            match f.row {
                Some(i) if i < n => items[i] = worst(items[i].clone(), f.outcome.clone()),
                Some(_) => {}
                None => {
                    for it in items.iter_mut() {
                        *it = worst(it.clone(), f.outcome.clone());
                    }
                }
            }
        }
        let failed = items
            .iter()
            .filter(|o| !matches!(o, ItemOutcome::Delivered { .. }))
            .count();
        let first = found
            .first()
            .map(|f| f.message.as_str())
            .unwrap_or_default();
        return Classified {
            message: format!(
                "partial failure: {failed} of {n} conversion(s) refused; first: {first}"
            ),
            verdict: Verdict::PerItem(items),
            bisect: false,
        };
    }

    let Ok(ErrorEnvelope { error }) = serde_json::from_slice::<ErrorEnvelope>(body) else {
        return Classified::all(
            format!("HTTP {status}"),
            by_status(status, retry_after, "no Google error in the answer"),
        );
    };
    let found = errors_of(&error, retry_after);
    let message = match found.first() {
        Some(f) => format!("{} ({})", error.message, f.message),
        None => error.message.clone(),
    };
    let fallback = match status {
        401 => ItemOutcome::auth("unauthenticated", error.message.clone()),
        403 => ItemOutcome::auth("permission_denied", error.message.clone()),
        _ => by_status(status, retry_after, &error.message),
    };
    if found.is_empty() {
        return Classified::all(message, fallback);
    }
    if status >= 500 {
        return Classified::all(
            message,
            ItemOutcome::retry(retry_after, "server_error", error.message),
        );
    }
    let overall = found
        .iter()
        .filter(|f| f.row.is_none())
        .fold(None::<ItemOutcome>, |acc, f| {
            Some(match acc {
                None => f.outcome.clone(),
                Some(a) => worst(a, f.outcome.clone()),
            })
        });
    if found.iter().all(|f| f.row.is_none()) {
        return Classified::all(message, overall.unwrap_or(fallback));
    }
    // A refused request uploads nothing: rows it names carry their error,
    // the others go again.
    let mut items = vec![
        overall.unwrap_or_else(|| ItemOutcome::retry(
            None,
            "request_rejected",
            "another row made the request fail"
        ));
        n
    ];
    let mut named = vec![false; n];
    for f in found.iter().filter(|f| f.row.is_some_and(|i| i < n)) {
        let i = f.row.unwrap_or(0);
        items[i] = if named[i] {
            worst(items[i].clone(), f.outcome.clone())
        } else {
            f.outcome.clone()
        };
        named[i] = true;
    }
    Classified {
        message,
        verdict: Verdict::PerItem(items),
        bisect: false,
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use clicktrail_domain::Currency;
    use clicktrail_domain::delivery::AdIdentifiers;
    use clicktrail_domain::money::Amount;

    use super::*;
    use crate::hashing::sha256_hex;

    pub(crate) fn conversion() -> OutboundConversion {
        OutboundConversion {
            conversion_id: "cv_42".into(),
            event_id: "ev_42".into(),
            event_name: "Purchase".into(),
            conversion_action: Some("customers/1234567890/conversionActions/222".into()),
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 5).unwrap(),
            click_at: Some(Utc.with_ymd_and_hms(2026, 2, 28, 9, 0, 0).unwrap()),
            value: Some(Amount::parse("39.99").unwrap()),
            currency: Some(Currency::GBP),
            page_url: None,
            referrer: None,
            visitor_id: Some("v1".into()),
            client_ip: Some("2001:db8::1".into()),
            user_agent: None,
            ids: AdIdentifiers {
                gclid: Some("EAIaIQobChMI".into()),
                gbraid: Some("0AAAAA".into()),
                ..Default::default()
            },
            hashed_email: Some(sha256_hex("a@b.fr")),
            hashed_phone: Some(sha256_hex("+33612345678")),
            consent: clicktrail_domain::consent::Consent::all(true),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    #[test]
    fn payload() {
        let cc = build_conversion(&conversion(), now()).unwrap();
        let body = build_body(&[&cc], false);
        assert_eq!(
            body,
            json!({
                "conversions": [{
                    "gclid": "EAIaIQobChMI",
                    "conversionAction": "customers/1234567890/conversionActions/222",
                    "conversionDateTime": "2026-03-01 12:30:05+00:00",
                    "conversionValue": 39.99,
                    "currencyCode": "GBP",
                    "orderId": "cv_42",
                    "userIdentifiers": [
                        {"hashedEmail": sha256_hex("a@b.fr")},
                        {"hashedPhoneNumber": sha256_hex("+33612345678")}
                    ],
                    "consent": {"adUserData": "GRANTED", "adPersonalization": "GRANTED"},
                    "userIpAddress": "2001:db8::1"
                }],
                "partialFailure": true
            })
        );
        assert_eq!(build_body(&[&cc], true)["validateOnly"], true);
    }

    #[test]
    fn click_ids_and_consent() {
        let mut c = conversion();
        c.ids.gclid = None;
        c.ids.wbraid = Some("wb".into());
        let cc = build_conversion(&c, now()).unwrap();
        assert_eq!(
            (cc.gclid, cc.gbraid.as_deref(), cc.wbraid),
            (None, Some("0AAAAA"), None)
        );
        c.ids = AdIdentifiers {
            wbraid: Some("wb".into()),
            ..Default::default()
        };
        assert_eq!(
            build_conversion(&c, now()).unwrap().wbraid.as_deref(),
            Some("wb")
        );
        c.ids = AdIdentifiers {
            fbclid: Some("x".into()),
            gclid: Some("  ".into()),
            ..Default::default()
        };
        let err = build_conversion(&c, now()).unwrap_err();
        assert_eq!(
            err,
            ItemOutcome::skipped(
                "no_google_click_id",
                "the attributed click has no gclid, gbraid or wbraid"
            )
        );

        let mut c = conversion();
        c.consent = clicktrail_domain::consent::Consent::all(false);
        let cc = build_conversion(&c, now()).unwrap();
        assert!(cc.user_identifiers.is_empty());
        assert_eq!(cc.user_ip_address, None);
        assert_eq!(
            serde_json::to_value(cc.consent).unwrap(),
            json!({"adUserData": "DENIED", "adPersonalization": "DENIED"})
        );

        // Ad user data granted, personalisation denied: identifiers go.
        let mut c = conversion();
        c.consent.ad_personalization = ConsentState::Denied;
        let cc = build_conversion(&c, now()).unwrap();
        assert_eq!(cc.user_identifiers.len(), 2);
        assert_eq!(
            serde_json::to_value(cc.consent).unwrap(),
            json!({"adUserData": "GRANTED", "adPersonalization": "DENIED"})
        );

        // Unknown: no consent field at all (as before consent was stored).
        let mut c = conversion();
        c.consent = clicktrail_domain::consent::Consent::UNKNOWN;
        let cc = build_conversion(&c, now()).unwrap();
        assert_eq!(cc.consent, None);
        assert!(cc.user_ip_address.is_some());

        let mut c = conversion();
        c.conversion_action = None;
        assert_eq!(
            build_conversion(&c, now()).unwrap_err().reason(),
            Some("no_conversion_action")
        );
        let c = conversion();
        let late = c.click_at.unwrap() + chrono::Duration::days(91);
        assert_eq!(
            build_conversion(&c, late).unwrap_err().reason(),
            Some("outside_window")
        );
    }

    fn failure(errors: Value) -> Value {
        json!({
            "results": [{}, {"gclid": "ok", "conversionAction": "customers/1/conversionActions/2", "conversionDateTime": "2026-03-01 12:00:00+00:00"}, {}],
            "partialFailureError": {
                "code": 3,
                "message": "The click identifier could not be decoded., at conversions[0].gclid",
                "details": [{
                    "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                    "errors": errors,
                    "requestId": "Xy12"
                }]
            }
        })
    }

    fn row_error(i: i64, code: &str) -> Value {
        json!({
            "errorCode": {"conversionUploadError": code},
            "message": format!("{code} happened"),
            "trigger": {"stringValue": "abc"},
            "location": {"fieldPathElements": [{"fieldName": "conversions", "index": i}, {"fieldName": "gclid"}]}
        })
    }

    #[test]
    fn partial_failure_names_rows() {
        let body = failure(json!([
            row_error(0, "UNPARSEABLE_GCLID"),
            row_error(2, "CLICK_CONVERSION_ALREADY_EXISTS")
        ]));
        let c = classify(200, None, body.to_string().as_bytes(), 4);
        assert_eq!(c.outcome(0).reason(), Some("unparseable_gclid"));
        assert!(matches!(c.outcome(0), ItemOutcome::Permanent { .. }));
        assert_eq!(c.outcome(1), ItemOutcome::Delivered { duplicate: false });
        assert_eq!(c.outcome(2), ItemOutcome::Delivered { duplicate: true });
        assert_eq!(c.outcome(3), ItemOutcome::Delivered { duplicate: false });
        assert!(c.message.contains("1 of 4"), "{}", c.message);
    }

    #[test]
    fn code_table() {
        let cases = [
            ("UNPARSEABLE_GCLID", "permanent"),
            ("CLICK_NOT_FOUND", "permanent"),
            ("EXPIRED_EVENT", "permanent"),
            ("CONVERSION_PRECEDES_EVENT", "permanent"),
            ("CLICK_CONVERSION_ALREADY_EXISTS", "duplicate"),
            ("ORDER_ID_ALREADY_IN_USE", "duplicate"),
            ("TOO_RECENT_CONVERSION_ACTION", "retry6h"),
            ("TOO_RECENT_EVENT", "retry6h"),
            ("CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS", "auth"),
            ("SOMETHING_NEW", "permanent"),
        ];
        for (code, want) in cases {
            let o = error_outcome("conversionUploadError", code, "m", None);
            let got = match o {
                ItemOutcome::Permanent { .. } => "permanent",
                ItemOutcome::Delivered { duplicate: true } => "duplicate",
                ItemOutcome::Retry { after: Some(d), .. } if d == RETRY_LATER_DELAY => "retry6h",
                ItemOutcome::AuthFailed { .. } => "auth",
                _ => "other",
            };
            assert_eq!(got, want, "{code}");
        }
        assert!(matches!(
            error_outcome("internalError", "INTERNAL_ERROR", "m", None),
            ItemOutcome::Retry { .. }
        ));
        assert!(matches!(
            error_outcome("quotaError", "RESOURCE_EXHAUSTED", "m", None),
            ItemOutcome::Retry { .. }
        ));
        assert!(matches!(
            error_outcome("authenticationError", "OAUTH_TOKEN_EXPIRED", "m", None),
            ItemOutcome::AuthFailed { .. }
        ));
        assert!(matches!(
            error_outcome("fieldError", "REQUIRED", "m", None),
            ItemOutcome::Permanent { .. }
        ));
    }

    #[test]
    fn request_level_errors() {
        let unauth = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"authenticationError": "OAUTH_TOKEN_EXPIRED"}, "message": "The OAuth token has expired."}], "requestId": "r"}]}});
        let c = classify(401, None, unauth.to_string().as_bytes(), 2);
        assert_eq!(c.outcome(1).reason(), Some("oauth_token_expired"));
        assert!(matches!(c.outcome(0), ItemOutcome::AuthFailed { .. }));

        let quota = json!({"error": {"code": 429, "message": "Resource has been exhausted", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}, "message": "Too many requests.",
                            "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": "Requests", "retryDelay": "30s"}}}]}]}});
        let c = classify(429, None, quota.to_string().as_bytes(), 1);
        assert_eq!(
            c.outcome(0),
            ItemOutcome::retry(
                Some(Duration::from_secs(30)),
                "quota_exhausted",
                "Too many requests. (RESOURCE_TEMPORARILY_EXHAUSTED)"
            )
        );

        let denied = json!({"error": {"code": 403, "message": "The caller does not have permission", "status": "PERMISSION_DENIED",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"authorizationError": "DEVELOPER_TOKEN_NOT_APPROVED"}, "message": "The developer token is only approved for use with test accounts."}]}]}});
        assert_eq!(
            classify(403, None, denied.to_string().as_bytes(), 1)
                .outcome(0)
                .reason(),
            Some("developer_token_not_approved")
        );

        let invalid = json!({"error": {"code": 400, "message": "Request contains an invalid argument.", "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
                "errors": [{"errorCode": {"fieldError": "REQUIRED"}, "message": "The required field was not present.",
                            "location": {"fieldPathElements": [{"fieldName": "conversions", "index": 1}, {"fieldName": "conversion_action"}]}}]}]}});
        let c = classify(400, None, invalid.to_string().as_bytes(), 3);
        assert_eq!(c.outcome(1).reason(), Some("required"));
        assert_eq!(c.outcome(0).reason(), Some("request_rejected"));
        assert!(matches!(c.outcome(2), ItemOutcome::Retry { .. }));

        assert!(matches!(
            classify(503, None, b"upstream connect error", 1).outcome(0),
            ItemOutcome::Retry { .. }
        ));
        assert!(matches!(classify(500, None, json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}).to_string().as_bytes(), 1).outcome(0), ItemOutcome::Retry { .. }));
        assert_eq!(
            classify(200, None, b"{}", 2).outcome(1),
            ItemOutcome::Delivered { duplicate: false }
        );
        assert_eq!(
            classify(200, None, br#"{"results":[{},{}],"jobId":"123"}"#, 2).outcome(0),
            ItemOutcome::Delivered { duplicate: false }
        );
    }
}
