//! Conversions in: from a network's [`SourceEvent`] to one conversion-log
//! row with a stable outcome. Mapping, click resolution and attribution
//! are decided here ([`decide_batch`]: reads, then the pure [`decide`]),
//! by the conversion writer inside its transaction, or beforehand by a
//! caller with a large batch ([`ConversionQueue::decide`]). The writer
//! group-commits like the ingest pipeline and de-duplicates inside its
//! transaction, together with the outbox rows of validated conversions
//! and any connector snapshots.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use clicktrail_domain::conversion::{ErrorCode, SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::ids::EntityId;
use clicktrail_domain::mapping::{EventMapping, Mapped, ValueSource, normalise_name};
use clicktrail_domain::money::to_micros;
use clicktrail_domain::{ClickId, PropertyId};
use clicktrail_store::clicks::Click;
use clicktrail_store::conversions::{self, ConversionRow, Draft, Effect, Touch, Written, lookup};
use clicktrail_store::integrations::Integration;
use clicktrail_store::properties::Property;
use clicktrail_store::{Db, Reads, StoreError, WriterConn};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::delivery::QueueItem;
use crate::pipeline::IngestFailure;
use crate::state::AppState;

/// The `origin` of the stand-in click of an on-site conversion.
const ON_SITE: &str = "session";

/// Tolerance for a conversion dated slightly before its click (clock skew):
/// such conversions are dated at the click instead of refused.
const SKEW_TOLERANCE_MS: i64 = 10 * 60 * 1000;
/// Reports of API connectors carry dates, not times: a registration on the
/// click's day may be dated at midnight before it.
const DATE_ONLY_TOLERANCE_MS: i64 = 36 * 3600 * 1000;

/// A source event waiting to be decided and written, with where it came
/// from.
#[derive(Debug, Clone)]
pub struct Pending {
    pub property: Arc<Property>,
    /// The installed integration (postbacks and API polls); `None` for
    /// collector custom events.
    pub integration: Option<Arc<Integration>>,
    pub mapping: Arc<EventMapping>,
    pub received_at_ms: i64,
    /// The platforms' de-duplication id when the conversion came through the
    /// tag (its event id, which the browser pixels used too).
    pub event_id: Option<String>,
    pub event: SourceEvent,
    /// Set when the source could not be read into an event at all (a
    /// report row the connector refused): logged with this code and detail.
    pub forced_error: Option<(ErrorCode, String)>,
    /// For a conversion tracked on the site itself (a collector custom
    /// event): the session it happened in, which is its attribution (there
    /// is no affiliate click to name).
    pub session_id: Option<i64>,
}

fn blank_row(p: &Pending) -> ConversionRow {
    let ev = &p.event;
    // Time-ordered: a batch's rows share the pages of the id index.
    let id = EntityId::generate_at("cv", p.received_at_ms).into_string();
    ConversionRow {
        event_id: p.event_id.clone().unwrap_or_else(|| id.clone()),
        id,
        property_id: p.property.id.as_str().to_owned(),
        integration_id: p.integration.as_ref().map(|i| i.id.clone()),
        source_kind: match ev.kind {
            SourceKind::Postback => "postback",
            SourceKind::Api => "api",
            SourceKind::Collector => "collector",
            SourceKind::Test => "test",
        }
        .into(),
        source_event: ev.source_event.clone(),
        transaction_id: ev.transaction_id.clone(),
        dedup_key: Some(dedup_key(p)),
        duplicate_of: None,
        status: "error".into(),
        error_code: None,
        error_detail: None,
        event_name: None,
        value_micros: ev.value.map(to_micros),
        currency: ev.currency.map(|c| c.as_str().to_owned()),
        adjusted_micros: 0,
        adjusts_id: None,
        source_status: ev.status.as_str().into(),
        send_to_destinations: false,
        occurred_at: ev
            .occurred_at
            .map(|t| t.timestamp_millis())
            .unwrap_or(p.received_at_ms),
        received_at: p.received_at_ms,
        click_id: ev
            .click_id
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned),
        click_ts: None,
        session_id: None,
        visitor_id: None,
        link_group: p.integration.as_ref().map(|i| i.tracking_group.clone()),
        offer: None,
        channel: None,
        source: None,
        medium: None,
        campaign: None,
        ad: None,
        landing_page: None,
        first_session_id: None,
        first_channel: None,
        first_source: None,
        first_medium: None,
        first_campaign: None,
        first_ad: None,
        first_landing_page: None,
        is_bot: false,
        raw: ev.raw.as_str().to_owned(),
    }
}

