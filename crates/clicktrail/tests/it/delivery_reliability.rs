//! Delivery when things go wrong, on SQLite and PostgreSQL: an outage,
//! throttling with Retry-After, an expired token, Google partial failures,
//! platforms' windows, attempts running out, retry and replay.

use std::time::{Duration, Instant};

use clicktrail_domain::delivery::DeliveryStatus;
use clicktrail_testkit::google_ads::{FakeGoogleAds, GoogleAccount, GoogleFault};
use clicktrail_testkit::meta::{FakeMeta, MetaFault};
use clicktrail_testkit::tiktok::{FakeTiktok, TiktokFault};
use serde_json::json;

use crate::support::delivery::{self, *};
use crate::support::{Backend, MASTER_KEY, open, wait_for};

const WAIT: Duration = Duration::from_secs(40);

/// A platform down for a while, then back: every conversion delivered,
/// each exactly once.
async fn outage(backend: Backend) {
    let server = delivery::server(backend).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let tiktok = FakeTiktok::start(TIKTOK_PIXEL, TIKTOK_TOKEN).await.unwrap();
    let property = api.property().await;
    api.destination(&property, meta_destination(&meta.base_url()))
        .await;
    api.destination(&property, tiktok_destination(&tiktok.base_url()))
        .await;
    let down_until = Instant::now() + Duration::from_secs(3);
    meta.outage_until(down_until, MetaFault::ServerError);
    tiktok.outage_until(down_until, TiktokFault::ServerError);
    let check = open(&server.db).await;
    let mut convs = Vec::new();
    for round in 0..5 {
        let specs: Vec<ConvSpec> = (0..20).map(|i| ConvSpec::lead(round * 100 + i)).collect();
        convs.extend(convert(&server, &property, &specs).await);
        // Each round is tried (and refused) before the next one arrives:
        // new conversions keep coming while earlier ones wait for a retry.
        let tried = 40 * (round as i64 + 1);
        wait_for(WAIT, "the round tried", || async {
            count_tried(&check).await >= tried
        })
        .await;
    }
    wait_for(WAIT, "all 200 delivered", || async {
        count_status(&check, "delivered").await == 200
    })
    .await;
    assert!(Instant::now() > down_until);
    for c in &convs {
        assert_eq!(meta.count_event_id(&c.event_id), 1, "meta {}", c.id);
        assert_eq!(tiktok.count_event_id(&c.event_id), 1, "tiktok {}", c.id);
    }
    assert_eq!(meta.events().len(), 100);
    assert_eq!(tiktok.events().len(), 100);
    // The first ones were tried during the outage: their log says so.
    let views = delivery_of(&check, &convs[0].id).await;
    for v in &views {
        let log = v.attempt_log.as_ref().unwrap();
        assert!(log.len() >= 2, "{v:?}");
        assert_eq!(log[0].outcome, "retry");
        assert_eq!(log[0].http_status, Some(500));
        assert_eq!(log.last().unwrap().outcome, "delivered");
        assert_eq!(v.attempts as usize, log.len());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_sqlite() {
    outage(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_postgres() {
    outage(Backend::Postgres).await;
}

/// 429 with Retry-After: the next attempt waits at least that long, and
/// the wait is clamped to the configured cap.
async fn retry_after(backend: Backend) {
    let server = delivery::server_with(backend, |cfg| cfg.delivery.backoff_max_secs = 10).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let google = FakeGoogleAds::start(GoogleAccount::default())
        .await
        .unwrap();
    let property = api.property().await;
    api.destination(&property, google_destination(&google))
        .await;
    google.fail_next(
        1,
        GoogleFault::RateLimited {
            retry_after_secs: 3,
        },
    );
    google.fail_next(
        1,
        GoogleFault::RateLimited {
            retry_after_secs: 3600,
        },
    );
    let convs = convert(&server, &property, &[ConvSpec::lead(1)]).await;
    let check = open(&server.db).await;
    wait_for(WAIT, "delivered", || async {
        count_status(&check, "delivered").await == 1
    })
    .await;
    let v = delivery_of(&check, &convs[0].id).await.remove(0);
    let log = v.attempt_log.unwrap();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[0].http_status, Some(429));
    assert_eq!(log[0].reason.as_deref(), Some("quota_exhausted"), "{log:?}");
    let first_wait = log[1].at - log[0].at;
    assert!(
        first_wait >= 3000,
        "Retry-After 3 s honoured: waited {first_wait} ms"
    );
    let second_wait = log[2].at - log[1].at;
    assert!(
        (1000..=12_000).contains(&second_wait),
        "Retry-After 3600 s clamped to the 10 s cap: waited {second_wait} ms"
    );
    assert_eq!(google.count_order_id(&convs[0].id), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_sqlite() {
    retry_after(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_postgres() {
    retry_after(Backend::Postgres).await;
}

/// An expired token: the destination needs attention, its rows wait
/// without burning attempts; new credentials deliver them.
async fn expired_token(backend: Backend) {
    let server = delivery::server(backend).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let property = api.property().await;
    let dest = api
        .destination(&property, meta_destination(&meta.base_url()))
        .await;
    let new_token = "EAABrotatedMetaAccessToken987654321";
    meta.set_access_token(new_token);
    let convs = convert(
        &server,
        &property,
        &(0..5).map(ConvSpec::lead).collect::<Vec<_>>(),
    )
    .await;
    let check = open(&server.db).await;
    wait_for(WAIT, "destination flagged", || async {
        api.get(&format!("/destinations/{dest}")).await.1["status"] == "needs_attention"
    })
    .await;
    let (_, d) = api.get(&format!("/destinations/{dest}")).await;
    assert_eq!(d["status_reason"], "access_token_invalid", "{d}");
    // More conversions arrive meanwhile: the worker claims them and parks
    // them unsent, like the first ones.
    let requests_while_flagged = meta.request_count();
    let later = convert(&server, &property, &[ConvSpec::lead(9)]).await;
    wait_for(WAIT, "all six rows parked", || async {
        count_parked(&check).await == 6
    })
    .await;
    assert_eq!(count_status(&check, "pending").await, 6);
    // Parked rows are not claimed until the destination is fixed: nothing
    // is left to send, and nothing was sent.
    assert_eq!(count_to_send(&check).await, 0);
    assert_eq!(
        meta.request_count(),
        requests_while_flagged,
        "no sends while flagged"
    );
    for v in delivery_of(&check, &convs[0].id).await {
        assert_eq!(v.status, DeliveryStatus::Pending);
        assert_eq!(v.attempts, 0, "a credentials failure burns no attempt");
        assert!(v.waiting_for_destination);
        assert_eq!(v.attempt_log.unwrap()[0].outcome, "auth_failed");
    }
    // Fix the credentials: everything goes.
    let (s, d) = api
        .patch(
            &format!("/destinations/{dest}"),
            json!({"credentials": {"access_token": new_token}}),
        )
        .await;
    assert_eq!(s, 200, "{d}");
    assert_eq!(d["status"], "active");
    assert!(!d.to_string().contains(new_token), "credentials are masked");
    wait_for(WAIT, "delivered after the fix", || async {
        count_status(&check, "delivered").await == 6
    })
    .await;
    for c in convs.iter().chain(&later) {
        assert_eq!(meta.count_event_id(&c.event_id), 1);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_sqlite() {
    expired_token(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_token_postgres() {
    expired_token(Backend::Postgres).await;
}

/// Google partial failure: only the named rows fail; the window: too old
/// to send is dead without a request.
async fn partial_failure_and_window(backend: Backend) {
    let server = delivery::server(backend).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let google = FakeGoogleAds::start(GoogleAccount::default())
        .await
        .unwrap();
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let property = api.property().await;
    api.destination(&property, google_destination(&google))
        .await;
    api.destination(&property, meta_destination(&meta.base_url()))
        .await;
    let bad = ConvSpec::lead(2);
    google.fail_click(bad.gclid.as_deref().unwrap(), "UNPARSEABLE_GCLID");
    let mut old = ConvSpec::lead(4);
    old.occurred_ago = Duration::from_secs(8 * 86_400);
    old.click_ago = Duration::from_secs(8 * 86_400 + 600);
    let convs = convert(
        &server,
        &property,
        &[ConvSpec::lead(1), bad, ConvSpec::lead(3), old],
    )
    .await;
    let check = open(&server.db).await;
    wait_for(WAIT, "settled", || async {
        let c = status_counts(&check).await;
        c.get("delivered").copied().unwrap_or(0) == 6
            && c.get("failed").copied().unwrap_or(0) == 1
            && c.get("dead").copied().unwrap_or(0) == 1
    })
    .await;
    let failed = delivery_of(&check, &convs[1].id).await;
    let g = failed
        .iter()
        .find(|v| v.destination_kind == "google_ads")
        .unwrap();
    assert_eq!(g.status, DeliveryStatus::Failed);
    assert_eq!(g.reason.as_deref(), Some("unparseable_gclid"));
    assert_eq!(g.last_http_status, Some(200));
    assert_eq!(google.count_order_id(&convs[0].id), 1);
    assert_eq!(google.count_order_id(&convs[2].id), 1);
    assert_eq!(google.count_order_id(&convs[1].id), 0);
    // Eight days old: Google (90 days from the click) takes it, Meta
    // (7 days) does not, and no request carried it.
    assert_eq!(google.count_order_id(&convs[3].id), 1);
    let late = delivery_of(&check, &convs[3].id).await;
    let m = late
        .iter()
        .find(|v| v.destination_kind == "meta_capi")
        .unwrap();
    assert_eq!(m.status, DeliveryStatus::Dead);
    assert_eq!(m.reason.as_deref(), Some("outside_window"));
    assert_eq!(meta.count_event_id(&convs[3].event_id), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_and_window_sqlite() {
    partial_failure_and_window(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_and_window_postgres() {
    partial_failure_and_window(Backend::Postgres).await;
}

/// Attempts run out -> dead; `retry` and `replay` requeue; a permanent
/// refusal -> failed, retried by hand once the cause is gone.
async fn dead_retry_replay(backend: Backend) {
    let server = delivery::server_with(backend, |cfg| cfg.delivery.max_attempts = 2).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    let tiktok = FakeTiktok::start(TIKTOK_PIXEL, TIKTOK_TOKEN).await.unwrap();
    let property = api.property().await;
    let meta_dest = api
        .destination(&property, meta_destination(&meta.base_url()))
        .await;
    meta.outage_until(
        Instant::now() + Duration::from_secs(3600),
        MetaFault::Transient { code: 2 },
    );
    let convs = convert(
        &server,
        &property,
        &(0..4).map(ConvSpec::lead).collect::<Vec<_>>(),
    )
    .await;
    let check = open(&server.db).await;
    wait_for(WAIT, "dead", || async {
        count_status(&check, "dead").await == 4
    })
    .await;
    let v = delivery_of(&check, &convs[0].id).await.remove(0);
    assert_eq!(v.reason.as_deref(), Some("attempts_exhausted"));
    assert_eq!(v.attempts, 2);
    meta.heal();

    // One by hand...
    let (s, body) = api.post_empty(&format!("/deliveries/{}/retry", v.id)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["status"], "pending");
    wait_for(WAIT, "retried one delivered", || async {
        count_status(&check, "delivered").await == 1
    })
    .await;
    let (s, body) = api.post_empty(&format!("/deliveries/{}/retry", v.id)).await;
    assert_eq!(s, 409, "a delivered row is not retried: {body}");
    assert_eq!(body["error"]["code"], "not_retryable");
    // ...the rest by replay.
    let (s, body) = api
        .post_empty(&format!("/destinations/{meta_dest}/replay"))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["requeued"], 3);
    wait_for(WAIT, "replayed delivered", || async {
        count_status(&check, "delivered").await == 4
    })
    .await;
    for c in &convs {
        assert_eq!(meta.count_event_id(&c.event_id), 1);
    }

    // Permanent refusal -> failed; retry after the cause is gone.
    let tt = api
        .destination(&property, tiktok_destination(&tiktok.base_url()))
        .await;
    tiktok.fail_next(1, TiktokFault::NoPermission);
    let more = convert(&server, &property, &[ConvSpec::lead(7)]).await;
    wait_for(WAIT, "tiktok failed", || async {
        count_status(&check, "failed").await == 1
    })
    .await;
    let failed = delivery_of(&check, &more[0].id).await;
    let f = failed.iter().find(|v| v.destination_id == tt).unwrap();
    assert_eq!(f.reason.as_deref(), Some("no_permission"));
    assert_eq!(f.attempts, 1, "no retries of a permanent refusal");
    let (s, _) = api.post_empty(&format!("/deliveries/{}/retry", f.id)).await;
    assert_eq!(s, 200);
    wait_for(WAIT, "tiktok delivered", || async {
        tiktok.count_event_id(&more[0].event_id) == 1
    })
    .await;

    // Deliveries list filters.
    let (s, list) = api
        .get(&format!(
            "/properties/{property}/deliveries?destination={meta_dest}&status=delivered&limit=2"
        ))
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["deliveries"].as_array().unwrap().len(), 2);
    let cursor = list["next_cursor"].as_str().unwrap().to_owned();
    let (_, page2) = api
        .get(&format!(
            "/properties/{property}/deliveries?destination={meta_dest}&status=delivered&limit=2&cursor={cursor}"
        ))
        .await;
    let ids = |v: &serde_json::Value| -> Vec<String> {
        v["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (a, b) = (ids(&list), ids(&page2));
    assert_eq!(b.len(), 2);
    assert!(a.iter().all(|x| !b.contains(x)), "pages do not overlap");
    let (_, all) = api
        .get(&format!("/properties/{property}/deliveries?limit=100"))
        .await;
    // 5 to Meta, 1 to TikTok.
    assert_eq!(all["deliveries"].as_array().unwrap().len(), 6);
    assert!(all["next_cursor"].is_null());
    let (s, bad) = api
        .get(&format!("/properties/{property}/deliveries?status=bogus"))
        .await;
    assert_eq!(s, 400);
    assert_eq!(bad["error"]["code"], "invalid_status");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_retry_replay_sqlite() {
    dead_retry_replay(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_retry_replay_postgres() {
    dead_retry_replay(Backend::Postgres).await;
}

/// Google tokens: fetched once and reused; refreshed on 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_token_refresh() {
    let server = delivery::server(Backend::Sqlite).await;
    let api = Api::new(&server.base, MASTER_KEY);
    let google = FakeGoogleAds::start(GoogleAccount::default())
        .await
        .unwrap();
    let property = api.property().await;
    api.destination(&property, google_destination(&google))
        .await;
    convert(&server, &property, &[ConvSpec::lead(1)]).await;
    let check = open(&server.db).await;
    wait_for(WAIT, "first", || async {
        count_status(&check, "delivered").await == 1
    })
    .await;
    convert(&server, &property, &[ConvSpec::lead(2)]).await;
    wait_for(WAIT, "second", || async {
        count_status(&check, "delivered").await == 2
    })
    .await;
    assert_eq!(google.token_requests(), 1, "the token is reused");
    google.expire_tokens();
    convert(&server, &property, &[ConvSpec::lead(3)]).await;
    wait_for(WAIT, "third", || async {
        count_status(&check, "delivered").await == 3
    })
    .await;
    assert_eq!(google.token_requests(), 2, "refreshed once on 401");
    // A revoked refresh token: needs attention.
    google.expire_tokens();
    google.set_invalid_grant(true);
    convert(&server, &property, &[ConvSpec::lead(4)]).await;
    wait_for(WAIT, "flagged", || async {
        let (_, v) = api
            .get(&format!("/properties/{property}/destinations"))
            .await;
        v["destinations"][0]["status"] == "needs_attention"
    })
    .await;
    assert_eq!(count_status(&check, "pending").await, 1);
    server.stop().await;
}
