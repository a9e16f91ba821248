//! Conversions out: ad-platform destinations and the delivery outbox.
//!
//! A validated conversion and its delivery rows (one per destination that
//! wants it) are written in the same transaction ([`insert_planned`]), so a
//! conversion is queued exactly when it is recorded. Workers claim due rows
//! with a lease ([`claim_due`]: `FOR UPDATE SKIP LOCKED` on PostgreSQL so
//! several servers share the work; the single writer on SQLite), send them,
//! and record each attempt with the row's new status in one transaction
//! ([`record_results`]). The lease doubles as the claim token: a worker
//! whose lease ran out and was re-claimed by another cannot overwrite the
//! newer claim's result.
//!
//! Rows of a paused destination (or one whose credentials need attention)
//! stay `pending` but are *parked* (`next_attempt_at` = [`PARKED_AT`]) so
//! the due-index scan never walks them; resuming the destination unparks
//! them in the same transaction that changes its status.
//!
//! A deleted destination stays, marked `deleted_at`, so its delivery log
//! still names it; [`get_destination`] and [`list_destinations`] treat it
//! as absent, and its waiting rows end `cancelled` ([`delete_destination`]).

use clicktrail_domain::EntityId;
use clicktrail_domain::conversion::LogStatus;
use clicktrail_domain::delivery::DeliveryStatus;
use clicktrail_domain::money::Amount;
use serde::Serialize;

use crate::{Backend, Db, Result, StoreError, Tx, args, now_ms};

/// `next_attempt_at` of parked rows: 9999-12-31, far past any real due time
/// and exact in JSON numbers.
pub const PARKED_AT: i64 = 253_402_300_799_999;

/// A destination's state as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationStatus {
    Active,
    Paused,
    /// Credentials or account need the user: deliveries wait (parked).
    NeedsAttention,
}

impl DestinationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::NeedsAttention => "needs_attention",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Active, Self::Paused, Self::NeedsAttention]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// A stored destination. Settings and mapping are JSON text, credentials
/// an encrypted blob: the server validates and decrypts them.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct DestinationRow {
    pub id: String,
    pub property_id: String,
    pub kind: String,
    pub name: String,
    pub settings: String,
    pub credentials_enc: String,
    pub event_mapping: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub status_message: Option<String>,
    pub revision: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was deleted; `None` for a live destination.
    pub deleted_at: Option<i64>,
}

impl DestinationRow {
    /// The status; an unknown stored word reads as needing attention, so
    /// nothing is sent on a row we do not understand.
    pub fn status(&self) -> DestinationStatus {
        DestinationStatus::parse(&self.status).unwrap_or(DestinationStatus::NeedsAttention)
    }
}

const DEST_COLS: &str = "id, property_id, kind, name, settings, credentials_enc, event_mapping, status, \
     status_reason, status_message, revision, created_at, updated_at, deleted_at";

/// What a new destination is made of (already validated and encrypted).
#[derive(Debug, Clone)]
pub struct NewDestination<'a> {
    pub property_id: &'a str,
    pub kind: &'a str,
    pub name: &'a str,
    pub settings: &'a str,
    pub credentials_enc: &'a str,
    pub event_mapping: &'a str,
}

pub async fn create_destination(db: &Db, d: &NewDestination<'_>) -> Result<DestinationRow> {
    let id = EntityId::generate("dst").into_string();
    let now = now_ms();
    db.execute(
        "INSERT INTO destinations (id, property_id, kind, name, settings, credentials_enc, event_mapping, \
         status, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'active', 1, $8, $8)",
        args![
            id.as_str(),
            d.property_id,
            d.kind,
            d.name,
            d.settings,
            d.credentials_enc,
            d.event_mapping,
            now
        ],
    )
    .await?;
    Ok(DestinationRow {
        id,
        property_id: d.property_id.to_owned(),
        kind: d.kind.to_owned(),
        name: d.name.to_owned(),
        settings: d.settings.to_owned(),
        credentials_enc: d.credentials_enc.to_owned(),
        event_mapping: d.event_mapping.to_owned(),
        status: DestinationStatus::Active.as_str().to_owned(),
        status_reason: None,
        status_message: None,
        revision: 1,
        created_at: now,
        updated_at: now,
        deleted_at: None,
    })
}

