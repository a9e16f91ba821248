//! `/api/v1`: the JSON API. Every route needs a bearer token; a caller sees
//! only its own workspace (others' things are 404).

use std::sync::Arc;

use crate::extract::{Path, Query};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use clicktrail_engine::properties::{CreateProperty, Properties, UpdateProperty};
use serde_json::json;

use crate::auth::ApiCaller;
use crate::error::ApiResult;
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/properties", get(list_properties).post(create_property))
        .route(
            "/properties/{id}",
            get(get_property)
                .patch(update_property)
                .delete(delete_property),
        )
        .route("/properties/{id}/restore", post(restore_property))
        .route("/properties/{id}/clicks/{click_id}", get(get_click))
        .route("/catalog", get(crate::catalog::list))
        .route("/catalog/{key}", get(crate::catalog::get))
        .merge(crate::integrations::router())
        .merge(crate::conversions::router())
        .merge(crate::links::router())
        .merge(crate::link_checker::router())
        .merge(crate::destinations::router())
}

async fn create_property(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    ApiJson(body): ApiJson<CreateProperty>,
) -> ApiResult<impl IntoResponse> {
    let p = props.create(&caller, body).await?;
    Ok((StatusCode::CREATED, axum::Json(props.view(&p))))
}

/// `GET /api/v1/properties` query: `?deleted=true` lists the deleted
/// properties that can still be restored instead of the live ones.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    deleted: bool,
}

async fn list_properties(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Query(q): Query<ListQuery>,
) -> ApiResult<impl IntoResponse> {
    let list = if q.deleted {
        props.list_deleted(&caller).await?
    } else {
        props.list(&caller).await?
    };
    let items: Vec<_> = list.iter().map(|p| props.view(p)).collect();
    Ok(axum::Json(json!({ "properties": items })))
}

/// `DELETE /api/v1/properties/{id}`: answers the property as deleted, with
/// `deleted_at` and `purge_after`.
async fn delete_property(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = props.delete(&caller, &id).await?;
    Ok(axum::Json(props.view(&p)))
}

async fn restore_property(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = props.restore(&caller, &id).await?;
    Ok(axum::Json(props.view(&p)))
}

async fn get_property(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = props.owned(&caller, &id).await?;
    Ok(axum::Json(props.view(&p)))
}

async fn update_property(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProperty>,
) -> ApiResult<impl IntoResponse> {
    let p = props.update(&caller, &id, body).await?;
    Ok(axum::Json(props.view(&p)))
}

async fn get_click(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
    Path((id, click_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(props.click(&caller, &id, &click_id).await?))
}
