//! The ingest write path: one group-committed transaction per batch of
//! collected events. Sessions are decided here (the writer is the one place
//! that sees a visitor's events in order), events and clicks are inserted,
//! and the hourly rollups that the reports read are maintained.
//!
//! The writes of a batch are bulk statements (see [`crate::bulk`]): a
//! handful of statements per batch, not one per row, sent with the commit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock};

use clicktrail_domain::collect::{CollectedEvent, EventName};
use clicktrail_domain::money::Amount;
use clicktrail_domain::session::{self, SessionState};
use serde::Serialize;

use crate::bulk::Bulk;
use crate::{Backend, Db, Result, Tx, WriterConn, args};

/// Where a click record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickOrigin {
    /// An `OutboundClick` from the tag.
    Tag,
    /// A `/go/{property_id}/{slug}` tracked redirect, of this link (the
    /// link list counts its clicks by it).
    Redirect { link_id: Arc<str> },
}

impl ClickOrigin {
    pub fn as_str(&self) -> &'static str {
        match self {
            ClickOrigin::Tag => "tag",
            ClickOrigin::Redirect { .. } => "redirect",
        }
    }

    /// The tracked link a redirect click went through.
    pub fn link_id(&self) -> Option<&str> {
        match self {
            ClickOrigin::Tag => None,
            ClickOrigin::Redirect { link_id } => Some(link_id),
        }
    }
}

/// What a new session would be made of if this event starts one: computed
/// by the caller from the request (user agent, address) and the event (its
/// landing URL and referrer), off the writer's single thread.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SessionSeed {
    pub campaign_hash: Option<String>,
    pub landing_url: String,
    pub landing_page: String,
    pub referrer: Option<String>,
    pub referrer_host: Option<String>,
    pub utm_source: Option<String>,
    pub utm_medium: Option<String>,
    pub utm_campaign: Option<String>,
    pub utm_term: Option<String>,
    pub utm_content: Option<String>,
    pub utm_id: Option<String>,
    pub source: String,
    pub medium: String,
    pub channel: String,
    /// All captured ad click ids, as a JSON object.
    pub click_ids: Option<String>,
    pub gclid: Option<String>,
    pub gbraid: Option<String>,
    pub wbraid: Option<String>,
    pub fbclid: Option<String>,
    pub fbc: Option<String>,
    pub fbp: Option<String>,
    pub ttclid: Option<String>,
    pub ttp: Option<String>,
    pub msclkid: Option<String>,
    pub browser: Option<String>,
    pub browser_version: Option<String>,
    pub os: Option<String>,
    pub os_version: Option<String>,
    pub device: String,
    pub is_bot: bool,
    pub user_agent: Option<String>,
    /// The address in its stored form (truncated, hashed or encrypted per
    /// the property's setting), never raw.
    pub ip: Option<String>,
}

/// One event to write.
#[derive(Debug, Clone)]
pub struct IngestEvent {
    pub property_id: String,
    pub received_at_ms: i64,
    pub session_timeout_ms: i64,
    pub event: CollectedEvent,
    pub seed: Arc<SessionSeed>,
    pub click_origin: ClickOrigin,
    /// For a conversion attempt (a custom conversion event), the
    /// collector's verdict: `ok`, or the refusal's code. `None` otherwise.
    pub onsite: Option<&'static str>,
}

/// What happened to one event of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventOutcome {
    /// False when the event was already stored (a retried beacon).
    pub inserted: bool,
    pub session_id: i64,
    pub new_session: bool,
}

/// The report dimensions of a session, kept with the cached session so a
/// continuing session's events count under its landing's source.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionDims {
    channel: String,
    source_medium: String,
    campaign: String,
    ad: String,
    landing_page: String,
    is_bot: bool,
}

impl SessionDims {
    fn of_seed(seed: &SessionSeed) -> Self {
        Self::new(
            &seed.channel,
            &seed.source,
            &seed.medium,
            seed.utm_campaign.as_deref(),
            seed.utm_content.as_deref(),
            &seed.landing_page,
            seed.is_bot,
        )
    }

    fn new(
        channel: &str,
        source: &str,
        medium: &str,
        campaign: Option<&str>,
        ad: Option<&str>,
        landing_page: &str,
        is_bot: bool,
    ) -> Self {
        Self {
            channel: channel.to_owned(),
            source_medium: format!("{source} / {medium}"),
            campaign: campaign.unwrap_or("(not set)").to_owned(),
            ad: ad.unwrap_or("(not set)").to_owned(),
            landing_page: landing_page.to_owned(),
            is_bot,
        }
    }

