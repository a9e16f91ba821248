//! `send_batch` against the testkit's fake platforms: success, partial
//! failure, throttling with Retry-After, expired and revoked credentials,
//! 500s, slow answers, outage windows, test mode; and that every accepted
//! conversion reached the platform exactly once.

use std::time::{Duration, Instant};

use chrono::Utc;
use clicktrail_destinations::{
    BatchResult, Destination, DestinationKind, GoogleTokenCache, ItemOutcome, SendOptions,
    send_batch, validate,
};
use clicktrail_domain::Currency;
use clicktrail_domain::delivery::{AdIdentifiers, OutboundConversion};
use clicktrail_domain::money::Amount;
use clicktrail_testkit::ga4::{FakeGa4, Ga4Fault};
use clicktrail_testkit::google_ads::{FakeGoogleAds, GoogleAccount, GoogleFault};
use clicktrail_testkit::meta::{FakeMeta, MetaFault};
use clicktrail_testkit::tiktok::{FakeTiktok, TiktokFault};
use serde_json::{Value, json};

const META_TOKEN: &str = "EAABfakeMetaAccessToken0123456789";
const TIKTOK_TOKEN: &str = "tiktok-fake-access-token-0123";
const GA4_SECRET: &str = "ga4-fake-api-secret";

fn conversion(n: usize, event: &str) -> OutboundConversion {
    let now = Utc::now();
    OutboundConversion {
        conversion_id: format!("cv_{n}"),
        event_id: format!("ev_{n}"),
        event_name: event.into(),
        conversion_action: None,
        occurred_at: now - chrono::Duration::minutes(5),
        click_at: Some(now - chrono::Duration::hours(2)),
        value: (event == "Purchase").then(|| Amount::from_micros(42_500_000)),
        currency: Some(Currency::EUR),
        page_url: Some("https://casino-reviews.example/best-bonus".into()),
        referrer: Some("https://www.facebook.com/".into()),
        visitor_id: Some(format!("visitor_{n}")),
        client_ip: Some("203.0.113.10".into()),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64)".into()),
        ids: AdIdentifiers {
            gclid: Some(format!("gclid_{n}")),
            fbclid: Some(format!("IwAR_fbclid_{n}")),
            fbp: Some("fb.1.1700000000000.987654321".into()),
            ttclid: Some(format!("ttclid_{n}")),
            ..Default::default()
        },
        hashed_email: None,
        hashed_phone: None,
        consent: clicktrail_domain::consent::Consent::UNKNOWN,
    }
}

