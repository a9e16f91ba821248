//! Ad spend, for ROAS: lines of (day, platform, campaign, ad set, ad,
//! currency) with an amount, written by imports. An import upserts on that
//! natural key, so importing the same file twice, or a platform API pull
//! re-reading a trailing window (a later addition: `source = "api"`),
//! replaces figures instead of adding to them.
//!
//! Reports match spend to conversions by name: a spend line's campaign is
//! compared with the sessions' `utm_campaign`, its ad with `utm_content`.

use clicktrail_domain::money::{Amount, Money};
use serde::Serialize;

use crate::bulk::Bulk;
use crate::{Db, Result, args, now_ms};

/// One line to import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpendLine {
    /// UTC day, days since 1970-01-01.
    pub day: i64,
    /// Lower-case platform key (`meta`, `google_ads`, `tiktok`, ...).
    pub platform: String,
    pub campaign: String,
    /// Empty when the line is not split by ad set.
    pub ad_set: String,
    /// Empty when the line is not split by ad.
    pub ad: String,
    /// The amount spent, in the line's currency.
    pub spend: Money,
}

/// Where spend came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendSource {
    Csv,
    Api,
}

impl SpendSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SpendSource::Csv => "csv",
            SpendSource::Api => "api",
        }
    }
}

/// A past import.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct SpendImport {
    pub id: String,
    pub property_id: String,
    pub source: String,
    pub label: String,
    pub rows: i64,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

#[derive(Serialize)]
struct LineRow<'a> {
    property_id: &'a str,
    day: i64,
    platform: &'a str,
    campaign: &'a str,
    ad_set: &'a str,
    ad: &'a str,
    currency: &'a str,
    spend_micros: i64,
    source: &'a str,
    import_id: &'a str,
    updated_at: i64,
}

const LINE_COLS: &[(&str, &str)] = &[
    ("property_id", "text"),
    ("day", "bigint"),
    ("platform", "text"),
    ("campaign", "text"),
    ("ad_set", "text"),
    ("ad", "text"),
    ("currency", "text"),
    ("spend_micros", "bigint"),
    ("source", "text"),
    ("import_id", "text"),
    ("updated_at", "bigint"),
];

/// Writes an import and its lines in one transaction. Lines repeating a
/// natural key within the import are summed first (a file split by hour or
/// placement adds up to the day's figure); against stored lines the import
/// wins. Returns the import.
pub async fn import(
    db: &Db,
    property_id: &str,
    source: SpendSource,
    label: &str,
    created_by: Option<i64>,
    lines: &[SpendLine],
) -> Result<SpendImport> {
    let mut merged: std::collections::BTreeMap<(i64, &str, &str, &str, &str, &str), Amount> =
        std::collections::BTreeMap::new();
    for l in lines {
        let v = merged
            .entry((
                l.day,
                l.platform.as_str(),
                l.campaign.as_str(),
                l.ad_set.as_str(),
                l.ad.as_str(),
                l.spend.currency.as_str(),
            ))
            .or_default();
        *v = v.saturating_add(l.spend.amount);
    }
    let id = format!("imp_{}", clicktrail_domain::ids::random_base36(16));
    let now = now_ms();
    let rows: Vec<LineRow<'_>> = merged
        .iter()
        .map(
            |(&(day, platform, campaign, ad_set, ad, currency), &spend)| LineRow {
                property_id,
                day,
                platform,
                campaign,
                ad_set,
                ad,
                currency,
                spend_micros: spend.micros(),
                source: source.as_str(),
                import_id: &id,
                updated_at: now,
            },
        )
        .collect();
    let n = rows.len() as i64;
    let upsert = Bulk::insert(
        "ad_spend",
        LINE_COLS,
        "ON CONFLICT (property_id, day, platform, campaign, ad_set, ad, currency) DO UPDATE SET \
         spend_micros = excluded.spend_micros, source = excluded.source, import_id = excluded.import_id, \
         updated_at = excluded.updated_at",
    );
    let mut tx = db.begin().await?;
    tx.execute(
        "INSERT INTO spend_imports (id, property_id, source, label, rows, created_by, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        args![
            id.clone(),
            property_id,
            source.as_str(),
            label,
            n,
            created_by,
            now
        ],
    )
    .await?;
    if n > 0 {
        upsert.execute(&mut tx, &rows).await?;
    }
    tx.commit().await?;
    Ok(SpendImport {
        id,
        property_id: property_id.to_owned(),
        source: source.as_str().to_owned(),
        label: label.to_owned(),
        rows: n,
        created_by,
        created_at: now,
    })
}

