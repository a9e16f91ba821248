//! Properties (a tracked site) and their settings: allowed domains,
//! attribution window, session timeout, AutoScan prefixes, consent mode and
//! how client addresses are kept.

use serde::{Deserialize, Serialize};

use crate::money::Amount;

/// How the visitor's IP address is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum IpHandling {
    /// Store it truncated (IPv4 /24, IPv6 /48). The default.
    #[default]
    Truncate,
    /// Store a keyed hash (HMAC with the server's secret): lets sessions be
    /// told apart without keeping the address.
    Hash,
    /// Store it encrypted (AEAD), so ad platforms that match on it (Meta,
    /// TikTok) receive it with late conversions; purged after the
    /// attribution window.
    Encrypt,
    /// Store nothing.
    None,
}

/// Browser pixels the tag may fire with the same event ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PixelSettings {
    pub meta: bool,
    pub google: bool,
    pub tiktok: bool,
}

impl Default for PixelSettings {
    fn default() -> Self {
        Self {
            meta: true,
            google: true,
            tiktok: true,
        }
    }
}

/// Custom event names that are conversion attempts (the ad platforms'
/// standard conversion events): sent through the collector, each ends in
/// a conversion or a refusal in the conversion log. Other custom events
/// stay events.
pub const CONVERSION_EVENTS: &[&str] = &[
    "Lead",
    "Purchase",
    "CompleteRegistration",
    "Subscribe",
    "StartTrial",
    "SubmitApplication",
    "Contact",
    "Schedule",
    "Donate",
    "AddPaymentInfo",
    "InitiateCheckout",
    "AddToCart",
];

/// On-site conversions: whether, and which, custom events sent through
/// the collector become conversions (and so reach the ad platforms). The
/// collector is anonymous, so this is an opt-in with limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnsiteSettings {
    /// Off (the default): no collected event becomes a conversion.
    pub enabled: bool,
    /// The event names that may become conversions.
    pub events: Vec<String>,
    /// Whether browsers may send conversions (`POST /collect` with an
    /// `Origin` on the property's domains). Off: only the site's backend
    /// may, through the signed `POST /collect/server`.
    pub browser: bool,
    /// Smallest and largest value a conversion may carry (in its own
    /// currency); a value outside is refused, a negative one always.
    pub min_value: Amount,
    pub max_value: Amount,
    /// Part of the server-side signing secret: raise it to change the
    /// secret.
    pub secret_version: u32,
}

impl Default for OnsiteSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            events: vec!["Lead".into()],
            browser: true,
            min_value: Amount::ZERO,
            max_value: Amount::from_micros(10_000_000_000),
            secret_version: 1,
        }
    }
}

/// How a collected event reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnsiteChannel {
    /// `POST /collect`; `origin_ok`: with an `Origin` on the property's
    /// domains (a browser on the site, not a script anywhere).
    Browser { origin_ok: bool },
    /// `POST /collect/server`, signed with the property's secret.
    Server,
}

/// Why a collected conversion event does not become a conversion: the
/// conversion log's code for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnsiteRefusal {
    /// The property has not turned on-site conversions on.
    Disabled,
    /// The event name is not one of the allowed ones.
    EventNotAllowed,
    /// Sent by a browser without an `Origin` on the property's domains.
    OriginRequired,
    /// Sent by a browser where only signed server-side events count.
    SignatureRequired,
    /// The value is negative or outside the property's bounds.
    ValueOutOfBounds,
}

impl OnsiteRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "onsite_disabled",
            Self::EventNotAllowed => "event_not_allowed",
            Self::OriginRequired => "origin_required",
            Self::SignatureRequired => "signature_required",
            Self::ValueOutOfBounds => "value_out_of_bounds",
        }
    }
}

impl OnsiteSettings {
    /// Whether an event of this name is a conversion attempt at all (a
    /// standard conversion name, or one the property allows).
    pub fn is_candidate(&self, name: &str) -> bool {
        CONVERSION_EVENTS.contains(&name) || self.events.iter().any(|e| e == name)
    }

    /// Whether a conversion attempt becomes a conversion.
    pub fn verdict(
        &self,
        name: &str,
        value: Option<Amount>,
        channel: OnsiteChannel,
    ) -> Result<(), OnsiteRefusal> {
        if !self.enabled {
            return Err(OnsiteRefusal::Disabled);
        }
        if !self.events.iter().any(|e| e == name) {
            return Err(OnsiteRefusal::EventNotAllowed);
        }
        match channel {
            OnsiteChannel::Server => {}
            OnsiteChannel::Browser { .. } if !self.browser => {
                return Err(OnsiteRefusal::SignatureRequired);
            }
            OnsiteChannel::Browser { origin_ok: false } => {
                return Err(OnsiteRefusal::OriginRequired);
            }
            OnsiteChannel::Browser { origin_ok: true } => {}
        }
        if let Some(v) = value
            && (v.is_negative() || v < self.min_value || v > self.max_value)
        {
            return Err(OnsiteRefusal::ValueOutOfBounds);
        }
        Ok(())
    }

