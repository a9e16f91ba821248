//! API connectors' polling: a scheduler that polls each due integration
//! (default every 30 minutes, re-reading a trailing window), and "poll now"
//! from the API. A poll streams the report, diffs each row against its
//! stored snapshot, and commits the resulting conversions together with
//! the new snapshots, in chunks, through the conversion writer; so a crash
//! mid-poll re-derives only what was not committed. One chunk is read,
//! diffed and decided while the one before commits.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clicktrail_domain::PropertyId;
use clicktrail_domain::conversion::{SourceEvent, SourceKind};
use clicktrail_domain::mapping::EventMapping;
use clicktrail_networks::incomeaccess::{
    self, IncomeAccessSettings, PollError, ReportRow, RetryPolicy, SecurityKey, Snapshot,
};
use clicktrail_outbound::Outbound;
use clicktrail_store::conversions::Written;
use clicktrail_store::integrations::{self, Integration};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use clicktrail_networks::catalog::Catalog;
use clicktrail_outbound::OutboundPolicy;
use clicktrail_store::Db;
use tokio::sync::Notify;

use crate::commit::CommitFailure;
use crate::conversions::{ConversionQueue, Extra, Pending};
use crate::crypto::Keyring;
use crate::error::{ServiceError, ServiceResult};
use crate::integrations::next_poll;
use crate::properties::Properties;

/// The poller: runs API connectors' polls, on schedule ([`Poller::spawn`])
/// or on demand ([`Poller::poll_now`]).
pub struct Poller {
    db: Db,
    keyring: Keyring,
    catalog: Arc<Catalog>,
    properties: Arc<Properties>,
    conversions: ConversionQueue,
    /// What the connectors' HTTP clients may reach.
    outbound: OutboundPolicy,
    tick: Duration,
    wakeup: Notify,
    /// Who this process's poll claims name (see [`Poller::new`]).
    instance: String,
}

impl std::fmt::Debug for Poller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poller")
            .field("tick", &self.tick)
            .finish_non_exhaustive()
    }
}

impl Poller {
    /// What the connectors may reach: the policy install and edit check
    /// an `api_url` against.
    pub fn policy(&self) -> &OutboundPolicy {
        &self.outbound
    }

    pub fn new(
        db: Db,
        keyring: Keyring,
        properties: Arc<Properties>,
        conversions: ConversionQueue,
        outbound: OutboundPolicy,
        tick: Duration,
        instance: String,
    ) -> Self {
        Self {
            db,
            keyring,
            catalog: properties.catalog().clone(),
            properties,
            conversions,
            outbound,
            tick,
            wakeup: Notify::new(),
            instance,
        }
    }

    /// The owner this process's poll claims carry: an id stable across
    /// restarts of one instance, so [`Poller::release_own_claims`] can
    /// give back what a crash left claimed.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Releases the claims this instance held before it (re)started: a
    /// poll cut short by a crash no longer blocks its integration until
    /// the lease expires. Call it before the scheduler starts.
    pub async fn release_own_claims(&self) -> Result<u64, clicktrail_store::StoreError> {
        let n = integrations::release_polls_of(&self.db, &self.instance).await?;
        if n > 0 {
            tracing::info!(
                claims = n,
                "released poll claims left by this instance's previous run"
            );
        }
        Ok(n)
    }

    /// Makes the scheduler look for due polls now (an integration was
    /// installed, or its settings changed).
    pub fn wake(&self) {
        self.wakeup.notify_one();
    }
}

/// Rows per committed chunk.
const CHUNK_ROWS: usize = 1000;
/// How long a claim lasts unless renewed: a poller that died (on another
/// host, or without restarting) holds its integration this long at most.
const LEASE_MS: i64 = 2 * 60 * 1000;
/// How often a running poll renews its claim (well within [`LEASE_MS`]).
const RENEW_EVERY: Duration = Duration::from_secs(30);

/// What one poll did; stored as the integration's `last_poll_status`
/// (JSON text) and shown as an object by the API.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct PollReport {
    pub status: String,
    pub requests: usize,
    pub rows: u64,
    pub events: u64,
    /// Conversion-log outcomes, by status or error code.
    pub outcomes: HashMap<String, u64>,
    pub duration_ms: u64,
    pub error_code: Option<String>,
    pub error: Option<String>,
}

