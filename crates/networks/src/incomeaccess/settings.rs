//! An Income Access integration's settings, its security key, and the
//! report requests a poll makes (the poll plan and the `affreporting.asp`
//! URL of each request).

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Datelike, Days, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use url::Url;

use super::delta::DeltaConfig;

pub const DEFAULT_REPORT_NAME: &str = "AccountReport";
pub const DEFAULT_VALUE_FIELD: &str = "totalcommission";
pub const DEFAULT_WINDOW_DAYS: u32 = 7;
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;
/// Longest trailing window a poll re-reads. Three months is more than any
/// settlement delay we heard of, and keeps a poll to at most four requests.
pub const MAX_WINDOW_DAYS: u32 = 92;

/// What is written in place of a secret in anything shown or logged.
pub const REDACTED: &str = "REDACTED";

/// The program's security key (generated in its back office under
/// Reports -> API Reports). Never printed: `Debug` shows a placeholder and
/// there is no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecurityKey(String);

impl SecurityKey {
    /// Accepts any printable ASCII token without spaces, up to 256
    /// characters. The keys we saw are 32 hex digits, but programs are not
    /// obliged to keep that form, so the format is not enforced further.
    pub fn new(key: &str) -> Result<Self, SettingsError> {
        let k = key.trim();
        if k.is_empty() || k.len() > 256 || !k.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SettingsError::new(
                "security_key",
                "the security key must be the token shown under Reports -> API Reports (no spaces)",
            ));
        }
        Ok(Self(k.to_owned()))
    }

    /// The clear key, for building the request URL only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecurityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecurityKey({REDACTED})")
    }
}

/// `reportformat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    #[default]
    Xml,
    Csv,
}

impl ReportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Xml => "xml",
            Self::Csv => "csv",
        }
    }
}

/// How report rows are tied to a fixed period, so that successive polls
/// compare totals of the same period (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PeriodMode {
    /// One request per calendar month touched by the trailing window, each
    /// from the first of the month; rows are keyed by the month (`2024-05`).
    #[default]
    Month,
    /// One request over the window with `reportdisplayby=Date`; each row
    /// carries its day (field `period`), and is keyed by it (`2024-05-03`).
    Day,
}

/// `settings` of an Income Access / Gala Partners integration, as stored
/// in the integration's JSON. Unknown keys are left to the server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IncomeAccessSettings {
    /// The program's `affreporting.asp` URL, e.g.
    /// `https://affiliates.example.com/api/affreporting.asp`.
    #[serde(with = "url_string")]
    pub api_url: Url,
    #[serde(default = "default_report_name")]
    pub report_name: String,
    #[serde(default)]
    pub report_format: ReportFormat,
    /// `reportmerchantid`; 0 = all brands.
    #[serde(default, deserialize_with = "number_or_string")]
    pub merchant_id: u32,
    /// The running total whose rises are purchases (case-insensitive).
    #[serde(default = "default_value_field")]
    pub value_field: String,
    /// Days re-read on every poll, today included.
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    #[serde(default)]
    pub period: PeriodMode,
    /// Whole-request timeout (connect to last byte of the report).
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
}

fn default_report_name() -> String {
    DEFAULT_REPORT_NAME.to_owned()
}
fn default_value_field() -> String {
    DEFAULT_VALUE_FIELD.to_owned()
}
fn default_window_days() -> u32 {
    DEFAULT_WINDOW_DAYS
}
fn default_timeout_secs() -> u64 {
    DEFAULT_TIMEOUT_SECS
}

mod url_string {
    use serde::{Deserialize, Deserializer, Serializer};
    use url::Url;

    pub fn serialize<S: Serializer>(url: &Url, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(url.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        Url::parse(s.trim())
            .map_err(|_| serde::de::Error::custom("api_url must be an absolute http(s) URL"))
    }
}

fn number_or_string<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        N(u32),
        S(String),
    }
    match Either::deserialize(d)? {
        Either::N(n) => Ok(n),
        Either::S(s) => s.trim().parse().map_err(|_| {
            serde::de::Error::custom("merchant_id must be a whole number (0 = all brands)")
        }),
    }
}

