//! Copies of a SQLite database, for `clicktrail backup` and `clicktrail
//! restore`. (PostgreSQL is copied with `pg_dump` and `pg_restore`; see
//! `docs/DEPLOY.md`.)
//!
//! **Backup** ([`backup`]): SQLite's online backup API copies the database
//! from a connection of its own while the server goes on writing. That
//! connection holds one read transaction for the whole copy, so the copy
//! is one snapshot: everything committed before it began, nothing half of
//! a transaction. In WAL mode (the server's) a reader never blocks the
//! writer; the WAL only grows until the copy ends, and the server's
//! checkpointer backs off meanwhile (`Checkpointer::restart`). The pages
//! are copied in steps, which report progress.
//!
//! The copy is written to a temporary file beside the destination (0600),
//! turned into one self-contained file (rollback-journal mode: no `-wal`
//! beside it), checked with `PRAGMA integrity_check`, synced and renamed
//! into place: the destination is either what it was, or a complete,
//! checked copy.
//!
//! **Restore** ([`check`], then [`Checked::restore`]): checks a backup
//! the same way, and that this build can run on it (its migration
//! record), before touching anything; refuses a database that exists
//! unless told to replace it (and then only when no other process has it
//! open, moving it aside rather than deleting it); and puts the copy in
//! place the same atomic way. Pending migrations are left to the server's
//! next start, as for any database.
//!
//! Blocking: call these from a blocking thread.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension as _};

use crate::MigrationProblem;
use crate::sqlite::migrate;

/// Why a backup or a restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("there is no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} is not a SQLite database", .0.display())]
    NotADatabase(PathBuf),
    #[error("{} failed SQLite's integrity check: {}", .path.display(), .problems.join("; "))]
    Corrupt {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("{} is not a clicktrail database (it has no migration record)", .0.display())]
    NotClicktrail(PathBuf),
    #[error("{} cannot be run by this version of clicktrail: migration {version} {problem}", .path.display())]
    Schema {
        path: PathBuf,
        version: i64,
        problem: MigrationProblem,
    },
    #[error("{} already exists", .0.display())]
    Exists(PathBuf),
    #[error("{} is in use by another process (is the server running?)", .0.display())]
    InUse(PathBuf),
    #[error("the copy and the database are the same file: {}", .0.display())]
    SameFile(PathBuf),
    #[error("{action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{action} {}: {source}", .path.display())]
    Sqlite {
        action: &'static str,
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error(transparent)]
    Store(crate::StoreError),
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

/// An I/O error on `path`, while doing `action`.
fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io {
        action,
        path,
        source,
    }
}

/// A SQLite error on `path`, while doing `action`; a file that is no
/// database, or a damaged one, says so.
fn sql(action: &'static str, path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError {
    let path = path.to_owned();
    move |source| match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => BackupError::NotADatabase(path),
        Some(ErrorCode::DatabaseCorrupt) => BackupError::Corrupt {
            problems: vec![source.to_string()],
            path,
        },
        _ => BackupError::Sqlite {
            action,
            path,
            source,
        },
    }
}

/// The tables whose rows a summary counts, in the order it lists them
/// (those a database has; older versions lack some).
pub const COUNTED_TABLES: &[&str] = &[
    "workspaces",
    "users",
    "properties",
    "integrations",
    "destinations",
    "links",
    "sessions",
    "events",
    "clicks",
    "conversions",
    "deliveries",
    "ad_spend",
];

/// What a checked copy holds.
#[derive(Debug)]
pub struct Summary {
    /// The file's size.
    pub bytes: u64,
    /// Rows per table of [`COUNTED_TABLES`] that the database has.
    pub tables: Vec<(&'static str, i64)>,
    /// The highest migration applied.
    pub schema_version: Option<i64>,
    /// Whether this build can run on it, and what it would migrate.
    pub schema: Schema,
    /// The server's key check value (`server_meta.key_check`): which key
    /// the encrypted data in it needs. `None` until a server has started
    /// on it.
    pub key_check: Option<String>,
}

/// A database's migration record, seen by this build.
#[derive(Debug)]
pub enum Schema {
    /// Every migration of this build is applied.
    Current,
    /// The next start applies these migrations (a backup of an older
    /// version).
    Behind(Vec<i64>),
    /// The server would refuse to start on it (see [`MigrationProblem`]):
    /// a newer version's database, or a migration that failed half-way.
    Refused {
        version: i64,
        problem: MigrationProblem,
    },
}

/// How far a copy is, in pages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub copied: u64,
    pub total: u64,
}

/// How [`backup`] copies.
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Pages copied per step (each step reports [`Progress`]).
    pub pages_per_step: i32,
}