/// The idempotency key: integration + transaction + source event. Without a
/// transaction id, the click id stands in (one conversion per click and
/// event), and without either, the payload itself (exact repeats only).
fn dedup_key(p: &Pending) -> String {
    let ev = &p.event;
    let scope = match &p.integration {
        Some(i) => i.id.clone(),
        None => format!("collector:{}", p.property.id),
    };
    let tx = match (&ev.transaction_id, &ev.click_id) {
        (Some(t), _) if !t.trim().is_empty() => format!("tx:{t}"),
        (_, Some(c)) if !c.trim().is_empty() => format!("click:{}", c.trim()),
        _ => format!(
            "raw:{}",
            hex::encode(&Sha256::digest(ev.raw.as_str().as_bytes())[..16])
        ),
    };
    let adjustment = if is_adjustment(ev) || ev.status == SourceStatus::Rejected {
        "|adjustment"
    } else {
        ""
    };
    format!(
        "{scope}|{tx}|{}{adjustment}",
        normalise_name(&ev.source_event)
    )
}

fn is_adjustment(ev: &SourceEvent) -> bool {
    ev.adjusts.is_some() || ev.status == SourceStatus::Reversed
}

/// The transaction an adjustment or rejection applies to.
fn adjustment_target(ev: &SourceEvent) -> Option<&str> {
    ev.adjusts
        .as_deref()
        .or(ev.transaction_id.as_deref())
        .filter(|t| !t.trim().is_empty())
}

fn fail(row: &mut ConversionRow, code: ErrorCode, detail: Option<String>) {
    row.status = "error".into();
    row.error_code = Some(code.as_str().into());
    row.error_detail = detail;
}

fn apply_touch(row: &mut ConversionRow, s: &lookup::SessionTouch) {
    row.session_id = Some(s.id);
    row.visitor_id = Some(s.visitor_id.clone());
    row.channel = Some(s.channel.clone());
    row.source = Some(s.source.clone());
    row.medium = Some(s.medium.clone());
    row.campaign = s.utm_campaign.clone();
    row.ad = s.utm_content.clone();
    row.landing_page = Some(s.landing_page.clone());
    row.is_bot = s.is_bot;
}

fn apply_first(row: &mut ConversionRow, t: Touch) {
    row.first_session_id = t.session_id;
    row.first_channel = t.channel;
    row.first_source = t.source;
    row.first_medium = t.medium;
    row.first_campaign = t.campaign;
    row.first_ad = t.ad;
    row.first_landing_page = t.landing_page;
}

fn offer_of(click: &Click) -> Option<String> {
    click
        .link_url
        .as_deref()
        .and_then(|u| url::Url::parse(u).ok())
        .and_then(|u| u.host_str().map(str::to_owned))
}

/// What the database knows that one decision needs.
#[derive(Debug, Default, Clone, Copy)]
pub struct Facts<'a> {
    /// The click the click id names (a stored click, or one derived from the
    /// pageview of a tag-minted id whose OutboundClick was lost).
    pub click: Option<&'a Click>,
    pub session: Option<&'a lookup::SessionTouch>,
    /// The visitor's sessions (oldest first) since the window's start.
    pub visitor_sessions: &'a [(i64, Touch)],
    /// For an adjustment or rejection: whether the transaction it names has
    /// a validated conversion.
    pub target_validated: bool,
}

