//! `GET /api/v1/catalog[/{key}]`: the integration catalog.

use std::sync::Arc;

use crate::extract::Path;
use axum::extract::State;
use axum::response::IntoResponse;
use clicktrail_engine::integrations::Integrations;
use serde_json::json;

use crate::auth::ApiCaller;
use crate::error::{ApiError, ApiResult};

pub async fn list(
    State(integrations): State<Arc<Integrations>>,
    _caller: ApiCaller,
) -> impl IntoResponse {
    axum::Json(json!({ "entries": integrations.catalog().entries() }))
}

pub async fn get(
    State(integrations): State<Arc<Integrations>>,
    _caller: ApiCaller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let entry = integrations
        .catalog()
        .get(&key)
        .ok_or_else(|| ApiError::not_found("catalog entry"))?;
    let mut v = serde_json::to_value(entry).map_err(ApiError::internal)?;
    v["verification"] = serde_json::to_value(entry.verification()).map_err(ApiError::internal)?;
    Ok(axum::Json(v))
}
