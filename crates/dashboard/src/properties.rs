//! Properties: list, create, settings (with what is kept for how long),
//! delete and restore, and each property's overview with its install
//! snippet and the setup checklist.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use clicktrail_domain::property::{
    IpHandling, OnsiteSettings, PixelSettings, PropertySettings, RetentionSettings,
    parse_domain_list, timezone_names,
};
use clicktrail_domain::public_url::{PUBLIC_URL_FIX, check_public_url_for};
use clicktrail_store::properties::{self, Property};
use clicktrail_store::{integrations as store_integrations, reports};
use maud::{Markup, html};

use crate::DashState;
use crate::accounts::DoneQuery;
use crate::error::DashResult;
use crate::session::{Dash, DashForm, FormData};
use crate::ui::{self, Chrome, Errors, Input, Section, Tab};
use crate::{DashError, html, see_other};
use clicktrail_engine::tag;

/// The session's property `pid`, or 404 (also for another workspace's).
pub async fn owned(state: &DashState, dash: &Dash, pid: &str) -> Result<Property, DashError> {
    Ok(state.services.properties.owned(&dash.caller, pid).await?)
}

pub async fn list(
    State(state): State<DashState>,
    dash: Dash,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let props = properties::list(&state.db, Some(dash.workspace_id())).await?;
    let deleted = properties::list_deleted(&state.db, Some(dash.workspace_id())).await?;
    let body = html! {
        div.heading {
            h1 { "Properties" }
            a.button.primary href="/properties/new" { "Add a property" }
        }
        @if props.is_empty() {
            div.empty {
                h2 { "Track your first site" }
                p { "A property is a site (or a group of landing pages) you track. Add one, paste its tag into the site's " code { "<head>" } ", and clicktrail starts recording visits, tagging your affiliate links and attributing conversions." }
                a.button.primary href="/properties/new" { "Add a property" }
            }
        } @else {
            table.data {
                thead { tr { th { "Name" } th { "Domains" } th { "Created" } th {} } }
                tbody {
                    @for p in &props {
                        tr {
                            td { a href={ "/p/" (p.id) } { (p.name) } }
                            td { (p.domains.join(", ")) }
                            td { (ui::datetime(p.created_at)) }
                            td.actions {
                                a href={ "/p/" (p.id) "/reports" } { "Reports" } " · "
                                a href={ "/p/" (p.id) "/conversions" } { "Conversion log" }
                            }
                        }
                    }
                }
            }
        }
        @if !deleted.is_empty() {
            section.deleted-properties {
                h2 { "Deleted properties" }
                p.muted { "A deleted property tracks nothing: its tag answers 404 and its events, links and postbacks are refused. Its data is purged for good at the date shown; until then it can be restored as it was." }
                table.data {
                    thead { tr { th { "Name" } th { "Domains" } th { "Deleted" } th { "Purged after" } th {} } }
                    tbody {
                        @for p in &deleted {
                            tr data-test="deleted-property" {
                                td { (p.name) }
                                td { (p.domains.join(", ")) }
                                td { (ui::opt_datetime(p.deleted_at)) }
                                td { (ui::opt_datetime(p.purge_after)) }
                                td.actions {
                                    @if dash.is_admin() {
                                        form.inline method="post" action={ "/properties/" (p.id) "/restore" } {
                                            (ui::csrf(dash.csrf()))
                                            button.small type="submit" data-test="restore-property" { "Restore" }
                                        }
                                    } @else {
                                        span.muted { "An admin can restore it." }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    let c = Chrome::new(&dash, "Properties", Section::Properties).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

fn window_options() -> Vec<(String, String)> {
    vec![
        ("1".into(), "1 day".into()),
        ("7".into(), "7 days".into()),
        ("30".into(), "30 days (default)".into()),
        ("60".into(), "60 days".into()),
        ("90".into(), "90 days".into()),
        ("unlimited".into(), "Unlimited".into()),
    ]
}

fn ip_options() -> Vec<(String, String)> {
    vec![
        ("truncate".into(), "Truncate (IPv4 /24, IPv6 /48): the default".into()),
        ("hash".into(), "Keyed hash: tells sessions apart, keeps no address".into()),
        ("encrypt".into(), "Encrypt: sent to Meta and TikTok with late conversions, cleared 7 days after the attribution window".into()),
        ("none".into(), "Keep nothing".into()),
    ]
}

fn ip_str(h: IpHandling) -> &'static str {
    match h {
        IpHandling::Truncate => "truncate",
        IpHandling::Hash => "hash",
        IpHandling::Encrypt => "encrypt",
        IpHandling::None => "none",
    }
}

/// The form's values, as typed (to re-show after an error).
#[derive(Debug, Clone)]
struct PropertyForm {
    name: String,
    domains: String,
    currency: String,
    timezone: String,
    window: String,
    session_timeout: String,
    autoscan: bool,
    prefixes: String,
    consent: bool,
    ip: String,
    pixel_meta: bool,
    pixel_google: bool,
    pixel_tiktok: bool,
    onsite_enabled: bool,
    onsite_events: String,
    onsite_browser: bool,
    onsite_min: String,
    onsite_max: String,
    onsite_secret_version: String,
    events_days: String,
}

impl PropertyForm {
    fn of(p: &Property) -> Self {
        let s = &p.settings;
        Self {
            name: p.name.clone(),
            domains: p.domains.join("\n"),
            currency: s.currency.clone(),
            timezone: s.timezone.clone(),
            window: s
                .attribution_window_days
                .map(|d| d.to_string())
                .unwrap_or_else(|| "unlimited".into()),
            session_timeout: s.session_timeout_min.to_string(),
            autoscan: s.autoscan,
            prefixes: s.autoscan_prefixes.join("\n"),
            consent: s.consent_required,
            ip: ip_str(s.ip_handling).into(),
            pixel_meta: s.pixels.meta,
            pixel_google: s.pixels.google,
            pixel_tiktok: s.pixels.tiktok,
            onsite_enabled: s.onsite.enabled,
            onsite_events: s.onsite.events.join(" "),
            onsite_browser: s.onsite.browser,
            onsite_min: s.onsite.min_value.to_string(),
            onsite_max: s.onsite.max_value.to_string(),
            onsite_secret_version: s.onsite.secret_version.to_string(),
            events_days: s.retention.events_days.to_string(),
        }
    }

    fn new_default() -> Self {
        let s = PropertySettings::default();
        Self {
            name: String::new(),
            domains: String::new(),
            currency: s.currency.clone(),
            timezone: s.timezone.clone(),
            window: "30".into(),
            session_timeout: s.session_timeout_min.to_string(),
            autoscan: s.autoscan,
            prefixes: s.autoscan_prefixes.join("\n"),
            consent: s.consent_required,
            ip: "truncate".into(),
            pixel_meta: true,
            pixel_google: true,
            pixel_tiktok: true,
            onsite_enabled: s.onsite.enabled,
            onsite_events: s.onsite.events.join(" "),
            onsite_browser: s.onsite.browser,
            onsite_min: s.onsite.min_value.to_string(),
            onsite_max: s.onsite.max_value.to_string(),
            onsite_secret_version: s.onsite.secret_version.to_string(),
            events_days: s.retention.events_days.to_string(),
        }
    }

    fn from_form(f: &FormData, full: bool) -> Self {
        // The short form (create) has only name, domains, currency and
        // time zone: the rest takes the defaults. In the full form an amount or version
        // left blank takes its default too, rather than failing to parse.
        let d = Self::new_default();
        let text = |name: &str, default: String| {
            if full {
                f.get(name).to_owned()
            } else {
                default
            }
        };
        let filled = |name: &str, default: String| {
            let v = f.get(name);
            if full && !v.trim().is_empty() {
                v.to_owned()
            } else {
                default
            }
        };
        let check = |name: &str, default: bool| if full { f.checked(name) } else { default };
        Self {
            name: f.get("name").to_owned(),
            domains: f.get("domains").to_owned(),
            currency: f.get("currency").to_ascii_uppercase(),
            // Left empty (or not in the form at all): UTC, as before time
            // zones were asked.
            timezone: Some(f.get("timezone").trim())
                .filter(|t| !t.is_empty())
                .map_or(d.timezone, str::to_owned),
            window: text("attribution_window", d.window),
            session_timeout: text("session_timeout_min", d.session_timeout),
            autoscan: check("autoscan", d.autoscan),
            prefixes: text("autoscan_prefixes", d.prefixes),
            consent: check("consent_required", d.consent),
            ip: text("ip_handling", d.ip),
            pixel_meta: check("pixel_meta", d.pixel_meta),
            pixel_google: check("pixel_google", d.pixel_google),
            pixel_tiktok: check("pixel_tiktok", d.pixel_tiktok),
            onsite_enabled: check("onsite_enabled", d.onsite_enabled),
            onsite_events: text("onsite_events", d.onsite_events),
            onsite_browser: check("onsite_browser", d.onsite_browser),
            onsite_min: filled("onsite_min_value", d.onsite_min),
            onsite_max: filled("onsite_max_value", d.onsite_max),
            onsite_secret_version: filled("onsite_secret_version", d.onsite_secret_version),
            events_days: filled("retention_events_days", d.events_days),
        }
    }

    /// Checks everything with the same rules as the API and reports every
    /// problem under its field.
    fn validate(&self) -> Result<(String, Vec<String>, PropertySettings), Errors> {
        let mut errors = Errors::default();
        let name = self.name.trim().to_owned();
        if name.is_empty() || name.chars().count() > 100 {
            errors.add("name", "Give the property a name of 1 to 100 characters.");
        }
        let domains = match parse_domain_list(&self.domains) {
            Ok(d) => d,
            Err(e) => {
                errors.add("domains", e.message);
                Vec::new()
            }
        };
        let window = match self.window.as_str() {
            "unlimited" => None,
            w => match w.parse::<u32>() {
                Ok(d) => Some(d),
                Err(_) => {
                    errors.add("attribution_window", "Choose one of the windows offered.");
                    None
                }
            },
        };
        let timeout = match self.session_timeout.trim().parse::<u32>() {
            Ok(t) => t,
            Err(_) => {
                errors.add(
                    "session_timeout_min",
                    "Enter a whole number of minutes between 1 and 1440.",
                );
                30
            }
        };
        let ip_handling = match self.ip.as_str() {
            "truncate" => IpHandling::Truncate,
            "hash" => IpHandling::Hash,
            "encrypt" => IpHandling::Encrypt,
            "none" => IpHandling::None,
            _ => {
                errors.add("ip_handling", "Choose one of the options offered.");
                IpHandling::Truncate
            }
        };
        let events_days = match self.events_days.trim().parse::<u32>() {
            Ok(d) => d,
            Err(_) => {
                errors.add(
                    "retention_events_days",
                    "Enter a whole number of days between 30 and 3650.",
                );
                RetentionSettings::DEFAULT_EVENTS_DAYS
            }
        };
        let settings = PropertySettings {
            attribution_window_days: window,
            session_timeout_min: timeout,
            autoscan: self.autoscan,
            autoscan_prefixes: self
                .prefixes
                .lines()
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            consent_required: self.consent,
            ip_handling,
            pixels: PixelSettings {
                meta: self.pixel_meta,
                google: self.pixel_google,
                tiktok: self.pixel_tiktok,
            },
            currency: self.currency.trim().to_owned(),
            timezone: self.timezone.clone(),
            onsite: OnsiteSettings {
                enabled: self.onsite_enabled,
                events: self
                    .onsite_events
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                browser: self.onsite_browser,
                min_value: self.onsite_min.trim().parse().unwrap_or_else(|_| {
                    errors.add("onsite_min_value", "Enter an amount such as 0.");
                    Default::default()
                }),
                max_value: self.onsite_max.trim().parse().unwrap_or_else(|_| {
                    errors.add("onsite_max_value", "Enter an amount such as 10000.");
                    Default::default()
                }),
                secret_version: self.onsite_secret_version.trim().parse().unwrap_or(1),
            },
            retention: RetentionSettings { events_days },
        };
        if let Err(errs) = settings.validate() {
            for e in errs {
                let field = match e.field.as_str() {
                    "settings.attribution_window_days" => "attribution_window",
                    "settings.session_timeout_min" => "session_timeout_min",
                    "settings.autoscan_prefixes" => "autoscan_prefixes",
                    "settings.currency" => "currency",
                    "settings.timezone" => "timezone",
                    "settings.onsite.events" => "onsite_events",
                    "settings.onsite.max_value" => "onsite_max_value",
                    "settings.retention.events_days" => "retention_events_days",
                    _ => "_form",
                };
                let msg = match field {
                    "retention_events_days" => "Enter a whole number of days between 30 and 3650.".to_owned(),
                    "currency" => "Enter a three-letter ISO 4217 currency code such as EUR or USD.".to_owned(),
                    "timezone" => format!("{:?} is not a time zone: choose one from the list, such as Europe/Malta, or UTC.", self.timezone),
                    "session_timeout_min" => "Enter a whole number of minutes between 1 and 1440.".to_owned(),
                    "autoscan_prefixes" => "Give at most 20 path prefixes, one per line, each starting with / (e.g. /go/).".to_owned(),
                    _ => e.message,
                };
                errors.add(field, msg);
            }
        }
        if errors.is_empty() {
            Ok((name, domains, settings))
        } else {
            Err(errors)
        }
    }
}

/// The time zone: typed, with every IANA name offered as the browser
/// completes it.
fn timezone_input(value: &str, errors: &Errors) -> Markup {
    html! {
        (ui::input("Time zone", "timezone", value, errors, Input { required: true, placeholder: Some("Europe/Malta"), autocomplete: Some("off"), list: Some("timezones"), help: Some("The property's IANA time zone, such as Europe/Malta or America/New_York (UTC by default). Stored with the property; reports still count days in UTC for now."), ..Input::default() }))
        datalist id="timezones" { @for tz in timezone_names() { option value=(tz) {} } }
    }
}

fn property_fields(v: &PropertyForm, errors: &Errors, full: bool) -> Markup {
    html! {
        (ui::input("Name", "name", &v.name, errors, Input { required: true, placeholder: Some("My review site"), ..Input::default() }))
        (ui::textarea("Domains", "domains", &v.domains, errors, 3, Some("Host names such as example.com, one per line or separated by commas: example.com also allows www.example.com and every other subdomain. The tag and the collector refuse pages of other domains.")))
        (ui::input("Reporting currency", "currency", &v.currency, errors, Input { required: true, placeholder: Some("EUR"), help: Some("ISO 4217 code. Revenue in other currencies is listed separately (no conversion)."), ..Input::default() }))
        (timezone_input(&v.timezone, errors))
        @if full {
            fieldset {
                legend { "Attribution" }
                (ui::select("Attribution window", "attribution_window", &window_options(), &v.window, errors, Some("A conversion reported later than this after its click is logged as outside_window and not attributed.")))
                (ui::input("Session timeout (minutes)", "session_timeout_min", &v.session_timeout, errors, Input { kind: "number", help: Some("A visitor inactive this long starts a new session on the next page (1 to 1440)."), ..Input::default() }))
            }
            fieldset {
                legend { "Links" }
                (ui::checkbox("AutoScan redirect links", "autoscan", v.autoscan, Some("Let the server resolve links behind your own redirect plugins to learn their network.")))
                (ui::textarea("AutoScan path prefixes", "autoscan_prefixes", &v.prefixes, errors, 4, Some("One per line, e.g. /go/ or /recommends/.")))
            }
            fieldset {
                legend { "Privacy" }
                (ui::checkbox("Wait for consent", "consent_required", v.consent, Some("The tag stores and sends nothing until your consent banner calls clicktrail('consent', true). The server also stores no visitor id, address or hashed email / phone for an event or /go visit without consent: it counts it anonymously (see docs/PRIVACY.md, Consent).")))
                (ui::select("Client IP addresses", "ip_handling", &ip_options(), &v.ip, errors, None))
            }
            fieldset {
                legend { "Browser pixels fired with the same event ids" }
                (ui::checkbox("Meta pixel (fbq)", "pixel_meta", v.pixel_meta, None))
                (ui::checkbox("Google tag (gtag)", "pixel_google", v.pixel_google, None))
                (ui::checkbox("TikTok pixel (ttq)", "pixel_tiktok", v.pixel_tiktok, None))
            }
            fieldset {
                legend { "On-site conversions" }
                (ui::checkbox("Custom events from the site become conversions", "onsite_enabled", v.onsite_enabled, Some("Off: events such as Purchase sent by the tag are kept as traffic only. See docs/COLLECTOR.md.")))
                (ui::input("Allowed events", "onsite_events", &v.onsite_events, errors, Input { placeholder: Some("Lead Purchase"), help: Some("Event names, separated by spaces."), ..Input::default() }))
                (ui::checkbox("Accept them from browsers on the site", "onsite_browser", v.onsite_browser, Some("Off: only from your backend, signed, through /collect/server.")))
                (ui::input("Smallest value", "onsite_min_value", &v.onsite_min, errors, Input::default()))
                (ui::input("Largest value", "onsite_max_value", &v.onsite_max, errors, Input::default()))
                input type="hidden" name="onsite_secret_version" value=(v.onsite_secret_version);
            }
            fieldset data-test="retention" {
                legend { "Data retention" }
                (ui::input("Keep raw events (days)", "retention_events_days", &v.events_days, errors, Input { kind: "number", help: Some("Page views, link clicks and custom events older than this are deleted by the daily retention job (30 to 3650 days; 400 by default). Reports are not affected: they read hourly totals, kept for good."), ..Input::default() }))
            }
        }
    }
}

/// Days as text, `None` as kept for good.
fn days_text(days: Option<u32>) -> String {
    match days {
        Some(1) => "1 day".into(),
        Some(d) => format!("{d} days"),
        None => "for good".into(),
    }
}

/// What the property keeps, for how long (from its saved settings), and
/// when the retention job last ran.
fn retention_table(
    s: &PropertySettings,
    last_run: Option<&clicktrail_store::retention::JobState>,
) -> Markup {
    let kept = s.retention();
    let window = days_text(s.attribution_window_days);
    html! {
        section.card data-test="retention-table" {
            h2 { "What is kept, for how long" }
            table.data.kv {
                tbody {
                    tr { th { "Raw events (page views, link clicks, custom events)" } td data-test="kept-events" { (days_text(Some(kept.events_days))) } }
                    tr { th { "Clicks and sessions (traffic source, ad click ids, user agent)" } td data-test="kept-clicks" {
                        (days_text(kept.clicks_days))
                        span.muted { " (at least the events' period, and the attribution window of " (window) " plus " (clicktrail_domain::property::RETENTION_MARGIN_DAYS) " days so a late conversion still finds its click)" }
                    } }
                    tr { th { "Client IP addresses" } td data-test="kept-ip" {
                        @match s.ip_handling {
                            IpHandling::Encrypt => { "encrypted, cleared after " (days_text(Some(kept.encrypted_ip_days))) span.muted { " (the attribution window plus the margin; addresses are only kept to send with a late conversion)" } }
                            IpHandling::Truncate => { "truncated, kept with the session" }
                            IpHandling::Hash => { "as a keyed hash, kept with the session" }
                            IpHandling::None => { "not stored" }
                        }
                    } }
                    tr { th { "Conversions, the conversion log and deliveries" } td { "for good" } }
                    tr { th { "Reports (hourly totals)" } td { "for good" } }
                }
            }
            p.muted {
                "The retention job runs daily in small batches. "
                @match last_run {
                    Some(j) => {
                        "Last run: " (ui::opt_datetime(j.last_run_at))
                        @if let Some(o) = j.last_outcome.as_deref().filter(|o| *o != "ok") { " (" (o) ")" }
                        "; next: " (ui::datetime(j.next_run_at)) "."
                    }
                    None => { "It has not run yet." }
                }
            }
        }
    }
}

fn new_body(csrf: &str, v: &PropertyForm, errors: &Errors) -> Markup {
    html! {
        div.narrow {
            h1 { "Add a property" }
            form method="post" action="/properties/new" novalidate {
                (ui::csrf(csrf))
                (ui::form_error(errors.get("_form")))
                (property_fields(v, errors, false))
                p.muted { "Attribution window, session timeout, AutoScan, consent and IP settings take their defaults; change them later under Settings." }
                button.primary type="submit" { "Create property" }
            }
        }
    }
}

pub async fn new_page(dash: Dash) -> DashResult {
    let c = Chrome::new(&dash, "Add a property", Section::Properties);
    Ok(html(
        StatusCode::OK,
        ui::page(
            &c,
            new_body(
                dash.csrf(),
                &PropertyForm::new_default(),
                &Errors::default(),
            ),
        ),
    ))
}

pub async fn create(State(state): State<DashState>, f: DashForm) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let v = PropertyForm::from_form(&form, false);
    match v.validate() {
        Err(errors) => {
            let c = Chrome::new(&dash, "Add a property", Section::Properties);
            Ok(html(
                StatusCode::UNPROCESSABLE_ENTITY,
                ui::page(&c, new_body(dash.csrf(), &v, &errors)),
            ))
        }
        Ok((name, domains, settings)) => {
            let p = properties::create(&state.db, dash.workspace_id(), &name, &domains, &settings)
                .await?;
            Ok(see_other(&format!("/p/{}?done=created", p.id)))
        }
    }
}

fn settings_body(
    dash: &Dash,
    p: &Property,
    v: &PropertyForm,
    errors: &Errors,
    last_run: Option<&clicktrail_store::retention::JobState>,
    grace_days: u32,
) -> Markup {
    html! {
        div.narrow {
            h1 { "Settings" }
            form method="post" action={ "/p/" (p.id) "/settings" } novalidate {
                (ui::csrf(dash.csrf()))
                (ui::form_error(errors.get("_form")))
                (property_fields(v, errors, true))
                button.primary type="submit" { "Save settings" }
            }
            (retention_table(&p.settings, last_run))
            section.card.danger-zone {
                h2 { "Delete this property" }
                p.muted { "Its tag, collector, tracked links and postbacks stop at once. Everything it recorded is purged for good after " (grace_days) " days; until then an admin can restore it from the Properties page." }
                @if dash.is_admin() {
                    form method="post" action={ "/p/" (p.id) "/delete" } {
                        (ui::csrf(dash.csrf()))
                        button.danger type="submit" data-test="delete-property" data-confirm={ "Delete " (p.name) "? Tracking stops at once; its data is purged after " (grace_days) " days unless it is restored." } { "Delete property" }
                    }
                } @else {
                    p.muted { "Only an admin can delete a property." }
                }
            }
            p.muted { "Property id: " code { (p.id) } }
        }
    }
}

async fn render_settings(
    state: &DashState,
    dash: &Dash,
    p: &Property,
    v: &PropertyForm,
    errors: &Errors,
) -> Result<Markup, DashError> {
    let last_run =
        clicktrail_store::retention::job(&state.db, clicktrail_engine::retention::JOB).await?;
    Ok(settings_body(
        dash,
        p,
        v,
        errors,
        last_run.as_ref(),
        state.services.cfg.retention.deleted_property_grace_days,
    ))
}

pub async fn settings_page(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let c = Chrome::property(&dash, &p, Tab::Settings, "Settings").notice(q.done.as_deref());
    let body =
        render_settings(&state, &dash, &p, &PropertyForm::of(&p), &Errors::default()).await?;
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}

pub async fn update(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let v = PropertyForm::from_form(&form, true);
    match v.validate() {
        Err(errors) => {
            let c = Chrome::property(&dash, &p, Tab::Settings, "Settings");
            let body = render_settings(&state, &dash, &p, &v, &errors).await?;
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, body)))
        }
        Ok((name, domains, settings)) => {
            properties::update(&state.db, &p.id, &name, &domains, &settings).await?;
            state.services.properties.forget(&p.id).await;
            Ok(see_other(&format!("/p/{}/settings?done=saved", p.id)))
        }
    }
}

/// Deletes a property (admins only): it stops tracking at once and is
/// purged after the grace period unless restored.
pub async fn delete(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    f.dash.require_admin()?;
    state
        .services
        .properties
        .delete(&f.dash.caller, &pid)
        .await?;
    Ok(see_other("/properties?done=property_deleted"))
}

/// Restores a deleted property (admins only).
pub async fn restore(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    f.dash.require_admin()?;
    let p = state
        .services
        .properties
        .restore(&f.dash.caller, &pid)
        .await?;
    Ok(see_other(&format!("/p/{}?done=restored", p.id)))
}

/// One step of the setup checklist.
#[derive(Debug, Clone)]
pub struct Step {
    pub done: bool,
    pub title: &'static str,
    pub todo: Markup,
}

pub async fn checklist(state: &DashState, p: &Property) -> Result<Vec<Step>, DashError> {
    let pid = p.id.as_str();
    let ((pv, clicks), installed, converted, delivered) = futures::try_join!(
        reports::traffic_seen(&state.db, pid),
        store_integrations::list_for_property(&state.db, &p.id),
        reports::conversion_seen(&state.db, pid),
        reports::delivery_seen(&state.db, pid),
    )?;
    let base = format!("/p/{pid}");
    let public_url = check_public_url_for(&state.public_base, &p.domains);
    Ok(vec![
        Step {
            done: public_url.is_none(),
            title: "Tracking address reachable from your site",
            todo: html! {
                @if let Some(problem) = public_url { (problem.explain(&state.public_base)) " " }
                (PUBLIC_URL_FIX)
            },
        },
        Step {
            done: pv,
            title: "Tag seen on your site",
            todo: html! { "Paste the snippet above into the " code { "<head>" } " of every page, then open one of them. The first PageView turns this green. Nothing? Open " a href={ (base) "/live" } { "Live events" } "." },
        },
        Step {
            done: clicks,
            title: "Links AutoTagged",
            todo: html! { "Click one of your affiliate links on the site. Use the " a href={ (base) "/link-checker" } { "link checker" } " to see which links the tag will tag." },
        },
        Step {
            done: !installed.is_empty(),
            title: "Integration installed",
            todo: html! { "Open the " a href={ (base) "/catalog" } { "Integration Catalog" } ", find your network (e.g. Gala Partners) and click Install." },
        },
        Step {
            done: converted,
            title: "First conversion validated",
            todo: html! { "Wait for a conversion, or trigger a test one, then check the " a href={ (base) "/conversions" } { "conversion log" } " for errors." },
        },
        Step {
            done: delivered,
            title: "First conversion delivered to an ad platform",
            todo: html! { "Add a " a href={ (base) "/destinations" } { "destination" } " (Meta, Google Ads, TikTok or GA4)." },
        },
    ])
}

pub fn checklist_markup(steps: &[Step]) -> Markup {
    let done = steps.iter().filter(|s| s.done).count();
    html! {
        section.checklist {
            h2 { "Setup checklist " span.muted { (done) " of " (steps.len()) } }
            ol {
                @for s in steps {
                    li class=(if s.done { "done" } else { "todo" }) data-done=(s.done) {
                        span.mark aria-hidden="true" { (if s.done { "✓" } else { "○" }) }
                        div {
                            strong { (s.title) }
                            @if !s.done { p.muted { (s.todo) } }
                        }
                    }
                }
            }
        }
    }
}

pub async fn overview(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<DoneQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let steps = checklist(&state, &p).await?;
    let tag_url = state.services.properties.tag_url(&p.id);
    let snippet = tag::snippet(&tag_url);
    let public_url = check_public_url_for(&state.public_base, &p.domains);
    let body = html! {
        h1 { (p.name) }
        section.card {
            h2 { "Install the tag" }
            @if let Some(problem) = public_url {
                div.attention role="alert" data-test="public-url-warning" data-code=(problem.code()) {
                    p { strong { "This snippet will not track " (p.domains.join(", ")) " yet." } " " (problem.explain(&state.public_base)) }
                    p { (PUBLIC_URL_FIX) }
                }
            }
            p { "Paste this snippet into the " code { "<head>" } " of every page of " (p.domains.join(", ")) ", as high as possible. It loads asynchronously and never blocks your page." }
            (ui::copy_box("snippet", &snippet, true))
        }
        (checklist_markup(&steps))
    };
    let c = Chrome::property(&dash, &p, Tab::Overview, p.name.clone()).notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, body)))
}
