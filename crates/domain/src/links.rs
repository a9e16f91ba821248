//! Tracking groups and the rules that recognise and tag their affiliate links.
//!
//! The same rules run in two places: the tag (TypeScript, `tag/src/links.ts`,
//! AutoTag in the visitor's browser) and the server (this module: the `/go/`
//! redirect, the AutoScan resolver, the link checker). The shared fixture
//! `tests/fixtures/links.json` is run by both test suites so the two stay in
//! step; change one, change the other and the fixture.
//!
//! The rules, in short (`tag/README.md` has the long form):
//!
//! - A link belongs to a group by manual tagging first (`data-tracking-group`
//!   or a `rel` token naming the group's key or an alias, case-insensitive),
//!   else by its URL: host and path globs (`*` = any run, case-insensitive)
//!   and required query parameters. `data-tracking-group="none"` opts a link
//!   out of everything.
//! - Rewriting works on the raw href text, never on a re-serialised URL, so
//!   every other parameter keeps its bytes, its order and the fragment. The
//!   subid parameter is set to the click id wherever it appears (an empty
//!   value is filled, a foreign value replaced), or added when missing: at
//!   the end of the query, or just before a deep-link parameter whose value
//!   is an unencoded `http(s):` URL (Income Access `asclurl`), because
//!   redirectors often take such a value to the end of the URL.
//! - An href that literally contains `&amp;` in its query (HTML escaped
//!   twice) sends parameters named `amp;...` to the network; setting the subid
//!   repairs every `&amp;` of the query to `&`, which is what its author meant.
//! - A group whose `placement` is [`SubidPlacement::PathSegment`]
//!   (Partnerize: `https://prf.hn/click/camref:XXXX/pubref:<id>/...`) carries
//!   the subid as a `/<param>:<id>` path segment instead: every segment that
//!   starts with `<param>:` is set, else one is inserted right after the first
//!   segment that starts with `camref:`. A link with neither (a cloaked link
//!   tagged by hand) gets the query parameter, which a redirect plugin can
//!   forward. Only the path (before `?` and `#`) is read or changed.
//! - The token `--CLICK-ID--` (any case) anywhere in an href becomes the click
//!   id, on any link.
//! - `javascript:`, `mailto:`, `tel:` and every other non-http(s) scheme,
//!   empty and fragment-only hrefs, hrefs with tabs or line breaks, and hrefs
//!   that do not parse as URLs are never touched.
//!
//! On the server: the `/go/{slug}` redirect builds its target with
//! [`tag_href`]`(offer_url, Some(&group), click_id)`; AutoScan names
//! the group of a redirect chain's final URL with [`find_group`]; the link
//! checker asks [`tag_link`] what the tag would do to a link of a page.

use serde::{Deserialize, Serialize};
use url::Url;

/// The token a marketer writes into an href to be replaced by the click id.
pub const CLICK_ID_TOKEN: &str = "--CLICK-ID--";

/// The `data-tracking-group` value that keeps the tag away from a link.
pub const OPT_OUT_GROUP: &str = "none";

/// One way a network's links look. A URL matches when its host matches one
/// of `hosts`, its path one of `paths` (any path when empty) and every
/// parameter in `query` is present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LinkPattern {
    /// Host globs, case-insensitive; `*` matches any run of characters,
    /// dots included: `wl*.adsrv.eacdn.com`, `*.clickbank.net`.
    pub hosts: Vec<String>,
    /// Path globs, case-insensitive: `/C.ashx`, `/redirect.aspx`, `/track/*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Query parameter names that must be present (case-sensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query: Vec<String>,
}

/// Where a group's links carry the subid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubidPlacement {
    /// A query parameter: `?c=<click id>`.
    #[default]
    Query,
    /// A `/<param>:<click id>` path segment, after the `camref:` segment:
    /// Partnerize's `/pubref:<click id>`.
    PathSegment,
}

impl SubidPlacement {
    /// Whether this is the default, [`SubidPlacement::Query`] (left out when
    /// serialising).
    pub fn is_query(&self) -> bool {
        *self == SubidPlacement::Query
    }
}

/// A tracking group as the tag and the matchers see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackingGroup {
    /// The group key, e.g. `incomeaccess`.
    pub key: String,
    /// Other names accepted in `data-tracking-group` / `rel`, e.g. `galapartners`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The subid parameter that carries our click id, e.g. `c`.
    pub param: String,
    /// Where the subid goes; absent (and not serialised) when it is the query.
    #[serde(default, skip_serializing_if = "SubidPlacement::is_query")]
    pub placement: SubidPlacement,
    #[serde(default)]
    pub patterns: Vec<LinkPattern>,
}

