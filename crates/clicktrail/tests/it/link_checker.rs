//! Issue 14, item 6: the link checker follows a page's redirect-plugin
//! links (`/go/`, `/out/`, `/recommends/`) with a test click id, over the
//! API (`POST /api/v1/properties/{id}/check-links`) and the dashboard's
//! link checker page, against a local fake site (SQLite): a plugin that
//! forwards the query string keeps the click id, one that drops it gets
//! the parameter-forwarding fix, a loop is a loop, a hop to a refused
//! address or a closed port is reported as such; the network's own link
//! (an Income Access `/redirect.aspx?pid=..&bid=..`, recognised by its
//! shape on any host) is never requested; one check, and one property's
//! minute, are bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::RawQuery;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use clicktrail_engine::link_checker::{
    MAX_REDIRECT_LINKS, MAX_REQUESTS_PER_CHECK, MAX_REQUESTS_PER_MINUTE,
};

use crate::support::browser::Browser;
use crate::support::{Backend, MASTER_KEY, TestServer};

const PAGE: &str = r#"<html><body>
    <p><a href="/go/forward">Gala (forwards)</a></p>
    <p><a href="/out/drop">Gala (drops the query)</a></p>
    <p><a href="/recommends/loop">Broken</a></p>
    <p><a href="/visit/metadata">Cloud metadata</a></p>
    <p><a href="/link/closed">Nothing listens</a></p>
    <p><a href="/about">About us</a></p>
    <p><a href="/go/forward">Gala again</a></p>
</body></html>"#;

/// What the fake site saw.
#[derive(Default)]
struct Seen {
    /// Requests to the network's link (must stay 0: the checker stops
    /// before it).
    network: AtomicUsize,
    /// Requests of the redirect chains (every hop but the page).
    hops: AtomicUsize,
    /// Requests of the page.
    pages: AtomicUsize,
    /// The query strings `/go/forward` received.
    forward_queries: std::sync::Mutex<Vec<String>>,
}

fn found(to: String) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to)]).into_response()
}

/// A site with a redirect plugin on 127.0.0.1: `/go/forward` passes its
/// query string on to the network's link, `/out/drop` does not,
/// `/recommends/loop` loops, `/go/deep/{n}` redirects forever.
async fn fake_site(page: &'static str) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen::default());
    let network = format!("{base}/redirect.aspx?pid=1&bid=2");
    let app = axum::Router::new()
        .route(
            "/page",
            get({
                let seen = seen.clone();
                move || async move {
                    seen.pages.fetch_add(1, Ordering::SeqCst);
                    Html(page)
                }
            }),
        )
        .route(
            "/go/forward",
            get({
                let (seen, network) = (seen.clone(), network.clone());
                move |RawQuery(q): RawQuery| async move {
                    seen.hops.fetch_add(1, Ordering::SeqCst);
                    let q = q.unwrap_or_default();
                    seen.forward_queries.lock().expect("lock").push(q.clone());
                    found(if q.is_empty() {
                        network
                    } else {
                        format!("{network}&{q}")
                    })
                }
            }),
        )
        .route(
            "/out/drop",
            get({
                let (seen, network) = (seen.clone(), network.clone());
                move || async move {
                    seen.hops.fetch_add(1, Ordering::SeqCst);
                    found(network)
                }
            }),
        )
        .route(
            "/recommends/loop",
            get({
                let seen = seen.clone();
                move || async move {
                    seen.hops.fetch_add(1, Ordering::SeqCst);
                    found("/recommends/loop-again".to_owned())
                }
            }),
        )
        .route(
            "/recommends/loop-again",
            get({
                let seen = seen.clone();
                move || async move {
                    seen.hops.fetch_add(1, Ordering::SeqCst);
                    found("/recommends/loop".to_owned())
                }
            }),
        )
        .route(
            "/visit/metadata",
            get(|| async { found("http://169.254.169.254/latest/meta-data/".to_owned()) }),
        )
        .route(
            "/link/closed",
            get(|| async { found("http://127.0.0.1:1/offer".to_owned()) }),
        )
        .route(
            "/go/deep/{n}",
            get({
                let seen = seen.clone();
                move |axum::extract::Path(n): axum::extract::Path<u64>| async move {
                    seen.hops.fetch_add(1, Ordering::SeqCst);
                    found(format!("/go/deep/{}", n + 1))
                }
            }),
        )
        .route(
            "/redirect.aspx",
            get({
                let seen = seen.clone();
                move || async move {
                    seen.network.fetch_add(1, Ordering::SeqCst);
                    "the network's tracker"
                }
            }),
        );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, seen)
}

/// Installs Gala Partners (tracking group `incomeaccess`, subid `c`) on
/// the property, so that AutoScan resolves the plugin links to it.
async fn install_gala(t: &TestServer, pid: &str) {
    let (status, v) = t
        .post(
            &format!("/api/v1/properties/{pid}/integrations"),
            MASTER_KEY,
            json!({"catalog": "galapartners", "credentials": {"security_key": "K1234567890"},
                   "settings": {"api_url": "http://127.0.0.1:9/affreporting.asp"}}),
        )
        .await;
    assert_eq!(status, 201, "{v}");
}

