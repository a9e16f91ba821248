//! The Integration Catalog (a searchable grid of network cards), each
//! network's integration page (what it tracks, technical details, standard
//! conversions, setup steps, the Install form with credentials, settings
//! and event mapping), and the page of an installed integration (status,
//! last poll and error, "poll now", postback URL, settings, event mapping).
//! Forms of API integrations (Income Access) have a "Test connection"
//! button, show the address the program must whitelist, and fold the
//! settings most installs leave alone under "Advanced".
//!
//! Installing and editing go through the engine's `Integrations` service (the code behind
//! `POST /api/v1/properties/{id}/integrations` and `PUT
//! /api/v1/integrations/{id}`), testing through `Integrations::test_on` (the
//! code behind `POST /api/v1/integrations/test`), polling through
//! `clicktrail_engine::polling::poll_now`.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clicktrail_domain::Currency;
use clicktrail_domain::mapping::{EventMapping, MappingRule, ValueSource};
use clicktrail_domain::money::{Amount, Money};
use clicktrail_networks::catalog::{
    CatalogEntry, Category, DataSource, SettingField, SettingKind, TrackingMethod,
};
use clicktrail_store::integrations::{self as store, Integration};
use clicktrail_store::properties::Property;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::DashState;
use crate::error::DashResult;
use crate::properties::owned;
use crate::session::{Dash, DashForm, FormData};
use crate::ui::{self, Chrome, Errors, Input, Tab};
use crate::{DashError, html, see_other};
use clicktrail_engine::ServiceError;
use clicktrail_engine::connection_test::{ConnectionTest, Egress, TestOutcome};
use clicktrail_engine::integrations::{InstallRequest, UpdateRequest, is_polled};
use clicktrail_engine::polling::PollReport;
use clicktrail_networks::incomeaccess::split_generated_url;

#[derive(Debug, Deserialize, Default)]
pub struct CatalogQuery {
    pub q: Option<String>,
    pub done: Option<String>,
}

fn category_label(c: Category) -> &'static str {
    match c {
        Category::Igaming => "iGaming",
        Category::Ecommerce => "E-commerce",
        Category::DigitalProducts => "Digital products",
        Category::CpaNetwork => "CPA network",
        Category::PartnerPlatform => "Partner platform",
        Category::Generic => "Generic",
    }
}

fn method_label(m: TrackingMethod) -> &'static str {
    match m {
        TrackingMethod::Api => "API Integration",
        TrackingMethod::Postback => "Postback URL",
    }
}

fn source_label(s: DataSource) -> &'static str {
    match s {
        DataSource::Tag => "clicktrail JS tag",
        DataSource::Api => "API Integration",
        DataSource::Postback => "Postback URL",
    }
}

fn status_badge(status: &str) -> Markup {
    let kind = match status {
        "active" => "good",
        "paused" => "warn",
        "error" => "bad",
        _ => "",
    };
    ui::badge(status, kind)
}

/// What a poll read and recorded, in words: "1,204 rows, 2 conversions
/// recorded, 1 not attributed (unknown_click 1)".
fn poll_summary(r: &PollReport) -> String {
    let mut parts = vec![ui::count(r.rows, "row", "rows")];
    let validated = r.validated();
    parts.push(if validated == 0 {
        "no conversion recorded".to_owned()
    } else {
        format!(
            "{} recorded",
            ui::count(validated, "conversion", "conversions")
        )
    });
    let of = |key: &str| r.outcomes.get(key).copied().unwrap_or(0);
    if of("adjustment") > 0 {
        parts.push(ui::count(of("adjustment"), "adjustment", "adjustments"));
    }
    if of("duplicate") > 0 {
        parts.push(format!(
            "{} already recorded",
            ui::int(of("duplicate") as i64)
        ));
    }
    if of("ignored") > 0 {
        parts.push(format!(
            "{} ignored by the event mapping",
            ui::int(of("ignored") as i64)
        ));
    }
    let mut refused: Vec<(&String, &u64)> = r
        .outcomes
        .iter()
        .filter(|(k, n)| {
            **n > 0
                && !matches!(
                    k.as_str(),
                    "validated" | "adjustment" | "duplicate" | "ignored"
                )
        })
        .collect();
    if !refused.is_empty() {
        refused.sort();
        let total: u64 = refused.iter().map(|(_, n)| **n).sum();
        let codes: Vec<String> = refused.iter().map(|(k, n)| format!("{k} {n}")).collect();
        parts.push(format!(
            "{} not attributed ({})",
            ui::int(total as i64),
            codes.join(", ")
        ));
    }
    parts.join(", ")
}

/// The last poll as a sentence: when, then what it read and recorded, or
/// the error in words with its code. Never the stored JSON.
fn last_poll(i: &Integration, now: i64) -> Markup {
    let Some(at) = i.last_poll_at else {
        return html! { "not yet" };
    };
    let report = i
        .last_poll_status
        .as_deref()
        .and_then(PollReport::from_stored);
    let failed = report.as_ref().map_or(i.last_error_code.is_some(), |r| {
        r.error_code.is_some() || r.status == "error"
    });
    let (error, code) = match &report {
        Some(r) if failed => (r.error.as_deref(), r.error_code.as_deref()),
        _ => (i.last_error.as_deref(), i.last_error_code.as_deref()),
    };
    html! {
        (ui::time_ago(at, now)) ": "
        @if failed {
            span.bad { "failed" } " — " (error.unwrap_or("no detail was recorded"))
            @if let Some(c) = code { " " span.muted { "(" code { (c) } ")" } }
        } @else if let Some(r) = &report {
            (poll_summary(r))
        } @else {
            "done"
        }
    }
}

fn entry_or_404<'a>(state: &'a DashState, key: &str) -> Result<&'a CatalogEntry, DashError> {
    state.services.catalog.get(key).ok_or(DashError::NotFound)
}

/// The property's installed integration `iid`, or 404.
async fn owned_integration(
    state: &DashState,
    p: &Property,
    iid: &str,
) -> Result<Integration, DashError> {
    if iid.len() > 64 {
        return Err(DashError::NotFound);
    }
    store::get(&state.db, iid)
        .await?
        .filter(|i| i.property_id == p.id.as_str())
        .ok_or(DashError::NotFound)
}