/// Settings the server should refuse, with the offending field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SettingsError {
    pub field: &'static str,
    pub message: String,
}

impl SettingsError {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        "invalid_settings"
    }
}

impl IncomeAccessSettings {
    /// Settings with defaults for everything but the URL.
    pub fn new(api_url: Url) -> Self {
        Self {
            api_url,
            report_name: default_report_name(),
            report_format: ReportFormat::default(),
            merchant_id: 0,
            value_field: default_value_field(),
            window_days: DEFAULT_WINDOW_DAYS,
            period: PeriodMode::default(),
            timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }

    /// Reads and validates an integration's `settings` object.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, SettingsError> {
        let s: Self = serde_json::from_value(value.clone()).map_err(|e| {
            let msg = e.to_string();
            let field = if msg.contains("api_url") || value.get("api_url").is_none() {
                "api_url"
            } else {
                "settings"
            };
            SettingsError::new(field, redact_secrets(&msg))
        })?;
        s.validate()?;
        Ok(s)
    }

    pub fn validate(&self) -> Result<(), SettingsError> {
        if !matches!(self.api_url.scheme(), "http" | "https")
            || self.api_url.host_str().is_none_or(str::is_empty)
        {
            return Err(SettingsError::new(
                "api_url",
                "must be the program's http(s) affreporting.asp URL",
            ));
        }
        let name = self.report_name.trim();
        if name.is_empty() || name.len() > 100 || name.chars().any(char::is_control) {
            return Err(SettingsError::new(
                "report_name",
                "must be a report name such as AccountReport (at most 100 characters)",
            ));
        }
        let field = &self.value_field;
        if field.is_empty()
            || field.len() > 64
            || !field
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Err(SettingsError::new(
                "value_field",
                "must be a report field name such as totalcommission",
            ));
        }
        if !(1..=MAX_WINDOW_DAYS).contains(&self.window_days) {
            return Err(SettingsError::new(
                "window_days",
                format!("must be between 1 and {MAX_WINDOW_DAYS}"),
            ));
        }
        if !(1..=600).contains(&self.timeout_secs) {
            return Err(SettingsError::new(
                "timeout_secs",
                "must be between 1 and 600",
            ));
        }
        Ok(())
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout_secs)
    }

    /// The delta rules' configuration for a poll observed at `observed_at`.
    /// PlayerRegistrations lists registrations and no money: its rows only
    /// give `registration` events, whatever the value field says.
    pub fn delta_config(&self, observed_at: DateTime<Utc>) -> DeltaConfig {
        let registrations_only = self
            .report_name
            .trim()
            .eq_ignore_ascii_case("PlayerRegistrations");
        let field = (!registrations_only).then(|| self.value_field.clone());
        DeltaConfig::new(field, observed_at)
    }

    /// The requests of one poll made on `today` (the server's date, UTC).
    ///
    /// Month mode: one request per calendar month touched by the trailing
    /// window `[today - (window_days - 1), today]`, each from the first of
    /// its month to the month's last day or today, whichever comes first,
    /// oldest month first. Day mode: one request over the window with
    /// `reportdisplayby=Date`.
    pub fn plan(&self, today: NaiveDate) -> Vec<ReportRequest> {
        let days = self.window_days.clamp(1, MAX_WINDOW_DAYS);
        let first = today
            .checked_sub_days(Days::new(u64::from(days - 1)))
            .unwrap_or(today);
        let base = |start: NaiveDate,
                    end: NaiveDate,
                    period: RowPeriod,
                    display_by: Option<&str>| ReportRequest {
            api_url: self.api_url.clone(),
            report_name: self.report_name.trim().to_owned(),
            format: self.report_format,
            merchant_id: self.merchant_id,
            start,
            end,
            display_by: display_by.map(str::to_owned),
            period,
            timeout: self.timeout(),
        };
        match self.period {
            PeriodMode::Day => vec![base(first, today, RowPeriod::FromRow, Some("Date"))],
            PeriodMode::Month => {
                let mut out = Vec::new();
                let mut month_start = first.with_day(1).unwrap_or(first);
                while month_start <= today {
                    let next = month_start.checked_add_months(chrono::Months::new(1));
                    let month_end = next.and_then(|n| n.pred_opt()).unwrap_or(today);
                    let end = month_end.min(today);
                    out.push(base(
                        month_start,
                        end,
                        RowPeriod::Fixed(month_key(month_start)),
                        None,
                    ));
                    match next {
                        Some(n) => month_start = n,
                        None => break,
                    }
                }
                out
            }
        }
    }

    /// The one request of a connection test: `day` alone, asked as a poll
    /// would ask it (the same report, format, merchant and period mode),
    /// within `timeout` at most (the settings' timeout when shorter).
    pub fn test_request(&self, day: NaiveDate, timeout: Duration) -> ReportRequest {
        let (period, display_by) = match self.period {
            PeriodMode::Month => (RowPeriod::Fixed(month_key(day)), None),
            PeriodMode::Day => (RowPeriod::FromRow, Some("Date".to_owned())),
        };
        ReportRequest {
            api_url: self.api_url.clone(),
            report_name: self.report_name.trim().to_owned(),
            format: self.report_format,
            merchant_id: self.merchant_id,
            start: day,
            end: day,
            display_by,
            period,
            timeout: self.timeout().min(timeout),
        }
    }
}

