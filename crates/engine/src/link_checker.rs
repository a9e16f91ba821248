//! The link checker: reads a page of a property (its URL must be on the
//! property's domains) and, for each link of a redirect plugin on the site
//! (`/go/x`, `/out/x`, `/recommends/x`, ...:
//! [`clicktrail_domain::links::is_redirect_plugin_path`]), whether the
//! click id the tag adds to it reaches the affiliate network.
//!
//! Why: a plugin link (ThirstyAffiliates, Pretty Links, ...) matches no
//! network's link rules, so the tag learns its group from AutoScan (or
//! from `data-tracking-group` / `rel`) and sets the group's subid on the
//! *plugin's* URL (`/go/gala?c=<click id>`). The click id reaches the
//! network only if the plugin forwards the query string to its
//! destination, which most plugins do not by default.
//!
//! Each link is checked as the tag and a visitor would use it, in two
//! passes, each a redirect chain followed hop by hop through the guarded
//! client ([`Outbound::trace_redirects`]: every hop's URL and resolved
//! address checked, at most [`MAX_HOPS`] redirects, `HEAD` with a `GET`
//! fallback, no body read, [`HOP_TIMEOUT`] a request and
//! [`CHAIN_TIMEOUT`] a chain):
//!
//! 1. the link as it is, to learn which network it leads to (what AutoScan
//!    does; skipped when the link names its group by hand);
//! 2. the link tagged with a test click id exactly as the tag would
//!    ([`tag_href`] with that group), to see whether the click id is still
//!    in the URL the chain ends at.
//!
//! Like AutoScan, a chain stops *before* requesting an affiliate link of a
//! known network (asking the network's tracker would record a click
//! there): that URL is the chain's end, and it is read, not fetched.
//!
//! The check answers per link a stable outcome ([`RedirectOutcome`]), the
//! chain and the final URL with the test click id replaced by
//! [`CLICK_ID_PLACEHOLDER`], and, when the click id was dropped, how to
//! turn on the plugin's parameter forwarding.
//!
//! What one check can make the server fetch is bounded as AutoScan's scans
//! are ([`crate::budget`]): the page and at most [`MAX_REDIRECT_LINKS`]
//! links, at most [`MAX_REQUESTS_PER_CHECK`] requests a check and
//! [`MAX_REQUESTS_PER_MINUTE`] a property a minute; a link that does not
//! fit is answered `rate_limited`.

use std::sync::Arc;
use std::time::Duration;

use clicktrail_domain::clickid;
use clicktrail_domain::links::{
    CLICK_ID_TOKEN, ClickIdAt, OPT_OUT_GROUP, TrackingGroup, find_click_id, find_group_for_url,
    glob_match, is_redirect_plugin_path, manual_group, resolve_href, tag_href,
};
use clicktrail_domain::property::host_allowed;
use clicktrail_networks::catalog::Catalog;
use clicktrail_outbound::{
    DEFAULT_MAX_HOPS, FetchedPage, Outbound, OutboundError, OutboundPolicy, Trace,
};
use clicktrail_store::properties::Property;
use futures::StreamExt as _;
use http::StatusCode;
use serde::Serialize;
use url::Url;
use uuid::Uuid;

use crate::auth::Caller;
use crate::budget::{Budget, PropertyBudgets};
use crate::error::{ServiceError, ServiceResult};
use crate::properties::Properties;

