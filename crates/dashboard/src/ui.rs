//! The page shell (header, property tabs, notices), form fields that show
//! their error next to them, and number / money / time formatting.

use chrono::{DateTime, TimeZone, Utc};
use clicktrail_domain::money::Amount;
use clicktrail_store::properties::Property;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::session::Dash;

/// Which property tab is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tab {
    Overview,
    Reports,
    Spend,
    Integrations,
    Links,
    Destinations,
    Conversions,
    Live,
    LinkChecker,
    Settings,
}

const TABS: &[(Tab, &str, &str)] = &[
    (Tab::Overview, "", "Overview"),
    (Tab::Reports, "/reports", "Reports"),
    (Tab::Spend, "/spend", "Ad spend"),
    (Tab::Integrations, "/integrations", "Integrations"),
    (Tab::Links, "/links", "Links"),
    (Tab::Destinations, "/destinations", "Destinations"),
    (Tab::Conversions, "/conversions", "Conversion log"),
    (Tab::Live, "/live", "Live events"),
    (Tab::LinkChecker, "/link-checker", "Link checker"),
    (Tab::Settings, "/settings", "Settings"),
];

/// Which top-level section is active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Properties,
    Members,
    Tokens,
    Account,
}

fn head(title: &str) -> Markup {
    let v = super::asset_version();
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · clicktrail" }
            link rel="stylesheet" href={ "/assets/app.css?v=" (v) };
            link rel="icon" href="data:,";
            script defer src={ "/assets/app.js?v=" (v) } {}
        }
    }
}

/// A page without the logged-in chrome (login, setup, errors).
pub fn bare_page(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body.bare {
                header.top { a.brand href="/" { "clicktrail" } }
                main { (body) }
            }
        }
    }
}

/// Everything a logged-in page needs to draw its chrome.
#[derive(Debug)]
pub struct Chrome<'a> {
    pub dash: &'a Dash,
    pub title: String,
    pub section: Section,
    pub property: Option<(&'a Property, Tab)>,
    /// A notice shown above the content (after a redirect).
    pub notice: Option<&'static str>,
}

impl<'a> Chrome<'a> {
    pub fn new(dash: &'a Dash, title: impl Into<String>, section: Section) -> Self {
        Self {
            dash,
            title: title.into(),
            section,
            property: None,
            notice: None,
        }
    }

    pub fn property(dash: &'a Dash, p: &'a Property, tab: Tab, title: impl Into<String>) -> Self {
        Self {
            dash,
            title: title.into(),
            section: Section::Properties,
            property: Some((p, tab)),
            notice: None,
        }
    }

    pub fn notice(mut self, done: Option<&str>) -> Self {
        self.notice = done.and_then(notice_text);
        self
    }
}

/// The fixed texts of `?done=` notices (never reflecting request text).
fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "created" => "Created.",
        "saved" => "Saved.",
        "installed" => "Installed. Follow the remaining steps below.",
        "revoked" => "The token was revoked; requests using it are refused from now on.",
        "member_added" => "Member added. Give them their email and password.",
        "member_removed" => "Member removed; their sessions in this workspace have ended.",
        "unlocked" => "The login locks of this workspace's accounts are cleared.",
        "password" => "Password changed. Your other sessions have ended.",
        "paused" => "Paused: nothing will be sent until you resume.",
        "link_paused" => {
            "Paused: the link still sends visitors to its destination, but records no clicks until you resume."
        }
        "resumed" => "Resumed.",
        "polled" => "Poll requested: the result shows below in a few seconds.",
        "retried" => "Queued again: the delivery will be attempted shortly.",
        "imported" => "Spend imported.",
        "deleted" => "Deleted.",
        "property_deleted" => {
            "The property was deleted: its tag, collector, links and postbacks stopped at once. Restore it below until its data is purged."
        }
        "restored" => "Restored: the property tracks again.",
        _ => return None,
    })
}

fn nav_link(href: &str, label: &str, active: bool) -> Markup {
    html! {
        a href=(href) class=[active.then_some("active")] aria-current=[active.then_some("page")] { (label) }
    }
}

