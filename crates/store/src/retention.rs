//! Deleting data in small batches: a deleted property's purge, a property's
//! raw data past its retention, encrypted client addresses past the
//! attribution window, a deleted integration's conversion log; and the
//! claims that make the daily job run once however many processes share
//! the database.
//!
//! Each [`Batch`] is one short statement touching at most `limit` rows, so
//! the caller (the engine's retention worker) can pause between batches:
//! on SQLite every batch holds the single write lock, which the ingest
//! writer waits for. Rows are picked by their physical key (`rowid` on
//! SQLite, `ctid` on PostgreSQL), which every table has, whatever its
//! primary key.
//!
//! The store decides nothing about time: cutoffs come from the caller.

use clicktrail_domain::PropertyId;

use crate::{Args, Backend, Db, Result, args};

/// What a batch does to the rows it picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Delete,
    /// Sets the column to NULL (the rows stay).
    Clear(&'static str),
}

/// One repeatable step: run it until it touches fewer rows than its limit.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The table it works on (the metrics' label).
    pub table: &'static str,
    action: Action,
    /// The rows it picks: a `WHERE` condition over `table`.
    filter: String,
    args: Args,
}

impl Batch {
    fn delete(table: &'static str, filter: impl Into<String>, args: Args) -> Self {
        Self {
            table,
            action: Action::Delete,
            filter: filter.into(),
            args,
        }
    }

    /// A label for what the batch touches: the table, or `table.column`
    /// for a cleared column.
    pub fn label(&self) -> String {
        match self.action {
            Action::Delete => self.table.to_owned(),
            Action::Clear(c) => format!("{}.{c}", self.table),
        }
    }

    fn sql(&self, backend: Backend, limit: i64) -> String {
        let (t, f) = (self.table, &self.filter);
        let target = match self.action {
            Action::Delete => format!("DELETE FROM {t}"),
            Action::Clear(c) => format!("UPDATE {t} SET {c} = NULL"),
        };
        match backend {
            Backend::Sqlite => {
                format!("{target} WHERE rowid IN (SELECT rowid FROM {t} WHERE {f} LIMIT {limit})")
            }
            Backend::Postgres => format!(
                "{target} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} WHERE {f} LIMIT {limit}))"
            ),
        }
    }

    /// Runs the batch once, touching at most `limit` rows; returns how
    /// many it touched.
    pub async fn run(&self, db: &Db, limit: i64) -> Result<u64> {
        db.execute(&self.sql(db.backend(), limit.max(1)), self.args.clone())
            .await
    }
}

/// Every row a property owns, children before parents, one table at a
/// time (the property's own row last: [`delete_property_row`]).
pub fn property_purge(property: &PropertyId) -> Vec<Batch> {
    let p = property.as_str();
    let by_property = |table: &'static str| Batch::delete(table, "property_id = $1", args![p]);
    vec![
        Batch::delete(
            "delivery_attempts",
            "delivery_id IN (SELECT id FROM deliveries WHERE property_id = $1)",
            args![p],
        ),
        by_property("deliveries"),
        by_property("conversions"),
        Batch::delete(
            "connector_snapshots",
            "integration_id IN (SELECT id FROM integrations WHERE property_id = $1)",
            args![p],
        ),
        by_property("links"),
        by_property("integrations"),
        by_property("destinations"),
        by_property("ad_spend"),
        by_property("spend_imports"),
        by_property("rollup_conversions_hourly"),
        by_property("rollup_hourly"),
        by_property("clicks"),
        by_property("events"),
        by_property("sessions"),
    ]
}

/// Deletes a deleted property's own row, once [`property_purge`] emptied
/// everything it owned. Returns whether it did (a property restored in the
/// meantime is kept).
pub async fn delete_property_row(db: &Db, property: &PropertyId) -> Result<bool> {
    Ok(db
        .execute(
            "DELETE FROM properties WHERE id = $1 AND deleted_at IS NOT NULL",
            args![property.as_str()],
        )
        .await?
        == 1)
}

