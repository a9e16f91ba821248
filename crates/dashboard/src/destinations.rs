//! Ad destinations (Meta Conversions API, Google Ads, TikTok Events API,
//! GA4 Measurement Protocol): forms that explain each field, the
//! per-destination event mapping, pause / resume, "send test event" with
//! the platform's answer, and the "needs attention" banner.
//!
//! Every action calls the engine's destinations service, the one the JSON
//! API calls, so validation, credential encryption and the delivery
//! bookkeeping are the same; a refusal's field problems are shown beside
//! the form's fields.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clicktrail_destinations::DestinationKind;
use clicktrail_store::properties::Property;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use clicktrail_engine::ServiceError;
use clicktrail_engine::destinations::{
    CreateDestination, DestinationView, TestRequest, UpdateDestination,
};
use clicktrail_store::deliveries::DestinationStatus;

use crate::DashState;
use crate::error::DashResult;
use crate::properties::owned;
use crate::session::{Dash, DashForm, FormData};
use crate::ui::{self, Chrome, Errors, Input, Tab};
use crate::{DashError, html, see_other};

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    pub done: Option<String>,
}

/// One field of a destination form.
struct Field {
    /// `settings.x` or `credentials.x`.
    name: &'static str,
    label: &'static str,
    help: &'static str,
    required: bool,
    secret: bool,
}

const fn f(
    name: &'static str,
    label: &'static str,
    help: &'static str,
    required: bool,
    secret: bool,
) -> Field {
    Field {
        name,
        label,
        help,
        required,
        secret,
    }
}

fn fields(kind: DestinationKind) -> Vec<Field> {
    let mut v = match kind {
        DestinationKind::MetaCapi => vec![
            f(
                "settings.pixel_id",
                "Pixel (dataset) id",
                "Meta Events Manager > Data sources > your pixel: the number shown under its name. Digits only.",
                true,
                false,
            ),
            f(
                "credentials.access_token",
                "Conversions API access token",
                "Events Manager > your pixel > Settings > Conversions API > Generate access token. Stored encrypted; shown masked.",
                true,
                true,
            ),
            f(
                "settings.test_event_code",
                "Test event code (optional)",
                "Events Manager > Test events shows a code such as TEST12345. While it is set, events appear there and do not count; remove it when you are done testing.",
                false,
                false,
            ),
        ],
        DestinationKind::GoogleAds => vec![
            f(
                "settings.customer_id",
                "Customer id",
                "The Google Ads account that owns the conversion actions, as shown top right in Google Ads (123-456-7890).",
                true,
                false,
            ),
            f(
                "settings.login_customer_id",
                "Login customer id (optional)",
                "The manager (MCC) account id, when your access to the account goes through a manager account.",
                false,
                false,
            ),
            f(
                "credentials.developer_token",
                "Developer token",
                "Google Ads > Tools > API Center of your manager account. Stored encrypted.",
                true,
                true,
            ),
            f(
                "credentials.client_id",
                "OAuth client id",
                "Of the OAuth client (Desktop or Web app) in your Google Cloud project with the Google Ads API enabled.",
                true,
                false,
            ),
            f(
                "credentials.client_secret",
                "OAuth client secret",
                "The secret of that OAuth client. Stored encrypted.",
                true,
                true,
            ),
            f(
                "credentials.refresh_token",
                "Refresh token",
                "Obtained once through the OAuth consent flow by a user with access to the account (scope https://www.googleapis.com/auth/adwords). Stored encrypted.",
                true,
                true,
            ),
        ],
        DestinationKind::Tiktok => vec![
            f(
                "settings.pixel_code",
                "Pixel code",
                "TikTok Events Manager > your web pixel: the pixel code (letters and digits, e.g. C4ABCDEF...).",
                true,
                false,
            ),
            f(
                "credentials.access_token",
                "Events API access token",
                "Events Manager > your pixel > Settings > Generate access token. Stored encrypted.",
                true,
                true,
            ),
            f(
                "settings.test_event_code",
                "Test event code (optional)",
                "Events Manager > Test events: events sent with this code show there. Remove it when done.",
                false,
                false,
            ),
        ],
        DestinationKind::Ga4 => vec![
            f(
                "settings.measurement_id",
                "Measurement id",
                "GA4 Admin > Data streams > your web stream: G-XXXXXXXXXX.",
                true,
                false,
            ),
            f(
                "credentials.api_secret",
                "Measurement Protocol API secret",
                "Admin > Data streams > your stream > Measurement Protocol API secrets > Create. Stored encrypted.",
                true,
                true,
            ),
        ],
    };
    v.push(f("settings.endpoint", "Endpoint override (advanced, optional)", "Replaces the platform's base URL, for a proxy or a test server. Leave empty to talk to the platform.", false, false));
    if kind == DestinationKind::GoogleAds {
        v.push(f(
            "settings.token_endpoint",
            "OAuth token endpoint override (advanced, optional)",
            "Replaces Google's OAuth token URL, for tests.",
            false,
            false,
        ));
    }
    v
}

