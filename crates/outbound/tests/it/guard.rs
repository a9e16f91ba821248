//! End-to-end tests of the guarded client against local axum servers.
//!
//! Local servers live on loopback, which the strict policy refuses. To test
//! hop-by-hop checks with the strict policy, the server listens on
//! 127.0.0.2 and the policy lets exactly `127.0.0.2/32` and the server's
//! port through (`allowed_networks` / `allowed_ports`, ordinary settings
//! for an on-premise host): every other loopback or private address stays
//! refused. No test sends anything outside 127.0.0.0/8: refused addresses
//! are refused before any connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use clicktrail_outbound::{Outbound, OutboundError, OutboundPolicy, read_body_limited};
use url::Url;

fn redirect(to: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, to.to_owned())]).into_response()
}

fn app() -> Router {
    Router::new()
        .route(
            "/chain/{len}/{i}",
            get(|Path((len, i)): Path<(u32, u32)>| async move {
                if i < len {
                    // Relative Location, resolved against the hop's URL.
                    redirect(&format!("../{len}/{}#frag", i + 1))
                } else {
                    (StatusCode::OK, "end").into_response()
                }
            }),
        )
        .route("/loop/a", get(|| async { redirect("/loop/b") }))
        .route("/loop/b", get(|| async { redirect("/loop/a") }))
        .route(
            "/to",
            get(
                |Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    redirect(q.get("u").map(String::as_str).unwrap_or("/final"))
                },
            ),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/head405",
            any(|method: Method| async move {
                if method == Method::HEAD {
                    StatusCode::METHOD_NOT_ALLOWED.into_response()
                } else {
                    redirect("/final")
                }
            }),
        )
        .route("/final", get(|| async { "ok" }))
        .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
        .route("/nolocation", get(|| async { StatusCode::FOUND }))
        .route(
            "/page",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    format!(
                        "<html><body>{}</body></html>",
                        "<a href=\"/x\">x</a>".repeat(10_000)
                    ),
                )
            }),
        )
        .route(
            "/image",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], vec![0u8; 64]) }),
        )
        .route(
            "/ua",
            get(|headers: HeaderMap| async move {
                (
                    [(header::CONTENT_TYPE, "text/html")],
                    headers
                        .get(header::USER_AGENT)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned(),
                )
            }),
        )
}

async fn serve(bind: &str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind(bind).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app()).await.unwrap() });
    addr
}

/// Strict policy, except for the test server itself.
fn strict_but(addr: SocketAddr) -> OutboundPolicy {
    OutboundPolicy {
        allow_private_networks: false,
        allowed_ports: vec![80, 443, addr.port()],
        allowed_networks: vec![format!("{}/32", addr.ip()).parse().unwrap()],
    }
}

fn out(policy: OutboundPolicy) -> Outbound {
    Outbound::new(policy, Duration::from_secs(5)).unwrap()
}

fn url(s: &str) -> Url {
    Url::parse(s).unwrap()
}

const THREE: Duration = Duration::from_secs(3);

