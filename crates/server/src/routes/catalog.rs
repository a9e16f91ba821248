//! `GET /api/v1/catalog[/{key}]`: the integration catalog.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use serde_json::json;

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

pub async fn list(State(state): State<AppState>, _caller: Caller) -> impl IntoResponse {
    axum::Json(json!({ "entries": state.catalog.entries() }))
}

pub async fn get(
    State(state): State<AppState>,
    _caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let entry = state
        .catalog
        .get(&key)
        .ok_or_else(|| ApiError::not_found("catalog entry"))?;
    let mut v = serde_json::to_value(entry).map_err(ApiError::internal)?;
    v["verification"] = serde_json::to_value(entry.verification()).map_err(ApiError::internal)?;
    Ok(axum::Json(v))
}
