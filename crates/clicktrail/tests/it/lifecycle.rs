//! Data that lives for years, on the real server (SQLite and PostgreSQL):
//! deleting a property stops its tag, collector, links and postbacks at
//! once, a restore brings it back, and the retention job purges it after
//! the grace period, every row of it and nothing of another property's;
//! deleting an integration stops its postbacks and keeps its conversion log
//! unless purged; deleting a destination cancels what waited for it; the
//! retention job expires old raw data in batches, keeps conversions, and
//! clears encrypted addresses after the attribution window.
//!
//! The job is driven through `Retention::run_once(now)` with the clock
//! each case needs (the background job is off in these servers, but for
//! the one test that checks it runs and records its run).

use std::time::Duration;

use crate::support::browser::Browser;
use crate::support::{self, Backend, CHROME_UA, MASTER_KEY, TestDb, TestServer, now_ms, pageview};
use clicktrail_store::{Db, args};
use clicktrail_testkit::both;
use reqwest::Method;
use serde_json::{Value, json};

const DAY_MS: i64 = 86_400_000;

/// A server whose retention job runs only when a test calls it, in
/// batches of two rows, without pauses.
async fn server(b: Backend) -> TestServer {
    let db = TestDb::new(b).await;
    let mut cfg = support::config(&db);
    cfg.retention.enabled = false;
    cfg.retention.batch_rows = 2;
    cfg.retention.batch_pause_ms = 0;
    TestServer::start_with(db, cfg).await
}

fn db(s: &TestServer) -> &Db {
    &s.server.services.db
}

async fn count(db: &Db, sql: &str, property: &str) -> i64 {
    let (n,): (i64,) = db
        .fetch_one(
            &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {sql}"),
            args![property],
        )
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    n
}

/// Rows a property owns, by table (every table that holds them).
async fn rows_of(db: &Db, property: &str) -> Vec<(&'static str, i64)> {
    let mut out = Vec::new();
    for (table, from) in [
        ("properties", "properties WHERE id = $1"),
        ("sessions", "sessions WHERE property_id = $1"),
        ("events", "events WHERE property_id = $1"),
        ("clicks", "clicks WHERE property_id = $1"),
        ("rollup_hourly", "rollup_hourly WHERE property_id = $1"),
        ("integrations", "integrations WHERE property_id = $1"),
        ("conversions", "conversions WHERE property_id = $1"),
        (
            "rollup_conversions_hourly",
            "rollup_conversions_hourly WHERE property_id = $1",
        ),
        ("links", "links WHERE property_id = $1"),
        ("destinations", "destinations WHERE property_id = $1"),
        ("deliveries", "deliveries WHERE property_id = $1"),
        (
            "delivery_attempts",
            "delivery_attempts WHERE delivery_id IN (SELECT id FROM deliveries WHERE property_id = $1)",
        ),
        ("spend_imports", "spend_imports WHERE property_id = $1"),
        ("ad_spend", "ad_spend WHERE property_id = $1"),
    ] {
        out.push((table, count(db, from, property).await));
    }
    out
}

