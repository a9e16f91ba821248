//! Who is calling the API. `Authorization: Bearer <token>` with either the
//! master key (every workspace) or a workspace's API token. A caller only
//! ever sees its own workspace: everything else is "not found".

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use clicktrail_store::auth;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// `None`: the master key, with rights over every workspace.
    pub workspace: Option<i64>,
}

impl Caller {
    /// Whether the caller may see something of `workspace_id`.
    pub fn can_see(&self, workspace_id: i64) -> bool {
        self.workspace.is_none_or(|w| w == workspace_id)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    // Compare digests so the length of the secret does not leak either.
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub async fn caller_from_token(state: &AppState, token: &str) -> Result<Option<Caller>, ApiError> {
    if let Some(master) = &state.cfg.master_key
        && constant_time_eq(token.as_bytes(), master.expose().as_bytes())
    {
        return Ok(Some(Caller { workspace: None }));
    }
    if !token.starts_with("ct_") || token.len() > 100 {
        return Ok(None);
    }
    let key = auth::hash_token(token);
    if let Some(hit) = state.token_cache.get(&key).await {
        return Ok(hit.map(|w| Caller { workspace: Some(w) }));
    }
    let ws = auth::workspace_of_token(&state.db, token).await?;
    state.token_cache.insert(key, ws).await;
    Ok(ws.map(|w| Caller { workspace: Some(w) }))
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<Caller>() {
            return Ok(*c);
        }
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
        caller_from_token(state, token)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}
