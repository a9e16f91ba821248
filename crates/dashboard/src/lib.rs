//! The dashboard: server-side rendered HTML (maud), with a small amount of
//! hand-written JavaScript and CSS embedded in the binary
//! (`crates/dashboard/src/assets/`). No build step, no CDN, nothing fetched at run
//! time; every page is a handful of queries against the rollups and
//! renders in well under the 200 ms budget (docs/DASHBOARD.md).
//!
//! Layout of the module:
//! - [`session`]: login sessions (cookie + hashed token in the database),
//!   the [`session::Dash`] extractor, CSRF (synchronizer token per session,
//!   double-submit cookie before login) and the [`session::DashForm`]
//!   extractor that refuses any POST without a valid token;
//! - [`throttle`]: brute-force throttling of logins, per client address,
//!   per account and address, and a slower pace for accounts under attack
//!   (in memory);
//! - [`passwords`]: Argon2 hashing and checking on a small bounded pool;
//! - [`ui`]: the page shell, form fields with their errors, formatting;
//! - one module per area: [`accounts`] (setup, login, members, API tokens),
//!   [`properties`], [`reports`], [`spend`], [`integrations`], [`links`]
//!   (tracked `/go` links), [`destinations`], [`conversions`] (conversion
//!   log, live events, link checker);
//!
//! Pages call the engine's services (the same ones the JSON API calls)
//! with the [`Caller`](clicktrail_engine::auth::Caller) of the logged-in
//! session, and read the store directly only for what is the dashboard's
//! alone (its reports' rollups, accounts).

use std::ops::Deref;
use std::sync::Arc;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clicktrail_engine::Services;
use clicktrail_store::Db;

pub mod accounts;
pub mod conversions;
pub mod destinations;
pub mod error;
pub mod integrations;
pub mod links;
pub mod passwords;
pub mod properties;
pub mod reports;
pub mod session;
pub mod spend;
pub mod throttle;
pub mod ui;

pub use error::DashError;

/// The dashboard's state: the engine's services, the login throttle and
/// the password pool.
#[derive(Clone, Debug)]
pub struct DashState(Arc<DashInner>);

#[derive(Debug)]
pub struct DashInner {
    pub db: Db,
    pub services: Services,
    /// Public base URL, no trailing slash.
    pub public_base: String,
    pub throttle: throttle::Throttle,
    pub passwords: passwords::Passwords,
    /// What `/setup` asks for on a fresh server.
    pub setup: accounts::SetupGuard,
}

impl Deref for DashState {
    type Target = DashInner;
    fn deref(&self) -> &DashInner {
        &self.0
    }
}

impl DashState {
    /// The state of a server whose `/setup` never asks for a setup code
    /// beyond loopback listeners (see [`accounts::SetupGuard`]).
    pub fn new(services: Services) -> Self {
        Self::with_setup_code(services, None)
    }

    /// The state, with the setup code printed at first start (`None` when
    /// the server already had an account).
    pub fn with_setup_code(services: Services, setup_code: Option<String>) -> Self {
        let setup = accounts::SetupGuard::new(services.cfg.listen, setup_code);
        Self(Arc::new(DashInner {
            db: services.db.clone(),
            public_base: services.properties.public_base().to_owned(),
            services,
            throttle: throttle::Throttle::new(throttle::Limits::default()),
            passwords: passwords::Passwords::new(passwords::WORKERS, passwords::QUEUE),
            setup,
        }))
    }
}

/// The dashboard's routes, merged at `/` beside the API and the collector.
pub fn router(state: DashState) -> Router {
    routes().with_state(state)
}

