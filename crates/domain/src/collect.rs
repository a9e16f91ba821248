//! The collector wire format, version 1 (`docs/COLLECTOR.md`): decoding a
//! `POST /collect` body into validated events. Pure: the caller passes the
//! server's clock. Every refusal carries a stable code; the decoder never
//! panics on any input (fuzzed in the tests).

use std::fmt;

use serde::Deserialize;
use url::Url;

use crate::consent::{Consent, ConsentState};
use crate::ids::{ClickId, EventId, PropertyId, VisitorId};
use crate::money::{Amount, Currency};

/// Most events in one request.
pub const MAX_EVENTS: usize = 50;
/// Longest URL (page, referrer, link) accepted.
pub const MAX_URL_LEN: usize = 4096;
/// Earliest accepted client timestamp: 2020-01-01T00:00:00Z.
pub const MIN_TS_MS: i64 = 1_577_836_800_000;
/// How far ahead of the server's clock a client timestamp may be.
pub const MAX_FUTURE_MS: i64 = 24 * 3600 * 1000;
const MAX_TITLE_CHARS: usize = 300;
const MAX_LINK_TEXT_CHARS: usize = 200;
const MAX_PROPS: usize = 25;
const MAX_PROP_KEY: usize = 40;
const MAX_PROP_VALUE: usize = 500;
const MAX_SHORT: usize = 64;
const MAX_COOKIE: usize = 512;

/// Stable codes of collector refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CollectErrorCode {
    InvalidUtf8,
    InvalidJson,
    MissingField,
    InvalidEvent,
    InvalidTimestamp,
    TooManyEvents,
    NoEvents,
}

impl CollectErrorCode {
    pub const ALL: [CollectErrorCode; 7] = [
        Self::InvalidUtf8,
        Self::InvalidJson,
        Self::MissingField,
        Self::InvalidEvent,
        Self::InvalidTimestamp,
        Self::TooManyEvents,
        Self::NoEvents,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::InvalidJson => "invalid_json",
            Self::MissingField => "missing_field",
            Self::InvalidEvent => "invalid_event",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::TooManyEvents => "too_many_events",
            Self::NoEvents => "no_events",
        }
    }
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CollectError {
    pub code: CollectErrorCode,
    pub message: String,
}

impl CollectError {
    fn new(code: CollectErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    fn at(index: usize, code: CollectErrorCode, field: &str, problem: impl fmt::Display) -> Self {
        Self::new(code, format!("events[{index}].{field}: {problem}"))
    }
}

/// The kind of a collected event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventName {
    PageView,
    OutboundClick,
    /// A custom event (`Lead`, `Purchase`, anything else).
    Custom(String),
}

impl EventName {
    pub fn as_str(&self) -> &str {
        match self {
            Self::PageView => "PageView",
            Self::OutboundClick => "OutboundClick",
            Self::Custom(s) => s,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "PageView" => Some(Self::PageView),
            "OutboundClick" => Some(Self::OutboundClick),
            _ if is_event_name(s) => Some(Self::Custom(s.to_owned())),
            _ => None,
        }
    }
}

/// 1 to 40 of `[A-Za-z0-9_]`, starting with a letter.
pub fn is_event_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.as_bytes()[0].is_ascii_alphabetic()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The link of an `OutboundClick`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub url: String,
    pub tracking_group: Option<String>,
    pub text: Option<String>,
}

/// The ad platforms' browser cookies, when the tag found them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PixelCookies {
    pub fbp: Option<String>,
    pub fbc: Option<String>,
    pub ttp: Option<String>,
}

/// SHA-256 hex hashes of the visitor's identifiers (from `identify`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserHashes {
    pub em: Option<String>,
    pub ph: Option<String>,
}

