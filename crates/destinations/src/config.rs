//! A destination's configuration as the API receives it (`kind`, `settings`,
//! `credentials`, `event_mapping`, all JSON) validated into a typed
//! [`Destination`]. Every problem is reported at once, as a [`FieldError`]
//! naming the field (`settings.pixel_id`) with a stable code. Credentials are
//! held as secrets: never in `Debug` output, error messages or logs; reads
//! show them masked.

use std::collections::BTreeMap;

use clicktrail_domain::mapping::normalise_name;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value, json};
use url::Url;

use crate::kind::DestinationKind;
use crate::mapping::EventMap;

/// One problem with the submitted configuration (the domain's type):
/// `field` is a dotted path (`settings.pixel_id`, `credentials.access_token`,
/// `event_mapping.Lead`, `kind`); `code` is one of `required`,
/// `invalid_type`, `invalid_format`, `invalid_url`, `too_long`,
/// `unknown_field`, `unknown_kind`, `invalid_event_name`,
/// `invalid_conversion_action`, `too_many_entries`; `message` never contains
/// a credential's value.
pub use clicktrail_domain::property::FieldError;

/// Parses the API's `kind` string.
pub fn parse_kind(kind: &str) -> Result<DestinationKind, FieldError> {
    DestinationKind::parse(kind).ok_or_else(|| {
        let known: Vec<&str> = DestinationKind::ALL.iter().map(|k| k.as_str()).collect();
        FieldError::new(
            "kind",
            "unknown_kind",
            format!("kind must be one of {}", known.join(", ")),
        )
    })
}

/// Meta Conversions API settings and token.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub(crate) pixel_id: String,
    pub(crate) test_event_code: Option<String>,
    /// `settings.limited_data_use`: send Meta's data processing options
    /// from each conversion's consent (`meta::apply_limited_data_use`).
    pub(crate) limited_data_use: bool,
    pub(crate) access_token: SecretString,
}

/// Google Ads click-conversion settings and OAuth credentials.
#[derive(Debug, Clone)]
pub struct GoogleAdsConfig {
    /// Ten digits, dashes stripped.
    pub(crate) customer_id: String,
    pub(crate) login_customer_id: Option<String>,
    /// Our event name -> `customers/{cid}/conversionActions/{id}`.
    pub(crate) conversion_actions: BTreeMap<String, String>,
    pub(crate) token_endpoint: Option<Url>,
    pub(crate) developer_token: SecretString,
    pub(crate) client_id: String,
    pub(crate) client_secret: SecretString,
    pub(crate) refresh_token: SecretString,
}

/// TikTok Events API settings and token.
#[derive(Debug, Clone)]
pub struct TiktokConfig {
    pub(crate) pixel_code: String,
    pub(crate) test_event_code: Option<String>,
    pub(crate) access_token: SecretString,
}

/// GA4 Measurement Protocol settings and secret.
#[derive(Debug, Clone)]
pub struct Ga4Config {
    pub(crate) measurement_id: String,
    pub(crate) api_secret: SecretString,
}

/// The per-kind part of a destination.
#[derive(Debug, Clone)]
pub enum Platform {
    Meta(MetaConfig),
    GoogleAds(GoogleAdsConfig),
    Tiktok(TiktokConfig),
    Ga4(Ga4Config),
}

/// A validated destination: what `send_batch` needs, nothing of storage.
#[derive(Debug, Clone)]
pub struct Destination {
    pub(crate) kind: DestinationKind,
    /// `settings.endpoint`: replaces the platform's base URL (scheme, host,
    /// optional path prefix; no trailing slash).
    pub(crate) endpoint: Option<Url>,
    pub(crate) platform: Platform,
    pub(crate) mapping: EventMap,
}

