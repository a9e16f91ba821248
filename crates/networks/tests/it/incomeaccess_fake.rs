//! The Income Access connector against the fake server of
//! `clicktrail-testkit`, over real HTTP, driven the way the server drives
//! it: plan the requests, stream each report, diff every row against the
//! stored snapshot, keep the new snapshots.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clicktrail_domain::conversion::{SourceEvent, SourceStatus};
use clicktrail_domain::money::Amount;
use clicktrail_networks::incomeaccess::{
    DeltaConfig, FetchSummary, IncomeAccessSettings, PeriodMode, PermissionCause, PollError,
    ReportFormat, RetryPolicy, RowError, SecurityKey, Snapshot, diff, fetch_report, open_report,
};
use clicktrail_testkit::income_access::{
    Decimal, FAKE_KEY, FakeIncomeAccess, FakeMode, FakePlayer,
};

const ACID_A: &str = "QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ";
const ACID_B: &str = "Zk2n1m0aQ8d7yX4c";

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

fn dec(s: &str) -> Decimal {
    s.parse().unwrap()
}

fn amount(s: &str) -> Amount {
    Amount::parse(s).unwrap()
}

/// What the server does for one integration, with snapshots in a map
/// (kept as JSON, as in the database).
struct Poller {
    settings: IncomeAccessSettings,
    key: SecurityKey,
    client: reqwest::Client,
    snapshots: HashMap<String, String>,
}

#[derive(Debug)]
struct Poll {
    events: Vec<SourceEvent>,
    summaries: Vec<FetchSummary>,
    row_errors: Vec<RowError>,
}

impl Poller {
    fn new(fake: &FakeIncomeAccess, format: ReportFormat) -> Self {
        let mut settings =
            IncomeAccessSettings::from_json(&serde_json::json!({"api_url": fake.report_url}))
                .unwrap();
        settings.report_format = format;
        Self {
            settings,
            key: SecurityKey::new(FAKE_KEY).unwrap(),
            client: reqwest::Client::new(),
            snapshots: HashMap::new(),
        }
    }

    async fn poll(&mut self, today: NaiveDate) -> Result<Poll, PollError> {
        let observed: DateTime<Utc> = today.and_hms_opt(12, 0, 0).unwrap().and_utc();
        let cfg: DeltaConfig = self.settings.delta_config(observed);
        let mut out = Poll {
            events: Vec::new(),
            summaries: Vec::new(),
            row_errors: Vec::new(),
        };
        for req in self.settings.plan(today) {
            let mut reader = open_report(&self.client, &req, &self.key).await?;
            while let Some(row) = reader.next_row().await? {
                let prev: Option<Snapshot> = row
                    .snapshot_key()
                    .and_then(|key| self.snapshots.get(&key))
                    .map(|j| serde_json::from_str(j).unwrap());
                match diff(prev.as_ref(), &row, &cfg) {
                    Ok(diff) => {
                        if diff.changed {
                            self.snapshots
                                .insert(diff.key, serde_json::to_string(&diff.snapshot).unwrap());
                        }
                        out.events.extend(diff.events);
                    }
                    Err(e) => out.row_errors.push(e),
                }
            }
            out.summaries.push(reader.summary());
        }
        Ok(out)
    }
}

fn names(events: &[SourceEvent]) -> Vec<(String, Option<String>, Option<String>)> {
    events
        .iter()
        .map(|e| {
            (
                e.source_event.clone(),
                e.transaction_id.clone(),
                e.value.map(|v| v.to_string()),
            )
        })
        .collect()
}

async fn fake_with_players() -> FakeIncomeAccess {
    let fake = FakeIncomeAccess::start().await.unwrap();
    let h = &fake.handle;
    h.add_player(FakePlayer::new("1001", ACID_A, d(2024, 5, 3)));
    h.add_player(FakePlayer::new("1002", ACID_B, d(2024, 5, 10)).with_currency("EUR"));
    h.add_player(FakePlayer::new("1003", "", d(2024, 5, 12)));
    // A player of April with no activity in May: not in May's report.
    h.add_player(FakePlayer::new("999", "oldoldoldoldold1", d(2024, 4, 2)));
    assert!(h.add_commission("1001", d(2024, 5, 3), dec("1.02")));
    assert!(h.add_commission("1002", d(2024, 5, 11), dec("5")));
    assert!(h.add_commission("1002", d(2024, 5, 12), dec("-0.18")));
    assert!(!h.add_commission("nobody", d(2024, 5, 12), dec("1")));
    fake
}