/// A live (not deleted) destination.
pub async fn get_destination(db: &Db, id: &str) -> Result<Option<DestinationRow>> {
    db.fetch_optional(
        &format!("SELECT {DEST_COLS} FROM destinations WHERE id = $1 AND deleted_at IS NULL"),
        args![id],
    )
    .await
}

/// A property's live destinations, oldest first.
pub async fn list_destinations(db: &Db, property_id: &str) -> Result<Vec<DestinationRow>> {
    db.fetch_all(
        &format!(
            "SELECT {DEST_COLS} FROM destinations WHERE property_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at, id"
        ),
        args![property_id],
    )
    .await
}

/// The reason of deliveries cancelled because their destination was
/// deleted.
pub const DESTINATION_DELETED: &str = "destination_deleted";

/// Deletes a live destination at `now`: it is marked deleted (its log
/// stays), and every delivery still waiting for it (pending or retrying,
/// parked or claimed) ends `cancelled` with reason
/// [`DESTINATION_DELETED`], in the same transaction. A claimed row loses
/// its lease, so a worker sending it cannot record over the cancellation.
/// Returns how many deliveries were cancelled, or `None` when there was no
/// live destination.
pub async fn delete_destination(db: &Db, id: &str, now: i64) -> Result<Option<u64>> {
    let mut tx = db.begin().await?;
    let n = tx
        .execute(
            "UPDATE destinations SET deleted_at = $2, updated_at = $2, revision = revision + 1 \
             WHERE id = $1 AND deleted_at IS NULL",
            args![id, now],
        )
        .await?;
    if n == 0 {
        tx.rollback().await?;
        return Ok(None);
    }
    let cancelled = cancel_waiting(&mut tx, id, now).await?;
    tx.commit().await?;
    Ok(Some(cancelled))
}

async fn cancel_waiting(tx: &mut Tx<'_>, destination_id: &str, now: i64) -> Result<u64> {
    tx.execute(
        "UPDATE deliveries SET status = 'cancelled', reason = $2, locked_until = NULL, \
         last_message = 'the destination was deleted; this conversion will not be sent', \
         updated_at = $3 WHERE destination_id = $1 AND status IN ('pending', 'retrying')",
        args![destination_id, DESTINATION_DELETED, now],
    )
    .await
}

/// Reads a destination inside a write transaction, locking it on
/// PostgreSQL (SQLite's transaction already holds the write lock), so an
/// edit computed from it cannot interleave with a worker flagging it.
pub async fn lock_destination(tx: &mut Tx<'_>, id: &str) -> Result<Option<DestinationRow>> {
    let lock = match tx.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE",
    };
    tx.fetch_optional(
        &format!("SELECT {DEST_COLS} FROM destinations WHERE id = $1{lock}"),
        args![id],
    )
    .await
}

/// The new state of an edited destination.
#[derive(Debug, Clone)]
pub struct DestinationChange<'a> {
    pub name: &'a str,
    pub settings: &'a str,
    pub credentials_enc: &'a str,
    pub event_mapping: &'a str,
    pub status: DestinationStatus,
    pub status_reason: Option<&'a str>,
    pub status_message: Option<&'a str>,
}

/// Applies an edit (inside the transaction of [`lock_destination`]): bumps
/// the revision and, when the destination ends up active, makes its parked
/// deliveries due now. Returns how many were unparked.
pub async fn apply_destination_change(
    tx: &mut Tx<'_>,
    id: &str,
    change: &DestinationChange<'_>,
) -> Result<u64> {
    let now = now_ms();
    let n = tx
        .execute(
            "UPDATE destinations SET name = $2, settings = $3, credentials_enc = $4, event_mapping = $5, \
             status = $6, status_reason = $7, status_message = $8, revision = revision + 1, updated_at = $9 \
             WHERE id = $1",
            args![
                id,
                change.name,
                change.settings,
                change.credentials_enc,
                change.event_mapping,
                change.status.as_str(),
                change.status_reason,
                change.status_message,
                now
            ],
        )
        .await?;
    if n == 0 {
        return Err(StoreError::Conflict(format!("destination {id} is gone")));
    }
    if change.status != DestinationStatus::Active {
        return Ok(0);
    }
    tx.execute(
        "UPDATE deliveries SET next_attempt_at = $2, updated_at = $2 \
         WHERE destination_id = $1 AND status IN ('pending', 'retrying') AND next_attempt_at >= $3",
        args![id, now, PARKED_AT],
    )
    .await
}