async fn chain_code(o: &Outbound, start: &str) -> &'static str {
    match o.resolve_redirects(&url(start), 5, THREE).await {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

#[tokio::test]
async fn every_hop_is_checked() {
    let addr = serve("127.0.0.2:0").await;
    let p = addr.port();
    let o = out(strict_but(addr));
    let base = format!("http://{addr}");

    // The allowed server itself works, through a redirect.
    let chain = o
        .resolve_redirects(&url(&format!("{base}/to?u=/final")), 5, THREE)
        .await
        .unwrap();
    assert_eq!(chain.final_url.as_str(), format!("{base}/final"));
    assert_eq!(chain.final_status, 200);
    assert_eq!(chain.redirects(), 1);

    // A second hop to anything else private is refused.
    for (target, code) in [
        (format!("http://127.0.0.1:{p}/final"), "address_not_allowed"),
        (format!("http://[::1]:{p}/final"), "address_not_allowed"),
        (
            format!("http://[::ffff:127.0.0.1]:{p}/final"),
            "address_not_allowed",
        ),
        (format!("http://localhost:{p}/final"), "address_not_allowed"),
        ("http://10.0.0.1/".to_owned(), "address_not_allowed"),
        ("http://172.16.0.1/".to_owned(), "address_not_allowed"),
        ("http://192.168.0.1/".to_owned(), "address_not_allowed"),
        (
            "http://169.254.169.254/latest/meta-data/".to_owned(),
            "address_not_allowed",
        ),
        ("http://[fd00::1]/".to_owned(), "address_not_allowed"),
        ("http://0.0.0.0/".to_owned(), "address_not_allowed"),
        (
            "http://metadata.google.internal/".to_owned(),
            "address_not_allowed",
        ),
        (
            format!("http://127.0.0.2:{}/final", if p == 1 { 2 } else { 1 }),
            "port_not_allowed",
        ),
        ("ftp://127.0.0.2/".to_owned(), "scheme_not_allowed"),
        ("file:///etc/passwd".to_owned(), "scheme_not_allowed"),
        ("gopher://127.0.0.2:70/".to_owned(), "scheme_not_allowed"),
    ] {
        let start =
            Url::parse_with_params(&format!("{base}/to"), [("u", target.as_str())]).unwrap();
        assert_eq!(chain_code(&o, start.as_str()).await, code, "{target}");
    }
}

#[tokio::test]
async fn strict_policy_refuses_local_servers() {
    let addr = serve("127.0.0.1:0").await;
    let strict = out(OutboundPolicy::strict());
    // Non-standard port first...
    assert_eq!(
        chain_code(&strict, &format!("http://{addr}/final")).await,
        "port_not_allowed"
    );
    // ...and with the port allowed, the address.
    let ports_only = out(OutboundPolicy {
        allowed_ports: vec![addr.port()],
        ..OutboundPolicy::strict()
    });
    assert_eq!(
        chain_code(&ports_only, &format!("http://{addr}/final")).await,
        "address_not_allowed"
    );
    assert_eq!(
        chain_code(
            &ports_only,
            &format!("http://localhost:{}/final", addr.port())
        )
        .await,
        "address_not_allowed"
    );
    // Private networks allowed: the same URLs work.
    let open = out(OutboundPolicy::allowing_private_networks());
    assert_eq!(
        chain_code(&open, &format!("http://{addr}/final")).await,
        "ok"
    );
    assert_eq!(
        chain_code(&open, &format!("http://localhost:{}/final", addr.port())).await,
        "ok"
    );
}

/// The resolver itself refuses: a request that skips `check_url` and goes
/// straight to the client still cannot reach a name resolving to loopback.
#[tokio::test]
async fn dns_resolution_is_guarded() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy {
        allowed_ports: vec![addr.port()],
        ..OutboundPolicy::strict()
    });
    let direct = o
        .client()
        .get(format!("http://localhost:{}/final", addr.port()));
    let err = o.send(direct).await.unwrap_err();
    assert_eq!(err.code(), "address_not_allowed", "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");

    let resolver =
        clicktrail_outbound::GuardedResolver::new(std::sync::Arc::new(OutboundPolicy::strict()));
    for name in ["localhost", "127.0.0.1", "::1", "0.0.0.0"] {
        let err = resolver.lookup(name).await.unwrap_err();
        assert_eq!(err.code(), "address_not_allowed", "{name}: {err}");
    }
    let open = clicktrail_outbound::GuardedResolver::new(std::sync::Arc::new(
        OutboundPolicy::allowing_private_networks(),
    ));
    assert!(!open.lookup("localhost").await.unwrap().is_empty());
    let err = open.lookup("no-such-host.invalid").await.unwrap_err();
    assert_eq!(err.code(), "dns");
}

