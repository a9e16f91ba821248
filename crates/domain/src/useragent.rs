//! Browser, operating system and device class from a `User-Agent` header.
//!
//! Parsing uses the `ua-parser` crate with uap-core's `regexes.yaml`, the
//! shared dataset of every uap port. The rules are compiled into the binary
//! by `build.rs` from the `ua-parser` package itself (see there for why),
//! so nothing is read from disk or the network at run time.
//!
//! Building a [`UaParser`] compiles about a thousand regexes: do it once at
//! start and share it. A parse costs tens of microseconds; the same strings
//! repeat a lot, so the server caches [`UserAgentInfo`] by user-agent string.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};
use ua_parser::{device, os, user_agent};

/// One `user_agent_parsers` entry of uap-core.
struct UaRule {
    regex: &'static str,
    family: Option<&'static str>,
    v1: Option<&'static str>,
    v2: Option<&'static str>,
    v3: Option<&'static str>,
    v4: Option<&'static str>,
}

/// One `os_parsers` entry of uap-core.
struct OsRule {
    regex: &'static str,
    os: Option<&'static str>,
    v1: Option<&'static str>,
    v2: Option<&'static str>,
    v3: Option<&'static str>,
    v4: Option<&'static str>,
}

/// One `device_parsers` entry of uap-core.
struct DeviceRule {
    regex: &'static str,
    ignore_case: bool,
    device: Option<&'static str>,
    brand: Option<&'static str>,
    model: Option<&'static str>,
}

mod rules {
    use super::{DeviceRule, OsRule, UaRule};
    include!(concat!(env!("OUT_DIR"), "/uap_regexes.rs"));
}

/// Why the embedded rules failed to compile (a build problem, not input).
#[derive(Debug, thiserror::Error)]
#[error("user-agent rules failed to compile: {0}")]
pub struct UaParserError(String);

impl UaParserError {
    pub fn code(&self) -> &'static str {
        "ua_rules_invalid"
    }
}

/// Coarse device class, for reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceClass {
    Desktop,
    Mobile,
    Tablet,
    Bot,
    Other,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 5] = [
        DeviceClass::Desktop,
        DeviceClass::Mobile,
        DeviceClass::Tablet,
        DeviceClass::Bot,
        DeviceClass::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Desktop => "desktop",
            DeviceClass::Mobile => "mobile",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Bot => "bot",
            DeviceClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a user agent says about the visitor's software and device.
///
/// Families follow uap-core's names (`Chrome Mobile`, `Mobile Safari`,
/// `Mac OS X`, `iOS`, ...) and are `Other` when unknown; versions are the
/// dotted components uap-core extracted (`120.0.6099`), absent when unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserAgentInfo {
    pub browser: String,
    pub browser_version: Option<String>,
    pub os: String,
    pub os_version: Option<String>,
    pub device: DeviceClass,
    /// Device brand when known (`Apple`, `Samsung`).
    pub device_brand: Option<String>,
    /// Device model when known (`iPhone`, `SM-G930F`).
    pub device_model: Option<String>,
}

/// Longest user agent we parse; longer ones are cut (real ones are well
/// under 1 KB; this bounds the regex work an attacker can cause).
pub const MAX_UA_LEN: usize = 2048;

/// The uap-core user-agent parser, built once and shared.
pub struct UaParser {
    ua: user_agent::Extractor<'static>,
    os: os::Extractor<'static>,
    dev: device::Extractor<'static>,
}

impl fmt::Debug for UaParser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UaParser").finish_non_exhaustive()
    }
}

fn cow(s: Option<&'static str>) -> Option<Cow<'static, str>> {
    s.map(Cow::Borrowed)
}

/// The raw uap-core results, as its test cases state them.
#[derive(Debug, Default)]
pub(crate) struct RawUa<'a> {
    pub ua: Option<user_agent::ValueRef<'a>>,
    pub os: Option<os::ValueRef<'a>>,
    pub dev: Option<device::ValueRef<'a>>,
}

