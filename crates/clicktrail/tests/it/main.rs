//! The server's integration tests, one test binary (each binary links the
//! whole server; one link instead of one per area). They run the real
//! server, in-process on port 0 or as a `clicktrail serve` child process,
//! against SQLite and PostgreSQL through the one harness in [`support`].
//!
//! `cargo test -p clicktrail --test it` runs them all;
//! `cargo test -p clicktrail --test it delivery_` runs one area (the
//! filter matches the module path, e.g. `delivery_flow::payloads_sqlite`).
//! PostgreSQL must be up at 127.0.0.1:5432 (`.ci/run` starts it).

mod support;

mod backup;
mod consent;
mod conversions;
mod crash;
mod dashboard_accounts;
mod dashboard_bench;
mod dashboard_flows;
mod dashboard_links;
mod dashboard_login_limits;
mod dashboard_reports;
mod delivery_api;
mod delivery_crash;
mod delivery_flow;
mod delivery_reliability;
mod hardening_conv;
mod http_hardening;
mod integration_test_connection;
mod lifecycle;
mod link_checker;
mod paper_cuts;
mod setup;
mod spine;
mod store_hardening;
