//! Tracking groups and the rules that recognise their affiliate links.
//!
//! The same rules run in three places: the tag (TypeScript, AutoTag), the
//! server's AutoScan resolver and the link checker (this module). The shared
//! fixture `tests/fixtures/links.json` keeps the two implementations in step.
//!
//! (Types fixed here; matching and subid rewriting are being written.)

use serde::{Deserialize, Serialize};

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
    #[serde(default)]
    pub patterns: Vec<LinkPattern>,
}
