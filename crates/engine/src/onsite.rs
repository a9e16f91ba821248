//! On-site conversions: custom events the tag (or a site's backend) sends
//! through `/collect` (`clicktrail('track', 'Lead', {value, currency})`)
//! become conversions attributed to their session, and so reach the ad
//! destinations with the same `event_id` the browser pixels used.
//!
//! Only what the collector judged a conversion attempt is looked at, and
//! its verdict decides (see `crate::collector`): an allowed one becomes a
//! conversion, a refused one an error in the conversion log with the
//! refusal's code (`onsite_disabled`, `origin_required`, ...), so each
//! ends in exactly one recorded outcome.
//!
//! Events are committed by the ingest writer; this job follows them with a
//! cursor kept in `server_meta` and moved in the same transaction as the
//! conversions it records, so each event becomes a conversion exactly once
//! even across crashes and several server processes.

use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::PropertyId;
use clicktrail_domain::conversion::{ErrorCode, SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::mapping::{EventMapping, MappingRule, ValueSource};
use clicktrail_store::{StoreError, events, meta};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use clicktrail_store::Db;

use crate::conversions::{ConversionQueue, Extra, Pending};
use crate::properties::Properties;

/// What the on-site follower needs.
#[derive(Debug)]
pub struct OnSite {
    db: Db,
    properties: Arc<Properties>,
    conversions: ConversionQueue,
}

impl OnSite {
    pub fn new(db: Db, properties: Arc<Properties>, conversions: ConversionQueue) -> Self {
        Self {
            db,
            properties,
            conversions,
        }
    }
}

pub use clicktrail_domain::property::CONVERSION_EVENTS;

const CURSOR: &str = "onsite_conversions_cursor";
const BATCH: i64 = 500;
/// Most event ids one pass looks through.
const SCAN_WINDOW: i64 = 50_000;

/// The mapping of on-site events: each event name to itself.
pub fn mapping_of(names: &[&str]) -> EventMapping {
    EventMapping(
        names
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    MappingRule {
                        event: Some((*n).to_owned()),
                        value: ValueSource::Reported,
                        send_to_destinations: true,
                    },
                )
            })
            .collect(),
    )
}

/// The mapping of the standard conversion events.
pub fn mapping() -> EventMapping {
    mapping_of(CONVERSION_EVENTS)
}

/// How often a pass that found no conversions persists its cursor: moving
/// it in the database on every pass would take SQLite's write lock from the
/// ingest writer several times a second under load. Re-reading a few
/// thousand events after a restart costs little.
const PERSIST_EVERY_EVENTS: i64 = 20_000;
const PERSIST_EVERY: Duration = Duration::from_secs(5);

/// Where the follower is: `from` may run ahead of the persisted cursor over
/// events that held no conversion.
#[derive(Debug)]
pub struct Follower {
    persisted: Option<i64>,
    from: i64,
    persisted_at: std::time::Instant,
}

impl Default for Follower {
    fn default() -> Self {
        Self {
            persisted: None,
            from: 0,
            persisted_at: std::time::Instant::now(),
        }
    }
}

/// One pass: records the conversions of the next events after the cursor.
/// Returns how far the cursor moved (0: caught up).
pub async fn run_once(state: &OnSite, f: &mut Follower) -> Result<usize, StoreError> {
    let r = pass(state, f).await;
    if r.is_err() {
        // Another process may have moved the cursor: re-read it.
        f.persisted = None;
    }
    r
}

