//! First run, login and logout, password change, workspace members and API
//! tokens.
//!
//! Passwords are hashed and checked with Argon2id on a small pool of
//! threads ([`crate::passwords`]); logins are throttled
//! ([`crate::throttle`]) before their password is looked at.

use std::net::SocketAddr;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, SaltString};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use clicktrail_store::users::{self, Role};
use clicktrail_store::{StoreError, auth as store_auth, now_ms};
use maud::{Markup, html};
use serde::Deserialize;

use crate::DashState;
use crate::error::DashResult;
use crate::passwords::Busy;
use crate::session::{
    AnonForm, Dash, DashForm, FormData, anon_csrf, same_secret, session_cookie, via_proxy,
};
use crate::throttle::{Blocked, Locks, Reason};
use crate::ui::{self, Chrome, Errors, Input, Section};
use crate::{DashError, html, see_other};

pub const MIN_PASSWORD: usize = 10;
pub const MAX_PASSWORD: usize = 256;

/// Hashes a password (Argon2id, random salt) off the async threads, outside
/// any server's pool (the demo's seeding).
pub async fn hash_password(password: String) -> Result<String, DashError> {
    tokio::task::spawn_blocking(move || {
        let mut salt = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(DashError::internal)?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(DashError::internal)
    })
    .await
    .map_err(DashError::internal)?
}

/// Checks an email address's shape (delivery is never attempted).
pub fn check_email(email: &str, errors: &mut Errors, field: &str) {
    let e = email.trim();
    let ok = (3..=254).contains(&e.len())
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
        && match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && !domain.is_empty()
                    && !domain.contains('@')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
            }
            None => false,
        };
    if !ok {
        errors.add(field, "Enter an email address such as you@example.com.");
    }
}

pub fn check_password(pw: &str, confirm: Option<&str>, errors: &mut Errors, field: &str) {
    let n = pw.chars().count();
    if n < MIN_PASSWORD {
        errors.add(field, format!("Use at least {MIN_PASSWORD} characters."));
    } else if n > MAX_PASSWORD {
        errors.add(field, format!("Use at most {MAX_PASSWORD} characters."));
    }
    if let Some(c) = confirm
        && c != pw
    {
        errors.add(&format!("{field}_confirm"), "The two passwords differ.");
    }
}

fn with_cookie(mut resp: Response, cookie: Option<axum::http::HeaderValue>) -> Response {
    if let Some(c) = cookie {
        resp.headers_mut().append(header::SET_COOKIE, c);
    }
    resp
}

async fn setup_done(state: &DashState) -> Result<bool, DashError> {
    Ok(users::count_users(&state.db).await? > 0)
}

/// `/`: setup on a fresh database, else the login or the properties.
pub async fn home(State(state): State<DashState>, req: Request) -> Response {
    match setup_done(&state).await {
        Ok(false) => return see_other("/setup"),
        Ok(true) => {}
        Err(e) => return e.into_response(),
    }
    let (mut parts, _) = req.into_parts();
    match <Dash as axum::extract::FromRequestParts<DashState>>::from_request_parts(
        &mut parts, &state,
    )
    .await
    {
        Ok(_) => see_other("/properties"),
        Err(_) => see_other("/login"),
    }
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

/// Who may create the first admin on a fresh server. Whoever reaches
/// `/setup` first owns the server, so beyond loopback `/setup` asks for a
/// one-time code printed in the first-run message: only someone who can
/// read the server's output can set it up. On a loopback listener a
/// direct request (from the same machine) needs none, but one through a
/// proxy (a forwarding header, a non-loopback peer) does, as the proxy may
/// carry anyone's.
#[derive(Debug)]
pub struct SetupGuard {
    listen_loopback: bool,
    /// `None` when the server had an account at start: `/setup` is closed
    /// then, except on loopback.
    code: Option<String>,
}

impl SetupGuard {
    pub fn new(listen: SocketAddr, code: Option<String>) -> Self {
        Self {
            listen_loopback: listen.ip().is_loopback(),
            code,
        }
    }

    /// Whether the listener is beyond loopback (the first-run message then
    /// says the code is required).
    pub fn listen_exposed(listen: SocketAddr) -> bool {
        !listen.ip().is_loopback()
    }

    /// Whether a request from `peer` must give the code.
    fn required(&self, peer: Option<SocketAddr>, via_proxy: bool) -> bool {
        !self.listen_loopback || via_proxy || peer.is_none_or(|p| !p.ip().is_loopback())
    }

    fn accepts(&self, given: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| same_secret(given.trim(), c))
    }
}