impl UaParser {
    /// Compiles the embedded uap-core rules (about a second in a debug
    /// build, a fraction of that in release).
    pub fn new() -> Result<Self, UaParserError> {
        let err = |e: &dyn fmt::Display| UaParserError(e.to_string());
        let ua = rules::UA_RULES
            .iter()
            .try_fold(user_agent::Builder::new(), |b, r| {
                b.push(user_agent::Parser {
                    regex: Cow::Borrowed(r.regex),
                    family_replacement: cow(r.family),
                    v1_replacement: cow(r.v1),
                    v2_replacement: cow(r.v2),
                    v3_replacement: cow(r.v3),
                    v4_replacement: cow(r.v4),
                })
            })
            .map_err(|e| err(&e))?
            .build()
            .map_err(|e| err(&e))?;
        let os = rules::OS_RULES
            .iter()
            .try_fold(os::Builder::new(), |b, r| {
                b.push(os::Parser {
                    regex: Cow::Borrowed(r.regex),
                    os_replacement: cow(r.os),
                    os_v1_replacement: cow(r.v1),
                    os_v2_replacement: cow(r.v2),
                    os_v3_replacement: cow(r.v3),
                    os_v4_replacement: cow(r.v4),
                })
            })
            .map_err(|e| err(&e))?
            .build()
            .map_err(|e| err(&e))?;
        let dev = rules::DEVICE_RULES
            .iter()
            .try_fold(device::Builder::new(), |b, r| {
                b.push(device::Parser {
                    regex: Cow::Borrowed(r.regex),
                    regex_flag: r.ignore_case.then_some(device::Flag::IgnoreCase),
                    device_replacement: cow(r.device),
                    brand_replacement: cow(r.brand),
                    model_replacement: cow(r.model),
                })
            })
            .map_err(|e| err(&e))?
            .build()
            .map_err(|e| err(&e))?;
        Ok(Self { ua, os, dev })
    }

    pub(crate) fn parse_raw<'a>(&'a self, ua: &'a str) -> RawUa<'a> {
        let ua = truncate(ua, MAX_UA_LEN);
        RawUa {
            ua: self.ua.extract(ua),
            os: self.os.extract(ua),
            dev: self.dev.extract(ua),
        }
    }

    /// Parses one user agent. Never fails: unknown parts come out as `Other`.
    pub fn parse(&self, ua: &str) -> UserAgentInfo {
        let ua = truncate(ua.trim(), MAX_UA_LEN);
        let raw = self.parse_raw(ua);
        let (browser, browser_version) = match &raw.ua {
            Some(v) => (
                v.family.to_string(),
                join_version(&[v.major, v.minor, v.patch, v.patch_minor]),
            ),
            None => (OTHER.to_owned(), None),
        };
        let (os_name, os_version) = match &raw.os {
            Some(v) => (
                v.os.to_string(),
                join_version(&[
                    v.major.as_deref(),
                    v.minor.as_deref(),
                    v.patch.as_deref(),
                    v.patch_minor.as_deref(),
                ]),
            ),
            None => (OTHER.to_owned(), None),
        };
        let device_family = raw.dev.as_ref().map(|d| d.device.as_ref());
        let device = device_class(ua, &os_name, device_family);
        let (device_brand, device_model) = match &raw.dev {
            Some(d) => (
                d.brand.as_deref().map(str::to_owned),
                d.model.as_deref().map(str::to_owned),
            ),
            None => (None, None),
        };
        UserAgentInfo {
            browser,
            browser_version,
            os: os_name,
            os_version,
            device,
            device_brand,
            device_model,
        }
    }
}

