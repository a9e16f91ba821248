//! The destination kinds, their platforms' API versions and base URLs (all
//! in one place, so a version bump is one edit), and the per-platform
//! limits the outbox worker plans with: batch sizes and acceptance windows.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clicktrail_domain::delivery::OutboundConversion;
use serde::{Deserialize, Serialize};

/// Graph API version of the Meta Conversions API (the official SDK pins it).
pub const META_GRAPH_VERSION: &str = "v26.0";
/// Google Ads REST API version; must match the exported descriptor set in
/// `proto/` (a test checks the package name).
pub const GOOGLE_ADS_API_VERSION: &str = "v26";
/// TikTok Business API version of the Events API 2.0 endpoint.
pub const TIKTOK_API_VERSION: &str = "v1.3";

pub const META_BASE_URL: &str = "https://graph.facebook.com";
pub const GOOGLE_ADS_BASE_URL: &str = "https://googleads.googleapis.com";
pub const GOOGLE_TOKEN_ENDPOINT: &str = "https://oauth2.googleapis.com/token";
pub const TIKTOK_BASE_URL: &str = "https://business-api.tiktok.com";
pub const GA4_BASE_URL: &str = "https://www.google-analytics.com";

/// Which ad platform a destination delivers to. Stable snake_case names
/// (`kind` in the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    MetaCapi,
    GoogleAds,
    Tiktok,
    Ga4,
}

impl DestinationKind {
    pub const ALL: [DestinationKind; 4] =
        [Self::MetaCapi, Self::GoogleAds, Self::Tiktok, Self::Ga4];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetaCapi => "meta_capi",
            Self::GoogleAds => "google_ads",
            Self::Tiktok => "tiktok",
            Self::Ga4 => "ga4",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Human name for the dashboard.
    pub fn label(self) -> &'static str {
        match self {
            Self::MetaCapi => "Meta Conversions API",
            Self::GoogleAds => "Google Ads click conversions",
            Self::Tiktok => "TikTok Events API",
            Self::Ga4 => "GA4 Measurement Protocol",
        }
    }
}

impl fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many conversions the worker should hand to one `send_batch` call.
///
/// - Meta: 1000 events a request is widely used but unverified, and one bad
///   event rejects the whole request (we then bisect), so 500.
/// - Google Ads: the documented maximum, 2000.
/// - TikTok: 1000 is unverified; 500 keeps request bodies moderate.
/// - GA4: one request carries one `client_id` and at most 25 events, so a
///   call is split per visitor; 25 bounds the requests one call makes.
pub fn max_batch(kind: DestinationKind) -> usize {
    match kind {
        DestinationKind::MetaCapi => 500,
        DestinationKind::GoogleAds => 2000,
        DestinationKind::Tiktok => 500,
        DestinationKind::Ga4 => 25,
    }
}

/// How long after its anchor (see [`window_anchor`]) a conversion is still
/// accepted by the platform. Past it, give up (`dead`, reason
/// `outside_window`); `send_batch` also refuses such items itself.
///
/// - Meta: 7 days after the event (older events reject the whole request).
/// - Google Ads: 90 days after the click (the longest click-through window
///   a conversion action can have; shorter ones answer `EXPIRED_EVENT`).
/// - TikTok: 7 days after the event (unverified).
/// - GA4: 72 hours after the event (Measurement Protocol backdating limit).
pub fn window(kind: DestinationKind) -> Duration {
    const DAY: u64 = 24 * 3600;
    match kind {
        DestinationKind::MetaCapi => Duration::from_secs(7 * DAY),
        DestinationKind::GoogleAds => Duration::from_secs(90 * DAY),
        DestinationKind::Tiktok => Duration::from_secs(7 * DAY),
        DestinationKind::Ga4 => Duration::from_secs(3 * DAY),
    }
}

/// The instant [`window`] counts from: the click for Google Ads (when known,
/// else the conversion), the conversion for the others.
pub fn window_anchor(kind: DestinationKind, conversion: &OutboundConversion) -> DateTime<Utc> {
    match kind {
        DestinationKind::GoogleAds => conversion.click_at.unwrap_or(conversion.occurred_at),
        _ => conversion.occurred_at,
    }
}

/// Whether the platform's window for this conversion has passed at `now`.
/// A small margin (one hour) is kept so a request in flight does not cross
/// the line; for TikTok, whose window is unverified, no margin is taken.
pub fn window_passed(
    kind: DestinationKind,
    conversion: &OutboundConversion,
    now: DateTime<Utc>,
) -> bool {
    let margin = match kind {
        DestinationKind::Tiktok => chrono::Duration::zero(),
        _ => chrono::Duration::hours(1),
    };
    let Ok(window) = chrono::Duration::from_std(window(kind)) else {
        return false;
    };
    window_anchor(kind, conversion) + window - margin < now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for k in DestinationKind::ALL {
            assert_eq!(DestinationKind::parse(k.as_str()), Some(k));
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        assert_eq!(DestinationKind::parse("meta"), None);
    }

    #[test]
    fn limits() {
        assert!(max_batch(DestinationKind::GoogleAds) <= 2000);
        assert!(max_batch(DestinationKind::MetaCapi) <= 1000);
        assert!(max_batch(DestinationKind::Ga4) <= 25);
        assert_eq!(window(DestinationKind::MetaCapi).as_secs(), 7 * 86400);
        assert_eq!(window(DestinationKind::GoogleAds).as_secs(), 90 * 86400);
    }
}
