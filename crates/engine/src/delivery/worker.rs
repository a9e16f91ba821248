//! The outbox workers. One dispatcher per server claims due deliveries
//! (oldest first, with a lease), groups them per destination in batches of
//! at most the platform's size, and runs up to `delivery.concurrency`
//! batches at once. It claims again as soon as a slot frees, when the
//! conversion code wakes it, or every `delivery.poll_interval_ms` when idle.
//!
//! A batch: rows of a paused destination (or one needing attention) are
//! parked untouched; the others are built from the stored conversion and
//! session, sent with `send_batch`, and each row's attempt and new status
//! are recorded in one transaction. An invalid or expired credential flags
//! the destination `needs_attention` and parks its rows without counting an
//! attempt. A crash leaves claimed rows leased; the lease runs out and
//! another worker resends them with the same ids, which the platforms
//! de-duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use clicktrail_destinations::{
    BatchResult, DestinationKind, RequestRecord, SendOptions, max_batch, send_batch, window_passed,
};
use clicktrail_domain::conversion::LogStatus;
use clicktrail_domain::delivery::{DeliveryStatus, OutboundConversion};
use clicktrail_store::deliveries::{
    self as store, AttemptRecord, Attention, ClaimedDelivery, ConversionFacts, DeliveryResult,
    DestinationStatus,
};
use clicktrail_store::{StoreError, now_ms};
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::Delivery;
use super::LoadedDestination;
use super::convert::outbound_conversion;
use super::policy::{Decision, RetryPolicy, decide};
use crate::config::DeliveryConfig;

/// Rows claimed per free slot (a Meta / TikTok batch).
const CLAIM_PER_SLOT: usize = 500;
/// Most rows claimed at once.
const MAX_CLAIM: usize = 2000;
/// How often the queue gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// How long a claim holds its rows: long enough for one `send_batch` call
/// (a few requests, each within the timeout). A batch that waited for a
/// free slot renews it before sending.
pub fn lease(cfg: &DeliveryConfig) -> Duration {
    Duration::from_secs(cfg.timeout_secs.max(1) * 4 + 5)
}

/// Starts the dispatcher and the queue-gauge task. They stop after
/// `cancel`: no new claims, batches in flight finish and are recorded,
/// claimed rows not yet sent are given back.
pub fn spawn(state: Arc<Delivery>, cancel: CancellationToken) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(dispatch(state.clone(), cancel.clone())),
        tokio::spawn(gauges(state, cancel)),
    ]
}

struct Shared {
    slots: Semaphore,
    /// Batches claimed and not yet finished.
    queued: AtomicUsize,
    done: Notify,
    policy: RetryPolicy,
    lease: Duration,
}

/// Claimed rows of one destination, at most its platform's batch size.
struct Batch {
    destination_id: String,
    dest: Option<Arc<LoadedDestination>>,
    rows: Vec<ClaimedDelivery>,
    claimed_at: Instant,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

async fn dispatch(state: Arc<Delivery>, cancel: CancellationToken) {
    let cfg = state.cfg.clone();
    let concurrency = cfg.concurrency.max(1);
    let poll = Duration::from_millis(cfg.poll_interval_ms.max(10));
    let shared = Arc::new(Shared {
        slots: Semaphore::new(concurrency),
        queued: AtomicUsize::new(0),
        done: Notify::new(),
        policy: RetryPolicy::from_config(&cfg),
        lease: lease(&cfg),
    });
    let wake = state.notified();
    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut failures: u32 = 0;
    tracing::debug!(concurrency, "delivery workers started");
    loop {
        while tasks.try_join_next().is_some() {}
        if cancel.is_cancelled() {
            break;
        }
        let queued = shared.queued.load(Ordering::Acquire);
        if queued >= concurrency {
            tokio::select! {
                () = shared.done.notified() => {}
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        let limit = ((concurrency - queued) * CLAIM_PER_SLOT).min(MAX_CLAIM);
        let claimed = match store::claim_due(
            &state.db,
            now_ms(),
            i64::try_from(limit).unwrap_or(500),
            millis(shared.lease),
        )
        .await
        {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, "claiming due deliveries failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(poll * failures.min(50)) => {}
                }
                continue;
            }
        };
        if claimed.is_empty() {
            tokio::select! {
                () = wake.notified() => {}
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(poll) => {}
            }
            continue;
        }
        for batch in group(&state, claimed).await {
            shared.queued.fetch_add(1, Ordering::AcqRel);
            tasks.spawn(run_batch(
                state.clone(),
                shared.clone(),
                batch,
                cancel.clone(),
            ));
        }
    }
    while tasks.join_next().await.is_some() {}
    tracing::debug!("delivery workers stopped");
}

/// Splits claimed rows per destination and platform batch size.
async fn group(state: &Delivery, claimed: Vec<ClaimedDelivery>) -> Vec<Batch> {
    let claimed_at = Instant::now();
    let mut order: Vec<String> = Vec::new();
    let mut by_dest: HashMap<String, (String, Vec<ClaimedDelivery>)> = HashMap::new();
    for row in claimed {
        let entry = by_dest
            .entry(row.destination_id.clone())
            .or_insert_with(|| {
                order.push(row.destination_id.clone());
                (row.property_id.clone(), Vec::new())
            });
        entry.1.push(row);
    }
    let mut batches = Vec::new();
    for destination_id in order {
        let Some((property_id, rows)) = by_dest.remove(&destination_id) else {
            continue;
        };
        let dest = find_destination(state, &property_id, &destination_id).await;
        let size = dest
            .as_ref()
            .and_then(|d| DestinationKind::parse(&d.row.kind))
            .map_or(25, max_batch)
            .max(1);
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            batches.push(Batch {
                destination_id: destination_id.clone(),
                dest: dest.clone(),
                rows: rows.by_ref().take(size).collect(),
                claimed_at,
            });
        }
    }
    batches
}

