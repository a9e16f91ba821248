//! AutoScan: which tracking group a same-site redirect link (`/go/x`,
//! `/out/x`, ...) leads to. The server follows the redirect chain with
//! HEAD requests through the SSRF-guarded client (at most 5 hops, 3
//! seconds; every hop's URL and resolved address checked), and stops
//! *before* requesting a hop that is an affiliate link: asking the
//! network's tracker would record a click there.

use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::links::{TrackingGroup, find_group_for_url};
use clicktrail_domain::property::host_allowed;
use clicktrail_outbound::{DEFAULT_CHAIN_TIMEOUT, DEFAULT_MAX_HOPS, Outbound};
use clicktrail_store::properties::Property;
use serde::Serialize;
use url::Url;

use clicktrail_domain::PropertyId;
use http::StatusCode;

use crate::error::{ServiceError, ServiceResult};
use crate::properties::Properties;

/// Most links in one scan request.
pub const MAX_LINKS: usize = 20;

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

/// Cache of resolutions by (property, link): redirect plugins rarely change
/// their targets, and a popular page would otherwise rescan on every visit.
type ScanCache = moka::future::Cache<(String, String), Option<String>>;

/// The AutoScan service.
pub struct AutoScan {
    outbound: Outbound,
    cache: ScanCache,
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
                .time_to_live(Duration::from_secs(3600))
                .build(),
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
        let futures = unique.into_iter().take(MAX_LINKS).map(|link| {
            let groups = groups.clone();
            let property = &property;
            async move {
                let (group, error) = self.resolve_one(property, &groups, &link).await;
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
        let key = (property.id.as_str().to_owned(), link.to_owned());
        if let Some(hit) = self.cache.get(&key).await {
            return (hit, None);
        }
        let stop = |u: &Url| find_group_for_url(groups, u).is_some();
        match self
            .outbound
            .resolve_redirects_until(&url, DEFAULT_MAX_HOPS, DEFAULT_CHAIN_TIMEOUT, &stop)
            .await
        {
            Ok(chain) => {
                let group = find_group_for_url(groups, &chain.final_url).map(|g| g.key.clone());
                self.cache.insert(key, group.clone()).await;
                metrics::counter!("clicktrail_autoscan_total", "outcome" => if group.is_some() { "matched" } else { "unmatched" })
                .increment(1);
                (group, None)
            }
            Err(e) => {
                metrics::counter!("clicktrail_autoscan_total", "outcome" => e.code()).increment(1);
                tracing::debug!(code = e.code(), "autoscan could not resolve a link");
                (None, Some(e.code()))
            }
        }
    }
}
