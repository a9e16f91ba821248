//! Tracked links for direct linking: creating them, and following one.
//! Slugs belong to a property: a link's URL is `/go/{property_id}/{slug}`.
//! The short `/go/{slug}` of links made before that still works: it means
//! the oldest link of that slug (slugs were unique across the server
//! then, so that is the link it always meant).
//!
//! Following a link records a session (utm and ad click ids of the `/go`
//! URL, referrer, user agent) and a click through the same ingest pipeline
//! as the tag, then sends the visitor on to the offer with the subid set to
//! the click id.

use std::net::SocketAddr;
use std::sync::Arc;

use clicktrail_domain::clickid;
use clicktrail_domain::collect::{CollectedEvent, EventName, Link};
use clicktrail_domain::ids::random_token;
use clicktrail_domain::links::{find_group, tag_href};
use clicktrail_domain::{EventId, PropertyId, VisitorId};
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use clicktrail_store::links::{self, TrackedLink};
use http::{HeaderMap, header};

use std::time::Duration;

use clicktrail_domain::ids::EntityId;
use clicktrail_store::Db;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::enrich::{self, Enricher};
use crate::error::{FieldProblem, ServiceError, ServiceResult};
use crate::ingest::IngestQueue;
use crate::properties::Properties;

/// `POST /api/v1/properties/{id}/links`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    pub slug: String,
    pub destination_url: String,
    #[serde(default)]
    pub integration: Option<String>,
}

/// A tracked link as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub id: String,
    pub slug: String,
    pub destination_url: String,
    pub integration_id: Option<String>,
    pub url: String,
    pub created_at: i64,
}

/// The tracked-links service.
pub struct Links {
    db: Db,
    properties: Arc<Properties>,
    enricher: Arc<Enricher>,
    ingest: IngestQueue,
    /// Tracked links by (property, slug) (`/go/...` must answer within
    /// milliseconds); no property for the short `/go/{slug}`.
    cache: moka::future::Cache<(Option<String>, String), Option<Arc<TrackedLink>>>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Links")
    }
}

/// Where to send the visitor, and the visitor cookie to set.
#[derive(Debug, Clone)]
pub struct Redirect {
    pub location: String,
    pub set_cookie: Option<String>,
}

const VISITOR_COOKIE: &str = "_ctv";

fn visitor_from_cookie(headers: &HeaderMap) -> Option<VisitorId> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == VISITOR_COOKIE)
        .and_then(|(_, v)| VisitorId::parse(v).ok())
}

impl Links {
    pub fn new(
        db: Db,
        properties: Arc<Properties>,
        enricher: Arc<Enricher>,
        ingest: IngestQueue,
    ) -> Self {
        Self {
            db,
            properties,
            enricher,
            ingest,
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
        }
    }

    fn view(&self, l: &TrackedLink) -> LinkView {
        LinkView {
            id: l.id.clone(),
            slug: l.slug.clone(),
            destination_url: l.destination_url.clone(),
            integration_id: l.integration_id.clone(),
            url: link_url(self.properties.public_base(), l),
            created_at: l.created_at,
        }
    }

