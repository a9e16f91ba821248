//! Reading stored events back (the live view, on-site conversions).

use clicktrail_domain::money::Amount;
use serde::Serialize;

use crate::{Db, Result, args};

/// A stored event.
#[derive(Debug, Clone, Serialize, serde::Deserialize, sqlx::FromRow)]
pub struct StoredEvent {
    pub id: i64,
    pub property_id: String,
    pub event_id: String,
    pub name: String,
    pub ts: i64,
    pub session_id: i64,
    pub visitor_id: String,
    pub url: String,
    pub click_id: Option<String>,
    pub link_url: Option<String>,
    pub link_group: Option<String>,
    #[serde(rename = "value_micros", with = "crate::micros::opt")]
    #[sqlx(rename = "value_micros", try_from = "crate::micros::OptMicros")]
    pub value: Option<Amount>,
    pub currency: Option<String>,
    pub props: Option<String>,
    /// The collector's on-site verdict (see [`crate::ingest::IngestEvent`]).
    pub onsite: Option<String>,
}

const COLS: &str = "id, property_id, event_id, name, ts, session_id, visitor_id, url, click_id, link_url, \
                    link_group, value_micros, currency, props, onsite";

/// The highest event row id (0 when there is none).
pub async fn max_id(db: &Db) -> Result<i64> {
    let (m,): (Option<i64>,) = db.fetch_one("SELECT MAX(id) FROM events", args![]).await?;
    Ok(m.unwrap_or(0))
}

/// Conversion attempts (events the collector gave an on-site verdict) with
/// row ids in `(after, upto]`, oldest first: a bounded range scan, however
/// many other events there are.
pub async fn onsite_between(
    db: &Db,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<StoredEvent>> {
    db.fetch_all(
        &format!(
            "SELECT {COLS} FROM events WHERE id > $1 AND id <= $2 AND onsite IS NOT NULL ORDER BY id LIMIT $3"
        ),
        args![after, upto, limit],
    )
    .await
}