/// A property's events received before `cutoff`.
pub fn expired_events(property: &PropertyId, cutoff: i64) -> Batch {
    Batch::delete(
        "events",
        "property_id = $1 AND ts < $2",
        args![property.as_str(), cutoff],
    )
}

/// A property's clicks made before `cutoff`.
pub fn expired_clicks(property: &PropertyId, cutoff: i64) -> Batch {
    Batch::delete(
        "clicks",
        "property_id = $1 AND ts < $2",
        args![property.as_str(), cutoff],
    )
}

/// A property's sessions that ended before `cutoff` (none of their events
/// or clicks is younger).
pub fn expired_sessions(property: &PropertyId, cutoff: i64) -> Batch {
    Batch::delete(
        "sessions",
        "property_id = $1 AND started_at < $2 AND last_seen_at < $2",
        args![property.as_str(), cutoff],
    )
}

/// Clears the encrypted client addresses (`e:...`) of a property's
/// sessions that ended before `cutoff`. The condition on `ip` is the
/// partial index's own (`sessions_encrypted_ip`), so only addresses not
/// cleared yet are read.
pub fn encrypted_ips(property: &PropertyId, cutoff: i64) -> Batch {
    Batch {
        table: "sessions",
        action: Action::Clear("ip"),
        filter: "property_id = $1 AND started_at < $2 AND substr(ip, 1, 2) = 'e:' \
                 AND last_seen_at < $2"
            .into(),
        args: args![property.as_str(), cutoff],
    }
}

/// A page of an integration's conversion log, oldest first, after the
/// `(received_at, id)` cursor: the conversions to delete next.
pub async fn integration_log_page(
    db: &Db,
    property_id: &str,
    integration_id: &str,
    after: Option<&(i64, String)>,
    limit: i64,
) -> Result<Vec<(i64, String)>> {
    let (at, id) = after.cloned().unwrap_or((i64::MIN, String::new()));
    // Walks the property's log index (property_id, received_at, id) once,
    // instead of scanning the table for the integration per batch.
    db.fetch_all(
        "SELECT received_at, id FROM conversions WHERE property_id = $1 AND integration_id = $2 \
         AND (received_at > $3 OR (received_at = $3 AND id > $4)) \
         ORDER BY received_at, id LIMIT $5",
        args![property_id, integration_id, at, id, limit],
    )
    .await
}

/// Deletes conversions with their deliveries and delivery attempts, in
/// one transaction. Returns (conversions, deliveries, attempts) deleted.
pub async fn delete_conversions(db: &Db, ids: &[String]) -> Result<(u64, u64, u64)> {
    if ids.is_empty() {
        return Ok((0, 0, 0));
    }
    let list = crate::json_list(db.backend(), 1);
    let ids_json = crate::to_json(ids)?;
    let mut tx = db.begin().await?;
    let attempts = tx
        .execute(
            &format!(
                "DELETE FROM delivery_attempts WHERE delivery_id IN \
                 (SELECT id FROM deliveries WHERE conversion_id IN ({list}))"
            ),
            args![ids_json.clone()],
        )
        .await?;
    let deliveries = tx
        .execute(
            &format!("DELETE FROM deliveries WHERE conversion_id IN ({list})"),
            args![ids_json.clone()],
        )
        .await?;
    let conversions = tx
        .execute(
            &format!("DELETE FROM conversions WHERE id IN ({list})"),
            args![ids_json],
        )
        .await?;
    tx.commit().await?;
    Ok((conversions, deliveries, attempts))
}

// ---- job claims -------------------------------------------------------------

/// A maintenance job's schedule and last outcome.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct JobState {
    pub name: String,
    pub next_run_at: i64,
    pub lease_until: Option<i64>,
    pub lease_owner: Option<String>,
    pub last_run_at: Option<i64>,
    pub last_outcome: Option<String>,
}

