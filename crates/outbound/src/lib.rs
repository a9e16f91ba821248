//! Server-side HTTP fetches of URLs that users supply, guarded against
//! server-side request forgery (SSRF).
//!
//! Used by the AutoScan redirect resolver, the link checker, the Income
//! Access connector (`settings.api_url`) and the ad destinations
//! (`settings.endpoint`). Each of those URLs comes from a user, so each
//! fetch goes through three guards:
//!
//! 1. [`OutboundPolicy::check_url`] before any request: only `http(s)`,
//!    allowed ports, no literal private/metadata address, no private name;
//! 2. the client's DNS resolver ([`GuardedResolver`]) checks every address
//!    a name resolves to, and the client connects only to those addresses;
//! 3. the client never follows redirects by itself: [`Outbound`] follows
//!    them hop by hop, checking each hop like the first, with a hop limit,
//!    loop detection and one deadline for the whole chain.
//!
//! The client also ignores proxy environment variables (a proxy would
//! resolve names itself, out of the resolver's sight) and sends
//! `User-Agent: clicktrail/<version>`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), clicktrail_outbound::OutboundError> {
//! use std::time::Duration;
//! use clicktrail_outbound::{Outbound, OutboundPolicy};
//!
//! let out = Outbound::new(OutboundPolicy::strict(), Duration::from_secs(10))?;
//! let start = url::Url::parse("https://example.com/go/offer").unwrap();
//! let chain = out.resolve_redirects(&start, 5, Duration::from_secs(3)).await?;
//! println!("{} -> {}", start, chain.final_url);
//! # Ok(()) }
//! ```

mod error;
mod policy;
mod resolver;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, LOCATION};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use tokio::time::Instant;
use url::Url;

pub use error::OutboundError;
pub use ipnet::IpNet;
pub use policy::{OutboundPolicy, check_url, check_user_url};
pub use resolver::GuardedResolver;

/// The `User-Agent` of every outbound request.
pub const USER_AGENT: &str = concat!("clicktrail/", env!("CARGO_PKG_VERSION"));

/// AutoScan's limits (issue 4): at most 5 redirects, 3 seconds in all.
pub const DEFAULT_MAX_HOPS: usize = 5;
pub const DEFAULT_CHAIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Builds the guarded HTTP client: policy-checked DNS, no automatic
/// redirects, no proxies, rustls, `timeout` per request.
///
/// Requests made with it must still pass [`check_url`] first (literal IP
/// hosts never reach a resolver); [`Outbound`] does both.
pub fn client(
    policy: &OutboundPolicy,
    timeout: Duration,
) -> Result<reqwest::Client, OutboundError> {
    build_client(Arc::new(policy.clone()), timeout)
}

fn build_client(
    policy: Arc<OutboundPolicy>,
    timeout: Duration,
) -> Result<reqwest::Client, OutboundError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .dns_resolver(Arc::new(GuardedResolver::new(policy)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(|_| OutboundError::Client)
}

/// One request of a redirect chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    pub url: Url,
    /// `HEAD` or `GET`.
    pub method: &'static str,
    pub status: u16,
}

/// Where a URL leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectChain {
    /// Every request made, the start first and the final URL last.
    pub hops: Vec<Hop>,
    /// The first URL that did not redirect.
    pub final_url: Url,
    /// Its status (any non-redirect status: 200, 404, ...).
    pub final_status: u16,
}

impl RedirectChain {
    /// Number of redirects followed.
    pub fn redirects(&self) -> usize {
        self.hops.len().saturating_sub(1)
    }
}

/// A redirect chain followed as far as it went ([`Outbound::trace_redirects`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trace {
    /// Every request that was answered, the start first; kept when the
    /// chain failed too.
    pub hops: Vec<Hop>,
    /// The URL the chain was heading to when it ended without an answer
    /// from it: the hop it stopped before (`stop_before`), the URL a loop
    /// came back to, the redirect one too many, or the hop whose request
    /// was refused or failed. `None` when the chain ended at an answer.
    pub unanswered: Option<Url>,
    /// The chain, or why it failed.
    pub result: Result<RedirectChain, OutboundError>,
}