/// Decides one source event's outcome from what is known. Pure.
pub fn decide(p: &Pending, f: Facts<'_>) -> Draft {
    let ev = &p.event;
    let mut row = blank_row(p);
    let mut effect = Effect::None;
    let none = |row| Draft {
        row,
        effect: Effect::None,
        materialise_click: None,
    };
    if let Some((code, detail)) = &p.forced_error {
        fail(&mut row, *code, Some(detail.clone()));
        return none(row);
    }

    // 1. Adjustments (reversals, rejections of earlier conversions, falls of
    //    running totals) change an earlier conversion, never add one.
    let rejected = ev.status == SourceStatus::Rejected;
    if is_adjustment(ev) || rejected {
        match (adjustment_target(ev), &p.integration) {
            (Some(_), Some(_)) if rejected && !f.target_validated => {
                row.status = "ignored".into();
                row.error_detail = Some("the network reports this conversion as rejected".into());
                return none(row);
            }
            (Some(target), Some(int)) => {
                row.status = "adjustment".into();
                effect = Effect::Adjust {
                    integration_id: int.id.clone(),
                    transaction_id: target.to_owned(),
                    delta_micros: ev.value.map(to_micros),
                    full_reversal: ev.adjusts.is_none(),
                };
            }
            _ if rejected => {
                row.status = "ignored".into();
                row.error_detail = Some("the network reports this conversion as rejected".into());
                return none(row);
            }
            _ => {
                fail(
                    &mut row,
                    ErrorCode::InvalidPayload,
                    Some(
                        "a reversal must name the transaction id of the conversion it reverses"
                            .into(),
                    ),
                );
                return none(row);
            }
        }
    }

    // 2. Mapping.
    let mut send = false;
    if !matches!(effect, Effect::Adjust { .. }) {
        match p.mapping.map(&ev.source_event) {
            Mapped::Unmapped => {
                fail(
                    &mut row,
                    ErrorCode::UnmappedEvent,
                    Some(format!("no mapping for {:?}", ev.source_event)),
                );
            }
            Mapped::Ignored => {
                row.status = "ignored".into();
                row.error_detail = Some("the event mapping ignores this event".into());
            }
            Mapped::Event { name, rule } => {
                row.event_name = Some(name.to_owned());
                send = rule.send_to_destinations;
                match &rule.value {
                    ValueSource::Reported => {}
                    ValueSource::Fixed { amount, currency } => {
                        row.value_micros = Some(to_micros(*amount));
                        row.currency = Some(currency.as_str().to_owned());
                    }
                    ValueSource::None => {
                        row.value_micros = None;
                        row.currency = None;
                    }
                }
                row.status = "validated".into();
            }
        }
    }
    if row.value_micros.is_some() && row.currency.is_none() {
        row.currency = Some(p.property.settings.currency.clone());
    }

    // 3. The click, its session and traffic source; filled in even for
    //    errors, so the log shows what is known.
    let mut materialise = None;
    if let Some(c) = f.click {
        row.click_ts = Some(c.ts);
        if c.origin != ON_SITE {
            row.click_id = Some(c.click_id.clone());
        }
        if let Some(g) = &c.link_group {
            row.link_group = Some(g.clone());
        }
        row.offer = offer_of(c).or_else(|| p.integration.as_ref().map(|i| i.name.clone()));
        if let Some(s) = f.session {
            apply_touch(&mut row, s);
        }
        if c.origin == "pageview" {
            materialise = Some(c.clone());
        }
    }
    if row.status == "ignored" || row.error_code.is_some() {
        return none(row);
    }
    let Some(click) = f.click else {
        let code = if row.click_id.is_none() {
            ErrorCode::MissingClickId
        } else {
            ErrorCode::UnknownClickId
        };
        fail(&mut row, code, None);
        return none(row);
    };

    // 4. Time rules.
    let tolerance = if ev.kind == SourceKind::Api {
        DATE_ONLY_TOLERANCE_MS
    } else {
        SKEW_TOLERANCE_MS
    };
    if row.occurred_at < click.ts - tolerance {
        fail(&mut row, ErrorCode::BeforeClick, None);
        return none(row);
    }
    row.occurred_at = row.occurred_at.max(click.ts);
    let window = p.property.settings.attribution_window_ms();
    if let Some(w) = window
        && row.occurred_at - click.ts > w
    {
        fail(&mut row, ErrorCode::OutsideWindow, None);
        return none(row);
    }

    // 5. First touch: the visitor's earliest session within the window,
    //    up to the click.
    let since = window.map(|w| row.occurred_at - w).unwrap_or(i64::MIN);
    let first = f
        .visitor_sessions
        .iter()
        .find(|(started, _)| *started >= since && *started <= click.ts)
        .map(|(_, t)| t.clone());
    let last = Touch {
        session_id: row.session_id,
        channel: row.channel.clone(),
        source: row.source.clone(),
        medium: row.medium.clone(),
        campaign: row.campaign.clone(),
        ad: row.ad.clone(),
        landing_page: row.landing_page.clone(),
    };
    apply_first(&mut row, first.unwrap_or(last));

    if matches!(effect, Effect::Adjust { .. }) {
        return Draft {
            row,
            effect,
            materialise_click: materialise,
        };
    }
    row.send_to_destinations = send;
    Draft {
        row,
        effect: Effect::Count,
        materialise_click: materialise,
    }
}