#[tokio::test]
async fn first_poll_then_nothing_xml_and_csv() {
    let fake = fake_with_players().await;
    let mut xml = Poller::new(&fake, ReportFormat::Xml);
    let mut csv = Poller::new(&fake, ReportFormat::Csv);
    let today = d(2024, 5, 20);

    let first = xml.poll(today).await.unwrap();
    let got = names(&first.events);
    assert_eq!(
        got,
        vec![
            (
                "registration".into(),
                Some(format!("ia:{ACID_A}/p1001:reg")),
                None
            ),
            (
                "commission".into(),
                Some(format!("ia:{ACID_A}/p1001:2024-05:c1")),
                Some("1.02".into())
            ),
            (
                "registration".into(),
                Some(format!("ia:{ACID_B}/p1002:reg")),
                None
            ),
            (
                "commission".into(),
                Some(format!("ia:{ACID_B}/p1002:2024-05:c1")),
                Some("4.82".into())
            ),
            ("registration".into(), Some("ia:/p1003:reg".into()), None),
        ]
    );
    let e = &first.events;
    assert_eq!(e[0].click_id.as_deref(), Some(ACID_A));
    assert_eq!(
        e[0].occurred_at.unwrap().to_rfc3339(),
        "2024-05-04T11:59:59+00:00"
    );
    assert_eq!(e[1].currency.unwrap().as_str(), "GBP");
    assert_eq!(e[3].currency.unwrap().as_str(), "EUR");
    assert_eq!(
        e[4].click_id, None,
        "empty affcustomid: the server logs missing_click_id"
    );
    assert_eq!(e[1].raw.value()["playerid"], "1001");
    assert_eq!(first.summaries.len(), 1);
    assert_eq!(first.summaries[0].rows, 3);
    assert_eq!(first.summaries[0].totals_rows, 1, "totals row dropped");
    assert!(first.row_errors.is_empty());

    let req = fake.handle.requests().pop().unwrap();
    assert!(req.key_ok);
    assert_eq!(req.param("reportname"), Some("AccountReport"));
    assert_eq!(req.param("reportformat"), Some("xml"));
    assert_eq!(req.param("reportmerchantid"), Some("0"));
    assert_eq!(req.param("reportstartdate"), Some("2024/05/01"));
    assert_eq!(req.param("reportenddate"), Some("2024/05/20"));
    assert_eq!(req.param("reportdisplayby"), None);

    let second = xml.poll(today).await.unwrap();
    assert!(
        second.events.is_empty(),
        "a re-poll adds nothing: {:?}",
        names(&second.events)
    );

    // CSV gives exactly the same events.
    let csv_first = csv.poll(today).await.unwrap();
    assert_eq!(names(&csv_first.events), got);
    assert_eq!(csv_first.summaries[0].format, Some(ReportFormat::Csv));
    assert_eq!(csv_first.summaries[0].totals_rows, 1);
    assert!(csv.poll(today).await.unwrap().events.is_empty());
    assert_eq!(fake.handle.request_count(), 4);
}

