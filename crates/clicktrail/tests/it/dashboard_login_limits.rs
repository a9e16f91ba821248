//! Login hardening against the real server (issue 13): concurrent wrong
//! logins are counted before their password is checked; password checks
//! are bounded so memory stays flat under a flood (measured on a server
//! run as a child process); failures from a foreign address never lock
//! the owner out, and admins see the locks; the post-login redirect stays
//! on this site whatever the URL parser normalises; `/setup` beyond
//! loopback asks for the code printed at first start.

use std::time::{Duration, Instant};

use clicktrail_testkit::both;
use serde_json::json;

use crate::support::browser::{self, ADMIN_EMAIL, ADMIN_PASSWORD, Browser};
use crate::support::process::{ChildServer, Serve};
use crate::support::{self, Backend, TestDb, TestServer};

/// A server whose `X-Forwarded-For` is honoured from loopback, so one
/// test can speak from many client addresses.
async fn behind_proxy(backend: Backend) -> TestServer {
    let db = TestDb::new(backend).await;
    let mut cfg = support::config(&db);
    cfg.trusted_proxies = serde_json::from_value(json!(["127.0.0.1/32"])).expect("cidr");
    TestServer::start_with(db, cfg).await
}

fn statuses(pages: &[browser::Page]) -> (usize, usize, usize) {
    let n = |s: u16| pages.iter().filter(|p| p.status == s).count();
    (n(401), n(429), pages.len() - n(401) - n(429))
}

both!(
    concurrent_wrong_logins_are_counted_before_checking,
    |backend| async move {
        let t = TestServer::start(backend).await;
        let b = Browser::new(&t.base);
        b.setup_and_login().await;
        b.forget_cookies();
        // One valid CSRF cookie and field pair, sent 64 times at once.
        let page = b.get("/login").await;
        let csrf = page.csrf();
        let fields = [
            ("_csrf", csrf.as_str()),
            ("email", ADMIN_EMAIL),
            ("password", "wrong password!"),
        ];
        let posts = (0..64).map(|_| b.post("/login", &fields));
        let pages = futures::future::join_all(posts).await;
        let (checked, refused, other) = statuses(&pages);
        // Exactly the limit (5 per account and address) reached a check.
        assert_eq!((checked, refused, other), (5, 59, 0));
        for p in pages.iter().filter(|p| p.status == 429) {
            assert!(p.headers.get("retry-after").is_some());
        }
        t.stop().await;
    }
);

both!(
    password_change_guesses_are_throttled,
    |backend| async move {
        // A stolen session guessing the current password meets the login
        // throttle (5 per account and address), then 429 even with the
        // right one; from the owner's own address the change still works.
        let t = behind_proxy(backend).await;
        let mut thief = Browser::new(&t.base);
        thief.setup_and_login().await;
        thief.forwarded_for = Some("198.51.100.7".into());
        async fn change(b: &Browser, current: &str) -> crate::support::browser::Page {
            let fields = [
                ("current", current),
                ("password", "a brand new password"),
                ("password_confirm", "a brand new password"),
            ];
            b.submit("/account/password", "/account/password", &fields)
                .await
        }
        for i in 0..5 {
            let r = change(&thief, "guess guess!").await;
            assert_eq!(r.status, 422, "attempt {i}");
            assert!(r.has_error_for("current"));
        }
        let r = change(&thief, ADMIN_PASSWORD).await;
        assert_eq!(r.status, 429, "the sixth guess is refused unchecked");
        assert!(r.headers.get("retry-after").is_some());
        thief.forwarded_for = Some("203.0.113.9".into());
        let r = change(&thief, ADMIN_PASSWORD).await;
        assert_eq!(r.status, 303, "{}", r.body);
        t.stop().await;
    }
);