fn routes() -> Router<DashState> {
    Router::new()
        .route("/", get(accounts::home))
        .route("/assets/{name}", get(asset))
        .route("/setup", get(accounts::setup_page).post(accounts::setup))
        .route("/login", get(accounts::login_page).post(accounts::login))
        .route("/logout", post(accounts::logout))
        .route("/workspace", post(accounts::switch_workspace))
        .route(
            "/account/password",
            get(accounts::password_page).post(accounts::change_password),
        )
        .route(
            "/settings/members",
            get(accounts::members_page).post(accounts::add_member),
        )
        .route("/settings/members/unlock", post(accounts::unlock_members))
        .route(
            "/settings/members/{user_id}/remove",
            post(accounts::remove_member),
        )
        .route(
            "/settings/tokens",
            get(accounts::tokens_page).post(accounts::create_token),
        )
        .route("/settings/tokens/{id}/revoke", post(accounts::revoke_token))
        .route("/properties", get(properties::list))
        .route(
            "/properties/new",
            get(properties::new_page).post(properties::create),
        )
        .route("/p/{pid}", get(properties::overview))
        .route(
            "/p/{pid}/settings",
            get(properties::settings_page).post(properties::update),
        )
        .route("/p/{pid}/delete", post(properties::delete))
        .route("/properties/{pid}/restore", post(properties::restore))
        .route("/p/{pid}/reports", get(reports::page))
        .route("/p/{pid}/reports/export.csv", get(reports::export))
        .route(
            "/p/{pid}/spend",
            get(spend::page)
                .post(spend::import)
                .layer(spend::body_limit()),
        )
        .route("/p/{pid}/spend/export.csv", get(spend::export))
        .route("/p/{pid}/integrations", get(integrations::list))
        .route("/p/{pid}/catalog", get(integrations::catalog))
        .route(
            "/p/{pid}/catalog/{key}",
            get(integrations::entry_page).post(integrations::install),
        )
        .route(
            "/p/{pid}/integrations/{iid}",
            get(integrations::page).post(integrations::update),
        )
        .route(
            "/p/{pid}/catalog/{key}/test",
            post(integrations::test_install),
        )
        .route(
            "/p/{pid}/integrations/{iid}/test",
            post(integrations::test_saved),
        )
        .route(
            "/p/{pid}/integrations/{iid}/mapping",
            post(integrations::update_mapping),
        )
        .route(
            "/p/{pid}/integrations/{iid}/poll",
            post(integrations::poll_now),
        )
        .route("/p/{pid}/links", get(links::list).post(links::create))
        .route("/p/{pid}/links/{lid}", get(links::page).post(links::update))
        .route("/p/{pid}/links/{lid}/pause", post(links::pause))
        .route(
            "/p/{pid}/integrations/{iid}/delete",
            post(integrations::delete),
        )
        .route("/p/{pid}/destinations", get(destinations::list))
        .route(
            "/p/{pid}/destinations/new/{kind}",
            get(destinations::new_page).post(destinations::create),
        )
        .route(
            "/p/{pid}/destinations/{did}",
            get(destinations::page).post(destinations::update),
        )
        .route(
            "/p/{pid}/destinations/{did}/pause",
            post(destinations::pause),
        )
        .route(
            "/p/{pid}/destinations/{did}/test",
            post(destinations::send_test),
        )
        .route(
            "/p/{pid}/destinations/{did}/delete",
            post(destinations::delete),
        )
        .route("/p/{pid}/conversions", get(conversions::log))
        .route("/p/{pid}/conversions/{cid}", get(conversions::detail))
        .route(
            "/p/{pid}/deliveries/{did}/retry",
            post(conversions::retry_delivery),
        )
        .route("/p/{pid}/live", get(conversions::live_page))
        .route("/p/{pid}/live.json", get(conversions::live_json))
        .route(
            "/p/{pid}/link-checker",
            get(conversions::link_checker_page).post(conversions::link_checker),
        )
}

const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");

/// A short content hash of the assets, put in their URLs so browsers may
/// cache them for good and still see a new build at once.
pub fn asset_version() -> &'static str {
    use sha2::{Digest, Sha256};
    static V: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        let mut h = Sha256::new();
        h.update(APP_CSS.as_bytes());
        h.update(APP_JS.as_bytes());
        hex::encode(&h.finalize()[..6])
    });
    &V
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, ctype) = match name.as_str() {
        "app.css" => (APP_CSS, "text/css; charset=utf-8"),
        "app.js" => (APP_JS, "text/javascript; charset=utf-8"),
        _ => return DashError::NotFound.into_response(),
    };
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// Security headers of every dashboard page: no inline script or style
/// (everything comes from `/assets/`), no framing, no referrer leaks, no
/// caching of pages that show account data.
pub fn secure_headers(resp: &mut Response) {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A rendered page with the dashboard's headers.
pub fn html(status: StatusCode, markup: maud::Markup) -> Response {
    let mut resp = (status, markup).into_response();
    secure_headers(&mut resp);
    resp
}

/// A 303 redirect (after a POST, so a reload does not resubmit).
pub fn see_other(to: &str) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    secure_headers(&mut resp);
    resp
}