impl LinkPattern {
    /// Whether an absolute URL looks like this pattern. Only http(s) URLs
    /// match; a pattern without hosts matches nothing (it would otherwise
    /// claim every link on the web).
    pub fn matches_url(&self, url: &Url) -> bool {
        if !is_http(url) {
            return false;
        }
        let Some(host) = url.host_str() else {
            return false;
        };
        self.hosts.iter().any(|h| glob_match(h, host))
            && (self.paths.is_empty() || self.paths.iter().any(|p| glob_match(p, url.path())))
            && self.query.iter().all(|name| has_query_param(url, name))
    }
}

impl TrackingGroup {
    /// Whether an absolute URL is one of this group's links.
    pub fn matches_url(&self, url: &Url) -> bool {
        self.patterns.iter().any(|p| p.matches_url(url))
    }

    /// Whether `name` (from `data-tracking-group` or a `rel` token) names this
    /// group: its key or one of its aliases, case-insensitive.
    pub fn is_named(&self, name: &str) -> bool {
        let name = name.trim();
        !name.is_empty()
            && (self.key.eq_ignore_ascii_case(name)
                || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name)))
    }
}

/// Glob match, ASCII case-insensitive, where `*` matches any run of
/// characters (possibly empty) and every other character itself.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is currently taken
    // to cover up to: on a mismatch the star swallows one more byte.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if c.eq_ignore_ascii_case(&t[ti]) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The first group (in the given order) whose patterns match `url`, an
/// absolute URL. `None` for anything that does not parse or is not http(s).
pub fn find_group<'a>(groups: &'a [TrackingGroup], url: &str) -> Option<&'a TrackingGroup> {
    let url = Url::parse(url).ok()?;
    find_group_for_url(groups, &url)
}

/// [`find_group`] for an already parsed URL.
pub fn find_group_for_url<'a>(groups: &'a [TrackingGroup], url: &Url) -> Option<&'a TrackingGroup> {
    groups.iter().find(|g| g.matches_url(url))
}

/// The group a `data-tracking-group` value or `rel` token names (key or
/// alias, case-insensitive).
pub fn group_by_name<'a>(groups: &'a [TrackingGroup], name: &str) -> Option<&'a TrackingGroup> {
    groups.iter().find(|g| g.is_named(name))
}

/// The group a link is put in by hand: its `data-tracking-group` value, else
/// the first token of its `rel` that names a group.
pub fn manual_group<'a>(
    groups: &'a [TrackingGroup],
    data_tracking_group: Option<&str>,
    rel: Option<&str>,
) -> Option<&'a TrackingGroup> {
    data_tracking_group
        .and_then(|name| group_by_name(groups, name))
        .or_else(|| {
            rel?.split_ascii_whitespace()
                .find_map(|token| group_by_name(groups, token))
        })
}

/// Resolves an href as a browser would against the page URL `base`, when
/// the href is one the rules may touch (see [`set_subid`]) and the result is
/// http(s).
pub fn resolve_href(href: &str, base: &Url) -> Option<Url> {
    let href = touchable(href)?;
    base.join(href).ok().filter(is_http)
}

/// The attributes of a link element that decide how it is tagged.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkAttrs<'h> {
    /// The raw `href` attribute (not the resolved URL).
    pub href: &'h str,
    pub data_tracking_group: Option<&'h str>,
    pub rel: Option<&'h str>,
}

/// What the tag does with one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkTag<'a> {
    /// Not ours: left exactly as it is, no `OutboundClick`.
    Untouched,
    /// A tracked link: its href after tagging (equal to the input when it
    /// already carried the click id) and its group, if any (a link tracked
    /// only through `--CLICK-ID--` has none).
    Tagged {
        group: Option<&'a TrackingGroup>,
        href: String,
    },
}

/// Decides how AutoTag and manual tagging treat a link on the page `base`
/// with click id `click_id`: the whole rule the tag applies, for the link
/// checker and the fixture tests.
pub fn tag_link<'a>(
    groups: &'a [TrackingGroup],
    base: &Url,
    link: &LinkAttrs<'_>,
    click_id: &str,
) -> LinkTag<'a> {
    if link
        .data_tracking_group
        .is_some_and(|g| g.trim().eq_ignore_ascii_case(OPT_OUT_GROUP))
    {
        return LinkTag::Untouched;
    }
    let Some(url) = resolve_href(link.href, base) else {
        return LinkTag::Untouched;
    };
    let group = manual_group(groups, link.data_tracking_group, link.rel)
        .or_else(|| find_group_for_url(groups, &url));
    if group.is_none() && find_token(link.href).is_none() {
        return LinkTag::Untouched;
    }
    match tag_href(link.href, group, click_id) {
        Some(href) => LinkTag::Tagged { group, href },
        None => LinkTag::Untouched,
    }
}

