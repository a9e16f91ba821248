//! Bot detection from the `User-Agent` header.
//!
//! Known crawlers, monitors and HTTP libraries come from the `isbot` crate's
//! pattern list. On top of it we flag what a tracker must not count as a
//! visitor even though no crawler list names it: missing or absurd user
//! agents, and headless or automated browsers (HeadlessChrome, PhantomJS,
//! SlimerJS, jsdom, Selenium, Puppeteer, Playwright, Lighthouse, ...).
//!
//! Bots are still recorded (flagged), so a wrong verdict costs a report
//! line, not data.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Why a user agent is taken for a bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotReason {
    /// No user agent at all, or only whitespace.
    Empty,
    /// ASCII control characters or an absurd length: no browser sends
    /// that. (C1 controls do occur, from mis-encoded device names.)
    Malformed,
    /// A headless or automated browser.
    Headless,
    /// A known crawler, monitor or HTTP client (the `isbot` list).
    KnownBot,
}

impl BotReason {
    pub fn as_str(self) -> &'static str {
        match self {
            BotReason::Empty => "empty",
            BotReason::Malformed => "malformed",
            BotReason::Headless => "headless",
            BotReason::KnownBot => "known_bot",
        }
    }
}

impl fmt::Display for BotReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longer than any browser's user agent by far (the longest of isbot's
/// 165,808 browser fixtures has 681 characters).
pub const MAX_BROWSER_UA_LEN: usize = 2048;

/// Automation markers, matched case-insensitively. `isbot` already knows
/// HeadlessChrome, PhantomJS and Chrome-Lighthouse; the rest are tools whose
/// default user agents it lets through.
const HEADLESS_MARKERS: &[&str] = &[
    "headless",
    "phantomjs",
    "slimerjs",
    "jsdom",
    "htmlunit",
    "selenium",
    "webdriver",
    "puppeteer",
    "playwright",
    "lighthouse",
    "cypress",
    "nightmarejs",
    "zombie.js",
];

/// The detector: `isbot`'s compiled patterns plus our own checks. Build it
/// once ([`BotDetector::shared`] does) and reuse it.
#[derive(Debug)]
pub struct BotDetector {
    bots: isbot::Bots,
}

impl Default for BotDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl BotDetector {
    pub fn new() -> Self {
        Self {
            bots: isbot::Bots::default(),
        }
    }

    /// The process-wide detector, built on first use.
    pub fn shared() -> &'static BotDetector {
        static SHARED: OnceLock<BotDetector> = OnceLock::new();
        SHARED.get_or_init(BotDetector::new)
    }

    /// Why `ua` is a bot, or `None` for a (presumably) human visitor.
    pub fn check(&self, ua: &str) -> Option<BotReason> {
        let trimmed = ua.trim();
        if trimmed.is_empty() {
            return Some(BotReason::Empty);
        }
        if trimmed.len() > MAX_BROWSER_UA_LEN || trimmed.bytes().any(|b| b < 0x20 || b == 0x7f) {
            return Some(BotReason::Malformed);
        }
        if HEADLESS_MARKERS
            .iter()
            .any(|m| contains_ignore_ascii_case(trimmed, m))
        {
            return Some(BotReason::Headless);
        }
        if self.bots.is_bot(trimmed) {
            return Some(BotReason::KnownBot);
        }
        None
    }

    pub fn is_bot(&self, ua: &str) -> bool {
        self.check(ua).is_some()
    }
}

/// Whether `ua` is a bot, with the shared detector.
pub fn is_bot(ua: &str) -> bool {
    BotDetector::shared().is_bot(ua)
}

/// Why `ua` is a bot, with the shared detector.
pub fn bot_reason(ua: &str) -> Option<BotReason> {
    BotDetector::shared().check(ua)
}

