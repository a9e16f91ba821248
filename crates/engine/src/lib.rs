#![recursion_limit = "256"]
//! clicktrail's engine: everything between the HTTP edge and the store.
//!
//! - The write paths, all through one group-commit loop ([`commit`]): the
//!   ingest queue and its writer ([`ingest`]), the conversion writer that decides and records
//!   conversions ([`conversions`]) together with their deliveries (the
//!   transactional outbox, [`conversions::Outbox`]), the delivery workers
//!   ([`delivery`]), the API connectors' poller ([`polling`]) and the
//!   on-site conversion follower ([`onsite`]), and the daily retention job
//!   that purges deleted properties and expires old raw data
//!   ([`retention`]).
//! - The service layer, one module per area, each a small struct holding
//!   only what it needs: [`properties`], [`integrations`],
//!   [`destinations`], [`links`], [`conversion_log`], [`collector`],
//!   [`autoscan`], and [`auth`], the only place a [`auth::Caller`] is made.
//!   The JSON API and the dashboard are both thin callers of these.
//! - "Test connection" of an API integration before it is saved
//!   ([`connection_test`]), and the link checker ([`link_checker`]): a
//!   page's links, and whether its redirect-plugin links keep the click id.
//! - Configuration ([`config`]), credential encryption ([`crypto`]),
//!   enrichment of requests ([`enrich`]) and telemetry ([`telemetry`]).
//!
//! It owns no HTTP server and no SQL: it depends on `store`, `networks`,
//! `destinations`, `outbound` and `domain`, and nothing depends on it but
//! the HTTP surface, the dashboard and the binary. Its errors are one
//! [`error::ServiceError`] with a stable code and the HTTP status it
//! answers with.

pub mod auth;
pub mod autoscan;
mod budget;
pub mod collector;
pub mod commit;
pub mod config;
pub mod connection_test;
pub mod conversion_log;
pub mod conversions;
pub mod crypto;
pub mod delivery;
pub mod destinations;
pub mod enrich;
pub mod error;
pub mod ingest;
pub mod integrations;
pub mod link_checker;
pub mod links;
pub mod onsite;
pub mod polling;
pub mod properties;
pub mod retention;
pub mod rt;
pub mod services;
pub mod tag;
pub mod telemetry;

pub use error::{FieldProblem, ServiceError, ServiceResult};
pub use services::Services;