fn setup_form(csrf: &str, email: &str, errors: &Errors, ask_code: bool) -> Markup {
    html! {
        div.narrow {
            h1 { "Welcome to clicktrail" }
            p { "This server has no account yet. Create the first admin: you will use it to log in, add your site, install integrations and connect your ad platforms." }
            form method="post" action="/setup" novalidate {
                (ui::csrf(csrf))
                (ui::form_error(errors.get("_form")))
                @if ask_code {
                    (ui::input("Setup code", "setup_code", "", errors, Input { required: true, autocomplete: Some("off"), help: Some("Printed by the server when it started (its first-run message), so only whoever runs it can set it up."), ..Input::default() }))
                }
                (ui::input("Email", "email", email, errors, Input { kind: "email", required: true, autocomplete: Some("username"), ..Input::default() }))
                (ui::input("Password", "password", "", errors, Input { kind: "password", required: true, autocomplete: Some("new-password"), help: Some("At least 10 characters. Stored as an Argon2 hash."), ..Input::default() }))
                (ui::input("Repeat the password", "password_confirm", "", errors, Input { kind: "password", required: true, autocomplete: Some("new-password"), ..Input::default() }))
                button.primary type="submit" { "Create the admin account" }
            }
        }
    }
}

pub async fn setup_page(State(state): State<DashState>, req: Request) -> DashResult {
    if setup_done(&state).await? {
        return Ok(see_other("/login"));
    }
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let headers = req.headers();
    let ask_code = state.setup.required(peer, via_proxy(headers));
    let (csrf, cookie) = anon_csrf(&state, headers);
    let page = ui::bare_page(
        "Set up",
        setup_form(&csrf, "", &Errors::default(), ask_code),
    );
    Ok(with_cookie(html(StatusCode::OK, page), cookie))
}

