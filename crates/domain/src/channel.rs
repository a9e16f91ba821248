//! GA4's default channel grouping: which marketing channel a visit came
//! from, from its source, medium and campaign.
//!
//! Two steps, both pure and allocation-free (the collector runs them for
//! every landing):
//!
//! 1. [`ChannelInput::source_medium`] derives GA4-style source / medium /
//!    campaign from what the landing carried, the way GA4 does:
//!    - a Google Ads click id (`gclid`, `gbraid`, `wbraid`) without
//!      `utm_medium` is `google / cpc` (GA4's auto-tagging). When the
//!      marketer tagged the link with `utm_medium` as well, the utm values
//!      win: GA4 would use the Ads campaign's network type, which we do not
//!      know, and the marketer's explicit medium (`display`, `video`, ...)
//!      is the better guess;
//!    - otherwise any `utm_source` / `utm_medium` / `utm_campaign` is used
//!      as given, a missing one being `(not set)`, and the referrer ignored;
//!    - otherwise a referrer from a known search engine is
//!      `<engine> / organic` (`google / organic`), any other referrer is
//!      `<referrer host without www.> / referral` (`facebook.com /
//!      referral`, `l.instagram.com / referral`), as GA4 reports them;
//!    - a referrer on the landing page's own registrable domain, or none,
//!      is `(direct) / (none)`.
//!
//!    Other platforms' click ids (`fbclid`, `ttclid`, `msclkid`, ...) do
//!    not change source or medium, as in GA4: Facebook appends `fbclid` to
//!    organic links too, and GA4 reads none of them. So without utm
//!    parameters a Facebook ad click is `facebook.com / referral`, i.e.
//!    Organic Social, exactly what the marketer sees in GA4. (The click ids
//!    themselves are stored with the traffic source for the ad platforms.)
//!
//! 2. [`classify`] applies GA4's rules, first match wins, in the order of
//!    [`Channel::ALL`]. All comparisons are ASCII case-insensitive, as GA4's
//!    channel conditions are.
//!
//! Google publishes its lists of search, social, shopping and video sites
//! only as a spreadsheet, so [`SITES`] and [`BRANDS`] are our own lists.
//! A source matches a list by exact name (`google`, `fb`, `ig`, `t.co`), by
//! host or parent host (`lm.facebook.com` -> `facebook.com`), or by brand:
//! the registrable domain's name under any public suffix (`google.co.uk`,
//! `amazon.de`, `pinterest.fr`).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// GA4's default channel groups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Direct,
    CrossNetwork,
    PaidShopping,
    PaidSearch,
    PaidSocial,
    PaidVideo,
    Display,
    PaidOther,
    OrganicShopping,
    OrganicSocial,
    OrganicVideo,
    OrganicSearch,
    Referral,
    Email,
    Affiliates,
    Audio,
    Sms,
    MobilePush,
    Unassigned,
}

impl Channel {
    /// Every channel, in GA4's rule order.
    pub const ALL: [Channel; 19] = [
        Channel::Direct,
        Channel::CrossNetwork,
        Channel::PaidShopping,
        Channel::PaidSearch,
        Channel::PaidSocial,
        Channel::PaidVideo,
        Channel::Display,
        Channel::PaidOther,
        Channel::OrganicShopping,
        Channel::OrganicSocial,
        Channel::OrganicVideo,
        Channel::OrganicSearch,
        Channel::Referral,
        Channel::Email,
        Channel::Affiliates,
        Channel::Audio,
        Channel::Sms,
        Channel::MobilePush,
        Channel::Unassigned,
    ];

    /// Stable snake_case key (API, storage).
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Direct => "direct",
            Channel::CrossNetwork => "cross_network",
            Channel::PaidShopping => "paid_shopping",
            Channel::PaidSearch => "paid_search",
            Channel::PaidSocial => "paid_social",
            Channel::PaidVideo => "paid_video",
            Channel::Display => "display",
            Channel::PaidOther => "paid_other",
            Channel::OrganicShopping => "organic_shopping",
            Channel::OrganicSocial => "organic_social",
            Channel::OrganicVideo => "organic_video",
            Channel::OrganicSearch => "organic_search",
            Channel::Referral => "referral",
            Channel::Email => "email",
            Channel::Affiliates => "affiliates",
            Channel::Audio => "audio",
            Channel::Sms => "sms",
            Channel::MobilePush => "mobile_push",
            Channel::Unassigned => "unassigned",
        }
    }

    /// GA4's display name.
    pub fn display_name(self) -> &'static str {
        match self {
            Channel::Direct => "Direct",
            Channel::CrossNetwork => "Cross-network",
            Channel::PaidShopping => "Paid Shopping",
            Channel::PaidSearch => "Paid Search",
            Channel::PaidSocial => "Paid Social",
            Channel::PaidVideo => "Paid Video",
            Channel::Display => "Display",
            Channel::PaidOther => "Paid Other",
            Channel::OrganicShopping => "Organic Shopping",
            Channel::OrganicSocial => "Organic Social",
            Channel::OrganicVideo => "Organic Video",
            Channel::OrganicSearch => "Organic Search",
            Channel::Referral => "Referral",
            Channel::Email => "Email",
            Channel::Affiliates => "Affiliates",
            Channel::Audio => "Audio",
            Channel::Sms => "SMS",
            Channel::MobilePush => "Mobile Push",
            Channel::Unassigned => "Unassigned",
        }
    }

    /// Parses a snake_case key.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// Whether this is one of the paid channels (for ad-spend reports).
    pub fn is_paid(self) -> bool {
        matches!(
            self,
            Channel::CrossNetwork
                | Channel::PaidShopping
                | Channel::PaidSearch
                | Channel::PaidSocial
                | Channel::PaidVideo
                | Channel::Display
                | Channel::PaidOther
        )
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.display_name())
    }
}

