//! Installed integrations: a catalog entry installed on a property, with
//! its encrypted credentials, settings, event mapping, postback token
//! (kept as a keyed hash to look postbacks up by, and encrypted to show it
//! again) and polling state.
//!
//! A deleted integration stays, marked `deleted_at`, so the conversion log
//! still names it: [`get`], [`by_token_hash`], [`list_for_property`] and
//! [`due_for_poll`] treat it as absent (its postbacks are refused and it is
//! no longer polled); [`get_any`] and [`list_all_for_property`] still see it.

use clicktrail_domain::PropertyId;
use serde::Serialize;

use crate::{Db, Result, args, now_ms};

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct Integration {
    pub id: String,
    pub property_id: String,
    pub catalog_key: String,
    pub name: String,
    pub tracking_group: String,
    pub subid_param: String,
    /// The postback token's keyed hash (what a postback is looked up by);
    /// the clear token on a row not yet sealed (`postback_token_enc` NULL).
    #[serde(skip_serializing)]
    pub postback_token_hash: String,
    /// The postback token, encrypted.
    #[serde(skip_serializing)]
    pub postback_token_enc: Option<String>,
    #[serde(skip_serializing)]
    pub credentials_enc: Option<String>,
    pub settings: String,
    pub event_mapping: String,
    pub status: String,
    pub last_poll_at: Option<i64>,
    pub last_poll_status: Option<String>,
    pub last_error_code: Option<String>,
    pub last_error: Option<String>,
    pub next_poll_at: Option<i64>,
    pub poll_failures: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was deleted; `None` while installed.
    pub deleted_at: Option<i64>,
}

const COLS: &str = "id, property_id, catalog_key, name, tracking_group, subid_param, postback_token_hash, \
    postback_token_enc, credentials_enc, settings, event_mapping, status, last_poll_at, last_poll_status, last_error_code, last_error, \
    next_poll_at, poll_failures, created_at, updated_at, deleted_at";

/// What installing needs.
#[derive(Debug, Clone)]
pub struct NewIntegration<'a> {
    pub id: &'a str,
    pub property_id: &'a str,
    pub catalog_key: &'a str,
    pub name: &'a str,
    pub tracking_group: &'a str,
    pub subid_param: &'a str,
    pub postback_token_hash: &'a str,
    pub postback_token_enc: &'a str,
    pub credentials_enc: Option<String>,
    pub settings: String,
    pub event_mapping: String,
    /// When the first poll is due (API integrations), else `None`.
    pub next_poll_at: Option<i64>,
}

pub async fn create(db: &Db, n: NewIntegration<'_>) -> Result<Integration> {
    let now = now_ms();
    db.execute(
        "INSERT INTO integrations (id, property_id, catalog_key, name, tracking_group, subid_param, postback_token_hash, \
         postback_token_enc, credentials_enc, settings, event_mapping, status, next_poll_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 'active', $12, $13, $13)",
        args![
            n.id,
            n.property_id,
            n.catalog_key,
            n.name,
            n.tracking_group,
            n.subid_param,
            n.postback_token_hash,
            n.postback_token_enc,
            n.credentials_enc,
            n.settings,
            n.event_mapping,
            n.next_poll_at,
            now
        ],
    )
    .await?;
    get(db, n.id)
        .await?
        .ok_or_else(|| crate::StoreError::Corrupt("integration vanished after insert".into()))
}

/// An installed (not deleted) integration.
pub async fn get(db: &Db, id: &str) -> Result<Option<Integration>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM integrations WHERE id = $1 AND deleted_at IS NULL"),
        args![id],
    )
    .await
}

/// An integration, deleted or not (the conversion log names it).
pub async fn get_any(db: &Db, id: &str) -> Result<Option<Integration>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM integrations WHERE id = $1"),
        args![id],
    )
    .await
}

/// The installed integration whose postback token has this keyed hash, on
/// a live property: a deleted integration's or property's postbacks are
/// refused.
pub async fn by_token_hash(db: &Db, hash: &str) -> Result<Option<Integration>> {
    db.fetch_optional(
        &format!(
            "SELECT {COLS} FROM integrations WHERE postback_token_hash = $1 \
             AND postback_token_enc IS NOT NULL AND deleted_at IS NULL \
             AND property_id IN (SELECT id FROM properties WHERE deleted_at IS NULL)"
        ),
        args![hash],
    )
    .await
}

