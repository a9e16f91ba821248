//! Installed integrations: installing a catalog entry on a property
//! (validated settings, encrypted credentials, a postback token), testing
//! an API integration's connection before it is saved, showing it with
//! masked credentials, editing its settings and event mapping, receiving
//! its postbacks, and deleting it (its postbacks are refused and its polls
//! stop at once; its conversion log stays unless purged).

use std::sync::Arc;

use clicktrail_domain::conversion::{LogStatus, SourceEvent};
use clicktrail_domain::ids::{EntityId, secret_token};
use clicktrail_domain::mapping::EventMapping;
use clicktrail_networks::catalog::{CatalogEntry, TrackingMethod};
use clicktrail_networks::incomeaccess::{IncomeAccessSettings, SecurityKey, split_generated_url};
use clicktrail_networks::postback::{self, PostbackBody, PostbackOptions};
use clicktrail_outbound::OutboundPolicy;
use clicktrail_store::integrations::{self, Integration, NewIntegration};
use clicktrail_store::properties::Property;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use std::time::Duration;

use clicktrail_networks::catalog::Catalog;
use clicktrail_store::Db;

use crate::auth::Caller;
use crate::commit::CommitFailure;
use crate::connection_test::{self, ConnectionTest, Egress};
use crate::conversions::{ConversionQueue, Pending};
use crate::crypto::Keyring;
use crate::error::{FieldProblem, ServiceError, ServiceResult};
use crate::polling::{self, PollReport, Poller};
use crate::properties::Properties;

/// The integrations service.
pub struct Integrations {
    db: Db,
    keyring: Keyring,
    catalog: Arc<Catalog>,
    properties: Arc<Properties>,
    poller: Arc<Poller>,
    conversions: ConversionQueue,
    /// This server's outbound addresses, for the IP whitelists of the
    /// programs it polls.
    egress: Egress,
    retention: Arc<crate::retention::Retention>,
    /// Integrations by postback token hash, briefly cached (postbacks come
    /// in bursts).
    by_token: moka::future::Cache<String, Option<Arc<Integration>>>,
}

/// What deleting an integration did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Deleted {
    pub id: String,
    pub deleted: bool,
    /// Whether the conversion log was purged (`?purge=true`).
    pub log_purged: bool,
    /// Conversions deleted with the log.
    pub conversions_deleted: u64,
}

impl std::fmt::Debug for Integrations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Integrations")
    }
}

/// `POST /api/v1/properties/{id}/integrations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallRequest {
    pub catalog: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credentials: Map<String, Value>,
    #[serde(default)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    pub event_mapping: Option<EventMapping>,
}

/// `POST /api/v1/integrations/test`: an install's body and the property
/// to test it for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    pub property_id: String,
    pub catalog: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credentials: Map<String, Value>,
    #[serde(default)]
    pub settings: Map<String, Value>,
    #[serde(default)]
    pub event_mapping: Option<EventMapping>,
}

impl TestRequest {
    /// The property id and the install body.
    pub fn into_parts(self) -> (String, InstallRequest) {
        (
            self.property_id,
            InstallRequest {
                catalog: self.catalog,
                name: self.name,
                credentials: self.credentials,
                settings: self.settings,
                event_mapping: self.event_mapping,
            },
        )
    }
}

/// An install request that passed every check, ready to be saved or tested.
struct CheckedInstall<'a> {
    entry: &'a CatalogEntry,
    name: String,
    validated: clicktrail_networks::catalog::ValidatedInstall,
    mapping: EventMapping,
}

/// `PUT /api/v1/integrations/{id}`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub credentials: Option<Map<String, Value>>,
    #[serde(default)]
    pub settings: Option<Map<String, Value>>,
    #[serde(default)]
    pub event_mapping: Option<EventMapping>,
    /// `active` or `paused`.
    #[serde(default)]
    pub status: Option<String>,
}

/// How often an API integration is polled, from its settings.
fn poll_interval_ms(settings: &Map<String, Value>) -> i64 {
    let minutes = settings
        .get("poll_interval_minutes")
        .and_then(Value::as_i64)
        .unwrap_or(30)
        .clamp(5, 24 * 60);
    minutes * 60_000
}