#[tokio::test]
async fn growth_and_chargeback() {
    let fake = fake_with_players().await;
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    p.poll(d(2024, 5, 20)).await.unwrap();

    assert!(
        fake.handle
            .set_total_commission("1001", d(2024, 5, 21), dec("3.50"))
    );
    let grow = p.poll(d(2024, 5, 21)).await.unwrap();
    assert_eq!(
        names(&grow.events),
        vec![(
            "commission".into(),
            Some(format!("ia:{ACID_A}/p1001:2024-05:c2")),
            Some("2.48".into())
        )]
    );
    assert_eq!(grow.events[0].status, SourceStatus::Approved);

    // A chargeback shrinks the row.
    fake.handle
        .add_commission("1001", d(2024, 5, 22), dec("-1.25"));
    let back = p.poll(d(2024, 5, 22)).await.unwrap();
    assert_eq!(back.events.len(), 1);
    let a = &back.events[0];
    assert_eq!(a.status, SourceStatus::Reversed);
    assert_eq!(a.source_event, "commission");
    assert_eq!(a.value, Some(amount("-1.25")));
    assert_eq!(
        a.adjusts.as_deref(),
        Some(format!("ia:{ACID_A}/p1001:2024-05:c2").as_str())
    );
    assert_eq!(
        a.transaction_id.as_deref(),
        Some(format!("ia:{ACID_A}/p1001:2024-05:a3").as_str())
    );
    assert!(p.poll(d(2024, 5, 22)).await.unwrap().events.is_empty());

    // Sum of what was emitted for the period = the period's total.
    let total = [amount("1.02"), amount("2.48"), amount("-1.25")]
        .into_iter()
        .fold(Amount::ZERO, Amount::saturating_add);
    assert_eq!(total, amount("2.25"));
}

#[tokio::test]
async fn sliding_window_across_months_reports_no_false_chargebacks() {
    let fake = fake_with_players().await;
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    let first = p.poll(d(2024, 5, 30)).await.unwrap();
    assert_eq!(first.events.len(), 5);

    // June 3: the window (May 28 - June 3) touches May and June.
    fake.handle.add_commission("1003", d(2024, 6, 2), dec("7"));
    let june3 = p.poll(d(2024, 6, 3)).await.unwrap();
    assert_eq!(
        names(&june3.events),
        vec![(
            "commission".into(),
            Some("ia:/p1003:2024-06:c1".into()),
            Some("7".into())
        )]
    );
    let reqs = fake.handle.requests();
    let last_two: Vec<_> = reqs[reqs.len() - 2..]
        .iter()
        .map(|r| {
            (
                r.param("reportstartdate").unwrap().to_owned(),
                r.param("reportenddate").unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        last_two,
        vec![
            ("2024/05/01".to_owned(), "2024/05/31".to_owned()),
            ("2024/06/01".to_owned(), "2024/06/03".to_owned())
        ]
    );

    // June 10: May has left the window; nothing shrinks, nothing is emitted.
    let june10 = p.poll(d(2024, 6, 10)).await.unwrap();
    assert!(june10.events.is_empty(), "{:?}", names(&june10.events));
    assert_eq!(june10.summaries.len(), 1);
}

#[tokio::test]
async fn day_mode_sliding_window() {
    let fake = fake_with_players().await;
    let mut p = Poller::new(&fake, ReportFormat::Csv);
    p.settings.period = PeriodMode::Day;
    p.settings.window_days = 3;

    let first = p.poll(d(2024, 5, 12)).await.unwrap();
    let got = names(&first.events);
    assert_eq!(
        got,
        vec![
            (
                "registration".into(),
                Some(format!("ia:{ACID_B}/p1002:reg")),
                None
            ),
            (
                "commission".into(),
                Some(format!("ia:{ACID_B}/p1002:2024-05-11:c1")),
                Some("5".into())
            ),
            // A day whose total is negative: an adjustment of the player's last commission.
            (
                "commission".into(),
                Some(format!("ia:{ACID_B}/p1002:2024-05-12:a1")),
                Some("-0.18".into())
            ),
            ("registration".into(), Some("ia:/p1003:reg".into()), None),
        ]
    );
    assert_eq!(
        first.events[2].adjusts.as_deref(),
        Some(format!("ia:{ACID_B}/p1002:2024-05-11:c1").as_str())
    );
    let req = fake.handle.requests().pop().unwrap();
    assert_eq!(req.param("reportdisplayby"), Some("Date"));
    assert_eq!(req.param("reportstartdate"), Some("2024/05/10"));

    // The window slides past May 11: its row disappears, no adjustment.
    fake.handle.add_commission("1002", d(2024, 5, 14), dec("1"));
    let later = p.poll(d(2024, 5, 14)).await.unwrap();
    assert_eq!(
        names(&later.events),
        vec![(
            "commission".into(),
            Some(format!("ia:{ACID_B}/p1002:2024-05-14:c1")),
            Some("1".into())
        )]
    );
    assert!(p.poll(d(2024, 5, 15)).await.unwrap().events.is_empty());
}

#[tokio::test]
async fn restart_and_overlap_never_double_count() {
    let fake = fake_with_players().await;
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    let first = p.poll(d(2024, 5, 20)).await.unwrap();

    // A restart: a new poller with the stored snapshots.
    let mut restarted = Poller::new(&fake, ReportFormat::Xml);
    restarted.snapshots = p.snapshots.clone();
    assert!(
        restarted
            .poll(d(2024, 5, 20))
            .await
            .unwrap()
            .events
            .is_empty()
    );
    assert!(
        restarted
            .poll(d(2024, 5, 25))
            .await
            .unwrap()
            .events
            .is_empty(),
        "overlapping window"
    );

    // Without snapshots the same ids come out again: the server's
    // uniqueness on (integration, transaction id, event) rejects them.
    let mut amnesiac = Poller::new(&fake, ReportFormat::Xml);
    let again = amnesiac.poll(d(2024, 5, 20)).await.unwrap();
    assert_eq!(names(&again.events), names(&first.events));
}

#[tokio::test]
async fn mixed_case_fields() {
    let fake = fake_with_players().await;
    let mut lower = Poller::new(&fake, ReportFormat::Xml);
    let expected = names(&lower.poll(d(2024, 5, 20)).await.unwrap().events);
    fake.handle.set_mixed_case(true);
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        let mut p = Poller::new(&fake, format);
        let poll = p.poll(d(2024, 5, 20)).await.unwrap();
        assert_eq!(names(&poll.events), expected, "{format:?}");
        assert_eq!(poll.events[0].raw.value()["RowID"], "1");
        assert_eq!(poll.summaries[0].totals_rows, 1);
    }
}

#[tokio::test]
async fn acid_report_registrations_from_downloads() {
    let fake = fake_with_players().await;
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    p.settings.report_name = "ACIDReport".into();
    p.settings.value_field = "Commission".into();
    let poll = p.poll(d(2024, 5, 20)).await.unwrap();
    let got = names(&poll.events);
    assert!(
        got.contains(&(
            "registration".into(),
            Some(format!("ia:{ACID_A}/-:reg")),
            None
        )),
        "{got:?}"
    );
    assert!(got.contains(&(
        "commission".into(),
        Some(format!("ia:{ACID_B}/-:2024-05:c1")),
        Some("4.82".into())
    )));
    // The row of the player without a click id has no identity at all.
    assert_eq!(poll.row_errors, vec![RowError::NoIdentity]);
    assert_eq!(poll.row_errors[0].log_code().as_str(), "missing_click_id");
    assert!(p.poll(d(2024, 5, 20)).await.unwrap().events.is_empty());
}

#[tokio::test]
async fn no_records_is_a_successful_empty_poll() {
    let fake = FakeIncomeAccess::start().await.unwrap();
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        let mut p = Poller::new(&fake, format);
        let poll = p.poll(d(2024, 5, 20)).await.unwrap();
        assert!(poll.events.is_empty());
        assert!(poll.summaries[0].no_records, "{format:?}");
    }
}

