//! The tag as served: the built bundle (`tag/dist/clicktrail.min.js`,
//! embedded at compile time) with a property's configuration substituted
//! for its placeholder, and the install snippet (`tag/snippet.html`).
//!
//! The configuration holds the tracking groups of the integrations
//! installed on the property, so a newly installed integration reaches
//! visitors with the next tag fetch (ETag, short max-age).

use clicktrail_domain::links::TrackingGroup;
use clicktrail_store::properties::Property;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TAG_JS: &str = include_str!("../../../tag/dist/clicktrail.min.js");
const SNIPPET: &str = include_str!("../../../tag/snippet.html");
const PLACEHOLDER: &str = "__CLICKTRAIL_CONFIG__";

/// The install snippet for a tag URL.
pub fn snippet(tag_url: &str) -> String {
    // The URL goes inside a double-quoted JS string in an HTML <script>.
    let safe: String = tag_url
        .chars()
        .flat_map(|c| match c {
            '"' => "%22".chars().collect::<Vec<_>>(),
            '\\' => "%5C".chars().collect(),
            '<' => "%3C".chars().collect(),
            '>' => "%3E".chars().collect(),
            c => vec![c],
        })
        .collect();
    SNIPPET.replace("{{TAG_URL}}", &safe).trim().to_owned()
}

/// A property's tag, ready to serve.
#[derive(Debug, Clone)]
pub struct ServedTag {
    pub body: String,
    pub etag: String,
}

/// JSON that is safe inside a JS source file: no `</script>` and no raw
/// line separators.
fn js_json(v: &Value) -> String {
    v.to_string()
        .replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

/// The tag's configuration for a property with these tracking groups.
pub fn config_json(public_base: &str, property: &Property, groups: &[TrackingGroup]) -> Value {
    let s = &property.settings;
    let base = public_base;
    json!({
        "v": 1,
        "property": property.id,
        "collect": format!("{base}/collect"),
        "scan": s.autoscan.then(|| format!("{base}/t/{}/scan", property.id)),
        "groups": groups,
        "autoscan_prefixes": s.autoscan_prefixes,
        "session_timeout_min": s.session_timeout_min,
        "consent_required": s.consent_required,
        "pixels": s.pixels,
        "ext": format!("{base}/t/ext/{}.js", ext_hash()),
    })
}

impl ServedTag {
    /// The bundle with `config` substituted for its placeholder.
    pub fn build(config: &Value) -> Self {
        let body = TAG_JS.replacen(PLACEHOLDER, &js_json(config), 1);
        let etag = format!(
            "\"{}\"",
            hex::encode(&Sha256::digest(body.as_bytes())[..12])
        );
        ServedTag { body, etag }
    }
}

/// The tag's on-demand extension (pixels, identify, AutoScan, forms), if the
/// build has one.
pub const EXT_JS: &str = include_str!("../../../tag/dist/clicktrail-ext.min.js");

/// Content hash of the extension: its URL changes with its content, so it
/// can be cached forever.
pub fn ext_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hex::encode(&Sha256::digest(EXT_JS.as_bytes())[..8]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_has_one_placeholder() {
        assert_eq!(TAG_JS.matches(PLACEHOLDER).count(), 1);
    }

    #[test]
    fn snippet_escapes_the_url() {
        let s = snippet("https://t.example.com/t/abc.js\"><script>");
        assert!(s.contains("https://t.example.com/t/abc.js%22%3E%3Cscript%3E"));
        assert!(!s.contains("{{TAG_URL}}"));
    }

    #[test]
    fn json_is_safe_in_js() {
        let v = json!({"a": "</script>\u{2028}"});
        let s = js_json(&v);
        assert!(!s.contains("</script>"));
        assert!(!s.contains('\u{2028}'));
    }
}
