//! Report queries for the dashboard, read only from the hourly rollups
//! (`rollup_hourly` for traffic, `rollup_conversions_hourly` for
//! conversions and revenue) and never from `events`, so a report costs the
//! same whether a property has a thousand events or a billion: its size is
//! hours × keys of the range.
//!
//! Ranges are half-open `[from_hour, to_hour)` in hours since the Unix
//! epoch (UTC). Revenue is kept per currency: nothing here converts.

use clicktrail_domain::money::Amount;

use crate::{Db, Result, args};

/// Hours since the epoch, `[from_hour, to_hour)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    pub from_hour: i64,
    pub to_hour: i64,
}

impl HourRange {
    /// The UTC days `[from_day, to_day]` (inclusive), days since the epoch.
    pub fn days(from_day: i64, to_day_inclusive: i64) -> Self {
        Self {
            from_hour: from_day * 24,
            to_hour: (to_day_inclusive + 1) * 24,
        }
    }
}

/// Attribution model of the conversion rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    LastClick,
    FirstClick,
}

impl Model {
    /// The `model` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Model::LastClick => "last",
            Model::FirstClick => "first",
        }
    }

    pub fn parse(s: &str) -> Option<Model> {
        match s {
            "last" => Some(Model::LastClick),
            "first" => Some(Model::FirstClick),
            _ => None,
        }
    }
}

/// A breakdown dimension of the rollups.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Channel,
    SourceMedium,
    Campaign,
    /// `utm_content` (ad ids ride there by convention).
    Ad,
    LandingPage,
    /// The tracking group of clicked links.
    Integration,
    /// The host of clicked links.
    Offer,
}

impl Dim {
    pub const ALL: [Dim; 7] = [
        Dim::Channel,
        Dim::SourceMedium,
        Dim::Campaign,
        Dim::Ad,
        Dim::LandingPage,
        Dim::Integration,
        Dim::Offer,
    ];

    /// The `dim` column's value.
    pub fn as_str(self) -> &'static str {
        match self {
            Dim::Channel => "channel",
            Dim::SourceMedium => "source_medium",
            Dim::Campaign => "campaign",
            Dim::Ad => "ad",
            Dim::LandingPage => "landing_page",
            Dim::Integration => "integration",
            Dim::Offer => "offer",
        }
    }

    pub fn parse(s: &str) -> Option<Dim> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            Dim::Channel => "Channel",
            Dim::SourceMedium => "Source / medium",
            Dim::Campaign => "Campaign",
            Dim::Ad => "Ad",
            Dim::LandingPage => "Landing page",
            Dim::Integration => "Integration",
            Dim::Offer => "Offer",
        }
    }

    /// Whether visits are counted under this dimension (traffic source
    /// dimensions); `integration` and `offer` only count clicks, since they
    /// describe the clicked link, not the visit.
    pub fn has_visits(self) -> bool {
        !matches!(self, Dim::Integration | Dim::Offer)
    }
}

/// Traffic counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct Traffic {
    pub visits: i64,
    pub pageviews: i64,
    pub clicks: i64,
}

/// Traffic of one breakdown key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct TrafficRow {
    pub key: String,
    pub visits: i64,
    pub pageviews: i64,
    pub clicks: i64,
}

/// Traffic of one time bucket (`bucket` = first hour of the bucket).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct TrafficPoint {
    pub bucket: i64,
    pub visits: i64,
    pub pageviews: i64,
    pub clicks: i64,
}

/// Conversions and revenue in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct Revenue {
    pub currency: String,
    pub conversions: i64,
    #[serde(rename = "revenue_micros", with = "crate::micros")]
    #[sqlx(rename = "revenue_micros", try_from = "crate::micros::Micros")]
    pub revenue: Amount,
}

/// Conversions and revenue of one breakdown key in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct RevenueRow {
    pub key: String,
    pub currency: String,
    pub conversions: i64,
    #[serde(rename = "revenue_micros", with = "crate::micros")]
    #[sqlx(rename = "revenue_micros", try_from = "crate::micros::Micros")]
    pub revenue: Amount,
}

/// Conversions and revenue of one time bucket in one currency.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, sqlx::FromRow)]
pub struct RevenuePoint {
    pub bucket: i64,
    pub currency: String,
    pub conversions: i64,
    #[serde(rename = "revenue_micros", with = "crate::micros")]
    #[sqlx(rename = "revenue_micros", try_from = "crate::micros::Micros")]
    pub revenue: Amount,
}

// `SUM` of a BIGINT is NUMERIC on PostgreSQL; cast back so both backends
// return integers.
const TRAFFIC_SUMS: &str = "CAST(COALESCE(SUM(visits), 0) AS BIGINT) AS visits, \
     CAST(COALESCE(SUM(pageviews), 0) AS BIGINT) AS pageviews, \
     CAST(COALESCE(SUM(clicks), 0) AS BIGINT) AS clicks";
const REVENUE_SUMS: &str = "CAST(COALESCE(SUM(conversions), 0) AS BIGINT) AS conversions, \
     CAST(COALESCE(SUM(revenue_micros), 0) AS BIGINT) AS revenue_micros";

