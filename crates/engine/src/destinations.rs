//! The destinations service: ad destinations (create, list, show, edit,
//! pause, test send), the delivery log, retry and replay. Used by the JSON
//! API and the dashboard alike. A destination is shown as a typed
//! [`DestinationView`] (the API serialises it; the dashboard reads its
//! fields); the test send's answer stays a JSON document because it is the
//! platform's answer shown as such.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use clicktrail_destinations::{
    Destination, DestinationKind, ItemOutcome, SendOptions, mask_secret, parse_kind, send_batch,
    validate,
};
use clicktrail_domain::Currency;
use clicktrail_domain::delivery::{AdIdentifiers, DeliveryStatus, OutboundConversion};
use clicktrail_domain::ids::random_base36;
use clicktrail_domain::money::Amount;
use clicktrail_store::Db;
use clicktrail_store::deliveries::{
    self as store, DestinationChange, DestinationRow, DestinationStatus, NewDestination, Requeue,
};
use clicktrail_store::properties::Property;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::Caller;
use crate::crypto::Keyring;
use crate::delivery::{self, Delivery, DeliveryView, convert, endpoint_problems};
use crate::error::{FieldProblem, ServiceError, ServiceResult};
use crate::properties::Properties;

/// A destination as the API and the dashboard show it: credentials masked,
/// settings and mapping as the platform-specific JSON they were saved as.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationView {
    pub id: String,
    pub property_id: String,
    pub kind: String,
    /// `None` for a kind this build does not know (a newer database).
    pub kind_label: Option<&'static str>,
    pub name: String,
    pub settings: Value,
    /// Each secret masked (`EAAB…x9Q2`); `null` when they cannot be read.
    pub credentials: Value,
    pub event_mapping: Value,
    pub status: DestinationStatus,
    pub status_reason: Option<String>,
    pub status_message: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Deliveries counted by status; only on a single destination's view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries: Option<std::collections::BTreeMap<String, i64>>,
}

/// The destinations service.
pub struct Destinations {
    db: Db,
    keyring: Keyring,
    properties: Arc<Properties>,
    delivery: Arc<Delivery>,
}

impl std::fmt::Debug for Destinations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Destinations")
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateDestination {
    pub kind: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub settings: Value,
    #[serde(default)]
    pub credentials: Value,
    #[serde(default)]
    pub event_mapping: Value,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateDestination {
    pub name: Option<String>,
    /// Merged into the current settings; a `null` value removes a key.
    pub settings: Option<Value>,
    /// Merged into the current credentials; a `null` value removes a key.
    pub credentials: Option<Value>,
    /// Replaces the current mapping (`null`: the kind's defaults).
    #[serde(default, deserialize_with = "present")]
    pub event_mapping: Option<Value>,
    pub paused: Option<bool>,
}

/// Tells an explicit `null` (Some(Null)) from an absent field (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn problem(field: &str, code: &str, message: impl Into<String>) -> FieldProblem {
    FieldProblem {
        field: field.to_owned(),
        code: code.to_owned(),
        message: message.into(),
    }
}

fn check_name(name: Option<&str>, kind: DestinationKind) -> Result<String, FieldProblem> {
    let Some(n) = name.map(str::trim) else {
        return Ok(kind.label().to_owned());
    };
    if n.is_empty() || n.chars().count() > 100 {
        return Err(problem("name", "invalid_name", "1 to 100 characters"));
    }
    Ok(n.to_owned())
}

/// Validates a configuration (and its endpoints against the outbound
/// policy), reporting every problem at once.
impl Destinations {
    pub fn new(
        db: Db,
        keyring: Keyring,
        properties: Arc<Properties>,
        delivery: Arc<Delivery>,
    ) -> Self {
        Self {
            db,
            keyring,
            properties,
            delivery,
        }
    }

