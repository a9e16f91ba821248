//! Properties (a tracked site) and their settings: allowed domains (host
//! names only: [`normalise_domains`], [`parse_domain_list`]), attribution
//! window, session timeout, AutoScan prefixes, consent mode, how client
//! addresses are kept, reporting currency and time zone, and how long raw
//! data is kept ([`Retention`]).

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
    /// attribution window (see [`Retention::encrypted_ip_days`]).
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

/// How long a property's raw data is kept (`settings.retention`).
/// Conversions, the delivery log and the hourly rollups the reports read
/// are kept for good; what the settings bound is the raw traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Days raw events (page views, clicks on links, custom events) are
    /// kept, from when they were received.
    pub events_days: u32,
}

impl RetentionSettings {
    pub const DEFAULT_EVENTS_DAYS: u32 = 400;
    pub const MIN_EVENTS_DAYS: u32 = 30;
    pub const MAX_EVENTS_DAYS: u32 = 3650;
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            events_days: Self::DEFAULT_EVENTS_DAYS,
        }
    }
}

/// Days added to the attribution window before a click, its session or an
/// encrypted address may go: a network reports late (date-only reports,
/// retried postbacks) and a delivery may wait for retries after the
/// conversion is recorded.
pub const RETENTION_MARGIN_DAYS: u32 = 7;

/// The window an encrypted address is kept for when the attribution window
/// is unlimited: no ad platform takes a click conversion older than 90
/// days (Google Ads' limit; Meta's is 7), so an address older than that
/// can never be sent.
pub const UNLIMITED_WINDOW_IP_DAYS: u32 = 90;

/// What a property keeps, for how long: derived from its settings, the one
/// place the retention job and the dashboard read it from. `None` means
/// kept for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Retention {
    /// Raw events: `settings.retention.events_days`.
    pub events_days: u32,
    /// Clicks and sessions (a session holds the click's traffic source and
    /// ad click ids): at least as long as events, and as long as the
    /// attribution window lets a conversion find its click (plus
    /// [`RETENTION_MARGIN_DAYS`]); for good with an unlimited window.
    pub clicks_days: Option<u32>,
    /// Encrypted client addresses (`ip_handling = encrypt`): cleared once
    /// the attribution window (plus the margin) has passed, since they
    /// exist only to be sent with a late conversion. Applies to addresses
    /// encrypted while the property was in that mode, whatever the mode is
    /// now; a truncated or hashed form stays with its session.
    pub encrypted_ip_days: u32,
}

impl Retention {
    /// Milliseconds in `days`.
    pub fn days_ms(days: u32) -> i64 {
        i64::from(days) * 86_400_000
    }

    /// The oldest time still kept, for a period of `days` ending at `now`.
    pub fn cutoff(now_ms: i64, days: u32) -> i64 {
        now_ms.saturating_sub(Self::days_ms(days))
    }
}

/// The paths AutoScan looks under when a property names none: the usual
/// redirect plugins' link prefixes.
pub const DEFAULT_AUTOSCAN_PREFIXES: &[&str] = crate::links::REDIRECT_PLUGIN_PREFIXES;

/// The time zone of a property that names none.
pub const DEFAULT_TIMEZONE: &str = "UTC";

/// Whether `name` is an IANA time zone name (`Europe/Malta`, `UTC`), as
/// spelled in the time zone database.
pub fn valid_timezone(name: &str) -> bool {
    name.parse::<chrono_tz::Tz>().is_ok()
}

