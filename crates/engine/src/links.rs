//! Tracked links for direct linking: creating them, and following one.
//! Slugs belong to a property: a link's URL is `/go/{property_id}/{slug}`.
//! The short `/go/{slug}` of links made before that still works: it means
//! the oldest link of that slug (slugs were unique across the server
//! then, so that is the link it always meant).
//!
//! Following a link records a session (utm and ad click ids of the `/go`
//! URL, referrer, user agent) and a click (naming the link) through the
//! same ingest pipeline as the tag, then sends the visitor on to the offer
//! with the subid set to the click id.
//!
//! Consent: the visit's consent is the `ct_consent` query parameter
//! (`granted` / `denied`), else the tag's `_ctc` cookie when the request
//! carries it (`1` / `0`: the tracking server shares the site's registrable
//! domain), else unknown. When it does not allow identifiers (always so on
//! a `consent_required` property without a grant), the visit is recorded
//! under an anonymous visitor, without address or user agent string, and no
//! `_ctv` cookie is read or set.
//!
//! A paused link stops tracking but keeps redirecting: it records nothing
//! (no session, no click, no visitor cookie) and sends the visitor to its
//! destination as it is (a `--CLICK-ID--` in it removed), so an ad still
//! pointing at it never lands on an error page. What trackers such as
//! AnyTrack and Voluum do; see docs/DASHBOARD.md.

use std::net::SocketAddr;
use std::sync::Arc;

use clicktrail_domain::clickid;
use clicktrail_domain::collect::{CollectedEvent, EventName, Link};
use clicktrail_domain::consent::{self, Consent};
use clicktrail_domain::ids::random_token;
use clicktrail_domain::links::{TrackingGroup, find_group, tag_href};
use clicktrail_domain::{EventId, PropertyId, VisitorId};
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use clicktrail_store::integrations::Integration;
use clicktrail_store::links::{self, LinkStats, TrackedLink};
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
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLink {
    /// Empty or absent: one is generated ([`GENERATED_SLUG_LEN`] random
    /// lowercase letters and digits).
    #[serde(default)]
    pub slug: String,
    pub destination_url: String,
    #[serde(default)]
    pub integration: Option<String>,
}

/// `PATCH /api/v1/links/{id}`: what is absent stays as it is.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateLink {
    #[serde(default)]
    pub destination_url: Option<String>,
    /// `true` pauses the link (it keeps redirecting, records nothing),
    /// `false` resumes it.
    #[serde(default)]
    pub paused: Option<bool>,
}

/// A tracked link as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub id: String,
    pub property_id: String,
    pub slug: String,
    pub destination_url: String,
    pub integration_id: Option<String>,
    pub url: String,
    /// Paused: redirects without recording anything.
    pub paused: bool,
    pub paused_at: Option<i64>,
    pub created_at: i64,
}

/// A link with its tracking group and what its clicks led to (the
/// dashboard's link list and link page).
#[derive(Debug, Clone, Serialize)]
pub struct LinkReport {
    #[serde(flatten)]
    pub link: LinkView,
    /// The tracking group whose subid `/go` sets now: the link's
    /// integration's, else the group its destination matches.
    pub tracking_group: Option<String>,
    /// The name of the link's integration, if it has one.
    pub integration_name: Option<String>,
    pub stats: LinkStats,
}

/// How far back "recent" clicks go in a [`LinkReport`].
pub const RECENT_DAYS: i64 = 30;

/// Length of a generated slug: 36^8 (2.8e12) slugs, so a property's links
/// practically never collide (a collision is retried).
pub const GENERATED_SLUG_LEN: usize = 8;

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
/// The tag's consent cookie (`1` granted, `0` denied).
const CONSENT_COOKIE: &str = "_ctc";
/// The query parameter that tells `/go` the visitor's consent.
pub const CONSENT_PARAM: &str = "ct_consent";

fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn visitor_from_cookie(headers: &HeaderMap) -> Option<VisitorId> {
    cookie(headers, VISITOR_COOKIE).and_then(|v| VisitorId::parse(v).ok())
}

/// The consent a `/go` request carries: `ct_consent=granted|denied` in the
/// query, else the `_ctc` cookie (`1` / `0`), else unknown. Each is one
/// choice for every purpose; anything else counts as not said.
fn link_consent(query: Option<&str>, headers: &HeaderMap) -> Consent {
    let from_query = query.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == CONSENT_PARAM)
            .and_then(|(_, v)| match v.as_ref() {
                "granted" => Some(true),
                "denied" => Some(false),
                _ => None,
            })
    });
    let from_cookie = || match cookie(headers, CONSENT_COOKIE) {
        Some("1") => Some(true),
        Some("0") => Some(false),
        _ => None,
    };
    from_query
        .or_else(from_cookie)
        .map_or(Consent::UNKNOWN, Consent::all)
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
            property_id: l.property_id.clone(),
            slug: l.slug.clone(),
            destination_url: l.destination_url.clone(),
            integration_id: l.integration_id.clone(),
            url: link_url(self.properties.public_base(), l),
            paused: l.paused_at.is_some(),
            paused_at: l.paused_at,
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
        let generated = slug.is_empty();
        if !generated && !slug_ok(slug) {
            problems.push(FieldProblem::new(
                "slug",
                "invalid_slug",
                "1 to 64 characters of letters, digits, - and _",
            ));
        }
        problems.extend(destination_problem(&req.destination_url));
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
        // A generated slug that happens to be taken is drawn again.
        let mut attempts = if generated { 3 } else { 1 };
        loop {
            let slug = if generated {
                generate_slug()
            } else {
                slug.to_owned()
            };
            match links::create(
                &self.db,
                EntityId::generate("lnk").as_str(),
                &p.id,
                &slug,
                &req.destination_url,
                req.integration.as_deref(),
            )
            .await
            {
                Ok(l) => {
                    // A `/go` of this slug may have been answered "no such
                    // link" a moment ago.
                    self.forget(&l).await;
                    return Ok(self.view(&l));
                }
                Err(e) if e.is_unique_violation() => {
                    attempts -= 1;
                    if attempts == 0 {
                        return Err(ServiceError::conflict(
                            "slug_taken",
                            "this slug is already used",
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A link of the caller's workspace (another workspace's is not found).
    async fn owned(&self, caller: &Caller, link_id: &str) -> ServiceResult<TrackedLink> {
        let not_found = || ServiceError::not_found("link");
        if link_id.is_empty() || link_id.len() > 64 {
            return Err(not_found());
        }
        let l = links::get(&self.db, link_id).await?.ok_or_else(not_found)?;
        match self.properties.owned(caller, &l.property_id).await {
            Ok(_) => Ok(l),
            Err(e) if e.status == http::StatusCode::NOT_FOUND => Err(not_found()),
            Err(e) => Err(e),
        }
    }

    /// One link of the caller's workspace.
    pub async fn get(&self, caller: &Caller, link_id: &str) -> ServiceResult<LinkView> {
        Ok(self.view(&self.owned(caller, link_id).await?))
    }

    /// Changes a link's destination, or pauses or resumes it. Takes effect
    /// at once in this process; other processes sharing the database see it
    /// within the lookup cache's 30 seconds.
    pub async fn update(
        &self,
        caller: &Caller,
        link_id: &str,
        req: UpdateLink,
    ) -> ServiceResult<LinkView> {
        let l = self.owned(caller, link_id).await?;
        if let Some(url) = &req.destination_url
            && let Some(problem) = destination_problem(url)
        {
            return Err(ServiceError::validation(vec![problem]));
        }
        let l = links::update(&self.db, &l.id, req.destination_url.as_deref(), req.paused)
            .await?
            .ok_or_else(|| ServiceError::not_found("link"))?;
        self.forget(&l).await;
        Ok(self.view(&l))
    }

    /// Drops what `/go` remembers of a link's slug.
    async fn forget(&self, l: &TrackedLink) {
        self.cache
            .invalidate(&(Some(l.property_id.clone()), l.slug.clone()))
            .await;
        self.cache.invalidate(&(None, l.slug.clone())).await;
    }

    /// The caller's property's links with their tracking group and what
    /// their clicks led to (one grouped query for all of them).
    pub async fn reports(
        &self,
        caller: &Caller,
        property_id: &str,
    ) -> ServiceResult<Vec<LinkReport>> {
        let p = self.properties.owned(caller, property_id).await?;
        let all = links::list(&self.db, &p.id).await?;
        self.reports_of(&p.id, all, None).await
    }

    /// One link of the caller's workspace, as [`Links::reports`] shows it.
    pub async fn report(&self, caller: &Caller, link_id: &str) -> ServiceResult<LinkReport> {
        let l = self.owned(caller, link_id).await?;
        let pid = PropertyId::parse(&l.property_id).map_err(ServiceError::internal)?;
        let id = l.id.clone();
        self.reports_of(&pid, vec![l], Some(&id))
            .await?
            .pop()
            .ok_or_else(|| ServiceError::not_found("link"))
    }

    async fn reports_of(
        &self,
        pid: &PropertyId,
        all: Vec<TrackedLink>,
        only: Option<&str>,
    ) -> ServiceResult<Vec<LinkReport>> {
        let since = chrono::Utc::now().timestamp_millis() - RECENT_DAYS * 86_400_000;
        let mut stats = links::stats(&self.db, pid, since, only).await?;
        let groups = self.properties.groups(pid).await?;
        let integrations = clicktrail_store::integrations::list_for_property(&self.db, pid).await?;
        Ok(all
            .into_iter()
            .map(|l| {
                let integration = l
                    .integration_id
                    .as_deref()
                    .and_then(|id| integrations.iter().find(|i| i.id == id));
                LinkReport {
                    tracking_group: group_of(&l, integration, &groups).map(|g| g.key.clone()),
                    integration_name: integration.map(|i| i.name.clone()),
                    stats: stats.remove(&l.id).unwrap_or_default(),
                    link: self.view(&l),
                }
            })
            .collect())
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
        if link.paused_at.is_some() {
            metrics::counter!("clicktrail_redirects_total", "outcome" => "paused").increment(1);
            let location = tag_href(&link.destination_url, None, "")
                .unwrap_or_else(|| link.destination_url.clone());
            return Ok(Some(Redirect {
                location,
                set_cookie: None,
            }));
        }

        let groups = state.properties.groups(&pid).await?;
        let integration = match &link.integration_id {
            Some(id) => clicktrail_store::integrations::get(&state.db, id).await?,
            None => None,
        };
        let group = group_of(&link, integration.as_ref(), &groups);
        let pageview = uuid::Uuid::now_v7();
        let click_id = clickid::mint(pageview);
        let location = tag_href(&link.destination_url, group, click_id.as_str())
            .unwrap_or_else(|| link.destination_url.clone());
        let group = group.map(|g| g.key.clone());

        let pageview_id =
            EventId::parse(&pageview.hyphenated().to_string()).map_err(ServiceError::internal)?;
        let required = property.settings.consent_required;
        let consent = link_consent(query, headers).resolve(required);
        let identified = consent.allows_identifiers(required);
        let (visitor, new_visitor) = match visitor_from_cookie(headers) {
            _ if !identified => (consent::anonymous_visitor(&pageview_id), false),
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
        let mut facts = state.enricher.request_facts(headers, Some(peer));
        let mut stored_ip = state
            .enricher
            .stored_ip(property.settings.ip_handling, facts.ip);
        if !identified {
            facts = facts.without_identifiers();
            stored_ip = None;
        }
        let base = CollectedEvent {
            event_id: pageview_id,
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
            consent,
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
        let link_id: Arc<str> = Arc::from(link.id.as_str());
        let events: Vec<IngestEvent> = [base, click]
            .into_iter()
            .map(|event| IngestEvent {
                property_id: property.id.as_str().to_owned(),
                received_at_ms: now,
                session_timeout_ms: property.settings.session_timeout_ms(),
                event,
                seed: seed.clone(),
                click_origin: ClickOrigin::Redirect {
                    link_id: link_id.clone(),
                },
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

/// The tracking group whose subid a link's redirect sets: its
/// integration's (none while that integration is paused: `groups` holds
/// the property's active ones), else the group its destination matches.
fn group_of<'a>(
    link: &TrackedLink,
    integration: Option<&Integration>,
    groups: &'a [TrackingGroup],
) -> Option<&'a TrackingGroup> {
    match integration {
        Some(i) => groups.iter().find(|g| g.key == i.tracking_group),
        None => find_group(groups, &link.destination_url),
    }
}

fn slug_ok(slug: &str) -> bool {
    !slug.is_empty()
        && slug.len() <= 64
        && slug
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A slug for a link created without one: lowercase letters and digits,
/// easy to read out and to type.
fn generate_slug() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..GENERATED_SLUG_LEN)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// What is wrong with a destination URL: it must be an absolute http(s)
/// URL with a host, at most 4096 bytes.
fn destination_problem(url: &str) -> Option<FieldProblem> {
    match url::Url::parse(url) {
        Ok(u)
            if matches!(u.scheme(), "http" | "https")
                && u.host_str().is_some()
                && url.len() <= 4096 =>
        {
            None
        }
        _ => Some(FieldProblem::new(
            "destination_url",
            "invalid_url",
            "an absolute http(s) URL",
        )),
    }
}

/// A link's URL: `/go/{property_id}/{slug}`.
fn link_url(base: &str, l: &TrackedLink) -> String {
    format!("{base}/go/{}/{}", l.property_id, l.slug)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert!(slug_ok("black-friday_2"));
        assert!(!slug_ok(""));
        assert!(!slug_ok("with space"));
        assert!(!slug_ok("a/b"));
        assert!(!slug_ok(&"a".repeat(65)));
        let s = generate_slug();
        assert_eq!(s.len(), GENERATED_SLUG_LEN);
        assert!(slug_ok(&s));
        assert!(
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        );
    }

    #[test]
    fn consent_of_a_visit() {
        let mut h = HeaderMap::new();
        assert_eq!(link_consent(None, &h), Consent::UNKNOWN);
        assert_eq!(
            link_consent(Some("gclid=x&ct_consent=granted"), &h),
            Consent::all(true)
        );
        assert_eq!(
            link_consent(Some("ct_consent=denied"), &h),
            Consent::all(false)
        );
        assert_eq!(link_consent(Some("ct_consent=yes"), &h), Consent::UNKNOWN);
        h.insert(
            header::COOKIE,
            http::HeaderValue::from_static("_ctv=abcdefgh1234; _ctc=1"),
        );
        assert_eq!(link_consent(None, &h), Consent::all(true));
        // The query says it for this visit, over the cookie.
        assert_eq!(
            link_consent(Some("ct_consent=denied"), &h),
            Consent::all(false)
        );
        h.insert(header::COOKIE, http::HeaderValue::from_static("_ctc=0"));
        assert_eq!(link_consent(None, &h), Consent::all(false));
    }

    #[test]
    fn destinations() {
        assert!(destination_problem("https://offer.example/x?a=1").is_none());
        assert!(destination_problem("http://offer.example").is_none());
        for bad in [
            "offer.example",
            "ftp://offer.example/",
            "javascript:alert(1)",
            "https://",
            &format!("https://offer.example/{}", "a".repeat(4096)),
        ] {
            let p = destination_problem(bad).expect(bad);
            assert_eq!(
                (p.field.as_str(), p.code.as_str()),
                ("destination_url", "invalid_url")
            );
        }
    }
}