    fn validated(
        &self,
        kind: DestinationKind,
        settings: &Value,
        credentials: &Value,
        event_mapping: &Value,
        mut problems: Vec<FieldProblem>,
    ) -> Result<Destination, ServiceError> {
        match validate(kind, settings, credentials, event_mapping) {
            Ok(dest) => {
                problems.extend(
                    endpoint_problems(self.delivery.policy(), &dest)
                        .into_iter()
                        .map(|(field, e)| problem(field, e.code(), e.to_string())),
                );
                if problems.is_empty() {
                    Ok(dest)
                } else {
                    Err(ServiceError::validation(problems))
                }
            }
            Err(errors) => {
                problems.extend(errors.into_iter().map(FieldProblem::from));
                Err(ServiceError::validation(problems))
            }
        }
    }

    /// Credentials shown masked (`EAAB…x9Q2`); `null` when they cannot be read.
    fn masked_credentials(&self, row: &DestinationRow) -> Value {
        match self.keyring.decrypt_json(&row.credentials_enc) {
            Ok(Value::Object(m)) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let shown = match v {
                            Value::String(s) => json!(mask_secret(&s)),
                            Value::Null => Value::Null,
                            _ => json!("…"),
                        };
                        (k, shown)
                    })
                    .collect(),
            ),
            _ => Value::Null,
        }
    }

    /// A destination as the API shows it (credentials masked).
    pub fn view(&self, row: &DestinationRow) -> DestinationView {
        let kind = DestinationKind::parse(&row.kind);
        DestinationView {
            id: row.id.clone(),
            property_id: row.property_id.clone(),
            kind: row.kind.clone(),
            kind_label: kind.map(DestinationKind::label),
            name: row.name.clone(),
            settings: parse_json_text(&row.settings),
            credentials: self.masked_credentials(row),
            event_mapping: parse_json_text(&row.event_mapping),
            status: row.status(),
            status_reason: row.status_reason.clone(),
            status_message: row.status_message.clone(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            deliveries: None,
        }
    }

    /// A destination with its deliveries counted by status.
    async fn view_with_counts(&self, row: &DestinationRow) -> ServiceResult<DestinationView> {
        let mut v = self.view(row);
        v.deliveries = Some(
            delivery::status_counts(&self.db, &row.id)
                .await?
                .into_iter()
                .collect(),
        );
        Ok(v)
    }

    /// The caller's destination or 404 (also for another workspace's).
    async fn owned(&self, caller: &Caller, id: &str) -> ServiceResult<(DestinationRow, Property)> {
        let row = store::get_destination(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("destination"))?;
        let property = self
            .properties
            .owned(caller, &row.property_id)
            .await
            .map_err(|_| ServiceError::not_found("destination"))?;
        Ok((row, property))
    }

    /// Creates a destination on the caller's property; returns its view.
    pub async fn create(
        &self,
        caller: &Caller,
        property_id: &str,
        body: CreateDestination,
    ) -> ServiceResult<DestinationView> {
        let state = self;
        let p = self.properties.owned(caller, property_id).await?;
        let kind = parse_kind(&body.kind).map_err(|e| ServiceError::validation(vec![e.into()]))?;
        let mut problems = Vec::new();
        let name = check_name(body.name.as_deref(), kind)
            .map_err(|e| problems.push(e))
            .ok();
        let dest = state.validated(
            kind,
            &body.settings,
            &body.credentials,
            &body.event_mapping,
            problems,
        )?;
        let name = name.unwrap_or_else(|| kind.label().to_owned());
        let credentials_enc = state.keyring.encrypt_json(&dest.credentials_to_store());
        let row = store::create_destination(
            &state.db,
            &NewDestination {
                property_id: p.id.as_str(),
                kind: kind.as_str(),
                name: &name,
                settings: &dest.settings_json().to_string(),
                credentials_enc: &credentials_enc,
                event_mapping: &dest.event_mapping_json().to_string(),
            },
        )
        .await?;
        state.delivery.forget(p.id.as_str()).await;
        tracing::info!(destination = %row.id, kind = kind.as_str(), "destination created");
        Ok(state.view(&row))
    }

    /// The destinations of the caller's property, oldest first.
    pub async fn list(
        &self,
        caller: &Caller,
        property_id: &str,
    ) -> ServiceResult<Vec<DestinationView>> {
        let p = self.properties.owned(caller, property_id).await?;
        let rows = store::list_destinations(&self.db, p.id.as_str()).await?;
        Ok(rows.iter().map(|r| self.view(r)).collect())
    }

    /// The caller's destination, with its deliveries counted by status.
    pub async fn get(&self, caller: &Caller, id: &str) -> ServiceResult<DestinationView> {
        let (row, _) = self.owned(caller, id).await?;
        self.view_with_counts(&row).await
    }

    /// Edits the caller's destination (settings and credentials merged, the
    /// mapping replaced, paused or resumed); returns its view.
    pub async fn update(
        &self,
        caller: &Caller,
        id: &str,
        body: UpdateDestination,
    ) -> ServiceResult<DestinationView> {
        let state = self;
        let (row, p) = self.owned(caller, id).await?;
        let mut tx = state.db.begin().await?;
        // Re-read under the lock: a worker may have flagged it meanwhile.
        let current = store::lock_destination(&mut tx, &row.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("destination"))?;
        let kind = DestinationKind::parse(&current.kind).ok_or_else(|| {
            ServiceError::internal(format!(
                "destination {} has kind {:?}",
                current.id, current.kind
            ))
        })?;
        let mut problems = Vec::new();
        let name = match body.name.as_deref() {
            Some(n) => check_name(Some(n), kind).map_err(|e| problems.push(e)).ok(),
            None => Some(current.name.clone()),
        };
        let stored_credentials = match state.keyring.decrypt_json(&current.credentials_enc) {
            Ok(v) => v,
            // Unreadable (the key changed): only a complete new set helps.
            Err(_) => Value::Object(Map::new()),
        };
        let credentials_edited = body.credentials.is_some();
        let settings_edited = body.settings.is_some() || body.event_mapping.is_some();
        let credentials = merged(stored_credentials, body.credentials);
        let settings = merged(parse_json_text(&current.settings), body.settings);
        let mapping = match body.event_mapping {
            Some(m) => m,
            None => parse_json_text(&current.event_mapping),
        };
        let validation = state.validated(kind, &settings, &credentials, &mapping, problems);
        let dest = match validation {
            Ok(d) => d,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        };
        let name = name.unwrap_or_else(|| current.name.clone());

        let mut status = current.status();
        let mut reason = current.status_reason.clone();
        let mut message = current.status_message.clone();
        if status == DestinationStatus::NeedsAttention && (credentials_edited || settings_edited) {
            // New credentials or settings: try again (flagged again if still wrong).
            status = DestinationStatus::Active;
            reason = None;
            message = None;
        }
        match body.paused {
            Some(true) => {
                status = DestinationStatus::Paused;
                reason = Some("paused".into());
                message = Some("paused by a user; deliveries wait".into());
            }
            Some(false)
                if status == DestinationStatus::Paused
                    || status == DestinationStatus::NeedsAttention =>
            {
                status = DestinationStatus::Active;
                reason = None;
                message = None;
            }
            _ => {}
        }
        let credentials_enc = state.keyring.encrypt_json(&dest.credentials_to_store());
        let settings_text = dest.settings_json().to_string();
        let mapping_text = dest.event_mapping_json().to_string();
        let unparked = store::apply_destination_change(
            &mut tx,
            &current.id,
            &DestinationChange {
                name: &name,
                settings: &settings_text,
                credentials_enc: &credentials_enc,
                event_mapping: &mapping_text,
                status,
                status_reason: reason.as_deref(),
                status_message: message.as_deref(),
            },
        )
        .await?;
        tx.commit().await?;
        state.delivery.forget(p.id.as_str()).await;
        if unparked > 0 {
            state.delivery.wake();
        }
        tracing::info!(
            destination = %current.id,
            status = status.as_str(),
            unparked,
            "destination updated"
        );
        let row = store::get_destination(&state.db, &current.id)
            .await?
            .ok_or_else(|| ServiceError::not_found("destination"))?;
        state.view_with_counts(&row).await
    }

    /// Deletes the caller's destination: nothing more is sent to it, and
    /// its deliveries still waiting end `cancelled` (reason
    /// `destination_deleted`); its delivery log stays.
    pub async fn delete(&self, caller: &Caller, id: &str) -> ServiceResult<Value> {
        let (row, p) = self.owned(caller, id).await?;
        let now = chrono::Utc::now().timestamp_millis();
        let cancelled = store::delete_destination(&self.db, &row.id, now)
            .await?
            .ok_or_else(|| ServiceError::not_found("destination"))?;
        self.delivery.forget(p.id.as_str()).await;
        tracing::info!(destination = %row.id, cancelled, "destination deleted");
        Ok(json!({ "id": row.id, "deleted": true, "cancelled_deliveries": cancelled }))
    }

    /// Sends a test conversion (the latest real one, else a made-up one) to
    /// the caller's destination in the platform's test mode, and reports what
    /// the platform answered.
    pub async fn test(&self, caller: &Caller, id: &str, req: TestRequest) -> ServiceResult<Value> {
        let state = self;
        let (row, p) = self.owned(caller, id).await?;
        let loaded = state.delivery.load(row);
        let dest = loaded.parsed.as_ref().map_err(|u| {
            ServiceError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "destination_unusable",
                format!("{}: {}", u.reason, u.message),
            )
        })?;
        let client = state.delivery.client().ok_or_else(|| {
            ServiceError::unavailable(
                "delivery_unavailable",
                "the outbound HTTP client is unavailable",
                60,
            )
        })?;

        // A real conversion when there is one: the test then shows what the
        // platform says of real identifiers.
        let latest = if req.synthetic {
            None
        } else {
            match store::latest_validated_conversion(&state.db, p.id.as_str()).await? {
                Some(cid) => store::conversion_facts(&state.db, &[cid.as_str()])
                    .await?
                    .into_iter()
                    .next(),
                None => None,
            }
        };
        let candidates: Vec<String> = match (&req.event_name, &latest) {
            (Some(e), _) => vec![e.clone()],
            (None, Some(f)) => f
                .event_name
                .iter()
                .cloned()
                .chain(["Purchase".into(), "Lead".into()])
                .collect(),
            (None, None) => vec!["Purchase".into(), "Lead".into()],
        };
        let mut mapped = candidates
            .iter()
            .find_map(|e| dest.map_event(e).map(|m| (e.clone(), m)));
        if mapped.is_none() && req.event_name.is_none() {
            // Google Ads maps only listed events: take its first action.
            if let Some(first) = dest
                .settings_json()
                .get("conversion_actions")
                .and_then(Value::as_object)
                .and_then(|m| m.keys().next().cloned())
            {
                mapped = dest.map_event(&first).map(|m| (first, m));
            }
        }
        let Some((our_event, m)) = mapped else {
            return Err(ServiceError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "unmapped_event",
                format!(
                    "this destination's event mapping sends none of: {}",
                    candidates.join(", ")
                ),
            ));
        };
        let (conversion, source) = match &latest {
            Some(f) => (
                convert::outbound_conversion(
                    f,
                    &m.event_name,
                    m.conversion_action.as_deref(),
                    state.delivery.enricher(),
                ),
                "latest_conversion",
            ),
            None => {
                let mut c = synthetic_conversion(&p, &m.event_name);
                c.conversion_action = m.conversion_action.clone();
                (c, "synthetic")
            }
        };
        let opts = SendOptions {
            test_mode: true,
            timeout: state.delivery.timeout(),
        };
        let result = send_batch(
            client,
            dest,
            state.delivery.tokens(),
            std::slice::from_ref(&conversion),
            opts,
        )
        .await;
        let requests: Vec<Value> = result
            .requests
            .iter()
            .map(|r| {
                json!({
                    "at": r.started_at.timestamp_millis(),
                    "duration_ms": r.duration.as_millis() as u64,
                    "http_status": r.http_status,
                    "message": r.message,
                    "response_excerpt": r.response_excerpt,
                })
            })
            .collect();
        let outcome = result
            .items
            .first()
            .map(outcome_json)
            .unwrap_or(Value::Null);
        Ok(json!({
            "test_mode": true,
            "destination_id": loaded.row.id,
            "kind": loaded.row.kind,
            "conversion": {
                "source": source,
                "conversion_id": conversion.conversion_id,
                "event_id": conversion.event_id,
                "our_event": our_event,
                "event_name": conversion.event_name,
                "conversion_action": conversion.conversion_action,
            },
            "outcome": outcome,
            "http_status": result.http_status,
            "message": result.message,
            "response_excerpt": result.response_excerpt,
            "requests": requests,
        }))
    }

    /// Requeues the caller's destination's dead and failed (or the given
    /// statuses') deliveries.
    pub async fn replay(
        &self,
        caller: &Caller,
        id: &str,
        req: ReplayRequest,
    ) -> ServiceResult<Value> {
        let state = self;
        let (row, _) = self.owned(caller, id).await?;
        let statuses = match req.statuses {
            None => vec![DeliveryStatus::Dead, DeliveryStatus::Failed],
            Some(list) => {
                let mut out = Vec::new();
                for s in &list {
                    match DeliveryStatus::parse(s) {
                        Some(
                            st @ (DeliveryStatus::Dead
                            | DeliveryStatus::Failed
                            | DeliveryStatus::Skipped),
                        ) => {
                            out.push(st);
                        }
                        _ => {
                            return Err(ServiceError::validation(vec![problem(
                                "statuses",
                                "invalid_status",
                                "replay takes dead, failed or skipped",
                            )]));
                        }
                    }
                }
                out
            }
        };
        let n = store::replay_destination(&state.db, &row.id, &statuses).await?;
        if n > 0 {
            state.delivery.wake();
        }
        tracing::info!(destination = %row.id, requeued = n, "deliveries replayed");
        Ok(json!({ "requeued": n }))
    }

    async fn owned_delivery(&self, caller: &Caller, id: &str) -> ServiceResult<store::DeliveryRow> {
        let row = store::get_delivery(&self.db, id)
            .await?
            .ok_or_else(|| ServiceError::not_found("delivery"))?;
        self.properties
            .owned(caller, &row.property_id)
            .await
            .map_err(|_| ServiceError::not_found("delivery"))?;
        Ok(row)
    }

    /// The caller's delivery with its attempts.
    pub async fn delivery(&self, caller: &Caller, id: &str) -> ServiceResult<DeliveryView> {
        let row = self.owned_delivery(caller, id).await?;
        delivery::views::with_attempts(&self.db, vec![row])
            .await?
            .into_iter()
            .next()
            .ok_or_else(|| ServiceError::not_found("delivery"))
    }

    /// Retries the caller's failed or dead delivery now.
    pub async fn retry_delivery(&self, caller: &Caller, id: &str) -> ServiceResult<DeliveryView> {
        let state = self;
        let row = self.owned_delivery(caller, id).await?;
        match store::requeue(&state.db, &row.id).await? {
            Requeue::Requeued => {}
            Requeue::NotFound => return Err(ServiceError::not_found("delivery")),
            Requeue::NotRetryable { status } => {
                return Err(ServiceError::new(
                    StatusCode::CONFLICT,
                    "not_retryable",
                    format!(
                        "a {status} delivery cannot be retried (in flight, waiting, or already delivered)"
                    ),
                ));
            }
        }
        state.delivery.wake();
        let row = self.owned_delivery(caller, id).await?;
        Ok(DeliveryView::from_row(row, None))
    }

    /// The delivery log of the caller's property, newest first.
    pub async fn deliveries(
        &self,
        caller: &Caller,
        property_id: &str,
        q: DeliveryQuery,
    ) -> ServiceResult<Value> {
        let state = self;
        let p = self.properties.owned(caller, property_id).await?;
        let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
                ServiceError::bad_request(
                    "invalid_status",
                    "status is one of pending, delivered, retrying, failed, dead, skipped, cancelled",
                )
            })?),
        };
        let cursor = match q.cursor.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ServiceError::bad_request("invalid_cursor", "the cursor is not valid")
            })?),
        };
        let limit = q.limit.unwrap_or(50).clamp(1, 500);
        let rows = store::list_deliveries(
            &state.db,
            &store::DeliveryFilter {
                property_id: p.id.as_str(),
                destination_id: q.destination.as_deref().filter(|s| !s.is_empty()),
                status,
                conversion_id: q.conversion.as_deref().filter(|s| !s.is_empty()),
                before: cursor.as_ref().map(|(at, id)| (*at, id.as_str())),
                limit,
            },
        )
        .await?;
        let next_cursor = (rows.len() as i64 == limit)
            .then(|| rows.last().map(|r| encode_cursor(r.created_at, &r.id)))
            .flatten();
        let items: Vec<DeliveryView> = rows
            .into_iter()
            .map(|r| DeliveryView::from_row(r, None))
            .collect();
        Ok(json!({
            "deliveries": items,
            "next_cursor": next_cursor,
        }))
    }
}