/// Looks up, in one query per kind of fact, what the batch's decisions
/// need, and decides them, one draft per event in order.
///
/// Inside the writer's transaction it sees every click committed before and
/// no conversion can slip in between. On the pool (a poller deciding its
/// chunk before queueing it) a decision can be overtaken by a commit in
/// between; the writer decides those again (see [`settled`]).
pub async fn decide_batch(
    reads: &mut Reads<'_, '_>,
    batch: &[&Pending],
) -> Result<Vec<Draft>, StoreError> {
    use std::collections::{HashMap, HashSet};
    let mut by_property: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, p) in batch.iter().enumerate() {
        by_property
            .entry(p.property.id.as_str())
            .or_default()
            .push(i);
    }
    let mut drafts: Vec<Option<Draft>> = vec![None; batch.len()];
    for (property, idx) in by_property {
        // Clicks, then lost-beacon ids through their pageviews.
        let ids: Vec<&str> = idx
            .iter()
            .filter_map(|&i| batch[i].event.click_id.as_deref().map(str::trim))
            .filter(|c| ClickId::parse(c).is_ok())
            .collect();
        let mut clicks = lookup::clicks(reads, property, &ids).await?;
        let mut pv_of: HashMap<String, String> = HashMap::new();
        for id in &ids {
            if clicks.contains_key(*id) {
                continue;
            }
            if let Some(pv) = ClickId::parse(id)
                .ok()
                .as_ref()
                .and_then(clicktrail_domain::clickid::pageview_of)
            {
                pv_of.insert(pv.hyphenated().to_string(), (*id).to_owned());
            }
        }
        let pv_ids: Vec<String> = pv_of.keys().cloned().collect();
        for (pv_id, pv) in lookup::pageviews(reads, property, &pv_ids).await? {
            if let Some(cid) = pv_of.get(&pv_id) {
                clicks.insert(
                    cid.clone(),
                    Click {
                        id: 0,
                        property_id: property.to_owned(),
                        click_id: cid.clone(),
                        origin: "pageview".into(),
                        ts: pv.ts,
                        session_id: pv.session_id,
                        visitor_id: pv.visitor_id,
                        event_id: None,
                        pageview_id: Some(pv.event_id),
                        page_url: Some(pv.url),
                        link_url: None,
                        link_group: None,
                        link_text: None,
                    },
                );
            }
        }
        // On-site conversions: their own session stands in for a click.
        let on_site: Vec<i64> = idx.iter().filter_map(|&i| batch[i].session_id).collect();
        let own_sessions = lookup::sessions(reads, &on_site).await?;
        let mut session_clicks: HashMap<usize, Click> = HashMap::new();
        for &i in &idx {
            let p = &batch[i];
            if let Some(s) = p.session_id.and_then(|id| own_sessions.get(&id)) {
                session_clicks.insert(
                    i,
                    Click {
                        id: 0,
                        property_id: property.to_owned(),
                        click_id: String::new(),
                        origin: ON_SITE.into(),
                        ts: p
                            .event
                            .occurred_at
                            .map(|t| t.timestamp_millis())
                            .unwrap_or(p.received_at_ms),
                        session_id: s.id,
                        visitor_id: s.visitor_id.clone(),
                        event_id: None,
                        pageview_id: None,
                        page_url: None,
                        link_url: None,
                        link_group: None,
                        link_text: None,
                    },
                );
            }
        }
        let session_ids: Vec<i64> = clicks
            .values()
            .chain(session_clicks.values())
            .map(|c| c.session_id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let sessions = lookup::sessions(reads, &session_ids).await?;
        let visitors: Vec<&str> = clicks
            .values()
            .chain(session_clicks.values())
            .map(|c| c.visitor_id.as_str())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let since = idx
            .iter()
            .map(|&i| {
                let p = &batch[i];
                let at = p
                    .event
                    .occurred_at
                    .map(|t| t.timestamp_millis())
                    .unwrap_or(p.received_at_ms);
                p.property
                    .settings
                    .attribution_window_ms()
                    .map(|w| at - w)
                    .unwrap_or(0)
            })
            .min()
            .unwrap_or(0);
        let visitor_sessions = lookup::visitor_sessions(reads, property, &visitors, since).await?;
        // Earlier validated conversions named by adjustments / rejections.
        let mut validated: HashMap<&str, HashSet<String>> = HashMap::new();
        let mut wanted: HashMap<&str, Vec<&str>> = HashMap::new();
        for &i in &idx {
            let p = &batch[i];
            if let (Some(int), Some(t)) = (&p.integration, adjustment_target(&p.event))
                && (is_adjustment(&p.event) || p.event.status == SourceStatus::Rejected)
            {
                wanted.entry(int.id.as_str()).or_default().push(t);
            }
        }
        for (int, txs) in wanted {
            validated.insert(int, lookup::validated_transactions(reads, int, &txs).await?);
        }
        for &i in &idx {
            let p = &batch[i];
            let click = session_clicks.get(&i).or_else(|| {
                p.event
                    .click_id
                    .as_deref()
                    .map(str::trim)
                    .and_then(|c| clicks.get(c))
            });
            let session = click.and_then(|c| sessions.get(&c.session_id));
            let vs = click
                .and_then(|c| visitor_sessions.get(&c.visitor_id))
                .map(Vec::as_slice)
                .unwrap_or(&[]);
            let target_validated = match (&p.integration, adjustment_target(&p.event)) {
                (Some(int), Some(t)) => validated
                    .get(int.id.as_str())
                    .is_some_and(|s| s.contains(t)),
                _ => false,
            };
            drafts[i] = Some(decide(
                p,
                Facts {
                    click,
                    session,
                    visitor_sessions: vs,
                    target_validated,
                },
            ));
        }
    }
    Ok(drafts.into_iter().flatten().collect())
}