/// One validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectedEvent {
    pub event_id: EventId,
    pub name: EventName,
    pub client_ts_ms: i64,
    pub visitor_id: VisitorId,
    pub session_hint: Option<String>,
    pub url: Url,
    pub referrer: Option<String>,
    pub title: Option<String>,
    pub pageview_id: Option<EventId>,
    pub click_id: Option<ClickId>,
    pub link: Option<Link>,
    pub value: Option<Amount>,
    pub currency: Option<Currency>,
    /// Custom properties, a JSON object of scalars.
    pub props: Option<serde_json::Map<String, serde_json::Value>>,
    pub cookies: PixelCookies,
    pub user: UserHashes,
    pub screen: Option<String>,
    pub lang: Option<String>,
    /// The visitor's consent as the sender said it (`consent`; unknown when
    /// absent). The collector resolves it against the property's
    /// `consent_required` before anything is stored.
    pub consent: Consent,
}

/// A decoded request: one property, one or more events.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectBatch {
    pub property_id: PropertyId,
    pub events: Vec<CollectedEvent>,
}

#[derive(Deserialize)]
struct WireBody {
    #[serde(default)]
    v: Option<serde_json::Value>,
    #[serde(default)]
    property_id: Option<String>,
    #[serde(default)]
    events: Option<Vec<serde_json::Value>>,
}

#[derive(Deserialize)]
struct WireEvent {
    event_id: Option<String>,
    name: Option<String>,
    ts: Option<serde_json::Value>,
    visitor_id: Option<String>,
    session_hint: Option<String>,
    url: Option<String>,
    referrer: Option<String>,
    title: Option<String>,
    pageview_id: Option<String>,
    click_id: Option<String>,
    link: Option<WireLink>,
    value: Option<serde_json::Value>,
    currency: Option<String>,
    props: Option<serde_json::Map<String, serde_json::Value>>,
    cookies: Option<WireCookies>,
    user: Option<WireUser>,
    screen: Option<String>,
    lang: Option<String>,
    consent: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireLink {
    url: Option<String>,
    tracking_group: Option<String>,
    text: Option<String>,
}

#[derive(Deserialize)]
struct WireCookies {
    fbp: Option<String>,
    fbc: Option<String>,
    ttp: Option<String>,
}

#[derive(Deserialize)]
struct WireUser {
    em: Option<String>,
    ph: Option<String>,
}

/// Decodes and validates a request body. `now_ms` is the server's clock.
pub fn decode(body: &[u8], now_ms: i64) -> Result<CollectBatch, CollectError> {
    use CollectErrorCode as C;
    let text = std::str::from_utf8(body)
        .map_err(|e| CollectError::new(C::InvalidUtf8, format!("body is not UTF-8: {e}")))?;
    let root: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| CollectError::new(C::InvalidJson, format!("body is not JSON: {e}")))?;
    if !root.is_object() {
        return Err(CollectError::new(
            C::InvalidJson,
            "body must be a JSON object",
        ));
    }
    let has_events = root.get("events").is_some();
    let (property_id, raw_events) = if has_events {
        let body: WireBody = serde_json::from_value(root).map_err(|e| {
            CollectError::new(
                C::InvalidJson,
                format!("body does not match the wire format: {e}"),
            )
        })?;
        if let Some(v) = &body.v
            && v.as_i64() != Some(1)
        {
            return Err(CollectError::new(
                C::InvalidJson,
                "unsupported wire format version (v must be 1)",
            ));
        }
        (body.property_id, body.events.unwrap_or_default())
    } else {
        let pid = root
            .get("property_id")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        (pid, vec![root])
    };
    let property_id =
        property_id.ok_or_else(|| CollectError::new(C::MissingField, "property_id is required"))?;
    let property_id = PropertyId::parse(&property_id)
        .map_err(|e| CollectError::new(C::MissingField, format!("property_id: {e}")))?;
    if raw_events.is_empty() {
        return Err(CollectError::new(
            C::NoEvents,
            "events must hold at least one event",
        ));
    }
    if raw_events.len() > MAX_EVENTS {
        return Err(CollectError::new(
            C::TooManyEvents,
            format!(
                "at most {MAX_EVENTS} events per request, got {}",
                raw_events.len()
            ),
        ));
    }
    let mut events = Vec::with_capacity(raw_events.len());
    for (i, raw) in raw_events.into_iter().enumerate() {
        if !raw.is_object() {
            return Err(CollectError::at(
                i,
                C::InvalidEvent,
                "",
                "an event must be a JSON object",
            ));
        }
        let w: WireEvent =
            serde_json::from_value(raw).map_err(|e| CollectError::at(i, C::InvalidEvent, "", e))?;
        events.push(validate_event(i, w, now_ms)?);
    }
    Ok(CollectBatch {
        property_id,
        events,
    })
}