// ---- the outbox -------------------------------------------------------------

/// One delivery to create for a conversion: the destination and what it
/// receives (from the destination's event mapping).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedDelivery {
    pub destination_id: String,
    /// The platform's event name (our name for Google Ads).
    pub event_name: String,
    /// Google Ads: `customers/{cid}/conversionActions/{id}`.
    pub conversion_action: Option<String>,
}

/// The planned deliveries of one conversion, for [`insert_planned_many`].
#[derive(Debug, Clone, Copy)]
pub struct PlannedConversion<'a> {
    pub conversion_id: &'a str,
    pub property_id: &'a str,
    pub deliveries: &'a [PlannedDelivery],
}

/// Queues a validated conversion's deliveries. Call it inside the
/// transaction that records the conversion (the transactional outbox): both
/// commit or neither does. A conversion is never queued twice for one
/// destination: repeats are ignored.
pub async fn insert_planned(
    tx: &mut Tx<'_>,
    conversion_id: &str,
    property_id: &str,
    planned: &[PlannedDelivery],
) -> Result<()> {
    insert_planned_many(
        tx,
        &[PlannedConversion {
            conversion_id,
            property_id,
            deliveries: planned,
        }],
    )
    .await
    .map(|_| ())
}

/// [`insert_planned`] for many conversions at once (one statement); returns
/// how many rows were created.
pub async fn insert_planned_many(tx: &mut Tx<'_>, convs: &[PlannedConversion<'_>]) -> Result<u64> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: String,
        conversion_id: &'a str,
        destination_id: &'a str,
        property_id: &'a str,
        event_name: &'a str,
        conversion_action: Option<&'a str>,
        now: i64,
    }
    let now = now_ms();
    let rows: Vec<Row<'_>> = convs
        .iter()
        .flat_map(|c| {
            c.deliveries.iter().map(move |p| Row {
                id: EntityId::generate("dlv").into_string(),
                conversion_id: c.conversion_id,
                destination_id: &p.destination_id,
                property_id: c.property_id,
                event_name: &p.event_name,
                conversion_action: p.conversion_action.as_deref(),
                now,
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(0);
    }
    let cols = &[
        ("id", "text"),
        ("conversion_id", "text"),
        ("destination_id", "text"),
        ("property_id", "text"),
        ("event_name", "text"),
        ("conversion_action", "text"),
        ("now", "bigint"),
    ];
    let sql = format!(
        "INSERT INTO deliveries (id, conversion_id, destination_id, property_id, event_name, conversion_action, \
         status, attempts, next_attempt_at, created_at, updated_at) \
         SELECT x.id, x.conversion_id, x.destination_id, x.property_id, x.event_name, x.conversion_action, \
         'pending', 0, x.now, x.now, x.now FROM {} WHERE true \
         ON CONFLICT (conversion_id, destination_id) DO NOTHING",
        json_source(tx.backend(), cols)
    );
    tx.execute(&sql, args![crate::to_json(&rows)?]).await
}

/// A claimed delivery: the worker holds it until `locked_until`, which is
/// also the token its result must present.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct ClaimedDelivery {
    pub id: String,
    pub conversion_id: String,
    pub destination_id: String,
    pub property_id: String,
    pub event_name: String,
    pub conversion_action: Option<String>,
    pub attempts: i64,
    pub created_at: i64,
    pub locked_until: i64,
}

const CLAIM_RETURNING: &str = "id, conversion_id, destination_id, property_id, event_name, \
     conversion_action, attempts, created_at, locked_until";

/// Claims up to `limit` due deliveries (oldest due first) for `lease_ms`.
/// Rows another worker holds are skipped, not waited for.
pub async fn claim_due(
    db: &Db,
    now: i64,
    limit: i64,
    lease_ms: i64,
) -> Result<Vec<ClaimedDelivery>> {
    let until = now + lease_ms.max(1);
    let due = "status IN ('pending', 'retrying') AND next_attempt_at <= $1 \
               AND (locked_until IS NULL OR locked_until <= $1)";
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "UPDATE deliveries SET locked_until = $3 WHERE id IN \
             (SELECT id FROM deliveries WHERE {due} ORDER BY next_attempt_at LIMIT $2) \
             RETURNING {CLAIM_RETURNING}"
        ),
        Backend::Postgres => format!(
            "WITH due AS (SELECT id FROM deliveries WHERE {due} ORDER BY next_attempt_at LIMIT $2 \
             FOR UPDATE SKIP LOCKED) \
             UPDATE deliveries d SET locked_until = $3 FROM due WHERE d.id = due.id \
             RETURNING {}",
            CLAIM_RETURNING
                .split(", ")
                .map(|c| format!("d.{}", c.trim()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    // Look before taking the write lock: idle workers poll several times a
    // second, and on SQLite every write transaction would wait on (and
    // delay) the ingest writer.
    let any: Option<(i64,)> = db
        .fetch_optional(
            &format!("SELECT CAST(1 AS BIGINT) FROM deliveries WHERE {due} LIMIT 1"),
            args![now],
        )
        .await?;
    if any.is_none() {
        return Ok(Vec::new());
    }
    let mut tx = db.begin().await?;
    let rows: Vec<ClaimedDelivery> = tx.fetch_all(&sql, args![now, limit, until]).await?;
    tx.commit().await?;
    Ok(rows)
}

/// Extends the lease of claimed rows that waited (for a free sending slot)
/// long enough for it to matter. Returns the ids still held, with the new
/// token `until`.
pub async fn extend_lease(db: &Db, claims: &[(&str, i64)], until: i64) -> Result<Vec<String>> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        lease: i64,
    }
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let rows: Vec<Row<'_>> = claims
        .iter()
        .map(|(id, lease)| Row { id, lease: *lease })
        .collect();
    let cols = &[("id", "text"), ("lease", "bigint")];
    let sql = format!(
        "UPDATE deliveries SET locked_until = $2 FROM {} \
         WHERE deliveries.id = x.id AND deliveries.locked_until = x.lease RETURNING deliveries.id",
        json_source(db.backend(), cols)
    );
    let mut tx = db.begin().await?;
    let held: Vec<(String,)> = tx
        .fetch_all(&sql, args![crate::to_json(&rows)?, until])
        .await?;
    tx.commit().await?;
    Ok(held.into_iter().map(|r| r.0).collect())
}

/// Gives claimed rows back without an attempt: due again at once when the
/// destination is active, parked otherwise (the destination row is locked
/// while deciding, so a concurrent resume cannot miss them). Returns
/// whether they were parked.
pub async fn release(db: &Db, destination_id: &str, claims: &[(&str, i64)]) -> Result<bool> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        lease: i64,
    }
    if claims.is_empty() {
        return Ok(false);
    }
    let mut tx = db.begin().await?;
    let lock = match tx.backend() {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR SHARE",
    };
    // (status, destination deleted, property deleted)
    let status: Option<(String, bool, bool)> = tx
        .fetch_optional(
            &format!(
                "SELECT d.status, d.deleted_at IS NOT NULL AS gone, \
                 EXISTS (SELECT 1 FROM properties p WHERE p.id = d.property_id \
                     AND p.deleted_at IS NOT NULL) AS property_gone \
                 FROM destinations d WHERE d.id = $1{lock}"
            ),
            args![destination_id],
        )
        .await?;
    if status.as_ref().is_some_and(|s| s.1) {
        // Deleted since the rows were planned or claimed (a process whose
        // cache still had it): they will never be sent.
        cancel_waiting(&mut tx, destination_id, now_ms()).await?;
        tx.commit().await?;
        return Ok(true);
    }
    let park = status.is_none_or(|(s, _, property_gone)| {
        property_gone || s != DestinationStatus::Active.as_str()
    });
    let rows: Vec<Row<'_>> = claims
        .iter()
        .map(|(id, lease)| Row { id, lease: *lease })
        .collect();
    let cols = &[("id", "text"), ("lease", "bigint")];
    let now = now_ms();
    let due = if park { PARKED_AT } else { now };
    let sql = format!(
        "UPDATE deliveries SET next_attempt_at = $2, locked_until = NULL, updated_at = $3 FROM {} \
         WHERE deliveries.id = x.id AND deliveries.locked_until = x.lease",
        json_source(tx.backend(), cols)
    );
    tx.execute(&sql, args![crate::to_json(&rows)?, due, now])
        .await?;
    tx.commit().await?;
    Ok(park)
}