async fn find_destination(
    state: &Delivery,
    property_id: &str,
    destination_id: &str,
) -> Option<Arc<LoadedDestination>> {
    for attempt in 0..2 {
        match state.destinations_of(property_id).await {
            Ok(list) => {
                if let Some(d) = list.get(destination_id) {
                    return Some(d.clone());
                }
                if attempt == 0 {
                    // Created since the cache was filled (maybe by another
                    // server): read again.
                    state.forget(property_id).await;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "loading destinations failed");
                return None;
            }
        }
    }
    None
}

async fn run_batch(
    state: Arc<Delivery>,
    shared: Arc<Shared>,
    batch: Batch,
    cancel: CancellationToken,
) {
    let permit = tokio::select! {
        biased;
        () = cancel.cancelled() => None,
        p = shared.slots.acquire() => p.ok(),
    };
    let outcome = match permit {
        Some(_permit) => process(&state, &shared, batch).await,
        None => give_back(&state, &batch.destination_id, &batch.rows)
            .await
            .map(|_| ()),
    };
    if let Err(e) = outcome {
        // The rows stay leased; they are retried when the lease runs out.
        tracing::warn!(error = %e, "recording a delivery batch failed");
    }
    shared.queued.fetch_sub(1, Ordering::AcqRel);
    shared.done.notify_one();
}

/// Returns rows unsent: due again at once, or parked if their destination
/// is not active.
async fn give_back(
    state: &Delivery,
    destination_id: &str,
    rows: &[ClaimedDelivery],
) -> Result<bool, StoreError> {
    let claims: Vec<(&str, i64)> = rows
        .iter()
        .map(|r| (r.id.as_str(), r.locked_until))
        .collect();
    store::release(&state.db, destination_id, &claims).await
}

