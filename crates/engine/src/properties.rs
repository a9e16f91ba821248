//! The properties service: a tracked site (its domains and settings) and
//! what hangs off it that every request needs fast: the property itself
//! and its served tag, both cached, and its tracking groups (from the
//! integrations installed on it).
//!
//! Deleting a property hides it at once from every lookup (the tag answers
//! 404, the collector refuses its events with `unknown_property`, `/go`
//! and postbacks 404), keeps it restorable for the grace period
//! (`retention.deleted_property_grace_days`), after which the retention job
//! purges it.

use clicktrail_domain::public_url::{PUBLIC_URL_FIX, check_public_url_for};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::links::TrackingGroup;
use clicktrail_domain::property::{PropertySettings, normalise_domains};
use clicktrail_domain::{ClickId, PropertyId};
use clicktrail_networks::catalog::Catalog;
use clicktrail_store::properties::{self, Property};
use clicktrail_store::{Db, StoreError, auth as store_auth, clicks, integrations};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::error::{FieldProblem, ServiceError, ServiceResult};
use crate::tag::{self, ServedTag};

/// `POST /api/v1/properties`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProperty {
    pub name: String,
    pub domains: Vec<String>,
    #[serde(default)]
    pub settings: Option<PropertySettings>,
    /// The reporting currency (ISO 4217): sets `settings.currency`.
    #[serde(default)]
    pub currency: Option<String>,
    /// The time zone (IANA name): sets `settings.timezone`.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Master key only: the workspace to create it in (default `default`).
    #[serde(default)]
    pub workspace: Option<String>,
}

/// `PATCH /api/v1/properties/{id}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateProperty {
    pub name: Option<String>,
    pub domains: Option<Vec<String>>,
    pub settings: Option<PropertySettings>,
    /// Sets `settings.currency`.
    pub currency: Option<String>,
    /// Sets `settings.timezone`.
    pub timezone: Option<String>,
}

/// The top-level `currency` and `timezone` of a create or an update (the
/// names the contract gives them), put into the settings, where everything
/// reads them. They win over the same keys inside `settings`, which take
/// their defaults when left out and so cannot be told from a choice.
#[derive(Debug, Clone, Copy, Default)]
struct TopLevel<'a> {
    currency: Option<&'a str>,
    timezone: Option<&'a str>,
}

impl TopLevel<'_> {
    fn apply(self, settings: &mut PropertySettings) {
        if let Some(c) = self.currency {
            settings.currency = clicktrail_domain::Currency::parse(c)
                .map(|c| c.as_str().to_owned())
                .unwrap_or_else(|_| c.to_owned());
        }
        if let Some(tz) = self.timezone {
            settings.timezone = tz.trim().to_owned();
        }
    }

    /// A settings problem named as the caller gave the value.
    fn field(self, problem: &mut FieldProblem) {
        match problem.field.as_str() {
            "settings.currency" if self.currency.is_some() => problem.field = "currency".into(),
            "settings.timezone" if self.timezone.is_some() => problem.field = "timezone".into(),
            _ => {}
        }
    }
}

/// A property as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PropertyView {
    pub id: PropertyId,
    pub name: String,
    pub domains: Vec<String>,
    pub settings: PropertySettings,
    pub tag_url: String,
    pub snippet: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// The secret a site's backend signs `POST /collect/server` requests
    /// with (see `docs/COLLECTOR.md`); changes with
    /// `settings.onsite.secret_version`.
    pub server_secret: String,
    /// What stops this property from tracking a live site, each with a
    /// stable code, what is wrong and what to do (today: a `public_url`
    /// that visitors or networks cannot reach, or plain http). Empty when
    /// nothing is known to be wrong.
    pub warnings: Vec<Warning>,
    /// When it was deleted (only on a deleted property).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// When a deleted property's data is purged; it can be restored until
    /// then (only on a deleted property).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purge_after: Option<i64>,
}

/// A setup problem an API client should show its user.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Warning {
    pub code: &'static str,
    pub message: String,
    pub fix: &'static str,
}