/// Everything known of a conversion and its click's session that a
/// platform payload may carry.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct ConversionFacts {
    pub conversion_id: String,
    pub property_id: String,
    #[sqlx(try_from = "String")]
    pub status: LogStatus,
    pub event_name: Option<String>,
    pub event_id: String,
    pub occurred_at: i64,
    pub received_at: i64,
    pub click_ts: Option<i64>,
    #[serde(rename = "value_micros", with = "crate::micros::opt")]
    #[sqlx(rename = "value_micros", try_from = "crate::micros::OptMicros")]
    pub value: Option<Amount>,
    pub currency: Option<String>,
    pub visitor_id: Option<String>,
    /// The page where the click happened, else the session's landing URL.
    pub page_url: Option<String>,
    pub referrer: Option<String>,
    pub user_agent: Option<String>,
    /// The stored form (truncated, `h:` hashed or `e:` encrypted).
    pub ip: Option<String>,
    pub em_hash: Option<String>,
    pub ph_hash: Option<String>,
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    pub ttp: Option<String>,
    pub msclkid: Option<String>,
    /// `Consent::code` of the click, else of the session.
    pub consent: Option<String>,
}

/// The facts of these conversions (any order; unknown ids are absent).
pub async fn conversion_facts(db: &Db, conversion_ids: &[&str]) -> Result<Vec<ConversionFacts>> {
    if conversion_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT c.id AS conversion_id, c.property_id, c.status, c.event_name, c.event_id, c.occurred_at, \
         c.received_at, c.click_ts, c.value_micros, c.currency, \
         COALESCE(c.visitor_id, s.visitor_id) AS visitor_id, \
         COALESCE(cl.page_url, s.landing_url) AS page_url, s.referrer, s.user_agent, s.ip, s.em_hash, \
         s.ph_hash, s.gclid, s.gbraid, s.wbraid, s.fbclid, s.fbc, s.fbp, s.ttclid, s.ttp, s.msclkid, \
         COALESCE(cl.consent, s.consent) AS consent \
         FROM conversions c \
         LEFT JOIN sessions s ON s.id = c.session_id \
         LEFT JOIN clicks cl ON cl.property_id = c.property_id AND cl.click_id = c.click_id \
         WHERE c.id IN ({})",
        crate::json_list(db.backend(), 1)
    );
    db.fetch_all(&sql, args![crate::to_json(&conversion_ids)?])
        .await
}