async fn process(state: &Delivery, shared: &Shared, mut batch: Batch) -> Result<(), StoreError> {
    if batch.claimed_at.elapsed() > shared.lease / 3 {
        // Waited for a slot: renew the lease so it covers the send.
        let until = now_ms() + millis(shared.lease);
        let claims: Vec<(&str, i64)> = batch
            .rows
            .iter()
            .map(|r| (r.id.as_str(), r.locked_until))
            .collect();
        let held = store::extend_lease(&state.db, &claims, until).await?;
        batch.rows.retain(|r| held.contains(&r.id));
        for r in &mut batch.rows {
            r.locked_until = until;
        }
    }
    if batch.rows.is_empty() {
        return Ok(());
    }
    let Some(loaded) = batch.dest.clone() else {
        give_back(state, &batch.destination_id, &batch.rows).await?;
        return Ok(());
    };
    if loaded.status() != DestinationStatus::Active {
        let parked = give_back(state, &batch.destination_id, &batch.rows).await?;
        if !parked {
            // Resumed since the cache was filled.
            state.forget(&loaded.row.property_id).await;
        }
        return Ok(());
    }
    let dest = match &loaded.parsed {
        Ok(d) => d,
        Err(unusable) => return flag_unusable(state, &loaded, &batch.rows, unusable).await,
    };
    let Some(client) = state.client() else {
        give_back(state, &batch.destination_id, &batch.rows).await?;
        return Ok(());
    };
    let kind = dest.kind();

    let conversion_ids: Vec<&str> = batch
        .rows
        .iter()
        .map(|r| r.conversion_id.as_str())
        .collect();
    let facts: HashMap<String, ConversionFacts> =
        store::conversion_facts(&state.db, &conversion_ids)
            .await?
            .into_iter()
            .map(|f| (f.conversion_id.clone(), f))
            .collect();

    let now = Utc::now();
    let mut early: Vec<(usize, Decision)> = Vec::new();
    let mut to_send: Vec<usize> = Vec::new();
    let mut conversions: Vec<OutboundConversion> = Vec::new();
    for (i, row) in batch.rows.iter().enumerate() {
        let local = |status, reason: &str, detail: &str, outcome| Decision {
            status,
            reason: Some(reason.to_owned()),
            detail: Some(detail.to_owned()),
            attempts: row.attempts,
            retry_in: None,
            hold: false,
            outcome,
        };
        match facts.get(&row.conversion_id) {
            None => early.push((
                i,
                local(
                    DeliveryStatus::Failed,
                    "conversion_missing",
                    "the conversion is no longer stored",
                    "permanent",
                ),
            )),
            Some(f) if f.status != LogStatus::Validated => early.push((
                i,
                local(
                    DeliveryStatus::Skipped,
                    "conversion_not_validated",
                    "the conversion is no longer validated (reversed or adjusted away)",
                    "skipped",
                ),
            )),
            Some(f) => {
                let c = outbound_conversion(
                    f,
                    &row.event_name,
                    row.conversion_action.as_deref(),
                    &state.enricher,
                );
                if window_passed(kind, &c, now) {
                    early.push((
                        i,
                        local(
                            DeliveryStatus::Dead,
                            "outside_window",
                            "the platform no longer accepts a conversion this old",
                            "dead",
                        ),
                    ));
                } else {
                    to_send.push(i);
                    conversions.push(c);
                }
            }
        }
    }

    let sent = if conversions.is_empty() {
        None
    } else {
        let opts = SendOptions {
            test_mode: false,
            timeout: state.timeout(),
        };
        let r = send_batch(client, dest, state.tokens(), &conversions, opts).await;
        for req in &r.requests {
            metrics::histogram!("clicktrail_delivery_attempt_duration_seconds", "kind" => kind.as_str())
                .record(req.duration.as_secs_f64());
        }
        Some(r)
    };

    let finished_at = now_ms();
    let (results, attention) = build_results(
        &batch.rows,
        early,
        &to_send,
        &conversions,
        sent.as_ref(),
        kind,
        &shared.policy,
        finished_at,
    );
    let attention_ref = attention.as_ref().map(|(reason, message)| Attention {
        destination_id: &loaded.row.id,
        revision: loaded.row.revision,
        reason,
        message,
    });
    let recorded = store::record_results(&state.db, &results, attention_ref.as_ref()).await?;
    if attention.is_some() {
        state.forget(&loaded.row.property_id).await;
    }
    if recorded.flagged {
        tracing::warn!(
            destination = %loaded.row.id,
            kind = kind.as_str(),
            reason = attention.as_ref().map(|a| a.0.as_str()),
            "destination needs attention: its deliveries wait until it is fixed"
        );
    }
    let mut tally: HashMap<&'static str, u64> = HashMap::new();
    for r in &results {
        let outcome = if r.hold {
            "auth_failed"
        } else {
            r.status.as_str()
        };
        *tally.entry(outcome).or_default() += 1;
    }
    for (outcome, n) in &tally {
        metrics::counter!("clicktrail_deliveries_total", "kind" => kind.as_str(), "outcome" => *outcome)
            .increment(*n);
    }
    tracing::debug!(
        destination = %loaded.row.id,
        kind = kind.as_str(),
        rows = results.len(),
        recorded = recorded.rows,
        http_status = sent.as_ref().and_then(|s| s.http_status),
        "delivery batch done"
    );
    Ok(())
}

