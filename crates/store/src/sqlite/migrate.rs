//! SQLite's migrations: the files of `migrations/sqlite` (embedded at build
//! time, see `build.rs`), applied in order of version.
//!
//! They are recorded in `_sqlx_migrations` exactly as sqlx's migrator
//! recorded them (the store ran it before), so that a database either one
//! migrated is one the other accepts: the same table, one row per
//! migration with its description and the SHA-384 of its SQL, each applied
//! once in a transaction with its row, and a database refused when a
//! migration failed half-way, is unknown to this build, or was changed
//! since it was applied. (PostgreSQL keeps sqlx's migrator.)

use std::collections::BTreeMap;
use std::time::Instant;

use rusqlite::OptionalExtension;
use sha2::{Digest, Sha384};

use crate::direct::DirectConn;
use crate::{MigrationProblem, Result, StoreError};

include!(concat!(env!("OUT_DIR"), "/sqlite_migrations.rs"));

/// The bookkeeping table as sqlx's migrator creates it, word for word: a
/// database created here has the schema one created by sqlx has.
const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS _sqlx_migrations (
    version BIGINT PRIMARY KEY,
    description TEXT NOT NULL,
    installed_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    success BOOLEAN NOT NULL,
    checksum BLOB NOT NULL,
    execution_time BIGINT NOT NULL
);";

/// One migration.
#[derive(Debug, Clone)]
pub(crate) struct Migration {
    pub(crate) version: i64,
    pub(crate) description: String,
    pub(crate) sql: &'static str,
    /// SHA-384 of `sql`, as sqlx computes it.
    pub(crate) checksum: Vec<u8>,
}

impl Migration {
    /// The migration in the file `name`, named as sqlx names them:
    /// `<version>_<description>.sql`, with the description's underscores
    /// recorded as spaces. sqlx's reversible `.up.sql`/`.down.sql` pairs
    /// are not supported (the store has none).
    pub(crate) fn from_file(name: &str, sql: &'static str) -> Result<Migration> {
        let bad = |why: &str| StoreError::Corrupt(format!("migration file {name}: {why}"));
        let (version, rest) = name
            .split_once('_')
            .ok_or_else(|| bad("expected <version>_<description>.sql"))?;
        let description = rest
            .strip_suffix(".sql")
            .ok_or_else(|| bad("expected <version>_<description>.sql"))?;
        if description.ends_with(".up") || description.ends_with(".down") {
            return Err(bad("reversible migrations are not supported"));
        }
        let version = version
            .parse()
            .map_err(|_| bad("the version is not an integer"))?;
        Ok(Migration {
            version,
            description: description.replace('_', " "),
            sql,
            checksum: Sha384::digest(sql.as_bytes()).to_vec(),
        })
    }
}

/// This build's migrations, in order of version.
pub(crate) fn embedded() -> Result<Vec<Migration>> {
    let mut all = FILES
        .iter()
        .map(|(name, sql)| Migration::from_file(name, sql))
        .collect::<Result<Vec<_>>>()?;
    all.sort_by_key(|m| m.version);
    if let Some(w) = all.windows(2).find(|w| w[0].version == w[1].version) {
        return Err(StoreError::Corrupt(format!(
            "two migrations have the version {}",
            w[0].version
        )));
    }
    Ok(all)
}

/// Applies the `migrations` the database has not had, in order; returns
/// the versions applied.
pub(crate) fn run(conn: &mut DirectConn, migrations: &[Migration]) -> Result<Vec<i64>> {
    conn.conn().execute_batch(CREATE_TABLE)?;
    let todo = pending(conn.conn(), migrations)?;
    let mut done = Vec::new();
    for m in todo {
        apply(conn, m)?;
        done.push(m.version);
    }
    Ok(done)
}

/// The `migrations` a database has not had, in order, after checking its
/// record (which must exist): refused when a migration failed half-way,
/// is unknown to this build, or changed since it was applied. Reads only,
/// so a copy can be checked before it is put in place (see
/// [`crate::backup`]).
pub(crate) fn pending<'m>(
    c: &rusqlite::Connection,
    migrations: &'m [Migration],
) -> Result<Vec<&'m Migration>> {
    let refuse = |version, problem| Err(StoreError::Migration { version, problem });
    let dirty: Option<i64> = c
        .query_row(
            "SELECT version FROM _sqlx_migrations WHERE success = false ORDER BY version LIMIT 1",
            [],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(version) = dirty {
        return refuse(version, MigrationProblem::Dirty);
    }
    let mut applied: BTreeMap<i64, Vec<u8>> = BTreeMap::new();
    {
        let mut stmt = c.prepare("SELECT version, checksum FROM _sqlx_migrations")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            applied.insert(r.get(0)?, r.get(1)?);
        }
    }
    if let Some(&version) = applied
        .keys()
        .find(|v| !migrations.iter().any(|m| m.version == **v))
    {
        return refuse(version, MigrationProblem::Unknown);
    }
    let mut todo = Vec::new();
    for m in migrations {
        match applied.get(&m.version) {
            Some(checksum) if *checksum == m.checksum => {}
            Some(_) => return refuse(m.version, MigrationProblem::Changed),
            None => todo.push(m),
        }
    }
    Ok(todo)
}

