//! The link checker over the API:
//!
//! - `POST /api/v1/properties/{id}/check-links` `{url}`: fetches the page
//!   (on the property's domains) and answers, for each of its
//!   redirect-plugin links (`/go/`, `/out/`, `/recommends/`, ...), whether
//!   the click id the tag adds reaches the affiliate network
//!   (`clicktrail_engine::link_checker`). 422 with `error.fields` for a
//!   URL that is not a page of the property or could not be fetched, 429
//!   `rate_limited` once the property's outbound budget for the minute is
//!   spent.

use std::sync::Arc;

use crate::extract::Path;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::post;
use clicktrail_engine::link_checker::LinkChecker;
use serde::Deserialize;

use crate::auth::ApiCaller;
use crate::error::ApiResult;
use crate::{ApiJson, HttpState};

pub fn router() -> Router<HttpState> {
    Router::new().route("/properties/{id}/check-links", post(check))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckLinks {
    url: String,
}

async fn check(
    State(checker): State<Arc<LinkChecker>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CheckLinks>,
) -> ApiResult<impl IntoResponse> {
    Ok(axum::Json(checker.check(&caller, &id, &body.url).await?))
}
