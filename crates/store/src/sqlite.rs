//! The SQLite side of [`Db`](crate::Db): rusqlite connections (see
//! [`crate::direct`]) used from async code.
//!
//! A small pool of read-only connections serves reads (WAL lets them run
//! beside the writer). One write connection, behind an async mutex, serves
//! writes and write transactions, so they queue in the process instead of
//! failing with `SQLITE_BUSY`. Every call runs on tokio's blocking threads,
//! with the connection moved there and back: it works on any runtime
//! flavour and never holds up a runtime worker, even while SQLite's busy
//! handler waits for a lock another connection holds.
//!
//! The hot writers do not come here: they keep connections of their own
//! and run their batches synchronously on their own threads (see
//! [`crate::WriterConn`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::direct::{DirectConn, DirectSettings, wait_briefly};
use crate::{Result, StoreError, WalState};

pub(crate) mod migrate;

/// How long a caller waits for a connection before giving up, as sqlx's
/// pools did: long enough for any real queue, short enough that a
/// deadlock (a transaction waiting for a write of its own) shows.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `f` on a blocking thread.
async fn blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

/// The connections of one SQLite database.
pub(crate) struct Sqlite {
    settings: DirectSettings,
    wal: Arc<WalState>,
    /// Read-only connections not in use.
    idle: std::sync::Mutex<Vec<DirectConn>>,
    /// One per read-only connection that may exist.
    readers: Arc<Semaphore>,
    /// The write connection; `None` after a failure left it in doubt (the
    /// next writer opens another).
    writer: Arc<AsyncMutex<Option<DirectConn>>>,
    closed: AtomicBool,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("path", &self.settings.path)
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens the database with its write connection (which creates the
    /// file and puts it in WAL mode, as read-only connections cannot); the
    /// read-only connections open when first needed, up to `max_readers`.
    pub(crate) async fn open(settings: DirectSettings, max_readers: usize) -> Result<Sqlite> {
        let wal = Arc::<WalState>::default();
        let writer = blocking({
            let (settings, wal) = (settings.clone(), wal.clone());
            move || DirectConn::open(&settings, wal)
        })
        .await?;
        Ok(Sqlite {
            settings,
            wal,
            idle: std::sync::Mutex::new(Vec::new()),
            readers: Arc::new(Semaphore::new(max_readers.max(1))),
            writer: Arc::new(AsyncMutex::new(Some(writer))),
            closed: AtomicBool::new(false),
        })
    }

    pub(crate) fn settings(&self) -> &DirectSettings {
        &self.settings
    }

    pub(crate) fn wal(&self) -> &Arc<WalState> {
        &self.wal
    }

    /// Runs `f` on a read-only connection, on a blocking thread.
    pub(crate) async fn read<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DirectConn) -> Result<T> + Send + 'static,
    {
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.readers.clone().acquire_owned())
            .await
            .map_err(|_| StoreError::PoolTimedOut)?
            .map_err(|_| StoreError::Closed)?;
        let conn = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        // The lease travels with the work, so a caller that stops waiting
        // neither loses the connection nor frees its permit early.
        let mut lease = ReaderLease {
            conn,
            db: self.clone(),
            _permit: permit,
        };
        blocking(move || {
            let conn = match &mut lease.conn {
                Some(c) => c,
                slot => slot.insert(DirectConn::open_read_only(
                    &lease.db.settings,
                    lease.db.wal.clone(),
                )?),
            };
            f(conn)
        })
        .await
    }

    /// Takes the write connection, waiting for the one using it.
    async fn writer(self: &Arc<Self>) -> Result<WriterLease> {
        let guard = tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.clone().lock_owned())
            .await
            .map_err(|_| StoreError::PoolTimedOut)?;
        Ok(WriterLease {
            guard,
            db: self.clone(),
        })
    }

    /// Runs `f` on the write connection, outside any transaction of ours,
    /// on a blocking thread.
    pub(crate) async fn write<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DirectConn) -> Result<T> + Send + 'static,
    {
        let mut lease = self.writer().await?;
        blocking(move || f(lease.conn()?)).await
    }

    /// Begins a write transaction on the write connection (`BEGIN
    /// IMMEDIATE`), which it holds until it ends.
    pub(crate) async fn begin(self: &Arc<Self>) -> Result<SharedTx> {
        let mut lease = self.writer().await?;
        let lease = blocking(move || {
            lease.conn()?.begin()?;
            Ok(lease)
        })
        .await?;
        Ok(SharedTx { lease: Some(lease) })
    }

    /// Closes the connections: the idle readers now, the others as they
    /// come back; later calls fail with [`StoreError::Closed`].
    pub(crate) async fn close(self: &Arc<Self>) {
        self.closed.store(true, Ordering::Relaxed);
        self.readers.close();
        let idle = self
            .idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default();
        let writer = match tokio::time::timeout(ACQUIRE_TIMEOUT, self.writer.lock()).await {
            Ok(mut w) => w.take(),
            Err(_) => {
                tracing::warn!("closing the database: the write connection is still in use");
                None
            }
        };
        // Closing the last connection checkpoints the WAL: disk work.
        if let Err(e) = blocking(move || {
            drop(idle);
            drop(writer);
            Ok(())
        })
        .await
        {
            tracing::warn!(error = %e, "closing the database failed");
        }
    }
}

