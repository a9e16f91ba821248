//! The assembled service layer: what the composition root (the binary's
//! `app`) hands to the HTTP router and the dashboard, each of which picks
//! the few services its handlers use. No service or worker takes this
//! struct: each was built with its own dependencies.

use std::sync::Arc;

use clicktrail_networks::catalog::Catalog;
use clicktrail_outbound::OutboundPolicy;
use clicktrail_store::Db;

use crate::auth::Auth;
use crate::autoscan::AutoScan;
use crate::collector::Collector;
use crate::config::Config;
use crate::conversion_log::ConversionLog;
use crate::crypto::Keyring;
use crate::delivery::Delivery;
use crate::destinations::Destinations;
use crate::enrich::Enricher;
use crate::integrations::Integrations;
use crate::link_checker::LinkChecker;
use crate::links::Links;
use crate::polling::Poller;
use crate::properties::Properties;
use crate::retention::Retention;

/// Every service, cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    pub db: Db,
    pub cfg: Arc<Config>,
    pub keyring: Keyring,
    pub catalog: Arc<Catalog>,
    pub enricher: Arc<Enricher>,
    pub auth: Arc<Auth>,
    pub properties: Arc<Properties>,
    pub collector: Arc<Collector>,
    pub integrations: Arc<Integrations>,
    pub poller: Arc<Poller>,
    pub delivery: Arc<Delivery>,
    pub destinations: Arc<Destinations>,
    pub links: Arc<Links>,
    pub conversion_log: Arc<ConversionLog>,
    pub autoscan: Arc<AutoScan>,
    pub retention: Arc<Retention>,
    pub link_checker: Arc<LinkChecker>,
}

/// The outbound policy of this server: strict unless the operator allowed
/// private networks (tests against local fakes, on-premise setups).
pub fn outbound_policy(cfg: &Config) -> OutboundPolicy {
    OutboundPolicy {
        allow_private_networks: cfg.allow_private_networks,
        ..OutboundPolicy::strict()
    }
}
