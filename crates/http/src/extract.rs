//! `Path` and `Query` extractors whose refusals use the API's error shape
//! (axum's answer `text/plain`): a path segment that is not UTF-8 is
//! `invalid_path`, a query string that does not parse (a bad number, an
//! unknown parameter) is `invalid_query`.

use axum::extract::FromRequestParts;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// [`axum::extract::Path`], refusing with `invalid_path`.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rej) => Err(path_rejection(&rej)),
        }
    }
}

/// [`axum::extract::Query`], refusing with `invalid_query`.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rej) => Err(query_rejection(&rej)),
        }
    }
}

fn path_rejection(rej: &PathRejection) -> ApiError {
    match rej {
        PathRejection::FailedToDeserializePathParams(e) => {
            ApiError::bad_request("invalid_path", e.body_text())
        }
        // A handler asking for parameters its route does not have: a bug,
        // not the client's fault.
        other => ApiError::internal(other.body_text()),
    }
}

fn query_rejection(rej: &QueryRejection) -> ApiError {
    match rej {
        QueryRejection::FailedToDeserializeQueryString(e) => {
            ApiError::bad_request("invalid_query", e.body_text())
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", other.body_text()),
    }
}