/// The properties service.
pub struct Properties {
    db: Db,
    keyring: crate::crypto::Keyring,
    catalog: Arc<Catalog>,
    /// Public base URL, no trailing slash.
    public_base: Arc<str>,
    /// Properties by id, including misses, for the public routes that see
    /// every request (collector, tag). Short-lived so edits made by
    /// another process show quickly; edits through this one drop it.
    cache: moka::future::Cache<String, Option<Arc<Property>>>,
    /// Each property's served tag (configuration baked in), by property id.
    tags: moka::future::Cache<String, Arc<ServedTag>>,
    /// How long a deleted property can be restored, ms.
    purge_grace_ms: i64,
}

impl std::fmt::Debug for Properties {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Properties")
            .field("public_base", &self.public_base)
            .finish_non_exhaustive()
    }
}

fn check_name(name: &str) -> Result<String, FieldProblem> {
    let n = name.trim();
    if n.is_empty() || n.chars().count() > 100 {
        return Err(FieldProblem::new(
            "name",
            "invalid_name",
            "1 to 100 characters",
        ));
    }
    Ok(n.to_owned())
}

/// Checks name, domains and settings together, reporting every problem.
pub fn validate_property(
    name: &str,
    domains: &[String],
    settings: &PropertySettings,
) -> ServiceResult<(String, Vec<String>)> {
    validate_with(name, domains, settings, TopLevel::default())
}

fn validate_with(
    name: &str,
    domains: &[String],
    settings: &PropertySettings,
    top: TopLevel<'_>,
) -> ServiceResult<(String, Vec<String>)> {
    let mut problems = Vec::new();
    let name = check_name(name).map_err(|p| problems.push(p)).ok();
    let domains = normalise_domains(domains)
        .map_err(|e| problems.push(e.into()))
        .ok();
    if let Err(errs) = settings.validate() {
        problems.extend(errs.into_iter().map(|e| {
            let mut p = FieldProblem::from(e);
            top.field(&mut p);
            p
        }));
    }
    match (name, domains) {
        (Some(n), Some(d)) if problems.is_empty() => Ok((n, d)),
        _ => Err(ServiceError::validation(problems)),
    }
}

impl Properties {
    pub fn new(
        db: Db,
        catalog: Arc<Catalog>,
        public_base: &str,
        keyring: crate::crypto::Keyring,
    ) -> Self {
        Self {
            db,
            keyring,
            catalog,
            public_base: public_base.trim_end_matches('/').into(),
            cache: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
            tags: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            purge_grace_ms: clicktrail_domain::property::Retention::days_ms(30),
        }
    }

