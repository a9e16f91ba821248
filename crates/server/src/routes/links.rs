//! Tracked redirect links for direct linking: `POST /api/v1/properties/{id}/links`
//! and `GET /go/{slug}`.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use clicktrail_domain::ids::EntityId;
use clicktrail_store::links;
use serde::Deserialize;
use serde_json::json;

use super::ApiJson;
use super::api::owned_property;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FieldProblem};
use crate::redirect;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/properties/{id}/links", get(list).post(create))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLink {
    slug: String,
    destination_url: String,
    #[serde(default)]
    integration: Option<String>,
}

fn link_json(state: &AppState, l: &links::TrackedLink) -> serde_json::Value {
    json!({
        "id": l.id,
        "slug": l.slug,
        "destination_url": l.destination_url,
        "integration_id": l.integration_id,
        "url": format!("{}/go/{}", state.public_base, l.slug),
        "created_at": l.created_at,
    })
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateLink>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let mut problems = Vec::new();
    let slug = body.slug.trim();
    if slug.is_empty()
        || slug.len() > 64
        || !slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        problems.push(FieldProblem {
            field: "slug".into(),
            code: "invalid_slug".into(),
            message: "1 to 64 characters of letters, digits, - and _".into(),
        });
    }
    match url::Url::parse(&body.destination_url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && body.destination_url.len() <= 4096 => {}
        _ => problems.push(FieldProblem {
            field: "destination_url".into(),
            code: "invalid_url".into(),
            message: "an absolute http(s) URL".into(),
        }),
    }
    if let Some(int) = &body.integration {
        let ok = clicktrail_store::integrations::get(&state.db, int)
            .await?
            .is_some_and(|i| i.property_id == p.id.as_str());
        if !ok {
            problems.push(FieldProblem {
                field: "integration".into(),
                code: "unknown_integration".into(),
                message: "an integration installed on this property".into(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ApiError::validation(problems));
    }
    let l = match links::create(
        &state.db,
        EntityId::generate("lnk").as_str(),
        &p.id,
        slug,
        &body.destination_url,
        body.integration.as_deref(),
    )
    .await
    {
        Ok(l) => l,
        Err(e) if e.is_unique_violation() => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "slug_taken",
                "this slug is already used",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok((StatusCode::CREATED, axum::Json(link_json(&state, &l))))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let items: Vec<_> = links::list(&state.db, &p.id)
        .await?
        .iter()
        .map(|l| link_json(&state, l))
        .collect();
    Ok(axum::Json(json!({ "links": items })))
}

fn not_found_page() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html("<!doctype html><title>Link not found</title><h1>Link not found</h1><p>This tracked link does not exist.</p>"),
    )
        .into_response()
}

/// `GET /go/{slug}`: records a session and a click, then 302 to the offer
/// with the subid set to the click id.
pub async fn go(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(slug): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    match redirect::follow(&state, &slug, query.as_deref(), &headers, peer).await {
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
        Err(e) => e.into_response(),
    }
}