/// A fetched page (the link checker's input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPage {
    pub chain: RedirectChain,
    pub content_type: Option<String>,
    /// The body, decoded as UTF-8 (invalid sequences replaced), at most
    /// `max_bytes` of it.
    pub body: String,
    /// Whether the body was longer than `max_bytes` and cut.
    pub truncated: bool,
}

/// A guarded client with its policy: the way to fetch user-supplied URLs.
#[derive(Debug, Clone)]
pub struct Outbound {
    client: reqwest::Client,
    policy: Arc<OutboundPolicy>,
    timeout: Duration,
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn host_label(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    }
}

fn without_fragment(mut url: Url) -> Url {
    url.set_fragment(None);
    url
}

impl Outbound {
    /// A guarded client for `policy`, with `timeout` per request.
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Self, OutboundError> {
        let policy = Arc::new(policy);
        Ok(Self {
            client: build_client(Arc::clone(&policy), timeout)?,
            policy,
            timeout,
        })
    }

    pub fn policy(&self) -> &OutboundPolicy {
        &self.policy
    }

    /// The underlying client. Call [`check_url`] before using it directly.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A request to `url`, after [`check_url`]. Send it with
    /// [`Outbound::send`] to get policy refusals as typed errors.
    pub fn request(&self, method: Method, url: &Url) -> Result<RequestBuilder, OutboundError> {
        self.policy.check_url(url)?;
        Ok(self.client.request(method, url.clone()))
    }

    /// Sends a request built by [`Outbound::request`], mapping failures to
    /// [`OutboundError`] (a refused resolved address is
    /// `address_not_allowed`).
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, OutboundError> {
        let (client, request) = request.build_split();
        let request =
            request.map_err(|_| OutboundError::InvalidUrl("the request could not be built"))?;
        let host = host_label(request.url());
        client
            .execute(request)
            .await
            .map_err(|e| OutboundError::from_reqwest(&e, &host, self.timeout))
    }

    async fn send_before(
        &self,
        request: RequestBuilder,
        deadline: Instant,
        total: Duration,
    ) -> Result<Response, OutboundError> {
        tokio::time::timeout_at(deadline, self.send(request))
            .await
            .map_err(|_| OutboundError::Timeout { limit: total })?
    }

    fn hop_request(&self, method: Method, url: &Url) -> Result<RequestBuilder, OutboundError> {
        Ok(self
            .request(method, url)?
            .header(ACCEPT, "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"))
    }

