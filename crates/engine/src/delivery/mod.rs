//! Conversions out: every validated conversion reaches the property's ad
//! destinations (Meta CAPI, Google Ads, TikTok, GA4), once, through the
//! durable outbox in `clicktrail_store::deliveries`.
//!
//! - [`plan`] decides, for one conversion, which destinations get it and
//!   under which name; the conversion code stores the result with
//!   `clicktrail_store::deliveries::insert_planned_many` in the transaction that
//!   records the conversion, then calls [`Delivery::wake`].
//! - [`worker::spawn`] starts the workers that claim due rows, send them in
//!   batches and record every attempt.
//! - [`deliveries_for_conversions`] is what the conversion log shows.
//!
//! The platform-specific work (payloads, answers) is in the
//! `clicktrail-destinations` crate; this module is the glue to storage,
//! configuration and the outbound HTTP client.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use clicktrail_destinations::{Destination, GoogleTokenCache};
use clicktrail_outbound::OutboundPolicy;
use clicktrail_store::deliveries::{self as store, DestinationRow, DestinationStatus};
use clicktrail_store::{Db, StoreError};
use tokio::sync::Notify;

use crate::config::DeliveryConfig;
use crate::crypto::Keyring;
use crate::enrich::Enricher;

pub mod convert;
mod planning;
pub mod policy;
pub mod views;
pub mod worker;

pub use planning::{plan, queue_in};
pub use views::{AttemptView, DeliveryView, deliveries_for_conversions};

/// How long parsed destinations are cached. Edits made through this
/// process drop the cache at once; other processes see them after this.
const DESTINATION_TTL: Duration = Duration::from_secs(3);

/// The delivery machinery (one per server): what the outbox workers, the
/// conversion writer's planner ([`crate::conversions::Outbox`]) and the
/// destinations service share.
pub struct Delivery {
    db: Db,
    keyring: Keyring,
    enricher: Arc<Enricher>,
    cfg: DeliveryConfig,
    /// The SSRF-guarded client every platform request goes through; `None`
    /// only if it could not be built (then nothing is sent, and it is
    /// logged).
    client: Option<reqwest::Client>,
    policy: OutboundPolicy,
    timeout: Duration,
    tokens: GoogleTokenCache,
    destinations: moka::future::Cache<String, Arc<PropertyDestinations>>,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("client", &self.client.is_some())
            .field("policy", &self.policy)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One destination as stored, with its configuration parsed (or why it
/// cannot be).
#[derive(Debug)]
pub struct LoadedDestination {
    pub row: DestinationRow,
    pub parsed: Result<Destination, Unusable>,
}

/// Why a stored destination cannot be used: it then needs attention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    /// `credentials_unreadable`, `invalid_configuration`,
    /// `endpoint_not_allowed`.
    pub reason: &'static str,
    pub message: String,
}

impl LoadedDestination {
    pub fn status(&self) -> DestinationStatus {
        self.row.status()
    }
}

/// A property's destinations, oldest first.
#[derive(Debug, Default)]
pub struct PropertyDestinations {
    pub list: Vec<Arc<LoadedDestination>>,
}

impl PropertyDestinations {
    pub fn get(&self, id: &str) -> Option<&Arc<LoadedDestination>> {
        self.list.iter().find(|d| d.row.id == id)
    }
}

impl Delivery {
    pub fn new(
        db: Db,
        keyring: Keyring,
        enricher: Arc<Enricher>,
        cfg: DeliveryConfig,
        allow_private_networks: bool,
    ) -> Self {
        let policy = OutboundPolicy {
            allow_private_networks,
            ..OutboundPolicy::default()
        };
        let timeout = Duration::from_secs(cfg.timeout_secs.max(1));
        let client = match clicktrail_outbound::client(&policy, timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(error = %e, "the delivery HTTP client could not be built; nothing will be sent");
                None
            }
        };
        Self {
            db,
            keyring,
            enricher,
            cfg,
            client,
            policy,
            timeout,
            tokens: GoogleTokenCache::new(),
            destinations: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(DESTINATION_TTL)
                .build(),
            notify: Arc::new(Notify::new()),
        }
    }

