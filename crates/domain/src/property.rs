//! Properties (a tracked site) and their settings: allowed domains,
//! attribution window, session timeout, AutoScan prefixes, consent mode and
//! how client addresses are kept.

use serde::{Deserialize, Serialize};

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
    /// When true the tag stores and sends nothing until consent is given.
    pub consent_required: bool,
    pub ip_handling: IpHandling,
    pub pixels: PixelSettings,
    /// Reporting currency (ISO 4217) used where a conversion has none.
    pub currency: String,
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
}