/// What a landing tells about where the visit came from. Empty strings count
/// as absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelInput<'a> {
    pub utm_source: Option<&'a str>,
    pub utm_medium: Option<&'a str>,
    pub utm_campaign: Option<&'a str>,
    /// A Google Ads click id (`gclid`, `gbraid` or `wbraid`) was on the URL.
    pub google_click_id: bool,
    /// The referrer's host (`www.google.com`), or for an app referrer
    /// (`android-app://com.google.android.gm/`) the package name.
    pub referrer_host: Option<&'a str>,
    /// The landing page's host, to recognise self-referrals.
    pub page_host: Option<&'a str>,
}

/// GA4-style source, medium and campaign of a visit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceMedium<'a> {
    pub source: &'a str,
    pub medium: &'a str,
    pub campaign: Option<&'a str>,
}

pub const DIRECT: &str = "(direct)";
pub const NONE: &str = "(none)";
pub const NOT_SET: &str = "(not set)";

fn present(v: Option<&str>) -> Option<&str> {
    v.map(str::trim).filter(|v| !v.is_empty())
}

impl<'a> ChannelInput<'a> {
    /// Source / medium / campaign as GA4 would record them (module docs).
    pub fn source_medium(&self) -> SourceMedium<'a> {
        let source = present(self.utm_source);
        let medium = present(self.utm_medium);
        let campaign = present(self.utm_campaign);
        if self.google_click_id && medium.is_none() {
            return SourceMedium {
                source: "google",
                medium: "cpc",
                campaign,
            };
        }
        if source.is_some() || medium.is_some() || campaign.is_some() {
            return SourceMedium {
                source: source.unwrap_or(NOT_SET),
                medium: medium.unwrap_or(NOT_SET),
                campaign,
            };
        }
        let referrer = present(self.referrer_host)
            .map(strip_www)
            .filter(|h| !h.is_empty() && !same_site(h, present(self.page_host).map(strip_www)));
        if let Some(host) = referrer {
            let mut buf = [0u8; LOWER_BUF];
            let search = lookup_site(host, &mut buf).filter(|s| s.kind == SiteKind::Search);
            if let Some(site) = search {
                return SourceMedium {
                    source: site.name,
                    medium: "organic",
                    campaign: None,
                };
            }
            return SourceMedium {
                source: host,
                medium: "referral",
                campaign: None,
            };
        }
        SourceMedium {
            source: DIRECT,
            medium: NONE,
            campaign: None,
        }
    }
}

/// The channel of a landing: [`ChannelInput::source_medium`], then
/// [`classify_source_medium`].
pub fn classify(input: &ChannelInput<'_>) -> Channel {
    classify_source_medium(&input.source_medium())
}

/// GA4's default channel rules, first match wins.
pub fn classify_source_medium(sm: &SourceMedium<'_>) -> Channel {
    let source = sm.source.trim();
    let medium = sm.medium.trim();
    let campaign = sm.campaign.map(str::trim).unwrap_or("");

    if eq(source, DIRECT) && (eq(medium, NONE) || eq(medium, NOT_SET)) {
        return Channel::Direct;
    }
    if contains(campaign, "cross-network") {
        return Channel::CrossNetwork;
    }
    let mut buf = [0u8; LOWER_BUF];
    let site = lookup_site(source, &mut buf).map(|s| s.kind);
    let paid = is_paid_medium(medium);
    let shopping = site == Some(SiteKind::Shopping) || is_shopping_campaign(campaign);
    if paid {
        if shopping {
            return Channel::PaidShopping;
        }
        match site {
            Some(SiteKind::Search) => return Channel::PaidSearch,
            Some(SiteKind::Social) => return Channel::PaidSocial,
            Some(SiteKind::Video) => return Channel::PaidVideo,
            _ => {}
        }
    }
    if one_of(
        medium,
        &["display", "banner", "expandable", "interstitial", "cpm"],
    ) {
        return Channel::Display;
    }
    if paid {
        return Channel::PaidOther;
    }
    if shopping {
        return Channel::OrganicShopping;
    }
    if site == Some(SiteKind::Social)
        || one_of(
            medium,
            &[
                "social",
                "social-network",
                "social-media",
                "sm",
                "social network",
                "social media",
            ],
        )
    {
        return Channel::OrganicSocial;
    }
    if site == Some(SiteKind::Video) || contains(medium, "video") {
        return Channel::OrganicVideo;
    }
    if site == Some(SiteKind::Search) || eq(medium, "organic") {
        return Channel::OrganicSearch;
    }
    if one_of(medium, &["referral", "app", "link"]) {
        return Channel::Referral;
    }
    const EMAIL: &[&str] = &["email", "e-mail", "e_mail", "e mail"];
    if one_of(source, EMAIL) || one_of(medium, EMAIL) {
        return Channel::Email;
    }
    if eq(medium, "affiliate") {
        return Channel::Affiliates;
    }
    if eq(medium, "audio") {
        return Channel::Audio;
    }
    if eq(source, "sms") || eq(medium, "sms") {
        return Channel::Sms;
    }
    if ends_with(medium, "push")
        || contains(medium, "mobile")
        || contains(medium, "notification")
        || eq(source, "firebase")
    {
        return Channel::MobilePush;
    }
    Channel::Unassigned
}

