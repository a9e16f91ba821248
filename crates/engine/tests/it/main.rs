//! The engine's integration tests (one test binary for the crate): its
//! writers and services against a real database, SQLite and PostgreSQL
//! (see `clicktrail_testkit::db`).

mod outbox;