    fn pairs(&self) -> [(&'static str, &str); 6] {
        [
            ("total", ""),
            ("channel", &self.channel),
            ("source_medium", &self.source_medium),
            ("campaign", &self.campaign),
            ("ad", &self.ad),
            ("landing_page", &self.landing_page),
        ]
    }
}

#[derive(Debug, Clone)]
struct CachedSession {
    id: i64,
    state: SessionState,
    dims: Arc<SessionDims>,
}

/// The writer's state: a cache of visitors' current sessions (SQLite only,
/// where this process is the only writer) and the session id allocator.
#[derive(Debug)]
pub struct Ingestor {
    backend: Backend,
    cache: HashMap<(String, String), CachedSession>,
    /// The generation before `cache` (see `apply_cache`).
    previous: HashMap<(String, String), CachedSession>,
    /// Both generations together hold at most about this many visitors.
    cache_capacity: usize,
    next_session_id: Option<i64>,
    /// The writer's own connection (see [`WriterConn`]).
    conn: Option<WriterConn>,
}

#[derive(Serialize)]
struct SessionInsert<'a> {
    id: i64,
    property_id: &'a str,
    visitor_id: &'a str,
    started_at: i64,
    last_seen_at: i64,
    session_hint: Option<&'a str>,
    pageviews: i64,
    events: i64,
    em_hash: Option<&'a str>,
    ph_hash: Option<&'a str>,
    /// `Consent::code` of the event that started the session.
    consent: Option<String>,
    #[serde(flatten)]
    seed: &'a SessionSeed,
}

#[derive(Serialize)]
struct SessionUpdate<'a> {
    id: i64,
    last_seen_at: i64,
    pageviews: i64,
    events: i64,
    fbp: Option<&'a str>,
    fbc: Option<&'a str>,
    ttp: Option<&'a str>,
    em_hash: Option<&'a str>,
    ph_hash: Option<&'a str>,
    /// The latest known consent of the session's events in this batch.
    consent: Option<String>,
}

#[derive(Serialize)]
struct EventInsert<'a> {
    property_id: &'a str,
    event_id: &'a str,
    name: &'a str,
    ts: i64,
    client_ts: i64,
    session_id: i64,
    visitor_id: &'a str,
    url: &'a str,
    title: Option<&'a str>,
    pageview_id: Option<&'a str>,
    click_id: Option<&'a str>,
    link_url: Option<&'a str>,
    link_group: Option<&'a str>,
    value_micros: Option<i64>,
    currency: Option<&'a str>,
    props: Option<String>,
    onsite: Option<&'static str>,
}

#[derive(Serialize)]
struct ClickInsert<'a> {
    property_id: &'a str,
    click_id: &'a str,
    origin: &'a str,
    ts: i64,
    session_id: i64,
    visitor_id: &'a str,
    event_id: Option<&'a str>,
    pageview_id: Option<&'a str>,
    page_url: Option<&'a str>,
    link_url: Option<&'a str>,
    link_group: Option<&'a str>,
    link_text: Option<&'a str>,
    link_id: Option<&'a str>,
    /// `Consent::code` of the click's event.
    consent: Option<String>,
}

#[derive(Serialize)]
struct RollupRow<'a> {
    property_id: &'a str,
    hour: i64,
    dim: &'static str,
    key: String,
    is_bot: bool,
    visits: i64,
    pageviews: i64,
    clicks: i64,
}

/// Column lists of the bulk inserts, with PostgreSQL types; the SQL for
/// both backends is generated from them once.
const SESSION_COLS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("property_id", "text"),
    ("visitor_id", "text"),
    ("started_at", "bigint"),
    ("last_seen_at", "bigint"),
    ("campaign_hash", "text"),
    ("session_hint", "text"),
    ("landing_url", "text"),
    ("landing_page", "text"),
    ("referrer", "text"),
    ("referrer_host", "text"),
    ("utm_source", "text"),
    ("utm_medium", "text"),
    ("utm_campaign", "text"),
    ("utm_term", "text"),
    ("utm_content", "text"),
    ("utm_id", "text"),
    ("source", "text"),
    ("medium", "text"),
    ("channel", "text"),
    ("click_ids", "text"),
    ("gclid", "text"),
    ("gbraid", "text"),
    ("wbraid", "text"),
    ("fbclid", "text"),
    ("fbc", "text"),
    ("fbp", "text"),
    ("ttclid", "text"),
    ("ttp", "text"),
    ("msclkid", "text"),
    ("browser", "text"),
    ("browser_version", "text"),
    ("os", "text"),
    ("os_version", "text"),
    ("device", "text"),
    ("is_bot", "boolean"),
    ("user_agent", "text"),
    ("ip", "text"),
    ("em_hash", "text"),
    ("ph_hash", "text"),
    ("consent", "text"),
    ("pageviews", "bigint"),
    ("events", "bigint"),
];

