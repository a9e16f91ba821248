//! Fake GA4 Measurement Protocol. `POST /mp/collect` answers 204 to
//! anything, like the real one (which never reports problems), and records
//! the events whose `measurement_id` and `api_secret` match (others are
//! silently dropped, as GA4 does). `POST /debug/mp/collect` records nothing
//! and answers `validationMessages` for the documented limits. Faults: 500
//! and slow answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::fake::{Faults, Running, fake_handle, lock};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ga4Fault {
    ServerError,
    Slow(Duration),
}

/// One recorded event with its request-level fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Ga4Received {
    pub client_id: String,
    pub timestamp_micros: Option<i64>,
    pub event: Value,
}

#[derive(Debug, Default)]
pub struct Ga4State {
    measurement_id: String,
    api_secret: String,
    faults: Faults<Ga4Fault>,
    received: Vec<Ga4Received>,
    /// Request bodies as received (collect endpoint), accepted or dropped.
    bodies: Vec<Value>,
    dropped: usize,
    debug_requests: usize,
}

/// The fake. Dropping it stops the server.
pub struct FakeGa4(Running<Ga4State>);

fake_handle!(FakeGa4, Ga4State, Ga4Fault);

impl FakeGa4 {
    pub async fn start(measurement_id: &str, api_secret: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(Ga4State {
            measurement_id: measurement_id.to_owned(),
            api_secret: api_secret.to_owned(),
            ..Default::default()
        }));
        let router = Router::new()
            .route("/mp/collect", post(collect))
            .route("/debug/mp/collect", post(debug_collect))
            .with_state(state.clone());
        Ok(Self(Running::serve(state, router).await?))
    }

    pub fn received(&self) -> Vec<Ga4Received> {
        lock(&self.state).received.clone()
    }

    /// Every body posted to `/mp/collect`, in order.
    pub fn bodies(&self) -> Vec<Value> {
        lock(&self.state).bodies.clone()
    }

    /// Requests dropped for a wrong measurement id or API secret.
    pub fn dropped(&self) -> usize {
        lock(&self.state).dropped
    }

    pub fn debug_requests(&self) -> usize {
        lock(&self.state).debug_requests
    }

    pub fn count_transaction_id(&self, id: &str) -> usize {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| r.event["params"]["transaction_id"] == id)
            .count()
    }
}

async fn pause(state: &Arc<Mutex<Ga4State>>) -> Option<Ga4Fault> {
    let (fault, delay) = {
        let mut st = lock(state);
        (st.faults.take(), st.faults.delay())
    };
    let extra = match &fault {
        Some(Ga4Fault::Slow(d)) => *d,
        _ => Duration::ZERO,
    };
    if !(delay + extra).is_zero() {
        tokio::time::sleep(delay + extra).await;
    }
    fault
}

async fn collect(
    State(state): State<Arc<Mutex<Ga4State>>>,
    Query(q): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if pause(&state).await == Some(Ga4Fault::ServerError) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut st = lock(&state);
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    st.bodies.push(body.clone());
    let authorised = q.get("measurement_id") == Some(&st.measurement_id)
        && q.get("api_secret") == Some(&st.api_secret);
    let client_id = body
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if !authorised || client_id.is_empty() {
        st.dropped += 1;
        return StatusCode::NO_CONTENT.into_response();
    }
    let ts = body.get("timestamp_micros").and_then(Value::as_i64);
    for e in body
        .get("events")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(25)
    {
        st.received.push(Ga4Received {
            client_id: client_id.clone(),
            timestamp_micros: ts,
            event: e.clone(),
        });
    }
    StatusCode::NO_CONTENT.into_response()
}

fn name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 40
        && n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && n.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
}

async fn debug_collect(
    State(state): State<Arc<Mutex<Ga4State>>>,
    body: axum::body::Bytes,
) -> Response {
    if pause(&state).await == Some(Ga4Fault::ServerError) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    lock(&state).debug_requests += 1;
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut messages = Vec::new();
    let msg = |path: &str, desc: String, code: &str| json!({"fieldPath": path, "description": desc, "validationCode": code});
    if body
        .get("client_id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        messages.push(msg(
            "client_id",
            "client_id is required.".into(),
            "VALUE_REQUIRED",
        ));
    }
    let events = body
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if events.len() > 25 {
        messages.push(msg(
            "events",
            "A request may hold at most 25 events.".into(),
            "EXCEEDED_MAX_ENTITIES",
        ));
    }
    for (i, e) in events.iter().enumerate() {
        let name = e.get("name").and_then(Value::as_str).unwrap_or_default();
        if !name_ok(name) {
            messages.push(msg(
                "events",
                format!("Event at index: [{i}] has invalid name [{name}]."),
                "NAME_INVALID",
            ));
        }
        let params = e
            .get("params")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        if params.len() > 25 {
            messages.push(msg(
                "events.params",
                format!("Event at index: [{i}] has too many params."),
                "EXCEEDED_MAX_ENTITIES",
            ));
        }
        for (k, v) in &params {
            if !name_ok(k) {
                messages.push(msg(
                    "events.params",
                    format!("Param [{k}] has invalid name."),
                    "NAME_INVALID",
                ));
            }
            if v.as_str().is_some_and(|s| s.chars().count() > 100) {
                messages.push(msg(
                    "events.params",
                    format!("Param [{k}] has a value longer than 100."),
                    "VALUE_INVALID",
                ));
            }
        }
    }
    Json(json!({"validationMessages": messages})).into_response()
}