pub fn is_polled(entry: &CatalogEntry) -> bool {
    entry.tracking_method == TrackingMethod::Api
        && entry.connector.as_deref() == Some("incomeaccess")
}

fn field_problems(errs: Vec<clicktrail_networks::catalog::FieldError>) -> ServiceError {
    ServiceError::validation(
        errs.into_iter()
            .map(|e| FieldProblem {
                field: e.field,
                code: e.code.as_str().to_owned(),
                message: e.message,
            })
            .collect(),
    )
}

fn mask(v: &Value) -> Value {
    match v {
        Value::String(s) => {
            let n = s.chars().count();
            if n >= 10 {
                let head: String = s.chars().take(2).collect();
                let tail: String = s.chars().skip(n - 2).collect();
                Value::String(format!("{head}…{tail}"))
            } else {
                Value::String("…".into())
            }
        }
        Value::Null => Value::Null,
        _ => Value::String("…".into()),
    }
}

/// A postback's answer: 200 with a small JSON outcome for everything that
/// was understood (networks retry on non-2xx), 4xx for what cannot be read.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PostbackOutcome {
    pub conversion_id: String,
    pub status: LogStatus,
    pub error_code: Option<String>,
}

/// An Income Access report URL pasted whole from the back office carries
/// the security key: the key moves into `credentials` (stored encrypted),
/// the report name, format and merchant into `settings` (the URL's values
/// win: they are what the back office generated), and the API URL is kept
/// without them. Returns whether `credentials` took a key from the URL.
fn absorb_generated_url(
    entry: &CatalogEntry,
    credentials: &mut Map<String, Value>,
    settings: &mut Map<String, Value>,
) -> ServiceResult<bool> {
    if !is_polled(entry) {
        return Ok(false);
    }
    let Some(g) = settings
        .get("api_url")
        .and_then(Value::as_str)
        .and_then(split_generated_url)
    else {
        return Ok(false);
    };
    settings.insert("api_url".into(), Value::String(g.api_url));
    for (name, value) in [
        ("report_name", g.report_name),
        ("report_format", g.report_format),
        ("merchant_id", g.merchant_id),
    ] {
        if let Some(v) = value {
            settings.insert(name.into(), Value::String(v));
        }
    }
    let Some(key) = g.key else {
        return Ok(false);
    };
    let given = credentials
        .get("security_key")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|k| !k.is_empty());
    if given.is_some_and(|k| k != key) {
        return Err(ServiceError::validation(vec![FieldProblem {
            field: "credentials.security_key".into(),
            code: "conflicting_key".into(),
            message: "differs from the key inside the API URL: give the key in one place only"
                .into(),
        }]));
    }
    credentials.insert("security_key".into(), Value::String(key));
    Ok(true)
}

/// Validates credentials, settings and mapping against the catalog entry.
fn validate(
    policy: &OutboundPolicy,
    entry: &CatalogEntry,
    credentials: &Map<String, Value>,
    settings: &Map<String, Value>,
    mapping: &EventMapping,
) -> ServiceResult<clicktrail_networks::catalog::ValidatedInstall> {
    let validated = entry
        .validate_install(credentials, settings)
        .map_err(field_problems)?;
    if let Err(m) = mapping.validate() {
        return Err(ServiceError::validation(vec![FieldProblem {
            field: "event_mapping".into(),
            code: "invalid_mapping".into(),
            message: m,
        }]));
    }
    if is_polled(entry) {
        let ia = IncomeAccessSettings::from_json(&Value::Object(validated.settings.clone()))
            .map_err(|e| {
                ServiceError::validation(vec![FieldProblem {
                    field: "settings".into(),
                    code: e.code().into(),
                    message: e.to_string(),
                }])
            })?;
        // The outbound policy's save-time check, the one destinations run
        // on their endpoints: a private or metadata address is refused
        // now, not at the first poll.
        if let Err(e) = clicktrail_outbound::check_user_url(policy, ia.api_url.as_str()) {
            return Err(ServiceError::validation(vec![FieldProblem {
                field: "settings.api_url".into(),
                code: e.code().into(),
                message: e.to_string(),
            }]));
        }
    }
    Ok(validated)
}