/// Whether a draft decided outside the writer's transaction stands: not if
/// what it was decided on may have changed before the write. A click whose
/// beacon was committed after the lookup makes an `unknown_click_id` known;
/// an adjustment or rejection depends on the validated conversions, which
/// the write before may have just added.
fn settled(p: &Pending, d: &Draft) -> bool {
    let unknown = d.row.error_code.as_deref() == Some(ErrorCode::UnknownClickId.as_str());
    let adjusts = is_adjustment(&p.event) || p.event.status == SourceStatus::Rejected;
    p.forced_error.is_some() || !(unknown || adjusts)
}

/// A source event in the writer's queue, with its draft when its caller
/// decided it already.
#[derive(Debug)]
struct Queued {
    pending: Pending,
    draft: Option<Draft>,
}

/// What a job commits with its conversions, in the same transaction.
#[derive(Debug, Clone)]
pub enum Extra {
    /// A connector's new row snapshots.
    Snapshots {
        integration_id: String,
        rows: Vec<(String, String)>,
    },
    /// A job's progress cursor in `server_meta`, moved from `from` to `to`;
    /// if another process moved it first, the whole transaction is rolled
    /// back (so two processes never record the same events twice).
    Cursor {
        key: &'static str,
        from: i64,
        to: i64,
    },
}

struct Job {
    items: Vec<Queued>,
    snapshots: Option<Extra>,
    ack: oneshot::Sender<Result<Vec<Written>, IngestFailure>>,
}

/// The conversion writer's queue.
#[derive(Clone)]
pub struct ConversionQueue {
    db: Db,
    tx: mpsc::Sender<Job>,
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for ConversionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversionQueue")
            .field("depth", &self.depth.load(Ordering::Relaxed))
            .finish()
    }
}

/// What the writer does with the validated conversions of a committed
/// batch, inside the same transaction (the transactional outbox).
pub type AfterWrite = Arc<
    dyn for<'a> Fn(
            &'a mut clicktrail_store::Tx,
            &'a [Draft],
            &'a [Written],
        ) -> futures::future::BoxFuture<'a, Result<(), StoreError>>
        + Send
        + Sync,
>;

/// The transactional outbox: queues the deliveries of a batch's validated
/// conversions inside the batch's transaction, and wakes the delivery
/// workers once it is committed. The state is set once the server's state
/// exists (it holds this writer's queue).
pub fn outbox_hooks(cell: Arc<OnceLock<AppState>>) -> (AfterWrite, AfterCommit) {
    let before = cell.clone();
    let after_write: AfterWrite = Arc::new(move |tx, drafts, written| {
        let cell = before.clone();
        Box::pin(async move {
            let Some(state) = cell.get() else {
                return Ok(());
            };
            let ids: Vec<Option<PropertyId>> = drafts
                .iter()
                .map(|d| PropertyId::parse(&d.row.property_id).ok())
                .collect();
            let items: Vec<QueueItem<'_>> = drafts
                .iter()
                .zip(written)
                .zip(&ids)
                .filter_map(|((d, w), pid)| {
                    let counted = matches!(d.effect, Effect::Count)
                        && matches!(w, Written::Recorded { status, .. } if status == "validated");
                    Some(QueueItem {
                        conversion_id: w.id(),
                        property_id: pid.as_ref()?,
                        event_name: d.row.event_name.as_deref().filter(|_| counted)?,
                        send_to_destinations: d.row.send_to_destinations,
                    })
                })
                .collect();
            if !items.is_empty() {
                crate::delivery::queue_in(state, tx, &items).await?;
            }
            Ok(())
        })
    });
    let after_commit: AfterCommit = Arc::new(move || {
        if let Some(state) = cell.get() {
            state.delivery.wake();
        }
    });
    (after_write, after_commit)
}

/// Runs after a batch is committed.
pub type AfterCommit = Arc<dyn Fn() + Send + Sync>;

impl ConversionQueue {
    pub fn start(
        db: Db,
        capacity: usize,
        hooks: Option<(AfterWrite, AfterCommit)>,
        cancel: CancellationToken,
    ) -> (ConversionQueue, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let depth = Arc::new(AtomicUsize::new(0));
        let (after_write, after_commit) = match hooks {
            Some((w, c)) => (Some(w), Some(c)),
            None => (None, None),
        };
        let w = Writer {
            db: db.clone(),
            rx,
            depth: depth.clone(),
            after_write,
            after_commit,
            direct: None,
        };
        let handle = match w.db.backend() {
            clicktrail_store::Backend::Sqlite => {
                crate::rt::spawn_dedicated("conversion-writer", w.run(cancel))
            }
            clicktrail_store::Backend::Postgres => tokio::spawn(w.run(cancel)),
        };
        (ConversionQueue { db, tx, depth }, handle)
    }

