//! Fake Google Ads API: the OAuth token endpoint (`POST /token`, refresh
//! token grant, tokens with `expires_in`, an `invalid_grant` mode) and
//! `POST /v{N}/customers/{customer_id}:uploadClickConversions`, which checks
//! the bearer token and the `developer-token` header, validates each
//! conversion (one click id, resource name, date-time with zone, known
//! fields only), answers partial failures in Google's JSON
//! (`partialFailureError.details[].errors[]` naming
//! `conversions[i]`), de-duplicates like Google, honours `validateOnly`,
//! and can be made to answer 401, 429, 500, slowly or not at all for a
//! while. Accepted conversions are recorded.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::fake::{Faults, Running, fake_handle, lock};

/// The credentials and account the fake expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoogleAccount {
    pub customer_id: String,
    pub developer_token: String,
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    /// When set, uploads must carry this `login-customer-id`.
    pub login_customer_id: Option<String>,
}

impl Default for GoogleAccount {
    fn default() -> Self {
        Self {
            customer_id: "1234567890".into(),
            developer_token: "fake-developer-token".into(),
            client_id: "fake-client.apps.googleusercontent.com".into(),
            client_secret: "fake-client-secret".into(),
            refresh_token: "1//fake-refresh-token".into(),
            login_customer_id: None,
        }
    }
}

/// A scripted upload failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GoogleFault {
    /// 429 RESOURCE_EXHAUSTED with `Retry-After` (seconds) and a
    /// `quotaErrorDetails.retryDelay`.
    RateLimited { retry_after_secs: u64 },
    /// 500 INTERNAL.
    ServerError,
    /// 401 UNAUTHENTICATED whatever the token.
    Unauthenticated,
    /// A normal answer after this delay.
    Slow(Duration),
}

#[derive(Debug, Default)]
pub struct GoogleState {
    account: GoogleAccount,
    token_lifetime: Duration,
    invalid_grant: bool,
    issued: HashMap<String, Instant>,
    token_requests: usize,
    upload_requests: usize,
    failing: HashMap<String, String>,
    faults: Faults<GoogleFault>,
    accepted: Vec<Value>,
    validated: Vec<Value>,
    /// (click id, action, date-time) and (order id, action) already taken.
    seen_clicks: Vec<(String, String, String)>,
    seen_orders: Vec<(String, String)>,
    login_headers: Vec<Option<String>>,
}

/// The fake. Dropping it stops the server.
pub struct FakeGoogleAds(Running<GoogleState>);

fake_handle!(FakeGoogleAds, GoogleState, GoogleFault);

/// Fields of `ClickConversion` in API v26 (lowerCamelCase JSON names).
const CLICK_CONVERSION_FIELDS: &[&str] = &[
    "gclid",
    "gbraid",
    "wbraid",
    "conversionAction",
    "conversionDateTime",
    "conversionValue",
    "currencyCode",
    "orderId",
    "externalAttributionData",
    "customVariables",
    "cartData",
    "userIdentifiers",
    "conversionEnvironment",
    "consent",
    "customerType",
    "userIpAddress",
    "sessionAttributesEncoded",
    "sessionAttributesKeyValuePairs",
];

const REQUEST_FIELDS: &[&str] = &[
    "customerId",
    "conversions",
    "partialFailure",
    "validateOnly",
    "debugEnabled",
    "jobId",
];

impl FakeGoogleAds {
    pub async fn start(account: GoogleAccount) -> anyhow::Result<Self> {
        let state = Arc::new(Mutex::new(GoogleState {
            account,
            token_lifetime: Duration::from_secs(3599),
            ..Default::default()
        }));
        let router = Router::new()
            .route("/token", post(token))
            .route("/{version}/customers/{method}", post(upload))
            .with_state(state.clone());
        Ok(Self(Running::serve(state, router).await?))
    }

    /// For `settings.token_endpoint`.
    pub fn token_url(&self) -> String {
        format!("{}/token", self.base_url())
    }

    pub fn account(&self) -> GoogleAccount {
        lock(&self.state).account.clone()
    }

