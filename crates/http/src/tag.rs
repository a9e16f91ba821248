//! The tag (`GET /t/{property_id}.js`), its extension, and AutoScan
//! (`GET /t/{property_id}/scan`).

use std::sync::Arc;

use crate::extract::Path;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_domain::PropertyId;
use clicktrail_engine::autoscan::AutoScan;
use clicktrail_engine::collector::origin_host;
use clicktrail_engine::properties::Properties;
use clicktrail_engine::tag as tagjs;
use serde_json::json;

use crate::error::ApiError;

const JS: &str = "application/javascript; charset=utf-8";

fn js_comment(status: StatusCode, text: &str) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, JS),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("/* clicktrail: {text} */\n"),
    )
        .into_response()
}

/// `GET /t/{file}` where file is `<property id>.js`.
pub async fn tag(
    State(props): State<Arc<Properties>>,
    Path(file): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(id) = file
        .strip_suffix(".js")
        .and_then(|id| PropertyId::parse(id).ok())
    else {
        return js_comment(StatusCode::NOT_FOUND, "unknown property");
    };
    let property = match props.get(&id).await {
        Ok(Some(p)) => p,
        Ok(None) => return js_comment(StatusCode::NOT_FOUND, "unknown property"),
        Err(e) => {
            tracing::error!(error = %e, "serving the tag");
            return js_comment(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
    };
    let served = match props.served_tag(&property).await {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "serving the tag");
            return js_comment(StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable");
        }
    };
    let etag = HeaderValue::from_str(&served.etag).unwrap_or(HeaderValue::from_static("\"0\""));
    // Short max-age: a changed configuration (a new integration) reaches
    // visitors within minutes; the ETag makes revalidation cheap.
    let cache = HeaderValue::from_static("public, max-age=300");
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == served.etag.as_bytes())
    {
        return (
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response();
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(JS)),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
        ],
        served.body.clone(),
    )
        .into_response()
}

/// `GET /t/ext/{hash}.js`: the on-demand extension; its URL names its
/// content, so it is cached for a year.
pub async fn ext(Path(file): Path<String>) -> Response {
    if file.strip_suffix(".js") != Some(tagjs::ext_hash()) {
        return js_comment(StatusCode::NOT_FOUND, "unknown extension build");
    }
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, JS),
            (header::CACHE_CONTROL, "public, max-age=31536000, immutable"),
            // Loaded with import(), i.e. in CORS mode, from the sites' origins.
            (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
        ],
        tagjs::EXT_JS,
    )
        .into_response()
}

/// `GET /t/{id}/scan?u=...&u=...`
pub async fn scan(
    State(autoscan): State<Arc<AutoScan>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let links: Vec<String> = url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "u")
        .map(|(_, v)| v.into_owned())
        .collect();
    let origin = origin_host(&headers);
    match autoscan.scan(&id, origin.as_deref(), links).await {
        Ok(results) => {
            let mut resp = axum::Json(json!({ "results": results })).into_response();
            if let Some(o) = headers.get(header::ORIGIN) {
                resp.headers_mut()
                    .insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o.clone());
                resp.headers_mut()
                    .insert(header::VARY, HeaderValue::from_static("Origin"));
            }
            resp
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
