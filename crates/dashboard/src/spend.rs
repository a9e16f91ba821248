//! Ad spend: CSV import (every line checked, nothing written unless all
//! are valid) and ROAS by campaign and ad.
//!
//! The file needs a header row naming its columns (any order, any case;
//! spaces and `_` ignored): `date` (YYYY-MM-DD), `platform`, `campaign`,
//! `ad set` (optional), `ad` (optional), `spend` (also `cost` or
//! `amount`), `currency`. Commas, semicolons or tabs separate fields.

use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use clicktrail_domain::Currency;
use clicktrail_domain::mapping::normalise_name;
use clicktrail_domain::money::{Amount, Money};
use clicktrail_store::reports::Dim;
use clicktrail_store::spend::{self as sq, SpendLine, SpendSource};
use maud::{Markup, html};

use crate::DashState;
use crate::error::DashResult;
use crate::properties::owned;
use crate::reports::{Params, ReportQuery, Row, csv_response, roas_of};
use crate::session::{Dash, DashForm};
use crate::ui::{self, Chrome, Errors, Tab};
use crate::{DashError, html, see_other};

/// Largest spend file accepted.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Most lines in one import.
pub const MAX_LINES: usize = 200_000;
/// Errors listed before "and N more".
const SHOWN_ERRORS: usize = 50;

/// The body limit of the import route (files are larger than forms).
pub fn body_limit() -> DefaultBodyLimit {
    DefaultBodyLimit::max(MAX_FILE_BYTES + 64 * 1024)
}

/// A problem with one line of the file (line 1 is the header).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Clone, Copy)]
struct Columns {
    date: usize,
    platform: usize,
    campaign: usize,
    ad_set: Option<usize>,
    ad: Option<usize>,
    spend: usize,
    currency: usize,
}

fn find_columns(header: &csv::StringRecord) -> Result<Columns, String> {
    let names: Vec<String> = header.iter().map(normalise_name).collect();
    let find = |wanted: &[&str]| names.iter().position(|n| wanted.contains(&n.as_str()));
    let mut missing = Vec::new();
    let mut need = |wanted: &[&str], label: &'static str| {
        let f = find(wanted);
        if f.is_none() {
            missing.push(label);
        }
        f.unwrap_or(0)
    };
    let cols = Columns {
        date: need(&["date", "day"], "date"),
        platform: need(&["platform", "network", "source"], "platform"),
        campaign: need(&["campaign", "campaignname"], "campaign"),
        spend: need(&["spend", "cost", "amount", "amountspent"], "spend"),
        currency: need(&["currency", "currencycode"], "currency"),
        ad_set: None,
        ad: None,
    };
    if !missing.is_empty() {
        return Err(format!(
            "The header row lacks the column(s) {}. Expected: date, platform, campaign, ad set, ad, spend, currency.",
            missing.join(", ")
        ));
    }
    Ok(Columns {
        ad_set: find(&["adset", "adsetname", "adgroup", "adgroupname"]),
        ad: find(&["ad", "adname", "creative"]),
        ..cols
    })
}

fn delimiter(text: &str) -> u8 {
    let first = text.lines().next().unwrap_or("");
    let count = |c: char| first.matches(c).count();
    match [(',', count(',')), (';', count(';')), ('\t', count('\t'))]
        .into_iter()
        .max_by_key(|(_, n)| *n)
    {
        Some((c, n)) if n > 0 => c as u8,
        _ => b',',
    }
}

fn parse_date(s: &str) -> Option<i64> {
    let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
    Some(
        d.and_hms_opt(0, 0, 0)?
            .and_utc()
            .timestamp()
            .div_euclid(86_400),
    )
}

fn text_field(value: &str, what: &str, required: bool, errs: &mut Vec<String>) -> String {
    let v = value.trim();
    if required && v.is_empty() {
        errs.push(format!("{what} is empty"));
    } else if v.chars().count() > 500 {
        errs.push(format!("{what} is longer than 500 characters"));
    }
    v.to_owned()
}