/// A logged-in page.
pub fn page(c: &Chrome<'_>, body: Markup) -> Markup {
    let d = c.dash;
    let csrf = d.csrf();
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(&c.title))
            body {
                header.top {
                    a.brand href="/" { "clicktrail" }
                    nav.main {
                        (nav_link("/properties", "Properties", c.section == Section::Properties))
                        @if d.is_admin() {
                            (nav_link("/settings/members", "Members", c.section == Section::Members))
                            (nav_link("/settings/tokens", "API tokens", c.section == Section::Tokens))
                        }
                    }
                    div.who {
                        @if d.memberships.len() > 1 {
                            form.inline method="post" action="/workspace" {
                                input type="hidden" name="_csrf" value=(csrf);
                                label.sr-only for="ws-switch" { "Workspace" }
                                select id="ws-switch" name="workspace_id" data-autosubmit {
                                    @for (id, name, _) in &d.memberships {
                                        option value=(id) selected[*id == d.workspace_id()] { (name) }
                                    }
                                }
                                noscript { button type="submit" { "Switch" } }
                            }
                        } @else {
                            span.ws title="Workspace" { (d.session.workspace_name) }
                        }
                        a href="/account/password" class=[(c.section == Section::Account).then_some("active")] { (d.session.email) }
                        form.inline method="post" action="/logout" {
                            input type="hidden" name="_csrf" value=(csrf);
                            button.link type="submit" data-test="logout" { "Log out" }
                        }
                    }
                }
                @if let Some((p, tab)) = c.property {
                    div.property-bar {
                        div.pname {
                            a href="/properties" { "Properties" } " / "
                            strong { (p.name) }
                            span.muted { " " (p.domains.join(", ")) }
                        }
                        nav.tabs {
                            @for (t, suffix, label) in TABS {
                                (nav_link(&format!("/p/{}{}", p.id, suffix), label, *t == tab))
                            }
                        }
                    }
                }
                main {
                    @if let Some(n) = c.notice { div.notice role="status" { (n) } }
                    (body)
                }
            }
        }
    }
}

/// Field errors of a submitted form, by field name.
#[derive(Debug, Clone, Default)]
pub struct Errors(pub Vec<(String, String)>);

impl Errors {
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        if self.get(field).is_none() {
            self.0.push((field.to_owned(), message.into()));
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn field_id(name: &str) -> String {
    format!(
        "f-{}",
        name.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-")
    )
}

fn error_line(name: &str, err: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = err {
            p.error id={ "e-" (field_id(name)) } data-error-for=(name) { (e) }
        }
    }
}

/// Options of a text-like input.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub kind: &'a str,
    pub required: bool,
    pub placeholder: Option<&'a str>,
    pub help: Option<&'a str>,
    pub autocomplete: Option<&'a str>,
    /// The id of a `datalist` whose values the browser offers.
    pub list: Option<&'a str>,
}

impl Default for Input<'_> {
    fn default() -> Self {
        Self {
            kind: "text",
            required: false,
            placeholder: None,
            help: None,
            autocomplete: None,
            list: None,
        }
    }
}

/// A labelled input with its error (if any) right under it.
pub fn input(label: &str, name: &str, value: &str, errors: &Errors, opt: Input<'_>) -> Markup {
    let err = errors.get(name);
    let id = field_id(name);
    html! {
        div.field.invalid[err.is_some()] {
            label for=(id) { (label) }
            input id=(id) name=(name) type=(opt.kind) value=(value)
                required[opt.required] placeholder=[opt.placeholder] autocomplete=[opt.autocomplete] list=[opt.list]
                aria-invalid=[err.map(|_| "true")] aria-describedby=[err.map(|_| format!("e-{id}"))];
            (error_line(name, err))
            @if let Some(h) = opt.help { p.help { (h) } }
        }
    }
}

pub fn textarea(
    label: &str,
    name: &str,
    value: &str,
    errors: &Errors,
    rows: u32,
    help: Option<&str>,
) -> Markup {
    let err = errors.get(name);
    let id = field_id(name);
    html! {
        div.field.invalid[err.is_some()] {
            label for=(id) { (label) }
            textarea id=(id) name=(name) rows=(rows) aria-invalid=[err.map(|_| "true")] { (value) }
            (error_line(name, err))
            @if let Some(h) = help { p.help { (h) } }
        }
    }
}

pub fn select(
    label: &str,
    name: &str,
    options: &[(String, String)],
    selected: &str,
    errors: &Errors,
    help: Option<&str>,
) -> Markup {
    let err = errors.get(name);
    let id = field_id(name);
    html! {
        div.field.invalid[err.is_some()] {
            label for=(id) { (label) }
            select id=(id) name=(name) aria-invalid=[err.map(|_| "true")] {
                @for (v, l) in options {
                    option value=(v) selected[v == selected] { (l) }
                }
            }
            (error_line(name, err))
            @if let Some(h) = help { p.help { (h) } }
        }
    }
}

pub fn checkbox(label: &str, name: &str, checked: bool, help: Option<&str>) -> Markup {
    let id = field_id(name);
    html! {
        div.field.check {
            input type="checkbox" id=(id) name=(name) value="1" checked[checked];
            label for=(id) { (label) }
            @if let Some(h) = help { p.help { (h) } }
        }
    }
}

pub fn csrf(token: &str) -> Markup {
    html! { input type="hidden" name="_csrf" value=(token); }
}

/// A read-only box with a copy button.
pub fn copy_box(id: &str, text: &str, multiline: bool) -> Markup {
    html! {
        div.copybox {
            @if multiline {
                pre id=(id) { (text) }
            } @else {
                code id=(id) { (text) }
            }
            button type="button" class="copy" data-copy=(id) { "Copy" }
        }
    }
}

/// A form-level error (not tied to one field).
pub fn form_error(msg: Option<&str>) -> Markup {
    html! { @if let Some(m) = msg { div.alert role="alert" data-error-for="_form" { (m) } } }
}

