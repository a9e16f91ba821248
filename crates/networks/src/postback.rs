//! Postback parsing: turns what a network sends to `/postback/{token}`
//! (query string, form body or JSON body) into a domain [`SourceEvent`].
//!
//! Networks name things their own way, so parameter names are matched
//! case-insensitively with `_` and `-` ignored, through alias lists
//! ([`CLICK_ID_ALIASES`] and friends). Within one kind of field the
//! integration's own subid parameter comes first, then the aliases in list
//! order; for the same name, the query string wins over the body, and a
//! body's top-level keys win over keys nested one level down.
//!
//! A value a network left as an unreplaced macro (`{clickid}`, `[subid]`,
//! `%subid%`, `#s2#`, `{{sub1}}`, `!!!clickRef!!!`, `${epi}`) counts as
//! absent, and so do empty values and the words `null`, `undefined`, `none`.
//! A missing click id is not an error here: the attribution step records it
//! as `missing_click_id`. Only what cannot be read is an error
//! ([`PostbackError`], with a stable snake_case code).
//!
//! Parsing is a pure function: no I/O, no clock.

use chrono::{DateTime, NaiveDate, NaiveDateTime, TimeZone, Utc};
use clicktrail_domain::conversion::{RawPayload, SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::mapping::normalise_name;
use clicktrail_domain::money::{Amount, Currency};
use serde_json::{Map, Value};

/// Most parameters a postback may carry (query, form and flattened JSON
/// together).
pub const MAX_PARAMS: usize = 100;
/// Longest parameter name.
pub const MAX_NAME_LEN: usize = 100;
/// Longest parameter value (deep links can be long; 4 KiB is plenty).
pub const MAX_VALUE_LEN: usize = 4096;
/// Longest event name, as the event mapping accepts.
pub const MAX_EVENT_LEN: usize = 100;
/// Largest body parsed.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Click id aliases, in precedence order (after the integration's own
/// subid parameter). Matched on [`normalise_name`]d names.
pub const CLICK_ID_ALIASES: &[&str] = &[
    "click_id",
    "clickid",
    "subid",
    "sub_id",
    "subid1",
    "sub_id1",
    "sub1",
    "aff_sub",
    "aff_click_id",
    "cid",
    "affcustomid",
    "acid",
    "clickref",
    "afftrack",
    "u1",
    "pubref",
    "extclid",
    "external_id",
    "tid",
    "sid",
    "s2",
];
/// Value aliases, in precedence order.
pub const VALUE_ALIASES: &[&str] = &[
    "value",
    "commission",
    "payout",
    "payout_amount",
    "revenue",
    "amount",
    "sum",
    "earnings",
    "price",
    "conversion_value",
];
/// Currency aliases, in precedence order.
pub const CURRENCY_ALIASES: &[&str] = &[
    "currency",
    "currency_code",
    "cur",
    "curr",
    "payout_currency",
    "commission_currency",
    "transaction_currency",
    "currencysymbol",
];
/// Transaction id aliases, in precedence order.
pub const TRANSACTION_ID_ALIASES: &[&str] = &[
    "transaction_id",
    "trans_id",
    "txid",
    "txn_id",
    "order_id",
    "order_number",
    "conversion_id",
    "action_id",
    "lead_id",
    "receipt",
    "receipt_id",
    "commission_id",
    "oid",
];
/// Event name aliases, in precedence order.
pub const EVENT_ALIASES: &[&str] = &[
    "event",
    "event_name",
    "event_type",
    "conversion_type",
    "conversion_event",
    "goal",
    "goal_name",
    "goal_id",
    "action_type",
    "transaction_type",
    "type",
    "action",
];
/// Status aliases, in precedence order.
pub const STATUS_ALIASES: &[&str] = &[
    "status",
    "conversion_status",
    "action_status",
    "transaction_status",
    "commission_status",
    "state",
];
/// Timestamp aliases, in precedence order.
pub const TIMESTAMP_ALIASES: &[&str] = &[
    "timestamp",
    "ts",
    "event_time",
    "conversion_time",
    "conversion_date",
    "transaction_date",
    "occurred_at",
    "created_at",
    "datetime",
    "date",
    "time",
];

/// Why a postback could not be read. Each has a stable snake_case
/// [`code`](PostbackError::code); the server answers 4xx with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PostbackError {
    #[error("a postback may carry at most {max} parameters")]
    TooManyParameters { max: usize },
    #[error("{field}: at most {max} characters")]
    FieldTooLong { field: String, max: usize },
    #[error("the body is larger than {max} bytes")]
    PayloadTooLarge { max: usize },
    #[error("the body is not a JSON object: {0}")]
    InvalidJson(String),
    #[error("{field}: {value:?} is not an amount")]
    InvalidValue { field: String, value: String },
    #[error("{field}: {value:?} is not a three-letter currency code")]
    InvalidCurrency { field: String, value: String },
    #[error("{field}: {value:?} is not a timestamp (unix seconds or ms, or ISO-8601)")]
    InvalidTimestamp { field: String, value: String },
    #[error("{field}: {value:?} is not a status (approved, pending, rejected, reversed...)")]
    InvalidStatus { field: String, value: String },
}

