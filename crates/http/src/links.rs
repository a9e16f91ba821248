//! Tracked redirect links for direct linking:
//!
//! - `POST /api/v1/properties/{id}/links` `{slug?, destination_url,
//!   integration?}` (201; an empty or absent slug is generated; 422 with
//!   `error.fields` for a bad slug or URL, 409 `slug_taken`), `GET` lists
//!   them;
//! - `GET /api/v1/links/{id}`, `PATCH /api/v1/links/{id}`
//!   `{destination_url?, paused?}`: change the destination, pause
//!   (`"paused": true`) or resume (`false`); `DELETE /api/v1/links/{id}`
//!   deletes it (its `/go` URL answers 404; its clicks stay);
//! - `GET /go/{property_id}/{slug}` and the short `GET /go/{slug}` of older
//!   links: 302 to the offer. An active link first records a session and a
//!   click and sets the subid to the click id; a **paused** link records
//!   nothing (no session, click or cookie) and still redirects, to its
//!   destination as it is, so a live ad never breaks
//!   (`clicktrail_redirects_total{outcome="paused"}`).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::extract::Path;
use axum::Router;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clicktrail_engine::links::{CreateLink, Links, UpdateLink};
use serde_json::json;

use crate::auth::ApiCaller;
use crate::error::{ApiError, ApiResult};
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new()
        .route("/properties/{id}/links", get(list).post(create))
        .route("/links/{id}", get(show).patch(update).delete(delete))
}

async fn create(
    State(links): State<Arc<Links>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateLink>,
) -> ApiResult<impl IntoResponse> {
    let l = links.create(&caller, &id, body).await?;
    Ok((StatusCode::CREATED, axum::Json(l)))
}

async fn list(
    State(links): State<Arc<Links>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let items = links.list(&caller, &id).await?;
    Ok(axum::Json(json!({ "links": items })))
}

async fn show(
    State(links): State<Arc<Links>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(links.get(&caller, &id).await?))
}

async fn update(
    State(links): State<Arc<Links>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateLink>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(links.update(&caller, &id, body).await?))
}

async fn delete(
    State(links): State<Arc<Links>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    links.delete(&caller, &id).await?;
    Ok(axum::Json(json!({ "id": id, "deleted": true })))
}

fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Link not found</title><h1>Link not found</h1><p>This tracked link does not exist.</p>"),
    )
        .into_response()
}

/// `GET /go/{slug}`: the short URL of links made before slugs were per
/// property (the oldest link of that slug).
pub async fn go(
    State(links): State<Arc<Links>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(slug): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    follow(&links, None, &slug, query.as_deref(), &headers, peer).await
}

/// `GET /go/{property_id}/{slug}`: records a session and a click, then 302
/// to the offer with the subid set to the click id.
pub async fn go_scoped(
    State(links): State<Arc<Links>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path((property, slug)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    follow(
        &links,
        Some(&property),
        &slug,
        query.as_deref(),
        &headers,
        peer,
    )
    .await
}

async fn follow(
    links: &Links,
    property: Option<&str>,
    slug: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    peer: SocketAddr,
) -> Response {
    match links.follow(property, slug, query, headers, peer).await {
        Ok(Some(r)) => {
            let mut resp = StatusCode::FOUND.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&r.location) {
                h.insert(header::LOCATION, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer-when-downgrade"),
            );
            if let Some(c) = r.set_cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
                h.insert(header::SET_COOKIE, c);
            }
            resp
        }
        Ok(None) => not_found_page(),
        Err(e) => ApiError::from(e).into_response(),
    }
}