const EVENT_COLS: &[(&str, &str)] = &[
    ("property_id", "text"),
    ("event_id", "text"),
    ("name", "text"),
    ("ts", "bigint"),
    ("client_ts", "bigint"),
    ("session_id", "bigint"),
    ("visitor_id", "text"),
    ("url", "text"),
    ("title", "text"),
    ("pageview_id", "text"),
    ("click_id", "text"),
    ("link_url", "text"),
    ("link_group", "text"),
    ("value_micros", "bigint"),
    ("currency", "text"),
    ("props", "text"),
    ("onsite", "text"),
];

const CLICK_COLS: &[(&str, &str)] = &[
    ("property_id", "text"),
    ("click_id", "text"),
    ("origin", "text"),
    ("ts", "bigint"),
    ("session_id", "bigint"),
    ("visitor_id", "text"),
    ("event_id", "text"),
    ("pageview_id", "text"),
    ("page_url", "text"),
    ("link_url", "text"),
    ("link_group", "text"),
    ("link_text", "text"),
    ("link_id", "text"),
    ("consent", "text"),
];

const ROLLUP_COLS: &[(&str, &str)] = &[
    ("property_id", "text"),
    ("hour", "bigint"),
    ("dim", "text"),
    ("key", "text"),
    ("is_bot", "boolean"),
    ("visits", "bigint"),
    ("pageviews", "bigint"),
    ("clicks", "bigint"),
];

const SESSION_UPDATE_COLS: &[(&str, &str)] = &[
    ("id", "bigint"),
    ("last_seen_at", "bigint"),
    ("pageviews", "bigint"),
    ("events", "bigint"),
    ("fbp", "text"),
    ("fbc", "text"),
    ("ttp", "text"),
    ("em_hash", "text"),
    ("ph_hash", "text"),
    ("consent", "text"),
];

/// The bulk statements of the write path (the same for both backends; see
/// [`Bulk`]).
struct BulkStatements {
    insert_sessions: Bulk,
    update_sessions: Bulk,
    insert_events: Bulk,
    insert_clicks: Bulk,
    upsert_rollups: Bulk,
}

static BULK: LazyLock<BulkStatements> = LazyLock::new(|| {
    let set = "last_seen_at = {max}(sessions.last_seen_at, x.last_seen_at), \
         pageviews = sessions.pageviews + x.pageviews, events = sessions.events + x.events, \
         fbp = COALESCE(x.fbp, sessions.fbp), fbc = COALESCE(x.fbc, sessions.fbc), \
         ttp = COALESCE(x.ttp, sessions.ttp), em_hash = COALESCE(x.em_hash, sessions.em_hash), \
         ph_hash = COALESCE(x.ph_hash, sessions.ph_hash), \
         consent = COALESCE(x.consent, sessions.consent)";
    BulkStatements {
        insert_sessions: Bulk::insert("sessions", SESSION_COLS, ""),
        update_sessions: Bulk::with_rows(
            SESSION_UPDATE_COLS,
            &format!(
                "UPDATE sessions SET {} FROM x WHERE sessions.id = x.id",
                set.replace("{max}", "MAX")
            ),
            &format!(
                "UPDATE sessions SET {} FROM {{rows}} WHERE sessions.id = x.id",
                set.replace("{max}", "GREATEST")
            ),
        ),
        insert_events: Bulk::insert(
            "events",
            EVENT_COLS,
            "ON CONFLICT (property_id, event_id) DO NOTHING",
        ),
        insert_clicks: Bulk::insert(
            "clicks",
            CLICK_COLS,
            "ON CONFLICT (property_id, click_id) DO NOTHING",
        ),
        upsert_rollups: Bulk::insert(
            "rollup_hourly",
            ROLLUP_COLS,
            "ON CONFLICT (property_id, dim, hour, key, is_bot) DO UPDATE SET \
             visits = rollup_hourly.visits + excluded.visits, \
             pageviews = rollup_hourly.pageviews + excluded.pageviews, \
             clicks = rollup_hourly.clicks + excluded.clicks",
        ),
    }
});

/// The lookups of the write path, per backend.
struct Statements {
    existing_events: String,
    latest_sessions: String,
}

