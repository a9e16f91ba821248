//! What the ad-platform destinations receive: one validated conversion with
//! everything known of its click, flattened, plus the outcome vocabulary of
//! delivery attempts. Built by the server from the store; consumed by the
//! `destinations` crate, which knows nothing of storage.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::consent::Consent;
use crate::money::{Amount, Currency, Money};

/// Ad click ids and pixel cookies of the session a conversion is
/// attributed to (last click).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdIdentifiers {
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    pub fbclid: Option<String>,
    /// `fb.<idx>.<ms>.<fbclid>`, from the `_fbc` cookie or built from fbclid.
    pub fbc: Option<String>,
    /// The `_fbp` cookie.
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    /// The `_ttp` cookie.
    pub ttp: Option<String>,
    pub msclkid: Option<String>,
}

/// One conversion to deliver to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboundConversion {
    /// Our conversion id: Google's `orderId`; stable across resends.
    pub conversion_id: String,
    /// The platforms' de-duplication key (Meta / TikTok `event_id`): the
    /// browser event's id when the conversion came through the tag (so the
    /// pixel and the server event de-duplicate), else the conversion id.
    pub event_id: String,
    /// Event name as mapped for this destination (Meta `Purchase`, TikTok
    /// `CompleteRegistration`, a GA4 event name...).
    pub event_name: String,
    /// For Google Ads: the mapped `customers/{cid}/conversionActions/{id}`.
    pub conversion_action: Option<String>,
    pub occurred_at: DateTime<Utc>,
    /// When the attributed click happened (Google wants conversions after it).
    pub click_at: Option<DateTime<Utc>>,
    pub value: Option<Amount>,
    pub currency: Option<Currency>,
    /// Page where the click happened (`event_source_url`, `page.url`).
    pub page_url: Option<String>,
    pub referrer: Option<String>,
    /// First-party visitor id: GA4 `client_id`, Meta / TikTok `external_id`.
    pub visitor_id: Option<String>,
    /// The visitor's address when still known (see docs/PRIVACY.md): only
    /// ever held in memory or encrypted, never logged.
    pub client_ip: Option<String>,
    pub user_agent: Option<String>,
    pub ids: AdIdentifiers,
    /// SHA-256 hex of the normalised email / phone (hashed by the tag).
    pub hashed_email: Option<String>,
    pub hashed_phone: Option<String>,
    /// The consent of the click (else the session) the conversion is
    /// attributed to, as stored: resolved against the property's
    /// `consent_required` when it was collected. Unknown sends nothing.
    pub consent: Consent,
}

impl OutboundConversion {
    /// The value with its currency, when both are known: what the platforms
    /// take (a value means nothing without its currency). The two fields stay
    /// apart because a destination tells which one is missing.
    pub fn money(&self) -> Option<Money> {
        Some(Money::new(self.value?, self.currency?))
    }
}

/// Status of one delivery (one conversion to one destination), as the API
/// and the dashboard show it. Stable snake_case names.
// Read through `TryFrom<String>` so that every reader (JSON, the SQLite
// row decoder, sqlx) accepts exactly the names `as_str` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Retrying,
    Failed,
    Dead,
    Skipped,
    /// Never to be sent: its destination was deleted while it waited
    /// (`reason` says why).
    Cancelled,
}

impl TryFrom<String> for DeliveryStatus {
    type Error = crate::conversion::UnknownStatus;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or(crate::conversion::UnknownStatus(s))
    }
}

impl std::fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 7] = [
        Self::Pending,
        Self::Delivered,
        Self::Retrying,
        Self::Failed,
        Self::Dead,
        Self::Skipped,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Dead => "dead",
            Self::Skipped => "skipped",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}
