//! The ingest pipeline (after Sentry relay's shape): request handlers
//! validate and enrich, then hand events to a bounded queue; writer tasks
//! drain it, commit many requests' events in one transaction (the group
//! commit of [`crate::commit`]), and only then acknowledge each request. A
//! 2xx therefore means "committed". A full queue is answered 503 +
//! `Retry-After` by the caller, never dropped silently.
//!
//! SQLite has one writer. PostgreSQL may have several, sharded by visitor,
//! so one visitor's events are still decided in order by one writer.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clicktrail_store::ingest::{EventOutcome, IngestEvent, Ingestor};
use clicktrail_store::{Backend, Db, StoreError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::commit::{self, CommitFailure, Loop, Queue};
use crate::config::IngestConfig;

/// What a request's events became, one outcome per event.
type Outcomes = Vec<EventOutcome>;

/// Handle used by request handlers.
#[derive(Clone)]
pub struct IngestQueue {
    shards: Arc<Vec<Queue<Vec<IngestEvent>, Outcomes>>>,
    depth: Arc<AtomicUsize>,
}

impl std::fmt::Debug for IngestQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestQueue")
            .field("shards", &self.shards.len())
            .field("depth", &self.depth())
            .finish()
    }
}

impl IngestQueue {
    /// Starts the writer tasks; they stop after `cancel`, once the queue is
    /// drained.
    pub fn start(
        db: Db,
        cfg: &IngestConfig,
        cancel: CancellationToken,
    ) -> (IngestQueue, Vec<JoinHandle<()>>) {
        let writers = match db.backend() {
            Backend::Sqlite => 1,
            // One by default: writers share the hourly rollup rows, so a
            // second one mostly waits for the first one's row locks.
            Backend::Postgres if cfg.writers == 0 => 1,
            Backend::Postgres => cfg.writers,
        };
        let depth = Arc::new(AtomicUsize::new(0));
        let per_shard = (cfg.queue_capacity / writers).max(1);
        let mut shards = Vec::with_capacity(writers);
        let mut handles = Vec::with_capacity(writers);
        for _ in 0..writers {
            let writer = Writer {
                db: db.clone(),
                ingestor: Ingestor::new(db.backend()),
            };
            let (run, queue) = Loop::new(
                writer,
                per_shard,
                cfg.max_batch_events,
                "ingest",
                depth.clone(),
                Some("clicktrail_ingest_queue_depth"),
            );
            shards.push(queue);
            let run = run.run(cancel.clone());
            handles.push(match db.backend() {
                // PostgreSQL connections belong to the shared runtime's
                // reactor; several writers there already overlap waits.
                Backend::Postgres => tokio::spawn(run),
                Backend::Sqlite => crate::rt::spawn_dedicated("ingest-writer", run),
            });
        }
        (
            IngestQueue {
                shards: Arc::new(shards),
                depth,
            },
            handles,
        )
    }

    /// Requests waiting for a writer.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Queues one request's events and waits for their commit.
    pub async fn submit(&self, events: Vec<IngestEvent>) -> Result<Outcomes, CommitFailure> {
        let shard = match events.first() {
            Some(e) if self.shards.len() > 1 => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                e.event.visitor_id.as_str().hash(&mut h);
                (h.finish() % self.shards.len() as u64) as usize
            }
            _ => 0,
        };
        let queue = self.shards.get(shard).ok_or(CommitFailure::ShuttingDown)?;
        let waited = Instant::now();
        let r = queue.try_push(events).await;
        if r != Err(CommitFailure::Overloaded) {
            metrics::histogram!("clicktrail_ingest_wait_seconds")
                .record(waited.elapsed().as_secs_f64());
        }
        r
    }
}

/// The ingest writer: a batch of requests' events in one transaction.
struct Writer {
    db: Db,
    ingestor: Ingestor,
}

impl commit::Writer for Writer {
    type Work = Vec<IngestEvent>;
    type Output = Outcomes;
    type Error = StoreError;

    /// A deadlock or serialization failure with another process.
    fn is_transient(e: &StoreError) -> bool {
        e.is_transient()
    }
    fn size(events: &Vec<IngestEvent>) -> usize {
        events.len()
    }

    async fn write(&mut self, jobs: &mut [Vec<IngestEvent>]) -> Result<Vec<Outcomes>, StoreError> {
        let lens: Vec<usize> = jobs.iter().map(Vec::len).collect();
        let events: Vec<IngestEvent> = jobs.iter_mut().flat_map(std::mem::take).collect();
        let started = Instant::now();
        let result = self.ingestor.write(&self.db, &events).await;
        let n = events.len();
        // The events go back to their jobs: a failed group is written
        // again job by job.
        let mut rest = events.into_iter();
        for (job, len) in jobs.iter_mut().zip(&lens) {
            job.extend(rest.by_ref().take(*len));
        }
        match result {
            Ok(outcomes) => {
                metrics::histogram!("clicktrail_ingest_batch_events").record(n as f64);
                metrics::histogram!("clicktrail_ingest_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                let mut rest = outcomes.into_iter();
                Ok(lens
                    .iter()
                    .map(|&len| rest.by_ref().take(len).collect())
                    .collect())
            }
            Err(e) => {
                metrics::counter!("clicktrail_ingest_commit_failures_total").increment(1);
                Err(e)
            }
        }
    }

    fn maintain(&mut self) {
        self.ingestor.maintain();
    }
}