/// Most of a page read.
pub const MAX_PAGE_BYTES: usize = 2 * 1024 * 1024;
/// Most links read from a page.
pub const MAX_LINKS: usize = 500;
/// Longest a page fetch may take, redirects included.
pub const PAGE_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest one request of a page fetch may take.
const PAGE_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Most redirect-plugin links checked in one check (the others are
/// counted as not checked).
pub const MAX_REDIRECT_LINKS: usize = 20;
/// Most redirects a link's chain may take.
pub const MAX_HOPS: usize = 10;
/// Longest one request of a chain may take.
pub const HOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest one chain may take.
pub const CHAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Most outbound requests (the page's, and every chain's hops) one check
/// may make.
pub const MAX_REQUESTS_PER_CHECK: i64 = 120;
/// Most outbound requests the link checker makes for one property in a
/// minute.
pub const MAX_REQUESTS_PER_MINUTE: i64 = 240;
/// What the test click id is shown as in chains and URLs.
pub const CLICK_ID_PLACEHOLDER: &str = "{click_id}";
/// Links checked at once: few, so that a page of many links does not
/// reserve the whole budget before the first chain gives its rest back.
const CONCURRENCY: usize = 4;
/// Requests a chain may take: the first, and one per redirect.
const PER_CHAIN: i64 = MAX_HOPS as i64 + 1;
/// Requests a page fetch may take.
const PER_PAGE: i64 = DEFAULT_MAX_HOPS as i64 + 1;

/// How to make a redirect plugin forward the click id (the fix of
/// `click_id_dropped`).
pub const PARAMETER_FORWARDING_FIX: &str = "Turn on parameter forwarding (pass the query string to the destination) in the redirect plugin. \
ThirstyAffiliates: turn on parameter forwarding, \"Pass query strings to destination url?\", in its settings or on the link. \
Pretty Links: tick \"Parameter Forwarding\" on the link. \
Another plugin, or a redirect of your server: make it add the query string it receives to the destination URL.";

/// A link of a checked page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageLink {
    pub href: String,
    pub text: String,
    pub data_tracking_group: Option<String>,
    pub rel: Option<String>,
}

/// The `<a href>` links of an HTML page (at most [`MAX_LINKS`]) and its
/// `<base href>`, in order.
pub fn extract_links(html_text: &str) -> (Vec<PageLink>, Option<String>) {
    use html5gum::{Token, Tokenizer};
    let mut links = Vec::new();
    let mut base = None;
    let mut open: Option<PageLink> = None;
    let s = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    for token in Tokenizer::new(html_text).flatten() {
        match token {
            Token::StartTag(tag) => {
                let name = s(&tag.name).to_ascii_lowercase();
                let attr = |n: &str| {
                    tag.attributes
                        .iter()
                        .find(|(k, _)| s(k).eq_ignore_ascii_case(n))
                        .map(|(_, v)| s(v))
                };
                if name == "base" && base.is_none() {
                    base = attr("href");
                } else if name == "a" {
                    if let Some(l) = open.take() {
                        links.push(l);
                    }
                    if let Some(href) = attr("href") {
                        open = Some(PageLink {
                            href,
                            text: String::new(),
                            data_tracking_group: attr("data-tracking-group"),
                            rel: attr("rel"),
                        });
                    }
                }
            }
            Token::String(t) => {
                if let Some(l) = open.as_mut()
                    && l.text.len() < 200
                {
                    l.text.push_str(&s(&t));
                }
            }
            Token::EndTag(tag) if s(&tag.name).eq_ignore_ascii_case("a") => {
                if let Some(l) = open.take() {
                    links.push(l);
                }
            }
            _ => {}
        }
        if links.len() >= MAX_LINKS {
            break;
        }
    }
    if let Some(l) = open.take() {
        links.push(l);
    }
    for l in &mut links {
        l.text = l.text.split_whitespace().collect::<Vec<_>>().join(" ");
    }
    (links, base)
}

/// Why a page could not be checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PageError {
    /// Not an absolute http(s) URL.
    InvalidUrl,
    /// Not on one of the property's domains (they are listed).
    NotOnDomains(Vec<String>),
    /// The property's outbound budget for the minute is spent.
    RateLimited,
    /// The fetch was refused or failed.
    Fetch(OutboundError),
}

impl PageError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            PageError::InvalidUrl => "invalid_url",
            PageError::NotOnDomains(_) => "domain_not_allowed",
            PageError::RateLimited => "rate_limited",
            PageError::Fetch(e) => e.code(),
        }
    }

    /// What went wrong and what to do, for the page URL's field.
    pub fn message(&self) -> String {
        match self {
            PageError::InvalidUrl => {
                "Give a full page URL such as https://example.com/review.".to_owned()
            }
            PageError::NotOnDomains(domains) => format!(
                "Give a page of this property's domains ({}).",
                domains.join(", ")
            ),
            PageError::RateLimited => format!(
                "Too many link checks for this property in the last minute (at most {MAX_REQUESTS_PER_MINUTE} requests): try again in a minute."
            ),
            PageError::Fetch(e) => {
                format!("The page could not be fetched: {e} ({}).", e.code())
            }
        }
    }
}