    fn validate(&self, errs: &mut Vec<FieldError>) {
        let name_ok = |n: &String| {
            (1..=40).contains(&n.len())
                && n.starts_with(|c: char| c.is_ascii_alphabetic())
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                && !matches!(n.as_str(), "PageView" | "OutboundClick")
        };
        if self.events.len() > 50 || !self.events.iter().all(name_ok) {
            errs.push(FieldError::new(
                "settings.onsite.events",
                "invalid_event_name",
                "at most 50 custom event names (letters, digits, _), not PageView or OutboundClick",
            ));
        }
        if self.min_value.is_negative() || self.max_value < self.min_value {
            errs.push(FieldError::new(
                "settings.onsite.max_value",
                "out_of_range",
                "min_value must be 0 or more and max_value at least min_value",
            ));
        }
    }
}

pub const DEFAULT_AUTOSCAN_PREFIXES: &[&str] = &[
    "/go/",
    "/out/",
    "/recommends/",
    "/visit/",
    "/link/",
    "/refer/",
];

/// Per-property settings, stored as JSON; absent keys take defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PropertySettings {
    /// Attribution window in days: 1, 7, 30, or `None` for unlimited.
    pub attribution_window_days: Option<u32>,
    pub session_timeout_min: u32,
    pub autoscan: bool,
    pub autoscan_prefixes: Vec<String>,
    /// When true the tag stores and sends nothing until consent is given,
    /// and the server stores no identifiers for an event without consent
    /// for ad user data (see `crate::consent`).
    pub consent_required: bool,
    pub ip_handling: IpHandling,
    pub pixels: PixelSettings,
    /// Reporting currency (ISO 4217) used where a conversion has none.
    pub currency: String,
    /// On-site conversions (off by default).
    pub onsite: OnsiteSettings,
}

impl Default for PropertySettings {
    fn default() -> Self {
        Self {
            attribution_window_days: Some(30),
            session_timeout_min: 30,
            autoscan: true,
            autoscan_prefixes: DEFAULT_AUTOSCAN_PREFIXES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            consent_required: false,
            ip_handling: IpHandling::Truncate,
            pixels: PixelSettings::default(),
            currency: "USD".into(),
            onsite: OnsiteSettings::default(),
        }
    }
}

/// A settings problem, named by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

impl PropertySettings {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errs = Vec::new();
        if let Some(d) = self.attribution_window_days
            && !matches!(d, 1 | 7 | 30 | 60 | 90)
        {
            errs.push(FieldError::new(
                "settings.attribution_window_days",
                "invalid_choice",
                "must be 1, 7, 30, 60, 90 or null (unlimited)",
            ));
        }
        if !(1..=24 * 60).contains(&self.session_timeout_min) {
            errs.push(FieldError::new(
                "settings.session_timeout_min",
                "out_of_range",
                "must be between 1 and 1440 minutes",
            ));
        }
        if self.autoscan_prefixes.len() > 20
            || self.autoscan_prefixes.iter().any(|p| {
                !p.starts_with('/')
                    || p.len() > 64
                    || p.len() < 2
                    || p.contains(char::is_whitespace)
            })
        {
            errs.push(FieldError::new(
                "settings.autoscan_prefixes",
                "invalid_prefix",
                "at most 20 path prefixes, each starting with / and up to 64 characters",
            ));
        }
        if crate::money::Currency::parse(&self.currency).is_err() {
            errs.push(FieldError::new(
                "settings.currency",
                "invalid_currency",
                "must be an ISO 4217 code",
            ));
        }
        self.onsite.validate(&mut errs);
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    pub fn session_timeout_ms(&self) -> i64 {
        i64::from(self.session_timeout_min) * 60_000
    }

    pub fn attribution_window_ms(&self) -> Option<i64> {
        self.attribution_window_days
            .map(|d| i64::from(d) * 86_400_000)
    }
}

