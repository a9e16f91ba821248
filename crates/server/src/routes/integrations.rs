//! Installed integrations: install, show, edit, poll now.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use clicktrail_domain::mapping::EventMapping;
use clicktrail_store::integrations::{self, Integration};
use serde_json::{Value, json};

use super::ApiJson;
use super::api::owned_property;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::integrations::{self as svc, InstallRequest, UpdateRequest};
use crate::polling;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/properties/{id}/integrations", get(list).post(install))
        .route("/integrations/{id}", get(show).put(update).patch(update))
        .route("/integrations/{id}/event_mapping", put(put_mapping))
        .route("/integrations/{id}/poll", post(poll_now))
}

/// The caller's integration or 404.
pub async fn owned_integration(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<Integration> {
    let i = integrations::get(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("integration"))?;
    owned_property(state, caller, &i.property_id)
        .await
        .map_err(|_| ApiError::not_found("integration"))?;
    Ok(i)
}

async fn install(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InstallRequest>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let i = svc::install(&state, &p, req).await?;
    Ok((StatusCode::CREATED, axum::Json(svc::view(&state, &i))))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let list = integrations::list_for_property(&state.db, &p.id).await?;
    let items: Vec<Value> = list.iter().map(|i| svc::view(&state, i)).collect();
    Ok(axum::Json(json!({ "integrations": items })))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let i = owned_integration(&state, &caller, &id).await?;
    Ok(axum::Json(svc::view(&state, &i)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> ApiResult<impl IntoResponse> {
    let i = owned_integration(&state, &caller, &id).await?;
    svc::update(&state, &i, req).await?;
    let i = owned_integration(&state, &caller, &id).await?;
    if let Ok(pid) = clicktrail_domain::PropertyId::parse(&i.property_id) {
        state.forget_tag_config(&pid).await;
    }
    Ok(axum::Json(svc::view(&state, &i)))
}

async fn put_mapping(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(mapping): ApiJson<EventMapping>,
) -> ApiResult<impl IntoResponse> {
    let i = owned_integration(&state, &caller, &id).await?;
    let req = UpdateRequest {
        name: None,
        credentials: None,
        settings: None,
        event_mapping: Some(mapping),
        status: None,
    };
    svc::update(&state, &i, req).await?;
    let i = owned_integration(&state, &caller, &id).await?;
    Ok(axum::Json(svc::view(&state, &i)))
}

async fn poll_now(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let i = owned_integration(&state, &caller, &id).await?;
    let report = polling::poll_now(&state, &i).await?;
    let i = owned_integration(&state, &caller, &id).await?;
    Ok(axum::Json(
        json!({ "poll": report, "integration": svc::view(&state, &i) }),
    ))
}
