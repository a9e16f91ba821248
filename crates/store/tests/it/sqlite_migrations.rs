//! SQLite's migrations run by the store's own migrator, which records them
//! as sqlx's migrator did (the store ran it before): a database sqlx
//! migrated upgrades without a migration applied twice, a fresh database
//! is recorded in sqlx's format, and a database whose record disagrees with
//! this build is refused.

use clicktrail_store::{Db, DbOptions, MigrationProblem, StoreError};

/// A database as sqlx's migrator left it after migrations 1 to 6.
const SQLX_V6: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/sqlx_migrated_v6.sql"
));

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ct-migrations-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A database file made from the sqlx fixture, changed by `then`.
fn sqlx_migrated(dir: &std::path::Path, then: &str) -> std::path::PathBuf {
    let path = dir.join("t.db");
    let conn = rusqlite::Connection::open(&path).expect("open");
    conn.execute_batch(SQLX_V6).expect("the fixture loads");
    conn.execute_batch(then).expect("the change applies");
    path
}

async fn open(path: &std::path::Path) -> Db {
    Db::connect(
        &format!("sqlite://{}", path.display()),
        &DbOptions::default(),
    )
    .await
    .expect("connect")
}

/// A migration's record: version, description, success, checksum (hex),
/// installed_on, execution_time.
type Record = (i64, String, bool, String, String, i64);

/// A schema object: type, name, SQL.
type Object = (String, String, Option<String>);

async fn records(db: &Db) -> Vec<Record> {
    db.fetch_all(
        "SELECT version, description, success, hex(checksum), installed_on, execution_time \
         FROM _sqlx_migrations ORDER BY version",
        clicktrail_store::args![],
    )
    .await
    .expect("records")
}

/// What the fixture holds: its records, and its schema (type, name, SQL).
fn fixture() -> (Vec<Record>, Vec<Object>) {
    let conn = rusqlite::Connection::open_in_memory().expect("memory");
    conn.execute_batch(SQLX_V6).expect("the fixture loads");
    let mut stmt = conn
        .prepare(
            "SELECT version, description, success, hex(checksum), installed_on, execution_time \
             FROM _sqlx_migrations ORDER BY version",
        )
        .expect("prepare");
    let records = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .expect("records")
        .collect::<Result<Vec<Record>, _>>()
        .expect("records");
    (records, schema_of(&conn))
}

/// SQL without whitespace, to compare statements SQLite rewrote.
fn squash(sql: &str) -> String {
    sql.chars().filter(|c| !c.is_whitespace()).collect()
}

fn schema_of(conn: &rusqlite::Connection) -> Vec<Object> {
    conn.prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("schema")
        .collect::<Result<_, _>>()
        .expect("schema")
}