fn kind_blurb(kind: DestinationKind) -> &'static str {
    match kind {
        DestinationKind::MetaCapi => {
            "Sends Lead, Purchase and your other conversions to Meta with the fbc / fbp of the visit and the same event id as the browser pixel, so Meta de-duplicates them."
        }
        DestinationKind::GoogleAds => {
            "Uploads click conversions to Google Ads with the gclid (or gbraid / wbraid) of the visit. Conversions without a Google click id are skipped and shown as such."
        }
        DestinationKind::Tiktok => {
            "Sends conversions to the TikTok Events API with the ttclid and _ttp of the visit."
        }
        DestinationKind::Ga4 => {
            "Sends conversions to GA4 through the Measurement Protocol with the visitor's client id."
        }
    }
}

fn kind_of(s: &str) -> Result<DestinationKind, DashError> {
    DestinationKind::parse(s).ok_or(DashError::NotFound)
}

fn status_badge(status: DestinationStatus) -> Markup {
    let (label, kind) = match status {
        DestinationStatus::Active => ("active", "good"),
        DestinationStatus::Paused => ("paused", "warn"),
        DestinationStatus::NeedsAttention => ("needs attention", "bad"),
    };
    ui::badge(label, kind)
}

fn attention_banner(d: &DestinationView) -> Markup {
    html! {
        @if d.status == DestinationStatus::NeedsAttention {
            div.attention role="alert" data-test="needs-attention" {
                strong { "Needs attention: " (d.name) } " — "
                (d.status_message.as_deref().unwrap_or("the platform refused the credentials"))
                " Deliveries are waiting; fix the credentials or settings below and they resume."
            }
        }
    }
}

