//! The HTTP server itself (issue 13, findings 2 and 7, and `/metrics`):
//! connections that send nothing, half a header or a `Content-Length` and
//! no body are closed within the configured timeouts; with the process
//! short of open files and 1,100 idle sockets open, `/healthz` still gets
//! an answer (503 + `Retry-After` beyond the connection cap, then 200 once
//! the idle ones are closed); shutdown does not wait past its grace period
//! for a stalled request; refusals made outside the handlers (405, bad
//! query, bad UTF-8 path, 414) have the API's error shape; `/metrics` is
//! refused without its token, or served only on its own listener.

use std::time::{Duration, Instant};

use clicktrail_testkit::both;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::process::{ChildServer, Serve};
use crate::support::{self, Backend, MASTER_KEY, TestDb, TestServer};

/// Reads until the server closes the connection (EOF or reset); returns
/// what it sent, or `None` when it was still open at `deadline`.
async fn read_until_closed(stream: &mut TcpStream, deadline: Instant) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The status and JSON body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

const STALLS: &[(&str, &[u8])] = &[
    ("nothing", b""),
    ("half a header", b"GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Ag"),
    (
        "a collector body that never comes",
        b"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: 60000\r\n\r\n{\"prop",
    ),
    (
        "a postback body that never comes",
        b"POST /postback/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n",
    ),
    (
        "an unread body that never comes",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n",
    ),
    (
        "an idle keep-alive connection",
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
    ),
];

both!(stalled_connections_are_closed, |b: Backend| async move {
    let db = TestDb::new(b).await;
    let mut cfg = support::config(&db);
    cfg.http.header_read_timeout_secs = 1;
    cfg.http.body_read_timeout_secs = 1;
    let s = TestServer::start_with(db, cfg).await;

    let started = Instant::now();
    let mut conns = Vec::new();
    for (what, bytes) in STALLS {
        for _ in 0..20 {
            let mut c = TcpStream::connect(s.server.addr).await.expect("connect");
            c.write_all(bytes).await.expect("write");
            conns.push((*what, c));
        }
    }
    // 1 s timeouts: every connection must be closed well within 4 s.
    let deadline = started + Duration::from_secs(4);
    let mut slowest = Duration::ZERO;
    for (what, c) in &mut conns {
        let got = read_until_closed(c, deadline).await;
        let Some(got) = got else {
            panic!("a connection that sent {what} was still open after 4 s");
        };
        slowest = slowest.max(started.elapsed());
        if *what == "a collector body that never comes" {
            let (status, body) = parse_response(&got);
            assert_eq!(status, 408, "{what}: {}", String::from_utf8_lossy(&got));
            assert_eq!(body["error"]["code"], "body_timeout", "{body}");
        }
    }
    eprintln!(
        "{} stalled connections closed; the last after {slowest:?}",
        conns.len()
    );
    // And the server still answers.
    let r = s.http.get(s.url("/healthz")).send().await.expect("healthz");
    assert_eq!(r.status(), 200);
    s.stop().await;
});

both!(
    shutdown_does_not_wait_past_its_grace_period,
    |b: Backend| async move {
        let db = TestDb::new(b).await;
        let mut cfg = support::config(&db);
        cfg.http.shutdown_grace_secs = 1;
        let s = TestServer::start_with(db, cfg).await;
        // A request in flight whose body stalls (within the 20 s body timeout).
        let mut c = TcpStream::connect(s.server.addr).await.expect("connect");
        c.write_all(
            b"POST /collect HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
              Content-Length: 100\r\nExpect: 100-continue\r\n\r\n",
        )
        .await
        .expect("write");
        // `100 Continue` comes once the handler reads the body: the request
        // is in flight before the server is told to stop.
        let mut interim = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), c.read(&mut interim))
            .await
            .expect("100 Continue within 10 s")
            .expect("read");
        let interim = String::from_utf8_lossy(&interim[..n]);
        assert!(interim.starts_with("HTTP/1.1 100"), "{interim}");
        c.write_all(b"{").await.expect("write");
        let started = Instant::now();
        let stopped = tokio::time::timeout(Duration::from_secs(10), s.server.stop()).await;
        let took = started.elapsed();
        assert!(
            matches!(stopped, Ok(Ok(()))),
            "the server did not stop within 10 s with a stalled request in flight"
        );
        eprintln!("stopped in {took:?} with a stalled request in flight (grace 1 s)");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let closed = read_until_closed(&mut c, Instant::now() + Duration::from_secs(2)).await;
        assert!(closed.is_some(), "the stalled connection is closed");
    }
);