// ---- string tests, ASCII case-insensitive, no allocation ----

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn one_of(a: &str, list: &[&str]) -> bool {
    list.iter().any(|b| eq(a, b))
}

fn starts_with(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn ends_with(s: &str, suffix: &str) -> bool {
    s.len() >= suffix.len()
        && s.as_bytes()[s.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

/// Positions where `needle` occurs in `hay`, ignoring ASCII case.
fn find_all<'h>(hay: &'h str, needle: &'h str) -> impl Iterator<Item = usize> + 'h {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    let last = h.len().checked_sub(n.len());
    (0..=last.unwrap_or(0))
        .filter(move |_| last.is_some())
        .filter(move |&i| h[i..i + n.len()].eq_ignore_ascii_case(n))
}

fn contains(hay: &str, needle: &str) -> bool {
    find_all(hay, needle).next().is_some()
}

/// GA4's paid medium: `^(.*cp.*|ppc|retargeting|paid.*)$`.
fn is_paid_medium(medium: &str) -> bool {
    contains(medium, "cp")
        || eq(medium, "ppc")
        || eq(medium, "retargeting")
        || starts_with(medium, "paid")
}

/// GA4's shopping campaign: `^(.*(([^a-df-z]|^)shop|shopping).*)$`,
/// case-insensitive: `shopping` anywhere, or `shop` at the start or after
/// anything but a letter other than `e` (`eshop`, `summer_shop`, `Shop-1`
/// match; `workshop` does not).
fn is_shopping_campaign(campaign: &str) -> bool {
    if contains(campaign, "shopping") {
        return true;
    }
    let b = campaign.as_bytes();
    find_all(campaign, "shop").any(|i| {
        i == 0 || {
            let prev = b[i - 1].to_ascii_lowercase();
            !(prev.is_ascii_lowercase() && prev != b'e')
        }
    })
}

fn strip_www(host: &str) -> &str {
    let host = host.trim_end_matches('.');
    if starts_with(host, "www.") {
        &host[4..]
    } else {
        host
    }
}

/// Same registrable domain (`blog.example.com` and `example.com`).
fn same_site(referrer: &str, page: Option<&str>) -> bool {
    let Some(page) = page else {
        return false;
    };
    if eq(referrer, page) {
        return true;
    }
    let mut rb = [0u8; LOWER_BUF];
    let mut pb = [0u8; LOWER_BUF];
    match (lower(referrer, &mut rb), lower(page, &mut pb)) {
        (Some(r), Some(p)) => match (psl::domain_str(r), psl::domain_str(p)) {
            (Some(a), Some(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

// ---- site lists ----

/// What kind of site a source is, for GA4's list conditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteKind {
    Search,
    Social,
    Shopping,
    Video,
    /// Listed to override a brand or parent host: e.g. `mail.google.com`
    /// is not a search engine.
    Unlisted,
}

/// One entry of our site lists.
#[derive(Debug, Clone, Copy)]
pub struct Site {
    /// A source name (`google`, `fb`) or a host (`t.co`, `facebook.com`).
    pub key: &'static str,
    pub kind: SiteKind,
    /// For search engines: the source GA4 reports for organic visits.
    pub name: &'static str,
}

const fn search(key: &'static str, name: &'static str) -> Site {
    Site {
        key,
        kind: SiteKind::Search,
        name,
    }
}
const fn social(key: &'static str) -> Site {
    Site {
        key,
        kind: SiteKind::Social,
        name: key,
    }
}
const fn video(key: &'static str) -> Site {
    Site {
        key,
        kind: SiteKind::Video,
        name: key,
    }
}
const fn shop(key: &'static str) -> Site {
    Site {
        key,
        kind: SiteKind::Shopping,
        name: key,
    }
}
const fn unlisted(key: &'static str) -> Site {
    Site {
        key,
        kind: SiteKind::Unlisted,
        name: key,
    }
}

/// Source names and hosts. Keys are lowercase; hosts also match their
/// subdomains.
pub static SITES: &[Site] = &[
    // Search engines.
    search("google", "google"),
    search("bing", "bing"),
    search("yahoo", "yahoo"),
    search("baidu", "baidu"),
    search("yandex", "yandex"),
    search("duckduckgo", "duckduckgo"),
    search("duckduckgo.com", "duckduckgo"),
    search("ecosia", "ecosia"),
    search("ecosia.org", "ecosia"),
    search("qwant", "qwant"),
    search("qwant.com", "qwant"),
    search("startpage", "startpage"),
    search("startpage.com", "startpage"),
    search("brave", "brave"),
    search("search.brave.com", "brave"),
    search("naver", "naver"),
    search("search.naver.com", "naver"),
    search("seznam", "seznam"),
    search("search.seznam.cz", "seznam"),
    search("seznam.cz", "seznam"),
    search("daum", "daum"),
    search("search.daum.net", "daum"),
    search("sogou", "sogou"),
    search("sogou.com", "sogou"),
    search("so.com", "360.cn"),
    search("360.cn", "360.cn"),
    search("coccoc", "coccoc"),
    search("coccoc.com", "coccoc"),
    search("ask", "ask"),
    search("ask.com", "ask"),
    search("aol", "aol"),
    search("search.aol.com", "aol"),
    search("mojeek", "mojeek"),
    search("mojeek.com", "mojeek"),
    search("kagi", "kagi"),
    search("kagi.com", "kagi"),
    search("dogpile.com", "dogpile"),
    search("lycos.com", "lycos"),
    search("yandex.ru", "yandex"),
    search("ya.ru", "yandex"),
    search("msn", "msn"),
    search("search.msn.com", "msn"),
    search("com.google.android.googlequicksearchbox", "google"),
    search("googlequicksearchbox", "google"),
    // Hosts of search brands that are not search.
    unlisted("mail.google.com"),
    unlisted("accounts.google.com"),
    unlisted("docs.google.com"),
    unlisted("drive.google.com"),
    unlisted("calendar.google.com"),
    unlisted("groups.google.com"),
    unlisted("sites.google.com"),
    unlisted("translate.google.com"),
    unlisted("news.google.com"),
    unlisted("play.google.com"),
    unlisted("ads.google.com"),
    unlisted("analytics.google.com"),
    unlisted("tagassistant.google.com"),
    unlisted("mail.yahoo.com"),
    unlisted("mail.yandex.ru"),
    unlisted("mail.yandex.com"),
    // Social networks.
    social("facebook"),
    social("fb"),
    social("facebook.com"),
    social("fb.com"),
    social("fb.me"),
    social("meta"),
    social("instagram"),
    social("ig"),
    social("instagram.com"),
    social("twitter"),
    social("tw"),
    social("x"),
    social("x.com"),
    social("t.co"),
    social("twitter.com"),
    social("linkedin"),
    social("li"),
    social("linkedin.com"),
    social("lnkd.in"),
    social("pinterest"),
    social("pin.it"),
    social("reddit"),
    social("reddit.com"),
    social("tiktok"),
    social("tiktok.com"),
    social("snapchat"),
    social("snapchat.com"),
    social("tumblr"),
    social("tumblr.com"),
    social("quora"),
    social("quora.com"),
    social("threads"),
    social("threads.net"),
    social("threads.com"),
    social("bluesky"),
    social("bsky"),
    social("bsky.app"),
    social("mastodon"),
    social("mastodon.social"),
    social("vk"),
    social("vk.com"),
    social("ok.ru"),
    social("weibo"),
    social("weibo.com"),
    social("wechat"),
    social("whatsapp"),
    social("whatsapp.com"),
    social("wa.me"),
    social("messenger"),
    social("messenger.com"),
    social("m.me"),
    social("telegram"),
    social("t.me"),
    social("telegram.org"),
    social("discord"),
    social("discord.com"),
    social("discord.gg"),
    social("discordapp.com"),
    social("line"),
    social("line.me"),
    social("kakaotalk"),
    social("meetup"),
    social("meetup.com"),
    social("nextdoor"),
    social("nextdoor.com"),
    social("xing"),
    social("xing.com"),
    social("douban.com"),
    social("zhihu.com"),
    social("medium.com"),
    social("news.ycombinator.com"),
    social("hacker news"),
    social("yelp"),
    social("slack"),
    social("slack.com"),
    social("skype"),
    social("viber"),
    social("flickr.com"),
    social("deviantart.com"),
    social("stackoverflow.com"),
    social("stackexchange.com"),
    // Video.
    video("youtube"),
    video("yt"),
    video("youtube.com"),
    video("youtu.be"),
    video("vimeo"),
    video("vimeo.com"),
    video("twitch"),
    video("twitch.tv"),
    video("dailymotion"),
    video("dailymotion.com"),
    video("wistia"),
    video("wistia.com"),
    video("netflix"),
    video("netflix.com"),
    video("hulu"),
    video("hulu.com"),
    video("disneyplus"),
    video("disneyplus.com"),
    video("primevideo.com"),
    video("bilibili"),
    video("bilibili.com"),
    video("youku"),
    video("youku.com"),
    video("iqiyi"),
    video("iqiyi.com"),
    video("rumble"),
    video("rumble.com"),
    video("kick.com"),
    // Shopping.
    shop("amazon"),
    shop("ebay"),
    shop("etsy"),
    shop("walmart"),
    shop("aliexpress"),
    shop("alibaba"),
    shop("alibaba.com"),
    shop("temu"),
    shop("shein"),
    shop("shopify"),
    shop("shopify.com"),
    shop("shop.app"),
    shop("google shopping"),
    shop("shopping.google.com"),
    shop("igshopping"),
    shop("mercadolibre"),
    shop("rakuten"),
    shop("target.com"),
    shop("bestbuy.com"),
    shop("otto.de"),
    shop("allegro.pl"),
    shop("bol.com"),
    shop("cdiscount.com"),
    shop("wish.com"),
    shop("wayfair.com"),
    shop("flipkart.com"),
    shop("jd.com"),
    shop("taobao.com"),
    shop("tmall.com"),
    shop("ozon.ru"),
    shop("wildberries.ru"),
    shop("coupang.com"),
    shop("pricerunner.com"),
    shop("pricegrabber.com"),
    shop("shopzilla.com"),
    shop("bizrate.com"),
    shop("bing shopping"),
];

/// Registrable-domain names that are the same site under any public suffix
/// (`google.de`, `amazon.co.jp`).
pub static BRANDS: &[Site] = &[
    search("google", "google"),
    search("bing", "bing"),
    search("yahoo", "yahoo"),
    search("yandex", "yandex"),
    search("baidu", "baidu"),
    social("facebook"),
    social("instagram"),
    social("twitter"),
    social("linkedin"),
    social("pinterest"),
    social("reddit"),
    social("tiktok"),
    social("yelp"),
    video("youtube"),
    shop("amazon"),
    shop("ebay"),
    shop("etsy"),
    shop("walmart"),
    shop("aliexpress"),
    shop("mercadolibre"),
    shop("mercadolivre"),
    shop("rakuten"),
    shop("zalando"),
    shop("idealo"),
    shop("kelkoo"),
    shop("shein"),
    shop("temu"),
    shop("lazada"),
    shop("shopee"),
];

struct Index {
    sites: HashMap<&'static str, Site>,
    brands: HashMap<&'static str, Site>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Index> = OnceLock::new();
    INDEX.get_or_init(|| Index {
        sites: SITES.iter().map(|s| (s.key, *s)).collect(),
        brands: BRANDS.iter().map(|s| (s.key, *s)).collect(),
    })
}

/// Room for the longest DNS name; longer sources are no site of ours.
const LOWER_BUF: usize = 256;

/// `s` in ASCII lowercase, in `buf`.
fn lower<'b>(s: &str, buf: &'b mut [u8; LOWER_BUF]) -> Option<&'b str> {
    let b = s.as_bytes();
    let out = buf.get_mut(..b.len())?;
    for (o, c) in out.iter_mut().zip(b) {
        *o = c.to_ascii_lowercase();
    }
    // Lowercasing ASCII bytes keeps UTF-8 valid.
    std::str::from_utf8(out).ok()
}

/// The host in a source written as a URL (`https://m.facebook.com/x`).
fn host_of(source: &str) -> &str {
    let s = match source.find("://") {
        Some(i) => &source[i + 3..],
        None => source,
    };
    let end = s.find(['/', ':', '?', '#']).unwrap_or(s.len());
    &s[..end]
}

/// Which of our lists `source` is on, if any (module docs).
pub fn site_kind(source: &str) -> Option<SiteKind> {
    let mut buf = [0u8; LOWER_BUF];
    lookup_site(source, &mut buf)
        .map(|s| s.kind)
        .filter(|k| *k != SiteKind::Unlisted)
}

fn lookup_site(source: &str, buf: &mut [u8; LOWER_BUF]) -> Option<Site> {
    let source = source.trim();
    if source.is_empty() {
        return None;
    }
    let s = lower(source, buf)?;
    let idx = index();
    if let Some(site) = idx.sites.get(s) {
        return Some(*site).filter(|s| s.kind != SiteKind::Unlisted);
    }
    let host = strip_www(host_of(s));
    if !host.contains('.') {
        return None;
    }
    let mut h = host;
    loop {
        if let Some(site) = idx.sites.get(h) {
            return Some(*site).filter(|s| s.kind != SiteKind::Unlisted);
        }
        match h.find('.') {
            Some(i) if h[i + 1..].contains('.') => h = &h[i + 1..],
            _ => break,
        }
    }
    let domain = psl::domain_str(host)?;
    let suffix = psl::suffix_str(domain)?;
    let brand = domain.get(..domain.len().checked_sub(suffix.len() + 1)?)?;
    idx.brands.get(brand).copied()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sm<'a>(source: &'a str, medium: &'a str, campaign: Option<&'a str>) -> Channel {
        classify_source_medium(&SourceMedium {
            source,
            medium,
            campaign,
        })
    }

    /// One or more cases per GA4 rule: (source, medium, campaign, channel).
    const RULES: &[(&str, &str, Option<&str>, Channel)] = &[
        // Direct
        ("(direct)", "(none)", None, Channel::Direct),
        ("(direct)", "(not set)", None, Channel::Direct),
        ("(DIRECT)", "(None)", None, Channel::Direct),
        // Cross-network
        (
            "google",
            "cpc",
            Some("pmax cross-network q4"),
            Channel::CrossNetwork,
        ),
        (
            "anything",
            "whatever",
            Some("Cross-Network"),
            Channel::CrossNetwork,
        ),
        // Paid Shopping: shopping site or shopping campaign, paid medium
        ("amazon", "cpc", None, Channel::PaidShopping),
        ("amazon.de", "ppc", None, Channel::PaidShopping),
        (
            "google",
            "cpc",
            Some("shopping_feed"),
            Channel::PaidShopping,
        ),
        (
            "newsletter-partner",
            "paid",
            Some("eshop_summer"),
            Channel::PaidShopping,
        ),
        (
            "foo",
            "retargeting",
            Some("Shop-Black-Friday"),
            Channel::PaidShopping,
        ),
        ("foo", "cpm", Some("summer shop"), Channel::PaidShopping),
        // Paid Search
        ("google", "cpc", None, Channel::PaidSearch),
        ("bing", "ppc", None, Channel::PaidSearch),
        ("Google", "CPC", Some("brand"), Channel::PaidSearch),
        ("yahoo", "paidsearch", None, Channel::PaidSearch),
        ("duckduckgo.com", "paid", None, Channel::PaidSearch),
        ("google.co.uk", "cpc", None, Channel::PaidSearch),
        // Paid Social
        ("facebook", "cpc", None, Channel::PaidSocial),
        ("fb", "paid_social", None, Channel::PaidSocial),
        ("ig", "paid", None, Channel::PaidSocial),
        ("tiktok", "cpc", None, Channel::PaidSocial),
        ("linkedin", "ppc", None, Channel::PaidSocial),
        ("m.facebook.com", "cpm", None, Channel::PaidSocial),
        ("t.co", "paid", None, Channel::PaidSocial),
        ("reddit", "retargeting", None, Channel::PaidSocial),
        // Paid Video
        ("youtube", "cpc", None, Channel::PaidVideo),
        ("vimeo.com", "cpv", None, Channel::PaidVideo),
        ("twitch", "paid", None, Channel::PaidVideo),
        // Display (after the paid site rules)
        ("gdn", "display", None, Channel::Display),
        ("adnetwork", "banner", None, Channel::Display),
        ("adnetwork", "expandable", None, Channel::Display),
        ("adnetwork", "interstitial", None, Channel::Display),
        ("adnetwork", "cpm", None, Channel::Display),
        ("facebook", "display", None, Channel::Display),
        // Paid Other: paid medium, any other source
        ("adnetwork", "cpc", None, Channel::PaidOther),
        ("taboola", "paid", None, Channel::PaidOther),
        ("outbrain", "ppc", None, Channel::PaidOther),
        ("native", "cpa", None, Channel::PaidOther),
        ("x-net", "paid-native", None, Channel::PaidOther),
        // Organic Shopping
        ("amazon", "referral", None, Channel::OrganicShopping),
        ("ebay.co.uk", "referral", None, Channel::OrganicShopping),
        (
            "newsletter",
            "email",
            Some("shopping week"),
            Channel::OrganicShopping,
        ),
        ("etsy", "(not set)", None, Channel::OrganicShopping),
        // Organic Social
        ("facebook.com", "referral", None, Channel::OrganicSocial),
        ("l.facebook.com", "referral", None, Channel::OrganicSocial),
        ("lm.facebook.com", "referral", None, Channel::OrganicSocial),
        ("instagram", "(not set)", None, Channel::OrganicSocial),
        ("t.co", "referral", None, Channel::OrganicSocial),
        ("pinterest.fr", "referral", None, Channel::OrganicSocial),
        (
            "news.ycombinator.com",
            "referral",
            None,
            Channel::OrganicSocial,
        ),
        ("newsletter", "social", None, Channel::OrganicSocial),
        ("x", "social-network", None, Channel::OrganicSocial),
        ("x", "social-media", None, Channel::OrganicSocial),
        ("x", "sm", None, Channel::OrganicSocial),
        ("x", "social network", None, Channel::OrganicSocial),
        ("blog", "Social Media", None, Channel::OrganicSocial),
        // Organic Video
        ("youtube.com", "referral", None, Channel::OrganicVideo),
        ("m.youtube.com", "referral", None, Channel::OrganicVideo),
        ("youtu.be", "referral", None, Channel::OrganicVideo),
        ("partner", "video", None, Channel::OrganicVideo),
        (
            "partner",
            "webinar-video-replay",
            None,
            Channel::OrganicVideo,
        ),
        // Organic Search
        ("google", "organic", None, Channel::OrganicSearch),
        ("bing", "organic", None, Channel::OrganicSearch),
        ("yandex.ru", "referral", None, Channel::OrganicSearch),
        (
            "search.yahoo.co.jp",
            "referral",
            None,
            Channel::OrganicSearch,
        ),
        ("somewhere", "organic", None, Channel::OrganicSearch),
        ("google", "(not set)", None, Channel::OrganicSearch),
        // Referral
        ("example.com", "referral", None, Channel::Referral),
        ("partner-app", "app", None, Channel::Referral),
        ("partner", "link", None, Channel::Referral),
        ("mail.google.com", "referral", None, Channel::Referral),
        // Email
        ("newsletter", "email", None, Channel::Email),
        ("email", "(not set)", None, Channel::Email),
        ("mailchimp", "e-mail", None, Channel::Email),
        ("e_mail", "blast", None, Channel::Email),
        ("crm", "e mail", None, Channel::Email),
        // Affiliates
        ("partner", "affiliate", None, Channel::Affiliates),
        ("awin", "Affiliate", None, Channel::Affiliates),
        // Audio
        ("spotify", "audio", None, Channel::Audio),
        // SMS
        ("sms", "(not set)", None, Channel::Sms),
        ("twilio", "sms", None, Channel::Sms),
        // Mobile Push
        ("onesignal", "web-push", None, Channel::MobilePush),
        ("app", "mobile", None, Channel::MobilePush),
        ("app", "in-app-notification", None, Channel::MobilePush),
        ("firebase", "(not set)", None, Channel::MobilePush),
        // Unassigned
        ("foo", "(not set)", None, Channel::Unassigned),
        ("(not set)", "bar", None, Channel::Unassigned),
        ("(direct)", "referral-ish", None, Channel::Unassigned),
        (
            "workshop-partner",
            "newsletter",
            Some("workshop"),
            Channel::Unassigned,
        ),
    ];

    #[test]
    fn ga4_rules_table() {
        let mut seen = HashSet::new();
        for (source, medium, campaign, want) in RULES {
            assert_eq!(
                sm(source, medium, *campaign),
                *want,
                "{source} / {medium} / {campaign:?}"
            );
            seen.insert(*want);
        }
        // Every channel has at least one case.
        for c in Channel::ALL {
            assert!(seen.contains(&c), "no case for {c}");
        }
    }

    /// Cases where more than one rule matches: the earlier one wins.
    #[test]
    fn precedence() {
        // Direct before everything, even a cross-network campaign.
        assert_eq!(
            sm("(direct)", "(none)", Some("cross-network")),
            Channel::Direct
        );
        // Cross-network before the paid site rules.
        assert_eq!(
            sm("facebook", "cpc", Some("cross-network")),
            Channel::CrossNetwork
        );
        // Paid Shopping before Paid Search (shopping campaign on google).
        assert_eq!(sm("google", "cpc", Some("shopping")), Channel::PaidShopping);
        // Paid Social before Display for a cpm medium.
        assert_eq!(sm("facebook", "cpm", None), Channel::PaidSocial);
        // Display before Paid Other (cpm is a paid medium too).
        assert_eq!(sm("adx", "cpm", None), Channel::Display);
        // Paid Other before Organic Social for a social medium that is paid.
        assert_eq!(sm("partner", "paid-social", None), Channel::PaidOther);
        // Organic Shopping before Organic Social (shopping campaign on fb).
        assert_eq!(
            sm("facebook", "referral", Some("shop")),
            Channel::OrganicShopping
        );
        // Organic Social before Organic Video (social site, video medium).
        assert_eq!(sm("facebook", "video", None), Channel::OrganicSocial);
        // Organic Video before Organic Search (video medium on google).
        assert_eq!(sm("google", "video", None), Channel::OrganicVideo);
        // Organic Search before Referral (search site as a referral).
        assert_eq!(sm("bing.com", "referral", None), Channel::OrganicSearch);
        // Referral before Email (medium link from an email source).
        assert_eq!(sm("email", "link", None), Channel::Referral);
        // Email before Affiliates and SMS.
        assert_eq!(sm("email", "affiliate", None), Channel::Email);
        assert_eq!(sm("sms", "email", None), Channel::Email);
        // Affiliates before Mobile Push.
        assert_eq!(sm("push", "affiliate", None), Channel::Affiliates);
        // SMS before Mobile Push.
        assert_eq!(sm("sms", "mobile", None), Channel::Sms);
    }

    #[test]
    fn paid_medium_and_shop_campaign_regexes() {
        for m in [
            "cpc",
            "cpm",
            "cpv",
            "cpa",
            "ecpc",
            "xcpx",
            "ppc",
            "retargeting",
            "paid",
            "paidsocial",
            "Paid_Search",
            "CPC",
        ] {
            assert!(is_paid_medium(m), "{m}");
        }
        for m in [
            "",
            "organic",
            "referral",
            "pp",
            "ppc2",
            "retargeting-x",
            "unpaid",
            "c p",
        ] {
            assert!(!is_paid_medium(m), "{m}");
        }
        for c in [
            "shop",
            "Shop",
            "shopping",
            "eshop",
            "e-shop",
            "summer_shop",
            "1shop",
            "myshopping",
            "SHOP now",
            "é shop",
        ] {
            assert!(is_shopping_campaign(c), "{c}");
        }
        for c in ["", "workshop", "bishop", "sho p", "shpo", "WorkShop"] {
            assert!(!is_shopping_campaign(c), "{c}");
        }
    }

    fn derive(input: ChannelInput<'_>) -> (String, String, Channel) {
        let s = input.source_medium();
        (s.source.to_owned(), s.medium.to_owned(), classify(&input))
    }

    #[test]
    fn derivation_from_landing() {
        let none = ChannelInput::default();
        assert_eq!(
            derive(none),
            ("(direct)".into(), "(none)".into(), Channel::Direct)
        );

        // Referrers.
        let r = |host| ChannelInput {
            referrer_host: Some(host),
            page_host: Some("www.mysite.com"),
            ..Default::default()
        };
        assert_eq!(
            derive(r("www.google.com")),
            ("google".into(), "organic".into(), Channel::OrganicSearch)
        );
        assert_eq!(
            derive(r("google.co.uk")),
            ("google".into(), "organic".into(), Channel::OrganicSearch)
        );
        assert_eq!(
            derive(r("www.bing.com")),
            ("bing".into(), "organic".into(), Channel::OrganicSearch)
        );
        assert_eq!(
            derive(r("duckduckgo.com")),
            (
                "duckduckgo".into(),
                "organic".into(),
                Channel::OrganicSearch
            )
        );
        assert_eq!(
            derive(r("search.yahoo.co.jp")),
            ("yahoo".into(), "organic".into(), Channel::OrganicSearch)
        );
        assert_eq!(
            derive(r("com.google.android.googlequicksearchbox")),
            ("google".into(), "organic".into(), Channel::OrganicSearch)
        );
        assert_eq!(
            derive(r("www.facebook.com")),
            (
                "facebook.com".into(),
                "referral".into(),
                Channel::OrganicSocial
            )
        );
        assert_eq!(
            derive(r("l.instagram.com")),
            (
                "l.instagram.com".into(),
                "referral".into(),
                Channel::OrganicSocial
            )
        );
        assert_eq!(
            derive(r("t.co")),
            ("t.co".into(), "referral".into(), Channel::OrganicSocial)
        );
        assert_eq!(
            derive(r("m.youtube.com")),
            (
                "m.youtube.com".into(),
                "referral".into(),
                Channel::OrganicVideo
            )
        );
        assert_eq!(
            derive(r("www.amazon.de")),
            (
                "amazon.de".into(),
                "referral".into(),
                Channel::OrganicShopping
            )
        );
        assert_eq!(
            derive(r("mail.google.com")),
            (
                "mail.google.com".into(),
                "referral".into(),
                Channel::Referral
            )
        );
        assert_eq!(
            derive(r("blog.example.org")),
            (
                "blog.example.org".into(),
                "referral".into(),
                Channel::Referral
            )
        );
        assert_eq!(
            derive(r("com.google.android.gm")),
            (
                "com.google.android.gm".into(),
                "referral".into(),
                Channel::Referral
            )
        );
        // Self-referrals (same registrable domain) are direct.
        assert_eq!(derive(r("www.mysite.com")).2, Channel::Direct);
        assert_eq!(derive(r("shop.mysite.com")).2, Channel::Direct);
        assert_eq!(derive(r("MYSITE.com")).2, Channel::Direct);
        assert_eq!(derive(r("mysite.co")).2, Channel::Referral);

        // utm parameters win over the referrer.
        let u = ChannelInput {
            utm_source: Some("facebook"),
            utm_medium: Some("paid_social"),
            utm_campaign: Some("spring"),
            referrer_host: Some("www.google.com"),
            ..Default::default()
        };
        assert_eq!(
            derive(u),
            ("facebook".into(), "paid_social".into(), Channel::PaidSocial)
        );
        assert_eq!(u.source_medium().campaign, Some("spring"));
        let only_source = ChannelInput {
            utm_source: Some("newsletter"),
            referrer_host: Some("www.google.com"),
            ..Default::default()
        };
        assert_eq!(
            derive(only_source),
            ("newsletter".into(), "(not set)".into(), Channel::Unassigned)
        );
        let only_medium = ChannelInput {
            utm_medium: Some("email"),
            ..Default::default()
        };
        assert_eq!(
            derive(only_medium),
            ("(not set)".into(), "email".into(), Channel::Email)
        );
        let blank = ChannelInput {
            utm_source: Some("  "),
            utm_medium: Some(""),
            ..Default::default()
        };
        assert_eq!(derive(blank).2, Channel::Direct);

        // Google click ids: google / cpc unless the link says utm_medium.
        let g = ChannelInput {
            google_click_id: true,
            ..Default::default()
        };
        assert_eq!(
            derive(g),
            ("google".into(), "cpc".into(), Channel::PaidSearch)
        );
        let g_ref = ChannelInput {
            google_click_id: true,
            referrer_host: Some("www.google.com"),
            utm_source: Some("newsletter"),
            ..Default::default()
        };
        assert_eq!(
            derive(g_ref),
            ("google".into(), "cpc".into(), Channel::PaidSearch)
        );
        let g_utm = ChannelInput {
            google_click_id: true,
            utm_source: Some("youtube"),
            utm_medium: Some("cpv"),
            ..Default::default()
        };
        assert_eq!(derive(g_utm).2, Channel::PaidVideo);
        let g_cross = ChannelInput {
            google_click_id: true,
            utm_campaign: Some("PMax cross-network"),
            ..Default::default()
        };
        assert_eq!(derive(g_cross).2, Channel::CrossNetwork);
    }

    #[test]
    fn site_lookup() {
        assert_eq!(site_kind("google"), Some(SiteKind::Search));
        assert_eq!(site_kind("GOOGLE"), Some(SiteKind::Search));
        assert_eq!(site_kind("www.google.com.br"), Some(SiteKind::Search));
        assert_eq!(
            site_kind("https://m.facebook.com/story.php?x=1"),
            Some(SiteKind::Social)
        );
        assert_eq!(site_kind("de-de.facebook.com"), Some(SiteKind::Social));
        assert_eq!(site_kind("old.reddit.com"), Some(SiteKind::Social));
        assert_eq!(site_kind("amazon.co.jp"), Some(SiteKind::Shopping));
        assert_eq!(site_kind("shopping.google.com"), Some(SiteKind::Shopping));
        assert_eq!(site_kind("mail.google.com"), None);
        assert_eq!(site_kind("inbox.mail.google.com"), None);
        assert_eq!(site_kind("notgoogle.com"), None);
        assert_eq!(site_kind("google.example.com"), None);
        assert_eq!(site_kind(""), None);
        assert_eq!(site_kind(&"a".repeat(1000)), None);
        assert_eq!(site_kind("ünïcode.example"), None);
        assert_eq!(site_kind("com"), None);
        assert_eq!(site_kind("."), None);
    }

    #[test]
    fn lists_are_consistent() {
        let mut keys = HashSet::new();
        for s in SITES {
            assert!(keys.insert(s.key), "duplicate site {}", s.key);
            assert_eq!(s.key, s.key.to_ascii_lowercase());
            assert_eq!(s.key.trim(), s.key);
            assert!(!s.key.starts_with("www."));
        }
        let mut brands = HashSet::new();
        for b in BRANDS {
            assert!(brands.insert(b.key), "duplicate brand {}", b.key);
            assert!(!b.key.contains('.'));
            // A brand's bare name is also a source name of the same kind.
            if let Some(s) = SITES.iter().find(|s| s.key == b.key) {
                assert_eq!(s.kind, b.kind, "{}", b.key);
            }
        }
    }

    #[test]
    fn channel_names() {
        let mut keys = HashSet::new();
        for c in Channel::ALL {
            assert!(keys.insert(c.as_str()));
            assert_eq!(Channel::parse(c.as_str()), Some(c));
            assert_eq!(
                serde_json::to_string(&c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
        assert_eq!(Channel::CrossNetwork.to_string(), "Cross-network");
        assert_eq!(Channel::Sms.to_string(), "SMS");
        assert_eq!(Channel::MobilePush.to_string(), "Mobile Push");
        assert!(Channel::Display.is_paid());
        assert!(!Channel::OrganicSearch.is_paid());
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "",
            " ",
            ".",
            "..",
            "://",
            "http://",
            "a..b",
            "\u{0}",
            "é",
            "x.\u{fffd}",
            "[::1]",
            "1.2.3.4",
        ] {
            let _ = sm(s, s, Some(s));
            let _ = classify(&ChannelInput {
                utm_source: None,
                referrer_host: Some(s),
                page_host: Some(s),
                ..Default::default()
            });
        }
    }
}
