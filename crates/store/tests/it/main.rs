//! The store's integration tests, one test binary: the two backends'
//! schemas compared, the SQLite migrator, the SQLite pool and writers.
//! Fixtures are in `tests/fixtures/`.
//! `cargo test -p clicktrail-store --test it <filter>` runs one area.

mod schema_parity;
mod sqlite_backup;
mod sqlite_migrations;
mod sqlite_pool;
mod sqlite_writer;
