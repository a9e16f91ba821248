//! "Test connection" for an Income Access integration before it is saved:
//! one report request for one day, made with the connector code a poll
//! uses (the guarded client, [`incomeaccess::open_report`], the row
//! parser) and a short timeout, and what its answer means for the user:
//! it works (rows seen), the key is wrong, this server's address is not
//! whitelisted, the program is unreachable, the URL does not answer like
//! Income Access, ... Each outcome has a stable snake_case code.
//!
//! The answer also names the address the program must whitelist: the
//! operator's `egress_ips`, or how to find it when they are not
//! configured. clicktrail never asks an outside service for its own
//! address.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use clicktrail_networks::incomeaccess::{
    self, IncomeAccessSettings, PermissionCause, PollError, SecurityKey,
};
use clicktrail_outbound::{GuardedResolver, Outbound, OutboundError, OutboundPolicy};
use serde::Serialize;
use url::Host;

use crate::error::{ServiceError, ServiceResult};

/// Longest a test may take: a user is waiting for the answer. The
/// integration's own `timeout_secs` applies when it is shorter.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What a connection test found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestOutcome {
    /// The program answered a report (perhaps empty).
    Works,
    /// "no permission 1": the security key is not (or no longer) valid.
    WrongKey,
    /// "no permission 2": this server's address is not whitelisted.
    IpNotWhitelisted,
    /// A refusal that does not say which of the two (another fault
    /// number, HTTP 401 / 403).
    NoPermission,
    /// "inactive report": the report name, or API reports switched off.
    InactiveReport,
    /// The name does not resolve, or the connection failed.
    Unreachable,
    /// No complete answer in time.
    Timeout,
    /// The outbound policy refused the address the name resolves to.
    RefusedAddress,
    /// The program's server failed (5xx, 429).
    ServerError,
    /// An HTML page, another HTTP status or a body that is no report.
    NotIncomeAccess,
    /// The program answered a SOAP fault we do not know.
    ProgramError,
}

impl TestOutcome {
    /// The stable code (as serialised).
    pub fn code(self) -> &'static str {
        match self {
            Self::Works => "works",
            Self::WrongKey => "wrong_key",
            Self::IpNotWhitelisted => "ip_not_whitelisted",
            Self::NoPermission => "no_permission",
            Self::InactiveReport => "inactive_report",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::RefusedAddress => "refused_address",
            Self::ServerError => "server_error",
            Self::NotIncomeAccess => "not_income_access",
            Self::ProgramError => "program_error",
        }
    }
}

/// The answer of `POST /api/v1/integrations/test`. Holds no secret: the
/// request is shown with its key replaced by `REDACTED`, and details come
/// from [`PollError`], which never carries the key.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionTest {
    pub outcome: TestOutcome,
    /// Whether the outcome is `works`.
    pub ok: bool,
    /// What happened and what to do, in plain language.
    pub message: String,
    /// Report rows seen (totals row excluded), when it works.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// The day the report was asked for (`YYYY-MM-DD`, UTC).
    pub day: String,
    /// The request made, key redacted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// What the program (or the network) said, when it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Things that work now but will not do what the user expects.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// This server's outbound addresses, as configured (`egress_ips`).
    pub egress_ips: Vec<String>,
    /// Which address to whitelist, or how to find it.
    pub egress_hint: String,
}

/// This server's outbound addresses, as the operator configured them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Egress {
    ips: Vec<IpAddr>,
}

impl Egress {
    pub fn new(ips: Vec<IpAddr>) -> Self {
        Self { ips }
    }

    /// The addresses, as text.
    pub fn ips(&self) -> Vec<String> {
        self.ips.iter().map(IpAddr::to_string).collect()
    }

    /// The addresses to whitelist, or a placeholder saying how to find it.
    fn address_text(&self) -> String {
        if self.ips.is_empty() {
            "this server's outbound IP address (not configured in clicktrail: run \
             `curl https://ifconfig.me` on the server to find it)"
                .to_owned()
        } else {
            self.ips().join(", ")
        }
    }

