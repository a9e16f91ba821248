//! The collector service: a `POST /collect` body in, committed events out.
//! Decode (domain), find the property, enforce its domains, enrich, queue,
//! and wait for the commit. Every refusal has a stable code and is counted
//! by reason.
//!
//! Conversion attempts (custom conversion events) are judged here, where
//! the request is known: the property's on-site settings, the `Origin` of
//! a browser's request, or the signature of a backend's
//! (`POST /collect/server`). The verdict is stored with the event; the
//! on-site follower turns it into a conversion or a refusal in the
//! conversion log. An event is stored as traffic whatever its verdict.
//!
//! Consent is enforced here too: an event whose consent (resolved against
//! the property's `consent_required`) does not allow identifiers is stored
//! anonymised (`clicktrail_domain::consent::anonymise`), without the
//! address or the user agent string; see docs/PRIVACY.md, "Consent".

use std::net::SocketAddr;
use std::sync::Arc;

use clicktrail_domain::collect::{self, CollectError};
use clicktrail_domain::consent;
use clicktrail_domain::property::{OnsiteChannel, host_allowed};
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use http::{HeaderMap, StatusCode};

use crate::commit::CommitFailure;
use crate::enrich::{self, Enricher};
use crate::error::ServiceError;
use crate::ingest::IngestQueue;
use crate::properties::Properties;

/// The collector service.
#[derive(Debug)]
pub struct Collector {
    properties: Arc<Properties>,
    enricher: Arc<Enricher>,
    ingest: IngestQueue,
    max_body_bytes: usize,
}

/// What a committed request reports back.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Accepted {
    pub accepted: usize,
    pub duplicates: usize,
}

fn reject(code: &'static str, status: StatusCode, message: impl Into<String>) -> ServiceError {
    metrics::counter!("clicktrail_collect_rejected_total", "reason" => code).increment(1);
    ServiceError::new(status, code, message)
}

impl From<CollectError> for ServiceError {
    fn from(e: CollectError) -> Self {
        reject(e.code.as_str(), StatusCode::BAD_REQUEST, e.message)
    }
}

