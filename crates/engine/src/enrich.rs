//! Enrichment on ingest: what the request says about the visitor (browser,
//! OS, device, bot, address) and what each event's landing says about the
//! traffic source (utm, ad click ids, pixel cookies, channel). Runs in the
//! request handlers, in parallel, so the single writer only decides
//! sessions and writes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use clicktrail_domain::bot::BotDetector;
use clicktrail_domain::channel::{self, ChannelInput};
use clicktrail_domain::collect::CollectedEvent;
use clicktrail_domain::property::IpHandling;
use clicktrail_domain::traffic::{self, LandingParams};
use clicktrail_domain::useragent::{DeviceClass, UaParser, UserAgentInfo};
use clicktrail_store::ingest::SessionSeed;
use http::HeaderMap;
use ipnet::IpNet;
use sha2::{Digest, Sha256};

use crate::crypto::{Keyring, truncate_ip};

/// What the user agent says, cached per distinct string.
#[derive(Debug, Clone)]
pub struct UaFacts {
    pub info: UserAgentInfo,
    pub is_bot: bool,
}

/// The per-request facts shared by every event of a request.
#[derive(Debug, Clone)]
pub struct RequestFacts {
    pub user_agent: Option<String>,
    pub ua: Arc<UaFacts>,
    /// The client's address: in memory only (see docs/PRIVACY.md).
    pub ip: Option<IpAddr>,
}

impl RequestFacts {
    /// The facts an event without consent is stored with: the parsed user
    /// agent (browser, OS, device, bot) stays, its full string and the
    /// address go.
    pub fn without_identifiers(&self) -> RequestFacts {
        RequestFacts {
            user_agent: None,
            ua: self.ua.clone(),
            ip: None,
        }
    }
}

pub struct Enricher {
    parser: UaParser,
    cache: moka::sync::Cache<String, Arc<UaFacts>>,
    trusted_proxies: Vec<IpNet>,
    keyring: Keyring,
}

impl std::fmt::Debug for Enricher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Enricher")
            .field("cached_user_agents", &self.cache.entry_count())
            .finish()
    }
}

const MAX_UA_BYTES: usize = 1024;

/// The embedded user-agent rules did not load.
#[derive(Debug, thiserror::Error)]
#[error("user-agent rules: {0}")]
pub struct EnrichError(String);

impl Enricher {
    /// The server's keys (the collector checks server-side signatures).
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    pub fn new(trusted_proxies: Vec<IpNet>, keyring: Keyring) -> Result<Self, EnrichError> {
        Ok(Self {
            parser: UaParser::new().map_err(|e| EnrichError(e.to_string()))?,
            cache: moka::sync::Cache::builder().max_capacity(20_000).build(),
            trusted_proxies,
            keyring,
        })
    }

    /// Parses (or recalls) a user agent.
    pub fn user_agent(&self, ua: &str) -> Arc<UaFacts> {
        if let Some(f) = self.cache.get(ua) {
            return f;
        }
        let mut info = self.parser.parse(ua);
        let is_bot = BotDetector::shared().is_bot(ua) || info.device == DeviceClass::Bot;
        if is_bot {
            info.device = DeviceClass::Bot;
        }
        let facts = Arc::new(UaFacts { info, is_bot });
        self.cache.insert(ua.to_owned(), facts.clone());
        facts
    }

    pub fn request_facts(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> RequestFacts {
        let user_agent = headers
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| cut(s.trim(), MAX_UA_BYTES).to_owned())
            .filter(|s| !s.is_empty());
        let ua = self.user_agent(user_agent.as_deref().unwrap_or(""));
        RequestFacts {
            user_agent,
            ua,
            ip: client_ip(headers, peer, &self.trusted_proxies),
        }
    }

    /// The client's address (see [`client_ip`]), behind this server's
    /// trusted proxies.
    pub fn client_ip(&self, headers: &HeaderMap, peer: Option<SocketAddr>) -> Option<IpAddr> {
        client_ip(headers, peer, &self.trusted_proxies)
    }

    /// The address in the form the property keeps it.
    pub fn stored_ip(&self, handling: IpHandling, ip: Option<IpAddr>) -> Option<String> {
        let ip = ip?;
        match handling {
            IpHandling::Truncate => Some(truncate_ip(&ip)),
            IpHandling::Hash => Some(self.keyring.hash_ip(&ip)),
            IpHandling::Encrypt => Some(format!(
                "e:{}",
                self.keyring.encrypt(ip.to_string().as_bytes())
            )),
            IpHandling::None => None,
        }
    }