/// Replaces `--CLICK-ID--` and then, when a group is given, sets its subid
/// where the group puts it: the rewrite AutoTag applies to a tracked link.
/// `None` when the href is untouchable.
pub fn tag_href(href: &str, group: Option<&TrackingGroup>, click_id: &str) -> Option<String> {
    let replaced = replace_click_id_token(href, click_id)?;
    match group {
        Some(g) => set_subid_at(&replaced, &g.param, g.placement, click_id),
        None => Some(replaced),
    }
}

/// [`set_subid`] or [`set_path_subid`], as `placement` says.
pub fn set_subid_at(
    href: &str,
    param: &str,
    placement: SubidPlacement,
    click_id: &str,
) -> Option<String> {
    match placement {
        SubidPlacement::Query => set_subid(href, param, click_id),
        SubidPlacement::PathSegment => set_path_subid(href, param, click_id),
    }
}

/// Sets the subid as a `/<param>:<click_id>` path segment (see the module
/// docs): every segment starting with `<param>:` is set; else one is
/// inserted after the first segment starting with `camref:`; else the href
/// gets the query parameter ([`set_subid`]). The query and the fragment are
/// left as they are. `None` when the href is untouchable or `param` is not a
/// plain name. Idempotent.
pub fn set_path_subid(href: &str, param: &str, click_id: &str) -> Option<String> {
    if !is_plain_param(param) || param.contains('/') {
        return None;
    }
    let href = touchable(href)?;
    let split = href.find(['?', '#']).unwrap_or(href.len());
    let (path, rest) = href.split_at(split);
    let ours = format!("{param}:{click_id}");
    let prefix = format!("{param}:");
    // The piece before the first `/` (a scheme, or a relative path's first
    // segment) is no segment of ours.
    let mut segments: Vec<&str> = path.split('/').collect();
    let mut found = false;
    for seg in segments.iter_mut().skip(1) {
        if seg.starts_with(&prefix) {
            *seg = &ours;
            found = true;
        }
    }
    if !found {
        let camref = segments
            .iter()
            .skip(1)
            .position(|s| s.starts_with("camref:"));
        match camref {
            Some(i) => segments.insert(i + 2, &ours),
            None => return set_subid(href, param, click_id),
        }
    }
    Some(format!("{}{rest}", segments.join("/")))
}

/// Every `--CLICK-ID--` (any case) in the href replaced by `click_id`. The
/// href comes back unchanged (trimmed) when it has no token; `None` when it
/// is untouchable.
pub fn replace_click_id_token(href: &str, click_id: &str) -> Option<String> {
    let mut rest = touchable(href)?;
    let mut out = String::with_capacity(rest.len());
    while let Some(at) = find_token(rest) {
        out.push_str(&rest[..at]);
        out.push_str(click_id);
        rest = &rest[at + CLICK_ID_TOKEN.len()..];
    }
    out.push_str(rest);
    Some(out)
}

/// Sets the subid parameter `param` of a raw href to `click_id`, touching
/// nothing else but `&amp;` separators (see the module docs). Relative and
/// protocol-relative hrefs keep their form. `None` when the href is
/// untouchable or `param` is not a plain parameter name. Idempotent.
pub fn set_subid(href: &str, param: &str, click_id: &str) -> Option<String> {
    if !is_plain_param(param) {
        return None;
    }
    let href = touchable(href)?;
    let (before_fragment, fragment) = match href.find('#') {
        Some(i) => href.split_at(i),
        None => (href, ""),
    };
    let (path, query) = match before_fragment.find('?') {
        Some(i) => (&before_fragment[..i], &before_fragment[i + 1..]),
        None => (before_fragment, ""),
    };
    let mut query = query.to_owned();
    while query.contains("&amp;") {
        query = query.replace("&amp;", "&");
    }
    let mut segments: Vec<String> = if query.is_empty() {
        Vec::new()
    } else {
        query.split('&').map(str::to_owned).collect()
    };
    let ours = format!("{param}={click_id}");
    let mut found = false;
    for seg in &mut segments {
        if seg.split('=').next() == Some(param) {
            seg.clone_from(&ours);
            found = true;
        }
    }
    if !found {
        let deep_link = segments
            .iter()
            .position(|seg| seg.split_once('=').is_some_and(|(_, v)| is_http_prefix(v)));
        match deep_link {
            Some(i) => segments.insert(i, ours),
            None if segments.last().is_some_and(String::is_empty) => {
                if let Some(last) = segments.last_mut() {
                    *last = ours;
                }
            }
            None => segments.push(ours),
        }
    }
    Some(format!("{path}?{}{fragment}", segments.join("&")))
}

