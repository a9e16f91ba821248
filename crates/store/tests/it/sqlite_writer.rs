//! The SQLite writers' own mechanisms: the background checkpointer, a
//! dedicated writer's connection restarting the WAL, and the ingest
//! writer's bounded session cache.

use clicktrail_store::{Db, DbOptions, args};

async fn open(name: &str) -> (Db, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ct-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/t.db", dir.display());
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    (db, dir)
}

async fn close(db: Db, dir: std::path::PathBuf) {
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// After a restart, the next write goes to the beginning of the WAL.
async fn assert_next_write_starts_the_wal_over(db: &Db, cp: &mut clicktrail_store::Checkpointer) {
    db.execute(
        "UPDATE server_meta SET value = 'y' WHERE key = 'k0'",
        args![],
    )
    .await
    .unwrap();
    let st = cp.passive().await.unwrap();
    assert!(st.wal_frames < 10, "the WAL restarted: {st:?}");
}

#[tokio::test]
async fn the_checkpointer_copies_the_wal_and_restarts_it() {
    let (db, dir) = open("checkpoint").await;
    let mut cp = db.checkpointer().await.unwrap().expect("SQLite has one");
    for i in 0..200 {
        db.execute(
            "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
            args![format!("k{i}"), "x".repeat(2000)],
        )
        .await
        .unwrap();
    }
    let st = cp.passive().await.unwrap();
    assert!(st.wal_frames > 0, "{st:?}");
    assert_eq!(
        st.checkpointed, st.wal_frames,
        "nothing blocks a passive checkpoint here: {st:?}"
    );
    let st = cp.restart().await.unwrap();
    assert_eq!(st.checkpointed, st.wal_frames, "{st:?}");
    assert_next_write_starts_the_wal_over(&db, &mut cp).await;
    close(db, dir).await;
}

#[tokio::test]
async fn a_dedicated_writer_restarts_the_wal_after_a_passive_checkpoint() {
    let (db, dir) = open("restart").await;
    let mut cp = db.checkpointer().await.unwrap().expect("SQLite has one");
    let mut w = db.dedicated_writer().unwrap();
    // About 18 MB of pages: past the writer's threshold of 4,096 frames.
    let mut tx = db.begin().await.unwrap();
    for i in 0..2300 {
        tx.execute(
            "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
            args![format!("k{i}"), "x".repeat(8000)],
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    assert!(
        !w.restart_wal_if_large().unwrap(),
        "no passive checkpoint has copied the WAL yet"
    );
    let st = cp.passive().await.unwrap();
    assert!(
        st.wal_frames > clicktrail_store::WalState::RESTART_ABOVE_FRAMES,
        "{st:?}"
    );
    assert_eq!(cp.writer_restarts(), 0);
    assert!(w.restart_wal_if_large().unwrap());
    assert_eq!(cp.writer_restarts(), 1);
    assert!(
        !w.restart_wal_if_large().unwrap(),
        "once per passive checkpoint"
    );
    assert_next_write_starts_the_wal_over(&db, &mut cp).await;
    assert!(!w.restart_wal_if_large().unwrap(), "a short WAL stays");
    drop(w);
    close(db, dir).await;
}

/// One PageView of `visitor` at `at_ms`.
fn pageview(visitor: &str, n: u32, at_ms: i64) -> clicktrail_store::ingest::IngestEvent {
    let body = serde_json::json!({
        "property_id": "prop0123456789ab",
        "events": [{
            "event_id": format!("{visitor}-{n}"),
            "name": "PageView",
            "ts": at_ms,
            "visitor_id": visitor,
            "url": format!("https://example.com/p{n}"),
        }]
    })
    .to_string();
    let mut batch = clicktrail_domain::collect::decode(body.as_bytes(), at_ms).expect("decode");
    clicktrail_store::ingest::IngestEvent {
        property_id: "prop0123456789ab".into(),
        received_at_ms: at_ms,
        session_timeout_ms: 30 * 60_000,
        event: batch.events.remove(0),
        seed: std::sync::Arc::new(clicktrail_store::ingest::SessionSeed {
            landing_url: format!("https://example.com/p{n}"),
            landing_page: format!("/p{n}"),
            source: "(direct)".into(),
            medium: "(none)".into(),
            channel: "Direct".into(),
            device: "desktop".into(),
            ..Default::default()
        }),
        click_origin: clicktrail_store::ingest::ClickOrigin::Tag,
        onsite: None,
    }
}

#[tokio::test]
async fn the_session_cache_stays_bounded_and_sessions_continue_past_it() {
    use clicktrail_store::Backend;
    use clicktrail_store::ingest::Ingestor;
    let (db, dir) = open("cache").await;
    let mut ing = Ingestor::with_cache_capacity(Backend::Sqlite, 8);
    let t0 = 1_800_000_000_000;
    let first = ing
        .write(&db, &[pageview("visitor-first", 0, t0)])
        .await
        .unwrap()[0];
    assert!(first.inserted && first.new_session);
    // Forty other visitors push the first one out of both generations.
    for i in 0..40 {
        let out = ing
            .write(
                &db,
                &[pageview(&format!("visitor-{i:04}"), 0, t0 + 1000 + i)],
            )
            .await
            .unwrap();
        assert!(out[0].new_session);
        assert!(ing.cached_sessions() <= 8, "{}", ing.cached_sessions());
    }
    // Within the timeout the first visitor continues its session (read back
    // from the database), and a retried beacon is a duplicate.
    let again = ing
        .write(
            &db,
            &[
                pageview("visitor-first", 1, t0 + 60_000),
                pageview("visitor-first", 0, t0),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (again[0].session_id, again[0].new_session),
        (first.session_id, false)
    );
    assert!(!again[1].inserted);
    // After the timeout a new one starts.
    let later = ing
        .write(
            &db,
            &[pageview("visitor-first", 2, t0 + 60_000 + 31 * 60_000)],
        )
        .await
        .unwrap()[0];
    assert!(later.new_session && later.session_id != first.session_id);
    let (pv,): (i64,) = db
        .fetch_one(
            "SELECT pageviews FROM sessions WHERE id = $1",
            args![first.session_id],
        )
        .await
        .unwrap();
    assert_eq!(pv, 2);
    close(db, dir).await;
}