/// The real binary with an open-file limit of 512 (soft and hard).
async fn start_limited(db: &TestDb) -> ChildServer {
    Serve::new(&db.url, &db.dir)
        .env("CLICKTRAIL_LOG", "error")
        .env("CLICKTRAIL_HTTP__MAX_CONNECTIONS", "150")
        .env("CLICKTRAIL_HTTP__HEADER_READ_TIMEOUT_SECS", "5")
        .open_files(512)
        .start()
        .await
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// One `/healthz` on a fresh connection: the status and `Retry-After`, or
/// `None` when the connection was closed without an answer.
async fn healthz_once(base: &str) -> Option<(u16, Option<String>, Value)> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client");
    let r = http.get(format!("{base}/healthz")).send().await.ok()?;
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Some((status, retry, r.json().await.unwrap_or(Value::Null)))
}

both!(
    healthz_answers_with_1100_idle_sockets_open,
    |b: Backend| async move {
        let db = TestDb::new(b).await;
        let mut child = start_limited(&db).await;
        let base = child.base.clone();
        let addr = base.trim_start_matches("http://").to_owned();
        let pid = child.pid();

        // 1,100 sockets that send nothing: more than the server's 512 files.
        // In rounds of 100: 1,100 at once can overflow the listen backlog, and
        // a connection the kernel dropped there stays "open" on this side
        // forever without the server ever seeing it.
        let opening = Instant::now();
        let mut idle = Vec::new();
        for _ in 0..11 {
            let mut connects = tokio::task::JoinSet::new();
            for _ in 0..100 {
                connects.spawn(tokio::time::timeout(
                    Duration::from_secs(5),
                    TcpStream::connect(addr.clone()),
                ));
            }
            while let Some(c) = connects.join_next().await {
                idle.push(c.expect("task").expect("connect in time").expect("connect"));
            }
        }
        let opened = Instant::now();
        let took_to_open = opened - opening;

        // While they are open (150 of them hold the cap until the 5 s header
        // timeout), /healthz gets an answer: 503 + Retry-After (a connection
        // closed at once, when many are being answered, is tried again).
        let mut answer = None;
        while opened.elapsed() < Duration::from_secs(4) && answer.is_none() {
            answer = healthz_once(&base).await;
        }
        let answered_after = opened.elapsed();
        let files = open_files(pid);
        eprintln!(
            "{b:?}: 1,100 idle sockets opened in {took_to_open:?}; the server holds {files} open files (limit 512)"
        );
        let (status, retry, body) =
            answer.expect("/healthz answered while 1,100 sockets were idle");
        assert!(
            // 200 when a slot was free by then (the machine was slow to open
            // the sockets); never a hang.
            status == 200
                || (status == 503 && retry.is_some() && body["error"]["code"] == "overloaded"),
            "{status} {retry:?} {body} (the sockets took {took_to_open:?} to open)"
        );

        // The idle ones are closed after the header timeout; then /healthz is
        // served again.
        let closed_by = opened + Duration::from_secs(13);
        let mut still_open = 0;
        let mut reads = Vec::new();
        for mut c in idle {
            reads.push(tokio::spawn(async move {
                read_until_closed(&mut c, closed_by).await.is_none()
            }));
        }
        for r in reads {
            if r.await.expect("read task") {
                still_open += 1;
            }
        }
        assert_eq!(still_open, 0, "idle sockets still open after 13 s");
        let mut ok = false;
        while !ok && opened.elapsed() < Duration::from_secs(16) {
            ok = matches!(healthz_once(&base).await, Some((200, _, _)));
        }
        assert!(ok, "/healthz is 200 again once the idle sockets are closed");
        eprintln!(
            "{b:?}: /healthz: {status} after {answered_after:?}; all idle closed by {:?}",
            opened.elapsed()
        );
        child.kill().await;
    }
);

/// Asserts the API's error shape and code.
async fn assert_error(resp: reqwest::Response, status: u16, code: &str, what: &str) {
    assert_eq!(resp.status().as_u16(), status, "{what}");
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        ct.starts_with("application/json"),
        "{what}: content-type {ct:?}"
    );
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(v["error"]["code"], code, "{what}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{what}: {v}"
    );
}