impl From<PageError> for ServiceError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::RateLimited => {
                let mut err =
                    ServiceError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.message());
                err.retry_after = Some(60);
                err
            }
            _ => ServiceError::field("url", e.code(), e.message()),
        }
    }
}

/// A fetched page and its links, with the check's budget (the redirect
/// check takes from what the page fetch left).
#[derive(Debug)]
pub struct CheckedPage {
    pub page: FetchedPage,
    pub links: Vec<PageLink>,
    /// What the page's relative links resolve against: its `<base href>`,
    /// else its final URL.
    pub base: Url,
    budget: Budget,
}

/// What became of the click id on one redirect-plugin link (stable
/// snake_case codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RedirectOutcome {
    /// The chain ends at a network's link that still carries the click id.
    ClickIdKept,
    /// The chain ends at a network's link without it: the plugin does not
    /// forward the query string.
    ClickIdDropped,
    /// The chain ends at a URL that matches no network's link rules.
    NotAffiliate,
    /// The redirects come back to a URL already visited.
    RedirectLoop,
    /// More than [`MAX_HOPS`] redirects.
    TooManyRedirects,
    /// A hop did not answer (name, connection, timeout, a redirect without
    /// a usable `Location`).
    Unreachable,
    /// A hop leads to an address or URL this server does not fetch.
    RefusedAddress,
    /// Not checked: the check's or the property's outbound budget is spent.
    RateLimited,
}

impl RedirectOutcome {
    /// The stable code (as serialised).
    pub fn code(self) -> &'static str {
        match self {
            Self::ClickIdKept => "click_id_kept",
            Self::ClickIdDropped => "click_id_dropped",
            Self::NotAffiliate => "not_affiliate",
            Self::RedirectLoop => "redirect_loop",
            Self::TooManyRedirects => "too_many_redirects",
            Self::Unreachable => "unreachable",
            Self::RefusedAddress => "refused_address",
            Self::RateLimited => "rate_limited",
        }
    }

    fn of_error(e: &OutboundError) -> Self {
        match e {
            OutboundError::RedirectLoop => Self::RedirectLoop,
            OutboundError::TooManyRedirects { .. } => Self::TooManyRedirects,
            e if e.is_refusal() => Self::RefusedAddress,
            _ => Self::Unreachable,
        }
    }
}

/// One request of a chain, as shown.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HopView {
    /// The URL, the test click id replaced by [`CLICK_ID_PLACEHOLDER`].
    pub url: String,
    pub method: &'static str,
    pub status: u16,
}

/// How the tag treats a redirect-plugin link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TaggedBy {
    /// `data-tracking-group` or a `rel` token names an installed group.
    DataTrackingGroup,
    /// AutoScan resolves the link to an installed group.
    Autoscan,
    /// Only its `--CLICK-ID--` token is replaced.
    ClickIdToken,
}

/// The check of one redirect-plugin link.
#[derive(Debug, Clone, Serialize)]
pub struct RedirectCheck {
    /// The href as written on the page.
    pub href: String,
    /// The link's text.
    pub text: String,
    /// The link, resolved against the page.
    pub url: String,
    pub outcome: RedirectOutcome,
    /// Whether the click id reaches the network (`click_id_kept`).
    pub ok: bool,
    /// What was found, in plain language.
    pub message: String,
    /// What to change, when something should be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// The tracking group of the network the link leads to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<String>,
    /// Whether an installed integration of the property uses that group.
    pub installed: bool,
    /// The parameter the network reads the click id from (the group's
    /// subid parameter).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    /// How the tag tags the link; absent when it does not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tagged_by: Option<TaggedBy>,
    /// Why the tag does not tag the link, and what to change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_note: Option<String>,
    /// The link as the tag sends the visitor to it (click id shown as
    /// [`CLICK_ID_PLACEHOLDER`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tagged_url: Option<String>,
    /// The requests made, in order.
    pub chain: Vec<HopView>,
    /// Where the chain ends: the network's link it stopped before (not
    /// requested), or the last URL that answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// Where the final URL carries the click id: the network's parameter
    /// (`param`), another parameter's name, or `path`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub click_id_in: Option<String>,
    /// The outbound error's code, when a hop failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<&'static str>,
}