/// The property's most recent validated conversion (for test sends).
pub async fn latest_validated_conversion(db: &Db, property_id: &str) -> Result<Option<String>> {
    let row: Option<(String,)> = db
        .fetch_optional(
            "SELECT id FROM conversions WHERE property_id = $1 AND status = 'validated' \
             ORDER BY received_at DESC, id DESC LIMIT 1",
            args![property_id],
        )
        .await?;
    Ok(row.map(|r| r.0))
}

/// One attempt, as the delivery log keeps it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    pub at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub message: String,
    /// At most 2 KB of the platform's answer, credentials redacted.
    pub response_excerpt: String,
    /// `delivered`, `skipped`, `retry`, `permanent`, `auth_failed`, `dead`.
    pub outcome: String,
    pub reason: Option<String>,
}

/// The outcome of one claimed delivery: its new state and the attempt made
/// (none when it was decided without a request).
#[derive(Debug, Clone)]
pub struct DeliveryResult {
    pub id: String,
    /// The claim token (`ClaimedDelivery::locked_until`).
    pub lease: i64,
    pub status: DeliveryStatus,
    pub reason: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    /// Park the row if the destination is flagged by this same call
    /// (credentials failed); otherwise it is due at `next_attempt_at`.
    pub hold: bool,
    pub last_attempt_at: Option<i64>,
    pub last_http_status: Option<i64>,
    pub last_message: Option<String>,
    pub delivered_at: Option<i64>,
    pub attempt: Option<AttemptRecord>,
}

/// The destination needs its user (expired token...): flag it, unless it
/// was edited since the worker loaded it (`revision`).
#[derive(Debug, Clone)]
pub struct Attention<'a> {
    pub destination_id: &'a str,
    pub revision: i64,
    pub reason: &'a str,
    pub message: &'a str,
}

/// What [`record_results`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recorded {
    /// Rows whose result was stored (the others had been re-claimed).
    pub rows: usize,
    /// Whether the destination was flagged as needing attention.
    pub flagged: bool,
}

