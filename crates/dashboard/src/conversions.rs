//! The conversion log (filters, status badges, the plain-language hint of
//! each error, raw payload, attribution, deliveries with their attempts and
//! retry buttons), the live events debugger, and the link checker.
//!
//! The log reads through the API's own filter and query
//! (`clicktrail_engine::conversion_log::filter_of`, `clicktrail_store::conversions::list`,
//! `delivery::deliveries_for_conversions`); retries go through the API's
//! retry handler in-process.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::NaiveDate;
use clicktrail_domain::conversion::{ErrorCode, LogStatus};
use clicktrail_domain::delivery::DeliveryStatus;
use clicktrail_domain::links::{LinkAttrs, LinkTag, tag_link};
use clicktrail_domain::money::Amount;
use clicktrail_domain::property::host_allowed;
use clicktrail_store::conversions::{self as store, LogEntry};
use clicktrail_store::integrations as store_integrations;
use clicktrail_store::properties::Property;
use clicktrail_store::{clicks, reports};
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::DashState;
use crate::error::DashResult;
use crate::properties::owned;
use crate::session::{Dash, DashForm};
use crate::ui::{self, Chrome, Errors, Input, Tab};
use crate::{DashError, html, see_other};
use clicktrail_engine::conversion_log::{LogQuery, filter_of};
use clicktrail_engine::delivery::DeliveryView;
use clicktrail_engine::link_checker::{
    CLICK_ID_PLACEHOLDER, MAX_REDIRECT_LINKS, PageError, RedirectOutcome, RedirectReport,
};

