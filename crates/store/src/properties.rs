//! Properties: the sites a workspace tracks.
//!
//! A deleted property stays, marked `deleted_at`, until `purge_after`: every
//! lookup here but [`get_deleted`] and [`list_deleted`] treats it as absent
//! (the tag, the collector, `/go`, postbacks and the API all find it
//! through these), [`restore`] brings it back, and the retention job
//! purges it afterwards (`crate::retention::purge_property`).

use clicktrail_domain::PropertyId;
use clicktrail_domain::property::PropertySettings;

use crate::{Db, Result, StoreError, args, now_ms};

/// A stored property.
#[derive(Debug, Clone)]
pub struct Property {
    pub id: PropertyId,
    pub workspace_id: i64,
    pub name: String,
    pub domains: Vec<String>,
    pub settings: PropertySettings,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was deleted; `None` for a live property.
    pub deleted_at: Option<i64>,
    /// When a deleted property's data is purged (it can be restored until
    /// then).
    pub purge_after: Option<i64>,
}

#[derive(serde::Deserialize, sqlx::FromRow)]
struct PropertyRow {
    id: String,
    workspace_id: i64,
    name: String,
    domains: String,
    settings: String,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    purge_after: Option<i64>,
}

impl TryFrom<PropertyRow> for Property {
    type Error = StoreError;
    fn try_from(r: PropertyRow) -> Result<Property> {
        Ok(Property {
            id: PropertyId::parse(&r.id)
                .map_err(|e| StoreError::Corrupt(format!("property id: {e}")))?,
            workspace_id: r.workspace_id,
            name: r.name,
            domains: serde_json::from_str(&r.domains)
                .map_err(|e| StoreError::Corrupt(format!("property {} domains: {e}", r.id)))?,
            settings: serde_json::from_str(&r.settings)
                .map_err(|e| StoreError::Corrupt(format!("property {} settings: {e}", r.id)))?,
            created_at: r.created_at,
            updated_at: r.updated_at,
            deleted_at: r.deleted_at,
            purge_after: r.purge_after,
        })
    }
}

const COLUMNS: &str =
    "id, workspace_id, name, domains, settings, created_at, updated_at, deleted_at, purge_after";

pub async fn create(
    db: &Db,
    workspace_id: i64,
    name: &str,
    domains: &[String],
    settings: &PropertySettings,
) -> Result<Property> {
    let id = PropertyId::generate();
    let now = now_ms();
    let domains_json =
        serde_json::to_string(domains).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let settings_json =
        serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    db.execute(
        "INSERT INTO properties (id, workspace_id, name, domains, settings, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        args![id.as_str(), workspace_id, name, domains_json, settings_json, now],
    )
    .await?;
    Ok(Property {
        id,
        workspace_id,
        name: name.to_owned(),
        domains: domains.to_vec(),
        settings: settings.clone(),
        created_at: now,
        updated_at: now,
        deleted_at: None,
        purge_after: None,
    })
}

/// A live property by id, whatever its workspace (for the public collector
/// and tag routes); `None` for a deleted one.
pub async fn get(db: &Db, id: &PropertyId) -> Result<Option<Property>> {
    let row: Option<PropertyRow> = db
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM properties WHERE id = $1 AND deleted_at IS NULL"),
            args![id.as_str()],
        )
        .await?;
    row.map(Property::try_from).transpose()
}

/// A deleted property within a workspace (`None` for a live one, or
/// another workspace's): what can be restored.
pub async fn get_deleted(
    db: &Db,
    workspace_id: Option<i64>,
    id: &PropertyId,
) -> Result<Option<Property>> {
    let row: Option<PropertyRow> = db
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM properties WHERE id = $1 AND deleted_at IS NOT NULL"),
            args![id.as_str()],
        )
        .await?;
    let p = row.map(Property::try_from).transpose()?;
    Ok(p.filter(|p| workspace_id.is_none_or(|w| w == p.workspace_id)))
}

/// A property by id within a workspace (`None` for another workspace's:
/// callers answer 404, never 403, so ids cannot be probed).
pub async fn get_in_workspace(
    db: &Db,
    workspace_id: Option<i64>,
    id: &PropertyId,
) -> Result<Option<Property>> {
    let p = get(db, id).await?;
    Ok(p.filter(|p| workspace_id.is_none_or(|w| w == p.workspace_id)))
}