async fn poll_error(fake: &FakeIncomeAccess, format: ReportFormat) -> PollError {
    let mut p = Poller::new(fake, format);
    p.settings.timeout_secs = 1;
    match p.poll(d(2024, 5, 20)).await {
        Ok(_) => panic!("expected an error"),
        Err(e) => {
            for text in [e.to_string(), e.message(), format!("{e:?}")] {
                assert!(!text.contains(FAKE_KEY), "{text}");
            }
            e
        }
    }
}

#[tokio::test]
async fn failures_are_classified() {
    let fake = fake_with_players().await;
    let h = &fake.handle;

    h.set_key("ffffffffffffffffffffffffffffffff");
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        let e = poll_error(&fake, format).await;
        assert_eq!(
            e,
            PollError::NoPermission {
                detail: "no permission 1".into()
            }
        );
        assert!(e.message().contains("whitelist") && e.message().contains("security key"));
        assert_eq!(
            e.retry_policy(),
            RetryPolicy::OnceAfter(Duration::from_secs(30))
        );
    }
    assert_eq!(
        poll_error(&fake, ReportFormat::Xml)
            .await
            .permission_cause(),
        Some(PermissionCause::WrongKey)
    );
    h.set_key(FAKE_KEY);

    // A caller outside the back office's IP whitelist is refused whatever
    // its key.
    h.set_whitelist(Some(vec!["203.0.113.7".parse().unwrap()]));
    let e = poll_error(&fake, ReportFormat::Csv).await;
    assert_eq!(
        e,
        PollError::NoPermission {
            detail: "no permission 2".into()
        }
    );
    assert_eq!(
        e.permission_cause(),
        Some(PermissionCause::IpNotWhitelisted)
    );
    h.set_whitelist(Some(vec!["127.0.0.1".parse().unwrap()]));
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    assert!(p.poll(d(2024, 5, 20)).await.is_ok(), "a whitelisted caller");
    h.set_whitelist(None);

    h.set_mode(FakeMode::NoPermission(2));
    assert_eq!(
        poll_error(&fake, ReportFormat::Xml).await.code(),
        "no_permission"
    );

    h.set_mode(FakeMode::HtmlErrorPage);
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        let e = poll_error(&fake, format).await;
        assert_eq!(e.code(), "html_error_page");
        assert_eq!(e.retry_policy(), RetryPolicy::Backoff);
    }

    h.set_mode(FakeMode::ServerError(503));
    let e = poll_error(&fake, ReportFormat::Xml).await;
    assert_eq!(e, PollError::ServerError { status: 503 });
    assert!(e.retryable());

    h.set_mode(FakeMode::InactiveReport);
    for format in [ReportFormat::Xml, ReportFormat::Csv] {
        let e = poll_error(&fake, format).await;
        assert_eq!(e, PollError::InactiveReport);
        assert!(!e.retryable());
    }
    h.set_mode(FakeMode::Normal);

    let mut p = Poller::new(&fake, ReportFormat::Xml);
    p.settings.report_name = "NoSuchReport".into();
    assert_eq!(
        p.poll(d(2024, 5, 20)).await.err(),
        Some(PollError::InactiveReport)
    );

    h.set_delay(Duration::from_secs(3));
    let e = poll_error(&fake, ReportFormat::Xml).await;
    assert_eq!(e, PollError::Timeout { secs: 1 });
    assert!(e.retryable());
    h.set_delay(Duration::ZERO);

    // Nothing listens on a port we just released.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    p.settings.api_url = format!("http://127.0.0.1:{port}/api/affreporting.asp")
        .parse()
        .unwrap();
    let e = p.poll(d(2024, 5, 20)).await.unwrap_err();
    assert_eq!(e.code(), "transport");
    assert!(e.retryable());
    assert!(!e.to_string().contains(FAKE_KEY));

    // 404 on a wrong path.
    let mut p = Poller::new(&fake, ReportFormat::Xml);
    p.settings.api_url = format!("{}/api/nothing.asp", fake.base_url)
        .parse()
        .unwrap();
    assert_eq!(
        p.poll(d(2024, 5, 20)).await.unwrap_err(),
        PollError::HttpStatus { status: 404 }
    );
}

