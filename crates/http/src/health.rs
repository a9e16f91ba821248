//! Liveness and metrics. `/metrics` may be closed with a bearer token
//! (`metrics.token`): Prometheus then sends it (`authorization.credentials`
//! in its scrape config).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_engine::collector::Collector;
use clicktrail_engine::config::Secret;
use clicktrail_store::Db;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;

use crate::error::ApiError;

/// What `/healthz` and `/metrics` look at.
#[derive(Debug)]
pub struct Health {
    db: Db,
    collector: Arc<Collector>,
    metrics: PrometheusHandle,
    metrics_token: Option<Secret>,
}

impl Health {
    pub fn new(
        db: Db,
        collector: Arc<Collector>,
        metrics: PrometheusHandle,
        metrics_token: Option<Secret>,
    ) -> Self {
        Self {
            db,
            collector,
            metrics,
            metrics_token,
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

/// Prometheus metrics; with `metrics.token` set, only for that bearer token.
pub async fn metrics(State(h): State<Arc<Health>>, headers: HeaderMap) -> Response {
    if let Some(token) = &h.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| token.matches(g)) {
            let mut resp = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "the metrics token is required: Authorization: Bearer <metrics.token>",
            )
            .into_response();
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics.render(),
    )
        .into_response()
}
