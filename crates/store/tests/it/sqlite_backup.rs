//! Backup and restore of a SQLite database (`clicktrail_store::backup`):
//! a backup under steady writes is one snapshot and never starts over,
//! the server's checkpointer does not hold the writer long beside it, a
//! restore checks what it puts in place and refuses what it must, and a
//! backup of an older version restores and migrates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clicktrail_store::backup::{self, BackupError, BackupOptions, RestoreOptions, Schema};
use clicktrail_store::{Db, DbOptions, MigrationProblem, args};

/// A database as sqlx's migrator left it after migrations 1 to 6.
const SQLX_V6: &str = include_str!("../fixtures/sqlx_migrated_v6.sql");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ct-backup-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

async fn open(path: &Path) -> Db {
    let db = Db::connect(
        &format!("sqlite://{}", path.display()),
        &DbOptions::default(),
    )
    .await
    .expect("connect");
    db.migrate().await.expect("migrate");
    db
}

/// Rows of `server_meta` whose key starts with `prefix`.
fn count(conn: &rusqlite::Connection, prefix: &str) -> i64 {
    conn.query_row(
        "SELECT count(*) FROM server_meta WHERE key LIKE ?1 || '%'",
        [prefix],
        |r| r.get(0),
    )
    .expect("count")
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_steady_writes_is_one_snapshot() {
    let dir = scratch("steady");
    let path = dir.join("live.db");
    let db = open(&path).await;
    // About 2.5 MB, so the copy takes hundreds of small steps.
    for i in 0..600 {
        db.execute(
            "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
            args![format!("fill{i}"), "x".repeat(4000)],
        )
        .await
        .unwrap();
    }
    // Another connection commits ten rows per transaction until stopped,
    // as the server's writer would.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let mut conn = rusqlite::Connection::open(&path).expect("writer");
            conn.busy_timeout(Duration::from_secs(10)).unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tx = conn.transaction().expect("begin");
                for _ in 0..10 {
                    tx.execute(
                        "INSERT INTO server_meta (key, value) VALUES (?1, 'v')",
                        [format!("w{n:09}")],
                    )
                    .expect("insert");
                    n += 1;
                }
                tx.commit().expect("commit");
            }
            n
        }
    });
    // Wait until the writer is going.
    let deadline = Instant::now() + Duration::from_secs(30);
    let before = loop {
        let c = rusqlite::Connection::open(&path).unwrap();
        let n = count(&c, "w");
        if n >= 100 {
            break n;
        }
        assert!(Instant::now() < deadline, "the writer did not start");
        std::thread::sleep(Duration::from_millis(10));
    };

    let dest = dir.join("copy.db");
    let mut copied = Vec::new();
    let summary = tokio::task::spawn_blocking({
        let (path, dest) = (path.clone(), dest.clone());
        move || {
            let r = backup::backup(
                &path,
                &dest,
                &BackupOptions { pages_per_step: 4 },
                &mut |p| copied.push(p),
            );
            (r, copied)
        }
    })
    .await
    .unwrap();
    let (summary, copied) = summary;
    let summary = summary.expect("backup");
    stop.store(true, Ordering::Relaxed);
    let written = writer.join().expect("writer");

    assert!(copied.len() > 50, "copied in steps: {}", copied.len());
    assert!(
        copied.windows(2).all(|w| w[1].copied >= w[0].copied),
        "the copy never started over"
    );
    let last = copied.last().unwrap();
    assert_eq!(last.copied, last.total);

    let c =
        rusqlite::Connection::open_with_flags(&dest, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let in_copy = count(&c, "w");
    assert!(in_copy >= before, "{in_copy} < {before}");
    assert!(in_copy <= i64::try_from(written).unwrap());
    assert_eq!(in_copy % 10, 0, "whole transactions only: {in_copy}");
    assert_eq!(count(&c, "fill"), 600);
    let journal: String = c
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(journal, "delete", "one self-contained file");
    drop(c);
    assert!(!dir.join("copy.db-wal").exists());
    #[cfg(unix)]
    assert_eq!(mode(&dest), 0o600);
    assert!(
        matches!(summary.schema, Schema::Current),
        "{:?}",
        summary.schema
    );
    assert_eq!(summary.bytes, std::fs::metadata(&dest).unwrap().len());
    assert!(summary.tables.iter().any(|(t, _)| *t == "events"));
    // Nothing but the database, its WAL files and the copy.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["copy.db", "live.db", "live.db-shm", "live.db-wal"]);

    // Again over the first copy: replaced whole.
    backup::backup(&path, &dest, &BackupOptions::default(), &mut |_| {}).expect("again");
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_restart_checkpoint_gives_up_soon_beside_a_long_reader() {
    let dir = scratch("reader");
    let path = dir.join("t.db");
    let db = open(&path).await;
    let mut cp = db.checkpointer().await.unwrap().expect("SQLite has one");
    let write = |i: i32| {
        db.execute(
            "INSERT INTO server_meta (key, value) VALUES ($1, 'v')",
            args![format!("k{i}")],
        )
    };
    write(0).await.unwrap();
    // A reader keeps its snapshot (as a backup does) while more is written.
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader.execute_batch("BEGIN").unwrap();
    let _: i64 = reader
        .query_row("SELECT count(*) FROM server_meta", [], |r| r.get(0))
        .unwrap();
    for i in 1..50 {
        write(i).await.unwrap();
    }
    let started = Instant::now();
    let st = cp.restart().await.unwrap();
    assert!(st.busy, "the reader holds the WAL: {st:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "gave up soon: {:?}",
        started.elapsed()
    );
    reader.execute_batch("COMMIT").unwrap();
    drop(reader);
    let st = cp.restart().await.unwrap();
    assert!(!st.busy, "{st:?}");
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_restore_checks_what_it_puts_in_place_and_refuses_what_it_must() {
    let dir = scratch("restore");
    let live = dir.join("live.db");
    let db = open(&live).await;
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ('key_check', 'abc')",
        args![],
    )
    .await
    .unwrap();
    let file = dir.join("b.db");
    backup::backup(&live, &file, &BackupOptions::default(), &mut |_| {}).expect("backup");
    db.close().await;

    let checked = backup::check(&file).expect("a good backup");
    assert_eq!(checked.summary().key_check.as_deref(), Some("abc"));
    let target = dir.join("restored").join("ct.db");
    let r = checked
        .restore(&target, &RestoreOptions::default())
        .expect("restore");
    assert!(r.replaced.is_none());
    #[cfg(unix)]
    {
        assert_eq!(mode(&target), 0o600);
        assert_eq!(mode(target.parent().unwrap()), 0o700);
    }
    // The server opens it as any database.
    let restored = open(&target).await;
    let (v,): (String,) = restored
        .fetch_one(
            "SELECT value FROM server_meta WHERE key = 'key_check'",
            args![],
        )
        .await
        .unwrap();
    assert_eq!(v, "abc");

    // It exists now.
    let err = checked
        .restore(&target, &RestoreOptions::default())
        .unwrap_err();
    assert!(
        matches!(&err, BackupError::Exists(p) if *p == target),
        "{err}"
    );
    // Replacing it while it is open is refused, and changes nothing.
    let err = checked
        .restore(&target, &RestoreOptions { replace: true })
        .unwrap_err();
    assert!(matches!(err, BackupError::InUse(_)), "{err}");
    restored
        .execute(
            "INSERT INTO server_meta (key, value) VALUES ('after', 'v')",
            args![],
        )
        .await
        .unwrap();
    restored.close().await;
    // Closed, it is replaced, and kept aside with what was written to it.
    let r = checked
        .restore(&target, &RestoreOptions { replace: true })
        .expect("replace");
    let aside = r.replaced.expect("moved aside");
    let c = rusqlite::Connection::open(&aside).unwrap();
    assert_eq!(count(&c, "after"), 1);
    let c = rusqlite::Connection::open(&target).unwrap();
    assert_eq!(count(&c, "after"), 0);
    drop(c);

    // A file that is no database, one that is damaged, and a SQLite
    // database of something else are refused by the check.
    let garbage = dir.join("garbage.db");
    std::fs::write(
        &garbage,
        "not a database, but long enough to look like one ".repeat(200),
    )
    .unwrap();
    let err = backup::check(&garbage).unwrap_err();
    assert!(matches!(err, BackupError::NotADatabase(_)), "{err}");

    let damaged = dir.join("damaged.db");
    let mut bytes = std::fs::read(&file).unwrap();
    // Every page's header but the first's.
    for page in bytes.chunks_mut(4096).skip(1) {
        page[..64].fill(0xA5);
    }
    std::fs::write(&damaged, bytes).unwrap();
    let err = backup::check(&damaged).unwrap_err();
    assert!(matches!(err, BackupError::Corrupt { .. }), "{err}");

    let other = dir.join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1);")
        .unwrap();
    let err = backup::check(&other).unwrap_err();
    assert!(matches!(err, BackupError::NotClicktrail(_)), "{err}");

    // A newer version's database: this build would refuse to start on it.
    let newer = dir.join("newer.db");
    std::fs::copy(&file, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch(
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'future', TRUE, x'00', 0);",
        )
        .unwrap();
    let err = backup::check(&newer).unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Schema {
                version: 9999,
                problem: MigrationProblem::Unknown,
                ..
            }
        ),
        "{err}"
    );
    let err = backup::check(&dir.join("missing.db")).unwrap_err();
    assert!(matches!(err, BackupError::NoDatabase(_)), "{err}");
    // A backup is never written over its own database.
    let err = backup::backup(&live, &live, &BackupOptions::default(), &mut |_| {}).unwrap_err();
    assert!(matches!(err, BackupError::SameFile(_)), "{err}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_backup_of_an_older_version_restores_and_the_start_migrates_it() {
    let dir = scratch("older");
    let file = dir.join("v6.db");
    rusqlite::Connection::open(&file)
        .unwrap()
        .execute_batch(SQLX_V6)
        .expect("the fixture loads");
    let checked = backup::check(&file).expect("an older version's backup");
    let Schema::Behind(todo) = &checked.summary().schema else {
        panic!("{:?}", checked.summary().schema);
    };
    assert_eq!(todo.first(), Some(&7));
    assert_eq!(checked.summary().schema_version, Some(6));
    let target = dir.join("data").join("ct.db");
    checked
        .restore(&target, &RestoreOptions::default())
        .expect("restore");
    let db = open(&target).await;
    db.close().await;
    let summary = backup::inspect(&target).expect("inspect");
    assert!(
        matches!(summary.schema, Schema::Current),
        "{:?}",
        summary.schema
    );
    let _ = std::fs::remove_dir_all(dir);
}
