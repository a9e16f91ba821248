//! The unified dashboard: headline numbers, a time-series chart (inline
//! SVG) and breakdown tables by channel, source / medium, campaign, ad,
//! landing page, integration and offer, with the attribution model switch,
//! the bot toggle and CSV export of every table.
//!
//! Everything is read from the rollups (`clicktrail_store::reports`) and
//! the spend table; the queries of a page run concurrently. Days are UTC.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{NaiveDate, Utc};
use clicktrail_domain::money::Amount;
use clicktrail_store::properties::Property;
use clicktrail_store::reports::{self as rq, Dim, HourRange, Model};
use clicktrail_store::spend::{self as sq, SpendDim};
use maud::{Markup, html};
use serde::Deserialize;

use crate::DashState;
use crate::error::DashResult;
use crate::properties::owned;
use crate::session::Dash;
use crate::ui::{self, Chrome, Tab};
use crate::{DashError, html};

/// Rows per breakdown table.
const TABLE_ROWS: i64 = 50;
/// Longest range a report covers.
const MAX_DAYS: i64 = 731;

#[derive(Debug, Deserialize, Default)]
pub struct ReportQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub model: Option<String>,
    pub bots: Option<String>,
    /// CSV export: which table (a dimension, `series` or `headline`).
    pub table: Option<String>,
    /// A notice key after a redirect.
    pub done: Option<String>,
}

/// A report's resolved parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub from_day: i64,
    pub to_day: i64,
    pub model: Model,
    pub include_bots: bool,
}

pub fn today() -> i64 {
    Utc::now().timestamp().div_euclid(86_400)
}

fn parse_day(s: &str) -> Option<i64> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    let t = d.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some(t.div_euclid(86_400))
}

impl Params {
    /// From the query, with defaults (the last 30 days, last click, bots
    /// excluded); an unreadable date falls back to its default.
    pub fn from_query(q: &ReportQuery) -> Self {
        let today = today();
        let mut to_day = q.to.as_deref().and_then(parse_day).unwrap_or(today);
        let mut from_day = q.from.as_deref().and_then(parse_day).unwrap_or(to_day - 29);
        if from_day > to_day {
            std::mem::swap(&mut from_day, &mut to_day);
        }
        if to_day - from_day >= MAX_DAYS {
            from_day = to_day - MAX_DAYS + 1;
        }
        Params {
            from_day,
            to_day,
            model: q
                .model
                .as_deref()
                .and_then(Model::parse)
                .unwrap_or(Model::LastClick),
            include_bots: q.bots.as_deref().is_some_and(|b| b == "1" || b == "on"),
        }
    }

    pub fn range(&self) -> HourRange {
        HourRange::days(self.from_day, self.to_day)
    }

    pub fn days(&self) -> i64 {
        self.to_day - self.from_day + 1
    }

    /// Hours per chart bucket: hours for a day or two, days up to four
    /// months, weeks beyond.
    pub fn bucket_hours(&self) -> i64 {
        match self.days() {
            ..=2 => 1,
            3..=120 => 24,
            _ => 168,
        }
    }

    pub fn query(&self) -> String {
        format!(
            "from={}&to={}&model={}{}",
            ui::date(self.from_day),
            ui::date(self.to_day),
            self.model.as_str(),
            if self.include_bots { "&bots=1" } else { "" }
        )
    }
}

/// Money per currency (the stored currency code, `XXX` for none).
pub type PerCurrency = BTreeMap<String, Amount>;

/// Adds `a` to the amount of `currency`.
fn add(m: &mut PerCurrency, currency: String, a: Amount) {
    let e = m.entry(currency).or_default();
    *e = e.saturating_add(a);
}

/// One row of a breakdown table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Row {
    pub key: String,
    pub visits: i64,
    pub clicks: i64,
    pub conversions: i64,
    pub revenue: PerCurrency,
    pub spend: PerCurrency,
}

/// The headline numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headline {
    pub visits: i64,
    pub pageviews: i64,
    pub clicks: i64,
    pub conversions: i64,
    pub revenue: PerCurrency,
    pub spend: PerCurrency,
}

