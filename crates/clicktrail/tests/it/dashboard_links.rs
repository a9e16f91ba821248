//! The dashboard's tracked links against the real server, on SQLite and
//! PostgreSQL: create (errors beside the fields, generated slugs), the
//! link page with its tracked URL, clicks through `/go` and a postback
//! attributed to one of them counted in the list, pause (still redirects,
//! records nothing) and resume, destination editing, the API's
//! `PATCH /api/v1/links/{id}`, and another workspace's link is 404.

use crate::support::browser::{Browser, Page};
use crate::support::{Backend, CHROME_UA, MASTER_KEY, TestServer};
use clicktrail_testkit::both;
use serde_json::{Value, json};

/// The list's row of the link `slug`.
fn row<'a>(list: &'a Page, slug: &str) -> &'a str {
    let at = list
        .body
        .find(&format!("data-link=\"{slug}\""))
        .unwrap_or_else(|| panic!("no row for {slug}: {}", list.body));
    let rest = &list.body[at..];
    &rest[..rest.find("</tr>").expect("row end")]
}

/// The text of a row's cell `col` (up to its first tag).
fn cell(row: &str, col: &str) -> String {
    text_after(row, &format!("data-col=\"{col}\">"))
}

/// The text after `marker` up to the next tag.
fn text_after(body: &str, marker: &str) -> String {
    let at = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"))
        + marker.len();
    let rest = &body[at..];
    rest[..rest.find('<').expect("tag")].to_owned()
}

/// Follows a tracked URL; returns the answer's Location and Set-Cookie.
async fn follow(t: &TestServer, url: &str) -> (String, Option<String>) {
    let r = t
        .http
        .get(url)
        .header("user-agent", CHROME_UA)
        .send()
        .await
        .expect("go");
    assert_eq!(r.status().as_u16(), 302, "{url}");
    let location = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let cookie = r
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (location, cookie)
}

async fn clicks_in_db(t: &TestServer, pid: &str) -> i64 {
    let (n,): (i64,) = t
        .server
        .services
        .db
        .fetch_one(
            "SELECT COUNT(*) FROM clicks WHERE property_id = $1",
            clicktrail_store::args![pid],
        )
        .await
        .expect("count");
    n
}

