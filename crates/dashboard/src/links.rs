//! Tracked links (`/go/{property_id}/{slug}`) for direct linking: the
//! property's links with their clicks (last 30 days and all time) and the
//! conversions and revenue of those clicks, the create form, and a link's
//! page with its tracked URL (copy button), destination editing and pause /
//! resume.
//!
//! Every action calls the engine's links service, the one the JSON API
//! calls, with the session's caller: the slug and destination rules are
//! the API's, and a refusal's field problems show beside the form's fields.
//! The numbers come from one grouped query per page
//! (`clicktrail_store::links::stats`).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clicktrail_domain::money::Amount;
use clicktrail_engine::ServiceError;
use clicktrail_engine::links::{CreateLink, LinkReport, RECENT_DAYS, UpdateLink};
use clicktrail_store::integrations::Integration;
use clicktrail_store::links::LinkStats;
use clicktrail_store::properties::Property;
use maud::{Markup, html};
use serde::Deserialize;

use crate::error::DashResult;
use crate::properties::owned;
use crate::session::{Dash, DashForm, FormData};
use crate::ui::{self, Chrome, Errors, Input, Tab};
use crate::{DashError, DashState, html, see_other};

#[derive(Debug, Deserialize, Default)]
pub struct DoneQuery {
    pub done: Option<String>,
}

/// How many characters of a destination the list shows (the whole URL is
/// in the cell's title and on the link's page).
const SHORT_URL_CHARS: usize = 48;

/// A destination URL without its scheme, cut to [`SHORT_URL_CHARS`].
fn short_url(url: &str) -> String {
    let bare = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url);
    if bare.chars().count() <= SHORT_URL_CHARS {
        return bare.to_owned();
    }
    let mut s: String = bare.chars().take(SHORT_URL_CHARS - 1).collect();
    s.push('…');
    s
}

fn status_badge(paused: bool) -> Markup {
    if paused {
        ui::badge("paused", "warn")
    } else {
        ui::badge("active", "good")
    }
}

/// Conversions over every currency.
fn conversions(s: &LinkStats) -> i64 {
    s.revenue.iter().map(|r| r.conversions).sum()
}

/// Revenue in the property's reporting currency, other currencies beside
/// it (never converted), as the reports show it.
fn revenue_cell(s: &LinkStats, currency: &str) -> Markup {
    let main = s
        .revenue
        .iter()
        .find(|r| r.currency == currency)
        .map_or(Amount::ZERO, |r| r.revenue);
    let others: Vec<String> = s
        .revenue
        .iter()
        .filter(|r| r.currency != currency && !r.revenue.is_zero())
        .map(|r| ui::money(r.revenue, &r.currency))
        .collect();
    html! {
        (ui::amount(main))
        @if !others.is_empty() { br; span.muted.other-cur { "+ " (others.join(" + ")) } }
    }
}

/// The integration choices of the create form.
fn integration_options(integrations: &[Integration]) -> Vec<(String, String)> {
    let mut v = vec![(
        String::new(),
        "None: the group its destination matches".to_owned(),
    )];
    v.extend(integrations.iter().map(|i| {
        (
            i.id.clone(),
            format!("{} (tracking group {})", i.name, i.tracking_group),
        )
    }));
    v
}

/// A refusal shown on the form: each field problem beside its field, or
/// the refusal's message at the top when it names none. A server error is
/// the dashboard's error page.
fn add_problems(errors: &mut Errors, e: ServiceError) -> Result<(), DashError> {
    if e.status.is_server_error() {
        return Err(DashError::Internal);
    }
    if e.fields.is_empty() {
        // `slug_taken` is about the slug field.
        let field = if e.code == "slug_taken" {
            "slug"
        } else {
            "_form"
        };
        errors.add(field, capitalised(&e.message));
    }
    for f in &e.fields {
        errors.add(&f.field, capitalised(&f.message));
    }
    Ok(())
}