    /// Sets how many days a deleted property can be restored before it is
    /// purged (`retention.deleted_property_grace_days`; 30 by default).
    pub fn with_purge_grace_days(mut self, days: u32) -> Self {
        self.purge_grace_ms = clicktrail_domain::property::Retention::days_ms(days);
        self
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> &str {
        &self.public_base
    }

    /// A property by id, through the cache (no access check: for the
    /// public routes, which are keyed by the property id itself).
    pub async fn get(&self, id: &PropertyId) -> Result<Option<Arc<Property>>, StoreError> {
        // One load per key however many requests miss at once: when the
        // entry expires under load, hundreds of collector requests would
        // otherwise query the database together.
        self.cache
            .try_get_with_by_ref(id.as_str(), async {
                Ok::<_, StoreError>(properties::get(&self.db, id).await?.map(Arc::new))
            })
            .await
            .map_err(StoreError::Shared)
    }

    /// Drops a property (and its served tag) from the caches after an edit.
    pub async fn forget(&self, id: &PropertyId) {
        self.cache.invalidate(id.as_str()).await;
        self.tags.invalidate(id.as_str()).await;
    }

    /// Drops a property's served tag so a changed configuration (an
    /// integration installed, settings edited) reaches visitors at once.
    pub async fn forget_tag(&self, id: &PropertyId) {
        self.tags.invalidate(id.as_str()).await;
    }

    pub fn tag_url(&self, id: &PropertyId) -> String {
        format!("{}/t/{}.js", self.public_base, id)
    }

    pub fn view(&self, p: &Property) -> PropertyView {
        let tag_url = self.tag_url(&p.id);
        PropertyView {
            id: p.id.clone(),
            name: p.name.clone(),
            domains: p.domains.clone(),
            settings: p.settings.clone(),
            snippet: tag::snippet(&tag_url),
            tag_url,
            created_at: p.created_at,
            updated_at: p.updated_at,
            server_secret: self
                .keyring
                .collect_secret(p.id.as_str(), p.settings.onsite.secret_version),
            warnings: check_public_url_for(&self.public_base, &p.domains)
                .map(|problem| Warning {
                    code: problem.code(),
                    message: problem.explain(&self.public_base),
                    fix: PUBLIC_URL_FIX,
                })
                .into_iter()
                .collect(),
            deleted_at: p.deleted_at,
            purge_after: p.purge_after,
        }
    }

    /// The caller's property, or `not_found` (also for another workspace's).
    pub async fn owned(&self, caller: &Caller, id: &str) -> ServiceResult<Property> {
        let id = PropertyId::parse(id).map_err(|_| ServiceError::not_found("property"))?;
        properties::get_in_workspace(&self.db, caller.workspace(), &id)
            .await?
            .ok_or_else(|| ServiceError::not_found("property"))
    }

    pub async fn list(&self, caller: &Caller) -> ServiceResult<Vec<Property>> {
        Ok(properties::list(&self.db, caller.workspace()).await?)
    }

    /// The caller's deleted properties that can still be restored, the
    /// next to be purged first.
    pub async fn list_deleted(&self, caller: &Caller) -> ServiceResult<Vec<Property>> {
        Ok(properties::list_deleted(&self.db, caller.workspace()).await?)
    }

    /// Deletes the caller's property: from now on it answers as if it did
    /// not exist, and the retention job purges it after the grace period
    /// unless it is restored. Returns it as deleted.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<Property> {
        let p = self.owned(caller, id).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let deleted =
            properties::soft_delete(&self.db, &p.id, now, now + self.purge_grace_ms).await?;
        // This process's caches at once; another process's expire within
        // seconds (see `cache`).
        self.forget(&p.id).await;
        if !deleted {
            return Err(ServiceError::not_found("property"));
        }
        tracing::info!(property = %p.id, "property deleted");
        properties::get_deleted(&self.db, caller.workspace(), &p.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("property"))
    }

    /// Restores the caller's deleted property (before it is purged).
    pub async fn restore(&self, caller: &Caller, id: &str) -> ServiceResult<Property> {
        let pid = PropertyId::parse(id).map_err(|_| ServiceError::not_found("property"))?;
        if properties::get_deleted(&self.db, caller.workspace(), &pid)
            .await?
            .is_some()
        {
            let now = chrono::Utc::now().timestamp_millis();
            properties::restore(&self.db, &pid, now).await?;
            self.forget(&pid).await;
            tracing::info!(property = %pid, "property restored");
        }
        // A live property is returned as it is: restoring twice is harmless.
        self.owned(caller, id).await
    }

    pub async fn create(&self, caller: &Caller, req: CreateProperty) -> ServiceResult<Property> {
        let top = TopLevel {
            currency: req.currency.as_deref(),
            timezone: req.timezone.as_deref(),
        };
        let mut settings = req.settings.unwrap_or_default();
        top.apply(&mut settings);
        let (name, domains) = validate_with(&req.name, &req.domains, &settings, top)?;
        let workspace_id = match (caller.workspace(), req.workspace) {
            (Some(_), Some(_)) => {
                return Err(ServiceError::forbidden(
                    "forbidden",
                    "only the master key may choose a workspace",
                ));
            }
            (Some(w), None) => w,
            (None, ws) => {
                store_auth::ensure_workspace(&self.db, ws.as_deref().unwrap_or("default"))
                    .await?
                    .id
            }
        };
        Ok(properties::create(&self.db, workspace_id, &name, &domains, &settings).await?)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateProperty,
    ) -> ServiceResult<Property> {
        let p = self.owned(caller, id).await?;
        let top = TopLevel {
            currency: req.currency.as_deref(),
            timezone: req.timezone.as_deref(),
        };
        let mut settings = req.settings.unwrap_or(p.settings.clone());
        top.apply(&mut settings);
        let (name, domains) = validate_with(
            req.name.as_deref().unwrap_or(&p.name),
            req.domains.as_deref().unwrap_or(&p.domains),
            &settings,
            top,
        )?;
        properties::update(&self.db, &p.id, &name, &domains, &settings).await?;
        self.forget(&p.id).await;
        self.owned(caller, id).await
    }