/// Checks the body's media type: JSON, or `text/plain` (what
/// `navigator.sendBeacon` sends for a string or text Blob). A missing type
/// is taken as JSON.
pub fn check_content_type(headers: &HeaderMap) -> Result<(), ServiceError> {
    let Some(ct) = headers.get(http::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = ct
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if matches!(ct.as_str(), "application/json" | "text/plain" | "") {
        Ok(())
    } else {
        Err(reject(
            "unsupported_media_type",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send JSON as application/json or text/plain",
        ))
    }
}

pub fn body_too_large(limit: usize) -> ServiceError {
    reject(
        "body_too_large",
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is larger than {limit} bytes"),
    )
}

/// The `Origin` header's host, when the request has one.
pub fn origin_host(headers: &HeaderMap) -> Option<String> {
    let o = headers.get(http::header::ORIGIN)?.to_str().ok()?;
    if o == "null" {
        return Some(String::new());
    }
    url::Url::parse(o).ok()?.host_str().map(str::to_owned)
}

impl Collector {
    pub fn new(
        properties: Arc<Properties>,
        enricher: Arc<Enricher>,
        ingest: IngestQueue,
        max_body_bytes: usize,
    ) -> Self {
        Self {
            properties,
            enricher,
            ingest,
            max_body_bytes,
        }
    }

    /// The largest body `collect` takes.
    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// Requests waiting for the ingest writer.
    pub fn queue_depth(&self) -> usize {
        self.ingest.depth()
    }

    /// Decodes, checks and commits one request of `POST /collect`.
    pub async fn collect(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        body: &[u8],
    ) -> Result<Accepted, ServiceError> {
        self.commit(headers, peer, body, false).await
    }

    /// `POST /collect/server`: the same body, sent by the site's backend and
    /// signed with the property's secret (see `docs/COLLECTOR.md`).
    pub async fn collect_server(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        body: &[u8],
    ) -> Result<Accepted, ServiceError> {
        self.commit(headers, peer, body, true).await
    }

    async fn commit(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        body: &[u8],
        signed: bool,
    ) -> Result<Accepted, ServiceError> {
        let state = self;
        let now = chrono::Utc::now().timestamp_millis();
        let batch = collect::decode(body, now)?;
        let property = state
            .properties
            .get(&batch.property_id)
            .await?
            .ok_or_else(|| {
                reject(
                    "unknown_property",
                    StatusCode::NOT_FOUND,
                    "no property has this id",
                )
            })?;
        let origin = origin_host(headers);
        if let Some(host) = &origin
            && !host_allowed(&property.domains, host)
        {
            return Err(reject(
                "domain_not_allowed",
                StatusCode::FORBIDDEN,
                "the request's Origin is not one of the property's domains",
            ));
        }
        let channel = if signed {
            check_signature(
                headers,
                body,
                &state.enricher.keyring().collect_secret(
                    property.id.as_str(),
                    property.settings.onsite.secret_version,
                ),
                now,
            )?;
            OnsiteChannel::Server
        } else {
            OnsiteChannel::Browser {
                origin_ok: origin.is_some(),
            }
        };
        for (i, e) in batch.events.iter().enumerate() {
            if !e
                .url
                .host_str()
                .is_some_and(|h| host_allowed(&property.domains, h))
            {
                return Err(reject(
                    "domain_not_allowed",
                    StatusCode::FORBIDDEN,
                    format!("events[{i}].url is not on one of the property's domains"),
                ));
            }
        }
        let facts = state.enricher.request_facts(headers, peer);
        let stored_ip = state
            .enricher
            .stored_ip(property.settings.ip_handling, facts.ip);
        let anonymous_facts = facts.without_identifiers();
        let consent_required = property.settings.consent_required;
        let timeout = property.settings.session_timeout_ms();
        let property_id = property.id.as_str().to_owned();
        let events: Vec<IngestEvent> = batch
            .events
            .into_iter()
            .map(|mut ev| {
                ev.consent = ev.consent.resolve(consent_required);
                let seed = if ev.consent.allows_identifiers(consent_required) {
                    enrich::session_seed(&ev, &facts, stored_ip.clone())
                } else {
                    consent::anonymise(&mut ev);
                    enrich::session_seed(&ev, &anonymous_facts, None)
                };
                let seed = Arc::new(seed);
                let onsite = onsite_verdict(&property.settings.onsite, &ev, channel);
                IngestEvent {
                    onsite,
                    property_id: property_id.clone(),
                    received_at_ms: now,
                    session_timeout_ms: timeout,
                    event: ev,
                    seed,
                    click_origin: ClickOrigin::Tag,
                }
            })
            .collect();
        let total = events.len();
        let outcomes = state.ingest.submit(events).await.map_err(|f| match f {
        CommitFailure::Overloaded => {
            metrics::counter!("clicktrail_collect_rejected_total", "reason" => "overloaded").increment(1);
            ServiceError::unavailable("overloaded", "the write queue is full; nothing was stored, send again", 1)
        }
        CommitFailure::Storage => {
            metrics::counter!("clicktrail_collect_rejected_total", "reason" => "storage_unavailable").increment(1);
            ServiceError::unavailable("storage_unavailable", "the database did not commit the events; send again", 2)
        }
        CommitFailure::ShuttingDown => {
            metrics::counter!("clicktrail_collect_rejected_total", "reason" => "shutting_down").increment(1);
            ServiceError::unavailable("shutting_down", "the server is shutting down; send again", 2)
        }
    })?;
        let accepted = outcomes.iter().filter(|o| o.inserted).count();
        let duplicates = total - accepted;
        metrics::counter!("clicktrail_collect_events_total", "outcome" => "accepted")
            .increment(accepted as u64);
        if duplicates > 0 {
            metrics::counter!("clicktrail_collect_events_total", "outcome" => "duplicate")
                .increment(duplicates as u64);
        }
        Ok(Accepted {
            accepted,
            duplicates,
        })
    }
}

/// How far a signed request's timestamp may be from the server's clock.
pub const SIGNATURE_WINDOW_SECS: i64 = 300;

/// Checks `X-Clicktrail-Timestamp` (unix seconds, within
/// [`SIGNATURE_WINDOW_SECS`] of now: an old request cannot be replayed
/// later) and `X-Clicktrail-Signature` (HMAC-SHA256 of `{timestamp}.{body}`).
fn check_signature(
    headers: &HeaderMap,
    body: &[u8],
    secret: &str,
    now_ms: i64,
) -> Result<(), ServiceError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (
        header("x-clicktrail-timestamp"),
        header("x-clicktrail-signature"),
    ) else {
        return Err(reject(
            "missing_signature",
            StatusCode::UNAUTHORIZED,
            "send X-Clicktrail-Timestamp and X-Clicktrail-Signature",
        ));
    };
    let fresh = ts
        .trim()
        .parse::<i64>()
        .is_ok_and(|t| (now_ms / 1000 - t).abs() <= SIGNATURE_WINDOW_SECS);
    if !fresh {
        return Err(reject(
            "signature_expired",
            StatusCode::UNAUTHORIZED,
            "X-Clicktrail-Timestamp must be the current unix time in seconds (within 5 minutes)",
        ));
    }
    if !crate::crypto::verify_collect_signature(secret, ts.trim(), body, sig) {
        return Err(reject(
            "invalid_signature",
            StatusCode::UNAUTHORIZED,
            "the signature is not the HMAC-SHA256 of timestamp.body under the property's server secret",
        ));
    }
    Ok(())
}

/// The on-site verdict of one event: `None` for an event that is no
/// conversion attempt, else `ok` or the refusal's code; counted by outcome.
fn onsite_verdict(
    settings: &clicktrail_domain::property::OnsiteSettings,
    ev: &collect::CollectedEvent,
    channel: OnsiteChannel,
) -> Option<&'static str> {
    let name = ev.name.as_str();
    if !settings.is_candidate(name) {
        return None;
    }
    let verdict = match settings.verdict(name, ev.value, channel) {
        Ok(()) => "ok",
        Err(r) => r.as_str(),
    };
    metrics::counter!("clicktrail_onsite_verdicts_total", "outcome" => verdict).increment(1);
    Some(verdict)
}