impl PostbackError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooManyParameters { .. } => "too_many_parameters",
            Self::FieldTooLong { .. } => "field_too_long",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidValue { .. } => "invalid_value",
            Self::InvalidCurrency { .. } => "invalid_currency",
            Self::InvalidTimestamp { .. } => "invalid_timestamp",
            Self::InvalidStatus { .. } => "invalid_status",
        }
    }

    /// The parameter the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::FieldTooLong { field, .. }
            | Self::InvalidValue { field, .. }
            | Self::InvalidCurrency { field, .. }
            | Self::InvalidTimestamp { field, .. }
            | Self::InvalidStatus { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// What the integration contributes to parsing.
#[derive(Debug, Clone, Copy)]
pub struct PostbackOptions<'a> {
    /// The integration's own subid parameter (`c`, `tid`, `subId1`): looked
    /// for first.
    pub subid_param: Option<&'a str>,
    /// The source event of a postback that names none (the catalog entry's
    /// `default_postback_event`).
    pub default_event: &'a str,
}

/// A request body, as the server received it.
#[derive(Debug, Clone, Copy)]
pub enum PostbackBody<'a> {
    Empty,
    /// `application/x-www-form-urlencoded`.
    Form(&'a [u8]),
    /// A JSON object.
    Json(&'a [u8]),
}

impl<'a> PostbackBody<'a> {
    /// Classifies a body by its content type. Networks are sloppy with
    /// content types, so a body without a telling one is JSON when it looks
    /// like a JSON object and form data otherwise.
    pub fn detect(content_type: Option<&str>, body: &'a [u8]) -> Self {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first.is_none() {
            return Self::Empty;
        }
        let ct = content_type.unwrap_or_default().to_ascii_lowercase();
        if ct.contains("json") {
            Self::Json(body)
        } else if ct.contains("x-www-form-urlencoded") {
            Self::Form(body)
        } else if first == Some(&b'{') {
            Self::Json(body)
        } else {
            Self::Form(body)
        }
    }
}

/// Parses a postback from its raw query string (without `?`) and body.
pub fn parse_request(
    query: Option<&str>,
    body: PostbackBody<'_>,
    opts: &PostbackOptions<'_>,
) -> Result<SourceEvent, PostbackError> {
    let mut params = Params::default();
    if let Some(q) = query {
        if q.len() > MAX_BODY_BYTES {
            return Err(PostbackError::PayloadTooLarge {
                max: MAX_BODY_BYTES,
            });
        }
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            params.push_pair(&k, &v)?;
        }
    }
    match body {
        PostbackBody::Empty => {}
        PostbackBody::Form(bytes) => {
            if bytes.len() > MAX_BODY_BYTES {
                return Err(PostbackError::PayloadTooLarge {
                    max: MAX_BODY_BYTES,
                });
            }
            for (k, v) in url::form_urlencoded::parse(bytes) {
                params.push_pair(&k, &v)?;
            }
        }
        PostbackBody::Json(bytes) => params.push_json(bytes)?,
    }
    params.into_event(opts)
}