    /// Which address the program must whitelist, or how to find it.
    pub fn hint(&self) -> String {
        if self.ips.is_empty() {
            "This server's outbound IP address is not configured. Find it by running `curl https://ifconfig.me` \
             on the server (or ask your hosting provider for its outbound or NAT address), whitelist it in the \
             program's back office under Reports -> API Reports, and set egress_ips (CLICKTRAIL_EGRESS_IPS) so \
             that clicktrail shows it here."
                .to_owned()
        } else {
            format!(
                "Whitelist {} in the program's back office under Reports -> API Reports: the address{} this \
                 server's requests come from (egress_ips).",
                self.ips().join(", "),
                if self.ips.len() == 1 { "" } else { "es" }
            )
        }
    }
}

impl ConnectionTest {
    fn new(day: NaiveDate, egress: &Egress) -> Self {
        Self {
            outcome: TestOutcome::Works,
            ok: false,
            message: String::new(),
            rows: None,
            day: day.format("%Y-%m-%d").to_string(),
            request: None,
            detail: None,
            warnings: Vec::new(),
            egress_ips: egress.ips(),
            egress_hint: egress.hint(),
        }
    }

    fn outcome(mut self, outcome: TestOutcome, message: String) -> Self {
        self.ok = outcome == TestOutcome::Works;
        self.outcome = outcome;
        self.message = message;
        self
    }

    /// A key that is no key at all: no request is made.
    pub(crate) fn unusable_key(day: NaiveDate, egress: &Egress, problem: &str) -> Self {
        Self::new(day, egress).outcome(
            TestOutcome::WrongKey,
            format!(
                "The security key cannot be right ({problem}). Copy it from the program's back office, Reports -> \
                 API Reports, or paste the whole generated report URL."
            ),
        )
    }
}

/// What a report read gave.
struct Read {
    rows: u64,
    value_field_seen: bool,
}

async fn read_report(
    outbound: &Outbound,
    req: &incomeaccess::ReportRequest,
    key: &SecurityKey,
    value_field: Option<&str>,
) -> Result<Read, PollError> {
    let mut reader = incomeaccess::open_report(outbound.client(), req, key).await?;
    let mut read = Read {
        rows: 0,
        value_field_seen: false,
    };
    while let Some(row) = reader.next_row().await? {
        read.rows += 1;
        if value_field.is_some_and(|f| row.get(f).is_some()) {
            read.value_field_seen = true;
        }
    }
    Ok(read)
}

/// Runs the test: one request for `day` with `settings` and `key`, through
/// a client guarded by `policy`.
pub(crate) async fn run(
    policy: &OutboundPolicy,
    settings: &IncomeAccessSettings,
    key: &SecurityKey,
    day: NaiveDate,
    egress: &Egress,
) -> ServiceResult<ConnectionTest> {
    let req = settings.test_request(day, TEST_TIMEOUT);
    let mut test = ConnectionTest::new(day, egress);
    test.request = Some(req.display_url());
    let outbound = Outbound::new(policy.clone(), req.timeout).map_err(ServiceError::internal)?;
    // Literal addresses never reach the guarded resolver: checked first,
    // as a poll does.
    if let Err(e) = outbound.policy().check_url(&req.url(key)) {
        return Ok(refused(test, &e));
    }
    let value_field = settings.delta_config(chrono::Utc::now()).value_field;
    // The client's timeout covers the whole request; this one also bounds
    // reading a body that trickles in.
    let limit = req.timeout + Duration::from_secs(1);
    let result = tokio::time::timeout(
        limit,
        read_report(&outbound, &req, key, value_field.as_deref()),
    )
    .await
    .unwrap_or(Err(PollError::Timeout {
        secs: req.timeout.as_secs(),
    }));
    Ok(match result {
        Ok(read) => {
            let message = if read.rows == 0 {
                format!(
                    "Connected: the program answered the {} report for {} with no rows (nothing happened that \
                     day, which is normal for a new or quiet account). The key and the IP whitelist are right.",
                    req.report_name, test.day
                )
            } else {
                format!(
                    "Connected: the program answered the {} report for {} with {} row{}.",
                    req.report_name,
                    test.day,
                    read.rows,
                    if read.rows == 1 { "" } else { "s" }
                )
            };
            if let Some(field) = value_field.filter(|_| read.rows > 0 && !read.value_field_seen) {
                test.warnings.push(format!(
                    "No row has the field {field}: commissions would not be recorded. Check the value field \
                     (Advanced) against the report's fields."
                ));
            }
            test.rows = Some(read.rows);
            test.outcome(TestOutcome::Works, message)
        }
        Err(e) => failed(test, policy, &req.api_url, &e, egress).await,
    })
}