pub async fn list(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<CatalogQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let installed = store::list_for_property(&state.db, &p.id).await?;
    let now = clicktrail_store::now_ms();
    let body = html! {
        div.heading {
            h1 { "Integrations" }
            a.button.primary href={ "/p/" (p.id) "/catalog" } { "Open the Integration Catalog" }
        }
        p.muted { "Integrations bring conversions in: clicktrail polls the network's reporting API or receives its postbacks, and attributes each conversion to the click that led to it." }
        table.data {
            thead { tr { th { "Integration" } th { "Network" } th { "Tracking" } th { "Status" } th { "Last poll" } th { "Last error" } } }
            tbody {
                @if installed.is_empty() {
                    tr { td.muted colspan="6" { "Nothing installed yet. Open the Integration Catalog and install your network." } }
                }
                @for i in &installed {
                    @let entry = state.services.catalog.get(&i.catalog_key);
                    tr {
                        td { a href={ "/p/" (p.id) "/integrations/" (i.id) } { (i.name) } }
                        td { (entry.map(|e| e.name.as_str()).unwrap_or(&i.catalog_key)) }
                        td { (entry.map(|e| method_label(e.tracking_method)).unwrap_or("")) }
                        td { (status_badge(&i.status)) }
                        td data-test="last-poll" {
                            @if entry.is_some_and(is_polled) {
                                @match i.last_poll_at {
                                    Some(at) => { (ui::time_ago(at, now)) @if i.last_error_code.is_some() { " · " span.bad { "failed" } } }
                                    None => span.muted { "not yet" },
                                }
                            } @else {
                                span.muted title="This integration receives postbacks; it is not polled." { "–" }
                            }
                        }
                        td { @if let Some(e) = &i.last_error { span.bad { (e) } } @else { span.muted { "–" } } }
                    }
                }
            }
        }
    };
    let c =
        Chrome::property(&dash, &p, Tab::Integrations, "Integrations").notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

fn search_text(e: &CatalogEntry) -> String {
    let mut s = format!(
        "{} {} {} {} {} {}",
        e.name,
        e.key,
        e.aliases.join(" "),
        e.tracking_group.key,
        e.description,
        category_label(e.category)
    );
    s.make_ascii_lowercase();
    s
}

pub async fn catalog(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<CatalogQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let installed = store::list_for_property(&state.db, &p.id).await?;
    let query = q.q.as_deref().unwrap_or("").trim().to_ascii_lowercase();
    let body = html! {
        h1 { "Integration Catalog" }
        p.muted { "Find your affiliate network and click its card to see what it tracks and install it." }
        form method="get" action={ "/p/" (p.id) "/catalog" } role="search" {
            label.sr-only for="catalog-search" { "Search the catalog" }
            input.search id="catalog-search" type="search" name="q" value=(query) placeholder="Search networks, e.g. Gala Partners" data-filter=".netcard" autocomplete="off";
        }
        div.grid {
            @for e in state.services.catalog.entries() {
                @let st = search_text(e);
                @let n = installed.iter().filter(|i| i.catalog_key == e.key).count();
                a.netcard href={ "/p/" (p.id) "/catalog/" (e.key) } data-search=(st) data-key=(e.key) hidden[!query.is_empty() && !st.contains(&query)] {
                    h3 { (e.name) }
                    p { (ui::badge(method_label(e.tracking_method), "info")) " " (ui::badge(category_label(e.category), "")) @if n > 0 { " " (ui::badge("Installed", "good")) } }
                    p { (e.description.chars().take(140).collect::<String>()) @if e.description.chars().count() > 140 { "…" } }
                    p.small { "Tracking group " code { (e.tracking_group.key) } " · subid " code { (e.subid_param) } }
                }
            }
        }
        p id="no-match" .muted hidden { "No network matches. Networks outside the catalog can use the Custom postback integration." }
    };
    let c = Chrome::property(&dash, &p, Tab::Integrations, "Integration Catalog");
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

// ---------------------------------------------------------------------------
// Event mapping editor
// ---------------------------------------------------------------------------

const COMMON_EVENTS: &[&str] = &[
    "Lead",
    "Purchase",
    "CompleteRegistration",
    "Subscribe",
    "StartTrial",
    "AddToCart",
    "InitiateCheckout",
];

/// One row of the editor, as typed.
#[derive(Debug, Clone, Default)]
struct MapRow {
    source: String,
    event: String,
    value: String,
    amount: String,
    currency: String,
    send: bool,
}

fn rows_of(m: &EventMapping) -> Vec<MapRow> {
    m.0.iter()
        .map(|(k, r)| {
            let (value, amount, currency) = match &r.value {
                ValueSource::Reported => ("reported", String::new(), String::new()),
                ValueSource::None => ("none", String::new(), String::new()),
                ValueSource::Fixed(m) => (
                    "fixed",
                    m.amount.to_string(),
                    m.currency.as_str().to_owned(),
                ),
            };
            MapRow {
                source: k.clone(),
                event: r.event.clone().unwrap_or_default(),
                value: value.into(),
                amount,
                currency,
                send: r.send_to_destinations,
            }
        })
        .collect()
}

fn rows_from_form(f: &FormData) -> Vec<MapRow> {
    let src = f.get_all("m_source");
    let ev = f.get_all("m_event");
    let val = f.get_all("m_value");
    let amt = f.get_all("m_amount");
    let cur = f.get_all("m_currency");
    let send = f.get_all("m_send");
    (0..src.len())
        .map(|i| MapRow {
            source: src[i].trim().to_owned(),
            event: ev.get(i).copied().unwrap_or("").trim().to_owned(),
            value: val.get(i).copied().unwrap_or("reported").to_owned(),
            amount: amt.get(i).copied().unwrap_or("").trim().to_owned(),
            currency: cur
                .get(i)
                .copied()
                .unwrap_or("")
                .trim()
                .to_ascii_uppercase(),
            send: send.get(i).copied().unwrap_or("yes") == "yes",
        })
        .filter(|r| !(r.source.is_empty() && r.event.is_empty() && r.amount.is_empty()))
        .collect()
}

/// Builds the mapping, with errors under `mapping.<row>` (and `mapping`).
fn mapping_from_rows(rows: &[MapRow], errors: &mut Errors) -> EventMapping {
    let mut m = EventMapping::default();
    for (i, r) in rows.iter().enumerate() {
        let field = format!("mapping.{i}");
        if r.source.is_empty() {
            errors.add(&field, "Name the network's event (e.g. registration, commission, sale, or * for any other).");
            continue;
        }
        if m.0.contains_key(&r.source) {
            errors.add(&field, "This source event is mapped twice.");
            continue;
        }
        let value = match r.value.as_str() {
            "none" => ValueSource::None,
            "fixed" => match (Amount::parse(&r.amount), Currency::parse(&r.currency)) {
                (Ok(amount), Ok(currency)) => ValueSource::Fixed(Money::new(amount, currency)),
                (Err(_), _) => {
                    errors.add(&field, "A fixed value needs an amount such as 25.00.");
                    continue;
                }
                (_, Err(_)) => {
                    errors.add(&field, "A fixed value needs a currency such as EUR.");
                    continue;
                }
            },
            _ => ValueSource::Reported,
        };
        let event = (!r.event.is_empty() && r.event != "(ignore)").then(|| r.event.clone());
        if let Some(e) = &event {
            let ok = e.len() <= 40
                && e.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && e.chars().next().is_some_and(|c| c.is_ascii_alphabetic());
            if !ok {
                errors.add(&field, "A conversion event name is 1 to 40 letters, digits or _, starting with a letter (e.g. Purchase).");
                continue;
            }
        }
        m.0.insert(
            r.source.clone(),
            MappingRule {
                event,
                value,
                send_to_destinations: r.send,
            },
        );
    }
    if let Err(e) = m.validate() {
        errors.add("mapping", e);
    }
    m
}

/// One row of the editor; `currency` (the property's reporting currency)
/// is the example shown in an empty currency box.
fn mapping_row(i: Option<usize>, r: &MapRow, errors: &Errors, currency: &str) -> Markup {
    let err = i.and_then(|i| errors.get(&format!("mapping.{i}")));
    html! {
        tr.invalid[err.is_some()] {
            td { input type="text" name="m_source" value=(r.source) placeholder="registration" aria-label="Network event"; }
            td {
                input type="text" name="m_event" value=(r.event) list="common-events" placeholder="Lead (empty: ignore)" aria-label="Conversion event";
            }
            td {
                select name="m_value" aria-label="Value" {
                    option value="reported" selected[r.value == "reported" || r.value.is_empty()] { "Reported by the network" }
                    option value="none" selected[r.value == "none"] { "No value" }
                    option value="fixed" selected[r.value == "fixed"] { "Fixed value" }
                }
            }
            td { input type="text" name="m_amount" value=(r.amount) placeholder="25.00" aria-label="Fixed amount"; }
            td { input type="text" name="m_currency" value=(r.currency) placeholder=(currency) aria-label="Fixed currency"; }
            td {
                select name="m_send" aria-label="Send to ad platforms" {
                    option value="yes" selected[r.send] { "Yes" }
                    option value="no" selected[!r.send] { "No" }
                }
            }
            td { button.small type="button" data-remove-row { "Remove" } }
        }
        @if let Some(e) = err { tr { td colspan="7" { p.error data-error-for={ "mapping." (i.unwrap_or(0)) } { (e) } } } }
    }
}

fn mapping_editor(rows: &[MapRow], errors: &Errors, currency: &str) -> Markup {
    html! {
        datalist id="common-events" { @for e in COMMON_EVENTS { option value=(e) {} } }
        table.data.mapping id="mapping-table" {
            thead { tr { th { "Network event" } th { "Conversion event" } th { "Value" } th { "Fixed amount" } th { "Currency" } th { "Send to ad platforms" } th {} } }
            tbody {
                @for (i, r) in rows.iter().enumerate() { (mapping_row(Some(i), r, errors, currency)) }
            }
        }
        template id="mapping-row" { (mapping_row(None, &MapRow { value: "reported".into(), send: true, ..MapRow::default() }, errors, currency)) }
        @if let Some(e) = errors.get("mapping") { p.error data-error-for="mapping" { (e) } }
        p { button.small type="button" data-add-row="mapping-table" data-template="mapping-row" { "Add a row" } }
        p.help.muted { "Each network event becomes a conversion event (Lead, Purchase, CompleteRegistration or your own name) or is ignored (leave the conversion event empty). The key * applies to any event without its own row." }
    }
}

// ---------------------------------------------------------------------------
// Credentials and settings fields
// ---------------------------------------------------------------------------

fn setting_input(s: &SettingField, value: &str, errors: &Errors) -> Markup {
    let name = format!("settings.{}", s.name);
    let help = html! {
        (s.help)
        @if let Some(d) = &s.default { " Default: " code { (default_text(d)) } "." }
    }
    .into_string();
    match s.kind {
        SettingKind::Enum => {
            let mut opts: Vec<(String, String)> = Vec::new();
            if !s.required {
                opts.push((String::new(), "(default)".into()));
            }
            opts.extend(s.options.iter().map(|o| (o.clone(), o.clone())));
            ui::select(&s.label, &name, &opts, value, errors, None)
        }
        SettingKind::HostList => {
            ui::textarea(&s.label, &name, value, errors, 3, Some(&strip_tags(&help)))
        }
        kind => ui::input(
            &s.label,
            &name,
            value,
            errors,
            Input {
                kind: match kind {
                    SettingKind::Url => "url",
                    SettingKind::Int => "number",
                    _ => "text",
                },
                required: s.required,
                help: Some(&strip_tags(&help)),
                ..Input::default()
            },
        ),
    }
}

/// The settings inputs of a form, those marked `advanced` folded under
/// "Advanced" (open when one of them has an error, so it shows).
fn settings_inputs(
    settings: &[SettingField],
    value: &dyn Fn(&SettingField) -> String,
    errors: &Errors,
) -> Markup {
    let advanced: Vec<&SettingField> = settings.iter().filter(|s| s.advanced).collect();
    let open = advanced
        .iter()
        .any(|s| errors.get(&format!("settings.{}", s.name)).is_some());
    html! {
        @for s in settings.iter().filter(|s| !s.advanced) { (setting_input(s, &value(s), errors)) }
        @if !advanced.is_empty() {
            details.advanced data-test="advanced" open[open] {
                summary { "Advanced" }
                @for s in &advanced { (setting_input(s, &value(s), errors)) }
            }
        }
    }
}

/// The address a program must whitelist, as the forms show it.
fn egress_note(egress: &Egress) -> Markup {
    let ips = egress.ips();
    html! {
        div.help data-test="egress" {
            @if ips.is_empty() {
                p { strong { "IP address to whitelist: " } (egress.hint()) }
            } @else {
                p {
                    strong { "IP address to whitelist: " }
                    @for (n, ip) in ips.iter().enumerate() { @if n > 0 { ", " } code { (ip) } }
                    " (add it under Reports > API Reports in the program's back office)."
                }
            }
        }
    }
}

/// A submitted form as it may be shown again: secrets are never sent back
/// to the page, so a key typed into a password field, or inside a pasted
/// report URL, is dropped (the URL is shown without it, its report, format
/// and merchant moved into their fields, as an install would). Returns the
/// form and whether a key was dropped (the user must give it again).
fn redisplay(entry: &CatalogEntry, form: &FormData) -> (FormData, bool) {
    let secret = |name: &str| {
        entry
            .credentials
            .iter()
            .any(|c| c.secret && name == format!("credentials.{}", c.name))
    };
    let mut dropped = form
        .fields
        .iter()
        .any(|(k, v)| secret(k) && !v.trim().is_empty());
    let mut out = FormData {
        fields: form
            .fields
            .iter()
            .filter(|(k, _)| !secret(k))
            .cloned()
            .collect(),
        files: Vec::new(),
    };
    if is_polled(entry)
        && let Some(g) = split_generated_url(form.get("settings.api_url"))
    {
        dropped |= g.key.is_some();
        let mut set = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                out.fields.retain(|(k, _)| k != name);
                out.fields.push((name.to_owned(), v));
            }
        };
        set("settings.api_url", Some(g.api_url));
        set("settings.report_name", g.report_name);
        set("settings.report_format", g.report_format);
        set("settings.merchant_id", g.merchant_id);
    }
    (out, dropped)
}