/// The period key of a month: `YYYY-MM`.
pub fn month_key(d: NaiveDate) -> String {
    format!("{:04}-{:02}", d.year(), d.month())
}

/// The period key of a day: `YYYY-MM-DD`.
pub fn day_key(d: NaiveDate) -> String {
    d.format("%Y-%m-%d").to_string()
}

/// Where a request's rows get their period key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowPeriod {
    /// Every row of the answer belongs to this period (Month mode).
    Fixed(String),
    /// Each row names its day (`reportdisplayby=Date`, Day mode).
    FromRow,
}

/// One `affreporting.asp` request. Holds no secret: the key is given to
/// [`ReportRequest::url`] separately.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    pub api_url: Url,
    pub report_name: String,
    pub format: ReportFormat,
    pub merchant_id: u32,
    pub start: NaiveDate,
    pub end: NaiveDate,
    pub display_by: Option<String>,
    pub period: RowPeriod,
    pub timeout: Duration,
}

/// Parameters we set; any of them already in `api_url` is replaced.
pub(super) const OUR_PARAMS: [&str; 7] = [
    "key",
    "reportname",
    "reportformat",
    "reportmerchantid",
    "reportstartdate",
    "reportenddate",
    "reportdisplayby",
];

impl ReportRequest {
    /// The URL to fetch, with the key in clear: never log or display it
    /// (use [`ReportRequest::display_url`]).
    pub fn url(&self, key: &SecurityKey) -> Url {
        self.build_url(key.expose())
    }

    /// The URL with the key replaced by `REDACTED`, for logs and the UI.
    pub fn display_url(&self) -> String {
        self.build_url(REDACTED).to_string()
    }

    fn build_url(&self, key: &str) -> Url {
        let mut url = self.api_url.clone();
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !OUR_PARAMS.iter().any(|p| k.eq_ignore_ascii_case(p)))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
        let mut parts: Vec<String> = kept
            .iter()
            .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
            .collect();
        parts.push(format!("key={}", enc(key)));
        parts.push(format!("reportname={}", enc(&self.report_name)));
        parts.push(format!("reportformat={}", self.format.as_str()));
        parts.push(format!("reportmerchantid={}", self.merchant_id));
        // Slashes left as they are: every public client sends them so.
        parts.push(format!("reportstartdate={}", self.start.format("%Y/%m/%d")));
        parts.push(format!("reportenddate={}", self.end.format("%Y/%m/%d")));
        if let Some(d) = &self.display_by {
            parts.push(format!("reportdisplayby={}", enc(d)));
        }
        url.set_query(Some(&parts.join("&")));
        url
    }
}

