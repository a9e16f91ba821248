//! Workspaces and API tokens. A token is shown once at creation; only its
//! SHA-256 is stored (tokens are 192-bit random, so a fast hash is enough:
//! there is nothing to brute-force).

use sha2::{Digest, Sha256};

use crate::{Db, Result, args, now_ms};

#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct Workspace {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

/// The workspace named `name`, created if missing.
pub async fn ensure_workspace(db: &Db, name: &str) -> Result<Workspace> {
    db.execute(
        "INSERT INTO workspaces (name, created_at) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        args![name, now_ms()],
    )
    .await?;
    // Read through the writer's view: on SQLite the read pool sees the
    // commit as soon as it is done.
    db.fetch_one(
        "SELECT id, name, created_at FROM workspaces WHERE name = $1",
        args![name],
    )
    .await
}

pub async fn workspace(db: &Db, id: i64) -> Result<Option<Workspace>> {
    db.fetch_optional(
        "SELECT id, name, created_at FROM workspaces WHERE id = $1",
        args![id],
    )
    .await
}

pub async fn workspaces(db: &Db) -> Result<Vec<Workspace>> {
    db.fetch_all(
        "SELECT id, name, created_at FROM workspaces ORDER BY id",
        args![],
    )
    .await
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// An API token as listed (never the token itself).
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct TokenInfo {
    pub id: i64,
    pub workspace_id: i64,
    pub name: String,
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Creates a token; returns it in clear, the only time it exists so.
pub async fn create_token(db: &Db, workspace_id: i64, name: &str) -> Result<(TokenInfo, String)> {
    let token = format!("ct_{}", clicktrail_domain::ids::random_token(32));
    let prefix: String = token.chars().take(7).collect();
    let now = now_ms();
    let id: (i64,) = {
        let mut tx = db.begin().await?;
        let id = tx
            .fetch_one(
                "INSERT INTO api_tokens (workspace_id, name, token_hash, prefix, created_at) \
                 VALUES ($1, $2, $3, $4, $5) RETURNING id",
                args![workspace_id, name, hash_token(&token), prefix.clone(), now],
            )
            .await?;
        tx.commit().await?;
        id
    };
    Ok((
        TokenInfo {
            id: id.0,
            workspace_id,
            name: name.to_owned(),
            prefix,
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        },
        token,
    ))
}

/// The workspace of a valid (unrevoked) token.
pub async fn workspace_of_token(db: &Db, token: &str) -> Result<Option<i64>> {
    let row: Option<(i64,)> = db
        .fetch_optional(
            "SELECT workspace_id FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL",
            args![hash_token(token)],
        )
        .await?;
    Ok(row.map(|r| r.0))
}

pub async fn list_tokens(db: &Db, workspace_id: i64) -> Result<Vec<TokenInfo>> {
    db.fetch_all(
        "SELECT id, workspace_id, name, prefix, created_at, last_used_at, revoked_at FROM api_tokens \
         WHERE workspace_id = $1 ORDER BY id",
        args![workspace_id],
    )
    .await
}

/// Revokes a token of the workspace; false when there is no such token.
pub async fn revoke_token(db: &Db, workspace_id: i64, id: i64) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE api_tokens SET revoked_at = $3 WHERE id = $1 AND workspace_id = $2 AND revoked_at IS NULL",
            args![id, workspace_id, now_ms()],
        )
        .await?;
    Ok(n > 0)
}
