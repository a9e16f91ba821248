//! Properties: the sites a workspace tracks.

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
        })
    }
}

const COLUMNS: &str = "id, workspace_id, name, domains, settings, created_at, updated_at";

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
    })
}

/// A property by id, whatever its workspace (for the public collector and
/// tag routes).
pub async fn get(db: &Db, id: &PropertyId) -> Result<Option<Property>> {
    let row: Option<PropertyRow> = db
        .fetch_optional(
            &format!("SELECT {COLUMNS} FROM properties WHERE id = $1"),
            args![id.as_str()],
        )
        .await?;
    row.map(Property::try_from).transpose()
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

/// Properties of a workspace (`None`: all, for the master key), oldest first.
pub async fn list(db: &Db, workspace_id: Option<i64>) -> Result<Vec<Property>> {
    let rows: Vec<PropertyRow> = match workspace_id {
        Some(w) => {
            db.fetch_all(
                &format!("SELECT {COLUMNS} FROM properties WHERE workspace_id = $1 ORDER BY created_at, id"),
                args![w],
            )
            .await?
        }
        None => db.fetch_all(&format!("SELECT {COLUMNS} FROM properties ORDER BY created_at, id"), args![]).await?,
    };
    rows.into_iter().map(Property::try_from).collect()
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
        "UPDATE properties SET name = $2, domains = $3, settings = $4, updated_at = $5 WHERE id = $1",
        args![id.as_str(), name, domains_json, settings_json, now_ms()],
    )
    .await?;
    Ok(())
}
