//! Traffic source of a landing: `utm_*` parameters, ad click ids, the ad
//! platforms' pixel cookies and the referrer, read from the landing URL as
//! the tag reported it. The channel is classified from these by
//! [`crate::channel`].

use serde::{Deserialize, Serialize};
use url::Url;

/// Ad click-id parameters captured from landing URLs
/// (`reference/traffic-sources.md`), under their canonical names. Matching is
/// exact, except the aliases listed in [`canonical_click_param`].
pub const CLICK_ID_PARAMS: &[&str] = &[
    "gclid",
    "gbraid",
    "wbraid",
    "dclid",
    "fbclid",
    "ttclid",
    "msclkid",
    "twclid",
    "li_fat_id",
    "sccid",
    "epik",
    "rdt_cid",
    "qclid",
    "irclickid",
    "gad_source",
    "mc_cid",
    "igshid",
    "_kx",
];

/// Maps a query parameter name to its canonical click-id name.
pub fn canonical_click_param(name: &str) -> Option<&'static str> {
    match name {
        "ScCid" | "sccid" | "ScCID" => Some("sccid"),
        "irclid" | "irclickid" => Some("irclickid"),
        _ => CLICK_ID_PARAMS.iter().copied().find(|p| *p == name),
    }
}

/// Longest value of a click id or utm parameter we keep; longer values are
/// cut (real ones are far shorter; this bounds storage).
pub const MAX_PARAM_LEN: usize = 512;

/// `utm_*` parameters of the landing URL.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    pub source: Option<String>,
    pub medium: Option<String>,
    pub campaign: Option<String>,
    pub term: Option<String>,
    pub content: Option<String>,
    pub id: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self.source.is_none()
            && self.medium.is_none()
            && self.campaign.is_none()
            && self.term.is_none()
            && self.content.is_none()
            && self.id.is_none()
    }
}

/// What the landing URL and referrer say about where a visit came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LandingParams {
    pub utm: Utm,
    /// (canonical name, raw value), in URL order, first occurrence of each.
    pub click_ids: Vec<(&'static str, String)>,
    /// Landing host and path, without query or fragment (for reports).
    pub landing_page: String,
    pub referrer_host: Option<String>,
}