/// Normalises and checks a list of allowed domains: lower case host names
/// (no scheme, path or port), `localhost` allowed. A page is allowed on a
/// domain or any of its subdomains.
pub fn normalise_domains(input: &[String]) -> Result<Vec<String>, FieldError> {
    if input.is_empty() || input.len() > 50 {
        return Err(FieldError::new(
            "domains",
            "invalid_domains",
            "give 1 to 50 domains",
        ));
    }
    let mut out = Vec::with_capacity(input.len());
    for raw in input {
        let mut d = raw.trim().to_ascii_lowercase();
        for prefix in ["https://", "http://"] {
            if let Some(rest) = d.strip_prefix(prefix) {
                d = rest.to_owned();
            }
        }
        let d = d
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('.')
            .to_owned();
        let d = d.strip_prefix("*.").unwrap_or(&d).to_owned();
        let host_ok = !d.is_empty()
            && d.len() <= 253
            && d.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !l.starts_with('-')
            });
        if !host_ok {
            return Err(FieldError::new(
                "domains",
                "invalid_domain",
                format!("{raw:?} is not a domain name such as example.com"),
            ));
        }
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Whether `host` is one of `domains` or a subdomain of one.
pub fn host_allowed(domains: &[String], host: &str) -> bool {
    let host = host.trim_end_matches('.');
    domains.iter().any(|d| {
        host.eq_ignore_ascii_case(d)
            || (host.len() > d.len()
                && host.as_bytes()[host.len() - d.len() - 1] == b'.'
                && host[host.len() - d.len()..].eq_ignore_ascii_case(d))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains() {
        let d = normalise_domains(&[
            "https://WWW.Site.com/path".into(),
            "other.io".into(),
            "*.x.org".into(),
        ])
        .unwrap();
        assert_eq!(d, vec!["www.site.com", "other.io", "x.org"]);
        assert!(normalise_domains(&["not a domain".into()]).is_err());
        assert!(normalise_domains(&[]).is_err());
        assert!(host_allowed(&d, "blog.other.io"));
        assert!(host_allowed(&d, "OTHER.io"));
        assert!(!host_allowed(&d, "notother.io"));
        assert!(!host_allowed(&d, "other.io.evil.com"));
        assert!(!host_allowed(&d, "site.com"));
    }

    #[test]
    fn settings_defaults_and_validation() {
        let s: PropertySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s, PropertySettings::default());
        assert!(s.validate().is_ok());
        let bad: PropertySettings =
            serde_json::from_str(r#"{"attribution_window_days": 3, "session_timeout_min": 0}"#)
                .unwrap();
        assert_eq!(bad.validate().unwrap_err().len(), 2);
        assert!(serde_json::from_str::<PropertySettings>(r#"{"nope": 1}"#).is_err());
    }

    /// Settings are stored as JSON: bounds written by `rust_decimal` are
    /// strings; numbers typed into the API read too.
    #[test]
    fn onsite_bounds_keep_their_stored_form() {
        let old: OnsiteSettings =
            serde_json::from_str(r#"{"min_value": "0.50", "max_value": "10000"}"#).unwrap();
        assert_eq!(old.min_value, Amount::parse("0.5").unwrap());
        assert_eq!(old.max_value, OnsiteSettings::default().max_value);
        let typed: OnsiteSettings =
            serde_json::from_str(r#"{"min_value": 1, "max_value": 99.99}"#).unwrap();
        assert_eq!(typed.max_value, Amount::parse("99.99").unwrap());
        let out = serde_json::to_value(OnsiteSettings::default()).unwrap();
        assert_eq!(out["min_value"], "0");
        assert_eq!(out["max_value"], "10000");
    }

    #[test]
    fn onsite_verdicts() {
        use OnsiteChannel::*;
        let off = OnsiteSettings::default();
        let browser = Browser { origin_ok: true };
        assert_eq!(
            off.verdict("Lead", None, browser),
            Err(OnsiteRefusal::Disabled)
        );
        let on: OnsiteSettings = serde_json::from_str(
            r#"{"enabled": true, "events": ["Lead", "Purchase"], "max_value": 500}"#,
        )
        .unwrap();
        let v = |n: i64| Some(Amount::from_micros(n * 1_000_000));
        assert_eq!(on.verdict("Purchase", v(50), browser), Ok(()));
        assert_eq!(on.verdict("Purchase", v(50), Server), Ok(()));
        assert_eq!(
            on.verdict("Purchase", v(50), Browser { origin_ok: false }),
            Err(OnsiteRefusal::OriginRequired)
        );
        assert_eq!(
            on.verdict("Purchase", v(501), Server),
            Err(OnsiteRefusal::ValueOutOfBounds)
        );
        assert_eq!(
            on.verdict("Purchase", v(-1), Server),
            Err(OnsiteRefusal::ValueOutOfBounds)
        );
        assert_eq!(
            on.verdict("Subscribe", None, Server),
            Err(OnsiteRefusal::EventNotAllowed)
        );
        let server_only = OnsiteSettings {
            browser: false,
            ..on
        };
        assert_eq!(
            server_only.verdict("Lead", None, browser),
            Err(OnsiteRefusal::SignatureRequired)
        );
        assert!(server_only.is_candidate("Subscribe") && !server_only.is_candidate("Scrolled"));
    }
}