/// Parses and checks a spend file. All lines or nothing: any problem gives
/// the list of problems, by line.
pub fn parse_csv(text: &str) -> Result<Vec<SpendLine>, Vec<LineError>> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(vec![LineError {
            line: 0,
            message: "The file is empty.".into(),
        }]);
    }
    let mut rdr = csv::ReaderBuilder::new()
        .delimiter(delimiter(text))
        .flexible(true)
        .from_reader(text.as_bytes());
    let header = rdr.headers().cloned().map_err(|e| {
        vec![LineError {
            line: 1,
            message: format!("The header row cannot be read: {e}"),
        }]
    })?;
    let cols = find_columns(&header).map_err(|m| {
        vec![LineError {
            line: 1,
            message: m,
        }]
    })?;
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = rec
            .as_ref()
            .ok()
            .and_then(|r| r.position())
            .map(|p| p.line())
            .unwrap_or(i as u64 + 2);
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                errors.push(LineError {
                    line,
                    message: format!("cannot be read: {e}"),
                });
                continue;
            }
        };
        if rec.iter().all(|f| f.trim().is_empty()) {
            continue;
        }
        if lines.len() + errors.len() >= MAX_LINES {
            errors.push(LineError {
                line,
                message: format!("the file has more than {MAX_LINES} lines; split it"),
            });
            break;
        }
        let get = |i: usize| rec.get(i).unwrap_or("");
        let mut errs: Vec<String> = Vec::new();
        let day = parse_date(get(cols.date));
        if day.is_none() {
            errs.push(format!(
                "date {:?} is not a date in the form YYYY-MM-DD",
                get(cols.date)
            ));
        }
        let platform = text_field(get(cols.platform), "platform", true, &mut errs)
            .to_ascii_lowercase()
            .replace([' ', '-'], "_");
        let campaign = text_field(get(cols.campaign), "campaign", true, &mut errs);
        let ad_set = cols
            .ad_set
            .map(|c| text_field(get(c), "ad set", false, &mut errs))
            .unwrap_or_default();
        let ad = cols
            .ad
            .map(|c| text_field(get(c), "ad", false, &mut errs))
            .unwrap_or_default();
        let spend = match Amount::parse(get(cols.spend)) {
            Ok(a) if a.is_negative() => {
                errs.push(format!("spend {:?} is negative", get(cols.spend)));
                None
            }
            Ok(a) => Some(a),
            Err(_) => {
                errs.push(format!(
                    "spend {:?} is not a number such as 12.50",
                    get(cols.spend)
                ));
                None
            }
        };
        let currency = match Currency::parse(get(cols.currency)) {
            Ok(c) => Some(c),
            Err(_) => {
                errs.push(format!(
                    "currency {:?} is not a three-letter ISO 4217 code such as EUR",
                    get(cols.currency)
                ));
                None
            }
        };
        match (day, spend, currency, errs.is_empty()) {
            (Some(day), Some(amount), Some(currency), true) => lines.push(SpendLine {
                day,
                platform,
                campaign,
                ad_set,
                ad,
                spend: Money::new(amount, currency),
            }),
            _ => errors.push(LineError {
                line,
                message: errs.join("; "),
            }),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if lines.is_empty() {
        return Err(vec![LineError {
            line: 2,
            message: "The file has a header but no spend lines.".into(),
        }]);
    }
    Ok(lines)
}

fn roas_table(title: &str, id: &str, rows: &[Row], cur: &str) -> Markup {
    let rows: Vec<&Row> = rows.iter().filter(|r| !r.spend.is_empty()).collect();
    html! {
        section.report-table id=(id) {
            h2 { (title) }
            table.data {
                thead { tr { th { (title) } th.num { "Spend" } th.num { "Visits" } th.num { "Conversions" } th.num { "Revenue (" (cur) ")" } th.num { "ROAS" } } }
                tbody {
                    @if rows.is_empty() { tr { td.muted colspan="6" { "No spend in this range." } } }
                    @for r in rows {
                        tr {
                            td.key { (r.key) }
                            td.num { @for (c, v) in &r.spend { (ui::money(*v, c)) br; } }
                            td.num { (ui::int(r.visits)) }
                            td.num { (ui::int(r.conversions)) }
                            td.num { (ui::amount(r.revenue.get(cur).copied().unwrap_or_default())) }
                            td.num.roas { (roas_of(&r.revenue, &r.spend, cur).map(|(a, b)| ui::roas(a, b)).unwrap_or_else(|| "–".into())) }
                        }
                    }
                }
            }
        }
    }
}