/// Claims job `name` for `owner` (a process's instance id) when it is due
/// at `now` and no live lease is held: a lease until `lease_until`.
/// A job never seen is due at once. Returns whether this caller won.
pub async fn claim_job(
    db: &Db,
    name: &str,
    owner: &str,
    now: i64,
    lease_until: i64,
) -> Result<bool> {
    db.execute(
        "INSERT INTO maintenance_jobs (name, next_run_at) VALUES ($1, $2) \
         ON CONFLICT (name) DO NOTHING",
        args![name, now],
    )
    .await?;
    let n = db
        .execute(
            "UPDATE maintenance_jobs SET lease_until = $3, lease_owner = $4 \
             WHERE name = $1 AND next_run_at <= $2 AND (lease_until IS NULL OR lease_until < $2)",
            args![name, now, lease_until, owner],
        )
        .await?;
    Ok(n == 1)
}

/// Extends `owner`'s lease while the job runs; false when the lease is no
/// longer its own (it expired and another process took the job).
pub async fn renew_job(db: &Db, name: &str, owner: &str, lease_until: i64) -> Result<bool> {
    let n = db
        .execute(
            "UPDATE maintenance_jobs SET lease_until = $3 \
             WHERE name = $1 AND lease_owner = $2 AND lease_until IS NOT NULL",
            args![name, owner, lease_until],
        )
        .await?;
    Ok(n == 1)
}

/// Records a run's outcome, schedules the next and releases `owner`'s
/// lease (a run that lost its lease records nothing).
pub async fn finish_job(
    db: &Db,
    name: &str,
    owner: &str,
    at: i64,
    next_run_at: i64,
    outcome: &str,
) -> Result<()> {
    db.execute(
        "UPDATE maintenance_jobs SET last_run_at = $3, next_run_at = $4, last_outcome = $5, \
         lease_until = NULL, lease_owner = NULL WHERE name = $1 AND lease_owner = $2",
        args![name, owner, at, next_run_at, outcome],
    )
    .await?;
    Ok(())
}

/// A job's state (`None` before its first claim).
pub async fn job(db: &Db, name: &str) -> Result<Option<JobState>> {
    db.fetch_optional(
        "SELECT name, next_run_at, lease_until, lease_owner, last_run_at, last_outcome \
         FROM maintenance_jobs WHERE name = $1",
        args![name],
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_pick_rows_by_physical_key_with_a_limit() {
        let p = PropertyId::parse("abcdefghij012345").unwrap();
        let events = expired_events(&p, 1_000);
        assert_eq!(
            events.sql(Backend::Sqlite, 1000),
            "DELETE FROM events WHERE rowid IN (SELECT rowid FROM events \
             WHERE property_id = $1 AND ts < $2 LIMIT 1000)"
        );
        assert_eq!(
            events.sql(Backend::Postgres, 5),
            "DELETE FROM events WHERE ctid = ANY(ARRAY(SELECT ctid FROM events \
             WHERE property_id = $1 AND ts < $2 LIMIT 5))"
        );
        let ips = encrypted_ips(&p, 1_000);
        assert_eq!(ips.label(), "sessions.ip");
        assert!(
            ips.sql(Backend::Sqlite, 10)
                .starts_with("UPDATE sessions SET ip = NULL WHERE rowid IN")
        );
    }

    /// Children before parents: a table is emptied before the tables it
    /// references (foreign keys hold at every step), the property's row
    /// last.
    #[test]
    fn a_purge_goes_children_first() {
        let p = PropertyId::parse("abcdefghij012345").unwrap();
        let order: Vec<&str> = property_purge(&p).iter().map(|b| b.table).collect();
        let before = |a: &str, b: &str| {
            order.iter().position(|t| *t == a) < order.iter().position(|t| *t == b)
        };
        assert!(before("delivery_attempts", "deliveries"));
        assert!(before("deliveries", "conversions"));
        assert!(before("deliveries", "destinations"));
        assert!(before("connector_snapshots", "integrations"));
        assert!(before("ad_spend", "spend_imports"));
        assert!(before("events", "sessions") && before("clicks", "sessions"));
        assert_eq!(order.len(), 14);
    }
}
