//! clicktrail's HTTP surface: the router, and thin handlers that extract,
//! call one service function of `clicktrail_engine` and map its result.
//!
//! - `/collect`, `/t/...` (the tag, AutoScan), `/postback/{token}`,
//!   `/go/{property_id}/{slug}`: public, identified by the property id or a secret token;
//! - `/api/v1/...`: the JSON API, behind [`auth::ApiCaller`] (a bearer
//!   token, and nothing else);
//! - `/healthz`, `/metrics` (behind an optional bearer token, or on a
//!   listener of its own: [`metrics_router`]).
//!
//! Every refusal is `{"error": {"code", "message"}}` ([`error::ApiError`]),
//! axum's and hyper's own refusals too (405, 414, rejections): the common
//! layers ([`with_common_layers`]) give those the shape, and enforce the
//! request and body timeouts and the request-target limit.
//! It depends on the engine (and the types of domain and store), never on
//! the dashboard, which the binary merges beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRef, FromRequest, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clicktrail_engine::Services;
use clicktrail_engine::auth::Auth;
use clicktrail_engine::autoscan::AutoScan;
use clicktrail_engine::collector::Collector;
use clicktrail_engine::config::HttpConfig;
use clicktrail_engine::conversion_log::ConversionLog;
use clicktrail_engine::destinations::Destinations;
use clicktrail_engine::integrations::Integrations;
use clicktrail_engine::link_checker::LinkChecker;
use clicktrail_engine::links::Links;
use clicktrail_engine::properties::Properties;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use crate::error::ApiError;

pub mod api;
pub mod auth;
pub mod catalog;
pub mod collect;
pub mod conversions;
pub mod destinations;
pub mod error;
pub mod extract;
pub mod health;
pub mod integrations;
pub mod link_checker;
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
    link_checker: Arc<LinkChecker>,
    health: Arc<health::Health>,
    /// Whether `/metrics` is served beside the other routes (else only by
    /// [`metrics_router`], on `metrics.listen`).
    #[from_ref(skip)]
    metrics_on_main: bool,
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
            link_checker: services.link_checker.clone(),
            health: Arc::new(health::Health::new(
                services.db.clone(),
                services.collector.clone(),
                metrics,
                services.cfg.metrics.token.clone(),
            )),
            metrics_on_main: services.cfg.metrics.listen.is_none(),
        }
    }
}

/// The public routes and the JSON API (the dashboard is merged beside
/// them by the binary), with request metrics and a panic guard.
pub fn router(state: HttpState) -> Router {
    let mut r = Router::new().route("/healthz", get(health::healthz));
    if state.metrics_on_main {
        r = r.route("/metrics", get(health::metrics));
    }
    r.route(
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
    .route("/go/{property_id}/{slug}", get(links::go_scoped))
    .nest("/api/v1", api::router())
    .with_state(state)
}

/// `/metrics` alone, for its own listener (`metrics.listen`).
pub fn metrics_router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(health::metrics))
        .with_state(state)
}

/// What the common layers enforce.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the request's headers to the response's.
    pub request_timeout: Duration,
    /// Longest wait for the next piece of a request body.
    pub body_read_timeout: Duration,
    /// Longest request target (path and query), bytes.
    pub max_uri_bytes: usize,
}

impl Limits {
    pub fn from_config(cfg: &HttpConfig) -> Self {
        Self {
            request_timeout: Duration::from_secs(cfg.request_timeout_secs),
            body_read_timeout: Duration::from_secs(cfg.body_read_timeout_secs),
            max_uri_bytes: cfg.max_uri_bytes,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self::from_config(&HttpConfig::default())
    }
}

/// The layers every route gets, the dashboard's too: the request-target
/// limit, the request and body timeouts, request metrics by route
/// template, the error shape for refusals made outside the handlers, and a
/// panic turned into an opaque 500.
pub fn with_common_layers(router: Router, limits: Limits) -> Router {
    let max_uri = limits.max_uri_bytes;
    router
        .fallback(not_found)
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            limits.request_timeout,
        ))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            check_uri_length(max_uri, req, next)
        }))
        .layer(middleware::from_fn(track_requests))
        .layer(middleware::from_fn(error_shape))
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

/// Whether reading a request body failed because it stopped arriving (the
/// body read timeout), rather than because it was too large.
pub fn body_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cur = err.source();
    }
    false
}

/// The refusal of a body that stopped arriving.
pub fn body_timeout() -> clicktrail_engine::ServiceError {
    clicktrail_engine::ServiceError::new(
        StatusCode::REQUEST_TIMEOUT,
        "body_timeout",
        "the request body stopped arriving",
    )
}

/// Refuses a request target longer than the limit with a 414 in the API's
/// shape. (hyper's own limit, 64 KiB, is far above it and answers without a
/// body; a reverse proxy in front usually cuts at 8 KiB too.)
async fn check_uri_length(max: usize, req: Request, next: Next) -> Response {
    let len = req
        .uri()
        .path_and_query()
        .map_or(req.uri().path().len(), |pq| pq.as_str().len());
    if len > max {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the request target is longer than {max} bytes"),
        )
        .into_response();
    }
    next.run(req).await
}

/// Gives refusals made outside the handlers the API's error shape: axum's
/// 405 (empty), its extractor rejections (`text/plain`), the request
/// timeout (empty). Error responses that already have a JSON, HTML or
/// JavaScript body (the tag's, the dashboard's pages) pass unchanged.
async fn error_shape(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let empty = axum::body::HttpBody::size_hint(resp.body()).exact() == Some(0);
    if !(empty || content_type.is_empty() || content_type.starts_with("text/plain")) {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // A rejection's text says what was wrong; keep it as the message.
    let text = match axum::body::to_bytes(body, 4096).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_owned(),
        Err(_) => String::new(),
    };
    let (code, default_message) = status_code_name(status);
    let message = if text.is_empty() {
        match (status, parts.headers.get(header::ALLOW)) {
            (StatusCode::METHOD_NOT_ALLOWED, Some(allow)) => format!(
                "method not allowed; allowed: {}",
                allow.to_str().unwrap_or_default()
            ),
            _ => default_message.to_owned(),
        }
    } else {
        text
    };
    let shaped = ApiError::new(status, code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::new(shaped.into_body()))
}

/// The stable code (and a default message) for a refusal that came
/// without one.
fn status_code_name(status: StatusCode) -> (&'static str, &'static str) {
    match status.as_u16() {
        400 => ("bad_request", "bad request"),
        401 => ("unauthorized", "authentication is required"),
        403 => ("forbidden", "forbidden"),
        404 => ("not_found", "not found"),
        405 => ("method_not_allowed", "method not allowed"),
        408 => ("request_timeout", "the request took too long to arrive"),
        411 => ("length_required", "a Content-Length is required"),
        413 => ("body_too_large", "the body is too large"),
        414 => ("uri_too_long", "the request target is too long"),
        415 => ("unsupported_media_type", "unsupported content type"),
        422 => ("invalid_body", "the body is not valid"),
        429 => ("rate_limited", "too many requests"),
        431 => ("headers_too_large", "the request headers are too large"),
        500 => ("internal", "internal error"),
        503 => ("timeout", "the server could not answer in time"),
        s if s < 500 => ("client_error", "the request was refused"),
        _ => ("server_error", "the server could not answer"),
    }
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
