//! `/api/v1` routes of conversions out: ad destinations (create, list,
//! show, edit, pause, test), the delivery log, retry and replay. Thin
//! handlers over `crate::delivery` and `clicktrail_store::deliveries`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
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
use clicktrail_store::deliveries::{
    self as store, DestinationChange, DestinationRow, DestinationStatus, NewDestination, Requeue,
};
use clicktrail_store::properties::Property;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiJson;
use super::api::owned_property;
use crate::auth::Caller;
use crate::delivery::{self, DeliveryView, convert, endpoint_problems};
use crate::error::{ApiError, ApiResult, FieldProblem};
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/properties/{id}/destinations",
            get(list_destinations).post(create_destination),
        )
        .route("/properties/{id}/deliveries", get(list_deliveries))
        .route(
            "/destinations/{id}",
            get(get_destination).patch(update_destination),
        )
        .route("/destinations/{id}/test", post(test_destination))
        .route("/destinations/{id}/replay", post(replay_destination))
        .route("/deliveries/{id}", get(get_delivery))
        .route("/deliveries/{id}/retry", post(retry_delivery))
}

// ---- destinations -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateDestination {
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    settings: Value,
    #[serde(default)]
    credentials: Value,
    #[serde(default)]
    event_mapping: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateDestination {
    name: Option<String>,
    /// Merged into the current settings; a `null` value removes a key.
    settings: Option<Value>,
    /// Merged into the current credentials; a `null` value removes a key.
    credentials: Option<Value>,
    /// Replaces the current mapping (`null`: the kind's defaults).
    #[serde(default, deserialize_with = "present")]
    event_mapping: Option<Value>,
    paused: Option<bool>,
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
fn validated(
    state: &AppState,
    kind: DestinationKind,
    settings: &Value,
    credentials: &Value,
    event_mapping: &Value,
    mut problems: Vec<FieldProblem>,
) -> Result<Destination, ApiError> {
    match validate(kind, settings, credentials, event_mapping) {
        Ok(dest) => {
            problems.extend(
                endpoint_problems(state.delivery.policy(), &dest)
                    .into_iter()
                    .map(|(field, e)| problem(field, e.code(), e.to_string())),
            );
            if problems.is_empty() {
                Ok(dest)
            } else {
                Err(ApiError::validation(problems))
            }
        }
        Err(errors) => {
            problems.extend(errors.into_iter().map(FieldProblem::from));
            Err(ApiError::validation(problems))
        }
    }
}

fn to_text(v: &Value) -> String {
    v.to_string()
}

/// Credentials shown masked (`EAAB…x9Q2`); `null` when they cannot be read.
fn masked_credentials(state: &AppState, row: &DestinationRow) -> Value {
    match state.keyring.decrypt_json(&row.credentials_enc) {
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

fn parse_json_text(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or(Value::Null)
}

fn destination_json(state: &AppState, row: &DestinationRow) -> Value {
    let kind = DestinationKind::parse(&row.kind);
    json!({
        "id": row.id,
        "property_id": row.property_id,
        "kind": row.kind,
        "kind_label": kind.map(DestinationKind::label),
        "name": row.name,
        "settings": parse_json_text(&row.settings),
        "credentials": masked_credentials(state, row),
        "event_mapping": parse_json_text(&row.event_mapping),
        "status": row.status,
        "status_reason": row.status_reason,
        "status_message": row.status_message,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    })
}

/// The caller's destination or 404 (also for another workspace's).
async fn owned_destination(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<(DestinationRow, Property)> {
    let row = store::get_destination(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let property = owned_property(state, caller, &row.property_id)
        .await
        .map_err(|_| ApiError::not_found("destination"))?;
    Ok((row, property))
}

async fn create_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CreateDestination>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let kind = parse_kind(&body.kind).map_err(|e| ApiError::validation(vec![e.into()]))?;
    let mut problems = Vec::new();
    let name = check_name(body.name.as_deref(), kind)
        .map_err(|e| problems.push(e))
        .ok();
    let dest = validated(
        &state,
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
            settings: &to_text(&dest.settings_json()),
            credentials_enc: &credentials_enc,
            event_mapping: &to_text(&dest.event_mapping_json()),
        },
    )
    .await?;
    state.delivery.forget(p.id.as_str()).await;
    tracing::info!(destination = %row.id, kind = kind.as_str(), "destination created");
    Ok((
        StatusCode::CREATED,
        axum::Json(destination_json(&state, &row)),
    ))
}

async fn list_destinations(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let rows = store::list_destinations(&state.db, p.id.as_str()).await?;
    let items: Vec<Value> = rows.iter().map(|r| destination_json(&state, r)).collect();
    Ok(axum::Json(json!({ "destinations": items })))
}

async fn get_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let (row, _) = owned_destination(&state, &caller, &id).await?;
    let mut v = destination_json(&state, &row);
    v["deliveries"] = json!(delivery::status_counts(&state.db, &row.id).await?);
    Ok(axum::Json(v))
}

/// Shallow merge of a JSON object edit: `null` removes a key.
fn merged(current: &str, edit: Option<Value>) -> Value {
    match edit {
        None => parse_json_text(current),
        Some(Value::Object(changes)) => {
            let mut base = match parse_json_text(current) {
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

async fn update_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateDestination>,
) -> ApiResult<impl IntoResponse> {
    let (row, p) = owned_destination(&state, &caller, &id).await?;
    let mut tx = state.db.begin().await?;
    // Re-read under the lock: a worker may have flagged it meanwhile.
    let current = store::lock_destination(&mut tx, &row.id)
        .await?
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let kind = DestinationKind::parse(&current.kind).ok_or_else(|| {
        ApiError::internal(format!(
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
    let credentials = match body.credentials {
        None => stored_credentials,
        Some(Value::Object(changes)) => {
            let mut base = match stored_credentials {
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
        Some(other) => other,
    };
    let settings = merged(&current.settings, body.settings);
    let mapping = match body.event_mapping {
        Some(m) => m,
        None => parse_json_text(&current.event_mapping),
    };
    let validation = validated(&state, kind, &settings, &credentials, &mapping, problems);
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
    let settings_text = to_text(&dest.settings_json());
    let mapping_text = to_text(&dest.event_mapping_json());
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
        .ok_or_else(|| ApiError::not_found("destination"))?;
    let mut v = destination_json(&state, &row);
    v["deliveries"] = json!(delivery::status_counts(&state.db, &row.id).await?);
    Ok(axum::Json(v))
}

// ---- test send ------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct TestRequest {
    /// Our event name to test (`Lead`, `Purchase`...); default: the latest
    /// conversion's, else the first the destination maps.
    #[serde(default)]
    event_name: Option<String>,
    /// Use a made-up conversion even when real ones exist.
    #[serde(default)]
    synthetic: bool,
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
        value: Some(Decimal::ONE),
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
        consent_granted: None,
    }
}

async fn test_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let (row, p) = owned_destination(&state, &caller, &id).await?;
    let req: TestRequest = if body.iter().all(u8::is_ascii_whitespace) {
        TestRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?
    };
    let loaded = delivery::load(&state, row);
    let dest = loaded.parsed.as_ref().map_err(|u| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "destination_unusable",
            format!("{}: {}", u.reason, u.message),
        )
    })?;
    let client = state.delivery.client().ok_or_else(|| {
        ApiError::unavailable(
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
        return Err(ApiError::new(
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
                &state.enricher,
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
    Ok(axum::Json(json!({
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
    })))
}

// ---- the delivery log -------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    #[serde(default)]
    statuses: Option<Vec<String>>,
}

async fn replay_destination(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<impl IntoResponse> {
    let (row, _) = owned_destination(&state, &caller, &id).await?;
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest { statuses: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_body",
                e.to_string(),
            )
        })?
    };
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
                        return Err(ApiError::validation(vec![problem(
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
    Ok(axum::Json(json!({ "requeued": n })))
}

async fn owned_delivery(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> ApiResult<store::DeliveryRow> {
    let row = store::get_delivery(&state.db, id)
        .await?
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    owned_property(state, caller, &row.property_id)
        .await
        .map_err(|_| ApiError::not_found("delivery"))?;
    Ok(row)
}

async fn get_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row = owned_delivery(&state, &caller, &id).await?;
    let view = delivery::views::with_attempts(&state.db, vec![row])
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::not_found("delivery"))?;
    Ok(axum::Json(view))
}

async fn retry_delivery(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let row = owned_delivery(&state, &caller, &id).await?;
    match store::requeue(&state.db, &row.id).await? {
        Requeue::Requeued => {}
        Requeue::NotFound => return Err(ApiError::not_found("delivery")),
        Requeue::NotRetryable { status } => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "not_retryable",
                format!(
                    "a {status} delivery cannot be retried (in flight, waiting, or already delivered)"
                ),
            ));
        }
    }
    state.delivery.wake();
    let row = owned_delivery(&state, &caller, &id).await?;
    Ok(axum::Json(DeliveryView::from_row(row, None)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    destination: Option<String>,
    status: Option<String>,
    conversion: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

fn encode_cursor(created_at: i64, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{created_at}|{id}"))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let raw = String::from_utf8(URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    let (at, id) = raw.split_once('|')?;
    Some((at.parse().ok()?, id.to_owned()))
}

async fn list_deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(q): Query<DeliveryQuery>,
) -> ApiResult<impl IntoResponse> {
    let p = owned_property(&state, &caller, &id).await?;
    let status = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(DeliveryStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_status",
                "status is one of pending, delivered, retrying, failed, dead, skipped",
            )
        })?),
    };
    let cursor =
        match q.cursor.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::bad_request("invalid_cursor", "the cursor is not valid")
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
    Ok(axum::Json(json!({
        "deliveries": items,
        "next_cursor": next_cursor,
    })))
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
        let m = merged(r#"{"a": 1, "b": 2}"#, Some(json!({"b": null, "c": 3})));
        assert_eq!(m, json!({"a": 1, "c": 3}));
        assert_eq!(merged(r#"{"a": 1}"#, None), json!({"a": 1}));
    }
}
