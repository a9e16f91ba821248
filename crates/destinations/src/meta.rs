//! Meta Conversions API: events built from our conversions, the request,
//! and the classification of Meta's answers.
//!
//! `POST {base}/v26.0/{pixel_id}/events?access_token=...` with
//! `{"data": [event...], "test_event_code"?}`. With the destination's
//! `limited_data_use` setting, each event also carries Meta's data
//! processing options from the conversion's consent
//! ([`apply_limited_data_use`]). Errors come as HTTP 400 with
//! `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`.

use chrono::{DateTime, Utc};
use clicktrail_domain::consent::{Consent, ConsentState};
use clicktrail_domain::delivery::OutboundConversion;
use clicktrail_domain::mapping::normalise_name;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::hashing::{checked_digest, sha256_hex};
use crate::http::by_status;
use crate::kind::{DestinationKind, window_passed};
use crate::outcome::{Classified, ItemOutcome};

/// One event of the `data` array.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetaEvent {
    pub event_name: String,
    /// Unix seconds.
    pub event_time: i64,
    pub event_id: String,
    /// `website` when the browser context (user agent and page) is known,
    /// else `other`: Meta refuses website events without them.
    pub action_source: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_source_url: Option<String>,
    pub user_data: MetaUserData,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub custom_data: Option<MetaCustomData>,
    /// `["LDU"]` (Limited Data Use) or `[]` (explicitly not); absent unless
    /// the destination asks for it (see [`apply_limited_data_use`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_processing_options: Option<Vec<&'static str>>,
    /// With LDU: 0, Meta locates the event itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_processing_options_country: Option<u32>,
    /// With LDU: 0, Meta locates the event itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_processing_options_state: Option<u32>,
}