fn outcome_label(o: TestOutcome) -> &'static str {
    match o {
        TestOutcome::Works => "it works",
        TestOutcome::WrongKey => "wrong security key",
        TestOutcome::IpNotWhitelisted => "this server's IP is not whitelisted",
        TestOutcome::NoPermission => "refused (security key or IP whitelist)",
        TestOutcome::InactiveReport => "inactive report",
        TestOutcome::Unreachable => "unreachable",
        TestOutcome::Timeout => "no answer in time",
        TestOutcome::RefusedAddress => "address refused",
        TestOutcome::ServerError => "the program's server failed",
        TestOutcome::NotIncomeAccess => "not an Income Access answer",
        TestOutcome::ProgramError => "the program answered an error",
    }
}

/// The answer of "Test connection", shown above the form.
fn test_result(t: &ConnectionTest, key_dropped: bool) -> Markup {
    let ip_matters = matches!(
        t.outcome,
        TestOutcome::WrongKey | TestOutcome::IpNotWhitelisted | TestOutcome::NoPermission
    );
    html! {
        div id="test-result" class=(if t.ok { "notice" } else { "alert" }) role="status" data-test="test-result" data-outcome=(t.outcome.code()) {
            p { strong { "Test connection: " (outcome_label(t.outcome)) } " " span.muted { "(" (t.outcome.code()) ")" } }
            p { (t.message) }
            @for w in &t.warnings { p { strong { "Note: " } (w) } }
            @if ip_matters || !t.ok {
                p data-test="whitelist-ip" {
                    @if t.egress_ips.is_empty() { (t.egress_hint) }
                    @else { "IP address to whitelist: " @for (n, ip) in t.egress_ips.iter().enumerate() { @if n > 0 { ", " } code { (ip) } } }
                }
            }
            @if let Some(r) = &t.request { p.small { "Request (" (t.day) "): " code { (r) } } }
            @if key_dropped {
                p.small data-test="key-again" { "Nothing was saved. The security key is not sent back to this page: enter it again (or paste the report URL again) before saving." }
            } @else {
                p.small { "Nothing was saved." }
            }
        }
    }
}