both!(links_in_the_dashboard, |backend: Backend| async move {
    let t = TestServer::start(backend).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Site", "site.example", "EUR").await;
    let (iid, postback_url) = t.install_custom(&pid).await;
    let links_page = format!("/p/{pid}/links");

    let empty = b.get(&links_page).await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert!(empty.body.contains("No tracked link yet"));
    assert!(
        empty.body.contains(&format!("href=\"/p/{pid}/links\"")),
        "the property's Links tab"
    );

    // Refusals of the engine's service, beside their fields.
    let bad = b
        .submit(
            &links_page,
            &links_page,
            &[
                ("destination_url", "ftp://offer.example/"),
                ("slug", "not a slug"),
                ("integration", ""),
            ],
        )
        .await;
    assert_eq!(bad.status, 422, "{}", bad.body);
    assert!(bad.has_error_for("destination_url"));
    assert!(bad.has_error_for("slug"));
    assert!(bad.body.contains("value=\"ftp://offer.example/\""), "kept");

    // A link with its slug and the custom network's subid.
    let made = b
        .submit(
            &links_page,
            &links_page,
            &[
                ("destination_url", "https://offer.example/land?a=1"),
                ("slug", "bf-offer"),
                ("integration", &iid),
            ],
        )
        .await;
    assert_eq!(made.status, 303, "{}", made.body);
    let link_page = made
        .location()
        .expect("location")
        .split('?')
        .next()
        .expect("path")
        .to_owned();
    let lid = link_page.rsplit('/').next().expect("id").to_owned();
    let page = b.get(made.location().expect("location")).await;
    assert_eq!(page.status, 200);
    let tracked = format!("{}/go/{pid}/bf-offer", t.base);
    assert!(
        page.body
            .contains(&format!("<code id=\"tracked-url\">{tracked}</code>")),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("data-copy=\"tracked-url\""),
        "copy button"
    );
    assert!(page.body.contains("<code>mynet</code>"), "tracking group");

    let taken = b
        .submit(
            &links_page,
            &links_page,
            &[
                ("destination_url", "https://offer.example/other"),
                ("slug", "bf-offer"),
            ],
        )
        .await;
    assert_eq!(taken.status, 422);
    assert!(taken.has_error_for("slug"));

    // No slug: one is generated.
    let generated = b
        .submit(
            &links_page,
            &links_page,
            &[("destination_url", "https://other.example/"), ("slug", "")],
        )
        .await;
    assert_eq!(generated.status, 303, "{}", generated.body);
    let gen_page = b.get(generated.location().expect("location")).await;
    let gen_url = text_after(&gen_page.body, "<code id=\"tracked-url\">");
    let gen_slug = gen_url.rsplit('/').next().expect("slug");
    assert_eq!(gen_slug.len(), 8, "{gen_url}");
    assert!(
        gen_slug
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    );

    // Three visits through the link, a conversion on the first click.
    let mut click_ids = Vec::new();
    for _ in 0..3 {
        let (location, cookie) = follow(&t, &format!("{tracked}?utm_source=newsletter")).await;
        assert!(cookie.is_some_and(|c| c.starts_with("_ctv=")));
        let cid = location
            .strip_prefix("https://offer.example/land?a=1&sub1=")
            .unwrap_or_else(|| panic!("{location}"));
        click_ids.push(cid.to_owned());
    }
    let r = t
        .http
        .get(format!(
            "{postback_url}?sub1={}&payout=12.50&currency=EUR&txid=T-1",
            click_ids[0]
        ))
        .send()
        .await
        .expect("postback");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["status"], "validated", "{v}");

    let list = b.get(&links_page).await;
    let bf = row(&list, "bf-offer");
    assert_eq!(cell(bf, "recent-clicks"), "3");
    assert_eq!(cell(bf, "clicks"), "3");
    assert_eq!(cell(bf, "conversions"), "1");
    assert_eq!(cell(bf, "revenue"), "12.50");
    assert!(bf.contains("title=\"https://offer.example/land?a=1\""));
    assert!(bf.contains("badge good"));
    let other = row(&list, gen_slug);
    assert_eq!(cell(other, "clicks"), "0");
    assert_eq!(cell(other, "conversions"), "0");
    let page = b.get(&link_page).await;
    assert!(
        page.body.contains("data-kpi=\"conversions\"><span class=\"label\">Conversions</span><span class=\"value\">1</span>"),
        "{}",
        page.body
    );

    // Paused: still redirects, to the destination as it is, and records
    // nothing (an active `/go` answers after its click is committed, so
    // nothing can arrive later).
    let paused = b
        .submit(
            &link_page,
            &format!("{link_page}/pause"),
            &[("paused", "true")],
        )
        .await;
    assert_eq!(paused.status, 303, "{}", paused.body);
    assert!(
        paused
            .location()
            .is_some_and(|l| l.ends_with("?done=link_paused"))
    );
    let page = b.get(&link_page).await;
    assert!(page.body.contains("badge warn"), "paused badge");
    assert!(page.body.contains("data-test=\"resume-link\""));
    let (location, cookie) = follow(&t, &tracked).await;
    assert_eq!(location, "https://offer.example/land?a=1");
    assert_eq!(cookie, None, "a paused link tracks nobody");
    assert_eq!(clicks_in_db(&t, &pid).await, 3);
    let list = b.get(&links_page).await;
    let bf = row(&list, "bf-offer");
    assert_eq!(cell(bf, "clicks"), "3");
    assert!(bf.contains("badge warn"));

    // Resumed: tracked again.
    let resumed = b
        .submit(
            &link_page,
            &format!("{link_page}/pause"),
            &[("paused", "false")],
        )
        .await;
    assert_eq!(resumed.status, 303);
    let (location, _) = follow(&t, &tracked).await;
    assert!(location.starts_with("https://offer.example/land?a=1&sub1="));
    assert_eq!(clicks_in_db(&t, &pid).await, 4);

    // A new destination, checked like the API's.
    let bad = b
        .submit(
            &link_page,
            &link_page,
            &[("destination_url", "offer.example")],
        )
        .await;
    assert_eq!(bad.status, 422);
    assert!(bad.has_error_for("destination_url"));
    let saved = b
        .submit(
            &link_page,
            &link_page,
            &[("destination_url", "https://offer.example/new")],
        )
        .await;
    assert_eq!(saved.status, 303);
    let (location, _) = follow(&t, &tracked).await;
    assert!(
        location.starts_with("https://offer.example/new?sub1="),
        "{location}"
    );

    // The API: the link with `paused`, and PATCH.
    let (st, v) = t.get(&format!("/api/v1/links/{lid}"), MASTER_KEY).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paused"], false);
    assert_eq!(v["url"], tracked);
    let (st, v) = t
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/links/{lid}"),
            MASTER_KEY,
            Some(json!({"paused": true})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["paused"], true);
    assert_eq!(v["destination_url"], "https://offer.example/new");
    let (location, _) = follow(&t, &tracked).await;
    assert_eq!(location, "https://offer.example/new");
    let (st, v) = t
        .api(
            reqwest::Method::PATCH,
            &format!("/api/v1/links/{lid}"),
            MASTER_KEY,
            Some(json!({"destination_url": "javascript:alert(1)"})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "destination_url", "{v}");

    // Another workspace's link: 404 on every path to it.
    let (st, v) = t
        .post(
            "/api/v1/properties",
            MASTER_KEY,
            json!({"name": "Theirs", "domains": ["theirs.example"], "workspace": "other"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let theirs = v["id"].as_str().expect("id").to_owned();
    let (st, v) = t
        .post(
            &format!("/api/v1/properties/{theirs}/links"),
            MASTER_KEY,
            json!({"destination_url": "https://theirs.example/offer"}),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let their_link = v["id"].as_str().expect("id").to_owned();
    assert_eq!(v["slug"].as_str().map(str::len), Some(8), "{v}");
    for path in [
        format!("/p/{theirs}/links"),
        format!("/p/{theirs}/links/{their_link}"),
        format!("/p/{pid}/links/{their_link}"),
        format!("/p/{pid}/links/lnk_nope"),
    ] {
        assert_eq!(b.get(&path).await.status, 404, "GET {path}");
    }
    let r = b
        .submit(
            &link_page,
            &format!("/p/{pid}/links/{their_link}/pause"),
            &[("paused", "true")],
        )
        .await;
    assert_eq!(r.status, 404);
    let (st, v) = t
        .get(&format!("/api/v1/links/{their_link}"), MASTER_KEY)
        .await;
    assert_eq!(v["paused"], false, "untouched: {st} {v}");

    t.stop().await;
});