/// One migration and its record, in one transaction (so it is never
/// applied twice), as sqlx does it.
fn apply(conn: &mut DirectConn, m: &Migration) -> Result<()> {
    let started = Instant::now();
    conn.begin()?;
    let c = conn.conn();
    let r = c.execute_batch(m.sql).and_then(|()| {
        c.execute(
            "INSERT INTO _sqlx_migrations ( version, description, success, checksum, execution_time ) \
             VALUES ( ?1, ?2, TRUE, ?3, -1 )",
            (m.version, &m.description, &m.checksum),
        )
    });
    if let Err(e) = r {
        if let Err(rb) = conn.rollback() {
            tracing::warn!(error = %rb, "rolling back a failed migration failed");
        }
        return Err(StoreError::Migration {
            version: m.version,
            problem: MigrationProblem::Failed(e),
        });
    }
    conn.commit()?;
    // As sqlx: the time is known only after the commit, and recorded on
    // its own (a crash in between loses nothing that matters).
    let nanos = i64::try_from(started.elapsed().as_nanos()).unwrap_or(i64::MAX);
    conn.conn().execute(
        "UPDATE _sqlx_migrations SET execution_time = ?1 WHERE version = ?2",
        (nanos, m.version),
    )?;
    tracing::info!(version = m.version, description = %m.description, "applied a migration");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_read_as_sqlx_reads_them() {
        let m = Migration::from_file("0006_conversion_indexes.sql", "SELECT 1;").unwrap();
        assert_eq!(
            (m.version, m.description.as_str()),
            (6, "conversion indexes")
        );
        assert_eq!(m.checksum, Sha384::digest(b"SELECT 1;").to_vec());
        for bad in [
            "core.sql",
            "x_core.sql",
            "0001_core.txt",
            "0001_core.up.sql",
            "0001_core.down.sql",
        ] {
            assert!(Migration::from_file(bad, "").is_err(), "{bad}");
        }
    }

    #[test]
    fn the_embedded_migrations_are_the_directory_in_order() {
        let all = embedded().unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
        let files = std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "sql")
            })
            .count();
        assert_eq!(all.len(), files);
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        assert_eq!(all[0].description, "core");
    }

    #[test]
    fn a_failed_migration_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("ct-migrate-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let settings = crate::direct::DirectSettings {
            path: dir.join("t.db"),
            synchronous: crate::SqliteSync::Normal,
            cache_kib: 1024,
        };
        let mut conn = DirectConn::open(&settings, std::sync::Arc::default()).unwrap();
        let good = Migration::from_file("0001_good.sql", "CREATE TABLE a (x INTEGER);").unwrap();
        // Its first statement works, its second fails.
        let bad = Migration::from_file(
            "0002_bad.sql",
            "CREATE TABLE b (x INTEGER); INSERT INTO nowhere VALUES (1);",
        )
        .unwrap();
        let err = run(&mut conn, &[good.clone(), bad.clone()]).unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Migration {
                    version: 2,
                    problem: MigrationProblem::Failed(_)
                }
            ),
            "{err}"
        );
        let tables: Vec<String> = conn
            .conn()
            .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(tables, vec!["_sqlx_migrations", "a"]);
        let recorded: Vec<i64> = conn
            .conn()
            .prepare("SELECT version FROM _sqlx_migrations")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(recorded, vec![1]);
        // Fixed, it applies; then nothing is left to do.
        let fixed = Migration::from_file("0002_bad.sql", "CREATE TABLE b (x INTEGER);").unwrap();
        assert_eq!(
            run(&mut conn, &[good.clone(), fixed.clone()]).unwrap(),
            vec![2]
        );
        assert!(run(&mut conn, &[good, fixed]).unwrap().is_empty());
        drop(conn);
        let _ = std::fs::remove_dir_all(dir);
    }
}