    /// `expires_in` of tokens issued from now on (they really expire).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        lock(&self.state).token_lifetime = lifetime;
    }

    /// The refresh token is refused (`invalid_grant`), as when revoked.
    pub fn set_invalid_grant(&self, on: bool) {
        lock(&self.state).invalid_grant = on;
    }

    /// Every token issued so far stops working (uploads answer 401).
    pub fn expire_tokens(&self) {
        lock(&self.state).issued.clear();
    }

    /// Uploads with this click id (gclid, gbraid or wbraid) fail with the
    /// given `ConversionUploadError` code (e.g. `UNPARSEABLE_GCLID`).
    pub fn fail_click(&self, click_id: &str, code: &str) {
        lock(&self.state)
            .failing
            .insert(click_id.to_owned(), code.to_owned());
    }

    /// Conversions uploaded for real (not `validateOnly`), in order.
    pub fn conversions(&self) -> Vec<Value> {
        lock(&self.state).accepted.clone()
    }

    /// Conversions that passed a `validateOnly` request.
    pub fn validated(&self) -> Vec<Value> {
        lock(&self.state).validated.clone()
    }

    pub fn count_order_id(&self, order_id: &str) -> usize {
        lock(&self.state)
            .accepted
            .iter()
            .filter(|c| c["orderId"] == order_id)
            .count()
    }

    pub fn token_requests(&self) -> usize {
        lock(&self.state).token_requests
    }

    pub fn upload_requests(&self) -> usize {
        lock(&self.state).upload_requests
    }

    /// The `login-customer-id` header of each upload, in order.
    pub fn login_customer_ids(&self) -> Vec<Option<String>> {
        lock(&self.state).login_headers.clone()
    }
}

async fn token(
    State(state): State<Arc<Mutex<GoogleState>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut st = lock(&state);
    st.token_requests += 1;
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "refresh_token" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        );
    }
    if get("client_id") != st.account.client_id || get("client_secret") != st.account.client_secret
    {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if st.invalid_grant || get("refresh_token") != st.account.refresh_token {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "Token has been expired or revoked.",
        );
    }
    let token = format!("ya29.fake-access-token-{}", st.token_requests);
    let lifetime = st.token_lifetime;
    st.issued.insert(token.clone(), Instant::now() + lifetime);
    Json(json!({
        "access_token": token,
        "expires_in": lifetime.as_secs(),
        "scope": "https://www.googleapis.com/auth/adwords",
        "token_type": "Bearer",
    }))
    .into_response()
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn failure_detail(errors: Vec<Value>) -> Value {
    json!({
        "@type": "type.googleapis.com/google.ads.googleads.v26.errors.GoogleAdsFailure",
        "errors": errors,
        "requestId": "fake-request-id",
    })
}

fn api_error(
    status: StatusCode,
    code: i64,
    status_name: &str,
    message: &str,
    errors: Vec<Value>,
) -> Response {
    let details = if errors.is_empty() {
        vec![]
    } else {
        vec![failure_detail(errors)]
    };
    (status, Json(json!({"error": {"code": code, "message": message, "status": status_name, "details": details}})))
        .into_response()
}

fn row_error(index: usize, category: &str, code: &str, message: &str, field: &str) -> Value {
    json!({
        "errorCode": { category: code },
        "message": message,
        "location": {"fieldPathElements": [{"fieldName": "conversions", "index": index}, {"fieldName": field}]},
    })
}

fn upload_message(code: &str) -> &'static str {
    match code {
        "UNPARSEABLE_GCLID" => "The click identifier could not be decoded.",
        "CLICK_NOT_FOUND" => "The click identifier was not found.",
        "EXPIRED_EVENT" => "The click is older than the conversion action's click-through window.",
        "CONVERSION_PRECEDES_EVENT" => "The conversion time precedes the click time.",
        "TOO_RECENT_CONVERSION_ACTION" => {
            "The conversion action was created too recently. Retry after 6 hours."
        }
        "CLICK_CONVERSION_ALREADY_EXISTS" => {
            "A conversion with this click, action and time was already uploaded."
        }
        "ORDER_ID_ALREADY_IN_USE" => "The order id was already used for this conversion action.",
        "GBRAID_WBRAID_BOTH_SET" => "Both gbraid and wbraid are set; set only one.",
        _ => "The conversion could not be uploaded.",
    }
}

