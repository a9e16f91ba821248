//! Group commit, once for every writer (after Sentry relay's and
//! PostgreSQL's own): callers put jobs on a bounded [`Queue`] and wait for
//! their answer; one writer drains the queue, commits as many jobs as fit
//! in one transaction ([`Writer::write`]), and only then answers each
//! caller. A 2xx therefore means "committed", and the cost of a commit
//! (an fsync) is shared by every job in it.
//!
//! If a group fails, each job is retried alone, so one bad job never sinks
//! the others. A full queue is refused at once ([`Queue::try_push`]) or
//! waited on ([`Queue::push`], for background work), never dropped
//! silently. On cancellation the writer stops taking new jobs, commits
//! what was queued before, and stops.
//!
//! Used by the ingest writer ([`crate::ingest`]) and the conversion writer
//! ([`crate::conversions`]).

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Why a job was not committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CommitFailure {
    #[error("the write queue is full")]
    Overloaded,
    #[error("the database did not commit")]
    Storage,
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A unit of work and the caller waiting for its answer.
#[derive(Debug)]
pub struct Job<W, O> {
    pub work: W,
    answer: oneshot::Sender<Result<O, CommitFailure>>,
}

/// What one writer commits.
pub trait Writer: Send {
    /// One job's work.
    type Work: Send;
    /// One job's answer.
    type Output: Send;
    type Error: Display + Send;

    /// How much a job counts against [`Loop::max_batch`] (its events, its
    /// conversions).
    fn size(work: &Self::Work) -> usize;

    /// Commits `jobs` in one transaction; one output per job, in order.
    /// The work stays in place (taken and given back if need be): after a
    /// failed group each job is written again alone.
    fn write(
        &mut self,
        jobs: &mut [Self::Work],
    ) -> impl Future<Output = Result<Vec<Self::Output>, Self::Error>> + Send;

    /// Upkeep between groups, once their callers have their answers (on
    /// SQLite, restarting a grown WAL).
    fn maintain(&mut self) {}

    /// Whether a failed write failed only because of a concurrent
    /// transaction (another process's: a deadlock, a serialization
    /// failure, a busy database), so writing the same jobs again is
    /// expected to succeed. The loop then writes them again, a bounded
    /// number of times after a jittered pause, before answering.
    fn is_transient(_error: &Self::Error) -> bool {
        false
    }
}

/// How many times a group that failed transiently is written again.
const TRANSIENT_RETRIES: u32 = 5;

/// The pause before the `attempt`th retry (from 1): exponential from
/// 4 ms, with full jitter, so two processes that deadlocked do not meet
/// again in step.
fn retry_pause(attempt: u32) -> std::time::Duration {
    use rand::Rng as _;
    let cap_ms = 4u64 << attempt.min(6);
    std::time::Duration::from_millis(rand::rng().random_range(1..=cap_ms))
}

/// The callers' side of a writer's queue. Cheap to clone.
#[derive(Debug)]
pub struct Queue<W, O> {
    tx: mpsc::Sender<Job<W, O>>,
    /// Jobs queued and not yet taken by the writer.
    depth: Arc<AtomicUsize>,
    gauge: Option<&'static str>,
}

impl<W, O> Clone for Queue<W, O> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            depth: self.depth.clone(),
            gauge: self.gauge,
        }
    }
}

impl<W, O> Queue<W, O> {
    /// Jobs waiting for the writer.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    fn counted_in(&self) {
        // Counted before sending: the writer (maybe on a thread of its own)
        // may take the job and count it out before the send returns.
        let d = self.depth.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(g) = self.gauge {
            metrics::gauge!(g).set(d as f64);
        }
    }

    fn counted_out(&self) {
        self.depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// Queues a job and waits for its commit; refused at once when the
    /// queue is full.
    pub async fn try_push(&self, work: W) -> Result<O, CommitFailure> {
        let (answer, rx) = oneshot::channel();
        self.counted_in();
        if let Err(e) = self.tx.try_send(Job { work, answer }) {
            self.counted_out();
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => CommitFailure::Overloaded,
                mpsc::error::TrySendError::Closed(_) => CommitFailure::ShuttingDown,
            });
        }
        rx.await.unwrap_or(Err(CommitFailure::ShuttingDown))
    }

    /// Queues a job, waiting for room, and waits for its commit: for
    /// background work, which can wait.
    pub async fn push(&self, work: W) -> Result<O, CommitFailure> {
        let (answer, rx) = oneshot::channel();
        self.counted_in();
        if self.tx.send(Job { work, answer }).await.is_err() {
            self.counted_out();
            return Err(CommitFailure::ShuttingDown);
        }
        rx.await.unwrap_or(Err(CommitFailure::ShuttingDown))
    }
}