fn parse_json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

/// Shallow merge of a JSON object edit: `null` removes a key.
fn merged(current: Value, edit: Option<Value>) -> Value {
    match edit {
        None => current,
        Some(Value::Object(changes)) => {
            let mut base = match current {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            for (k, v) in changes {
                if v.is_null() {
                    base.remove(&k);
                } else {
                    base.insert(k, v);
                }
            }
            Value::Object(base)
        }
        // Not an object: let validation say so.
        Some(other) => other,
    }
}

// ---- test send ------------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestRequest {
    /// Our event name to test (`Lead`, `Purchase`...); default: the latest
    /// conversion's, else the first the destination maps.
    #[serde(default)]
    pub event_name: Option<String>,
    /// Use a made-up conversion even when real ones exist.
    #[serde(default)]
    pub synthetic: bool,
}

fn outcome_json(o: &ItemOutcome) -> Value {
    json!({
        "status": o.suggested_status().as_str(),
        "reason": o.reason(),
        "detail": o.detail(),
    })
}

/// A made-up conversion with plausible identifiers for every platform.
fn synthetic_conversion(p: &Property, event_name: &str) -> OutboundConversion {
    let now = Utc::now();
    let tag = random_base36(12);
    let currency = Currency::parse(&p.settings.currency).unwrap_or(Currency::USD);
    let host = p.domains.first().map_or("example.com", String::as_str);
    let click_ms = (now - chrono::Duration::minutes(10)).timestamp_millis();
    OutboundConversion {
        conversion_id: format!("test_{tag}"),
        event_id: format!("test_{tag}"),
        event_name: event_name.to_owned(),
        conversion_action: None,
        occurred_at: now - chrono::Duration::minutes(1),
        click_at: Some(now - chrono::Duration::minutes(10)),
        value: Some(Amount::from_micros(1_000_000)),
        currency: Some(currency),
        page_url: Some(format!("https://{host}/")),
        referrer: None,
        visitor_id: Some(format!("test.{tag}")),
        client_ip: None,
        user_agent: Some(concat!("clicktrail-test/", env!("CARGO_PKG_VERSION")).to_owned()),
        ids: AdIdentifiers {
            gclid: Some(format!("test-gclid-{tag}")),
            fbclid: Some(format!("test-fbclid-{tag}")),
            fbc: Some(format!("fb.1.{click_ms}.test-fbclid-{tag}")),
            ttclid: Some(format!("test-ttclid-{tag}")),
            ..Default::default()
        },
        hashed_email: None,
        hashed_phone: None,
        consent: clicktrail_domain::consent::Consent::UNKNOWN,
    }
}

// ---- the delivery log -------------------------------------------------------------

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(default)]
    pub statuses: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    pub destination: Option<String>,
    pub status: Option<String>,
    pub conversion: Option<String>,
    pub cursor: Option<String>,
    pub limit: Option<i64>,
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}|{id}"))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((at.parse().ok()?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip() {
        let c = encode_cursor(1_700_000_000_123, "dlv_abc123");
        assert_eq!(
            decode_cursor(&c),
            Some((1_700_000_000_123, "dlv_abc123".into()))
        );
        assert_eq!(decode_cursor("not a cursor"), None);
    }

    #[test]
    fn merge_removes_nulls() {
        let m = merged(json!({"a": 1, "b": 2}), Some(json!({"b": null, "c": 3})));
        assert_eq!(m, json!({"a": 1, "c": 3}));
        assert_eq!(merged(json!({"a": 1}), None), json!({"a": 1}));
    }
}
