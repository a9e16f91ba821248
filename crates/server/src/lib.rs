//! The `clicktrail` server: configuration, the HTTP surface (collector, tag,
//! postbacks, API, dashboard), the ingest pipeline and background workers.
//! `main.rs` is only the command line; everything else lives here so the
//! integration tests can start the real server in-process.

pub mod app;
pub mod auth;
pub mod collector;
pub mod config;
pub mod crypto;
pub mod enrich;
pub mod error;
pub mod pipeline;
pub mod routes;
pub mod state;
pub mod tagjs;
pub mod telemetry;