/// Every IANA time zone name, in the database's order (for a form's list).
pub fn timezone_names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

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
    /// The property's time zone (an IANA name such as `Europe/Malta`),
    /// `UTC` by default.
    pub timezone: String,
    /// On-site conversions (off by default).
    pub onsite: OnsiteSettings,
    /// How long raw data is kept.
    pub retention: RetentionSettings,
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
            timezone: DEFAULT_TIMEZONE.into(),
            onsite: OnsiteSettings::default(),
            retention: RetentionSettings::default(),
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
        if !valid_timezone(&self.timezone) {
            errs.push(FieldError::new(
                "settings.timezone",
                "invalid_timezone",
                format!(
                    "{:?} is not an IANA time zone name such as Europe/Malta or UTC",
                    self.timezone
                ),
            ));
        }
        self.onsite.validate(&mut errs);
        if !(RetentionSettings::MIN_EVENTS_DAYS..=RetentionSettings::MAX_EVENTS_DAYS)
            .contains(&self.retention.events_days)
        {
            errs.push(FieldError::new(
                "settings.retention.events_days",
                "out_of_range",
                format!(
                    "must be between {} and {} days",
                    RetentionSettings::MIN_EVENTS_DAYS,
                    RetentionSettings::MAX_EVENTS_DAYS
                ),
            ));
        }
        if errs.is_empty() { Ok(()) } else { Err(errs) }
    }

    /// What this property keeps, for how long.
    pub fn retention(&self) -> Retention {
        let events_days = self.retention.events_days;
        let clicks_days = self
            .attribution_window_days
            .map(|w| events_days.max(w + RETENTION_MARGIN_DAYS));
        let encrypted_ip_days = self
            .attribution_window_days
            .unwrap_or(UNLIMITED_WINDOW_IP_DAYS)
            + RETENTION_MARGIN_DAYS;
        Retention {
            events_days,
            clicks_days,
            encrypted_ip_days,
        }
    }

    pub fn session_timeout_ms(&self) -> i64 {
        i64::from(self.session_timeout_min) * 60_000
    }

    pub fn attribution_window_ms(&self) -> Option<i64> {
        self.attribution_window_days
            .map(|d| i64::from(d) * 86_400_000)
    }
}

/// Why a typed domain is not a host name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HostProblem {
    Empty,
    Spaces,
    NoDot,
    BadChar(char),
    BadLabel,
    TooLong,
    NotAHost,
}

impl HostProblem {
    fn explain(self) -> String {
        match self {
            Self::Empty => "is empty".into(),
            Self::Spaces => {
                "contains spaces (separate several domains with commas or new lines)".into()
            }
            Self::NoDot => "has no dot (a domain looks like example.com)".into(),
            Self::BadChar(c) => format!("contains {c:?}, which a host name cannot hold"),
            Self::BadLabel => "has an empty part, or one starting or ending with -".into(),
            Self::TooLong => "is too long for a host name".into(),
            Self::NotAHost => "is neither a domain name nor an IPv4 address".into(),
        }
    }
}

/// One typed domain as a lower-case host name: a URL reduces to its host
/// (scheme, port, path, query dropped), a leading `*.` and a trailing dot
/// are dropped. A host needs a dot (`localhost` excepted), letters, digits
/// and `-` only (so no spaces or underscores), and must not end in a
/// number unless it is an IPv4 address.
fn normalise_host(raw: &str) -> Result<String, HostProblem> {
    let mut d = raw.trim().to_ascii_lowercase();
    for prefix in ["https://", "http://"] {
        if let Some(rest) = d.strip_prefix(prefix) {
            d = rest.to_owned();
        }
    }
    let mut host = d.split(['/', '?', '#']).next().unwrap_or("");
    // A port (`localhost:3000`) belongs to the URL, not the host.
    if let Some((h, port)) = host.rsplit_once(':')
        && !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
    {
        host = h;
    }
    let host = host.trim_end_matches('.');
    let host = host.strip_prefix("*.").unwrap_or(host);
    if host.is_empty() {
        return Err(HostProblem::Empty);
    }
    if host.contains(char::is_whitespace) {
        return Err(HostProblem::Spaces);
    }
    if let Some(c) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return Err(HostProblem::BadChar(c));
    }
    if host.len() > 253 {
        return Err(HostProblem::TooLong);
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels
        .iter()
        .any(|l| l.is_empty() || l.len() > 63 || l.starts_with('-') || l.ends_with('-'))
    {
        return Err(HostProblem::BadLabel);
    }
    if labels.len() < 2 && host != "localhost" {
        return Err(HostProblem::NoDot);
    }
    let numeric = |l: &&str| l.bytes().all(|b| b.is_ascii_digit());
    if labels.last().is_some_and(numeric)
        && !(labels.len() == 4 && labels.iter().all(|l| numeric(l) && l.parse::<u8>().is_ok()))
    {
        return Err(HostProblem::NotAHost);
    }
    Ok(host.to_owned())
}

