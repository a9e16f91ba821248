//! Fake Meta Conversions API (`POST /v{N}.0/{pixel_id}/events`), faithful
//! to `../shared/reference/ad-platforms.md`: it checks the access token,
//! validates events as Meta does (integer `event_time` within 7 days,
//! website events with user agent and URL, a Purchase with value and
//! currency, hashed `em` / `ph`), rejects the whole request for one bad
//! event, and answers `{"events_received", "messages", "fbtrace_id"}` or a
//! Graph API error. Faults can be scripted: throttling, an expired token,
//! 500s, slow answers, outage windows. Every accepted event is recorded.
//!
//! Also home of the hashing and time helpers the other ad-platform fakes
//! share.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::fake::{Faults, Running, fake_handle, lock};

// ---- shared by the ad-platform fakes --------------------------------------

pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

// ---- Meta ------------------------------------------------------------------

/// A scripted Meta failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaFault {
    /// HTTP 400 with a throttling code: 4, 17, 80003 or 613.
    Throttle { code: i64 },
    /// HTTP 500 with code 1 (unknown) or 2 (service): temporary.
    Transient { code: i64 },
    /// HTTP 400, code 190 subcode 463: the access token expired.
    ExpiredToken,
    /// HTTP 500 with an HTML body, as a broken front end answers.
    ServerError,
    /// A normal answer after this delay (on top of the global delay).
    Slow(Duration),
}

/// One event Meta accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaReceived {
    pub event: Value,
    pub test_event_code: Option<String>,
}

/// One request, whatever its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetaRequestLog {
    pub status: u16,
    pub events: usize,
}

#[derive(Debug, Default)]
pub struct MetaState {
    pixel_id: String,
    access_token: String,
    faults: Faults<MetaFault>,
    /// event_id -> error subcode: requests holding it are rejected whole.
    bad_events: std::collections::HashMap<String, i64>,
    received: Vec<MetaReceived>,
    requests: Vec<MetaRequestLog>,
}

/// The fake. Dropping it stops the server.
pub struct FakeMeta(Running<MetaState>);

fake_handle!(FakeMeta, MetaState, MetaFault);

impl FakeMeta {
    /// Starts a fake accepting events for `pixel_id` with `access_token`.
    pub async fn start(pixel_id: &str, access_token: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(MetaState {
            pixel_id: pixel_id.to_owned(),
            access_token: access_token.to_owned(),
            ..Default::default()
        }));
        let router = Router::new()
            .route("/{version}/{pixel_id}/events", post(events))
            .with_state(state.clone());
        Ok(Self(Running::serve(state, router).await?))
    }

    /// Rotates the valid token: the old one now answers code 190.
    pub fn set_access_token(&self, token: &str) {
        lock(&self.state).access_token = token.to_owned();
    }

    /// Any request holding an event with this `event_id` is rejected whole
    /// (HTTP 400, code 100, `subcode`), as Meta does for one bad event.
    pub fn reject_event_id(&self, event_id: &str, subcode: i64) {
        lock(&self.state)
            .bad_events
            .insert(event_id.to_owned(), subcode);
    }

    /// Accepted events, in arrival order.
    pub fn received(&self) -> Vec<MetaReceived> {
        lock(&self.state).received.clone()
    }

    /// Accepted event objects, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        lock(&self.state)
            .received
            .iter()
            .map(|r| r.event.clone())
            .collect()
    }

    /// How many accepted events carry this `event_id` (Meta would
    /// de-duplicate them; a correct client sends each once).
    pub fn count_event_id(&self, event_id: &str) -> usize {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| r.event["event_id"] == event_id)
            .count()
    }

    /// Distinct accepted `event_id`s.
    pub fn unique_event_ids(&self) -> usize {
        let st = lock(&self.state);
        let mut ids: Vec<&str> = st
            .received
            .iter()
            .filter_map(|r| r.event["event_id"].as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids.len()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests.len()
    }

    pub fn requests(&self) -> Vec<MetaRequestLog> {
        lock(&self.state).requests.clone()
    }
}

fn graph_error(
    status: StatusCode,
    code: i64,
    subcode: Option<i64>,
    kind: &str,
    message: &str,
) -> Response {
    let mut err = json!({
        "message": message,
        "type": kind,
        "code": code,
        "fbtrace_id": "AFakeTraceId0001",
    });
    if let (Some(s), Some(o)) = (subcode, err.as_object_mut()) {
        o.insert("error_subcode".into(), json!(s));
        o.insert("error_user_title".into(), json!("Invalid parameter"));
        o.insert("error_user_msg".into(), json!(message));
    }
    (status, axum::Json(json!({ "error": err }))).into_response()
}

