//! Assembling and running the server: database, migrations, keys, ingest
//! writers, workers and the HTTP listener (see [`crate::serve`]), with a
//! graceful shutdown that stops accepting requests, lets in-flight ones
//! finish within `http.shutdown_grace_secs` (their events are committed
//! before they are answered), drains the write queue, and closes the
//! database.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clicktrail_dashboard::DashState;
use clicktrail_engine::Services;
use clicktrail_engine::auth::Auth;
use clicktrail_engine::autoscan::AutoScan;
use clicktrail_engine::collector::Collector;
use clicktrail_engine::config::Config;
use clicktrail_engine::conversion_log::ConversionLog;
use clicktrail_engine::conversions::ConversionQueue;
use clicktrail_engine::crypto::{CryptoError, Keyring};
use clicktrail_engine::delivery::{self, Delivery};
use clicktrail_engine::destinations::Destinations;
use clicktrail_engine::enrich::Enricher;
use clicktrail_engine::ingest::IngestQueue;
use clicktrail_engine::integrations::Integrations;
use clicktrail_engine::link_checker::LinkChecker;
use clicktrail_engine::links::Links;
use clicktrail_engine::onsite::{self, OnSite};
use clicktrail_engine::polling::{self, Poller};
use clicktrail_engine::properties::Properties;
use clicktrail_engine::retention::{self, Retention};
use clicktrail_engine::services::outbound_policy;
use clicktrail_engine::{rt, telemetry};
use clicktrail_http::{HttpState, Limits};
use clicktrail_networks::catalog::Catalog;
use clicktrail_store::{Db, DbOptions, auth, meta, users};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::serve::{self, ServeOptions};

/// Connections the `metrics.listen` listener serves at once.
const METRICS_CONNECTIONS: usize = 64;

/// A started server.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where `/metrics` is served when `metrics.listen` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The server's services (tests and the demo call them directly).
    pub services: Services,
    /// The ingest queue (the demo submits its simulated history to it).
    pub ingest: IngestQueue,
    /// The conversion writer's queue.
    pub conversions: ConversionQueue,
    /// The on-site conversion follower (tests run extra passes of it).
    pub onsite: Arc<OnSite>,
    /// Whether the database had no workspace yet when the server started.
    pub first_run: bool,
    /// The one-time code `/setup` asks for beyond loopback; `None` when the
    /// server had a dashboard account at start (setup is done).
    pub setup_code: Option<String>,
    shutdown: CancellationToken,
    handle: JoinHandle<anyhow::Result<()>>,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish()
    }
}

impl RunningServer {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token that, when cancelled, shuts the server down gracefully.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Shuts down gracefully and waits until everything is flushed.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.handle.await.context("server task")?
    }

    /// Waits for the server to end (after its shutdown token is cancelled).
    pub async fn wait(self) -> anyhow::Result<()> {
        self.handle.await.context("server task")?
    }
}

/// Connects and migrates.
pub async fn open_database(cfg: &Config) -> anyhow::Result<Db> {
    let opts = DbOptions {
        sqlite_synchronous: cfg.sqlite_synchronous,
        ..DbOptions::default()
    };
    let db = Db::connect(&cfg.database_url, &opts)
        .await
        .with_context(|| format!("opening the database {}", redact_url(&cfg.database_url)))?;
    db.migrate().await.context("running migrations")?;
    Ok(db)
}