fn invalid_domain(raw: &str, problem: HostProblem) -> FieldError {
    FieldError::new(
        "domains",
        "invalid_domain",
        format!("{raw:?} is not a host name: it {}", problem.explain()),
    )
}

/// Normalises and checks a list of allowed domains: lower case host names
/// (see [`normalise_host`]: no scheme, path or port), `localhost`
/// allowed. A page is allowed on a domain or any of its subdomains. The
/// first entry that is not a host name is refused (`invalid_domain`, its
/// message naming it): "my casino site" is a mistake, not three domains.
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
        let d = normalise_host(raw).map_err(|p| invalid_domain(raw, p))?;
        if !out.contains(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

/// Domains typed as text (the dashboard's box): separated by commas or new
/// lines. Spaces separate domains only when every word is a host name
/// (`a.com b.com`); otherwise the whole entry is refused, named as typed
/// (`my casino site`).
pub fn parse_domain_list(text: &str) -> Result<Vec<String>, FieldError> {
    let mut entries = Vec::new();
    for entry in text
        .split(['\n', ','])
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let words: Vec<&str> = entry.split_whitespace().collect();
        if words.len() > 1 {
            if words.iter().any(|w| normalise_host(w).is_err()) {
                return Err(invalid_domain(entry, HostProblem::Spaces));
            }
            entries.extend(words.iter().map(|w| (*w).to_owned()));
        } else {
            entries.push(entry.to_owned());
        }
    }
    normalise_domains(&entries)
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
            "http://localhost:3000/".into(),
            "127.0.0.1".into(),
            "site.com.".into(),
        ])
        .unwrap();
        assert_eq!(
            d,
            vec![
                "www.site.com",
                "other.io",
                "x.org",
                "localhost",
                "127.0.0.1",
                "site.com"
            ]
        );
        assert!(normalise_domains(&[]).is_err());
        assert!(host_allowed(&d, "blog.other.io"));
        assert!(host_allowed(&d, "OTHER.io"));
        assert!(!host_allowed(&d, "notother.io"));
        assert!(!host_allowed(&d, "other.io.evil.com"));
        assert!(host_allowed(&d, "site.com"));
        assert!(!host_allowed(&d, "evil-site.com"));
    }

    #[test]
    fn a_domain_that_is_no_host_name_is_refused_by_name() {
        for (raw, why) in [
            ("my casino site", "spaces"),
            ("casino", "no dot"),
            ("my_site.com", "'_'"),
            ("-site.com", "starting or ending with -"),
            ("site-.com", "starting or ending with -"),
            ("a..com", "empty part"),
            ("1.2.3", "neither a domain"),
            ("300.1.1.1", "neither a domain"),
            ("https://", "empty"),
            ("ftp://site.com", "':'"),
            ("bücher.de", "'ü'"),
        ] {
            let e = normalise_domains(&["ok.example".into(), raw.into()]).unwrap_err();
            assert_eq!(
                (e.field.as_str(), e.code),
                ("domains", "invalid_domain"),
                "{raw}"
            );
            assert!(
                e.message.contains(&format!("{raw:?}")),
                "{raw}: {}",
                e.message
            );
            assert!(e.message.contains(why), "{raw}: {}", e.message);
        }
    }

    #[test]
    fn typed_domain_lists() {
        assert_eq!(
            parse_domain_list("a.com, b.com\n\n c.com d.com\r\nhttps://e.com/x y")
                .unwrap_err()
                .message,
            "\"https://e.com/x y\" is not a host name: it contains spaces (separate several domains with commas or new lines)"
        );
        assert_eq!(
            parse_domain_list("a.com, b.com\n\n c.com d.com\r\nE.com").unwrap(),
            vec!["a.com", "b.com", "c.com", "d.com", "e.com"]
        );
        let e = parse_domain_list("my casino site").unwrap_err();
        assert_eq!(e.code, "invalid_domain");
        assert!(
            e.message
                .starts_with("\"my casino site\" is not a host name")
        );
        assert_eq!(
            parse_domain_list(" \n,").unwrap_err().code,
            "invalid_domains"
        );
    }

    proptest::proptest! {
        /// Whatever is typed, what is accepted is a list of host names that
        /// normalise to themselves, never holding a space.
        #[test]
        fn accepted_domains_are_host_names(text in "[a-zA-Z0-9 ,.:/_*-]{0,40}(\n[a-z0-9 .-]{0,20}){0,3}") {
            if let Ok(list) = parse_domain_list(&text) {
                proptest::prop_assert!(!list.is_empty());
                for d in &list {
                    proptest::prop_assert!(!d.contains(char::is_whitespace) && !d.contains('_'));
                    proptest::prop_assert!(d == "localhost" || d.contains('.'));
                    proptest::prop_assert_eq!(&normalise_domains(std::slice::from_ref(d)).unwrap(), &vec![d.clone()]);
                }
            }
        }

        /// Words of letters separated by spaces are never taken as domains.
        #[test]
        fn words_are_refused(words in proptest::collection::vec("[a-z]{1,10}", 2..5)) {
            let text = words.join(" ");
            let e = parse_domain_list(&text).unwrap_err();
            let quoted = format!("{text:?}");
            proptest::prop_assert!(e.message.contains(&quoted));
        }

        /// Real host names are kept, lower-cased, from a URL too.
        #[test]
        fn host_names_are_kept(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", 1..4), tld in "[a-z]{2,6}") {
            let host = format!("{}.{tld}", labels.join("."));
            let url = format!("https://{}:8443/path?q=1", host.to_ascii_uppercase());
            proptest::prop_assert_eq!(normalise_domains(&[url]).unwrap(), vec![host]);
        }
    }

    #[test]
    fn time_zones() {
        let s: PropertySettings = serde_json::from_str("{}").unwrap();
        assert_eq!(s.timezone, "UTC");
        for ok in [
            "UTC",
            "Europe/Malta",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+2",
        ] {
            assert!(valid_timezone(ok), "{ok}");
        }
        for bad in ["", "utc", "Europe/Atlantis", "+02:00", "Europe/Malta "] {
            let s = PropertySettings {
                timezone: bad.into(),
                ..PropertySettings::default()
            };
            let errs = s.validate().unwrap_err();
            assert_eq!(
                (errs[0].field.as_str(), errs[0].code),
                ("settings.timezone", "invalid_timezone")
            );
        }
        assert!(timezone_names().any(|n| n == "Asia/Kolkata"));
        assert!(timezone_names().all(valid_timezone));
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

    #[test]
    fn retention_defaults_bounds_and_derived_periods() {
        // Settings stored before retention existed decode with the default.
        let old: PropertySettings =
            serde_json::from_str(r#"{"attribution_window_days": 30}"#).unwrap();
        assert_eq!(old.retention.events_days, 400);
        assert_eq!(
            old.retention(),
            Retention {
                events_days: 400,
                clicks_days: Some(400),
                encrypted_ip_days: 37
            }
        );
        let short: PropertySettings = serde_json::from_str(
            r#"{"attribution_window_days": 90, "ip_handling": "encrypt", "retention": {"events_days": 30}}"#,
        )
        .unwrap();
        assert!(short.validate().is_ok());
        // Clicks outlive events when the window needs them.
        assert_eq!(
            short.retention(),
            Retention {
                events_days: 30,
                clicks_days: Some(97),
                encrypted_ip_days: 97
            }
        );
        let unlimited: PropertySettings =
            serde_json::from_str(r#"{"attribution_window_days": null, "ip_handling": "encrypt"}"#)
                .unwrap();
        assert_eq!(unlimited.retention().clicks_days, None);
        assert_eq!(unlimited.retention().encrypted_ip_days, 97);
        for bad in [0, 29, 3651] {
            let s = PropertySettings {
                retention: RetentionSettings { events_days: bad },
                ..PropertySettings::default()
            };
            let errs = s.validate().unwrap_err();
            assert_eq!(errs[0].field, "settings.retention.events_days");
        }
        assert!(serde_json::from_str::<RetentionSettings>(r#"{"clicks_days": 1}"#).is_err());
        assert_eq!(Retention::cutoff(10 * 86_400_000, 3), 7 * 86_400_000);
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
