//! Conversions in: from a network's [`SourceEvent`] to one conversion-log
//! row with a stable outcome. Mapping, click resolution and attribution
//! are decided here ([`decide_batch`]: reads, then the pure [`decide`]),
//! by the conversion writer inside its transaction, or beforehand by a
//! caller with a large batch ([`ConversionQueue::decide`]). The writer
//! group-commits like the ingest pipeline and de-duplicates inside its
//! transaction, together with the outbox rows of validated conversions
//! and any connector snapshots.

use std::sync::Arc;

use clicktrail_domain::attribution::{self, ClickOrigin, adjustment_target, names_earlier};
use clicktrail_domain::conversion::{ErrorCode, LogStatus, SourceEvent};
use clicktrail_domain::ids::EntityId;
use clicktrail_domain::mapping::EventMapping;
use clicktrail_domain::{ClickId, Currency, PropertyId};
use clicktrail_store::Tx;
use clicktrail_store::clicks::Click;
use clicktrail_store::conversions::{self, Draft, Effect, Touch, Written, lookup};
use clicktrail_store::integrations::Integration;
use clicktrail_store::properties::Property;
use clicktrail_store::{Db, Reads, StoreError, WriterConn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commit::{self, CommitFailure, Loop, Queue};

/// The `origin` of the stand-in click of an on-site conversion.
const ON_SITE: &str = "session";

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

/// Decides one source event's outcome from what is known: the domain's
/// attribution rule on the looked-up facts, under a conversion id minted
/// here (the rule itself is pure).
pub fn decide(p: &Pending, f: Facts<'_>) -> Draft {
    // Time-ordered: a batch's rows share the pages of the id index.
    let id = EntityId::generate_at("cv", p.received_at_ms);
    let settings = &p.property.settings;
    let pending = attribution::PendingConversion {
        conversion_id: &id,
        event_id: p.event_id.as_deref(),
        property_id: &p.property.id,
        attribution_window_ms: settings.attribution_window_ms(),
        // Settings are validated when saved, so the code parses.
        reporting_currency: Currency::parse(&settings.currency).ok(),
        integration: p
            .integration
            .as_deref()
            .map(|i| attribution::IntegrationRef {
                id: &i.id,
                name: &i.name,
                tracking_group: &i.tracking_group,
            }),
        mapping: &p.mapping,
        received_at_ms: p.received_at_ms,
        event: &p.event,
        forced_error: p.forced_error.as_ref().map(|(c, d)| (*c, d.as_str())),
        session_id: p.session_id,
    };
    let facts = attribution::Facts {
        click: f.click.and_then(click_facts),
        session: f.session.map(|s| attribution::ClickSession {
            visitor_id: s.visitor_id.clone(),
            touch: Touch {
                session_id: Some(s.id),
                channel: Some(s.channel.clone()),
                source: Some(s.source.clone()),
                medium: Some(s.medium.clone()),
                campaign: s.utm_campaign.clone(),
                ad: s.utm_content.clone(),
                landing_page: Some(s.landing_page.clone()),
            },
            is_bot: s.is_bot,
        }),
        visitor_sessions: f.visitor_sessions,
        target_validated: f.target_validated,
    };
    Draft::from_decision(&p.event, attribution::decide(&pending, facts))
}

/// The domain's view of a looked-up click or stand-in (`None` if its
/// property id does not parse, which no stored click has).
fn click_facts(c: &Click) -> Option<attribution::Click> {
    let origin = match (c.origin.as_str(), &c.pageview_id) {
        (ON_SITE, _) => ClickOrigin::Session,
        ("pageview", Some(pageview_id)) => ClickOrigin::Pageview {
            pageview_id: pageview_id.clone(),
            page_url: c.page_url.clone(),
        },
        _ => ClickOrigin::Recorded,
    };
    Some(attribution::Click {
        property_id: PropertyId::parse(&c.property_id).ok()?,
        // The on-site stand-in names no click.
        click_id: match origin {
            ClickOrigin::Session => None,
            _ => ClickId::parse(&c.click_id).ok(),
        },
        origin,
        ts_ms: c.ts,
        session_id: c.session_id,
        visitor_id: c.visitor_id.clone(),
        link_url: c.link_url.clone(),
        link_group: c.link_group.clone(),
    })
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
                && names_earlier(&p.event)
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
    let adjusts = names_earlier(&p.event);
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

/// One job of the conversion writer: source events, and what commits with
/// them.
#[derive(Debug)]
struct Batch {
    items: Vec<Queued>,
    extra: Option<Extra>,
}

/// The conversion writer's queue.
#[derive(Clone)]
pub struct ConversionQueue {
    db: Db,
    queue: Queue<Batch, Vec<Written>>,
}

impl std::fmt::Debug for ConversionQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversionQueue")
            .field("depth", &self.queue.depth())
            .finish()
    }
}