pub async fn list(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let items = state
        .services
        .destinations
        .list(&dash.caller, p.id.as_str())
        .await?;
    let body = html! {
        h1 { "Ad destinations" }
        p.muted { "Validated conversions are sent server-side to these ad platforms, once each, with retries when a platform is down." }
        @for d in &items { (attention_banner(d)) }
        table.data {
            thead { tr { th { "Name" } th { "Platform" } th { "Status" } th { "Message" } } }
            tbody {
                @if items.is_empty() { tr { td.muted colspan="4" { "No destination yet: add one below." } } }
                @for d in &items {
                    tr {
                        td { a href={ "/p/" (p.id) "/destinations/" (d.id) } { (d.name) } }
                        td { (d.kind_label.unwrap_or(&d.kind)) }
                        td { (status_badge(d.status)) }
                        td.muted { (d.status_message.as_deref().unwrap_or("")) }
                    }
                }
            }
        }
        h2 { "Add a destination" }
        div.grid {
            @for k in DestinationKind::ALL {
                a.netcard href={ "/p/" (p.id) "/destinations/new/" (k.as_str()) } data-kind=(k.as_str()) {
                    h3 { (k.label()) }
                    p { (kind_blurb(k)) }
                }
            }
        }
    };
    let c =
        Chrome::property(&dash, &p, Tab::Destinations, "Destinations").notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

/// `Lead = Purchase` lines <-> the mapping object.
fn mapping_text(v: &Value) -> String {
    match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, t)| match t {
                Value::String(s) => format!("{k} = {s}"),
                _ => format!("{k} ="),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

fn parse_pairs(text: &str, field: &str, errors: &mut Errors) -> Option<Map<String, Value>> {
    let mut m = Map::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((k, v)) = line.split_once('=').or_else(|| line.split_once(':')) else {
            errors.add(
                field,
                format!("Line {}: write it as OurEvent = PlatformName.", i + 1),
            );
            return None;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            errors.add(
                field,
                format!("Line {}: the event name before = is empty.", i + 1),
            );
            return None;
        }
        m.insert(
            k.to_owned(),
            if v.is_empty() {
                Value::Null
            } else {
                Value::String(v.to_owned())
            },
        );
    }
    Some(m)
}

/// What the form says: the name, the settings, the credentials typed in
/// (none: keep the current ones) and the mapping (`null`: the defaults).
struct FormBody {
    name: Option<String>,
    settings: Value,
    credentials: Option<Value>,
    event_mapping: Value,
}

/// Reads the form (settings, credentials, mapping).
fn body_of(kind: DestinationKind, form: &FormData, editing: bool, errors: &mut Errors) -> FormBody {
    let mut settings = Map::new();
    let mut credentials = Map::new();
    for fd in fields(kind) {
        let v = form.get(fd.name);
        let (section, key) = fd.name.split_once('.').unwrap_or(("settings", fd.name));
        if section == "credentials" {
            if !v.is_empty() {
                credentials.insert(key.to_owned(), json!(v));
            }
        } else if !v.is_empty() {
            settings.insert(key.to_owned(), json!(v));
        } else if editing {
            // An emptied optional setting is removed.
            settings.insert(key.to_owned(), Value::Null);
        }
    }
    if kind == DestinationKind::GoogleAds {
        let text = form.raw("settings.conversion_actions");
        match parse_pairs(text, "settings.conversion_actions", errors) {
            Some(m) if !m.is_empty() => {
                settings.insert("conversion_actions".into(), Value::Object(m));
            }
            _ => {}
        }
    }
    let mapping = match parse_pairs(form.raw("event_mapping"), "event_mapping", errors) {
        Some(m) if !m.is_empty() => Value::Object(m),
        _ => Value::Null,
    };
    let name = form.get("name");
    FormBody {
        name: (!name.is_empty()).then(|| name.to_owned()),
        settings: Value::Object(settings),
        credentials: (!credentials.is_empty() || !editing).then_some(Value::Object(credentials)),
        event_mapping: mapping,
    }
}

/// API field names -> the form's.
fn form_field(api_field: &str) -> String {
    if api_field.starts_with("event_mapping") {
        "event_mapping".into()
    } else if api_field.starts_with("settings.conversion_actions") {
        "settings.conversion_actions".into()
    } else {
        api_field.to_owned()
    }
}

/// A refusal shown on the form: each field problem beside its field, or
/// the refusal's message at the top when it names none. A server error is
/// the dashboard's error page.
fn add_problems(errors: &mut Errors, e: ServiceError) -> Result<(), DashError> {
    if e.status.is_server_error() {
        return Err(DashError::Internal);
    }
    for (field, msg) in problems(&e) {
        let mut m = msg.to_owned();
        if let Some(first) = m.get(..1) {
            m = format!("{}{}", first.to_uppercase(), &m[1..]);
        }
        errors.add(&form_field(field), m);
    }
    Ok(())
}

fn destination_form(
    kind: DestinationKind,
    csrf: &str,
    action: &str,
    values: &FormData,
    current: Option<&DestinationView>,
    errors: &Errors,
) -> Markup {
    let editing = current.is_some();
    let value_of = |name: &str| -> String {
        if !values.fields.is_empty() {
            return values.get(name).to_owned();
        }
        let (section, key) = name.split_once('.').unwrap_or(("settings", name));
        match (section, current) {
            ("settings", Some(c)) => match &c.settings[key] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            },
            _ => String::new(),
        }
    };
    let mapping = if !values.fields.is_empty() {
        values.raw("event_mapping").to_owned()
    } else {
        current
            .map(|c| mapping_text(&c.event_mapping))
            .unwrap_or_default()
    };
    let actions = if !values.fields.is_empty() {
        values.raw("settings.conversion_actions").to_owned()
    } else {
        current
            .map(|c| mapping_text(&c.settings["conversion_actions"]))
            .unwrap_or_default()
    };
    html! {
        form.card method="post" action=(action) novalidate autocomplete="off" {
            (ui::csrf(csrf))
            (ui::form_error(errors.get("_form")))
            (ui::input("Name", "name", &if values.fields.is_empty() { current.map_or(kind.label(), |c| c.name.as_str()).to_owned() } else { values.get("name").to_owned() }, errors, Input { help: Some("How this destination is listed."), ..Input::default() }))
            @for fd in fields(kind) {
                @let secret_help = if editing && fd.secret { format!("{} Leave empty to keep the current value ({}).", fd.help, current.and_then(|c| c.credentials[fd.name.trim_start_matches("credentials.")].as_str()).unwrap_or("set")) } else { fd.help.to_owned() };
                (ui::input(fd.label, fd.name, &if fd.secret { String::new() } else { value_of(fd.name) }, errors, Input { kind: if fd.secret { "password" } else { "text" }, required: fd.required && !(editing && fd.secret), help: Some(&secret_help), autocomplete: Some("off"), ..Input::default() }))
            }
            @if kind == DestinationKind::GoogleAds {
                (ui::textarea("Conversion actions", "settings.conversion_actions", &actions, errors, 3, Some("One per line: our event = the conversion action's id (or its resource name customers/…/conversionActions/…), e.g. Purchase = 123456789. Find the id in Google Ads > Goals > Conversions > the action's URL (ctId).")))
            }
            (ui::textarea("Event mapping (optional)", "event_mapping", &mapping, errors, 4, Some(match kind {
                DestinationKind::MetaCapi => "One per line: our event = Meta's event name (Lead = Lead, Purchase = Purchase, CompleteRegistration = CompleteRegistration). An empty right side (Lead =) sends nothing for that event; * = applies to the others. Empty: the defaults.",
                DestinationKind::GoogleAds => "One per line: our event = conversion action (overrides the list above). Lead = sends nothing for leads. Empty: only the events with a conversion action are sent.",
                DestinationKind::Tiktok => "One per line: our event = TikTok's event (Lead = SubmitForm, Purchase = CompletePayment, CompleteRegistration = CompleteRegistration). Lead = sends nothing for leads. Empty: the defaults.",
                DestinationKind::Ga4 => "One per line: our event = GA4 event name (Lead = generate_lead, Purchase = purchase). Lead = sends nothing for leads. Empty: the defaults.",
            })))
            button.primary type="submit" data-test="save-destination" { (if editing { "Save" } else { "Add destination" }) }
        }
    }
}