/// Stores the results of one batch atomically: each row's new status (only
/// where the claim token still matches), its attempt, and the
/// destination's flag.
pub async fn record_results(
    db: &Db,
    results: &[DeliveryResult],
    attention: Option<&Attention<'_>>,
) -> Result<Recorded> {
    #[derive(Serialize)]
    struct Row<'a> {
        id: &'a str,
        lease: i64,
        status: &'a str,
        reason: Option<&'a str>,
        attempts: i64,
        next_attempt_at: i64,
        last_attempt_at: Option<i64>,
        last_http_status: Option<i64>,
        last_message: Option<&'a str>,
        delivered_at: Option<i64>,
    }
    #[derive(Serialize)]
    struct AttemptRow<'a> {
        delivery_id: &'a str,
        #[serde(flatten)]
        a: &'a AttemptRecord,
    }
    let now = now_ms();
    let mut tx = db.begin().await?;
    let mut flagged = false;
    if let Some(att) = attention {
        flagged = tx
            .execute(
                "UPDATE destinations SET status = 'needs_attention', status_reason = $3, status_message = $4, \
                 updated_at = $5 WHERE id = $1 AND revision = $2",
                args![
                    att.destination_id,
                    att.revision,
                    att.reason,
                    att.message,
                    now
                ],
            )
            .await?
            > 0;
    }
    let rows: Vec<Row<'_>> = results
        .iter()
        .map(|r| Row {
            id: &r.id,
            lease: r.lease,
            status: r.status.as_str(),
            reason: r.reason.as_deref(),
            attempts: r.attempts,
            next_attempt_at: if r.hold && flagged {
                PARKED_AT
            } else {
                r.next_attempt_at
            },
            last_attempt_at: r.last_attempt_at,
            last_http_status: r.last_http_status,
            last_message: r.last_message.as_deref(),
            delivered_at: r.delivered_at,
        })
        .collect();
    if rows.is_empty() {
        tx.commit().await?;
        return Ok(Recorded { rows: 0, flagged });
    }
    let cols = &[
        ("id", "text"),
        ("lease", "bigint"),
        ("status", "text"),
        ("reason", "text"),
        ("attempts", "bigint"),
        ("next_attempt_at", "bigint"),
        ("last_attempt_at", "bigint"),
        ("last_http_status", "bigint"),
        ("last_message", "text"),
        ("delivered_at", "bigint"),
    ];
    let sql = format!(
        "UPDATE deliveries SET status = x.status, reason = x.reason, attempts = x.attempts, \
         next_attempt_at = x.next_attempt_at, locked_until = NULL, \
         last_attempt_at = COALESCE(x.last_attempt_at, deliveries.last_attempt_at), \
         last_http_status = COALESCE(x.last_http_status, deliveries.last_http_status), \
         last_message = COALESCE(x.last_message, deliveries.last_message), \
         delivered_at = COALESCE(x.delivered_at, deliveries.delivered_at), updated_at = $2 \
         FROM {} WHERE deliveries.id = x.id AND deliveries.locked_until = x.lease \
         RETURNING deliveries.id",
        json_source(tx.backend(), cols)
    );
    let stored: Vec<(String,)> = tx
        .fetch_all(&sql, args![crate::to_json(&rows)?, now])
        .await?;
    if stored.len() != rows.len() {
        tracing::warn!(
            expected = rows.len(),
            stored = stored.len(),
            "delivery results for rows re-claimed after their lease ran out were dropped"
        );
    }
    let stored: std::collections::HashSet<&str> = stored.iter().map(|r| r.0.as_str()).collect();
    let attempts: Vec<AttemptRow<'_>> = results
        .iter()
        .filter(|r| stored.contains(r.id.as_str()))
        .filter_map(|r| {
            r.attempt.as_ref().map(|a| AttemptRow {
                delivery_id: &r.id,
                a,
            })
        })
        .collect();
    if !attempts.is_empty() {
        let cols = &[
            ("delivery_id", "text"),
            ("at", "bigint"),
            ("duration_ms", "bigint"),
            ("http_status", "bigint"),
            ("message", "text"),
            ("response_excerpt", "text"),
            ("outcome", "text"),
            ("reason", "text"),
        ];
        let sql = format!(
            "INSERT INTO delivery_attempts (delivery_id, at, duration_ms, http_status, message, \
             response_excerpt, outcome, reason) \
             SELECT x.delivery_id, x.at, x.duration_ms, x.http_status, x.message, x.response_excerpt, \
             x.outcome, x.reason FROM {}",
            json_source(tx.backend(), cols)
        );
        tx.execute(&sql, args![crate::to_json(&attempts)?]).await?;
    }
    tx.commit().await?;
    Ok(Recorded {
        rows: stored.len(),
        flagged,
    })
}

