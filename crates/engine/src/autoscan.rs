//! AutoScan: which tracking group a same-site redirect link (`/go/x`,
//! `/out/x`, ...) leads to. The server follows the redirect chain with
//! HEAD requests through the SSRF-guarded client (at most 5 hops, 3
//! seconds; every hop's URL and resolved address checked), and stops
//! *before* requesting a hop that is an affiliate link: asking the
//! network's tracker would record a click there.
//!
//! The scan route is anonymous, so what one request can make the server
//! fetch is bounded: at most [`MAX_LINKS`] links a request, at most
//! [`MAX_REQUESTS_PER_SCAN`] outbound requests a request and
//! [`MAX_REQUESTS_PER_MINUTE`] a property a minute; links are cached under
//! a normalised form ([`normalise_scan_url`]), failures too (for
//! [`FAILURE_TTL`]), so repeating a request, or varying its tracking
//! parameters, costs nothing more.

use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::links::{TrackingGroup, find_group_for_url, normalise_scan_url};
use clicktrail_domain::property::host_allowed;
use clicktrail_outbound::{DEFAULT_CHAIN_TIMEOUT, DEFAULT_MAX_HOPS, Outbound};
use clicktrail_store::properties::Property;
use serde::Serialize;
use url::Url;

use clicktrail_domain::PropertyId;
use http::StatusCode;

use crate::budget::{Budget, PropertyBudgets};
use crate::error::{ServiceError, ServiceResult};
use crate::properties::Properties;

/// Most links in one scan request.
pub const MAX_LINKS: usize = 20;
/// Most outbound requests (redirect hops) one scan request may make.
pub const MAX_REQUESTS_PER_SCAN: i64 = 24;
/// Most outbound requests AutoScan makes for one property in a minute.
pub const MAX_REQUESTS_PER_MINUTE: i64 = 60;
/// How long a link that could not be resolved is remembered as such.
pub const FAILURE_TTL: Duration = Duration::from_secs(300);
/// How long a resolved link is remembered.
pub const SUCCESS_TTL: Duration = Duration::from_secs(3600);

/// Requests one link may take: the first, and one per redirect.
const PER_LINK: i64 = DEFAULT_MAX_HOPS as i64 + 1;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ScanResult {
    /// The link exactly as the tag sent it.
    pub url: String,
    /// The tracking group its chain leads to.
    pub group: Option<String>,
    /// Why it could not be resolved, when it could not (stable code).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// What a link resolved to: its group, or why it could not be resolved.
type Resolution = Result<Option<String>, &'static str>;

/// Cache of resolutions by (property, normalised link): redirect plugins
/// rarely change their targets, and a popular page would otherwise rescan
/// on every visit. Failures expire sooner than successes.
type ScanCache = moka::future::Cache<(String, String), Resolution>;

/// Expiry of cache entries: successes after [`SUCCESS_TTL`], failures
/// after [`FAILURE_TTL`].
struct ByOutcome;

impl moka::Expiry<(String, String), Resolution> for ByOutcome {
    fn expire_after_create(
        &self,
        _key: &(String, String),
        value: &Resolution,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(if value.is_ok() {
            SUCCESS_TTL
        } else {
            FAILURE_TTL
        })
    }
}

/// The AutoScan service.
pub struct AutoScan {
    outbound: Outbound,
    cache: ScanCache,
    /// Each property's outbound requests left in the current minute.
    budgets: PropertyBudgets,
    properties: Arc<Properties>,
}

impl std::fmt::Debug for AutoScan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AutoScan")
    }
}

impl AutoScan {
    pub fn new(outbound: Outbound, properties: Arc<Properties>) -> Self {
        Self {
            outbound,
            cache: moka::future::Cache::builder()
                .max_capacity(50_000)
                .expire_after(ByOutcome)
                .build(),
            budgets: PropertyBudgets::new(MAX_REQUESTS_PER_MINUTE),
            properties,
        }
    }