/// Parses a postback from decoded (name, value) pairs: the query string
/// followed by a form body.
pub fn parse_pairs(
    pairs: &[(String, String)],
    opts: &PostbackOptions<'_>,
) -> Result<SourceEvent, PostbackError> {
    let mut params = Params::default();
    for (k, v) in pairs {
        params.push_pair(k, v)?;
    }
    params.into_event(opts)
}

/// Parses a postback from decoded query pairs and a JSON object body.
pub fn parse_json(
    query: &[(String, String)],
    body: &[u8],
    opts: &PostbackOptions<'_>,
) -> Result<SourceEvent, PostbackError> {
    let mut params = Params::default();
    for (k, v) in query {
        params.push_pair(k, v)?;
    }
    params.push_json(body)?;
    params.into_event(opts)
}

// ---------------------------------------------------------------------------
// Collected parameters
// ---------------------------------------------------------------------------

#[derive(Debug)]
struct Param {
    name: String,
    norm: String,
    value: String,
    /// 0: query, form or JSON top level; 1: nested one level in JSON.
    depth: u8,
    /// Came from a JSON number: amounts may use exponent notation.
    json_number: bool,
}

#[derive(Debug, Default)]
struct Params {
    list: Vec<Param>,
    raw: Map<String, Value>,
}

fn check_name(name: &str) -> Result<(), PostbackError> {
    if name.len() > MAX_NAME_LEN {
        return Err(PostbackError::FieldTooLong {
            field: name.chars().take(40).collect(),
            max: MAX_NAME_LEN,
        });
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> Result<(), PostbackError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(PostbackError::FieldTooLong {
            field: name.to_owned(),
            max: MAX_VALUE_LEN,
        });
    }
    Ok(())
}

