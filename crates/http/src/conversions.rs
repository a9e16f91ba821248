//! `GET /api/v1/properties/{id}/conversions`: the conversion log.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use clicktrail_engine::conversion_log::{ConversionLog, LogQuery};

use crate::HttpState;
use crate::auth::ApiCaller;
use crate::error::ApiResult;

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/properties/{id}/conversions", get(list))
        .route("/conversions/{id}", get(show))
}

async fn list(
    State(log): State<Arc<ConversionLog>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    Query(q): Query<LogQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(log.list(&caller, &id, &q).await?))
}

async fn show(
    State(log): State<Arc<ConversionLog>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(log.get(&caller, &id).await?))
}
