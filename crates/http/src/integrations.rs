//! Installed integrations: install, test a connection before installing,
//! list, show, edit, poll now, delete.

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use clicktrail_domain::mapping::EventMapping;
use clicktrail_engine::integrations::{InstallRequest, Integrations, TestRequest, UpdateRequest};
use serde_json::{Value, json};

use crate::auth::ApiCaller;
use crate::error::ApiResult;
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/properties/{id}/integrations", get(list).post(install))
        .route("/properties/{id}/integrations/test", post(test_on_property))
        .route("/integrations/test", post(test))
        .route(
            "/integrations/{id}",
            get(show).put(update).patch(update).delete(delete),
        )
        .route("/integrations/{id}/event_mapping", put(put_mapping))
        .route("/integrations/{id}/poll", post(poll_now))
}

async fn install(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InstallRequest>,
) -> ApiResult<impl IntoResponse> {
    let i = svc.install_on(&caller, &id, req).await?;
    Ok((StatusCode::CREATED, axum::Json(svc.view(&i))))
}

/// `POST /api/v1/integrations/test`: an install's body plus `property_id`.
async fn test(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    ApiJson(req): ApiJson<TestRequest>,
) -> ApiResult<impl IntoResponse> {
    let (property_id, req) = req.into_parts();
    Ok(axum::Json(
        svc.test_connection(&caller, &property_id, req).await?,
    ))
}

/// `POST /api/v1/properties/{id}/integrations/test`: an install's body.
async fn test_on_property(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<InstallRequest>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.test_connection(&caller, &id, req).await?))
}

async fn list(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let items: Vec<Value> = svc
        .list(&caller, &id)
        .await?
        .iter()
        .map(|i| svc.view(i))
        .collect();
    Ok(axum::Json(json!({ "integrations": items })))
}

async fn show(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let i = svc.owned(&caller, &id).await?;
    Ok(axum::Json(svc.view(&i)))
}

async fn update(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateRequest>,
) -> ApiResult<impl IntoResponse> {
    let i = svc.edit(&caller, &id, req).await?;
    Ok(axum::Json(svc.view(&i)))
}

async fn put_mapping(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(mapping): ApiJson<EventMapping>,
) -> ApiResult<impl IntoResponse> {
    let req = UpdateRequest {
        event_mapping: Some(mapping),
        ..UpdateRequest::default()
    };
    let i = svc.edit(&caller, &id, req).await?;
    Ok(axum::Json(svc.view(&i)))
}

async fn poll_now(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (report, i) = svc.poll_now(&caller, &id).await?;
    Ok(axum::Json(
        json!({ "poll": report, "integration": svc.view(&i) }),
    ))
}

/// `DELETE /api/v1/integrations/{id}` query: `?purge=true` deletes its
/// conversion log too.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    purge: bool,
}

async fn delete(
    State(svc): State<Arc<Integrations>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(svc.delete(&caller, &id, q.purge).await?))
}