impl Integrations {
    pub fn new(
        db: Db,
        keyring: Keyring,
        properties: Arc<Properties>,
        poller: Arc<Poller>,
        conversions: ConversionQueue,
        retention: Arc<crate::retention::Retention>,
    ) -> Self {
        Self {
            db,
            keyring,
            catalog: properties.catalog().clone(),
            properties,
            poller,
            conversions,
            egress: Egress::default(),
            retention,
            by_token: moka::future::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(10))
                .build(),
        }
    }

    /// This server's outbound addresses (configuration `egress_ips`), shown
    /// where a program must whitelist them.
    pub fn with_egress_ips(mut self, ips: Vec<std::net::IpAddr>) -> Self {
        self.egress = Egress::new(ips);
        self
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// This server's outbound addresses, and what to whitelist.
    pub fn egress(&self) -> &Egress {
        &self.egress
    }

    /// The caller's integration, or `not_found`.
    pub async fn owned(&self, caller: &Caller, id: &str) -> ServiceResult<Integration> {
        let i = integrations::get(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("integration"))?;
        self.properties
            .owned(caller, &i.property_id)
            .await
            .map_err(|_| ServiceError::not_found("integration"))?;
        Ok(i)
    }

    /// The integrations installed on the caller's property.
    pub async fn list(
        &self,
        caller: &Caller,
        property_id: &str,
    ) -> ServiceResult<Vec<Integration>> {
        let p = self.properties.owned(caller, property_id).await?;
        Ok(integrations::list_for_property(&self.db, &p.id).await?)
    }

    /// Installs a catalog entry on the caller's property.
    pub async fn install_on(
        &self,
        caller: &Caller,
        property_id: &str,
        req: InstallRequest,
    ) -> ServiceResult<Integration> {
        let p = self.properties.owned(caller, property_id).await?;
        self.install(&p, req).await
    }

    /// Tests an install on the caller's property without saving anything
    /// (`POST /api/v1/integrations/test`): see [`Integrations::test_on`].
    pub async fn test_connection(
        &self,
        caller: &Caller,
        property_id: &str,
        req: InstallRequest,
    ) -> ServiceResult<ConnectionTest> {
        let p = self.properties.owned(caller, property_id).await?;
        self.test_on(&p, req).await
    }

    /// Tests an install on `property` without saving anything: the request
    /// is checked exactly as [`Integrations::install`] checks it (the same
    /// field problems), then one report request for yesterday (UTC, the
    /// last whole day) is made with its settings and key, through the
    /// connector code a poll uses, with a short timeout. Catalog entries
    /// without a reporting API answer 422 `postback_only`.
    pub async fn test_on(
        &self,
        property: &Property,
        req: InstallRequest,
    ) -> ServiceResult<ConnectionTest> {
        let entry = self.entry(&req.catalog)?;
        if !is_polled(entry) {
            return Err(ServiceError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "postback_only",
                format!(
                    "{} sends postbacks; it has no reporting API to test. Install it and send a test \
                     postback to its postback URL instead.",
                    entry.name
                ),
            ));
        }
        let checked = self.check_install(req)?;
        let settings =
            IncomeAccessSettings::from_json(&Value::Object(checked.validated.settings.clone()))
                .map_err(ServiceError::internal)?;
        let today = chrono::Utc::now().date_naive();
        let day = today.pred_opt().unwrap_or(today);
        let given = checked
            .validated
            .credentials
            .get("security_key")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let test = match SecurityKey::new(given) {
            Ok(key) => {
                connection_test::run(self.poller.policy(), &settings, &key, day, &self.egress)
                    .await?
            }
            Err(e) => ConnectionTest::unusable_key(day, &self.egress, &e.message),
        };
        metrics::counter!("clicktrail_connection_tests_total", "connector" => "incomeaccess", "outcome" => test.outcome.code()).increment(1);
        tracing::info!(property = %property.id, catalog = %checked.entry.key, outcome = test.outcome.code(), "connection test");
        Ok(test)
    }

    /// Edits the caller's integration; returns it as it is now.
    pub async fn edit(
        &self,
        caller: &Caller,
        id: &str,
        req: UpdateRequest,
    ) -> ServiceResult<Integration> {
        let i = self.owned(caller, id).await?;
        self.update(&i, req).await?;
        self.owned(caller, id).await
    }

    /// Deletes the caller's integration: its postbacks answer 404
    /// `unknown_postback_token` and it is no longer polled, at once; its
    /// tracking group leaves the tag. Its conversion log stays (shown as
    /// from a deleted integration) unless `purge_log`, which deletes it with
    /// its deliveries; a deleted integration's log can be purged later by
    /// deleting it again with `purge_log`.
    pub async fn delete(
        &self,
        caller: &Caller,
        id: &str,
        purge_log: bool,
    ) -> ServiceResult<Deleted> {
        let i = integrations::get_any(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("integration"))?;
        self.properties
            .owned(caller, &i.property_id)
            .await
            .map_err(|_| ServiceError::not_found("integration"))?;
        let now = chrono::Utc::now().timestamp_millis();
        let deleted = match i.deleted_at {
            None => integrations::soft_delete(&self.db, &i.id, now, purge_log).await?,
            // Already deleted: only a late purge of its log is left to ask.
            Some(_) if purge_log => {
                integrations::request_log_purge(&self.db, &i.id, now).await?;
                false
            }
            Some(_) => return Err(ServiceError::not_found("integration")),
        };
        self.by_token.invalidate(&i.postback_token_hash).await;
        if let Ok(pid) = clicktrail_domain::PropertyId::parse(&i.property_id) {
            self.properties.forget_tag(&pid).await;
        }
        let mut out = Deleted {
            id: i.id.clone(),
            deleted,
            log_purged: false,
            conversions_deleted: 0,
        };
        if purge_log {
            out.conversions_deleted = self
                .retention
                .purge_integration_log(&i.property_id, &i.id)
                .await
                .map_err(ServiceError::internal)?;
            out.log_purged = true;
        }
        tracing::info!(integration = %i.id, purge_log, "integration deleted");
        Ok(out)
    }

    /// Polls the caller's integration now; returns the poll's report and
    /// the integration as it is after it.
    pub async fn poll_now(
        &self,
        caller: &Caller,
        id: &str,
    ) -> ServiceResult<(PollReport, Integration)> {
        let i = self.owned(caller, id).await?;
        let report = polling::poll_now(&self.poller, &i).await?;
        Ok((report, self.owned(caller, id).await?))
    }

    /// The catalog entry an install names, or the field problem.
    fn entry(&self, key: &str) -> ServiceResult<&CatalogEntry> {
        self.catalog.get(key).ok_or_else(|| {
            ServiceError::validation(vec![FieldProblem {
                field: "catalog".into(),
                code: "unknown_catalog_entry".into(),
                message: format!("no catalog entry {key:?}; see GET /api/v1/catalog"),
            }])
        })
    }

    /// Every check of an install, in one place so that a connection test
    /// refuses exactly what an install refuses.
    fn check_install(&self, req: InstallRequest) -> ServiceResult<CheckedInstall<'_>> {
        let entry = self.entry(&req.catalog)?;
        let mapping = req
            .event_mapping
            .unwrap_or_else(|| entry.event_mapping.clone());
        let (mut credentials, mut settings) = (req.credentials, req.settings);
        absorb_generated_url(entry, &mut credentials, &mut settings)?;
        let validated = validate(
            self.poller.policy(),
            entry,
            &credentials,
            &settings,
            &mapping,
        )?;
        let name = req
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| entry.name.clone());
        if name.chars().count() > 100 {
            return Err(ServiceError::validation(vec![FieldProblem {
                field: "name".into(),
                code: "too_long".into(),
                message: "at most 100 characters".into(),
            }]));
        }
        Ok(CheckedInstall {
            entry,
            name,
            validated,
            mapping,
        })
    }

    pub async fn install(
        &self,
        property: &Property,
        req: InstallRequest,
    ) -> ServiceResult<Integration> {
        let state = self;
        let CheckedInstall {
            entry,
            name,
            validated,
            mapping,
        } = self.check_install(req)?;
        let credentials_enc = (!validated.credentials.is_empty()).then(|| {
            state
                .keyring
                .encrypt_json(&Value::Object(validated.credentials.clone()))
        });
        let now = chrono::Utc::now().timestamp_millis();
        let id = EntityId::generate("int");
        let token = secret_token();
        let settings_json = Value::Object(validated.settings.clone()).to_string();
        let mapping_json = serde_json::to_string(&mapping).map_err(ServiceError::internal)?;
        let integration = integrations::create(
            &state.db,
            NewIntegration {
                id: id.as_str(),
                property_id: property.id.as_str(),
                catalog_key: &entry.key,
                name: &name,
                tracking_group: &validated.tracking_group.key,
                subid_param: &validated.tracking_group.param,
                postback_token_hash: &state.keyring.postback_token_hash(&token),
                postback_token_enc: &state.keyring.encrypt(token.as_bytes()),
                credentials_enc,
                settings: settings_json,
                event_mapping: mapping_json,
                next_poll_at: is_polled(entry).then_some(now),
            },
        )
        .await?;
        state.properties.forget_tag(&property.id).await;
        state.poller.wake();
        Ok(integration)
    }

    /// Edits an integration (already checked to be the caller's).
    pub async fn update(&self, integration: &Integration, req: UpdateRequest) -> ServiceResult<()> {
        let state = self;
        let entry = state.catalog.get(&integration.catalog_key).ok_or_else(|| {
            ServiceError::internal(format!(
                "catalog entry {} vanished",
                integration.catalog_key
            ))
        })?;
        let current_settings: Map<String, Value> =
            serde_json::from_str(&integration.settings).map_err(ServiceError::internal)?;
        let current_mapping: EventMapping =
            serde_json::from_str(&integration.event_mapping).map_err(ServiceError::internal)?;
        let current_credentials = match &integration.credentials_enc {
            Some(enc) => match state
                .keyring
                .decrypt_json(enc)
                .map_err(ServiceError::internal)?
            {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            None => Map::new(),
        };
        let mut settings = req.settings.unwrap_or(current_settings);
        let mapping = req.event_mapping.unwrap_or(current_mapping);
        // A key inside a newly pasted API URL replaces the stored one (a new
        // key invalidates the old URLs); it conflicts only with a key given
        // in the same request.
        let mut given = req.credentials.clone().unwrap_or_default();
        let key_from_url = absorb_generated_url(entry, &mut given, &mut settings)?;
        let credentials_changed = req.credentials.is_some() || key_from_url;
        let mut credentials = req.credentials.unwrap_or(current_credentials);
        if key_from_url && let Some(k) = given.get("security_key") {
            credentials.insert("security_key".into(), k.clone());
        }
        let validated = validate(
            self.poller.policy(),
            entry,
            &credentials,
            &settings,
            &mapping,
        )?;
        let status = match req.status.as_deref() {
            None => integration.status.clone(),
            Some(s @ ("active" | "paused")) => s.to_owned(),
            Some(_) => {
                return Err(ServiceError::validation(vec![FieldProblem {
                    field: "status".into(),
                    code: "invalid_option".into(),
                    message: "status is active or paused".into(),
                }]));
            }
        };
        let credentials_enc = credentials_changed.then(|| {
            state
                .keyring
                .encrypt_json(&Value::Object(validated.credentials.clone()))
        });
        let name = req
            .name
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .unwrap_or(integration.name.clone());
        integrations::update_config(
            &state.db,
            &integration.id,
            &name,
            &Value::Object(validated.settings).to_string(),
            &serde_json::to_string(&mapping).map_err(ServiceError::internal)?,
            credentials_enc,
            &status,
        )
        .await?;
        state
            .by_token
            .invalidate(&integration.postback_token_hash)
            .await;
        if let Ok(pid) = clicktrail_domain::PropertyId::parse(&integration.property_id) {
            state.properties.forget_tag(&pid).await;
        }
        state.poller.wake();
        Ok(())
    }

    /// The integration's postback URL. A token that cannot be decrypted
    /// (the key changed) shows as `<unreadable>`: the start-up key check
    /// makes that a corrupt row, never a normal state.
    pub fn postback_url(&self, i: &Integration) -> String {
        let token = self.postback_token(i);
        format!(
            "{}/postback/{}",
            self.properties.public_base(),
            token.as_deref().unwrap_or("<unreadable>")
        )
    }

    /// The integration's postback token, decrypted.
    pub fn postback_token(&self, i: &Integration) -> Option<String> {
        let Some(enc) = &i.postback_token_enc else {
            // Not sealed yet (a row from before sealing, until the start
            // that seals it): the column holds the token.
            return Some(i.postback_token_hash.clone());
        };
        match self.keyring.decrypt(enc).map(String::from_utf8) {
            Ok(Ok(t)) => Some(t),
            _ => {
                tracing::error!(integration = %i.id, "stored postback token cannot be decrypted");
                None
            }
        }
    }

    /// Seals the postback tokens still stored in clear (rows from before
    /// tokens were sealed): each becomes its keyed hash and its ciphertext.
    /// Run at start, before postbacks are served; idempotent, and safe when
    /// several processes start at once. Returns how many it sealed.
    pub async fn seal_postback_tokens(&self) -> Result<usize, clicktrail_store::StoreError> {
        let clear = integrations::unsealed_tokens(&self.db).await?;
        for (id, token) in &clear {
            integrations::seal_token(
                &self.db,
                id,
                token,
                &self.keyring.postback_token_hash(token),
                &self.keyring.encrypt(token.as_bytes()),
            )
            .await?;
        }
        if !clear.is_empty() {
            tracing::info!(
                sealed = clear.len(),
                "postback tokens sealed (stored as keyed hashes, encrypted)"
            );
        }
        Ok(clear.len())
    }

    /// An integration as the API shows it: credentials masked.
    pub fn view(&self, i: &Integration) -> Value {
        let state = self;
        let credentials: Value = match &i.credentials_enc {
            Some(enc) => match state.keyring.decrypt_json(enc) {
                Ok(Value::Object(m)) => {
                    Value::Object(m.iter().map(|(k, v)| (k.clone(), mask(v))).collect())
                }
                Ok(_) => json!({}),
                Err(e) => {
                    tracing::error!(integration = %i.id, error = %e, "stored credentials cannot be decrypted");
                    json!({"error": "stored credentials cannot be decrypted; enter them again"})
                }
            },
            None => json!({}),
        };
        let postback = state.postback_url(i);
        let template = state
            .catalog
            .get(&i.catalog_key)
            .and_then(|e| e.postback_url(&postback));
        json!({
            "id": i.id,
            "property_id": i.property_id,
            "catalog": i.catalog_key,
            "name": i.name,
            "tracking_group": i.tracking_group,
            "subid_param": i.subid_param,
            "settings": serde_json::from_str::<Value>(&i.settings).unwrap_or(Value::Null),
            "credentials": credentials,
            "event_mapping": serde_json::from_str::<Value>(&i.event_mapping).unwrap_or(Value::Null),
            "status": i.status,
            "last_poll_at": i.last_poll_at,
            "last_poll_status": i.last_poll_status.as_deref().map(stored_json),
            "last_error_code": i.last_error_code,
            "last_error": i.last_error,
            "next_poll_at": i.next_poll_at,
            "postback_url": postback,
            "postback_template": template,
            "created_at": i.created_at,
            "updated_at": i.updated_at,
        })
    }

    /// The integration behind a postback token, through a short cache
    /// keyed by the token's hash (so no clear token is kept either).
    async fn integration_by_token(&self, token: &str) -> ServiceResult<Option<Arc<Integration>>> {
        let state = self;
        let hash = state.keyring.postback_token_hash(token);
        if let Some(hit) = state.by_token.get(&hash).await {
            return Ok(hit);
        }
        let i = integrations::by_token_hash(&state.db, &hash)
            .await?
            .map(Arc::new);
        state.by_token.insert(hash, i.clone()).await;
        Ok(i)
    }
}