const OTHER: &str = "Other";

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `120`, `0`, `6099` -> `120.0.6099`; stops at the first missing part.
fn join_version(parts: &[Option<&str>]) -> Option<String> {
    let mut out: Option<String> = None;
    for part in parts {
        let Some(p) = part.filter(|p| !p.is_empty()) else {
            break;
        };
        match &mut out {
            None => out = Some(p.to_owned()),
            Some(s) => {
                s.push('.');
                s.push_str(p);
            }
        }
    }
    out
}

/// Operating systems that only run on desktops and laptops.
const DESKTOP_OS: &[&str] = &[
    "Windows",
    "Mac OS X",
    "Linux",
    "Ubuntu",
    "Debian",
    "Fedora",
    "Red Hat",
    "SUSE",
    "Mandriva",
    "Gentoo",
    "Slackware",
    "Arch Linux",
    "Linux Mint",
    "CentOS",
    "Chrome OS",
    "FreeBSD",
    "OpenBSD",
    "NetBSD",
    "Solaris",
    "SunOS",
    "Haiku",
];

/// Markers of televisions, set-top boxes and game consoles.
const TV_OR_CONSOLE: &[&str] = &[
    "SmartTV",
    "SMART-TV",
    "Smart-TV",
    "SmartTv",
    "GoogleTV",
    "Android TV",
    "AndroidTV",
    "HbbTV",
    "AppleTV",
    "Apple TV",
    "CrKey",
    "Roku",
    "BRAVIA",
    "Web0S",
    "WebOS TV",
    "NetCast",
    "Tizen TV",
    "PlayStation",
    "Xbox",
    "Nintendo",
    "AFTB",
    "AFTM",
    "AFTS",
    "AFTT",
    "AFTK",
];

const TABLET_MARKERS: &[&str] = &[
    "iPad", "Tablet", "tablet", "Kindle", "Silk/", "PlayBook", "Nexus 7", "Nexus 9", "Nexus 10",
];

const MOBILE_MARKERS: &[&str] = &[
    "Mobile",
    "iPhone",
    "iPod",
    "Windows Phone",
    "BlackBerry",
    "BB10",
    "Opera Mini",
    "KAIOS",
    "KaiOS",
    "Symbian",
    "SymbOS",
    "Series40",
    "Nokia",
    "MIDP",
];

fn contains_any(ua: &str, markers: &[&str]) -> bool {
    markers.iter().any(|m| ua.contains(m))
}