/// Integrations whose postback token is still in clear (written before
/// tokens were sealed): (id, clear token).
pub async fn unsealed_tokens(db: &Db) -> Result<Vec<(String, String)>> {
    #[derive(serde::Deserialize, sqlx::FromRow)]
    struct Row {
        id: String,
        postback_token_hash: String,
    }
    let rows: Vec<Row> = db
        .fetch_all(
            "SELECT id, postback_token_hash FROM integrations WHERE postback_token_enc IS NULL",
            args![],
        )
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.postback_token_hash))
        .collect())
}

/// Replaces a clear token by its hash and ciphertext; a no-op when another
/// process sealed it first.
pub async fn seal_token(db: &Db, id: &str, clear: &str, hash: &str, enc: &str) -> Result<()> {
    db.execute(
        "UPDATE integrations SET postback_token_hash = $3, postback_token_enc = $4 \
         WHERE id = $1 AND postback_token_hash = $2 AND postback_token_enc IS NULL",
        args![id, clear, hash, enc],
    )
    .await?;
    Ok(())
}

/// The integrations installed on a property (not the deleted ones).
pub async fn list_for_property(db: &Db, property: &PropertyId) -> Result<Vec<Integration>> {
    db.fetch_all(
        &format!(
            "SELECT {COLS} FROM integrations WHERE property_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id"
        ),
        args![property.as_str()],
    )
    .await
}

/// A property's integrations, the deleted ones too (to name them in the
/// conversion log).
pub async fn list_all_for_property(db: &Db, property: &PropertyId) -> Result<Vec<Integration>> {
    db.fetch_all(
        &format!("SELECT {COLS} FROM integrations WHERE property_id = $1 ORDER BY created_at, id"),
        args![property.as_str()],
    )
    .await
}

/// Installed integrations of live properties whose scheduled poll is due
/// and not running.
pub async fn due_for_poll(db: &Db, now: i64, limit: i64) -> Result<Vec<Integration>> {
    db.fetch_all(
        &format!(
            "SELECT {COLS} FROM integrations WHERE next_poll_at IS NOT NULL AND next_poll_at <= $1 \
             AND (polling_until IS NULL OR polling_until < $1) AND status <> 'paused' \
             AND deleted_at IS NULL \
             AND property_id IN (SELECT id FROM properties WHERE deleted_at IS NULL) \
             ORDER BY next_poll_at LIMIT $2"
        ),
        args![now, limit],
    )
    .await
}

/// Marks an installed integration deleted at `now`: no more postbacks or
/// polls; its connector snapshots (report rows naming players, kept only
/// to derive the next poll's events) go at once. With `purge_log`, its
/// conversion log is marked to be purged too (see
/// [`crate::retention::purge_integration_log`]). Returns whether it was
/// installed.
pub async fn soft_delete(db: &Db, id: &str, now: i64, purge_log: bool) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "UPDATE integrations SET deleted_at = $2, next_poll_at = NULL, updated_at = $2, \
             log_purge_at = $3 WHERE id = $1 AND deleted_at IS NULL",
            args![id, now, purge_log.then_some(now)],
        )
        .await?;
    if n == 1 {
        tx.execute(
            "DELETE FROM connector_snapshots WHERE integration_id = $1",
            args![id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Asks for a deleted integration's conversion log to be purged (the job
/// finishes it if the caller cannot).
pub async fn request_log_purge(db: &Db, id: &str, now: i64) -> Result<()> {
    db.execute(
        "UPDATE integrations SET log_purge_at = $2 WHERE id = $1 AND deleted_at IS NOT NULL",
        args![id, now],
    )
    .await?;
    Ok(())
}

/// Deleted integrations whose conversion log was asked to be purged and
/// may still hold rows: (integration id, property id).
pub async fn log_purges_pending(db: &Db) -> Result<Vec<(String, String)>> {
    db.fetch_all(
        "SELECT id, property_id FROM integrations WHERE log_purge_at IS NOT NULL \
         ORDER BY log_purge_at, id",
        args![],
    )
    .await
}

/// Records that a deleted integration's log purge is complete.
pub async fn log_purge_done(db: &Db, id: &str) -> Result<()> {
    db.execute(
        "UPDATE integrations SET log_purge_at = NULL WHERE id = $1",
        args![id],
    )
    .await?;
    Ok(())
}

pub async fn update_config(
    db: &Db,
    id: &str,
    name: &str,
    settings: &str,
    event_mapping: &str,
    credentials_enc: Option<String>,
    status: &str,
) -> Result<()> {
    db.execute(
        "UPDATE integrations SET name = $2, settings = $3, event_mapping = $4, \
         credentials_enc = COALESCE($5, credentials_enc), status = $6, updated_at = $7 WHERE id = $1",
        args![id, name, settings, event_mapping, credentials_enc, status, now_ms()],
    )
    .await?;
    Ok(())
}

/// Claims the right to poll for `owner` (a process's instance id): sets a
/// lease unless a live one is held, so two workers (or processes) never
/// poll one integration at once; an expired lease may be taken by anyone.
/// Returns whether this caller won.
pub async fn claim_poll(
    db: &Db,
    id: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE integrations SET polling_until = $3, polling_owner = $4 WHERE id = $1 \
             AND (polling_until IS NULL OR polling_until < $2)",
            args![id, now, lease_until, owner],
        )
        .await?;
    Ok(n == 1)
}

/// Extends `owner`'s claim while its poll runs; false when the claim is
/// no longer its own (it expired and another took it).
pub async fn renew_poll(db: &Db, id: &str, owner: &str, lease_until: i64) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE integrations SET polling_until = $3 WHERE id = $1 AND polling_owner = $2 \
             AND polling_until IS NOT NULL",
            args![id, owner, lease_until],
        )
        .await?;
    Ok(n == 1)
}

