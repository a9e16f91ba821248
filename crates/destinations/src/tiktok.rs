//! TikTok Events API 2.0: events built from our conversions, the request,
//! and the classification of TikTok's answers, which report errors inside
//! HTTP 200 with `code != 0`.
//!
//! `POST {base}/open_api/v1.3/event/track/`, header `Access-Token`, body
//! `{"event_source": "web", "event_source_id": <pixel code>,
//! "test_event_code"?, "data": [event...]}`.

use chrono::{DateTime, Utc};
use clicktrail_domain::delivery::OutboundConversion;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hashing::{checked_digest, sha256_hex};
use crate::http::by_status;
use crate::meta::valid_ip;
use crate::outcome::{Classified, ItemOutcome, Verdict};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TiktokEvent {
    pub event: String,
    /// Unix seconds.
    pub event_time: i64,
    pub event_id: String,
    pub user: TiktokUser,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub page: Option<TiktokPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<TiktokProperties>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TiktokUser {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttclid: Option<String>,
    /// The `_ttp` cookie.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttp: Option<String>,
    /// SHA-256 of the normalised email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// SHA-256 of the phone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// SHA-256 of our visitor id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TiktokPage {
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TiktokProperties {
    pub value: f64,
    pub currency: String,
    /// Our conversion id.
    pub order_id: String,
}

fn non_empty(v: Option<&str>) -> Option<String> {
    v.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Builds the event for one conversion. TikTok needs nothing we might
/// lack, so every conversion can go (its window being unverified, the
/// platform is left to judge the age).
pub fn build_event(c: &OutboundConversion, now: DateTime<Utc>) -> TiktokEvent {
    let properties = c.money().map(|m| TiktokProperties {
        value: m.amount.to_f64(),
        currency: m.currency.as_str().to_owned(),
        order_id: c.conversion_id.clone(),
    });
    TiktokEvent {
        event: c.event_name.clone(),
        event_time: c.occurred_at.min(now).timestamp(),
        event_id: c.event_id.clone(),
        user: TiktokUser {
            ttclid: non_empty(c.ids.ttclid.as_deref()),
            ttp: non_empty(c.ids.ttp.as_deref()),
            email: checked_digest(c.hashed_email.as_deref()),
            phone: checked_digest(c.hashed_phone.as_deref()),
            external_id: c
                .visitor_id
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(sha256_hex),
            ip: valid_ip(c.client_ip.as_deref()),
            user_agent: non_empty(c.user_agent.as_deref()),
        },
        page: non_empty(c.page_url.as_deref()).map(|url| TiktokPage {
            url,
            referrer: non_empty(c.referrer.as_deref()),
        }),
        properties,
    }
}

pub fn build_body(
    pixel_code: &str,
    events: &[&TiktokEvent],
    test_event_code: Option<&str>,
) -> Value {
    let mut body = json!({ "event_source": "web", "event_source_id": pixel_code, "data": events });
    if let (Some(code), Some(obj)) = (test_event_code, body.as_object_mut()) {
        obj.insert("test_event_code".into(), json!(code));
    }
    body
}

/// Codes of an invalid, expired or revoked access token (unverified: taken
/// from TikTok's Business API code list as third parties document it).
pub const AUTH_CODES: &[i64] = &[40102, 40104, 40105, 40106];

#[derive(Debug, Deserialize)]
struct Answer {
    code: i64,
    #[serde(default)]
    message: String,
}

/// Classifies TikTok's answer to one request.
pub fn classify(status: u16, retry_after: Option<std::time::Duration>, body: &[u8]) -> Classified {
    let parsed = serde_json::from_slice::<Answer>(body).ok();
    if !(200..300).contains(&status) {
        let msg = parsed.as_ref().map_or_else(
            || format!("HTTP {status}"),
            |a| format!("{} (code {})", a.message, a.code),
        );
        return Classified::all(msg.clone(), by_status(status, retry_after, &msg));
    }
    let Some(a) = parsed else {
        return Classified::all(
            "HTTP 200 without a TikTok answer",
            ItemOutcome::retry(
                retry_after,
                "unexpected_response",
                "HTTP 200 without a code",
            ),
        );
    };
    let detail = format!("{} (code {})", a.message, a.code);
    let outcome = match a.code {
        0 => {
            return Classified::all(
                format!("OK (code 0): {}", a.message),
                ItemOutcome::Delivered { duplicate: false },
            );
        }
        40100 => ItemOutcome::retry(retry_after, "throttled", detail.clone()),
        40001 => ItemOutcome::permanent("no_permission", detail.clone()),
        40002 => {
            return Classified {
                message: detail.clone(),
                verdict: Verdict::All(ItemOutcome::permanent("invalid_parameter", detail)),
                bisect: true,
            };
        }
        c if AUTH_CODES.contains(&c) => ItemOutcome::auth("access_token_invalid", detail.clone()),
        // 5xxxx: TikTok's own failures.
        50000..=59999 => ItemOutcome::retry(retry_after, "server_error", detail.clone()),
        c => ItemOutcome::permanent(&format!("tiktok_error_{c}"), detail.clone()),
    };
    Classified::all(detail, outcome)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use clicktrail_domain::Currency;
    use clicktrail_domain::delivery::AdIdentifiers;
    use clicktrail_domain::money::Amount;

    use super::*;

    fn conversion() -> OutboundConversion {
        OutboundConversion {
            conversion_id: "cv_7".into(),
            event_id: "ev_7".into(),
            event_name: "CompleteRegistration".into(),
            conversion_action: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            click_at: None,
            value: Some(Amount::parse("25").unwrap()),
            currency: Some(Currency::USD),
            page_url: Some("https://site.example/p".into()),
            referrer: Some("https://www.tiktok.com/".into()),
            visitor_id: Some("v9".into()),
            client_ip: Some("198.51.100.4".into()),
            user_agent: Some("Mozilla/5.0 (iPhone)".into()),
            ids: AdIdentifiers {
                ttclid: Some("E.C.P.abc".into()),
                ttp: Some("2fGhx".into()),
                ..Default::default()
            },
            hashed_email: Some(sha256_hex("a@b.fr")),
            hashed_phone: None,
            consent: clicktrail_domain::consent::Consent::UNKNOWN,
        }
    }

    #[test]
    fn payload() {
        let ev = build_event(
            &conversion(),
            Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap(),
        );
        let body = build_body("CPIX123", &[&ev], Some("TEST999"));
        assert_eq!(
            body,
            json!({
                "event_source": "web",
                "event_source_id": "CPIX123",
                "test_event_code": "TEST999",
                "data": [{
                    "event": "CompleteRegistration",
                    "event_time": 1772366400,
                    "event_id": "ev_7",
                    "user": {
                        "ttclid": "E.C.P.abc",
                        "ttp": "2fGhx",
                        "email": sha256_hex("a@b.fr"),
                        "external_id": sha256_hex("v9"),
                        "ip": "198.51.100.4",
                        "user_agent": "Mozilla/5.0 (iPhone)"
                    },
                    "page": {"url": "https://site.example/p", "referrer": "https://www.tiktok.com/"},
                    "properties": {"value": 25.0, "currency": "USD", "order_id": "cv_7"}
                }]
            })
        );
        let mut c = conversion();
        c.value = None;
        c.page_url = None;
        let ev = build_event(&c, Utc::now());
        assert!(ev.properties.is_none() && ev.page.is_none());
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(u16, Value, &str, bool)> = vec![
            (
                200,
                json!({"code": 0, "message": "OK", "request_id": "2026", "data": {}}),
                "delivered",
                false,
            ),
            (
                200,
                json!({"code": 40100, "message": "Too many requests", "request_id": "r", "data": {}}),
                "throttled",
                false,
            ),
            (
                200,
                json!({"code": 40001, "message": "No permission to operate pixel", "data": {}}),
                "no_permission",
                false,
            ),
            (
                200,
                json!({"code": 40002, "message": "event_time: Invalid value", "data": {}}),
                "invalid_parameter",
                true,
            ),
            (
                200,
                json!({"code": 40105, "message": "Access token is incorrect or has been revoked.", "data": {}}),
                "access_token_invalid",
                false,
            ),
            (
                200,
                json!({"code": 51000, "message": "Internal error"}),
                "server_error",
                false,
            ),
            (
                200,
                json!({"code": 40900, "message": "something else"}),
                "tiktok_error_40900",
                false,
            ),
            (200, json!("not an object"), "unexpected_response", false),
            (
                500,
                json!({"code": 50000, "message": "System error"}),
                "server_error",
                false,
            ),
            (429, json!({}), "throttled", false),
        ];
        for (status, body, want, bisect) in cases {
            let c = classify(status, None, body.to_string().as_bytes());
            let got = c.outcome(0).reason().unwrap_or("delivered").to_owned();
            assert_eq!((got.as_str(), c.bisect), (want, bisect), "{status} {body}");
        }
        assert!(matches!(
            classify(200, None, br#"{"code": 40105, "message": "x"}"#).outcome(0),
            ItemOutcome::AuthFailed { .. }
        ));
    }
}