/// The redirect-plugin links of a page and what became of the click id on
/// each.
#[derive(Debug, Clone, Serialize)]
pub struct RedirectReport {
    pub links: Vec<RedirectCheck>,
    /// Redirect-plugin links beyond [`MAX_REDIRECT_LINKS`], not checked.
    pub not_checked: usize,
}

/// The answer of `POST /api/v1/properties/{id}/check-links`.
#[derive(Debug, Clone, Serialize)]
pub struct PageCheck {
    /// The page, after its redirects.
    pub url: String,
    /// Redirects the page took.
    pub redirects: usize,
    /// Whether only the first [`MAX_PAGE_BYTES`] of the page were read.
    pub truncated: bool,
    /// Links found on the page.
    pub links: usize,
    /// The redirect-plugin links among them.
    pub redirect_links: Vec<RedirectCheck>,
    /// Redirect-plugin links beyond [`MAX_REDIRECT_LINKS`], not checked.
    pub not_checked: usize,
}

/// The link checker service.
pub struct LinkChecker {
    /// For pages: a longer timeout a request.
    pages: Outbound,
    /// For redirect chains: [`HOP_TIMEOUT`] a request.
    hops: Outbound,
    properties: Arc<Properties>,
    catalog: Arc<Catalog>,
    budgets: PropertyBudgets,
}

impl std::fmt::Debug for LinkChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkChecker")
    }
}

/// What one check of links shares.
struct Ctx<'a> {
    property: &'a Property,
    /// The page's URL after its redirects (the tag's `location`).
    page: &'a Url,
    base: &'a Url,
    installed: &'a [TrackingGroup],
    /// The installed groups, then the catalog's others: what a chain's end
    /// is matched against.
    known: &'a [TrackingGroup],
    click_id: &'a str,
    budget: &'a Budget,
}

impl LinkChecker {
    /// Builds the checker's guarded clients for `policy`.
    pub fn new(
        policy: OutboundPolicy,
        properties: Arc<Properties>,
        catalog: Arc<Catalog>,
    ) -> Result<Self, OutboundError> {
        Ok(Self {
            pages: Outbound::new(policy.clone(), PAGE_REQUEST_TIMEOUT)?,
            hops: Outbound::new(policy, HOP_TIMEOUT)?,
            properties,
            catalog,
            budgets: PropertyBudgets::new(MAX_REQUESTS_PER_MINUTE),
        })
    }

    /// Checks the redirect-plugin links of the page `url` of the caller's
    /// property `property_id`.
    pub async fn check(
        &self,
        caller: &Caller,
        property_id: &str,
        url: &str,
    ) -> ServiceResult<PageCheck> {
        let property = self.properties.owned(caller, property_id).await?;
        let page = self.fetch_page(&property, url).await?;
        let report = self.check_redirects(&property, &page).await?;
        Ok(PageCheck {
            url: page.page.chain.final_url.to_string(),
            redirects: page.page.chain.redirects(),
            truncated: page.page.truncated,
            links: page.links.len(),
            redirect_links: report.links,
            not_checked: report.not_checked,
        })
    }