/// One chart bucket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Point {
    /// First hour of the bucket.
    pub hour: i64,
    pub visits: i64,
    pub clicks: i64,
    pub conversions: i64,
    pub revenue: PerCurrency,
    pub spend: PerCurrency,
}

/// Everything a report page shows.
#[derive(Debug, Clone)]
pub struct Report {
    pub params: Params,
    pub currency: String,
    pub headline: Headline,
    pub series: Vec<Point>,
    pub tables: Vec<(Dim, Vec<Row>)>,
}

/// ROAS in the reporting currency, else in the only currency spent.
pub fn roas_of(
    revenue: &PerCurrency,
    spend: &PerCurrency,
    currency: &str,
) -> Option<(Amount, Amount)> {
    let cur = if spend.contains_key(currency) {
        currency.to_owned()
    } else if spend.len() == 1 {
        spend.keys().next()?.clone()
    } else {
        return None;
    };
    let s = *spend.get(&cur)?;
    Some((revenue.get(&cur).copied().unwrap_or_default(), s))
}

pub async fn table(
    state: &DashState,
    pid: &str,
    p: Params,
    dim: Dim,
) -> Result<Vec<Row>, DashError> {
    let db = &state.db;
    let range = p.range();
    let spend_dim = match dim {
        Dim::Campaign => Some(SpendDim::Campaign),
        Dim::Ad => Some(SpendDim::Ad),
        _ => None,
    };
    let (traffic, revenue, spend) = futures::try_join!(
        rq::traffic_breakdown(db, pid, dim, range, p.include_bots, TABLE_ROWS),
        rq::revenue_breakdown(db, pid, p.model, dim, range, p.include_bots, TABLE_ROWS),
        async {
            match spend_dim {
                Some(sd) => sq::breakdown(db, pid, sd, p.from_day, p.to_day, TABLE_ROWS).await,
                None => Ok(Vec::new()),
            }
        },
    )?;
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for t in traffic {
        let r = rows.entry(t.key.clone()).or_default();
        r.visits = t.visits;
        r.clicks = t.clicks;
    }
    let mut missing: BTreeSet<String> = BTreeSet::new();
    for c in revenue {
        if !rows.contains_key(&c.key) {
            missing.insert(c.key.clone());
        }
        let r = rows.entry(c.key.clone()).or_default();
        r.conversions += c.conversions;
        add(&mut r.revenue, c.currency, c.revenue);
    }
    for s in spend {
        if !rows.contains_key(&s.key) {
            missing.insert(s.key.clone());
        }
        let r = rows.entry(s.key.clone()).or_default();
        add(&mut r.spend, s.currency, s.spend);
    }
    if !missing.is_empty() {
        let keys: Vec<String> = missing.into_iter().collect();
        for t in rq::traffic_for_keys(db, pid, dim, range, p.include_bots, &keys).await? {
            if let Some(r) = rows.get_mut(&t.key) {
                r.visits = t.visits;
                r.clicks = t.clicks;
            }
        }
    }
    let mut out: Vec<Row> = rows
        .into_iter()
        .map(|(k, mut r)| {
            r.key = k;
            r
        })
        .collect();
    out.sort_by(|a, b| {
        (b.visits, b.clicks, b.conversions)
            .cmp(&(a.visits, a.clicks, a.conversions))
            .then_with(|| a.key.cmp(&b.key))
    });
    Ok(out)
}

fn dense_series(
    p: Params,
    traffic: Vec<rq::TrafficPoint>,
    revenue: Vec<rq::RevenuePoint>,
    spend: Vec<sq::SpendPoint>,
) -> Vec<Point> {
    let step = p.bucket_hours();
    let range = p.range();
    let first = range.from_hour.div_euclid(step) * step;
    let mut by: HashMap<i64, Point> = HashMap::new();
    for t in traffic {
        let e = by.entry(t.bucket).or_default();
        e.visits += t.visits;
        e.clicks += t.clicks;
    }
    for r in revenue {
        let e = by.entry(r.bucket).or_default();
        e.conversions += r.conversions;
        add(&mut e.revenue, r.currency, r.revenue);
    }
    for s in spend {
        let b = (s.day * 24).div_euclid(step) * step;
        let e = by.entry(b).or_default();
        add(&mut e.spend, s.currency, s.spend);
    }
    let mut out = Vec::new();
    let mut h = first;
    while h < range.to_hour {
        let mut pt = by.remove(&h).unwrap_or_default();
        pt.hour = h;
        out.push(pt);
        h += step;
    }
    out
}

