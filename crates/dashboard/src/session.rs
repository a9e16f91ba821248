//! Login sessions and CSRF.
//!
//! A session is a random token in an `HttpOnly`, `SameSite=Lax` cookie
//! (`Secure`, with the `__Host-` prefix, when the public URL is https); the
//! database keeps only its SHA-256 (`clicktrail_store::users`). Sessions
//! expire after [`IDLE_MS`] without use and [`ABSOLUTE_MS`] after login.
//!
//! CSRF: each session has a synchronizer token, put in every form as
//! `_csrf`; [`DashForm`] is the only way a handler reads a POST body and it
//! refuses the request unless the token matches. Before login (setup and
//! login forms) there is no session, so those forms use a double-submit
//! cookie instead ([`AnonForm`]): a random value in a `SameSite=Strict`
//! cookie that the form must repeat.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Multipart, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use clicktrail_engine::auth::Caller;
use clicktrail_store::users::{Role, WebSession};

use crate::DashState;
use crate::{DashError, see_other};

pub use clicktrail_engine::auth::{
    SESSION_ABSOLUTE_MS as ABSOLUTE_MS, SESSION_IDLE_MS as IDLE_MS, same_secret,
};

/// Largest urlencoded form body.
const MAX_FORM_BYTES: usize = 1024 * 1024;

fn secure(state: &DashState) -> bool {
    state.public_base.starts_with("https://")
}

pub fn session_cookie_name(state: &DashState) -> &'static str {
    if secure(state) {
        "__Host-ct_session"
    } else {
        "ct_session"
    }
}

pub fn csrf_cookie_name(state: &DashState) -> &'static str {
    if secure(state) {
        "__Host-ct_csrf"
    } else {
        "ct_csrf"
    }
}

/// The value of a request cookie.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| cookie::Cookie::split_parse(v.to_owned()))
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn build_cookie(
    state: &DashState,
    name: &'static str,
    value: String,
    same_site: cookie::SameSite,
    max_age_secs: i64,
) -> HeaderValue {
    let c = cookie::Cookie::build((name, value))
        .path("/")
        .http_only(true)
        .secure(secure(state))
        .same_site(same_site)
        .max_age(cookie::time::Duration::seconds(max_age_secs))
        .build();
    // Cookie values here are base64url tokens: always a valid header.
    HeaderValue::from_str(&c.to_string()).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn session_cookie(state: &DashState, token: String) -> HeaderValue {
    build_cookie(
        state,
        session_cookie_name(state),
        token,
        cookie::SameSite::Lax,
        ABSOLUTE_MS / 1000,
    )
}

pub fn clear_session_cookie(state: &DashState) -> HeaderValue {
    build_cookie(
        state,
        session_cookie_name(state),
        String::new(),
        cookie::SameSite::Lax,
        0,
    )
}

pub fn csrf_cookie(state: &DashState, value: String) -> HeaderValue {
    build_cookie(
        state,
        csrf_cookie_name(state),
        value,
        cookie::SameSite::Strict,
        2 * 3600,
    )
}

/// The client's address (for throttling only: never logged or stored).
pub fn client_addr(
    state: &DashState,
    parts_or_headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    state.services.enricher.client_ip(parts_or_headers, peer)
}

/// A logged-in dashboard user: the session, its workspace and role.
#[derive(Debug, Clone)]
pub struct Dash {
    /// Who the session authenticates, for the engine's services.
    pub caller: Caller,
    pub session: WebSession,
    pub memberships: Vec<(i64, String, Role)>,
}

impl Dash {
    pub fn workspace_id(&self) -> i64 {
        self.session.workspace_id
    }

    pub fn user_id(&self) -> i64 {
        self.session.user_id
    }

    pub fn csrf(&self) -> &str {
        &self.session.csrf_token
    }

    pub fn is_admin(&self) -> bool {
        self.session.role == Role::Admin
    }

    pub fn require_admin(&self) -> Result<(), DashError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(DashError::Forbidden(
                "Only the workspace's admins can do this.",
            ))
        }
    }
}

/// Where to send a visitor without a session.
fn to_login(parts: &Parts) -> Response {
    let next = if parts.method == Method::GET {
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .filter(|p| p != "/")
    } else {
        None
    };
    match next {
        Some(n) => see_other(&format!(
            "/login?next={}",
            url::form_urlencoded::byte_serialize(n.as_bytes()).collect::<String>()
        )),
        None => see_other("/login"),
    }
}

impl FromRequestParts<DashState> for Dash {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &DashState,
    ) -> Result<Self, Self::Rejection> {
        let Some(token) = cookie_value(&parts.headers, session_cookie_name(state)) else {
            return Err(to_login(parts));
        };
        let now = clicktrail_store::now_ms();
        let found = state
            .services
            .auth
            .session(&token, now)
            .await
            .map_err(|e| DashError::from(e).into_response())?;
        let Some(found) = found else {
            return Err(to_login(parts));
        };
        Ok(Dash {
            caller: found.caller,
            session: found.session,
            memberships: found.memberships,
        })
    }
}