    /// Tells the workers that deliveries were queued, so they claim them now
    /// instead of at their next poll. Call after the commit.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn enricher(&self) -> &Enricher {
        &self.enricher
    }

    pub(crate) fn notified(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    pub fn client(&self) -> Option<&reqwest::Client> {
        self.client.as_ref()
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    pub fn tokens(&self) -> &GoogleTokenCache {
        &self.tokens
    }

    /// Drops the cached destinations of a property (after an edit).
    pub async fn forget(&self, property_id: &str) {
        self.destinations.invalidate(property_id).await;
    }
}

impl Delivery {
    /// A property's destinations, parsed, through the cache.
    pub async fn destinations_of(
        &self,
        property_id: &str,
    ) -> Result<Arc<PropertyDestinations>, StoreError> {
        let state = self;
        if let Some(hit) = state.destinations.get(property_id).await {
            return Ok(hit);
        }
        let rows = store::list_destinations(&state.db, property_id).await?;
        let list = rows
            .into_iter()
            .map(|row| Arc::new(state.load(row)))
            .collect();
        let loaded = Arc::new(PropertyDestinations { list });
        state
            .destinations
            .insert(property_id.to_owned(), loaded.clone())
            .await;
        Ok(loaded)
    }

    /// Parses a stored destination: decrypts its credentials, validates the
    /// whole configuration again, and checks its endpoints against the
    /// outbound policy (which may have changed since it was saved).
    pub fn load(&self, row: DestinationRow) -> LoadedDestination {
        let parsed = self.parse_stored(&row);
        LoadedDestination { row, parsed }
    }

    fn parse_stored(&self, row: &DestinationRow) -> Result<Destination, Unusable> {
        let state = self;
        let invalid = |message: String| Unusable {
            reason: "invalid_configuration",
            message,
        };
        let kind =
            clicktrail_destinations::parse_kind(&row.kind).map_err(|e| invalid(e.message))?;
        let settings: serde_json::Value = serde_json::from_str(&row.settings)
            .map_err(|_| invalid("the stored settings are not JSON".into()))?;
        let mapping: serde_json::Value = serde_json::from_str(&row.event_mapping)
            .map_err(|_| invalid("the stored event mapping is not JSON".into()))?;
        let credentials = state
            .keyring
            .decrypt_json(&row.credentials_enc)
            .map_err(|e| Unusable {
                reason: "credentials_unreadable",
                message: format!("{e}; enter the credentials again"),
            })?;
        let dest = clicktrail_destinations::validate(kind, &settings, &credentials, &mapping)
            .map_err(|errors| {
                invalid(
                    errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect::<Vec<_>>()
                        .join("; "),
                )
            })?;
        if let Some((field, e)) = endpoint_problems(&state.policy, &dest).into_iter().next() {
            return Err(Unusable {
                reason: "endpoint_not_allowed",
                message: format!("{field}: {e}"),
            });
        }
        Ok(dest)
    }
}

/// The user-supplied URLs of a destination that the outbound policy
/// refuses, by settings field.
pub fn endpoint_problems(
    policy: &OutboundPolicy,
    dest: &Destination,
) -> Vec<(&'static str, clicktrail_outbound::OutboundError)> {
    let settings = dest.settings_json();
    ["endpoint", "token_endpoint"]
        .into_iter()
        .filter_map(|key| {
            let raw = settings.get(key)?.as_str()?;
            let field = match key {
                "endpoint" => "settings.endpoint",
                _ => "settings.token_endpoint",
            };
            clicktrail_outbound::check_user_url(policy, raw)
                .err()
                .map(|e| (field, e))
        })
        .collect()
}

/// The deliveries of a destination by status, every status present.
pub async fn status_counts(
    db: &Db,
    destination_id: &str,
) -> Result<HashMap<String, i64>, StoreError> {
    let mut counts: HashMap<String, i64> = clicktrail_domain::delivery::DeliveryStatus::ALL
        .iter()
        .map(|s| (s.as_str().to_owned(), 0))
        .collect();
    for (status, n) in store::counts_by_status(db, destination_id).await? {
        counts.insert(status, n);
    }
    Ok(counts)
}
