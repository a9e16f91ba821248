//! clicktrail's storage on SQLite (embedded, the default) and PostgreSQL
//! (scale-out). One [`Db`] handle hides which one is in use.
//!
//! SQL is written once for both where the dialects agree (they do for
//! nearly everything: `$n` parameters work on both, as do `ON CONFLICT`,
//! `RETURNING` and `UPDATE ... FROM`); the few hot or dialect-specific
//! statements (bulk inserts from a JSON parameter, `FOR UPDATE SKIP LOCKED`)
//! are written per backend next to each other.
//!
//! SQLite is driven by rusqlite (see `direct`): a pool of read-only
//! connections beside one write connection, so write transactions queue in
//! the process instead of failing with `SQLITE_BUSY`, and connections of
//! their own for the hot writers ([`WriterConn`]). PostgreSQL is driven by
//! sqlx. Rows are read through serde on SQLite and sqlx's `FromRow` on
//! PostgreSQL, so a row type derives both (see [`TxRow`]).
//!
//! Depends on `domain` only. It must never know HTTP, the services above
//! it, or any outside API; it takes time as a parameter wherever time
//! matters for logic.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{FromRow, Postgres, Transaction};

pub mod auth;
pub mod backup;
pub mod bulk;
pub mod clicks;
pub mod conversions;
pub mod deliveries;
mod direct;
pub mod events;
pub mod ingest;
pub mod integrations;
pub mod links;
pub mod meta;
mod micros;
pub mod properties;
pub mod reports;
pub mod retention;
pub mod spend;
mod sqlite;
pub mod users;

pub use sqlite::{CheckpointStats, Checkpointer};

/// Storage errors. Callers map them to opaque 500s; `Conflict` is the one a
/// caller may want to turn into a 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// From PostgreSQL.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From SQLite.
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL's migrations.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// SQLite's migrations.
    #[error("migration {version}: {problem}")]
    Migration {
        version: i64,
        problem: MigrationProblem,
    },
    #[error("unsupported database URL {0:?}: use sqlite://path or postgres://...")]
    UnsupportedUrl(String),
    #[error("could not create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// An error shared by several waiters on one load (a coalescing cache).
    #[error("{0}")]
    Shared(std::sync::Arc<StoreError>),
    /// No connection became free in time.
    #[error("timed out waiting for a database connection")]
    PoolTimedOut,
    /// The database was closed.
    #[error("the database is closed")]
    Closed,
    /// The blocking task running a SQLite call failed (it panicked), or the
    /// transaction it ran in is gone.
    #[error("database task failed: {0}")]
    Task(String),
}

/// Why a SQLite migration was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrationProblem {
    /// Recorded as failed half-way (sqlx's "dirty" migration): the
    /// database needs a look by hand.
    #[error("a previous attempt failed part-way; repair the database by hand")]
    Dirty,
    /// Applied to this database but unknown to this build (a newer build
    /// migrated it).
    #[error("applied to this database but unknown to this build")]
    Unknown,
    /// Its SQL changed since it was applied.
    #[error("changed since it was applied (checksum mismatch)")]
    Changed,
    /// Its SQL failed; nothing of it was applied.
    #[error("{0}")]
    Failed(rusqlite::Error),
}

impl StoreError {
    /// Whether this is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            StoreError::Conflict(_) => true,
            _ => false,
        }
    }
}

impl StoreError {
    /// Whether the transaction failed only because of another one running
    /// at the same time, so running it again is expected to succeed:
    /// PostgreSQL's serialization failure (SQLSTATE 40001) and deadlock
    /// (40P01), SQLite's `BUSY` / `LOCKED` (another process holds the
    /// database). The whole transaction must be run again, not a statement.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40001" | "40P01"))
            }
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Shared(e) => e.is_transient(),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Tuning knobs, with defaults fit for a small server.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// PostgreSQL pool size / SQLite read pool size.
    pub max_connections: u32,
    /// SQLite page cache per connection, in KiB.
    pub sqlite_cache_kib: i64,
    /// When a SQLite commit reaches the disk (see [`SqliteSync`]).
    pub sqlite_synchronous: SqliteSync,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            sqlite_cache_kib: 16 * 1024,
            sqlite_synchronous: SqliteSync::Full,
        }
    }
}

