//! Conversions as the affiliate networks report them, and the outcomes the
//! conversion log records. Every source event ends in exactly one outcome
//! with a stable snake_case code.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::money::{Amount, Currency};

/// Where a source event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// The network called our postback URL.
    Postback,
    /// We polled the network's reporting API.
    Api,
    /// A custom event sent by the tag or the site's backend through `/collect`.
    Collector,
    /// A test conversion sent from the dashboard.
    Test,
}

/// The network's view of a conversion's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SourceStatus {
    #[default]
    Approved,
    Pending,
    Rejected,
    /// Reversed / charged back: an adjustment of an earlier conversion,
    /// never a conversion of its own.
    Reversed,
}

impl SourceStatus {
    /// Liberal parse of what networks send (`approved`, `1`, `declined`,
    /// `chargeback`...). Unknown words are `None`.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim().to_ascii_lowercase();
        Some(match v.as_str() {
            "" | "approved" | "approve" | "confirmed" | "accepted" | "paid" | "valid" | "1"
            | "a" | "success" | "completed" | "locked" => Self::Approved,
            "pending" | "open" | "new" | "hold" | "on_hold" | "0" | "p" | "waiting"
            | "extended" => Self::Pending,
            "rejected" | "declined" | "denied" | "invalid" | "cancelled" | "canceled"
            | "failed" | "2" | "r" | "d" => Self::Rejected,
            "reversed" | "reversal" | "refunded" | "refund" | "chargeback" | "charged_back"
            | "returned" | "voided" | "void" | "adjusted" => Self::Reversed,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Pending => "pending",
            Self::Rejected => "rejected",
            Self::Reversed => "reversed",
        }
    }
}

/// A conversion as a network reported it, parsed but not yet mapped or
/// attributed. Postback parsing and the API connectors both produce these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceEvent {
    pub kind: SourceKind,
    /// The network's event name (`registration`, `commission`, `sale`, a
    /// postback's `event` parameter...), the key of the event mapping.
    pub source_event: String,
    /// The click id as received: may be empty or not one of ours; the
    /// attribution step decides (`missing_click_id`, `unknown_click_id`).
    pub click_id: Option<String>,
    /// The network's transaction id, or a deterministic id made by the
    /// connector. With the integration and the source event it is the
    /// idempotency key.
    pub transaction_id: Option<String>,
    pub value: Option<Amount>,
    pub currency: Option<Currency>,
    pub status: SourceStatus,
    /// When the network says it happened; `None` means "when we learned it".
    pub occurred_at: Option<DateTime<Utc>>,
    /// For adjustments made by a connector (a commission that fell): the
    /// transaction id of the conversion being adjusted.
    pub adjusts: Option<String>,
    /// The payload as received, for the conversion log.
    pub raw: RawPayload,
}

/// A payload as received (a postback's parameters, a report row), kept as
/// JSON text: the conversion log stores it as is, and the events one report
/// row makes share it instead of each serialising a copy.
#[derive(Clone, PartialEq, Eq)]
pub struct RawPayload(Arc<str>);

impl RawPayload {
    pub fn from_value(v: &serde_json::Value) -> Self {
        Self(v.to_string().into())
    }

    /// A JSON object of string fields (a report row's); of a repeated name
    /// the last value counts.
    pub fn from_fields<'a>(fields: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let map: std::collections::BTreeMap<&str, &str> = fields.into_iter().collect();
        // A map of strings always serialises.
        Self(serde_json::to_string(&map).unwrap_or_default().into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The payload parsed (`null` if the text is not JSON, which no
    /// constructor makes).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.0).unwrap_or_default()
    }
}

impl Default for RawPayload {
    /// An empty object.
    fn default() -> Self {
        Self("{}".into())
    }
}

impl From<serde_json::Value> for RawPayload {
    fn from(v: serde_json::Value) -> Self {
        Self::from_value(&v)
    }
}

impl fmt::Debug for RawPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for RawPayload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value().serialize(s)
    }
}

impl<'de> Deserialize<'de> for RawPayload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self::from)
    }
}

