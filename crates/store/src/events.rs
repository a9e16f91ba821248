//! Reading stored events back (the live view, on-site conversions).

use serde::Serialize;

use crate::{Db, Result, args};

/// A stored event.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
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
    pub value_micros: Option<i64>,
    pub currency: Option<String>,
    pub props: Option<String>,
}

const COLS: &str = "id, property_id, event_id, name, ts, session_id, visitor_id, url, click_id, link_url, \
                    link_group, value_micros, currency, props";

/// Events named one of `names` after row id `after`, oldest first.
pub async fn named_after(db: &Db, after: i64, names: &[&str], limit: i64) -> Result<Vec<StoredEvent>> {
    let elems = match db.backend() {
        crate::Backend::Sqlite => "SELECT value FROM json_each($2)",
        crate::Backend::Postgres => "SELECT json_array_elements_text($2::json)",
    };
    let names = serde_json::to_string(names).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
    db.fetch_all(
        &format!("SELECT {COLS} FROM events WHERE id > $1 AND name IN ({elems}) ORDER BY id LIMIT $3"),
        args![after, names, limit],
    )
    .await
}