/// Validates a destination's configuration. All problems are returned
/// together.
pub fn validate(
    kind: DestinationKind,
    settings: &Value,
    credentials: &Value,
    event_mapping: &Value,
) -> Result<Destination, Vec<FieldError>> {
    let mut errors = Vec::new();
    let empty = Map::new();
    let settings = object("settings", settings, &mut errors).unwrap_or(&empty);
    let credentials = object("credentials", credentials, &mut errors).unwrap_or(&empty);

    let endpoint = optional_str(settings, "settings", "endpoint", &mut errors)
        .and_then(|s| parse_base_url(&s, "settings.endpoint", &mut errors));

    let platform = match kind {
        DestinationKind::MetaCapi => {
            unknown_fields(
                settings,
                "settings",
                &[
                    "endpoint",
                    "pixel_id",
                    "test_event_code",
                    "limited_data_use",
                ],
                &mut errors,
            );
            unknown_fields(credentials, "credentials", &["access_token"], &mut errors);
            let limited_data_use =
                optional_bool(settings, "settings", "limited_data_use", &mut errors);
            let pixel_id =
                required_id(settings, "settings", "pixel_id", &mut errors).and_then(|p| {
                    check(
                        &p,
                        "settings.pixel_id",
                        &mut errors,
                        p.len() <= 32 && p.bytes().all(|b| b.is_ascii_digit()),
                        "a pixel id is digits only, as shown in Events Manager",
                    )
                });
            let test_event_code = test_event_code(settings, &mut errors);
            let access_token = secret(credentials, "access_token", &mut errors);
            match (pixel_id, access_token) {
                (Some(pixel_id), Some(access_token)) => Some(Platform::Meta(MetaConfig {
                    pixel_id,
                    test_event_code,
                    limited_data_use,
                    access_token,
                })),
                _ => None,
            }
        }
        DestinationKind::GoogleAds => {
            unknown_fields(
                settings,
                "settings",
                &[
                    "endpoint",
                    "customer_id",
                    "login_customer_id",
                    "conversion_actions",
                    "token_endpoint",
                ],
                &mut errors,
            );
            unknown_fields(
                credentials,
                "credentials",
                &[
                    "developer_token",
                    "client_id",
                    "client_secret",
                    "refresh_token",
                ],
                &mut errors,
            );
            let customer_id = required_id(settings, "settings", "customer_id", &mut errors)
                .and_then(|c| parse_customer_id(&c, "settings.customer_id", &mut errors));
            let login_customer_id =
                optional_id(settings, "settings", "login_customer_id", &mut errors)
                    .and_then(|c| parse_customer_id(&c, "settings.login_customer_id", &mut errors));
            let token_endpoint = optional_str(settings, "settings", "token_endpoint", &mut errors)
                .and_then(|s| parse_token_url(&s, &mut errors));
            let conversion_actions =
                conversion_actions(settings, customer_id.as_deref(), &mut errors);
            let developer_token = secret(credentials, "developer_token", &mut errors);
            let client_id = secret(credentials, "client_id", &mut errors);
            let client_secret = secret(credentials, "client_secret", &mut errors);
            let refresh_token = secret(credentials, "refresh_token", &mut errors);
            match (
                customer_id,
                developer_token,
                client_id,
                client_secret,
                refresh_token,
            ) {
                (
                    Some(customer_id),
                    Some(developer_token),
                    Some(client_id),
                    Some(client_secret),
                    Some(refresh_token),
                ) => Some(Platform::GoogleAds(GoogleAdsConfig {
                    customer_id,
                    login_customer_id,
                    conversion_actions,
                    token_endpoint,
                    developer_token,
                    client_id: client_id.expose_secret().to_owned(),
                    client_secret,
                    refresh_token,
                })),
                _ => None,
            }
        }
        DestinationKind::Tiktok => {
            unknown_fields(
                settings,
                "settings",
                &["endpoint", "pixel_code", "test_event_code"],
                &mut errors,
            );
            unknown_fields(credentials, "credentials", &["access_token"], &mut errors);
            let pixel_code = required_str(settings, "settings", "pixel_code", &mut errors)
                .and_then(|p| {
                    check(
                        &p,
                        "settings.pixel_code",
                        &mut errors,
                        p.len() <= 64
                            && p.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'),
                        "a pixel code is letters and digits, as shown in TikTok Events Manager",
                    )
                });
            let test_event_code = test_event_code(settings, &mut errors);
            let access_token = secret(credentials, "access_token", &mut errors);
            match (pixel_code, access_token) {
                (Some(pixel_code), Some(access_token)) => Some(Platform::Tiktok(TiktokConfig {
                    pixel_code,
                    test_event_code,
                    access_token,
                })),
                _ => None,
            }
        }
        DestinationKind::Ga4 => {
            unknown_fields(
                settings,
                "settings",
                &["endpoint", "measurement_id"],
                &mut errors,
            );
            unknown_fields(credentials, "credentials", &["api_secret"], &mut errors);
            let measurement_id = required_str(settings, "settings", "measurement_id", &mut errors)
                .map(|m| m.to_ascii_uppercase())
                .and_then(|m| {
                    let ok = m.strip_prefix("G-").is_some_and(|rest| {
                        (4..=20).contains(&rest.len())
                            && rest.bytes().all(|b| b.is_ascii_alphanumeric())
                    });
                    check(
                        &m,
                        "settings.measurement_id",
                        &mut errors,
                        ok,
                        "a measurement id looks like G-XXXXXXXXXX",
                    )
                });
            let api_secret = secret(credentials, "api_secret", &mut errors);
            match (measurement_id, api_secret) {
                (Some(measurement_id), Some(api_secret)) => Some(Platform::Ga4(Ga4Config {
                    measurement_id,
                    api_secret,
                })),
                _ => None,
            }
        }
    };

    let mapping = EventMap::parse(
        kind,
        event_mapping,
        platform_customer_id(platform.as_ref()),
        &mut errors,
    );

    let google_without_actions = matches!(&platform, Some(Platform::GoogleAds(g)) if g.conversion_actions.is_empty() && !mapping.has_targets());
    if google_without_actions {
        errors.push(FieldError::new(
            "settings.conversion_actions",
            "required",
            "map at least one event to a conversion action, e.g. {\"Lead\": \"customers/1234567890/conversionActions/987654321\"}",
        ));
    }

    match platform {
        Some(platform) if errors.is_empty() => Ok(Destination {
            kind,
            endpoint,
            platform,
            mapping,
        }),
        _ => Err(errors),
    }
}