fn capitalised(m: &str) -> String {
    let mut c = m.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn create_form(
    p: &Property,
    dash: &Dash,
    integrations: &[Integration],
    values: &FormData,
    errors: &Errors,
) -> Markup {
    html! {
        form.card method="post" action={ "/p/" (p.id) "/links" } novalidate autocomplete="off" id="new-link" {
            (ui::csrf(dash.csrf()))
            (ui::form_error(errors.get("_form")))
            (ui::input("Destination URL", "destination_url", values.get("destination_url"), errors, Input {
                kind: "url",
                required: true,
                placeholder: Some("https://offer.example/landing?aff=123"),
                help: Some("Where visitors go: the offer or affiliate link. The click id is added as the tracking group's subid (or replaces --CLICK-ID-- in the URL)."),
                ..Input::default()
            }))
            (ui::input("Slug (optional)", "slug", values.get("slug"), errors, Input {
                placeholder: Some("black-friday"),
                help: Some("The end of the tracked URL: letters, digits, - and _. Leave empty for a random one."),
                ..Input::default()
            }))
            (ui::select("Integration (optional)", "integration", &integration_options(integrations), values.get("integration"), errors,
                Some("The network whose subid carries the click id. None: the installed integration whose links the destination looks like, if any.")))
            button.primary type="submit" data-test="create-link" { "Create link" }
        }
    }
}

fn list_body(
    p: &Property,
    dash: &Dash,
    links: &[LinkReport],
    integrations: &[Integration],
    values: &FormData,
    errors: &Errors,
) -> Markup {
    let currency = p.settings.currency.as_str();
    html! {
        h1 { "Tracked links" }
        p.muted {
            "Direct linking: put a tracked URL in your ads or emails instead of the offer's. Each visit through it records a session and a click, then sends the visitor on to the offer with the click id as subid, so the network's conversion comes back attributed."
        }
        table.data.links {
            thead { tr {
                th { "Link" } th { "Destination" } th { "Group" } th { "Status" }
                th.num { "Clicks (" (RECENT_DAYS) " d)" } th.num { "Clicks (all)" }
                th.num { "Conversions" } th.num { "Revenue (" (currency) ")" } th { "Created" }
            } }
            tbody {
                @if links.is_empty() { tr { td.muted colspan="9" { "No tracked link yet: create one below." } } }
                @for r in links {
                    @let l = &r.link;
                    tr data-link=(l.slug) {
                        td {
                            a href={ "/p/" (p.id) "/links/" (l.id) } { strong { (l.slug) } }
                            br;
                            code.small id={ "url-" (l.id) } { (l.url) }
                            " "
                            button.small.copy type="button" data-copy={ "url-" (l.id) } { "Copy" }
                        }
                        td title=(l.destination_url) { (short_url(&l.destination_url)) }
                        td { @if let Some(g) = &r.tracking_group { code { (g) } } @else { span.muted { "none" } } }
                        td { (status_badge(l.paused)) }
                        td.num data-col="recent-clicks" { (ui::int(r.stats.recent_clicks)) }
                        td.num data-col="clicks" { (ui::int(r.stats.clicks)) }
                        td.num data-col="conversions" { (ui::int(conversions(&r.stats))) }
                        td.num data-col="revenue" { (revenue_cell(&r.stats, currency)) }
                        td.date { (ui::date(l.created_at.div_euclid(86_400_000))) }
                    }
                }
            }
        }
        p.help.muted {
            "Conversions are the validated conversions attributed to a click made through the link, less those reversed in full; revenue is their value after reversals and adjustments. Bot traffic is included."
        }
        h2 { "Create a tracked link" }
        (create_form(p, dash, integrations, values, errors))
    }
}

pub async fn list(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let (links, integrations) = futures::try_join!(
        state.services.links.reports(&dash.caller, p.id.as_str()),
        state
            .services
            .integrations
            .list(&dash.caller, p.id.as_str()),
    )?;
    let body = list_body(
        &p,
        &dash,
        &links,
        &integrations,
        &FormData::default(),
        &Errors::default(),
    );
    let c = Chrome::property(&dash, &p, Tab::Links, "Tracked links").notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn create(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let mut errors = Errors::default();
    let integration = Some(form.get("integration"))
        .filter(|i| !i.is_empty())
        .map(str::to_owned);
    let req = CreateLink {
        slug: form.get("slug").to_owned(),
        destination_url: form.get("destination_url").to_owned(),
        integration,
    };
    match state
        .services
        .links
        .create(&dash.caller, p.id.as_str(), req)
        .await
    {
        Ok(l) => {
            return Ok(see_other(&format!(
                "/p/{}/links/{}?done=created",
                p.id, l.id
            )));
        }
        Err(e) => add_problems(&mut errors, e)?,
    }
    let (links, integrations) = futures::try_join!(
        state.services.links.reports(&dash.caller, p.id.as_str()),
        state
            .services
            .integrations
            .list(&dash.caller, p.id.as_str()),
    )?;
    let body = list_body(&p, &dash, &links, &integrations, &form, &errors);
    let c = Chrome::property(&dash, &p, Tab::Links, "Tracked links");
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)))
}

/// The link with its numbers, if it is the property's.
async fn fetch(
    state: &DashState,
    dash: &Dash,
    p: &Property,
    lid: &str,
) -> Result<LinkReport, DashError> {
    let r = match state.services.links.report(&dash.caller, lid).await {
        Ok(r) => r,
        Err(e) if e.status.is_server_error() => return Err(DashError::Internal),
        Err(_) => return Err(DashError::NotFound),
    };
    if r.link.property_id != p.id.as_str() {
        return Err(DashError::NotFound);
    }
    Ok(r)
}