/// Checkpoints the SQLite WAL beside the writers (see
/// [`Db::checkpointer`]), and once more on the way out.
///
/// Passive checkpoints only, while the ingest writer restarts the WAL
/// after them (see `WriterConn::restart_wal_if_large`). The loop
/// restarts it itself only when that writer has not for a while although
/// the WAL grew (it is idle and others write), and when shutting down: a
/// restart from here makes the writer wait for it.
async fn checkpoint_loop(mut cp: clicktrail_store::Checkpointer, cancel: CancellationToken) {
    const EVERY: std::time::Duration = std::time::Duration::from_millis(500);
    const RESTART_ABOVE_FRAMES: i64 = clicktrail_store::WalState::RESTART_ABOVE_FRAMES;
    /// Passes without a restart by the writer before this loop does one.
    const WRITER_IDLE_PASSES: u32 = 10;
    let mut seen_restarts = cp.writer_restarts();
    let mut idle_passes = 0u32;
    loop {
        let stop = tokio::select! {
            () = cancel.cancelled() => true,
            () = tokio::time::sleep(EVERY) => false,
        };
        if stop {
            // The writers may still be draining: let them finish first.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        let restarts = cp.writer_restarts();
        if restarts == seen_restarts {
            idle_passes = idle_passes.saturating_add(1);
        } else {
            (seen_restarts, idle_passes) = (restarts, 0);
        }
        match cp.passive().await {
            Ok(st)
                if stop
                    || (st.wal_frames > RESTART_ABOVE_FRAMES
                        && idle_passes >= WRITER_IDLE_PASSES) =>
            {
                match cp.restart().await {
                    Ok(st) if st.busy => {
                        // A reader of an older snapshot (`clicktrail
                        // backup` copying) holds the WAL: each attempt
                        // holds the writer up to its wait, so try again
                        // only after another WRITER_IDLE_PASSES passes.
                        idle_passes = 0;
                        metrics::gauge!("clicktrail_sqlite_wal_frames").set(st.wal_frames as f64);
                    }
                    Ok(_) => metrics::gauge!("clicktrail_sqlite_wal_frames").set(0.0),
                    Err(e) => tracing::warn!(error = %e, "WAL checkpoint (restart) failed"),
                }
            }
            Ok(st) => {
                metrics::gauge!("clicktrail_sqlite_wal_frames").set(st.wal_frames as f64);
            }
            Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed"),
        }
        if stop {
            break;
        }
    }
}

/// The database URL without its password, for messages.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Starts the server on `cfg.listen` (port 0 picks a free port).
///
/// The wiring: each writer, worker and service is built here with the
/// few dependencies it needs, writers first (the conversion writer with
/// its delivery outbox), then the services, the workers and the router.
pub async fn start(cfg: Config) -> anyhow::Result<RunningServer> {
    crate::datadir::prepare(&cfg)?;
    let instance = crate::datadir::instance_id(&cfg)?;
    let db = open_database(&cfg).await?;
    // The database files exist now: check them too.
    for (path, mode) in crate::datadir::too_open(&cfg) {
        tracing::warn!(path = %path.display(), mode = format_args!("{mode:04o}"), "readable by other local users");
    }
    let keyring = Keyring::load(cfg.master_key.as_ref().map(|k| k.expose()), &cfg.data_dir)?;
    let stored_check = meta::get_or_init(&db, "key_check", keyring.check_value()).await?;
    if stored_check != keyring.check_value() {
        return Err(CryptoError::WrongKey {
            key_file: cfg.data_dir.join("secret.key").display().to_string(),
        }
        .into());
    }
    let first_run = auth::workspaces(&db).await?.is_empty();
    let setup_code =
        (users::count_users(&db).await? == 0).then(|| clicktrail_domain::ids::random_token(24));
    let enricher = Arc::new(Enricher::new(cfg.trusted_proxies.clone(), keyring.clone())?);
    let catalog = Arc::new(Catalog::embedded().context("loading the integration catalog")?);

    // The writers, which stop last.
    let writers_cancel = CancellationToken::new();
    let (ingest, mut writer_handles) =
        IngestQueue::start(db.clone(), &cfg.ingest, writers_cancel.clone());
    let delivery = Arc::new(Delivery::new(
        db.clone(),
        keyring.clone(),
        enricher.clone(),
        cfg.delivery.clone(),
        cfg.allow_private_networks,
    ));
    let (conversions, conversion_writer) = ConversionQueue::start(
        db.clone(),
        cfg.ingest.queue_capacity,
        delivery.clone(),
        writers_cancel.clone(),
    );
    writer_handles.push(conversion_writer);
    if let Some(cp) = db.checkpointer().await? {
        // Stops with the writers, after their last commit.
        writer_handles.push(rt::spawn_dedicated(
            "wal-checkpointer",
            checkpoint_loop(cp, writers_cancel.clone()),
        ));
    }

    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("binding {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let metrics_listener = match cfg.metrics.listen {
        Some(m) => Some(
            tokio::net::TcpListener::bind(m)
                .await
                .with_context(|| format!("binding metrics.listen {m}"))?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };
    let mut cfg = cfg;
    if cfg.listen.port() == 0 && cfg.public_url.is_none() {
        // Tests bind port 0: the public URL must name the real port.
        cfg.listen = addr;
    }
    let cfg = Arc::new(cfg);

    // The services.
    let properties = Arc::new(
        Properties::new(
            db.clone(),
            catalog.clone(),
            &cfg.public_base(),
            keyring.clone(),
        )
        .with_purge_grace_days(cfg.retention.deleted_property_grace_days),
    );
    let retention = Arc::new(Retention::new(
        db.clone(),
        cfg.retention.clone(),
        instance.clone(),
    ));
    let poller = Arc::new(Poller::new(
        db.clone(),
        keyring.clone(),
        properties.clone(),
        conversions.clone(),
        outbound_policy(&cfg),
        Duration::from_secs(cfg.polling.tick_secs),
        instance,
    ));
    // Claims this instance held when it last stopped (a crash mid-poll)
    // are given back before anything polls.
    poller.release_own_claims().await?;
    let outbound =
        clicktrail_outbound::Outbound::new(outbound_policy(&cfg), Duration::from_secs(10))?;
    let services = Services {
        db: db.clone(),
        cfg: cfg.clone(),
        keyring: keyring.clone(),
        catalog: catalog.clone(),
        enricher: enricher.clone(),
        auth: Arc::new(Auth::new(db.clone(), cfg.master_key.clone())),
        collector: Arc::new(Collector::new(
            properties.clone(),
            enricher.clone(),
            ingest.clone(),
            cfg.ingest.max_body_bytes,
        )),
        integrations: Arc::new(
            Integrations::new(
                db.clone(),
                keyring.clone(),
                properties.clone(),
                poller.clone(),
                conversions.clone(),
                retention.clone(),
            )
            .with_egress_ips(cfg.egress_ips.clone()),
        ),
        destinations: Arc::new(Destinations::new(
            db.clone(),
            keyring.clone(),
            properties.clone(),
            delivery.clone(),
        )),
        links: Arc::new(Links::new(
            db.clone(),
            properties.clone(),
            enricher.clone(),
            ingest.clone(),
        )),
        conversion_log: Arc::new(ConversionLog::new(db.clone(), properties.clone())),
        autoscan: Arc::new(AutoScan::new(outbound, properties.clone())),
        link_checker: Arc::new(LinkChecker::new(
            outbound_policy(&cfg),
            properties.clone(),
            catalog.clone(),
        )?),
        poller: poller.clone(),
        delivery: delivery.clone(),
        properties: properties.clone(),
        retention: retention.clone(),
    };

    // Postback tokens of older databases are still in clear: sealed
    // before any postback is served.
    services.integrations.seal_postback_tokens().await?;

    // The workers.
    let shutdown = CancellationToken::new();
    let workers_cancel = CancellationToken::new();
    let mut worker_handles = Vec::new();
    if cfg.polling.enabled {
        worker_handles.push(polling::spawn(poller, workers_cancel.clone()));
    }
    if cfg.retention.enabled {
        worker_handles.push(retention::spawn(retention, workers_cancel.clone()));
    }
    let onsite = Arc::new(OnSite::new(db.clone(), properties, conversions.clone()));
    worker_handles.push(onsite::spawn(onsite.clone(), workers_cancel.clone()));
    // Conversions out: the outbox workers, beside the ingest writers.
    let delivery_cancel = CancellationToken::new();
    let delivery_handles = delivery::worker::spawn(delivery, delivery_cancel.clone());

    let http_state = HttpState::new(&services, telemetry::metrics_handle());
    let limits = Limits::from_config(&cfg.http);
    let app = clicktrail_http::with_common_layers(
        clicktrail_http::router(http_state.clone()).merge(clicktrail_dashboard::router(
            DashState::with_setup_code(services.clone(), setup_code.clone()),
        )),
        limits,
    );
    let opts = ServeOptions {
        header_read_timeout: Duration::from_secs(cfg.http.header_read_timeout_secs),
        max_connections: cfg.http.connection_cap(serve::open_files_limit()),
        shutdown_grace: Duration::from_secs(cfg.http.shutdown_grace_secs),
    };
    tracing::info!(
        %addr,
        max_connections = opts.max_connections,
        metrics_listen = metrics_addr.map(|a| a.to_string()),
        "listening"
    );
    let mut listeners = vec![tokio::spawn(serve::serve(
        listener,
        app,
        opts,
        shutdown.clone(),
    ))];
    if let Some(l) = metrics_listener {
        let metrics_app = clicktrail_http::with_common_layers(
            clicktrail_http::metrics_router(http_state),
            limits,
        );
        let metrics_opts = ServeOptions {
            max_connections: METRICS_CONNECTIONS,
            ..opts
        };
        listeners.push(tokio::spawn(serve::serve(
            l,
            metrics_app,
            metrics_opts,
            shutdown.clone(),
        )));
    }
    let handle = tokio::spawn(async move {
        let mut served = Ok(());
        for l in listeners {
            if let Err(e) = l.await {
                served = Err(e);
            }
        }
        // Delivery batches in flight finish and are recorded; rows claimed
        // but not sent are given back.
        delivery_cancel.cancel();
        for h in delivery_handles {
            let _ = h.await;
        }
        // No request is in flight any more: stop the workers, then drain
        // the write queues.
        workers_cancel.cancel();
        for h in worker_handles {
            let _ = h.await;
        }
        writers_cancel.cancel();
        for h in writer_handles {
            let _ = h.await;
        }
        db.close().await;
        tracing::info!("clicktrail stopped");
        served.context("HTTP server")
    });
    Ok(RunningServer {
        addr,
        metrics_addr,
        services,
        ingest,
        conversions,
        onsite,
        first_run,
        setup_code,
        shutdown,
        handle,
    })
}