/// The href, trimmed as a browser trims it, if the rules may touch it: it
/// resolves to an http(s) URL (a `javascript:`, `mailto:` or any other
/// scheme resolves to itself), is not empty or fragment-only, and holds no
/// tab or line break (which a browser would silently drop).
fn touchable(href: &str) -> Option<&str> {
    let href = href.trim_matches(|c: char| c <= ' ');
    if href.is_empty() || href.starts_with('#') || href.contains(['\t', '\n', '\r']) {
        return None;
    }
    let probe_base = Url::parse("https://base.invalid/").ok()?;
    probe_base.join(href).ok().filter(is_http)?;
    Some(href)
}

/// A subid parameter name the rewriting can set: not empty, no whitespace
/// and none of `&=#?`.
fn is_plain_param(param: &str) -> bool {
    !param.is_empty()
        && !param
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b"&=#?".contains(&b))
}

fn find_token(s: &str) -> Option<usize> {
    s.as_bytes()
        .windows(CLICK_ID_TOKEN.len())
        .position(|w| w.eq_ignore_ascii_case(CLICK_ID_TOKEN.as_bytes()))
}

fn is_http_prefix(value: &str) -> bool {
    let v = value.as_bytes();
    let starts = |p: &[u8]| v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p);
    starts(b"http:") || starts(b"https:")
}

fn is_http(url: &Url) -> bool {
    matches!(url.scheme(), "http" | "https")
}

fn has_query_param(url: &Url, name: &str) -> bool {
    // `amp;name` is what a browser sends for an href that literally holds
    // `&amp;name=`; the network still reads the link as its own.
    url.query_pairs()
        .any(|(k, _)| k == name || k.strip_prefix("amp;").is_some_and(|k| k == name))
}

/// The path prefixes of the links that WordPress redirect plugins serve on
/// a site (ThirstyAffiliates' `/recommends/` or `/go/`, Pretty Links' base
/// slug, `/out/`, ...): AutoScan's default prefixes
/// ([`crate::property::DEFAULT_AUTOSCAN_PREFIXES`]) and the links the link
/// checker follows to see whether a click id reaches the network.
pub const REDIRECT_PLUGIN_PREFIXES: &[&str] = &[
    "/go/",
    "/out/",
    "/recommends/",
    "/visit/",
    "/link/",
    "/refer/",
];

/// Whether a URL path looks like a redirect plugin's link: it starts with
/// one of [`REDIRECT_PLUGIN_PREFIXES`] or of `extra` (a property's own
/// AutoScan prefixes), ASCII case-insensitive as the tag compares them, and
/// names something after the prefix (`/go/` alone is no link).
pub fn is_redirect_plugin_path(path: &str, extra: &[String]) -> bool {
    let under = |prefix: &str| {
        let p = prefix.as_bytes();
        !p.is_empty() && path.len() > p.len() && path.as_bytes()[..p.len()].eq_ignore_ascii_case(p)
    };
    REDIRECT_PLUGIN_PREFIXES.iter().any(|p| under(p)) || extra.iter().any(|p| under(p))
}

/// Where a URL carries a click id ([`find_click_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClickIdAt {
    /// Where the group reads its subid: its query parameter, or its
    /// `/<param>:` path segment.
    GroupParam,
    /// In another query parameter (its name): a redirect that renamed or
    /// moved it, which the network does not read as the subid.
    OtherParam(String),
    /// Elsewhere in the path.
    Path,
}