fn statements(backend: Backend) -> Statements {
    let json_text_elems = crate::json_list(backend, 2);
    Statements {
        existing_events: format!(
            "SELECT event_id FROM events WHERE property_id = $1 AND event_id IN ({json_text_elems})"
        ),
        latest_sessions: format!(
            "SELECT s.visitor_id, s.id, s.started_at, s.last_seen_at, s.campaign_hash, s.channel, s.source, \
             s.medium, s.utm_campaign, s.utm_content, s.landing_page, s.is_bot FROM sessions s \
             JOIN (SELECT visitor_id, MAX(id) AS id FROM sessions \
                   WHERE property_id = $1 AND visitor_id IN ({json_text_elems}) GROUP BY visitor_id) m \
             ON s.id = m.id"
        ),
    }
}

static SQLITE_STATEMENTS: LazyLock<Statements> = LazyLock::new(|| statements(Backend::Sqlite));
static POSTGRES_STATEMENTS: LazyLock<Statements> = LazyLock::new(|| statements(Backend::Postgres));

fn stmts(backend: Backend) -> &'static Statements {
    match backend {
        Backend::Sqlite => &SQLITE_STATEMENTS,
        Backend::Postgres => &POSTGRES_STATEMENTS,
    }
}

fn link_host(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "(unknown)".into())
}

/// Frees a dropped cache generation on a thread of its own: freeing tens
/// of thousands of entries took the writer 50 ms, and every request of the
/// next batch waited for it.
fn drop_elsewhere<T: Send + 'static>(value: T) {
    // Without a thread, the closure and the value in it drop right here.
    let _ = std::thread::Builder::new()
        .name("cache-drop".into())
        .spawn(move || drop(value));
}

impl Ingestor {
    pub fn new(backend: Backend) -> Self {
        Self {
            backend,
            cache: HashMap::new(),
            previous: HashMap::new(),
            cache_capacity: 50_000,
            next_session_id: None,
            conn: None,
        }
    }

    /// An ingestor whose session cache holds about `capacity` visitors.
    pub fn with_cache_capacity(backend: Backend, capacity: usize) -> Self {
        Self {
            cache_capacity: capacity.max(2),
            ..Self::new(backend)
        }
    }

    /// Number of visitors whose session is cached.
    pub fn cached_sessions(&self) -> usize {
        self.cache.len() + self.previous.len()
    }

    /// Writes a batch in one transaction and returns one outcome per event,
    /// in order. On error nothing is written and the cache is unchanged.
    ///
    /// On SQLite the work is synchronous, on a connection of the writer's
    /// own (see [`WriterConn`]): call it from a thread that may block.
    pub async fn write(&mut self, db: &Db, batch: &[IngestEvent]) -> Result<Vec<EventOutcome>> {
        let result = self.write_on_own_conn(db, batch).await;
        if result.is_err() {
            // The allocator may have handed out ids of rolled-back sessions;
            // re-read it next time.
            self.next_session_id = None;
        }
        result
    }

