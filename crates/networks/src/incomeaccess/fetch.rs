//! The HTTP side of a poll: one `affreporting.asp` request with the
//! caller's client (the server's, with its SSRF guard), a whole-request
//! timeout, error classification, and the body streamed into the parser.

use std::io;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use tokio_util::io::StreamReader;

use super::error::{KnownMessage, PollError, classify_message, sanitize};
use super::parse::{FetchSummary, RowReader, StreamFailure};
use super::row::ReportRow;
use super::settings::{ReportRequest, SecurityKey};

/// The body of an answer as an `AsyncRead`.
pub type BodyReader = StreamReader<BoxStream<'static, io::Result<Bytes>>, Bytes>;

/// A report being read from the network.
pub type ReportReader = RowReader<BodyReader>;

/// How much of an error answer is read to find out what it says.
const ERROR_BODY_PREFIX: usize = 16 * 1024;

fn from_reqwest(e: reqwest::Error, secs: u64) -> PollError {
    if e.is_timeout() {
        return PollError::Timeout { secs };
    }
    // The URL holds the key: drop it, then redact whatever is left.
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    PollError::Transport {
        detail: sanitize(&text),
    }
}

/// Sends the request and returns a reader of its rows. Errors known from
/// the status line are returned here; errors in the body (faults,
/// messages, HTML pages, a stream cut short, the timeout) come from
/// [`RowReader::next_row`].
pub async fn open_report(
    client: &reqwest::Client,
    req: &ReportRequest,
    key: &SecurityKey,
) -> Result<ReportReader, PollError> {
    let secs = req.timeout.as_secs().max(1);
    let resp = client
        .get(req.url(key))
        .timeout(req.timeout)
        .header(
            reqwest::header::ACCEPT,
            "text/xml, application/xml, text/csv, text/plain;q=0.9, */*;q=0.5",
        )
        .send()
        .await
        .map_err(|e| from_reqwest(e, secs).without_secret(key.expose()))?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(PollError::ServerError {
            status: status.as_u16(),
        });
    }
    if !status.is_success() {
        let text = read_prefix(resp).await;
        if let Some(KnownMessage::Error(e)) = classify_message(&text) {
            return Err(e.without_secret(key.expose()));
        }
        // IIS answers 401/403 to callers outside an IP restriction: the same
        // remedy as "no permission".
        if matches!(status.as_u16(), 401 | 403) {
            return Err(PollError::NoPermission {
                detail: format!("HTTP {}", status.as_u16()),
            });
        }
        return Err(PollError::HttpStatus {
            status: status.as_u16(),
        });
    }
    let body = resp
        .bytes_stream()
        .map_err(move |e| io::Error::other(StreamFailure(from_reqwest(e, secs))))
        .boxed();
    Ok(RowReader::new(StreamReader::new(body), req.period.clone())
        .with_status(status.as_u16())
        .with_secret(key.expose()))
}

async fn read_prefix(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while buf.len() < ERROR_BODY_PREFIX {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            Ok(None) | Err(_) => break,
        }
    }
    buf.truncate(ERROR_BODY_PREFIX);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Fetches one report and hands each row to `sink`, streaming.
pub async fn fetch_report(
    client: &reqwest::Client,
    req: &ReportRequest,
    key: &SecurityKey,
    mut sink: impl FnMut(ReportRow),
) -> Result<FetchSummary, PollError> {
    let mut reader = open_report(client, req, key).await?;
    while let Some(row) = reader.next_row().await? {
        sink(row);
    }
    Ok(reader.summary())
}