fn opts() -> SendOptions {
    SendOptions {
        test_mode: false,
        timeout: Duration::from_secs(5),
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn reasons(r: &BatchResult) -> Vec<String> {
    r.items
        .iter()
        .map(|o| o.reason().unwrap_or("delivered").to_owned())
        .collect()
}

fn assert_no_secret(r: &BatchResult, secrets: &[&str]) {
    let text = format!("{r:?}");
    for s in secrets {
        assert!(!text.contains(s), "secret leaked in {text}");
    }
}

// ---- Meta ------------------------------------------------------------------

async fn meta() -> (FakeMeta, Destination) {
    let fake = FakeMeta::start("1234567890123456", META_TOKEN)
        .await
        .unwrap();
    let dest = validate(
        DestinationKind::MetaCapi,
        &json!({"pixel_id": "1234567890123456", "endpoint": fake.base_url()}),
        &json!({"access_token": META_TOKEN}),
        &Value::Null,
    )
    .unwrap();
    (fake, dest)
}

#[tokio::test]
async fn meta_success_and_skips() {
    let (fake, dest) = meta().await;
    let mut no_value = conversion(3, "Purchase");
    no_value.value = None;
    let batch = vec![conversion(1, "Lead"), conversion(2, "Purchase"), no_value];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(
        reasons(&r),
        ["delivered", "delivered", "purchase_without_value"]
    );
    assert_eq!(r.http_status, Some(200));
    assert_eq!(r.message, "events_received: 2");
    assert!(r.request_for(2).is_none());
    assert_eq!(r.request_for(0).unwrap().items, vec![0, 1]);
    let events = fake.events();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["event_name"], "Purchase");
    assert_eq!(events[1]["custom_data"]["value"], 42.5);
    assert_eq!(events[1]["action_source"], "website");
    assert!(
        events[1]["user_data"]["fbc"]
            .as_str()
            .unwrap()
            .ends_with(".IwAR_fbclid_2")
    );
    assert_no_secret(&r, &[META_TOKEN]);
}

#[tokio::test]
async fn meta_one_bad_event_is_isolated() {
    let (fake, dest) = meta().await;
    fake.reject_event_id("ev_5", 2804019);
    let batch: Vec<_> = (0..8).map(|n| conversion(n, "Lead")).collect();
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    for (i, o) in r.items.iter().enumerate() {
        if i == 5 {
            assert_eq!(o.reason(), Some("invalid_parameter"), "{o:?}");
            assert!(matches!(o, ItemOutcome::Permanent { .. }));
        } else {
            assert_eq!(*o, ItemOutcome::Delivered { duplicate: false }, "item {i}");
        }
    }
    assert_eq!(fake.events().len(), 7);
    assert_eq!(fake.unique_event_ids(), 7);
    assert!(fake.request_count() <= 7, "{}", fake.request_count());
}

#[tokio::test]
async fn meta_throttling_then_recovery() {
    let (fake, dest) = meta().await;
    fake.fail_next(1, MetaFault::Throttle { code: 80003 });
    let batch = vec![conversion(1, "Lead")];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert!(
        matches!(&r.items[0], ItemOutcome::Retry { reason, .. } if reason == "throttled"),
        "{r:?}"
    );
    assert_eq!(r.http_status, Some(400));
    assert!(r.response_excerpt.contains("80003"));
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(r.items[0], ItemOutcome::Delivered { duplicate: false });
    assert_eq!(fake.count_event_id("ev_1"), 1);
}

#[tokio::test]
async fn meta_expired_and_wrong_token_need_attention() {
    let (fake, dest) = meta().await;
    fake.fail_next(1, MetaFault::ExpiredToken);
    let batch = vec![conversion(1, "Lead"), conversion(2, "Lead")];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert!(r.needs_attention());
    assert_eq!(
        reasons(&r),
        ["access_token_invalid", "access_token_invalid"]
    );
    fake.set_access_token("EAABrotated");
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert!(matches!(r.items[0], ItemOutcome::AuthFailed { .. }));
    assert!(fake.events().is_empty());
    assert_no_secret(&r, &[META_TOKEN]);
}

#[tokio::test]
async fn meta_server_error_transient_and_timeout_retry() {
    let (fake, dest) = meta().await;
    let batch = vec![conversion(1, "Lead")];
    fake.fail_next(1, MetaFault::ServerError);
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["server_error"]);
    fake.fail_next(1, MetaFault::Transient { code: 2 });
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["platform_transient"]);
    fake.fail_next(1, MetaFault::Slow(Duration::from_secs(3)));
    let quick = SendOptions {
        timeout: Duration::from_millis(300),
        ..opts()
    };
    let started = Instant::now();
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, quick).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(reasons(&r), ["timeout"]);
    assert_eq!(r.http_status, None);
    assert_no_secret(&r, &[META_TOKEN]);
}