    /// Upkeep between batches, after their requests were answered: on
    /// SQLite, restarts a grown WAL (see
    /// [`WriterConn::restart_wal_if_large`]). A failure is only logged:
    /// it costs a bigger WAL, nothing committed.
    pub fn maintain(&mut self) {
        if let Some(w) = self.conn.as_mut() {
            let t = std::time::Instant::now();
            match w.restart_wal_if_large() {
                Ok(true) => phase("wal_restart", t),
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "restarting the WAL failed"),
            }
        }
    }

    async fn write_on_own_conn(
        &mut self,
        db: &Db,
        batch: &[IngestEvent],
    ) -> Result<Vec<EventOutcome>> {
        let mut w = match self.conn.take() {
            Some(w) => w,
            None => db.dedicated_writer()?,
        };
        let t = std::time::Instant::now();
        let result = match w.begin().await {
            Ok(tx) => {
                phase("begin", t);
                self.write_with(tx, batch).await
            }
            Err(e) => Err(e),
        };
        // A connection left in a transaction (its rollback failed) is
        // dropped, which rolls back; the next batch opens another.
        if result.is_ok() || w.is_reusable() {
            self.conn = Some(w);
        }
        result
    }

    /// The batch in `tx`, committed; on error `tx` is dropped unfinished,
    /// which rolls it back.
    async fn write_with(
        &mut self,
        mut tx: Tx<'_>,
        batch: &[IngestEvent],
    ) -> Result<Vec<EventOutcome>> {
        let (outcomes, staged, rows) = self.write_in(&mut tx, batch).await?;
        let t = std::time::Instant::now();
        rows.write(&mut tx).await?;
        tx.commit().await?;
        phase("write_commit", t);
        self.apply_cache(staged);
        Ok(outcomes)
    }

    fn apply_cache(&mut self, staged: HashMap<(String, String), CachedSession>) {
        if self.backend != Backend::Sqlite {
            return;
        }
        self.cache.extend(staged);
        if self.cache.len() >= self.cache_capacity / 2 {
            // Two generations: the full one becomes the previous one, and
            // the one before goes. Sessions are re-read from the database on
            // a miss, so dropping entries is only a cost, never a
            // correctness problem; visitors still active are found in the
            // previous generation and carried into the current one.
            let full = std::mem::take(&mut self.cache);
            let old = std::mem::replace(&mut self.previous, full);
            drop_elsewhere(old);
        }
    }

    async fn allocate_session_ids(&mut self, tx: &mut Tx<'_>, n: usize) -> Result<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let next = match self.next_session_id {
            Some(n) => n,
            None => match tx.direct() {
                Some(w) => {
                    let max: Option<i64> =
                        w.conn()
                            .query_row("SELECT MAX(id) FROM sessions", [], |r| r.get(0))?;
                    max.unwrap_or(0) + 1
                }
                None => {
                    let rows: Vec<(i64,)> = tx
                        .fetch_all(
                            "SELECT nextval('sessions_id_seq') FROM generate_series(1, $1)",
                            args![n as i64],
                        )
                        .await?;
                    return Ok(rows.into_iter().map(|r| r.0).collect());
                }
            },
        };
        // Only the SQLite writer, the one writer of its database, numbers
        // sessions itself.
        self.next_session_id = Some(next + n as i64);
        Ok((next..next + n as i64).collect())
    }

    async fn write_in<'b>(
        &mut self,
        tx: &mut Tx<'_>,
        batch: &'b [IngestEvent],
    ) -> Result<(
        Vec<EventOutcome>,
        HashMap<(String, String), CachedSession>,
        Rows<'b>,
    )> {
        let t0 = std::time::Instant::now();
        // 1. Drop events already stored (retried beacons) and repeats within
        //    the batch, so that only new events move sessions and counters.
        let mut by_property: HashMap<&str, Vec<&str>> = HashMap::new();
        for e in batch {
            by_property
                .entry(&e.property_id)
                .or_default()
                .push(e.event.event_id.as_str());
        }
        let mut existing: HashSet<(String, String)> = HashSet::new();
        for (pid, ids) in &by_property {
            let found = existing_events(tx, pid, ids).await?;
            existing.extend(found.into_iter().map(|id| ((*pid).to_owned(), id)));
        }
        let mut seen_in_batch: HashSet<(&str, &str)> = HashSet::new();
        let fresh: Vec<bool> = batch
            .iter()
            .map(|e| {
                let key = (e.property_id.as_str(), e.event.event_id.as_str());
                !existing.contains(&(key.0.to_owned(), key.1.to_owned()))
                    && seen_in_batch.insert(key)
            })
            .collect();

        phase("existing_events", t0);
        let t0 = std::time::Instant::now();
        // 2. Current sessions of the batch's visitors: from the cache, else
        //    one query per property.
        let mut staged: HashMap<(String, String), CachedSession> = HashMap::new();
        let mut misses: HashMap<&str, Vec<&str>> = HashMap::new();
        for (e, &is_new) in batch.iter().zip(&fresh) {
            if !is_new {
                continue;
            }
            let key = (
                e.property_id.clone(),
                e.event.visitor_id.as_str().to_owned(),
            );
            if staged.contains_key(&key) {
                continue;
            }
            if let Some(c) = self.cache.get(&key).or_else(|| self.previous.get(&key)) {
                staged.insert(key, c.clone());
            } else {
                let v = misses.entry(&e.property_id).or_default();
                if !v.contains(&e.event.visitor_id.as_str()) {
                    v.push(e.event.visitor_id.as_str());
                }
            }
        }
        for (pid, visitors) in misses {
            let rows = latest_sessions(tx, pid, &visitors).await?;
            for r in rows {
                let dims = SessionDims::new(
                    &r.channel,
                    &r.source,
                    &r.medium,
                    r.utm_campaign.as_deref(),
                    r.utm_content.as_deref(),
                    &r.landing_page,
                    r.is_bot,
                );
                staged.insert(
                    (pid.to_owned(), r.visitor_id),
                    CachedSession {
                        id: r.id,
                        state: SessionState {
                            started_at_ms: r.started_at,
                            last_seen_ms: r.last_seen_at,
                            campaign_key: r.campaign_hash,
                        },
                        dims: Arc::new(dims),
                    },
                );
            }
        }

        phase("latest_sessions", t0);
        let t0 = std::time::Instant::now();
        // 3. Decide each event's session. New sessions are numbered by
        //    their index until ids are allocated.
        let mut assigned: Vec<Option<Assigned>> = Vec::with_capacity(batch.len());
        let mut new_sessions: Vec<(usize, SessionState)> = Vec::new();
        let mut current: HashMap<(String, String), (Assigned, SessionState, Arc<SessionDims>)> =
            HashMap::new();
        for (key, c) in staged {
            current.insert(key, (Assigned::Existing(c.id), c.state, c.dims));
        }
        for (i, (e, &is_new)) in batch.iter().zip(&fresh).enumerate() {
            if !is_new {
                assigned.push(None);
                continue;
            }
            let key = (
                e.property_id.clone(),
                e.event.visitor_id.as_str().to_owned(),
            );
            let prev = current.get(&key);
            let (state, started) = session::advance(
                prev.map(|(_, s, _)| s),
                e.received_at_ms,
                e.session_timeout_ms,
                e.seed.campaign_hash.as_deref(),
            );
            let (a, dims) = match prev {
                Some((a, _, dims)) if !started => (*a, dims.clone()),
                _ => {
                    new_sessions.push((i, state.clone()));
                    (
                        Assigned::New(new_sessions.len() - 1),
                        Arc::new(SessionDims::of_seed(&e.seed)),
                    )
                }
            };
            current.insert(key, (a, state, dims.clone()));
            assigned.push(Some(a));
        }
        let ids = self.allocate_session_ids(tx, new_sessions.len()).await?;
        let session_id_of = |a: Assigned| match a {
            Assigned::Existing(id) => id,
            Assigned::New(n) => ids[n],
        };
        // Each fresh event's session dims, in batch order.
        let mut event_dims: Vec<Option<Arc<SessionDims>>> = vec![None; batch.len()];
        {
            let mut replay: HashMap<(&str, &str), Arc<SessionDims>> = HashMap::new();
            let new_at: HashSet<usize> = new_sessions.iter().map(|(i, _)| *i).collect();
            for (i, e) in batch.iter().enumerate() {
                if assigned[i].is_none() {
                    continue;
                }
                let key = (e.property_id.as_str(), e.event.visitor_id.as_str());
                let d = if new_at.contains(&i) {
                    let d = Arc::new(SessionDims::of_seed(&e.seed));
                    replay.insert(key, d.clone());
                    d
                } else if let Some(d) = replay.get(&key) {
                    d.clone()
                } else {
                    // Continuing a session from before this batch.
                    current
                        .get(&(key.0.to_owned(), key.1.to_owned()))
                        .map(|(_, _, d)| d.clone())
                        .unwrap_or_else(|| Arc::new(SessionDims::of_seed(&e.seed)))
                };
                event_dims[i] = Some(d);
            }
        }

        // 4. Rows.
        let mut session_rows: Vec<SessionInsert<'_>> = Vec::with_capacity(new_sessions.len());
        for (n, (i, state)) in new_sessions.iter().enumerate() {
            let e = &batch[*i];
            session_rows.push(SessionInsert {
                id: ids[n],
                property_id: &e.property_id,
                visitor_id: e.event.visitor_id.as_str(),
                started_at: state.started_at_ms,
                last_seen_at: state.last_seen_ms,
                session_hint: e.event.session_hint.as_deref(),
                pageviews: 0,
                events: 0,
                em_hash: e.event.user.em.as_deref(),
                ph_hash: e.event.user.ph.as_deref(),
                consent: e.event.consent.code(),
                seed: &e.seed,
            });
        }
        let mut updates: HashMap<i64, SessionUpdate<'_>> = HashMap::new();
        let mut event_rows = Vec::new();
        let mut click_rows = Vec::new();
        let mut rollups: HashMap<RollupKey<'_>, (i64, i64, i64)> = HashMap::new();
        let mut outcomes = Vec::with_capacity(batch.len());
        let new_session_index: HashMap<usize, usize> = new_sessions
            .iter()
            .enumerate()
            .map(|(n, (i, _))| (*i, n))
            .collect();
        for (i, e) in batch.iter().enumerate() {
            let Some(a) = assigned[i] else {
                outcomes.push(EventOutcome {
                    inserted: false,
                    session_id: 0,
                    new_session: false,
                });
                continue;
            };
            let sid = session_id_of(a);
            let ev = &e.event;
            let is_pageview = ev.name == EventName::PageView;
            let u = updates.entry(sid).or_insert_with(|| SessionUpdate {
                id: sid,
                last_seen_at: e.received_at_ms,
                pageviews: 0,
                events: 0,
                fbp: None,
                fbc: None,
                ttp: None,
                em_hash: None,
                ph_hash: None,
                consent: None,
            });
            u.last_seen_at = u.last_seen_at.max(e.received_at_ms);
            u.events += 1;
            u.pageviews += i64::from(is_pageview);
            u.fbp = ev.cookies.fbp.as_deref().or(u.fbp);
            u.fbc = ev.cookies.fbc.as_deref().or(u.fbc);
            u.ttp = ev.cookies.ttp.as_deref().or(u.ttp);
            u.em_hash = ev.user.em.as_deref().or(u.em_hash);
            u.ph_hash = ev.user.ph.as_deref().or(u.ph_hash);
            // Batch order is arrival order: the last known consent wins.
            if let Some(code) = ev.consent.code() {
                u.consent = Some(code);
            }
            let new_session = new_session_index.contains_key(&i);
            outcomes.push(EventOutcome {
                inserted: true,
                session_id: sid,
                new_session,
            });
            event_rows.push(EventInsert {
                property_id: &e.property_id,
                event_id: ev.event_id.as_str(),
                name: ev.name.as_str(),
                ts: e.received_at_ms,
                client_ts: ev.client_ts_ms,
                session_id: sid,
                visitor_id: ev.visitor_id.as_str(),
                url: ev.url.as_str(),
                title: ev.title.as_deref(),
                pageview_id: ev.pageview_id.as_ref().map(|p| p.as_str()),
                click_id: ev.click_id.as_ref().map(|c| c.as_str()),
                link_url: ev.link.as_ref().map(|l| l.url.as_str()),
                link_group: ev.link.as_ref().and_then(|l| l.tracking_group.as_deref()),
                value_micros: ev.value.map(Amount::micros),
                currency: ev.currency.as_ref().map(|c| c.as_str()),
                props: ev
                    .props
                    .as_ref()
                    .map(|p| serde_json::Value::Object(p.clone()).to_string()),
                onsite: e.onsite,
            });
            let is_click = ev.name == EventName::OutboundClick;
            if is_click && let (Some(cid), Some(link)) = (&ev.click_id, &ev.link) {
                {
                    click_rows.push(ClickInsert {
                        property_id: &e.property_id,
                        click_id: cid.as_str(),
                        origin: e.click_origin.as_str(),
                        ts: e.received_at_ms,
                        session_id: sid,
                        visitor_id: ev.visitor_id.as_str(),
                        event_id: Some(ev.event_id.as_str()),
                        pageview_id: ev.pageview_id.as_ref().map(|p| p.as_str()),
                        page_url: Some(ev.url.as_str()),
                        link_url: Some(link.url.as_str()),
                        link_group: link.tracking_group.as_deref(),
                        link_text: link.text.as_deref(),
                        link_id: e.click_origin.link_id(),
                        consent: ev.consent.code(),
                    });
                }
            }
            // Rollups count under the session's traffic source (its
            // landing), not this event's page.
            let hour = e.received_at_ms.div_euclid(3_600_000);
            let dims = event_dims[i]
                .clone()
                .unwrap_or_else(|| Arc::new(SessionDims::of_seed(&e.seed)));
            let bot = dims.is_bot;
            if new_session || is_pageview || is_click {
                for (dim, key) in dims.pairs() {
                    let c = rollups
                        .entry((&e.property_id, hour, dim, key.to_owned(), bot))
                        .or_default();
                    c.0 += i64::from(new_session);
                    c.1 += i64::from(is_pageview);
                    c.2 += i64::from(is_click);
                }
            }
            if is_click && let Some(link) = &ev.link {
                {
                    let group = link
                        .tracking_group
                        .clone()
                        .unwrap_or_else(|| "(none)".into());
                    rollups
                        .entry((&e.property_id, hour, "integration", group, bot))
                        .or_default()
                        .2 += 1;
                    rollups
                        .entry((&e.property_id, hour, "offer", link_host(&link.url), bot))
                        .or_default()
                        .2 += 1;
                }
            }
        }

        phase("decide_and_build", t0);
        // 5. The writes, run with the commit.
        // By id: concurrent writers (PostgreSQL) lock sessions in one order.
        let mut update_rows: Vec<SessionUpdate<'b>> = updates.into_values().collect();
        update_rows.sort_unstable_by_key(|u| u.id);
        // Sorted: concurrent writers (PostgreSQL) then lock shared rollup
        // rows in one order, so they wait for each other instead of
        // deadlocking.
        let mut rollups: Vec<_> = rollups.into_iter().collect();
        rollups.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let rollup_rows: Vec<RollupRow<'_>> = rollups
            .into_iter()
            .map(
                |((property_id, hour, dim, key, is_bot), (visits, pageviews, clicks))| RollupRow {
                    property_id,
                    hour,
                    dim,
                    key,
                    is_bot,
                    visits,
                    pageviews,
                    clicks,
                },
            )
            .collect();
        let rows = Rows {
            sessions: session_rows,
            updates: update_rows,
            events: event_rows,
            clicks: click_rows,
            rollups: rollup_rows,
        };

        // 6. The cache after commit: each visitor's current session.
        let mut after: HashMap<(String, String), CachedSession> = HashMap::new();
        for (key, (a, state, dims)) in current {
            after.insert(
                key,
                CachedSession {
                    id: session_id_of(a),
                    state,
                    dims,
                },
            );
        }
        Ok((outcomes, after, rows))
    }
}

