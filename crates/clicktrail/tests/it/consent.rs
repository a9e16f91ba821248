//! Consent enforced on the server, on SQLite and PostgreSQL: on a
//! `consent_required` property the collector and `/go` store an event
//! without consent under an anonymous visitor, with no address, user agent
//! string, hashes or pixel cookies, and `/go` sets no cookie; consented
//! events are stored as before. Conversions carry their click's consent to
//! Google Ads (`consent`), GA4 (`consent`) and Meta (`data_processing_options`
//! with `limited_data_use`), checked on the testkit's fake platforms.

use std::time::Duration;

use clicktrail_store::{Db, args};
use clicktrail_testkit::both;
use clicktrail_testkit::ga4::FakeGa4;
use clicktrail_testkit::google_ads::{FakeGoogleAds, GoogleAccount};
use clicktrail_testkit::meta::FakeMeta;
use serde_json::{Value, json};

use crate::support::delivery::{self, *};
use crate::support::{
    Backend, CHROME_UA, MASTER_KEY, TestServer, open, outbound_click, pageview, wait_for,
    wait_for_some,
};

const WAIT: Duration = Duration::from_secs(30);
/// SHA-256 of an email, as the tag's `identify` sends it.
const EM: &str = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f";

/// Turns `consent_required` on for `pid`.
async fn require_consent(s: &TestServer, pid: &str) {
    let (st, v) = s
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/properties/{pid}"),
            MASTER_KEY,
            Some(json!({"settings": {"consent_required": true}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["settings"]["consent_required"], true);
}

/// A landing PageView of visitor `n` with a hashed email, the pixel
/// cookies and `consent` (none when null), and a click on an Income Access
/// link; returns the click id.
async fn visit(s: &TestServer, pid: &str, n: u32, consent: Value) -> String {
    let pv = format!("0190f1a2-7d3c-7abc-8def-{n:012}");
    let cid = format!("AZDxon08eryN7wEjRWeJq{n:07}");
    let visitor = format!("v_visitor_{n:04}");
    let landing = format!("https://site.example/bonus?utm_source=google&gclid=Cj0_gclid_{n}");
    let link = format!("https://wlgala.adsrv.eacdn.com/C.ashx?btag=a_1b_2c_&c={cid}");
    let mut page = pageview(&pv, &visitor, &landing);
    page["user"] = json!({"em": EM});
    page["session_hint"] = json!("hint12345.abc");
    page["cookies"] = json!({"fbp": "fb.1.1700000000000.42", "ttp": "ttp_cookie_1"});
    let mut click = outbound_click(
        &format!("0190f1a2-7d3c-7abc-9def-{n:012}"),
        &visitor,
        &landing,
        &cid,
        &link,
        &pv,
    );
    if !consent.is_null() {
        page["consent"] = consent.clone();
        click["consent"] = consent;
    }
    let (st, v) = s
        .collect(
            &json!({"property_id": pid, "events": [page, click]}),
            &[("user-agent", CHROME_UA)],
        )
        .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["accepted"], 2, "{v}");
    cid
}

/// What a session keeps: (visitor_id, ip, user_agent, em_hash, fbp, ttp,
/// session_hint, consent, gclid, browser).
type SessionRow = (
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The session of a click, as stored.
async fn session_of_click(db: &Db, pid: &str, cid: &str) -> (SessionRow, String, Option<String>) {
    let (visitor, consent, session_id): (String, Option<String>, i64) = db
        .fetch_one(
            "SELECT visitor_id, consent, session_id FROM clicks WHERE property_id = $1 AND click_id = $2",
            args![pid, cid],
        )
        .await
        .expect("the click");
    let s: SessionRow = db
        .fetch_one(
            "SELECT visitor_id, ip, user_agent, em_hash, fbp, ttp, session_hint, consent, gclid, browser \
             FROM sessions WHERE id = $1",
            args![session_id],
        )
        .await
        .expect("the session");
    (s, visitor, consent)
}

async fn count(db: &Db, sql: &str, pid: &str, visitor: &str) -> i64 {
    let (n,): (i64,) = db.fetch_one(sql, args![pid, visitor]).await.expect("count");
    n
}

both!(
    collector_stores_no_identifiers_without_consent,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["site.example"]).await;
        let open_pid = s.property(&["site.example"]).await;
        require_consent(&s, &pid).await;
        let db = open(&s.db).await;

        // Without a consent field, and with an explicit denial: counted, under
        // an anonymous visitor, with nothing that identifies the browser.
        let unsaid = visit(&s, &pid, 1, Value::Null).await;
        let denied = visit(&s, &pid, 2, json!({"ad_user_data": "denied"})).await;
        for (cid, n) in [(&unsaid, 1), (&denied, 2)] {
            let (sess, click_visitor, click_consent) = session_of_click(&db, &pid, cid).await;
            let (visitor, ip, ua, em, fbp, ttp, hint, consent, gclid, browser) = sess;
            assert!(visitor.starts_with("anon."), "{visitor}");
            assert_eq!(
                click_visitor, visitor,
                "the click shares its page view's session"
            );
            assert_eq!(
                (ip, ua, em, fbp, ttp, hint),
                (None, None, None, None, None, None)
            );
            assert_eq!(consent.as_deref(), Some("dd"));
            assert_eq!(click_consent.as_deref(), Some("dd"));
            // What the visit counts under stays: its landing and browser.
            assert_eq!(gclid, Some(format!("Cj0_gclid_{n}")));
            assert_eq!(browser.as_deref(), Some("Chrome"));
            let sent = format!("v_visitor_{n:04}");
            for table in ["sessions", "events", "clicks"] {
                let sql = format!(
                    "SELECT COUNT(*) FROM {table} WHERE property_id = $1 AND visitor_id = $2"
                );
                assert_eq!(
                    count(&db, &sql, &pid, &sent).await,
                    0,
                    "{table} keeps no visitor id"
                );
            }
            let (pageviews,): (i64,) = db
            .fetch_one(
                "SELECT COUNT(*) FROM events WHERE property_id = $1 AND visitor_id = $2 AND name = 'PageView'",
                args![pid.as_str(), visitor.as_str()],
            )
            .await
            .unwrap();
            assert_eq!(pageviews, 1, "the page view is counted");
        }

        // Granted (the tag's `true`, or per purpose): stored as before.
        let granted = visit(&s, &pid, 3, json!(true)).await;
        let partly = visit(
            &s,
            &pid,
            4,
            json!({"ad_user_data": "granted", "ad_personalization": "denied"}),
        )
        .await;
        for (cid, n, code) in [(&granted, 3, "gg"), (&partly, 4, "gd")] {
            let (sess, _, click_consent) = session_of_click(&db, &pid, cid).await;
            let (visitor, ip, ua, em, fbp, _, hint, consent, _, _) = sess;
            assert_eq!(visitor, format!("v_visitor_{n:04}"));
            assert_eq!(ip.as_deref(), Some("127.0.0.0"), "the truncated address");
            assert_eq!(ua.as_deref(), Some(CHROME_UA));
            assert_eq!(em.as_deref(), Some(EM));
            assert!(fbp.is_some() && hint.is_some());
            assert_eq!(consent.as_deref(), Some(code));
            assert_eq!(click_consent.as_deref(), Some(code));
        }

        // A property that does not require consent: as before, nothing
        // recorded about consent when nothing was said; an explicit denial is
        // still honoured.
        let before = visit(&s, &open_pid, 5, Value::Null).await;
        let (sess, _, click_consent) = session_of_click(&db, &open_pid, &before).await;
        assert_eq!(sess.0, "v_visitor_0005");
        assert_eq!(sess.1.as_deref(), Some("127.0.0.0"));
        assert_eq!((sess.7, click_consent), (None, None));
        let refused = visit(&s, &open_pid, 6, json!(false)).await;
        let (sess, _, _) = session_of_click(&db, &open_pid, &refused).await;
        assert!(sess.0.starts_with("anon."), "{}", sess.0);
        assert_eq!((sess.1, sess.7.as_deref()), (None, Some("dd")));

        // A malformed consent is refused like any bad field.
        let mut e = pageview(
            "0190f1a2-7d3c-7abc-8def-000000000099",
            "v_visitor_0099",
            "https://site.example/",
        );
        e["consent"] = json!({"ad_user_data": "maybe"});
        let (st, v) = s
            .collect(&json!({"property_id": pid, "events": [e]}), &[])
            .await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (400, Some("invalid_event")),
            "{v}"
        );
        s.stop().await;
    }
);

