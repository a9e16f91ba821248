//! clicktrail's storage on SQLite (embedded, the default) and PostgreSQL
//! (scale-out). One [`Db`] handle hides which one is in use.
//!
//! SQL is written once for both where the dialects agree (they do for
//! nearly everything: `$n` parameters work on both, as do `ON CONFLICT`,
//! `RETURNING` and `UPDATE ... FROM`); the few hot or dialect-specific
//! statements (bulk inserts from a JSON parameter, `FOR UPDATE SKIP LOCKED`)
//! are written per backend next to each other.
//!
//! SQLite has one writer: all writes go through a pool of one connection, so
//! write transactions queue in the process instead of failing with
//! `SQLITE_BUSY`; reads use a separate pool (WAL lets them run beside the
//! writer).

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{FromRow, Postgres, Sqlite, Transaction};

pub mod auth;
pub mod bulk;
pub mod clicks;
pub mod conversions;
pub mod deliveries;
pub mod direct;
pub mod events;
pub mod ingest;
pub mod integrations;
pub mod links;
pub mod meta;
pub mod properties;
pub mod reports;
pub mod spend;
pub mod users;

/// Storage errors. Callers map them to opaque 500s; `Conflict` is the one a
/// caller may want to turn into a 409.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From a [`direct::DirectConn`].
    #[error("database error: {0}")]
    Direct(#[from] rusqlite::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
}