/// The latest imports of a property, newest first.
pub async fn imports(db: &Db, property_id: &str, limit: i64) -> Result<Vec<SpendImport>> {
    db.fetch_all(
        "SELECT id, property_id, source, label, rows, created_by, created_at FROM spend_imports \
         WHERE property_id = $1 ORDER BY created_at DESC, id LIMIT $2",
        args![property_id, limit],
    )
    .await
}

/// Spend in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct SpendTotal {
    pub currency: String,
    #[serde(rename = "spend_micros", with = "crate::micros")]
    #[sqlx(rename = "spend_micros", try_from = "crate::micros::Micros")]
    pub spend: Amount,
}

/// Spend of one key (campaign or ad) in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct SpendRow {
    pub key: String,
    pub platform: String,
    pub currency: String,
    #[serde(rename = "spend_micros", with = "crate::micros")]
    #[sqlx(rename = "spend_micros", try_from = "crate::micros::Micros")]
    pub spend: Amount,
}

/// Spend of one day in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct SpendPoint {
    pub day: i64,
    pub currency: String,
    #[serde(rename = "spend_micros", with = "crate::micros")]
    #[sqlx(rename = "spend_micros", try_from = "crate::micros::Micros")]
    pub spend: Amount,
}

const SPEND_SUM: &str = "CAST(COALESCE(SUM(spend_micros), 0) AS BIGINT) AS spend_micros";

/// Spend of the days `[from_day, to_day]`, per currency.
pub async fn totals(
    db: &Db,
    property_id: &str,
    from_day: i64,
    to_day: i64,
) -> Result<Vec<SpendTotal>> {
    db.fetch_all(
        &format!(
            "SELECT currency, {SPEND_SUM} FROM ad_spend \
             WHERE property_id = $1 AND day >= $2 AND day <= $3 GROUP BY currency ORDER BY spend_micros DESC, currency"
        ),
        args![property_id, from_day, to_day],
    )
    .await
}

/// Spend per day and currency.
pub async fn series(
    db: &Db,
    property_id: &str,
    from_day: i64,
    to_day: i64,
) -> Result<Vec<SpendPoint>> {
    db.fetch_all(
        &format!(
            "SELECT day, currency, {SPEND_SUM} FROM ad_spend \
             WHERE property_id = $1 AND day >= $2 AND day <= $3 GROUP BY day, currency ORDER BY day, currency"
        ),
        args![property_id, from_day, to_day],
    )
    .await
}

/// Which column a spend breakdown groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpendDim {
    Campaign,
    Ad,
}

/// Spend per campaign (or ad), platform and currency, largest first.
pub async fn breakdown(
    db: &Db,
    property_id: &str,
    dim: SpendDim,
    from_day: i64,
    to_day: i64,
    limit: i64,
) -> Result<Vec<SpendRow>> {
    let col = match dim {
        SpendDim::Campaign => "campaign",
        SpendDim::Ad => "ad",
    };
    db.fetch_all(
        &format!(
            "SELECT {col} AS key, platform, currency, {SPEND_SUM} FROM ad_spend \
             WHERE property_id = $1 AND day >= $2 AND day <= $3 AND {col} <> '' \
             GROUP BY {col}, platform, currency ORDER BY spend_micros DESC, key LIMIT $4"
        ),
        args![property_id, from_day, to_day, limit],
    )
    .await
}
