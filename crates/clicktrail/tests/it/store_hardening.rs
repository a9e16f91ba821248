//! The store under more than one process, its files and its claims
//! (issue 13: findings 3, 8, 9 and 12): two servers on one database taking
//! postbacks that move the same rollup rows, poll claims left by a crash,
//! the modes of the data files, and tracked-link slugs per property.

use std::sync::Arc;
use std::time::Duration;

use clicktrail_testkit::both;
use futures::StreamExt as _;
use serde_json::{Value, json};

use crate::support::{self, Backend, CHROME_UA, MASTER_KEY, TestServer, wait_for_some};

/// A landing from ad campaign `n` on landing page `n` (its own rollup rows).
fn campaign_landing(n: u32) -> String {
    format!(
        "https://site.example/bonus{n}?utm_source=google&utm_medium=cpc&utm_campaign=c{n}&utm_content=ad{n}&gclid=Cj0_gclid_{n}"
    )
}

/// Finding 3: two processes on one database commit conversions that
/// count in the same rollup rows. Each transaction locks those rows in
/// one global order, and one that still meets another (a deadlock, a
/// busy database) is written again: no postback is refused. The second
/// server is a real `clicktrail serve` process, as in the finding.
async fn two_processes_share_rollups(b: Backend) {
    const POSTBACKS: u32 = 1500;
    // Many distinct attributions: a group commit then moves hundreds of
    // rollup rows, most of them shared with the other process's.
    const CLICKS: u32 = 96;
    let a = TestServer::start(b).await;
    let mut second = support::process::Serve::new(&a.db.url, &a.db.dir.join("second"))
        .start()
        .await;
    let bases = Arc::new([a.base.clone(), second.base.clone()]);
    let pid = a.property(&["site.example"]).await;
    let (_, url) = a.install_custom(&pid).await;
    let path = url.split_once("/postback/").unwrap().1.to_owned();
    let mut clicks = Vec::new();
    for n in 0..CLICKS {
        clicks.push(a.landing_click(&pid, n, &campaign_landing(n)).await);
    }
    let clicks = Arc::new(clicks);
    let http = a.http.clone();
    let answers: Vec<(u16, Value)> = futures::stream::iter(0..POSTBACKS)
        .map(|i| {
            let (http, bases, clicks, path) =
                (http.clone(), bases.clone(), clicks.clone(), path.clone());
            async move {
                let cid = &clicks[(i as usize) % clicks.len()];
                let base = &bases[(i as usize) % 2];
                let r = http
                    .get(format!(
                        "{base}/postback/{path}?sub1={cid}&payout=1.25&currency=EUR&txid=T-{i}&event=sale"
                    ))
                    .send()
                    .await
                    .expect("postback");
                (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let refused: Vec<&(u16, Value)> = answers
        .iter()
        .filter(|(st, v)| *st != 200 || v["status"] != "validated")
        .collect();
    let unavailable = answers
        .iter()
        .filter(|(_, v)| v["error"]["code"] == "storage_unavailable")
        .count();
    assert_eq!(unavailable, 0, "storage_unavailable answers: {refused:?}");
    assert!(
        refused.is_empty(),
        "{} refused: {:?}",
        refused.len(),
        &refused[..refused.len().min(5)]
    );
    // Every conversion counted once, from both processes.
    let (total,): (i64,) = a
        .server
        .services
        .db
        .fetch_one(
            "SELECT CAST(SUM(conversions) AS BIGINT) FROM rollup_conversions_hourly \
             WHERE model = 'last' AND dim = 'total'",
            clicktrail_store::args![],
        )
        .await
        .unwrap();
    assert_eq!(total, i64::from(POSTBACKS));
    assert!(second.terminate().await.success(), "{}", second.log());
    a.stop().await;
}

both!(two_processes, two_processes_share_rollups);

/// Finding 8: a poll cut short by a crash leaves its claim in the
/// database; the restarted instance releases it at once, so "poll now"
/// runs at once (it used to wait 60 s, then answer 409 for 15 minutes).
/// Another instance's live claim is left alone.
async fn restart_releases_poll_claims(b: Backend) {
    use clicktrail_store::integrations;
    let fake = clicktrail_testkit::income_access::FakeIncomeAccess::start()
        .await
        .unwrap();
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (st, v) = s
            .post(
                &format!("/api/v1/properties/{pid}/integrations"),
                MASTER_KEY,
                json!({"catalog": "galapartners", "credentials": {"security_key": fake.key()},
                       "settings": {"api_url": fake.report_url}}),
            )
            .await;
        assert_eq!(st, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    let instance = std::fs::read_to_string(s.db.dir.join("instance.id")).expect("instance id");
    let db = s.server.services.db.clone();
    // The crash: this instance's claim on the first, another's on the
    // second (taken once the scheduler's first polls are over).
    let hour = 3_600_000;
    for (id, owner) in [(&ids[0], instance.trim()), (&ids[1], "another-instance")] {
        wait_for_some(Duration::from_secs(30), "a poll claim", || async {
            let now = support::now_ms();
            integrations::claim_poll(&db, id, owner, now, now + hour)
                .await
                .unwrap()
                .then_some(())
        })
        .await;
    }
    let TestServer {
        server,
        db: test_db,
        ..
    } = s;
    server.stop().await.expect("stops");
    let cfg = support::config(&test_db);
    let s = TestServer::start_with(test_db, cfg).await;
    let started = std::time::Instant::now();
    let (st, v) = s
        .api(
            reqwest::Method::POST,
            &format!("/api/v1/integrations/{}/poll", ids[0]),
            MASTER_KEY,
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "poll now waited {:?}",
        started.elapsed()
    );
    let held: Option<(Option<i64>, Option<String>)> = s
        .server
        .services
        .db
        .fetch_optional(
            "SELECT polling_until, polling_owner FROM integrations WHERE id = $1",
            clicktrail_store::args![ids[1].as_str()],
        )
        .await
        .unwrap();
    let (until, owner) = held.expect("integration");
    assert!(
        until.is_some(),
        "another instance's live claim was released"
    );
    assert_eq!(owner.as_deref(), Some("another-instance"));
    s.stop().await;
}

both!(poll_claims, restart_releases_poll_claims);

/// Finding 9: the data directory is created 0700 and the database, its
/// `-wal` and `-shm`, and the instance id 0600; wider ones are reported
/// (and warned about at start).
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let test_db = support::TestDb::new(Backend::Sqlite).await;
    let mut cfg = support::config(&test_db);
    // A data directory the server creates (the test's own already exists).
    cfg.data_dir = test_db.dir.join("data");
    cfg.database_url = format!("sqlite://{}/ct.db", cfg.data_dir.display());
    let s = TestServer::start_with(test_db, cfg.clone()).await;
    // A write, so the WAL and its index exist.
    s.property(&["site.example"]).await;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&cfg.data_dir), 0o700);
    for f in ["ct.db", "ct.db-wal", "ct.db-shm", "instance.id"] {
        assert_eq!(mode(&cfg.data_dir.join(f)), 0o600, "{f}");
    }
    assert!(clicktrail::datadir::too_open(&cfg).is_empty());
    // Files made wider by hand are reported.
    let set = |p: &std::path::Path, m| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap()
    };
    set(&cfg.data_dir, 0o755);
    set(&cfg.data_dir.join("ct.db"), 0o644);
    let open: Vec<_> = clicktrail::datadir::too_open(&cfg);
    assert!(open.contains(&(cfg.data_dir.clone(), 0o755)), "{open:?}");
    assert!(
        open.contains(&(cfg.data_dir.join("ct.db"), 0o644)),
        "{open:?}"
    );
    s.stop().await;
}

/// Finding 9, tokens: a postback token is stored as its keyed hash (what
/// postbacks are looked up by) and encrypted (to show the URL again), never
/// in clear; a database from before sealing is sealed at the next start,
/// and the postback URLs already given to networks keep working.
async fn postback_tokens_sealed(b: Backend) {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    let (id, url) = s.install_custom(&pid).await;
    let token = url.rsplit('/').next().unwrap().to_owned();
    let stored = |db: clicktrail_store::Db, id: String| async move {
        let row: Option<(String, Option<String>)> = db
            .fetch_optional(
                "SELECT postback_token_hash, postback_token_enc FROM integrations WHERE id = $1",
                clicktrail_store::args![id.as_str()],
            )
            .await
            .unwrap();
        row.expect("integration")
    };
    let (hash, enc) = stored(s.server.services.db.clone(), id.clone()).await;
    assert!(hash.starts_with("pt:") && !hash.contains(&token), "{hash}");
    let enc = enc.expect("encrypted token");
    assert!(!enc.contains(&token));
    // A restarted server listens on another port: the path is what a
    // network holds.
    let postback = |s: &TestServer, n: u32| {
        let q = format!("?sub1=unknownclick{n:08}&payout=1&currency=EUR&txid=tx-{n}");
        let req = s.http.get(s.url(&format!("/postback/{token}{q}")));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(postback(&s, 1).await, 200);
    // A database written before tokens were sealed: the clear token in
    // the column, nothing encrypted.
    s.server
        .services
        .db
        .execute(
            "UPDATE integrations SET postback_token_hash = $2, postback_token_enc = NULL WHERE id = $1",
            clicktrail_store::args![id.as_str(), token.as_str()],
        )
        .await
        .unwrap();
    let TestServer {
        server,
        db: test_db,
        ..
    } = s;
    server.stop().await.expect("stops");
    let cfg = support::config(&test_db);
    let s = TestServer::start_with(test_db, cfg).await;
    let (hash2, enc2) = stored(s.server.services.db.clone(), id.clone()).await;
    assert_eq!(hash2, hash, "sealed to the same keyed hash");
    assert!(enc2.is_some_and(|e| !e.contains(&token)));
    assert_eq!(postback(&s, 2).await, 200, "the URL given out still works");
    let (st, v) = s
        .get(&format!("/api/v1/integrations/{id}"), MASTER_KEY)
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["postback_url"], s.url(&format!("/postback/{token}")));
    // A wrong token is still unknown.
    let wrong = s.url("/postback/not_a_real_token_at_all_0000000");
    let st = s.http.get(&wrong).send().await.unwrap().status().as_u16();
    assert_eq!(st, 404);
    s.stop().await;
}

mod postback_tokens {
    use super::*;
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        postback_tokens_sealed(Backend::Postgres).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        postback_tokens_sealed(Backend::Sqlite).await
    }
}