fn strip_tags(s: &str) -> String {
    // The help text was built from escaped parts: drop the <code> tags and
    // undo the escaping, since the field helper escapes it again.
    s.replace("<code>", "")
        .replace("</code>", "")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

fn default_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Settings as typed into the form, for the install / update request.
fn settings_from_form(entry: &CatalogEntry, f: &FormData) -> Map<String, Value> {
    let mut m = Map::new();
    for s in &entry.settings {
        let raw = f.get(&format!("settings.{}", s.name));
        if raw.is_empty() {
            continue;
        }
        let v = match s.kind {
            SettingKind::Int => raw
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(raw.to_owned())),
            SettingKind::HostList => Value::Array(
                raw.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|h| !h.is_empty())
                    .map(|h| Value::String(h.to_owned()))
                    .collect(),
            ),
            _ => Value::String(raw.to_owned()),
        };
        m.insert(s.name.clone(), v);
    }
    m
}

/// The Install form as the service's install request (also what "Test
/// connection" tests).
fn install_request(entry: &CatalogEntry, form: &FormData, mapping: EventMapping) -> InstallRequest {
    InstallRequest {
        catalog: entry.key.clone(),
        name: None,
        credentials: credentials_from_form(entry, form),
        settings: settings_from_form(entry, form),
        event_mapping: Some(mapping),
    }
}

fn credentials_from_form(entry: &CatalogEntry, f: &FormData) -> Map<String, Value> {
    entry
        .credentials
        .iter()
        .filter_map(|c| {
            let v = f.get(&format!("credentials.{}", c.name));
            (!v.is_empty()).then(|| (c.name.clone(), Value::String(v.to_owned())))
        })
        .collect()
}

/// Field errors of an API refusal, under the form's field names (which are
/// the API's: `credentials.security_key`, `settings.api_url`).
fn api_errors(e: ServiceError) -> Result<Errors, DashError> {
    if e.status.is_server_error() {
        return Err(DashError::Internal);
    }
    let mut errors = Errors::default();
    if e.fields.is_empty() {
        errors.add("_form", e.message);
    }
    for f in e.fields {
        let field = if f.field == "event_mapping" {
            "mapping".to_owned()
        } else {
            f.field
        };
        let mut msg = f.message;
        if let Some(first) = msg.get(..1) {
            msg = format!("{}{}", first.to_uppercase(), &msg[1..]);
        }
        if !msg.ends_with('.') {
            msg.push('.');
        }
        errors.add(&field, msg);
    }
    Ok(errors)
}

fn setting_value_text(settings: &Map<String, Value>, s: &SettingField) -> String {
    match settings.get(&s.name) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        Some(v) => v.to_string(),
    }
}

// ---------------------------------------------------------------------------
// A catalog entry's page, with the Install form
// ---------------------------------------------------------------------------

fn technical_details(e: &CatalogEntry) -> Markup {
    html! {
        table.data.kv id="technical-details" {
            thead { tr { th { "Reference" } th { "Value" } th { "Information" } } }
            tbody {
                tr { td { "Tracking Group" } td { code { (e.tracking_group.key) } @for a in &e.tracking_group.aliases { ", " code { (a) } } } td { "The Tracking Group reference activates AutoTag: " code { "data-tracking-group=\"" (e.tracking_group.key) "\"" } " or " code { "rel=\"" (e.tracking_group.key) "\"" } " on a link puts it in this group." } }
                tr { td { "Subid Parameter" } td { code { (e.subid_param) } } td { "The link parameter that carries the clicktrail click_id to the network." } }
                tr { td { "Tracking Method" } td { (method_label(e.tracking_method)) } td { @match e.tracking_method { TrackingMethod::Api => "clicktrail polls the network's reporting API with your credentials.", TrackingMethod::Postback => "The network calls this integration's postback URL for each conversion." } } }
            }
        }
    }
}

