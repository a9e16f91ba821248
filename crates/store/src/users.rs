//! Dashboard accounts: users, their workspace memberships and roles, and
//! web sessions. Password hashing happens in the server (argon2); this
//! module stores the PHC string it is given. A web session is stored by the
//! SHA-256 of its token (the token itself only ever exists in the browser's
//! cookie), with the CSRF synchronizer token its forms carry.

use crate::auth::hash_token;
use crate::{Db, Result, StoreError, args, now_ms};

/// A member's role in a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages members and API tokens besides everything a member does.
    Admin,
    /// Uses the dashboard: properties, integrations, destinations, reports.
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "admin" => Some(Role::Admin),
            "member" => Some(Role::Member),
            _ => None,
        }
    }
}

/// A stored user (with the password hash, for verification only).
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub password_hash: String,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

/// A member of a workspace as listed.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: i64,
    pub email: String,
    pub role: Role,
    pub created_at: i64,
    pub last_login_at: Option<i64>,
}

#[derive(serde::Deserialize, sqlx::FromRow)]
struct MemberRow {
    user_id: i64,
    email: String,
    role: String,
    created_at: i64,
    last_login_at: Option<i64>,
}

impl TryFrom<MemberRow> for Member {
    type Error = StoreError;
    fn try_from(r: MemberRow) -> Result<Member> {
        Ok(Member {
            user_id: r.user_id,
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("member role {:?}", r.role)))?,
            email: r.email,
            created_at: r.created_at,
            last_login_at: r.last_login_at,
        })
    }
}

/// Normalises an email address for storage and lookup.
pub fn normalise_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// Number of users: zero means the first-run setup is still open.
pub async fn count_users(db: &Db) -> Result<i64> {
    let (n,): (i64,) = db.fetch_one("SELECT COUNT(*) FROM users", args![]).await?;
    Ok(n)
}

/// Creates the first admin in `workspace_id`, only while there is no user
/// at all (checked in the same transaction, so two concurrent setups cannot
/// both succeed). `Conflict` when a user already exists.
pub async fn create_first_admin(
    db: &Db,
    workspace_id: i64,
    email: &str,
    password_hash: &str,
) -> Result<User> {
    let mut tx = db.begin().await?;
    let (n,): (i64,) = tx.fetch_one("SELECT COUNT(*) FROM users", args![]).await?;
    if n > 0 {
        let _ = tx.rollback().await;
        return Err(StoreError::Conflict("setup is already done".into()));
    }
    let now = now_ms();
    let email = normalise_email(email);
    let (id,): (i64,) = tx
        .fetch_one(
            "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
            args![email.clone(), password_hash, now],
        )
        .await?;
    tx.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4)",
        args![workspace_id, id, Role::Admin.as_str(), now],
    )
    .await?;
    tx.commit().await?;
    Ok(User {
        id,
        email,
        password_hash: password_hash.to_owned(),
        created_at: now,
        last_login_at: None,
    })
}

const USER_COLS: &str = "id, email, password_hash, created_at, last_login_at";

pub async fn user_by_email(db: &Db, email: &str) -> Result<Option<User>> {
    db.fetch_optional(
        &format!("SELECT {USER_COLS} FROM users WHERE email = $1"),
        args![normalise_email(email)],
    )
    .await
}

pub async fn user(db: &Db, id: i64) -> Result<Option<User>> {
    db.fetch_optional(
        &format!("SELECT {USER_COLS} FROM users WHERE id = $1"),
        args![id],
    )
    .await
}

