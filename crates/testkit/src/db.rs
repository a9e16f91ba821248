//! A database of its own for one test, on either backend: a SQLite file in
//! a fresh temporary directory, or a fresh PostgreSQL database on the local
//! server (`127.0.0.1:5432`, user `postgres`, trust auth), dropped again
//! when the [`TestDb`] is dropped. Tests never start PostgreSQL themselves:
//! `.ci/run` makes sure it is up.

use std::path::PathBuf;

/// The local PostgreSQL server's maintenance database.
pub const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Sqlite, Backend::Postgres];
}

/// Declares one async test per backend:
/// `both!(name, |backend: Backend| async move { ... });`
#[macro_export]
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                ($body)($crate::db::Backend::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                ($body)($crate::db::Backend::Postgres).await
            }
        }
    };
}

/// A database for one test, dropped with it.
#[derive(Debug)]
pub struct TestDb {
    /// `sqlite://...` or `postgres://...`.
    pub url: String,
    /// A temporary directory of the test's own (the SQLite file, key files).
    pub dir: PathBuf,
    pg_name: Option<String>,
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Runs one statement on the maintenance database.
async fn pg_admin(sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(PG_ADMIN).await?;
    sqlx::query(sql).execute(&mut conn).await?;
    conn.close().await
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = std::env::temp_dir().join(unique("clicktrail-test"));
        std::fs::create_dir_all(&dir).expect("temp dir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}/ct.db", dir.display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = unique("ct_test");
                if let Err(e) = pg_admin(&format!("CREATE DATABASE {name}")).await {
                    panic!(
                        "PostgreSQL is not reachable at {PG_ADMIN} ({e}): `.ci/run` starts it, or \
                         pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
                    );
                }
                TestDb {
                    url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        if self.pg_name.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        if let Some(name) = self.pg_name.take() {
            // Drop may run inside a runtime, which must not block: drop the
            // database from a thread with a runtime of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    let _ = pg_admin(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
                });
            })
            .join();
        }
    }
}