/// Classifies the device from uap-core's device family and OS, falling back
/// to the conventions browsers follow (Android phones say `Mobile`, Android
/// tablets do not).
fn device_class(ua: &str, os: &str, device_family: Option<&str>) -> DeviceClass {
    if device_family == Some("Spider") {
        return DeviceClass::Bot;
    }
    match device_family {
        Some("iPad") => return DeviceClass::Tablet,
        Some("iPhone" | "iPod" | "Generic Smartphone" | "Generic Feature Phone") => {
            return DeviceClass::Mobile;
        }
        Some("Generic Tablet") => return DeviceClass::Tablet,
        _ => {}
    }
    if contains_any(ua, TV_OR_CONSOLE) {
        return DeviceClass::Other;
    }
    if contains_any(ua, TABLET_MARKERS) {
        return DeviceClass::Tablet;
    }
    if os == "Android" || ua.contains("Android") {
        return if ua.contains("Mobile") {
            DeviceClass::Mobile
        } else {
            DeviceClass::Tablet
        };
    }
    if os == "iOS" || contains_any(ua, MOBILE_MARKERS) {
        return DeviceClass::Mobile;
    }
    if DESKTOP_OS.contains(&os)
        || ua.contains("Windows NT")
        || ua.contains("Macintosh")
        || ua.contains("X11")
    {
        return DeviceClass::Desktop;
    }
    DeviceClass::Other
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;
    use std::sync::OnceLock;

    fn parser() -> &'static UaParser {
        static P: OnceLock<UaParser> = OnceLock::new();
        P.get_or_init(|| UaParser::new().unwrap())
    }

    /// (user agent, browser, browser version, os, os version, device class)
    type Expect = (
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static str,
        Option<&'static str>,
        DeviceClass,
    );

    #[test]
    fn common_browsers() {
        let p = parser();
        let cases: &[Expect] = &[
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.130 Safari/537.36",
                "Chrome",
                Some("120.0.6099.130"),
                "Windows",
                Some("10"),
                DeviceClass::Desktop,
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
                "Mobile Safari",
                Some("17.1.2"),
                "iOS",
                Some("17.1.2"),
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/16.6 Mobile/15E148 Safari/604.1",
                "Mobile Safari",
                Some("16.6"),
                "iOS",
                Some("16.6"),
                DeviceClass::Tablet,
            ),
            (
                "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
                "Chrome Mobile",
                Some("119.0.0.0"),
                "Android",
                Some("13"),
                DeviceClass::Mobile,
            ),
            (
                "Mozilla/5.0 (Linux; Android 12; SM-X706B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Safari/537.36",
                "Chrome",
                Some("119.0.0.0"),
                "Android",
                Some("12"),
                DeviceClass::Tablet,
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
                "Firefox",
                Some("121.0"),
                "Mac OS X",
                Some("10.15"),
                DeviceClass::Desktop,
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.2210.91",
                "Edge",
                Some("120.0.2210.91"),
                "Linux",
                None,
                DeviceClass::Desktop,
            ),
            (
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                "Googlebot",
                Some("2.1"),
                "Other",
                None,
                DeviceClass::Bot,
            ),
            (
                "Mozilla/5.0 (SMART-TV; Linux; Tizen 6.0) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/2.2 Chrome/63.0.3239.84 TV Safari/537.36",
                "Samsung Internet",
                Some("2.2"),
                "Tizen",
                Some("6.0"),
                DeviceClass::Other,
            ),
            ("", "Other", None, "Other", None, DeviceClass::Other),
        ];
        for (ua, browser, bver, os, over, dev) in cases {
            let info = p.parse(ua);
            assert_eq!(info.browser, *browser, "{ua}");
            assert_eq!(info.browser_version.as_deref(), *bver, "{ua}");
            assert_eq!(info.os, *os, "{ua}");
            assert_eq!(info.os_version.as_deref(), *over, "{ua}");
            assert_eq!(info.device, *dev, "{ua}");
        }
    }

    #[test]
    fn huge_and_odd_inputs_do_not_panic() {
        let p = parser();
        let long = "Mozilla/5.0 ".repeat(10_000);
        assert_eq!(p.parse(&long).browser, "Other");
        let multibyte = "é".repeat(MAX_UA_LEN);
        let _ = p.parse(&multibyte);
        let _ = p.parse("\0\u{1}\u{7f}");
    }

    #[test]
    fn device_class_names_round_trip() {
        for c in DeviceClass::ALL {
            assert_eq!(DeviceClass::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }

    // ---- uap-core's own test cases, from the ua-parser package ----

    fn uap_core_file(name: &str) -> Option<PathBuf> {
        let dir = option_env!("CLICKTRAIL_UAP_CORE_DIR")?;
        let p = PathBuf::from(dir).join("tests").join(name);
        p.exists().then_some(p)
    }

    fn load_cases(name: &str) -> Option<Vec<serde_yaml::Mapping>> {
        let Some(path) = uap_core_file(name) else {
            return crate::useragent::missing_test_data(&format!(
                "uap-core's {name} (CLICKTRAIL_UAP_CORE_DIR={:?})",
                option_env!("CLICKTRAIL_UAP_CORE_DIR")
            ));
        };
        let text = std::fs::read_to_string(&path).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let cases = doc["test_cases"].as_sequence().unwrap();
        Some(
            cases
                .iter()
                .map(|c| c.as_mapping().unwrap().clone())
                .collect(),
        )
    }

    /// uap-core writes a missing value as null or as an empty string.
    fn field(case: &serde_yaml::Mapping, key: &str) -> Option<String> {
        match case.get(key) {
            Some(serde_yaml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(serde_yaml::Value::Number(n)) => Some(n.to_string()),
            _ => None,
        }
    }

    fn version_of(case: &serde_yaml::Mapping) -> Option<String> {
        let parts: Vec<Option<String>> = ["major", "minor", "patch", "patch_minor"]
            .iter()
            .map(|k| field(case, k))
            .collect();
        join_version(&parts.iter().map(|p| p.as_deref()).collect::<Vec<_>>())
    }

    #[test]
    fn uap_core_test_ua() {
        let Some(cases) = load_cases("test_ua.yaml") else {
            return;
        };
        let p = parser();
        let mut failures = Vec::new();
        for case in &cases {
            let ua = field(case, "user_agent_string").unwrap_or_default();
            let raw = p.parse_raw(&ua);
            let got = raw.ua.map(|v| {
                (
                    v.family.to_string(),
                    [v.major, v.minor, v.patch, v.patch_minor].map(|x| x.map(str::to_owned)),
                )
            });
            let want = (
                field(case, "family").unwrap_or_default(),
                ["major", "minor", "patch", "patch_minor"].map(|k| field(case, k)),
            );
            let got = got.unwrap_or_else(|| (OTHER.to_owned(), [None, None, None, None]));
            // The public API must report the same thing.
            let info = p.parse(&ua);
            if got != want
                || (ua.trim() == ua
                    && (info.browser != want.0 || info.browser_version != version_of(case)))
            {
                failures.push(format!("{ua:?}: got {got:?} want {want:?}"));
            }
        }
        eprintln!(
            "uap-core test_ua.yaml: {} passed, {} failed of {}",
            cases.len() - failures.len(),
            failures.len(),
            cases.len()
        );
        assert!(
            failures.is_empty(),
            "{:#?}",
            &failures[..failures.len().min(20)]
        );
    }

    #[test]
    fn uap_core_test_os() {
        let Some(cases) = load_cases("test_os.yaml") else {
            return;
        };
        let p = parser();
        let mut failures = Vec::new();
        for case in &cases {
            let ua = field(case, "user_agent_string").unwrap_or_default();
            let raw = p.parse_raw(&ua);
            let got = raw
                .os
                .map(|v| {
                    (
                        v.os.to_string(),
                        [v.major, v.minor, v.patch, v.patch_minor].map(|x| x.map(Cow::into_owned)),
                    )
                })
                .unwrap_or_else(|| (OTHER.to_owned(), [None, None, None, None]));
            let want = (
                field(case, "family").unwrap_or_default(),
                ["major", "minor", "patch", "patch_minor"].map(|k| field(case, k)),
            );
            let info = p.parse(&ua);
            if got != want
                || (ua.trim() == ua && (info.os != want.0 || info.os_version != version_of(case)))
            {
                failures.push(format!("{ua:?}: got {got:?} want {want:?}"));
            }
        }
        eprintln!(
            "uap-core test_os.yaml: {} passed, {} failed of {}",
            cases.len() - failures.len(),
            failures.len(),
            cases.len()
        );
        assert!(
            failures.is_empty(),
            "{:#?}",
            &failures[..failures.len().min(20)]
        );
    }

    #[test]
    fn uap_core_test_device() {
        let Some(cases) = load_cases("test_device.yaml") else {
            return;
        };
        let p = parser();
        let mut failures = Vec::new();
        let mut classes = std::collections::BTreeMap::<&str, usize>::new();
        for case in &cases {
            let ua = field(case, "user_agent_string").unwrap_or_default();
            let raw = p.parse_raw(&ua);
            let got = raw
                .dev
                .map(|v| {
                    (
                        v.device.to_string(),
                        v.brand.map(|b| b.to_string()),
                        v.model.map(|m| m.to_string()),
                    )
                })
                .unwrap_or_else(|| (OTHER.to_owned(), None, None));
            let want = (
                field(case, "family").unwrap_or_default(),
                field(case, "brand"),
                field(case, "model"),
            );
            let info = p.parse(&ua);
            *classes.entry(info.device.as_str()).or_default() += 1;
            if got != want
                || (ua.trim() == ua && (info.device_brand != want.1 || info.device_model != want.2))
            {
                failures.push(format!("{ua:?}: got {got:?} want {want:?}"));
            }
            if want.0 == "Spider" {
                assert_eq!(info.device, DeviceClass::Bot, "{ua}");
            }
            if want.0 == "iPad" {
                assert_eq!(info.device, DeviceClass::Tablet, "{ua}");
            }
            if want.0 == "iPhone" {
                assert_eq!(info.device, DeviceClass::Mobile, "{ua}");
            }
        }
        eprintln!(
            "uap-core test_device.yaml: {} passed, {} failed of {}; device classes {classes:?}",
            cases.len() - failures.len(),
            failures.len(),
            cases.len()
        );
        assert!(
            failures.is_empty(),
            "{:#?}",
            &failures[..failures.len().min(20)]
        );
    }
}

/// Rough costs on the ingest path. Run with
/// `cargo test --release -p clicktrail-domain --lib enrichment_costs -- --ignored --nocapture`.
#[cfg(test)]
mod perf {
    use super::*;
    use crate::bot::BotDetector;
    use crate::channel::{ChannelInput, classify};
    use std::hint::black_box;
    use std::time::Instant;

    #[test]
    #[ignore = "timing report, not a check"]
    fn enrichment_costs() {
        let t = Instant::now();
        let p = UaParser::new().unwrap();
        eprintln!("UaParser::new: {:?}", t.elapsed());
        let uas = [
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1",
            "Mozilla/5.0 (Linux; Android 13; SM-S911B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36",
            "Mozilla/5.0 (Macintosh; Intel Mac OS X 10.15; rv:121.0) Gecko/20100101 Firefox/121.0",
        ];
        let n = 2000;
        let t = Instant::now();
        for i in 0..n {
            black_box(p.parse(uas[i % uas.len()]));
        }
        eprintln!("UaParser::parse: {:?} per call", t.elapsed() / n as u32);
        let d = BotDetector::new();
        let t = Instant::now();
        for i in 0..n {
            black_box(d.check(uas[i % uas.len()]));
        }
        eprintln!("BotDetector::check: {:?} per call", t.elapsed() / n as u32);
        let inputs = [
            ChannelInput {
                referrer_host: Some("www.google.co.uk"),
                page_host: Some("site.com"),
                ..Default::default()
            },
            ChannelInput {
                utm_source: Some("facebook"),
                utm_medium: Some("paid_social"),
                ..Default::default()
            },
            ChannelInput {
                referrer_host: Some("l.facebook.com"),
                ..Default::default()
            },
            ChannelInput {
                google_click_id: true,
                ..Default::default()
            },
            ChannelInput::default(),
        ];
        let n = 200_000;
        let t = Instant::now();
        for i in 0..n {
            black_box(classify(black_box(&inputs[i % inputs.len()])));
        }
        eprintln!("channel::classify: {:?} per call", t.elapsed() / n as u32);
    }
}

/// An outside data set a test runs against is missing: a failure, since a
/// test that silently passes without its cases proves nothing; skipped
/// only when `CLICKTRAIL_ALLOW_MISSING_TEST_DATA` is set.
#[cfg(test)]
pub(crate) fn missing_test_data<T>(what: &str) -> Option<T> {
    assert!(
        std::env::var_os("CLICKTRAIL_ALLOW_MISSING_TEST_DATA").is_some(),
        "test data missing: {what}; set CLICKTRAIL_ALLOW_MISSING_TEST_DATA=1 to skip"
    );
    eprintln!("!!!!!!!! SKIPPED: test data missing: {what} !!!!!!!!");
    None
}