fn detail_body(
    p: &Property,
    dash: &Dash,
    r: &LinkReport,
    values: &FormData,
    errors: &Errors,
) -> Markup {
    let l = &r.link;
    let base = format!("/p/{}/links/{}", p.id, l.id);
    let currency = p.settings.currency.as_str();
    let destination = if values.fields.is_empty() {
        l.destination_url.as_str()
    } else {
        values.get("destination_url")
    };
    html! {
        p { a href={ "/p/" (p.id) "/links" } { "← Tracked links" } }
        div.heading {
            h1 { (l.slug) }
            span { (status_badge(l.paused)) }
        }
        section.card {
            h2 { "Tracked URL" }
            p { "Use this URL in your ads, emails or posts. Query parameters you add (utm_*, gclid, fbclid, ttclid…) are recorded as the visit's traffic source." }
            (ui::copy_box("tracked-url", &l.url, false))
        }
        section.card {
            h2 { "Performance" }
            div.kpis {
                div.kpi data-kpi="recent-clicks" { span.label { "Clicks (" (RECENT_DAYS) " days)" } span.value { (ui::int(r.stats.recent_clicks)) } }
                div.kpi data-kpi="clicks" { span.label { "Clicks (all time)" } span.value { (ui::int(r.stats.clicks)) } }
                div.kpi data-kpi="conversions" { span.label { "Conversions" } span.value { (ui::int(conversions(&r.stats))) } }
                div.kpi data-kpi="revenue" { span.label { "Revenue (" (currency) ")" } span.value { (revenue_cell(&r.stats, currency)) } }
            }
            p.help.muted { "Conversions attributed to clicks made through this link. Each conversion is in the " a href={ "/p/" (p.id) "/conversions" } { "conversion log" } "." }
        }
        section.card {
            h2 { "Status" }
            table.data.kv {
                tbody {
                    tr { th { "Status" } td { (status_badge(l.paused)) @if let Some(at) = l.paused_at { " " span.muted { "since " (ui::datetime(at)) } } } }
                    tr { th { "Tracking group" } td {
                        @if let Some(g) = &r.tracking_group { code { (g) } } @else { span.muted { "none: the click id is only put where the URL has --CLICK-ID--" } }
                        @if let Some(n) = &r.integration_name { " " span.muted { "(integration " (n) ")" } }
                    } }
                    tr { th { "Created" } td { (ui::datetime(l.created_at)) } }
                }
            }
            form.inline method="post" action={ (base) "/pause" } {
                (ui::csrf(dash.csrf()))
                @if l.paused {
                    input type="hidden" name="paused" value="false";
                    button type="submit" data-test="resume-link" { "Resume tracking" }
                } @else {
                    input type="hidden" name="paused" value="true";
                    button type="submit" data-test="pause-link"
                        data-confirm="Pause this link? It keeps sending visitors to the destination, but records no clicks (and so attributes no conversions) until you resume it." { "Pause" }
                }
            }
            p.help.muted { "A paused link still redirects to its destination, so ads that use it keep working; it records no visit or click, and the destination gets no click id." }
        }
        h2 { "Destination" }
        form.card method="post" action=(base) novalidate autocomplete="off" {
            (ui::csrf(dash.csrf()))
            (ui::form_error(errors.get("_form")))
            (ui::input("Destination URL", "destination_url", destination, errors, Input {
                kind: "url",
                required: true,
                help: Some("Changing it takes effect at once; the tracked URL stays the same."),
                ..Input::default()
            }))
            button.primary type="submit" data-test="save-link" { "Save" }
        }
    }
}

pub async fn page(
    State(state): State<DashState>,
    dash: Dash,
    Path((pid, lid)): Path<(String, String)>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let r = fetch(&state, &dash, &p, &lid).await?;
    let body = detail_body(&p, &dash, &r, &FormData::default(), &Errors::default());
    let c = Chrome::property(&dash, &p, Tab::Links, r.link.slug.clone()).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn update(
    State(state): State<DashState>,
    Path((pid, lid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let r = fetch(&state, &dash, &p, &lid).await?;
    let mut errors = Errors::default();
    let change = UpdateLink {
        destination_url: Some(form.get("destination_url").to_owned()),
        paused: None,
    };
    match state
        .services
        .links
        .update(&dash.caller, &r.link.id, change)
        .await
    {
        Ok(_) => {
            return Ok(see_other(&format!(
                "/p/{}/links/{}?done=saved",
                p.id, r.link.id
            )));
        }
        Err(e) => add_problems(&mut errors, e)?,
    }
    let body = detail_body(&p, &dash, &r, &form, &errors);
    let c = Chrome::property(&dash, &p, Tab::Links, r.link.slug.clone());
    Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)))
}

pub async fn pause(
    State(state): State<DashState>,
    Path((pid, lid)): Path<(String, String)>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let r = fetch(&state, &dash, &p, &lid).await?;
    let paused = form.get("paused") != "false";
    let change = UpdateLink {
        destination_url: None,
        paused: Some(paused),
    };
    state
        .services
        .links
        .update(&dash.caller, &r.link.id, change)
        .await?;
    Ok(see_other(&format!(
        "/p/{}/links/{}?done={}",
        p.id,
        r.link.id,
        if paused { "link_paused" } else { "resumed" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_urls() {
        assert_eq!(short_url("https://offer.example/x"), "offer.example/x");
        let long = format!("https://offer.example/{}", "a".repeat(100));
        let s = short_url(&long);
        assert_eq!(s.chars().count(), SHORT_URL_CHARS);
        assert!(s.ends_with('…'));
        assert_eq!(short_url("http://é.example/"), "é.example/");
    }

    #[test]
    fn capitalises() {
        assert_eq!(capitalised("an absolute URL"), "An absolute URL");
        assert_eq!(capitalised(""), "");
    }
}