impl PollReport {
    /// A stored `last_poll_status`, if it is one (a summary written by an
    /// older version that cannot be read gives `None`).
    pub fn from_stored(text: &str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Conversions the poll recorded as validated.
    pub fn validated(&self) -> u64 {
        self.outcomes.get("validated").copied().unwrap_or(0)
    }
}

#[derive(Debug, thiserror::Error)]
enum PollFailure {
    #[error("{0}")]
    Report(#[from] PollError),
    #[error("{0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("the poll's claim was taken over by another process")]
    ClaimLost,
}

impl PollFailure {
    fn code(&self) -> &'static str {
        match self {
            PollFailure::Report(e) => e.code(),
            PollFailure::Config(_) => "invalid_settings",
            PollFailure::Storage(_) => "storage_unavailable",
            PollFailure::ClaimLost => "claim_lost",
        }
    }

    fn message(&self) -> String {
        match self {
            PollFailure::Report(e) => e.message(),
            PollFailure::Config(m) => m.clone(),
            PollFailure::Storage(_) => {
                "clicktrail could not store the poll's results; it will try again".into()
            }
            PollFailure::ClaimLost => {
                "the poll took so long that another process took it over; it stopped".into()
            }
        }
    }
}

/// Runs a poll now (API: `POST /api/v1/integrations/{id}/poll`).
pub async fn poll_now(state: &Poller, integration: &Integration) -> ServiceResult<PollReport> {
    let entry = state.catalog.get(&integration.catalog_key);
    if !entry.is_some_and(crate::integrations::is_polled) {
        return Err(ServiceError::bad_request(
            "not_polled",
            "this integration receives postbacks; it has no reporting API to poll",
        ));
    }
    // A scheduled poll may be running: wait for it (a poll "now" must start
    // after the call), then run ours.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = Utc::now().timestamp_millis();
        if integrations::claim_poll(
            &state.db,
            &integration.id,
            &state.instance,
            now,
            now + LEASE_MS,
        )
        .await?
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(ServiceError::new(
                http::StatusCode::CONFLICT,
                "poll_in_progress",
                "a poll of this integration is already running",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh = integrations::get(&state.db, &integration.id)
        .await?
        .unwrap_or_else(|| integration.clone());
    Ok(run_and_record(state, &fresh).await)
}

async fn run_and_record(state: &Poller, integration: &Integration) -> PollReport {
    let started = Instant::now();
    let mut report = PollReport::default();
    let result = tokio::select! {
        r = run(state, integration, &mut report) => r,
        lost = keep_claim(state, &integration.id) => Err(lost),
    };
    report.duration_ms = started.elapsed().as_millis() as u64;
    let now = Utc::now().timestamp_millis();
    let normal = next_poll(&integration.settings, now);
    let (failures, next) = match &result {
        Ok(()) => {
            report.status = "ok".into();
            (0, normal)
        }
        Err(e) => {
            report.status = "error".into();
            report.error_code = Some(e.code().into());
            report.error = Some(e.message());
            let failures = integration.poll_failures + 1;
            let next = match e {
                PollFailure::Report(pe) => match pe.retry_policy() {
                    RetryPolicy::Backoff => {
                        // 1, 2, 4 ... minutes, never later than the normal
                        // schedule.
                        let backoff = 60_000i64.saturating_mul(1 << failures.clamp(0, 10));
                        (now + backoff).min(normal)
                    }
                    RetryPolicy::OnceAfter(d) if integration.poll_failures == 0 => {
                        now + d.as_millis() as i64
                    }
                    _ => normal,
                },
                PollFailure::Storage(_) | PollFailure::ClaimLost => now + 60_000,
                PollFailure::Config(_) => normal,
            };
            (failures, next)
        }
    };
    let outcome = match &result {
        Ok(()) => "ok",
        Err(e) => e.code(),
    };
    metrics::counter!("clicktrail_polls_total", "connector" => "incomeaccess", "outcome" => outcome).increment(1);
    if let Err(e) = &result {
        tracing::warn!(integration = %integration.id, code = e.code(), "poll failed");
    }
    let summary = serde_json::to_string(&report).unwrap_or_default();
    if let Err(e) = integrations::record_poll(
        &state.db,
        &integration.id,
        &state.instance,
        now,
        &summary,
        report.error_code.as_deref(),
        report.error.as_deref(),
        Some(next),
        failures,
    )
    .await
    {
        tracing::error!(error = %e, integration = %integration.id, "recording a poll failed");
    }
    report
}

/// Renews this instance's claim on an integration while its poll runs;
/// returns only when the claim is lost (it expired and another process
/// took it), which ends the poll: two polls must never overlap.
async fn keep_claim(state: &Poller, integration: &str) -> PollFailure {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let until = Utc::now().timestamp_millis() + LEASE_MS;
        match integrations::renew_poll(&state.db, integration, &state.instance, until).await {
            Ok(true) => {}
            Ok(false) => return PollFailure::ClaimLost,
            // The database is away: the poll's own writes will fail too;
            // try again at the next renewal, the lease still runs.
            Err(e) => tracing::warn!(error = %e, integration, "renewing a poll claim failed"),
        }
    }
}

async fn run(
    state: &Poller,
    integration: &Integration,
    report: &mut PollReport,
) -> Result<(), PollFailure> {
    let settings = IncomeAccessSettings::from_json(
        &serde_json::from_str::<Value>(&integration.settings).unwrap_or(Value::Null),
    )
    .map_err(|e| PollFailure::Config(e.to_string()))?;
    let credentials = match &integration.credentials_enc {
        Some(enc) => state
            .keyring
            .decrypt_json(enc)
            .map_err(|e| PollFailure::Config(e.to_string()))?,
        None => Value::Null,
    };
    let key = credentials
        .get("security_key")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            PollFailure::Config(
                "the security key is missing: enter it in the integration's settings".into(),
            )
        })
        .and_then(|k| SecurityKey::new(k).map_err(|e| PollFailure::Config(e.to_string())))?;
    let mapping: Arc<EventMapping> = Arc::new(
        serde_json::from_str(&integration.event_mapping)
            .map_err(|e| PollFailure::Config(e.to_string()))?,
    );
    let pid = PropertyId::parse(&integration.property_id)
        .map_err(|e| PollFailure::Config(e.to_string()))?;
    let property = state
        .properties
        .get(&pid)
        .await
        .map_err(|e| PollFailure::Storage(e.to_string()))?
        .ok_or_else(|| PollFailure::Config("the integration's property no longer exists".into()))?;
    let integration_arc = Arc::new(integration.clone());
    let policy = state.outbound.clone();
    let outbound = Outbound::new(policy, settings.timeout())
        .map_err(|e| PollFailure::Config(e.to_string()))?;
    let now = Utc::now();
    let cfg = settings.delta_config(now);
    let mut chunks = Chunks {
        state,
        property: &property,
        integration: &integration_arc,
        mapping: &mapping,
        cfg: &cfg,
        in_flight: None,
        committing: HashMap::new(),
    };
    let result = async {
        for req in settings.plan(now.date_naive()) {
            report.requests += 1;
            // Literal addresses never reach the guarded resolver: check first.
            let url = req.url(&key);
            outbound
                .policy()
                .check_url(&url)
                .map_err(|e| PollFailure::Config(e.to_string()))?;
            let mut reader = incomeaccess::open_report(outbound.client(), &req, &key).await?;
            let mut rows: Vec<ReportRow> = Vec::with_capacity(CHUNK_ROWS);
            loop {
                let row = reader.next_row().await?;
                let done = row.is_none();
                if let Some(r) = row {
                    rows.push(r);
                }
                if rows.len() >= CHUNK_ROWS || (done && !rows.is_empty()) {
                    let chunk = std::mem::take(&mut rows);
                    chunks.apply(chunk, report).await?;
                }
                if done {
                    break;
                }
            }
        }
        Ok(())
    }
    .await;
    // Whatever happened, the chunk still being committed is waited for, so
    // the report counts what was recorded.
    let last = chunks.settle(report).await;
    result.and(last)
}