pub async fn setup(
    State(state): State<DashState>,
    AnonForm {
        form,
        peer,
        via_proxy,
        ..
    }: AnonForm,
) -> DashResult {
    if setup_done(&state).await? {
        return Ok(see_other("/login"));
    }
    let ask_code = state.setup.required(peer, via_proxy);
    let email = form.get("email").to_owned();
    let mut errors = Errors::default();
    if ask_code && !state.setup.accepts(form.get("setup_code")) {
        errors.add(
            "setup_code",
            "This is not the setup code the server printed when it started (restarting it prints a new one).",
        );
    }
    check_email(&email, &mut errors, "email");
    check_password(
        form.raw("password"),
        Some(form.raw("password_confirm")),
        &mut errors,
        "password",
    );
    if !errors.is_empty() {
        let page = ui::bare_page(
            "Set up",
            setup_form(form.get("_csrf"), &email, &errors, ask_code),
        );
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, page));
    }
    let hash = state
        .passwords
        .hash(form.raw("password").to_owned())
        .await
        .map_err(DashError::internal)?;
    let ws = store_auth::ensure_workspace(&state.db, "default").await?;
    match users::create_first_admin(&state.db, ws.id, &email, &hash).await {
        Ok(_) => Ok(see_other("/login?done=setup")),
        Err(StoreError::Conflict(_)) => Ok(see_other("/login")),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// Login, logout
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct LoginQuery {
    next: Option<String>,
    done: Option<String>,
}

/// A local path to go to after login (never another site): what the URL
/// parser makes of `next` against this origin, if that stays on it. The
/// parser's own normalisation (tabs and newlines dropped, `\\` read as
/// `/` and so on, as browsers do) runs before the origin is compared, and
/// the normalised path is what is used, so `/\t/evil.example` is
/// `//evil.example`, another host, and refused.
pub fn safe_next(next: &str) -> Option<String> {
    static BASE: std::sync::LazyLock<Option<url::Url>> =
        std::sync::LazyLock::new(|| url::Url::parse("http://clicktrail.invalid/").ok());
    if !next.starts_with('/') || next.len() >= 2000 {
        return None;
    }
    let base = BASE.as_ref()?;
    let joined = base.join(next).ok()?;
    if joined.origin() != base.origin()
        || !joined.username().is_empty()
        || joined.password().is_some()
    {
        return None;
    }
    let path = &joined[url::Position::BeforePath..];
    // Belt and braces: a path the browser could read as a host.
    (path.starts_with('/') && !path.starts_with("//") && !path.starts_with("/\\"))
        .then(|| path.to_owned())
}

fn login_form(
    csrf: &str,
    email: &str,
    next: &str,
    errors: &Errors,
    notice: Option<&str>,
) -> Markup {
    html! {
        div.narrow {
            h1 { "Log in" }
            @if let Some(n) = notice { div.notice role="status" { (n) } }
            form method="post" action="/login" novalidate {
                (ui::csrf(csrf))
                input type="hidden" name="next" value=(next);
                (ui::form_error(errors.get("_form")))
                (ui::input("Email", "email", email, errors, Input { kind: "email", required: true, autocomplete: Some("username"), ..Input::default() }))
                (ui::input("Password", "password", "", errors, Input { kind: "password", required: true, autocomplete: Some("current-password"), ..Input::default() }))
                button.primary type="submit" { "Log in" }
            }
        }
    }
}

pub async fn login_page(
    State(state): State<DashState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> DashResult {
    if !setup_done(&state).await? {
        return Ok(see_other("/setup"));
    }
    let (csrf, cookie) = anon_csrf(&state, &headers);
    let next = q.next.as_deref().and_then(safe_next).unwrap_or_default();
    let notice = match q.done.as_deref() {
        Some("setup") => Some("Your admin account is ready: log in with it."),
        Some("logout") => Some("You are logged out."),
        _ => None,
    };
    let page = ui::bare_page(
        "Log in",
        login_form(&csrf, "", &next, &Errors::default(), notice),
    );
    Ok(with_cookie(html(StatusCode::OK, page), cookie))
}

/// Starts a session for a verified user and answers with its cookie.
async fn start_session(state: &DashState, user_id: i64, workspace_id: i64, to: &str) -> DashResult {
    let token = clicktrail_domain::ids::random_token(32);
    let csrf = clicktrail_domain::ids::random_token(32);
    users::create_session(
        &state.db,
        &token,
        user_id,
        workspace_id,
        &csrf,
        now_ms(),
        super::session::IDLE_MS,
    )
    .await?;
    let mut resp = see_other(to);
    resp.headers_mut()
        .append(header::SET_COOKIE, session_cookie(state, token));
    Ok(resp)
}

pub async fn login(
    State(state): State<DashState>,
    AnonForm { form, client, .. }: AnonForm,
) -> DashResult {
    let email = form.get("email").to_owned();
    let next = safe_next(form.get("next")).unwrap_or_else(|| "/".to_owned());
    let csrf = form.get("_csrf").to_owned();
    let render = |status: StatusCode, errors: &Errors| {
        html(
            status,
            ui::bare_page("Log in", login_form(&csrf, &email, &next, errors, None)),
        )
    };
    let mut errors = Errors::default();
    if email.is_empty() {
        errors.add("email", "Enter your email address.");
    }
    if form.raw("password").is_empty() {
        errors.add("password", "Enter your password.");
    }
    if !errors.is_empty() {
        count_login("invalid_form");
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &errors));
    }
    // Counted before the (slow) check, so concurrent attempts cannot all
    // slip under the limits.
    let attempt = match state.throttle.reserve(&email, client) {
        Ok(a) => a,
        Err(b) => {
            count_login(b.reason.outcome());
            errors.add("_form", throttled_message(b));
            return Ok(retry_after(
                render(StatusCode::TOO_MANY_REQUESTS, &errors),
                b.retry_after.as_secs().max(1),
            ));
        }
    };
    let password = form.raw("password");
    if password.len() > MAX_PASSWORD * 4 {
        count_login("invalid_credentials");
        errors.add("_form", "The email or the password is wrong.");
        return Ok(render(StatusCode::UNAUTHORIZED, &errors));
    }
    let user = users::user_by_email(&state.db, &email).await?;
    let checked = state
        .passwords
        .verify_login(
            password.to_owned(),
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await;
    let user = match (checked, user) {
        (Ok(true), Some(u)) => u,
        (Err(Busy), _) => {
            // Not checked: the attempt does not count against anyone.
            state.throttle.refund(attempt);
            count_login("busy");
            errors.add(
                "_form",
                "The server is busy checking other logins. Try again in a moment.",
            );
            return Ok(retry_after(
                render(StatusCode::TOO_MANY_REQUESTS, &errors),
                1,
            ));
        }
        _ => {
            count_login("invalid_credentials");
            errors.add("_form", "The email or the password is wrong.");
            return Ok(render(StatusCode::UNAUTHORIZED, &errors));
        }
    };
    state.throttle.succeeded(attempt);
    let memberships = users::memberships(&state.db, user.id).await?;
    let Some((workspace_id, _, _)) = memberships.first() else {
        count_login("no_workspace");
        errors.add(
            "_form",
            "This account is not a member of any workspace any more.",
        );
        return Ok(render(StatusCode::FORBIDDEN, &errors));
    };
    count_login("succeeded");
    start_session(&state, user.id, *workspace_id, &next).await
}

/// Counts a login's outcome (`clicktrail_login_attempts_total`); the
/// outcome names are stable.
fn count_login(outcome: &'static str) {
    metrics::counter!("clicktrail_login_attempts_total", "outcome" => outcome).increment(1);
    tracing::info!(outcome, "dashboard: login");
}

fn throttled_message(b: Blocked) -> String {
    let secs = b.retry_after.as_secs().max(1);
    let wait = if secs < 90 {
        format!("{secs} second(s)")
    } else {
        format!("{} minute(s)", secs.div_ceil(60))
    };
    match b.reason {
        Reason::Address => {
            format!("Too many failed logins from your network. Try again in {wait}.")
        }
        Reason::Account => format!("Too many failed logins. Try again in {wait}."),
        Reason::Paced => format!(
            "Too many failed logins for this account: logins are slowed down. Try again in {wait}."
        ),
    }
}

fn retry_after(mut resp: Response, secs: u64) -> Response {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
    resp
}

pub async fn logout(State(state): State<DashState>, f: DashForm) -> DashResult {
    users::delete_session(&state.db, &f.dash.session.token_hash).await?;
    let mut resp = see_other("/login?done=logout");
    resp.headers_mut().append(
        header::SET_COOKIE,
        super::session::clear_session_cookie(&state),
    );
    Ok(resp)
}

pub async fn switch_workspace(State(state): State<DashState>, f: DashForm) -> DashResult {
    let wanted: i64 = f.form.get("workspace_id").parse().unwrap_or(-1);
    if !f.dash.memberships.iter().any(|(id, _, _)| *id == wanted) {
        return Err(DashError::NotFound);
    }
    users::switch_workspace(&state.db, &f.dash.session.token_hash, wanted).await?;
    Ok(see_other("/properties"))
}

// ---------------------------------------------------------------------------
// Password
// ---------------------------------------------------------------------------

#[derive(Deserialize, Default)]
pub struct DoneQuery {
    pub done: Option<String>,
}

fn password_body(csrf: &str, errors: &Errors) -> Markup {
    html! {
        div.narrow {
            h1 { "Change your password" }
            form method="post" action="/account/password" novalidate {
                (ui::csrf(csrf))
                (ui::input("Current password", "current", "", errors, Input { kind: "password", required: true, autocomplete: Some("current-password"), ..Input::default() }))
                (ui::input("New password", "password", "", errors, Input { kind: "password", required: true, autocomplete: Some("new-password"), help: Some("At least 10 characters."), ..Input::default() }))
                (ui::input("Repeat the new password", "password_confirm", "", errors, Input { kind: "password", required: true, autocomplete: Some("new-password"), ..Input::default() }))
                button.primary type="submit" { "Change password" }
            }
        }
    }
}

pub async fn password_page(dash: Dash, Query(q): Query<DoneQuery>) -> DashResult {
    let c = Chrome::new(&dash, "Password", Section::Account).notice(q.done.as_deref());
    Ok(html(
        StatusCode::OK,
        ui::page(&c, password_body(dash.csrf(), &Errors::default())),
    ))
}

pub async fn change_password(State(state): State<DashState>, f: DashForm) -> DashResult {
    let DashForm { dash, form, client } = f;
    let mut errors = Errors::default();
    check_password(
        form.raw("password"),
        Some(form.raw("password_confirm")),
        &mut errors,
        "password",
    );
    let user = users::user(&state.db, dash.user_id())
        .await?
        .ok_or(DashError::NotFound)?;
    let render = |status: StatusCode, errors: &Errors| {
        let c = Chrome::new(&dash, "Password", Section::Account);
        html(status, ui::page(&c, password_body(dash.csrf(), errors)))
    };
    // The current password is guessed like a login's: the same throttle
    // (per account and address), reserved before the slow check, and the
    // same bounded pool of checks, so a stolen session can neither
    // brute-force it nor flood the hashers.
    let attempt = match state.throttle.reserve(&user.email, client) {
        Ok(a) => a,
        Err(b) => {
            errors.add("current", throttled_message(b));
            return Ok(retry_after(
                render(StatusCode::TOO_MANY_REQUESTS, &errors),
                b.retry_after.as_secs().max(1),
            ));
        }
    };
    let current = form.raw("current");
    let checked = if current.len() > MAX_PASSWORD * 4 {
        Ok(false)
    } else {
        state
            .passwords
            .verify_login(current.to_owned(), Some(user.password_hash))
            .await
    };
    match checked {
        Ok(true) => state.throttle.succeeded(attempt),
        Ok(false) => errors.add("current", "This is not your current password."),
        Err(Busy) => {
            state.throttle.refund(attempt);
            errors.add(
                "current",
                "The server is busy checking other passwords. Try again in a moment.",
            );
            return Ok(retry_after(
                render(StatusCode::TOO_MANY_REQUESTS, &errors),
                1,
            ));
        }
    }
    if !errors.is_empty() {
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &errors));
    }
    let hash = state
        .passwords
        .hash(form.raw("password").to_owned())
        .await
        .map_err(DashError::internal)?;
    users::set_password(&state.db, dash.user_id(), &hash).await?;
    users::delete_user_sessions(&state.db, dash.user_id()).await?;
    start_session(
        &state,
        dash.user_id(),
        dash.workspace_id(),
        "/account/password?done=password",
    )
    .await
}

