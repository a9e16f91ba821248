//! Real `clicktrail serve` processes: `kill -9` in the middle of a
//! delivery, then a restart, loses nothing and sends nothing under a second
//! id; two servers on one PostgreSQL deliver each conversion once.

use std::collections::HashSet;
use std::time::Duration;

use clicktrail_store::args;
use clicktrail_store::deliveries::PlannedDelivery;
use clicktrail_testkit::meta::FakeMeta;

use crate::support::delivery::{self, *};
use crate::support::{Backend, MASTER_KEY, TestDb, open, wait_for};

const WAIT: Duration = Duration::from_secs(60);

fn meta_lead(destination_id: &str) -> Vec<PlannedDelivery> {
    vec![PlannedDelivery {
        destination_id: destination_id.to_owned(),
        event_name: "Lead".into(),
        conversion_action: None,
    }]
}

async fn kill_mid_delivery(backend: Backend) {
    let db = TestDb::new(backend).await;
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    // Meta records each request at once, but its answers come late: the
    // kill lands after Meta accepted some batches and before the server
    // learnt it.
    let slow = SlowAnswers::start(&meta.base_url()).await;
    slow.set_delay(Duration::from_millis(1500));
    let mut first = delivery::child(&db, "a").await;
    let api = Api::new(&first.base, MASTER_KEY);
    let property = api.property().await;
    let dest = api
        .destination(&property, meta_destination(&slow.base))
        .await;
    let check = open(&db).await;
    let lead = |round: usize| -> Vec<ConvSpec> {
        (0..50).map(|i| ConvSpec::lead(round * 100 + i)).collect()
    };
    // A first round is delivered and recorded before the kill...
    let mut convs = convert_with(&check, &property, &lead(0), &meta_lead(&dest)).await;
    wait_for(WAIT, "the first round recorded", || async {
        count_status(&check, "delivered").await == 50
    })
    .await;
    // ...the others are in flight at the kill: Meta has accepted some of
    // them, and their answers are still held back.
    for round in 1..6 {
        convs.extend(convert_with(&check, &property, &lead(round), &meta_lead(&dest)).await);
    }
    wait_for(WAIT, "Meta to accept unrecorded conversions", || async {
        meta.events().len() > 50
    })
    .await;
    first.kill().await;
    let delivered_at_kill = count_status(&check, "delivered").await;
    let accepted_at_kill = meta.events().len();
    assert!(
        delivered_at_kill < 300,
        "the kill came too late to test anything"
    );
    assert!(
        accepted_at_kill as i64 > delivered_at_kill,
        "Meta accepted conversions the server never recorded"
    );

    slow.set_delay(Duration::ZERO);
    let second = delivery::child(&db, "b").await;
    wait_for(WAIT, "all delivered after the restart", || async {
        count_status(&check, "delivered").await == 300
    })
    .await;

    // Nothing lost: every conversion reached Meta, under its own id only;
    // those in flight at the kill went twice with the same id (Meta
    // de-duplicates them).
    let wanted: HashSet<&str> = convs.iter().map(|c| c.event_id.as_str()).collect();
    let got: Vec<String> = meta
        .events()
        .iter()
        .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
        .collect();
    let got_set: HashSet<&str> = got.iter().map(String::as_str).collect();
    assert_eq!(
        got_set, wanted,
        "each conversion's own event_id, and no other"
    );
    let resent = got.len() - got_set.len();
    assert!(resent > 0, "the in-flight batches were sent again");
    for c in &convs {
        let n = meta.count_event_id(&c.event_id);
        assert!((1..=2).contains(&n), "{} sent {n} times", c.id);
    }
    // One delivery row per conversion, each delivered.
    let (rows,): (i64,) = check
        .fetch_one("SELECT COUNT(*) FROM deliveries", args![])
        .await
        .unwrap();
    assert_eq!(rows, 300);
    eprintln!(
        "kill -9 ({backend:?}): {delivered_at_kill} recorded before the kill, {accepted_at_kill} accepted by \
         Meta by then; {resent} resent with the same event_id after the restart"
    );
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_delivery_sqlite() {
    kill_mid_delivery(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_mid_delivery_postgres() {
    kill_mid_delivery(Backend::Postgres).await;
}

/// Two servers on one PostgreSQL: `FOR UPDATE SKIP LOCKED` shares the
/// queue; no conversion goes twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_the_queue() {
    let db = TestDb::new(Backend::Postgres).await;
    let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
    meta.set_delay(Duration::from_millis(20));
    let a = delivery::child(&db, "a").await;
    let b = delivery::child(&db, "b").await;
    let api = Api::new(&a.base, MASTER_KEY);
    let property = api.property().await;
    let dest = api
        .destination(&property, meta_destination(&meta.base_url()))
        .await;
    let check = open(&db).await;
    let mut convs = Vec::new();
    for round in 0..40 {
        let specs: Vec<ConvSpec> = (0..25).map(|i| ConvSpec::lead(round * 100 + i)).collect();
        convs.extend(convert_with(&check, &property, &specs, &meta_lead(&dest)).await);
        // Each round is claimed before the next arrives, so the rounds
        // reach whichever server polls first: both take a share.
        wait_for(WAIT, "the round claimed", || async {
            let (n,): (i64,) = check
                .fetch_one(
                    "SELECT COUNT(*) FROM deliveries WHERE status = 'pending' AND locked_until IS NULL",
                    args![],
                )
                .await
                .unwrap();
            n == 0
        })
        .await;
    }
    wait_for(WAIT, "1000 delivered", || async {
        count_status(&check, "delivered").await == 1000
    })
    .await;
    for c in &convs {
        assert_eq!(meta.count_event_id(&c.event_id), 1, "{} sent once", c.id);
    }
    assert_eq!(meta.events().len(), 1000);
    let (attempts,): (i64,) = check
        .fetch_one("SELECT COUNT(*) FROM delivery_attempts", args![])
        .await
        .unwrap();
    assert_eq!(attempts, 1000, "one attempt per delivery");
    let by_a = a
        .metric("clicktrail_deliveries_total", "outcome=\"delivered\"")
        .await;
    let by_b = b
        .metric("clicktrail_deliveries_total", "outcome=\"delivered\"")
        .await;
    assert_eq!(by_a + by_b, 1000.0);
    eprintln!("two servers: {by_a} delivered by one, {by_b} by the other");
}
