//! API authentication: `Authorization: Bearer <token>`, checked by the
//! engine's [`Auth`] (the master key or a workspace's API token). The
//! token is the only way in: nothing a request carries in its extensions
//! is trusted.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use clicktrail_engine::auth::{Auth, Caller};

use crate::error::ApiError;

/// The authenticated caller of an API route.
#[derive(Debug, Clone, Copy)]
pub struct ApiCaller(pub Caller);

impl<S> FromRequestParts<S> for ApiCaller
where
    Arc<Auth>: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let auth = Arc::<Auth>::from_ref(state);
        auth.bearer(token)
            .await?
            .map(ApiCaller)
            .ok_or_else(ApiError::unauthorized)
    }
}