// ---------------------------------------------------------------------------
// Members
// ---------------------------------------------------------------------------

fn role_options() -> Vec<(String, String)> {
    vec![
        ("member".into(), "Member: uses the dashboard".into()),
        (
            "admin".into(),
            "Admin: also manages members and API tokens".into(),
        ),
    ]
}

async fn members_body(
    state: &DashState,
    dash: &Dash,
    form: &FormData,
    errors: &Errors,
) -> DashResult<Markup> {
    let members = users::members(&state.db, dash.workspace_id()).await?;
    let locks = state
        .throttle
        .locks(members.iter().map(|m| m.email.as_str()));
    Ok(html! {
        h1 { "Members of " (dash.session.workspace_name) }
        table.data {
            thead { tr { th { "Email" } th { "Role" } th { "Added" } th { "Last login" } th {} } }
            tbody {
                @for m in &members {
                    tr {
                        td { (m.email) }
                        td { (m.role.as_str()) }
                        td { (ui::datetime(m.created_at)) }
                        td { (ui::opt_datetime(m.last_login_at)) }
                        td {
                            @if m.user_id != dash.user_id() {
                                form.inline method="post" action={ "/settings/members/" (m.user_id) "/remove" } {
                                    (ui::csrf(dash.csrf()))
                                    button.danger.small type="submit" data-confirm={ "Remove " (m.email) " from this workspace?" } { "Remove" }
                                }
                            } @else { span.muted { "you" } }
                        }
                    }
                }
            }
        }
        (locks_section(dash, &locks))
        h2 { "Add a member" }
        p.muted { "Set their first password here and give it to them; they can change it after logging in. An existing user (of another workspace) keeps their password." }
        form.card method="post" action="/settings/members" novalidate {
            (ui::csrf(dash.csrf()))
            (ui::form_error(errors.get("_form")))
            (ui::input("Email", "email", form.get("email"), errors, Input { kind: "email", required: true, autocomplete: Some("off"), ..Input::default() }))
            (ui::input("Password", "password", "", errors, Input { kind: "password", autocomplete: Some("new-password"), help: Some("At least 10 characters. Ignored when the user already exists."), ..Input::default() }))
            (ui::select("Role", "role", &role_options(), if form.get("role").is_empty() { "member" } else { form.get("role") }, errors, None))
            button.primary type="submit" { "Add member" }
        }
    })
}