both!(
    refusals_outside_handlers_have_the_error_shape,
    |b: Backend| async move {
        let s = TestServer::start(b).await;
        let pid = s.property(&["shop.example"]).await;
        let http = &s.http;

        // 405 on every kind of route.
        for (method, path) in [
            (reqwest::Method::DELETE, "/healthz".to_owned()),
            (reqwest::Method::PUT, "/collect".to_owned()),
            (reqwest::Method::DELETE, "/go/some-link".to_owned()),
            (reqwest::Method::PUT, "/postback/some-token".to_owned()),
            (reqwest::Method::PUT, format!("/api/v1/properties/{pid}")),
            (reqwest::Method::DELETE, "/metrics".to_owned()),
        ] {
            let r = http
                .request(method.clone(), s.url(&path))
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .expect("request");
            assert!(r.headers().contains_key("allow"), "{method} {path}");
            assert_error(r, 405, "method_not_allowed", &format!("{method} {path}")).await;
        }
        // The dashboard's own routes: never an empty body.
        let r = http.delete(s.url("/login")).send().await.expect("request");
        assert_eq!(r.status(), 405);
        assert!(!r.bytes().await.expect("body").is_empty(), "DELETE /login");

        // Bad query strings.
        for q in ["limit=abc", "bogus=1", "limit=1&limit=2"] {
            for path in [
                format!("/api/v1/properties/{pid}/conversions?{q}"),
                format!("/api/v1/properties/{pid}/deliveries?{q}"),
            ] {
                let r = http
                    .get(s.url(&path))
                    .bearer_auth(MASTER_KEY)
                    .send()
                    .await
                    .expect("request");
                assert_error(r, 400, "invalid_query", &path).await;
            }
        }

        // Paths that are not UTF-8.
        for path in [
            "/go/%FF%FE".to_owned(),
            "/postback/%C3%28".to_owned(),
            "/t/%FF/scan".to_owned(),
            "/api/v1/properties/%FF".to_owned(),
            format!("/api/v1/properties/{pid}/clicks/%E2%82"),
        ] {
            let r = http
                .get(s.url(&path))
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .expect("request");
            assert_error(r, 400, "invalid_path", &path).await;
        }

        // Request targets over the limit (8 KiB by default).
        let long = "a".repeat(9000);
        for path in [
            format!("/healthz?x={long}"),
            format!("/go/{long}"),
            format!("/postback/{long}"),
            format!("/api/v1/properties?x={long}"),
            format!("/collect?x={long}"),
        ] {
            let r = http
                .get(s.url(&path))
                .bearer_auth(MASTER_KEY)
                .send()
                .await
                .expect("request");
            assert_error(r, 414, "uri_too_long", &path[..20]).await;
        }

        // Unknown routes.
        let r = http.get(s.url("/nope/%FF")).send().await.expect("request");
        assert_error(r, 404, "not_found", "/nope/%FF").await;
        s.stop().await;
    }
);

both!(metrics_token_and_listener, |b: Backend| async move {
    // A token: refused without it, or with another.
    let db = TestDb::new(b).await;
    let mut cfg = support::config(&db);
    cfg.metrics.token = Some(
        serde_json::from_value(serde_json::json!("metrics-token-0123456789")).expect("secret"),
    );
    let s = TestServer::start_with(db, cfg).await;
    let r = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_error(r, 401, "unauthorized", "/metrics without a token").await;
    for wrong in ["metrics-token-012345678", MASTER_KEY] {
        let r = s
            .http
            .get(s.url("/metrics"))
            .bearer_auth(wrong)
            .send()
            .await
            .expect("metrics");
        assert_error(r, 401, "unauthorized", "/metrics with another token").await;
    }
    let r = s
        .http
        .get(s.url("/metrics"))
        .bearer_auth("metrics-token-0123456789")
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(r.text().await.expect("text").contains("clicktrail_"));
    s.stop().await;

    // A listener of its own: not on the main address any more.
    let db = TestDb::new(b).await;
    let mut cfg = support::config(&db);
    cfg.metrics.listen = Some("127.0.0.1:0".parse().expect("addr"));
    let s = TestServer::start_with(db, cfg).await;
    let r = s.http.get(s.url("/metrics")).send().await.expect("metrics");
    assert_error(r, 404, "not_found", "/metrics on the main listener").await;
    let maddr = s.server.metrics_addr.expect("metrics address");
    let r = s
        .http
        .get(format!("http://{maddr}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    let r = s
        .http
        .get(format!("http://{maddr}/healthz"))
        .send()
        .await
        .expect("healthz on the metrics listener");
    assert_error(r, 404, "not_found", "/healthz on the metrics listener").await;
    s.stop().await;
});