pub async fn new_page(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, kind)): Path<(String, String)>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let kind = kind_of(&kind)?;
    let body = new_body(&p, kind, &dash, &FormData::default(), &Errors::default());
    let c = Chrome::property(&dash, &p, Tab::Destinations, kind.label());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

fn new_body(
    p: &Property,
    kind: DestinationKind,
    dash: &Dash,
    values: &FormData,
    errors: &Errors,
) -> Markup {
    html! {
        p { a href={ "/p/" (p.id) "/destinations" } { "← Destinations" } }
        h1 { "Add " (kind.label()) }
        p { (kind_blurb(kind)) }
        (destination_form(kind, dash.csrf(), &format!("/p/{}/destinations/new/{}", p.id, kind.as_str()), values, None, errors))
    }
}

pub async fn create(
    State(state): State<DashState>,
    Path((pid, kind)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let kind = kind_of(&kind)?;
    let mut errors = Errors::default();
    let body = body_of(kind, &form, false, &mut errors);
    if errors.is_empty() {
        let req = CreateDestination {
            kind: kind.as_str().to_owned(),
            name: body.name,
            settings: body.settings,
            credentials: body.credentials.unwrap_or(Value::Null),
            event_mapping: body.event_mapping,
        };
        match state
            .services
            .destinations
            .create(&dash.caller, p.id.as_str(), req)
            .await
        {
            Ok(d) => {
                return Ok(see_other(&format!(
                    "/p/{}/destinations/{}?done=created",
                    p.id, d.id
                )));
            }
            Err(e) => add_problems(&mut errors, e)?,
        }
    }
    let page = new_body(&p, kind, &dash, &form, &errors);
    let c = Chrome::property(&dash, &p, Tab::Destinations, kind.label());
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, page)))
}