/// Finding 12: slugs belong to a property. Two workspaces use the same
/// slug, each link answers at `/go/{property_id}/{slug}` (the URL the API
/// gives), and the short `/go/{slug}` still means the older link.
async fn slugs_per_property(b: Backend) {
    use clicktrail_store::auth;
    let s = TestServer::start(b).await;
    let db = s.server.services.db.clone();
    let mut tokens = Vec::new();
    for name in ["alpha", "beta"] {
        let ws = auth::ensure_workspace(&db, name).await.unwrap();
        tokens.push(auth::create_token(&db, ws.id, "t").await.unwrap().1);
    }
    let mut made = Vec::new();
    for (token, offer) in tokens
        .iter()
        .zip(["https://alpha.example/", "https://beta.example/"])
    {
        let (st, p) = s
            .post(
                "/api/v1/properties",
                token,
                json!({"name": "Site", "domains": ["site.example"]}),
            )
            .await;
        assert_eq!(st, 201, "{p}");
        let pid = p["id"].as_str().unwrap().to_owned();
        let (st, l) = s
            .post(
                &format!("/api/v1/properties/{pid}/links"),
                token,
                json!({"slug": "black-friday", "destination_url": offer}),
            )
            .await;
        assert_eq!(st, 201, "{l}");
        let url = l["url"].as_str().unwrap().to_owned();
        assert_eq!(url, s.url(&format!("/go/{pid}/black-friday")));
        made.push((url, offer));
        // Within one property a slug is still taken once.
        let (st, v) = s
            .post(
                &format!("/api/v1/properties/{pid}/links"),
                token,
                json!({"slug": "black-friday", "destination_url": offer}),
            )
            .await;
        assert_eq!((st, v["error"]["code"].as_str()), (409, Some("slug_taken")));
    }
    let location = |r: reqwest::Response| {
        assert_eq!(r.status(), 302);
        r.headers()["location"].to_str().unwrap().to_owned()
    };
    for (url, offer) in &made {
        let r = s
            .http
            .get(url)
            .header("user-agent", CHROME_UA)
            .send()
            .await
            .unwrap();
        let loc = location(r);
        assert!(loc.starts_with(offer), "{url} went to {loc}");
    }
    let r = s
        .http
        .get(s.url("/go/black-friday"))
        .header("user-agent", CHROME_UA)
        .send()
        .await
        .unwrap();
    assert!(location(r).starts_with("https://alpha.example/"));
    s.stop().await;
}

both!(link_slugs, slugs_per_property);