/// A refused postback: counted under its outcome
/// (`clicktrail_postbacks_total`), like every postback, and answered with
/// the refusal. The HTTP layer uses it for the bodies it refuses before
/// the postback reaches [`Integrations::receive_postback`].
pub fn postback_reject(
    code: &'static str,
    status: StatusCode,
    message: impl Into<String>,
) -> ServiceError {
    metrics::counter!("clicktrail_postbacks_total", "outcome" => code).increment(1);
    ServiceError::new(status, code, message)
}

impl Integrations {
    /// Receives one postback.
    pub async fn receive_postback(
        &self,
        token: &str,
        query: Option<&str>,
        content_type: Option<&str>,
        body: &[u8],
    ) -> ServiceResult<PostbackOutcome> {
        let state = self;
        if token.len() > 64
            || !token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(postback_reject(
                "unknown_postback_token",
                StatusCode::NOT_FOUND,
                "no integration has this token",
            ));
        }
        let integration = state.integration_by_token(token).await?.ok_or_else(|| {
            postback_reject(
                "unknown_postback_token",
                StatusCode::NOT_FOUND,
                "no integration has this token",
            )
        })?;
        // A property deleted since the integration was cached: its
        // postbacks are refused like a deleted integration's.
        let property = state
            .properties
            .get(
                &clicktrail_domain::PropertyId::parse(&integration.property_id)
                    .map_err(ServiceError::internal)?,
            )
            .await?
            .ok_or_else(|| {
                postback_reject(
                    "unknown_postback_token",
                    StatusCode::NOT_FOUND,
                    "no integration has this token",
                )
            })?;
        let default_event = state
            .catalog
            .get(&integration.catalog_key)
            .map(|e| e.default_postback_event.clone())
            .unwrap_or_else(|| "conversion".into());
        let opts = PostbackOptions {
            subid_param: Some(&integration.subid_param),
            default_event: &default_event,
        };
        let event: SourceEvent =
            postback::parse_request(query, PostbackBody::detect(content_type, body), &opts)
                .map_err(|e| postback_reject(e.code(), StatusCode::BAD_REQUEST, e.to_string()))?;
        let mapping: EventMapping =
            serde_json::from_str(&integration.event_mapping).map_err(ServiceError::internal)?;
        let pending = Pending {
            property,
            integration: Some(integration),
            mapping: Arc::new(mapping),
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            event_id: None,
            event,
            forced_error: None,
            session_id: None,
        };
        let written = state
            .conversions
            .submit(vec![pending], None)
            .await
            .map_err(|f| match f {
                CommitFailure::Overloaded => {
                    ServiceError::unavailable("overloaded", "too many postbacks at once; retry", 1)
                }
                CommitFailure::Storage => {
                    ServiceError::unavailable("storage_unavailable", "could not store; retry", 2)
                }
                CommitFailure::ShuttingDown => {
                    ServiceError::unavailable("shutting_down", "restarting; retry", 2)
                }
            })?;
        let w = written
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::internal("no outcome for a postback"))?;
        let (status, code) = w.outcome();
        metrics::counter!("clicktrail_postbacks_total", "outcome" => code.unwrap_or(status.as_str()).to_owned())
        .increment(1);
        Ok(PostbackOutcome {
            conversion_id: w.id().to_owned(),
            status,
            error_code: code.map(str::to_owned),
        })
    }
}

/// JSON stored as text, shown as JSON; text that is not JSON (written by an
/// older version) is shown as a string rather than lost.
fn stored_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
}

/// When to poll next after `now`.
pub fn next_poll(settings_json: &str, now: i64) -> i64 {
    let settings: Map<String, Value> = serde_json::from_str(settings_json).unwrap_or_default();
    now + poll_interval_ms(&settings)
}