/// Runs every query of a report.
pub async fn build(state: &DashState, property: &Property, p: Params) -> Result<Report, DashError> {
    let pid = property.id.as_str();
    let db = &state.db;
    let range = p.range();
    let (traffic, revenue, spend, t_series, r_series, s_series) = futures::try_join!(
        rq::traffic_totals(db, pid, range, p.include_bots),
        rq::revenue_totals(db, pid, p.model, range, p.include_bots),
        sq::totals(db, pid, p.from_day, p.to_day),
        rq::traffic_series(db, pid, range, p.bucket_hours(), p.include_bots),
        rq::revenue_series(db, pid, p.model, range, p.bucket_hours(), p.include_bots),
        sq::series(db, pid, p.from_day, p.to_day),
    )?;
    let tables = futures::future::try_join_all(
        Dim::ALL
            .into_iter()
            .map(|d| async move { table(state, pid, p, d).await.map(|rows| (d, rows)) }),
    )
    .await?;
    let headline = Headline {
        visits: traffic.visits,
        pageviews: traffic.pageviews,
        clicks: traffic.clicks,
        conversions: revenue.iter().map(|r| r.conversions).sum(),
        revenue: revenue
            .iter()
            .map(|r| (r.currency.clone(), r.revenue))
            .collect(),
        spend: spend
            .iter()
            .map(|s| (s.currency.clone(), s.spend))
            .collect(),
    };
    Ok(Report {
        params: p,
        currency: property.settings.currency.clone(),
        headline,
        series: dense_series(p, t_series, r_series, s_series),
        tables,
    })
}

/// "12.00 EUR" for the reporting currency, with other currencies after.
fn money_cell(m: &PerCurrency, currency: &str) -> Markup {
    let main = m.get(currency).copied().unwrap_or_default();
    let others: Vec<String> = m
        .iter()
        .filter(|(c, v)| c.as_str() != currency && !v.is_zero())
        .map(|(c, v)| ui::money(*v, c))
        .collect();
    html! {
        (ui::amount(main))
        @if !others.is_empty() { br; span.muted.other-cur { "+ " (others.join(" + ")) } }
    }
}

fn headline_markup(r: &Report) -> Markup {
    let h = &r.headline;
    let cur = &r.currency;
    let roas = roas_of(&h.revenue, &h.spend, cur);
    html! {
        section.kpis {
            div.kpi data-kpi="visits" { span.label { "Visits" } span.value { (ui::int(h.visits)) } }
            div.kpi data-kpi="clicks" { span.label { "Outbound clicks" } span.value { (ui::int(h.clicks)) } }
            div.kpi data-kpi="conversions" { span.label { "Conversions" } span.value { (ui::int(h.conversions)) } }
            div.kpi data-kpi="revenue" { span.label { "Revenue (" (cur) ")" } span.value { (money_cell(&h.revenue, cur)) } }
            div.kpi data-kpi="spend" { span.label { "Ad spend (" (cur) ")" } span.value { (money_cell(&h.spend, cur)) } }
            div.kpi data-kpi="roas" { span.label { "ROAS" } span.value { (roas.map(|(rv, sp)| ui::roas(rv, sp)).unwrap_or_else(|| "–".into())) } }
            div.kpi data-kpi="conversion_rate" { span.label { "Conversion rate" } span.value { (ui::percent(h.conversions, h.visits)) } }
        }
    }
}

fn bucket_label(hour: i64, step: i64) -> String {
    if step < 24 {
        format!(
            "{} {:02}:00",
            ui::date(hour.div_euclid(24)),
            hour.rem_euclid(24)
        )
    } else {
        ui::date(hour.div_euclid(24))
    }
}