    /// Fetches a page of `property` (the URL must be on its domains) and
    /// reads its links.
    pub async fn fetch_page(
        &self,
        property: &Property,
        raw_url: &str,
    ) -> Result<CheckedPage, PageError> {
        let url = match Url::parse(raw_url.trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => u,
            _ => return Err(PageError::InvalidUrl),
        };
        if !url
            .host_str()
            .is_some_and(|h| host_allowed(&property.domains, h))
        {
            return Err(PageError::NotOnDomains(property.domains.clone()));
        }
        let budget = self
            .budgets
            .budget(property.id.as_str(), MAX_REQUESTS_PER_CHECK)
            .await;
        if !budget.take(PER_PAGE) {
            count("page_rate_limited");
            return Err(PageError::RateLimited);
        }
        let page = self
            .pages
            .fetch_text(&url, DEFAULT_MAX_HOPS, MAX_PAGE_BYTES, PAGE_TIMEOUT)
            .await
            .map_err(PageError::Fetch)?;
        budget.give(PER_PAGE - page.chain.hops.len() as i64);
        let (links, base_href) = extract_links(&page.body);
        let base = base_href
            .and_then(|b| page.chain.final_url.join(&b).ok())
            .unwrap_or_else(|| page.chain.final_url.clone());
        Ok(CheckedPage {
            page,
            links,
            base,
            budget,
        })
    }

    /// Checks the redirect-plugin links of a fetched page: same-site links
    /// under a plugin prefix (or one of the property's AutoScan prefixes),
    /// not opted out with `data-tracking-group="none"`, each once.
    pub async fn check_redirects(
        &self,
        property: &Property,
        page: &CheckedPage,
    ) -> ServiceResult<RedirectReport> {
        let mut candidates: Vec<(PageLink, Url)> = Vec::new();
        for l in &page.links {
            if l.data_tracking_group
                .as_deref()
                .is_some_and(|g| g.trim().eq_ignore_ascii_case(OPT_OUT_GROUP))
            {
                continue;
            }
            let Some(url) = resolve_href(&l.href, &page.base) else {
                continue;
            };
            let same_site = url
                .host_str()
                .is_some_and(|h| host_allowed(&property.domains, h));
            if same_site
                && is_redirect_plugin_path(url.path(), &property.settings.autoscan_prefixes)
                && !candidates.iter().any(|(o, u)| {
                    *u == url && o.data_tracking_group == l.data_tracking_group && o.rel == l.rel
                })
            {
                candidates.push((l.clone(), url));
            }
        }
        let not_checked = candidates.len().saturating_sub(MAX_REDIRECT_LINKS);
        candidates.truncate(MAX_REDIRECT_LINKS);
        if candidates.is_empty() {
            return Ok(RedirectReport {
                links: Vec::new(),
                not_checked,
            });
        }
        let installed = self
            .properties
            .groups(&property.id)
            .await
            .map_err(ServiceError::internal)?;
        let mut known = installed.clone();
        for g in self.catalog.tracking_groups() {
            if !known.iter().any(|k| k.key == g.key) {
                known.push(g);
            }
        }
        // A fresh click id of the tag's form each check, so that no cache
        // on the way can have seen it.
        let click_id = clickid::mint(Uuid::now_v7()).as_str().to_owned();
        let ctx = Ctx {
            property,
            page: &page.page.chain.final_url,
            base: &page.base,
            installed: &installed,
            known: &known,
            click_id: &click_id,
            budget: &page.budget,
        };
        let ctx = &ctx;
        let links = futures::stream::iter(candidates)
            .map(|(link, url)| async move { self.check_link(ctx, &link, url).await })
            .buffered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
        Ok(RedirectReport { links, not_checked })
    }

    /// Follows one chain within the check's budget; `None` when the budget
    /// has no room for it.
    async fn trace(&self, ctx: &Ctx<'_>, start: &Url) -> Option<Trace> {
        if !ctx.budget.take(PER_CHAIN) {
            return None;
        }
        let stop = |u: &Url| find_group_for_url(ctx.known, u).is_some();
        let trace = self
            .hops
            .trace_redirects(start, MAX_HOPS, CHAIN_TIMEOUT, &stop)
            .await;
        // A request that failed was made too.
        let failed_request = matches!(&trace.result, Err(e) if !e.is_refusal()
            && !matches!(e, OutboundError::RedirectLoop | OutboundError::TooManyRedirects { .. }));
        let made = trace.hops.len() as i64 + i64::from(failed_request);
        ctx.budget.give(PER_CHAIN - made);
        Some(trace)
    }

    async fn check_link(&self, ctx: &Ctx<'_>, link: &PageLink, url: Url) -> RedirectCheck {
        let check = self.check_link_inner(ctx, link, url).await;
        count(check.outcome.code());
        check
    }

