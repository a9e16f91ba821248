//! The ingest pipeline (after Sentry relay's shape): request handlers
//! validate and enrich, then hand events to a bounded queue; writer tasks
//! drain it, commit many requests' events in one transaction (group
//! commit), and only then acknowledge each request. A 2xx therefore means
//! "committed". A full queue is answered 503 + `Retry-After` by the caller,
//! never dropped silently.
//!
//! SQLite has one writer. PostgreSQL may have several, sharded by visitor,
//! so one visitor's events are still decided in order by one writer.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use clicktrail_store::ingest::{EventOutcome, IngestEvent, Ingestor};
use clicktrail_store::{Backend, Db};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::IngestConfig;

/// Why a submitted request was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IngestFailure {
    #[error("the write queue is full")]
    Overloaded,
    #[error("the database did not commit the events")]
    Storage,
    #[error("the server is shutting down")]
    ShuttingDown,
}

struct Job {
    events: Vec<IngestEvent>,
    ack: oneshot::Sender<Result<Vec<EventOutcome>, IngestFailure>>,
}

/// Handle used by request handlers.
#[derive(Clone)]
pub struct IngestQueue {
    shards: Arc<Vec<mpsc::Sender<Job>>>,
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
        for n in 0..writers {
            let (tx, rx) = mpsc::channel(per_shard);
            shards.push(tx);
            let writer = Writer {
                db: db.clone(),
                ingestor: Ingestor::new(db.backend()),
                rx,
                depth: depth.clone(),
                max_batch: cfg.max_batch_events,
                shard: n,
            };
            let run = writer.run(cancel.clone());
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
    pub async fn submit(
        &self,
        events: Vec<IngestEvent>,
    ) -> Result<Vec<EventOutcome>, IngestFailure> {
        let shard = match events.first() {
            Some(e) if self.shards.len() > 1 => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                e.event.visitor_id.as_str().hash(&mut h);
                (h.finish() % self.shards.len() as u64) as usize
            }
            _ => 0,
        };
        let (ack, rx) = oneshot::channel();
        let sender = self.shards.get(shard).ok_or(IngestFailure::ShuttingDown)?;
        // Counted before sending: the writer (on its own thread) may take
        // the job and count it out before `try_send` even returns.
        let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        match sender.try_send(Job { events, ack }) {
            Ok(()) => {
                metrics::gauge!("clicktrail_ingest_queue_depth").set(d as f64);
            }
            Err(e) => {
                self.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(match e {
                    mpsc::error::TrySendError::Full(_) => IngestFailure::Overloaded,
                    mpsc::error::TrySendError::Closed(_) => IngestFailure::ShuttingDown,
                });
            }
        }
        let waited = Instant::now();
        let r = rx.await.unwrap_or(Err(IngestFailure::ShuttingDown));
        metrics::histogram!("clicktrail_ingest_wait_seconds")
            .record(waited.elapsed().as_secs_f64());
        r
    }
}

struct Writer {
    db: Db,
    ingestor: Ingestor,
    rx: mpsc::Receiver<Job>,
    depth: Arc<AtomicUsize>,
    max_batch: usize,
    shard: usize,
}

impl Writer {
    async fn run(mut self, cancel: CancellationToken) {
        loop {
            let first = tokio::select! {
                biased;
                job = self.rx.recv() => job,
                () = cancel.cancelled() => {
                    // Whatever is queued was submitted before shutdown
                    // began: commit it, then stop.
                    self.rx.close();
                    self.rx.recv().await
                }
            };
            let Some(first) = first else { break };
            let mut jobs = vec![first];
            let mut n = jobs[0].events.len();
            while n < self.max_batch {
                match self.rx.try_recv() {
                    Ok(j) => {
                        n += j.events.len();
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let d = self
                .depth
                .fetch_sub(jobs.len(), Ordering::Relaxed)
                .saturating_sub(jobs.len());
            metrics::gauge!("clicktrail_ingest_queue_depth").set(d as f64);
            self.commit(jobs).await;
        }
        tracing::debug!(shard = self.shard, "ingest writer stopped");
    }

    async fn commit(&mut self, jobs: Vec<Job>) {
        let mut events = Vec::with_capacity(jobs.iter().map(|j| j.events.len()).sum());
        let mut acks = Vec::with_capacity(jobs.len());
        for j in jobs {
            acks.push((j.events.len(), j.ack));
            events.extend(j.events);
        }
        let started = Instant::now();
        match self.ingestor.write(&self.db, &events).await {
            Ok(outcomes) => {
                metrics::histogram!("clicktrail_ingest_batch_events").record(events.len() as f64);
                metrics::histogram!("clicktrail_ingest_commit_seconds")
                    .record(started.elapsed().as_secs_f64());
                let mut rest = outcomes.into_iter();
                for (len, ack) in acks {
                    let _ = ack.send(Ok(rest.by_ref().take(len).collect()));
                }
                self.ingestor.maintain();
            }
            Err(e) if acks.len() == 1 => {
                tracing::error!(error = %e, events = events.len(), "ingest commit failed");
                metrics::counter!("clicktrail_ingest_commit_failures_total").increment(1);
                for (_, ack) in acks {
                    let _ = ack.send(Err(IngestFailure::Storage));
                }
            }
            Err(e) => {
                // One request must not sink the others: retry each alone.
                tracing::warn!(error = %e, requests = acks.len(), "group commit failed; committing requests one by one");
                let mut rest = events.into_iter();
                for (len, ack) in acks {
                    let evs: Vec<IngestEvent> = rest.by_ref().take(len).collect();
                    let r = self.ingestor.write(&self.db, &evs).await.map_err(|e| {
                        tracing::error!(error = %e, events = evs.len(), "ingest commit failed");
                        metrics::counter!("clicktrail_ingest_commit_failures_total").increment(1);
                        IngestFailure::Storage
                    });
                    let _ = ack.send(r);
                }
            }
        }
    }
}