/// SQLite's `synchronous` setting, in WAL mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SqliteSync {
    /// Every commit is fsynced before it is acknowledged: an acknowledged
    /// event survives a power cut.
    #[default]
    Full,
    /// Commits survive a crash of the process (the kernel has them) but the
    /// last ones may be lost on a power cut or kernel panic; the disk is
    /// synced at each checkpoint.
    Normal,
}

/// WAL pages after which a committing writer checkpoints by itself. The
/// server's background checkpointer (see [`Db::checkpointer`]) normally
/// keeps the WAL far below this; it is the backstop when nothing runs one.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// What the background checkpointer last saw of the WAL, shared with the
/// dedicated writers, which restart the WAL themselves when it has grown
/// (see [`WriterConn::restart_wal_if_large`]).
#[derive(Debug, Default)]
pub struct WalState {
    /// Frames in the WAL at the last passive checkpoint.
    frames: std::sync::atomic::AtomicI64,
    /// Passive checkpoints so far.
    passes: std::sync::atomic::AtomicU64,
    /// Restarts of the WAL by the dedicated writers so far.
    writer_restarts: std::sync::atomic::AtomicU64,
}

impl WalState {
    /// WAL frames above which a writer restarts the WAL: about 16 MB.
    pub const RESTART_ABOVE_FRAMES: i64 = 4096;
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Db(Backing);

#[derive(Clone, Debug)]
enum Backing {
    Sqlite(Arc<sqlite::Sqlite>),
    Postgres(PgPool),
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The error of a `fetch_one` that found no row, on either backend.
fn row_not_found() -> StoreError {
    StoreError::Database(sqlx::Error::RowNotFound)
}

impl Db {
    /// Connects to `sqlite://path` (creating the file and its directory) or
    /// `postgres://...`. Does not run migrations.
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Db> {
        if url.starts_with("sqlite:") {
            let path =
                sqlite_path(url).ok_or_else(|| StoreError::UnsupportedUrl(url.to_owned()))?;
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                private_dir(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            private_file(&path).map_err(|source| StoreError::CreateDir {
                path: path.display().to_string(),
                source,
            })?;
            let settings = direct::DirectSettings {
                path,
                // FULL by default: a commit is on disk before we
                // acknowledge it (the collector's 2xx means durable).
                // Group commit keeps it fast.
                synchronous: opts.sqlite_synchronous,
                cache_kib: opts.sqlite_cache_kib,
            };
            let max_readers = usize::try_from(opts.max_connections).unwrap_or(usize::MAX);
            let db = sqlite::Sqlite::open(settings, max_readers).await?;
            Ok(Db(Backing::Sqlite(Arc::new(db))))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let co = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(co)
                .await?;
            Ok(Db(Backing::Postgres(pool)))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match &self.0 {
            Backing::Sqlite(s) => {
                let all = sqlite::migrate::embedded()?;
                s.write(move |c| sqlite::migrate::run(c, &all)).await?;
            }
            Backing::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match &self.0 {
            Backing::Sqlite(_) => Backend::Sqlite,
            Backing::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn close(&self) {
        match &self.0 {
            Backing::Sqlite(s) => s.close().await,
            Backing::Postgres(p) => p.close().await,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        let _: (i64,) = self.fetch_one("SELECT CAST(1 AS BIGINT)", args![]).await?;
        Ok(())
    }

    /// Runs a statement outside any transaction (on SQLite, on the writer).
    pub async fn execute(&self, sql: &str, args: Args) -> Result<u64> {
        match &self.0 {
            Backing::Sqlite(s) => {
                let sql = sql.to_owned();
                s.write(move |c| c.execute_args(&sql, &args)).await
            }
            Backing::Postgres(p) => Ok(bind_pg(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected()),
        }
    }

    /// Up to `limit` rows of a query, on SQLite from a read-only connection.
    async fn sqlite_rows<T: TxRow>(
        s: &Arc<sqlite::Sqlite>,
        sql: &str,
        args: Args,
        limit: usize,
    ) -> Result<Vec<T>> {
        let sql = sql.to_owned();
        s.read(move |c| c.query_args(&sql, &args, limit)).await
    }

    pub async fn fetch_all<T: TxRow>(&self, sql: &str, args: Args) -> Result<Vec<T>> {
        match &self.0 {
            Backing::Sqlite(s) => Self::sqlite_rows(s, sql, args, usize::MAX).await,
            Backing::Postgres(p) => Ok(bind_pg_as(sqlx::query_as(sql), args).fetch_all(p).await?),
        }
    }

    pub async fn fetch_optional<T: TxRow>(&self, sql: &str, args: Args) -> Result<Option<T>> {
        match &self.0 {
            Backing::Sqlite(s) => Ok(Self::sqlite_rows(s, sql, args, 1).await?.into_iter().next()),
            Backing::Postgres(p) => Ok(bind_pg_as(sqlx::query_as(sql), args)
                .fetch_optional(p)
                .await?),
        }
    }

    pub async fn fetch_one<T: TxRow>(&self, sql: &str, args: Args) -> Result<T> {
        match &self.0 {
            Backing::Sqlite(s) => Self::sqlite_rows(s, sql, args, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(row_not_found),
            Backing::Postgres(p) => Ok(bind_pg_as(sqlx::query_as(sql), args).fetch_one(p).await?),
        }
    }

    /// Runs a batch of reads that `f` makes: on SQLite on a read-only
    /// connection of the pool, in one read transaction (one snapshot), on
    /// a blocking thread, where every read completes at once (the future
    /// `f` returns is run to completion there); on PostgreSQL through the
    /// pool.
    ///
    /// For work that reads a lot at once (a poller deciding a chunk of
    /// conversions): read one by one through the pool, each call would pay
    /// a hand-off to a blocking thread and back.
    pub async fn read_batch<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'r> FnOnce(&'r mut Reads<'_, '_>) -> BoxFuture<'r, Result<T>> + Send + 'static,
    {
        match &self.0 {
            Backing::Sqlite(s) => {
                s.read(move |c| {
                    let mut tx = c.read_transaction()?;
                    let r = futures::executor::block_on(f(&mut Reads::Tx(&mut tx)));
                    // Ends the read transaction (it changed nothing).
                    drop(tx);
                    r
                })
                .await
            }
            Backing::Postgres(_) => f(&mut Reads::Pool(self)).await,
        }
    }

    /// A write connection of its own, for a writer that commits batch
    /// after batch from one thread (the ingest and conversion writers; see
    /// [`WriterConn`]). On SQLite it opens the connection: blocking, call
    /// it from that writer's thread.
    pub fn dedicated_writer(&self) -> Result<WriterConn> {
        Ok(WriterConn(match &self.0 {
            Backing::Sqlite(s) => {
                WriterBacking::Sqlite(direct::DirectConn::open(s.settings(), s.wal().clone())?)
            }
            Backing::Postgres(p) => WriterBacking::Postgres(p.clone()),
        }))
    }

    /// A connection of its own that checkpoints the WAL (SQLite only).
    ///
    /// Why: left to itself, SQLite checkpoints inside the commit that
    /// crosses the WAL threshold, so one acknowledged request in a few
    /// hundred waits for thousands of pages to be copied and synced. A
    /// passive checkpoint from another connection runs beside the writer
    /// instead of in its way.
    pub async fn checkpointer(&self) -> Result<Option<Checkpointer>> {
        match &self.0 {
            Backing::Sqlite(s) => Ok(Some(Checkpointer::open(s).await?)),
            Backing::Postgres(_) => Ok(None),
        }
    }

    /// Starts a write transaction. On SQLite it takes the single writer
    /// connection and holds the write lock from the start (`BEGIN
    /// IMMEDIATE`), so it can never fail half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(Tx(match &self.0 {
            Backing::Sqlite(s) => TxInner::Shared(s.begin().await?),
            Backing::Postgres(p) => TxInner::Postgres(p.begin().await?),
        }))
    }
}

/// The database file a `sqlite://path` URL names (a query such as
/// `?mode=rwc` is ignored); `None` for any other URL, and for an empty
/// path or `:memory:` (the server needs a file).
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let path = rest.trim_start_matches("//");
    let path = path.split('?').next().unwrap_or(path);
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

/// Creates `dir` (and its parents) readable by its owner only (0700 on
/// Unix) if it does not exist: the database holds tokens, emails and
/// password hashes. An existing directory is left as it is (the server
/// warns when it is wider).
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates an empty file readable by its owner only (0600 on Unix) if it
/// does not exist. SQLite creates its `-wal` and `-shm` files with the
/// mode of the database file, so creating the database this way first
/// makes them private too.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    match o.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// A write connection of a writer's own (see [`Db::dedicated_writer`]).
///
/// On SQLite it is a connection kept open beside the pool's, and its
/// transactions run synchronously on the caller's thread: statements come
/// from its cache and rows are bound straight from their structs, with no
/// hand-off per statement (see `direct`), which doubled the hot writers'
/// throughput. Block that thread only: run the writer on a thread of its
/// own. On PostgreSQL it begins transactions on the pool.
pub struct WriterConn(WriterBacking);

enum WriterBacking {
    Sqlite(direct::DirectConn),
    Postgres(PgPool),
}

impl std::fmt::Debug for WriterConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            WriterBacking::Sqlite(_) => "WriterConn(Sqlite)",
            WriterBacking::Postgres(_) => "WriterConn(Postgres)",
        })
    }
}

impl WriterConn {
    /// Begins a write transaction: on SQLite `BEGIN IMMEDIATE`, taking the
    /// write lock now (synchronously), so it can never fail half-way on a
    /// lock upgrade. Dropped unfinished, it rolls back.
    pub async fn begin(&mut self) -> Result<Tx<'_>> {
        match &mut self.0 {
            WriterBacking::Sqlite(c) => c.transaction(),
            WriterBacking::Postgres(p) => Ok(Tx(TxInner::Postgres(p.begin().await?))),
        }
    }

