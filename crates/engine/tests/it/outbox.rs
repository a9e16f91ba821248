//! The transactional outbox: the conversion writer cannot be started
//! without an [`Outbox`], and calls it inside the transaction that records
//! the conversions, so a conversion and its deliveries commit or roll back
//! together.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use clicktrail_domain::conversion::{SourceEvent, SourceKind, SourceStatus};
use clicktrail_domain::mapping::{EventMapping, MappingRule, ValueSource};
use clicktrail_engine::commit::CommitFailure;
use clicktrail_engine::config::IngestConfig;
use clicktrail_engine::conversions::{ConversionQueue, Outbox, Pending, QueueItem};
use clicktrail_engine::crypto::Keyring;
use clicktrail_engine::enrich::{self, Enricher};
use clicktrail_engine::ingest::IngestQueue;
use clicktrail_store::conversions::Written;
use clicktrail_store::ingest::{ClickOrigin, IngestEvent};
use clicktrail_store::{Db, DbOptions, StoreError, Tx, args, properties};
use clicktrail_testkit::both;
use clicktrail_testkit::db::{Backend, TestDb};
use futures::future::BoxFuture;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CLICK_ID: &str = "outboxclick0000000001";

/// An outbox that writes a marker row per item in the transaction it is
/// given, and can be told to fail.
#[derive(Default)]
struct Probe {
    fail: AtomicBool,
    calls: AtomicUsize,
    committed: AtomicUsize,
}

impl Outbox for Probe {
    fn queue_in<'a>(
        &'a self,
        tx: &'a mut Tx<'_>,
        items: &'a [QueueItem<'a>],
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            for it in items {
                tx.execute(
                    "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
                    args![format!("probe:{}", it.conversion_id), it.event_name],
                )
                .await?;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(StoreError::Conflict("the probe refuses this batch".into()));
            }
            Ok(items.len() as u64)
        })
    }

    fn committed(&self) {
        self.committed.fetch_add(1, Ordering::SeqCst);
    }
}

/// A property with one recorded click, through the real ingest writer.
async fn property_with_click(db: &Db) -> Arc<properties::Property> {
    let ws = clicktrail_store::auth::ensure_workspace(db, "default")
        .await
        .expect("workspace");
    let p = properties::create(
        db,
        ws.id,
        "Outbox",
        &["site.example".to_owned()],
        &Default::default(),
    )
    .await
    .expect("property");
    let cancel = CancellationToken::new();
    let (ingest, handles) =
        IngestQueue::start(db.clone(), &IngestConfig::default(), cancel.clone());
    let now = chrono::Utc::now().timestamp_millis();
    let body = json!({"property_id": p.id, "events": [
        {"event_id": uuid::Uuid::now_v7().to_string(), "name": "PageView", "ts": now,
         "visitor_id": "visitor0000000001", "url": "https://site.example/review"},
        {"event_id": CLICK_ID, "name": "OutboundClick", "ts": now, "click_id": CLICK_ID,
         "visitor_id": "visitor0000000001", "url": "https://site.example/review",
         "link": {"url": "https://offer.example/?subid=x", "tracking_group": "custom"}},
    ]});
    let batch =
        clicktrail_domain::collect::decode(body.to_string().as_bytes(), now).expect("decode");
    let enricher =
        Enricher::new(Vec::new(), Keyring::from_ikm(b"outbox test key")).expect("enricher");
    let peer: SocketAddr = ([192, 0, 2, 1], 443).into();
    let facts = enricher.request_facts(&http::HeaderMap::new(), Some(peer));
    let events = batch
        .events
        .into_iter()
        .map(|ev| IngestEvent {
            property_id: p.id.as_str().to_owned(),
            received_at_ms: now,
            session_timeout_ms: p.settings.session_timeout_ms(),
            seed: Arc::new(enrich::session_seed(&ev, &facts, None)),
            event: ev,
            click_origin: ClickOrigin::Tag,
            onsite: None,
        })
        .collect();
    ingest.submit(events).await.expect("ingest");
    cancel.cancel();
    for h in handles {
        h.await.expect("ingest writer");
    }
    Arc::new(p)
}

