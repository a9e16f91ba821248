//! Conversions out, end to end on the real server (SQLite and PostgreSQL):
//! validated conversions queued in their own transaction reach the fake
//! Meta, Google Ads, TikTok and GA4 servers with the right identifiers,
//! once; skips and failures are recorded per row; the conversion log shows
//! each delivery with its attempts.

use std::collections::HashSet;
use std::time::Duration;

use clicktrail_testkit::ga4::FakeGa4;
use clicktrail_testkit::google_ads::{FakeGoogleAds, GoogleAccount};
use clicktrail_testkit::meta::FakeMeta;
use clicktrail_testkit::tiktok::FakeTiktok;
use serde_json::json;

use crate::support::delivery::{self, *};
use crate::support::{Backend, MASTER_KEY, open, wait_for};

const WAIT: Duration = Duration::from_secs(30);

async fn payloads(backend: Backend) {
    let server = delivery::server(backend).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let google = FakeGoogleAds::start(GoogleAccount::default())
        .await
        .unwrap();
    let tiktok = FakeTiktok::start(TIKTOK_PIXEL, TIKTOK_TOKEN).await.unwrap();
    let ga4 = FakeGa4::start(GA4_ID, GA4_SECRET).await.unwrap();
    let property = api.property().await;
    api.destination(&property, meta_destination(&meta.base_url()))
        .await;
    api.destination(&property, google_destination(&google))
        .await;
    api.destination(&property, tiktok_destination(&tiktok.base_url()))
        .await;
    api.destination(&property, ga4_destination(&ga4.base_url()))
        .await;

    // A lead and a purchase with every identifier; a purchase without a
    // Google click id; a lead whose address is only kept truncated.
    let mut no_gclid = ConvSpec::purchase(3, 42_500_000);
    no_gclid.gclid = None;
    let mut truncated = ConvSpec::lead(4);
    truncated.ip = Some("203.0.113.0".into());
    let convs = convert(
        &server,
        &property,
        &[
            ConvSpec::lead(1),
            ConvSpec::purchase(2, 42_500_000),
            no_gclid,
            truncated,
        ],
    )
    .await;
    let check = open(&server.db).await;
    wait_for(WAIT, "all deliveries settled", || async {
        let c = status_counts(&check).await;
        c.get("delivered").copied().unwrap_or(0) == 15
            && c.get("skipped").copied().unwrap_or(0) == 1
    })
    .await;

    // Meta: dedup id, fbc/fbp untouched, raw IP only when kept encrypted.
    let events = meta.events();
    assert_eq!(events.len(), 4);
    for (c, n) in convs.iter().zip(1..) {
        let e = events
            .iter()
            .find(|e| e["event_id"] == c.event_id.as_str())
            .unwrap_or_else(|| panic!("meta event for conversion {n}"));
        assert_eq!(e["event_name"], c.spec.event.as_str());
        assert_eq!(e["action_source"], "website");
        assert!(e["event_time"].is_i64());
        assert_eq!(
            e["event_source_url"],
            "https://casino-reviews.example/best-bonus"
        );
        let u = &e["user_data"];
        assert_eq!(u["fbc"], c.spec.fbc.as_deref().unwrap());
        assert_eq!(u["fbp"], c.spec.fbp.as_deref().unwrap());
        assert_eq!(u["client_user_agent"], UA);
        let em = &u["em"];
        assert!(
            em == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
                || em[0] == "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f",
            "{em}"
        );
        if n == 4 {
            assert!(
                u.get("client_ip_address").is_none(),
                "a truncated address is never sent: {u}"
            );
        } else {
            assert_eq!(u["client_ip_address"], RAW_IP);
        }
        assert!(u.get("external_id").is_some());
    }
    let purchase = events
        .iter()
        .find(|e| e["event_id"] == convs[1].event_id.as_str())
        .unwrap();
    assert_eq!(purchase["custom_data"]["value"], 42.5);
    assert_eq!(purchase["custom_data"]["currency"], "EUR");

    // Google: gclid, mapped action, orderId = our conversion id, zone.
    let uploads = google.conversions();
    assert_eq!(uploads.len(), 3, "{uploads:?}");
    for c in [&convs[0], &convs[1], &convs[3]] {
        assert_eq!(google.count_order_id(&c.id), 1);
        let u = uploads
            .iter()
            .find(|u| u["orderId"] == c.id.as_str())
            .unwrap();
        assert_eq!(u["gclid"], c.spec.gclid.as_deref().unwrap());
        let action = if c.spec.event == "Lead" {
            GOOGLE_LEAD_ACTION
        } else {
            GOOGLE_PURCHASE_ACTION
        };
        assert_eq!(u["conversionAction"], action);
        assert_eq!(u["conversionDateTime"].as_str().unwrap().len(), 25);
    }
    let views = delivery_of(&check, &convs[2].id).await;
    let g = views
        .iter()
        .find(|v| v.destination_kind == "google_ads")
        .unwrap();
    assert_eq!(g.status.as_str(), "skipped");
    assert_eq!(g.reason.as_deref(), Some("no_google_click_id"));

    // TikTok: mapped names, click id and cookie, address and agent.
    let tt = tiktok.events();
    assert_eq!(tt.len(), 4);
    let lead = tt
        .iter()
        .find(|e| e["event_id"] == convs[0].event_id.as_str())
        .unwrap();
    assert_eq!(lead["event"], "CompleteRegistration");
    assert_eq!(
        lead["user"]["ttclid"],
        convs[0].spec.ttclid.as_deref().unwrap()
    );
    assert_eq!(lead["user"]["ttp"], convs[0].spec.ttp.as_deref().unwrap());
    assert_eq!(lead["user"]["ip"], RAW_IP);
    assert_eq!(lead["user"]["user_agent"], UA);
    assert_eq!(
        lead["page"]["url"],
        "https://casino-reviews.example/best-bonus"
    );
    let buy = tt
        .iter()
        .find(|e| e["event_id"] == convs[1].event_id.as_str())
        .unwrap();
    assert_eq!(buy["event"], "Purchase");
    assert_eq!(buy["properties"]["currency"], "EUR");

    // GA4: client_id from the visitor.
    let bodies = ga4.bodies();
    let client_ids: HashSet<&str> = bodies
        .iter()
        .filter_map(|b| b["client_id"].as_str())
        .collect();
    for c in &convs {
        assert!(client_ids.contains(c.visitor_id.as_str()), "{bodies:?}");
    }

    // The conversion log: each delivery with its attempt.
    let views = delivery_of(&check, &convs[1].id).await;
    assert_eq!(views.len(), 4);
    for v in &views {
        assert_eq!(v.status.as_str(), "delivered", "{v:?}");
        assert_eq!(v.attempts, 1);
        let log = v.attempt_log.as_ref().unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, "delivered");
        assert!(v.last_http_status.is_some_and(|s| (200..300).contains(&s)));
    }

    // Planning again never queues a conversion twice for one destination.
    let mut tx = server.server.services.db.begin().await.unwrap();
    let planned = clicktrail_engine::delivery::plan(
        &server.server.services.delivery,
        &clicktrail_domain::PropertyId::parse(&property).unwrap(),
        "Lead",
        true,
    )
    .await
    .unwrap();
    assert_eq!(planned.len(), 4);
    clicktrail_store::deliveries::insert_planned(&mut tx, &convs[0].id, &property, &planned)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(status_counts(&check).await.values().sum::<i64>(), 16);

    // Not sent when the mapping says so.
    let none = clicktrail_engine::delivery::plan(
        &server.server.services.delivery,
        &clicktrail_domain::PropertyId::parse(&property).unwrap(),
        "Lead",
        false,
    )
    .await
    .unwrap();
    assert!(none.is_empty());

    // Metrics.
    let text = reqwest::get(format!("{}/metrics", server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("clicktrail_deliveries_total"), "{text}");
    assert!(text.contains("clicktrail_delivery_attempt_duration_seconds"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_sqlite() {
    payloads(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_postgres() {
    payloads(Backend::Postgres).await;
}

/// A destination that maps only some events gets only those; a custom
/// mapping renames them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_selects_and_renames() {
    let server = delivery::server(Backend::Sqlite).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let property = api.property().await;
    let mut body = meta_destination(&meta.base_url());
    body["event_mapping"] =
        json!({"Purchase": "Purchase", "Lead": "CompleteRegistration", "*": null});
    api.destination(&property, body).await;
    let convs = convert(
        &server,
        &property,
        &[ConvSpec::lead(1), ConvSpec::purchase(2, 1_000_000)],
    )
    .await;
    let check = open(&server.db).await;
    wait_for(WAIT, "delivered", || async {
        count_status(&check, "delivered").await == 2
    })
    .await;
    let events = meta.events();
    let lead = events
        .iter()
        .find(|e| e["event_id"] == convs[0].event_id.as_str())
        .unwrap();
    assert_eq!(lead["event_name"], "CompleteRegistration");
    let mut custom = ConvSpec::lead(3);
    custom.event = "Deposit".into();
    // `convert` plans and queues in its own committed transaction, as the
    // conversion writer does: what it queued is there when it returns.
    convert(&server, &property, &[custom]).await;
    assert_eq!(
        status_counts(&check).await.values().sum::<i64>(),
        2,
        "Deposit is not mapped"
    );
    server.stop().await;
}