#[tokio::test]
async fn at_most_five_redirects() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let chain = o
        .resolve_redirects(&url(&format!("http://{addr}/chain/5/0")), 5, THREE)
        .await
        .unwrap();
    assert_eq!(chain.redirects(), 5);
    assert_eq!(chain.hops.len(), 6);
    assert_eq!(chain.final_url.path(), "/chain/5/5");
    assert!(chain.hops.iter().all(|h| h.method == "HEAD"));
    assert!(chain.hops.iter().all(|h| h.url.fragment().is_none()));

    let err = o
        .resolve_redirects(&url(&format!("http://{addr}/chain/6/0")), 5, THREE)
        .await
        .unwrap_err();
    assert_eq!(err, OutboundError::TooManyRedirects { max: 5 });
    assert_eq!(err.code(), "too_many_redirects");
}

#[tokio::test]
async fn loops_are_detected() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let err = o
        .resolve_redirects(&url(&format!("http://{addr}/loop/a")), 5, THREE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "redirect_loop");
}

#[tokio::test]
async fn the_whole_chain_has_one_deadline() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let started = Instant::now();
    let err = o
        .resolve_redirects(&url(&format!("http://{addr}/to?u=/slow")), 5, THREE)
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.code(), "timeout");
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_millis(4500),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_trace_keeps_how_far_a_chain_went() {
    let addr = serve("127.0.0.2:0").await;
    let p = addr.port();
    let o = out(strict_but(addr));
    let base = format!("http://{addr}");
    let never = |_: &Url| false;

    // A hop to a refused address: the first hop is kept, the refused one
    // was never asked.
    let refused = format!("http://127.0.0.1:{p}/final");
    let start = Url::parse_with_params(&format!("{base}/to"), [("u", refused.as_str())]).unwrap();
    let t = o.trace_redirects(&start, 10, THREE, &never).await;
    assert_eq!(t.hops.len(), 1);
    assert_eq!(
        (t.hops[0].url.as_str(), t.hops[0].status),
        (start.as_str(), 302)
    );
    assert_eq!(
        t.unanswered.as_ref().map(Url::as_str),
        Some(refused.as_str())
    );
    assert_eq!(t.result.unwrap_err().code(), "address_not_allowed");

    // A loop: both hops, and the URL it came back to.
    let t = o
        .trace_redirects(&url(&format!("{base}/loop/a")), 10, THREE, &never)
        .await;
    let paths: Vec<&str> = t.hops.iter().map(|h| h.url.path()).collect();
    assert_eq!(paths, ["/loop/a", "/loop/b"]);
    assert_eq!(t.unanswered.as_ref().map(Url::path), Some("/loop/a"));
    assert_eq!(t.result.unwrap_err(), OutboundError::RedirectLoop);

    // One redirect too many.
    let t = o
        .trace_redirects(&url(&format!("{base}/chain/3/0")), 2, THREE, &never)
        .await;
    assert_eq!(t.hops.len(), 3);
    assert_eq!(t.unanswered.as_ref().map(Url::path), Some("/chain/3/3"));
    assert_eq!(t.result.unwrap_err().code(), "too_many_redirects");

    // Stopped before a hop: that hop is not asked, and is the end.
    let stop = |u: &Url| u.path() == "/final";
    let t = o
        .trace_redirects(&url(&format!("{base}/to?u=/final")), 10, THREE, &stop)
        .await;
    assert_eq!(t.hops.len(), 1);
    assert_eq!(t.unanswered.as_ref().map(Url::path), Some("/final"));
    let chain = t.result.unwrap();
    assert_eq!(
        (chain.final_url.path(), chain.final_status),
        ("/final", 302)
    );

    // A chain that ends at an answer leaves nothing unanswered.
    let t = o
        .trace_redirects(&url(&format!("{base}/to?u=/gone")), 10, THREE, &never)
        .await;
    assert_eq!(t.hops.len(), 2);
    assert_eq!(t.unanswered, None);
    assert_eq!(t.result.unwrap().final_status, 404);
}