/// Follows `/go/{pid}/{slug}` with `query` and `cookie`; returns the
/// Set-Cookie header and the click id put in the offer's URL.
async fn go(
    s: &TestServer,
    pid: &str,
    query: &str,
    cookie: Option<&str>,
) -> (Option<String>, String) {
    let mut req = s
        .http
        .get(s.url(&format!("/go/{pid}/offer?gclid=Cj0_go{query}")))
        .header("user-agent", CHROME_UA);
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 302);
    let set_cookie = r
        .headers()
        .get("set-cookie")
        .map(|v| v.to_str().unwrap().to_owned());
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let cid = loc.split("sub1=").nth(1).unwrap().to_owned();
    (set_cookie, cid)
}

both!(go_sets_no_cookie_without_consent, |b: Backend| async move {
    let s = TestServer::start(b).await;
    let pid = s.property(&["site.example"]).await;
    require_consent(&s, &pid).await;
    let (iid, _) = s.install_custom(&pid).await;
    let (st, l) = s
        .post(
            &format!("/api/v1/properties/{pid}/links"),
            MASTER_KEY,
            json!({"slug": "offer", "destination_url": "https://offer.example/land?sub1=", "integration": iid}),
        )
        .await;
    assert_eq!(st, 201, "{l}");
    let db = open(&s.db).await;

    // No consent said, even with an old visitor cookie and an explicit
    // denial in the cookie: no cookie set, the old id not used.
    for (query, cookie) in [
        ("", None),
        ("", Some("_ctv=v_old_cookie_1")),
        ("&ct_consent=denied", Some("_ctv=v_old_cookie_1; _ctc=1")),
        ("", Some("_ctc=0")),
    ] {
        let (set_cookie, cid) = go(&s, &pid, query, cookie).await;
        assert_eq!(set_cookie, None, "{query} {cookie:?}");
        let clicks = wait_for_some(WAIT, "the /go click", || {
            let db = db.clone();
            let pid = pid.clone();
            let cid = cid.clone();
            async move {
                let rows: Vec<(String,)> = db
                    .fetch_all(
                        "SELECT visitor_id FROM clicks WHERE property_id = $1 AND click_id = $2",
                        args![pid, cid],
                    )
                    .await
                    .ok()?;
                (!rows.is_empty()).then_some(rows)
            }
        })
        .await;
        assert!(clicks[0].0.starts_with("anon."), "{clicks:?}");
        let (sess, _, consent) = session_of_click(&db, &pid, &cid).await;
        assert_eq!((sess.1, sess.2), (None, None), "no address, no user agent");
        assert_eq!(
            sess.8.as_deref(),
            Some("Cj0_go"),
            "the landing's click id stays"
        );
        assert_eq!(consent.as_deref(), Some("dd"));
    }
    let sql = "SELECT COUNT(*) FROM sessions WHERE property_id = $1 AND visitor_id = $2";
    assert_eq!(count(&db, sql, &pid, "v_old_cookie_1").await, 0);

    // Granted, by the query or by the tag's cookie: as before.
    for (query, cookie) in [("&ct_consent=granted", None), ("", Some("_ctc=1"))] {
        let (set_cookie, cid) = go(&s, &pid, query, cookie).await;
        let set_cookie = set_cookie.expect("a visitor cookie");
        assert!(set_cookie.starts_with("_ctv="), "{set_cookie}");
        let visitor = set_cookie
            .trim_start_matches("_ctv=")
            .split(';')
            .next()
            .unwrap()
            .to_owned();
        let (sess, click_visitor, consent) = session_of_click(&db, &pid, &cid).await;
        assert_eq!(click_visitor, visitor);
        assert_eq!(sess.1.as_deref(), Some("127.0.0.0"));
        assert_eq!(sess.2.as_deref(), Some(CHROME_UA));
        assert_eq!(consent.as_deref(), Some("gg"));
    }
    s.stop().await;
});

