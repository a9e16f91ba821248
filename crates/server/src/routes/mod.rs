//! The HTTP surface: thin handlers that extract, call one service function
//! and map its result.

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;
use crate::telemetry;

pub mod api;
pub mod catalog;
pub mod collect;
pub mod conversions;
pub mod destinations;
pub mod health;
pub mod integrations;
pub mod links;
pub mod postback;
pub mod tag;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/metrics", get(health::metrics))
        .route(
            "/collect",
            post(collect::collect).options(collect::preflight),
        )
        .route("/t/{file}", get(tag::tag))
        .route("/t/ext/{file}", get(tag::ext))
        .route("/t/{id}/scan", get(tag::scan))
        .route(
            "/postback/{token}",
            get(postback::postback).post(postback::postback),
        )
        .route("/go/{slug}", get(links::go))
        .nest("/api/v1", api::router())
        .merge(crate::dashboard::router())
        .fallback(not_found)
        .layer(middleware::from_fn(telemetry::track_requests))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("a handler panicked");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
            .into_response()
        }))
        .with_state(state)
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

impl IntoResponse for crate::collector::Accepted {
    fn into_response(self) -> Response {
        (StatusCode::ACCEPTED, axum::Json(self)).into_response()
    }
}