/// Where `url` carries `click_id`, looking first where `group` puts its
/// subid, then in every query parameter's value, then in the path. `None`
/// when the click id is nowhere in it (a redirect dropped it).
pub fn find_click_id(
    url: &Url,
    group: Option<&TrackingGroup>,
    click_id: &str,
) -> Option<ClickIdAt> {
    if click_id.is_empty() {
        return None;
    }
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if let Some(g) = group {
        let at_param = match g.placement {
            SubidPlacement::Query => pairs.iter().any(|(k, v)| {
                (k == &g.param || k.strip_prefix("amp;") == Some(&g.param)) && v == click_id
            }),
            SubidPlacement::PathSegment => {
                let ours = format!("{}:{click_id}", g.param);
                url.path_segments()
                    .is_some_and(|mut segs| segs.any(|s| s == ours))
            }
        };
        if at_param {
            return Some(ClickIdAt::GroupParam);
        }
    }
    if let Some((k, _)) = pairs.iter().find(|(_, v)| v.contains(click_id)) {
        return Some(ClickIdAt::OtherParam(k.clone()));
    }
    url.path().contains(click_id).then_some(ClickIdAt::Path)
}

/// Whether a query parameter only describes the visit (campaign tags, ad
/// click ids, analytics ids), never where a same-site redirect link leads.
fn is_visit_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    lower.starts_with("utm_")
        || crate::traffic::canonical_click_param(name).is_some()
        || crate::traffic::canonical_click_param(&lower).is_some()
        || matches!(
            lower.as_str(),
            "_ga" | "_gl" | "mc_eid" | "ref_src" | "srsltid" | "_hsenc" | "_hsmi" | "yclid"
        )
}