both!(
    failures_from_elsewhere_never_lock_the_owner_out,
    |backend| async move {
        let t = behind_proxy(backend).await;
        let owner = Browser::new(&t.base);
        owner.setup_and_login().await;
        owner.forget_cookies();

        let mut attacker = Browser::new(&t.base);
        attacker.forwarded_for = Some("198.51.100.7".into());
        for i in 0..5 {
            let r = attacker
                .submit(
                    "/login",
                    "/login",
                    &[("email", ADMIN_EMAIL), ("password", "guess guess!")],
                )
                .await;
            assert_eq!(r.status, 401, "attempt {i}");
        }
        // That address is locked for the account, even with the password.
        let locked = attacker
            .submit(
                "/login",
                "/login",
                &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
            )
            .await;
        assert_eq!(locked.status, 429);
        assert!(locked.body.contains("Too many failed logins"));

        // The owner, from their own address, gets in.
        let mut owner = owner;
        owner.forwarded_for = Some("203.0.113.9".into());
        owner.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;

        // And sees the lock, with the attacker's network and until when.
        let members = owner.get("/settings/members").await;
        assert_eq!(members.status, 200);
        assert!(members.body.contains("data-test=\"login-locks\""));
        assert!(members.body.contains("198.51.100.0/24"), "{}", members.body);
        assert!(
            !members.body.contains("198.51.100.7"),
            "addresses are masked"
        );
        assert!(members.body.contains("locked for this account"));
        let unlocked = owner
            .submit("/settings/members", "/settings/members/unlock", &[])
            .await;
        assert_eq!(unlocked.status, 303);
        let members = owner.get("/settings/members").await;
        assert!(members.body.contains("data-test=\"no-locks\""));
        t.stop().await;
    }
);

/// Where a browser on `base` goes with this `Location`: whether it stays
/// on the same origin.
fn stays_home(base: &str, location: &str) -> bool {
    let base = url::Url::parse(base).expect("base");
    base.join(location)
        .is_ok_and(|u| u.origin() == base.origin())
}

both!(
    the_login_redirect_never_leaves_the_site,
    |backend| async move {
        let t = TestServer::start(backend).await;
        let b = Browser::new(&t.base);
        b.setup_and_login().await;
        b.forget_cookies();
        let home = format!("{}/", t.base);
        // Each value as it arrives in the form, after the query's decoding.
        let tricks = [
            "/\t/evil.example",
            "/\t\t/evil.example/x",
            "/\n/evil.example",
            "/\r\n/evil.example",
            "/\\evil.example",
            "/\\/evil.example",
            "\\\\evil.example",
            "//evil.example",
            "///evil.example",
            "/%5Cevil.example",
            "/%2F/evil.example",
            "%2F%2Fevil.example",
            "https://evil.example/",
            "/ /evil.example",
            "/\u{3000}/evil.example",
            "/..//evil.example",
            "/.//evil.example",
        ];
        for trick in tricks {
            // The login page keeps a safe `next` only.
            let q: String = url::form_urlencoded::byte_serialize(trick.as_bytes()).collect();
            let page = b.get(&format!("/login?next={q}")).await;
            assert_eq!(page.status, 200);
            let kept =
                browser::attr_after(&page.body, "name=\"next\" value=\"").unwrap_or_default();
            assert!(
                kept.is_empty() || stays_home(&home, &kept),
                "{trick:?} kept as {kept:?}"
            );
            // And the login goes nowhere else.
            let r = b
                .submit(
                    "/login",
                    "/login",
                    &[
                        ("email", ADMIN_EMAIL),
                        ("password", ADMIN_PASSWORD),
                        ("next", trick),
                    ],
                )
                .await;
            assert_eq!(r.status, 303, "{trick:?}: {}", r.body);
            let to = r.location().expect("location");
            assert!(stays_home(&home, to), "{trick:?} sent to {to:?}");
            assert!(!to.chars().any(char::is_control), "{to:?}");
            b.forget_cookies();
        }
        // A plain local path is kept.
        let r = b
            .submit(
                "/login",
                "/login",
                &[
                    ("email", ADMIN_EMAIL),
                    ("password", ADMIN_PASSWORD),
                    ("next", "/properties?x=1"),
                ],
            )
            .await;
        assert_eq!(r.location(), Some("/properties?x=1"));
        t.stop().await;
    }
);