    /// Resolves the links a page of `property_id` asks about (`origin`: the
    /// request's `Origin` host, which must be one of the property's
    /// domains when present).
    pub async fn scan(
        &self,
        property_id: &str,
        origin: Option<&str>,
        links: Vec<String>,
    ) -> ServiceResult<Vec<ScanResult>> {
        let unknown = || {
            ServiceError::new(
                StatusCode::NOT_FOUND,
                "unknown_property",
                "no property has this id",
            )
        };
        let unavailable = |e: clicktrail_store::StoreError| {
            tracing::error!(error = %e, "autoscan");
            ServiceError::unavailable("unavailable", "try again later", 2)
        };
        let id = PropertyId::parse(property_id).map_err(|_| unknown())?;
        let property = self
            .properties
            .get(&id)
            .await
            .map_err(unavailable)?
            .ok_or_else(unknown)?;
        if let Some(h) = origin
            && !host_allowed(&property.domains, h)
        {
            return Err(ServiceError::forbidden(
                "domain_not_allowed",
                "the Origin is not one of the property's domains",
            ));
        }
        if !property.settings.autoscan {
            return Err(ServiceError::forbidden(
                "autoscan_disabled",
                "AutoScan is off for this property",
            ));
        }
        if links.len() > MAX_LINKS {
            return Err(ServiceError::bad_request(
                "too_many_links",
                "at most 20 links per request",
            ));
        }
        let groups = Arc::new(
            self.properties
                .groups(&property.id)
                .await
                .map_err(unavailable)?,
        );
        let mut unique: Vec<String> = Vec::new();
        for l in links {
            if !unique.contains(&l) {
                unique.push(l);
            }
        }
        let budget = self
            .budgets
            .budget(property.id.as_str(), MAX_REQUESTS_PER_SCAN)
            .await;
        let budget = &budget;
        let futures = unique.into_iter().take(MAX_LINKS).map(|link| {
            let groups = groups.clone();
            let property = &property;
            async move {
                let (group, error) = self.resolve_one(property, &groups, &link, budget).await;
                ScanResult {
                    url: link,
                    group,
                    error,
                }
            }
        });
        Ok(futures::future::join_all(futures).await)
    }

    async fn resolve_one(
        &self,
        property: &Property,
        groups: &[TrackingGroup],
        link: &str,
        budget: &Budget,
    ) -> (Option<String>, Option<&'static str>) {
        let Ok(url) = Url::parse(link) else {
            return (None, Some("invalid_url"));
        };
        if !matches!(url.scheme(), "http" | "https") {
            return (None, Some("scheme_not_allowed"));
        }
        // Only the property's own site: the scanner must not be an open proxy.
        if !url
            .host_str()
            .is_some_and(|h| host_allowed(&property.domains, h))
        {
            return (None, Some("domain_not_allowed"));
        }
        if let Some(g) = find_group_for_url(groups, &url) {
            return (Some(g.key.clone()), None);
        }
        // What is resolved is the normalised link, so that what is cached
        // is what was asked.
        let url = normalise_scan_url(&url);
        let key = (property.id.as_str().to_owned(), url.as_str().to_owned());
        if let Some(hit) = self.cache.get(&key).await {
            metrics::counter!("clicktrail_autoscan_total", "outcome" => "cached").increment(1);
            return match hit {
                Ok(group) => (group, None),
                Err(code) => (None, Some(code)),
            };
        }
        if !budget.take(PER_LINK) {
            metrics::counter!("clicktrail_autoscan_total", "outcome" => "rate_limited")
                .increment(1);
            return (None, Some("rate_limited"));
        }
        let stop = |u: &Url| find_group_for_url(groups, u).is_some();
        let result = self
            .outbound
            .resolve_redirects_until(&url, DEFAULT_MAX_HOPS, DEFAULT_CHAIN_TIMEOUT, &stop)
            .await;
        let resolution: Resolution = match result {
            Ok(chain) => {
                budget.give(PER_LINK - chain.hops.len() as i64);
                let group = find_group_for_url(groups, &chain.final_url).map(|g| g.key.clone());
                metrics::counter!("clicktrail_autoscan_total", "outcome" => if group.is_some() { "matched" } else { "unmatched" })
                    .increment(1);
                Ok(group)
            }
            Err(e) => {
                metrics::counter!("clicktrail_autoscan_total", "outcome" => e.code()).increment(1);
                tracing::debug!(code = e.code(), "autoscan could not resolve a link");
                Err(e.code())
            }
        };
        self.cache.insert(key, resolution.clone()).await;
        match resolution {
            Ok(group) => (group, None),
            Err(code) => (None, Some(code)),
        }
    }
}
