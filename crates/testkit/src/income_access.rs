//! A fake Income Access reporting API (`GET /api/affreporting.asp`), as the
//! reference describes it: the security key check (SOAP fault "no
//! permission 1"), the IP whitelist (SOAP fault "no permission 2" to a
//! caller outside it), XML (SOAP envelope) and CSV (with a preamble)
//! reports, "No Records", "inactive report", HTML error pages, 5xx, slow
//! answers, a totals row (`rowid` 2), CamelCase field names, and a request
//! counter.
//!
//! The reference names the two faults and their two causes ("wrong key or
//! IP not whitelisted") without saying which number goes with which; the
//! fake follows the order they are listed in, as the connector reads them.
//!
//! Data model: players (registration date, click id) and a ledger of dated
//! commission entries. A report over `[start, end]` lists every player
//! registered in, or with an entry in, the period, with the totals of the
//! entries in the period: rows are running totals of the requested period,
//! restated on every request. With `reportdisplayby=Date` there is one row
//! per player and day, with a `period` field (`mm/dd/yyyy`). Raising a
//! player's total grows their row; a negative entry is a chargeback.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State as AxumState};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::NaiveDate;
/// The fake's ledger amounts: exact decimals, as the network keeps them.
/// Re-exported so that tests need no dependency of their own to build them.
pub use rust_decimal::Decimal;

/// The key the fake accepts until [`IncomeAccessHandle::set_key`].
pub const FAKE_KEY: &str = "0123456789abcdef0123456789abcdef";

/// A player at the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePlayer {
    pub player_id: String,
    /// The custom id (our click id) the player came with; may be empty.
    pub affcustomid: String,
    pub merch_player_name: String,
    pub registration_date: NaiveDate,
    /// `currencysymbol`, e.g. `GBP`.
    pub currency: String,
    pub country: String,
    pub site_id: u32,
    pub banner_id: u32,
}

impl FakePlayer {
    /// A GBP player from the UK, on the seed's site and banner.
    pub fn new(player_id: &str, affcustomid: &str, registration_date: NaiveDate) -> Self {
        Self {
            player_id: player_id.to_owned(),
            affcustomid: affcustomid.to_owned(),
            merch_player_name: format!("player{player_id}"),
            registration_date,
            currency: "GBP".to_owned(),
            country: "GB".to_owned(),
            site_id: 31512,
            banner_id: 1195,
        }
    }

    pub fn with_currency(mut self, currency: &str) -> Self {
        self.currency = currency.to_owned();
        self
    }
}

/// How the fake answers every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FakeMode {
    #[default]
    Normal,
    /// 200 with an HTML error page.
    HtmlErrorPage,
    /// This status with an HTML body (e.g. 503).
    ServerError(u16),
    /// "inactive report" (plain text).
    InactiveReport,
    /// SOAP fault "no permission N" whatever the key and the caller.
    NoPermission(u8),
}

/// One request as received; the key's value is replaced by `REDACTED`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedRequest {
    pub params: Vec<(String, String)>,
    pub key_ok: bool,
}