/// The conversion log's error codes. Stable: tests and users' filters rely
/// on the snake_case names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MissingClickId,
    UnknownClickId,
    Duplicate,
    BeforeClick,
    OutsideWindow,
    UnmappedEvent,
    InvalidPayload,
    OnsiteDisabled,
    EventNotAllowed,
    OriginRequired,
    SignatureRequired,
    ValueOutOfBounds,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        Self::MissingClickId,
        Self::UnknownClickId,
        Self::Duplicate,
        Self::BeforeClick,
        Self::OutsideWindow,
        Self::UnmappedEvent,
        Self::InvalidPayload,
        Self::OnsiteDisabled,
        Self::EventNotAllowed,
        Self::OriginRequired,
        Self::SignatureRequired,
        Self::ValueOutOfBounds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingClickId => "missing_click_id",
            Self::UnknownClickId => "unknown_click_id",
            Self::Duplicate => "duplicate",
            Self::BeforeClick => "before_click",
            Self::OutsideWindow => "outside_window",
            Self::UnmappedEvent => "unmapped_event",
            Self::InvalidPayload => "invalid_payload",
            Self::OnsiteDisabled => "onsite_disabled",
            Self::EventNotAllowed => "event_not_allowed",
            Self::OriginRequired => "origin_required",
            Self::SignatureRequired => "signature_required",
            Self::ValueOutOfBounds => "value_out_of_bounds",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// What the user should do about it, in plain language.
    pub fn hint(self) -> &'static str {
        match self {
            Self::MissingClickId => {
                "The network sent no click id. Check that the offer link carries the subid parameter (AutoTag, \
                 data-tracking-group or --CLICK-ID--) and that the network passes it back in the postback or report."
            }
            Self::UnknownClickId => {
                "The click id is not one clicktrail issued for this property. The link was probably not AutoTagged, \
                 or the traffic came from a page without the tag, or from before the tag was installed."
            }
            Self::Duplicate => {
                "The network reported this transaction before; it was recorded once and this repeat was ignored."
            }
            Self::BeforeClick => {
                "The conversion is dated before the click it names. Check the network's timestamps and time zone."
            }
            Self::OutsideWindow => {
                "The conversion came after the property's attribution window closed. Widen the window in the \
                 property settings if such late conversions should count."
            }
            Self::UnmappedEvent => {
                "The integration's event mapping has no entry for this event. Add it to the event mapping to track it."
            }
            Self::InvalidPayload => {
                "The payload could not be understood (a value, currency or date in a form clicktrail does not \
                 accept). The raw payload shows what was sent."
            }
            Self::OnsiteDisabled => {
                "A custom conversion event came through the collector, but on-site conversions are off for this \
                 property. Turn them on in the property settings (onsite) if the site should send conversions."
            }
            Self::EventNotAllowed => {
                "This event name is not one of the property's allowed on-site conversion events (settings.onsite.events)."
            }
            Self::OriginRequired => {
                "The event came without an Origin on the property's domains: not from a browser on the site. \
                 A site's backend sends conversions signed, to /collect/server."
            }
            Self::SignatureRequired => {
                "The property takes on-site conversions only from its backend, signed, through /collect/server."
            }
            Self::ValueOutOfBounds => {
                "The value is negative or outside the property's on-site bounds (settings.onsite.min_value and \
                 max_value)."
            }
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The status column of the conversion log.
// Read through `TryFrom<String>` so that every reader (JSON, the SQLite
// row decoder, sqlx) accepts exactly the names `as_str` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum LogStatus {
    /// Attributed to a click; counts in reports; queued for destinations.
    Validated,
    /// Not attributed; `error_code` says why.
    Error,
    /// A reversal or a fall of a running total, applied to an earlier
    /// conversion.
    Adjustment,
    /// The event mapping says to ignore this event.
    Ignored,
}

/// A status name that is not one of the known ones (stored data from a
/// newer version, or corruption).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

impl TryFrom<String> for LogStatus {
    type Error = UnknownStatus;
    fn try_from(s: String) -> Result<Self, UnknownStatus> {
        Self::parse(&s).ok_or(UnknownStatus(s))
    }
}

impl std::fmt::Display for LogStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl LogStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validated => "validated",
            Self::Error => "error",
            Self::Adjustment => "adjustment",
            Self::Ignored => "ignored",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Validated,
            Self::Error,
            Self::Adjustment,
            Self::Ignored,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip() {
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_value(c).unwrap(),
                serde_json::json!(c.as_str())
            );
            assert!(!c.hint().is_empty());
        }
    }

    #[test]
    fn statuses() {
        assert_eq!(
            SourceStatus::parse("Chargeback"),
            Some(SourceStatus::Reversed)
        );
        assert_eq!(
            SourceStatus::parse("approved"),
            Some(SourceStatus::Approved)
        );
        assert_eq!(
            SourceStatus::parse("declined"),
            Some(SourceStatus::Rejected)
        );
        assert_eq!(SourceStatus::parse("pending"), Some(SourceStatus::Pending));
        assert_eq!(SourceStatus::parse("banana"), None);
    }
}