/// Meta's data processing options from the conversion's consent, for a
/// destination whose `limited_data_use` is on: a purpose denied makes the
/// event Limited Data Use (`["LDU"]`, country and state 0 so that Meta
/// geolocates it); every purpose granted says explicitly not (`[]`);
/// otherwise (nothing or not everything known) nothing is added, as
/// without the setting.
pub fn apply_limited_data_use(ev: &mut MetaEvent, consent: &Consent) {
    let states = [consent.ad_user_data, consent.ad_personalization];
    if states.contains(&ConsentState::Denied) {
        ev.data_processing_options = Some(vec!["LDU"]);
        ev.data_processing_options_country = Some(0);
        ev.data_processing_options_state = Some(0);
    } else if states.iter().all(|s| *s == ConsentState::Granted) {
        ev.data_processing_options = Some(Vec::new());
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetaUserData {
    /// SHA-256 of the normalised email.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub em: Option<Vec<String>>,
    /// SHA-256 of the phone, digits only with country code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ph: Option<Vec<String>>,
    /// SHA-256 of our visitor id (Meta recommends hashing it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_ip_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbc: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fbp: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetaCustomData {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Our conversion id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub order_id: Option<String>,
}

/// A client address Meta (or TikTok) will accept: a literal IPv4 / IPv6.
pub(crate) fn valid_ip(ip: Option<&str>) -> Option<String> {
    let ip = ip?.trim();
    ip.parse::<std::net::IpAddr>().ok().map(|a| a.to_string())
}

/// `fb.<subdomain index>.<creation ms>.<fbclid>` (a fifth segment is allowed
/// on newer cookies). The fbclid is kept exactly as received.
pub(crate) fn valid_fbc(fbc: &str) -> bool {
    let parts: Vec<&str> = fbc.split('.').collect();
    (parts.len() == 4 || parts.len() == 5)
        && parts[0] == "fb"
        && !parts[1].is_empty()
        && parts[1].bytes().all(|b| b.is_ascii_digit())
        && !parts[2].is_empty()
        && parts[2].bytes().all(|b| b.is_ascii_digit())
        && !parts[3].is_empty()
}

/// The `fbc` to send: the cookie when well formed, else one built from the
/// landing URL's fbclid with the click time (subdomain index 1).
pub(crate) fn fbc_for(c: &OutboundConversion) -> Option<String> {
    if let Some(f) = c.ids.fbc.as_deref().map(str::trim).filter(|f| valid_fbc(f)) {
        return Some(f.to_owned());
    }
    let fbclid = c
        .ids
        .fbclid
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty() && !f.contains(char::is_whitespace))?;
    let at = c.click_at.unwrap_or(c.occurred_at);
    Some(format!("fb.1.{}.{fbclid}", at.timestamp_millis()))
}

/// Builds the event for one conversion, or says why it is not sent:
/// `Skipped` for a purchase without value or currency (Meta rejects it,
/// subcode 2804009) and for one with no customer information at all
/// (`no_user_data`: subcode 2804050), `Permanent` when older than Meta's
/// 7-day window (an old event would sink the whole request, subcode
/// 2804003).
pub fn build_event(c: &OutboundConversion, now: DateTime<Utc>) -> Result<MetaEvent, ItemOutcome> {
    if window_passed(DestinationKind::MetaCapi, c, now) {
        return Err(ItemOutcome::permanent(
            "outside_window",
            "Meta accepts events up to 7 days old",
        ));
    }
    let is_purchase = normalise_name(&c.event_name) == "purchase";
    if is_purchase && c.value.is_none() {
        return Err(ItemOutcome::skipped(
            "purchase_without_value",
            "Meta rejects a Purchase without a value",
        ));
    }
    if is_purchase && c.currency.is_none() {
        return Err(ItemOutcome::skipped(
            "purchase_without_currency",
            "Meta rejects a Purchase without a currency",
        ));
    }
    // A value means nothing without its currency.
    let (value, currency) = match c.money() {
        Some(m) => (
            Some(m.amount.to_f64()),
            Some(m.currency.as_str().to_owned()),
        ),
        None => (None, None),
    };
    let user_agent = c
        .user_agent
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let url = c
        .page_url
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned);
    let action_source = if user_agent.is_some() && url.is_some() {
        "website"
    } else {
        "other"
    };
    let user_data = MetaUserData {
        em: checked_digest(c.hashed_email.as_deref()).map(|h| vec![h]),
        ph: checked_digest(c.hashed_phone.as_deref()).map(|h| vec![h]),
        external_id: c
            .visitor_id
            .as_deref()
            .filter(|v| !v.is_empty())
            .map(|v| vec![sha256_hex(v)]),
        client_ip_address: valid_ip(c.client_ip.as_deref()),
        client_user_agent: user_agent,
        fbc: fbc_for(c),
        fbp: c
            .ids
            .fbp
            .as_deref()
            .map(str::trim)
            .filter(|f| f.starts_with("fb."))
            .map(str::to_owned),
    };
    if user_data == MetaUserData::default() {
        // Meta refuses such an event (subcode 2804050): a conversion of a
        // visit stored without consent, or without any identifier.
        return Err(ItemOutcome::skipped(
            "no_user_data",
            "Meta needs at least one customer information parameter (hashed email or phone, visitor id, address, user agent, fbc or fbp)",
        ));
    }
    Ok(MetaEvent {
        event_name: c.event_name.clone(),
        event_time: c.occurred_at.min(now).timestamp(),
        event_id: c.event_id.clone(),
        action_source,
        event_source_url: url,
        user_data,
        custom_data: Some(MetaCustomData {
            value,
            currency,
            order_id: Some(c.conversion_id.clone()),
        }),
        data_processing_options: None,
        data_processing_options_country: None,
        data_processing_options_state: None,
    })
}