/// The rows one batch writes.
struct Rows<'b> {
    sessions: Vec<SessionInsert<'b>>,
    updates: Vec<SessionUpdate<'b>>,
    events: Vec<EventInsert<'b>>,
    clicks: Vec<ClickInsert<'b>>,
    rollups: Vec<RollupRow<'b>>,
}

impl Rows<'_> {
    async fn write(&self, tx: &mut Tx<'_>) -> Result<()> {
        BULK.insert_sessions.execute(tx, &self.sessions).await?;
        BULK.update_sessions.execute(tx, &self.updates).await?;
        // Step 1 left out stored events, and this transaction holds the
        // write lock (SQLite) or the events' unique index arbitrates
        // (PostgreSQL with several servers: such a row is stored once;
        // only this batch's counters may count it again).
        BULK.insert_events.execute(tx, &self.events).await?;
        BULK.insert_clicks.execute(tx, &self.clicks).await?;
        BULK.upsert_rollups.execute(tx, &self.rollups).await?;
        Ok(())
    }
}

/// SQLite, one visitor or event at a time on the direct connection: point
/// lookups in the unique indexes, each a cached statement.
const DIRECT_EVENT_EXISTS: &str = "SELECT 1 FROM events WHERE property_id = ?1 AND event_id = ?2";
const DIRECT_LATEST_SESSION: &str = "SELECT visitor_id, id, started_at, last_seen_at, \
     campaign_hash, channel, source, medium, utm_campaign, utm_content, landing_page, is_bot \
     FROM sessions WHERE property_id = ?1 AND visitor_id = ?2 ORDER BY id DESC LIMIT 1";