impl StoreError {
    /// Whether this is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => e.is_unique_violation(),
            StoreError::Direct(rusqlite::Error::SqliteFailure(e, _)) => {
                e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            }
            StoreError::Conflict(_) => true,
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
/// direct writer, which restarts the WAL itself when it has grown (see
/// [`direct::DirectConn::restart_wal_if_large`]).
#[derive(Debug, Default)]
pub struct WalState {
    /// Frames in the WAL at the last passive checkpoint.
    frames: std::sync::atomic::AtomicI64,
    /// Passive checkpoints so far.
    passes: std::sync::atomic::AtomicU64,
    /// Restarts of the WAL by the direct writer so far.
    writer_restarts: std::sync::atomic::AtomicU64,
}

impl WalState {
    /// WAL frames above which the writer restarts the WAL: about 16 MB.
    pub const RESTART_ABOVE_FRAMES: i64 = 4096;
}

impl Checkpointer {
    /// How many times the direct writer restarted the WAL so far: while
    /// this moves, that writer keeps the WAL short and a restart from
    /// here would only stall it.
    pub fn writer_restarts(&self) -> u64 {
        self.wal
            .writer_restarts
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// The body of [`Db`]'s typed fetches: the same call on either pool.
macro_rules! db_fetch {
    ($db:ident, $sql:ident, $args:ident, $method:ident) => {
        Ok(match $db {
            Db::Sqlite { read, .. } => {
                bind_sqlite_as(sqlx::query_as($sql), $args)
                    .$method(read)
                    .await?
            }
            Db::Postgres(p) => bind_pg_as(sqlx::query_as($sql), $args).$method(p).await?,
        })
    };
}

/// The body of [`Tx`]'s typed fetches: the same call on each backend.
macro_rules! tx_fetch {
    ($tx:ident, $sql:ident, $args:ident, $method:ident, $direct:expr) => {
        Ok(match $tx {
            Tx::Sqlite(t) => {
                bind_sqlite_as(sqlx::query_as($sql), $args)
                    .$method(&mut **t)
                    .await?
            }
            Tx::Postgres(t) => {
                bind_pg_as(sqlx::query_as($sql), $args)
                    .$method(&mut **t)
                    .await?
            }
            Tx::Direct(t) => $direct(t.writer())?,
        })
    };
}

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub enum Db {
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        options: Box<SqliteConnectOptions>,
        direct: Box<direct::DirectSettings>,
        wal: Arc<WalState>,
    },
    Postgres(PgPool),
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Db {
    /// Connects to `sqlite://path` (creating the file and its directory) or
    /// `postgres://...`. Does not run migrations.
    pub async fn connect(url: &str, opts: &DbOptions) -> Result<Db> {
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if path.is_empty() || path == ":memory:" {
                return Err(StoreError::UnsupportedUrl(url.to_owned()));
            }
            if let Some(dir) = Path::new(path)
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let base = SqliteConnectOptions::new()
                .filename(path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // FULL by default: a commit is on disk before we acknowledge
                // it (the collector's 2xx means durable). Group commit keeps
                // it fast.
                .synchronous(match opts.sqlite_synchronous {
                    SqliteSync::Full => SqliteSynchronous::Full,
                    SqliteSync::Normal => SqliteSynchronous::Normal,
                })
                .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
                .pragma("cache_size", format!("-{}", opts.sqlite_cache_kib))
                .pragma("temp_store", "memory");
            let write = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(base.clone())
                .await?;
            // Readers share the OS page cache; a smaller page cache each
            // keeps memory bounded with many of them.
            let read = SqlitePoolOptions::new()
                .max_connections(opts.max_connections.max(1))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(base.clone().read_only(true).pragma(
                    "cache_size",
                    format!("-{}", (opts.sqlite_cache_kib / 4).max(1024)),
                ))
                .await?;
            Ok(Db::Sqlite {
                read,
                write,
                options: Box::new(base),
                direct: Box::new(direct::DirectSettings {
                    path: Path::new(path).to_owned(),
                    synchronous: opts.sqlite_synchronous,
                    cache_kib: opts.sqlite_cache_kib,
                }),
                wal: Arc::default(),
            })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let co = PgConnectOptions::from_str(url)?;
            let pool = PgPoolOptions::new()
                .max_connections(opts.max_connections.max(2))
                .acquire_timeout(Duration::from_secs(30))
                .connect_with(co)
                .await?;
            Ok(Db::Postgres(pool))
        } else {
            Err(StoreError::UnsupportedUrl(url.to_owned()))
        }
    }

    /// Runs pending migrations.
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Db::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await?,
            Db::Postgres(p) => POSTGRES_MIGRATIONS.run(p).await?,
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Db::Sqlite { .. } => Backend::Sqlite,
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn close(&self) {
        match self {
            Db::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<()> {
        let _: (i64,) = self.fetch_one("SELECT CAST(1 AS BIGINT)", args![]).await?;
        Ok(())
    }

    /// Runs a statement outside any transaction (on SQLite, on the writer).
    pub async fn execute(&self, sql: &str, args: Args) -> Result<u64> {
        Ok(match self {
            Db::Sqlite { write, .. } => bind_sqlite(sqlx::query(sql), args)
                .execute(write)
                .await?
                .rows_affected(),
            Db::Postgres(p) => bind_pg(sqlx::query(sql), args)
                .execute(p)
                .await?
                .rows_affected(),
        })
    }

    pub async fn fetch_all<T>(&self, sql: &str, args: Args) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        db_fetch!(self, sql, args, fetch_all)
    }

    pub async fn fetch_optional<T>(&self, sql: &str, args: Args) -> Result<Option<T>>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        db_fetch!(self, sql, args, fetch_optional)
    }

    pub async fn fetch_one<T>(&self, sql: &str, args: Args) -> Result<T>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + Send + Unpin,
    {
        db_fetch!(self, sql, args, fetch_one)
    }

    /// A synchronous write connection of its own for the hottest writer
    /// (SQLite only; see [`direct`]). Blocking: call it from that writer's
    /// own thread.
    pub fn direct_writer(&self) -> Result<Option<direct::DirectConn>> {
        match self {
            Db::Sqlite { direct, wal, .. } => {
                Ok(Some(direct::DirectConn::open(direct, wal.clone())?))
            }
            Db::Postgres(_) => Ok(None),
        }
    }

    /// A synchronous read-only connection (SQLite only; see [`direct`]),
    /// for work that reads a lot at once and can block a thread for it (a
    /// poller deciding a chunk of conversions in `spawn_blocking`): sqlx
    /// would decode every row on an async task after a hand-off from its
    /// worker thread, which profiling showed to cost several times the
    /// query itself.
    pub fn direct_reader(&self) -> Result<Option<direct::DirectConn>> {
        match self {
            Db::Sqlite { direct, wal, .. } => Ok(Some(direct::DirectConn::open_read_only(
                direct,
                wal.clone(),
            )?)),
            Db::Postgres(_) => Ok(None),
        }
    }

    /// A connection of its own that checkpoints the WAL (SQLite only).
    ///
    /// Why: left to itself, SQLite checkpoints inside the commit that
    /// crosses the WAL threshold, so one acknowledged request in a few
    /// hundred waits for thousands of pages to be copied and synced. A
    /// passive checkpoint from another connection runs beside the writer
    /// instead of in its way.
    pub async fn checkpointer(&self) -> Result<Option<Checkpointer>> {
        match self {
            Db::Sqlite { options, wal, .. } => {
                use sqlx::ConnectOptions;
                // It reads no tables: a small page cache.
                let opts = (**options).clone().pragma("cache_size", "-1024");
                Ok(Some(Checkpointer {
                    conn: opts.connect().await?,
                    wal: wal.clone(),
                }))
            }
            Db::Postgres(_) => Ok(None),
        }
    }

    /// Starts a write transaction. On SQLite it takes the single writer
    /// connection and holds the write lock from the start (`BEGIN IMMEDIATE`
    /// semantics), so it can never fail half-way on a lock upgrade.
    pub async fn begin(&self) -> Result<Tx<'static>> {
        Ok(match self {
            Db::Sqlite { write, .. } => Tx::Sqlite(write.begin_with("BEGIN IMMEDIATE").await?),
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }
}

/// See [`Db::checkpointer`].
pub struct Checkpointer {
    conn: sqlx::SqliteConnection,
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
}

impl Checkpointer {
    /// `PRAGMA wal_checkpoint(PASSIVE)`: copies what it can without waiting
    /// for readers or the writer.
    pub async fn passive(&mut self) -> Result<CheckpointStats> {
        let (_busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
            .fetch_one(&mut self.conn)
            .await?;
        use std::sync::atomic::Ordering::Relaxed;
        self.wal.frames.store(log, Relaxed);
        self.wal.passes.fetch_add(1, Relaxed);
        Ok(CheckpointStats {
            wal_frames: log,
            checkpointed: done,
        })
    }

    /// `PRAGMA wal_checkpoint(RESTART)`: waits for the writer (through the
    /// busy timeout) and checkpoints the rest, so the next write starts the
    /// WAL over. Under continuous writes passive checkpoints never catch up
    /// with the end of the WAL and it would grow until a writer's own
    /// automatic checkpoint stalls a commit; right after a passive one, the
    /// rest is small and the writer waits only briefly.
    pub async fn restart(&mut self) -> Result<CheckpointStats> {
        let (_busy, log, done): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(RESTART)")
            .fetch_one(&mut self.conn)
            .await?;
        Ok(CheckpointStats {
            wal_frames: log,
            checkpointed: done,
        })
    }
}

/// A write transaction on either backend; on SQLite also on a dedicated
/// writer's own connection ([`direct::DirectConn::transaction`]), where
/// every call runs synchronously.
pub enum Tx<'c> {
    Sqlite(Transaction<'c, Sqlite>),
    Postgres(Transaction<'c, Postgres>),
    Direct(direct::DirectTx<'c>),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Tx::Sqlite(_) => "Tx::Sqlite",
            Tx::Postgres(_) => "Tx::Postgres",
            Tx::Direct(_) => "Tx::Direct",
        })
    }
}

/// What a transaction's query can return: a sqlx row type of both backends
/// that a direct connection can read too (through serde).
pub trait TxRow:
    for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow> + DeserializeOwned + Send + Unpin
{
}

impl<T> TxRow for T where
    T: for<'r> FromRow<'r, SqliteRow>
        + for<'r> FromRow<'r, PgRow>
        + DeserializeOwned
        + Send
        + Unpin
{
}

impl Tx<'_> {
    pub fn backend(&self) -> Backend {
        match self {
            Tx::Sqlite(_) | Tx::Direct(_) => Backend::Sqlite,
            Tx::Postgres(_) => Backend::Postgres,
        }
    }

    pub async fn execute(&mut self, sql: &str, args: Args) -> Result<u64> {
        Ok(match self {
            Tx::Sqlite(t) => bind_sqlite(sqlx::query(sql), args)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Tx::Postgres(t) => bind_pg(sqlx::query(sql), args)
                .execute(&mut **t)
                .await?
                .rows_affected(),
            Tx::Direct(t) => t.writer().execute_args(sql, &args)?,
        })
    }

    pub async fn fetch_all<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<Vec<T>> {
        tx_fetch!(self, sql, args, fetch_all, |w: &mut direct::DirectConn| w
            .query_args(sql, &args, usize::MAX))
    }

    pub async fn fetch_optional<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<Option<T>> {
        tx_fetch!(
            self,
            sql,
            args,
            fetch_optional,
            |w: &mut direct::DirectConn| w
                .query_args(sql, &args, 1)
                .map(|rows| rows.into_iter().next())
        )
    }

    pub async fn fetch_one<T: TxRow>(&mut self, sql: &str, args: Args) -> Result<T> {
        tx_fetch!(self, sql, args, fetch_one, |w: &mut direct::DirectConn| w
            .query_args(sql, &args, 1)?
            .into_iter()
            .next()
            .ok_or(StoreError::Database(sqlx::Error::RowNotFound)))
    }

    pub async fn commit(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.commit().await?,
            Tx::Postgres(t) => t.commit().await?,
            Tx::Direct(mut t) => t.commit()?,
        }
        Ok(())
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Tx::Sqlite(t) => t.rollback().await?,
            Tx::Postgres(t) => t.rollback().await?,
            Tx::Direct(mut t) => t.rollback()?,
        }
        Ok(())
    }
}

/// Where a batch of reads goes: the pool, outside any transaction, or a
/// write transaction (which sees its own writes and, on SQLite, everything
/// committed before it took the write lock).
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

type SqliteQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;
type PgQuery<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;
type SqliteQueryAs<'q, T> = sqlx::query::QueryAs<'q, Sqlite, T, sqlx::sqlite::SqliteArguments<'q>>;
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

fn bind_sqlite(q: SqliteQuery<'_>, args: Args) -> SqliteQuery<'_> {
    bind_all!(q, args)
}
fn bind_pg(q: PgQuery<'_>, args: Args) -> PgQuery<'_> {
    bind_all!(q, args)
}
fn bind_sqlite_as<T>(q: SqliteQueryAs<'_, T>, args: Args) -> SqliteQueryAs<'_, T> {
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