both!(
    setup_beyond_loopback_asks_for_the_printed_code,
    |backend| async move {
        let db = TestDb::new(backend).await;
        let mut cfg = support::config(&db);
        cfg.listen = "0.0.0.0:0".parse().expect("addr");
        let t = TestServer::start_with(db, cfg).await;
        let code = t
            .server
            .setup_code
            .clone()
            .expect("a fresh server has a setup code");
        let b = Browser::new(&t.base);
        let page = b.get("/setup").await;
        assert_eq!(page.status, 200);
        assert!(page.body.contains("name=\"setup_code\""));
        let fields = |code: &'static str| {
            [
                ("setup_code", code),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("password_confirm", ADMIN_PASSWORD),
            ]
        };
        for wrong in ["", "not-the-code"] {
            let r = b.submit("/setup", "/setup", &fields(wrong)).await;
            assert_eq!(r.status, 422, "{wrong:?}");
            assert!(r.has_error_for("setup_code"));
        }
        assert_eq!(b.get("/").await.location(), Some("/setup"), "still fresh");
        let code: &'static str = Box::leak(code.into_boxed_str());
        let r = b.submit("/setup", "/setup", &fields(code)).await;
        assert_eq!(r.status, 303, "{}", r.body);
        b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        t.stop().await;
    }
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_on_loopback_asks_for_the_code_only_through_a_proxy() {
    let t = TestServer::start(Backend::Sqlite).await;
    let direct = Browser::new(&t.base);
    assert!(!direct.get("/setup").await.body.contains("setup_code"));
    let mut proxied = Browser::new(&t.base);
    proxied.forwarded_for = Some("198.51.100.7".into());
    assert!(
        proxied
            .get("/setup")
            .await
            .body
            .contains("name=\"setup_code\"")
    );
    let r = proxied
        .submit(
            "/setup",
            "/setup",
            &[
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("password_confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 422);
    assert!(r.has_error_for("setup_code"));
    // The same machine, directly, needs none (local first run).
    direct.setup_and_login().await;
    t.stop().await;
}

// ---------------------------------------------------------------------------
// Memory under a flood, on a server run as a child process
// ---------------------------------------------------------------------------

/// (resident, peak resident) memory of a child server in KiB, from /proc.
fn memory_kib(child: &ChildServer) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.pid())).expect("status");
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_keeps_memory_flat() {
    const LOGINS: usize = 1000;
    // Its own process: the memory measured is the server's alone.
    let db = TestDb::new(Backend::Sqlite).await;
    let mut child = Serve::new(&db.url, &db.dir)
        .env("CLICKTRAIL_TRUSTED_PROXIES", r#"["127.0.0.1/32"]"#)
        .start()
        .await;
    let b = Browser::new(&child.base);
    b.setup_and_login().await;
    // Warm up: a few logins, so the pool's buffers exist before the
    // baseline is read.
    for _ in 0..3 {
        b.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    }
    b.forget_cookies();
    let csrf = b.get("/login").await.csrf();
    let (base_rss, _) = memory_kib(&child);

    // Every login from its own address and for its own email, so none is
    // throttled: only the password pool stands between them and Argon2.
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(120))
        .build()
        .expect("client");
    let started = Instant::now();
    let logins = (0..LOGINS).map(|i| {
        let req = http
            .post(format!("{}/login", child.base))
            .header("cookie", format!("ct_csrf={csrf}"))
            .header(
                "x-forwarded-for",
                format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256),
            )
            .form(&[
                ("_csrf", csrf.as_str()),
                ("email", &format!("user{i}@example.com")),
                ("password", "wrong password!"),
            ]);
        async move { req.send().await.map(|r| r.status().as_u16()) }
    });
    let answers = futures::future::join_all(logins).await;
    let elapsed = started.elapsed();
    let count = |s: u16| {
        answers
            .iter()
            .filter(|a| matches!(a, Ok(x) if *x == s))
            .count()
    };
    let (checked, busy) = (count(401), count(429));
    let failed = answers.iter().filter(|a| a.is_err()).count();
    let (rss, peak) = memory_kib(&child);
    eprintln!(
        "{LOGINS} concurrent logins in {elapsed:?}: {checked} checked (401), {busy} refused busy (429), \
         {failed} transport errors; RSS {base_rss} KiB before, {rss} KiB after, peak {peak} KiB"
    );
    assert_eq!(checked + busy, LOGINS, "every login answered 401 or 429");
    assert!(busy > 0, "the pool refused some");
    // Two workers' Argon2 buffers (19 MiB each) are in the baseline; the
    // flood may add connection and request buffers, not Argon2 memory.
    let grown_mib = peak.saturating_sub(base_rss) / 1024;
    assert!(
        grown_mib < 64,
        "peak memory grew by {grown_mib} MiB under {LOGINS} concurrent logins"
    );
    child.kill().await;
}