    async fn check_link_inner(&self, ctx: &Ctx<'_>, link: &PageLink, url: Url) -> RedirectCheck {
        let id = ctx.click_id;
        let mut check = RedirectCheck {
            href: link.href.clone(),
            text: link.text.clone(),
            url: url.to_string(),
            outcome: RedirectOutcome::RateLimited,
            ok: false,
            message: String::new(),
            fix: None,
            network: None,
            installed: false,
            param: None,
            tagged_by: None,
            tag_note: None,
            tagged_url: None,
            chain: Vec::new(),
            final_url: None,
            click_id_in: None,
            error_code: None,
        };
        // 1. The network it leads to: named by hand, or where the link
        //    leads as it is (what AutoScan tells the tag).
        let manual = manual_group(
            ctx.installed,
            link.data_tracking_group.as_deref(),
            link.rel.as_deref(),
        );
        let group = match manual {
            Some(g) => g.clone(),
            None => {
                let Some(trace) = self.trace(ctx, &url).await else {
                    return rate_limited(check);
                };
                let group = trace
                    .result
                    .as_ref()
                    .ok()
                    .and_then(|c| find_group_for_url(ctx.known, &c.final_url));
                match group {
                    Some(g) => g.clone(),
                    None => return ended(check, &trace, None, id),
                }
            }
        };
        check.installed = ctx.installed.iter().any(|g| g.key == group.key);
        check.network = Some(group.key.clone());
        check.param = Some(group.param.clone());
        // 2. How the tag tags it, and so what it adds.
        let has_token = link
            .href
            .to_ascii_lowercase()
            .contains(&CLICK_ID_TOKEN.to_ascii_lowercase());
        let scanned = self.autoscan_covers(ctx, &url);
        let (tagged_by, note) = if manual.is_some() {
            (Some(TaggedBy::DataTrackingGroup), None)
        } else if check.installed && scanned {
            (Some(TaggedBy::Autoscan), None)
        } else {
            let why = if !check.installed {
                format!(
                    "The tag does not tag this link: it leads to a {} link, and no installed integration uses that tracking group. Install it from the Integration Catalog.",
                    group.key
                )
            } else if !ctx.property.settings.autoscan {
                "The tag does not tag this link: AutoScan is off for this property, so the tag cannot learn where it leads. Turn AutoScan on in the property's settings, or name the group with data-tracking-group.".to_owned()
            } else {
                "The tag does not tag this link: its path is under none of the property's AutoScan prefixes. Add its prefix (such as /go/) in the property's settings, or name the group with data-tracking-group.".to_owned()
            };
            let by = has_token.then_some(TaggedBy::ClickIdToken);
            (by, Some(why))
        };
        check.tagged_by = tagged_by;
        check.tag_note = note;
        // A link the tag tags only through its token gets no subid; one it
        // does not tag at all is checked as the tag will tag it once it
        // does.
        let add = match tagged_by {
            Some(TaggedBy::ClickIdToken) => None,
            _ => Some(&group),
        };
        let tagged = tag_href(&link.href, add, id)
            .and_then(|h| resolve_href(&h, ctx.base))
            .unwrap_or_else(|| url.clone());
        check.tagged_url = Some(redact(tagged.as_str(), id));
        // 3. Where the tagged link leads, and whether the click id is
        //    still there.
        let Some(trace) = self.trace(ctx, &tagged).await else {
            return rate_limited(check);
        };
        let Ok(chain) = &trace.result else {
            return ended(check, &trace, Some(&group), id);
        };
        let Some(end_group) = find_group_for_url(ctx.known, &chain.final_url) else {
            return ended(check, &trace, Some(&group), id);
        };
        check.chain = hops_shown(&trace, id);
        check.final_url = Some(redact(chain.final_url.as_str(), id));
        check.network = Some(end_group.key.clone());
        check.param = Some(end_group.param.clone());
        let param = &end_group.param;
        match find_click_id(&chain.final_url, Some(end_group), id) {
            Some(at) => {
                check.outcome = RedirectOutcome::ClickIdKept;
                check.ok = true;
                match at {
                    ClickIdAt::GroupParam => {
                        check.click_id_in = Some(param.clone());
                        check.message = format!(
                            "The click id reaches the network's link ({}) as {param}: its conversions can be attributed to the click.",
                            end_group.key
                        );
                    }
                    ClickIdAt::OtherParam(name) => {
                        check.message = format!(
                            "The click id reaches the network's link ({}), but as {name}, while the network reads {param}: its conversions may come back without it.",
                            end_group.key
                        );
                        check.fix = Some(format!(
                            "Make the redirect pass the click id as {param} (add {param}={CLICK_ID_PLACEHOLDER} to the link, or forward the query string as it is)."
                        ));
                        check.click_id_in = Some(name);
                    }
                    ClickIdAt::Path => {
                        check.click_id_in = Some("path".to_owned());
                        check.message = format!(
                            "The click id reaches the network's link ({}), in its path rather than as {param}.",
                            end_group.key
                        );
                    }
                }
            }
            None => {
                check.outcome = RedirectOutcome::ClickIdDropped;
                check.message = format!(
                    "The redirect drops the query string: the click id the tag adds to this link never reaches the network's link ({}), so its conversions cannot be attributed.",
                    end_group.key
                );
                check.fix = Some(PARAMETER_FORWARDING_FIX.to_owned());
            }
        }
        check
    }

