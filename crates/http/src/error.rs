//! The JSON API's error: a service error rendered as
//! `{"error": {"code": "snake_case", "message": "...", "fields"?: [...]}}`
//! with its status (and `Retry-After` when it says when to come back).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_engine::ServiceError;
use serde_json::json;

/// A refusal as the API renders it.
#[derive(Debug)]
pub struct ApiError(pub ServiceError);

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self(ServiceError::new(status, code, message))
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self(ServiceError::bad_request(code, message))
    }

    pub fn not_found(what: &str) -> Self {
        Self(ServiceError::not_found(what))
    }

    pub fn unauthorized() -> Self {
        Self(ServiceError::unauthorized())
    }

    /// An internal failure: logged once, answered opaquely.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self(ServiceError::internal(err))
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        Self(e)
    }
}

impl From<clicktrail_store::StoreError> for ApiError {
    fn from(e: clicktrail_store::StoreError) -> Self {
        Self(ServiceError::internal(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut body = json!({"error": {"code": e.code, "message": e.message}});
        if !e.fields.is_empty() {
            body["error"]["fields"] = json!(e.fields);
        }
        let mut resp = (e.status, Json(body)).into_response();
        if let Some(s) = e.retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}