    /// SQLite: restarts the WAL when it has grown past
    /// [`WalState::RESTART_ABOVE_FRAMES`], right after a background passive
    /// checkpoint copied most of it; returns whether it did. Call it
    /// between transactions. PostgreSQL: nothing to do.
    pub fn restart_wal_if_large(&mut self) -> Result<bool> {
        match &mut self.0 {
            WriterBacking::Sqlite(c) => c.restart_wal_if_large(),
            WriterBacking::Postgres(_) => Ok(false),
        }
    }

    /// Whether no transaction is left open on it, rolling back one that
    /// is: a writer keeps a connection only while this holds.
    pub(crate) fn is_reusable(&mut self) -> bool {
        match &mut self.0 {
            WriterBacking::Sqlite(c) => c.rollback().is_ok(),
            WriterBacking::Postgres(_) => true,
        }
    }
}

/// A write transaction on either backend (see [`Db::begin`] and
/// [`WriterConn::begin`]), or a read transaction of [`Db::read_batch`].
pub struct Tx<'c>(TxInner<'c>);

enum TxInner<'c> {
    Postgres(Transaction<'c, Postgres>),
    /// SQLite, on the pool's write connection: each call on a blocking
    /// thread.
    Shared(sqlite::SharedTx),
    /// SQLite, on a connection the caller's thread holds: each call runs
    /// there, synchronously.
    Direct(direct::DirectTx<'c>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            TxInner::Postgres(_) => "Tx(Postgres)",
            TxInner::Shared(_) => "Tx(Sqlite)",
            TxInner::Direct(_) => "Tx(Sqlite, direct)",
        })
    }
}