async fn check(t: &TestServer, pid: &str, url: &str) -> (u16, Value) {
    t.post(
        &format!("/api/v1/properties/{pid}/check-links"),
        MASTER_KEY,
        json!({ "url": url }),
    )
    .await
}

fn by_href<'a>(v: &'a Value, href: &str) -> &'a Value {
    v["redirect_links"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["href"] == href))
        .unwrap_or_else(|| panic!("no check of {href}: {v}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_links_over_the_api_and_the_dashboard() {
    let (site, seen) = fake_site(PAGE).await;
    let t = TestServer::start(Backend::Sqlite).await;
    let b = Browser::new(&t.base);
    b.setup_and_login().await;
    let pid = b.create_property("Local", "127.0.0.1", "EUR").await;
    install_gala(&t, &pid).await;
    let page = format!("{site}/page");

    let (status, v) = check(&t, &pid, &page).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["url"], page);
    assert_eq!(v["links"], 7, "{v}");
    assert_eq!(v["not_checked"], 0);
    let links = v["redirect_links"].as_array().expect("links");
    assert_eq!(links.len(), 5, "each plugin link once, /about is none: {v}");

    // Forwarded: the click id reaches the network's link as `c`.
    let fwd = by_href(&v, "/go/forward");
    assert_eq!(fwd["outcome"], "click_id_kept", "{fwd}");
    assert_eq!(fwd["ok"], true);
    assert_eq!(fwd["network"], "incomeaccess");
    assert_eq!(fwd["installed"], true);
    assert_eq!(fwd["param"], "c");
    assert_eq!(fwd["click_id_in"], "c");
    assert_eq!(fwd["tagged_by"], "autoscan");
    assert!(fwd.get("fix").is_none(), "{fwd}");
    assert_eq!(
        fwd["tagged_url"],
        format!("{site}/go/forward?c={{click_id}}")
    );
    assert_eq!(
        fwd["final_url"],
        format!("{site}/redirect.aspx?pid=1&bid=2&c={{click_id}}")
    );
    let chain = fwd["chain"].as_array().expect("chain");
    assert_eq!(chain.len(), 1, "{fwd}");
    assert_eq!(
        chain[0],
        json!({"url": format!("{site}/go/forward?c={{click_id}}"), "method": "HEAD", "status": 302})
    );

    // The test click id: the tag's form, in the network's parameter, and
    // never shown.
    let queries = seen.forward_queries.lock().expect("lock").clone();
    assert_eq!(queries.len(), 2, "untagged, then tagged: {queries:?}");
    assert_eq!(queries[0], "");
    let id = queries[1].strip_prefix("c=").expect("c=<click id>");
    assert_eq!(id.len(), 28, "{id}");
    assert!(!v.to_string().contains(id), "the click id is redacted");

    // Dropped: the warning, and the plugin setting to change.
    let drop = by_href(&v, "/out/drop");
    assert_eq!(drop["outcome"], "click_id_dropped", "{drop}");
    assert_eq!(drop["ok"], false);
    assert_eq!(drop["network"], "incomeaccess");
    assert_eq!(
        drop["final_url"],
        format!("{site}/redirect.aspx?pid=1&bid=2")
    );
    assert!(drop.get("click_id_in").is_none());
    assert!(
        drop["message"]
            .as_str()
            .is_some_and(|m| m.contains("drops the query string")),
        "{drop}"
    );
    let fix = drop["fix"].as_str().expect("fix");
    for s in [
        "parameter forwarding",
        "ThirstyAffiliates",
        "Pretty Links",
        "Parameter Forwarding",
    ] {
        assert!(fix.contains(s), "{s}: {fix}");
    }

    // A loop.
    let lp = by_href(&v, "/recommends/loop");
    assert_eq!(lp["outcome"], "redirect_loop", "{lp}");
    assert_eq!(lp["error_code"], "redirect_loop");
    assert_eq!(lp["chain"].as_array().map(Vec::len), Some(2), "{lp}");
    assert_eq!(lp["final_url"], format!("{site}/recommends/loop"));
    assert!(lp.get("network").is_none(), "{lp}");

    // A hop to the cloud metadata address is refused (private networks
    // are allowed here, that never is); one to a closed port fails.
    let meta = by_href(&v, "/visit/metadata");
    assert_eq!(meta["outcome"], "refused_address", "{meta}");
    assert_eq!(meta["error_code"], "address_not_allowed", "{meta}");
    assert_eq!(
        meta["final_url"],
        "http://169.254.169.254/latest/meta-data/"
    );
    assert_eq!(meta["chain"].as_array().map(Vec::len), Some(1), "{meta}");
    let closed = by_href(&v, "/link/closed");
    assert_eq!(closed["outcome"], "unreachable", "{closed}");
    assert_eq!(closed["error_code"], "connect", "{closed}");

    // The network's tracker was never asked (a click would count there).
    assert_eq!(seen.network.load(Ordering::SeqCst), 0);

    // Refusals.
    let (status, v) = check(&t, &pid, "https://elsewhere.example/page").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["fields"][0]["field"], "url", "{v}");
    assert_eq!(v["error"]["fields"][0]["code"], "domain_not_allowed", "{v}");
    let (status, v) = check(&t, &pid, "not a url").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["fields"][0]["code"], "invalid_url", "{v}");
    let (status, v) = check(&t, &pid, "http://127.0.0.1:1/page").await;
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["fields"][0]["code"], "connect", "{v}");
    let (status, _) = t
        .post(
            "/api/v1/properties/nope/check-links",
            MASTER_KEY,
            json!({"url": page}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = t
        .post(
            &format!("/api/v1/properties/{pid}/check-links"),
            "wrong-token",
            json!({"url": page}),
        )
        .await;
    assert_eq!(status, 401);

    // The dashboard's link checker shows the same, with the fix.
    let checker = format!("/p/{pid}/link-checker");
    let r = b.submit(&checker, &checker, &[("url", &page)]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let section = &r.body[r
        .body
        .find("data-test=\"redirect-links\"")
        .expect("section")..];
    let row = |outcome: &str| {
        let at = section
            .find(&format!("data-outcome=\"{outcome}\""))
            .unwrap_or_else(|| panic!("no {outcome} row"));
        let row = &section[at..];
        row[..row.find("</tr>").expect("row end")].to_owned()
    };
    let dropped = row("click_id_dropped");
    assert!(dropped.contains("/out/drop"), "{dropped}");
    assert!(dropped.contains("click id dropped"), "{dropped}");
    assert!(dropped.contains("data-test=\"fix\""), "{dropped}");
    assert!(dropped.contains("Pretty Links"), "{dropped}");
    assert!(dropped.contains("ThirstyAffiliates"), "{dropped}");
    assert!(dropped.contains("parameter forwarding"), "{dropped}");
    let kept = row("click_id_kept");
    assert!(kept.contains("/go/forward"), "{kept}");
    assert!(!kept.contains("data-test=\"fix\""), "{kept}");
    assert!(kept.contains("c={click_id}"), "{kept}");
    assert!(row("redirect_loop").contains("/recommends/loop"));
    assert_eq!(seen.network.load(Ordering::SeqCst), 0);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_and_a_propertys_minute_are_bounded() {
    // 25 plugin links, each redirecting forever.
    let page: &'static str = Box::leak(
        format!(
            "<html><body>{}</body></html>",
            (0..25)
                .map(|i| format!("<a href=\"/go/deep/{}\">deep</a>", i * 1000))
                .collect::<String>()
        )
        .into_boxed_str(),
    );
    let (site, seen) = fake_site(page).await;
    let t = TestServer::start(Backend::Sqlite).await;
    let pid = t.property(&["127.0.0.1"]).await;
    let url = format!("{site}/page");

    // One check: at most MAX_REDIRECT_LINKS links, and its requests within
    // MAX_REQUESTS_PER_CHECK. Each chain reserves the 11 requests it may
    // take and takes them all, so 10 chains fit beside the page.
    let (status, v) = check(&t, &pid, &url).await;
    assert_eq!(status, 200, "{v}");
    let links = v["redirect_links"].as_array().expect("links");
    assert_eq!(links.len(), MAX_REDIRECT_LINKS, "{v}");
    assert_eq!(v["not_checked"], 25 - MAX_REDIRECT_LINKS, "{v}");
    let count = |code: &str| links.iter().filter(|l| l["outcome"] == code).count();
    assert_eq!(count("too_many_redirects"), 10, "{v}");
    assert_eq!(count("rate_limited"), 10, "{v}");
    let deep = links
        .iter()
        .find(|l| l["outcome"] == "too_many_redirects")
        .expect("a deep link");
    assert_eq!(deep["chain"].as_array().map(Vec::len), Some(11), "{deep}");
    let first = seen.hops.load(Ordering::SeqCst) + seen.pages.load(Ordering::SeqCst);
    assert_eq!(first, 111, "the page and ten chains of 11");
    assert!(first as i64 <= MAX_REQUESTS_PER_CHECK);

    // The property's minute: checks go on until it is spent, then even
    // the page is refused.
    let mut refused = None;
    for _ in 0..10 {
        let (status, v) = check(&t, &pid, &url).await;
        if status == 429 {
            refused = Some(v);
            break;
        }
        assert_eq!(status, 200, "{v}");
    }
    let v = refused.expect("the property's minute runs out");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    let total = seen.hops.load(Ordering::SeqCst) + seen.pages.load(Ordering::SeqCst);
    assert!(
        total as i64 <= MAX_REQUESTS_PER_MINUTE,
        "{total} requests in a minute"
    );
    assert_eq!(seen.network.load(Ordering::SeqCst), 0);
    t.stop().await;
}