/// Adds a value to the raw payload; a repeated name becomes an array.
fn raw_insert(raw: &mut Map<String, Value>, name: &str, value: Value) {
    match raw.get_mut(name) {
        None => {
            raw.insert(name.to_owned(), value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// A JSON scalar as the string a query string would carry; `None` for
/// null, arrays and objects.
fn scalar_text(v: &Value) -> Option<(String, bool)> {
    match v {
        Value::String(s) => Some((s.clone(), false)),
        Value::Number(n) => Some((n.to_string(), true)),
        Value::Bool(b) => Some((b.to_string(), false)),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

impl Params {
    fn count_one(&self) -> Result<(), PostbackError> {
        if self.list.len() >= MAX_PARAMS {
            return Err(PostbackError::TooManyParameters { max: MAX_PARAMS });
        }
        Ok(())
    }

    fn push_pair(&mut self, name: &str, value: &str) -> Result<(), PostbackError> {
        self.count_one()?;
        check_name(name)?;
        check_value(name, value)?;
        self.list.push(Param {
            name: name.to_owned(),
            norm: normalise_name(name),
            value: value.to_owned(),
            depth: 0,
            json_number: false,
        });
        raw_insert(&mut self.raw, name, Value::String(value.to_owned()));
        Ok(())
    }

    fn push_json(&mut self, bytes: &[u8]) -> Result<(), PostbackError> {
        if bytes.len() > MAX_BODY_BYTES {
            return Err(PostbackError::PayloadTooLarge {
                max: MAX_BODY_BYTES,
            });
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| PostbackError::InvalidJson(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(PostbackError::InvalidJson(
                "expected an object at the top level".into(),
            ));
        };
        // Count and bound everything before keeping anything, so a huge
        // object is refused as a whole.
        let mut nested = Vec::new();
        for (k, v) in &obj {
            check_name(k)?;
            if let Some((text, json_number)) = scalar_text(v) {
                self.count_one()?;
                check_value(k, &text)?;
                self.list.push(Param {
                    name: k.clone(),
                    norm: normalise_name(k),
                    value: text,
                    depth: 0,
                    json_number,
                });
            } else if let Value::Object(inner) = v {
                for (ik, iv) in inner {
                    check_name(ik)?;
                    if let Some((text, json_number)) = scalar_text(iv) {
                        check_value(ik, &text)?;
                        nested.push(Param {
                            name: format!("{k}.{ik}"),
                            norm: normalise_name(ik),
                            value: text,
                            depth: 1,
                            json_number,
                        });
                    }
                }
            }
        }
        for p in nested {
            self.count_one()?;
            self.list.push(p);
        }
        for (k, v) in obj {
            raw_insert(&mut self.raw, &k, v);
        }
        Ok(())
    }

    /// The first present (non-empty, non-macro) parameter of a field: own
    /// name first, then aliases in order; for each name, top level before
    /// nested, then arrival order.
    fn find(&self, own: Option<&str>, aliases: &[&str]) -> Option<&Param> {
        let own_norm = own.map(normalise_name).filter(|n| !n.is_empty());
        let names = own_norm
            .into_iter()
            .chain(aliases.iter().map(|a| normalise_name(a)));
        for name in names {
            for depth in [0, 1] {
                if let Some(p) = self
                    .list
                    .iter()
                    .find(|p| p.depth == depth && p.norm == name && is_present(&p.value))
                {
                    return Some(p);
                }
            }
        }
        None
    }

    fn into_event(self, opts: &PostbackOptions<'_>) -> Result<SourceEvent, PostbackError> {
        let text = |p: &Param| p.value.trim().to_owned();

        let click_id = self.find(opts.subid_param, CLICK_ID_ALIASES).map(text);
        let transaction_id = self.find(None, TRANSACTION_ID_ALIASES).map(text);

        let value = match self.find(None, VALUE_ALIASES) {
            None => None,
            Some(p) => Some(parse_value(p)?),
        };
        let currency = match self.find(None, CURRENCY_ALIASES) {
            None => None,
            Some(p) => Some(Currency::parse(p.value.trim()).map_err(|_| {
                PostbackError::InvalidCurrency {
                    field: p.name.clone(),
                    value: clip(&p.value),
                }
            })?),
        };
        let status = match self.find(None, STATUS_ALIASES) {
            None => SourceStatus::default(),
            Some(p) => {
                SourceStatus::parse(p.value.trim()).ok_or_else(|| PostbackError::InvalidStatus {
                    field: p.name.clone(),
                    value: clip(&p.value),
                })?
            }
        };
        // A negative amount is a reversal (a refund, a chargeback, a
        // clawed-back commission) of the conversion with this transaction
        // id, by that amount: never a conversion of its own, which would
        // reach the ad platforms as a negative Purchase. Without a
        // transaction id it reverses nothing and the conversion log refuses
        // it (`invalid_payload`).
        let (status, adjusts) = match value {
            Some(v)
                if v.is_negative()
                    && matches!(status, SourceStatus::Approved | SourceStatus::Pending) =>
            {
                (SourceStatus::Reversed, transaction_id.clone())
            }
            _ => (status, None),
        };
        let occurred_at = match self.find(None, TIMESTAMP_ALIASES) {
            None => None,
            Some(p) => Some(parse_timestamp(p.value.trim()).ok_or_else(|| {
                PostbackError::InvalidTimestamp {
                    field: p.name.clone(),
                    value: clip(&p.value),
                }
            })?),
        };
        let source_event = match self.find(None, EVENT_ALIASES) {
            None => opts.default_event.to_owned(),
            Some(p) => {
                let e = text(p);
                if e.len() > MAX_EVENT_LEN {
                    return Err(PostbackError::FieldTooLong {
                        field: p.name.clone(),
                        max: MAX_EVENT_LEN,
                    });
                }
                e
            }
        };

        Ok(SourceEvent {
            kind: SourceKind::Postback,
            source_event,
            click_id,
            transaction_id,
            value,
            currency,
            status,
            occurred_at,
            adjusts,
            raw: RawPayload::from_value(&Value::Object(self.raw)),
        })
    }
}

fn clip(v: &str) -> String {
    v.chars().take(64).collect()
}

fn parse_value(p: &Param) -> Result<Amount, PostbackError> {
    let v = p.value.trim();
    match Amount::parse(v) {
        Ok(d) => Ok(d),
        // JSON numbers may be written with an exponent (1e-7); take those
        // as the float they are.
        Err(_) if p.json_number => v
            .parse::<f64>()
            .ok()
            .and_then(|f| Amount::from_f64(f).ok())
            .ok_or_else(|| PostbackError::InvalidValue {
                field: p.name.clone(),
                value: clip(v),
            }),
        Err(_) => Err(PostbackError::InvalidValue {
            field: p.name.clone(),
            value: clip(v),
        }),
    }
}

// ---------------------------------------------------------------------------
// Macros and empties
// ---------------------------------------------------------------------------

/// Whether a value is really there: not empty, not a placeholder word, not
/// an unreplaced macro.
pub fn is_present(value: &str) -> bool {
    let v = value.trim();
    !(v.is_empty()
        || v.eq_ignore_ascii_case("null")
        || v.eq_ignore_ascii_case("undefined")
        || v.eq_ignore_ascii_case("none")
        || v.eq_ignore_ascii_case("(null)")
        || is_unreplaced_macro(v))
}

/// Whether a value is a macro the network did not fill in: a name of
/// `[A-Za-z0-9_.:-]` wrapped in delimiters, `{x}`, `{{x}}`, `[x]`, `[[[x]]]`,
/// `%x%`, `#x#`, `!!x!!`, `!!!x!!!`, `$x$`, `${x}`, `<x>`.
pub fn is_unreplaced_macro(value: &str) -> bool {
    let v = value.trim();
    let inner = strip_wrapping(v);
    match inner {
        Some(name) => {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
                && name.bytes().any(|b| b.is_ascii_alphabetic())
        }
        None => false,
    }
}

/// Strips one family of matching delimiters, repeated, from both ends.
fn strip_wrapping(v: &str) -> Option<&str> {
    const PAIRS: [(&str, &str); 7] = [
        ("${", "}"),
        ("{", "}"),
        ("[", "]"),
        ("%", "%"),
        ("#", "#"),
        ("!", "!"),
        ("<", ">"),
    ];
    for (open, close) in PAIRS {
        let mut s = v;
        let mut n = 0;
        while s.len() >= open.len() + close.len() && s.starts_with(open) && s.ends_with(close) {
            s = &s[open.len()..s.len() - close.len()];
            n += 1;
        }
        if n > 0 {
            // `{{x}` and `!x!!` are not macros; require a balanced run of
            // the same delimiter on both sides.
            return Some(s);
        }
    }
    // `$x$`
    v.strip_prefix('$')
        .and_then(|s| s.strip_suffix('$'))
        .filter(|s| !s.is_empty())
}

// ---------------------------------------------------------------------------
// Timestamps
// ---------------------------------------------------------------------------

/// Earliest and latest timestamps accepted: anything else is a unit mix-up
/// (microseconds, a year typed wrong) that would mislead attribution.
fn in_range(t: &DateTime<Utc>) -> bool {
    (2000..=2100).contains(&chrono::Datelike::year(t))
}

/// Parses what networks send as a conversion time: unix seconds (optionally
/// with a fraction) or milliseconds, RFC 3339 / ISO-8601 with or without a
/// zone (no zone means UTC), `YYYY-MM-DD HH:MM:SS` (UTC), or a bare date
/// (midnight UTC). A `+hh:mm` offset whose `+` a form decoder turned into a
/// space is repaired.
pub fn parse_timestamp(value: &str) -> Option<DateTime<Utc>> {
    let v = value.trim();
    if v.is_empty() || v.len() > 64 {
        return None;
    }
    let t = if v.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        parse_unix(v)?
    } else {
        parse_datetime(v)?
    };
    in_range(&t).then_some(t)
}

fn parse_unix(v: &str) -> Option<DateTime<Utc>> {
    let (int, frac) = match v.split_once('.') {
        Some((i, f)) => (i, f),
        None => (v, ""),
    };
    if int.is_empty() || int.len() > 15 || frac.contains('.') || frac.len() > 9 {
        return None;
    }
    let n: i64 = int.parse().ok()?;
    // Seconds until the year 5138; larger numbers are milliseconds.
    if n < 100_000_000_000 {
        let nanos: u32 = if frac.is_empty() {
            0
        } else {
            format!("{frac:0<9}").parse().ok()?
        };
        Utc.timestamp_opt(n, nanos).single()
    } else {
        if !frac.is_empty() {
            return None;
        }
        Utc.timestamp_millis_opt(n).single()
    }
}

fn parse_datetime(v: &str) -> Option<DateTime<Utc>> {
    let repaired = repair_offset(v);
    let v = repaired.as_str();
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Some(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f%z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M%z",
        "%Y-%m-%d %H:%M%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(v, fmt) {
            return Some(t.with_timezone(&Utc));
        }
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(Utc.from_utc_datetime(&t));
        }
    }
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| Utc.from_utc_datetime(&t))
}

/// `2024-05-01T10:00:00 02:00` (a `+` decoded as a space) back to `+02:00`.
fn repair_offset(v: &str) -> String {
    let b = v.as_bytes();
    let n = b.len();
    let shaped = |off: usize, colon: bool| {
        let digits: &[usize] = if colon { &[1, 2, 4, 5] } else { &[1, 2, 3, 4] };
        b.get(off) == Some(&b' ')
            && digits
                .iter()
                .all(|&i| b.get(off + i).is_some_and(u8::is_ascii_digit))
            && (!colon || b.get(off + 3) == Some(&b':'))
            && n > 10
            && b[..off].contains(&b':')
    };
    if n >= 6 && shaped(n - 6, true) {
        return format!("{}+{}", &v[..n - 6], &v[n - 5..]);
    }
    if n >= 5 && shaped(n - 5, false) {
        return format!("{}+{}", &v[..n - 5], &v[n - 4..]);
    }
    v.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macros() {
        for m in [
            "{clickid}",
            "[subid]",
            "%subid%",
            "#subid#",
            "{{sub1}}",
            "!!!clickRef!!!",
            "${epi}",
            "[[[subid]]]",
            "#s2#",
            "$x$",
            "<sub1>",
        ] {
            assert!(is_unreplaced_macro(m), "{m}");
            assert!(!is_present(m), "{m}");
        }
        for v in [
            "abc",
            "{",
            "{}",
            "-0.18",
            "12.5",
            "#",
            "%",
            "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ",
            "{1}",
            "a{b}",
        ] {
            assert!(!is_unreplaced_macro(v), "{v}");
        }
    }

    #[test]
    fn offsets_repaired() {
        assert_eq!(
            repair_offset("2024-05-01T10:00:00 02:00"),
            "2024-05-01T10:00:00+02:00"
        );
        assert_eq!(repair_offset("2024-05-01 10:00:00"), "2024-05-01 10:00:00");
        assert_eq!(
            repair_offset("2024-05-01T10:00:00 0200"),
            "2024-05-01T10:00:00+0200"
        );
    }
}