/// The form of a same-site link AutoScan resolves and caches it under: no
/// fragment, no parameters that only describe the visit, the other
/// parameters sorted. Links that differ only in those resolve once, and
/// junk parameters a visitor adds cannot be used to defeat the cache of
/// the parameters that are dropped.
pub fn normalise_scan_url(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_fragment(None);
    let mut kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| !is_visit_param(k))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    kept.sort();
    if kept.is_empty() {
        out.set_query(None);
    } else {
        out.query_pairs_mut().clear().extend_pairs(kept);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_plugin_paths() {
        // The list, and AutoScan's defaults are the same list.
        assert_eq!(
            REDIRECT_PLUGIN_PREFIXES,
            [
                "/go/",
                "/out/",
                "/recommends/",
                "/visit/",
                "/link/",
                "/refer/"
            ]
        );
        assert_eq!(
            crate::property::DEFAULT_AUTOSCAN_PREFIXES,
            REDIRECT_PLUGIN_PREFIXES
        );
        let none: &[String] = &[];
        for p in [
            "/go/gala",
            "/out/offer-1",
            "/recommends/casino/",
            "/visit/x",
            "/link/y",
            "/refer/z",
            "/GO/Gala",
        ] {
            assert!(is_redirect_plugin_path(p, none), "{p}");
        }
        for p in [
            "/go/",
            "/go",
            "/going/x",
            "/blog/go/x",
            "/",
            "",
            "/outlet/x",
        ] {
            assert!(!is_redirect_plugin_path(p, none), "{p}");
        }
        // A property's own prefixes count too.
        let own = ["/deal/".to_owned()];
        assert!(is_redirect_plugin_path("/deal/x", &own));
        assert!(!is_redirect_plugin_path("/deal/x", none));
        assert!(!is_redirect_plugin_path("/x", &[String::new()]));
    }

    #[test]
    fn click_id_found_where_it_is() {
        let id = "AZDxon08eryN7wEjRWeJq0abcdef";
        let ia = TrackingGroup {
            key: "incomeaccess".into(),
            aliases: vec![],
            param: "c".into(),
            placement: SubidPlacement::Query,
            patterns: vec![],
        };
        let at = |u: &str, g: Option<&TrackingGroup>| find_click_id(&Url::parse(u).unwrap(), g, id);
        let ok = format!("https://media.x.com/redirect.aspx?pid=1&bid=2&c={id}");
        assert_eq!(at(&ok, Some(&ia)), Some(ClickIdAt::GroupParam));
        assert_eq!(
            at(&ok, None),
            Some(ClickIdAt::OtherParam("c".into())),
            "no group: any parameter"
        );
        let renamed = format!("https://media.x.com/redirect.aspx?pid=1&bid=2&subid={id}");
        assert_eq!(
            at(&renamed, Some(&ia)),
            Some(ClickIdAt::OtherParam("subid".into()))
        );
        let encoded = format!("https://t.example/r?u=https%3A%2F%2Fx.example%2F%3Fc%3D{id}");
        assert_eq!(
            at(&encoded, Some(&ia)),
            Some(ClickIdAt::OtherParam("u".into()))
        );
        assert_eq!(
            at("https://media.x.com/redirect.aspx?pid=1&bid=2", Some(&ia)),
            None
        );
        assert_eq!(
            at(
                "https://media.x.com/redirect.aspx?pid=1&bid=2&c=other",
                Some(&ia)
            ),
            None
        );
        assert_eq!(
            at(&format!("https://x.example/p/{id}"), Some(&ia)),
            Some(ClickIdAt::Path)
        );

        let prf = TrackingGroup {
            key: "partnerize".into(),
            aliases: vec![],
            param: "pubref".into(),
            placement: SubidPlacement::PathSegment,
            patterns: vec![],
        };
        let seg = format!("https://prf.hn/click/camref:1/pubref:{id}/destination:x");
        assert_eq!(at(&seg, Some(&prf)), Some(ClickIdAt::GroupParam));
        assert_eq!(at(&seg, Some(&ia)), Some(ClickIdAt::Path));
        assert_eq!(
            find_click_id(&Url::parse(&ok).unwrap(), Some(&ia), ""),
            None
        );
    }

    #[test]
    fn scan_urls_normalised() {
        let n = |s: &str| normalise_scan_url(&Url::parse(s).unwrap()).to_string();
        assert_eq!(
            n("https://site.example/go/x?utm_source=fb&b=2&fbclid=abc&a=1#top"),
            "https://site.example/go/x?a=1&b=2"
        );
        assert_eq!(
            n("https://site.example/go/x?gclid=1"),
            "https://site.example/go/x"
        );
        assert_eq!(
            n("https://site.example/go/x?b=2&a=1"),
            n("https://site.example/go/x?a=1&b=2")
        );
    }
    use serde::Deserialize;

    const FIXTURE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/links.json"
    ));

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fixture {
        #[serde(rename = "$comment")]
        _comment: Vec<String>,
        page: String,
        click_id: String,
        groups: Vec<TrackingGroup>,
        cases: Vec<Case>,
        globs: Vec<GlobCase>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Case {
        name: String,
        #[serde(default)]
        page: Option<String>,
        #[serde(default)]
        groups: Option<Vec<TrackingGroup>>,
        href: String,
        #[serde(default)]
        data_tracking_group: Option<String>,
        #[serde(default)]
        rel: Option<String>,
        group: Option<String>,
        tagged: bool,
        expected: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct GlobCase {
        pattern: String,
        text: String,
        matches: bool,
    }

    fn fixture() -> Fixture {
        serde_json::from_str(FIXTURE).expect("tests/fixtures/links.json is valid")
    }

    fn run(
        groups: &[TrackingGroup],
        base: &Url,
        case: &Case,
        href: &str,
        click_id: &str,
    ) -> (Option<String>, String) {
        let attrs = LinkAttrs {
            href,
            data_tracking_group: case.data_tracking_group.as_deref(),
            rel: case.rel.as_deref(),
        };
        match tag_link(groups, base, &attrs, click_id) {
            LinkTag::Untouched => (None, href.to_owned()),
            LinkTag::Tagged { group, href } => {
                (Some(group.map_or(String::new(), |g| g.key.clone())), href)
            }
        }
    }

    #[test]
    fn shared_fixture_cases() {
        let fx = fixture();
        assert!(fx.cases.len() >= 40, "the fixture lost cases");
        let mut failures = Vec::new();
        for case in &fx.cases {
            let groups = case.groups.as_ref().unwrap_or(&fx.groups);
            let base =
                Url::parse(case.page.as_deref().unwrap_or(&fx.page)).expect("fixture page URL");
            let (tagged, href) = run(groups, &base, case, &case.href, &fx.click_id);
            let group = tagged.clone().filter(|g| !g.is_empty());
            if tagged.is_some() != case.tagged || group != case.group || href != case.expected {
                failures.push(format!(
                    "{}: got tagged={} group={group:?} href={href:?}; want tagged={} group={:?} href={:?}",
                    case.name,
                    tagged.is_some(),
                    case.tagged,
                    case.group,
                    case.expected
                ));
                continue;
            }
            // Running AutoTag again on its own output changes nothing. (A link
            // tracked only through its token has no token left then: the tag
            // remembers such links itself.)
            let (again_tagged, again) = run(groups, &base, case, &href, &fx.click_id);
            let again_group = again_tagged.filter(|g| !g.is_empty());
            if again != href || (group.is_some() && again_group != group) {
                failures.push(format!(
                    "{}: not idempotent: {href:?} -> {again:?}",
                    case.name
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} fixture case(s) failed:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn shared_fixture_globs() {
        for g in fixture().globs {
            assert_eq!(
                glob_match(&g.pattern, &g.text),
                g.matches,
                "glob {:?} on {:?}",
                g.pattern,
                g.text
            );
        }
    }

    #[test]
    fn find_group_by_absolute_url() {
        let fx = fixture();
        let ia = "https://wlpinnacle.adsrv.eacdn.com/C.ashx?btag=a_31512b_18926c_&affid=25020&siteid=31512&adid=18926&c=";
        assert_eq!(
            find_group(&fx.groups, ia).map(|g| g.key.as_str()),
            Some("incomeaccess")
        );
        assert_eq!(
            find_group(&fx.groups, "https://example.com/C.ashx?btag=x"),
            None
        );
        assert_eq!(
            find_group(&fx.groups, "/C.ashx?btag=x"),
            None,
            "relative URLs need a base"
        );
        assert_eq!(find_group(&fx.groups, "not a url"), None);
    }

    #[test]
    fn group_names_are_case_insensitive() {
        let fx = fixture();
        for name in [
            "incomeaccess",
            "IncomeAccess",
            " galapartners ",
            "GALAPARTNERS",
        ] {
            assert_eq!(
                group_by_name(&fx.groups, name).map(|g| g.key.as_str()),
                Some("incomeaccess"),
                "{name}"
            );
        }
        assert_eq!(group_by_name(&fx.groups, ""), None);
        assert_eq!(group_by_name(&fx.groups, "awin"), None);
        assert_eq!(
            manual_group(&fx.groups, None, Some("nofollow sponsored\tGalaPartners"))
                .map(|g| g.key.as_str()),
            Some("incomeaccess")
        );
        assert_eq!(
            manual_group(&fx.groups, Some("unknown"), Some("nofollow")),
            None
        );
    }

    #[test]
    fn set_subid_rules() {
        let id = "AZDxon08eryN7wEjRWeJqwAbCdEf";
        assert_eq!(
            set_subid("https://x.test/a", "c", id).as_deref(),
            Some("https://x.test/a?c=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            set_subid("https://x.test/a?", "c", id).as_deref(),
            Some("https://x.test/a?c=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            set_subid("https://x.test/a?b=1&", "c", id).as_deref(),
            Some("https://x.test/a?b=1&c=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            set_subid("https://x.test/a?c&c=x", "c", id).as_deref(),
            Some("https://x.test/a?c=AZDxon08eryN7wEjRWeJqwAbCdEf&c=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            set_subid("https://x.test/a?cc=1", "c", id).as_deref(),
            Some("https://x.test/a?cc=1&c=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(set_subid("https://x.test/a", "", id), None);
        assert_eq!(set_subid("https://x.test/a", "c&d", id), None);
        for bad in [
            "",
            "#top",
            "javascript:void(0)",
            "mailto:a@b.test",
            "tel:+441234",
            "data:text/html,x",
            "ftp://x.test/",
            "https://",
            "http://exa mple.com/",
            "https://x.test/\na",
        ] {
            assert_eq!(set_subid(bad, "c", id), None, "{bad:?}");
            assert_eq!(replace_click_id_token(bad, id), None, "{bad:?}");
        }
    }

    #[test]
    fn placement_serialisation() {
        let mut g = TrackingGroup {
            key: "partnerize".into(),
            aliases: vec![],
            param: "pubref".into(),
            placement: SubidPlacement::Query,
            patterns: vec![],
        };
        let json = serde_json::to_value(&g).expect("serialises");
        assert!(
            json.get("placement").is_none(),
            "the default is left out: {json}"
        );
        g.placement = SubidPlacement::PathSegment;
        let json = serde_json::to_value(&g).expect("serialises");
        assert_eq!(json["placement"], "path_segment");
        assert_eq!(
            serde_json::from_value::<TrackingGroup>(json).expect("parses"),
            g
        );
        let without: TrackingGroup =
            serde_json::from_str(r#"{"key":"k","param":"c"}"#).expect("parses");
        assert_eq!(without.placement, SubidPlacement::Query);
        let query: TrackingGroup =
            serde_json::from_str(r#"{"key":"k","param":"c","placement":"query"}"#).expect("parses");
        assert_eq!(query.placement, SubidPlacement::Query);
        assert!(
            serde_json::from_str::<TrackingGroup>(
                r#"{"key":"k","param":"c","placement":"fragment"}"#
            )
            .is_err()
        );
    }

    #[test]
    fn set_path_subid_rules() {
        let id = "AZDxon08eryN7wEjRWeJqwAbCdEf";
        assert_eq!(
            set_path_subid(
                "https://prf.hn/click/camref:1100l3/destination:x",
                "pubref",
                id
            )
            .as_deref(),
            Some(
                "https://prf.hn/click/camref:1100l3/pubref:AZDxon08eryN7wEjRWeJqwAbCdEf/destination:x"
            )
        );
        assert_eq!(
            set_path_subid(
                "https://prf.hn/click/camref:1/pubref:old?pubref=q#pubref:f",
                "pubref",
                id
            )
            .as_deref(),
            Some(
                "https://prf.hn/click/camref:1/pubref:AZDxon08eryN7wEjRWeJqwAbCdEf?pubref=q#pubref:f"
            )
        );
        // No camref: the query parameter.
        assert_eq!(
            set_path_subid("https://x.test/go/a#top", "pubref", id).as_deref(),
            Some("https://x.test/go/a?pubref=AZDxon08eryN7wEjRWeJqwAbCdEf#top")
        );
        // The piece before the first `/` is not a segment.
        assert_eq!(
            set_path_subid("camref:1/x", "pubref", id),
            None,
            "a scheme, not http(s)"
        );
        assert_eq!(
            set_path_subid("click/camref:1", "pubref", id).as_deref(),
            Some("click/camref:1/pubref:AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            set_path_subid("https://prf.hn/click/camref:1", "pub/ref", id),
            None
        );
        assert_eq!(
            set_path_subid("https://prf.hn/click/camref:1", "", id),
            None
        );
        assert_eq!(set_path_subid("javascript:void(0)", "pubref", id), None);
        assert_eq!(
            set_subid_at(
                "https://prf.hn/click/camref:1",
                "pubref",
                SubidPlacement::Query,
                id
            )
            .as_deref(),
            Some("https://prf.hn/click/camref:1?pubref=AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        let fx = fixture();
        let partnerize = group_by_name(&fx.groups, "phg").expect("the fixture's partnerize group");
        assert_eq!(
            tag_href(
                "https://prf.hn/click/camref:1/pubref:--click-id--",
                Some(partnerize),
                id
            )
            .as_deref(),
            Some("https://prf.hn/click/camref:1/pubref:AZDxon08eryN7wEjRWeJqwAbCdEf")
        );
        assert_eq!(
            tag_href("https://prf.hn/click/camref:1", None, id).as_deref(),
            Some("https://prf.hn/click/camref:1")
        );
    }

    #[test]
    fn glob_edge_cases() {
        assert!(glob_match("", ""));
        assert!(glob_match("*", ""));
        assert!(glob_match("**", "abc"));
        assert!(!glob_match("", "a"));
        assert!(glob_match("a*b*c", "aXbYbZc"));
        assert!(!glob_match("a*b*c", "aXbYbZ"));
        assert!(glob_match("*.example.com", "a.b.EXAMPLE.com"));
        assert!(!glob_match("*.example.com", "example.com"));
    }

    proptest::proptest! {
        #[test]
        fn set_subid_never_panics_and_is_idempotent(href in "\\PC{0,80}", param in "[a-zA-Z0-9_]{1,8}") {
            let id = "AZDxon08eryN7wEjRWeJqwAbCdEf";
            if let Some(once) = set_subid(&href, &param, id) {
                proptest::prop_assert_eq!(set_subid(&once, &param, id), Some(once.clone()));
            }
            let _ = replace_click_id_token(&href, id);
        }

        #[test]
        fn set_path_subid_is_idempotent(
            path in "(/(camref:|pubref:|PUBREF:|destination:|x)[a-z0-9:]{0,4}){0,5}",
            tail in "(\\?[a-z=&:/]{0,8})?(#[a-z:/]{0,6})?",
        ) {
            let id = "AZDxon08eryN7wEjRWeJqwAbCdEf";
            let href = format!("https://prf.hn{path}{tail}");
            let once = set_path_subid(&href, "pubref", id);
            proptest::prop_assert!(once.is_some(), "{href}");
            let once = once.unwrap_or_default();
            let carries = once.contains(&format!("/pubref:{id}")) || once.contains(&format!("pubref={id}"));
            proptest::prop_assert!(carries, "{} -> {}", href, once);
            proptest::prop_assert_eq!(set_path_subid(&once, "pubref", id), Some(once.clone()));
        }

        #[test]
        fn glob_star_matches_any_run(prefix in "[a-z.]{0,10}", mid in "\\PC{0,20}", suffix in "[a-z.]{0,10}") {
            let text = format!("{prefix}{mid}{suffix}");
            let pattern = format!("{prefix}*{suffix}");
            proptest::prop_assert!(glob_match(&pattern, &text));
        }
    }
}
