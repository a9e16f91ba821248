//! Tracked redirect links (`/go/{property_id}/{slug}`) for direct linking.

use clicktrail_domain::PropertyId;
use serde::Serialize;

use crate::{Db, Result, args, now_ms};

#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct TrackedLink {
    pub id: String,
    pub property_id: String,
    pub slug: String,
    pub destination_url: String,
    pub integration_id: Option<String>,
    pub created_at: i64,
}

const COLS: &str = "id, property_id, slug, destination_url, integration_id, created_at";

pub async fn create(
    db: &Db,
    id: &str,
    property: &PropertyId,
    slug: &str,
    destination_url: &str,
    integration_id: Option<&str>,
) -> Result<TrackedLink> {
    let now = now_ms();
    db.execute(
        "INSERT INTO links (id, property_id, slug, destination_url, integration_id, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        args![
            id,
            property.as_str(),
            slug,
            destination_url,
            integration_id,
            now
        ],
    )
    .await?;
    Ok(TrackedLink {
        id: id.to_owned(),
        property_id: property.as_str().to_owned(),
        slug: slug.to_owned(),
        destination_url: destination_url.to_owned(),
        integration_id: integration_id.map(str::to_owned),
        created_at: now,
    })
}

/// A property's link by its slug (`/go/{property_id}/{slug}`).
pub async fn by_property_slug(db: &Db, property: &str, slug: &str) -> Result<Option<TrackedLink>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM links WHERE property_id = $1 AND slug = $2"),
        args![property, slug],
    )
    .await
}

/// The link a property-less `/go/{slug}` means: the oldest of that slug.
/// Slugs were unique across the server until they became per property,
/// so a link made before keeps its short URL whatever others make later.
pub async fn by_slug(db: &Db, slug: &str) -> Result<Option<TrackedLink>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM links WHERE slug = $1 ORDER BY created_at, id LIMIT 1"),
        args![slug],
    )
    .await
}

pub async fn list(db: &Db, property: &PropertyId) -> Result<Vec<TrackedLink>> {
    db.fetch_all(
        &format!("SELECT {COLS} FROM links WHERE property_id = $1 ORDER BY created_at, id"),
        args![property.as_str()],
    )
    .await
}

/// A link by id.
pub async fn get(db: &Db, id: &str) -> Result<Option<TrackedLink>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM links WHERE id = $1"),
        args![id],
    )
    .await
}

/// Deletes a link (its `/go` URL answers 404 from then on; the visits and
/// clicks it recorded stay). Returns whether it existed.
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    Ok(db
        .execute("DELETE FROM links WHERE id = $1", args![id])
        .await?
        == 1)
}