/// Live properties of a workspace (`None`: all, for the master key),
/// oldest first.
pub async fn list(db: &Db, workspace_id: Option<i64>) -> Result<Vec<Property>> {
    list_where(db, workspace_id, "deleted_at IS NULL", "created_at, id").await
}

/// Deleted properties not purged yet, of a workspace (`None`: all), the
/// next to be purged first.
pub async fn list_deleted(db: &Db, workspace_id: Option<i64>) -> Result<Vec<Property>> {
    list_where(
        db,
        workspace_id,
        "deleted_at IS NOT NULL",
        "purge_after, id",
    )
    .await
}

async fn list_where(
    db: &Db,
    workspace_id: Option<i64>,
    filter: &str,
    order: &str,
) -> Result<Vec<Property>> {
    let rows: Vec<PropertyRow> = match workspace_id {
        Some(w) => {
            db.fetch_all(
                &format!("SELECT {COLUMNS} FROM properties WHERE workspace_id = $1 AND {filter} ORDER BY {order}"),
                args![w],
            )
            .await?
        }
        None => db.fetch_all(&format!("SELECT {COLUMNS} FROM properties WHERE {filter} ORDER BY {order}"), args![]).await?,
    };
    rows.into_iter().map(Property::try_from).collect()
}

/// Every live property, for the retention job.
pub async fn all_live(db: &Db) -> Result<Vec<Property>> {
    list(db, None).await
}

/// Deleted properties whose grace period ended by `now`: to purge.
pub async fn due_for_purge(db: &Db, now: i64) -> Result<Vec<PropertyId>> {
    let rows: Vec<(String,)> = db
        .fetch_all(
            "SELECT id FROM properties WHERE deleted_at IS NOT NULL AND purge_after <= $1 \
             ORDER BY purge_after, id",
            args![now],
        )
        .await?;
    rows.into_iter()
        .map(|(id,)| {
            PropertyId::parse(&id).map_err(|e| StoreError::Corrupt(format!("property id: {e}")))
        })
        .collect()
}

/// Marks a live property deleted at `now`, to be purged at `purge_after`,
/// and parks its deliveries that wait (nothing more is sent for it; a
/// restore makes them due again). Returns whether it was live.
pub async fn soft_delete(db: &Db, id: &PropertyId, now: i64, purge_after: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "UPDATE properties SET deleted_at = $2, purge_after = $3, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NULL",
            args![id.as_str(), now, purge_after],
        )
        .await?;
    if n == 1 {
        tx.execute(
            "UPDATE deliveries SET next_attempt_at = $2, updated_at = $3 \
             WHERE property_id = $1 AND status IN ('pending', 'retrying')",
            args![id.as_str(), crate::deliveries::PARKED_AT, now],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

/// Brings a deleted property back (before it is purged): it answers
/// again, and the waiting deliveries of its active destinations are due.
/// Returns whether it was deleted.
pub async fn restore(db: &Db, id: &PropertyId, now: i64) -> Result<bool> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "UPDATE properties SET deleted_at = NULL, purge_after = NULL, updated_at = $2 \
             WHERE id = $1 AND deleted_at IS NOT NULL",
            args![id.as_str(), now],
        )
        .await?;
    if n == 1 {
        tx.execute(
            "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2 \
             WHERE property_id = $1 AND status IN ('pending', 'retrying') AND next_attempt_at >= $3 \
             AND destination_id IN (SELECT id FROM destinations WHERE property_id = $1 \
                 AND status = 'active' AND deleted_at IS NULL)",
            args![id.as_str(), now, crate::deliveries::PARKED_AT],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(n == 1)
}

pub async fn update(
    db: &Db,
    id: &PropertyId,
    name: &str,
    domains: &[String],
    settings: &PropertySettings,
) -> Result<()> {
    let domains_json =
        serde_json::to_string(domains).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let settings_json =
        serde_json::to_string(settings).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    db.execute(
        "UPDATE properties SET name = $2, domains = $3, settings = $4, updated_at = $5 \
         WHERE id = $1 AND deleted_at IS NULL",
        args![id.as_str(), name, domains_json, settings_json, now_ms()],
    )
    .await?;
    Ok(())
}
