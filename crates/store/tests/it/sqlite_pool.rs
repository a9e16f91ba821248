//! SQLite as async callers use it: write transactions on the shared write
//! connection queue behind each other and roll back when abandoned (even
//! in the middle of a call), reads run beside a writer, a batch of reads
//! sees one snapshot, and all of it works on either runtime flavour.

use std::time::Duration;

use clicktrail_store::{Db, DbOptions, Reads, StoreError, args};

async fn open(name: &str) -> (Db, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ct-pool-{name}-{}", std::process::id()));
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

async fn keys(db: &Db) -> Vec<String> {
    let rows: Vec<(String,)> = db
        .fetch_all("SELECT key FROM server_meta ORDER BY key", args![])
        .await
        .unwrap();
    rows.into_iter().map(|(k,)| k).collect()
}

async fn insert(db: &Db, key: &str) {
    db.execute(
        "INSERT INTO server_meta (key, value) VALUES ($1, 'v')",
        args![key],
    )
    .await
    .unwrap();
}

/// Transactions, commits, rollbacks and reads beside an open transaction.
async fn transactions(db: &Db) {
    let mut tx = db.begin().await.unwrap();
    tx.execute(
        "INSERT INTO server_meta (key, value) VALUES ($1, 'v')",
        args!["a"],
    )
    .await
    .unwrap();
    let seen: Option<(String,)> = tx
        .fetch_optional("SELECT key FROM server_meta WHERE key = $1", args!["a"])
        .await
        .unwrap();
    assert!(seen.is_some(), "a transaction sees its own writes");
    assert!(
        keys(db).await.is_empty(),
        "readers do not see uncommitted writes, and are not blocked by them"
    );
    tx.commit().await.unwrap();
    assert_eq!(keys(db).await, ["a"]);

    let mut tx = db.begin().await.unwrap();
    tx.execute("DELETE FROM server_meta", args![])
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    {
        // Dropped unfinished: rolled back.
        let mut tx = db.begin().await.unwrap();
        tx.execute("DELETE FROM server_meta", args![])
            .await
            .unwrap();
    }
    insert(db, "b").await;
    assert_eq!(keys(db).await, ["a", "b"]);
    let missing = db
        .fetch_one::<(String,)>("SELECT key FROM server_meta WHERE key = 'z'", args![])
        .await;
    assert!(missing.is_err());
    let dup = db
        .execute(
            "INSERT INTO server_meta (key, value) VALUES ('a', 'v')",
            args![],
        )
        .await
        .unwrap_err();
    assert!(dup.is_unique_violation(), "{dup}");
}

#[tokio::test(flavor = "current_thread")]
async fn transactions_on_a_current_thread_runtime() {
    let (db, dir) = open("current").await;
    transactions(&db).await;
    close(db, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_on_a_multi_thread_runtime() {
    let (db, dir) = open("multi").await;
    transactions(&db).await;
    close(db, dir).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_transactions_queue_instead_of_failing() {
    let (db, dir) = open("queue").await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            let mut tx = db.begin().await.unwrap();
            let (n,): (i64,) = tx
                .fetch_one("SELECT COUNT(*) FROM server_meta", args![])
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            // Each transaction saw every commit before it: none overlap.
            tx.execute(
                "INSERT INTO server_meta (key, value) VALUES ($1, $2)",
                args![format!("k{i:02}"), n.to_string()],
            )
            .await
            .unwrap();
            tx.commit().await.unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut counts: Vec<(String,)> = db
        .fetch_all("SELECT value FROM server_meta", args![])
        .await
        .unwrap();
    counts.sort_by_key(|(v,)| v.parse::<i64>().unwrap_or(-1));
    let counts: Vec<String> = counts.into_iter().map(|(v,)| v).collect();
    let expected: Vec<String> = (0..16).map(|n: i64| n.to_string()).collect();
    assert_eq!(counts, expected);
    close(db, dir).await;
}

#[tokio::test]
async fn a_transaction_abandoned_in_the_middle_of_a_call_rolls_back() {
    let (db, dir) = open("abandoned").await;
    let mut tx = db.begin().await.unwrap();
    tx.execute(
        "INSERT INTO server_meta (key, value) VALUES ('first', 'v')",
        args![],
    )
    .await
    .unwrap();
    // A statement long enough to be cut off while it runs.
    let slow = tx.execute(
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 2000000) \
         INSERT INTO server_meta (key, value) SELECT 'k' || x, 'v' FROM c",
        args![],
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(5), slow)
            .await
            .is_err(),
        "the statement was cut off"
    );
    drop(tx);
    // The write connection comes back once the call ends, rolled back.
    insert(&db, "after").await;
    assert_eq!(keys(&db).await, ["after"]);
    close(db, dir).await;
}

#[tokio::test]
async fn a_read_batch_sees_one_snapshot() {
    let (db, dir) = open("snapshot").await;
    insert(&db, "a").await;
    let writer = db.clone();
    let (before, after) = db
        .read_batch(move |reads| {
            Box::pin(async move {
                let before: Vec<(String,)> = reads
                    .fetch_all("SELECT key FROM server_meta", args![])
                    .await?;
                // A commit from elsewhere while the batch runs.
                std::thread::spawn(move || {
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap()
                        .block_on(insert(&writer, "b"));
                })
                .join()
                .unwrap();
                let after: Vec<(String,)> = reads
                    .fetch_all("SELECT key FROM server_meta", args![])
                    .await?;
                assert!(matches!(reads, Reads::Tx(_)));
                Ok((before.len(), after.len()))
            })
        })
        .await
        .unwrap();
    assert_eq!((before, after), (1, 1), "one snapshot");
    assert_eq!(keys(&db).await, ["a", "b"]);
    close(db, dir).await;
}

#[tokio::test]
async fn a_closed_database_refuses_work() {
    let (db, dir) = open("closed").await;
    insert(&db, "a").await;
    db.close().await;
    assert!(matches!(
        db.fetch_all::<(String,)>("SELECT key FROM server_meta", args![])
            .await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(
        db.execute("DELETE FROM server_meta", args![]).await,
        Err(StoreError::Closed)
    ));
    let _ = std::fs::remove_dir_all(dir);
}