/// One validated, counted conversion of a batch, for the [`Outbox`].
#[derive(Debug, Clone, Copy)]
pub struct QueueItem<'a> {
    pub conversion_id: &'a str,
    pub property_id: &'a PropertyId,
    /// Our conversion event (`Lead`, `Purchase`...).
    pub event_name: &'a str,
    pub send_to_destinations: bool,
}

/// The transactional outbox: what the conversion writer does with the
/// validated conversions of a batch *inside the batch's transaction*
/// (plan and insert their deliveries), and after its commit (wake the
/// delivery workers). The writer cannot be started without one, so a
/// conversion can never be committed without its deliveries planned.
pub trait Outbox: Send + Sync {
    /// Queues the deliveries of `items` in `tx`; returns how many.
    fn queue_in<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        items: &'a [QueueItem<'a>],
    ) -> futures::future::BoxFuture<'a, Result<u64, StoreError>>;

    /// Called after the batch's commit.
    fn committed(&self);
}

/// The validated conversions of a written batch that count (not
/// adjustments, not duplicates), as outbox items.
fn outbox_items<'a>(
    drafts: &'a [Draft],
    written: &'a [Written],
    ids: &'a [Option<PropertyId>],
) -> Vec<QueueItem<'a>> {
    drafts
        .iter()
        .zip(written)
        .zip(ids)
        .filter_map(|((d, w), pid)| {
            let counted = matches!(d.effect, Effect::Count)
                && matches!(w, Written::Recorded { status, .. } if *status == LogStatus::Validated);
            Some(QueueItem {
                conversion_id: w.id(),
                property_id: pid.as_ref()?,
                event_name: d.row.event_name.as_deref().filter(|_| counted)?,
                send_to_destinations: d.row.send_to_destinations,
            })
        })
        .collect()
}

impl ConversionQueue {
    /// Starts the conversion writer; it stops after `cancel`, once its
    /// queue is drained.
    pub fn start(
        db: Db,
        capacity: usize,
        outbox: Arc<dyn Outbox>,
        cancel: CancellationToken,
    ) -> (ConversionQueue, JoinHandle<()>) {
        let w = Writer {
            db: db.clone(),
            outbox,
            direct: None,
        };
        let (run, queue) = Loop::new(
            w,
            capacity,
            MAX_BATCH_DRAFTS,
            "conversions",
            Arc::default(),
            None,
        );
        let run = run.run(cancel);
        let handle = match db.backend() {
            clicktrail_store::Backend::Sqlite => {
                crate::rt::spawn_dedicated("conversion-writer", run)
            }
            clicktrail_store::Backend::Postgres => tokio::spawn(run),
        };
        (ConversionQueue { db, queue }, handle)
    }

    /// Queues source events (and connector snapshots) and waits for their
    /// commit.
    pub async fn submit(
        &self,
        items: Vec<Pending>,
        snapshots: Option<Extra>,
    ) -> Result<Vec<Written>, CommitFailure> {
        let items = items
            .into_iter()
            .map(|pending| Queued {
                pending,
                draft: None,
            })
            .collect();
        self.queue
            .try_push(Batch {
                items,
                extra: snapshots,
            })
            .await
    }