/// Totals of the range.
pub async fn traffic_totals(
    db: &Db,
    property_id: &str,
    range: HourRange,
    include_bots: bool,
) -> Result<Traffic> {
    db.fetch_one(
        &format!(
            "SELECT {TRAFFIC_SUMS} FROM rollup_hourly \
             WHERE property_id = $1 AND dim = 'total' AND hour >= $2 AND hour < $3 AND (NOT is_bot OR $4)"
        ),
        args![property_id, range.from_hour, range.to_hour, include_bots],
    )
    .await
}

/// Traffic per bucket of `bucket_hours` (24: days), oldest first; buckets
/// without traffic are absent.
pub async fn traffic_series(
    db: &Db,
    property_id: &str,
    range: HourRange,
    bucket_hours: i64,
    include_bots: bool,
) -> Result<Vec<TrafficPoint>> {
    db.fetch_all(
        &format!(
            "SELECT (hour / $5) * $5 AS bucket, {TRAFFIC_SUMS} FROM rollup_hourly \
             WHERE property_id = $1 AND dim = 'total' AND hour >= $2 AND hour < $3 AND (NOT is_bot OR $4) \
             GROUP BY (hour / $5) * $5 ORDER BY bucket"
        ),
        args![
            property_id,
            range.from_hour,
            range.to_hour,
            include_bots,
            bucket_hours.max(1)
        ],
    )
    .await
}

/// The top `limit` keys of a dimension by visits (by clicks for the link
/// dimensions), then key.
pub async fn traffic_breakdown(
    db: &Db,
    property_id: &str,
    dim: Dim,
    range: HourRange,
    include_bots: bool,
    limit: i64,
) -> Result<Vec<TrafficRow>> {
    let order = if dim.has_visits() {
        "visits DESC, clicks DESC"
    } else {
        "clicks DESC"
    };
    db.fetch_all(
        &format!(
            "SELECT key, {TRAFFIC_SUMS} FROM rollup_hourly \
             WHERE property_id = $1 AND dim = $2 AND hour >= $3 AND hour < $4 AND (NOT is_bot OR $5) \
             GROUP BY key ORDER BY {order}, key LIMIT $6"
        ),
        args![
            property_id,
            dim.as_str(),
            range.from_hour,
            range.to_hour,
            include_bots,
            limit
        ],
    )
    .await
}

/// Conversions and revenue of the range, per currency (most conversions
/// first).
pub async fn revenue_totals(
    db: &Db,
    property_id: &str,
    model: Model,
    range: HourRange,
    include_bots: bool,
) -> Result<Vec<Revenue>> {
    db.fetch_all(
        &format!(
            "SELECT currency, {REVENUE_SUMS} FROM rollup_conversions_hourly \
             WHERE property_id = $1 AND model = $2 AND dim = 'total' AND hour >= $3 AND hour < $4 \
               AND (NOT is_bot OR $5) \
             GROUP BY currency ORDER BY conversions DESC, currency"
        ),
        args![
            property_id,
            model.as_str(),
            range.from_hour,
            range.to_hour,
            include_bots
        ],
    )
    .await
}

/// Conversions and revenue per bucket and currency, oldest first.
pub async fn revenue_series(
    db: &Db,
    property_id: &str,
    model: Model,
    range: HourRange,
    bucket_hours: i64,
    include_bots: bool,
) -> Result<Vec<RevenuePoint>> {
    db.fetch_all(
        &format!(
            "SELECT (hour / $6) * $6 AS bucket, currency, {REVENUE_SUMS} FROM rollup_conversions_hourly \
             WHERE property_id = $1 AND model = $2 AND dim = 'total' AND hour >= $3 AND hour < $4 \
               AND (NOT is_bot OR $5) \
             GROUP BY (hour / $6) * $6, currency ORDER BY bucket, currency"
        ),
        args![
            property_id,
            model.as_str(),
            range.from_hour,
            range.to_hour,
            include_bots,
            bucket_hours.max(1)
        ],
    )
    .await
}

/// The top `limit` (key, currency) pairs of a dimension by conversions.
pub async fn revenue_breakdown(
    db: &Db,
    property_id: &str,
    model: Model,
    dim: Dim,
    range: HourRange,
    include_bots: bool,
    limit: i64,
) -> Result<Vec<RevenueRow>> {
    db.fetch_all(
        &format!(
            "SELECT key, currency, {REVENUE_SUMS} FROM rollup_conversions_hourly \
             WHERE property_id = $1 AND model = $2 AND dim = $3 AND hour >= $4 AND hour < $5 \
               AND (NOT is_bot OR $6) \
             GROUP BY key, currency ORDER BY conversions DESC, revenue_micros DESC, key, currency LIMIT $7"
        ),
        args![
            property_id,
            model.as_str(),
            dim.as_str(),
            range.from_hour,
            range.to_hour,
            include_bots,
            limit
        ],
    )
    .await
}

