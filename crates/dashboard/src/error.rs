//! The dashboard's refusals, rendered as small HTML pages. Internal errors
//! are logged once here and shown opaquely.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use crate::ui;

#[derive(Debug)]
pub enum DashError {
    /// Also for another workspace's things: ids cannot be probed.
    NotFound,
    /// Logged in but not allowed (a member on an admin page).
    Forbidden(&'static str),
    /// A POST without a valid CSRF token.
    Csrf,
    BadRequest(String),
    Internal,
}

impl DashError {
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "dashboard: internal error");
        DashError::Internal
    }
}

impl From<clicktrail_store::StoreError> for DashError {
    fn from(e: clicktrail_store::StoreError) -> Self {
        DashError::internal(e)
    }
}

impl From<clicktrail_engine::ServiceError> for DashError {
    fn from(e: clicktrail_engine::ServiceError) -> Self {
        match e.status {
            StatusCode::NOT_FOUND => DashError::NotFound,
            s if s.is_client_error() => DashError::BadRequest(e.message),
            // Already logged by ServiceError::internal.
            _ => DashError::Internal,
        }
    }
}

impl IntoResponse for DashError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            DashError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or it belongs to another workspace.".to_owned(),
            ),
            DashError::Forbidden(why) => (StatusCode::FORBIDDEN, "Not allowed", (*why).to_owned()),
            DashError::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form was not sent from a page of this dashboard, or it is too old. Go back, reload the page and try again."
                    .to_owned(),
            ),
            DashError::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m.clone()),
            DashError::Internal => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server could not complete this request. It was logged; try again in a moment.".to_owned(),
            ),
        };
        let body = html! {
            div.narrow {
                h1 { (title) }
                p { (text) }
                p { a href="/" { "Back to the dashboard" } }
            }
        };
        crate::html(status, ui::bare_page(title, body))
    }
}

pub type DashResult<T = Response> = Result<T, DashError>;
