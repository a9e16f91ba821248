//! The services' one error type: a refusal with a stable snake_case code,
//! a message for people, field problems when several inputs are wrong, and
//! the HTTP status it answers with (the `http` crate's status vocabulary,
//! not a server: the JSON API renders it as
//! `{"error": {"code", "message"}}`, the dashboard as a page). Internal
//! errors are logged once, here, and carry nothing but `internal`.

use http::StatusCode;
use serde::Serialize;

#[derive(Debug)]
pub struct ServiceError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Field errors of a form or settings object, when there are several.
    pub fields: Vec<FieldProblem>,
    pub retry_after: Option<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub code: String,
    pub message: String,
}

impl FieldProblem {
    pub fn new(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

impl ServiceError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API token is required: Authorization: Bearer <token>",
        )
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// One field's problem, as a validation error.
    pub fn field(field: &str, code: &str, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldProblem::new(field, code, message)])
    }

    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u64) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(retry_after);
        e
    }

    pub fn validation(fields: Vec<FieldProblem>) -> Self {
        let message = fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.message))
            .collect::<Vec<_>>()
            .join("; ");
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            message,
        );
        e.fields = fields;
        e
    }

    /// An internal failure: logged here, once, answered opaquely.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl From<clicktrail_store::StoreError> for ServiceError {
    fn from(e: clicktrail_store::StoreError) -> Self {
        ServiceError::internal(e)
    }
}

impl From<clicktrail_domain::property::FieldError> for FieldProblem {
    fn from(e: clicktrail_domain::property::FieldError) -> Self {
        FieldProblem {
            field: e.field,
            code: e.code.to_owned(),
            message: e.message,
        }
    }
}

pub type ServiceResult<T> = Result<T, ServiceError>;