#[tokio::test]
async fn head_refused_falls_back_to_get() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let chain = o
        .resolve_redirects(&url(&format!("http://{addr}/head405")), 5, THREE)
        .await
        .unwrap();
    assert_eq!(chain.hops.len(), 2);
    assert_eq!((chain.hops[0].method, chain.hops[0].status), ("GET", 302));
    assert_eq!((chain.hops[1].method, chain.hops[1].status), ("HEAD", 200));
    assert_eq!(chain.final_url.path(), "/final");
}

#[tokio::test]
async fn final_status_is_reported_and_bad_redirects_refused() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let chain = o
        .resolve_redirects(&url(&format!("http://{addr}/to?u=/gone")), 5, THREE)
        .await
        .unwrap();
    assert_eq!(chain.final_status, 404);
    let err = o
        .resolve_redirects(&url(&format!("http://{addr}/nolocation")), 5, THREE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "bad_redirect");
    // Nothing listens on port 1.
    let err = o
        .resolve_redirects(&url("http://127.0.0.1:1/"), 5, THREE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "connect");
}

#[tokio::test]
async fn fetch_text_reads_a_bounded_page() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let page = o
        .fetch_text(&url(&format!("http://{addr}/to?u=/page")), 5, 1000, THREE)
        .await
        .unwrap();
    assert_eq!(page.chain.final_url.path(), "/page");
    assert_eq!(page.chain.hops[0].method, "GET");
    assert!(page.truncated);
    assert_eq!(page.body.len(), 1000);
    assert!(page.body.starts_with("<html><body><a href=\"/x\">"));
    assert_eq!(
        page.content_type.as_deref(),
        Some("text/html; charset=utf-8")
    );

    let whole = o
        .fetch_text(&url(&format!("http://{addr}/page")), 5, 1_000_000, THREE)
        .await
        .unwrap();
    assert!(!whole.truncated);
    assert!(whole.body.ends_with("</body></html>"));

    let err = o
        .fetch_text(&url(&format!("http://{addr}/image")), 5, 1000, THREE)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "not_html");

    let ua = o
        .fetch_text(&url(&format!("http://{addr}/ua")), 5, 1000, THREE)
        .await
        .unwrap();
    assert_eq!(ua.body, format!("clicktrail/{}", env!("CARGO_PKG_VERSION")));

    // The free-function form with a client from `client()`.
    let policy = OutboundPolicy::allowing_private_networks();
    let client = clicktrail_outbound::client(&policy, Duration::from_secs(5)).unwrap();
    let page = clicktrail_outbound::fetch_text(
        &client,
        &policy,
        &url(&format!("http://{addr}/final")),
        10,
        THREE,
    )
    .await
    .unwrap();
    assert_eq!(page.body, "ok");
    let err = clicktrail_outbound::resolve_redirects(
        &client,
        &OutboundPolicy::strict(),
        &url(&format!("http://{addr}/final")),
        5,
        THREE,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "port_not_allowed");
}

#[tokio::test]
async fn bounded_body_reads() {
    let addr = serve("127.0.0.1:0").await;
    let o = out(OutboundPolicy::allowing_private_networks());
    let send = |path: &str| {
        let req = o
            .request(reqwest::Method::GET, &url(&format!("http://{addr}{path}")))
            .unwrap();
        o.send(req)
    };
    let body = read_body_limited(send("/final").await.unwrap(), 100)
        .await
        .unwrap();
    assert_eq!(body, b"ok");
    let err = read_body_limited(send("/page").await.unwrap(), 100)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "body_too_large");
    // `request` checks the URL before anything is sent.
    let strict = out(OutboundPolicy::strict());
    let err = strict
        .request(reqwest::Method::POST, &url("http://10.1.2.3/api"))
        .unwrap_err();
    assert_eq!(err.code(), "address_not_allowed");
}
