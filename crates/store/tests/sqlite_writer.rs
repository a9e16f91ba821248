//! The SQLite writer's own mechanisms: a dedicated writer's raw
//! transactions (`BEGIN IMMEDIATE` sent with the first statement, `COMMIT`
//! with the last) and the background checkpointer.

use clicktrail_store::{Db, DbOptions, args};

async fn open(name: &str) -> (Db, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ct-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}/t.db", dir.display());
    let db = Db::connect(&url, &DbOptions::default()).await.unwrap();
    db.migrate().await.unwrap();
    (db, dir)
}

async fn value(db: &Db, key: &str) -> Option<String> {
    db.fetch_optional::<(String,)>("SELECT value FROM server_meta WHERE key = $1", args![key])
        .await
        .unwrap()
        .map(|r| r.0)
}

#[tokio::test]
async fn a_failed_raw_transaction_commits_nothing_and_leaves_the_writer_usable() {
    let (db, dir) = open("raw").await;
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ('a', '1')",
        args![],
    )
    .await
    .unwrap();
    let mut w = db
        .dedicated_writer()
        .await
        .unwrap()
        .expect("SQLite has one");

    // A read opens the transaction; the script fails at its second statement
    // (duplicate primary key) after the first one changed a row.
    let mut tx = w.begin();
    let seen: Vec<(String,)> = tx
        .fetch_all("SELECT value FROM server_meta WHERE key = 'a'", args![])
        .await
        .unwrap();
    assert_eq!(seen, vec![("1".to_owned(),)]);
    let err = tx
        .execute_and_commit(
            "UPDATE server_meta SET value = '2' WHERE key = 'a';\nINSERT INTO server_meta (key, value) VALUES ('a', 'dup');",
            args![],
        )
        .await
        .unwrap_err();
    assert!(err.is_unique_violation(), "{err}");
    assert_eq!(
        value(&db, "a").await.as_deref(),
        Some("1"),
        "the first statement was rolled back"
    );

    // The same connection starts and commits the next transaction.
    let tx = w.begin();
    tx.execute_and_commit(
        "UPDATE server_meta SET value = $1 WHERE key = 'a'",
        args!["3"],
    )
    .await
    .unwrap();
    assert_eq!(value(&db, "a").await.as_deref(), Some("3"));

    // Reads only, then commit; and a transaction that never ran a statement.
    let mut tx = w.begin();
    let _: Vec<(String,)> = tx
        .fetch_all("SELECT value FROM server_meta", args![])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    w.begin().commit().await.unwrap();
    // An explicit rollback after a write.
    let mut tx = w.begin();
    tx.execute(
        "UPDATE server_meta SET value = '4' WHERE key = 'a'",
        args![],
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(value(&db, "a").await.as_deref(), Some("3"));
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
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
    // The next write starts the WAL over from its beginning.
    db.execute(
        "UPDATE server_meta SET value = 'y' WHERE key = 'k0'",
        args![],
    )
    .await
    .unwrap();
    let st = cp.passive().await.unwrap();
    assert!(st.wal_frames < 10, "the WAL restarted: {st:?}");
    db.close().await;
    let _ = std::fs::remove_dir_all(dir);
}