/// A submitted form: urlencoded fields, or multipart fields with uploaded
/// files read as text.
#[derive(Debug, Clone, Default)]
pub struct FormData {
    pub fields: Vec<(String, String)>,
    /// Uploaded files: (field name, file name, content).
    pub files: Vec<(String, String, String)>,
}

impl FormData {
    /// The first value of a field, trimmed, or "".
    pub fn get(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    }

    /// The first value, untrimmed (passwords).
    pub fn raw(&self, name: &str) -> &str {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn get_all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Whether a checkbox was ticked.
    pub fn checked(&self, name: &str) -> bool {
        self.fields.iter().any(|(k, v)| k == name && v != "0")
    }

    pub fn file(&self, name: &str) -> Option<(&str, &str)> {
        self.files
            .iter()
            .find(|(k, _, _)| k == name)
            .map(|(_, f, c)| (f.as_str(), c.as_str()))
    }

    fn parse_urlencoded(bytes: &[u8]) -> Self {
        FormData {
            fields: url::form_urlencoded::parse(bytes).into_owned().collect(),
            files: Vec::new(),
        }
    }
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase()
}

async fn read_form(req: Request, state: &DashState) -> Result<FormData, DashError> {
    let ct = content_type(req.headers());
    if ct.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, state)
            .await
            .map_err(|e| DashError::BadRequest(e.body_text()))?;
        let mut form = FormData::default();
        loop {
            let field = match mp.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err(DashError::BadRequest(e.body_text())),
            };
            let name = field.name().unwrap_or("").to_owned();
            let file_name = field.file_name().map(str::to_owned);
            let bytes = field
                .bytes()
                .await
                .map_err(|e| DashError::BadRequest(e.body_text()))?;
            let text = String::from_utf8_lossy(&bytes).into_owned();
            match file_name {
                Some(f) => form.files.push((name, f, text)),
                None => form.fields.push((name, text)),
            }
        }
        Ok(form)
    } else {
        let bytes = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
            .await
            .map_err(|_| DashError::BadRequest("the form is too large".into()))?;
        Ok(FormData::parse_urlencoded(&bytes))
    }
}

/// A POST from a logged-in user whose CSRF token checked out.
#[derive(Debug)]
pub struct DashForm {
    pub dash: Dash,
    pub form: FormData,
    /// The client's address, for the throttle of password checks.
    pub client: Option<IpAddr>,
}

impl FromRequest<DashState> for DashForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &DashState) -> Result<Self, Self::Rejection> {
        let (mut parts, body) = req.into_parts();
        let dash = Dash::from_request_parts(&mut parts, state).await?;
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let client = client_addr(state, &parts.headers, peer);
        let req = Request::from_parts(parts, body);
        let form = read_form(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !same_secret(form.get("_csrf"), dash.csrf()) {
            return Err(DashError::Csrf.into_response());
        }
        Ok(DashForm { dash, form, client })
    }
}

/// A POST before login (setup, login) whose double-submit token checked
/// out, with the client's address for throttling.
#[derive(Debug)]
pub struct AnonForm {
    pub form: FormData,
    pub client: Option<IpAddr>,
    /// The TCP peer, and whether the request names a proxy's client
    /// (`/setup` asks such requests for the setup code).
    pub peer: Option<SocketAddr>,
    pub via_proxy: bool,
}

/// Whether a request came through a proxy (it carries a forwarding
/// header), so its TCP peer says nothing of who sent it.
pub fn via_proxy(headers: &HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

impl FromRequest<DashState> for AnonForm {
    type Rejection = Response;

    async fn from_request(req: Request, state: &DashState) -> Result<Self, Self::Rejection> {
        let cookie = cookie_value(req.headers(), csrf_cookie_name(state)).unwrap_or_default();
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        let client = client_addr(state, req.headers(), peer);
        let via_proxy = via_proxy(req.headers());
        let form = read_form(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        if !same_secret(form.get("_csrf"), &cookie) {
            return Err(DashError::Csrf.into_response());
        }
        Ok(AnonForm {
            form,
            client,
            peer,
            via_proxy,
        })
    }
}

/// The double-submit token of an anonymous form: the cookie's when the
/// browser has one, else a new one to set.
pub fn anon_csrf(state: &DashState, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    match cookie_value(headers, csrf_cookie_name(state)).filter(|v| v.len() >= 16 && v.len() <= 128)
    {
        Some(v) => (v, None),
        None => {
            let v = clicktrail_domain::ids::random_token(32);
            let c = csrf_cookie(state, v.clone());
            (v, Some(c))
        }
    }
}