fn required<T>(i: usize, field: &str, v: Option<T>) -> Result<T, CollectError> {
    v.ok_or_else(|| CollectError::at(i, CollectErrorCode::MissingField, field, "is required"))
}

fn invalid(i: usize, field: &str, problem: impl fmt::Display) -> CollectError {
    CollectError::at(i, CollectErrorCode::InvalidEvent, field, problem)
}

fn cut_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s[..end].to_owned(),
        None => s.to_owned(),
    }
}

fn bounded(
    i: usize,
    field: &str,
    v: Option<String>,
    max: usize,
) -> Result<Option<String>, CollectError> {
    match v {
        Some(s) if s.len() > max => Err(invalid(i, field, format!("longer than {max} bytes"))),
        Some(s) if s.is_empty() => Ok(None),
        other => Ok(other),
    }
}

fn parse_http_url(i: usize, field: &str, s: &str) -> Result<Url, CollectError> {
    if s.len() > MAX_URL_LEN {
        return Err(invalid(
            i,
            field,
            format!("longer than {MAX_URL_LEN} bytes"),
        ));
    }
    let u = Url::parse(s).map_err(|e| invalid(i, field, format!("not an absolute URL: {e}")))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(invalid(i, field, "must be an http(s) URL"));
    }
    Ok(u)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate_event(i: usize, w: WireEvent, now_ms: i64) -> Result<CollectedEvent, CollectError> {
    let event_id = EventId::parse(&required(i, "event_id", w.event_id)?)
        .map_err(|e| invalid(i, "event_id", e))?;
    let name_raw = required(i, "name", w.name)?;
    let name = EventName::parse(&name_raw).ok_or_else(|| {
        invalid(
            i,
            "name",
            "must be 1 to 40 of [A-Za-z0-9_], starting with a letter",
        )
    })?;
    let ts = required(i, "ts", w.ts)?;
    let client_ts_ms = ts
        .as_i64()
        .or_else(|| {
            ts.as_f64()
                .filter(|f| f.is_finite() && f.fract() == 0.0)
                .map(|f| f as i64)
        })
        .ok_or_else(|| invalid(i, "ts", "must be an integer (ms since epoch)"))?;
    if client_ts_ms < MIN_TS_MS || client_ts_ms > now_ms.saturating_add(MAX_FUTURE_MS) {
        return Err(CollectError::at(
            i,
            CollectErrorCode::InvalidTimestamp,
            "ts",
            "is before 2020 or more than 24 hours ahead of the server's clock",
        ));
    }
    let visitor_id = VisitorId::parse(&required(i, "visitor_id", w.visitor_id)?)
        .map_err(|e| invalid(i, "visitor_id", e))?;
    let url = parse_http_url(i, "url", &required(i, "url", w.url)?)?;
    let referrer = bounded(i, "referrer", w.referrer, MAX_URL_LEN)?;
    let title = w
        .title
        .map(|t| cut_chars(t.trim(), MAX_TITLE_CHARS))
        .filter(|t| !t.is_empty());
    let session_hint = bounded(i, "session_hint", w.session_hint, MAX_SHORT)?;
    let pageview_id = match w.pageview_id.filter(|s| !s.is_empty()) {
        Some(s) => Some(EventId::parse(&s).map_err(|e| invalid(i, "pageview_id", e))?),
        None => None,
    };
    let click_id = match w.click_id.filter(|s| !s.is_empty()) {
        Some(s) => Some(ClickId::parse(&s).map_err(|e| invalid(i, "click_id", e))?),
        None => None,
    };
    let link = match w.link {
        Some(l) => {
            let url = required(i, "link.url", l.url.filter(|u| !u.is_empty()))?;
            if url.len() > MAX_URL_LEN {
                return Err(invalid(
                    i,
                    "link.url",
                    format!("longer than {MAX_URL_LEN} bytes"),
                ));
            }
            let tracking_group = bounded(i, "link.tracking_group", l.tracking_group, MAX_SHORT)?;
            let text = l
                .text
                .map(|t| cut_chars(t.trim(), MAX_LINK_TEXT_CHARS))
                .filter(|t| !t.is_empty());
            Some(Link {
                url,
                tracking_group,
                text,
            })
        }
        None => None,
    };
    if name == EventName::OutboundClick {
        if click_id.is_none() {
            return Err(CollectError::at(
                i,
                CollectErrorCode::MissingField,
                "click_id",
                "is required for OutboundClick",
            ));
        }
        if link.is_none() {
            return Err(CollectError::at(
                i,
                CollectErrorCode::MissingField,
                "link",
                "is required for OutboundClick",
            ));
        }
    }
    let value = match w.value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => {
            let f = n
                .as_f64()
                .ok_or_else(|| invalid(i, "value", "not a number"))?;
            Some(Amount::from_f64(f).map_err(|e| invalid(i, "value", e))?)
        }
        Some(serde_json::Value::String(s)) => {
            Some(Amount::parse(&s).map_err(|e| invalid(i, "value", e))?)
        }
        Some(_) => return Err(invalid(i, "value", "must be a number")),
    };
    let currency = match w.currency.filter(|c| !c.is_empty()) {
        Some(c) => Some(Currency::parse(&c).map_err(|e| invalid(i, "currency", e))?),
        None => None,
    };
    let props = match w.props {
        Some(p) => {
            if p.len() > MAX_PROPS {
                return Err(invalid(i, "props", format!("at most {MAX_PROPS} keys")));
            }
            for (k, v) in &p {
                if k.is_empty() || k.len() > MAX_PROP_KEY {
                    return Err(invalid(
                        i,
                        "props",
                        format!("keys must be 1 to {MAX_PROP_KEY} bytes"),
                    ));
                }
                let ok = match v {
                    serde_json::Value::String(s) => s.len() <= MAX_PROP_VALUE,
                    serde_json::Value::Number(_)
                    | serde_json::Value::Bool(_)
                    | serde_json::Value::Null => true,
                    _ => false,
                };
                if !ok {
                    return Err(invalid(
                        i,
                        "props",
                        format!("values must be scalars, strings up to {MAX_PROP_VALUE} bytes"),
                    ));
                }
            }
            (!p.is_empty()).then_some(p)
        }
        None => None,
    };
    let cookies = match w.cookies {
        Some(c) => PixelCookies {
            fbp: bounded(i, "cookies.fbp", c.fbp, MAX_COOKIE)?,
            fbc: bounded(i, "cookies.fbc", c.fbc, MAX_COOKIE)?,
            ttp: bounded(i, "cookies.ttp", c.ttp, MAX_COOKIE)?,
        },
        None => PixelCookies::default(),
    };
    let user = match w.user {
        Some(u) => {
            let mut hashes = UserHashes::default();
            for (field, v, slot) in [
                ("user.em", u.em, &mut hashes.em),
                ("user.ph", u.ph, &mut hashes.ph),
            ] {
                if let Some(v) = v.filter(|v| !v.is_empty()) {
                    let v = v.to_ascii_lowercase();
                    if !is_sha256_hex(&v) {
                        return Err(invalid(
                            i,
                            field,
                            "must be a SHA-256 hex digest, never a clear value",
                        ));
                    }
                    *slot = Some(v);
                }
            }
            hashes
        }
        None => UserHashes::default(),
    };
    let consent = parse_consent(i, w.consent)?;
    Ok(CollectedEvent {
        event_id,
        name,
        client_ts_ms,
        visitor_id,
        session_hint,
        url,
        referrer,
        title,
        pageview_id,
        click_id,
        link,
        value,
        currency,
        props,
        cookies,
        user,
        screen: bounded(i, "screen", w.screen, 32)?,
        lang: bounded(i, "lang", w.lang, 35)?,
        consent,
    })
}