fn is_date_time(s: &str) -> bool {
    // yyyy-mm-dd hh:mm:ss+hh:mm (a zone is mandatory)
    let b = s.as_bytes();
    b.len() == 25
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b' ',
            13 | 16 | 22 => *c == b':',
            19 => *c == b'+' || *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

fn is_action(s: &str) -> bool {
    let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
    s.strip_prefix("customers/")
        .and_then(|r| r.split_once("/conversionActions/"))
        .is_some_and(|(c, a)| digits(c) && digits(a))
}

async fn upload(
    State(state): State<Arc<Mutex<GoogleState>>>,
    Path((version, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let (fault, delay) = {
        let mut st = lock(&state);
        st.upload_requests += 1;
        let login = headers
            .get("login-customer-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        st.login_headers.push(login);
        (st.faults.take(), st.faults.delay())
    };
    let extra = match &fault {
        Some(GoogleFault::Slow(d)) => *d,
        _ => Duration::ZERO,
    };
    if !(delay + extra).is_zero() {
        tokio::time::sleep(delay + extra).await;
    }
    match fault {
        Some(GoogleFault::RateLimited { retry_after_secs }) => {
            let mut resp = api_error(
                StatusCode::TOO_MANY_REQUESTS,
                429,
                "RESOURCE_EXHAUSTED",
                "Resource has been exhausted (e.g. check quota).",
                vec![json!({
                    "errorCode": {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"},
                    "message": "Too many requests. Retry in a few seconds.",
                    "details": {"quotaErrorDetails": {"rateScope": "DEVELOPER", "rateName": "Requests per developer per minute", "retryDelay": format!("{retry_after_secs}s")}},
                })],
            );
            if let Ok(v) = retry_after_secs.to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
        Some(GoogleFault::ServerError) => {
            return api_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                500,
                "INTERNAL",
                "Internal error encountered.",
                vec![],
            );
        }
        Some(GoogleFault::Unauthenticated) => return unauthenticated("OAUTH_TOKEN_INVALID"),
        Some(GoogleFault::Slow(_)) | None => {}
    }

    let mut st = lock(&state);
    let Some(customer_id) = method.strip_suffix(":uploadClickConversions") else {
        return api_error(
            StatusCode::NOT_FOUND,
            404,
            "NOT_FOUND",
            "Method not found.",
            vec![],
        );
    };
    if !version.starts_with('v') || version[1..].parse::<u32>().is_err() {
        return api_error(
            StatusCode::NOT_FOUND,
            404,
            "NOT_FOUND",
            "Unknown API version.",
            vec![],
        );
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match st.issued.get(bearer) {
        Some(exp) if Instant::now() < *exp => {}
        Some(_) => return unauthenticated("OAUTH_TOKEN_EXPIRED"),
        None => return unauthenticated("OAUTH_TOKEN_INVALID"),
    }
    if headers.get("developer-token").and_then(|v| v.to_str().ok())
        != Some(st.account.developer_token.as_str())
    {
        return api_error(
            StatusCode::UNAUTHORIZED,
            401,
            "UNAUTHENTICATED",
            "Request is missing required authentication credential.",
            vec![
                json!({"errorCode": {"authenticationError": "DEVELOPER_TOKEN_INVALID"}, "message": "The developer token is not valid."}),
            ],
        );
    }
    let login = headers
        .get("login-customer-id")
        .and_then(|v| v.to_str().ok());
    if customer_id != st.account.customer_id
        || st
            .account
            .login_customer_id
            .as_deref()
            .is_some_and(|l| Some(l) != login)
    {
        return api_error(
            StatusCode::FORBIDDEN,
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
            vec![
                json!({"errorCode": {"authorizationError": "USER_PERMISSION_DENIED"},
                        "message": "User doesn't have permission to access customer. Note: If you're accessing a client customer, the manager's customer id must be set in the 'login-customer-id' header."}),
            ],
        );
    }

    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return api_error(
            StatusCode::BAD_REQUEST,
            400,
            "INVALID_ARGUMENT",
            "Invalid JSON payload received.",
            vec![],
        );
    };
    if let Some(unknown) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !REQUEST_FIELDS.contains(&k.as_str())))
    {
        return api_error(
            StatusCode::BAD_REQUEST,
            400,
            "INVALID_ARGUMENT",
            &format!(
                "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field."
            ),
            vec![],
        );
    }
    let conversions = body
        .get("conversions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (i, c) in conversions.iter().enumerate() {
        if let Some(unknown) = c.as_object().and_then(|o| {
            o.keys()
                .find(|k| !CLICK_CONVERSION_FIELDS.contains(&k.as_str()))
        }) {
            return api_error(
                StatusCode::BAD_REQUEST,
                400,
                "INVALID_ARGUMENT",
                &format!(
                    "Invalid JSON payload received. Unknown name \"{unknown}\" at 'conversions[{i}]': Cannot find field."
                ),
                vec![],
            );
        }
    }
    if conversions.is_empty() || conversions.len() > 2000 {
        return api_error(
            StatusCode::BAD_REQUEST,
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            vec![
                json!({"errorCode": {"conversionUploadError": "TOO_MANY_CONVERSIONS_IN_REQUEST"}, "message": "1 to 2000 conversions per request."}),
            ],
        );
    }
    let partial = body.get("partialFailure").and_then(Value::as_bool) == Some(true);
    let validate_only = body.get("validateOnly").and_then(Value::as_bool) == Some(true);

    let mut errors = Vec::new();
    let mut results = Vec::new();
    let mut ok_rows = Vec::new();
    let mut in_request: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for (i, c) in conversions.iter().enumerate() {
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (gclid, gbraid, wbraid) = (s("gclid"), s("gbraid"), s("wbraid"));
        let action = s("conversionAction");
        let when = s("conversionDateTime");
        let click = [&gclid, &gbraid, &wbraid]
            .into_iter()
            .find(|x| !x.is_empty())
            .cloned()
            .unwrap_or_default();
        let set = [&gclid, &gbraid, &wbraid]
            .iter()
            .filter(|x| !x.is_empty())
            .count();
        let err = if !gbraid.is_empty() && !wbraid.is_empty() {
            Some(row_error(
                i,
                "conversionUploadError",
                "GBRAID_WBRAID_BOTH_SET",
                upload_message("GBRAID_WBRAID_BOTH_SET"),
                "gbraid",
            ))
        } else if set != 1 {
            Some(row_error(
                i,
                "fieldError",
                "REQUIRED",
                "Exactly one of gclid, gbraid, wbraid is required.",
                "gclid",
            ))
        } else if !is_action(&action) {
            Some(row_error(
                i,
                "requestError",
                "RESOURCE_NAME_MALFORMED",
                "The resource name is malformed.",
                "conversion_action",
            ))
        } else if !is_date_time(&when) {
            Some(row_error(
                i,
                "dateError",
                "INVALID_FIELD_VALUES_IN_DATE_TIME",
                "The date time is not in yyyy-mm-dd hh:mm:ss+|-hh:mm format.",
                "conversion_date_time",
            ))
        } else if let Some(code) = st.failing.get(&click) {
            Some(row_error(
                i,
                "conversionUploadError",
                code,
                upload_message(code),
                "gclid",
            ))
        } else if st
            .seen_clicks
            .contains(&(click.clone(), action.clone(), when.clone()))
            || in_request.contains_key(&(click.clone(), action.clone(), when.clone()))
        {
            Some(row_error(
                i,
                "conversionUploadError",
                "CLICK_CONVERSION_ALREADY_EXISTS",
                upload_message("CLICK_CONVERSION_ALREADY_EXISTS"),
                "gclid",
            ))
        } else if !s("orderId").is_empty()
            && st.seen_orders.contains(&(s("orderId"), action.clone()))
        {
            Some(row_error(
                i,
                "conversionUploadError",
                "ORDER_ID_ALREADY_IN_USE",
                upload_message("ORDER_ID_ALREADY_IN_USE"),
                "order_id",
            ))
        } else {
            None
        };
        match err {
            Some(e) => {
                errors.push(e);
                results.push(json!({}));
            }
            None => {
                in_request.insert((click.clone(), action.clone(), when.clone()), i);
                let mut r = json!({"conversionAction": action, "conversionDateTime": when});
                let key = if !gclid.is_empty() {
                    "gclid"
                } else if !gbraid.is_empty() {
                    "gbraid"
                } else {
                    "wbraid"
                };
                r[key] = json!(click);
                results.push(r);
                ok_rows.push(i);
            }
        }
    }
    if !errors.is_empty() && !partial {
        // Without partialFailure one bad row fails the whole request.
        return api_error(
            StatusCode::BAD_REQUEST,
            400,
            "INVALID_ARGUMENT",
            "Request contains an invalid argument.",
            errors,
        );
    }
    for i in ok_rows {
        let c = &conversions[i];
        if validate_only {
            st.validated.push(c.clone());
            continue;
        }
        let s = |k: &str| {
            c.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let click = ["gclid", "gbraid", "wbraid"]
            .into_iter()
            .map(s)
            .find(|x| !x.is_empty())
            .unwrap_or_default();
        st.seen_clicks
            .push((click, s("conversionAction"), s("conversionDateTime")));
        if !s("orderId").is_empty() {
            st.seen_orders.push((s("orderId"), s("conversionAction")));
        }
        st.accepted.push(c.clone());
    }
    if validate_only {
        return Json(json!({})).into_response();
    }
    let mut answer = json!({"results": results, "jobId": "4242"});
    if !errors.is_empty() {
        let first = errors[0]["message"].as_str().unwrap_or_default().to_owned();
        answer["partialFailureError"] = json!({
            "code": 3,
            "message": format!("{first}, at conversions[{}]", errors[0]["location"]["fieldPathElements"][0]["index"]),
            "details": [failure_detail(errors)],
        });
    }
    Json(answer).into_response()
}

fn unauthenticated(code: &str) -> Response {
    api_error(
        StatusCode::UNAUTHORIZED,
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        vec![
            json!({"errorCode": {"authenticationError": code}, "message": "The OAuth token in the header is not valid."}),
        ],
    )
}
