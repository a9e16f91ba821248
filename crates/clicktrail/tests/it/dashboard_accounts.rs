//! Dashboard accounts against the real server: first-run setup, login,
//! logout, session cookies, CSRF, login throttling, members, API tokens,
//! and workspace isolation (another workspace's pages are 404).

use crate::support::browser::{self, ADMIN_EMAIL, ADMIN_PASSWORD, Browser};
use crate::support::{Backend, MASTER_KEY, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_login_logout() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);

    // A fresh database greets the newcomer with the setup form.
    let home = b.get("/").await;
    assert_eq!(home.status, 303);
    assert_eq!(home.location(), Some("/setup"));
    let login = b.get("/login").await;
    assert_eq!(login.location(), Some("/setup"), "no login before setup");
    let setup = b.get("/setup").await;
    assert_eq!(setup.status, 200);
    assert!(setup.body.contains("Create the admin account"));
    let csrf_cookie = setup
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("ct_csrf="))
        .expect("csrf cookie");
    assert!(
        csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("SameSite=Strict"),
        "{csrf_cookie}"
    );

    // Invalid input: every problem is shown next to its field.
    let bad = b
        .post(
            "/setup",
            &[
                ("_csrf", &setup.csrf()),
                ("email", "not-an-email"),
                ("password", "short"),
                ("password_confirm", "different"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("email"));
    assert!(bad.has_error_for("password"));
    assert!(bad.has_error_for("password_confirm"));
    assert!(
        bad.body.contains("value=\"not-an-email\""),
        "typed email kept"
    );

    let ok = b
        .post(
            "/setup",
            &[
                ("_csrf", &setup.csrf()),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("password_confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    assert_eq!(ok.location(), Some("/login?done=setup"));
    // Setup is closed once done.
    assert_eq!(b.get("/setup").await.location(), Some("/login"));
    let again = b
        .post(
            "/setup",
            &[
                ("_csrf", &setup.csrf()),
                ("email", "evil@example.com"),
                ("password", ADMIN_PASSWORD),
                ("password_confirm", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(again.location(), Some("/login"));

    // Not logged in: pages send to the login, with the way back.
    let props = b.get("/properties").await;
    assert_eq!(props.status, 303);
    assert_eq!(props.location(), Some("/login?next=%2Fproperties"));

    // Wrong password.
    let wrong = b
        .submit(
            "/login",
            "/login",
            &[("email", ADMIN_EMAIL), ("password", "wrong password!")],
        )
        .await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.has_error_for("_form"));
    assert!(b.cookie("ct_session").is_none());

    // Right password (email in another case): session cookie, HttpOnly, Lax.
    let page = b.get("/login?next=/properties").await;
    let good = b
        .post(
            "/login",
            &[
                ("_csrf", &page.csrf()),
                ("email", "Admin@Example.com"),
                ("password", ADMIN_PASSWORD),
                ("next", "/properties"),
            ],
        )
        .await;
    assert_eq!(good.status, 303, "{}", good.body);
    assert_eq!(good.location(), Some("/properties"));
    let sc = good
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("ct_session="))
        .expect("session cookie");
    assert!(sc.contains("HttpOnly"), "{sc}");
    assert!(sc.contains("SameSite=Lax"), "{sc}");
    assert!(
        !sc.contains("Secure"),
        "plain http public URL: no Secure flag: {sc}"
    );
    let token = b.cookie("ct_session").expect("token");
    // Only a hash of the token is stored.
    let stored: Vec<(String,)> = t
        .server
        .services
        .db
        .fetch_all(
            "SELECT token_hash FROM web_sessions",
            clicktrail_store::args![],
        )
        .await
        .expect("sessions");
    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0].0, token);
    assert_eq!(stored[0].0, clicktrail_store::auth::hash_token(&token));

    let props = b.get("/properties").await;
    assert_eq!(props.status, 200);
    assert!(props.body.contains(ADMIN_EMAIL));
    assert_eq!(b.get("/").await.location(), Some("/properties"));
    // Security headers on pages.
    let csp = props.headers.get("content-security-policy").expect("csp");
    assert!(csp.to_str().unwrap().contains("script-src 'self'"));
    assert_eq!(props.headers.get("x-frame-options").unwrap(), "DENY");

    // An open redirect through `next` is refused.
    b.forget_cookies();
    let page = b.get("/login").await;
    let evil = b
        .post(
            "/login",
            &[
                ("_csrf", &page.csrf()),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("next", "//evil.example/x"),
            ],
        )
        .await;
    assert_eq!(evil.location(), Some("/"));

    // Logout needs the CSRF token, then ends the session for good.
    let no_csrf = b.post("/logout", &[]).await;
    assert_eq!(no_csrf.status, 403);
    assert_eq!(b.get("/properties").await.status, 200, "still logged in");
    let old_token = b.cookie("ct_session").expect("token");
    let out = b.submit("/properties", "/logout", &[]).await;
    assert_eq!(out.status, 303);
    assert_eq!(out.location(), Some("/login?done=logout"));
    assert!(b.cookie("ct_session").is_none(), "cookie cleared");
    assert_eq!(b.get("/properties").await.status, 303);
    // Replaying the old cookie does not work either.
    b.set_cookie("ct_session", &old_token);
    assert_eq!(b.get("/properties").await.status, 303);

    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_is_required_on_every_form() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "example.com", "EUR").await;

    let posts: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/properties/new".into(),
            vec![("name", "X"), ("domains", "x.com"), ("currency", "EUR")],
        ),
        (
            format!("/p/{pid}/settings"),
            vec![
                ("name", "Renamed"),
                ("domains", "example.com"),
                ("currency", "EUR"),
            ],
        ),
        ("/settings/tokens".into(), vec![("name", "t")]),
        (
            "/settings/members".into(),
            vec![
                ("email", "m@example.com"),
                ("password", "0123456789ab"),
                ("role", "member"),
            ],
        ),
        (
            format!("/p/{pid}/spend"),
            vec![(
                "csv",
                "date,platform,campaign,spend,currency\n2026-01-01,meta,c,1,EUR\n",
            )],
        ),
        ("/logout".into(), vec![]),
    ];
    for (path, fields) in &posts {
        let missing = b.post(path, fields).await;
        assert_eq!(missing.status, 403, "{path} without a token");
        assert!(missing.body.contains("Form expired"));
        let mut wrong = fields.clone();
        wrong.push(("_csrf", "not-the-token-of-this-session-000"));
        assert_eq!(
            b.post(path, &wrong).await.status,
            403,
            "{path} with a wrong token"
        );
    }
    // Nothing happened.
    let props = b.get("/properties").await;
    assert!(!props.body.contains(">X<"));
    let settings = b.get(&format!("/p/{pid}/settings")).await;
    assert!(settings.body.contains("value=\"Site\""));
    let tokens = clicktrail_store::auth::list_tokens(&t.server.services.db, 1)
        .await
        .expect("tokens");
    assert!(tokens.is_empty());

    // A token of another session is refused too.
    let other = Browser::new(&t.base);
    other.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let theirs = other.get("/properties").await.csrf();
    let mine = b.get("/properties").await.csrf();
    assert_ne!(theirs, mine);
    let cross = b
        .post("/settings/tokens", &[("_csrf", &theirs), ("name", "t")])
        .await;
    assert_eq!(cross.status, 403);

    // The login form: without the double-submit cookie, refused.
    let anon = Browser::new(&t.base);
    let page = anon.get("/login").await;
    let token = page.csrf();
    anon.forget_cookies();
    let r = anon
        .post(
            "/login",
            &[
                ("_csrf", &token),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 403);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_are_throttled_per_account_and_per_client() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    b.forget_cookies();

    // Five failures lock this address out of the account, even for the
    // right password (other addresses: dashboard_login_limits.rs).
    for i in 0..5 {
        let r = b
            .submit(
                "/login",
                "/login",
                &[("email", ADMIN_EMAIL), ("password", "bad password!")],
            )
            .await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let locked = b
        .submit(
            "/login",
            "/login",
            &[("email", ADMIN_EMAIL), ("password", ADMIN_PASSWORD)],
        )
        .await;
    assert_eq!(locked.status, 429);
    assert!(locked.body.contains("Too many failed logins"));
    assert!(locked.headers.get("retry-after").is_some());
    assert!(b.cookie("ct_session").is_none());

    // The same address trying many accounts is stopped too (20 failures).
    for i in 0..15 {
        let email = format!("nobody{i}@example.com");
        let r = b
            .submit(
                "/login",
                "/login",
                &[("email", &email), ("password", "bad password!")],
            )
            .await;
        assert_eq!(r.status, 401, "attempt {i}");
    }
    let r = b
        .submit(
            "/login",
            "/login",
            &[
                ("email", "fresh@example.com"),
                ("password", "bad password!"),
            ],
        )
        .await;
    assert_eq!(r.status, 429, "address blocked");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_and_api_tokens() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;

    // Invalid member input: errors next to the fields.
    let bad = b
        .submit(
            "/settings/members",
            "/settings/members",
            &[("email", "nope"), ("password", "123"), ("role", "boss")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("email"));
    assert!(bad.has_error_for("password"));
    assert!(bad.has_error_for("role"));

    let ok = b
        .submit(
            "/settings/members",
            "/settings/members",
            &[
                ("email", "member@example.com"),
                ("password", "member password 1"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303, "{}", ok.body);
    let dup = b
        .submit(
            "/settings/members",
            "/settings/members",
            &[
                ("email", "MEMBER@example.com"),
                ("password", "member password 1"),
                ("role", "member"),
            ],
        )
        .await;
    assert_eq!(dup.status, 422);
    assert!(dup.has_error_for("email"));

    // The member logs in; admin pages are not theirs.
    let m = Browser::new(&t.base);
    m.login("member@example.com", "member password 1").await;
    assert_eq!(m.get("/properties").await.status, 200);
    assert_eq!(m.get("/settings/members").await.status, 403);
    assert_eq!(m.get("/settings/tokens").await.status, 403);

    // Tokens: empty name refused; created token shown once and works.
    let bad = b
        .submit("/settings/tokens", "/settings/tokens", &[("name", "")])
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("name"));
    let created = b
        .submit(
            "/settings/tokens",
            "/settings/tokens",
            &[("name", "reporting script")],
        )
        .await;
    assert_eq!(created.status, 201);
    let token = browser::attr_after(&created.body, "<code id=\"new-token\">")
        .map(|s| s.split('<').next().unwrap_or("").to_owned())
        .expect("token shown");
    assert!(token.starts_with("ct_"), "{token}");
    let (status, _) = t.get("/api/v1/properties", &token).await;
    assert_eq!(status, 200);
    // Listed without the token itself.
    let list = b.get("/settings/tokens").await;
    assert!(list.body.contains("reporting script"));
    assert!(!list.body.contains(&token));
    // Revoke: the API refuses it at once.
    let id: (i64,) = t
        .server
        .services
        .db
        .fetch_one(
            "SELECT id FROM api_tokens WHERE name = 'reporting script'",
            clicktrail_store::args![],
        )
        .await
        .expect("id");
    let r = b
        .submit(
            "/settings/tokens",
            &format!("/settings/tokens/{}/revoke", id.0),
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    let (status, _) = t.get("/api/v1/properties", &token).await;
    assert_eq!(status, 401);

    // Removing the member ends their session.
    let members = b.get("/settings/members").await;
    let uid = browser::attr_after(&members.body, "action=\"/settings/members/")
        .and_then(|s| s.split('/').next().map(str::to_owned))
        .expect("member id");
    let r = b
        .submit(
            "/settings/members",
            &format!("/settings/members/{uid}/remove"),
            &[],
        )
        .await;
    assert_eq!(r.status, 303);
    assert_eq!(m.get("/properties").await.status, 303);

    // Password change: wrong current refused; then the new one works.
    let bad = b
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", "nope"),
                ("password", "a new password 2"),
                ("password_confirm", "a new password 2"),
            ],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("current"));
    let ok = b
        .submit(
            "/account/password",
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("password", "a new password 2"),
                ("password_confirm", "a new password 2"),
            ],
        )
        .await;
    assert_eq!(ok.status, 303);
    assert_eq!(
        b.get("/properties").await.status,
        200,
        "this browser stays logged in"
    );
    let fresh = Browser::new(&t.base);
    fresh.login(ADMIN_EMAIL, "a new password 2").await;
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workspaces_pages_are_404() {
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let mine = b.create_property("Mine", "mine.example", "EUR").await;

    // A property of another workspace, made with the master key.
    let (status, body) = t
        .api(
            reqwest::Method::POST,
            "/api/v1/properties",
            MASTER_KEY,
            Some(serde_json::json!({"name": "Theirs", "domains": ["theirs.example"], "workspace": "other"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let theirs = body["id"].as_str().expect("id").to_owned();

    for path in [
        "",
        "/reports",
        "/reports/export.csv?table=channel",
        "/settings",
        "/spend",
        "/integrations",
        "/catalog",
        "/catalog/galapartners",
        "/destinations",
        "/conversions",
        "/live",
        "/live.json",
        "/link-checker",
    ] {
        let r = b.get(&format!("/p/{theirs}{path}")).await;
        assert_eq!(r.status, 404, "GET /p/<theirs>{path}");
        let r = b.get(&format!("/p/{mine}{path}")).await;
        assert_ne!(r.status, 404, "GET /p/<mine>{path}");
    }
    let r = b
        .submit(
            &format!("/p/{mine}/settings"),
            &format!("/p/{theirs}/settings"),
            &[
                ("name", "Hijacked"),
                ("domains", "theirs.example"),
                ("currency", "EUR"),
            ],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = b.get("/p/not-a-property-id").await;
    assert_eq!(r.status, 404);
    let list = b.get("/properties").await;
    assert!(list.body.contains("Mine"));
    assert!(!list.body.contains("Theirs"));
    t.stop().await;
}
