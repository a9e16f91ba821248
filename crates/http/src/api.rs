//! `/api/v1`: the JSON API. Every route needs a bearer token; a caller sees
//! only its own workspace (others' things are 404).

use std::sync::Arc;

use crate::extract::Path;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use clicktrail_engine::properties::{CreateProperty, Properties, UpdateProperty};
use serde_json::json;

use crate::auth::ApiCaller;
use crate::error::ApiResult;
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/properties", get(list_properties).post(create_property))
        .route("/properties/{id}", get(get_property).patch(update_property))
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

async fn list_properties(
    State(props): State<Arc<Properties>>,
    ApiCaller(caller): ApiCaller,
) -> ApiResult<impl IntoResponse> {
    let items: Vec<_> = props
        .list(&caller)
        .await?
        .iter()
        .map(|p| props.view(p))
        .collect();
    Ok(axum::Json(json!({ "properties": items })))
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
