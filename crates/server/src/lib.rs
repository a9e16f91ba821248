#![recursion_limit = "256"]
//! The `clicktrail` server: configuration, the HTTP surface (collector, tag,
//! postbacks, API, dashboard), the ingest pipeline and background workers.
//! `main.rs` is only the command line; everything else lives here so the
//! integration tests can start the real server in-process.

pub mod app;
pub mod auth;
pub mod autoscan;
pub mod collector;
pub mod config;
pub mod conversions;
pub mod crypto;
pub mod dashboard;
pub mod delivery;
pub mod enrich;
pub mod error;
pub mod integrations;
pub mod onsite;
pub mod pipeline;
pub mod polling;
pub mod redirect;
pub mod routes;
pub mod rt;
pub mod state;
pub mod tagjs;
pub mod telemetry;

/// Each conversion's deliveries with their attempts, as the conversion log
/// shows them (JSON, by conversion id).
pub async fn delivery_views(
    state: &state::AppState,
    conversion_ids: &[String],
) -> Result<std::collections::HashMap<String, serde_json::Value>, error::ApiError> {
    let views = delivery::views::deliveries_for_conversions(&state.db, conversion_ids).await?;
    views
        .into_iter()
        .map(|(k, v)| {
            Ok((
                k,
                serde_json::to_value(v).map_err(error::ApiError::internal)?,
            ))
        })
        .collect()
}