/// What a query can return: a row type that sqlx reads on PostgreSQL and
/// serde reads on SQLite (see `direct/decode.rs`): derive both `FromRow`
/// and `Deserialize`, or use a tuple.
pub trait TxRow: for<'r> FromRow<'r, PgRow> + DeserializeOwned + Send + Unpin + 'static {}

impl<T> TxRow for T where T: for<'r> FromRow<'r, PgRow> + DeserializeOwned + Send + Unpin + 'static {}

impl Tx<'_> {
    pub fn backend(&self) -> Backend {
        match self.0 {
            TxInner::Shared(_) | TxInner::Direct(_) => Backend::Sqlite,
            TxInner::Postgres(_) => Backend::Postgres,
        }
    }

    /// The connection of a transaction that runs synchronously, for the
    /// statements the hot writers run straight on it.
    pub(crate) fn direct(&mut self) -> Option<&mut direct::DirectConn> {
        match &mut self.0 {
            TxInner::Direct(t) => Some(t.writer()),
            _ => None,
        }
    }

    pub async fn execute(&mut self, sql: &str, args: Args) -> Result<u64> {
        match &mut self.0 {
            TxInner::Postgres(t) => Ok(bind_pg(sqlx::query(sql), args)
                .execute(&mut **t)
                .await?
                .rows_affected()),
            TxInner::Shared(t) => {
                let sql = sql.to_owned();
                t.run(move |c| c.execute_args(&sql, &args)).await
            }
            TxInner::Direct(t) => t.writer().execute_args(sql, &args),
        }
    }

    /// Up to `limit` rows of a query on SQLite.
    async fn sqlite_rows<T: TxRow>(
        &mut self,
        sql: &str,
        args: Args,
        limit: usize,
    ) -> Result<Vec<T>> {
        match &mut self.0 {
            TxInner::Shared(t) => {
                let sql = sql.to_owned();
                t.run(move |c| c.query_args(&sql, &args, limit)).await
            }
            TxInner::Direct(t) => t.writer().query_args(sql, &args, limit),
            TxInner::Postgres(_) => Err(StoreError::Corrupt(
                "a SQLite read on a PostgreSQL transaction".into(),
            )),
        }
    }

    pub async fn fetch_all<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<Vec<T>> {
        match &mut self.0 {
            TxInner::Postgres(t) => Ok(bind_pg_as(sqlx::query_as(sql), args)
                .fetch_all(&mut **t)
                .await?),
            _ => self.sqlite_rows(sql, args, usize::MAX).await,
        }
    }

    pub async fn fetch_optional<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<Option<T>> {
        match &mut self.0 {
            TxInner::Postgres(t) => Ok(bind_pg_as(sqlx::query_as(sql), args)
                .fetch_optional(&mut **t)
                .await?),
            _ => Ok(self.sqlite_rows(sql, args, 1).await?.into_iter().next()),
        }
    }

    pub async fn fetch_one<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<T> {
        match &mut self.0 {
            TxInner::Postgres(t) => Ok(bind_pg_as(sqlx::query_as(sql), args)
                .fetch_one(&mut **t)
                .await?),
            _ => self
                .sqlite_rows(sql, args, 1)
                .await?
                .into_iter()
                .next()
                .ok_or_else(row_not_found),
        }
    }

    pub async fn commit(self) -> Result<()> {
        match self.0 {
            TxInner::Postgres(t) => t.commit().await?,
            TxInner::Shared(t) => t.commit().await?,
            TxInner::Direct(mut t) => t.commit()?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self.0 {
            TxInner::Postgres(t) => t.rollback().await?,
            TxInner::Shared(t) => t.rollback().await?,
            TxInner::Direct(mut t) => t.rollback()?,
        }
        Ok(())
    }
}