#[tokio::test]
async fn meta_outage_window_then_exactly_once() {
    let (fake, dest) = meta().await;
    fake.outage_until(
        Instant::now() + Duration::from_millis(400),
        MetaFault::ServerError,
    );
    let batch: Vec<_> = (0..5).map(|n| conversion(n, "Lead")).collect();
    let mut pending: Vec<usize> = (0..5).collect();
    for _ in 0..20 {
        let now_batch: Vec<_> = pending.iter().map(|&i| batch[i].clone()).collect();
        let r = send_batch(
            &client(),
            &dest,
            &GoogleTokenCache::new(),
            &now_batch,
            opts(),
        )
        .await;
        pending = pending
            .into_iter()
            .zip(&r.items)
            .filter(|(_, o)| matches!(o, ItemOutcome::Retry { .. }))
            .map(|(i, _)| i)
            .collect();
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(pending.is_empty());
    for n in 0..5 {
        assert_eq!(fake.count_event_id(&format!("ev_{n}")), 1);
    }
    assert!(fake.requests().iter().any(|r| r.status == 500));
}

#[tokio::test]
async fn meta_test_mode() {
    let (fake, dest) = meta().await;
    let batch = vec![conversion(1, "Lead")];
    let test = SendOptions {
        test_mode: true,
        ..opts()
    };
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, test).await;
    assert_eq!(reasons(&r), ["no_test_event_code"]);
    assert_eq!(fake.request_count(), 0);
    let with_code = validate(
        DestinationKind::MetaCapi,
        &json!({"pixel_id": "1234567890123456", "endpoint": fake.base_url(), "test_event_code": "TEST4242"}),
        &json!({"access_token": META_TOKEN}),
        &Value::Null,
    )
    .unwrap();
    let r = send_batch(
        &client(),
        &with_code,
        &GoogleTokenCache::new(),
        &batch,
        test,
    )
    .await;
    assert_eq!(reasons(&r), ["delivered"]);
    assert_eq!(
        fake.received()[0].test_event_code.as_deref(),
        Some("TEST4242")
    );
}

// ---- Google Ads ----------------------------------------------------------------

async fn google(account: GoogleAccount) -> (FakeGoogleAds, Destination) {
    let fake = FakeGoogleAds::start(account.clone()).await.unwrap();
    let mut settings = json!({
        "customer_id": "123-456-7890",
        "conversion_actions": {"Lead": "111", "Purchase": "customers/1234567890/conversionActions/222"},
        "endpoint": fake.base_url(),
        "token_endpoint": fake.token_url(),
    });
    if let Some(l) = &account.login_customer_id {
        settings["login_customer_id"] = json!(l);
    }
    let dest = validate(
        DestinationKind::GoogleAds,
        &settings,
        &json!({"developer_token": account.developer_token, "client_id": account.client_id,
                "client_secret": account.client_secret, "refresh_token": account.refresh_token}),
        &Value::Null,
    )
    .unwrap();
    (fake, dest)
}

/// A conversion as the server would queue it for this destination.
fn google_conversion(dest: &Destination, n: usize, event: &str) -> OutboundConversion {
    let mut c = conversion(n, event);
    let mapped = dest.map_event(event).unwrap();
    c.event_name = mapped.event_name;
    c.conversion_action = mapped.conversion_action;
    c
}

fn google_secrets(a: &GoogleAccount) -> Vec<String> {
    vec![
        a.developer_token.clone(),
        a.client_secret.clone(),
        a.refresh_token.clone(),
    ]
}