/// A read-only connection in use; it goes back to the pool when dropped.
struct ReaderLease {
    conn: Option<DirectConn>,
    db: Arc<Sqlite>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for ReaderLease {
    fn drop(&mut self) {
        // Only a clean one goes back: a read transaction left open would
        // pin its snapshot, and the WAL with it.
        if let Some(c) = self.conn.take()
            && c.is_idle()
            && !self.db.closed.load(Ordering::Relaxed)
            && let Ok(mut idle) = self.db.idle.lock()
        {
            idle.push(c);
        }
    }
}

/// The write connection, held.
pub(crate) struct WriterLease {
    guard: OwnedMutexGuard<Option<DirectConn>>,
    db: Arc<Sqlite>,
}

impl WriterLease {
    /// The connection, opened anew if the last one was dropped. Blocking.
    fn conn(&mut self) -> Result<&mut DirectConn> {
        if self.guard.is_none() {
            if self.db.closed.load(Ordering::Relaxed) {
                return Err(StoreError::Closed);
            }
            *self.guard = Some(DirectConn::open(&self.db.settings, self.db.wal.clone())?);
        }
        self.guard.as_mut().ok_or(StoreError::Closed)
    }

    /// Whether a transaction is open on it.
    fn in_transaction(&self) -> bool {
        self.guard.as_ref().is_some_and(|c| !c.is_idle())
    }
}

impl Drop for WriterLease {
    /// A transaction left open (its owner stopped waiting in the middle of
    /// a call) must not reach the next user: roll it back, or drop the
    /// connection, which rolls back as it closes. [`SharedTx`] sends an
    /// abandoned transaction here on a blocking thread.
    fn drop(&mut self) {
        if let Some(c) = self.guard.as_mut()
            && !c.is_idle()
            && let Err(e) = c.rollback()
        {
            tracing::warn!(error = %e, "rolling back an abandoned transaction failed; reconnecting");
            *self.guard = None;
        }
    }
}

/// A write transaction on the shared write connection; each call runs on
/// a blocking thread.
pub(crate) struct SharedTx {
    /// `None` once ended, or if a call's blocking task was lost (it
    /// panicked): then the lease's drop rolled the transaction back.
    lease: Option<WriterLease>,
}

impl SharedTx {
    /// Runs `f` in the transaction.
    pub(crate) async fn run<T, F>(&mut self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut DirectConn) -> Result<T> + Send + 'static,
    {
        let mut lease = self
            .lease
            .take()
            .ok_or_else(|| StoreError::Task("the transaction was lost".into()))?;
        let (lease, r) = tokio::task::spawn_blocking(move || {
            // SQLite rolls a transaction back by itself on some errors (a
            // full disk, an I/O error); a statement must not then run in
            // autocommit as if it were still inside.
            let r = if lease.in_transaction() {
                lease.conn().and_then(f)
            } else {
                Err(StoreError::Task(
                    "the transaction was rolled back by SQLite".into(),
                ))
            };
            (lease, r)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.lease = Some(lease);
        r
    }

    pub(crate) async fn commit(mut self) -> Result<()> {
        self.run(DirectConn::commit).await
    }

    pub(crate) async fn rollback(mut self) -> Result<()> {
        self.run(DirectConn::rollback).await
    }
}

impl Drop for SharedTx {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if !lease.in_transaction() {
            return;
        }
        // Dropped unfinished: the lease rolls back as it drops, on a
        // blocking thread if there is a runtime to lend one.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn_blocking(move || drop(lease));
            }
            Err(_) => drop(lease),
        }
    }
}