fn standard_conversions(e: &CatalogEntry) -> Markup {
    html! {
        table.data id="standard-conversions" {
            thead { tr { th { "Event Name" } th { "Details" } th { "Data Source" } } }
            tbody {
                @for c in &e.standard_conversions {
                    tr { td { strong { (c.event) } } td { (c.details) } td { (source_label(c.data_source)) } }
                }
            }
        }
    }
}

fn link_help(e: &CatalogEntry) -> Markup {
    html! {
        h2 { "Link tracking" }
        p { "Tracking starts when visitors click offer links, so check that your links are AutoTagged." }
        ul {
            @if !e.link_patterns.is_empty() {
                li { strong { "Default: " } "the tag finds and AutoTags " (e.name) " links on your pages (hosts "
                    @for (i, p) in e.link_patterns.iter().enumerate() { @if i > 0 { ", " } code { (p.hosts.join(", ")) } }
                    ")." }
            }
            li { strong { "AutoScan: " } "links behind your own redirect plugins (" code { "/go/…" } ", " code { "/recommends/…" } ") are resolved by the server and tagged accordingly." }
            li { strong { "Tracking group attribute: " } code { "<a href=\"…\" data-tracking-group=\"" (e.tracking_group.key) "\">" } " or " code { "rel=\"" (e.tracking_group.key) "\"" } "." }
            li { strong { "Click id token: " } "append " code { "&" (e.subid_param) "=--CLICK-ID--" } " to the offer link yourself." }
        }
    }
}

/// What the install form shows besides its fields.
#[derive(Default)]
struct FormExtras<'a> {
    /// The answer of "Test connection", shown above the form.
    test: Option<&'a ConnectionTest>,
    /// A key given with the submitted form was not sent back.
    key_dropped: bool,
}

#[expect(
    clippy::too_many_arguments,
    reason = "a page of several parts, each given by its caller"
)]
fn install_form(
    p: &Property,
    e: &CatalogEntry,
    csrf: &str,
    f: &FormData,
    rows: &[MapRow],
    errors: &Errors,
    egress: &Egress,
    extras: &FormExtras<'_>,
) -> Markup {
    let polled = is_polled(e);
    let action = format!("/p/{}/catalog/{}", p.id, e.key);
    html! {
        @if let Some(t) = extras.test { (test_result(t, extras.key_dropped)) }
        @else if extras.key_dropped {
            div.attention data-test="key-again" { "The security key is not sent back to this page: enter it again (or paste the report URL again)." }
        }
        form.card id="install" method="post" action=(action) novalidate autocomplete="off" {
            (ui::csrf(csrf))
            h2 { "Install " (e.name) }
            (ui::form_error(errors.get("_form")))
            @if !e.credentials.is_empty() {
                h3 { "Connect your " (e.name) " account" }
                @for c in &e.credentials {
                    (ui::input(&c.label, &format!("credentials.{}", c.name), if c.secret { "" } else { f.get(&format!("credentials.{}", c.name)) }, errors, Input { kind: if c.secret { "password" } else { "text" }, required: c.required, help: Some(&c.help), autocomplete: Some("off"), ..Input::default() }))
                }
                @if polled { (egress_note(egress)) }
            }
            @if !e.settings.is_empty() {
                h3 { "Settings" }
                (settings_inputs(&e.settings, &|s| f.get(&format!("settings.{}", s.name)).to_owned(), errors))
            }
            h3 { "Event mapping" }
            (mapping_editor(rows, errors, &p.settings.currency))
            button.primary type="submit" data-test="install" { "Install" }
            @if polled {
                " "
                button type="submit" formaction={ (action) "/test" } data-test="test-connection" { "Test connection" }
                p.help.muted { "Test connection asks the program for yesterday's report with these settings and this key, and says whether it works; it saves nothing." }
            }
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "a page of several parts, each given by its caller"
)]
async fn entry_body(
    state: &DashState,
    dash: &Dash,
    p: &Property,
    e: &CatalogEntry,
    f: &FormData,
    rows: &[MapRow],
    errors: &Errors,
    extras: &FormExtras<'_>,
) -> DashResult<Markup> {
    let installed: Vec<Integration> = store::list_for_property(&state.db, &p.id)
        .await?
        .into_iter()
        .filter(|i| i.catalog_key == e.key)
        .collect();
    Ok(html! {
        p { a href={ "/p/" (p.id) "/catalog" } { "← Integration Catalog" } }
        div.heading {
            h1 { (e.name) }
            @if let Some(w) = &e.website { a.small href=(w) rel="noopener noreferrer" target="_blank" { (w) } }
        }
        p { (e.description) }
        @if !installed.is_empty() {
            div.notice {
                "Installed on this property: "
                @for (n, i) in installed.iter().enumerate() { @if n > 0 { ", " } a href={ "/p/" (p.id) "/integrations/" (i.id) } { (i.name) } }
                ". Installing again adds another instance (e.g. a second account)."
            }
        }
        h2 { "How the " (e.name) " integration works" }
        ol {
            li { strong { "Traffic: " } "when visitors land on your site, the tag records the traffic source (ads, campaign, click ids)." }
            li { strong { "Engagements: " } "when they click a " (e.name) " link, the tag adds the click id in " code { (e.subid_param) } " and records an OutboundClick." }
            li { strong { "Conversions: " } (match e.tracking_method { TrackingMethod::Api => "clicktrail reads the conversions from the network's reporting API.", TrackingMethod::Postback => "the network calls your postback URL with the click id." }) }
            li { strong { "Attribution: " } "each conversion is attributed to its click, session and ad, and shown in the reports." }
            li { strong { "Conversion API: " } "validated conversions are sent to your ad platforms (Meta, Google Ads, TikTok, GA4)." }
        }
        h2 { "Technical details" }
        (technical_details(e))
        h2 { "Standard conversions" }
        (standard_conversions(e))
        h2 { "Setup guide" }
        ol.steps id="setup-steps" { @for s in &e.setup_steps { li { (s) } } }
        @if let Some(pb) = &e.postback {
            p.muted { "After installing, the integration page shows your postback URL to paste into " (e.name) "." @if let Some(n) = &pb.notes { " " (n) } }
        }
        (install_form(p, e, dash.csrf(), f, rows, errors, state.services.integrations.egress(), extras))
        (link_help(e))
        h2 { "Troubleshooting" }
        ul {
            li { "The most common error is an unknown or missing click_id: AutoTag could not tag the link. Check that links are plain " code { "<a>" } " elements, not hidden behind scripts or double redirects, or set the tracking group attribute." }
            li { "Conversions from visitors who never passed through a page with the tag cannot be attributed: clicktrail never invents a click." }
            li { "Open the conversion log to see each conversion's outcome and what to fix." }
        }
    })
}

pub async fn entry_page(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, key)): Path<(String, String)>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let e = entry_or_404(&state, &key)?;
    let rows = rows_of(&e.event_mapping);
    let body = entry_body(
        &state,
        &dash,
        &p,
        e,
        &FormData::default(),
        &rows,
        &Errors::default(),
        &FormExtras::default(),
    )
    .await?;
    let c = Chrome::property(&dash, &p, Tab::Integrations, e.name.clone());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn install(
    State(state): State<DashState>,
    Path((pid, key)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let e = entry_or_404(&state, &key)?;
    let rows = rows_from_form(&form);
    let mut errors = Errors::default();
    let mapping = mapping_from_rows(&rows, &mut errors);
    if errors.is_empty() {
        let req = install_request(e, &form, mapping);
        match state.services.integrations.install(&p, req).await {
            Ok(i) => {
                return Ok(see_other(&format!(
                    "/p/{}/integrations/{}?done=installed",
                    p.id, i.id
                )));
            }
            Err(err) => errors = api_errors(err)?,
        }
    }
    let (shown, key_dropped) = redisplay(e, &form);
    let extras = FormExtras {
        test: None,
        key_dropped,
    };
    let body = entry_body(&state, &dash, &p, e, &shown, &rows, &errors, &extras).await?;
    let c = Chrome::property(&dash, &p, Tab::Integrations, e.name.clone());
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)))
}

