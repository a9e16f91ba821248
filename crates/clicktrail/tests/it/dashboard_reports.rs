//! Reports against a known data set, on SQLite and PostgreSQL: traffic sent
//! through the real collector, conversions through the real postback path,
//! spend through the dashboard's CSV import; the numbers are read back from
//! the report page and its CSV exports.

use clicktrail_testkit::both;
use serde_json::{Value, json};

use crate::support::browser::Browser;
use crate::support::{Backend, TestServer};

const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36";
const GOOGLEBOT: &str = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";

async fn collect(t: &TestServer, ua: &str, body: Value) {
    let r = t
        .http
        .post(t.url("/collect"))
        .header("user-agent", ua)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("collect");
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 202, "{text}");
}

fn pageview(visitor: &str, url: &str) -> Value {
    json!({"event_id": uuid::Uuid::new_v4().to_string(), "name": "PageView",
           "ts": chrono::Utc::now().timestamp_millis(), "visitor_id": visitor, "url": url})
}

fn click(visitor: &str, page: &str, click_id: &str, link: &str, group: &str) -> Value {
    json!({"event_id": uuid::Uuid::new_v4().to_string(), "name": "OutboundClick",
           "ts": chrono::Utc::now().timestamp_millis(), "visitor_id": visitor, "url": page,
           "click_id": click_id, "link": {"url": link, "tracking_group": group, "text": "Play"}})
}

/// Parses a CSV body into rows of fields.
fn rows(body: &str) -> Vec<Vec<String>> {
    let mut r = csv::Reader::from_reader(body.as_bytes());
    let mut out = vec![
        r.headers()
            .expect("header")
            .iter()
            .map(str::to_owned)
            .collect(),
    ];
    for rec in r.records() {
        out.push(rec.expect("record").iter().map(str::to_owned).collect());
    }
    out
}

fn row<'a>(table: &'a [Vec<String>], key: &str) -> &'a Vec<String> {
    table
        .iter()
        .find(|r| r.first().map(String::as_str) == Some(key))
        .unwrap_or_else(|| panic!("no row {key:?} in {table:?}"))
}

fn kpi(body: &str, name: &str) -> String {
    let marker = format!("data-kpi=\"{name}\"");
    let at = body.find(&marker).expect("kpi");
    let rest = &body[at..];
    let v = rest.find("class=\"value\">").expect("value") + "class=\"value\">".len();
    rest[v..rest[v..].find('<').map(|e| v + e).unwrap_or(v)].to_owned()
}

