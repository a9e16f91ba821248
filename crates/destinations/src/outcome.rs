//! What one `send_batch` call reports: an [`ItemOutcome`] per conversion,
//! in input order, and a [`RequestRecord`] per HTTP request made, which is
//! what the delivery log stores per attempt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use clicktrail_domain::delivery::DeliveryStatus;

/// The fate of one conversion in one attempt.
///
/// `reason` is a stable snake_case code (`no_google_click_id`, `throttled`,
/// `unparseable_gclid`...); `detail` is a short human explanation (often the
/// platform's own message). Neither ever holds a credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Accepted. `duplicate`: the platform already had it (a resend after a
    /// crash, de-duplicated by `orderId` / `event_id`).
    Delivered { duplicate: bool },
    /// Not sent, on purpose, and it never will be (no click id for this
    /// platform, a purchase without value...).
    Skipped { reason: String, detail: String },
    /// Try again later; `after` is the platform's hint (`Retry-After`, or a
    /// documented delay), to be clamped by the caller.
    Retry {
        after: Option<Duration>,
        reason: String,
        detail: String,
    },
    /// The platform refused this conversion for good.
    Permanent { reason: String, detail: String },
    /// The destination's credentials or account need the user's attention
    /// (expired token, revoked refresh token, permissions). Pause the
    /// destination instead of burning this conversion's attempts.
    AuthFailed { reason: String, detail: String },
}

impl ItemOutcome {
    pub(crate) fn skipped(reason: &str, detail: impl Into<String>) -> Self {
        Self::Skipped {
            reason: reason.to_owned(),
            detail: detail.into(),
        }
    }
    pub(crate) fn retry(after: Option<Duration>, reason: &str, detail: impl Into<String>) -> Self {
        Self::Retry {
            after,
            reason: reason.to_owned(),
            detail: detail.into(),
        }
    }
    pub(crate) fn permanent(reason: &str, detail: impl Into<String>) -> Self {
        Self::Permanent {
            reason: reason.to_owned(),
            detail: detail.into(),
        }
    }
    pub(crate) fn auth(reason: &str, detail: impl Into<String>) -> Self {
        Self::AuthFailed {
            reason: reason.to_owned(),
            detail: detail.into(),
        }
    }

    /// The stable reason code (`None` for `Delivered`).
    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Delivered { .. } => None,
            Self::Skipped { reason, .. }
            | Self::Retry { reason, .. }
            | Self::Permanent { reason, .. }
            | Self::AuthFailed { reason, .. } => Some(reason),
        }
    }

    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::Delivered { .. } => None,
            Self::Skipped { detail, .. }
            | Self::Retry { detail, .. }
            | Self::Permanent { detail, .. }
            | Self::AuthFailed { detail, .. } => Some(detail),
        }
    }

    /// The delivery status this outcome suggests before the caller's retry
    /// policy: `Retry` -> `retrying` (the caller turns it into `dead` when
    /// attempts or the platform's window run out), `Permanent` -> `failed`,
    /// `AuthFailed` -> `pending` (the attempt does not count; the
    /// destination is paused until its credentials are fixed).
    pub fn suggested_status(&self) -> DeliveryStatus {
        match self {
            Self::Delivered { .. } => DeliveryStatus::Delivered,
            Self::Skipped { .. } => DeliveryStatus::Skipped,
            Self::Retry { .. } => DeliveryStatus::Retrying,
            Self::Permanent { .. } => DeliveryStatus::Failed,
            Self::AuthFailed { .. } => DeliveryStatus::Pending,
        }
    }

    /// Ranks outcomes when one item gets several verdicts (several Google
    /// errors naming the same row): the one needing most attention wins.
    pub(crate) fn severity(&self) -> u8 {
        match self {
            Self::Delivered { duplicate: false } => 0,
            Self::Delivered { duplicate: true } => 1,
            Self::Skipped { .. } => 2,
            Self::Retry { .. } => 3,
            Self::Permanent { .. } => 4,
            Self::AuthFailed { .. } => 5,
        }
    }
}

