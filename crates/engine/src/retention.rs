//! The retention job: what makes "data that lives for years" bounded.
//!
//! Once per `retention.interval_hours` (daily), claimed through the
//! database so one process runs it however many share it
//! (`maintenance_jobs`, the way poll claims work), it:
//!
//! 1. purges the deleted properties whose grace period ended: every row
//!    they own, table by table, children first;
//! 2. finishes the conversion-log purges asked for with deleted
//!    integrations (`DELETE ...?purge=true`) that the request did not;
//! 3. for each live property, deletes the raw events older than its
//!    retention, then the clicks and sessions older than theirs
//!    ([`PropertySettings::retention`]);
//! 4. clears the encrypted client addresses (`ip_handling = encrypt`) once
//!    the attribution window has passed.
//!
//! Every step deletes in batches of `retention.batch_rows` with a pause of
//! `retention.batch_pause_ms` between them, so the ingest writer (on
//! SQLite the only writer) is never held up for long. The job is
//! idempotent: a run cut short (a crash, a shutdown, a lost lease) leaves
//! the rest to the next. [`Retention::run_once`] is one pass at a given
//! time, without claim or schedule: tests drive the job through it.
//!
//! Counted in `clicktrail_retention_deleted_total{table}` (rows deleted, or
//! `sessions.ip` cleared).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clicktrail_domain::PropertyId;
use clicktrail_domain::property::{PropertySettings, Retention as Kept};
use clicktrail_store::retention::{self as store, Batch};
use clicktrail_store::{Db, StoreError, integrations, properties};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;

/// The job's name in `maintenance_jobs`.
pub const JOB: &str = "retention";

/// How long a claim holds without renewal; renewed every third of it while
/// the job runs.
const LEASE_MS: i64 = 10 * 60 * 1000;

/// How often a process looks whether the job is due.
const CHECK_EVERY: Duration = Duration::from_secs(10 * 60);

/// Why a run stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("another process took the job over (the lease expired)")]
    LeaseLost,
    #[error("shutting down")]
    Cancelled,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Deleted properties purged (gone for good).
    pub purged_properties: Vec<String>,
    /// Integrations whose conversion log purge was completed.
    pub purged_logs: Vec<String>,
    /// Rows touched by table (`sessions.ip` for cleared addresses).
    pub rows: BTreeMap<String, u64>,
    /// Batches run (each one statement).
    pub batches: u64,
}

impl RunReport {
    /// Rows touched in `table` (see [`RunReport::rows`]).
    pub fn rows_of(&self, table: &str) -> u64 {
        self.rows.get(table).copied().unwrap_or(0)
    }
}

/// The retention job and the batched deletes it shares with the services
/// (a property's purge, an integration's log purge).
#[derive(Debug)]
pub struct Retention {
    db: Db,
    cfg: RetentionConfig,
    /// This process's id in job claims.
    instance: String,
}

/// The claim held while a scheduled run works.
struct Lease<'a> {
    owner: &'a str,
    renewed: Instant,
}

/// What a run may be stopped by.
struct Guard<'a> {
    lease: Option<Lease<'a>>,
    cancel: &'a CancellationToken,
}

impl Retention {
    pub fn new(db: Db, cfg: RetentionConfig, instance: impl Into<String>) -> Self {
        Self {
            db,
            cfg,
            instance: instance.into(),
        }
    }

    pub fn config(&self) -> &RetentionConfig {
        &self.cfg
    }

    /// The grace period of a deleted property, in milliseconds.
    pub fn grace_ms(&self) -> i64 {
        Kept::days_ms(self.cfg.deleted_property_grace_days)
    }

    fn limit(&self) -> i64 {
        i64::from(self.cfg.batch_rows.max(1))
    }

    /// One pass at `now`, whatever the schedule says and without a claim:
    /// the job's step function (tests call it with the clock they need).
    pub async fn run_once(&self, now: i64) -> Result<RunReport, RunError> {
        let cancel = CancellationToken::new();
        let mut guard = Guard {
            lease: None,
            cancel: &cancel,
        };
        self.run(now, &mut guard).await
    }