    /// Whether the tag asks AutoScan about `url`: AutoScan is on, the link
    /// is on the page's own host and under one of the property's AutoScan
    /// prefixes (`scanGroup` in `tag/src/main.ts`).
    fn autoscan_covers(&self, ctx: &Ctx<'_>, url: &Url) -> bool {
        let s = &ctx.property.settings;
        s.autoscan
            && url.host_str() == ctx.page.host_str()
            && url.port_or_known_default() == ctx.page.port_or_known_default()
            && s.autoscan_prefixes
                .iter()
                .any(|p| glob_match(&format!("{p}*"), url.path()))
    }
}

fn count(outcome: &'static str) {
    metrics::counter!("clicktrail_link_checks_total", "outcome" => outcome).increment(1);
}

/// `s` with the test click id replaced by [`CLICK_ID_PLACEHOLDER`].
fn redact(s: &str, click_id: &str) -> String {
    s.replace(click_id, CLICK_ID_PLACEHOLDER)
}

fn hops_shown(trace: &Trace, click_id: &str) -> Vec<HopView> {
    trace
        .hops
        .iter()
        .map(|h| HopView {
            url: redact(h.url.as_str(), click_id),
            method: h.method,
            status: h.status,
        })
        .collect()
}

fn rate_limited(mut check: RedirectCheck) -> RedirectCheck {
    check.outcome = RedirectOutcome::RateLimited;
    check.message = format!(
        "Not checked: this check or this property has used its outbound requests (at most {MAX_REQUESTS_PER_CHECK} a check, {MAX_REQUESTS_PER_MINUTE} a minute). Check again in a minute."
    );
    check
}