/// A writer's loop, with the queue it drains.
#[derive(Debug)]
pub struct Loop<W: Writer> {
    writer: W,
    rx: mpsc::Receiver<Job<W::Work, W::Output>>,
    depth: Arc<AtomicUsize>,
    gauge: Option<&'static str>,
    /// Most work (by [`Writer::size`]) in one group.
    pub max_batch: usize,
    /// What the writer's failures are logged as.
    pub name: &'static str,
}

impl<W: Writer> Loop<W> {
    /// A writer's loop and its queue of `capacity` jobs. `depth` counts
    /// the jobs waiting (shared by the shards of a sharded writer); `gauge`
    /// names the Prometheus gauge it is reported as, if any.
    pub fn new(
        writer: W,
        capacity: usize,
        max_batch: usize,
        name: &'static str,
        depth: Arc<AtomicUsize>,
        gauge: Option<&'static str>,
    ) -> (Self, Queue<W::Work, W::Output>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = Queue {
            tx,
            depth: depth.clone(),
            gauge,
        };
        let this = Loop {
            writer,
            rx,
            depth,
            gauge,
            max_batch: max_batch.max(1),
            name,
        };
        (this, queue)
    }

    /// Runs until `cancel`, then commits what was queued before and stops.
    pub async fn run(mut self, cancel: CancellationToken) {
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
            let mut size = W::size(&first.work);
            let mut jobs = vec![first];
            while size < self.max_batch {
                match self.rx.try_recv() {
                    Ok(j) => {
                        size += W::size(&j.work);
                        jobs.push(j);
                    }
                    Err(_) => break,
                }
            }
            let left = self
                .depth
                .fetch_sub(jobs.len(), Ordering::Relaxed)
                .saturating_sub(jobs.len());
            if let Some(g) = self.gauge {
                metrics::gauge!(g).set(left as f64);
            }
            self.commit(jobs).await;
            self.writer.maintain();
        }
        tracing::debug!(writer = self.name, "writer stopped");
    }

    /// Writes `works` in one transaction, again after a transient failure
    /// (see [`Writer::is_transient`]), at most [`TRANSIENT_RETRIES`] times.
    async fn write(&mut self, works: &mut [W::Work]) -> Result<Vec<W::Output>, W::Error> {
        let mut attempt = 0;
        loop {
            match self.writer.write(works).await {
                Err(e) if attempt < TRANSIENT_RETRIES && W::is_transient(&e) => {
                    attempt += 1;
                    metrics::counter!("clicktrail_commit_retries_total", "writer" => self.name)
                        .increment(1);
                    tracing::info!(writer = self.name, attempt, error = %e, "transaction conflicted with a concurrent one; writing it again");
                    tokio::time::sleep(retry_pause(attempt)).await;
                }
                r => return r,
            }
        }
    }

    /// Commits a group and answers its callers; a failed group is retried
    /// job by job.
    async fn commit(&mut self, jobs: Vec<Job<W::Work, W::Output>>) {
        let (mut works, answers): (Vec<W::Work>, Vec<_>) =
            jobs.into_iter().map(|j| (j.work, j.answer)).unzip();
        match self.write(&mut works).await {
            Ok(outputs) => {
                for (answer, out) in answers.into_iter().zip(outputs) {
                    let _ = answer.send(Ok(out));
                }
            }
            Err(e) if works.len() == 1 => {
                tracing::error!(writer = self.name, error = %e, "commit failed");
                for answer in answers {
                    let _ = answer.send(Err(CommitFailure::Storage));
                }
            }
            Err(e) => {
                // One job must not sink the others: each alone.
                tracing::warn!(writer = self.name, error = %e, jobs = works.len(), "group commit failed; committing jobs one by one");
                for (work, answer) in works.into_iter().zip(answers) {
                    let mut one = [work];
                    let r = match self.write(&mut one).await {
                        Ok(mut out) => out.pop().ok_or(CommitFailure::Storage),
                        Err(e) => {
                            tracing::error!(writer = self.name, error = %e, "commit failed");
                            Err(CommitFailure::Storage)
                        }
                    };
                    let _ = answer.send(r);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sums numbers; refuses any group holding a negative one.
    #[derive(Default)]
    struct Summer {
        groups: Vec<Vec<i64>>,
        maintained: usize,
    }

    impl Writer for Summer {
        type Work = i64;
        type Output = i64;
        type Error = String;

        fn size(_: &i64) -> usize {
            1
        }

        async fn write(&mut self, jobs: &mut [i64]) -> Result<Vec<i64>, String> {
            self.groups.push(jobs.to_vec());
            if jobs.iter().any(|j| *j < 0) {
                return Err("negative".into());
            }
            Ok(jobs.iter().map(|j| j * 10).collect())
        }

        fn maintain(&mut self) {
            self.maintained += 1;
        }
    }

    #[tokio::test]
    async fn groups_answers_and_retries_alone() {
        let (l, q) = Loop::new(Summer::default(), 16, 3, "test", Arc::default(), None);
        // Queued before the writer runs: they are taken as groups of 3.
        let pushes: Vec<_> = [1, 2, -3, 4, 5]
            .into_iter()
            .map(|n| {
                let q = q.clone();
                tokio::spawn(async move { q.push(n).await })
            })
            .collect();
        while q.depth() < 5 {
            tokio::task::yield_now().await;
        }
        let cancel = CancellationToken::new();
        cancel.cancel();
        // Cancelled before it starts: it still commits what was queued.
        l.run(cancel).await;
        let mut answers = Vec::new();
        for p in pushes {
            answers.push(p.await.unwrap());
        }
        assert_eq!(answers.iter().filter(|a| a.is_ok()).count(), 4);
        assert!(answers.contains(&Err(CommitFailure::Storage)));
        assert!(answers.contains(&Ok(40)) && answers.contains(&Ok(50)));
        assert_eq!(q.depth(), 0);
    }

    /// Fails its first `conflicts` writes as another process's deadlock
    /// would; after that, sums.
    struct Conflicted {
        conflicts: usize,
        writes: usize,
    }

    impl Writer for Conflicted {
        type Work = i64;
        type Output = i64;
        type Error = String;

        fn size(_: &i64) -> usize {
            1
        }

        async fn write(&mut self, jobs: &mut [i64]) -> Result<Vec<i64>, String> {
            self.writes += 1;
            if self.writes <= self.conflicts {
                return Err("deadlock detected".into());
            }
            Ok(jobs.to_vec())
        }

        fn is_transient(e: &String) -> bool {
            e.starts_with("deadlock")
        }
    }

    /// A group that met a concurrent transaction is written again before
    /// its callers are answered; one that keeps failing is refused after
    /// a bounded number of tries.
    #[tokio::test]
    async fn a_transient_failure_is_written_again() {
        for (conflicts, ok) in [(3, true), (100, false)] {
            let w = Conflicted {
                conflicts,
                writes: 0,
            };
            let (l, q) = Loop::new(w, 4, 4, "test", Arc::default(), None);
            let cancel = CancellationToken::new();
            let run = tokio::spawn(l.run(cancel.clone()));
            let answer = q.push(7).await;
            assert_eq!(answer.is_ok(), ok, "{conflicts} conflicts: {answer:?}");
            cancel.cancel();
            run.await.unwrap();
        }
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_a_closed_one_says_so() {
        let (l, q) = Loop::new(Summer::default(), 1, 10, "test", Arc::default(), None);
        let waiting = {
            let q = q.clone();
            tokio::spawn(async move { q.push(1).await })
        };
        while q.depth() < 1 {
            tokio::task::yield_now().await;
        }
        assert_eq!(q.try_push(2).await, Err(CommitFailure::Overloaded));
        assert_eq!(q.depth(), 1, "a refused job is not counted");
        drop(l);
        assert_eq!(waiting.await.unwrap(), Err(CommitFailure::ShuttingDown));
        assert_eq!(q.try_push(3).await, Err(CommitFailure::ShuttingDown));
    }
}
