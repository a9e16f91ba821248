//! The HTTP plumbing shared by the platforms: one request with a deadline,
//! its body read up to a cap, `Retry-After` parsed, transport errors turned
//! into secret-free text (reqwest's errors carry the URL, and Meta's and
//! GA4's URLs carry credentials), response excerpts redacted and trimmed,
//! and the classification of plain HTTP statuses.

use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime};

use chrono::{DateTime, Utc};

use crate::outcome::{EXCERPT_MAX, ItemOutcome, RequestRecord};

/// Largest response body read; the rest is ignored. A 2000-row Google
/// partial failure stays well below.
const MAX_BODY: usize = 8 * 1024 * 1024;

/// An answer.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Vec<u8>,
}

/// No answer.
#[derive(Debug, Clone)]
pub(crate) enum Transport {
    Timeout(String),
    Connect(String),
    /// The outbound policy refused every address of the endpoint: no retry
    /// changes that, the destination's settings need attention.
    Refused(String),
    Other(String),
}

impl Transport {
    pub(crate) fn outcome(&self) -> ItemOutcome {
        match self {
            Self::Timeout(m) => ItemOutcome::retry(None, "timeout", m.clone()),
            Self::Connect(m) => ItemOutcome::retry(None, "connection_error", m.clone()),
            Self::Refused(m) => ItemOutcome::auth("address_not_allowed", m.clone()),
            Self::Other(m) => ItemOutcome::retry(None, "transport_error", m.clone()),
        }
    }
    pub(crate) fn message(&self) -> &str {
        match self {
            Self::Timeout(m) | Self::Connect(m) | Self::Refused(m) | Self::Other(m) => m,
        }
    }
}

/// One request and what came of it.
pub(crate) struct Exchange {
    pub started_at: DateTime<Utc>,
    pub duration: Duration,
    pub result: Result<Reply, Transport>,
}

impl Exchange {
    /// The log record of this exchange.
    pub(crate) fn record(
        &self,
        message: String,
        secrets: &[&str],
        items: Vec<usize>,
    ) -> RequestRecord {
        let (http_status, response_excerpt) = match &self.result {
            Ok(r) => (Some(r.status), excerpt(&r.body, secrets)),
            Err(_) => (None, String::new()),
        };
        RequestRecord {
            started_at: self.started_at,
            duration: self.duration,
            http_status,
            message: truncate_chars(&redact(&message, secrets), 500),
            response_excerpt,
            items,
        }
    }
}

/// Sends `request` with a deadline covering the whole exchange, body
/// included.
pub(crate) async fn exchange(request: reqwest::RequestBuilder, timeout: Duration) -> Exchange {
    let started_at = Utc::now();
    let clock = Instant::now();
    let result = match tokio::time::timeout(timeout, run(request, timeout)).await {
        Ok(r) => r,
        Err(_) => Err(Transport::Timeout(format!(
            "no complete answer within {} ms",
            timeout.as_millis()
        ))),
    };
    Exchange {
        started_at,
        duration: clock.elapsed(),
        result,
    }
}

async fn run(request: reqwest::RequestBuilder, timeout: Duration) -> Result<Reply, Transport> {
    let mut response = request.timeout(timeout).send().await.map_err(transport)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(transport)? {
        let room = MAX_BODY.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(Reply {
        status,
        retry_after,
        body,
    })
}

fn transport(e: reqwest::Error) -> Transport {
    let e = e.without_url();
    // The same outbound policy that checked the endpoint when it was saved
    // refuses it now (a name that resolves to a private or metadata
    // address): a permanent problem, not a connection to retry.
    if let Some(refused) = clicktrail_outbound::OutboundError::refusal_in(&e) {
        return Transport::Refused(truncate_chars(&refused.to_string(), 300));
    }
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    let text = truncate_chars(&text, 300);
    if e.is_timeout() {
        Transport::Timeout(text)
    } else if e.is_connect() {
        Transport::Connect(text)
    } else {
        Transport::Other(text)
    }
}

/// `Retry-After` as delta-seconds or an HTTP date (RFC 9110 §10.2.3). A
/// date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Classification of a status alone, for answers whose body says nothing
/// more: 2xx delivered, 408/429/5xx retry, 401/403 needs attention, other
/// 4xx permanent.
pub(crate) fn by_status(status: u16, retry_after: Option<Duration>, detail: &str) -> ItemOutcome {
    match status {
        200..=299 => ItemOutcome::Delivered { duplicate: false },
        429 => ItemOutcome::retry(retry_after, "throttled", detail),
        408 => ItemOutcome::retry(retry_after, "timeout", detail),
        500..=599 => ItemOutcome::retry(retry_after, "server_error", detail),
        401 => ItemOutcome::auth("unauthorized", detail),
        403 => ItemOutcome::auth("forbidden", detail),
        s => ItemOutcome::permanent(&format!("http_{s}"), detail),
    }
}

/// Replaces every occurrence of a secret by `[redacted]`.
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    for s in secrets.iter().filter(|s| s.len() >= 4) {
        if out.contains(*s) {
            out = out.replace(*s, "[redacted]");
        }
    }
    out
}

/// The body's beginning as text, redacted, at most [`EXCERPT_MAX`] bytes.
pub(crate) fn excerpt(body: &[u8], secrets: &[&str]) -> String {
    // Redact on a wider window than kept, so a secret straddling the cut
    // is not half-shown.
    let window = &body[..body.len().min(EXCERPT_MAX * 4)];
    let text = redact(&String::from_utf8_lossy(window), secrets);
    truncate_bytes(&text, EXCERPT_MAX).to_owned()
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An endpoint the outbound policy refuses when its name is resolved
    /// (at send time) needs attention: no retry changes it.
    #[tokio::test]
    async fn a_refused_address_needs_attention() {
        let policy = clicktrail_outbound::OutboundPolicy::strict();
        let client = clicktrail_outbound::client(&policy, Duration::from_secs(2)).unwrap();
        let ex = exchange(
            client.post("http://metadata.google.internal/v19.0/1/events"),
            Duration::from_secs(2),
        )
        .await;
        let t = ex.result.expect_err("refused");
        let outcome = t.outcome();
        assert!(
            matches!(outcome, ItemOutcome::AuthFailed { .. }),
            "{outcome:?}"
        );
        assert_eq!(outcome.reason(), Some("address_not_allowed"));
    }

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        // Obsolete RFC 850 and asctime forms are valid HTTP dates too.
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:28:20 2015", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn statuses() {
        assert_eq!(
            by_status(204, None, ""),
            ItemOutcome::Delivered { duplicate: false }
        );
        assert!(
            matches!(by_status(429, Some(Duration::from_secs(3)), ""), ItemOutcome::Retry { after: Some(d), .. } if d.as_secs() == 3)
        );
        assert!(matches!(
            by_status(503, None, ""),
            ItemOutcome::Retry { .. }
        ));
        assert!(matches!(
            by_status(401, None, ""),
            ItemOutcome::AuthFailed { .. }
        ));
        assert_eq!(by_status(404, None, "").reason(), Some("http_404"));
    }

    #[test]
    fn excerpts() {
        let body = format!(
            "{{\"token\":\"SECRET-TOKEN\",\"pad\":\"{}\"}}",
            "é".repeat(3000)
        );
        let e = excerpt(body.as_bytes(), &["SECRET-TOKEN"]);
        assert!(e.len() <= EXCERPT_MAX);
        assert!(!e.contains("SECRET-TOKEN"));
        assert!(e.contains("[redacted]"));
        assert_eq!(truncate_chars("abcdef", 3), "abc…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }
}
