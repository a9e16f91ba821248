//! Fake TikTok Events API 2.0 (`POST /open_api/v1.3/event/track/`): checks
//! the `Access-Token` header, the pixel code and each event, and answers
//! like TikTok, errors included, **with HTTP 200** and `code != 0` (40001 no
//! permission, 40002 invalid parameter, 40100 rate limited, 40105 bad token
//! — the last one unverified). One bad event fails the whole request.
//! Faults: those codes on demand, HTTP 500, slow answers, outage windows.
//! Accepted events are recorded.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::fake::{Faults, Running, fake_handle, lock};
use crate::meta::{is_sha256_hex, unix_now};

/// A scripted TikTok failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TiktokFault {
    /// HTTP 200 with `code` 40100.
    RateLimited,
    /// HTTP 200 with `code` 40001.
    NoPermission,
    /// HTTP 200 with `code` 40002.
    InvalidParameter,
    /// HTTP 200 with any code and message.
    Code { code: i64, message: String },
    /// HTTP 500 with a TikTok-shaped body.
    ServerError,
    /// A normal answer after this delay.
    Slow(Duration),
}

/// One accepted event.
#[derive(Debug, Clone, PartialEq)]
pub struct TiktokReceived {
    pub event: Value,
    pub pixel_code: String,
    pub test_event_code: Option<String>,
}

#[derive(Debug, Default)]
pub struct TiktokState {
    pixel_code: String,
    access_token: String,
    faults: Faults<TiktokFault>,
    received: Vec<TiktokReceived>,
    requests: usize,
    codes: Vec<i64>,
}

/// The fake. Dropping it stops the server.
pub struct FakeTiktok(Running<TiktokState>);

fake_handle!(FakeTiktok, TiktokState, TiktokFault);

impl FakeTiktok {
    pub async fn start(pixel_code: &str, access_token: &str) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(TiktokState {
            pixel_code: pixel_code.to_owned(),
            access_token: access_token.to_owned(),
            ..Default::default()
        }));
        let router = Router::new()
            .route("/open_api/{version}/event/track/", post(track))
            .with_state(state.clone());
        Ok(Self(Running::serve(state, router).await?))
    }

    pub fn set_access_token(&self, token: &str) {
        lock(&self.state).access_token = token.to_owned();
    }

    pub fn received(&self) -> Vec<TiktokReceived> {
        lock(&self.state).received.clone()
    }

    pub fn events(&self) -> Vec<Value> {
        lock(&self.state)
            .received
            .iter()
            .map(|r| r.event.clone())
            .collect()
    }

    pub fn count_event_id(&self, event_id: &str) -> usize {
        lock(&self.state)
            .received
            .iter()
            .filter(|r| r.event["event_id"] == event_id)
            .count()
    }

    pub fn request_count(&self) -> usize {
        lock(&self.state).requests
    }

    /// The `code` of every answer, in order (0 = success).
    pub fn answer_codes(&self) -> Vec<i64> {
        lock(&self.state).codes.clone()
    }
}

fn answer(code: i64, message: &str) -> Response {
    (StatusCode::OK, Json(json!({"code": code, "message": message, "request_id": "20260301120000FAKE", "data": {}})))
        .into_response()
}

fn check_event(e: &Value, now: i64) -> Option<String> {
    if e.get("event")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Some("data[].event: required".into());
    }
    let Some(t) = e.get("event_time").and_then(Value::as_i64) else {
        return Some("data[].event_time: must be an integer Unix timestamp in seconds".into());
    };
    if t > now + 600 || t < now - 28 * 86400 {
        return Some("data[].event_time: out of range".into());
    }
    if let Some(user) = e.get("user").and_then(Value::as_object) {
        for key in ["email", "phone", "external_id"] {
            if let Some(v) = user.get(key) {
                let ok = match v {
                    Value::String(s) => is_sha256_hex(s),
                    Value::Array(a) => a.iter().all(|x| x.as_str().is_some_and(is_sha256_hex)),
                    _ => false,
                };
                if !ok {
                    return Some(format!("data[].user.{key}: must be SHA-256 hashed"));
                }
            }
        }
    }
    None
}

async fn track(
    State(state): State<Arc<Mutex<TiktokState>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (fault, delay) = {
        let mut st = lock(&state);
        st.requests += 1;
        (st.faults.take(), st.faults.delay())
    };
    let extra = match &fault {
        Some(TiktokFault::Slow(d)) => *d,
        _ => Duration::ZERO,
    };
    if !(delay + extra).is_zero() {
        tokio::time::sleep(delay + extra).await;
    }
    let (code, response) = decide(&state, &headers, &body, fault);
    lock(&state).codes.push(code);
    response
}

fn decide(
    state: &Arc<Mutex<TiktokState>>,
    headers: &HeaderMap,
    body: &[u8],
    fault: Option<TiktokFault>,
) -> (i64, Response) {
    match fault {
        Some(TiktokFault::RateLimited) => {
            return (
                40100,
                answer(40100, "Too many requests. Please retry in some time."),
            );
        }
        Some(TiktokFault::NoPermission) => {
            return (40001, answer(40001, "No permission to operate pixel"));
        }
        Some(TiktokFault::InvalidParameter) => return (40002, answer(40002, "Invalid parameters")),
        Some(TiktokFault::Code { code, message }) => return (code, answer(code, &message)),
        Some(TiktokFault::ServerError) => {
            let r = (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"code": 50000, "message": "System error", "request_id": "FAKE", "data": {}})),
            )
                .into_response();
            return (50000, r);
        }
        Some(TiktokFault::Slow(_)) | None => {}
    }
    let mut st = lock(state);
    if headers.get("access-token").and_then(|v| v.to_str().ok()) != Some(st.access_token.as_str()) {
        return (
            40105,
            answer(40105, "Access token is incorrect or has been revoked."),
        );
    }
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return (40002, answer(40002, "Invalid JSON"));
    };
    if body.get("event_source").and_then(Value::as_str) != Some("web") {
        return (
            40002,
            answer(40002, "event_source: must be web for pixel events"),
        );
    }
    let pixel = body
        .get("event_source_id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    if pixel != st.pixel_code {
        return (40001, answer(40001, "No permission to operate pixel"));
    }
    let data = body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if data.is_empty() || data.len() > 1000 {
        return (40002, answer(40002, "data: 1 to 1000 events"));
    }
    let now = unix_now();
    if let Some(why) = data.iter().find_map(|e| check_event(e, now)) {
        return (40002, answer(40002, &why));
    }
    let test_event_code = body
        .get("test_event_code")
        .and_then(Value::as_str)
        .map(str::to_owned);
    for e in data {
        st.received.push(TiktokReceived {
            event: e,
            pixel_code: pixel.clone(),
            test_event_code: test_event_code.clone(),
        });
    }
    (0, answer(0, "OK"))
}