    /// Like [`submit`](Self::submit), but waits for room instead of failing
    /// when the queue is full, and decides the events first (see
    /// [`decide`](Self::decide)): for background work, which can wait.
    pub async fn submit_waiting(
        &self,
        items: Vec<Pending>,
        snapshots: Option<Extra>,
    ) -> Result<Vec<Written>, CommitFailure> {
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
    pub async fn decide(&self, items: Vec<Pending>) -> Result<Decided, CommitFailure> {
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
                CommitFailure::Storage
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
    ) -> Result<Vec<Written>, CommitFailure> {
        self.queue
            .push(Batch {
                items: decided.0,
                extra: snapshots,
            })
            .await
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
    outbox: Arc<dyn Outbox>,
    /// The writer's own connection (see [`WriterConn`]), opened on first
    /// use and dropped after a failed batch.
    direct: Option<WriterConn>,
}

const MAX_BATCH_DRAFTS: usize = 2000;

impl commit::Writer for Writer {
    type Work = Batch;
    type Output = Vec<Written>;
    type Error = StoreError;

    /// A deadlock or serialization failure with another process, or a
    /// unique violation: with two processes, a conversion's dedup key (or
    /// a materialised click) committed by the other after this
    /// transaction looked; written again, it is found and recorded as a
    /// duplicate.
    fn is_transient(e: &StoreError) -> bool {
        e.is_transient() || (e.is_unique_violation() && !matches!(e, StoreError::Conflict(_)))
    }
    fn size(b: &Batch) -> usize {
        b.items.len()
    }

    async fn write(&mut self, jobs: &mut [Batch]) -> Result<Vec<Vec<Written>>, StoreError> {
        let lens: Vec<usize> = jobs.iter().map(|b| b.items.len()).collect();
        let mut items: Vec<Queued> = jobs
            .iter_mut()
            .flat_map(|b| std::mem::take(&mut b.items))
            .collect();
        let extras: Vec<&Extra> = jobs.iter().filter_map(|b| b.extra.as_ref()).collect();
        let result = self.write_all(&mut items, extras).await;
        // The items go back to their jobs (their drafts used up, so a job
        // written again alone is decided afresh).
        let mut rest = items.into_iter();
        for (b, len) in jobs.iter_mut().zip(&lens) {
            b.items.extend(rest.by_ref().take(*len));
        }
        let mut written = result?.into_iter();
        Ok(lens
            .iter()
            .map(|&len| written.by_ref().take(len).collect())
            .collect())
    }

    fn maintain(&mut self) {
        self.restart_wal();
    }
}

impl Writer {
    /// Upkeep between batches, once their callers have their answers: on
    /// SQLite, restarts a grown WAL, as the ingest writer does.
    fn restart_wal(&mut self) {
        if let Some(w) = self.direct.as_mut()
            && let Err(e) = w.restart_wal_if_large()
        {
            tracing::warn!(error = %e, "restarting the WAL failed");
        }
    }

    /// Writes `items` in one transaction; their drafts are used up.
    async fn write_all(
        &mut self,
        items: &mut [Queued],
        snaps: Vec<&Extra>,
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
        snaps: Vec<&Extra>,
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
        for extra in snaps {
            match extra {
                Extra::Snapshots {
                    integration_id,
                    rows,
                } => {
                    clicktrail_store::integrations::put_snapshots(
                        &mut tx,
                        integration_id,
                        rows,
                        now,
                    )
                    .await?;
                }
                Extra::Cursor { key, from, to } => {
                    let moved = tx
                        .execute(
                            "UPDATE server_meta SET value = $3 WHERE key = $1 AND value = $2",
                            clicktrail_store::args![*key, from.to_string(), to.to_string()],
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
        // The transactional outbox: deliveries are planned in the
        // transaction that records their conversions.
        let ids: Vec<Option<PropertyId>> = drafts
            .iter()
            .map(|d| PropertyId::parse(&d.row.property_id).ok())
            .collect();
        let items = outbox_items(&drafts, &written, &ids);
        if !items.is_empty() {
            self.outbox.queue_in(&mut tx, &items).await?;
        }
        tx.commit().await?;
        self.outbox.committed();
        for w in &written {
            let (status, code) = w.outcome();
            metrics::counter!(
                "clicktrail_conversions_total",
                "status" => status.as_str(),
                "error_code" => code.unwrap_or("none").to_owned()
            )
            .increment(1);
        }
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    //! The adapter only: the rule's own tests are in
    //! `clicktrail_domain::attribution`.

    use super::*;
    use clicktrail_domain::conversion::{SourceKind, SourceStatus};
    use clicktrail_domain::mapping::{MappingRule, ValueSource};

    fn property() -> Arc<Property> {
        Arc::new(Property {
            id: clicktrail_domain::PropertyId::parse("abcdefghij012345").unwrap(),
            workspace_id: 1,
            name: "x".into(),
            domains: vec!["a.com".into()],
            settings: Default::default(),
            created_at: 0,
            updated_at: 0,
            deleted_at: None,
            purge_after: None,
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
            value: Some(clicktrail_domain::money::Amount::from_micros(12_500_000)),
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

    fn session() -> lookup::SessionTouch {
        lookup::SessionTouch {
            id: 7,
            visitor_id: "v12345678".into(),
            channel: "paid_social".into(),
            source: "facebook".into(),
            medium: "cpc".into(),
            utm_campaign: Some("spring".into()),
            utm_content: None,
            landing_page: "a.com/".into(),
            is_bot: true,
        }
    }

    #[test]
    fn validated_rows() {
        let c = click(9_000_000);
        let s = session();
        let p = pending(sale());
        let d = decide(
            &p,
            Facts {
                click: Some(&c),
                session: Some(&s),
                ..Facts::default()
            },
        );
        let row = &d.row;
        assert!(row.id.starts_with("cv_"));
        assert_eq!(row.event_id, row.id, "the conversion id stands in");
        assert_eq!(row.status, LogStatus::Validated);
        assert_eq!(
            (row.error_code.as_deref(), row.error_detail.as_deref()),
            (None, None)
        );
        assert_eq!(row.source_kind, "postback");
        assert_eq!(row.source_status, "approved");
        assert_eq!(row.event_name.as_deref(), Some("Purchase"));
        assert_eq!(row.value.map(|v| v.micros()), Some(12_500_000));
        assert_eq!(row.currency.as_deref(), Some("USD"));
        assert_eq!(row.offer.as_deref(), Some("wlx.adsrv.eacdn.com"));
        assert_eq!(row.link_group.as_deref(), Some("incomeaccess"));
        assert_eq!(row.click_ts, Some(9_000_000));
        assert_eq!(row.occurred_at, 10_000_000);
        assert_eq!((row.session_id, row.first_session_id), (Some(7), Some(7)));
        assert_eq!(row.channel.as_deref(), Some("paid_social"));
        assert_eq!(row.first_campaign.as_deref(), Some("spring"));
        assert!(row.is_bot);
        assert!(row.send_to_destinations);
        assert_eq!(
            row.dedup_key.as_deref(),
            Some(attribution::dedup_key(&p.property.id, None, &p.event).as_str())
        );
        assert!(matches!(d.effect, Effect::Count));
        assert!(d.materialise_click.is_none());
    }

    #[test]
    fn errors_and_ignored_rows() {
        let d = decide(&pending(sale()), Facts::default());
        assert_eq!(d.row.status, LogStatus::Error);
        assert_eq!(d.row.error_code.as_deref(), Some("unknown_click_id"));
        assert!(matches!(d.effect, Effect::None));

        let mut ev = sale();
        ev.status = SourceStatus::Rejected;
        let d = decide(&pending(ev), Facts::default());
        assert_eq!(d.row.status, LogStatus::Ignored);
        assert_eq!(d.row.error_code, None);
        assert_eq!(
            d.row.error_detail.as_deref(),
            Some("the network reports this conversion as rejected")
        );
    }

    #[test]
    fn a_pageview_click_is_materialised() {
        let mut pv = click(9_000_000);
        pv.id = 0;
        pv.origin = "pageview".into();
        pv.pageview_id = Some("0190f1a2-7d3c-7abc-8def-0123456789ab".into());
        pv.page_url = Some("https://a.com/review".into());
        pv.link_url = None;
        pv.link_group = None;
        let d = decide(
            &pending(sale()),
            Facts {
                click: Some(&pv),
                ..Facts::default()
            },
        );
        assert_eq!(d.row.status, LogStatus::Validated);
        let m = d.materialise_click.expect("the click is recorded");
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::to_value(&pv).unwrap()
        );
    }

    #[test]
    fn on_site_rows_name_no_click() {
        let mut ev = sale();
        ev.kind = SourceKind::Collector;
        ev.click_id = None;
        let mut p = pending(ev);
        p.session_id = Some(7);
        p.event_id = Some("0190f1a2-7d3c-7abc-8def-0123456789ab".into());
        let stand_in = Click {
            id: 0,
            click_id: String::new(),
            origin: ON_SITE.into(),
            ts: 10_000_000,
            link_url: None,
            link_group: None,
            ..click(0)
        };
        let d = decide(
            &p,
            Facts {
                click: Some(&stand_in),
                ..Facts::default()
            },
        );
        assert_eq!(d.row.status, LogStatus::Validated);
        assert_eq!(d.row.source_kind, "collector");
        assert_eq!(d.row.click_id, None);
        assert_eq!(d.row.event_id, "0190f1a2-7d3c-7abc-8def-0123456789ab");
        assert!(d.materialise_click.is_none());
    }
}