fn platform_customer_id(platform: Option<&Platform>) -> Option<&str> {
    match platform {
        Some(Platform::GoogleAds(g)) => Some(&g.customer_id),
        _ => None,
    }
}

impl Destination {
    pub fn kind(&self) -> DestinationKind {
        self.kind
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    /// The `settings.endpoint` override, if any.
    pub fn endpoint(&self) -> Option<&Url> {
        self.endpoint.as_ref()
    }

    /// The event mapping, normalised, as stored and shown.
    pub fn event_mapping_json(&self) -> Value {
        self.mapping.to_json()
    }

    /// Settings, normalised (customer ids without dashes, conversion actions
    /// expanded to resource names), as stored and shown. Validating this
    /// value again gives the same destination.
    pub fn settings_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(e) = &self.endpoint {
            m.insert("endpoint".into(), json!(endpoint_string(e)));
        }
        match &self.platform {
            Platform::Meta(c) => {
                m.insert("pixel_id".into(), json!(c.pixel_id));
                if let Some(t) = &c.test_event_code {
                    m.insert("test_event_code".into(), json!(t));
                }
                if c.limited_data_use {
                    m.insert("limited_data_use".into(), json!(true));
                }
            }
            Platform::GoogleAds(c) => {
                m.insert("customer_id".into(), json!(c.customer_id));
                if let Some(l) = &c.login_customer_id {
                    m.insert("login_customer_id".into(), json!(l));
                }
                m.insert("conversion_actions".into(), json!(c.conversion_actions));
                if let Some(t) = &c.token_endpoint {
                    m.insert("token_endpoint".into(), json!(t.as_str()));
                }
            }
            Platform::Tiktok(c) => {
                m.insert("pixel_code".into(), json!(c.pixel_code));
                if let Some(t) = &c.test_event_code {
                    m.insert("test_event_code".into(), json!(t));
                }
            }
            Platform::Ga4(c) => {
                m.insert("measurement_id".into(), json!(c.measurement_id));
            }
        }
        Value::Object(m)
    }