    async fn run(&self, now: i64, guard: &mut Guard<'_>) -> Result<RunReport, RunError> {
        let mut report = RunReport::default();
        for id in properties::due_for_purge(&self.db, now).await? {
            if self.purge_property(&id, guard, &mut report).await? {
                report.purged_properties.push(id.as_str().to_owned());
            }
        }
        for (integration, property) in integrations::log_purges_pending(&self.db).await? {
            self.purge_log(&property, &integration, guard, &mut report)
                .await?;
            integrations::log_purge_done(&self.db, &integration).await?;
            report.purged_logs.push(integration);
        }
        for p in properties::all_live(&self.db).await? {
            self.expire(&p.id, &p.settings, now, guard, &mut report)
                .await?;
        }
        Ok(report)
    }

    /// Deletes everything a deleted property owns, then the property.
    /// Returns whether it is gone (a property restored meanwhile stays).
    async fn purge_property(
        &self,
        id: &PropertyId,
        guard: &mut Guard<'_>,
        report: &mut RunReport,
    ) -> Result<bool, RunError> {
        for batch in store::property_purge(id) {
            self.drain(&batch, guard, report).await?;
        }
        let gone = store::delete_property_row(&self.db, id).await?;
        if gone {
            tracing::info!(property = %id, "deleted property purged");
        }
        Ok(gone)
    }

    /// A live property's raw data past its retention.
    async fn expire(
        &self,
        id: &PropertyId,
        settings: &PropertySettings,
        now: i64,
        guard: &mut Guard<'_>,
        report: &mut RunReport,
    ) -> Result<(), RunError> {
        let kept = settings.retention();
        let events = store::expired_events(id, Kept::cutoff(now, kept.events_days));
        self.drain(&events, guard, report).await?;
        if let Some(days) = kept.clicks_days {
            let cutoff = Kept::cutoff(now, days);
            self.drain(&store::expired_clicks(id, cutoff), guard, report)
                .await?;
            self.drain(&store::expired_sessions(id, cutoff), guard, report)
                .await?;
        }
        // Whatever the mode is now: addresses encrypted while the property
        // was in `encrypt` mode are cleared all the same.
        self.drain(
            &store::encrypted_ips(id, Kept::cutoff(now, kept.encrypted_ip_days)),
            guard,
            report,
        )
        .await?;
        Ok(())
    }

    /// Runs a batch until it touches fewer rows than the limit, pausing
    /// between batches.
    async fn drain(
        &self,
        batch: &Batch,
        guard: &mut Guard<'_>,
        report: &mut RunReport,
    ) -> Result<u64, RunError> {
        let limit = self.limit();
        let label = batch.label();
        let mut total = 0u64;
        loop {
            self.check(guard).await?;
            let n = batch.run(&self.db, limit).await?;
            report.batches += 1;
            if n > 0 {
                total += n;
                *report.rows.entry(label.clone()).or_default() += n;
                metrics::counter!("clicktrail_retention_deleted_total", "table" => label.clone())
                    .increment(n);
            }
            if n < limit.unsigned_abs() {
                return Ok(total);
            }
            self.pause(guard).await?;
        }
    }

    /// Deletes a deleted integration's conversion log (the conversions with
    /// their deliveries and attempts) in batches.
    async fn purge_log(
        &self,
        property_id: &str,
        integration_id: &str,
        guard: &mut Guard<'_>,
        report: &mut RunReport,
    ) -> Result<u64, RunError> {
        let limit = self.limit();
        let mut after: Option<(i64, String)> = None;
        let mut total = 0u64;
        loop {
            self.check(guard).await?;
            let page = store::integration_log_page(
                &self.db,
                property_id,
                integration_id,
                after.as_ref(),
                limit,
            )
            .await?;
            let ids: Vec<String> = page.iter().map(|(_, id)| id.clone()).collect();
            let (conversions, deliveries, attempts) =
                store::delete_conversions(&self.db, &ids).await?;
            report.batches += 1;
            for (table, n) in [
                ("conversions", conversions),
                ("deliveries", deliveries),
                ("delivery_attempts", attempts),
            ] {
                if n > 0 {
                    *report.rows.entry(table.to_owned()).or_default() += n;
                    metrics::counter!("clicktrail_retention_deleted_total", "table" => table)
                        .increment(n);
                }
            }
            total += conversions;
            if page.len() < usize::try_from(limit).unwrap_or(usize::MAX) {
                return Ok(total);
            }
            after = page.last().cloned();
            self.pause(guard).await?;
        }
    }