/// "Test connection" on the Install form: the form's install request is
/// tested (nothing saved), and the page comes back with the answer above
/// the form and the form as typed, secrets excepted.
pub async fn test_install(
    State(state): State<DashState>,
    Path((pid, key)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let e = entry_or_404(&state, &key)?;
    let rows = rows_from_form(&form);
    let mut errors = Errors::default();
    let mapping = mapping_from_rows(&rows, &mut errors);
    let mut test = None;
    if errors.is_empty() {
        let req = install_request(e, &form, mapping);
        match state.services.integrations.test_on(&p, req).await {
            Ok(t) => test = Some(t),
            Err(err) => errors = api_errors(err)?,
        }
    }
    let (shown, key_dropped) = redisplay(e, &form);
    let extras = FormExtras {
        test: test.as_ref(),
        key_dropped,
    };
    let body = entry_body(&state, &dash, &p, e, &shown, &rows, &errors, &extras).await?;
    let c = Chrome::property(&dash, &p, Tab::Integrations, e.name.clone());
    let status = if test.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(html(status, ui::page(&c, body)))
}

// ---------------------------------------------------------------------------
// An installed integration
// ---------------------------------------------------------------------------

#[expect(
    clippy::too_many_arguments,
    reason = "a page of several parts, each given by its caller"
)]
async fn integration_body(
    state: &DashState,
    dash: &Dash,
    p: &Property,
    i: &Integration,
    form: Option<&FormData>,
    rows: Option<&[MapRow]>,
    errors: &Errors,
    extras: &FormExtras<'_>,
) -> DashResult<Markup> {
    let entry = state.services.catalog.get(&i.catalog_key);
    let view = state.services.integrations.view(i);
    let settings: Map<String, Value> = serde_json::from_str(&i.settings).unwrap_or_default();
    let mapping: EventMapping = serde_json::from_str(&i.event_mapping).unwrap_or_default();
    let rows_owned;
    let rows = match rows {
        Some(r) => r,
        None => {
            rows_owned = rows_of(&mapping);
            &rows_owned
        }
    };
    let postback = state.services.integrations.postback_url(i);
    let template = view
        .get("postback_template")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let polled = entry.is_some_and(is_polled);
    // Read through the network's API, with no postback to set up: a
    // postback URL would only invite pasting it somewhere it is not used.
    let api_only =
        entry.is_some_and(|e| e.tracking_method == TrackingMethod::Api && e.postback.is_none());
    let masked = view.get("credentials").cloned().unwrap_or(Value::Null);
    let now = clicktrail_store::now_ms();
    let base = format!("/p/{}/integrations/{}", p.id, i.id);
    Ok(html! {
        p { a href={ "/p/" (p.id) "/integrations" } { "← Integrations" } }
        div.heading {
            h1 { (i.name) }
            span { (status_badge(&i.status)) }
        }
        // A successful poll clears the last error.
        @if i.status == "error" || i.last_error.is_some() {
            div.attention role="alert" {
                strong { "Needs attention: " }
                (i.last_error.as_deref().unwrap_or("the last poll failed"))
                @if let Some(code) = &i.last_error_code { " " span.muted { "(" (code) ")" } }
            }
        }
        section.card {
            h2 { "Status" }
            table.data.kv {
                tbody {
                    tr { th { "Network" } td { (entry.map(|e| e.name.as_str()).unwrap_or(&i.catalog_key)) } }
                    tr { th { "Tracking" } td { (entry.map(|e| method_label(e.tracking_method)).unwrap_or("")) " · group " code { (i.tracking_group) } " · subid " code { (i.subid_param) } } }
                    @if polled {
                        tr { th { "Last poll" } td data-test="last-poll" { (last_poll(i, now)) } }
                        tr { th { "Next poll" } td { (ui::opt_datetime(i.next_poll_at)) } }
                    }
                    tr { th { "Last error" } td data-test="last-error" { @if let Some(e) = &i.last_error { (e) } @else { span.muted { "none" } } } }
                    tr { th { "Credentials" } td { @if let Value::Object(m) = &masked { @for (k, v) in m { code { (k) ": " (v.as_str().unwrap_or("…")) } " " } } } }
                }
            }
            @if api_only && !polled {
                p.muted data-test="no-connector" { "clicktrail cannot read this network's API yet, so nothing is imported from it; see the setup guide in the Integration Catalog." }
            }
            @if polled {
                form.inline method="post" action={ (base) "/poll" } {
                    (ui::csrf(dash.csrf()))
                    button type="submit" data-test="poll-now" { "Poll now" }
                }
            }
        }
        @if !api_only {
            section.card data-test="postback" {
                h2 { "Postback URL" }
                p.muted { @if polled { "This integration reads the network's API; the postback URL is there for networks that can also call back." } @else { "Paste this URL into the network's postback (S2S, server-to-server) settings." } }
                (ui::copy_box("postback-url", template.as_deref().unwrap_or(&postback), false))
                @if let Some(n) = entry.and_then(|e| e.postback.as_ref()).and_then(|pb| pb.notes.as_deref()) { p.help { (n) } }
            }
        }
        section.card id="settings" {
            h2 { "Settings" }
            @if let Some(t) = extras.test { (test_result(t, extras.key_dropped)) }
            form method="post" action=(base) novalidate autocomplete="off" {
                (ui::csrf(dash.csrf()))
                (ui::form_error(errors.get("_form")))
                @if let Some(e) = entry {
                    @for c in &e.credentials {
                        (ui::input(&c.label, &format!("credentials.{}", c.name), "", errors, Input { kind: if c.secret { "password" } else { "text" }, help: Some("Leave empty to keep the current value."), autocomplete: Some("off"), ..Input::default() }))
                    }
                    @if polled { (egress_note(state.services.integrations.egress())) }
                    (settings_inputs(&e.settings, &|s| match form { Some(f) => f.get(&format!("settings.{}", s.name)).to_owned(), None => setting_value_text(&settings, s) }, errors))
                }
                (ui::select("Status", "status", &[("active".into(), "Active".into()), ("paused".into(), "Paused: no polling, links not tagged".into())], if i.status == "paused" { "paused" } else { "active" }, errors, None))
                button.primary type="submit" { "Save settings" }
                @if polled {
                    " "
                    button type="submit" formaction={ (base) "/test" } data-test="test-connection" { "Test connection" }
                    p.help.muted { "Test connection asks the program for yesterday's report with these settings (and the saved key, unless you type a new one); it saves nothing." }
                }
            }
        }
        section.card {
            h2 { "Event mapping" }
            form method="post" action={ (base) "/mapping" } novalidate {
                (ui::csrf(dash.csrf()))
                (mapping_editor(rows, errors, &p.settings.currency))
                button.primary type="submit" { "Save event mapping" }
            }
        }
        p { a href={ "/p/" (p.id) "/conversions?integration=" (i.id) } { "This integration's conversions in the conversion log →" } }
        section.card.danger-zone {
            h2 { "Delete this integration" }
            p.muted {
                @if api_only { "It is no longer polled, at once; its links are no longer tagged." }
                @else { "Its postback URL stops working at once (the network gets 404) and it is no longer polled; its links are no longer tagged." }
                " Its conversions stay in the conversion log, marked as from a deleted integration, unless you delete them too."
            }
            form method="post" action={ (base) "/delete" } {
                (ui::csrf(dash.csrf()))
                (ui::checkbox("Also delete its conversions from the conversion log", "purge_log", false, Some("Reports keep their totals (they read hourly rollups). This cannot be undone.")))
                button.danger type="submit" data-test="delete-integration" data-confirm={ "Delete the integration " (i.name) "? " (if api_only { "It is no longer polled." } else { "Its postback URL stops working at once." }) } { "Delete integration" }
            }
        }
    })
}