/// What [`requeue`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requeue {
    Requeued,
    NotFound,
    /// Not in a state that can be retried (delivered, pending, in flight).
    NotRetryable {
        status: DeliveryStatus,
    },
}

/// Makes one finished or waiting delivery due now with a fresh attempt
/// budget (its attempt history stays).
pub async fn requeue(db: &Db, id: &str) -> Result<Requeue> {
    let now = now_ms();
    let n = db
        .execute(
            "UPDATE deliveries SET status = 'pending', reason = NULL, attempts = 0, next_attempt_at = $2, \
             updated_at = $2 WHERE id = $1 AND status IN ('dead', 'failed', 'retrying', 'skipped') \
             AND (locked_until IS NULL OR locked_until <= $2)",
            args![id, now],
        )
        .await?;
    if n > 0 {
        return Ok(Requeue::Requeued);
    }
    Ok(match get_delivery(db, id).await? {
        None => Requeue::NotFound,
        Some(d) => Requeue::NotRetryable { status: d.status },
    })
}

/// Requeues every delivery of a destination in one of `statuses`
/// (typically dead and failed); returns how many.
pub async fn replay_destination(
    db: &Db,
    destination_id: &str,
    statuses: &[DeliveryStatus],
) -> Result<u64> {
    if statuses.is_empty() {
        return Ok(0);
    }
    let list: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let now = now_ms();
    let sql = format!(
        "UPDATE deliveries SET status = 'pending', reason = NULL, attempts = 0, next_attempt_at = $2, \
         updated_at = $2 WHERE destination_id = $1 AND status IN ({}) \
         AND (locked_until IS NULL OR locked_until <= $2)",
        crate::json_list(db.backend(), 3)
    );
    db.execute(&sql, args![destination_id, now, crate::to_json(&list)?])
        .await
}

/// A delivery as the log shows it, with its destination's kind and name.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: String,
    pub conversion_id: String,
    pub destination_id: String,
    pub property_id: String,
    pub event_name: String,
    pub conversion_action: Option<String>,
    #[sqlx(try_from = "String")]
    pub status: DeliveryStatus,
    pub reason: Option<String>,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub locked_until: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub last_http_status: Option<i64>,
    pub last_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub delivered_at: Option<i64>,
    pub destination_kind: String,
    pub destination_name: String,
}

const DELIVERY_SELECT: &str = "SELECT dl.id, dl.conversion_id, dl.destination_id, dl.property_id, dl.event_name, \
     dl.conversion_action, dl.status, dl.reason, dl.attempts, dl.next_attempt_at, dl.locked_until, \
     dl.last_attempt_at, dl.last_http_status, dl.last_message, dl.created_at, dl.updated_at, dl.delivered_at, \
     d.kind AS destination_kind, d.name AS destination_name \
     FROM deliveries dl JOIN destinations d ON d.id = dl.destination_id";

pub async fn get_delivery(db: &Db, id: &str) -> Result<Option<DeliveryRow>> {
    db.fetch_optional(&format!("{DELIVERY_SELECT} WHERE dl.id = $1"), args![id])
        .await
}

/// Filters of the delivery log. Newest first; `before` is the cursor (the
/// `created_at` and id of the last row of the previous page).
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter<'a> {
    pub property_id: &'a str,
    pub destination_id: Option<&'a str>,
    pub status: Option<DeliveryStatus>,
    pub conversion_id: Option<&'a str>,
    pub before: Option<(i64, &'a str)>,
    pub limit: i64,
}