/// A chain that did not end at a network's link: it failed, or it ended
/// elsewhere (`group`: the network the link led to before the click id
/// was added, if known).
fn ended(
    mut check: RedirectCheck,
    trace: &Trace,
    group: Option<&TrackingGroup>,
    click_id: &str,
) -> RedirectCheck {
    check.chain = hops_shown(trace, click_id);
    match &trace.result {
        Ok(chain) => {
            let shown = redact(chain.final_url.as_str(), click_id);
            check.outcome = RedirectOutcome::NotAffiliate;
            check.message = match group {
                None => format!(
                    "The link ends at {shown} (HTTP {}), which is no known network's link: there is nothing to attribute.",
                    chain.final_status
                ),
                Some(g) => format!(
                    "Without a click id the link leads to a {} link, but with one it ends at {shown} (HTTP {}), which is no known network's link.",
                    g.key, chain.final_status
                ),
            };
            check.final_url = Some(shown);
        }
        Err(e) => {
            check.outcome = RedirectOutcome::of_error(e);
            check.error_code = Some(e.code());
            let at = trace
                .unanswered
                .as_ref()
                .map(|u| redact(u.as_str(), click_id));
            check.message = match (check.outcome, &at) {
                (RedirectOutcome::RedirectLoop, Some(u)) => format!(
                    "The redirects loop back to {u}: the link leads nowhere. Check its destination in the redirect plugin."
                ),
                (RedirectOutcome::TooManyRedirects, _) => format!(
                    "The link takes more than {MAX_HOPS} redirects; the checker stopped following it. Point it at the network's link directly."
                ),
                (RedirectOutcome::RefusedAddress, Some(u)) => {
                    format!("A redirect leads to {u}, which this server does not fetch: {e}.")
                }
                (_, Some(u)) => format!("The link could not be followed at {u}: {e}."),
                (_, None) => format!("The link could not be followed: {e}."),
            };
            check.final_url = at;
        }
    }
    check
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_links_text_and_attributes() {
        let page = r#"<html><head><base href="/sub/"></head><body>
            <a href="https://wl.adsrv.eacdn.com/C.ashx?btag=1" data-tracking-group="incomeaccess">Play <b>now</b></a>
            <a rel="nofollow sponsored" href='/go/gala'>Gala</a>
            <a name="anchor">no href</a>
            <a href="mailto:x@example.com">mail
            <a href="?c=--CLICK-ID--">token</a>
        </body></html>"#;
        let (links, base) = extract_links(page);
        assert_eq!(base.as_deref(), Some("/sub/"));
        assert_eq!(links.len(), 4);
        assert_eq!(links[0].text, "Play now");
        assert_eq!(
            links[0].data_tracking_group.as_deref(),
            Some("incomeaccess")
        );
        assert_eq!(links[1].rel.as_deref(), Some("nofollow sponsored"));
        assert_eq!(links[1].href, "/go/gala");
        assert_eq!(links[2].href, "mailto:x@example.com");
        assert_eq!(links[3].href, "?c=--CLICK-ID--");
    }

    #[test]
    fn outcome_codes_are_stable() {
        let all = [
            RedirectOutcome::ClickIdKept,
            RedirectOutcome::ClickIdDropped,
            RedirectOutcome::NotAffiliate,
            RedirectOutcome::RedirectLoop,
            RedirectOutcome::TooManyRedirects,
            RedirectOutcome::Unreachable,
            RedirectOutcome::RefusedAddress,
            RedirectOutcome::RateLimited,
        ];
        for o in all {
            assert_eq!(
                serde_json::to_value(o).unwrap(),
                serde_json::Value::from(o.code())
            );
        }
        let of = |e: OutboundError| RedirectOutcome::of_error(&e).code();
        assert_eq!(of(OutboundError::RedirectLoop), "redirect_loop");
        assert_eq!(
            of(OutboundError::TooManyRedirects { max: 10 }),
            "too_many_redirects"
        );
        assert_eq!(
            of(OutboundError::AddressNotAllowed {
                host: "10.0.0.1".into(),
                reason: "private"
            }),
            "refused_address"
        );
        assert_eq!(
            of(OutboundError::PortNotAllowed { port: 22 }),
            "refused_address"
        );
        assert_eq!(
            of(OutboundError::Connect { host: "x".into() }),
            "unreachable"
        );
        assert_eq!(
            of(OutboundError::Timeout {
                limit: CHAIN_TIMEOUT
            }),
            "unreachable"
        );
        assert_eq!(
            of(OutboundError::BadRedirect { status: 302 }),
            "unreachable"
        );
    }

    #[test]
    fn the_click_id_is_redacted() {
        let id = "AZDxon08eryN7wEjRWeJq0abcdef";
        assert_eq!(
            redact(&format!("https://s.example/go/x?c={id}&d={id}"), id),
            "https://s.example/go/x?c={click_id}&d={click_id}"
        );
    }

    #[test]
    fn the_fix_names_the_plugins_settings() {
        for s in [
            "parameter forwarding",
            "ThirstyAffiliates",
            "Pass query strings to destination url?",
            "Pretty Links",
            "Parameter Forwarding",
            "query string",
        ] {
            assert!(PARAMETER_FORWARDING_FIX.contains(s), "{s}");
        }
    }
}