/// Releases every claim `owner` holds: a process that starts gives back
/// what it held before it stopped (a crash mid-poll). Returns how many.
pub async fn release_polls_of(db: &Db, owner: &str) -> Result<u64> {
    db.execute(
        "UPDATE integrations SET polling_until = NULL, polling_owner = NULL \
         WHERE polling_owner = $1 AND polling_until IS NOT NULL",
        args![owner],
    )
    .await
}

/// Records the outcome of a poll and schedules the next; releases the
/// claim only if `owner` still holds it (a poll that lost its claim must
/// not free the one who took it over).
#[expect(clippy::too_many_arguments, reason = "one column each")]
pub async fn record_poll(
    db: &Db,
    id: &str,
    owner: &str,
    at: i64,
    status: &str,
    error_code: Option<&str>,
    error: Option<&str>,
    next_poll_at: Option<i64>,
    failures: i64,
) -> Result<()> {
    db.execute(
        "UPDATE integrations SET last_poll_at = $2, last_poll_status = $3, last_error_code = $4, last_error = $5, \
         next_poll_at = $6, poll_failures = $7, \
         polling_until = CASE WHEN polling_owner = $8 THEN NULL ELSE polling_until END, \
         polling_owner = CASE WHEN polling_owner = $8 THEN NULL ELSE polling_owner END, \
         status = CASE WHEN status = 'paused' THEN status WHEN $4 IS NULL THEN 'active' ELSE 'error' END \
         WHERE id = $1",
        args![id, at, status, error_code, error, next_poll_at, failures, owner],
    )
    .await?;
    Ok(())
}

/// A connector's stored snapshots for some row keys.
pub async fn snapshots(
    db: &Db,
    integration: &str,
    keys: &[String],
) -> Result<Vec<(String, String)>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let elems = crate::json_list(db.backend(), 2);
    let keys_json = crate::to_json(keys)?;
    db.fetch_all(
        &format!(
            "SELECT row_key, snapshot FROM connector_snapshots WHERE integration_id = $1 AND row_key IN ({elems})"
        ),
        args![integration, keys_json],
    )
    .await
}

/// Upserts snapshots inside the transaction that records their events.
pub async fn put_snapshots(
    tx: &mut crate::Tx<'_>,
    integration: &str,
    rows: &[(String, String)],
    now: i64,
) -> Result<()> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        integration_id: &'a str,
        row_key: &'a str,
        snapshot: &'a str,
        updated_at: i64,
    }
    static UPSERT: std::sync::LazyLock<crate::bulk::Bulk> = std::sync::LazyLock::new(|| {
        crate::bulk::Bulk::insert(
            "connector_snapshots",
            &[
                ("integration_id", "text"),
                ("row_key", "text"),
                ("snapshot", "text"),
                ("updated_at", "bigint"),
            ],
            "ON CONFLICT (integration_id, row_key) DO UPDATE SET snapshot = excluded.snapshot, \
             updated_at = excluded.updated_at",
        )
    });
    // By key: two transactions upserting overlapping snapshots lock them in
    // one order (no deadlock).
    let mut rows: Vec<&(String, String)> = rows.iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    let rows: Vec<Row<'_>> = rows
        .into_iter()
        .map(|(key, snap)| Row {
            integration_id: integration,
            row_key: key,
            snapshot: snap,
            updated_at: now,
        })
        .collect();
    UPSERT.execute(tx, &rows).await?;
    Ok(())
}