    /// The raw address of a stored `e:` form, when the property keeps it
    /// encrypted.
    pub fn recover_ip(&self, stored: &str) -> Option<String> {
        let enc = stored.strip_prefix("e:")?;
        String::from_utf8(self.keyring.decrypt(enc).ok()?).ok()
    }
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The client's address: the peer, unless the peer is a trusted proxy, in
/// which case the right-most `X-Forwarded-For` entry that is not itself a
/// trusted proxy (entries further left are client-controlled).
pub fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer_ip = peer.map(|p| p.ip())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer_ip) {
        return Some(peer_ip);
    }
    let mut chain: Vec<IpAddr> = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        if let Ok(s) = v.to_str() {
            chain.extend(s.split(',').filter_map(|p| p.trim().parse::<IpAddr>().ok()));
        }
    }
    chain
        .into_iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or(Some(peer_ip))
}

/// A session seed from one event: its landing, the request's facts.
pub fn session_seed(
    ev: &CollectedEvent,
    facts: &RequestFacts,
    stored_ip: Option<String>,
) -> SessionSeed {
    let landing = traffic::parse_landing(&ev.url, ev.referrer.as_deref());
    seed_from_landing(&landing, ev, facts, stored_ip)
}

fn seed_from_landing(
    landing: &LandingParams,
    ev: &CollectedEvent,
    facts: &RequestFacts,
    stored_ip: Option<String>,
) -> SessionSeed {
    let referrer_host_raw = ev
        .referrer
        .as_deref()
        .and_then(|r| url::Url::parse(r).ok())
        .and_then(|u| u.host_str().map(str::to_owned));
    let input = ChannelInput {
        utm_source: landing.utm.source.as_deref(),
        utm_medium: landing.utm.medium.as_deref(),
        utm_campaign: landing.utm.campaign.as_deref(),
        google_click_id: landing.has_google_click(),
        referrer_host: referrer_host_raw.as_deref(),
        page_host: ev.url.host_str(),
    };
    let sm = input.source_medium();
    let ch = channel::classify_source_medium(&sm);
    let campaign_hash = landing
        .campaign_key()
        .map(|k| hex::encode(&Sha256::digest(k.as_bytes())[..8]));
    let click_ids = (!landing.click_ids.is_empty()).then(|| {
        let m: serde_json::Map<String, serde_json::Value> = landing
            .click_ids
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::String(v.clone())))
            .collect();
        serde_json::Value::Object(m).to_string()
    });
    let fbclid = landing.click_id("fbclid").map(str::to_owned);
    let cookie_fbc = ev
        .cookies
        .fbc
        .as_deref()
        .filter(|c| traffic::is_valid_fbc(c));
    // The cookie is what Meta's own pixel made; when the landing carries a
    // newer fbclid than the cookie names, build fbc from it (unaltered).
    let fbc = match (&fbclid, cookie_fbc) {
        (Some(id), Some(c))
            if c.ends_with(id.as_str()) || c.split('.').nth(3) == Some(id.as_str()) =>
        {
            Some(c.to_owned())
        }
        (Some(id), _) => Some(traffic::fbc_from_fbclid(id, ev.client_ts_ms)),
        (None, Some(c)) => Some(c.to_owned()),
        (None, None) => None,
    };
    let info = &facts.ua.info;
    SessionSeed {
        campaign_hash,
        landing_url: ev.url.as_str().to_owned(),
        landing_page: landing.landing_page.clone(),
        referrer: ev.referrer.clone(),
        referrer_host: landing.referrer_host.clone(),
        utm_source: landing.utm.source.clone(),
        utm_medium: landing.utm.medium.clone(),
        utm_campaign: landing.utm.campaign.clone(),
        utm_term: landing.utm.term.clone(),
        utm_content: landing.utm.content.clone(),
        utm_id: landing.utm.id.clone(),
        source: sm.source.to_owned(),
        medium: sm.medium.to_owned(),
        channel: ch.as_str().to_owned(),
        click_ids,
        gclid: landing.click_id("gclid").map(str::to_owned),
        gbraid: landing.click_id("gbraid").map(str::to_owned),
        wbraid: landing.click_id("wbraid").map(str::to_owned),
        fbclid,
        fbc,
        fbp: ev.cookies.fbp.clone(),
        ttclid: landing.click_id("ttclid").map(str::to_owned),
        ttp: ev.cookies.ttp.clone(),
        msclkid: landing.click_id("msclkid").map(str::to_owned),
        browser: Some(info.browser.clone()),
        browser_version: info.browser_version.clone(),
        os: Some(info.os.clone()),
        os_version: info.os_version.clone(),
        device: info.device.as_str().to_owned(),
        is_bot: facts.ua.is_bot,
        user_agent: facts.user_agent.clone(),
        ip: stored_ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("6.6.6.6, 203.0.113.9, 10.0.0.2"),
        );
        let proxy: SocketAddr = "10.0.0.1:443".parse().unwrap();
        let stranger: SocketAddr = "198.51.100.1:443".parse().unwrap();
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert_eq!(
            client_ip(&h, Some(proxy), &trusted),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            client_ip(&h, Some(stranger), &trusted),
            Some("198.51.100.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(&h, Some(proxy), &[]),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
