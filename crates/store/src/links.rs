//! Tracked redirect links (`/go/{property_id}/{slug}`) for direct linking,
//! and what their clicks led to.

use clicktrail_domain::money::Amount;
use std::collections::HashMap;

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
    /// When the link was paused; `None` while it is active.
    pub paused_at: Option<i64>,
}

const COLS: &str = "id, property_id, slug, destination_url, integration_id, created_at, paused_at";

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
        paused_at: None,
    })
}

/// A link by its id.
pub async fn get(db: &Db, id: &str) -> Result<Option<TrackedLink>> {
    db.fetch_optional(
        &format!("SELECT {COLS} FROM links WHERE id = $1"),
        args![id],
    )
    .await
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

/// Changes a link's destination and / or pauses or resumes it (a paused
/// link keeps the time it was first paused). Returns the link as stored
/// after the change; `None` if there is no such link.
pub async fn update(
    db: &Db,
    id: &str,
    destination_url: Option<&str>,
    paused: Option<bool>,
) -> Result<Option<TrackedLink>> {
    let now = now_ms();
    let pause = paused.map(i64::from);
    db.execute(
        "UPDATE links SET destination_url = COALESCE($2, destination_url), \
         paused_at = CASE WHEN $3 = 1 THEN COALESCE(paused_at, $4) WHEN $3 = 0 THEN NULL ELSE paused_at END \
         WHERE id = $1",
        args![id, destination_url, pause, now],
    )
    .await?;
    get(db, id).await
}

/// What a link's clicks led to, in one currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkRevenue {
    pub currency: String,
    /// Validated conversions attributed to the link's clicks, less those
    /// reversed in full.
    pub conversions: i64,
    /// Their value after adjustments.
    pub revenue: Amount,
}

/// A link's clicks and what they led to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    pub clicks: i64,
    /// Clicks at or after the `since` asked for.
    pub recent_clicks: i64,
    /// Per currency, most conversions first.
    pub revenue: Vec<LinkRevenue>,
}

/// Clicks of `/go` links (all time, and since `since_ms`) and the
/// conversions attributed to those clicks, per link of a property (only
/// `link` when given), in one grouped statement whatever the number of
/// links: the clicks through `clicks_link`, the conversions through their
/// click (a conversion's `click_id` is the click it was attributed to).
///
/// A conversion counts while it is `validated` and reversals have not
/// taken its whole value; its revenue is its value after adjustments. Bot
/// traffic is included (a link's clicks are all the clicks it answered).
pub async fn stats(
    db: &Db,
    property: &PropertyId,
    since_ms: i64,
    link: Option<&str>,
) -> Result<HashMap<String, LinkStats>> {
    let (click_filter, conversion_filter) = match link {
        Some(_) => (" AND link_id = $3", " AND k.link_id = $3"),
        None => ("", ""),
    };
    let sql = format!(
        "SELECT link_id, CAST(NULL AS TEXT) AS currency, CAST(COUNT(*) AS BIGINT) AS clicks, \
         CAST(SUM(CASE WHEN ts >= $2 THEN 1 ELSE 0 END) AS BIGINT) AS recent, \
         CAST(0 AS BIGINT) AS conversions, CAST(0 AS BIGINT) AS revenue \
         FROM clicks WHERE property_id = $1 AND link_id IS NOT NULL{click_filter} GROUP BY link_id \
         UNION ALL \
         SELECT k.link_id, COALESCE(v.currency, 'XXX'), CAST(0 AS BIGINT), CAST(0 AS BIGINT), \
         CAST(SUM(CASE WHEN v.adjusted_micros < 0 AND COALESCE(v.value_micros, 0) + v.adjusted_micros <= 0 \
                  THEN 0 ELSE 1 END) AS BIGINT), \
         CAST(SUM(COALESCE(v.value_micros, 0) + v.adjusted_micros) AS BIGINT) \
         FROM conversions v JOIN clicks k ON k.property_id = v.property_id AND k.click_id = v.click_id \
         WHERE v.property_id = $1 AND v.status = 'validated' AND k.link_id IS NOT NULL{conversion_filter} \
         GROUP BY k.link_id, COALESCE(v.currency, 'XXX')"
    );
    let mut params = args![property.as_str(), since_ms];
    if let Some(l) = link {
        params.push(l.into());
    }
    let rows: Vec<(String, Option<String>, i64, i64, i64, i64)> =
        db.fetch_all(&sql, params).await?;
    let mut out: HashMap<String, LinkStats> = HashMap::new();
    for (link_id, currency, clicks, recent, conversions, revenue_micros) in rows {
        let s = out.entry(link_id).or_default();
        match currency {
            None => {
                s.clicks += clicks;
                s.recent_clicks += recent;
            }
            Some(currency) => s.revenue.push(LinkRevenue {
                currency,
                conversions,
                revenue: Amount::from_micros(revenue_micros),
            }),
        }
    }
    for s in out.values_mut() {
        s.revenue.sort_by(|a, b| {
            b.conversions
                .cmp(&a.conversions)
                .then_with(|| a.currency.cmp(&b.currency))
        });
    }
    Ok(out)
}

/// Deletes a link (its `/go` URL answers 404 from then on; the visits and
/// clicks it recorded stay). Returns whether it existed.
pub async fn delete(db: &Db, id: &str) -> Result<bool> {
    Ok(db
        .execute("DELETE FROM links WHERE id = $1", args![id])
        .await?
        == 1)
}