/// `consent`: `true` / `false` (every purpose granted / denied: the tag's
/// `clicktrail('consent', ...)`), or an object whose `ad_user_data` and
/// `ad_personalization` are each `"granted"` or `"denied"` (absent or null:
/// unknown). Other keys (a consent platform's `ad_storage`,
/// `analytics_storage`...) are ignored.
fn parse_consent(i: usize, v: Option<serde_json::Value>) -> Result<Consent, CollectError> {
    let obj = match v {
        None | Some(serde_json::Value::Null) => return Ok(Consent::UNKNOWN),
        Some(serde_json::Value::Bool(all)) => return Ok(Consent::all(all)),
        Some(serde_json::Value::Object(o)) => o,
        Some(_) => {
            return Err(invalid(
                i,
                "consent",
                "must be true, false or an object of purposes",
            ));
        }
    };
    let state = |key: &str| -> Result<ConsentState, CollectError> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(ConsentState::Unknown),
            Some(serde_json::Value::String(s)) => ConsentState::parse(s).ok_or_else(|| {
                invalid(
                    i,
                    &format!("consent.{key}"),
                    "must be \"granted\" or \"denied\"",
                )
            }),
            Some(_) => Err(invalid(
                i,
                &format!("consent.{key}"),
                "must be \"granted\" or \"denied\"",
            )),
        }
    };
    Ok(Consent {
        ad_user_data: state("ad_user_data")?,
        ad_personalization: state("ad_personalization")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const NOW: i64 = 1_760_000_000_000;
    const PID: &str = "abcdefghij012345";

    fn pageview() -> serde_json::Value {
        json!({"event_id": "0190f1a2-7d3c-7abc-8def-0123456789ab", "name": "PageView", "ts": NOW,
               "visitor_id": "v1234567890", "url": "https://site.com/?utm_source=x", "referrer": "https://google.com/"})
    }

    fn code(body: serde_json::Value) -> &'static str {
        decode(body.to_string().as_bytes(), NOW)
            .unwrap_err()
            .code
            .as_str()
    }

    #[test]
    fn batch_and_single() {
        let b = decode(
            json!({"property_id": PID, "events": [pageview()]})
                .to_string()
                .as_bytes(),
            NOW,
        )
        .unwrap();
        assert_eq!(b.events.len(), 1);
        assert_eq!(b.events[0].name, EventName::PageView);
        let mut single = pageview();
        single["property_id"] = json!(PID);
        let b = decode(single.to_string().as_bytes(), NOW).unwrap();
        assert_eq!(b.property_id.as_str(), PID);
    }

    #[test]
    fn outbound_click() {
        let mut e = pageview();
        e["name"] = json!("OutboundClick");
        assert_eq!(
            code(json!({"property_id": PID, "events": [e.clone()]})),
            "missing_field"
        );
        e["click_id"] = json!("AZDxon08eryN7wEjRWeJqwAAAAAA");
        e["link"] = json!({"url": "https://wlx.adsrv.eacdn.com/C.ashx?btag=a&c=AZDxon08eryN7wEjRWeJqwAAAAAA", "tracking_group": "incomeaccess", "text": "  Join  "});
        let b = decode(
            json!({"property_id": PID, "events": [e]})
                .to_string()
                .as_bytes(),
            NOW,
        )
        .unwrap();
        assert_eq!(
            b.events[0].link.as_ref().unwrap().text.as_deref(),
            Some("Join")
        );
    }

    #[test]
    fn refusals() {
        assert_eq!(
            decode(b"\xff\xfe", NOW).unwrap_err().code.as_str(),
            "invalid_utf8"
        );
        assert_eq!(decode(b"{", NOW).unwrap_err().code.as_str(), "invalid_json");
        assert_eq!(
            decode(b"[]", NOW).unwrap_err().code.as_str(),
            "invalid_json"
        );
        assert_eq!(code(json!({"events": [pageview()]})), "missing_field");
        assert_eq!(code(json!({"property_id": PID, "events": []})), "no_events");
        let many: Vec<_> = (0..51).map(|_| pageview()).collect();
        assert_eq!(
            code(json!({"property_id": PID, "events": many})),
            "too_many_events"
        );
        let mut e = pageview();
        e["ts"] = json!(NOW + 2 * MAX_FUTURE_MS);
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_timestamp"
        );
        let mut e = pageview();
        e["url"] = json!(format!("https://a.com/?{}", "x".repeat(MAX_URL_LEN)));
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_event"
        );
        let mut e = pageview();
        e["url"] = json!("javascript:alert(1)");
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_event"
        );
        let mut e = pageview();
        e["user"] = json!({"em": "someone@example.com"});
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_event"
        );
        let mut e = pageview();
        e["value"] = json!("lots");
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_event"
        );
        let mut e = pageview();
        e["name"] = json!("has space");
        assert_eq!(
            code(json!({"property_id": PID, "events": [e]})),
            "invalid_event"
        );
        assert_eq!(
            code(json!({"property_id": PID, "v": 2, "events": [pageview()]})),
            "invalid_json"
        );
    }

    #[test]
    fn consent_field() {
        let one = |e: serde_json::Value| {
            decode(
                json!({"property_id": PID, "events": [e]})
                    .to_string()
                    .as_bytes(),
                NOW,
            )
        };
        assert_eq!(one(pageview()).unwrap().events[0].consent, Consent::UNKNOWN);
        let mut e = pageview();
        e["consent"] = json!({"ad_user_data": "granted", "ad_personalization": "DENIED", "analytics_storage": "granted"});
        let c = one(e).unwrap().events[0].consent;
        assert_eq!(
            (c.ad_user_data, c.ad_personalization),
            (ConsentState::Granted, ConsentState::Denied)
        );
        let mut e = pageview();
        e["consent"] = json!({"ad_user_data": "denied"});
        let c = one(e).unwrap().events[0].consent;
        assert_eq!(
            (c.ad_user_data, c.ad_personalization),
            (ConsentState::Denied, ConsentState::Unknown)
        );
        let mut e = pageview();
        e["consent"] = json!(true);
        assert_eq!(one(e).unwrap().events[0].consent, Consent::all(true));
        let mut e = pageview();
        e["consent"] = json!(false);
        assert_eq!(one(e).unwrap().events[0].consent, Consent::all(false));
        for bad in [
            json!(1),
            json!("granted"),
            json!({"ad_user_data": true}),
            json!({"ad_personalization": "yes"}),
        ] {
            let mut e = pageview();
            e["consent"] = bad.clone();
            let err = one(e).unwrap_err();
            assert_eq!(err.code.as_str(), "invalid_event", "{bad}");
            assert!(err.message.contains("consent"), "{}", err.message);
        }
    }

    #[test]
    fn messages_name_the_event() {
        let mut e = pageview();
        e["visitor_id"] = json!("x");
        let err = decode(
            json!({"property_id": PID, "events": [pageview(), e]})
                .to_string()
                .as_bytes(),
            NOW,
        )
        .unwrap_err();
        assert!(
            err.message.starts_with("events[1].visitor_id"),
            "{}",
            err.message
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&body, NOW);
        }

        #[test]
        fn never_panics_on_json(v in arb_json()) {
            let _ = decode(json!({"property_id": PID, "events": [v.clone()]}).to_string().as_bytes(), NOW);
            let _ = decode(v.to_string().as_bytes(), NOW);
        }
    }

    fn arb_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|f| json!(f)),
            ".{0,40}".prop_map(serde_json::Value::String),
        ];
        let keys = prop_oneof![
            Just("event_id".to_owned()),
            Just("name".to_owned()),
            Just("ts".to_owned()),
            Just("visitor_id".to_owned()),
            Just("url".to_owned()),
            Just("click_id".to_owned()),
            Just("link".to_owned()),
            Just("value".to_owned()),
            Just("currency".to_owned()),
            Just("props".to_owned()),
            Just("user".to_owned()),
            Just("cookies".to_owned()),
            Just("consent".to_owned()),
            Just("ad_user_data".to_owned()),
            Just("property_id".to_owned()),
            Just("events".to_owned()),
            "[a-z]{1,8}",
        ];
        leaf.prop_recursive(3, 32, 8, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                prop::collection::btree_map(keys.clone(), inner, 0..8)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