    /// Queues source events (and connector snapshots) and waits for their
    /// commit.
    pub async fn submit(
        &self,
        items: Vec<Pending>,
        snapshots: Option<Extra>,
    ) -> Result<Vec<Written>, IngestFailure> {
        let (ack, rx) = oneshot::channel();
        // Counted before sending: the writer runs on its own thread and may
        // count the job out before `try_send` returns.
        self.depth.fetch_add(1, Ordering::Relaxed);
        let items = items
            .into_iter()
            .map(|pending| Queued {
                pending,
                draft: None,
            })
            .collect();
        if let Err(e) = self.tx.try_send(Job {
            items,
            snapshots,
            ack,
        }) {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => IngestFailure::Overloaded,
                mpsc::error::TrySendError::Closed(_) => IngestFailure::ShuttingDown,
            });
        }
        rx.await.unwrap_or(Err(IngestFailure::ShuttingDown))
    }

    /// Like [`submit`](Self::submit), but waits for room instead of failing
    /// when the queue is full, and decides the events first (see
    /// [`decide`](Self::decide)): for background work, which can wait.
    pub async fn submit_waiting(
        &self,
        items: Vec<Pending>,
        snapshots: Option<Extra>,
    ) -> Result<Vec<Written>, IngestFailure> {
        let decided = self.decide(items).await?;
        self.submit_decided(decided, snapshots).await
    }

    /// Decides source events before they are queued, beside the writer
    /// instead of in it: a poller's chunk of a thousand rows has its
    /// lookups and decisions made here while the writer commits the chunk
    /// before, and the writer only decides again the few drafts that may
    /// have changed in between (see [`settled`]) before writing. Postbacks,
    /// one or a few events each, leave the deciding to the writer, which
    /// batches the lookups of many.
    ///
    /// The lookups run as one batch of reads ([`Db::read_batch`]): on
    /// SQLite all of them in one blocking task, on one read-only
    /// connection, with no hand-off per query.
    pub async fn decide(&self, items: Vec<Pending>) -> Result<Decided, IngestFailure> {
        let (items, drafts) = self
            .db
            .read_batch(move |reads| {
                Box::pin(async move {
                    let refs: Vec<&Pending> = items.iter().collect();
                    let drafts = decide_batch(reads, &refs).await?;
                    drop(refs);
                    Ok((items, drafts))
                })
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "deciding conversions failed");
                IngestFailure::Storage
            })?;
        Ok(Decided(
            items
                .into_iter()
                .zip(drafts)
                .map(|(pending, draft)| Queued {
                    pending,
                    draft: Some(draft),
                })
                .collect(),
        ))
    }

    /// Queues events [`decide`](Self::decide)d before (and connector
    /// snapshots), waiting for room, and waits for their commit.
    pub async fn submit_decided(
        &self,
        decided: Decided,
        snapshots: Option<Extra>,
    ) -> Result<Vec<Written>, IngestFailure> {
        let (ack, rx) = oneshot::channel();
        self.depth.fetch_add(1, Ordering::Relaxed);
        if self
            .tx
            .send(Job {
                items: decided.0,
                snapshots,
                ack,
            })
            .await
            .is_err()
        {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return Err(IngestFailure::ShuttingDown);
        }
        rx.await.unwrap_or(Err(IngestFailure::ShuttingDown))
    }
}

/// Source events decided before they were queued.
#[derive(Debug)]
pub struct Decided(Vec<Queued>);