/// Which of `ids` are stored already.
async fn existing_events(tx: &mut Tx<'_>, pid: &str, ids: &[&str]) -> Result<Vec<String>> {
    if let Some(w) = tx.direct() {
        let mut stmt = w.conn().prepare_cached(DIRECT_EVENT_EXISTS)?;
        let mut found = Vec::new();
        for id in ids {
            if stmt.exists((pid, id))? {
                found.push((*id).to_owned());
            }
        }
        return Ok(found);
    }
    let st = stmts(tx.backend());
    let rows: Vec<(String,)> = tx
        .fetch_all(&st.existing_events, args![pid, crate::to_json(ids)?])
        .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// The newest session of each of `visitors` that has one.
async fn latest_sessions(
    tx: &mut Tx<'_>,
    pid: &str,
    visitors: &[&str],
) -> Result<Vec<LatestSession>> {
    if let Some(w) = tx.direct() {
        let mut out = Vec::with_capacity(visitors.len());
        for v in visitors {
            out.extend(w.query_params::<LatestSession>(DIRECT_LATEST_SESSION, (pid, v), 1)?);
        }
        return Ok(out);
    }
    let st = stmts(tx.backend());
    tx.fetch_all(&st.latest_sessions, args![pid, crate::to_json(visitors)?])
        .await
}

/// (property, hour, dimension, key, bot) of a traffic rollup row.
type RollupKey<'a> = (&'a str, i64, &'static str, String, bool);

#[derive(Debug, Clone, Copy)]
enum Assigned {
    Existing(i64),
    New(usize),
}

#[derive(serde::Deserialize, sqlx::FromRow)]
struct LatestSession {
    visitor_id: String,
    id: i64,
    started_at: i64,
    last_seen_at: i64,
    campaign_hash: Option<String>,
    channel: String,
    source: String,
    medium: String,
    utm_campaign: Option<String>,
    utm_content: Option<String>,
    landing_page: String,
    is_bot: bool,
}

/// Time spent in one phase of a batch write (`clicktrail_ingest_phase_seconds`).
fn phase(name: &'static str, since: std::time::Instant) {
    metrics::histogram!("clicktrail_ingest_phase_seconds", "phase" => name)
        .record(since.elapsed().as_secs_f64());
}