impl Default for BackupOptions {
    fn default() -> Self {
        // 4 MiB with the default 4 KiB pages.
        Self {
            pages_per_step: 1024,
        }
    }
}

/// How long the copy waits, in all, while a step finds the source or the
/// copy locked before it gives up.
const BUSY_FOR_AT_MOST: Duration = Duration::from_secs(30);

/// Copies the live database at `db` to `dest` (see the module docs) and
/// returns what the checked copy holds. `dest` is replaced atomically if
/// it exists, and is readable by its owner only.
pub fn backup(
    db: &Path,
    dest: &Path,
    opts: &BackupOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<Summary> {
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db.to_owned()));
    }
    if same_file(db, dest) {
        return Err(BackupError::SameFile(dest.to_owned()));
    }
    // Read-write but never creating: a read-only connection cannot open a
    // WAL database whose `-shm` it may not write, and this one writes
    // nothing (at most, as the last connection to close, it checkpoints
    // the WAL, as the server would).
    let src = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("opening", db))?;
    src.busy_timeout(Duration::from_secs(5))
        .map_err(sql("opening", db))?;
    // One read transaction for the whole copy. Without it each step reads
    // a snapshot of its own, and SQLite starts the copy over whenever
    // another connection committed in between: under steady writes it
    // would never finish. (The server keeps its database in WAL mode, in
    // which this reader does not block it; a database in rollback mode has
    // no server writing to it.)
    src.execute_batch("BEGIN").map_err(sql("reading", db))?;
    src.query_row("SELECT count(*) FROM sqlite_schema", [], |r| {
        r.get::<_, i64>(0)
    })
    .map_err(sql("reading", db))?;

    let tmp = Partial::create(dest, "partial")?;
    let mut dst = Connection::open(&tmp.path).map_err(sql("creating", &tmp.path))?;
    copy(&src, &mut dst, opts.pages_per_step, progress).map_err(sql("copying", db))?;
    // Ends the read transaction: the server's checkpoints catch up.
    src.execute_batch("COMMIT").map_err(sql("reading", db))?;
    drop(src);

    standalone(&dst, &tmp.path)?;
    let mut summary = examine(&dst, &tmp.path, "PRAGMA integrity_check(100)")?;
    dst.close().map_err(|(_, e)| sql("closing", &tmp.path)(e))?;
    summary.bytes = tmp.finish(dest)?;
    Ok(summary)
}

/// Checks the copy at `file` (`PRAGMA integrity_check`, its migration
/// record) and says what it holds, reading only.
pub fn inspect(file: &Path) -> Result<Summary> {
    let bytes = std::fs::metadata(file).map_err(io("reading", file))?.len();
    let conn = open_read_only(file)?;
    let mut summary = examine(&conn, file, "PRAGMA integrity_check(100)")?;
    summary.bytes = bytes;
    Ok(summary)
}

/// How [`Checked::restore`] treats an existing database.
#[derive(Debug, Clone, Default)]
pub struct RestoreOptions {
    /// Replace a database that exists (moved aside, not deleted), when no
    /// other process has it open.
    pub replace: bool,
}

/// What [`Checked::restore`] did.
#[derive(Debug)]
pub struct Restored {
    /// Where the database that was replaced now is.
    pub replaced: Option<PathBuf>,
}

/// A backup that passed [`check`]: whole (`PRAGMA integrity_check`), a
/// clicktrail database, and one this build can run on.
#[derive(Debug)]
pub struct Checked {
    file: PathBuf,
    summary: Summary,
}

/// Checks the backup `file` before a restore (see [`Checked`]).
pub fn check(file: &Path) -> Result<Checked> {
    if !file.is_file() {
        return Err(BackupError::NoDatabase(file.to_owned()));
    }
    let summary = inspect(file)?;
    if let Schema::Refused { version, problem } = summary.schema {
        return Err(BackupError::Schema {
            path: file.to_owned(),
            version,
            problem,
        });
    }
    Ok(Checked {
        file: file.to_owned(),
        summary,
    })
}

impl Checked {
    /// What the backup holds.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Puts the backup in place as the database `db` (see the module
    /// docs). Nothing changes when `db` exists and `opts.replace` is not
    /// set, or when it is in use.
    pub fn restore(&self, db: &Path, opts: &RestoreOptions) -> Result<Restored> {
        let file = &self.file;
        if same_file(file, db) {
            return Err(BackupError::SameFile(db.to_owned()));
        }
        let existing = existing_files(db);
        if !opts.replace
            && let Some(first) = existing.first()
        {
            return Err(BackupError::Exists(first.clone()));
        }
        if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_dir(dir).map_err(io("creating", dir))?;
        }