#[derive(Debug, Deserialize, Default)]
pub struct LogParams {
    pub status: Option<String>,
    pub error_code: Option<String>,
    pub integration: Option<String>,
    /// YYYY-MM-DD (UTC), inclusive.
    pub from: Option<String>,
    pub to: Option<String>,
    pub cursor: Option<String>,
    pub done: Option<String>,
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

fn day_ms(s: &str) -> Option<i64> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(d.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

/// A conversion's status as a badge; the match is exhaustive so a new
/// status has to choose its tone here.
pub fn log_badge(status: LogStatus) -> Markup {
    let kind = match status {
        LogStatus::Validated => "good",
        LogStatus::Error => "bad",
        LogStatus::Adjustment => "info",
        LogStatus::Ignored => "",
    };
    ui::badge(status.as_str(), kind)
}

/// A delivery's status as a badge.
pub fn delivery_badge(status: DeliveryStatus) -> Markup {
    let kind = match status {
        DeliveryStatus::Delivered => "good",
        DeliveryStatus::Failed | DeliveryStatus::Dead => "bad",
        DeliveryStatus::Pending | DeliveryStatus::Retrying => "info",
        DeliveryStatus::Skipped | DeliveryStatus::Cancelled => "",
    };
    ui::badge(status.as_str(), kind)
}

/// An integration's name, marked when it was deleted (its conversions
/// stay in the log).
fn integration_label(i: &store_integrations::Integration) -> String {
    if i.deleted_at.is_some() {
        format!("{} (deleted)", i.name)
    } else {
        i.name.clone()
    }
}

fn value_text(value: Option<Amount>, currency: Option<&str>) -> String {
    match value {
        Some(v) => format!("{v} {}", currency.unwrap_or("")),
        None => "–".into(),
    }
}

fn hint(code: Option<&str>) -> Option<&'static str> {
    code.and_then(ErrorCode::parse).map(ErrorCode::hint)
}

pub async fn log(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<LogParams>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let mut errors = Errors::default();
    let from_ms = nonempty(&q.from).and_then(|d| {
        let v = day_ms(&d);
        if v.is_none() {
            errors.add("from", "Use a date such as 2026-01-31.");
        }
        v
    });
    let to_ms = nonempty(&q.to).and_then(|d| {
        let v = day_ms(&d).map(|t| t + 86_400_000);
        if v.is_none() {
            errors.add("to", "Use a date such as 2026-01-31.");
        }
        v
    });
    let lq = LogQuery {
        status: nonempty(&q.status),
        error_code: nonempty(&q.error_code),
        integration: nonempty(&q.integration),
        from: from_ms.map(|v| v.to_string()),
        to: to_ms.map(|v| v.to_string()),
        cursor: nonempty(&q.cursor),
        limit: Some(50),
    };
    let filter = match filter_of(&lq) {
        Ok(f) => Some(f),
        Err(e) => {
            for fp in e.fields {
                errors.add(&fp.field, fp.message);
            }
            None
        }
    };
    // Deleted integrations too: their conversions stay in the log.
    let installed = store_integrations::list_all_for_property(&state.db, &p.id).await?;
    let month_ago = chrono::Utc::now().timestamp_millis() - 30 * 86_400_000;
    let counts = store::counts(&state.db, &p.id, month_ago).await?;
    let entries = match &filter {
        Some(f) => store::list(&state.db, &p.id, f).await?,
        None => Vec::new(),
    };
    let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
    let deliveries =
        clicktrail_engine::delivery::deliveries_for_conversions(&state.db, &ids).await?;
    let next = filter
        .as_ref()
        .filter(|f| entries.len() as i64 == f.limit)
        .and_then(|_| entries.last())
        .map(|e| format!("{}.{}", e.received_at, e.id));
    let keep = |name: &str, v: &Option<String>| {
        nonempty(v)
            .map(|v| {
                format!(
                    "&{name}={}",
                    url::form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>()
                )
            })
            .unwrap_or_default()
    };
    let filter_qs = format!(
        "{}{}{}{}{}",
        keep("status", &q.status),
        keep("error_code", &q.error_code),
        keep("integration", &q.integration),
        keep("from", &q.from),
        keep("to", &q.to)
    );
    let opt = |v: &Option<String>| v.clone().unwrap_or_default();
    let mut status_opts = vec![(String::new(), "Any status".to_owned())];
    status_opts.extend(
        ["validated", "error", "adjustment", "ignored"].map(|s| (s.to_owned(), s.to_owned())),
    );
    let mut code_opts = vec![(String::new(), "Any error".to_owned())];
    code_opts.extend(ErrorCode::ALL.map(|c| (c.as_str().to_owned(), c.as_str().to_owned())));
    let mut int_opts = vec![(String::new(), "Any integration".to_owned())];
    int_opts.extend(
        installed
            .iter()
            .map(|i| (i.id.clone(), integration_label(i))),
    );
    let int_name = |id: &Option<String>| {
        id.as_deref()
            .and_then(|id| installed.iter().find(|i| i.id == id))
            .map(integration_label)
            .unwrap_or_default()
    };
    let body = html! {
        h1 { "Conversion log" }
        @if !counts.is_empty() {
            p.counts {
                "Last 30 days: "
                @for (status, code, n) in &counts {
                    a href={ "/p/" (p.id) "/conversions?status=" (status) @if let Some(c) = code { "&error_code=" (c) } } {
                        (LogStatus::parse(status).map_or_else(|| ui::badge(status, "warn"), log_badge)) @if let Some(c) = code { " " code { (c) } } " " (n)
                    } " "
                }
            }
        }
        form.controls method="get" action={ "/p/" (p.id) "/conversions" } {
            div.field.inline { (ui::select("Status", "status", &status_opts, &opt(&q.status), &errors, None)) }
            div.field.inline { (ui::select("Error", "error_code", &code_opts, &opt(&q.error_code), &errors, None)) }
            div.field.inline { (ui::select("Integration", "integration", &int_opts, &opt(&q.integration), &errors, None)) }
            div.field.inline { (ui::input("From", "from", &opt(&q.from), &errors, Input { kind: "date", ..Input::default() })) }
            div.field.inline { (ui::input("To", "to", &opt(&q.to), &errors, Input { kind: "date", ..Input::default() })) }
            button type="submit" { "Filter" }
        }
        table.data.log {
            thead { tr { th { "Received" } th { "Status" } th { "Event" } th.num { "Value" } th { "Click id" } th { "Attribution" } th { "Deliveries" } } }
            tbody {
                @if entries.is_empty() {
                    tr { td.muted colspan="7" { "No conversion matches. Conversions appear here as soon as a network reports them (postback or API poll)." } }
                }
                @for e in &entries {
                    tr data-status=(e.status) data-conversion=(e.id) {
                        td { a href={ "/p/" (p.id) "/conversions/" (e.id) } { (ui::datetime(e.received_at)) } br; span.muted.small { (int_name(&e.integration_id)) } }
                        td {
                            (log_badge(e.status))
                            @if let Some(c) = &e.error_code {
                                br; code { (c) }
                                @if let Some(h) = hint(Some(c)) { p.hint.small.muted { (h) } }
                            }
                        }
                        td { (e.source_event) @if let Some(n) = &e.event_name { " → " strong { (n) } } }
                        td.num { (value_text(e.value.map(|v| v.saturating_add(e.adjusted)), e.currency.as_deref())) }
                        td { @if let Some(c) = &e.click_id { code.small { (c) } } @else { span.muted { "none" } } }
                        td.small {
                            @if e.status == LogStatus::Validated {
                                (e.source.as_deref().unwrap_or("")) " / " (e.medium.as_deref().unwrap_or(""))
                                @if let Some(c) = &e.campaign { br; "campaign " (c) }
                            } @else { span.muted { "–" } }
                        }
                        td {
                            @for d in deliveries.get(&e.id).map(Vec::as_slice).unwrap_or(&[]) {
                                span title=(d.last_message.clone().unwrap_or_default()) { (d.destination_name) " " (delivery_badge(d.status)) } br;
                            }
                        }
                    }
                }
            }
        }
        @if let Some(n) = next {
            p { a href={ "/p/" (p.id) "/conversions?cursor=" (n) (filter_qs) } { "Older conversions →" } }
        }
    };
    let c =
        Chrome::property(&dash, &p, Tab::Conversions, "Conversion log").notice(q.done.as_deref());
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok(html(status, ui::page(&c, body)))
}

async fn owned_conversion(
    state: &DashState,
    p: &Property,
    cid: &str,
) -> Result<LogEntry, DashError> {
    if cid.len() > 64 {
        return Err(DashError::NotFound);
    }
    store::get(&state.db, cid)
        .await?
        .filter(|e| e.property_id == p.id.as_str())
        .ok_or(DashError::NotFound)
}

/// A session's ad click ids (stored as a JSON object of name to id) as
/// pairs, to show as words; text that is no such object gives none.
fn click_ids(stored: Option<&str>) -> Vec<(String, String)> {
    stored
        .and_then(|t| serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(t).ok())
        .map(|m| {
            m.into_iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (k, v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn attribution_table(e: &LogEntry) -> Markup {
    html! {
        table.data {
            thead { tr { th {} th { "Last click" } th { "First click" } } }
            tbody {
                tr { th { "Channel" } td { (e.channel.as_deref().unwrap_or("–")) } td { (e.first_channel.as_deref().unwrap_or("–")) } }
                tr { th { "Source / medium" } td { (e.source.as_deref().unwrap_or("–")) " / " (e.medium.as_deref().unwrap_or("–")) } td { (e.first_source.as_deref().unwrap_or("–")) " / " (e.first_medium.as_deref().unwrap_or("–")) } }
                tr { th { "Campaign" } td { (e.campaign.as_deref().unwrap_or("–")) } td { (e.first_campaign.as_deref().unwrap_or("–")) } }
                tr { th { "Ad" } td { (e.ad.as_deref().unwrap_or("–")) } td { (e.first_ad.as_deref().unwrap_or("–")) } }
                tr { th { "Landing page" } td { (e.landing_page.as_deref().unwrap_or("–")) } td { (e.first_landing_page.as_deref().unwrap_or("–")) } }
            }
        }
    }
}

fn deliveries_markup(p: &Property, dash: &Dash, list: &[DeliveryView]) -> Markup {
    html! {
        @if list.is_empty() { p.muted { "No delivery: no destination wanted this conversion (or it is not validated)." } }
        @for d in list {
            section.card.delivery data-delivery=(d.id) {
                div.heading {
                    h3 { (d.destination_name) " " span.muted.small { (d.destination_kind) " · " (d.event_name) } }
                    span { (delivery_badge(d.status)) }
                }
                p.small {
                    "Attempts: " (d.attempts)
                    @if let Some(r) = &d.reason { " · reason " code { (r) } }
                    @if let Some(t) = d.next_attempt_at { " · next attempt " (ui::datetime(t)) }
                    @if d.waiting_for_destination { " · waiting for the destination to be resumed or fixed" }
                    @if let Some(t) = d.delivered_at { " · delivered " (ui::datetime(t)) }
                }
                @if let Some(m) = &d.last_message { p { "Platform's answer: " (m) } }
                @if let Some(log) = &d.attempt_log {
                    @if !log.is_empty() {
                        table.data.small {
                            thead { tr { th { "When" } th { "HTTP" } th { "Outcome" } th { "Message" } th { "Response" } } }
                            tbody {
                                @for a in log {
                                    tr {
                                        td { (ui::datetime(a.at)) br; span.muted { (a.duration_ms) " ms" } }
                                        td { (a.http_status.map(|s| s.to_string()).unwrap_or_else(|| "–".into())) }
                                        td { (a.outcome) @if let Some(r) = &a.reason { br; code { (r) } } }
                                        td { (a.message) }
                                        td { @if !a.response_excerpt.is_empty() { details { summary { "show" } pre { (a.response_excerpt) } } } }
                                    }
                                }
                            }
                        }
                    }
                }
                @if matches!(d.status, DeliveryStatus::Failed | DeliveryStatus::Dead) {
                    form.inline method="post" action={ "/p/" (p.id) "/deliveries/" (d.id) "/retry" } {
                        (ui::csrf(dash.csrf()))
                        button type="submit" data-test="retry" { "Retry" }
                    }
                }
            }
        }
    }
}

pub async fn detail(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, cid)): Path<(String, String)>,
    Query(q): Query<LogParams>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let e = owned_conversion(&state, &p, &cid).await?;
    let mut deliveries =
        clicktrail_engine::delivery::deliveries_for_conversions(&state.db, &[e.id.as_str()])
            .await?;
    let list = deliveries.remove(&e.id).unwrap_or_default();
    let session = match e.session_id {
        Some(s) => clicks::get_session(&state.db, s).await?,
        None => None,
    };
    let integration = match &e.integration_id {
        Some(i) => store_integrations::get_any(&state.db, i).await?,
        None => None,
    };
    let body = html! {
        p { a href={ "/p/" (p.id) "/conversions" } { "← Conversion log" } }
        div.heading {
            h1 { (e.source_event) @if let Some(n) = &e.event_name { " → " (n) } }
            span { (log_badge(e.status)) }
        }
        @if let Some(c) = &e.error_code {
            div.alert role="alert" {
                p { strong { code { (c) } } @if let Some(d) = &e.error_detail { ": " (d) } }
                @if let Some(h) = hint(Some(c)) { p { (h) } }
            }
        }
        table.data.kv {
            tbody {
                tr { th { "Conversion id" } td { code { (e.id) } } }
                tr { th { "Event reference" } td { code { (e.event_id) } } }
                tr { th { "Integration" } td { (integration.as_ref().map(integration_label).unwrap_or_else(|| "–".into())) " (" (e.source_kind) ")" } }
                tr { th { "Transaction id" } td { (e.transaction_id.as_deref().unwrap_or("–")) } }
                tr { th { "Network status" } td { (e.source_status) } }
                tr { th { "Value" } td { (value_text(e.value, e.currency.as_deref())) @if !e.adjusted.is_zero() { " (adjusted by " (value_text(Some(e.adjusted), e.currency.as_deref())) ")" } } }
                tr { th { "Occurred" } td { (ui::datetime(e.occurred_at)) } }
                tr { th { "Received" } td { (ui::datetime(e.received_at)) } }
                tr { th { "Click id" } td { (e.click_id.as_deref().unwrap_or("none")) @if let Some(t) = e.click_ts { " · clicked " (ui::datetime(t)) } } }
                tr { th { "Tracking group / offer" } td { (e.link_group.as_deref().unwrap_or("–")) " · " (e.offer.as_deref().unwrap_or("–")) } }
                tr { th { "Sent to ad platforms" } td { (if e.send_to_destinations { "yes" } else { "no (event mapping)" }) } }
                @if let Some(d) = &e.duplicate_of { tr { th { "Duplicate of" } td { a href={ "/p/" (p.id) "/conversions/" (d) } { (d) } } } }
                @if let Some(a) = &e.adjusts_id { tr { th { "Adjusts" } td { a href={ "/p/" (p.id) "/conversions/" (a) } { (a) } } } }
            }
        }
        h2 { "Attribution" }
        @if e.session_id.is_some() {
            (attribution_table(&e))
            @if let Some(s) = &session {
                p { "Ad click ids of the session: "
                    @let ids = click_ids(s.click_ids.as_deref());
                    @if ids.is_empty() { span.muted { "none" } }
                    @for (n, (name, value)) in ids.iter().enumerate() { @if n > 0 { ", " } (name) " " code { (value) } }
                    @if let Some(fbc) = &s.fbc { " · fbc " code { (fbc) } }
                    @if let Some(fbp) = &s.fbp { " · fbp " code { (fbp) } }
                    @if let Some(ttp) = &s.ttp { " · _ttp " code { (ttp) } }
                }
                p.muted.small { "Device " (s.device) " · " (s.browser.as_deref().unwrap_or("")) " on " (s.os.as_deref().unwrap_or("")) @if s.is_bot { " · bot" } }
            }
        } @else {
            p.muted { "Not attributed: no tracked click or session. clicktrail never invents one." }
        }
        h2 { "Deliveries" }
        (deliveries_markup(&p, &dash, &list))
        h2 { "Raw payload" }
        pre.card.raw { (ui::pretty_json(&e.raw)) }
    };
    let c = Chrome::property(&dash, &p, Tab::Conversions, "Conversion").notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn retry_delivery(
    State(state): State<DashState>,
    Path((pid, did)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    if did.len() > 64 {
        return Err(DashError::NotFound);
    }
    let row = clicktrail_store::deliveries::get_delivery(&state.db, &did)
        .await?
        .filter(|d| d.property_id == p.id.as_str())
        .ok_or(DashError::NotFound)?;
    state
        .services
        .destinations
        .retry_delivery(&dash.caller, &did)
        .await?;
    Ok(see_other(&format!(
        "/p/{}/conversions/{}?done=retried",
        p.id, row.conversion_id
    )))
}

// ---------------------------------------------------------------------------
// Live events
// ---------------------------------------------------------------------------

/// How far back (in event rows, all properties) the first load looks: the
/// scan stays bounded whatever the table's size.
const LIVE_WINDOW: i64 = 50_000;
const LIVE_ROWS: i64 = 100;

#[derive(Debug, Serialize)]
pub struct LiveEvent {
    pub time: String,
    pub kind: String,
    pub name: String,
    pub detail: String,
    pub source: String,
}

#[derive(Debug, Deserialize, Default)]
pub struct LiveQuery {
    /// `<last event row id>.<last conversion received_at>`.
    pub after: Option<String>,
}

/// The feed after a cursor (or the latest when there is none), newest
/// first, with the next cursor.
async fn live_feed(
    state: &DashState,
    p: &Property,
    after: Option<&str>,
) -> Result<(Vec<(i64, LiveEvent)>, String), DashError> {
    let db = &state.db;
    let pid = p.id.as_str();
    let parsed = after.and_then(|a| {
        let (e, c) = a.split_once('.')?;
        Some((e.parse::<i64>().ok()?, c.parse::<i64>().ok()?))
    });
    let (after_event, after_conv) = match parsed {
        Some(x) => x,
        None => (reports::max_event_id(db).await? - LIVE_WINDOW, 0),
    };
    let events = reports::live_events(db, pid, after_event, LIVE_ROWS).await?;
    let convs = reports::live_conversions(db, pid, after_conv, 20).await?;
    let next_event = events.first().map(|e| e.id).unwrap_or(after_event.max(0));
    let next_conv = convs.first().map(|c| c.received_at).unwrap_or(after_conv);
    let mut out: Vec<(i64, LiveEvent)> = Vec::with_capacity(events.len() + convs.len());
    for e in events {
        let detail = match (&e.click_id, &e.link_url) {
            (Some(c), Some(l)) => format!(
                "click id {c} → {l}{}",
                e.link_group
                    .as_deref()
                    .map(|g| format!(" ({g})"))
                    .unwrap_or_default()
            ),
            _ => e.url.clone(),
        };
        let kind = match e.name.as_str() {
            "PageView" => "pageview",
            "OutboundClick" => "click",
            _ => "event",
        };
        out.push((
            e.ts,
            LiveEvent {
                time: ui::datetime(e.ts),
                kind: kind.into(),
                name: e.name,
                detail,
                source: format!(
                    "{} / {}",
                    e.source.as_deref().unwrap_or("?"),
                    e.medium.as_deref().unwrap_or("?")
                ),
            },
        ));
    }
    for c in convs {
        out.push((
            c.received_at,
            LiveEvent {
                time: ui::datetime(c.received_at),
                kind: "conversion".into(),
                name: format!(
                    "{} → {}",
                    c.source_event,
                    c.event_name.as_deref().unwrap_or("(none)")
                ),
                detail: format!(
                    "{} {} · click id {} · {}",
                    c.status,
                    c.error_code.as_deref().unwrap_or(""),
                    c.click_id.as_deref().unwrap_or("none"),
                    value_text(c.value, c.currency.as_deref())
                ),
                source: c.id,
            },
        ));
    }
    out.sort_by_key(|e| std::cmp::Reverse(e.0));
    Ok((out, format!("{next_event}.{next_conv}")))
}

pub async fn live_page(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let (events, cursor) = live_feed(&state, &p, None).await?;
    let body = html! {
        div.heading {
            h1 { "Live events" }
            span { span id="live-status" .muted { "Listening…" } " " button.small id="live-toggle" type="button" { "Pause" } }
        }
        p.muted { "The latest PageViews, OutboundClicks (with their click ids) and conversions of this property, as they arrive. Nothing here after loading a page of your site? Check that the snippet is in its " code { "<head>" } " and that the page's domain is one of the property's domains." }
        table.data.live-table data-live={ "/p/" (p.id) "/live.json" } data-after=(cursor) {
            thead { tr { th { "Time" } th { "Kind" } th { "Name" } th { "Detail" } th { "Source" } } }
            tbody {
                @if events.is_empty() { tr id="live-empty" { td.muted colspan="5" { "No recent event yet." } } }
                @for (_, e) in &events {
                    tr { td { (e.time) } td { (e.kind) } td { (e.name) } td.key { (e.detail) } td { (e.source) } }
                }
            }
        }
    };
    let c = Chrome::property(&dash, &p, Tab::Live, "Live events");
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn live_json(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<LiveQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let (events, cursor) = live_feed(&state, &p, q.after.as_deref()).await?;
    let list: Vec<LiveEvent> = events.into_iter().map(|(_, e)| e).collect();
    let mut resp = axum::Json(json!({ "events": list, "cursor": cursor })).into_response();
    super::secure_headers(&mut resp);
    Ok(resp)
}

// ---------------------------------------------------------------------------
// Link checker
// ---------------------------------------------------------------------------

const PREVIEW_CLICK_ID: &str = "CLICKID_PREVIEW_0123456789";

fn checker_form(p: &Property, dash: &Dash, url: &str, errors: &Errors) -> Markup {
    html! {
        form.card method="post" action={ "/p/" (p.id) "/link-checker" } novalidate {
            (ui::csrf(dash.csrf()))
            (ui::input("Page URL", "url", url, errors, Input { kind: "url", required: true, placeholder: Some(&format!("https://{}/", p.domains.first().map(String::as_str).unwrap_or("example.com"))), help: Some("A page of your site (one of the property's domains). The server fetches it and shows how the tag will treat each link."), ..Input::default() }))
            button.primary type="submit" { "Check links" }
        }
    }
}

pub async fn link_checker_page(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let body = html! {
        h1 { "Link checker" }
        p.muted { "Is this link AutoTagged? Paste a page of your site to see every link with the tracking group it matches and what the tag will do to it, using the same rules as the tag. Links of a redirect plugin of your site (/go/, /out/, /recommends/, ...) are followed with a test click id, to see whether it reaches the network." }
        (checker_form(&p, &dash, "", &Errors::default()))
    };
    let c = Chrome::property(&dash, &p, Tab::LinkChecker, "Link checker");
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn link_checker(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let raw = form.get("url").to_owned();
    let mut errors = Errors::default();
    let render = |status: StatusCode, results: Markup, errors: &Errors| {
        let body = html! {
            h1 { "Link checker" }
            (checker_form(&p, &dash, &raw, errors))
            (results)
        };
        let c = Chrome::property(&dash, &p, Tab::LinkChecker, "Link checker");
        html(status, ui::page(&c, body))
    };
    let checker = &state.services.link_checker;
    let checked = match checker.fetch_page(&p, &raw).await {
        Ok(c) => c,
        Err(e) => {
            errors.add("url", e.message());
            let status = if e == PageError::RateLimited {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return Ok(render(status, html! {}, &errors));
        }
    };
    let redirects = checker.check_redirects(&p, &checked).await?;
    let (page, links, base) = (&checked.page, &checked.links, &checked.base);
    let groups = state.services.properties.groups(&p.id).await?;
    let all_groups = state.services.catalog.tracking_groups();
    let prefixes = &p.settings.autoscan_prefixes;
    let mut tagged = 0;
    let rows: Vec<Markup> = links
        .iter()
        .map(|l| {
            let attrs = LinkAttrs {
                href: &l.href,
                data_tracking_group: l.data_tracking_group.as_deref(),
                rel: l.rel.as_deref(),
            };
            let outcome = tag_link(&groups, base, &attrs, PREVIEW_CLICK_ID);
            let catalog_hit = match &outcome {
                LinkTag::Untouched => clicktrail_domain::links::resolve_href(&l.href, base)
                    .and_then(|u| clicktrail_domain::links::find_group_for_url(&all_groups, &u).map(|g| g.key.clone())),
                LinkTag::Tagged { .. } => None,
            };
            let autoscan = p.settings.autoscan
                && clicktrail_domain::links::resolve_href(&l.href, base).is_some_and(|u| {
                    u.host_str().is_some_and(|h| host_allowed(&p.domains, h))
                        && prefixes.iter().any(|pre| u.path().starts_with(pre.as_str()))
                });
            if matches!(outcome, LinkTag::Tagged { .. }) {
                tagged += 1;
            }
            html! {
                tr data-tagged=(matches!(outcome, LinkTag::Tagged { .. })) {
                    td.key { code.small { (l.href) } @if !l.text.is_empty() { br; span.muted.small { (l.text) } } }
                    @match &outcome {
                        LinkTag::Tagged { group, href } => {
                            td { @if let Some(g) = group { code { (g.key) } } @else { span.muted { "--CLICK-ID-- token" } } }
                            td { (ui::badge("AutoTagged", "good")) }
                            td.key { code.small { (href) } }
                        }
                        LinkTag::Untouched => {
                            td { @if let Some(k) = &catalog_hit { code { (k) } } @else { span.muted { "–" } } }
                            td {
                                @if autoscan { (ui::badge("AutoScan", "info")) }
                                @else if catalog_hit.is_some() { (ui::badge("not tagged", "warn")) }
                                @else { (ui::badge("not tracked", "")) }
                            }
                            td.small.muted {
                                @if autoscan { "A redirect link of your site: the server resolves it and the tag tags it if it leads to a known network." }
                                @else if let Some(k) = &catalog_hit { "Looks like a " (k) " link, but no installed integration uses that tracking group: install it from the Integration Catalog." }
                            }
                        }
                    }
                }
            }
        })
        .collect();
    let results = html! {
        section {
            h2 { "Links of " code { (page.chain.final_url.as_str()) } }
            p.muted {
                (links.len()) " link(s), " (tagged) " AutoTagged."
                @if page.chain.redirects() > 0 { " The page redirected " (page.chain.redirects()) " time(s)." }
                @if page.truncated { " Only the first 2 MB of the page were read." }
                @if groups.is_empty() { " No integration is installed yet, so only --CLICK-ID-- links are tagged." }
            }
            table.data {
                thead { tr { th { "Link" } th { "Tracking group" } th { "AutoTag" } th { "Tagged link (preview click id)" } } }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan="4" { "No links found on the page." } } }
                    @for r in rows { (r) }
                }
            }
        }
        (redirect_section(&redirects))
    };
    Ok(render(StatusCode::OK, results, &errors))
}

/// The badge of a redirect check's outcome.
fn outcome_badge(o: RedirectOutcome) -> Markup {
    let (text, kind) = match o {
        RedirectOutcome::ClickIdKept => ("click id kept", "good"),
        RedirectOutcome::ClickIdDropped => ("click id dropped", "bad"),
        RedirectOutcome::NotAffiliate => ("no network", ""),
        RedirectOutcome::RedirectLoop => ("redirect loop", "bad"),
        RedirectOutcome::TooManyRedirects => ("too many redirects", "bad"),
        RedirectOutcome::Unreachable => ("unreachable", "warn"),
        RedirectOutcome::RefusedAddress => ("refused address", "warn"),
        RedirectOutcome::RateLimited => ("not checked", ""),
    };
    ui::badge(text, kind)
}

/// The redirect-plugin links of the page: whether the click id the tag
/// adds reaches the network, the chain, and the fix when it does not.
fn redirect_section(r: &RedirectReport) -> Markup {
    html! {
        section data-test="redirect-links" {
            h2 { "Redirect links: does the click id reach the network?" }
            p.muted {
                "On a link of a redirect plugin of your site (/go/, /out/, /recommends/, ...) the tag can only add the click id to your own URL; it reaches the network only if the plugin passes the query string on. "
                "The server followed each such link as the tag tags it, with a test click id (shown as " code { (CLICK_ID_PLACEHOLDER) } "), and stopped before the network's own link, which it reads but never requests."
            }
            @if r.not_checked > 0 { p.muted { (r.not_checked) " more redirect link(s) were not checked (at most " (MAX_REDIRECT_LINKS) " a check)." } }
            table.data {
                thead { tr { th { "Link" } th { "Network" } th { "Click id" } th { "What happened" } } }
                tbody {
                    @if r.links.is_empty() { tr { td.muted colspan="4" { "No redirect-plugin links on the page." } } }
                    @for c in &r.links {
                        tr data-outcome=(c.outcome.code()) {
                            td.key { code.small { (c.href) } @if !c.text.is_empty() { br; span.muted.small { (c.text) } } }
                            td {
                                @if let Some(n) = &c.network { code { (n) } @if let Some(param) = &c.param { br; span.muted.small { "reads " code { (param) } } } }
                                @else { span.muted { "–" } }
                            }
                            td { (outcome_badge(c.outcome)) }
                            td.small {
                                p.hint { (c.message) }
                                @if let Some(fix) = &c.fix {
                                    div.attention role="alert" data-test="fix" { strong { "Fix: " } (fix) }
                                }
                                @if let Some(note) = &c.tag_note { p.hint.muted { (note) } }
                                @if !c.chain.is_empty() || c.final_url.is_some() {
                                    details {
                                        summary { "Redirect chain (" (c.chain.len()) " request(s))" }
                                        ol {
                                            @for h in &c.chain { li { code.small { (h.method) " " (h.status) " " (h.url) } } }
                                            @if let Some(f) = &c.final_url {
                                                @if c.chain.last().is_none_or(|h| &h.url != f) { li { code.small { "→ " (f) } } }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
