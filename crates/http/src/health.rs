//! Liveness and metrics.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use clicktrail_engine::collector::Collector;
use clicktrail_store::Db;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

/// What `/healthz` and `/metrics` look at.
#[derive(Debug)]
pub struct Health {
    db: Db,
    collector: Arc<Collector>,
    metrics: PrometheusHandle,
}

impl Health {
    pub fn new(db: Db, collector: Arc<Collector>, metrics: PrometheusHandle) -> Self {
        Self {
            db,
            collector,
            metrics,
        }
    }
}

/// Alive and the database answers.
pub async fn healthz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    match h.db.ping().await {
        Ok(()) => (
            StatusCode::OK,
            axum::Json(json!({"status": "ok", "ingest_queue_depth": h.collector.queue_depth()})),
        ),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "database_unreachable"})),
            )
        }
    }
}

pub async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics.render(),
    )
}