both!(
    conversions_carry_consent_to_the_platforms,
    |b: Backend| async move {
        let s = delivery::server(b).await;
        let api = Api::new(&s.base, MASTER_KEY);
        let google = FakeGoogleAds::start(GoogleAccount::default())
            .await
            .unwrap();
        let ga4 = FakeGa4::start(GA4_ID, GA4_SECRET).await.unwrap();
        let meta = FakeMeta::start(META_PIXEL, META_TOKEN).await.unwrap();
        let pid = s.property(&["site.example"]).await;
        require_consent(&s, &pid).await;
        api.destination(&pid, google_destination(&google)).await;
        api.destination(&pid, ga4_destination(&ga4.base_url()))
            .await;
        let mut m = meta_destination(&meta.base_url());
        m["settings"]["limited_data_use"] = json!(true);
        api.destination(&pid, m).await;
        let (_, url) = s.install_custom(&pid).await;

        let granted = visit(&s, &pid, 1, json!(true)).await;
        let partly = visit(
            &s,
            &pid,
            2,
            json!({"ad_user_data": "granted", "ad_personalization": "denied"}),
        )
        .await;
        let unsaid = visit(&s, &pid, 3, Value::Null).await;
        let mut conversions = Vec::new();
        for (cid, tx) in [(&granted, "T-1"), (&partly, "T-2"), (&unsaid, "T-3")] {
            let r = s
                .http
                .get(format!(
                    "{url}?sub1={cid}&payout=10&currency=eur&txid={tx}&event=sale"
                ))
                .send()
                .await
                .unwrap();
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], "validated", "{v}");
            conversions.push(v["conversion_id"].as_str().unwrap().to_owned());
        }
        let db = open(&s.db).await;
        // Google takes all three; GA4 and Meta the two with a visitor id
        // (the anonymous visit has nothing Meta could match).
        wait_for(WAIT, "the deliveries settled", || async {
            let c = status_counts(&db).await;
            c.get("delivered").copied().unwrap_or(0) == 7
                && c.get("skipped").copied().unwrap_or(0) == 2
        })
        .await;

        // Google Ads: the consent of each click; without consent the click id
        // goes with DENIED and no user data.
        let uploads = google.conversions();
        let upload = |id: &str| {
            uploads
                .iter()
                .find(|u| u["orderId"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("google upload {id}: {uploads:?}"))
        };
        let u = upload(&conversions[0]);
        assert_eq!(
            u["consent"],
            json!({"adUserData": "GRANTED", "adPersonalization": "GRANTED"})
        );
        assert_eq!(u["userIdentifiers"][0]["hashedEmail"], EM);
        let u = upload(&conversions[1]);
        assert_eq!(
            u["consent"],
            json!({"adUserData": "GRANTED", "adPersonalization": "DENIED"})
        );
        let u = upload(&conversions[2]);
        assert_eq!(
            u["consent"],
            json!({"adUserData": "DENIED", "adPersonalization": "DENIED"})
        );
        assert_eq!(u["gclid"], "Cj0_gclid_3");
        assert!(
            u.get("userIdentifiers").is_none() && u.get("userIpAddress").is_none(),
            "{u}"
        );

        // GA4: the consent with the visitor's client id; the anonymous visit
        // has none to send.
        let bodies = ga4.bodies();
        let body = |client: &str| {
            bodies
                .iter()
                .find(|b| b["client_id"] == client)
                .cloned()
                .unwrap_or_else(|| panic!("ga4 body of {client}: {bodies:?}"))
        };
        assert_eq!(
            body("v_visitor_0001")["consent"],
            json!({"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"})
        );
        assert_eq!(
            body("v_visitor_0002")["consent"],
            json!({"ad_user_data": "GRANTED", "ad_personalization": "DENIED"})
        );
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        let ga = delivery_of(&db, &conversions[2])
            .await
            .into_iter()
            .find(|d| d.destination_kind == "ga4")
            .unwrap();
        assert_eq!(
            (ga.status.as_str(), ga.reason.as_deref()),
            ("skipped", Some("no_client_id"))
        );

        // Meta with Limited Data Use: LDU for a denied purpose, [] when all
        // were granted; the anonymous visit has nothing for Meta to match:
        // skipped, not sent.
        let events = meta.events();
        let event = |id: &str| {
            events
                .iter()
                .find(|e| e["custom_data"]["order_id"] == id)
                .cloned()
                .unwrap_or_else(|| panic!("meta event of {id}: {events:?}"))
        };
        let e = event(&conversions[0]);
        assert_eq!(e["data_processing_options"], json!([]));
        assert!(e.get("data_processing_options_country").is_none());
        let e = event(&conversions[1]);
        assert_eq!(e["data_processing_options"], json!(["LDU"]));
        assert_eq!(
            (
                &e["data_processing_options_country"],
                &e["data_processing_options_state"]
            ),
            (&json!(0), &json!(0))
        );
        assert_eq!(events.len(), 2, "{events:?}");
        let m = delivery_of(&db, &conversions[2])
            .await
            .into_iter()
            .find(|d| d.destination_kind == "meta_capi")
            .unwrap();
        assert_eq!(
            (m.status.as_str(), m.reason.as_deref()),
            ("skipped", Some("no_user_data"))
        );
        s.stop().await;
    }
);