    /// Follows redirects from `start`, checking every hop. With `head`,
    /// hops are `HEAD` requests, falling back to `GET` (body unread) when
    /// a server answers 405 or 501; otherwise `GET`. Returns the chain and
    /// the final response, whose body is unread. Every request made is
    /// pushed to `hops` as it is answered, and `unanswered` holds the URL
    /// the chain was heading to when it ended without an answer from it,
    /// so a caller can report how far a failed chain went.
    #[expect(
        clippy::too_many_arguments,
        reason = "private: the public wrappers name the options"
    )]
    async fn follow(
        &self,
        start: &Url,
        max_hops: usize,
        total: Duration,
        head: bool,
        stop_before: &(dyn Fn(&Url) -> bool + Sync),
        hops: &mut Vec<Hop>,
        unanswered: &mut Option<Url>,
    ) -> Result<(RedirectChain, Option<Response>), OutboundError> {
        let deadline = Instant::now() + total;
        let mut url = without_fragment(start.clone());
        let mut seen: HashSet<String> = HashSet::new();
        loop {
            *unanswered = Some(url.clone());
            self.policy.check_url(&url)?;
            if !seen.insert(url.as_str().to_owned()) {
                return Err(OutboundError::RedirectLoop);
            }
            let mut method = if head { Method::HEAD } else { Method::GET };
            let mut response = self
                .send_before(self.hop_request(method.clone(), &url)?, deadline, total)
                .await?;
            if head && matches!(response.status().as_u16(), 405 | 501) {
                drop(response);
                method = Method::GET;
                response = self
                    .send_before(self.hop_request(Method::GET, &url)?, deadline, total)
                    .await?;
            }
            let status = response.status();
            hops.push(Hop {
                url: url.clone(),
                method: if method == Method::HEAD {
                    "HEAD"
                } else {
                    "GET"
                },
                status: status.as_u16(),
            });
            *unanswered = None;
            if !is_redirect(status) {
                let chain = RedirectChain {
                    hops: hops.clone(),
                    final_url: url,
                    final_status: status.as_u16(),
                };
                return Ok((chain, Some(response)));
            }
            let next = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .and_then(|loc| url.join(loc).ok())
                .ok_or(OutboundError::BadRedirect {
                    status: status.as_u16(),
                })?;
            drop(response);
            let next = without_fragment(next);
            if stop_before(&next) {
                // The caller recognises where this leads without asking it
                // (AutoScan must not hit an affiliate tracker: that would
                // record a click at the network).
                *unanswered = Some(next.clone());
                let chain = RedirectChain {
                    hops: hops.clone(),
                    final_url: next,
                    final_status: status.as_u16(),
                };
                return Ok((chain, None));
            }
            if hops.len() > max_hops {
                *unanswered = Some(next);
                return Err(OutboundError::TooManyRedirects { max: max_hops });
            }
            url = next;
        }
    }

    /// [`Outbound::follow`] for callers that keep only its result.
    async fn follow_chain(
        &self,
        start: &Url,
        max_hops: usize,
        total: Duration,
        head: bool,
        stop_before: &(dyn Fn(&Url) -> bool + Sync),
    ) -> Result<(RedirectChain, Option<Response>), OutboundError> {
        let (mut hops, mut unanswered) = (Vec::new(), None);
        self.follow(
            start,
            max_hops,
            total,
            head,
            stop_before,
            &mut hops,
            &mut unanswered,
        )
        .await
    }

    /// Where `start` leads: follows at most `max_hops` redirects with
    /// `HEAD` requests (headers only), within `total_timeout`, checking
    /// every hop's URL and resolved address. Stops at the first response
    /// that is not a redirect, whatever its status.
    pub async fn resolve_redirects(
        &self,
        start: &Url,
        max_hops: usize,
        total_timeout: Duration,
    ) -> Result<RedirectChain, OutboundError> {
        let (chain, _response) = self
            .follow_chain(start, max_hops, total_timeout, true, &|_| false)
            .await?;
        Ok(chain)
    }

    /// Like [`Outbound::resolve_redirects`], but stops before requesting a
    /// hop for which `stop_before` is true, and returns that hop as the
    /// final URL (with the status of the redirect that named it).
    pub async fn resolve_redirects_until(
        &self,
        start: &Url,
        max_hops: usize,
        total_timeout: Duration,
        stop_before: &(dyn Fn(&Url) -> bool + Sync),
    ) -> Result<RedirectChain, OutboundError> {
        let (chain, _response) = self
            .follow_chain(start, max_hops, total_timeout, true, stop_before)
            .await?;
        Ok(chain)
    }

    /// Like [`Outbound::resolve_redirects_until`], but keeps how far the
    /// chain went when it fails: the hops answered and the URL it was
    /// heading to (the redirect checker reports a loop or a refused hop
    /// with its chain). Each hop is checked like the first; `timeout`
    /// (of [`Outbound::new`]) bounds each request and `total_timeout` the
    /// chain.
    pub async fn trace_redirects(
        &self,
        start: &Url,
        max_hops: usize,
        total_timeout: Duration,
        stop_before: &(dyn Fn(&Url) -> bool + Sync),
    ) -> Trace {
        let (mut hops, mut unanswered) = (Vec::new(), None);
        let result = self
            .follow(
                start,
                max_hops,
                total_timeout,
                true,
                stop_before,
                &mut hops,
                &mut unanswered,
            )
            .await
            .map(|(chain, _response)| chain);
        Trace {
            hops,
            unanswered,
            result,
        }
    }

    /// Fetches a web page for the link checker: follows redirects like
    /// [`Outbound::resolve_redirects`] (with `GET`), then reads at most
    /// `max_bytes` of the body, all within `total_timeout`. A response
    /// whose content type is neither HTML nor plain text is refused with
    /// `not_html`.
    pub async fn fetch_text(
        &self,
        url: &Url,
        max_hops: usize,
        max_bytes: usize,
        total_timeout: Duration,
    ) -> Result<FetchedPage, OutboundError> {
        let deadline = Instant::now() + total_timeout;
        let (chain, response) = self
            .follow_chain(url, max_hops, total_timeout, false, &|_| false)
            .await?;
        // Without a stop predicate the chain always ends with a response.
        let response = response.ok_or(OutboundError::BadRedirect {
            status: chain.final_status,
        })?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(ct) = &content_type {
            let essence = ct
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if !matches!(
                essence.as_str(),
                "" | "text/html" | "application/xhtml+xml" | "text/plain"
            ) {
                return Err(OutboundError::NotHtml {
                    content_type: essence.chars().take(100).collect(),
                });
            }
        }
        let host = host_label(&chain.final_url);
        let (bytes, truncated) = tokio::time::timeout_at(
            deadline,
            read_prefix(response, max_bytes, &host, self.timeout),
        )
        .await
        .map_err(|_| OutboundError::Timeout {
            limit: total_timeout,
        })??;
        Ok(FetchedPage {
            chain,
            content_type,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            truncated,
        })
    }
}