/// A chunk handed to the conversion writer and not yet acknowledged.
type InFlight = JoinHandle<Result<Vec<Written>, CommitFailure>>;

/// Applies a report's rows chunk by chunk, one chunk committing while the
/// next is read and diffed: reading (network, XML) and the writer's
/// commit each take a core.
struct Chunks<'a> {
    state: &'a Poller,
    property: &'a Arc<clicktrail_store::properties::Property>,
    integration: &'a Arc<Integration>,
    mapping: &'a Arc<EventMapping>,
    cfg: &'a incomeaccess::DeltaConfig,
    in_flight: Option<InFlight>,
    /// The new snapshots of the chunk in flight: the stored ones of its
    /// rows may not be committed yet when the next chunk is diffed.
    committing: HashMap<String, Snapshot>,
}

impl Chunks<'_> {
    async fn apply(
        &mut self,
        rows: Vec<ReportRow>,
        report: &mut PollReport,
    ) -> Result<(), PollFailure> {
        report.rows += rows.len() as u64;
        // Stored snapshots are current except for the rows of the chunk in
        // flight (`committing`); `fresh` serves rows that repeat a key
        // within this chunk. Memory stays two chunks' worth whatever the
        // report's size.
        let mut fresh: HashMap<String, Snapshot> = HashMap::new();
        let keys: Vec<String> = rows.iter().filter_map(ReportRow::snapshot_key).collect();
        let stored: HashMap<String, Snapshot> =
            integrations::snapshots(&self.state.db, &self.integration.id, &keys)
                .await
                .map_err(|e| PollFailure::Storage(e.to_string()))?
                .into_iter()
                .filter_map(|(k, v)| serde_json::from_str::<Snapshot>(&v).ok().map(|s| (k, s)))
                .collect();
        let received_at = Utc::now().timestamp_millis();
        let pending = |event: SourceEvent, forced| Pending {
            property: self.property.clone(),
            integration: Some(self.integration.clone()),
            mapping: self.mapping.clone(),
            received_at_ms: received_at,
            event_id: None,
            event,
            forced_error: forced,
            session_id: None,
        };
        let mut items = Vec::new();
        let mut snaps: Vec<(String, String)> = Vec::new();
        for row in &rows {
            let prev = row.snapshot_key().and_then(|k| {
                fresh
                    .get(&k)
                    .or_else(|| self.committing.get(&k))
                    .or_else(|| stored.get(&k))
                    .cloned()
            });
            match incomeaccess::diff(prev.as_ref(), row, self.cfg) {
                Ok(d) => {
                    report.events += d.events.len() as u64;
                    items.extend(d.events.into_iter().map(|e| pending(e, None)));
                    if d.changed {
                        snaps.push((
                            d.key.clone(),
                            serde_json::to_string(&d.snapshot).unwrap_or_else(|_| "{}".into()),
                        ));
                        fresh.insert(d.key, d.snapshot);
                    }
                }
                Err(e) => {
                    let ev = SourceEvent {
                        kind: SourceKind::Api,
                        source_event: "report_row".into(),
                        click_id: row.affcustomid().map(str::to_owned),
                        transaction_id: None,
                        value: None,
                        currency: None,
                        status: Default::default(),
                        occurred_at: None,
                        adjusts: None,
                        raw: row.raw(),
                    };
                    items.push(pending(ev, Some((e.log_code(), e.to_string()))));
                }
            }
        }
        // Decided while the chunk before is still being written (the writer
        // decides again what that write may change).
        let queue = self.state.conversions.clone();
        let decided = queue
            .decide(items)
            .await
            .map_err(|e| PollFailure::Storage(e.to_string()))?;
        // The chunk before must be committed before this one is queued: the
        // two may hold events of one row key, whose order matters.
        self.settle(report).await?;
        if decided.is_empty() && snaps.is_empty() {
            return Ok(());
        }
        self.committing = fresh;
        let extra = Extra::Snapshots {
            integration_id: self.integration.id.clone(),
            rows: snaps,
        };
        self.in_flight = Some(tokio::spawn(async move {
            queue.submit_decided(decided, Some(extra)).await
        }));
        Ok(())
    }

    /// Waits for the chunk in flight, and counts its outcomes.
    async fn settle(&mut self, report: &mut PollReport) -> Result<(), PollFailure> {
        let Some(handle) = self.in_flight.take() else {
            return Ok(());
        };
        let written = handle
            .await
            .map_err(|e| PollFailure::Storage(e.to_string()))?
            .map_err(|e| PollFailure::Storage(e.to_string()))?;
        self.committing.clear();
        for w in written {
            let (status, code) = w.outcome();
            *report
                .outcomes
                .entry(code.unwrap_or(status.as_str()).to_owned())
                .or_default() += 1;
        }
        Ok(())
    }
}

/// The scheduler: polls due integrations every `polling.tick_secs`, or at
/// once when woken (an integration was installed).
pub fn spawn(state: Arc<Poller>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        let tick = state.tick.max(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(tick) => {}
                () = state.wakeup.notified() => {}
            }
            let now = Utc::now().timestamp_millis();
            let due = match integrations::due_for_poll(&state.db, now, 20).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(error = %e, "listing due polls");
                    continue;
                }
            };
            for i in due {
                if cancel.is_cancelled() {
                    break;
                }
                if !state
                    .catalog
                    .get(&i.catalog_key)
                    .is_some_and(crate::integrations::is_polled)
                {
                    continue;
                }
                match integrations::claim_poll(
                    &state.db,
                    &i.id,
                    &state.instance,
                    now,
                    now + LEASE_MS,
                )
                .await
                {
                    Ok(true) => {
                        run_and_record(&state, &i).await;
                    }
                    Ok(false) => {}
                    Err(e) => tracing::error!(error = %e, "claiming a poll"),
                }
            }
        }
    })
}