/// The time-series chart: visits as bars, outbound clicks as a line (same
/// scale), conversions as a line on their own scale.
fn chart(r: &Report) -> Markup {
    const W: f64 = 960.0;
    const H: f64 = 240.0;
    const LEFT: f64 = 48.0;
    const RIGHT: f64 = 40.0;
    const TOP: f64 = 12.0;
    const BOTTOM: f64 = 28.0;
    let pts = &r.series;
    if pts.is_empty() {
        return html! {};
    }
    let step = r.params.bucket_hours();
    let n = pts.len() as f64;
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let max_t = pts
        .iter()
        .map(|p| p.visits.max(p.clicks))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let max_c = pts.iter().map(|p| p.conversions).max().unwrap_or(0).max(1) as f64;
    let bw = plot_w / n;
    let x = |i: usize| LEFT + bw * i as f64;
    let y_t = |v: i64| TOP + plot_h - plot_h * v as f64 / max_t;
    let y_c = |v: i64| TOP + plot_h - plot_h * v as f64 / max_c;
    let line = |f: &dyn Fn(&Point) -> f64| -> String {
        pts.iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i) + bw / 2.0, f(p)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let clicks_line = line(&|p| y_t(p.clicks));
    let conv_line = line(&|p| y_c(p.conversions));
    let label_every = (pts.len() / 6).max(1);
    html! {
        figure.chart {
            svg viewBox={ "0 0 " (W) " " (H) } role="img" aria-label="Visits, outbound clicks and conversions over time" preserveAspectRatio="none" {
                line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(W - RIGHT) y2=(TOP + plot_h) {}
                text.tick x=(LEFT - 6.0) y=(TOP + 10.0) text-anchor="end" { (ui::int(max_t as i64)) }
                text.tick x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" { "0" }
                text.tick.conv x=(W - RIGHT + 6.0) y=(TOP + 10.0) { (ui::int(max_c as i64)) }
                @for (i, p) in pts.iter().enumerate() {
                    @let h = (TOP + plot_h - y_t(p.visits)).max(0.0);
                    rect.bar x={ (format!("{:.1}", x(i) + bw * 0.1)) } y={ (format!("{:.1}", y_t(p.visits))) } width={ (format!("{:.1}", (bw * 0.8).max(0.5))) } height={ (format!("{:.1}", h)) } {
                        title { (bucket_label(p.hour, step)) ": " (ui::int(p.visits)) " visits, " (ui::int(p.clicks)) " clicks, " (ui::int(p.conversions)) " conversions" }
                    }
                    @if i % label_every == 0 {
                        text.tick x={ (format!("{:.1}", x(i) + bw / 2.0)) } y=(H - 8.0) text-anchor="middle" { (bucket_label(p.hour, step)) }
                    }
                }
                polyline.clicks points=(clicks_line) {}
                polyline.conversions points=(conv_line) {}
            }
            figcaption.legend {
                span.sw.visits {} "Visits " span.sw.clicks {} "Outbound clicks " span.sw.conversions {} "Conversions (right scale)"
            }
        }
    }
}

fn has_spend_cols(dim: Dim) -> bool {
    matches!(dim, Dim::Campaign | Dim::Ad)
}