/// `needle` must be lowercase ASCII.
fn contains_ignore_ascii_case(haystack: &str, needle: &str) -> bool {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() {
        return true;
    }
    if h.len() < n.len() {
        return false;
    }
    h.windows(n.len())
        .any(|w| w.iter().zip(n).all(|(a, b)| a.to_ascii_lowercase() == *b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::BufRead;
    use std::path::PathBuf;

    #[test]
    fn our_own_rules() {
        let d = BotDetector::shared();
        assert_eq!(d.check(""), Some(BotReason::Empty));
        assert_eq!(d.check("   "), Some(BotReason::Empty));
        assert_eq!(d.check("Mozilla/5.0\n(X11)"), Some(BotReason::Malformed));
        assert_eq!(
            d.check(&"Mozilla/5.0 ".repeat(500)),
            Some(BotReason::Malformed)
        );
        assert_eq!(
            d.check(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 Safari/537.36"
            ),
            Some(BotReason::Headless)
        );
        assert_eq!(
            d.check("Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) PhantomJS/2.1.1 Safari/538.1"),
            Some(BotReason::Headless)
        );
        assert_eq!(
            d.check("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            Some(BotReason::KnownBot)
        );
        assert_eq!(d.check("curl/8.4.0"), Some(BotReason::KnownBot));
        assert_eq!(d.check("python-requests/2.31.0"), Some(BotReason::KnownBot));
        assert_eq!(
            d.check("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"),
            None
        );
        assert_eq!(
            d.check("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"),
            None
        );
        // C1 controls come from mis-encoded device names in real browsers.
        assert_eq!(d.check("Mozilla/5.0 (Linux; U; Android 4.0.4; LT15i Build/Xperia HD\u{99} 4.0) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30"), None);
        assert!(is_bot("AhrefsBot/7.0"));
        assert_eq!(
            bot_reason("Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
            None
        );
        assert_eq!(
            serde_json::to_string(&BotReason::KnownBot).unwrap(),
            "\"known_bot\""
        );
    }

    #[test]
    fn ascii_case_insensitive_search() {
        assert!(contains_ignore_ascii_case("xxHeAdLeSsChrome", "headless"));
        assert!(!contains_ignore_ascii_case("head", "headless"));
        assert!(contains_ignore_ascii_case("é headless é", "headless"));
    }

    fn fixture(name: &str) -> Option<Vec<String>> {
        let Some(dir) = option_env!("CLICKTRAIL_ISBOT_DIR") else {
            return crate::useragent::missing_test_data(
                "the isbot package (not located by build.rs)",
            );
        };
        let path = PathBuf::from(dir).join("fixtures").join(name);
        let Ok(file) = std::fs::File::open(&path) else {
            return crate::useragent::missing_test_data(&path.display().to_string());
        };
        Some(
            std::io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.is_empty())
                .collect(),
        )
    }

    #[test]
    fn isbot_bot_fixtures_are_all_bots() {
        let Some(bots) = fixture("bots.txt") else {
            return;
        };
        let d = BotDetector::shared();
        let missed: Vec<&String> = bots.iter().filter(|ua| !d.is_bot(ua)).collect();
        eprintln!(
            "isbot bots.txt: {} of {} flagged, {} false negatives",
            bots.len() - missed.len(),
            bots.len(),
            missed.len()
        );
        assert!(missed.is_empty(), "not flagged: {missed:#?}");
        // 4352 newline-terminated lines plus an unterminated last one.
        assert_eq!(bots.len(), 4353);
    }

    /// Browser fixtures that we flag on purpose: automation tools the
    /// fixture counts as browsers.
    const DELIBERATE: &[&str] = &["SlimerJS/", "jsdom_render"];

    #[test]
    fn isbot_browser_fixtures_are_not_bots() {
        let Some(browsers) = fixture("browsers.txt") else {
            return;
        };
        let d = BotDetector::shared();
        let mut deliberate = 0;
        let mut wrong = Vec::new();
        for ua in &browsers {
            if let Some(reason) = d.check(ua) {
                if DELIBERATE.iter().any(|m| ua.contains(m)) {
                    assert_eq!(reason, BotReason::Headless);
                    deliberate += 1;
                } else {
                    wrong.push((ua, reason));
                }
            }
        }
        eprintln!(
            "isbot browsers.txt: {} of {} not flagged, {} flagged on purpose (automation), {} false positives",
            browsers.len() - deliberate - wrong.len(),
            browsers.len(),
            deliberate,
            wrong.len()
        );
        assert!(wrong.is_empty(), "flagged: {wrong:#?}");
        assert_eq!(deliberate, DELIBERATE.len());
        assert_eq!(browsers.len(), 165_809);
    }
}