        let tmp = Partial::create(db, "restore")?;
        {
            let src = open_read_only(file)?;
            let mut dst = Connection::open(&tmp.path).map_err(sql("creating", &tmp.path))?;
            copy(&src, &mut dst, -1, &mut |_| {}).map_err(sql("copying", file))?;
            standalone(&dst, &tmp.path)?;
            // The backup was checked in full; this makes sure the copy is
            // what was checked.
            examine(&dst, &tmp.path, "PRAGMA quick_check(100)")?;
            dst.close().map_err(|(_, e)| sql("closing", &tmp.path)(e))?;
        }
        let replaced = if existing.is_empty() {
            None
        } else {
            Some(move_aside(db)?)
        };
        tmp.finish(db)?;
        Ok(Restored { replaced })
    }
}

/// Copies `src` into `dst` in steps of `pages` (-1: all at once).
fn copy(
    src: &Connection,
    dst: &mut Connection,
    pages: i32,
    progress: &mut dyn FnMut(Progress),
) -> rusqlite::Result<()> {
    let b = Backup::new(src, dst)?;
    let mut busy_since = None;
    loop {
        let step = b.step(pages)?;
        let p = b.progress();
        let total = u64::try_from(p.pagecount).unwrap_or(0);
        let remaining = u64::try_from(p.remaining).unwrap_or(0);
        progress(Progress {
            copied: total.saturating_sub(remaining),
            total,
        });
        match step {
            StepResult::Done => return Ok(()),
            StepResult::More => busy_since = None,
            StepResult::Busy | StepResult::Locked => {
                let since = *busy_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() > BUSY_FOR_AT_MOST {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the database stayed locked".into()),
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            // `StepResult` is non-exhaustive.
            _ => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Makes the copy one self-contained file: rollback-journal mode. The
/// backup API copies the source's header, which says WAL; left so, the
/// file would grow a `-wal` and `-shm` the first time it is opened. (The
/// server puts a restored database back in WAL mode when it opens it.)
fn standalone(conn: &Connection, path: &Path) -> Result<()> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sql("finishing", path))?;
    if mode.eq_ignore_ascii_case("delete") {
        Ok(())
    } else {
        Err(BackupError::InUse(path.to_owned()))
    }
}

/// A read-only connection to a copy.
fn open_read_only(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sql("opening", path))
}

/// Runs the integrity check `pragma` on `conn`, then reads what it holds.
fn examine(conn: &Connection, path: &Path, pragma: &str) -> Result<Summary> {
    let problems = {
        let mut stmt = conn.prepare(pragma).map_err(sql("checking", path))?;
        stmt.query_map([], |r| r.get::<_, String>(0))
            .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
            .map_err(sql("checking", path))?
    };
    if problems != ["ok"] {
        return Err(BackupError::Corrupt {
            path: path.to_owned(),
            problems,
        });
    }
    let has_table = |name: &str| -> Result<bool> {
        conn.query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
            [name],
            |r| r.get::<_, i64>(0),
        )
        .map(|n| n > 0)
        .map_err(sql("reading", path))
    };
    if !has_table("_sqlx_migrations")? {
        return Err(BackupError::NotClicktrail(path.to_owned()));
    }
    let schema_version: Option<i64> = conn
        .query_row(
            "SELECT max(version) FROM _sqlx_migrations WHERE success",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading", path))?;
    let all = migrate::embedded().map_err(BackupError::Store)?;
    let schema = match migrate::pending(conn, &all) {
        Ok(todo) if todo.is_empty() => Schema::Current,
        Ok(todo) => Schema::Behind(todo.iter().map(|m| m.version).collect()),
        Err(crate::StoreError::Migration { version, problem }) => {
            Schema::Refused { version, problem }
        }
        Err(crate::StoreError::Sqlite(e)) => return Err(sql("reading", path)(e)),
        Err(e) => return Err(BackupError::Store(e)),
    };
    let mut tables = Vec::new();
    for &name in COUNTED_TABLES {
        if has_table(name)? {
            let n: i64 = conn
                .query_row(&format!("SELECT count(*) FROM \"{name}\""), [], |r| {
                    r.get(0)
                })
                .map_err(sql("counting the rows of", path))?;
            tables.push((name, n));
        }
    }
    let key_check = if has_table("server_meta")? {
        conn.query_row(
            "SELECT value FROM server_meta WHERE key = 'key_check'",
            [],
            |r| r.get::<_, String>(0),
        )
        .optional()
        .map_err(sql("reading", path))?
    } else {
        None
    };
    Ok(Summary {
        bytes: 0,
        tables,
        schema_version,
        schema,
        key_check,
    })
}

/// The files of the database `db` that exist: the file and its `-wal`
/// (a `-wal` left without its database would be read into a new one).
fn existing_files(db: &Path) -> Vec<PathBuf> {
    [db.to_owned(), suffixed(db, "-wal")]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// Moves the database `db` aside, to `<db>.pre-restore-<unix time>`,
/// after making sure no other process has it open; returns where.
fn move_aside(db: &Path) -> Result<PathBuf> {
    if db.exists() {
        let conn = Connection::open_with_flags(
            db,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql("opening", db))?;
        // Leaving WAL mode needs the only connection to the database (every
        // connection in WAL mode holds a shared lock on it), and copies the
        // WAL into it: success means nobody else has it open, and that the
        // file holds all of it. No busy handler: if it is in use, say so.
        match conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        }) {
            Ok(mode) if mode.eq_ignore_ascii_case("delete") => {}
            Ok(_) => return Err(BackupError::InUse(db.to_owned())),
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) =>
            {
                return Err(BackupError::InUse(db.to_owned()));
            }
            // A damaged or foreign file is moved aside as it is.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
                ) => {}
            Err(e) => return Err(sql("opening", db)(e)),
        }
        conn.close().map_err(|(_, e)| sql("closing", db)(e))?;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let aside = suffixed(db, &format!(".pre-restore-{secs}"));
    if db.exists() {
        std::fs::rename(db, &aside).map_err(io("moving aside", db))?;
    }
    for leftover in [suffixed(db, "-wal"), suffixed(db, "-shm")] {
        match std::fs::remove_file(&leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing", &leftover)(e)),
        }
    }
    Ok(aside)
}