pub async fn list_deliveries(db: &Db, f: &DeliveryFilter<'_>) -> Result<Vec<DeliveryRow>> {
    let mut sql = format!("{DELIVERY_SELECT} WHERE dl.property_id = $1");
    let mut a = args![f.property_id];
    if let Some(d) = f.destination_id {
        a.push(d.into());
        sql.push_str(&format!(" AND dl.destination_id = ${}", a.len()));
    }
    if let Some(s) = f.status {
        a.push(s.as_str().into());
        sql.push_str(&format!(" AND dl.status = ${}", a.len()));
    }
    if let Some(c) = f.conversion_id {
        a.push(c.into());
        sql.push_str(&format!(" AND dl.conversion_id = ${}", a.len()));
    }
    if let Some((at, id)) = f.before {
        a.push(at.into());
        a.push(id.into());
        let (n_at, n_id) = (a.len() - 1, a.len());
        sql.push_str(&format!(
            " AND (dl.created_at < ${n_at} OR (dl.created_at = ${n_at} AND dl.id < ${n_id}))"
        ));
    }
    a.push(f.limit.clamp(1, 1000).into());
    sql.push_str(&format!(
        " ORDER BY dl.created_at DESC, dl.id DESC LIMIT ${}",
        a.len()
    ));
    db.fetch_all(&sql, a).await
}

/// The deliveries of these conversions (for the conversion log).
pub async fn deliveries_of_conversions(
    db: &Db,
    conversion_ids: &[&str],
) -> Result<Vec<DeliveryRow>> {
    if conversion_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{DELIVERY_SELECT} WHERE dl.conversion_id IN ({}) ORDER BY dl.created_at, dl.id",
        crate::json_list(db.backend(), 1)
    );
    db.fetch_all(&sql, args![crate::to_json(&conversion_ids)?])
        .await
}

/// A stored attempt.
#[derive(Debug, Clone, serde::Deserialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub id: i64,
    pub delivery_id: String,
    pub at: i64,
    pub duration_ms: i64,
    pub http_status: Option<i64>,
    pub message: String,
    pub response_excerpt: String,
    pub outcome: String,
    pub reason: Option<String>,
}

/// The attempts of these deliveries, oldest first.
pub async fn attempts_of(db: &Db, delivery_ids: &[&str]) -> Result<Vec<AttemptRow>> {
    if delivery_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT id, delivery_id, at, duration_ms, http_status, message, response_excerpt, outcome, reason \
         FROM delivery_attempts WHERE delivery_id IN ({}) ORDER BY delivery_id, id",
        crate::json_list(db.backend(), 1)
    );
    db.fetch_all(&sql, args![crate::to_json(&delivery_ids)?])
        .await
}

/// Deliveries of a destination by status.
pub async fn counts_by_status(db: &Db, destination_id: &str) -> Result<Vec<(String, i64)>> {
    db.fetch_all(
        "SELECT status, COUNT(*) FROM deliveries WHERE destination_id = $1 GROUP BY status ORDER BY status",
        args![destination_id],
    )
    .await
}

/// The queue at a glance, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueueStats {
    /// Deliveries waiting (`pending` or `retrying`, parked ones included).
    pub waiting: i64,
    /// The earliest due time among due rows: how far behind the workers are.
    pub oldest_due_at: Option<i64>,
}

pub async fn queue_stats(db: &Db, now: i64) -> Result<QueueStats> {
    let (waiting,): (i64,) = db
        .fetch_one(
            "SELECT COUNT(*) FROM deliveries WHERE status IN ('pending', 'retrying')",
            args![],
        )
        .await?;
    let (oldest,): (Option<i64>,) = db
        .fetch_one(
            "SELECT MIN(next_attempt_at) FROM deliveries \
             WHERE status IN ('pending', 'retrying') AND next_attempt_at <= $1",
            args![now],
        )
        .await?;
    Ok(QueueStats {
        waiting,
        oldest_due_at: oldest,
    })
}

// ---- SQL helpers --------------------------------------------------------------

/// A `FROM` item `x` with the named columns of the JSON array bound as $1.
fn json_source(backend: Backend, cols: &[(&str, &str)]) -> String {
    match backend {
        Backend::Sqlite => {
            let list: Vec<String> = cols
                .iter()
                .map(|(c, _)| format!("value ->> '{c}' AS {c}"))
                .collect();
            format!("(SELECT {} FROM json_each($1)) AS x", list.join(", "))
        }
        Backend::Postgres => {
            let typed: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
            format!("json_to_recordset($1::json) AS x({})", typed.join(", "))
        }
    }
}