impl Decided {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

struct Writer {
    db: Db,
    rx: mpsc::Receiver<Job>,
    depth: Arc<AtomicUsize>,
    after_write: Option<AfterWrite>,
    after_commit: Option<AfterCommit>,
    /// The writer's own connection (see [`WriterConn`]), opened on first
    /// use and dropped after a failed batch.
    direct: Option<WriterConn>,
}

const MAX_BATCH_DRAFTS: usize = 2000;

impl Writer {
    async fn run(mut self, cancel: CancellationToken) {
        let mut maintain = false;
        loop {
            let first = tokio::select! {
                biased;
                j = self.rx.recv() => j,
                () = cancel.cancelled() => {
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            if std::mem::take(&mut maintain) {
                self.maintain();
            }
            let mut jobs = vec![first];
            let mut n = jobs[0].items.len();
            while n < MAX_BATCH_DRAFTS {
                match self.rx.try_recv() {
                    Ok(j) => {
                        n += j.items.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            self.depth.fetch_sub(jobs.len(), Ordering::Relaxed);
            if jobs.len() > 1 {
                let (mut items, snaps, acks) = split(jobs);
                match self.write(&mut items, snaps.clone()).await {
                    Ok(written) => ack_all(acks, written),
                    Err(e) => {
                        // One job must not sink the others: retry each alone
                        // (deciding afresh: the failed write used up the
                        // drafts).
                        tracing::warn!(error = %e, "conversion group commit failed; committing jobs one by one");
                        let mut rest = items.into_iter();
                        for ((len, ack), snap) in acks.into_iter().zip(snaps) {
                            let mut d: Vec<Queued> = rest.by_ref().take(len).collect();
                            let r = self.write(&mut d, vec![snap]).await.map_err(|e| {
                                tracing::error!(error = %e, "conversion commit failed");
                                IngestFailure::Storage
                            });
                            let _ = ack.send(r);
                        }
                    }
                }
            } else if let Some(mut j) = jobs.pop() {
                let r = self
                    .write(&mut j.items, vec![j.snapshots])
                    .await
                    .map_err(|e| {
                        tracing::error!(error = %e, "conversion commit failed");
                        IngestFailure::Storage
                    });
                let _ = j.ack.send(r);
            }
            maintain = true;
        }
    }

    /// Upkeep between batches, once their callers have their answers: on
    /// SQLite, restarts a grown WAL, as the ingest writer does.
    fn maintain(&mut self) {
        if let Some(w) = self.direct.as_mut()
            && let Err(e) = w.restart_wal_if_large()
        {
            tracing::warn!(error = %e, "restarting the WAL failed");
        }
    }

    /// Writes `items` in one transaction; their drafts are used up.
    async fn write(
        &mut self,
        items: &mut [Queued],
        snaps: Vec<Option<Extra>>,
    ) -> Result<Vec<Written>, StoreError> {
        let result = self.write_once(items, snaps).await;
        if result.is_err() {
            // Whatever state the connection was left in, a new one is clean.
            self.direct = None;
        }
        result
    }

    async fn write_once(
        &mut self,
        items: &mut [Queued],
        snaps: Vec<Option<Extra>>,
    ) -> Result<Vec<Written>, StoreError> {
        let w = match &mut self.direct {
            Some(w) => w,
            None => self.direct.insert(self.db.dedicated_writer()?),
        };
        let mut tx = w.begin().await?;
        // Drafts decided by the caller stand unless they may have changed;
        // the rest are decided here, inside the transaction.
        let mut drafts: Vec<Option<Draft>> = items
            .iter_mut()
            .map(|q| q.draft.take().filter(|d| settled(&q.pending, d)))
            .collect();
        let undecided: Vec<usize> = (0..items.len()).filter(|&i| drafts[i].is_none()).collect();
        if !undecided.is_empty() {
            let batch: Vec<&Pending> = undecided.iter().map(|&i| &items[i].pending).collect();
            let decided = decide_batch(&mut Reads::Tx(&mut tx), &batch).await?;
            for (i, d) in undecided.into_iter().zip(decided) {
                drafts[i] = Some(d);
            }
        }
        let mut drafts: Vec<Draft> = drafts.into_iter().flatten().collect();
        let written = conversions::write_in(&mut tx, &mut drafts).await?;
        let now = chrono::Utc::now().timestamp_millis();
        for extra in snaps.into_iter().flatten() {
            match extra {
                Extra::Snapshots {
                    integration_id,
                    rows,
                } => {
                    clicktrail_store::integrations::put_snapshots(
                        &mut tx,
                        &integration_id,
                        &rows,
                        now,
                    )
                    .await?;
                }
                Extra::Cursor { key, from, to } => {
                    let moved = tx
                        .execute(
                            "UPDATE server_meta SET value = $3 WHERE key = $1 AND value = $2",
                            clicktrail_store::args![key, from.to_string(), to.to_string()],
                        )
                        .await?;
                    if moved != 1 {
                        return Err(StoreError::Conflict(format!(
                            "cursor {key} moved by another process"
                        )));
                    }
                }
            }
        }
        if let Some(after) = &self.after_write {
            after(&mut tx, &drafts, &written).await?;
        }
        tx.commit().await?;
        if let Some(after) = &self.after_commit {
            after();
        }
        for w in &written {
            let (status, code) = w.outcome();
            metrics::counter!(
                "clicktrail_conversions_total",
                "status" => status.to_owned(),
                "error_code" => code.unwrap_or("none").to_owned()
            )
            .increment(1);
        }
        Ok(written)
    }
}

type Acks = Vec<(usize, oneshot::Sender<Result<Vec<Written>, IngestFailure>>)>;

fn split(jobs: Vec<Job>) -> (Vec<Queued>, Vec<Option<Extra>>, Acks) {
    let mut items = Vec::new();
    let mut snaps = Vec::new();
    let mut acks = Vec::new();
    for j in jobs {
        acks.push((j.items.len(), j.ack));
        items.extend(j.items);
        snaps.push(j.snapshots);
    }
    (items, snaps, acks)
}

fn ack_all(acks: Acks, written: Vec<Written>) {
    let mut rest = written.into_iter();
    for (len, ack) in acks {
        let _ = ack.send(Ok(rest.by_ref().take(len).collect()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clicktrail_domain::mapping::MappingRule;

    fn property() -> Arc<Property> {
        Arc::new(Property {
            id: clicktrail_domain::PropertyId::parse("abcdefghij012345").unwrap(),
            workspace_id: 1,
            name: "x".into(),
            domains: vec!["a.com".into()],
            settings: Default::default(),
            created_at: 0,
            updated_at: 0,
        })
    }

    fn pending(ev: SourceEvent) -> Pending {
        let mut m = EventMapping::default();
        m.0.insert(
            "sale".into(),
            MappingRule {
                event: Some("Purchase".into()),
                value: ValueSource::Reported,
                send_to_destinations: true,
            },
        );
        Pending {
            property: property(),
            integration: None,
            mapping: Arc::new(m),
            received_at_ms: 10_000_000,
            event_id: None,
            event: ev,
            forced_error: None,
            session_id: None,
        }
    }

    fn sale() -> SourceEvent {
        SourceEvent {
            kind: SourceKind::Postback,
            source_event: "Sale".into(),
            click_id: Some("c".repeat(20)),
            transaction_id: Some("T1".into()),
            value: Some(rust_decimal::Decimal::new(1250, 2)),
            currency: None,
            status: SourceStatus::Approved,
            occurred_at: None,
            adjusts: None,
            raw: Default::default(),
        }
    }

    fn click(ts: i64) -> Click {
        Click {
            id: 1,
            property_id: "abcdefghij012345".into(),
            click_id: "c".repeat(20),
            origin: "tag".into(),
            ts,
            session_id: 7,
            visitor_id: "v12345678".into(),
            event_id: None,
            pageview_id: None,
            page_url: None,
            link_url: Some("https://wlx.adsrv.eacdn.com/C.ashx?c=1".into()),
            link_group: Some("incomeaccess".into()),
            link_text: None,
        }
    }

    #[test]
    fn dedup_keys() {
        let mut p = pending(sale());
        let k1 = dedup_key(&p);
        p.event.source_event = "sale".into();
        assert_eq!(dedup_key(&p), k1, "event names match case-insensitively");
        p.event.status = SourceStatus::Reversed;
        assert_ne!(dedup_key(&p), k1, "a reversal is not a repeat of the sale");
        p.event.status = SourceStatus::Approved;
        p.event.transaction_id = None;
        assert!(dedup_key(&p).contains("click:"));
    }

    #[test]
    fn outcomes() {
        let c = click(9_000_000);
        let facts = Facts {
            click: Some(&c),
            ..Facts::default()
        };
        let d = decide(&pending(sale()), facts);
        assert_eq!(d.row.status, "validated");
        assert_eq!(d.row.event_name.as_deref(), Some("Purchase"));
        assert_eq!(
            d.row.currency.as_deref(),
            Some("USD"),
            "property currency fills in"
        );
        assert_eq!(d.row.offer.as_deref(), Some("wlx.adsrv.eacdn.com"));
        assert!(d.row.send_to_destinations);

        let mut ev = sale();
        ev.click_id = None;
        assert_eq!(
            decide(&pending(ev), Facts::default())
                .row
                .error_code
                .as_deref(),
            Some("missing_click_id")
        );
        assert_eq!(
            decide(&pending(sale()), Facts::default())
                .row
                .error_code
                .as_deref(),
            Some("unknown_click_id")
        );

        let mut ev = sale();
        ev.source_event = "lead".into();
        assert_eq!(
            decide(&pending(ev), facts).row.error_code.as_deref(),
            Some("unmapped_event")
        );

        let late = click(10_000_000 + SKEW_TOLERANCE_MS + 1);
        let d = decide(
            &pending(sale()),
            Facts {
                click: Some(&late),
                ..Facts::default()
            },
        );
        assert_eq!(d.row.error_code.as_deref(), Some("before_click"));

        let old = click(10_000_000 - 31 * 86_400_000);
        let d = decide(
            &pending(sale()),
            Facts {
                click: Some(&old),
                ..Facts::default()
            },
        );
        assert_eq!(d.row.error_code.as_deref(), Some("outside_window"));

        let mut ev = sale();
        ev.status = SourceStatus::Reversed;
        ev.transaction_id = None;
        assert_eq!(
            decide(&pending(ev), facts).row.error_code.as_deref(),
            Some("invalid_payload")
        );
    }

    #[test]
    fn first_touch_within_window() {
        let c = click(9_000_000);
        let early = Touch {
            session_id: Some(1),
            channel: Some("organic_search".into()),
            ..Touch::default()
        };
        let sessions = vec![(8_000_000, early)];
        let d = decide(
            &pending(sale()),
            Facts {
                click: Some(&c),
                visitor_sessions: &sessions,
                ..Facts::default()
            },
        );
        assert_eq!(d.row.first_channel.as_deref(), Some("organic_search"));
        assert_eq!(d.row.first_session_id, Some(1));
    }
}