/// Adds a member to a workspace: creates the user with `password_hash` when
/// the email is new, or adds the existing user (whose password is kept).
/// `Conflict` when the user is already a member. Returns the user id and
/// whether the user was created.
pub async fn add_member(
    db: &Db,
    workspace_id: i64,
    email: &str,
    password_hash: &str,
    role: Role,
) -> Result<(i64, bool)> {
    let email = normalise_email(email);
    let now = now_ms();
    let mut tx = db.begin().await?;
    let existing: Option<(i64,)> = tx
        .fetch_optional(
            "SELECT id FROM users WHERE email = $1",
            args![email.clone()],
        )
        .await?;
    let (user_id, created) = match existing {
        Some((id,)) => (id, false),
        None => {
            let (id,): (i64,) = tx
                .fetch_one(
                    "INSERT INTO users (email, password_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
                    args![email, password_hash, now],
                )
                .await?;
            (id, true)
        }
    };
    let n = tx
        .execute(
            "INSERT INTO workspace_members (workspace_id, user_id, role, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (workspace_id, user_id) DO NOTHING",
            args![workspace_id, user_id, role.as_str(), now],
        )
        .await?;
    if n == 0 {
        let _ = tx.rollback().await;
        return Err(StoreError::Conflict("already a member".into()));
    }
    tx.commit().await?;
    Ok((user_id, created))
}