impl LandingParams {
    pub fn click_id(&self, name: &str) -> Option<&str> {
        self.click_ids
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn has_google_click(&self) -> bool {
        ["gclid", "gbraid", "wbraid"]
            .iter()
            .any(|n| self.click_id(n).is_some())
    }

    /// Whether this landing carries campaign information (utm or an ad click
    /// id other than pure context parameters): such a landing starts a new
    /// session even within the inactivity timeout.
    pub fn has_campaign(&self) -> bool {
        !self.utm.is_empty()
            || self
                .click_ids
                .iter()
                .any(|(n, _)| !matches!(*n, "gad_source" | "mc_cid" | "igshid" | "_kx"))
    }

    /// A stable key of the campaign information, to tell a new campaign from
    /// a reload of the same landing.
    pub fn campaign_key(&self) -> Option<String> {
        if !self.has_campaign() {
            return None;
        }
        let mut key = String::new();
        for v in [
            &self.utm.source,
            &self.utm.medium,
            &self.utm.campaign,
            &self.utm.content,
            &self.utm.term,
            &self.utm.id,
        ] {
            key.push_str(v.as_deref().unwrap_or(""));
            key.push('\u{1f}');
        }
        for (n, v) in &self.click_ids {
            key.push_str(n);
            key.push('=');
            key.push_str(v);
            key.push('\u{1f}');
        }
        Some(key)
    }
}

fn cut(v: &str) -> String {
    if v.len() <= MAX_PARAM_LEN {
        return v.to_owned();
    }
    let mut end = MAX_PARAM_LEN;
    while !v.is_char_boundary(end) {
        end -= 1;
    }
    v[..end].to_owned()
}

/// Reads the landing URL's parameters and the referrer's host.
///
/// Click ids are taken from the raw query string, not percent-decoded:
/// `fbclid` must reach Meta byte for byte (case and all). utm values are
/// decoded (they are labels for reports).
pub fn parse_landing(url: &Url, referrer: Option<&str>) -> LandingParams {
    let mut p = LandingParams::default();
    if let Some(query) = url.query() {
        for pair in query.split('&') {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            if raw.is_empty() {
                continue;
            }
            if let Some(canon) = canonical_click_param(name) {
                if !p.click_ids.iter().any(|(n, _)| *n == canon) {
                    p.click_ids.push((canon, cut(raw)));
                }
                continue;
            }
            let slot = match name {
                "utm_source" => &mut p.utm.source,
                "utm_medium" => &mut p.utm.medium,
                "utm_campaign" => &mut p.utm.campaign,
                "utm_term" => &mut p.utm.term,
                "utm_content" => &mut p.utm.content,
                "utm_id" => &mut p.utm.id,
                _ => continue,
            };
            if slot.is_none() {
                let decoded: String = url::form_urlencoded::parse(format!("x={raw}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let trimmed = decoded.trim();
                if !trimmed.is_empty() {
                    *slot = Some(cut(trimmed));
                }
            }
        }
    }
    p.landing_page = format!("{}{}", url.host_str().unwrap_or(""), url.path());
    p.referrer_host = referrer
        .filter(|r| !r.is_empty())
        .and_then(|r| Url::parse(r).ok())
        .and_then(|u| {
            u.host_str()
                .map(|h| h.trim_start_matches("www.").to_ascii_lowercase())
        });
    p
}

/// Builds Meta's `fbc` from an fbclid seen at `seen_at_ms`:
/// `fb.1.<ms>.<fbclid>`, the fbclid unaltered.
pub fn fbc_from_fbclid(fbclid: &str, seen_at_ms: i64) -> String {
    format!("fb.1.{seen_at_ms}.{fbclid}")
}

/// Whether a cookie value looks like an `_fbc` (4 or 5 dot-separated parts,
/// starting with `fb.`).
pub fn is_valid_fbc(v: &str) -> bool {
    let parts = v.split('.').count();
    v.starts_with("fb.") && (parts == 4 || parts == 5) && v.len() <= MAX_PARAM_LEN
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn landing_params() {
        let u = Url::parse(
            "https://www.site.com/review/?utm_source=facebook&utm_medium=paid%20social&fbclid=IwAR2xY_Z-aBc&gclid=Cj0&ScCid=abc&x=1#top",
        )
        .unwrap();
        let p = parse_landing(&u, Some("https://www.facebook.com/"));
        assert_eq!(p.utm.source.as_deref(), Some("facebook"));
        assert_eq!(p.utm.medium.as_deref(), Some("paid social"));
        assert_eq!(p.click_id("fbclid"), Some("IwAR2xY_Z-aBc"));
        assert_eq!(p.click_id("sccid"), Some("abc"));
        assert!(p.has_google_click());
        assert!(p.has_campaign());
        assert_eq!(p.landing_page, "www.site.com/review/");
        assert_eq!(p.referrer_host.as_deref(), Some("facebook.com"));
    }

    #[test]
    fn fbclid_is_kept_byte_for_byte() {
        let u = Url::parse("https://a.com/?fbclid=AbC%2Bd_EF").unwrap();
        let p = parse_landing(&u, None);
        assert_eq!(p.click_id("fbclid"), Some("AbC%2Bd_EF"));
        assert_eq!(
            fbc_from_fbclid("AbC", 1700000000000),
            "fb.1.1700000000000.AbC"
        );
        assert!(is_valid_fbc("fb.1.1700000000000.AbC"));
        assert!(is_valid_fbc("fb.1.1700000000000.AbC.Bg"));
        assert!(!is_valid_fbc("fb.1"));
    }

    #[test]
    fn no_campaign() {
        let u = Url::parse("https://a.com/page?gad_source=1").unwrap();
        let p = parse_landing(&u, None);
        assert!(!p.has_campaign());
        assert_eq!(p.campaign_key(), None);
    }
}