    /// Credentials with every value masked (`EAAB…x9Q2`), for API reads.
    pub fn masked_credentials(&self) -> Value {
        Value::Object(
            self.credential_fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(mask_secret(v))))
                .collect(),
        )
    }

    /// Credentials in clear, for the store to encrypt at rest. The only way
    /// out of this crate for a secret besides the requests themselves.
    pub fn credentials_to_store(&self) -> Value {
        Value::Object(
            self.credential_fields()
                .into_iter()
                .map(|(k, v)| (k.to_owned(), json!(v)))
                .collect(),
        )
    }

    /// Every secret value of this destination, for redacting response
    /// excerpts.
    pub(crate) fn secret_values(&self) -> Vec<&str> {
        self.credential_fields()
            .into_iter()
            .filter(|(k, _)| *k != "client_id")
            .map(|(_, v)| v)
            .collect()
    }

    fn credential_fields(&self) -> Vec<(&'static str, &str)> {
        match &self.platform {
            Platform::Meta(c) => vec![("access_token", c.access_token.expose_secret())],
            Platform::GoogleAds(c) => vec![
                ("developer_token", c.developer_token.expose_secret()),
                ("client_id", c.client_id.as_str()),
                ("client_secret", c.client_secret.expose_secret()),
                ("refresh_token", c.refresh_token.expose_secret()),
            ],
            Platform::Tiktok(c) => vec![("access_token", c.access_token.expose_secret())],
            Platform::Ga4(c) => vec![("api_secret", c.api_secret.expose_secret())],
        }
    }

    /// The base URL requests go to: the override or the platform's.
    pub(crate) fn base_url(&self, default: &str) -> Result<Url, url::ParseError> {
        match &self.endpoint {
            Some(u) => Ok(u.clone()),
            None => Url::parse(default),
        }
    }
}

fn endpoint_string(u: &Url) -> String {
    u.as_str().trim_end_matches('/').to_owned()
}

/// Masks a credential for display: a few characters at each end of long
/// values (`EAAB…x9Q2`), fewer for short ones, none below 8 characters.
pub fn mask_secret(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let keep = match chars.len() {
        n if n >= 16 => 4,
        n if n >= 8 => 2,
        _ => 0,
    };
    if keep == 0 {
        return "…".to_owned();
    }
    let head: String = chars[..keep].iter().collect();
    let tail: String = chars[chars.len() - keep..].iter().collect();
    format!("{head}…{tail}")
}

// ---- field helpers -------------------------------------------------------

fn object<'a>(
    name: &str,
    v: &'a Value,
    errors: &mut Vec<FieldError>,
) -> Option<&'a Map<String, Value>> {
    match v {
        Value::Object(m) => Some(m),
        Value::Null => None,
        _ => {
            errors.push(FieldError::new(
                name,
                "invalid_type",
                format!("{name} must be a JSON object"),
            ));
            None
        }
    }
}

fn unknown_fields(
    map: &Map<String, Value>,
    prefix: &str,
    allowed: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("{prefix}.{key}"),
                "unknown_field",
                format!("unknown field; {prefix} accepts {}", allowed.join(", ")),
            ));
        }
    }
}