    /// Creates a tracked link on the caller's property.
    pub async fn create(
        &self,
        caller: &Caller,
        property_id: &str,
        req: CreateLink,
    ) -> ServiceResult<LinkView> {
        let p = self.properties.owned(caller, property_id).await?;
        let mut problems = Vec::new();
        let slug = req.slug.trim();
        if slug.is_empty()
            || slug.len() > 64
            || !slug
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            problems.push(FieldProblem::new(
                "slug",
                "invalid_slug",
                "1 to 64 characters of letters, digits, - and _",
            ));
        }
        match url::Url::parse(&req.destination_url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some()
                    && req.destination_url.len() <= 4096 => {}
            _ => problems.push(FieldProblem::new(
                "destination_url",
                "invalid_url",
                "an absolute http(s) URL",
            )),
        }
        if let Some(int) = &req.integration {
            let ok = clicktrail_store::integrations::get(&self.db, int)
                .await?
                .is_some_and(|i| i.property_id == p.id.as_str());
            if !ok {
                problems.push(FieldProblem::new(
                    "integration",
                    "unknown_integration",
                    "an integration installed on this property",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(ServiceError::validation(problems));
        }
        let l = match links::create(
            &self.db,
            EntityId::generate("lnk").as_str(),
            &p.id,
            slug,
            &req.destination_url,
            req.integration.as_deref(),
        )
        .await
        {
            Ok(l) => l,
            Err(e) if e.is_unique_violation() => {
                return Err(ServiceError::conflict(
                    "slug_taken",
                    "this slug is already used",
                ));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(self.view(&l))
    }

    /// The tracked links of the caller's property.
    pub async fn list(&self, caller: &Caller, property_id: &str) -> ServiceResult<Vec<LinkView>> {
        let p = self.properties.owned(caller, property_id).await?;
        Ok(links::list(&self.db, &p.id)
            .await?
            .iter()
            .map(|l| self.view(l))
            .collect())
    }

    /// Deletes the caller's tracked link: its `/go` URLs answer 404 from
    /// now on (in this process at once; another's cache forgets it within
    /// 30 s). The visits and clicks it recorded stay.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<()> {
        let l = links::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("link"))?;
        self.properties
            .owned(caller, &l.property_id)
            .await
            .map_err(|_| ServiceError::not_found("link"))?;
        if !links::delete(&self.db, &l.id).await? {
            return Err(ServiceError::not_found("link"));
        }
        self.cache
            .invalidate(&(Some(l.property_id.clone()), l.slug.clone()))
            .await;
        self.cache.invalidate(&(None, l.slug.clone())).await;
        tracing::info!(link = %l.id, "tracked link deleted");
        Ok(())
    }

    async fn by_slug(
        &self,
        property: Option<&str>,
        slug: &str,
    ) -> ServiceResult<Option<Arc<TrackedLink>>> {
        if slug.is_empty() || slug.len() > 64 || property.is_some_and(|p| p.len() > 64) {
            return Ok(None);
        }
        let key = (property.map(str::to_owned), slug.to_owned());
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let l = match property {
            Some(p) => links::by_property_slug(&self.db, p, slug).await?,
            None => links::by_slug(&self.db, slug).await?,
        }
        .map(Arc::new);
        self.cache.insert(key, l.clone()).await;
        Ok(l)
    }

    /// Follows `/go/{property_id}/{slug}` (or the short `/go/{slug}`, with
    /// no property: see the module's doc): records the visit and the click,
    /// and says where to send the visitor; `None` for an unknown link.
    pub async fn follow(
        &self,
        property: Option<&str>,
        slug: &str,
        query: Option<&str>,
        headers: &HeaderMap,
        peer: SocketAddr,
    ) -> ServiceResult<Option<Redirect>> {
        let state = self;
        let Some(link) = state.by_slug(property, slug).await? else {
            return Ok(None);
        };
        let pid = PropertyId::parse(&link.property_id).map_err(ServiceError::internal)?;
        let Some(property) = state.properties.get(&pid).await? else {
            return Ok(None);
        };

        // The tracking group: the link's integration's, else the group its
        // destination matches.
        let groups = state.properties.groups(&pid).await?;
        let wanted = match &link.integration_id {
            Some(id) => clicktrail_store::integrations::get(&state.db, id)
                .await?
                .map(|i| i.tracking_group),
            None => None,
        };
        let group = match wanted {
            Some(key) => groups.iter().find(|g| g.key == key),
            None => find_group(&groups, &link.destination_url),
        };
        let pageview = uuid::Uuid::now_v7();
        let click_id = clickid::mint(pageview);
        let location = tag_href(&link.destination_url, group, click_id.as_str())
            .unwrap_or_else(|| link.destination_url.clone());
        let group = group.map(|g| g.key.clone());

        let (visitor, new_visitor) = match visitor_from_cookie(headers) {
            Some(v) => (v, false),
            None => (
                VisitorId::parse(&random_token(22)).map_err(ServiceError::internal)?,
                true,
            ),
        };
        let url = link_url(state.properties.public_base(), &link);
        let landing = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{url}?{q}"),
            None => url,
        };
        let landing = url::Url::parse(&landing)
            .map_err(|_| ServiceError::bad_request("invalid_url", "the link URL is not valid"))?;
        let referrer = headers
            .get(header::REFERER)
            .and_then(|v| v.to_str().ok())
            .filter(|r| r.len() <= 4096)
            .map(str::to_owned);
        let now = chrono::Utc::now().timestamp_millis();
        let facts = state.enricher.request_facts(headers, Some(peer));
        let stored_ip = state
            .enricher
            .stored_ip(property.settings.ip_handling, facts.ip);
        let base = CollectedEvent {
            event_id: EventId::parse(&pageview.hyphenated().to_string())
                .map_err(ServiceError::internal)?,
            name: EventName::PageView,
            client_ts_ms: now,
            visitor_id: visitor.clone(),
            session_hint: None,
            url: landing,
            referrer,
            title: None,
            pageview_id: None,
            click_id: None,
            link: None,
            value: None,
            currency: None,
            props: None,
            cookies: Default::default(),
            user: Default::default(),
            screen: None,
            lang: None,
        };
        let mut click = base.clone();
        click.event_id = EventId::parse(&uuid::Uuid::now_v7().hyphenated().to_string())
            .map_err(ServiceError::internal)?;
        click.name = EventName::OutboundClick;
        click.pageview_id = Some(base.event_id.clone());
        click.click_id = Some(click_id.clone());
        click.link = Some(Link {
            url: location.clone(),
            tracking_group: group,
            text: None,
        });
        let seed = Arc::new(enrich::session_seed(&base, &facts, stored_ip));
        let events: Vec<IngestEvent> = [base, click]
            .into_iter()
            .map(|event| IngestEvent {
                property_id: property.id.as_str().to_owned(),
                received_at_ms: now,
                session_timeout_ms: property.settings.session_timeout_ms(),
                event,
                seed: seed.clone(),
                click_origin: ClickOrigin::Redirect,
                onsite: None,
            })
            .collect();
        // The visitor is sent on even if the click cannot be stored: a dead
        // link loses the visitor for sure, a lost click only maybe the
        // attribution (the conversion log will then show unknown_click_id).
        match state.ingest.submit(events).await {
            Ok(_) => metrics::counter!("clicktrail_redirects_total", "outcome" => "recorded")
                .increment(1),
            Err(e) => {
                tracing::error!(error = %e, "a /go click could not be recorded");
                metrics::counter!("clicktrail_redirects_total", "outcome" => "not_recorded")
                    .increment(1);
            }
        }
        let secure = if state.properties.public_base().starts_with("https://") {
            "; Secure"
        } else {
            ""
        };
        let set_cookie = new_visitor.then(|| {
        format!(
            "{VISITOR_COOKIE}={visitor}; Max-Age=31536000; Path=/; HttpOnly; SameSite=Lax{secure}"
        )
    });
        Ok(Some(Redirect {
            location,
            set_cookie,
        }))
    }
}

/// A link's URL: `/go/{property_id}/{slug}`.
fn link_url(base: &str, l: &TrackedLink) -> String {
    format!("{base}/go/{}/{}", l.property_id, l.slug)
}