async fn pass(state: &OnSite, f: &mut Follower) -> Result<usize, StoreError> {
    let persisted = match f.persisted {
        Some(p) => p,
        None => {
            let p: i64 = meta::get_or_init(&state.db, CURSOR, "0")
                .await?
                .parse()
                .unwrap_or(0);
            f.persisted = Some(p);
            f.from = p;
            f.persisted_at = std::time::Instant::now();
            p
        }
    };
    let from = f.from;
    // Scan at most a bounded id range per pass: the cursor moves past the
    // events that are not conversions too, so a pass never rereads them.
    let upto = events::max_id(&state.db)
        .await?
        .min(from.saturating_add(SCAN_WINDOW));
    if upto <= from {
        persist_idle(state, f, persisted).await?;
        return Ok(0);
    }
    let rows = events::onsite_between(&state.db, from, upto, BATCH).await?;
    let last = if rows.len() as i64 == BATCH {
        rows.last().map_or(upto, |r| r.id)
    } else {
        upto
    };
    if rows.is_empty() {
        f.from = last;
        persist_idle(state, f, persisted).await?;
        return Ok((last - from) as usize);
    }
    let mut items = Vec::with_capacity(rows.len());
    for r in &rows {
        let mapping = Arc::new(mapping_of(&[r.name.as_str()]));
        // Refused by the collector: recorded as an error with its reason.
        let forced_error = match r.onsite.as_deref() {
            Some("ok") | None => None,
            Some(code) => Some((
                ErrorCode::parse(code).unwrap_or(ErrorCode::InvalidPayload),
                format!("{} was not accepted as an on-site conversion", r.name),
            )),
        };
        metrics::counter!("clicktrail_onsite_conversions_total", "outcome" => if forced_error.is_some() { "refused" } else { "accepted" }).increment(1);
        let Ok(pid) = PropertyId::parse(&r.property_id) else {
            continue;
        };
        let Some(property) = state.properties.get(&pid).await? else {
            continue;
        };
        let raw = serde_json::json!({
            "event_id": r.event_id, "name": r.name, "url": r.url,
            "value": r.value.map(|v| v.to_string()), "currency": r.currency,
            "props": r.props.as_deref().and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok()),
        });
        items.push(Pending {
            property,
            integration: None,
            mapping,
            received_at_ms: r.ts,
            event_id: Some(r.event_id.clone()),
            event: SourceEvent {
                kind: SourceKind::Collector,
                source_event: r.name.clone(),
                click_id: None,
                transaction_id: Some(r.event_id.clone()),
                value: r.value,
                currency: r
                    .currency
                    .as_deref()
                    .and_then(|c| clicktrail_domain::Currency::parse(c).ok()),
                status: SourceStatus::Approved,
                occurred_at: chrono::DateTime::from_timestamp_millis(r.ts),
                adjusts: None,
                raw: raw.into(),
            },
            forced_error,
            session_id: Some(r.session_id),
        });
    }
    let n = (last - from) as usize;
    state
        .conversions
        .submit_waiting(
            items,
            Some(Extra::Cursor {
                key: CURSOR,
                from: persisted,
                to: last,
            }),
        )
        .await
        .map_err(|e| StoreError::Conflict(e.to_string()))?;
    f.persisted = Some(last);
    f.from = last;
    f.persisted_at = std::time::Instant::now();
    Ok(n)
}

/// Persists a cursor that only moved over non-conversion events, now and
/// then (compare-and-set, like the conversion writer does).
async fn persist_idle(state: &OnSite, f: &mut Follower, persisted: i64) -> Result<(), StoreError> {
    let behind = f.from - persisted;
    if behind == 0 || (behind < PERSIST_EVERY_EVENTS && f.persisted_at.elapsed() < PERSIST_EVERY) {
        return Ok(());
    }
    if !meta::compare_and_set(
        &state.db,
        CURSOR,
        &persisted.to_string(),
        &f.from.to_string(),
    )
    .await?
    {
        return Err(StoreError::Conflict(format!(
            "cursor {CURSOR} moved by another process"
        )));
    }
    f.persisted = Some(f.from);
    f.persisted_at = std::time::Instant::now();
    Ok(())
}

/// Follows committed events.
pub fn spawn(state: Arc<OnSite>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut follower = Follower::default();
        loop {
            let n = match run_once(&state, &mut follower).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "on-site conversions: pass failed; retrying");
                    0
                }
            };
            // Go on at once only while far behind; otherwise a pass per
            // tick keeps the reads off the hot path.
            if n as i64 >= SCAN_WINDOW {
                continue;
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(Duration::from_millis(250)) => {}
            }
        }
    })
}