/// `path` with `suffix` appended to its file name.
fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Whether `a` and `b` name the same file (`b` may not exist yet).
fn same_file(a: &Path, b: &Path) -> bool {
    let canonical = |p: &Path| -> Option<PathBuf> {
        if let Ok(c) = p.canonicalize() {
            return Some(c);
        }
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.canonicalize().ok()?,
            _ => std::env::current_dir().ok()?,
        };
        Some(dir.join(p.file_name()?))
    };
    matches!((canonical(a), canonical(b)), (Some(x), Some(y)) if x == y)
}

/// A file being written beside its destination, renamed into place by
/// [`finish`](Partial::finish); removed if dropped before.
struct Partial {
    path: PathBuf,
    done: bool,
}

impl Partial {
    /// `.<name>.<what>-<pid>` in `dest`'s directory, new and empty, 0600.
    fn create(dest: &Path, what: &str) -> Result<Partial> {
        let name = dest
            .file_name()
            .ok_or_else(|| BackupError::Io {
                action: "writing",
                path: dest.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name"),
            })?
            .to_string_lossy();
        let path = dest.with_file_name(format!(".{name}.{what}-{}", std::process::id()));
        // One left by a crashed run of this process id.
        let _ = std::fs::remove_file(&path);
        let mut o = std::fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
        o.open(&path).map_err(io("creating", &path))?;
        Ok(Partial { path, done: false })
    }

    /// Syncs the file, renames it to `dest` and syncs the directory, so
    /// the rename survives a power cut; returns the file's size.
    fn finish(mut self, dest: &Path) -> Result<u64> {
        let f = std::fs::File::open(&self.path).map_err(io("syncing", &self.path))?;
        f.sync_all().map_err(io("syncing", &self.path))?;
        let bytes = f.metadata().map_err(io("reading", &self.path))?.len();
        drop(f);
        std::fs::rename(&self.path, dest).map_err(io("renaming into place", dest))?;
        self.done = true;
        sync_dir(dest);
        Ok(bytes)
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.path);
            // What SQLite may have left beside an unfinished copy.
            for suffix in ["-journal", "-wal", "-shm"] {
                let _ = std::fs::remove_file(suffixed(&self.path, suffix));
            }
        }
    }
}

/// Syncs the directory of `path` (a rename is durable only then). Best
/// effort: not every platform can open a directory.
fn sync_dir(path: &Path) {
    #[cfg(unix)]
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// Writes `data` to `path` atomically (a temporary file beside it, synced
/// and renamed), readable by its owner only (0600): for key files.
pub fn write_private(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let tmp = Partial::create(path, "tmp")?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&tmp.path)
        .map_err(io("writing", &tmp.path))?;
    f.write_all(data).map_err(io("writing", &tmp.path))?;
    drop(f);
    tmp.finish(path)?;
    Ok(())
}