async fn body(
    state: &DashState,
    dash: &Dash,
    p: &clicktrail_store::properties::Property,
    params: Params,
    errors: &[LineError],
    form_errors: &Errors,
) -> DashResult<Markup> {
    let pid = p.id.as_str();
    let (campaigns, ads, imports) = futures::try_join!(
        super::reports::table(state, pid, params, Dim::Campaign),
        super::reports::table(state, pid, params, Dim::Ad),
        async {
            sq::imports(&state.db, pid, 10)
                .await
                .map_err(DashError::from)
        },
    )?;
    let cur = &p.settings.currency;
    Ok(html! {
        h1 { "Ad spend and ROAS" }
        section.card {
            h2 { "Import spend from a CSV file" }
            p { "Export a daily report from your ad platform with the columns " code { "date, platform, campaign, ad set, ad, spend, currency" } " (ad set and ad may be left out). Campaigns are matched with " code { "utm_campaign" } " and ads with " code { "utm_content" } ". Importing a day again replaces its figures." }
            form method="post" action={ "/p/" (pid) "/spend" } enctype="multipart/form-data" novalidate {
                (ui::csrf(dash.csrf()))
                div.field.invalid[form_errors.get("file").is_some()] {
                    label for="f-file" { "CSV file" }
                    input id="f-file" type="file" name="file" accept=".csv,text/csv,text/plain";
                    @if let Some(e) = form_errors.get("file") { p.error data-error-for="file" { (e) } }
                }
                (ui::textarea("…or paste the CSV here", "csv", "", form_errors, 4, Some("Example: date,platform,campaign,ad set,ad,spend,currency")))
                button.primary type="submit" { "Import" }
            }
            @if !errors.is_empty() {
                div.alert role="alert" data-error-for="file" {
                    p { strong { "Nothing was imported: " (errors.len()) " line(s) need fixing." } }
                    ul.line-errors {
                        @for e in errors.iter().take(SHOWN_ERRORS) {
                            li { @if e.line > 0 { "Line " (e.line) ": " } (e.message) }
                        }
                        @if errors.len() > SHOWN_ERRORS { li { "… and " (errors.len() - SHOWN_ERRORS) " more." } }
                    }
                }
            }
        }
        form.controls method="get" action={ "/p/" (pid) "/spend" } {
            div.field.inline { label for="s-from" { "From" } input id="s-from" type="date" name="from" value=(ui::date(params.from_day)); }
            div.field.inline { label for="s-to" { "To" } input id="s-to" type="date" name="to" value=(ui::date(params.to_day)); }
            div.field.inline {
                label for="s-model" { "Attribution" }
                select id="s-model" name="model" {
                    option value="last" selected[params.model == clicktrail_store::reports::Model::LastClick] { "Last click" }
                    option value="first" selected[params.model == clicktrail_store::reports::Model::FirstClick] { "First click" }
                }
            }
            button type="submit" { "Apply" }
            a.small href={ "/p/" (pid) "/spend/export.csv?" (params.query()) } download { "Export CSV" }
        }
        (roas_table("Campaign", "roas-campaign", &campaigns, cur))
        (roas_table("Ad", "roas-ad", &ads, cur))
        h2 { "Recent imports" }
        table.data {
            thead { tr { th { "When" } th { "Source" } th { "File" } th.num { "Lines" } } }
            tbody {
                @if imports.is_empty() { tr { td.muted colspan="4" { "No import yet." } } }
                @for i in &imports {
                    tr { td { (ui::datetime(i.created_at)) } td { (i.source) } td { (i.label) } td.num { (ui::int(i.rows)) } }
                }
            }
        }
    })
}

pub async fn page(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<ReportQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let params = Params::from_query(&q);
    let b = body(&state, &dash, &p, params, &[], &Errors::default()).await?;
    let c = Chrome::property(&dash, &p, Tab::Spend, "Ad spend").notice(q.done.as_deref());
    Ok(html(StatusCode::OK, ui::page(&c, b)))
}

