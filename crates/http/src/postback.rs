//! `GET|POST /postback/{token}`: conversions reported by networks.

use std::sync::Arc;

use crate::extract::Path;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_engine::integrations::{Integrations, postback_reject};

use crate::error::ApiError;

/// Largest postback body.
const MAX_BODY: usize = 64 * 1024;

pub async fn postback(
    State(integrations): State<Arc<Integrations>>,
    Path(token): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) if crate::body_timed_out(&e) => {
            let e = crate::body_timeout();
            return ApiError::from(postback_reject(e.code, e.status, e.message)).into_response();
        }
        Err(_) => {
            return ApiError::from(postback_reject(
                "body_too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 64 KiB",
            ))
            .into_response();
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match integrations
        .receive_postback(&token, query.as_deref(), content_type, &bytes)
        .await
    {
        Ok(outcome) => (StatusCode::OK, axum::Json(outcome)).into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
