//! Shared application state, built once at start and cloned (cheaply) into
//! every handler and worker.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::PropertyId;
use clicktrail_store::Db;
use clicktrail_store::properties::{self, Property};
use metrics_exporter_prometheus::PrometheusHandle;

use clicktrail_networks::catalog::Catalog;
use clicktrail_store::integrations::Integration;
use tokio::sync::Notify;

use crate::config::Config;
use crate::conversions::ConversionQueue;
use crate::crypto::Keyring;
use crate::enrich::Enricher;
use crate::pipeline::IngestQueue;

#[derive(Clone, Debug)]
pub struct AppState(Arc<Inner>);

#[derive(Debug)]
pub struct Inner {
    pub cfg: Config,
    pub db: Db,
    pub keyring: Keyring,
    pub enricher: Enricher,
    pub ingest: IngestQueue,
    pub conversions: ConversionQueue,
    pub catalog: Arc<Catalog>,
    pub metrics: PrometheusHandle,
    /// Public base URL, no trailing slash.
    pub public_base: String,
    /// Properties by id, including misses, for the public routes that see
    /// every request (collector, tag). Short-lived so edits show quickly;
    /// edits through the API also invalidate it.
    property_cache: moka::future::Cache<String, Option<Arc<Property>>>,
    /// Workspace of API tokens (by hash), briefly cached.
    pub token_cache: moka::future::Cache<String, Option<i64>>,
    /// Integrations by postback token, briefly cached (postbacks come in
    /// bursts).
    pub integration_cache: moka::future::Cache<String, Option<Arc<Integration>>>,
    /// Each property's served tag (config baked in), by property id.
    pub tag_cache: moka::future::Cache<String, Arc<crate::tagjs::ServedTag>>,
    /// Wakes the API poller (an integration was installed or asked to poll).
    pub poll_wakeup: Notify,
    /// Conversions out: outbound client, Google tokens, parsed
    /// destinations, the workers' wake-up.
    pub delivery: crate::delivery::DeliveryContext,
    /// The dashboard's login throttling.
    pub dashboard: crate::dashboard::DashState,
    /// SSRF-guarded client for user-supplied URLs (AutoScan, link checker).
    pub outbound: clicktrail_outbound::Outbound,
    pub scan_cache: crate::autoscan::ScanCache,
    /// Tracked links by slug (`/go/{slug}` must answer within milliseconds).
    pub link_cache: moka::future::Cache<String, Option<Arc<clicktrail_store::links::TrackedLink>>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    #[expect(clippy::too_many_arguments, reason = "built once, in app::start")]
    pub fn new(
        cfg: Config,
        db: Db,
        keyring: Keyring,
        enricher: Enricher,
        ingest: IngestQueue,
        conversions: ConversionQueue,
        catalog: Arc<Catalog>,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let public_base = cfg.public_base();
        let outbound =
            clicktrail_outbound::Outbound::new(outbound_policy(&cfg), Duration::from_secs(10))?;
        let delivery = crate::delivery::DeliveryContext::new(&cfg);
        Ok(AppState(Arc::new(Inner {
            cfg,
            db,
            keyring,
            enricher,
            ingest,
            conversions,
            catalog,
            metrics,
            public_base,
            property_cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
            token_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
            integration_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
            tag_cache: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            poll_wakeup: Notify::new(),
            delivery,
            dashboard: crate::dashboard::DashState::new(),
            outbound,
            scan_cache: crate::autoscan::new_cache(),
            link_cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        })))
    }

    /// A property by id, through the cache.
    pub async fn property(
        &self,
        id: &PropertyId,
    ) -> Result<Option<Arc<Property>>, clicktrail_store::StoreError> {
        // One load per key however many requests miss at once: when the
        // entry expires under load, hundreds of collector requests would
        // otherwise query the database together.
        self.property_cache
            .try_get_with_by_ref(id.as_str(), async {
                Ok::<_, clicktrail_store::StoreError>(
                    properties::get(&self.db, id).await?.map(Arc::new),
                )
            })
            .await
            .map_err(clicktrail_store::StoreError::Shared)
    }

    pub async fn forget_property(&self, id: &PropertyId) {
        self.property_cache.invalidate(id.as_str()).await;
        self.tag_cache.invalidate(id.as_str()).await;
    }

    /// Drops a property's served tag so a changed configuration (an
    /// integration installed, settings edited) reaches visitors at once.
    pub async fn forget_tag_config(&self, id: &PropertyId) {
        self.tag_cache.invalidate(id.as_str()).await;
    }

    /// An integration by id.
    pub async fn integration_by_id(
        &self,
        id: &str,
    ) -> Result<Option<Integration>, clicktrail_store::StoreError> {
        clicktrail_store::integrations::get(&self.db, id).await
    }

    pub fn tag_url(&self, id: &PropertyId) -> String {
        format!("{}/t/{}.js", self.public_base, id)
    }
}

/// The outbound policy of this server: strict unless the operator allowed
/// private networks (tests against local fakes, on-premise setups).
pub fn outbound_policy(cfg: &Config) -> clicktrail_outbound::OutboundPolicy {
    clicktrail_outbound::OutboundPolicy {
        allow_private_networks: cfg.allow_private_networks,
        ..clicktrail_outbound::OutboundPolicy::strict()
    }
}