fn refused(mut test: ConnectionTest, e: &OutboundError) -> ConnectionTest {
    test.detail = Some(e.to_string());
    test.outcome(
        TestOutcome::RefusedAddress,
        format!(
            "clicktrail refused to call this address ({e}): it does not call private, loopback or internal \
             addresses unless allow_private_networks is set. Use the program's public affreporting.asp URL."
        ),
    )
}

/// Why the request failed, in the user's terms.
async fn failed(
    mut test: ConnectionTest,
    policy: &OutboundPolicy,
    url: &url::Url,
    e: &PollError,
    egress: &Egress,
) -> ConnectionTest {
    test.detail = Some(e.to_string());
    let whitelist = egress.address_text();
    match e {
        PollError::NoPermission { detail } => match e.permission_cause() {
            Some(PermissionCause::WrongKey) => test.outcome(
                TestOutcome::WrongKey,
                format!(
                    "The program refused the security key ({detail}). Copy the current key from its back office, \
                     Reports -> API Reports (generating a new key invalidates the old one), or paste the whole \
                     generated report URL. If the key is right, check that {whitelist} is whitelisted there."
                ),
            ),
            Some(PermissionCause::IpNotWhitelisted) => test.outcome(
                TestOutcome::IpNotWhitelisted,
                format!(
                    "The program refused this server's address ({detail}): add {whitelist} to the IP whitelist \
                     in its back office, Reports -> API Reports. If it is listed already, check the security key."
                ),
            ),
            Some(PermissionCause::Unknown) | None => test.outcome(
                TestOutcome::NoPermission,
                format!(
                    "The program refused the request ({detail}): either the security key is not the current one, \
                     or this server's address is not whitelisted. Check both in its back office, Reports -> API \
                     Reports; the address to whitelist: {whitelist}."
                ),
            ),
        },
        PollError::InactiveReport => test.outcome(TestOutcome::InactiveReport, e.message()),
        PollError::ServerError { status }
        | PollError::HttpStatus {
            status: status @ (408 | 425 | 429),
        } => test.outcome(
            TestOutcome::ServerError,
            format!("The program's server is failing or busy (HTTP {status}). Try again later."),
        ),
        PollError::HtmlErrorPage { .. } => test.outcome(
            TestOutcome::NotIncomeAccess,
            "The API URL answered a web page, not an Income Access report. Check the API URL: it is the \
             program's affreporting.asp address, as in the report URL that Reports -> API Reports generates. \
             (If it is right, the program may be down for maintenance: try again later.)"
                .to_owned(),
        ),
        PollError::HttpStatus { status } => test.outcome(
            TestOutcome::NotIncomeAccess,
            format!(
                "The API URL answered HTTP {status}, not a report. Check the API URL: it is the program's \
                 affreporting.asp address, as in the report URL that Reports -> API Reports generates."
            ),
        ),
        PollError::Malformed { detail } => test.outcome(
            TestOutcome::NotIncomeAccess,
            format!(
                "The answer is not an Income Access report ({detail}). Check the API URL: it is the program's \
                 affreporting.asp address."
            ),
        ),
        PollError::SoapFault { detail } => test.outcome(
            TestOutcome::ProgramError,
            format!(
                "The program answered an error: {detail}. Check the report, merchant id and format under \
                 Advanced."
            ),
        ),
        PollError::Timeout { secs } => test.outcome(
            TestOutcome::Timeout,
            format!(
                "The program did not answer within {secs} seconds. Try again; if it keeps happening, check the \
                 API URL."
            ),
        ),
        PollError::Transport { detail } => {
            // The transport error is text by now: ask the guarded resolver
            // again to tell a refused address from an unreachable host.
            if let Some(Host::Domain(name)) = url.host() {
                match GuardedResolver::new(Arc::new(policy.clone()))
                    .lookup(name)
                    .await
                {
                    Err(r) if r.is_refusal() => return refused(test, &r),
                    Err(r) => {
                        return test.outcome(
                            TestOutcome::Unreachable,
                            format!("clicktrail could not reach the program: {r}. Check the API URL."),
                        );
                    }
                    Ok(_) => {}
                }
            }
            test.outcome(
                TestOutcome::Unreachable,
                format!(
                    "clicktrail could not reach the program ({detail}). Check the API URL, and that this server \
                     may make outbound HTTPS requests."
                ),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day() -> NaiveDate {
        NaiveDate::from_ymd_opt(2024, 6, 3).unwrap()
    }

    async fn outcome_of(e: PollError, egress: &Egress) -> ConnectionTest {
        let url = url::Url::parse("https://203.0.113.9/api/affreporting.asp").unwrap();
        failed(
            ConnectionTest::new(day(), egress),
            &OutboundPolicy::strict(),
            &url,
            &e,
            egress,
        )
        .await
    }

    #[tokio::test]
    async fn errors_map_to_outcomes() {
        let egress = Egress::new(vec!["203.0.113.7".parse().unwrap()]);
        let np = |d: &str| PollError::NoPermission { detail: d.into() };
        let cases = [
            (np("no permission 1"), "wrong_key"),
            (np("no permission 2"), "ip_not_whitelisted"),
            (np("HTTP 403"), "no_permission"),
            (PollError::InactiveReport, "inactive_report"),
            (PollError::ServerError { status: 503 }, "server_error"),
            (PollError::HttpStatus { status: 429 }, "server_error"),
            (PollError::HttpStatus { status: 404 }, "not_income_access"),
            (
                PollError::HtmlErrorPage { status: 200 },
                "not_income_access",
            ),
            (
                PollError::Malformed { detail: "x".into() },
                "not_income_access",
            ),
            (
                PollError::SoapFault {
                    detail: "invalid merchant id".into(),
                },
                "program_error",
            ),
            (PollError::Timeout { secs: 15 }, "timeout"),
            (
                PollError::Transport {
                    detail: "connection refused".into(),
                },
                "unreachable",
            ),
        ];
        for (e, code) in cases {
            let t = outcome_of(e.clone(), &egress).await;
            assert_eq!(t.outcome.code(), code, "{e:?}");
            assert!(!t.ok);
            assert_eq!(t.egress_ips, vec!["203.0.113.7".to_owned()]);
            let json = serde_json::to_value(&t).unwrap();
            assert_eq!(json["outcome"], code);
        }
        for cause in ["no permission 1", "no permission 2", "x"] {
            let t = outcome_of(np(cause), &egress).await;
            assert!(t.message.contains("203.0.113.7"), "{}", t.message);
            assert!(t.message.contains("key"), "{}", t.message);
        }
    }

    #[tokio::test]
    async fn a_name_on_a_refused_address_is_refused_address() {
        // `localhost` is refused by name under the strict policy: the
        // diagnosis of a transport failure finds the policy's refusal.
        let url = url::Url::parse("https://localhost/api/affreporting.asp").unwrap();
        let egress = Egress::default();
        let t = failed(
            ConnectionTest::new(day(), &egress),
            &OutboundPolicy::strict(),
            &url,
            &PollError::Transport {
                detail: "dns error".into(),
            },
            &egress,
        )
        .await;
        assert_eq!(t.outcome, TestOutcome::RefusedAddress);
    }

    #[test]
    fn the_hint_says_how_to_find_the_address_when_unknown() {
        let unknown = Egress::default();
        assert!(unknown.ips().is_empty());
        assert!(unknown.hint().contains("curl https://ifconfig.me"));
        assert!(unknown.hint().contains("CLICKTRAIL_EGRESS_IPS"));
        let known = Egress::new(vec![
            "203.0.113.7".parse().unwrap(),
            "2001:db8::7".parse().unwrap(),
        ]);
        assert!(
            known
                .hint()
                .starts_with("Whitelist 203.0.113.7, 2001:db8::7 ")
        );
        assert!(!known.hint().contains("ifconfig"));
    }
}