/// A string field; `null`, absent and blank are all "not given".
fn optional_str(
    map: &Map<String, Value>,
    prefix: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match map.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.len() > 2048 {
                errors.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "too_long",
                    "at most 2048 characters",
                ));
                return None;
            }
            Some(s.to_owned())
        }
        Some(_) => {
            errors.push(FieldError::new(
                format!("{prefix}.{name}"),
                "invalid_type",
                "must be a string",
            ));
            None
        }
    }
}

fn required_str(
    map: &Map<String, Value>,
    prefix: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let before = errors.len();
    let v = optional_str(map, prefix, name, errors);
    if v.is_none() && errors.len() == before {
        errors.push(FieldError::new(
            format!("{prefix}.{name}"),
            "required",
            "required",
        ));
    }
    v
}

/// A boolean field; `null` and absent are `false`.
fn optional_bool(
    map: &Map<String, Value>,
    prefix: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> bool {
    match map.get(name) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.push(FieldError::new(
                format!("{prefix}.{name}"),
                "invalid_type",
                "must be true or false",
            ));
            false
        }
    }
}

/// An id that users paste either as a string or as a JSON number.
fn optional_id(
    map: &Map<String, Value>,
    prefix: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match map.get(name) {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(n) => Some(n.to_string()),
            None => {
                errors.push(FieldError::new(
                    format!("{prefix}.{name}"),
                    "invalid_format",
                    "must be a positive integer or a string",
                ));
                None
            }
        },
        _ => optional_str(map, prefix, name, errors),
    }
}

fn required_id(
    map: &Map<String, Value>,
    prefix: &str,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    let before = errors.len();
    let v = optional_id(map, prefix, name, errors);
    if v.is_none() && errors.len() == before {
        errors.push(FieldError::new(
            format!("{prefix}.{name}"),
            "required",
            "required",
        ));
    }
    v
}

fn check(
    value: &str,
    field: &str,
    errors: &mut Vec<FieldError>,
    ok: bool,
    message: &str,
) -> Option<String> {
    if ok {
        Some(value.to_owned())
    } else {
        errors.push(FieldError::new(field, "invalid_format", message));
        None
    }
}

fn secret(
    map: &Map<String, Value>,
    name: &str,
    errors: &mut Vec<FieldError>,
) -> Option<SecretString> {
    let field = format!("credentials.{name}");
    match map.get(name) {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(field, "required", "required"));
            None
        }
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                errors.push(FieldError::new(field, "required", "required"));
                None
            } else if s.len() > 4096 {
                errors.push(FieldError::new(
                    field,
                    "too_long",
                    "at most 4096 characters",
                ));
                None
            } else if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
                errors.push(FieldError::new(
                    field,
                    "invalid_format",
                    "must not contain spaces or control characters",
                ));
                None
            } else {
                Some(SecretString::from(s.to_owned()))
            }
        }
        Some(_) => {
            errors.push(FieldError::new(field, "invalid_type", "must be a string"));
            None
        }
    }
}

fn test_event_code(settings: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let code = optional_str(settings, "settings", "test_event_code", errors)?;
    check(
        &code,
        "settings.test_event_code",
        errors,
        code.len() <= 100 && code.bytes().all(|b| b.is_ascii_graphic()),
        "a test event code is letters and digits such as TEST12345",
    )
}

/// Customer ids as Google shows them (`123-456-7890`) or bare digits.
fn parse_customer_id(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let digits: String = raw.chars().filter(|c| !matches!(c, '-' | ' ')).collect();
    let ok = digits.len() == 10 && digits.bytes().all(|b| b.is_ascii_digit());
    check(
        &digits,
        field,
        errors,
        ok,
        "a customer id is 10 digits, such as 123-456-7890",
    )
}

