//! The `clicktrail` binary's library: the wiring of the engine's writers,
//! workers and services into one server with the HTTP surface and the
//! dashboard, its graceful shutdown ([`app`]), the HTTP listener with its
//! timeouts and connection cap ([`serve`]), `clicktrail demo` ([`demo`]),
//! and `clicktrail backup` / `restore` ([`backup`]). `main.rs` is only
//! the command line; this lives in a library
//! so the integration tests can start the real server in-process.

pub mod app;
pub mod backup;
pub mod datadir;
pub mod demo;
pub mod serve;

pub use clicktrail_engine::config;