impl RecordedRequest {
    /// A parameter, by case-insensitive name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug)]
struct State {
    key: String,
    mode: FakeMode,
    /// Callers allowed in (the back office's IP whitelist); `None`: all.
    whitelist: Option<Vec<IpAddr>>,
    delay: Duration,
    mixed_case: bool,
    totals_row: bool,
    players: Vec<FakePlayer>,
    index: HashMap<String, usize>,
    /// Per player (same index): dated commission entries.
    ledger: Vec<Vec<(NaiveDate, Decimal)>>,
    requests: Vec<RecordedRequest>,
}

/// Changes the fake's data and behaviour; cheap to clone.
#[derive(Debug, Clone)]
pub struct IncomeAccessHandle {
    state: Arc<Mutex<State>>,
}

/// A running fake. Stops when dropped.
#[derive(Debug)]
pub struct FakeIncomeAccess {
    /// `http://127.0.0.1:<port>`
    pub base_url: String,
    /// `http://127.0.0.1:<port>/api/affreporting.asp`: the integration's
    /// `settings.api_url`.
    pub report_url: String,
    pub handle: IncomeAccessHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeIncomeAccess {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeIncomeAccess {
    /// Starts the fake on `127.0.0.1:0`.
    pub async fn start() -> anyhow::Result<Self> {
        let handle = IncomeAccessHandle {
            state: Arc::new(Mutex::new(State {
                key: FAKE_KEY.to_owned(),
                mode: FakeMode::Normal,
                whitelist: None,
                delay: Duration::ZERO,
                mixed_case: false,
                totals_row: true,
                players: Vec::new(),
                index: HashMap::new(),
                ledger: Vec::new(),
                requests: Vec::new(),
            })),
        };
        let app = Router::new()
            .route("/api/affreporting.asp", get(report))
            .with_state(handle.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            // The fake lives as long as the test; a serve error ends it.
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        let base_url = format!("http://{addr}");
        Ok(Self {
            report_url: format!("{base_url}/api/affreporting.asp"),
            base_url,
            handle,
            task,
        })
    }

    /// The key the fake currently accepts.
    pub fn key(&self) -> String {
        self.handle.lock().key.clone()
    }
}

impl IncomeAccessHandle {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread cannot leave the data half-changed in a
        // way that matters to a fake: keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds (or replaces) a player.
    pub fn add_player(&self, player: FakePlayer) {
        let mut s = self.lock();
        match s.index.get(&player.player_id).copied() {
            Some(i) => s.players[i] = player,
            None => {
                let i = s.players.len();
                s.index.insert(player.player_id.clone(), i);
                s.players.push(player);
                s.ledger.push(Vec::new());
            }
        }
    }

    /// Adds a commission entry (negative: a chargeback) on `day`. Returns
    /// false for an unknown player.
    pub fn add_commission(&self, player_id: &str, day: NaiveDate, amount: Decimal) -> bool {
        let mut s = self.lock();
        let Some(i) = s.index.get(player_id).copied() else {
            return false;
        };
        s.ledger[i].push((day, amount));
        true
    }

    /// Makes the player's all-time `totalcommission` equal `total` with an
    /// entry on `day` (a rise, or a chargeback when lower).
    pub fn set_total_commission(&self, player_id: &str, day: NaiveDate, total: Decimal) -> bool {
        let mut s = self.lock();
        let Some(i) = s.index.get(player_id).copied() else {
            return false;
        };
        let current: Decimal = s.ledger[i].iter().map(|(_, a)| *a).sum();
        let change = total - current;
        if !change.is_zero() {
            s.ledger[i].push((day, change));
        }
        true
    }

    pub fn set_mode(&self, mode: FakeMode) {
        self.lock().mode = mode;
    }

    /// Waits this long before answering.
    pub fn set_delay(&self, delay: Duration) {
        self.lock().delay = delay;
    }

    /// CamelCase field names (`RowID`, `AffCustomID`, `TotalCommission`...).
    pub fn set_mixed_case(&self, on: bool) {
        self.lock().mixed_case = on;
    }

    /// Appends the totals row (`rowid` 2); on by default.
    pub fn set_totals_row(&self, on: bool) {
        self.lock().totals_row = on;
    }

    /// Answers only callers from these addresses, as the back office's IP
    /// whitelist does (others get "no permission 2", whatever their key);
    /// `None` lets every caller in (the default).
    pub fn set_whitelist(&self, ips: Option<Vec<IpAddr>>) {
        self.lock().whitelist = ips;
    }

    /// A new key (the old one stops working, as in the back office).
    pub fn set_key(&self, key: &str) {
        self.lock().key = key.to_owned();
    }

    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Csv,
}

type Row = Vec<(&'static str, String)>;

async fn report(
    AxumState(handle): AxumState<IncomeAccessHandle>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let (delay, answer) = {
        let mut s = handle.lock();
        let answer = answer(&mut s, peer.ip(), &params);
        (s.delay, answer)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    answer
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

const SOAP_HEAD: &str = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\r\n<SOAP-ENV:Envelope \
     xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\"><SOAP-ENV:Body>";
const SOAP_TAIL: &str = "</SOAP-ENV:Body></SOAP-ENV:Envelope>";

fn fault(message: &str) -> Response {
    text(
        StatusCode::OK,
        "text/xml; charset=utf-8",
        format!(
            "{SOAP_HEAD}<SOAP-ENV:Fault><faultcode>SOAP-ENV:Client</faultcode><faultstring>{message}</faultstring>\
             </SOAP-ENV:Fault>{SOAP_TAIL}"
        ),
    )
}

fn html_page(status: StatusCode) -> Response {
    text(
        status,
        "text/html",
        "<!DOCTYPE html>\r\n<html><head><title>Runtime Error</title></head><body><h1>Server Error in '/' \
         Application.</h1><p>An application error occurred on the server.<br></p></body></html>"
            .to_owned(),
    )
}

fn parse_date(value: Option<&str>) -> Option<NaiveDate> {
    let v = value?.trim();
    NaiveDate::parse_from_str(v, "%Y/%m/%d")
        .or_else(|_| NaiveDate::parse_from_str(v, "%Y-%m-%d"))
        .ok()
}

fn us_date(d: NaiveDate) -> String {
    d.format("%m/%d/%Y").to_string()
}

fn answer(s: &mut State, peer: IpAddr, params: &[(String, String)]) -> Response {
    let key_ok = param(params, "key") == Some(s.key.as_str());
    s.requests.push(RecordedRequest {
        params: params
            .iter()
            .map(|(k, v)| {
                let v = if k.eq_ignore_ascii_case("key") {
                    "REDACTED".to_owned()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect(),
        key_ok,
    });
    match s.mode {
        FakeMode::ServerError(code) => {
            return html_page(
                StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            );
        }
        FakeMode::HtmlErrorPage => return html_page(StatusCode::OK),
        FakeMode::NoPermission(n) => return fault(&format!("no permission {n}")),
        FakeMode::Normal | FakeMode::InactiveReport => {}
    }
    // The whitelist before the key: a caller outside it learns nothing
    // about the key it sent.
    if s.whitelist.as_ref().is_some_and(|w| !w.contains(&peer)) {
        return fault("no permission 2");
    }
    if !key_ok {
        return fault("no permission 1");
    }
    let name = param(params, "reportname")
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let acid_report = match name.as_str() {
        "accountreport" => false,
        "acidreport" => true,
        _ => return text(StatusCode::OK, "text/plain", "inactive report".to_owned()),
    };
    if s.mode == FakeMode::InactiveReport {
        return text(StatusCode::OK, "text/plain", "inactive report".to_owned());
    }
    let format = match param(params, "reportformat")
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("csv") => Format::Csv,
        _ => Format::Xml,
    };
    let (Some(start), Some(end)) = (
        parse_date(param(params, "reportstartdate")),
        parse_date(param(params, "reportenddate")),
    ) else {
        return fault("invalid report dates");
    };
    let by_day =
        param(params, "reportdisplayby").is_some_and(|d| d.to_ascii_lowercase().contains("date"));
    let merchant = param(params, "reportmerchantid").unwrap_or("0");
    if merchant.trim().parse::<u32>().is_err() {
        return fault("invalid merchant id");
    }

    let mut rows = if acid_report {
        acid_rows(s, start, end, by_day)
    } else {
        account_rows(s, start, end, by_day)
    };
    let count = rows.len().to_string();
    for r in &mut rows {
        for (k, v) in r.iter_mut() {
            if *k == "totalrecords" {
                v.clone_from(&count);
            }
        }
    }
    if s.totals_row && !rows.is_empty() {
        let totals = totals_row(&rows);
        rows.push(totals);
    }
    let report_name = param(params, "reportname").unwrap_or("").to_owned();
    match format {
        Format::Xml => text(
            StatusCode::OK,
            "text/xml; charset=utf-8",
            xml(&rows, s.mixed_case),
        ),
        Format::Csv => text(
            StatusCode::OK,
            "text/csv; charset=utf-8",
            csv(&rows, s.mixed_case, &report_name, start, end),
        ),
    }
}

/// Days of the period on which the player has something to report.
fn player_days(s: &State, i: usize, start: NaiveDate, end: NaiveDate) -> BTreeSet<NaiveDate> {
    let p = &s.players[i];
    let mut days: BTreeSet<NaiveDate> = s.ledger[i]
        .iter()
        .filter(|(d, _)| (start..=end).contains(d))
        .map(|(d, _)| *d)
        .collect();
    if (start..=end).contains(&p.registration_date) {
        days.insert(p.registration_date);
    }
    days
}

fn commission(s: &State, i: usize, from: NaiveDate, to: NaiveDate) -> Decimal {
    s.ledger[i]
        .iter()
        .filter(|(d, _)| (from..=to).contains(d))
        .map(|(_, a)| *a)
        .sum()
}

fn money(d: Decimal) -> String {
    d.round_dp(2).to_string()
}

fn account_rows(s: &State, start: NaiveDate, end: NaiveDate, by_day: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    for i in 0..s.players.len() {
        let days = player_days(s, i, start, end);
        if days.is_empty() {
            continue;
        }
        let spans: Vec<(NaiveDate, NaiveDate)> = if by_day {
            days.iter().map(|d| (*d, *d)).collect()
        } else {
            vec![(start, end)]
        };
        for (from, to) in spans {
            let p = &s.players[i];
            let total = commission(s, i, from, to);
            let mut row: Row = vec![("rowid", "1".to_owned())];
            if by_day {
                row.push(("period", us_date(from)));
            }
            row.extend([
                ("currencysymbol", p.currency.clone()),
                ("totalrecords", String::new()),
                ("merchantname", "Fake Casino".to_owned()),
                ("memberid", "1001".to_owned()),
                ("username", "fakeaffiliate".to_owned()),
                ("siteid", p.site_id.to_string()),
                ("bannerid", p.banner_id.to_string()),
                ("creativename", "Text_Link_WH_Sport".to_owned()),
                ("bannertype", "Text Links".to_owned()),
                ("playerid", p.player_id.clone()),
                ("merchplayername", p.merch_player_name.clone()),
                ("affcustomid", p.affcustomid.clone()),
                ("playercountry", p.country.clone()),
                ("registrationdate", us_date(p.registration_date)),
                ("firstdeposit", String::new()),
                ("Deposits", "0.00".to_owned()),
                ("trans_value", "0".to_owned()),
                ("Commission", money(total)),
                ("totalcommission", money(total)),
            ]);
            rows.push(row);
        }
    }
    rows
}

fn acid_rows(s: &State, start: NaiveDate, end: NaiveDate, by_day: bool) -> Vec<Row> {
    // (acid, day or None) -> (registrations, commission), in first-seen order.
    let mut order: Vec<(String, Option<NaiveDate>)> = Vec::new();
    let mut totals: HashMap<(String, Option<NaiveDate>), (u32, Decimal)> = HashMap::new();
    for i in 0..s.players.len() {
        let p = &s.players[i];
        for d in player_days(s, i, start, end) {
            let k = (p.affcustomid.clone(), by_day.then_some(d));
            let entry = totals.entry(k.clone()).or_insert_with(|| {
                order.push(k);
                (0, Decimal::ZERO)
            });
            if d == p.registration_date {
                entry.0 += 1;
            }
            entry.1 += commission(s, i, d, d);
        }
    }
    order
        .into_iter()
        .filter_map(|k| {
            let (regs, total) = totals.get(&k).copied()?;
            let mut row: Row = vec![("rowid", "1".to_owned())];
            if let Some(d) = k.1 {
                row.push(("period", us_date(d)));
            }
            row.extend([
                ("affcustomid", k.0),
                ("clicks", "0".to_owned()),
                ("downloads", regs.to_string()),
                ("Deposits", "0.00".to_owned()),
                ("trans_value", "0".to_owned()),
                ("Commission", money(total)),
            ]);
            Some(row)
        })
        .collect()
}

fn totals_row(rows: &[Row]) -> Row {
    let Some(first) = rows.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|(k, _)| {
            let v = match *k {
                "rowid" => "2".to_owned(),
                "Commission" | "totalcommission" | "Deposits" => money(
                    rows.iter()
                        .filter_map(|r| r.iter().find(|(n, _)| n == k))
                        .filter_map(|(_, v)| v.parse::<Decimal>().ok())
                        .sum(),
                ),
                "totalrecords" => rows.len().to_string(),
                _ => String::new(),
            };
            (*k, v)
        })
        .collect()
}

fn field_name(name: &'static str, mixed_case: bool) -> &'static str {
    if !mixed_case {
        return name;
    }
    match name {
        "rowid" => "RowID",
        "currencysymbol" => "CurrencySymbol",
        "affcustomid" => "AffCustomID",
        "playerid" => "PlayerID",
        "merchplayername" => "MerchPlayerName",
        "registrationdate" => "RegistrationDate",
        "totalcommission" => "TotalCommission",
        "period" => "Period",
        "downloads" => "Downloads",
        other => other,
    }
}

fn escape_xml(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn xml(rows: &[Row], mixed_case: bool) -> String {
    let mut out = String::from(SOAP_HEAD);
    out.push_str("<reportresponse>");
    if rows.is_empty() {
        out.push_str("No Records");
    }
    for r in rows {
        out.push_str("\r\n<row>");
        for (k, v) in r {
            let k = field_name(k, mixed_case);
            if v.is_empty() {
                out.push_str(&format!("<{k}/>"));
            } else {
                out.push_str(&format!("<{k}>{}</{k}>", escape_xml(v)));
            }
        }
        out.push_str("</row>");
    }
    out.push_str("</reportresponse>");
    out.push_str(SOAP_TAIL);
    out
}

fn quote_csv(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

fn csv(
    rows: &[Row],
    mixed_case: bool,
    report_name: &str,
    start: NaiveDate,
    end: NaiveDate,
) -> String {
    let mut out = format!(
        "{}\r\n{}\r\n\r\n",
        quote_csv(report_name),
        quote_csv(&format!(
            "{} - {}",
            start.format("%Y/%m/%d"),
            end.format("%Y/%m/%d")
        ))
    );
    let Some(first) = rows.first() else {
        out.push_str("No Records\r\n");
        return out;
    };
    let header: Vec<String> = first
        .iter()
        .map(|(k, _)| quote_csv(field_name(k, mixed_case)))
        .collect();
    out.push_str(&header.join(","));
    out.push_str("\r\n");
    for r in rows {
        let line: Vec<String> = r.iter().map(|(_, v)| quote_csv(v)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}