/// The destination as the API shows it, if it is the property's.
async fn fetch(
    state: &DashState,
    dash: &Dash,
    p: &Property,
    did: &str,
) -> Result<(DestinationView, DestinationKind), DashError> {
    if did.len() > 64
        || !did
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(DashError::NotFound);
    }
    let d = match state.services.destinations.get(&dash.caller, did).await {
        Ok(d) => d,
        Err(e) if e.status.is_server_error() => return Err(DashError::Internal),
        Err(_) => return Err(DashError::NotFound),
    };
    if d.property_id != p.id.as_str() {
        return Err(DashError::NotFound);
    }
    let kind = DestinationKind::parse(&d.kind).ok_or(DashError::NotFound)?;
    Ok((d, kind))
}

fn detail_body(
    p: &Property,
    dash: &Dash,
    d: &DestinationView,
    kind: DestinationKind,
    values: &FormData,
    errors: &Errors,
    test_result: Option<&TestAnswer>,
) -> Markup {
    let base = format!("/p/{}/destinations/{}", p.id, d.id);
    let status = d.status;
    html! {
        p { a href={ "/p/" (p.id) "/destinations" } { "← Destinations" } }
        div.heading {
            h1 { (d.name) }
            span { (status_badge(status)) }
        }
        (attention_banner(d))
        section.card {
            h2 { "Status" }
            table.data.kv {
                tbody {
                    tr { th { "Platform" } td { (kind.label()) } }
                    tr { th { "Status" } td { (status_badge(status)) @if let Some(m) = &d.status_message { " " span.muted { (m) } } } }
                    tr { th { "Deliveries" } td {
                        @if let Some(m) = &d.deliveries {
                            @for (k, n) in m { span.badge { (k) ": " (n) } " " }
                        }
                        " " a href={ "/p/" (p.id) "/conversions" } { "Conversion log" }
                    } }
                }
            }
            form.inline method="post" action={ (base) "/pause" } {
                (ui::csrf(dash.csrf()))
                @if status == DestinationStatus::Paused {
                    input type="hidden" name="paused" value="false";
                    button type="submit" data-test="resume" { "Resume" }
                } @else {
                    input type="hidden" name="paused" value="true";
                    button type="submit" data-test="pause" { "Pause" }
                }
            }
            " "
            form.inline method="post" action={ (base) "/test" } {
                (ui::csrf(dash.csrf()))
                button type="submit" data-test="send-test" { "Send test event" }
            }
            p.help.muted { "The test sends your latest validated conversion (or a made-up one) through the platform's test mode when a test event code is set; Google Ads uses validate-only. It is not queued and never counts twice." }
            @if let Some(t) = test_result {
                div class=(if t.status.is_success() { "notice" } else { "alert" }) data-test="test-result" {
                    p { strong { "Platform answer" } " (HTTP " (t.status.as_u16()) ")" }
                    pre { (serde_json::to_string_pretty(&t.body).unwrap_or_default()) }
                }
            }
        }
        h2 { "Settings" }
        (destination_form(kind, dash.csrf(), &base, values, Some(d), errors))
        section.card.danger-zone {
            h2 { "Delete this destination" }
            p.muted { "Nothing more is sent to it. Conversions still waiting to be sent to it are cancelled; its delivery log stays in the conversion log." }
            form method="post" action={ (base) "/delete" } {
                (ui::csrf(dash.csrf()))
                button.danger type="submit" data-test="delete-destination" data-confirm={ "Delete the destination " (d.name) "? Conversions waiting to be sent to it are cancelled." } { "Delete destination" }
            }
        }
    }
}