fn purchase(property: &Arc<properties::Property>, transaction: &str) -> Pending {
    let mut mapping = EventMapping::default();
    mapping.0.insert(
        "sale".into(),
        MappingRule {
            event: Some("Purchase".into()),
            value: ValueSource::Reported,
            send_to_destinations: true,
        },
    );
    Pending {
        property: property.clone(),
        integration: None,
        mapping: Arc::new(mapping),
        received_at_ms: chrono::Utc::now().timestamp_millis(),
        event_id: None,
        event: SourceEvent {
            kind: SourceKind::Postback,
            source_event: "sale".into(),
            click_id: Some(CLICK_ID.into()),
            transaction_id: Some(transaction.into()),
            value: Some(clicktrail_domain::money::Amount::from_micros(12_500_000)),
            currency: None,
            status: SourceStatus::Approved,
            occurred_at: None,
            adjusts: None,
            raw: Default::default(),
        },
        forced_error: None,
        session_id: None,
    }
}

async fn count(db: &Db, sql: &str) -> i64 {
    let (n,): (i64,) = db.fetch_one(sql, args![]).await.expect("count");
    n
}

both!(
    deliveries_are_planned_in_the_conversions_transaction,
    |backend: Backend| async move {
        let test_db = TestDb::new(backend).await;
        let db = Db::connect(&test_db.url, &DbOptions::default())
            .await
            .expect("connect");
        db.migrate().await.expect("migrate");
        let property = property_with_click(&db).await;
        let probe = Arc::new(Probe::default());
        let cancel = CancellationToken::new();
        let (queue, writer) = ConversionQueue::start(db.clone(), 16, probe.clone(), cancel.clone());

        // A validated conversion: the outbox is called once, in the
        // transaction (its marker row is there), then told of the commit.
        let written = queue
            .submit(vec![purchase(&property, "T1")], None)
            .await
            .expect("written");
        let Written::Recorded { id, status, .. } = &written[0] else {
            panic!("not recorded: {written:?}");
        };
        assert_eq!(status.as_str(), "validated");
        assert_eq!(probe.calls.load(Ordering::SeqCst), 1);
        assert_eq!(probe.committed.load(Ordering::SeqCst), 1);
        let marker: Option<(String,)> = db
            .fetch_optional(
                "SELECT value FROM server_meta WHERE key = $1",
                args![format!("probe:{id}")],
            )
            .await
            .expect("marker");
        assert_eq!(marker, Some(("Purchase".to_owned(),)));

        // When the outbox fails, the conversion is not recorded either: one
        // transaction, rolled back whole.
        probe.fail.store(true, Ordering::SeqCst);
        let refused = queue.submit(vec![purchase(&property, "T2")], None).await;
        assert_eq!(refused, Err(CommitFailure::Storage));
        assert_eq!(probe.calls.load(Ordering::SeqCst), 2);
        assert_eq!(
            probe.committed.load(Ordering::SeqCst),
            1,
            "no commit to tell of"
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM conversions").await, 1);
        assert_eq!(
            count(
                &db,
                "SELECT COUNT(*) FROM server_meta WHERE key LIKE 'probe:%'"
            )
            .await,
            1
        );

        // And once it works again, the same conversion goes through.
        probe.fail.store(false, Ordering::SeqCst);
        let written = queue
            .submit(vec![purchase(&property, "T2")], None)
            .await
            .expect("written");
        assert!(
            matches!(&written[0], Written::Recorded { status, .. } if status.as_str() == "validated")
        );
        assert_eq!(count(&db, "SELECT COUNT(*) FROM conversions").await, 2);

        cancel.cancel();
        writer.await.expect("writer");
        db.close().await;
    }
);