/// Where a batch of reads goes: the pool, outside any transaction, or a
/// transaction (a write transaction sees its own writes and, on SQLite,
/// everything committed before it took the write lock).
#[derive(Debug)]
pub enum Reads<'a, 'c> {
    Pool(&'a Db),
    Tx(&'a mut Tx<'c>),
}

impl Reads<'_, '_> {
    pub fn backend(&self) -> Backend {
        match self {
            Reads::Pool(db) => db.backend(),
            Reads::Tx(tx) => tx.backend(),
        }
    }

    pub async fn fetch_all<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<Vec<T>> {
        match self {
            Reads::Pool(db) => db.fetch_all(sql, args).await,
            Reads::Tx(tx) => tx.fetch_all(sql, args).await,
        }
    }
}

/// A subquery listing the strings of the JSON array bound as `$n`: how a
/// variable-length list is bound as one parameter on both backends.
pub(crate) fn json_list(backend: Backend, n: usize) -> String {
    match backend {
        Backend::Sqlite => format!("SELECT value FROM json_each(${n})"),
        Backend::Postgres => format!("SELECT json_array_elements_text(${n}::json)"),
    }
}

/// A value as the JSON text bound for [`json_list`] and bulk statements.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(format!("serialising to JSON: {e}")))
}

/// One bound parameter. Both backends bind the same Rust types, so one
/// argument list serves either.
#[derive(Debug, Clone)]
pub enum Arg {
    I64(Option<i64>),
    F64(Option<f64>),
    Text(Option<String>),
    Bool(Option<bool>),
    Bytes(Option<Vec<u8>>),
}