#[tokio::test]
async fn google_success_skip_and_token_reuse() {
    let account = GoogleAccount {
        login_customer_id: Some("9876543210".into()),
        ..Default::default()
    };
    let (fake, dest) = google(account.clone()).await;
    let tokens = GoogleTokenCache::new();
    let mut no_click = google_conversion(&dest, 3, "Lead");
    no_click.ids.gclid = None;
    let batch = vec![
        google_conversion(&dest, 1, "Lead"),
        google_conversion(&dest, 2, "Purchase"),
        no_click,
    ];
    let r = send_batch(&client(), &dest, &tokens, &batch, opts()).await;
    assert_eq!(
        reasons(&r),
        ["delivered", "delivered", "no_google_click_id"]
    );
    assert!(matches!(&r.items[2], ItemOutcome::Skipped { .. }));
    let got = fake.conversions();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0]["conversionAction"],
        "customers/1234567890/conversionActions/111"
    );
    assert_eq!(got[1]["orderId"], "cv_2");
    assert_eq!(got[1]["conversionValue"], 42.5);
    assert_eq!(
        fake.login_customer_ids(),
        vec![Some("9876543210".to_owned())]
    );
    let r = send_batch(&client(), &dest, &tokens, &batch[..1], opts()).await;
    // Resent: Google already has it (same click, action and time).
    assert_eq!(r.items[0], ItemOutcome::Delivered { duplicate: true });
    assert_eq!(fake.count_order_id("cv_1"), 1);
    assert_eq!(fake.token_requests(), 1, "token reused");
    let secrets = google_secrets(&account);
    assert_no_secret(&r, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn google_partial_failure() {
    let (fake, dest) = google(GoogleAccount::default()).await;
    fake.fail_click("gclid_1", "UNPARSEABLE_GCLID");
    fake.fail_click("gclid_3", "TOO_RECENT_CONVERSION_ACTION");
    let batch: Vec<_> = (0..4)
        .map(|n| google_conversion(&dest, n, "Lead"))
        .collect();
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(
        reasons(&r),
        [
            "delivered",
            "unparseable_gclid",
            "delivered",
            "too_recent_conversion_action"
        ]
    );
    assert!(matches!(r.items[1], ItemOutcome::Permanent { .. }));
    assert!(
        matches!(r.items[3], ItemOutcome::Retry { after: Some(d), .. } if d >= Duration::from_secs(3600))
    );
    assert_eq!(r.http_status, Some(200));
    assert!(r.message.contains("2 of 4"), "{}", r.message);
    assert_eq!(fake.conversions().len(), 2);
}

#[tokio::test]
async fn google_rate_limit_with_retry_after() {
    let (fake, dest) = google(GoogleAccount::default()).await;
    fake.fail_next(
        1,
        GoogleFault::RateLimited {
            retry_after_secs: 7,
        },
    );
    let batch = vec![google_conversion(&dest, 1, "Lead")];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(r.items[0].reason(), Some("quota_exhausted"));
    assert!(
        matches!(r.items[0], ItemOutcome::Retry { after: Some(d), .. } if d == Duration::from_secs(7))
    );
    assert_eq!(r.http_status, Some(429));
}

#[tokio::test]
async fn google_refreshes_on_401_once() {
    let account = GoogleAccount::default();
    let (fake, dest) = google(account.clone()).await;
    let tokens = GoogleTokenCache::new();
    let batch = vec![google_conversion(&dest, 1, "Lead")];
    assert_eq!(
        reasons(&send_batch(&client(), &dest, &tokens, &batch, opts()).await),
        ["delivered"]
    );
    fake.expire_tokens();
    let batch = vec![google_conversion(&dest, 2, "Lead")];
    let r = send_batch(&client(), &dest, &tokens, &batch, opts()).await;
    assert_eq!(reasons(&r), ["delivered"]);
    assert_eq!(fake.token_requests(), 2);
    assert_eq!(r.requests.len(), 2, "the 401 attempt is recorded too");
    assert_eq!(r.requests[0].http_status, Some(401));

    // A 401 that a new token does not cure: needs attention, no third try.
    fake.fail_next(2, GoogleFault::Unauthenticated);
    let before = fake.upload_requests();
    let batch = vec![google_conversion(&dest, 3, "Lead")];
    let r = send_batch(&client(), &dest, &tokens, &batch, opts()).await;
    assert!(
        matches!(r.items[0], ItemOutcome::AuthFailed { .. }),
        "{r:?}"
    );
    assert_eq!(fake.upload_requests() - before, 2);
    let secrets = google_secrets(&account);
    assert_no_secret(&r, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn google_refreshes_before_expiry() {
    let (fake, dest) = google(GoogleAccount::default()).await;
    fake.set_token_lifetime(Duration::from_secs(2));
    let tokens = GoogleTokenCache::new();
    let r = send_batch(
        &client(),
        &dest,
        &tokens,
        &[google_conversion(&dest, 1, "Lead")],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["delivered"]);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let r = send_batch(
        &client(),
        &dest,
        &tokens,
        &[google_conversion(&dest, 2, "Lead")],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["delivered"]);
    assert_eq!(fake.token_requests(), 2, "refreshed ahead of expiry");
    assert_eq!(fake.upload_requests(), 2, "no upload was refused");
}

#[tokio::test]
async fn google_invalid_grant_needs_attention() {
    let account = GoogleAccount::default();
    let (fake, dest) = google(account.clone()).await;
    fake.set_invalid_grant(true);
    let batch = vec![
        google_conversion(&dest, 1, "Lead"),
        google_conversion(&dest, 2, "Purchase"),
    ];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["oauth_invalid_grant", "oauth_invalid_grant"]);
    assert!(r.needs_attention());
    assert_eq!(r.http_status, Some(400));
    assert!(r.message.contains("invalid_grant"));
    assert_eq!(fake.upload_requests(), 0);
    let secrets = google_secrets(&account);
    assert_no_secret(&r, &secrets.iter().map(String::as_str).collect::<Vec<_>>());
}

#[tokio::test]
async fn google_server_error_timeout_and_validate_only() {
    let (fake, dest) = google(GoogleAccount::default()).await;
    let tokens = GoogleTokenCache::new();
    let batch = vec![google_conversion(&dest, 1, "Lead")];
    fake.fail_next(1, GoogleFault::ServerError);
    assert_eq!(
        reasons(&send_batch(&client(), &dest, &tokens, &batch, opts()).await),
        ["server_error"]
    );
    fake.fail_next(1, GoogleFault::Slow(Duration::from_secs(3)));
    let quick = SendOptions {
        timeout: Duration::from_millis(300),
        ..opts()
    };
    assert_eq!(
        reasons(&send_batch(&client(), &dest, &tokens, &batch, quick).await),
        ["timeout"]
    );
    let test = SendOptions {
        test_mode: true,
        ..opts()
    };
    assert_eq!(
        reasons(&send_batch(&client(), &dest, &tokens, &batch, test).await),
        ["delivered"]
    );
    assert_eq!(fake.validated().len(), 1);
    assert!(fake.conversions().is_empty());
}

// ---- TikTok ------------------------------------------------------------------

async fn tiktok() -> (FakeTiktok, Destination) {
    let fake = FakeTiktok::start("CPIXELCODE123", TIKTOK_TOKEN)
        .await
        .unwrap();
    let dest = validate(
        DestinationKind::Tiktok,
        &json!({"pixel_code": "CPIXELCODE123", "endpoint": fake.base_url()}),
        &json!({"access_token": TIKTOK_TOKEN}),
        &Value::Null,
    )
    .unwrap();
    (fake, dest)
}

#[tokio::test]
async fn tiktok_success_and_codes_in_http_200() {
    let (fake, dest) = tiktok().await;
    let mut lead = conversion(1, "Lead");
    lead.event_name = dest.map_event("Lead").unwrap().event_name;
    let batch = vec![lead, conversion(2, "Purchase")];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["delivered", "delivered"]);
    let events = fake.events();
    assert_eq!(events[0]["event"], "CompleteRegistration");
    assert_eq!(events[0]["user"]["ttclid"], "ttclid_1");
    assert_eq!(events[1]["properties"]["value"], 42.5);

    fake.fail_next(1, TiktokFault::RateLimited);
    let r = send_batch(
        &client(),
        &dest,
        &GoogleTokenCache::new(),
        &batch[..1],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["throttled"]);
    assert_eq!(r.http_status, Some(200));
    fake.fail_next(1, TiktokFault::NoPermission);
    let r = send_batch(
        &client(),
        &dest,
        &GoogleTokenCache::new(),
        &batch[..1],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["no_permission"]);
    assert!(matches!(r.items[0], ItemOutcome::Permanent { .. }));
    fake.fail_next(1, TiktokFault::ServerError);
    let r = send_batch(
        &client(),
        &dest,
        &GoogleTokenCache::new(),
        &batch[..1],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["server_error"]);
}

#[tokio::test]
async fn tiktok_invalid_parameter_is_split_and_bad_token_needs_attention() {
    let (fake, dest) = tiktok().await;
    // One rejection of the pair: the halves go again, separately.
    fake.fail_next(1, TiktokFault::InvalidParameter);
    let batch = vec![conversion(1, "Lead"), conversion(2, "Lead")];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["delivered", "delivered"]);
    assert_eq!(fake.answer_codes(), vec![40002, 0, 0]);
    assert_eq!(fake.count_event_id("ev_1"), 1);
    // Alone and still refused: permanent.
    fake.fail_next(1, TiktokFault::InvalidParameter);
    let r = send_batch(
        &client(),
        &dest,
        &GoogleTokenCache::new(),
        &batch[..1],
        opts(),
    )
    .await;
    assert_eq!(reasons(&r), ["invalid_parameter"]);

    fake.set_access_token("rotated");
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert!(r.needs_attention(), "{r:?}");
    assert_no_secret(&r, &[TIKTOK_TOKEN]);
}