/// Meta's checks of one event; `Some((subcode, message))` when invalid.
fn check_event(e: &Value, now: i64) -> Option<(i64, String)> {
    let name = e
        .get("event_name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if name.is_empty() {
        return Some((2804008, "The parameter event_name is required".into()));
    }
    let Some(t) = e.get("event_time").and_then(Value::as_i64) else {
        return Some((
            2804008,
            "event_time must be an integer Unix timestamp in seconds".into(),
        ));
    };
    if t < now - 7 * 86400 {
        return Some((
            2804003,
            "The timestamp for this event is too far in the past (more than 7 days)".into(),
        ));
    }
    if t > now + 600 {
        return Some((
            2804004,
            "The timestamp for this event is in the future".into(),
        ));
    }
    if e.get("event_id")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        // Optional for Meta, but clicktrail always dedups with it.
        return Some((2804008, "event_id missing (the fake requires it)".into()));
    }
    let source = e
        .get("action_source")
        .and_then(Value::as_str)
        .unwrap_or_default();
    const SOURCES: [&str; 9] = [
        "email",
        "website",
        "app",
        "phone_call",
        "chat",
        "physical_store",
        "system_generated",
        "business_messaging",
        "other",
    ];
    if !SOURCES.contains(&source) {
        return Some((2804008, format!("Invalid action_source {source:?}")));
    }
    let user = e.get("user_data").and_then(Value::as_object);
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Some((
            2804050,
            "user_data must include at least one customer information parameter".into(),
        ));
    };
    if source == "website" {
        if user
            .get("client_user_agent")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Some((
                2804050,
                "client_user_agent is required for website events".into(),
            ));
        }
        if e.get("event_source_url")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Some((
                2804050,
                "event_source_url is required for website events".into(),
            ));
        }
    }
    for key in ["em", "ph", "external_id"] {
        let values: Vec<&Value> = match user.get(key) {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v) => vec![v],
            None => continue,
        };
        let hashed = values.iter().all(|v| v.as_str().is_some_and(is_sha256_hex));
        if key != "external_id" && !hashed {
            return Some((2804001, format!("user_data.{key} must be SHA-256 hashed")));
        }
    }
    if name == "Purchase" {
        let cd = e.get("custom_data");
        let value_ok = cd
            .and_then(|c| c.get("value"))
            .is_some_and(Value::is_number);
        let currency_ok = cd
            .and_then(|c| c.get("currency"))
            .and_then(Value::as_str)
            .is_some_and(|c| c.len() == 3);
        if !value_ok || !currency_ok {
            return Some((
                2804009,
                "Purchase events require custom_data.value and currency".into(),
            ));
        }
    }
    None
}

async fn events(
    State(state): State<Arc<Mutex<MetaState>>>,
    Path((version, pixel_id)): Path<(String, String)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let (fault, delay) = {
        let mut st = lock(&state);
        (st.faults.take(), st.faults.delay())
    };
    let extra = match &fault {
        Some(MetaFault::Slow(d)) => *d,
        _ => Duration::ZERO,
    };
    if !(delay + extra).is_zero() {
        tokio::time::sleep(delay + extra).await;
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let data = parsed
        .as_ref()
        .and_then(|b| b.get("data"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let response = answer(
        &state,
        &version,
        &pixel_id,
        &query,
        parsed.as_ref(),
        &data,
        fault,
    );
    lock(&state).requests.push(MetaRequestLog {
        status: response.status().as_u16(),
        events: data.len(),
    });
    response
}

fn answer(
    state: &Arc<Mutex<MetaState>>,
    version: &str,
    pixel_id: &str,
    query: &std::collections::HashMap<String, String>,
    body: Option<&Value>,
    data: &[Value],
    fault: Option<MetaFault>,
) -> Response {
    match fault {
        Some(MetaFault::Throttle { code }) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                code,
                None,
                "OAuthException",
                "(#4) Application request limit reached",
            );
        }
        Some(MetaFault::Transient { code }) => {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                code,
                None,
                "OAuthException",
                "An unexpected error has occurred. Please retry your request later.",
            );
        }
        Some(MetaFault::ExpiredToken) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                190,
                Some(463),
                "OAuthException",
                "Error validating access token: Session has expired.",
            );
        }
        Some(MetaFault::ServerError) => {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "<html><body>500 Internal Server Error</body></html>",
            )
                .into_response();
        }
        Some(MetaFault::Slow(_)) | None => {}
    }
    let st = lock(state);
    if !(version.starts_with('v') && version.ends_with(".0")) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "OAuthException",
            "Unknown path components",
        );
    }
    if query.get("access_token").map(String::as_str) != Some(st.access_token.as_str()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            190,
            None,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
        );
    }
    if pixel_id != st.pixel_id {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "GraphMethodException",
            "Unsupported post request. Object does not exist or cannot be loaded",
        );
    }
    let bad_events = st.bad_events.clone();
    drop(st);
    let Some(body) = body else {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "OAuthException",
            "Invalid JSON body",
        );
    };
    if data.is_empty() || data.len() > 1000 {
        return graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(2804008),
            "OAuthException",
            "data must hold 1 to 1000 events",
        );
    }
    let now = unix_now();
    for e in data {
        let scripted = e
            .get("event_id")
            .and_then(Value::as_str)
            .and_then(|id| bad_events.get(id))
            .map(|sub| (*sub, "rejected by the test script".to_owned()));
        if let Some((sub, msg)) = scripted.or_else(|| check_event(e, now)) {
            return graph_error(
                StatusCode::BAD_REQUEST,
                100,
                Some(sub),
                "OAuthException",
                &format!("Invalid parameter: {msg}"),
            );
        }
    }
    let test_event_code = body
        .get("test_event_code")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let mut st = lock(state);
    for e in data {
        st.received.push(MetaReceived {
            event: e.clone(),
            test_event_code: test_event_code.clone(),
        });
    }
    let mut messages = Vec::<String>::new();
    if test_event_code.is_some() {
        messages.push("test events: see Test Events in Events Manager".into());
    }
    (
        StatusCode::OK,
        axum::Json(json!({"events_received": data.len(), "messages": messages, "fbtrace_id": "AFakeTraceId0002"})),
    )
        .into_response()
}