fn table_markup(r: &Report, dim: Dim, rows: &[Row], base: &str) -> Markup {
    let cur = &r.currency;
    let spend = has_spend_cols(dim);
    html! {
        section.report-table id={ "t-" (dim.as_str()) } {
            div.heading {
                h2 { (dim.label()) }
                a.small href={ (base) "/reports/export.csv?table=" (dim.as_str()) "&" (r.params.query()) } download { "Export CSV" }
            }
            table.data {
                thead {
                    tr {
                        th { (dim.label()) }
                        th.num { @if dim.has_visits() { "Visits" } @else { "–" } }
                        th.num { "Outbound clicks" }
                        th.num { "Conversions" }
                        th.num { "Conv. rate" }
                        th.num { "Revenue (" (cur) ")" }
                        @if spend { th.num { "Spend" } th.num { "ROAS" } }
                    }
                }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan=(if spend { 8 } else { 6 }) { "No data in this range." } } }
                    @for row in rows {
                        tr {
                            td.key { (row.key) }
                            td.num { @if dim.has_visits() { (ui::int(row.visits)) } @else { "–" } }
                            td.num { (ui::int(row.clicks)) }
                            td.num { (ui::int(row.conversions)) }
                            td.num { (if dim.has_visits() { ui::percent(row.conversions, row.visits) } else { ui::percent(row.conversions, row.clicks) }) }
                            td.num { (money_cell(&row.revenue, cur)) }
                            @if spend {
                                td.num { (money_cell(&row.spend, cur)) }
                                td.num { (roas_of(&row.revenue, &row.spend, cur).map(|(a, b)| ui::roas(a, b)).unwrap_or_else(|| "–".into())) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn controls(p: &Property, params: Params) -> Markup {
    let today = today();
    let preset = |days: i64, label: &str| {
        let q = Params {
            from_day: today - days + 1,
            to_day: today,
            ..params
        };
        html! { a.preset href={ "/p/" (p.id) "/reports?" (q.query()) } class=[(params.to_day == today && params.days() == days).then_some("active")] { (label) } }
    };
    html! {
        form.controls method="get" action={ "/p/" (p.id) "/reports" } {
            div.field.inline { label for="r-from" { "From" } input id="r-from" type="date" name="from" value=(ui::date(params.from_day)); }
            div.field.inline { label for="r-to" { "To" } input id="r-to" type="date" name="to" value=(ui::date(params.to_day)); }
            div.field.inline {
                label for="r-model" { "Attribution" }
                select id="r-model" name="model" {
                    option value="last" selected[params.model == Model::LastClick] { "Last click" }
                    option value="first" selected[params.model == Model::FirstClick] { "First click" }
                }
            }
            div.field.inline.check {
                input id="r-bots" type="checkbox" name="bots" value="1" checked[params.include_bots];
                label for="r-bots" { "Include bot traffic" }
            }
            button type="submit" { "Apply" }
            span.presets { (preset(1, "Today")) (preset(7, "7 days")) (preset(30, "30 days")) (preset(90, "90 days")) }
        }
    }
}

pub async fn page(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<ReportQuery>,
) -> DashResult {
    let started = Instant::now();
    let p = owned(&state, &dash, &pid).await?;
    let params = Params::from_query(&q);
    let report = build(&state, &p, params).await?;
    let base = format!("/p/{}", p.id);
    let body = html! {
        div.heading {
            h1 { "Reports" }
            span.muted { (ui::date(params.from_day)) " – " (ui::date(params.to_day)) " (UTC) · " (if params.model == Model::LastClick { "last click" } else { "first click" }) @if !params.include_bots { " · bots excluded" } }
        }
        (controls(&p, params))
        (headline_markup(&report))
        div.heading {
            h2 { "Over time" }
            a.small href={ (base) "/reports/export.csv?table=series&" (params.query()) } download { "Export CSV" }
        }
        (chart(&report))
        @for (dim, rows) in &report.tables {
            (table_markup(&report, *dim, rows, &base))
        }
        p.muted.small { "Revenue is shown in " (report.currency) "; amounts in other currencies are listed beside it, never converted. Spend matches campaigns by utm_campaign and ads by utm_content." }
    };
    let c = Chrome::property(&dash, &p, Tab::Reports, "Reports");
    let mut resp = html(StatusCode::OK, ui::page(&c, body));
    server_timing(&mut resp, started);
    Ok(resp)
}

/// `Server-Timing: app;dur=<ms>`: the page's server time, visible in the
/// browser's network panel and read by the benchmark.
pub fn server_timing(resp: &mut Response, started: Instant) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        resp.headers_mut().insert("server-timing", v);
    }
}

/// Money columns of a CSV: the reporting currency's amount, then the
/// others as `12.00 GBP; 3.00 USD`.
fn csv_money(m: &PerCurrency, cur: &str) -> (String, String) {
    let main = ui::amount(m.get(cur).copied().unwrap_or_default()).replace(',', "");
    let others: Vec<String> = m
        .iter()
        .filter(|(c, v)| c.as_str() != cur && !v.is_zero())
        .map(|(c, v)| format!("{} {c}", ui::amount(*v).replace(',', "")))
        .collect();
    (main, others.join("; "))
}

/// CSV of one table of the report.
pub fn csv(report: &Report, table: &str) -> Result<Vec<u8>, DashError> {
    let cur = &report.currency;
    let mut w = csv::Writer::from_writer(Vec::new());
    let rev_h = format!("revenue_{cur}");
    let spend_h = format!("spend_{cur}");
    let mut write = |rec: Vec<String>| w.write_record(&rec).map_err(DashError::internal);
    match table {
        "series" => {
            write(vec![
                "bucket_start_utc".into(),
                "visits".into(),
                "outbound_clicks".into(),
                "conversions".into(),
                rev_h,
                "revenue_other".into(),
                spend_h,
                "spend_other".into(),
            ])?;
            for p in &report.series {
                let (r, ro) = csv_money(&p.revenue, cur);
                let (s, so) = csv_money(&p.spend, cur);
                write(vec![
                    bucket_label(p.hour, report.params.bucket_hours()),
                    p.visits.to_string(),
                    p.clicks.to_string(),
                    p.conversions.to_string(),
                    r,
                    ro,
                    s,
                    so,
                ])?;
            }
        }
        "headline" => {
            let h = &report.headline;
            let (r, ro) = csv_money(&h.revenue, cur);
            let (s, so) = csv_money(&h.spend, cur);
            write(vec![
                "visits".into(),
                "pageviews".into(),
                "outbound_clicks".into(),
                "conversions".into(),
                rev_h,
                "revenue_other".into(),
                spend_h,
                "spend_other".into(),
            ])?;
            write(vec![
                h.visits.to_string(),
                h.pageviews.to_string(),
                h.clicks.to_string(),
                h.conversions.to_string(),
                r,
                ro,
                s,
                so,
            ])?;
        }
        t => {
            let dim = Dim::parse(t).ok_or(DashError::NotFound)?;
            let rows = report
                .tables
                .iter()
                .find(|(d, _)| *d == dim)
                .map(|(_, r)| r.as_slice())
                .unwrap_or(&[]);
            let spend = has_spend_cols(dim);
            let mut head = vec![
                dim.as_str().to_owned(),
                "visits".into(),
                "outbound_clicks".into(),
                "conversions".into(),
                rev_h,
                "revenue_other".into(),
            ];
            if spend {
                head.extend([spend_h, "spend_other".into(), "roas".into()]);
            }
            write(head)?;
            for row in rows {
                let (r, ro) = csv_money(&row.revenue, cur);
                let mut rec = vec![
                    row.key.clone(),
                    row.visits.to_string(),
                    row.clicks.to_string(),
                    row.conversions.to_string(),
                    r,
                    ro,
                ];
                if spend {
                    let (s, so) = csv_money(&row.spend, cur);
                    let roas = roas_of(&row.revenue, &row.spend, cur)
                        .and_then(|(a, b)| ui::roas_ratio(a, b))
                        .map(|r| format!("{r:.4}"))
                        .unwrap_or_default();
                    rec.extend([s, so, roas]);
                }
                write(rec)?;
            }
        }
    }
    w.into_inner().map_err(DashError::internal)
}

pub fn csv_response(name: &str, body: Vec<u8>) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    super::secure_headers(&mut resp);
    resp
}

pub async fn export(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<ReportQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let params = Params::from_query(&q);
    let table = q.table.clone().unwrap_or_else(|| "headline".into());
    if table != "series" && table != "headline" && Dim::parse(&table).is_none() {
        return Err(DashError::NotFound);
    }
    let report = build(&state, &p, params).await?;
    let body = csv(&report, &table)?;
    Ok(csv_response(
        &format!(
            "clicktrail-{}-{}-{}-{}.csv",
            table,
            ui::date(params.from_day),
            ui::date(params.to_day),
            params.model.as_str()
        ),
        body,
    ))
}
