//! Calls into the JSON API in-process, as the dashboard user's workspace.
//!
//! Where the API's behaviour lives in its route handlers (destinations:
//! validation, credential encryption, the "needs attention" reset, test
//! sends), the dashboard does not re-implement it: it dispatches a request
//! through the same router with the session's [`Caller`] already attached
//! (the `Caller` extractor takes it from the request's extensions), so the
//! same code runs with the same workspace isolation, and no token is
//! involved.

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tower::ServiceExt;

use super::DashError;
use super::session::Dash;
use crate::auth::Caller;
use crate::state::AppState;

/// Largest API answer read back.
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// One in-process API call: `path` is under `/api/v1` (e.g.
/// `/properties/{id}/destinations`). Returns the status and the JSON body
/// (`Null` when there is none).
pub async fn call(
    state: &AppState,
    dash: &Dash,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<(StatusCode, Value), DashError> {
    let app: Router = Router::new()
        .nest("/api/v1", crate::routes::api::router())
        .with_state(state.clone());
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/api/v1{path}"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(match body {
            Some(v) => Body::from(v.to_string()),
            None => Body::empty(),
        })
        .map_err(DashError::internal)?;
    req.extensions_mut().insert(Caller {
        workspace: Some(dash.workspace_id()),
    });
    let resp = app.oneshot(req).await.map_err(DashError::internal)?;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), MAX_ANSWER)
        .await
        .map_err(DashError::internal)?;
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or(Value::Null)
    };
    if status.is_server_error() {
        return Err(DashError::Internal);
    }
    Ok((status, v))
}

/// The field problems of an API refusal: (field, message) pairs, plus the
/// error's message under `_form` when it names no field.
pub fn problems(v: &Value) -> Vec<(String, String)> {
    let err = &v["error"];
    let mut out: Vec<(String, String)> = err["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap_or("_form").to_owned(),
                        f["message"].as_str().unwrap_or("invalid").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if out.is_empty() {
        out.push((
            "_form".into(),
            err["message"]
                .as_str()
                .unwrap_or("The request was refused.")
                .to_owned(),
        ));
    }
    out
}
