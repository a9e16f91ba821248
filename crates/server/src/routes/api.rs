//! `/api/v1`: the JSON API. Every route needs a bearer token; a caller sees
//! only its own workspace (others' things are 404).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use clicktrail_domain::property::{PropertySettings, normalise_domains};
use clicktrail_domain::{ClickId, PropertyId};
use clicktrail_store::properties::{self, Property};
use clicktrail_store::{auth as store_auth, clicks};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiJson;
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult, FieldProblem};
use crate::state::AppState;
use crate::tagjs;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/properties", get(list_properties).post(create_property))
        .route("/properties/{id}", get(get_property).patch(update_property))
        .route("/properties/{id}/clicks/{click_id}", get(get_click))
        .route("/catalog", get(super::catalog::list))
        .route("/catalog/{key}", get(super::catalog::get))
        .merge(super::integrations::router())
        .merge(super::conversions::router())
        .merge(super::links::router())
        .merge(super::destinations::router())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProperty {
    name: String,
    domains: Vec<String>,
    #[serde(default)]
    settings: Option<PropertySettings>,
    /// Master key only: the workspace to create it in (default `default`).
    #[serde(default)]
    workspace: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProperty {
    name: Option<String>,
    domains: Option<Vec<String>>,
    settings: Option<PropertySettings>,
}

pub fn property_json(state: &AppState, p: &Property) -> Value {
    let tag_url = state.tag_url(&p.id);
    json!({
        "id": p.id,
        "name": p.name,
        "domains": p.domains,
        "settings": p.settings,
        "tag_url": tag_url,
        "snippet": tagjs::snippet(&tag_url),
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

fn check_name(name: &str) -> Result<String, FieldProblem> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(FieldProblem {
            field: "name".into(),
            code: "invalid_name".into(),
            message: "1 to 100 characters".into(),
        });
    }
    Ok(n.to_owned())
}

/// Checks name, domains and settings together, reporting every problem.
fn validate_property(
    name: &str,
    domains: &[String],
    settings: &PropertySettings,
) -> Result<(String, Vec<String>), ApiError> {
    let mut problems = Vec::new();
    let name = check_name(name).map_err(|p| problems.push(p)).ok();
    let domains = normalise_domains(domains)
        .map_err(|e| problems.push(e.into()))
        .ok();
    if let Err(errs) = settings.validate() {
        problems.extend(errs.into_iter().map(FieldProblem::from));
    }
    match (name, domains) {
        (Some(n), Some(d)) if problems.is_empty() => Ok((n, d)),
        _ => Err(ApiError::validation(problems)),
    }
}

async fn create_property(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateProperty>,
) -> ApiResult<impl IntoResponse> {
    let settings = body.settings.unwrap_or_default();
    let (name, domains) = validate_property(&body.name, &body.domains, &settings)?;
    let workspace_id = match (caller.workspace, body.workspace) {
        (Some(_), Some(_)) => {
            return Err(ApiError::forbidden(
                "forbidden",
                "only the master key may choose a workspace",
            ));
        }
        (Some(w), None) => w,
        (None, ws) => {
            store_auth::ensure_workspace(&state.db, ws.as_deref().unwrap_or("default"))
                .await?
                .id
        }
    };
    let p = properties::create(&state.db, workspace_id, &name, &domains, &settings).await?;
    Ok((StatusCode::CREATED, axum::Json(property_json(&state, &p))))
}

async fn list_properties(
    State(state): State<AppState>,
    caller: Caller,
) -> ApiResult<impl IntoResponse> {
    let list = properties::list(&state.db, caller.workspace).await?;
    let items: Vec<Value> = list.iter().map(|p| property_json(&state, p)).collect();
    Ok(axum::Json(json!({ "properties": items })))
}

/// The caller's property or 404 (also for another workspace's).
pub async fn owned_property(state: &AppState, caller: &Caller, id: &str) -> ApiResult<Property> {
    let id = PropertyId::parse(id).map_err(|_| ApiError::not_found("property"))?;
    properties::get_in_workspace(&state.db, caller.workspace, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("property"))
}

async fn get_property(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    Ok(axum::Json(property_json(&state, &p)))
}

async fn update_property(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateProperty>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let settings = body.settings.unwrap_or(p.settings.clone());
    let (name, domains) = validate_property(
        body.name.as_deref().unwrap_or(&p.name),
        body.domains.as_deref().unwrap_or(&p.domains),
        &settings,
    )?;
    properties::update(&state.db, &p.id, &name, &domains, &settings).await?;
    state.forget_property(&p.id).await;
    let p = owned_property(&state, &caller, &id).await?;
    Ok(axum::Json(property_json(&state, &p)))
}

async fn get_click(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, click_id)): Path<(String, String)>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let click_id = ClickId::parse(&click_id).map_err(|_| ApiError::not_found("click"))?;
    let click = clicks::resolve(&state.db, &p.id, &click_id)
        .await?
        .ok_or_else(|| ApiError::not_found("click"))?;
    let session = clicks::get_session(&state.db, click.session_id).await?;
    let traffic = session.as_ref().map(traffic_source_json);
    Ok(axum::Json(json!({
        "click": click,
        "session": session,
        "traffic_source": traffic,
    })))
}

/// The traffic-source view of a session, as the API and the conversion log
/// show attribution.
pub fn traffic_source_json(s: &clicks::Session) -> Value {
    let click_ids: Value = s
        .click_ids
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(json!({}));
    json!({
        "channel": s.channel,
        "source": s.source,
        "medium": s.medium,
        "campaign": s.utm_campaign,
        "term": s.utm_term,
        "content": s.utm_content,
        "utm_id": s.utm_id,
        "referrer": s.referrer,
        "landing_page": s.landing_page,
        "landing_url": s.landing_url,
        "click_ids": click_ids,
        "fbc": s.fbc,
        "fbp": s.fbp,
        "ttp": s.ttp,
        "device": s.device,
        "browser": s.browser,
        "os": s.os,
        "is_bot": s.is_bot,
    })
}
