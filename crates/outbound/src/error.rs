//! Why an outbound fetch was refused or failed.
//!
//! Messages name at most a host, a port or a status: never a full URL,
//! whose query may carry a security key or token, and never the text of a
//! `reqwest::Error`, which embeds the URL.

use std::error::Error as StdError;
use std::time::Duration;

/// An outbound fetch refused by the policy or failed on the way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("the URL is not valid: {0}")]
    InvalidUrl(&'static str),
    #[error("only http and https URLs may be fetched, not {scheme}:")]
    SchemeNotAllowed { scheme: String },
    #[error("{host} is not allowed: {reason}")]
    AddressNotAllowed { host: String, reason: &'static str },
    #[error("port {port} is not allowed")]
    PortNotAllowed { port: u16 },
    #[error("more than {max} redirects")]
    TooManyRedirects { max: usize },
    #[error("the redirects loop back to an earlier URL")]
    RedirectLoop,
    #[error("a redirect ({status}) has no usable Location header")]
    BadRedirect { status: u16 },
    #[error("no answer within {} s", .limit.as_secs_f64())]
    Timeout { limit: Duration },
    #[error("the name {host} could not be resolved")]
    Dns { host: String },
    #[error("could not connect to {host}")]
    Connect { host: String },
    #[error("HTTP error talking to {host}: {detail}")]
    Http { host: String, detail: &'static str },
    #[error("the response body is larger than {max} bytes")]
    BodyTooLarge { max: usize },
    #[error("the response is {content_type}, not a web page")]
    NotHtml { content_type: String },
    #[error("the HTTP client could not be built")]
    Client,
}

impl OutboundError {
    /// Stable snake_case code for API errors and logs.
    pub fn code(&self) -> &'static str {
        match self {
            OutboundError::InvalidUrl(_) => "invalid_url",
            OutboundError::SchemeNotAllowed { .. } => "scheme_not_allowed",
            OutboundError::AddressNotAllowed { .. } => "address_not_allowed",
            OutboundError::PortNotAllowed { .. } => "port_not_allowed",
            OutboundError::TooManyRedirects { .. } => "too_many_redirects",
            OutboundError::RedirectLoop => "redirect_loop",
            OutboundError::BadRedirect { .. } => "bad_redirect",
            OutboundError::Timeout { .. } => "timeout",
            OutboundError::Dns { .. } => "dns",
            OutboundError::Connect { .. } => "connect",
            OutboundError::Http { .. } => "http",
            OutboundError::BodyTooLarge { .. } => "body_too_large",
            OutboundError::NotHtml { .. } => "not_html",
            OutboundError::Client => "client",
        }
    }

    /// Whether the policy refused the fetch (as opposed to the network or
    /// the remote server failing): the caller's input is at fault, so a 4xx.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            OutboundError::InvalidUrl(_)
                | OutboundError::SchemeNotAllowed { .. }
                | OutboundError::AddressNotAllowed { .. }
                | OutboundError::PortNotAllowed { .. }
        )
    }

    /// The policy's refusal inside a failed request's error chain (the
    /// guarded resolver refusing every address a name resolves to), when
    /// that is why the request failed. Callers that send with their own
    /// request code (the ad destinations) use it to tell a refused address,
    /// which no retry will change, from a connection that failed.
    pub fn refusal_in(err: &(dyn StdError + 'static)) -> Option<OutboundError> {
        let mut source: Option<&(dyn StdError + 'static)> = Some(err);
        while let Some(e) = source {
            if let Some(blocked) = e.downcast_ref::<crate::resolver::ResolveError>() {
                let found = blocked.to_outbound();
                return found.is_refusal().then_some(found);
            }
            source = e.source();
        }
        None
    }

    /// Maps a `reqwest` failure of a request to `host`, recognising the
    /// guarded resolver's refusals inside it.
    pub(crate) fn from_reqwest(err: &reqwest::Error, host: &str, timeout: Duration) -> Self {
        let mut source: Option<&(dyn StdError + 'static)> = err.source();
        while let Some(e) = source {
            if let Some(blocked) = e.downcast_ref::<crate::resolver::ResolveError>() {
                return blocked.to_outbound();
            }
            source = e.source();
        }
        if err.is_timeout() {
            OutboundError::Timeout { limit: timeout }
        } else if err.is_connect() {
            OutboundError::Connect {
                host: host.to_owned(),
            }
        } else if err.is_body() || err.is_decode() {
            OutboundError::Http {
                host: host.to_owned(),
                detail: "the response body could not be read",
            }
        } else {
            OutboundError::Http {
                host: host.to_owned(),
                detail: "the request failed",
            }
        }
    }
}