/// Removes a member from a workspace and ends that user's sessions in it.
/// Refuses (`Conflict`) to remove the last admin. False when the user was
/// not a member.
pub async fn remove_member(db: &Db, workspace_id: i64, user_id: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let role: Option<(String,)> = tx
        .fetch_optional(
            "SELECT role FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
            args![workspace_id, user_id],
        )
        .await?;
    let Some((role,)) = role else {
        let _ = tx.rollback().await;
        return Ok(false);
    };
    if role == Role::Admin.as_str() {
        let (admins,): (i64,) = tx
            .fetch_one(
                "SELECT COUNT(*) FROM workspace_members WHERE workspace_id = $1 AND role = 'admin'",
                args![workspace_id],
            )
            .await?;
        if admins <= 1 {
            let _ = tx.rollback().await;
            return Err(StoreError::Conflict(
                "a workspace keeps at least one admin".into(),
            ));
        }
    }
    tx.execute(
        "DELETE FROM workspace_members WHERE workspace_id = $1 AND user_id = $2",
        args![workspace_id, user_id],
    )
    .await?;
    tx.execute(
        "DELETE FROM web_sessions WHERE workspace_id = $1 AND user_id = $2",
        args![workspace_id, user_id],
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn members(db: &Db, workspace_id: i64) -> Result<Vec<Member>> {
    let rows: Vec<MemberRow> = db
        .fetch_all(
            "SELECT m.user_id, u.email, m.role, m.created_at, u.last_login_at \
             FROM workspace_members m JOIN users u ON u.id = m.user_id \
             WHERE m.workspace_id = $1 ORDER BY m.created_at, m.user_id",
            args![workspace_id],
        )
        .await?;
    rows.into_iter().map(Member::try_from).collect()
}

/// The user's workspaces with their role, oldest membership first.
pub async fn memberships(db: &Db, user_id: i64) -> Result<Vec<(i64, String, Role)>> {
    let rows: Vec<(i64, String, String)> = db
        .fetch_all(
            "SELECT w.id, w.name, m.role FROM workspace_members m JOIN workspaces w ON w.id = m.workspace_id \
             WHERE m.user_id = $1 ORDER BY m.created_at, w.id",
            args![user_id],
        )
        .await?;
    rows.into_iter()
        .map(|(id, name, role)| {
            Role::parse(&role)
                .map(|r| (id, name, r))
                .ok_or_else(|| StoreError::Corrupt(format!("member role {role:?}")))
        })
        .collect()
}

pub async fn set_password(db: &Db, user_id: i64, password_hash: &str) -> Result<()> {
    db.execute(
        "UPDATE users SET password_hash = $2 WHERE id = $1",
        args![user_id, password_hash],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Web sessions
// ---------------------------------------------------------------------------

/// A live web session, joined with its user and role.
#[derive(Debug, Clone)]
pub struct WebSession {
    pub token_hash: String,
    pub user_id: i64,
    pub email: String,
    pub workspace_id: i64,
    pub workspace_name: String,
    pub role: Role,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub expires_at: i64,
}

#[derive(serde::Deserialize, sqlx::FromRow)]
struct WebSessionRow {
    token_hash: String,
    user_id: i64,
    email: String,
    workspace_id: i64,
    workspace_name: String,
    role: String,
    csrf_token: String,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
}

/// Starts a session for `user_id` in `workspace_id`; the caller puts
/// `token` in the cookie. Also records the login time.
pub async fn create_session(
    db: &Db,
    token: &str,
    user_id: i64,
    workspace_id: i64,
    csrf_token: &str,
    now: i64,
    ttl_ms: i64,
) -> Result<()> {
    let mut tx = db.begin().await?;
    tx.execute(
        "INSERT INTO web_sessions (token_hash, user_id, workspace_id, csrf_token, created_at, last_seen_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
        args![hash_token(token), user_id, workspace_id, csrf_token, now, now + ttl_ms],
    )
    .await?;
    tx.execute(
        "UPDATE users SET last_login_at = $2 WHERE id = $1",
        args![user_id, now],
    )
    .await?;
    // Housekeeping rides on logins: expired sessions go.
    tx.execute("DELETE FROM web_sessions WHERE expires_at < $1", args![now])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// The unexpired session of a cookie token, if the user is still a member
/// of the session's workspace.
pub async fn session(db: &Db, token: &str, now: i64) -> Result<Option<WebSession>> {
    let row: Option<WebSessionRow> = db
        .fetch_optional(
            "SELECT s.token_hash, s.user_id, u.email, s.workspace_id, w.name AS workspace_name, m.role, \
                    s.csrf_token, s.created_at, s.last_seen_at, s.expires_at \
             FROM web_sessions s \
             JOIN users u ON u.id = s.user_id \
             JOIN workspaces w ON w.id = s.workspace_id \
             JOIN workspace_members m ON m.workspace_id = s.workspace_id AND m.user_id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2",
            args![hash_token(token), now],
        )
        .await?;
    row.map(|r| {
        Ok(WebSession {
            role: Role::parse(&r.role)
                .ok_or_else(|| StoreError::Corrupt(format!("member role {:?}", r.role)))?,
            token_hash: r.token_hash,
            user_id: r.user_id,
            email: r.email,
            workspace_id: r.workspace_id,
            workspace_name: r.workspace_name,
            csrf_token: r.csrf_token,
            created_at: r.created_at,
            last_seen_at: r.last_seen_at,
            expires_at: r.expires_at,
        })
    })
    .transpose()
}

/// Slides a session's expiry (idle timeout) forward.
pub async fn touch_session(db: &Db, token_hash: &str, now: i64, expires_at: i64) -> Result<()> {
    db.execute(
        "UPDATE web_sessions SET last_seen_at = $2, expires_at = $3 WHERE token_hash = $1",
        args![token_hash, now, expires_at],
    )
    .await?;
    Ok(())
}

/// Moves a session to another workspace of its user.
pub async fn switch_workspace(db: &Db, token_hash: &str, workspace_id: i64) -> Result<()> {
    db.execute(
        "UPDATE web_sessions SET workspace_id = $2 WHERE token_hash = $1",
        args![token_hash, workspace_id],
    )
    .await?;
    Ok(())
}

pub async fn delete_session(db: &Db, token_hash: &str) -> Result<()> {
    db.execute(
        "DELETE FROM web_sessions WHERE token_hash = $1",
        args![token_hash],
    )
    .await?;
    Ok(())
}

/// Ends every session of a user (after a password change).
pub async fn delete_user_sessions(db: &Db, user_id: i64) -> Result<u64> {
    db.execute(
        "DELETE FROM web_sessions WHERE user_id = $1",
        args![user_id],
    )
    .await
}