/// A server that sends the headers and half a report, then stalls or hangs
/// up: the timeout covers the body, and a cut body is an error.
async fn half_body_server(hang_up: bool) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let part = "<SOAP-ENV:Envelope><SOAP-ENV:Body><reportresponse><row><rowid>1</rowid><playerid>1</playerid></row><row>";
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: {}\r\n\r\n",
                part.len() + 1000
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(part.as_bytes()).await;
            if hang_up {
                drop(sock);
            } else {
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        }
    });
    format!("http://{addr}/api/affreporting.asp")
}

#[tokio::test]
async fn body_timeout_and_cut_body() {
    for (hang_up, code) in [(false, "timeout"), (true, "transport")] {
        let url = half_body_server(hang_up).await;
        let mut settings = IncomeAccessSettings::from_json(
            &serde_json::json!({"api_url": url, "timeout_secs": 1}),
        )
        .unwrap();
        settings.timeout_secs = 1;
        let req = settings.plan(d(2024, 5, 20)).remove(0);
        let key = SecurityKey::new(FAKE_KEY).unwrap();
        let mut rows = 0;
        let started = std::time::Instant::now();
        let e = fetch_report(&reqwest::Client::new(), &req, &key, |_| rows += 1)
            .await
            .unwrap_err();
        assert_eq!(e.code(), code, "{e}");
        assert_eq!(rows, 1, "the complete row came through before the failure");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}

#[tokio::test]
async fn fetch_report_streams_rows() {
    let fake = fake_with_players().await;
    let settings =
        IncomeAccessSettings::from_json(&serde_json::json!({"api_url": fake.report_url})).unwrap();
    let req = settings.plan(d(2024, 5, 20)).remove(0);
    assert!(!req.display_url().contains(FAKE_KEY));
    let mut ids = Vec::new();
    let summary = fetch_report(
        &reqwest::Client::new(),
        &req,
        &SecurityKey::new(FAKE_KEY).unwrap(),
        |row| {
            ids.push(row.get("playerid").unwrap_or_default().to_owned());
        },
    )
    .await
    .unwrap();
    assert_eq!(ids, ["1001", "1002", "1003"]);
    assert_eq!(summary.rows, 3);
    assert!(summary.bytes > 500);
}

/// A server that answers every request with `response` and hangs up.
async fn raw_server(response: String) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = sock.read(&mut buf).await;
            let _ = sock.write_all(response.as_bytes()).await;
        }
    });
    format!("http://{addr}/api/affreporting.asp")
}