/// Reads at most `max_bytes` of a body; `true` when there was more.
async fn read_prefix(
    mut response: Response,
    max_bytes: usize,
    host: &str,
    timeout: Duration,
) -> Result<(Vec<u8>, bool), OutboundError> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| OutboundError::from_reqwest(&e, host, timeout))?
    {
        let room = max_bytes - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// Reads a whole response body, refusing one over `max_bytes`
/// (`body_too_large`) without reading further: for API responses
/// (connectors, destinations) that must be complete.
pub async fn read_body_limited(
    response: Response,
    max_bytes: usize,
) -> Result<Vec<u8>, OutboundError> {
    let host = host_label(response.url());
    if response
        .content_length()
        .is_some_and(|n| n > max_bytes as u64)
    {
        return Err(OutboundError::BodyTooLarge { max: max_bytes });
    }
    let (body, truncated) = read_prefix(response, max_bytes, &host, Duration::ZERO).await?;
    if truncated {
        return Err(OutboundError::BodyTooLarge { max: max_bytes });
    }
    Ok(body)
}

/// [`Outbound::resolve_redirects`] with a client from [`client`].
pub async fn resolve_redirects(
    client: &reqwest::Client,
    policy: &OutboundPolicy,
    start: &Url,
    max_hops: usize,
    total_timeout: Duration,
) -> Result<RedirectChain, OutboundError> {
    Outbound {
        client: client.clone(),
        policy: Arc::new(policy.clone()),
        timeout: total_timeout,
    }
    .resolve_redirects(start, max_hops, total_timeout)
    .await
}

/// [`Outbound::fetch_text`] with a client from [`client`].
pub async fn fetch_text(
    client: &reqwest::Client,
    policy: &OutboundPolicy,
    url: &Url,
    max_bytes: usize,
    total_timeout: Duration,
) -> Result<FetchedPage, OutboundError> {
    Outbound {
        client: client.clone(),
        policy: Arc::new(policy.clone()),
        timeout: total_timeout,
    }
    .fetch_text(url, DEFAULT_MAX_HOPS, max_bytes, total_timeout)
    .await
}