pub async fn page(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, did)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let (d, kind) = fetch(&state, &dash, &p, &did).await?;
    let body = detail_body(
        &p,
        &dash,
        &d,
        kind,
        &FormData::default(),
        &Errors::default(),
        None,
    );
    let c =
        Chrome::property(&dash, &p, Tab::Destinations, d.name.clone()).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn update(
    State(state): State<DashState>,
    Path((pid, did)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let (d, kind) = fetch(&state, &dash, &p, &did).await?;
    let mut errors = Errors::default();
    let body = body_of(kind, &form, true, &mut errors);
    if errors.is_empty() {
        let req = UpdateDestination {
            name: body.name,
            settings: Some(body.settings),
            credentials: body.credentials,
            event_mapping: Some(body.event_mapping),
            paused: None,
        };
        match state
            .services
            .destinations
            .update(&dash.caller, &did, req)
            .await
        {
            Ok(_) => {
                return Ok(see_other(&format!(
                    "/p/{}/destinations/{did}?done=saved",
                    p.id
                )));
            }
            Err(e) => add_problems(&mut errors, e)?,
        }
    }
    let page = detail_body(&p, &dash, &d, kind, &form, &errors, None);
    let c = Chrome::property(&dash, &p, Tab::Destinations, d.name.clone());
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, page)))
}

pub async fn pause(
    State(state): State<DashState>,
    Path((pid, did)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    fetch(&state, &dash, &p, &did).await?;
    let paused = form.get("paused") != "false";
    let change = UpdateDestination {
        paused: Some(paused),
        ..UpdateDestination::default()
    };
    match state
        .services
        .destinations
        .update(&dash.caller, &did, change)
        .await
    {
        Ok(_) => {}
        Err(e) if e.status.is_server_error() => return Err(DashError::Internal),
        Err(e) => {
            return Err(DashError::BadRequest(
                problems(&e)
                    .into_iter()
                    .map(|(_, m)| m)
                    .collect::<Vec<_>>()
                    .join("; "),
            ));
        }
    }
    Ok(see_other(&format!(
        "/p/{}/destinations/{did}?done={}",
        p.id,
        if paused { "paused" } else { "resumed" }
    )))
}

/// Deletes a destination (its waiting deliveries are cancelled).
pub async fn delete(
    State(state): State<DashState>,
    Path((pid, did)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    fetch(&state, &dash, &p, &did).await?;
    state
        .services
        .destinations
        .delete(&dash.caller, &did)
        .await?;
    Ok(see_other(&format!("/p/{}/destinations?done=deleted", p.id)))
}

pub async fn send_test(
    State(state): State<DashState>,
    Path((pid, did)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let (_, kind) = fetch(&state, &dash, &p, &did).await?;
    let answer = match state
        .services
        .destinations
        .test(&dash.caller, &did, TestRequest::default())
        .await
    {
        Ok(body) => TestAnswer {
            status: StatusCode::OK,
            body,
        },
        Err(e) if e.status.is_server_error() => return Err(DashError::Internal),
        Err(e) => TestAnswer {
            status: e.status,
            body: json!({"error": {"code": e.code, "message": e.message}}),
        },
    };
    // Re-read: a refused token flags the destination.
    let (d, _) = fetch(&state, &dash, &p, &did).await?;
    let body = detail_body(
        &p,
        &dash,
        &d,
        kind,
        &FormData::default(),
        &Errors::default(),
        Some(&answer),
    );
    let c = Chrome::property(&dash, &p, Tab::Destinations, d.name.clone());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

/// What "send test event" shows: the platform's answer (or the refusal)
/// as the JSON document the API would answer, with its HTTP status.
struct TestAnswer {
    status: StatusCode,
    body: Value,
}

/// The field problems of a refusal: (field, message) pairs, or the
/// refusal's message under `_form` when it names no field.
fn problems(e: &ServiceError) -> Vec<(&str, &str)> {
    if e.fields.is_empty() {
        vec![("_form", e.message.as_str())]
    } else {
        e.fields
            .iter()
            .map(|f| (f.field.as_str(), f.message.as_str()))
            .collect()
    }
}