#[tokio::test]
async fn status_lines_are_classified() {
    let cases = [
        (
            "403 Forbidden",
            "<html><body>403 - Forbidden: Access is denied.</body></html>",
            "no_permission",
            true,
        ),
        ("401 Unauthorized", "", "no_permission", true),
        ("500 Internal Server Error", "oops", "server_error", true),
        ("429 Too Many Requests", "", "http_error", true),
        ("400 Bad Request", "no permission 2", "no_permission", true),
        ("410 Gone", "", "http_error", false),
    ];
    for (status, body, code, retryable) in cases {
        let url = raw_server(format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let settings =
            IncomeAccessSettings::from_json(&serde_json::json!({"api_url": url})).unwrap();
        let req = settings.plan(d(2024, 5, 20)).remove(0);
        let e = fetch_report(
            &reqwest::Client::new(),
            &req,
            &SecurityKey::new(FAKE_KEY).unwrap(),
            |_| {},
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.code(), e.retryable()),
            (code, retryable),
            "{status}: {e}"
        );
    }
}

/// The server spawns polls on a multi-threaded runtime: everything must be Send.
#[test]
fn futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let settings =
        IncomeAccessSettings::from_json(&serde_json::json!({"api_url": "http://x.invalid/"}))
            .unwrap();
    let req = settings.plan(d(2024, 5, 20)).remove(0);
    let key = SecurityKey::new(FAKE_KEY).unwrap();
    let client = reqwest::Client::new();
    is_send(&open_report(&client, &req, &key));
    is_send(&fetch_report(&client, &req, &key, |_| {}));
    #[expect(dead_code, reason = "only type-checked")]
    fn next_row_is_send(r: &mut clicktrail_networks::incomeaccess::ReportReader) {
        is_send(&r.next_row());
    }
}

#[tokio::test]
async fn an_echoed_key_is_redacted() {
    let bodies = [
        format!(
            "<Envelope><Body><Fault><faultstring>bad key {FAKE_KEY}</faultstring></Fault></Body></Envelope>"
        ),
        format!("Unknown key {FAKE_KEY} for this report"),
        format!("no permission 1 ({FAKE_KEY})"),
    ];
    for body in bodies {
        let url = raw_server(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ))
        .await;
        let settings =
            IncomeAccessSettings::from_json(&serde_json::json!({"api_url": url})).unwrap();
        let req = settings.plan(d(2024, 5, 20)).remove(0);
        let e = fetch_report(
            &reqwest::Client::new(),
            &req,
            &SecurityKey::new(FAKE_KEY).unwrap(),
            |_| {},
        )
        .await
        .unwrap_err();
        for text in [e.to_string(), e.message(), format!("{e:?}")] {
            assert!(!text.contains(&FAKE_KEY[..8]), "{text}");
        }
    }
}