pub async fn import(
    State(state): State<DashState>,
    Path(pid): Path<String>,
    f: DashForm,
) -> DashResult {
    let DashForm { dash, form, .. } = f;
    let p = owned(&state, &dash, &pid).await?;
    let (label, text) = match form.file("file").filter(|(_, c)| !c.trim().is_empty()) {
        Some((name, content)) => (name.to_owned(), content.to_owned()),
        None => ("pasted".to_owned(), form.raw("csv").to_owned()),
    };
    let params = Params::from_query(&ReportQuery::default());
    let mut form_errors = Errors::default();
    if text.trim().is_empty() {
        form_errors.add("file", "Choose a CSV file or paste its content.");
    } else if text.len() > MAX_FILE_BYTES {
        form_errors.add("file", "The file is larger than 16 MB; split it.");
    }
    let result = if form_errors.is_empty() {
        parse_csv(&text)
    } else {
        Err(Vec::new())
    };
    match result {
        Ok(lines) => {
            let label: String = label.chars().take(200).collect();
            sq::import(
                &state.db,
                p.id.as_str(),
                SpendSource::Csv,
                &label,
                Some(dash.user_id()),
                &lines,
            )
            .await?;
            Ok(see_other(&format!("/p/{}/spend?done=imported", p.id)))
        }
        Err(errors) => {
            let b = body(&state, &dash, &p, params, &errors, &form_errors).await?;
            let c = Chrome::property(&dash, &p, Tab::Spend, "Ad spend");
            Ok(html(StatusCode::UNPROCESSABLE_ENTITY, ui::page(&c, b)))
        }
    }
}

pub async fn export(
    State(state): State<DashState>,
    dash: Dash,
    Path(pid): Path<String>,
    Query(q): Query<ReportQuery>,
) -> DashResult {
    let p = owned(&state, &dash, &pid).await?;
    let params = Params::from_query(&q);
    let pid = p.id.as_str();
    let cur = p.settings.currency.clone();
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "level",
        "name",
        "spend_currency",
        "spend",
        "visits",
        "conversions",
        &format!("revenue_{cur}"),
        "roas",
    ])
    .map_err(DashError::internal)?;
    for (level, dim) in [("campaign", Dim::Campaign), ("ad", Dim::Ad)] {
        for r in super::reports::table(&state, pid, params, dim).await? {
            for (c, s) in &r.spend {
                let rev = r.revenue.get(c).copied().unwrap_or_default();
                let roas = ui::roas_ratio(rev, *s)
                    .map(|r| format!("{r:.4}"))
                    .unwrap_or_default();
                w.write_record([
                    level.to_owned(),
                    r.key.clone(),
                    c.clone(),
                    ui::amount(*s).replace(',', ""),
                    r.visits.to_string(),
                    r.conversions.to_string(),
                    ui::amount(r.revenue.get(&cur).copied().unwrap_or_default()).replace(',', ""),
                    roas,
                ])
                .map_err(DashError::internal)?;
            }
        }
    }
    let body = w.into_inner().map_err(DashError::internal)?;
    Ok(csv_response(
        &format!(
            "clicktrail-roas-{}-{}.csv",
            ui::date(params.from_day),
            ui::date(params.to_day)
        ),
        body,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_valid_file_with_any_column_order() {
        let text = "Currency;Spend;Ad Set;Campaign;Platform;Date;Ad\nEUR;12,50;set1;spring;Meta;2026-11-01;ad-a\nEUR;3;;spring;google ads;2026-11-02;\n";
        let lines = parse_csv(text).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].spend.amount.micros(), 12_500_000);
        assert_eq!(lines[0].spend.currency, Currency::EUR);
        assert_eq!(lines[0].platform, "meta");
        assert_eq!(lines[1].platform, "google_ads");
        assert_eq!(lines[1].ad, "");
        assert_eq!(lines[0].day, parse_date("2026-11-01").unwrap());
    }

    #[test]
    fn reports_every_bad_line() {
        let text = "date,platform,campaign,ad set,ad,spend,currency\n\
                    2026-11-01,meta,c1,,,10.00,EUR\n\
                    01/11/2026,meta,c1,,,abc,EURO\n\
                    2026-11-03,,,,,-5,EUR\n";
        let errs = parse_csv(text).unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].line, 3);
        assert!(
            errs[0].message.contains("YYYY-MM-DD"),
            "{}",
            errs[0].message
        );
        assert!(errs[0].message.contains("not a number"));
        assert!(errs[0].message.contains("ISO 4217"));
        assert_eq!(errs[1].line, 4);
        assert!(errs[1].message.contains("platform is empty"));
        assert!(errs[1].message.contains("negative"));
    }

    #[test]
    fn missing_columns_are_named() {
        let errs = parse_csv("date,campaign,spend\n2026-01-01,x,1\n").unwrap_err();
        assert_eq!(errs[0].line, 1);
        assert!(errs[0].message.contains("platform"));
        assert!(errs[0].message.contains("currency"));
        assert!(parse_csv("").is_err());
    }
}