pub type Args = Vec<Arg>;

/// Builds an argument list: `args![id, name, Some(3i64)]`.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$($crate::Arg::from($a)),*] };
}

macro_rules! arg_from {
    ($t:ty, $variant:ident, |$v:ident| $conv:expr) => {
        impl From<$t> for Arg {
            fn from($v: $t) -> Arg {
                Arg::$variant(Some($conv))
            }
        }
        impl From<Option<$t>> for Arg {
            fn from(v: Option<$t>) -> Arg {
                Arg::$variant(v.map(|$v| $conv))
            }
        }
    };
}

arg_from!(i64, I64, |v| v);
arg_from!(i32, I64, |v| i64::from(v));
arg_from!(u32, I64, |v| i64::from(v));
arg_from!(f64, F64, |v| v);
arg_from!(bool, Bool, |v| v);
arg_from!(String, Text, |v| v);
arg_from!(Vec<u8>, Bytes, |v| v);

impl From<&str> for Arg {
    fn from(v: &str) -> Arg {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<Option<&str>> for Arg {
    fn from(v: Option<&str>) -> Arg {
        Arg::Text(v.map(str::to_owned))
    }
}
impl From<&String> for Arg {
    fn from(v: &String) -> Arg {
        Arg::Text(Some(v.clone()))
    }
}
impl From<&Option<String>> for Arg {
    fn from(v: &Option<String>) -> Arg {
        Arg::Text(v.clone())
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type PgQueryAs<'q, T> = sqlx::query::QueryAs<'q, Postgres, T, sqlx::postgres::PgArguments>;

macro_rules! bind_all {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::I64(v) => q.bind(v),
                Arg::F64(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
            };
        }
        q
    }};
}

fn bind_pg(q: PgQuery<'_>, args: Args) -> PgQuery<'_> {
    bind_all!(q, args)
}
fn bind_pg_as<T>(q: PgQueryAs<'_, T>, args: Args) -> PgQueryAs<'_, T> {
    bind_all!(q, args)
}

/// The current time in ms since the epoch. The store takes time as a
/// parameter everywhere it matters for logic; this is for bookkeeping
/// columns such as `created_at`.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}