/// `customers/{cid}/conversionActions/{id}`, or a bare numeric id expanded
/// with the destination's customer id.
pub(crate) fn conversion_action(raw: &str, customer_id: Option<&str>) -> Option<String> {
    let raw = raw.trim();
    if !raw.is_empty() && raw.len() <= 20 && raw.bytes().all(|b| b.is_ascii_digit()) {
        return customer_id.map(|cid| format!("customers/{cid}/conversionActions/{raw}"));
    }
    let rest = raw.strip_prefix("customers/")?;
    let (cid, id) = rest.split_once("/conversionActions/")?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    (digits(cid) && digits(id)).then(|| raw.to_owned())
}

fn conversion_actions(
    settings: &Map<String, Value>,
    customer_id: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let map = match settings.get("conversion_actions") {
        None | Some(Value::Null) => return out,
        Some(Value::Object(m)) => m,
        Some(_) => {
            errors.push(FieldError::new(
                "settings.conversion_actions",
                "invalid_type",
                "must be an object: our event name -> conversion action",
            ));
            return out;
        }
    };
    if map.len() > 100 {
        errors.push(FieldError::new(
            "settings.conversion_actions",
            "too_many_entries",
            "at most 100 entries",
        ));
        return out;
    }
    for (event, v) in map {
        let field = format!("settings.conversion_actions.{event}");
        if !crate::mapping::is_our_event_name(event) {
            errors.push(FieldError::new(
                field,
                "invalid_event_name",
                "event names are 1 to 40 letters, digits or _, starting with a letter",
            ));
            continue;
        }
        let action = match v {
            Value::String(s) => conversion_action(s, customer_id),
            Value::Number(n) => n
                .as_u64()
                .and_then(|n| conversion_action(&n.to_string(), customer_id)),
            _ => None,
        };
        match action {
            Some(a) => {
                if out
                    .keys()
                    .any(|k: &String| normalise_name(k) == normalise_name(event))
                {
                    errors.push(FieldError::new(
                        field,
                        "invalid_event_name",
                        "listed twice (names are matched case-insensitively)",
                    ));
                } else {
                    out.insert(event.clone(), a);
                }
            }
            None => errors.push(FieldError::new(
                field,
                "invalid_conversion_action",
                "expected customers/{customer_id}/conversionActions/{id} or the numeric id",
            )),
        }
    }
    out
}