#[tokio::test]
async fn a_database_sqlx_migrated_upgrades_without_applying_anything_twice() {
    let dir = scratch("upgrade");
    let path = sqlx_migrated(&dir, "");
    let (before, _) = fixture();
    let db = open(&path).await;
    db.migrate().await.expect("migrates");
    let after = records(&db).await;
    // sqlx's records stand as they were (a migration applied again would
    // have a new time); later migrations are added in the same format.
    assert_eq!(after[..before.len()], before[..]);
    for (version, description, success, checksum, _, execution_time) in &after[before.len()..] {
        assert!(*version > 6 && *success && !description.is_empty());
        assert_eq!(checksum.len(), 96, "a SHA-384");
        assert!(*execution_time >= 0);
    }
    db.migrate().await.expect("a second run");
    assert_eq!(records(&db).await, after, "a second run applies nothing");
    // The upgraded database is the store's: a write through it works.
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
        clicktrail_store::args!["k", "v"],
    )
    .await
    .expect("a write");
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_fresh_database_is_recorded_as_sqlx_records_it() {
    let dir = scratch("fresh");
    let path = dir.join("t.db");
    let db = open(&path).await;
    db.migrate().await.expect("migrates");
    let fresh = records(&db).await;
    db.close().await;
    let (sqlx_records, sqlx_schema) = fixture();
    assert!(fresh.len() >= sqlx_records.len());
    for (ours, theirs) in fresh.iter().zip(&sqlx_records) {
        // All but when, and how long it took.
        assert_eq!(
            (&ours.0, &ours.1, &ours.2, &ours.3),
            (&theirs.0, &theirs.1, &theirs.2, &theirs.3)
        );
        assert_eq!(ours.4.len(), "2026-01-01 00:00:00".len(), "{}", ours.4);
        assert!(ours.5 > 0, "execution_time in ns: {}", ours.5);
    }
    // Migrations 1 to 6 and the bookkeeping table come out as sqlx made
    // them, statement for statement.
    let conn = rusqlite::Connection::open(&path).expect("open");
    let ours = schema_of(&conn);
    // Objects that migrations after 6 change on purpose (0007 adds a
    // column to `integrations`, 0008 rebuilds `links`, 0012 adds one to
    // `links` too; the columns 0009, 0011, 0012 and 0013 add to other
    // tables are checked below).
    const CHANGED_AFTER_V6: &[&str] = &["integrations", "links", "links_property"];
    // Columns later migrations add (ALTER TABLE ... ADD COLUMN), by table,
    // as their squashed declarations in order.
    const ADDED_AFTER_V6: &[(&str, &str)] = &[
        ("events", ",onsiteTEXT"),
        ("clicks", ",link_idTEXT,consentTEXT"),
        ("sessions", ",consentTEXT"),
        ("properties", ",deleted_atINTEGER,purge_afterINTEGER"),
        ("destinations", ",deleted_atINTEGER"),
    ];
    for object in &sqlx_schema {
        if CHANGED_AFTER_V6.contains(&object.1.as_str()) {
            continue;
        }
        // A table a later migration altered (ALTER TABLE ... ADD COLUMN
        // rewrites its stored SQL) keeps what sqlx made, plus the column.
        let altered = |o: &Object| {
            let (Some(a), Some(b)) = (&o.2, &object.2) else {
                return false;
            };
            o.0 == object.0
                && o.1 == object.1
                && ADDED_AFTER_V6.iter().any(|(table, added)| {
                    o.1 == *table
                        && squash(a) == format!("{}{added})", squash(b).trim_end_matches(')'))
                })
        };
        assert!(
            ours.contains(object) || ours.iter().any(altered),
            "{object:?} differs or is missing"
        );
    }
    let (typed,): (String,) = conn
        .query_row(
            "SELECT typeof(success) || ' ' || typeof(checksum) || ' ' || typeof(installed_on) \
             FROM _sqlx_migrations LIMIT 1",
            [],
            |r| Ok((r.get(0)?,)),
        )
        .expect("types");
    assert_eq!(typed, "integer blob text");
    drop(conn);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_record_that_disagrees_with_this_build_is_refused() {
    let cases = [
        (
            "changed",
            "UPDATE _sqlx_migrations SET checksum = X'00' WHERE version = 3",
            3,
        ),
        (
            "unknown",
            "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
             VALUES (9999, 'from the future', 1, X'00', 1)",
            9999,
        ),
        (
            "dirty",
            "UPDATE _sqlx_migrations SET success = 0 WHERE version = 6",
            6,
        ),
    ];
    for (name, change, version) in cases {
        let dir = scratch(name);
        let path = sqlx_migrated(&dir, change);
        let db = open(&path).await;
        let err = db.migrate().await.expect_err(name);
        match (&err, name) {
            (
                StoreError::Migration {
                    version: v,
                    problem: MigrationProblem::Changed,
                },
                "changed",
            )
            | (
                StoreError::Migration {
                    version: v,
                    problem: MigrationProblem::Unknown,
                },
                "unknown",
            )
            | (
                StoreError::Migration {
                    version: v,
                    problem: MigrationProblem::Dirty,
                },
                "dirty",
            ) => assert_eq!(*v, version, "{err}"),
            _ => panic!("{name}: {err:?}"),
        }
        db.close().await;
        let _ = std::fs::remove_dir_all(dir);
    }
}