/// Traffic of the given keys of a dimension (to complete a breakdown whose
/// keys came from the conversion side).
pub async fn traffic_for_keys(
    db: &Db,
    property_id: &str,
    dim: Dim,
    range: HourRange,
    include_bots: bool,
    keys: &[String],
) -> Result<Vec<TrafficRow>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let list = crate::to_json(keys)?;
    let elems = crate::json_list(db.backend(), 6);
    db.fetch_all(
        &format!(
            "SELECT key, {TRAFFIC_SUMS} FROM rollup_hourly \
             WHERE property_id = $1 AND dim = $2 AND hour >= $3 AND hour < $4 AND (NOT is_bot OR $5) \
               AND key IN ({elems}) \
             GROUP BY key"
        ),
        args![
            property_id,
            dim.as_str(),
            range.from_hour,
            range.to_hour,
            include_bots,
            list
        ],
    )
    .await
}

/// The setup checklist's traffic facts: whether any PageView and any
/// OutboundClick was ever recorded (from the rollups: no event scan).
pub async fn traffic_seen(db: &Db, property_id: &str) -> Result<(bool, bool)> {
    let pv: Option<(i64,)> = db
        .fetch_optional(
            "SELECT hour FROM rollup_hourly WHERE property_id = $1 AND dim = 'total' AND pageviews > 0 LIMIT 1",
            args![property_id],
        )
        .await?;
    let clicks: Option<(i64,)> = db
        .fetch_optional(
            "SELECT hour FROM rollup_hourly WHERE property_id = $1 AND dim = 'total' AND clicks > 0 LIMIT 1",
            args![property_id],
        )
        .await?;
    Ok((pv.is_some(), clicks.is_some()))
}

/// Whether any conversion was ever validated for the property (from the
/// conversion rollups).
pub async fn conversion_seen(db: &Db, property_id: &str) -> Result<bool> {
    let row: Option<(i64,)> = db
        .fetch_optional(
            "SELECT hour FROM rollup_conversions_hourly \
             WHERE property_id = $1 AND model = 'last' AND dim = 'total' AND conversions > 0 LIMIT 1",
            args![property_id],
        )
        .await?;
    Ok(row.is_some())
}

/// Whether any delivery of the property reached an ad platform. A database
/// without the deliveries table (an older schema) has none.
pub async fn delivery_seen(db: &Db, property_id: &str) -> Result<bool> {
    let row: std::result::Result<Option<(String,)>, _> = db
        .fetch_optional(
            "SELECT id FROM deliveries WHERE property_id = $1 AND status = 'delivered' LIMIT 1",
            args![property_id],
        )
        .await;
    Ok(matches!(row, Ok(Some(_))))
}

/// An event for the live debugger, with its session's source.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct LiveEventRow {
    pub id: i64,
    pub ts: i64,
    pub name: String,
    pub url: String,
    pub click_id: Option<String>,
    pub link_url: Option<String>,
    pub link_group: Option<String>,
    pub source: Option<String>,
    pub medium: Option<String>,
}

/// The newest event row id of all properties (the live debugger's window
/// starts a bounded distance before it, so its scan never covers the whole
/// table).
pub async fn max_event_id(db: &Db) -> Result<i64> {
    let (max,): (Option<i64>,) = db.fetch_one("SELECT MAX(id) FROM events", args![]).await?;
    Ok(max.unwrap_or(0))
}

/// A property's events with a row id above `after_id`, newest first. The
/// primary key range bounds the scan.
pub async fn live_events(
    db: &Db,
    property_id: &str,
    after_id: i64,
    limit: i64,
) -> Result<Vec<LiveEventRow>> {
    db.fetch_all(
        "SELECT e.id, e.ts, e.name, e.url, e.click_id, e.link_url, e.link_group, s.source, s.medium \
         FROM events e LEFT JOIN sessions s ON s.id = e.session_id \
         WHERE e.id > $2 AND e.property_id = $1 ORDER BY e.id DESC LIMIT $3",
        args![property_id, after_id, limit],
    )
    .await
}

/// A conversion for the live debugger.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct LiveConversionRow {
    pub id: String,
    pub received_at: i64,
    #[sqlx(try_from = "String")]
    pub status: clicktrail_domain::conversion::LogStatus,
    pub error_code: Option<String>,
    pub source_event: String,
    pub event_name: Option<String>,
    pub click_id: Option<String>,
    #[serde(rename = "value_micros", with = "crate::micros::opt")]
    #[sqlx(rename = "value_micros", try_from = "crate::micros::OptMicros")]
    pub value: Option<Amount>,
    pub currency: Option<String>,
}

/// A property's conversions received after `after_ms`, newest first.
pub async fn live_conversions(
    db: &Db,
    property_id: &str,
    after_ms: i64,
    limit: i64,
) -> Result<Vec<LiveConversionRow>> {
    db.fetch_all(
        "SELECT id, received_at, status, error_code, source_event, event_name, click_id, value_micros, currency \
         FROM conversions WHERE property_id = $1 AND received_at > $2 ORDER BY received_at DESC, id DESC LIMIT $3",
        args![property_id, after_ms, limit],
    )
    .await
}
