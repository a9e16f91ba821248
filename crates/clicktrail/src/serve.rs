//! The HTTP listener's accept loop, in place of `axum::serve`, which sets
//! no timeout and no limit: a connection that sends nothing, half a
//! header, or a `Content-Length` and no body held its socket forever, and
//! enough of them used up the process's open files so that nothing else
//! could connect.
//!
//! Here each connection is served by hyper (HTTP/1.1) with a header-read
//! timeout, which also closes idle keep-alive connections (the body and
//! request timeouts are layers of the router, see
//! `clicktrail_http::with_common_layers`); at most `max_connections` are
//! served at once, and the ones beyond are answered `503` with
//! `Retry-After` and closed, or, when many are already waiting for that
//! answer, closed at once. At shutdown the listener closes, idle
//! connections close, in-flight requests get a grace period, and the
//! connections still open after it are closed.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Connections beyond the cap being answered 503 at once; more are closed
/// without an answer (each holds a file only for a moment, but a flood of
/// them must not use up the files the cap protects).
const SHEDDING_AT_ONCE: usize = 64;

/// How long a shed connection is kept to deliver its 503.
const SHED_LINGER: Duration = Duration::from_secs(1);

/// The answer to a connection beyond the cap, sent without reading the
/// request (reading it is what an idle client would never let finish).
static OVERLOADED: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":{"code":"overloaded","message":"the server has too many open connections; try again shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// How a listener serves its connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Time to send a request's headers, and to keep an idle connection.
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
    /// Time in-flight requests get at shutdown.
    pub shutdown_grace: Duration,
}

/// Serves `app` on `listener` until `shutdown` is cancelled, then closes
/// the connections as the module says; returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    opts: ServeOptions,
    shutdown: CancellationToken,
) {
    let cap = opts.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let permits = u32::try_from(cap).unwrap_or(u32::MAX);
    let cap = permits as usize;
    let open = Arc::new(Semaphore::new(cap));
    let shedding = Arc::new(Semaphore::new(SHEDDING_AT_ONCE));
    // Closes the connections still open after the grace period.
    let hard_stop = CancellationToken::new();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout);
    let builder = Arc::new(builder);

    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of files (EMFILE/ENFILE) and the like: wait a moment
                // rather than spin; the connections in the backlog wait.
                metrics::counter!("clicktrail_http_accept_errors_total").increment(1);
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            shed(stream, &shedding);
            continue;
        };
        let svc = TowerToHyperService::new(app.clone().map_request(
            move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            },
        ));
        let builder = builder.clone();
        let (shutdown, hard_stop) = (shutdown.clone(), hard_stop.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let gauge = metrics::gauge!("clicktrail_http_connections_open");
            gauge.increment(1.0);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                r = conn.as_mut() => Some(r),
                () = shutdown.cancelled() => {
                    // Idle: closes now; busy: after the response in flight.
                    conn.as_mut().graceful_shutdown();
                    tokio::select! {
                        r = conn.as_mut() => Some(r),
                        () = hard_stop.cancelled() => None,
                    }
                }
            };
            if let Some(Err(e)) = served {
                let reason = if e.is_timeout() {
                    "header_timeout"
                } else if e.is_incomplete_message() {
                    "incomplete"
                } else {
                    "error"
                };
                metrics::counter!("clicktrail_http_connections_closed_total", "reason" => reason)
                    .increment(1);
                tracing::debug!(error = %e, reason, "connection ended");
            }
            gauge.decrement(1.0);
        });
    }
    drop(listener);

    // Every connection holds a permit: all of them back means all closed.
    let all_closed = open.acquire_many(permits);
    let mut all_closed = std::pin::pin!(all_closed);
    if tokio::time::timeout(opts.shutdown_grace, all_closed.as_mut())
        .await
        .is_err()
    {
        tracing::warn!(
            open = cap - open.available_permits(),
            grace_secs = opts.shutdown_grace.as_secs(),
            "connections still open after the shutdown grace period; closing them"
        );
        hard_stop.cancel();
        let _ = all_closed.await;
    }
}

/// Answers a connection beyond the cap with a 503 and closes it, or closes
/// it at once when too many are being answered already.
fn shed(mut stream: TcpStream, shedding: &Arc<Semaphore>) {
    let Ok(permit) = shedding.clone().try_acquire_owned() else {
        metrics::counter!("clicktrail_http_connections_shed_total", "answer" => "closed")
            .increment(1);
        drop(stream);
        return;
    };
    metrics::counter!("clicktrail_http_connections_shed_total", "answer" => "503").increment(1);
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(SHED_LINGER, async {
            stream.write_all(&OVERLOADED).await?;
            stream.shutdown().await?;
            // Read what the client sends until it closes: closing with
            // unread data would reset the connection, and the client could
            // lose the answer.
            let mut buf = [0u8; 2048];
            while stream.read(&mut buf).await? > 0 {}
            Ok::<_, std::io::Error>(())
        })
        .await;
    });
}

/// Errors about one connection (it went away before it was accepted),
/// not about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Raises the open-file soft limit to the hard limit (services often start
/// with 1,024 while the hard limit is far higher); returns the limit in
/// force.
pub fn raise_open_files_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-file limit");
            open_files_limit()
        }
    }
}

/// The open-file soft limit (a large number where there is none).
pub fn open_files_limit() -> u64 {
    rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(65_536, |(soft, _)| soft)
}
