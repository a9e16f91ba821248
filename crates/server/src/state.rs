//! Shared application state, built once at start and cloned (cheaply) into
//! every handler and worker.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::PropertyId;
use clicktrail_store::Db;
use clicktrail_store::properties::{self, Property};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
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
    pub metrics: PrometheusHandle,
    /// Public base URL, no trailing slash.
    pub public_base: String,
    /// Properties by id, including misses, for the public routes that see
    /// every request (collector, tag). Short-lived so edits show quickly;
    /// edits through the API also invalidate it.
    property_cache: moka::future::Cache<String, Option<Arc<Property>>>,
    /// Workspace of API tokens (by hash), briefly cached.
    pub token_cache: moka::future::Cache<String, Option<i64>>,
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub fn new(
        cfg: Config,
        db: Db,
        keyring: Keyring,
        enricher: Enricher,
        ingest: IngestQueue,
        metrics: PrometheusHandle,
    ) -> Self {
        let public_base = cfg.public_base();
        AppState(Arc::new(Inner {
            cfg,
            db,
            keyring,
            enricher,
            ingest,
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
        }))
    }

    /// A property by id, through the cache.
    pub async fn property(
        &self,
        id: &PropertyId,
    ) -> Result<Option<Arc<Property>>, clicktrail_store::StoreError> {
        if let Some(hit) = self.property_cache.get(id.as_str()).await {
            return Ok(hit);
        }
        let p = properties::get(&self.db, id).await?.map(Arc::new);
        self.property_cache
            .insert(id.as_str().to_owned(), p.clone())
            .await;
        Ok(p)
    }

    pub async fn forget_property(&self, id: &PropertyId) {
        self.property_cache.invalidate(id.as_str()).await;
    }

    pub fn tag_url(&self, id: &PropertyId) -> String {
        format!("{}/t/{}.js", self.public_base, id)
    }
}