pub async fn members_page(
    State(state): State<DashState>,
    dash: Dash,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    dash.require_admin()?;
    let body = members_body(&state, &dash, &FormData::default(), &Errors::default()).await?;
    let c = Chrome::new(&dash, "Members", Section::Members).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn add_member(State(state): State<DashState>, f: DashForm) -> DashResult {
    let DashForm { dash, form, .. } = f;
    dash.require_admin()?;
    let mut errors = Errors::default();
    let email = form.get("email");
    check_email(email, &mut errors, "email");
    let role = Role::parse(form.get("role"));
    if role.is_none() {
        errors.add("role", "Choose member or admin.");
    }
    let existing = if errors.get("email").is_none() {
        users::user_by_email(&state.db, email).await?
    } else {
        None
    };
    if existing.is_none() {
        check_password(form.raw("password"), None, &mut errors, "password");
    }
    let Some(role) = role.filter(|_| errors.is_empty()) else {
        return members_invalid(&state, &dash, &form, &errors).await;
    };
    let hash = match existing {
        Some(u) => u.password_hash,
        None => state
            .passwords
            .hash(form.raw("password").to_owned())
            .await
            .map_err(DashError::internal)?,
    };
    match users::add_member(&state.db, dash.workspace_id(), email, &hash, role).await {
        Ok(_) => Ok(see_other("/settings/members?done=member_added")),
        Err(StoreError::Conflict(_)) => {
            let mut errors = Errors::default();
            errors.add("email", "This user is already a member of this workspace.");
            members_invalid(&state, &dash, &form, &errors).await
        }
        Err(e) => Err(e.into()),
    }
}

/// Login locks and slowdowns (see docs/DASHBOARD.md, "Login limits").
fn locks_section(dash: &Dash, locks: &Locks) -> Markup {
    let per_account = !locks.pairs.is_empty() || !locks.paced.is_empty();
    html! {
        h2 { "Login locks" }
        @if locks.addresses.is_empty() && !per_account {
            p.muted data-test="no-locks" { "No account or address is locked out of logging in." }
        } @else {
            p.muted { "Repeated failed logins lock out the address they come from, for one account or for all; an account failing from many addresses is slowed down for everyone but the first try from a new address. Locks end by themselves; they never keep a member out from their own address." }
            table.data data-test="login-locks" {
                thead { tr { th { "Account" } th { "Address (network)" } th { "Failures" } th { "Lock" } th { "Until" } } }
                tbody {
                    @for l in &locks.pairs {
                        tr { td { (l.account.as_deref().unwrap_or("")) } td { (l.network.as_deref().unwrap_or("")) } td { (l.attempts) } td { (ui::badge("locked for this account", "bad")) } td { (ui::datetime(l.until_ms)) } }
                    }
                    @for l in &locks.paced {
                        tr { td { (l.account.as_deref().unwrap_or("")) } td.muted { "all" } td { (l.attempts) } td { (ui::badge("slowed down", "warn")) } td { (ui::datetime(l.until_ms)) } }
                    }
                    @for l in &locks.addresses {
                        tr { td.muted { "all" } td { (l.network.as_deref().unwrap_or("")) } td { (l.attempts) } td { (ui::badge("address locked", "bad")) } td { (ui::datetime(l.until_ms)) } }
                    }
                }
            }
            @if per_account {
                form.inline method="post" action="/settings/members/unlock" {
                    (ui::csrf(dash.csrf()))
                    button.small type="submit" { "Unlock this workspace's accounts" }
                }
            }
        }
    }
}

/// Clears the login locks and slowdowns of the workspace's members (not
/// address locks: an address may be trying other workspaces' accounts).
pub async fn unlock_members(State(state): State<DashState>, f: DashForm) -> DashResult {
    f.dash.require_admin()?;
    let members = users::members(&state.db, f.dash.workspace_id()).await?;
    state
        .throttle
        .clear_accounts(members.iter().map(|m| m.email.as_str()));
    Ok(see_other("/settings/members?done=unlocked"))
}

async fn members_invalid(
    state: &DashState,
    dash: &Dash,
    form: &FormData,
    errors: &Errors,
) -> DashResult {
    let body = members_body(state, dash, form, errors).await?;
    let c = Chrome::new(dash, "Members", Section::Members);
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)))
}