#[tokio::test]
async fn tiktok_slow_answer_times_out() {
    let (fake, dest) = tiktok().await;
    fake.set_delay(Duration::from_secs(3));
    let quick = SendOptions {
        timeout: Duration::from_millis(300),
        ..opts()
    };
    let r = send_batch(
        &client(),
        &dest,
        &GoogleTokenCache::new(),
        &[conversion(1, "Lead")],
        quick,
    )
    .await;
    assert_eq!(reasons(&r), ["timeout"]);
}

// ---- GA4 -----------------------------------------------------------------------

async fn ga4() -> (FakeGa4, Destination) {
    let fake = FakeGa4::start("G-TEST1234", GA4_SECRET).await.unwrap();
    let dest = validate(
        DestinationKind::Ga4,
        &json!({"measurement_id": "G-TEST1234", "endpoint": fake.base_url()}),
        &json!({"api_secret": GA4_SECRET}),
        &Value::Null,
    )
    .unwrap();
    (fake, dest)
}

fn ga4_conversion(dest: &Destination, n: usize, visitor: &str, event: &str) -> OutboundConversion {
    let mut c = conversion(n, event);
    c.event_name = dest.map_event(event).unwrap().event_name;
    c.visitor_id = Some(visitor.into());
    c
}

#[tokio::test]
async fn ga4_groups_per_visitor_and_checks_limits() {
    let (fake, dest) = ga4().await;
    let mut no_visitor = ga4_conversion(&dest, 4, "x", "Lead");
    no_visitor.visitor_id = None;
    let mut reserved = ga4_conversion(&dest, 5, "v1", "Lead");
    reserved.event_name = "session_start".into();
    let batch = vec![
        ga4_conversion(&dest, 1, "v1", "Lead"),
        ga4_conversion(&dest, 2, "v2", "Purchase"),
        ga4_conversion(&dest, 3, "v1", "Purchase"),
        no_visitor,
        reserved,
    ];
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(
        reasons(&r),
        [
            "delivered",
            "delivered",
            "delivered",
            "no_client_id",
            "ga4_limits"
        ]
    );
    assert_eq!(r.http_status, Some(204));
    let got = fake.received();
    assert_eq!(got.len(), 3);
    assert_eq!(fake.dropped(), 0);
    let mut names: Vec<(String, String)> = got
        .iter()
        .map(|g| {
            (
                g.client_id.clone(),
                g.event["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ("v1".into(), "generate_lead".into()),
            ("v1".into(), "purchase".into()),
            ("v2".into(), "purchase".into())
        ]
    );
    assert_eq!(fake.count_transaction_id("cv_2"), 1);
    assert_no_secret(&r, &[GA4_SECRET]);
}

#[tokio::test]
async fn ga4_test_mode_uses_validation_endpoint_and_500_retries() {
    let (fake, dest) = ga4().await;
    let batch = vec![ga4_conversion(&dest, 1, "v1", "Lead")];
    let test = SendOptions {
        test_mode: true,
        ..opts()
    };
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, test).await;
    assert_eq!(reasons(&r), ["delivered"]);
    assert_eq!(fake.debug_requests(), 1);
    assert!(fake.received().is_empty());
    fake.fail_next(1, Ga4Fault::ServerError);
    let r = send_batch(&client(), &dest, &GoogleTokenCache::new(), &batch, opts()).await;
    assert_eq!(reasons(&r), ["server_error"]);
}