/// One HTTP request made during a `send_batch` call (an upload, or a
/// failed Google token refresh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    /// `None` when no answer came (timeout, connection refused...).
    pub http_status: Option<u16>,
    /// Short summary: the platform's message, or the transport error.
    pub message: String,
    /// The response body's beginning (at most [`EXCERPT_MAX`] bytes, cut on
    /// a character boundary), credentials redacted.
    pub response_excerpt: String,
    /// Indices (into the batch) of the conversions this request carried.
    pub items: Vec<usize>,
}

/// Largest response excerpt kept, in bytes.
pub const EXCERPT_MAX: usize = 2048;

/// The result of one `send_batch` call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchResult {
    /// One per input conversion, in input order.
    pub items: Vec<ItemOutcome>,
    /// Every request made, in order. Items decided before sending (skipped,
    /// outside the window) appear in none.
    pub requests: Vec<RequestRecord>,
    /// Summary of the last request made (`None`/empty when none was).
    pub http_status: Option<u16>,
    pub message: String,
    pub response_excerpt: String,
    /// Wall time of the whole call.
    pub duration: Duration,
}

impl BatchResult {
    pub(crate) fn new(
        items: Vec<ItemOutcome>,
        requests: Vec<RequestRecord>,
        duration: Duration,
    ) -> Self {
        let last = requests.last();
        Self {
            http_status: last.and_then(|r| r.http_status),
            message: last.map(|r| r.message.clone()).unwrap_or_default(),
            response_excerpt: last.map(|r| r.response_excerpt.clone()).unwrap_or_default(),
            items,
            requests,
            duration,
        }
    }

    /// The last request that carried item `index`: the attempt to record
    /// for that conversion. `None` when it was decided without a request.
    pub fn request_for(&self, index: usize) -> Option<&RequestRecord> {
        self.requests
            .iter()
            .rev()
            .find(|r| r.items.contains(&index))
    }

    /// Whether any item says the destination needs attention.
    pub fn needs_attention(&self) -> bool {
        self.items
            .iter()
            .any(|o| matches!(o, ItemOutcome::AuthFailed { .. }))
    }
}

/// A platform's answer to one request, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified {
    /// Short summary for the log: the platform's message.
    pub message: String,
    pub verdict: Verdict,
    /// The platform rejected the whole request for one bad item without
    /// saying which (Meta code 100, TikTok 40002): splitting it finds it.
    pub bisect: bool,
}

/// Who a classified answer applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every item of the request.
    All(ItemOutcome),
    /// One per item of the request, in request order.
    PerItem(Vec<ItemOutcome>),
}

impl Classified {
    pub(crate) fn all(message: impl Into<String>, outcome: ItemOutcome) -> Self {
        Self {
            message: message.into(),
            verdict: Verdict::All(outcome),
            bisect: false,
        }
    }

    /// The outcome of the `i`-th item of the request.
    pub fn outcome(&self, i: usize) -> ItemOutcome {
        match &self.verdict {
            Verdict::All(o) => o.clone(),
            Verdict::PerItem(v) => v.get(i).cloned().unwrap_or_else(|| {
                ItemOutcome::retry(
                    None,
                    "unexpected_response",
                    "the answer did not cover this item",
                )
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_lookup() {
        let r = RequestRecord {
            started_at: Utc::now(),
            duration: Duration::from_millis(5),
            http_status: Some(200),
            message: "ok".into(),
            response_excerpt: "{}".into(),
            items: vec![0, 2],
        };
        let b = BatchResult::new(
            vec![
                ItemOutcome::Delivered { duplicate: false },
                ItemOutcome::skipped("no_google_click_id", "x"),
                ItemOutcome::retry(None, "throttled", "y"),
            ],
            vec![r],
            Duration::from_millis(6),
        );
        assert_eq!(b.http_status, Some(200));
        assert!(b.request_for(1).is_none());
        assert_eq!(b.request_for(2).map(|r| r.http_status), Some(Some(200)));
        assert_eq!(b.items[1].suggested_status(), DeliveryStatus::Skipped);
        assert_eq!(b.items[2].reason(), Some("throttled"));
        assert!(!b.needs_attention());
    }
}
