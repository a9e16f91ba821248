//! Deliveries as the API and the conversion log show them.

use std::collections::HashMap;

use clicktrail_domain::delivery::DeliveryStatus;
use clicktrail_store::deliveries::{self as store, AttemptRow, DeliveryRow, PARKED_AT};
use clicktrail_store::{Db, StoreError};
use serde::Serialize;

/// Most attempts listed per delivery (the newest).
const MAX_ATTEMPTS_SHOWN: usize = 20;

/// One delivery of a conversion to a destination.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryView {
    pub id: String,
    pub conversion_id: String,
    pub destination_id: String,
    pub destination_kind: String,
    pub destination_name: String,
    /// As sent to this destination (mapped).
    pub event_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversion_action: Option<String>,
    pub status: DeliveryStatus,
    /// Stable snake_case code: why it was skipped, failed, died or waits.
    pub reason: Option<String>,
    pub attempts: i64,
    /// When the next attempt is due (pending / retrying rows that are not
    /// waiting for their destination).
    pub next_attempt_at: Option<i64>,
    /// Waiting for its destination to be resumed or fixed.
    pub waiting_for_destination: bool,
    pub last_attempt_at: Option<i64>,
    pub last_http_status: Option<i64>,
    /// The platform's last message.
    pub last_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
    /// The attempts, oldest first (the last 20); absent in lists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

/// One attempt.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptView {
    pub at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    /// `delivered`, `skipped`, `retry`, `permanent`, `auth_failed`, `dead`.
    pub outcome: String,
    pub reason: Option<String>,
    pub message: String,
    /// The platform's answer, trimmed to 2 KB, credentials redacted.
    pub response_excerpt: String,
}

impl From<AttemptRow> for AttemptView {
    fn from(a: AttemptRow) -> Self {
        AttemptView {
            at: a.at,
            duration_ms: a.duration_ms,
            http_status: a.http_status,
            outcome: a.outcome,
            reason: a.reason,
            message: a.message,
            response_excerpt: a.response_excerpt,
        }
    }
}

impl DeliveryView {
    pub fn from_row(r: DeliveryRow, attempt_log: Option<Vec<AttemptView>>) -> Self {
        let waiting = matches!(r.status, DeliveryStatus::Pending | DeliveryStatus::Retrying);
        let parked = waiting && r.next_attempt_at >= PARKED_AT;
        DeliveryView {
            id: r.id,
            conversion_id: r.conversion_id,
            destination_id: r.destination_id,
            destination_kind: r.destination_kind,
            destination_name: r.destination_name,
            event_name: r.event_name,
            conversion_action: r.conversion_action,
            status: r.status,
            reason: r.reason,
            attempts: r.attempts,
            next_attempt_at: (waiting && !parked).then_some(r.next_attempt_at),
            waiting_for_destination: parked,
            last_attempt_at: r.last_attempt_at,
            last_http_status: r.last_http_status,
            last_message: r.last_message,
            created_at: r.created_at,
            updated_at: r.updated_at,
            delivered_at: r.delivered_at,
            attempt_log,
        }
    }
}

/// Attaches their attempts to delivery rows.
pub async fn with_attempts(
    db: &Db,
    rows: Vec<DeliveryRow>,
) -> Result<Vec<DeliveryView>, StoreError> {
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    let mut by_delivery: HashMap<String, Vec<AttemptView>> = HashMap::new();
    for a in store::attempts_of(db, &ids).await? {
        by_delivery
            .entry(a.delivery_id.clone())
            .or_default()
            .push(a.into());
    }
    Ok(rows
        .into_iter()
        .map(|r| {
            let mut log = by_delivery.remove(&r.id).unwrap_or_default();
            if log.len() > MAX_ATTEMPTS_SHOWN {
                log.drain(..log.len() - MAX_ATTEMPTS_SHOWN);
            }
            DeliveryView::from_row(r, Some(log))
        })
        .collect())
}

/// Each conversion's deliveries with their attempts, for the conversion
/// log: conversion id -> deliveries (oldest first). Conversions without
/// deliveries are absent.
pub async fn deliveries_for_conversions<S: AsRef<str>>(
    db: &Db,
    conversion_ids: &[S],
) -> Result<HashMap<String, Vec<DeliveryView>>, StoreError> {
    let ids: Vec<&str> = conversion_ids.iter().map(AsRef::as_ref).collect();
    let rows = store::deliveries_of_conversions(db, &ids).await?;
    let mut out: HashMap<String, Vec<DeliveryView>> = HashMap::new();
    for v in with_attempts(db, rows).await? {
        out.entry(v.conversion_id.clone()).or_default().push(v);
    }
    Ok(out)
}