/// The request body for some events.
pub fn build_body(events: &[&MetaEvent], test_event_code: Option<&str>) -> Value {
    let mut body = json!({ "data": events });
    if let (Some(code), Some(obj)) = (test_event_code, body.as_object_mut()) {
        obj.insert("test_event_code".into(), json!(code));
    }
    body
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
struct GraphError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<i64>,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    is_transient: Option<bool>,
    #[serde(default)]
    error_user_msg: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Success {
    events_received: Option<u64>,
}

/// Classifies Meta's answer to one request.
pub fn classify(status: u16, retry_after: Option<std::time::Duration>, body: &[u8]) -> Classified {
    if (200..300).contains(&status) {
        let n = serde_json::from_slice::<Success>(body)
            .ok()
            .and_then(|s| s.events_received);
        let msg = match n {
            Some(n) => format!("events_received: {n}"),
            None => "accepted".to_owned(),
        };
        return Classified::all(msg, ItemOutcome::Delivered { duplicate: false });
    }
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) else {
        return Classified::all(
            format!("HTTP {status}"),
            by_status(status, retry_after, "no Graph API error in the answer"),
        );
    };
    let code = error.code.unwrap_or(0);
    let sub = error.error_subcode;
    let detail = match (&error.error_user_msg, sub) {
        (Some(u), Some(s)) => format!("{} ({u}; code {code}, subcode {s})", error.message),
        (None, Some(s)) => format!("{} (code {code}, subcode {s})", error.message),
        _ => format!("{} (code {code})", error.message),
    };
    let message = detail.clone();
    let outcome = match code {
        // Application, user, page, account and business use-case rate limits.
        4 | 17 | 32 | 341 | 613 | 80000..=80014 => {
            ItemOutcome::retry(retry_after, "throttled", detail)
        }
        // Unknown / service errors: temporary by Meta's own guidance.
        1 | 2 => ItemOutcome::retry(retry_after, "platform_transient", detail),
        190 | 102 => ItemOutcome::auth("access_token_invalid", detail),
        10 | 200..=299 => ItemOutcome::auth("permission_denied", detail),
        _ if error.is_transient == Some(true) => {
            ItemOutcome::retry(retry_after, "platform_transient", detail)
        }
        _ if status >= 500 => ItemOutcome::retry(retry_after, "server_error", detail),
        100 => {
            let reason = match sub {
                Some(2804003) => "event_too_old",
                Some(2804009) => "purchase_without_value",
                _ => "invalid_parameter",
            };
            return Classified {
                message,
                verdict: crate::outcome::Verdict::All(ItemOutcome::permanent(reason, detail)),
                bisect: true,
            };
        }
        _ if status == 429 => ItemOutcome::retry(retry_after, "throttled", detail),
        c => ItemOutcome::permanent(&format!("meta_error_{c}"), detail),
    };
    Classified::all(message, outcome)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use clicktrail_domain::Currency;
    use clicktrail_domain::delivery::AdIdentifiers;
    use clicktrail_domain::money::Amount;

    use super::*;

    pub(crate) fn conversion() -> OutboundConversion {
        OutboundConversion {
            conversion_id: "cv_01".into(),
            event_id: "0b6f5a1e-7d7e-4d0c-9c55-0d5f6c9f1a11".into(),
            event_name: "Purchase".into(),
            conversion_action: None,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            click_at: Some(Utc.with_ymd_and_hms(2026, 3, 1, 11, 0, 0).unwrap()),
            value: Some(Amount::parse("12.50").unwrap()),
            currency: Some(Currency::EUR),
            page_url: Some("https://site.example/review?fbclid=IwAR1".into()),
            referrer: Some("https://facebook.com/".into()),
            visitor_id: Some("v_123".into()),
            client_ip: Some("203.0.113.7".into()),
            user_agent: Some("Mozilla/5.0".into()),
            ids: AdIdentifiers {
                fbclid: Some("IwAR1xYz".into()),
                fbp: Some("fb.1.1700000000000.123456".into()),
                ..Default::default()
            },
            hashed_email: Some(sha256_hex("john_smith@gmail.com").to_uppercase()),
            hashed_phone: Some("not-a-hash".into()),
            consent: Consent::all(true),
        }
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, 0, 0, 0).unwrap()
    }

    #[test]
    fn payload() {
        let ev = build_event(&conversion(), now()).unwrap();
        let body = build_body(&[&ev], Some("TEST123"));
        let expected = json!({
            "data": [{
                "event_name": "Purchase",
                "event_time": 1772366400,
                "event_id": "0b6f5a1e-7d7e-4d0c-9c55-0d5f6c9f1a11",
                "action_source": "website",
                "event_source_url": "https://site.example/review?fbclid=IwAR1",
                "user_data": {
                    "em": ["62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"],
                    "external_id": [sha256_hex("v_123")],
                    "client_ip_address": "203.0.113.7",
                    "client_user_agent": "Mozilla/5.0",
                    "fbc": "fb.1.1772362800000.IwAR1xYz",
                    "fbp": "fb.1.1700000000000.123456"
                },
                "custom_data": {"value": 12.5, "currency": "EUR", "order_id": "cv_01"}
            }],
            "test_event_code": "TEST123"
        });
        assert_eq!(body, expected);
        assert!(build_body(&[&ev], None).get("test_event_code").is_none());
    }

    #[test]
    fn limited_data_use_from_consent() {
        let lud = |consent: Consent| {
            let mut ev = build_event(&conversion(), now()).unwrap();
            apply_limited_data_use(&mut ev, &consent);
            let v = serde_json::to_value(&ev).unwrap();
            [
                "data_processing_options",
                "data_processing_options_country",
                "data_processing_options_state",
            ]
            .map(|k| v.get(k).cloned())
        };
        assert_eq!(
            lud(Consent::all(false)),
            [Some(json!(["LDU"])), Some(json!(0)), Some(json!(0))]
        );
        let partly = Consent {
            ad_personalization: ConsentState::Denied,
            ..Consent::all(true)
        };
        assert_eq!(lud(partly)[0], Some(json!(["LDU"])));
        assert_eq!(lud(Consent::all(true)), [Some(json!([])), None, None]);
        assert_eq!(lud(Consent::UNKNOWN), [None, None, None]);
        // Without the setting nothing is added, whatever the consent.
        let v = serde_json::to_value(build_event(&conversion(), now()).unwrap()).unwrap();
        assert!(v.get("data_processing_options").is_none(), "{v}");
    }

    #[test]
    fn no_user_data_is_skipped() {
        let mut c = conversion();
        c.visitor_id = None;
        c.client_ip = None;
        c.user_agent = None;
        c.hashed_email = None;
        c.hashed_phone = None;
        c.ids = AdIdentifiers::default();
        assert_eq!(
            build_event(&c, now()).unwrap_err().reason(),
            Some("no_user_data")
        );
        c.ids.fbclid = Some("IwAR1xYz".into());
        assert!(build_event(&c, now()).is_ok());
    }

    #[test]
    fn fbc_cookie_kept_verbatim() {
        let mut c = conversion();
        c.ids.fbc = Some("fb.1.1554763741205.AbCdEfGhIjKlMnOpQrStUvWxYz1234567890".into());
        assert_eq!(build_event(&c, now()).unwrap().user_data.fbc, c.ids.fbc);
        c.ids.fbc = Some(
            "fb.2.1554763741205.IwAR2F4-dbP0l7Mn1IawQQGCINEz7PYXQvwjNwB_qa2ofrHyiLjcbCRxTDMgk.AQ"
                .into(),
        );
        assert_eq!(build_event(&c, now()).unwrap().user_data.fbc, c.ids.fbc);
        c.ids.fbc = Some("garbage".into());
        c.ids.fbclid = None;
        assert_eq!(build_event(&c, now()).unwrap().user_data.fbc, None);
    }

    #[test]
    fn purchase_rules_and_window() {
        let mut c = conversion();
        c.value = None;
        assert_eq!(
            build_event(&c, now()).unwrap_err().reason(),
            Some("purchase_without_value")
        );
        let mut c = conversion();
        c.currency = None;
        assert_eq!(
            build_event(&c, now()).unwrap_err().reason(),
            Some("purchase_without_currency")
        );
        // A lead may go without value.
        let mut c = conversion();
        c.event_name = "Lead".into();
        c.value = None;
        let ev = build_event(&c, now()).unwrap();
        assert_eq!(ev.custom_data.as_ref().unwrap().value, None);
        assert_eq!(ev.custom_data.as_ref().unwrap().currency, None);
        // Eight days old.
        let c = conversion();
        let later = c.occurred_at + chrono::Duration::days(8);
        assert_eq!(
            build_event(&c, later).unwrap_err().reason(),
            Some("outside_window")
        );
        // Without browser context it is not a website event.
        let mut c = conversion();
        c.user_agent = None;
        assert_eq!(build_event(&c, now()).unwrap().action_source, "other");
        // Clock skew: never in the future.
        let c = conversion();
        let before = c.occurred_at - chrono::Duration::seconds(30);
        assert_eq!(
            build_event(&c, before).unwrap().event_time,
            before.timestamp()
        );
    }

    fn reason(status: u16, body: Value) -> (String, Option<String>, bool) {
        let c = classify(status, None, body.to_string().as_bytes());
        let o = c.outcome(0);
        let kind = match &o {
            ItemOutcome::Delivered { .. } => "delivered",
            ItemOutcome::Retry { .. } => "retry",
            ItemOutcome::Permanent { .. } => "permanent",
            ItemOutcome::AuthFailed { .. } => "auth",
            ItemOutcome::Skipped { .. } => "skipped",
        };
        (kind.to_owned(), o.reason().map(str::to_owned), c.bisect)
    }

    fn err(code: i64, sub: Option<i64>) -> Value {
        json!({"error": {"message": "x", "type": "OAuthException", "code": code, "error_subcode": sub, "fbtrace_id": "AbC"}})
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(u16, Value, &str, Option<&str>, bool)> = vec![
            (
                200,
                json!({"events_received": 2, "messages": [], "fbtrace_id": "A1"}),
                "delivered",
                None,
                false,
            ),
            (400, err(4, None), "retry", Some("throttled"), false),
            (400, err(17, None), "retry", Some("throttled"), false),
            (
                400,
                err(80003, Some(2446079)),
                "retry",
                Some("throttled"),
                false,
            ),
            (400, err(613, None), "retry", Some("throttled"), false),
            (
                500,
                err(1, None),
                "retry",
                Some("platform_transient"),
                false,
            ),
            (
                500,
                err(2, None),
                "retry",
                Some("platform_transient"),
                false,
            ),
            (
                400,
                err(190, Some(463)),
                "auth",
                Some("access_token_invalid"),
                false,
            ),
            (403, err(10, None), "auth", Some("permission_denied"), false),
            (
                400,
                err(100, Some(2804003)),
                "permanent",
                Some("event_too_old"),
                true,
            ),
            (
                400,
                err(100, Some(2804009)),
                "permanent",
                Some("purchase_without_value"),
                true,
            ),
            (
                400,
                err(100, Some(33)),
                "permanent",
                Some("invalid_parameter"),
                true,
            ),
            (
                400,
                err(368, None),
                "permanent",
                Some("meta_error_368"),
                false,
            ),
            (
                502,
                json!("<html>bad gateway</html>"),
                "retry",
                Some("server_error"),
                false,
            ),
            (503, err(999, None), "retry", Some("server_error"), false),
            (429, json!({}), "retry", Some("throttled"), false),
            (404, json!({}), "permanent", Some("http_404"), false),
        ];
        for (status, body, kind, r, bisect) in cases {
            let got = reason(status, body.clone());
            assert_eq!(
                got,
                (kind.to_owned(), r.map(str::to_owned), bisect),
                "{status} {body}"
            );
        }
        let c = classify(400, None, err(190, Some(463)).to_string().as_bytes());
        assert!(c.message.contains("code 190"));
    }
}