static SECRET_PARAM: LazyLock<Option<regex::Regex>> = LazyLock::new(|| {
    // `key=` and `apipassword=` (seen in one public client) in URLs and
    // texts; the value runs to the next separator.
    regex::Regex::new(r#"(?i)\b(key|apipassword)=[^&\s"'<>]*"#).ok()
});

/// Replaces the values of `key=` / `apipassword=` parameters by `REDACTED`.
pub fn redact_secrets(text: &str) -> String {
    match SECRET_PARAM.as_ref() {
        Some(re) => re
            .replace_all(text, format!("${{1}}={REDACTED}"))
            .into_owned(),
        // Cannot happen (the pattern is a constant); if it did, show nothing.
        None => REDACTED.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> IncomeAccessSettings {
        IncomeAccessSettings::from_json(&serde_json::json!({
            "api_url": "https://affiliates.example.com/api/affreporting.asp"
        }))
        .unwrap()
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn defaults() {
        let s = settings();
        assert_eq!(s.report_name, "AccountReport");
        assert_eq!(s.report_format, ReportFormat::Xml);
        assert_eq!(s.merchant_id, 0);
        assert_eq!(s.value_field, "totalcommission");
        assert_eq!(s.window_days, 7);
        assert_eq!(s.period, PeriodMode::Month);
        assert_eq!(s.timeout(), Duration::from_secs(60));
    }

    #[test]
    fn validation() {
        let bad = [
            serde_json::json!({}),
            serde_json::json!({"api_url": "ftp://x.example/api/affreporting.asp"}),
            serde_json::json!({"api_url": "not a url"}),
            serde_json::json!({"api_url": "https://x.example/", "window_days": 0}),
            serde_json::json!({"api_url": "https://x.example/", "window_days": 400}),
            serde_json::json!({"api_url": "https://x.example/", "value_field": "total commission"}),
            serde_json::json!({"api_url": "https://x.example/", "report_format": "json"}),
            serde_json::json!({"api_url": "https://x.example/", "merchant_id": "abc"}),
        ];
        for b in bad {
            let e = IncomeAccessSettings::from_json(&b).unwrap_err();
            assert_eq!(e.code(), "invalid_settings", "{b}");
        }
        let s = IncomeAccessSettings::from_json(&serde_json::json!({
            "api_url": "https://x.example/api/affreporting.asp", "merchant_id": "3",
            "report_format": "csv", "period": "day", "window_days": 3, "extra": true
        }))
        .unwrap();
        assert_eq!(s.merchant_id, 3);
        assert_eq!(s.report_format, ReportFormat::Csv);
        assert_eq!(s.period, PeriodMode::Day);
    }

    #[test]
    fn registration_report_has_no_value_field() {
        let now = Utc::now();
        let mut s = settings();
        assert_eq!(
            s.delta_config(now).value_field.as_deref(),
            Some("totalcommission")
        );
        s.report_name = "PlayerRegistrations".into();
        assert_eq!(s.delta_config(now).value_field, None);
    }

    #[test]
    fn key_is_never_printed() {
        let k = SecurityKey::new("0123456789abcdef0123456789abcdef").unwrap();
        assert!(!format!("{k:?}").contains("0123"));
        assert!(SecurityKey::new("").is_err());
        assert!(SecurityKey::new("has space").is_err());
        let e = SecurityKey::new("a b").unwrap_err();
        assert!(!e.to_string().contains("a b"));
    }

    #[test]
    fn url_building() {
        let mut s = settings();
        s.api_url = Url::parse("https://aff.example.com/api/affreporting.asp?key=old&x=1").unwrap();
        s.report_name = "Member Report - Detailed".into();
        let plan = s.plan(d(2024, 5, 20));
        assert_eq!(plan.len(), 1);
        let key = SecurityKey::new("0123456789abcdef0123456789abcdef").unwrap();
        let url = plan[0].url(&key).to_string();
        assert_eq!(
            url,
            "https://aff.example.com/api/affreporting.asp?x=1&key=0123456789abcdef0123456789abcdef\
             &reportname=Member+Report+-+Detailed&reportformat=xml&reportmerchantid=0\
             &reportstartdate=2024/05/01&reportenddate=2024/05/20"
        );
        let shown = plan[0].display_url();
        assert!(!shown.contains("0123456789abcdef"));
        assert!(shown.contains("key=REDACTED"));
        let pairs: Vec<_> = plan[0]
            .url(&key)
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert!(pairs.contains(&("reportname".into(), "Member Report - Detailed".into())));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "key").count(), 1);
    }

    #[test]
    fn month_plan_crosses_month_boundary() {
        let s = settings();
        let plan = s.plan(d(2024, 6, 3));
        assert_eq!(plan.len(), 2);
        assert_eq!(
            (plan[0].start, plan[0].end),
            (d(2024, 5, 1), d(2024, 5, 31))
        );
        assert_eq!(plan[0].period, RowPeriod::Fixed("2024-05".into()));
        assert_eq!((plan[1].start, plan[1].end), (d(2024, 6, 1), d(2024, 6, 3)));
        assert_eq!(plan[1].period, RowPeriod::Fixed("2024-06".into()));
        assert!(plan.iter().all(|r| r.display_by.is_none()));
        // A leap February, and a year boundary.
        let plan = s.plan(d(2024, 3, 1));
        assert_eq!(
            (plan[0].start, plan[0].end),
            (d(2024, 2, 1), d(2024, 2, 29))
        );
        let plan = s.plan(d(2025, 1, 2));
        assert_eq!(plan[0].period, RowPeriod::Fixed("2024-12".into()));
        assert_eq!(plan[1].period, RowPeriod::Fixed("2025-01".into()));
        let mut long = settings();
        long.window_days = MAX_WINDOW_DAYS;
        assert!(long.plan(d(2024, 12, 31)).len() <= 4);
    }

    #[test]
    fn day_plan() {
        let mut s = settings();
        s.period = PeriodMode::Day;
        let plan = s.plan(d(2024, 6, 3));
        assert_eq!(plan.len(), 1);
        assert_eq!(
            (plan[0].start, plan[0].end),
            (d(2024, 5, 28), d(2024, 6, 3))
        );
        assert_eq!(plan[0].period, RowPeriod::FromRow);
        let key = SecurityKey::new("k").unwrap();
        assert!(
            plan[0]
                .url(&key)
                .as_str()
                .ends_with("&reportdisplayby=Date")
        );
    }

    #[test]
    fn test_request_is_one_day() {
        let mut s = settings();
        s.merchant_id = 4;
        let r = s.test_request(d(2024, 6, 3), Duration::from_secs(15));
        assert_eq!((r.start, r.end), (d(2024, 6, 3), d(2024, 6, 3)));
        assert_eq!(r.period, RowPeriod::Fixed("2024-06".into()));
        assert_eq!(r.display_by, None);
        assert_eq!(r.timeout, Duration::from_secs(15));
        assert_eq!(r.merchant_id, 4);
        s.period = PeriodMode::Day;
        s.timeout_secs = 5;
        let r = s.test_request(d(2024, 6, 3), Duration::from_secs(15));
        assert_eq!(r.period, RowPeriod::FromRow);
        assert_eq!(r.display_by.as_deref(), Some("Date"));
        assert_eq!(r.timeout, Duration::from_secs(5));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact_secrets(
                "error for url (https://x/api/affreporting.asp?Key=abc123&reportname=A)"
            ),
            "error for url (https://x/api/affreporting.asp?Key=REDACTED&reportname=A)"
        );
        assert_eq!(redact_secrets("apipassword=zz"), "apipassword=REDACTED");
        assert_eq!(redact_secrets("monkey=1"), "monkey=1");
    }
}