pub async fn remove_member(
    State(state): State<DashState>,
    Path(user_id): Path<i64>,
    f: DashForm,
) -> DashResult {
    f.dash.require_admin()?;
    if user_id == f.dash.user_id() {
        return Err(DashError::BadRequest(
            "You cannot remove yourself; ask another admin.".into(),
        ));
    }
    match users::remove_member(&state.db, f.dash.workspace_id(), user_id).await {
        Ok(true) => Ok(see_other("/settings/members?done=member_removed")),
        Ok(false) => Err(DashError::NotFound),
        Err(StoreError::Conflict(m)) => Err(DashError::BadRequest(m)),
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------
// API tokens
// ---------------------------------------------------------------------------

async fn tokens_body(
    state: &DashState,
    dash: &Dash,
    errors: &Errors,
    name: &str,
    created: Option<&str>,
) -> DashResult<Markup> {
    let tokens = store_auth::list_tokens(&state.db, dash.workspace_id()).await?;
    Ok(html! {
        h1 { "API tokens" }
        p.muted { "Tokens give scripts and servers access to this workspace through the JSON API at " code { "/api/v1" } " (" code { "Authorization: Bearer <token>" } ")." }
        @if let Some(t) = created {
            div.notice.token-once role="status" {
                p { strong { "Your new token. Copy it now: it is shown only this once." } }
                (ui::copy_box("new-token", t, false))
            }
        }
        table.data {
            thead { tr { th { "Name" } th { "Token" } th { "Created" } th { "Last used" } th { "Status" } th {} } }
            tbody {
                @if tokens.is_empty() { tr { td colspan="6" .muted { "No token yet." } } }
                @for t in &tokens {
                    tr {
                        td { (t.name) }
                        td { code { (t.prefix) "…" } }
                        td { (ui::datetime(t.created_at)) }
                        td { (ui::opt_datetime(t.last_used_at)) }
                        td {
                            @if let Some(r) = t.revoked_at { (ui::badge("revoked", "bad")) " " span.muted { (ui::datetime(r)) } }
                            @else { (ui::badge("active", "good")) }
                        }
                        td {
                            @if t.revoked_at.is_none() {
                                form.inline method="post" action={ "/settings/tokens/" (t.id) "/revoke" } {
                                    (ui::csrf(dash.csrf()))
                                    button.danger.small type="submit" data-confirm={ "Revoke the token " (t.name) "? Requests using it will be refused." } { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Create a token" }
        form.card method="post" action="/settings/tokens" novalidate {
            (ui::csrf(dash.csrf()))
            (ui::input("Name", "name", name, errors, Input { required: true, placeholder: Some("e.g. reporting script"), help: Some("What the token is for, so you know which to revoke later."), ..Input::default() }))
            button.primary type="submit" { "Create token" }
        }
    })
}

pub async fn tokens_page(
    State(state): State<DashState>,
    dash: Dash,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    dash.require_admin()?;
    let body = tokens_body(&state, &dash, &Errors::default(), "", None).await?;
    let c = Chrome::new(&dash, "API tokens", Section::Tokens).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn create_token(State(state): State<DashState>, f: DashForm) -> DashResult {
    let DashForm { dash, form, .. } = f;
    dash.require_admin()?;
    let name = form.get("name");
    let mut errors = Errors::default();
    if name.is_empty() || name.chars().count() > 100 {
        errors.add("name", "Give the token a name of 1 to 100 characters.");
    }
    let c = Chrome::new(&dash, "API tokens", Section::Tokens);
    if !errors.is_empty() {
        let body = tokens_body(&state, &dash, &errors, name, None).await?;
        return Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)));
    }
    let (_, token) = store_auth::create_token(&state.db, dash.workspace_id(), name).await?;
    // Rendered, not redirected: the token must never sit in a URL.
    let body = tokens_body(&state, &dash, &Errors::default(), "", Some(&token)).await?;
    Ok(html(StatusCode::CREATED, ui::page(&c, body)))
}

pub async fn revoke_token(
    State(state): State<DashState>,
    Path(id): Path<i64>,
    f: DashForm,
) -> DashResult {
    f.dash.require_admin()?;
    if !store_auth::revoke_token(&state.db, f.dash.workspace_id(), id).await? {
        return Err(DashError::NotFound);
    }
    // The API caches token lookups briefly; a revocation must bite at once.
    state.services.auth.forget_tokens();
    Ok(see_other("/settings/tokens?done=revoked"))
}