fn render_integration(
    dash: &Dash,
    p: &Property,
    i: &Integration,
    body: Markup,
    status: StatusCode,
    done: Option<&str>,
) -> axum::response::Response {
    let c = Chrome::property(dash, p, Tab::Integrations, i.name.clone()).notice(done);
    html(status, ui::page(&c, body))
}

pub async fn page(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, iid)): Path<(String, String)>,
    Query(q): Query<CatalogQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    let body = integration_body(
        &state,
        &dash,
        &p,
        &i,
        None,
        None,
        &Errors::default(),
        &FormExtras::default(),
    )
    .await?;
    Ok(render_integration(
        &dash,
        &p,
        &i,
        body,
        StatusCode::OK,
        q.done.as_deref(),
    ))
}

pub async fn update(
    State(state): State<DashState>,
    Path((pid, iid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    let entry = entry_or_404(&state, &i.catalog_key)?;
    let creds = credentials_from_form(entry, &form);
    let req = UpdateRequest {
        name: None,
        credentials: if creds.is_empty() {
            None
        } else {
            // Only the typed values change; the others are kept.
            let mut current = match &i.credentials_enc {
                Some(enc) => match state.services.keyring.decrypt_json(enc) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                },
                None => Map::new(),
            };
            current.extend(creds);
            Some(current)
        },
        settings: Some(settings_from_form(entry, &form)),
        event_mapping: None,
        status: Some(form.get("status").to_owned()).filter(|s| !s.is_empty()),
    };
    match state.services.integrations.update(&i, req).await {
        Ok(()) => {
            state.services.properties.forget_tag(&p.id).await;
            Ok(see_other(&format!(
                "/p/{}/integrations/{}?done=saved",
                p.id, i.id
            )))
        }
        Err(e) => {
            let errors = api_errors(e)?;
            let (shown, key_dropped) = redisplay(entry, &form);
            let extras = FormExtras {
                test: None,
                key_dropped,
            };
            let body =
                integration_body(&state, &dash, &p, &i, Some(&shown), None, &errors, &extras)
                    .await?;
            Ok(render_integration(
                &dash,
                &p,
                &i,
                body,
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
            ))
        }
    }
}

/// "Test connection" on an installed integration's settings form: the
/// settings as typed, with the key typed (or inside a pasted report URL),
/// else the saved one; nothing is saved.
pub async fn test_saved(
    State(state): State<DashState>,
    Path((pid, iid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    let entry = entry_or_404(&state, &i.catalog_key)?;
    let typed = credentials_from_form(entry, &form);
    let url_has_key =
        split_generated_url(form.get("settings.api_url")).is_some_and(|g| g.key.is_some());
    // As saving would: a key typed or pasted wins, else the saved one.
    let credentials = if !typed.is_empty() || url_has_key {
        typed
    } else {
        match &i.credentials_enc {
            Some(enc) => match state.services.keyring.decrypt_json(enc) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
            None => Map::new(),
        }
    };
    let req = InstallRequest {
        catalog: i.catalog_key.clone(),
        name: Some(i.name.clone()),
        credentials,
        settings: settings_from_form(entry, &form),
        event_mapping: serde_json::from_str(&i.event_mapping).ok(),
    };
    let (test, errors) = match state.services.integrations.test_on(&p, req).await {
        Ok(t) => (Some(t), Errors::default()),
        Err(e) => (None, api_errors(e)?),
    };
    let (shown, key_dropped) = redisplay(entry, &form);
    let extras = FormExtras {
        test: test.as_ref(),
        key_dropped,
    };
    let body =
        integration_body(&state, &dash, &p, &i, Some(&shown), None, &errors, &extras).await?;
    let status = if test.is_some() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(render_integration(&dash, &p, &i, body, status, None))
}

pub async fn update_mapping(
    State(state): State<DashState>,
    Path((pid, iid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    let rows = rows_from_form(&form);
    let mut errors = Errors::default();
    let mapping = mapping_from_rows(&rows, &mut errors);
    if errors.is_empty() {
        let req = UpdateRequest {
            name: None,
            credentials: None,
            settings: None,
            event_mapping: Some(mapping),
            status: None,
        };
        match state.services.integrations.update(&i, req).await {
            Ok(()) => {
                return Ok(see_other(&format!(
                    "/p/{}/integrations/{}?done=saved",
                    p.id, i.id
                )));
            }
            Err(e) => errors = api_errors(e)?,
        }
    }
    let body = integration_body(
        &state,
        &dash,
        &p,
        &i,
        None,
        Some(&rows),
        &errors,
        &FormExtras::default(),
    )
    .await?;
    Ok(render_integration(
        &dash,
        &p,
        &i,
        body,
        StatusCode::UNPROCESSABLE_ENTITY,
        None,
    ))
}

pub async fn poll_now(
    State(state): State<DashState>,
    Path((pid, iid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    match clicktrail_engine::polling::poll_now(&state.services.poller, &i).await {
        Ok(_) => Ok(see_other(&format!(
            "/p/{}/integrations/{}?done=polled",
            p.id, i.id
        ))),
        Err(e) if e.status.is_client_error() => {
            let mut errors = Errors::default();
            errors.add("_form", e.message);
            let body = integration_body(
                &state,
                &dash,
                &p,
                &i,
                None,
                None,
                &errors,
                &FormExtras::default(),
            )
            .await?;
            Ok(render_integration(
                &dash,
                &p,
                &i,
                body,
                StatusCode::CONFLICT,
                None,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// Deletes an integration (and, when asked, its conversion log).
pub async fn delete(
    State(state): State<DashState>,
    Path((pid, iid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let i = owned_integration(&state, &p, &iid).await?;
    state
        .services
        .integrations
        .delete(&dash.caller, &i.id, form.checked("purge_log"))
        .await?;
    Ok(see_other(&format!("/p/{}/integrations?done=deleted", p.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn polled_integration(status: Option<&str>, error: Option<(&str, &str)>) -> Integration {
        Integration {
            id: "i1".into(),
            property_id: "p1".into(),
            catalog_key: "galapartners".into(),
            name: "Gala".into(),
            tracking_group: "incomeaccess".into(),
            subid_param: "c".into(),
            postback_token_hash: String::new(),
            postback_token_enc: None,
            credentials_enc: None,
            settings: "{}".into(),
            event_mapping: "{}".into(),
            status: if error.is_some() { "error" } else { "active" }.into(),
            last_poll_at: Some(1_700_000_000_000),
            last_poll_status: status.map(str::to_owned),
            last_error_code: error.map(|(c, _)| c.to_owned()),
            last_error: error.map(|(_, m)| m.to_owned()),
            next_poll_at: None,
            poll_failures: 0,
            created_at: 0,
            updated_at: 0,
            deleted_at: None,
        }
    }

    /// The last poll reads as a sentence, never as the stored JSON.
    #[test]
    fn last_poll_in_words() {
        let now = 1_700_000_000_000 + 3 * 60_000;
        let ok = r#"{"status":"ok","requests":2,"rows":1204,"events":5,"outcomes":{"validated":2,"unknown_click":2,"outside_window":1,"duplicate":1,"adjustment":1},"duration_ms":812,"error_code":null,"error":null}"#;
        let text = last_poll(&polled_integration(Some(ok), None), now).into_string();
        assert!(
            text.ends_with(">3 minutes ago</time>: 1,204 rows, 2 conversions recorded, 1 adjustment, 1 already recorded, 3 not attributed (outside_window 1, unknown_click 2)"),
            "{text}"
        );
        assert!(!text.contains('{'), "{text}");
        let quiet = r#"{"status":"ok","rows":1,"outcomes":{}}"#;
        let text = last_poll(&polled_integration(Some(quiet), None), now).into_string();
        assert!(text.ends_with(": 1 row, no conversion recorded"), "{text}");
        let failed = r#"{"status":"error","rows":0,"outcomes":{},"error_code":"wrong_key","error":"The program refused the security key."}"#;
        let text = last_poll(
            &polled_integration(
                Some(failed),
                Some(("wrong_key", "The program refused the security key.")),
            ),
            now,
        )
        .into_string();
        assert!(
            text.ends_with(r#"<span class="bad">failed</span> — The program refused the security key. <span class="muted">(<code>wrong_key</code>)</span>"#),
            "{text}"
        );
        // A summary that cannot be read falls back to the columns.
        let text = last_poll(&polled_integration(Some("ok"), None), now).into_string();
        assert!(text.ends_with(": done"), "{text}");
        let never = Integration {
            last_poll_at: None,
            ..polled_integration(None, None)
        };
        assert_eq!(last_poll(&never, now).into_string(), "not yet");
    }

    #[test]
    fn mapping_placeholder_is_the_property_currency() {
        let html = mapping_editor(&[], &Errors::default(), "GBP").into_string();
        assert!(
            html.contains(r#"placeholder="GBP" aria-label="Fixed currency""#),
            "{html}"
        );
        assert!(!html.contains("EUR"), "{html}");
    }

    #[test]
    fn mapping_rows_round_trip_and_errors() {
        let rows = vec![
            MapRow {
                source: "registration".into(),
                event: "Lead".into(),
                value: "none".into(),
                send: true,
                ..MapRow::default()
            },
            MapRow {
                source: "commission".into(),
                event: "Purchase".into(),
                value: "reported".into(),
                send: true,
                ..MapRow::default()
            },
            MapRow {
                source: "cpa".into(),
                event: "".into(),
                value: "fixed".into(),
                amount: "25".into(),
                currency: "EUR".into(),
                send: false,
            },
        ];
        let mut errors = Errors::default();
        let m = mapping_from_rows(&rows, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(m.0.len(), 3);
        assert!(m.0["cpa"].event.is_none());
        let back = rows_of(&m);
        assert_eq!(back.len(), 3);

        let bad = vec![
            MapRow {
                source: "".into(),
                event: "Lead".into(),
                ..MapRow::default()
            },
            MapRow {
                source: "x".into(),
                event: "9bad name".into(),
                ..MapRow::default()
            },
            MapRow {
                source: "y".into(),
                event: "Lead".into(),
                value: "fixed".into(),
                amount: "abc".into(),
                ..MapRow::default()
            },
        ];
        let mut errors = Errors::default();
        mapping_from_rows(&bad, &mut errors);
        assert!(errors.get("mapping.0").is_some());
        assert!(errors.get("mapping.1").is_some());
        assert!(errors.get("mapping.2").is_some());
    }
}