/// The stored outcome of each row of a batch, and the destination's
/// credentials problem if the platform reported one.
#[expect(
    clippy::too_many_arguments,
    reason = "one private step of process(), kept synchronous so the RNG never crosses an await"
)]
fn build_results(
    rows: &[ClaimedDelivery],
    early: Vec<(usize, Decision)>,
    to_send: &[usize],
    conversions: &[OutboundConversion],
    sent: Option<&BatchResult>,
    kind: DestinationKind,
    policy: &RetryPolicy,
    now: i64,
) -> (Vec<DeliveryResult>, Option<(String, String)>) {
    let mut rng = rand::rng();
    let mut results = Vec::with_capacity(rows.len());
    let mut attention = None;
    for (i, d) in early {
        if let Some(row) = rows.get(i) {
            results.push(result_of(row, d, None, now));
        }
    }
    let Some(sent) = sent else {
        return (results, attention);
    };
    let at = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_else(Utc::now);
    for (k, (&i, conv)) in to_send.iter().zip(conversions).enumerate() {
        let (Some(row), Some(outcome)) = (rows.get(i), sent.items.get(k)) else {
            continue;
        };
        let rec = sent.request_for(k);
        let open_after = |d: Duration| {
            chrono::Duration::from_std(d).is_ok_and(|d| !window_passed(kind, conv, at + d))
        };
        let d = decide(
            outcome,
            row.attempts,
            rec.is_some(),
            &open_after,
            policy,
            &mut rng,
        );
        if d.hold && attention.is_none() {
            attention = Some((
                d.reason.clone().unwrap_or_else(|| "auth_failed".into()),
                d.detail.clone().unwrap_or_default(),
            ));
        }
        results.push(result_of(row, d, rec, now));
    }
    (results, attention)
}

fn result_of(
    row: &ClaimedDelivery,
    d: Decision,
    rec: Option<&RequestRecord>,
    now: i64,
) -> DeliveryResult {
    let at = rec.map_or(now, |r| r.started_at.timestamp_millis());
    let message = d
        .detail
        .clone()
        .or_else(|| rec.map(|r| r.message.clone()))
        .unwrap_or_default();
    let http_status = rec.and_then(|r| r.http_status).map(i64::from);
    DeliveryResult {
        id: row.id.clone(),
        lease: row.locked_until,
        status: d.status,
        reason: d.reason.clone(),
        attempts: d.attempts,
        next_attempt_at: now + d.retry_in.map_or(0, millis),
        hold: d.hold,
        last_attempt_at: rec.map(|_| at),
        last_http_status: http_status,
        last_message: Some(message.clone()),
        delivered_at: (d.status == DeliveryStatus::Delivered).then_some(now),
        attempt: Some(AttemptRecord {
            at,
            duration_ms: rec.map_or(0, |r| millis(r.duration)),
            http_status,
            message,
            response_excerpt: rec.map(|r| r.response_excerpt.clone()).unwrap_or_default(),
            outcome: d.outcome.to_owned(),
            reason: d.reason,
        }),
    }
}

/// The stored configuration cannot be used (unreadable credentials, an
/// endpoint the policy now refuses...): flag the destination and park its
/// rows without an attempt.
async fn flag_unusable(
    state: &Delivery,
    loaded: &LoadedDestination,
    rows: &[ClaimedDelivery],
    unusable: &super::Unusable,
) -> Result<(), StoreError> {
    let now = now_ms();
    let results: Vec<DeliveryResult> = rows
        .iter()
        .map(|row| DeliveryResult {
            id: row.id.clone(),
            lease: row.locked_until,
            status: DeliveryStatus::Pending,
            reason: Some(unusable.reason.to_owned()),
            attempts: row.attempts,
            next_attempt_at: now,
            hold: true,
            last_attempt_at: None,
            last_http_status: None,
            last_message: Some(unusable.message.clone()),
            delivered_at: None,
            attempt: None,
        })
        .collect();
    let attention = Attention {
        destination_id: &loaded.row.id,
        revision: loaded.row.revision,
        reason: unusable.reason,
        message: &unusable.message,
    };
    let recorded = store::record_results(&state.db, &results, Some(&attention)).await?;
    state.forget(&loaded.row.property_id).await;
    if recorded.flagged {
        tracing::warn!(
            destination = %loaded.row.id,
            reason = unusable.reason,
            "destination configuration unusable: its deliveries wait until it is fixed"
        );
    }
    Ok(())
}

async fn gauges(state: Arc<Delivery>, cancel: CancellationToken) {
    loop {
        let now = now_ms();
        match store::queue_stats(&state.db, now).await {
            Ok(s) => {
                metrics::gauge!("clicktrail_delivery_pending").set(s.waiting as f64);
                let age = s.oldest_due_at.map_or(0, |t| (now - t).max(0));
                metrics::gauge!("clicktrail_delivery_queue_age_seconds").set(age as f64 / 1000.0);
            }
            Err(e) => tracing::debug!(error = %e, "delivery queue stats failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(GAUGE_INTERVAL) => {}
        }
    }
}
