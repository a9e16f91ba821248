//! Who is calling: the authentication layer. A [`Caller`] is built here and
//! only here, from an API bearer token (the master key, with rights over
//! every workspace, or a workspace's API token) or from a dashboard login
//! session. Services take a `Caller` and scope every lookup by it: a caller
//! only ever sees its own workspace, everything else is "not found".
//!
//! `Caller`'s field is private and it has no public constructor, so no
//! request extension, middleware or handler can forge one.

use std::time::Duration;

use clicktrail_store::users::{self, Role, WebSession};
use clicktrail_store::{Db, StoreError, auth};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// An authenticated caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// `None`: the master key, with rights over every workspace.
    workspace: Option<i64>,
}

impl Caller {
    /// The caller's workspace; `None` for the master key (every workspace).
    pub fn workspace(&self) -> Option<i64> {
        self.workspace
    }

    /// Whether the caller may see something of `workspace_id`.
    pub fn can_see(&self, workspace_id: i64) -> bool {
        self.workspace.is_none_or(|w| w == workspace_id)
    }

    /// Whether this is the master key.
    pub fn is_master(&self) -> bool {
        self.workspace.is_none()
    }
}

/// Whether two secrets are equal, in constant time. Digests are compared,
/// so not even the length of the secret leaks; an empty secret never
/// matches.
pub fn same_secret(a: &str, b: &str) -> bool {
    let (da, db) = (Sha256::digest(a.as_bytes()), Sha256::digest(b.as_bytes()));
    bool::from(da.as_slice().ct_eq(db.as_slice())) && !a.is_empty()
}

/// A dashboard session, with the caller it authenticates.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub caller: Caller,
    pub session: WebSession,
    /// (workspace id, workspace name, role) of every workspace the user
    /// belongs to.
    pub memberships: Vec<(i64, String, Role)>,
}

/// A dashboard session ends after this long without a request.
pub const SESSION_IDLE_MS: i64 = 14 * 24 * 3_600_000;
/// And in any case this long after login.
pub const SESSION_ABSOLUTE_MS: i64 = 30 * 24 * 3_600_000;
/// How often the idle expiry is slid forward (one write per session per
/// period, not per request).
const TOUCH_EVERY_MS: i64 = 3_600_000;

/// The authentication service.
pub struct Auth {
    db: Db,
    master_key: Option<Secret>,
    /// Workspace of API tokens (by hash), briefly cached: every API request
    /// would otherwise read it.
    tokens: moka::future::Cache<String, Option<i64>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("master_key", &self.master_key.is_some())
            .finish_non_exhaustive()
    }
}

impl Auth {
    pub fn new(db: Db, master_key: Option<Secret>) -> Self {
        Self {
            db,
            master_key,
            tokens: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
        }
    }

    /// The caller a bearer token names, if any.
    pub async fn bearer(&self, token: &str) -> Result<Option<Caller>, StoreError> {
        if let Some(master) = &self.master_key
            && master.matches(token)
        {
            return Ok(Some(Caller { workspace: None }));
        }
        if !token.starts_with("ct_") || token.len() > 100 {
            return Ok(None);
        }
        let key = auth::hash_token(token);
        if let Some(hit) = self.tokens.get(&key).await {
            return Ok(hit.map(|w| Caller { workspace: Some(w) }));
        }
        let ws = auth::workspace_of_token(&self.db, token).await?;
        self.tokens.insert(key, ws).await;
        Ok(ws.map(|w| Caller { workspace: Some(w) }))
    }

    /// Forgets cached API tokens (after one is revoked).
    pub fn forget_tokens(&self) {
        self.tokens.invalidate_all();
    }

    /// The dashboard session a session cookie's token names, if it is
    /// current; slides its idle expiry forward now and then.
    pub async fn session(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Option<SessionCaller>, StoreError> {
        if token.is_empty() || token.len() > 128 {
            return Ok(None);
        }
        let Some(session) = users::session(&self.db, token, now).await? else {
            return Ok(None);
        };
        if now - session.last_seen_at > TOUCH_EVERY_MS {
            let expires = (now + SESSION_IDLE_MS).min(session.created_at + SESSION_ABSOLUTE_MS);
            users::touch_session(&self.db, &session.token_hash, now, expires).await?;
        }
        let memberships = users::memberships(&self.db, session.user_id).await?;
        Ok(Some(SessionCaller {
            caller: Caller {
                workspace: Some(session.workspace_id),
            },
            session,
            memberships,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
        assert!(!same_secret("", ""));
    }

    #[test]
    fn the_master_key_sees_everything_a_token_its_workspace() {
        let master = Caller { workspace: None };
        let ws = Caller { workspace: Some(3) };
        assert!(master.can_see(1) && master.can_see(3) && master.is_master());
        assert!(ws.can_see(3) && !ws.can_see(1) && !ws.is_master());
    }
}
