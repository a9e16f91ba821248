//! The destinations API: validation errors, masked credentials, edits and
//! pauses, test sends, auth and workspace isolation.

use std::time::Duration;

use clicktrail_store::auth;
use clicktrail_testkit::ga4::FakeGa4;
use clicktrail_testkit::google_ads::{FakeGoogleAds, GoogleAccount};
use clicktrail_testkit::meta::FakeMeta;
use serde_json::{Value, json};

use crate::support::delivery::{self, *};
use crate::support::{Backend, MASTER_KEY, open, wait_for};

fn field_codes(v: &Value) -> Vec<(String, String)> {
    v["error"]["fields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["field"].as_str().unwrap_or_default().to_owned(),
                        f["code"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors() {
    let server = delivery::server(Backend::Sqlite).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let property = api.property().await;
    let path = format!("/properties/{property}/destinations");

    let (s, v) = api
        .post(&path, json!({"kind": "myspace", "settings": {}}))
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "validation_failed");
    assert!(field_codes(&v).contains(&("kind".into(), "unknown_kind".into())));

    let (s, v) = api
        .post(
            &path,
            json!({"kind": "meta_capi", "settings": {"pixel_id": "abc", "colour": "red"}, "credentials": {}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let codes = field_codes(&v);
    assert!(
        codes.contains(&("settings.pixel_id".into(), "invalid_format".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("settings.colour".into(), "unknown_field".into())),
        "{codes:?}"
    );
    assert!(
        codes.contains(&("credentials.access_token".into(), "required".into())),
        "{codes:?}"
    );

    let (s, v) = api
        .post(
            &path,
            json!({"kind": "google_ads", "settings": {"customer_id": "123-456-7890"},
                   "credentials": {"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r"}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        field_codes(&v)
            .iter()
            .any(|(f, _)| f == "settings.conversion_actions"),
        "{v}"
    );

    let (s, v) = api
        .post(&path, json!({"kind": "meta_capi", "bogus": 1}))
        .await;
    assert_eq!(s, 422, "{v}");
    assert_eq!(v["error"]["code"], "invalid_body");

    let (s, v) = api
        .post(
            &path,
            json!({"kind": "ga4", "name": "", "settings": {"measurement_id": "G-ABCDEF12"}, "credentials": {"api_secret": "x"}}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(field_codes(&v).contains(&("name".into(), "invalid_name".into())));
    server.stop().await;
}

/// With private networks refused (the production default), an endpoint on
/// loopback is a validation error, not a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_endpoints_refused() {
    let server =
        delivery::server_with(Backend::Sqlite, |cfg| cfg.allow_private_networks = false).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let property = api.property().await;
    let (s, v) = api
        .post(
            &format!("/properties/{property}/destinations"),
            meta_destination("http://127.0.0.1"),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    assert!(
        field_codes(&v)
            .iter()
            .any(|(f, c)| f == "settings.endpoint" && c == "address_not_allowed"),
        "{v}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crud_masking_pause_and_test() {
    let server = delivery::server(Backend::Sqlite).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let property = api.property().await;

    let (s, v) = api
        .post(
            &format!("/properties/{property}/destinations"),
            meta_destination(&meta.base_url()),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("dst_"));
    assert_eq!(v["kind"], "meta_capi");
    assert_eq!(v["status"], "active");
    assert_eq!(v["settings"]["pixel_id"], META_PIXEL);
    assert_eq!(v["credentials"]["access_token"], "EAAB…6789");
    assert!(!v.to_string().contains(META_TOKEN));
    // Stored encrypted.
    let check = open(&server.db).await;
    let (enc,): (String,) = check
        .fetch_one(
            "SELECT credentials_enc FROM destinations WHERE id = $1",
            clicktrail_store::args![id.as_str()],
        )
        .await
        .unwrap();
    assert!(!enc.contains(META_TOKEN));

    let (s, list) = api
        .get(&format!("/properties/{property}/destinations"))
        .await;
    assert_eq!(s, 200);
    assert_eq!(list["destinations"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(META_TOKEN));

    // Test send without a test event code: refused on purpose (a test
    // never lands in real data).
    let (s, t) = api.post_empty(&format!("/destinations/{id}/test")).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["outcome"]["reason"], "no_test_event_code", "{t}");
    assert!(meta.events().is_empty());
    // With one: the platform's answer comes back.
    let (s, v) = api
        .patch(
            &format!("/destinations/{id}"),
            json!({"settings": {"test_event_code": "TEST123"}}),
        )
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settings"]["test_event_code"], "TEST123");
    assert_eq!(v["settings"]["pixel_id"], META_PIXEL, "settings are merged");
    let (s, t) = api
        .post(
            &format!("/destinations/{id}/test"),
            json!({"event_name": "Purchase"}),
        )
        .await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["outcome"]["status"], "delivered", "{t}");
    assert_eq!(t["http_status"], 200);
    assert_eq!(t["conversion"]["source"], "synthetic");
    let got = meta.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].test_event_code.as_deref(), Some("TEST123"));
    assert_eq!(got[0].event["event_name"], "Purchase");
    assert!(!t.to_string().contains(META_TOKEN));
    // From the latest real conversion, when there is one.
    let convs = convert(&server, &property, &[ConvSpec::lead(1)]).await;
    let (s, t) = api.post_empty(&format!("/destinations/{id}/test")).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["conversion"]["source"], "latest_conversion");
    assert_eq!(t["conversion"]["conversion_id"], convs[0].id.as_str());

    wait_for(Duration::from_secs(20), "first delivered", || async {
        count_status(&check, "delivered").await == 1
    })
    .await;

    // Pause: deliveries wait; resume: they go.
    let (s, v) = api
        .patch(&format!("/destinations/{id}"), json!({"paused": true}))
        .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "paused");
    let before = meta.events().len();
    let held = convert(&server, &property, &[ConvSpec::lead(2)]).await;
    // The worker claims the row and parks it unsent; parked, it is not
    // claimed again until the destination is resumed.
    wait_for(Duration::from_secs(20), "the paused row parked", || async {
        count_parked(&check).await == 1
    })
    .await;
    assert_eq!(count_to_send(&check).await, 0);
    assert_eq!(meta.events().len(), before, "paused: nothing sent");
    let v = delivery_of(&check, &held[0].id).await.remove(0);
    assert_eq!(
        v.status,
        clicktrail_domain::delivery::DeliveryStatus::Pending
    );
    assert!(v.waiting_for_destination, "{v:?}");
    let (_, d) = api.get(&format!("/destinations/{id}")).await;
    assert_eq!(d["deliveries"]["pending"], 1, "{d}");
    let (s, v) = api
        .patch(&format!("/destinations/{id}"), json!({"paused": false}))
        .await;
    assert_eq!(s, 200);
    assert_eq!(v["status"], "active");
    wait_for(Duration::from_secs(20), "resumed delivered", || async {
        meta.count_event_id(&held[0].event_id) == 1
    })
    .await;

    // A bad edit is refused whole.
    let (s, v) = api
        .patch(
            &format!("/destinations/{id}"),
            json!({"settings": {"pixel_id": "not digits"}, "name": "x"}),
        )
        .await;
    assert_eq!(s, 422, "{v}");
    let (_, d) = api.get(&format!("/destinations/{id}")).await;
    assert_eq!(d["settings"]["pixel_id"], META_PIXEL);
    assert_eq!(d["name"], "Meta");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_and_ga4_test_modes() {
    let server = delivery::server(Backend::Sqlite).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let google = FakeGoogleAds::start(GoogleAccount::default())
        .await
        .unwrap();
    let ga4 = FakeGa4::start(GA4_ID, GA4_SECRET).await.unwrap();
    let property = api.property().await;
    let g = api
        .destination(&property, google_destination(&google))
        .await;
    let a = api
        .destination(&property, ga4_destination(&ga4.base_url()))
        .await;
    let (s, t) = api.post_empty(&format!("/destinations/{g}/test")).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(t["outcome"]["status"], "delivered", "{t}");
    assert_eq!(google.validated().len(), 1, "validateOnly");
    assert!(google.conversions().is_empty(), "nothing uploaded for real");
    let (s, t) = api.post_empty(&format!("/destinations/{a}/test")).await;
    assert_eq!(s, 200, "{t}");
    assert_eq!(ga4.debug_requests(), 1, "GA4's validation endpoint: {t}");
    assert!(ga4.received().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_and_workspaces() {
    let server = delivery::server(Backend::Sqlite).await;
    let master = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let check = open(&server.db).await;
    let ws_a = auth::ensure_workspace(&check, "alpha").await.unwrap();
    let ws_b = auth::ensure_workspace(&check, "bravo").await.unwrap();
    let (_, token_a) = auth::create_token(&check, ws_a.id, "a").await.unwrap();
    let (_, token_b) = auth::create_token(&check, ws_b.id, "b").await.unwrap();
    let a = master.with_token(&token_a);
    let b = master.with_token(&token_b);
    let property = a.property().await;
    let dest = a
        .destination(&property, meta_destination(&meta.base_url()))
        .await;
    let convs = convert(&server, &property, &[ConvSpec::lead(1)]).await;
    wait_for(Duration::from_secs(20), "delivered", || async {
        count_status(&check, "delivered").await == 1
    })
    .await;
    let delivery = delivery_of(&check, &convs[0].id).await.remove(0).id;

    // No token / a wrong token: 401.
    let anon = master.with_token("");
    let (s, v) = anon.get(&format!("/destinations/{dest}")).await;
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    let (s, _) = master
        .with_token("ct_not_a_real_token_000000000000")
        .post_empty(&format!("/deliveries/{delivery}/retry"))
        .await;
    assert_eq!(s, 401);

    // The owner and the master key see it.
    assert_eq!(a.get(&format!("/destinations/{dest}")).await.0, 200);
    assert_eq!(master.get(&format!("/destinations/{dest}")).await.0, 200);
    assert_eq!(a.get(&format!("/deliveries/{delivery}")).await.0, 200);

    // Another workspace: 404 everywhere, nothing changes.
    for (status, body) in [
        b.get(&format!("/destinations/{dest}")).await,
        b.patch(&format!("/destinations/{dest}"), json!({"paused": true}))
            .await,
        b.post_empty(&format!("/destinations/{dest}/test")).await,
        b.post_empty(&format!("/destinations/{dest}/replay")).await,
        b.get(&format!("/deliveries/{delivery}")).await,
        b.post_empty(&format!("/deliveries/{delivery}/retry")).await,
        b.get(&format!("/properties/{property}/destinations")).await,
        b.get(&format!("/properties/{property}/deliveries")).await,
        b.post(
            &format!("/properties/{property}/destinations"),
            meta_destination(&meta.base_url()),
        )
        .await,
    ] {
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (_, d) = a.get(&format!("/destinations/{dest}")).await;
    assert_eq!(d["status"], "active");
    assert_eq!(b.get("/destinations/dst_doesnotexist000000").await.0, 404);
    assert_eq!(a.get("/deliveries/dlv_doesnotexist000000").await.0, 404);
    server.stop().await;
}
