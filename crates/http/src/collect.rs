//! `POST /collect`, its CORS preflight, and the signed server-side
//! `POST /collect/server`.

use std::net::SocketAddr;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_engine::collector::{self, Collector};

use crate::error::ApiError;

/// `POST /collect/server`: a site's backend, signed; no CORS.
pub async fn collect_server(
    State(collector): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match read_body(&collector, &headers, body).await {
        Ok(bytes) => match collector.collect_server(&headers, Some(peer), &bytes).await {
            Ok(accepted) => (StatusCode::ACCEPTED, axum::Json(accepted)).into_response(),
            Err(e) => ApiError::from(e).into_response(),
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The body, within the collector's limit and media types.
async fn read_body(
    collector: &Collector,
    headers: &HeaderMap,
    body: Body,
) -> Result<axum::body::Bytes, clicktrail_engine::error::ServiceError> {
    let limit = collector.max_body_bytes();
    collector::check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(collector::body_too_large(limit));
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        if crate::body_timed_out(&e) {
            crate::body_timeout()
        } else {
            collector::body_too_large(limit)
        }
    })
}

pub async fn collect(
    State(collector): State<Arc<Collector>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = async {
        let bytes = read_body(&collector, &headers, body).await?;
        collector.collect(&headers, Some(peer), &bytes).await
    }
    .await;
    let mut resp = match result {
        Ok(accepted) => (StatusCode::ACCEPTED, axum::Json(accepted)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    };
    // The origin was checked against the property's domains inside
    // `collect`; a refused request gets no CORS headers.
    if resp.status().is_success()
        && let Some(origin) = headers.get(header::ORIGIN)
    {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}

/// Preflight for `fetch` with `application/json`. The property (and so its
/// domains) is only known from the body, so the preflight allows the
/// method; the actual request is checked and refused without CORS headers
/// when its origin is not allowed.
pub async fn preflight(headers: HeaderMap) -> Response {
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let h = resp.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    resp
}