pub fn badge(text: &str, kind: &str) -> Markup {
    html! { span class={ "badge " (kind) } { (text) } }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// 1234567 -> "1,234,567".
pub fn int(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3 + 1);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// An amount with two decimals (rounded half away from zero) and
/// thousands separators.
pub fn amount(a: Amount) -> String {
    let micros = a.micros();
    let cents = (i128::from(micros) + if micros >= 0 { 5_000 } else { -5_000 }) / 10_000;
    let whole = (cents / 100) as i64;
    let frac = (cents % 100).unsigned_abs();
    let sign = if cents < 0 && whole == 0 { "-" } else { "" };
    format!("{sign}{}.{frac:02}", int(whole))
}

/// `12.00 EUR`.
pub fn money(a: Amount, currency: &str) -> String {
    format!("{} {currency}", amount(a))
}

/// A ratio as a percentage with one decimal ("–" without a denominator).
pub fn percent(num: i64, den: i64) -> String {
    if den <= 0 {
        return "–".into();
    }
    format!("{:.1}%", num as f64 * 100.0 / den as f64)
}

/// Return on ad spend, "2.35×" ("–" without spend).
pub fn roas(revenue: Amount, spend: Amount) -> String {
    match roas_ratio(revenue, spend) {
        Some(r) => format!("{r:.2}×"),
        None => "–".into(),
    }
}

/// Revenue over spend (`None` without spend): a ratio, so a float is fine.
pub fn roas_ratio(revenue: Amount, spend: Amount) -> Option<f64> {
    spend
        .is_positive()
        .then(|| revenue.micros() as f64 / spend.micros() as f64)
}

pub fn datetime(ms: i64) -> String {
    match Utc.timestamp_millis_opt(ms).single() {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        None => "–".into(),
    }
}

pub fn opt_datetime(ms: Option<i64>) -> String {
    ms.map(datetime).unwrap_or_else(|| "never".into())
}

/// How long before `now_ms` the time `ms` was, in words ("3 minutes
/// ago"); a time not yet passed (clocks of two processes) is "just now".
pub fn ago(ms: i64, now_ms: i64) -> String {
    let secs = now_ms.saturating_sub(ms) / 1000;
    let (n, unit) = match secs {
        ..60 => return "just now".into(),
        60..3_600 => (secs / 60, "minute"),
        3_600..86_400 => (secs / 3_600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

/// A time as "3 minutes ago", with the date and time on hover and for
/// machines.
pub fn time_ago(ms: i64, now_ms: i64) -> Markup {
    let iso = Utc
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    html! { time datetime=[iso] title=(datetime(ms)) { (ago(ms, now_ms)) } }
}

/// "1 conversion", "2 conversions" (with thousands separators).
pub fn count(n: u64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        int(i64::try_from(n).unwrap_or(i64::MAX)),
        if n == 1 { one } else { many }
    )
}

/// Days since the epoch as YYYY-MM-DD.
pub fn date(day: i64) -> String {
    DateTime::<Utc>::from_timestamp(day * 86_400, 0)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Pretty-printed JSON, for raw payloads.
pub fn pretty_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| text.to_owned())
}

/// Markup of trusted static HTML (entities in fixed strings).
pub fn raw(s: &'static str) -> PreEscaped<&'static str> {
    PreEscaped(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(int(1_234_567), "1,234,567");
        assert_eq!(int(-1000), "-1,000");
        assert_eq!(int(12), "12");
        let m = Amount::from_micros;
        assert_eq!(amount(m(1_234_567_890)), "1,234.57");
        assert_eq!(amount(m(5_000)), "0.01");
        assert_eq!(amount(m(-2_500_000)), "-2.50");
        assert_eq!(amount(m(-4_000)), "0.00");
        assert_eq!(money(m(12_000_000), "EUR"), "12.00 EUR");
        assert_eq!(percent(1, 3), "33.3%");
        assert_eq!(percent(1, 0), "–");
        assert_eq!(roas(m(3_000_000), m(1_000_000)), "3.00×");
        assert_eq!(roas(m(3_000_000), Amount::ZERO), "–");
        assert_eq!(date(0), "1970-01-01");
        let now = 1_700_000_000_000;
        assert_eq!(ago(now - 59_000, now), "just now");
        assert_eq!(ago(now + 5_000, now), "just now");
        assert_eq!(ago(now - 60_000, now), "1 minute ago");
        assert_eq!(ago(now - 3 * 60_000 - 5_000, now), "3 minutes ago");
        assert_eq!(ago(now - 2 * 3_600_000, now), "2 hours ago");
        assert_eq!(ago(now - 86_400_000, now), "1 day ago");
        assert_eq!(
            time_ago(now - 120_000, now).into_string(),
            "<time datetime=\"2023-11-14T22:11:20Z\" title=\"2023-11-14 22:11:20 UTC\">2 minutes ago</time>"
        );
        assert_eq!(count(1, "row", "rows"), "1 row");
        assert_eq!(count(1204, "row", "rows"), "1,204 rows");
    }
}