    /// Purges a deleted integration's conversion log now (the API's
    /// `DELETE /api/v1/integrations/{id}?purge=true`), and records it done.
    /// If it is cut short, the next run of the job finishes it.
    pub async fn purge_integration_log(
        &self,
        property_id: &str,
        integration_id: &str,
    ) -> Result<u64, RunError> {
        let cancel = CancellationToken::new();
        let mut guard = Guard {
            lease: None,
            cancel: &cancel,
        };
        let mut report = RunReport::default();
        let n = self
            .purge_log(property_id, integration_id, &mut guard, &mut report)
            .await?;
        integrations::log_purge_done(&self.db, integration_id).await?;
        Ok(n)
    }

    /// Stops a run that was cancelled or lost its claim; renews the claim
    /// when a third of it has passed.
    async fn check(&self, guard: &mut Guard<'_>) -> Result<(), RunError> {
        if guard.cancel.is_cancelled() {
            return Err(RunError::Cancelled);
        }
        if let Some(lease) = &mut guard.lease
            && lease.renewed.elapsed() > Duration::from_millis(LEASE_MS.unsigned_abs() / 3)
        {
            let until = chrono::Utc::now().timestamp_millis() + LEASE_MS;
            if !store::renew_job(&self.db, JOB, lease.owner, until).await? {
                return Err(RunError::LeaseLost);
            }
            lease.renewed = Instant::now();
        }
        Ok(())
    }

    async fn pause(&self, guard: &Guard<'_>) -> Result<(), RunError> {
        if self.cfg.batch_pause_ms == 0 {
            // Still let other tasks of this runtime run between batches.
            tokio::task::yield_now().await;
            return Ok(());
        }
        tokio::select! {
            () = guard.cancel.cancelled() => Err(RunError::Cancelled),
            () = tokio::time::sleep(Duration::from_millis(self.cfg.batch_pause_ms)) => Ok(()),
        }
    }

    /// Claims the job if it is due at `now` and runs it; `None` when it was
    /// not due or another process holds it.
    pub async fn tick(
        &self,
        now: i64,
        cancel: &CancellationToken,
    ) -> Result<Option<RunReport>, StoreError> {
        if !store::claim_job(&self.db, JOB, &self.instance, now, now + LEASE_MS).await? {
            return Ok(None);
        }
        let started = Instant::now();
        let mut guard = Guard {
            lease: Some(Lease {
                owner: &self.instance,
                renewed: started,
            }),
            cancel,
        };
        let result = self.run(now, &mut guard).await;
        let done = chrono::Utc::now().timestamp_millis();
        let interval = i64::from(self.cfg.interval_hours) * 3_600_000;
        match result {
            Ok(report) => {
                store::finish_job(&self.db, JOB, &self.instance, done, now + interval, "ok")
                    .await?;
                tracing::info!(
                    purged_properties = report.purged_properties.len(),
                    purged_logs = report.purged_logs.len(),
                    rows = report.rows.values().sum::<u64>(),
                    batches = report.batches,
                    seconds = started.elapsed().as_secs_f64(),
                    "retention job done"
                );
                Ok(Some(report))
            }
            Err(RunError::LeaseLost) => {
                tracing::warn!("retention job stopped: another process took it over");
                Ok(None)
            }
            Err(e) => {
                // Due again soon (the next check), not in a day: what is left
                // is finished then.
                let message = e.to_string();
                store::finish_job(
                    &self.db,
                    JOB,
                    &self.instance,
                    done,
                    done + CHECK_EVERY.as_millis() as i64,
                    &message,
                )
                .await?;
                if !matches!(e, RunError::Cancelled) {
                    tracing::warn!(error = %message, "retention job failed; retried later");
                }
                Ok(None)
            }
        }
    }
}

/// Runs the job when due: at start (if due), then every check.
pub fn spawn(retention: Arc<Retention>, cancel: CancellationToken) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = chrono::Utc::now().timestamp_millis();
            if let Err(e) = retention.tick(now, &cancel).await {
                tracing::warn!(error = %e, "retention job could not run");
            }
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
        }
    })
}