/// A connection of its own that checkpoints the WAL (see
/// [`crate::Db::checkpointer`]).
pub struct Checkpointer {
    /// `None` after a checkpoint's task was lost; the next one reopens.
    conn: Option<DirectConn>,
    settings: DirectSettings,
    wal: Arc<WalState>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Checkpointer")
    }
}

/// What one checkpoint did, in WAL frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Frames in the WAL.
    pub wal_frames: i64,
    /// Frames copied into the database so far.
    pub checkpointed: i64,
    /// Whether a restart could not finish: the writer, or a reader of an
    /// older snapshot (a long report, `clicktrail backup`), was still
    /// using the WAL when the wait ran out.
    pub busy: bool,
}

/// The busy handler of a restart from the checkpointer: retry every half
/// millisecond for up to 200 ms (per lock it waits for), where the
/// connection's usual handler waits up to ten seconds.
///
/// Why: while it waits for readers, a `RESTART` checkpoint holds the
/// write lock, so every writer waits with it. A reader that keeps an old
/// snapshot for long (`clicktrail backup` copying a large database) would
/// otherwise stall the collector for ten seconds per attempt; now a
/// restart gives up soon and is tried again later (see `busy`).
fn wait_for_restart(retries: i32) -> bool {
    const GIVE_UP_AFTER: i32 = 400;
    if retries >= GIVE_UP_AFTER {
        return false;
    }
    std::thread::sleep(Duration::from_micros(500));
    true
}

impl Checkpointer {
    pub(crate) async fn open(db: &Sqlite) -> Result<Checkpointer> {
        // It reads no tables: a small page cache.
        let settings = DirectSettings {
            cache_kib: 1024,
            ..db.settings.clone()
        };
        let conn = blocking({
            let (settings, wal) = (settings.clone(), db.wal.clone());
            move || DirectConn::open(&settings, wal)
        })
        .await?;
        Ok(Checkpointer {
            conn: Some(conn),
            settings,
            wal: db.wal.clone(),
        })
    }

    /// Runs `PRAGMA wal_checkpoint(<mode>)` on a blocking thread, with
    /// `busy` as the busy handler.
    async fn checkpoint(
        &mut self,
        pragma: &'static str,
        busy: fn(i32) -> bool,
    ) -> Result<CheckpointStats> {
        let conn = self.conn.take();
        let (settings, wal) = (self.settings.clone(), self.wal.clone());
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let conn = match conn {
                Some(c) => c,
                None => match DirectConn::open(&settings, wal) {
                    Ok(c) => c,
                    Err(e) => return (None, Err(e)),
                },
            };
            let r = conn
                .conn()
                .busy_handler(Some(busy))
                .and_then(|()| {
                    conn.conn().query_row(pragma, [], |r| {
                        Ok(CheckpointStats {
                            busy: r.get::<_, i64>(0)? != 0,
                            wal_frames: r.get(1)?,
                            checkpointed: r.get(2)?,
                        })
                    })
                })
                .map_err(StoreError::from);
            // Back to the usual handler; a connection that cannot be
            // given it is dropped (the next checkpoint reopens one).
            match conn.conn().busy_handler(Some(wait_briefly)) {
                Ok(()) => (Some(conn), r),
                Err(_) => (None, r),
            }
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?;
        self.conn = conn;
        r
    }

    /// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can without waiting
    /// for readers or the writer.
    pub async fn passive(&mut self) -> Result<CheckpointStats> {
        let st = self
            .checkpoint("PRAGMA wal_checkpoint(PASSIVE)", wait_briefly)
            .await?;
        self.wal.frames.store(st.wal_frames, Ordering::Relaxed);
        self.wal.passes.fetch_add(1, Ordering::Relaxed);
        Ok(st)
    }

    /// `PRAGMA wal_checkpoint(RESTART)`: waits for the writer (through the
    /// busy handler) and checkpoints the rest, so the next write starts the
    /// WAL over. Under continuous writes passive checkpoints never catch up
    /// with the end of the WAL and it would grow until a writer's own
    /// automatic checkpoint stalls a commit; right after a passive one, the
    /// rest is small and the writer waits only briefly. It waits at most
    /// 200 ms for each lock; `busy` says it gave up (try again later).
    pub async fn restart(&mut self) -> Result<CheckpointStats> {
        self.checkpoint("PRAGMA wal_checkpoint(RESTART)", wait_for_restart)
            .await
    }

    /// How many times the dedicated writers restarted the WAL so far:
    /// while this moves, they keep the WAL short and a restart from here
    /// would only stall them.
    pub fn writer_restarts(&self) -> u64 {
        self.wal.writer_restarts.load(Ordering::Relaxed)
    }
}