    /// A click of the caller's property, with its session and traffic
    /// source.
    pub async fn click(&self, caller: &Caller, id: &str, click_id: &str) -> ServiceResult<Value> {
        let p = self.owned(caller, id).await?;
        let click_id = ClickId::parse(click_id).map_err(|_| ServiceError::not_found("click"))?;
        let click = clicks::resolve(&self.db, &p.id, &click_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("click"))?;
        let session = clicks::get_session(&self.db, click.session_id).await?;
        let traffic = session.as_ref().map(traffic_source_json);
        Ok(json!({
            "click": click,
            "session": session.as_ref().map(session_json),
            "traffic_source": traffic,
        }))
    }

    /// The tracking groups of a property's installed integrations, merged
    /// by group key.
    pub async fn groups(&self, property: &PropertyId) -> Result<Vec<TrackingGroup>, StoreError> {
        let installed = integrations::list_for_property(&self.db, property).await?;
        let mut groups: BTreeMap<String, TrackingGroup> = BTreeMap::new();
        for i in installed.iter().filter(|i| i.status != "paused") {
            let Some(entry) = self.catalog.get(&i.catalog_key) else {
                continue;
            };
            let settings: Map<String, Value> =
                serde_json::from_str(&i.settings).unwrap_or_default();
            let g = entry.install_tracking_group(&settings);
            match groups.get_mut(&g.key) {
                Some(existing) => {
                    for a in g.aliases {
                        if !existing.aliases.contains(&a) {
                            existing.aliases.push(a);
                        }
                    }
                    for p in g.patterns {
                        if !existing.patterns.contains(&p) {
                            existing.patterns.push(p);
                        }
                    }
                }
                None => {
                    groups.insert(g.key.clone(), g);
                }
            }
        }
        Ok(groups.into_values().collect())
    }

    /// The tag's configuration for a property (what the served tag embeds).
    pub fn tag_config(&self, property: &Property, groups: &[TrackingGroup]) -> Value {
        tag::config_json(&self.public_base, property, groups)
    }

    /// A property's tag, ready to serve, through the cache.
    pub async fn served_tag(&self, property: &Property) -> Result<Arc<ServedTag>, StoreError> {
        if let Some(hit) = self.tags.get(property.id.as_str()).await {
            return Ok(hit);
        }
        let groups = self.groups(&property.id).await?;
        let tag = Arc::new(ServedTag::build(&self.tag_config(property, &groups)));
        self.tags
            .insert(property.id.as_str().to_owned(), tag.clone())
            .await;
        Ok(tag)
    }
}

/// A session's ad click ids (stored as JSON text) as an object, `{}` when
/// it has none.
fn click_ids_json(s: &clicks::Session) -> Value {
    s.click_ids
        .as_deref()
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or(json!({}))
}

/// A session as the API shows it: its stored columns, the ad click ids as
/// an object rather than the JSON text they are stored as.
pub fn session_json(s: &clicks::Session) -> Value {
    let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("click_ids".into(), click_ids_json(s));
    }
    v
}

/// The traffic-source view of a session, as the API and the conversion log
/// show attribution.
pub fn traffic_source_json(s: &clicks::Session) -> Value {
    let click_ids = click_ids_json(s);
    json!({
        "channel": s.channel,
        "source": s.source,
        "medium": s.medium,
        "campaign": s.utm_campaign,
        "term": s.utm_term,
        "content": s.utm_content,
        "utm_id": s.utm_id,
        "referrer": s.referrer,
        "landing_page": s.landing_page,
        "landing_url": s.landing_url,
        "click_ids": click_ids,
        "fbc": s.fbc,
        "fbp": s.fbp,
        "ttp": s.ttp,
        "device": s.device,
        "browser": s.browser,
        "os": s.os,
        "is_bot": s.is_bot,
    })
}
