//! clicktrail's HTTP surface: the router, and thin handlers that extract,
//! call one service function of `clicktrail_engine` and map its result.
//!
//! - `/collect`, `/t/...` (the tag, AutoScan), `/postback/{token}`,
//!   `/go/{slug}`: public, identified by the property id or a secret token;
//! - `/api/v1/...`: the JSON API, behind [`auth::ApiCaller`] (a bearer
//!   token, and nothing else);
//! - `/healthz`, `/metrics`.
//!
//! Every refusal is `{"error": {"code", "message"}}` ([`error::ApiError`]).
//! It depends on the engine (and the types of domain and store), never on
//! the dashboard, which the binary merges beside it.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clicktrail_engine::Services;
use clicktrail_engine::auth::Auth;
use clicktrail_engine::autoscan::AutoScan;
use clicktrail_engine::collector::Collector;
use clicktrail_engine::conversion_log::ConversionLog;
use clicktrail_engine::destinations::Destinations;
use clicktrail_engine::integrations::Integrations;
use clicktrail_engine::links::Links;
use clicktrail_engine::properties::Properties;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;

pub mod api;
pub mod auth;
pub mod catalog;
pub mod collect;
pub mod conversions;
pub mod destinations;
pub mod error;
pub mod health;
pub mod integrations;
pub mod links;
pub mod postback;
pub mod tag;

/// The router's state: each handler extracts only the service it uses
/// (`State<Arc<Links>>`, ...), through `FromRef`.
#[derive(Clone, FromRef)]
pub struct HttpState {
    auth: Arc<Auth>,
    properties: Arc<Properties>,
    collector: Arc<Collector>,
    integrations: Arc<Integrations>,
    destinations: Arc<Destinations>,
    links: Arc<Links>,
    conversion_log: Arc<ConversionLog>,
    autoscan: Arc<AutoScan>,
    health: Arc<health::Health>,
}

impl HttpState {
    pub fn new(services: &Services, metrics: PrometheusHandle) -> Self {
        Self {
            auth: services.auth.clone(),
            properties: services.properties.clone(),
            collector: services.collector.clone(),
            integrations: services.integrations.clone(),
            destinations: services.destinations.clone(),
            links: services.links.clone(),
            conversion_log: services.conversion_log.clone(),
            autoscan: services.autoscan.clone(),
            health: Arc::new(health::Health::new(
                services.db.clone(),
                services.collector.clone(),
                metrics,
            )),
        }
    }
}

/// The public routes and the JSON API (the dashboard is merged beside
/// them by the binary), with request metrics and a panic guard.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route(
            "/collect",
            post(collect::collect).options(collect::preflight),
        )
        .route("/collect/server", post(collect::collect_server))
        .route("/t/{file}", get(tag::tag))
        .route("/t/ext/{file}", get(tag::ext))
        .route("/t/{id}/scan", get(tag::scan))
        .route(
            "/postback/{token}",
            get(postback::postback).post(postback::postback),
        )
        .route("/go/{slug}", get(links::go))
        .nest("/api/v1", api::router())
        .with_state(state)
}

/// The layers every route gets, the dashboard's too: request metrics by
/// route template, and a panic turned into an opaque 500.
pub fn with_common_layers(router: Router) -> Router {
    router
        .fallback(not_found)
        .layer(middleware::from_fn(track_requests))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
}

async fn not_found() -> ApiError {
    ApiError::not_found("route")
}

/// JSON body extractor whose refusals use the API's error shape.
pub struct ApiJson<T>(pub T);

impl<T, S> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(match rej {
                JsonRejection::MissingJsonContentType(_) => ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send a JSON body with Content-Type: application/json",
                ),
                JsonRejection::JsonSyntaxError(e) => {
                    ApiError::bad_request("invalid_json", e.body_text())
                }
                JsonRejection::JsonDataError(e) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                    e.body_text(),
                ),
                JsonRejection::BytesRejection(e) => {
                    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "body_too_large",
                            "the body is too large",
                        )
                    } else {
                        ApiError::bad_request("invalid_body", e.body_text())
                    }
                }
                other => ApiError::bad_request("invalid_body", other.body_text()),
            }),
        }
    }
}

/// Records request latency by route template (never by raw path: ids in
/// paths would explode the label space).
pub async fn track_requests(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let resp = next.run(req).await;
    let status = resp.status().as_u16().to_string();
    metrics::histogram!("clicktrail_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone(), "status" => status.clone())
        .record(start.elapsed().as_secs_f64());
    metrics::counter!("clicktrail_http_requests_total", "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}