async fn postback(s: &TestServer, url: &str, query: &str) -> (u16, Value) {
    let r = s.http.get(format!("{url}?{query}")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn status_of(s: &TestServer, path: &str) -> u16 {
    s.http
        .get(s.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn delete(s: &TestServer, path: &str) -> (u16, Value) {
    s.api(Method::DELETE, path, MASTER_KEY, None).await
}

/// A property with traffic, a click, an integration with a validated
/// conversion, a tracked link, a destination with a delivery waiting, and
/// a spend import: something in every table a property owns.
struct Populated {
    id: String,
    postback_url: String,
    slug: String,
}

async fn populate(s: &TestServer, domain: &str, n: u32) -> Populated {
    let id = s.property(&[domain]).await;
    let (_, postback_url) = s.install_custom(&id).await;
    let cid = s
        .landing_click(
            &id,
            n,
            &format!("https://{domain}/?utm_source=google&gclid=G{n}"),
        )
        .await;
    // A paused destination: its delivery waits, parked.
    let (st, d) = s
        .post(
            &format!("/api/v1/properties/{id}/destinations"),
            MASTER_KEY,
            json!({"kind": "meta_capi", "settings": {"pixel_id": "1234567890123456", "endpoint": "http://127.0.0.1:9"},
                   "credentials": {"access_token": "EAABfakeMetaAccessToken0123456789"}}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    let did = d["id"].as_str().unwrap();
    let (st, v) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/destinations/{did}"),
            MASTER_KEY,
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = postback(
        s,
        &postback_url,
        &format!("sub1={cid}&payout=10&currency=EUR&txid=T-{n}&event=sale"),
    )
    .await;
    assert_eq!((st, v["status"].as_str()), (200, Some("validated")), "{v}");
    let slug = format!("offer-{n}");
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{id}/links"),
            MASTER_KEY,
            json!({"slug": slug, "destination_url": "https://offer.example/land"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    // The destination is paused: no attempt is made; one is recorded
    // here so the delivery log has a row in every table.
    db(s)
        .execute(
            "INSERT INTO delivery_attempts (delivery_id, at, duration_ms, message, response_excerpt, outcome) \
             SELECT id, $2, 0, 'test', '', 'retry' FROM deliveries WHERE property_id = $1",
            args![id.as_str(), now_ms()],
        )
        .await
        .unwrap();
    clicktrail_store::spend::import(
        db(s),
        &id,
        clicktrail_store::spend::SpendSource::Csv,
        "spend.csv",
        None,
        &[clicktrail_store::spend::SpendLine {
            day: now_ms() / DAY_MS,
            platform: "google_ads".into(),
            campaign: "bingo".into(),
            ad_set: String::new(),
            ad: String::new(),
            spend: clicktrail_domain::Money::new(
                clicktrail_domain::Amount::from_micros(5_000_000),
                clicktrail_domain::Currency::parse("EUR").unwrap(),
            ),
        }],
    )
    .await
    .unwrap();
    Populated {
        id,
        postback_url,
        slug,
    }
}

fn one_event(property: &str, domain: &str, n: u32) -> Value {
    json!({"property_id": property, "events": [
        pageview(&format!("0190f1a2-7d3c-7abc-8def-{n:012}"), &format!("v_visitor_{n:04}"), &format!("https://{domain}/page")),
    ]})
}

both!(property_delete_restore_and_purge, |b: Backend| async move {
    let s = server(b).await;
    let a = populate(&s, "a.example", 1).await;
    let other = populate(&s, "b.example", 2).await;
    let db = db(&s);
    for (table, n) in rows_of(db, &a.id).await {
        assert!(n > 0, "the test should put rows in {table}");
    }
    let tag = format!("/t/{}.js", a.id);
    assert_eq!(status_of(&s, &tag).await, 200);
    assert_eq!(
        status_of(&s, &format!("/go/{}/{}", a.id, a.slug)).await,
        302
    );

    // Deleted: everything stops at once, in this process's caches too.
    let (st, v) = delete(&s, &format!("/api/v1/properties/{}", a.id)).await;
    assert_eq!(st, 200, "{v}");
    let deleted_at = v["deleted_at"].as_i64().unwrap();
    let purge_after = v["purge_after"].as_i64().unwrap();
    assert_eq!(purge_after - deleted_at, 30 * DAY_MS);
    assert_eq!(status_of(&s, &tag).await, 404);
    let (st, v) = s
        .collect(
            &one_event(&a.id, "a.example", 10),
            &[("user-agent", CHROME_UA)],
        )
        .await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"]["code"], "unknown_property");
    assert_eq!(
        status_of(&s, &format!("/go/{}/{}", a.id, a.slug)).await,
        404
    );
    let (st, v) = postback(&s, &a.postback_url, "sub1=x&payout=1").await;
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"]["code"], "unknown_postback_token");
    let (st, v) = s
        .get(&format!("/api/v1/properties/{}", a.id), MASTER_KEY)
        .await;
    assert_eq!((st, v["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(
        s.get(
            &format!("/api/v1/properties/{}/conversions", a.id),
            MASTER_KEY
        )
        .await
        .0,
        404
    );
    let (_, list) = s.get("/api/v1/properties", MASTER_KEY).await;
    let ids: Vec<&str> = list["properties"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![other.id.as_str()]);
    let (_, list) = s.get("/api/v1/properties?deleted=true", MASTER_KEY).await;
    assert_eq!(list["properties"][0]["id"], a.id.as_str());
    // Deleting it again: it is not there.
    assert_eq!(
        delete(&s, &format!("/api/v1/properties/{}", a.id)).await.0,
        404
    );
    // Its waiting delivery is held while it is deleted.
    let (parked,): (i64,) = db
        .fetch_one(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM deliveries WHERE property_id = $1 AND next_attempt_at = $2",
            args![a.id.as_str(), clicktrail_store::deliveries::PARKED_AT],
        )
        .await
        .unwrap();
    assert_eq!(parked, 1);

    // Restored: it tracks again.
    let (st, v) = s
        .post(
            &format!("/api/v1/properties/{}/restore", a.id),
            MASTER_KEY,
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v.get("deleted_at").is_none(), "{v}");
    assert_eq!(status_of(&s, &tag).await, 200);
    let (st, v) = s
        .collect(
            &one_event(&a.id, "a.example", 11),
            &[("user-agent", CHROME_UA)],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    let (st, _) = postback(&s, &a.postback_url, "sub1=x&payout=1").await;
    assert_eq!(st, 200);

    // Deleted again: the job leaves it alone during the grace period...
    assert_eq!(
        delete(&s, &format!("/api/v1/properties/{}", a.id)).await.0,
        200
    );
    let retention = s.server.services.retention.clone();
    let report = retention.run_once(now_ms()).await.unwrap();
    assert!(report.purged_properties.is_empty(), "{report:?}");
    assert!(count(db, "events WHERE property_id = $1", &a.id).await > 0);

    // ...and purges every row of it once the grace period is over, in
    // batches, leaving the other property whole.
    let before_other = rows_of(db, &other.id).await;
    let report = retention.run_once(now_ms() + 31 * DAY_MS).await.unwrap();
    assert_eq!(report.purged_properties, vec![a.id.clone()], "{report:?}");
    assert!(report.batches > 14, "{report:?}");
    for (table, n) in rows_of(db, &a.id).await {
        assert_eq!(n, 0, "{table} still holds rows of the purged property");
    }
    assert_eq!(rows_of(db, &other.id).await, before_other);
    assert_eq!(
        s.post(
            &format!("/api/v1/properties/{}/restore", a.id),
            MASTER_KEY,
            json!({})
        )
        .await
        .0,
        404
    );
    // The other property still works.
    let (st, _) = s
        .collect(
            &one_event(&other.id, "b.example", 12),
            &[("user-agent", CHROME_UA)],
        )
        .await;
    assert_eq!(st, 202);
    s.stop().await;
});

both!(
    integration_delete_stops_postbacks_and_keeps_the_log,
    |b: Backend| async move {
        let s = server(b).await;
        let pid = s.property(&["site.example"]).await;
        let (iid, url) = s.install_custom(&pid).await;
        let cid = s
            .landing_click(&pid, 1, "https://site.example/?utm_source=google")
            .await;
        let (st, v) = postback(
            &s,
            &url,
            &format!("sub1={cid}&payout=10&txid=T-1&event=sale"),
        )
        .await;
        assert_eq!((st, v["status"].as_str()), (200, Some("validated")), "{v}");

        // The integration's tracking group is in the tag until it is deleted.
        let tag = s
            .http
            .get(s.url(&format!("/t/{pid}.js")))
            .send()
            .await
            .unwrap();
        assert!(tag.text().await.unwrap().contains("mynet"));
        let (st, v) = delete(&s, &format!("/api/v1/integrations/{iid}")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["deleted"], true);
        assert_eq!(v["log_purged"], false);
        let (st, v) = postback(
            &s,
            &url,
            &format!("sub1={cid}&payout=10&txid=T-2&event=sale"),
        )
        .await;
        assert_eq!(st, 404, "{v}");
        assert_eq!(v["error"]["code"], "unknown_postback_token");
        let tag = s
            .http
            .get(s.url(&format!("/t/{pid}.js")))
            .send()
            .await
            .unwrap();
        assert!(!tag.text().await.unwrap().contains("mynet"));
        assert_eq!(
            s.get(&format!("/api/v1/integrations/{iid}"), MASTER_KEY)
                .await
                .0,
            404
        );
        let (_, list) = s
            .get(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
            )
            .await;
        assert_eq!(list["integrations"].as_array().unwrap().len(), 0);
        // Not polled either.
        let due =
            clicktrail_store::integrations::due_for_poll(db(&s), now_ms() + 365 * DAY_MS, 100)
                .await
                .unwrap();
        assert!(due.iter().all(|i| i.id != iid));
        // Its conversion log stays.
        let (st, log) = s
            .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
            .await;
        assert_eq!(st, 200, "{log}");
        let entries = log["conversions"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{log}");
        assert_eq!(entries[0]["integration_id"], iid.as_str());

        // Purged on request (a deleted integration's log too).
        let (st, v) = delete(&s, &format!("/api/v1/integrations/{iid}?purge=true")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["log_purged"], true);
        assert_eq!(v["conversions_deleted"], 1);
        let (_, log) = s
            .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
            .await;
        assert_eq!(log["conversions"].as_array().unwrap().len(), 0, "{log}");
        assert_eq!(
            count(db(&s), "conversions WHERE property_id = $1", &pid).await,
            0
        );
        // Deleting it once more without a purge: it is not there.
        assert_eq!(
            delete(&s, &format!("/api/v1/integrations/{iid}")).await.0,
            404
        );
        s.stop().await;
    }
);

both!(
    integration_log_purge_is_finished_by_the_job,
    |b: Backend| async move {
        let s = server(b).await;
        let pid = s.property(&["site.example"]).await;
        let (iid, url) = s.install_custom(&pid).await;
        let (_, keep_url) = s.install_custom(&pid).await;
        for n in 1..=5u32 {
            let cid = s
                .landing_click(&pid, n, "https://site.example/?utm_source=google")
                .await;
            let (st, _) = postback(&s, &url, &format!("sub1={cid}&payout=1&txid=T-{n}")).await;
            assert_eq!(st, 200);
            let (st, _) = postback(&s, &keep_url, &format!("sub1={cid}&payout=1&txid=K-{n}")).await;
            assert_eq!(st, 200);
        }
        // Deleted with a purge that the request did not get to (a crash, a
        // timeout): the job finishes it, in batches, and keeps the other
        // integration's log.
        assert!(
            clicktrail_store::integrations::soft_delete(db(&s), &iid, now_ms(), true)
                .await
                .unwrap()
        );
        let report = s
            .server
            .services
            .retention
            .run_once(now_ms())
            .await
            .unwrap();
        assert_eq!(report.purged_logs, vec![iid.clone()]);
        assert_eq!(report.rows_of("conversions"), 5, "{report:?}");
        let (n,): (i64,) = db(&s)
            .fetch_one(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM conversions WHERE integration_id = $1",
                args![iid.as_str()],
            )
            .await
            .unwrap();
        assert_eq!(n, 0);
        assert_eq!(
            count(db(&s), "conversions WHERE property_id = $1", &pid).await,
            5
        );
        // Done once: the next run has nothing left to purge.
        let again = s
            .server
            .services
            .retention
            .run_once(now_ms())
            .await
            .unwrap();
        assert!(again.purged_logs.is_empty());
        s.stop().await;
    }
);

both!(
    destination_delete_cancels_waiting_deliveries,
    |b: Backend| async move {
        let s = server(b).await;
        let p = populate(&s, "site.example", 1).await;
        let (_, list) = s
            .get(
                &format!("/api/v1/properties/{}/destinations", p.id),
                MASTER_KEY,
            )
            .await;
        let did = list["destinations"][0]["id"].as_str().unwrap().to_owned();
        let (_, deliveries) = s
            .get(
                &format!("/api/v1/properties/{}/deliveries", p.id),
                MASTER_KEY,
            )
            .await;
        let delivery = deliveries["deliveries"][0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(deliveries["deliveries"][0]["status"], "pending");

        let (st, v) = delete(&s, &format!("/api/v1/destinations/{did}")).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["cancelled_deliveries"], 1);
        let (st, d) = s
            .get(&format!("/api/v1/deliveries/{delivery}"), MASTER_KEY)
            .await;
        assert_eq!(st, 200, "{d}");
        assert_eq!(d["status"], "cancelled");
        assert_eq!(d["reason"], "destination_deleted");
        assert_eq!(
            s.get(&format!("/api/v1/destinations/{did}"), MASTER_KEY)
                .await
                .0,
            404
        );
        let (_, list) = s
            .get(
                &format!("/api/v1/properties/{}/destinations", p.id),
                MASTER_KEY,
            )
            .await;
        assert_eq!(list["destinations"].as_array().unwrap().len(), 0);
        // The delivery log still shows it, filtered by its new status.
        let (st, v) = s
            .get(
                &format!("/api/v1/properties/{}/deliveries?status=cancelled", p.id),
                MASTER_KEY,
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
        // A new conversion is not planned for it.
        let cid = s
            .landing_click(&p.id, 7, "https://site.example/?utm_source=google")
            .await;
        let (st, _) = postback(
            &s,
            &p.postback_url,
            &format!("sub1={cid}&payout=3&txid=N-1&event=sale"),
        )
        .await;
        assert_eq!(st, 200);
        assert_eq!(
            count(db(&s), "deliveries WHERE property_id = $1", &p.id).await,
            1
        );
        assert_eq!(
            delete(&s, &format!("/api/v1/destinations/{did}")).await.0,
            404
        );

        // A tracked link is deleted the same way: its URL answers 404 at once.
        let (_, links) = s
            .get(&format!("/api/v1/properties/{}/links", p.id), MASTER_KEY)
            .await;
        let lid = links["links"][0]["id"].as_str().unwrap().to_owned();
        assert_eq!(
            status_of(&s, &format!("/go/{}/{}", p.id, p.slug)).await,
            302
        );
        assert_eq!(delete(&s, &format!("/api/v1/links/{lid}")).await.0, 200);
        assert_eq!(
            status_of(&s, &format!("/go/{}/{}", p.id, p.slug)).await,
            404
        );
        assert_eq!(delete(&s, &format!("/api/v1/links/{lid}")).await.0, 404);
        s.stop().await;
    }
);

/// Moves rows of a property back in time (test setup: the collector stamps
/// what it receives with the server's clock).
async fn age(db: &Db, sql: &str, property: &str, days: i64) {
    db.execute(sql, args![property, days * DAY_MS])
        .await
        .unwrap();
}

both!(
    retention_expires_old_raw_data_and_keeps_conversions,
    |b: Backend| async move {
        let s = server(b).await;
        let pid = s.property(&["site.example"]).await;
        let (st, v) = s
        .api(
            Method::PATCH,
            &format!("/api/v1/properties/{pid}"),
            MASTER_KEY,
            Some(json!({"settings": {"attribution_window_days": 30, "retention": {"events_days": 30}}})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["settings"]["retention"]["events_days"], 30);
        let (_, url) = s.install_custom(&pid).await;
        // Five old visitors (a page view and a click each) with a conversion
        // each, then two recent ones.
        let mut old_clicks = Vec::new();
        for n in 1..=5u32 {
            let cid = s
                .landing_click(&pid, n, "https://site.example/?utm_source=google")
                .await;
            let (st, _) = postback(&s, &url, &format!("sub1={cid}&payout=1&txid=T-{n}")).await;
            assert_eq!(st, 200);
            old_clicks.push(cid);
        }
        let db = db(&s);
        // 33 days back: past the events' 30 days, not past the clicks' 37
        // (the attribution window plus the margin).
        age(
            db,
            "UPDATE events SET ts = ts - $2 WHERE property_id = $1",
            &pid,
            33,
        )
        .await;
        age(
            db,
            "UPDATE clicks SET ts = ts - $2 WHERE property_id = $1",
            &pid,
            33,
        )
        .await;
        age(
        db,
        "UPDATE sessions SET started_at = started_at - $2, last_seen_at = last_seen_at - $2 WHERE property_id = $1",
        &pid,
        33,
    )
    .await;
        for n in 6..=7u32 {
            s.landing_click(&pid, n, "https://site.example/?utm_source=google")
                .await;
        }
        let rollups = count(db, "rollup_hourly WHERE property_id = $1", &pid).await;

        let report = s
            .server
            .services
            .retention
            .run_once(now_ms())
            .await
            .unwrap();
        // Ten old events, two per batch.
        assert_eq!(report.rows_of("events"), 10, "{report:?}");
        assert!(report.batches >= 5, "{report:?}");
        assert_eq!(report.rows_of("clicks"), 0, "{report:?}");
        assert_eq!(count(db, "events WHERE property_id = $1", &pid).await, 4);
        assert_eq!(count(db, "clicks WHERE property_id = $1", &pid).await, 7);
        assert_eq!(count(db, "sessions WHERE property_id = $1", &pid).await, 7);

        // Five days later the old clicks and their sessions are past their 37
        // days too; conversions, reports and recent data stay.
        let report = s
            .server
            .services
            .retention
            .run_once(now_ms() + 5 * DAY_MS)
            .await
            .unwrap();
        assert_eq!(report.rows_of("clicks"), 5, "{report:?}");
        assert_eq!(report.rows_of("sessions"), 5, "{report:?}");
        assert_eq!(count(db, "clicks WHERE property_id = $1", &pid).await, 2);
        assert_eq!(count(db, "sessions WHERE property_id = $1", &pid).await, 2);
        assert_eq!(count(db, "events WHERE property_id = $1", &pid).await, 4);
        assert_eq!(
            count(db, "conversions WHERE property_id = $1", &pid).await,
            5
        );
        assert_eq!(
            count(db, "rollup_hourly WHERE property_id = $1", &pid).await,
            rollups
        );
        // The conversion log still reads.
        let (st, log) = s
            .get(&format!("/api/v1/properties/{pid}/conversions"), MASTER_KEY)
            .await;
        assert_eq!(st, 200);
        assert_eq!(log["conversions"].as_array().unwrap().len(), 5);
        // Idempotent: nothing more to do.
        let again = s
            .server
            .services
            .retention
            .run_once(now_ms() + 5 * DAY_MS)
            .await
            .unwrap();
        assert!(again.rows.is_empty(), "{again:?}");

        // Settings out of range are refused with the field named.
        let (st, v) = s
            .api(
                Method::PATCH,
                &format!("/api/v1/properties/{pid}"),
                MASTER_KEY,
                Some(json!({"settings": {"retention": {"events_days": 7}}})),
            )
            .await;
        assert_eq!(st, 422, "{v}");
        assert_eq!(
            v["error"]["fields"][0]["field"],
            "settings.retention.events_days"
        );
        s.stop().await;
    }
);

both!(
    encrypted_addresses_are_cleared_after_the_window,
    |b: Backend| async move {
        let s = server(b).await;
        let pid = s.property(&["site.example"]).await;
        let (st, v) = s
            .api(
                Method::PATCH,
                &format!("/api/v1/properties/{pid}"),
                MASTER_KEY,
                Some(json!({"settings": {"attribution_window_days": 7, "ip_handling": "encrypt"}})),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let truncated = s.property(&["other.example"]).await;
        for n in 1..=3u32 {
            s.landing_click(&pid, n, "https://site.example/").await;
        }
        s.landing_click(&truncated, 9, "https://other.example/")
            .await;
        let db = db(&s);
        let encrypted = |p: &str| {
            let p = p.to_owned();
            async move {
                count(
                    db,
                    "sessions WHERE property_id = $1 AND substr(ip, 1, 2) = 'e:'",
                    &p,
                )
                .await
            }
        };
        assert_eq!(encrypted(&pid).await, 3);
        // Two sessions 15 days old: past the 7-day window plus the margin.
        db.execute(
            "UPDATE sessions SET started_at = started_at - $2, last_seen_at = last_seen_at - $2 \
         WHERE id IN (SELECT id FROM sessions WHERE property_id = $1 ORDER BY id LIMIT 2)",
            args![pid.as_str(), 15 * DAY_MS],
        )
        .await
        .unwrap();
        let report = s
            .server
            .services
            .retention
            .run_once(now_ms())
            .await
            .unwrap();
        assert_eq!(report.rows_of("sessions.ip"), 2, "{report:?}");
        assert_eq!(encrypted(&pid).await, 1);
        // The sessions stay (kept as long as clicks), without their address.
        assert_eq!(count(db, "sessions WHERE property_id = $1", &pid).await, 3);
        assert_eq!(
            count(db, "sessions WHERE property_id = $1 AND ip IS NULL", &pid).await,
            2
        );
        // Truncated addresses are not touched.
        assert_eq!(
            count(
                db,
                "sessions WHERE property_id = $1 AND ip IS NOT NULL",
                &truncated
            )
            .await,
            1
        );
        s.stop().await;
    }
);

both!(
    the_daily_job_runs_once_and_records_its_run,
    |b: Backend| async move {
        // The job enabled: it runs at start and records when it is due next.
        let db = TestDb::new(b).await;
        let mut cfg = support::config(&db);
        cfg.retention.batch_pause_ms = 0;
        let s = TestServer::start_with(db, cfg).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let job = loop {
            let job = clicktrail_store::retention::job(&s.server.services.db, "retention")
                .await
                .unwrap();
            if let Some(j) = job.filter(|j| j.last_run_at.is_some()) {
                break j;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the retention job did not run at start"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(job.last_outcome.as_deref(), Some("ok"));
        assert!(job.lease_owner.is_none());
        assert!(job.next_run_at > now_ms() + 23 * 3_600_000, "{job:?}");
        // Not due: another process (or this one) cannot claim it before then.
        let db = &s.server.services.db;
        let now = now_ms();
        assert!(
            !clicktrail_store::retention::claim_job(db, "retention", "other", now, now + 60_000)
                .await
                .unwrap()
        );
        // Due: one claim wins, the next waits for the lease.
        let later = job.next_run_at + 1;
        assert!(
            clicktrail_store::retention::claim_job(db, "retention", "one", later, later + 60_000)
                .await
                .unwrap()
        );
        assert!(
            !clicktrail_store::retention::claim_job(db, "retention", "two", later, later + 60_000)
                .await
                .unwrap()
        );
        s.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_retention_settings_delete_and_restore() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "example.com", "EUR").await;
    let settings = format!("/p/{pid}/settings");

    // What is kept, for how long: the defaults.
    let page = b.get(&settings).await;
    assert!(page.body.contains("Data retention"), "{}", page.body);
    assert!(page.body.contains(r#"name="retention_events_days""#));
    assert!(
        page.body.contains(r#"data-test="kept-events">400 days"#),
        "{}",
        page.body
    );
    assert!(page.body.contains(r#"data-test="kept-clicks">400 days"#));
    assert!(page.body.contains("truncated, kept with the session"));

    let fields = |days: &'static str| {
        vec![
            ("name", "Site"),
            ("domains", "example.com"),
            ("currency", "EUR"),
            ("attribution_window", "90"),
            ("session_timeout_min", "30"),
            ("autoscan_prefixes", "/go/"),
            ("ip_handling", "encrypt"),
            ("retention_events_days", days),
        ]
    };
    let r = b.submit(&settings, &settings, &fields("7")).await;
    assert_eq!(r.status, 422);
    assert!(r.has_error_for("retention_events_days"), "{}", r.body);
    let r = b.submit(&settings, &settings, &fields("60")).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(&settings).await;
    assert!(
        page.body.contains(r#"data-test="kept-events">60 days"#),
        "{}",
        page.body
    );
    // Clicks outlive events: the 90-day window plus the margin.
    assert!(page.body.contains(r#"data-test="kept-clicks">97 days"#));
    assert!(page.body.contains("encrypted, cleared after 97 days"));

    // An integration and a destination are deleted from their pages.
    let (iid, postback) = t.install_custom(&pid).await;
    let int_page = format!("/p/{pid}/integrations/{iid}");
    let page = b.get(&int_page).await;
    assert!(page.body.contains(r#"data-test="delete-integration""#));
    assert!(page.body.contains("data-confirm="));
    let r = b
        .submit(&int_page, &format!("{int_page}/delete"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(b.get(&int_page).await.status, 404);
    assert_eq!(t.http.get(&postback).send().await.unwrap().status(), 404);
    let (st, d) = t
        .post(
            &format!("/api/v1/properties/{pid}/destinations"),
            MASTER_KEY,
            json!({"kind": "ga4", "settings": {"measurement_id": "G-ABC123", "endpoint": "http://127.0.0.1:9"},
                   "credentials": {"api_secret": "secret-secret"}}),
        )
        .await;
    assert_eq!(st, 201, "{d}");
    let dest_page = format!("/p/{pid}/destinations/{}", d["id"].as_str().unwrap());
    let r = b
        .submit(&dest_page, &format!("{dest_page}/delete"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(b.get(&dest_page).await.status, 404);

    // The property: deleted from its settings, restored from the list.
    let page = b.get(&settings).await;
    assert!(page.body.contains(r#"data-test="delete-property""#));
    let r = b.submit(&settings, &format!("/p/{pid}/delete"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.location(), Some("/properties?done=property_deleted"));
    assert_eq!(b.get(&format!("/p/{pid}")).await.status, 404);
    assert_eq!(status_of(&t, &format!("/t/{pid}.js")).await, 404);
    let list = b.get("/properties").await;
    assert!(
        list.body.contains(r#"data-test="deleted-property""#),
        "{}",
        list.body
    );
    let r = b
        .submit("/properties", &format!("/properties/{pid}/restore"), &[])
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(b.get(&format!("/p/{pid}")).await.status, 200);
    assert_eq!(status_of(&t, &format!("/t/{pid}.js")).await, 200);
    t.stop().await;
}