/// A base URL override: http(s), a host, no credentials, query or fragment.
fn parse_base_url(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<Url> {
    let url = checked_url(raw, field, errors)?;
    let trimmed = endpoint_string(&url);
    Url::parse(&trimmed).ok()
}

fn parse_token_url(raw: &str, errors: &mut Vec<FieldError>) -> Option<Url> {
    checked_url(raw, "settings.token_endpoint", errors)
}

fn checked_url(raw: &str, field: &str, errors: &mut Vec<FieldError>) -> Option<Url> {
    let bad = |errors: &mut Vec<FieldError>, why: &str| {
        errors.push(FieldError::new(field, "invalid_url", why));
        None
    };
    let Ok(url) = Url::parse(raw) else {
        return bad(errors, "must be an absolute http(s) URL");
    };
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return bad(errors, "must be an absolute http(s) URL");
    }
    if !url.username().is_empty() || url.password().is_some() {
        return bad(errors, "must not carry a user name or password");
    }
    if url.query().is_some() || url.fragment().is_some() {
        return bad(errors, "must not carry a query or fragment");
    }
    Some(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(errs: &[FieldError]) -> Vec<(String, &'static str)> {
        errs.iter().map(|e| (e.field.clone(), e.code)).collect()
    }

    #[test]
    fn meta_valid() {
        let d = validate(
            DestinationKind::MetaCapi,
            &json!({"pixel_id": "1234567890123456", "test_event_code": "TEST123", "endpoint": "http://127.0.0.1:9/"}),
            &json!({"access_token": "EAABsecretsecretsecretx9Q2"}),
            &Value::Null,
        )
        .unwrap();
        assert_eq!(d.kind(), DestinationKind::MetaCapi);
        assert_eq!(d.settings_json()["endpoint"], "http://127.0.0.1:9");
        assert_eq!(d.masked_credentials(), json!({"access_token": "EAAB…x9Q2"}));
        let debug = format!("{d:?}");
        assert!(!debug.contains("secretsecret"), "{debug}");
        // Round trip.
        let again = validate(
            d.kind(),
            &d.settings_json(),
            &d.credentials_to_store(),
            &d.event_mapping_json(),
        )
        .unwrap();
        assert_eq!(again.settings_json(), d.settings_json());
        assert!(d.settings_json().get("limited_data_use").is_none());
        // Limited Data Use: a boolean, kept through the round trip.
        let ldu = validate(
            DestinationKind::MetaCapi,
            &json!({"pixel_id": "1234567890123456", "limited_data_use": true}),
            &json!({"access_token": "t0ken"}),
            &Value::Null,
        )
        .unwrap();
        assert_eq!(ldu.settings_json()["limited_data_use"], true);
        assert!(matches!(ldu.platform(), Platform::Meta(m) if m.limited_data_use));
        let errs = validate(
            DestinationKind::MetaCapi,
            &json!({"pixel_id": "1234567890123456", "limited_data_use": "yes"}),
            &json!({"access_token": "t0ken"}),
            &Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            vec![("settings.limited_data_use".to_owned(), "invalid_type")]
        );
        // Numbers are accepted for ids.
        assert!(
            validate(
                DestinationKind::MetaCapi,
                &json!({"pixel_id": 123456789012345u64}),
                &json!({"access_token": "t0ken"}),
                &Value::Null
            )
            .is_ok()
        );
    }

    #[test]
    fn meta_invalid_reports_everything_without_secrets() {
        let errs = validate(
            DestinationKind::MetaCapi,
            &json!({"pixel_id": "abc", "pixelId": "1", "endpoint": "ftp://x"}),
            &json!({"access_token": "has space SECRETVALUE"}),
            &json!({"Lead": 5}),
        )
        .unwrap_err();
        let c = codes(&errs);
        assert!(
            c.contains(&("settings.pixel_id".into(), "invalid_format")),
            "{c:?}"
        );
        assert!(
            c.contains(&("settings.pixelId".into(), "unknown_field")),
            "{c:?}"
        );
        assert!(
            c.contains(&("settings.endpoint".into(), "invalid_url")),
            "{c:?}"
        );
        assert!(
            c.contains(&("credentials.access_token".into(), "invalid_format")),
            "{c:?}"
        );
        assert!(
            c.contains(&("event_mapping.Lead".into(), "invalid_type")),
            "{c:?}"
        );
        for e in &errs {
            assert!(!e.message.contains("SECRETVALUE"));
        }
        let errs = validate(
            DestinationKind::MetaCapi,
            &json!({}),
            &json!({}),
            &Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            vec![
                ("settings.pixel_id".into(), "required"),
                ("credentials.access_token".into(), "required")
            ]
        );
        let errs = validate(
            DestinationKind::MetaCapi,
            &json!([]),
            &json!("x"),
            &Value::Null,
        )
        .unwrap_err();
        assert!(codes(&errs).contains(&("settings".into(), "invalid_type")));
        assert!(codes(&errs).contains(&("credentials".into(), "invalid_type")));
    }

    fn google_creds() -> Value {
        json!({"developer_token": "devtok-123456", "client_id": "cid.apps.googleusercontent.com",
               "client_secret": "GOCSPX-secret", "refresh_token": "1//refresh-token-value"})
    }

    #[test]
    fn google_valid_and_normalised() {
        let d = validate(
            DestinationKind::GoogleAds,
            &json!({"customer_id": "123-456-7890", "login_customer_id": 9876543210u64,
                    "conversion_actions": {"Lead": "customers/1234567890/conversionActions/111", "Purchase": "222"},
                    "token_endpoint": "http://127.0.0.1:1/token"}),
            &google_creds(),
            &Value::Null,
        )
        .unwrap();
        let s = d.settings_json();
        assert_eq!(s["customer_id"], "1234567890");
        assert_eq!(s["login_customer_id"], "9876543210");
        assert_eq!(
            s["conversion_actions"]["Purchase"],
            "customers/1234567890/conversionActions/222"
        );
        let m = d.masked_credentials();
        assert_eq!(m["refresh_token"], "1//r…alue");
        assert_eq!(m["developer_token"], "de…56");
        assert!(!format!("{d:?}").contains("GOCSPX"));
    }

    #[test]
    fn google_invalid() {
        let errs = validate(
            DestinationKind::GoogleAds,
            &json!({"customer_id": "12345", "conversion_actions": {"Lead": "conversionActions/1", "bad name": "1"}}),
            &json!({"developer_token": "x"}),
            &Value::Null,
        )
        .unwrap_err();
        let c = codes(&errs);
        assert!(
            c.contains(&("settings.customer_id".into(), "invalid_format")),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "settings.conversion_actions.Lead".into(),
                "invalid_conversion_action"
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&(
                "settings.conversion_actions.bad name".into(),
                "invalid_event_name"
            )),
            "{c:?}"
        );
        assert!(
            c.contains(&("credentials.client_secret".into(), "required")),
            "{c:?}"
        );
        // No conversion action at all.
        let errs = validate(
            DestinationKind::GoogleAds,
            &json!({"customer_id": "1234567890"}),
            &google_creds(),
            &Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            vec![("settings.conversion_actions".into(), "required")]
        );
    }

    #[test]
    fn tiktok_and_ga4() {
        assert!(
            validate(
                DestinationKind::Tiktok,
                &json!({"pixel_code": "C4A1B2C3D4E5F6G7H8I9"}),
                &json!({"access_token": "tt"}),
                &Value::Null
            )
            .is_ok()
        );
        let errs = validate(
            DestinationKind::Tiktok,
            &json!({"pixel_code": "bad code!"}),
            &json!({"access_token": "tt"}),
            &Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            vec![("settings.pixel_code".into(), "invalid_format")]
        );
        let d = validate(
            DestinationKind::Ga4,
            &json!({"measurement_id": "g-abc123XYZ"}),
            &json!({"api_secret": "s3cr3t-api-secret"}),
            &Value::Null,
        )
        .unwrap();
        assert_eq!(d.settings_json()["measurement_id"], "G-ABC123XYZ");
        let errs = validate(
            DestinationKind::Ga4,
            &json!({"measurement_id": "UA-1234-1"}),
            &json!({}),
            &Value::Null,
        )
        .unwrap_err();
        assert_eq!(
            codes(&errs),
            vec![
                ("settings.measurement_id".into(), "invalid_format"),
                ("credentials.api_secret".into(), "required")
            ]
        );
    }

    #[test]
    fn endpoints() {
        let mut e = Vec::new();
        assert!(parse_base_url("https://proxy.example/meta/", "f", &mut e).is_some());
        assert!(parse_base_url("http://user:pw@x", "f", &mut e).is_none());
        assert!(parse_base_url("http://x/?a=1", "f", &mut e).is_none());
        assert!(parse_base_url("localhost:80", "f", &mut e).is_none());
        assert_eq!(e.len(), 3);
        assert!(e.iter().all(|e| e.code == "invalid_url"));
    }

    #[test]
    fn masking() {
        assert_eq!(mask_secret("EAABxxxxxxxxxxxxxxxxx9Q2"), "EAAB…x9Q2");
        assert_eq!(mask_secret("abcdefghij"), "ab…ij");
        assert_eq!(mask_secret("short"), "…");
        assert_eq!(mask_secret("ééééééééééééééééé"), "éééé…éééé");
    }

    #[test]
    fn kind_parse() {
        assert_eq!(parse_kind("ga4").unwrap(), DestinationKind::Ga4);
        assert_eq!(parse_kind("facebook").unwrap_err().code, "unknown_kind");
    }
}