both!(
    reports_match_the_seeded_data,
    |backend: Backend| async move {
        let t = TestServer::start(backend).await;
        let b = Browser::new(&t.base);
        b.setup_and_login().await;
        let pid = b
            .create_property("Casino reviews", "example.com", "EUR")
            .await;

        // Traffic through the collector.
        let v1_page = "https://example.com/landing-a?utm_source=facebook&utm_medium=paid_social&utm_campaign=spring&utm_content=ad-1&fbclid=abc123";
        collect(
            &t,
            CHROME,
            json!({"property_id": pid, "events": [pageview("visitor-one-0001", v1_page)]}),
        )
        .await;
        collect(&t, CHROME, json!({"property_id": pid, "events": [click("visitor-one-0001", v1_page, "clickone0000000001",
        "https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1&c=clickone0000000001", "incomeaccess")]})).await;
        let v2_page = "https://example.com/landing-b?utm_source=google&utm_medium=cpc&utm_campaign=brand&gclid=g123";
        collect(&t, CHROME, json!({"property_id": pid, "events": [pageview("visitor-two-00002", v2_page),
        click("visitor-two-00002", v2_page, "clicktwo0000000002", "https://www.offers.example/?subid=clicktwo0000000002", "mynet")]})).await;
        collect(&t, CHROME, json!({"property_id": pid, "events": [pageview("visitor-three-003", "https://example.com/landing-a"),
        pageview("visitor-three-003", "https://example.com/other")]})).await;
        collect(&t, GOOGLEBOT, json!({"property_id": pid, "events": [pageview("visitor-bot-00004", "https://example.com/landing-a")]})).await;

        // Conversions through the postback path of an installed integration.
        let state = &t.server;
        let property = clicktrail_store::properties::get(
            &state.services.db,
            &clicktrail_domain::PropertyId::parse(&pid).unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
        let mut settings = serde_json::Map::new();
        settings.insert("tracking_group".into(), json!("mynet"));
        settings.insert("subid_param".into(), json!("subid"));
        let integration = state
            .services
            .integrations
            .install(
                &property,
                clicktrail_engine::integrations::InstallRequest {
                    catalog: "custom".into(),
                    name: None,
                    credentials: serde_json::Map::new(),
                    settings,
                    event_mapping: None,
                },
            )
            .await
            .expect("install");
        let token = state
            .services
            .integrations
            .postback_token(&integration)
            .expect("token");
        for (q, want) in [
            (
                "click_id=clickone0000000001&value=30&currency=EUR&transaction_id=t1",
                "validated",
            ),
            (
                "click_id=clicktwo0000000002&value=10&currency=GBP&transaction_id=t2",
                "validated",
            ),
            (
                "click_id=unknownclick00000009&value=99&currency=EUR&transaction_id=t3",
                "error",
            ),
            (
                "click_id=clickone0000000001&value=30&currency=EUR&transaction_id=t1",
                "error",
            ),
        ] {
            let out = state
                .services
                .integrations
                .receive_postback(&token, Some(q), None, b"")
                .await
                .expect("postback");
            assert_eq!(out.status.as_str(), want, "{q}: {out:?}");
        }

        // Spend through the dashboard (file upload).
        let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
        let csv_file = format!(
            "date,platform,campaign,ad set,ad,spend,currency\n{today},meta,spring,set-1,ad-1,15.00,EUR\n{today},google ads,brand,,,5,EUR\n{today},tiktok,summer,,,2.00,USD\n"
        );
        let spend_page = b.get(&format!("/p/{pid}/spend")).await;
        let r = b
            .post_multipart(
                &format!("/p/{pid}/spend"),
                &[("_csrf", &spend_page.csrf())],
                ("file", "spend.csv", &csv_file),
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);

        // The page's headline numbers.
        let page = b.get(&format!("/p/{pid}/reports")).await;
        assert_eq!(page.status, 200);
        assert!(page.headers.get("server-timing").is_some());
        assert_eq!(kpi(&page.body, "visits"), "3");
        assert_eq!(kpi(&page.body, "clicks"), "2");
        assert_eq!(kpi(&page.body, "conversions"), "2");
        assert_eq!(kpi(&page.body, "revenue"), "30.00");
        assert!(page.body.contains("+ 10.00 GBP"), "other currencies listed");
        assert_eq!(kpi(&page.body, "spend"), "20.00");
        assert_eq!(kpi(&page.body, "roas"), "1.50×");
        assert_eq!(kpi(&page.body, "conversion_rate"), "66.7%");
        assert!(page.body.contains("<svg"), "chart");

        // CSV exports.
        let q = format!("from={today}&to={today}");
        let headline = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=headline&{q}"))
                .await
                .body,
        );
        assert_eq!(
            headline[0],
            [
                "visits",
                "pageviews",
                "outbound_clicks",
                "conversions",
                "revenue_EUR",
                "revenue_other",
                "spend_EUR",
                "spend_other"
            ]
        );
        assert_eq!(
            headline[1],
            [
                "3",
                "4",
                "2",
                "2",
                "30.00",
                "10.00 GBP",
                "20.00",
                "2.00 USD"
            ]
        );
        let with_bots = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=headline&{q}&bots=1"
            ))
            .await
            .body,
        );
        assert_eq!(&with_bots[1][..4], ["4", "5", "2", "2"]);

        let campaigns = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=campaign&{q}"))
                .await
                .body,
        );
        assert_eq!(
            campaigns[0],
            [
                "campaign",
                "visits",
                "outbound_clicks",
                "conversions",
                "revenue_EUR",
                "revenue_other",
                "spend_EUR",
                "spend_other",
                "roas"
            ]
        );
        assert_eq!(
            row(&campaigns, "spring")[1..],
            ["1", "1", "1", "30.00", "", "15.00", "", "2.0000"]
        );
        assert_eq!(
            row(&campaigns, "brand")[1..],
            ["1", "1", "1", "0.00", "10.00 GBP", "5.00", "", "0.0000"]
        );
        assert_eq!(row(&campaigns, "(not set)")[1..4], ["1", "0", "0"]);
        assert_eq!(
            row(&campaigns, "summer")[1..],
            ["0", "0", "0", "0.00", "", "0.00", "2.00 USD", "0.0000"]
        );

        let ads = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=ad&{q}"))
                .await
                .body,
        );
        assert_eq!(
            row(&ads, "ad-1")[1..],
            ["1", "1", "1", "30.00", "", "15.00", "", "2.0000"]
        );

        let groups = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=integration&{q}"
            ))
            .await
            .body,
        );
        assert_eq!(row(&groups, "incomeaccess")[2..5], ["1", "1", "30.00"]);
        assert_eq!(row(&groups, "mynet")[2..4], ["1", "1"]);
        let offers = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=offer&{q}"))
                .await
                .body,
        );
        assert_eq!(
            row(&offers, "wlgala.adsrv.eacdn.com")[2..5],
            ["1", "1", "30.00"]
        );

        let sm = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=source_medium&{q}"
            ))
            .await
            .body,
        );
        assert_eq!(
            row(&sm, "facebook / paid_social")[1..5],
            ["1", "1", "1", "30.00"]
        );
        assert_eq!(row(&sm, "google / cpc")[1..4], ["1", "1", "1"]);

        let channels = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=channel&{q}"))
                .await
                .body,
        );
        let visits: i64 = channels[1..]
            .iter()
            .map(|r| r[1].parse::<i64>().unwrap())
            .sum();
        assert_eq!(visits, 3);

        let landing = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=landing_page&{q}"
            ))
            .await
            .body,
        );
        assert_eq!(row(&landing, "example.com/landing-a")[1], "2");

        // First click: the same here (one session per visitor).
        let first = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=headline&{q}&model=first"
            ))
            .await
            .body,
        );
        assert_eq!(first[1][3], "2");

        // The series has today's bucket.
        let series = rows(
            &b.get(&format!("/p/{pid}/reports/export.csv?table=series&{q}"))
                .await
                .body,
        );
        assert!(
            series.iter().any(|r| r[1] == "3" && r[3] == "2"),
            "{series:?}"
        );

        // A range without data.
        let empty = rows(
            &b.get(&format!(
                "/p/{pid}/reports/export.csv?table=headline&from=2020-01-01&to=2020-01-31"
            ))
            .await
            .body,
        );
        assert_eq!(empty[1], ["0", "0", "0", "0", "0.00", "", "0.00", ""]);

        // The spend page's ROAS table.
        let spend = b.get(&format!("/p/{pid}/spend?{q}")).await;
        assert!(spend.body.contains("2.00×"), "spring ROAS shown");
        let roas_csv = rows(&b.get(&format!("/p/{pid}/spend/export.csv?{q}")).await.body);
        assert!(
            roas_csv
                .iter()
                .any(|r| r[0] == "campaign" && r[1] == "spring" && r[7] == "2.0000"),
            "{roas_csv:?}"
        );

        // The overview's checklist: tag seen, links tagged, integration installed,
        // conversion validated (no destination yet).
        let overview = b.get(&format!("/p/{pid}")).await;
        assert_eq!(
            overview.body.matches("data-done=\"true\"").count(),
            4,
            "{}",
            overview.body
        );

        t.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spend_import_shows_every_bad_line() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "example.com", "EUR").await;
    let bad = "date,platform,campaign,ad set,ad,spend,currency\n2026-01-01,meta,c1,,,10,EUR\n2026/01/02,meta,c1,,,x,EURO\n2026-01-03,,c2,,,-1,EUR\n";
    let r = b
        .submit(
            &format!("/p/{pid}/spend"),
            &format!("/p/{pid}/spend"),
            &[("csv", bad)],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.has_error_for("file"));
    assert!(r.body.contains("Line 3:"), "{}", r.body);
    assert!(r.body.contains("Line 4:"));
    assert!(r.body.contains("YYYY-MM-DD"));
    assert!(r.body.contains("Nothing was imported"));
    let empty = b
        .submit(
            &format!("/p/{pid}/spend"),
            &format!("/p/{pid}/spend"),
            &[("csv", "")],
        )
        .await;
    assert_eq!(empty.status, 422);
    assert!(empty.has_error_for("file"));
    let (n,): (i64,) = t
        .server
        .services
        .db
        .fetch_one("SELECT COUNT(*) FROM ad_spend", clicktrail_store::args![])
        .await
        .expect("count");
    assert_eq!(n, 0);
    // Importing the same day twice replaces instead of adding.
    let good = "date,platform,campaign,spend,currency\n2026-01-01,meta,c1,10,EUR\n2026-01-01,meta,c1,2.5,EUR\n";
    for _ in 0..2 {
        let r = b
            .submit(
                &format!("/p/{pid}/spend"),
                &format!("/p/{pid}/spend"),
                &[("csv", good)],
            )
            .await;
        assert_eq!(r.status, 303, "{}", r.body);
    }
    let (sum,): (i64,) = t
        .server
        .services
        .db
        .fetch_one(
            "SELECT CAST(SUM(spend_micros) AS BIGINT) FROM ad_spend",
            clicktrail_store::args![],
        )
        .await
        .expect("sum");
    assert_eq!(sum, 12_500_000);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn property_forms_show_errors_next_to_fields() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let r = b
        .submit(
            "/properties/new",
            "/properties/new",
            &[
                ("name", ""),
                ("domains", "not a domain!"),
                ("currency", "EURO"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    for f in ["name", "domains", "currency"] {
        assert!(r.has_error_for(f), "{f}");
    }
    let pid = b
        .create_property("Site", "https://www.Example.com/path\nother.io", "eur")
        .await;
    let settings = b.get(&format!("/p/{pid}/settings")).await;
    assert!(settings.body.contains("www.example.com\nother.io"));
    let r = b
        .submit(
            &format!("/p/{pid}/settings"),
            &format!("/p/{pid}/settings"),
            &[
                ("name", "Site"),
                ("domains", "example.com"),
                ("currency", "EUR"),
                ("attribution_window", "3"),
                ("session_timeout_min", "0"),
                ("autoscan_prefixes", "go/\n/ok/"),
                ("ip_handling", "shout"),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    for f in [
        "attribution_window",
        "session_timeout_min",
        "autoscan_prefixes",
        "ip_handling",
    ] {
        assert!(r.has_error_for(f), "{f}");
    }
    let r = b
        .submit(
            &format!("/p/{pid}/settings"),
            &format!("/p/{pid}/settings"),
            &[
                ("name", "Renamed"),
                ("domains", "example.com"),
                ("currency", "GBP"),
                ("attribution_window", "7"),
                ("session_timeout_min", "45"),
                ("autoscan", "1"),
                ("autoscan_prefixes", "/go/\n/out/"),
                ("ip_handling", "hash"),
                ("pixel_meta", "1"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let p = clicktrail_store::properties::get(
        &t.server.services.db,
        &clicktrail_domain::PropertyId::parse(&pid).unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(p.name, "Renamed");
    assert_eq!(p.settings.attribution_window_days, Some(7));
    assert_eq!(p.settings.session_timeout_min, 45);
    assert_eq!(p.settings.autoscan_prefixes, vec!["/go/", "/out/"]);
    assert_eq!(p.settings.currency, "GBP");
    assert!(p.settings.pixels.meta && !p.settings.pixels.google && !p.settings.consent_required);
    // The overview shows the snippet with a copy button.
    let o = b.get(&format!("/p/{pid}")).await;
    assert!(o.body.contains(&format!("/t/{pid}.js")));
    assert!(o.body.contains("data-copy=\"snippet\""));
    t.stop().await;
}
