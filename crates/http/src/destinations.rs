//! `/api/v1` routes of conversions out: ad destinations (create, list,
//! show, edit, pause, test, delete), the delivery log, retry and replay. Thin
//! handlers over the engine's [`Destinations`] service.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clicktrail_engine::destinations::{
    CreateDestination, DeliveryQuery, Destinations, ReplayRequest, TestRequest, UpdateDestination,
};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::auth::ApiCaller;
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route(
            "/properties/{id}/destinations",
            get(list_destinations).post(create_destination),
        )
        .route("/properties/{id}/deliveries", get(list_deliveries))
        .route(
            "/destinations/{id}",
            get(get_destination)
                .patch(update_destination)
                .delete(delete_destination),
        )
        .route("/destinations/{id}/test", post(test_destination))
        .route("/destinations/{id}/replay", post(replay_destination))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/deliveries/{id}/retry", post(retry_delivery))
}

/// An optional JSON body: empty means the defaults.
fn optional_body<T: DeserializeOwned + Default>(body: &Bytes) -> ApiResult<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
            e.to_string(),
        )
    })
}

async fn create_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateDestination>,
) -> ApiResult<impl IntoResponse> {
    let v = svc.create(&caller, &id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(v)))
}

async fn list_destinations(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let items = svc.list(&caller, &id).await?;
    Ok(axum::Json(json!({ "destinations": items })))
}

async fn delete_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.delete(&caller, &id).await?))
}

async fn get_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.get(&caller, &id).await?))
}

async fn update_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateDestination>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.update(&caller, &id, body).await?))
}

async fn test_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let req: TestRequest = optional_body(&body)?;
    Ok(axum::Json(svc.test(&caller, &id, req).await?))
}

async fn replay_destination(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let req: ReplayRequest = optional_body(&body)?;
    Ok(axum::Json(svc.replay(&caller, &id, req).await?))
}

async fn get_delivery(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.delivery(&caller, &id).await?))
}

async fn retry_delivery(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.retry_delivery(&caller, &id).await?))
}

async fn list_deliveries(
    State(svc): State<Arc<Destinations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.deliveries(&caller, &id, q).await?))
}
