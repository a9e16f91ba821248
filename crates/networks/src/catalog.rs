//! The integration catalog: what clicktrail knows about each affiliate
//! network, kept as data in `catalog/*.toml` (one file per network) and
//! embedded in the binary. Each entry says how the network's links look and
//! which subid parameter carries our click id (for AutoTag and server-side
//! link matching), how conversions come back (reporting API or postback URL,
//! with the network's own macros), what an install needs (credentials and
//! settings, validated here), the default event mapping, and where each fact
//! came from in the network's public documentation.
//!
//! The catalog is checked when it is loaded ([`Catalog::embedded`]): a broken
//! file is a build-time mistake, so the server should refuse to start rather
//! than serve half a catalog.

use std::collections::{BTreeMap, BTreeSet};

use clicktrail_domain::links::{LinkPattern, TrackingGroup};
use clicktrail_domain::mapping::{EventMapping, Mapped, normalise_name};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Every file of `catalog/`, embedded. A test fails when a file in the
/// directory is missing here.
const EMBEDDED: &[(&str, &str)] = &[
    (
        "admitad.toml",
        include_str!("../../../catalog/admitad.toml"),
    ),
    ("awin.toml", include_str!("../../../catalog/awin.toml")),
    ("cake.toml", include_str!("../../../catalog/cake.toml")),
    ("cj.toml", include_str!("../../../catalog/cj.toml")),
    (
        "clickbank.toml",
        include_str!("../../../catalog/clickbank.toml"),
    ),
    ("custom.toml", include_str!("../../../catalog/custom.toml")),
    (
        "digistore24.toml",
        include_str!("../../../catalog/digistore24.toml"),
    ),
    (
        "everflow.toml",
        include_str!("../../../catalog/everflow.toml"),
    ),
    (
        "galapartners.toml",
        include_str!("../../../catalog/galapartners.toml"),
    ),
    ("impact.toml", include_str!("../../../catalog/impact.toml")),
    (
        "incomeaccess.toml",
        include_str!("../../../catalog/incomeaccess.toml"),
    ),
    (
        "partnerize.toml",
        include_str!("../../../catalog/partnerize.toml"),
    ),
    (
        "rakuten.toml",
        include_str!("../../../catalog/rakuten.toml"),
    ),
    (
        "shareasale.toml",
        include_str!("../../../catalog/shareasale.toml"),
    ),
    ("tune.toml", include_str!("../../../catalog/tune.toml")),
];

/// The placeholder in a postback template that stands for the
/// integration's own postback URL (`https://host/postback/<token>`).
pub const POSTBACK_URL_PLACEHOLDER: &str = "{postback_url}";

/// The key of the generic postback integration for networks outside the
/// catalog. Its tracking group and subid parameter come from the install's
/// settings.
pub const CUSTOM_KEY: &str = "custom";

/// Names of the embedded catalog files, for the completeness test.
pub fn embedded_file_names() -> impl Iterator<Item = &'static str> {
    EMBEDDED.iter().map(|(name, _)| *name)
}

// ---------------------------------------------------------------------------
// Types (the TOML format; serialised as JSON by the API)
// ---------------------------------------------------------------------------

/// What kind of business the network serves; only used to group the
/// catalog in the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Casino, sports betting, bingo, poker programs.
    Igaming,
    /// Retail and brand affiliate networks.
    Ecommerce,
    /// Marketplaces of digital products (courses, e-books, software).
    DigitalProducts,
    /// CPA / performance networks.
    CpaNetwork,
    /// Partnership platforms that brands run their own programs on.
    PartnerPlatform,
    /// Not a network: the generic integration.
    Generic,
}

/// How conversions reach clicktrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackingMethod {
    /// clicktrail polls the network's reporting API.
    Api,
    /// The network calls the integration's postback URL.
    Postback,
}

/// Where the subid goes in the network's links (the domain's type: the
/// tag and the server's matchers read it from the tracking group).
pub use clicktrail_domain::links::SubidPlacement;

/// Where a standard conversion is observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataSource {
    /// The clicktrail tag on the marketer's site (`OutboundClick`).
    Tag,
    /// The network's reporting API, polled by a connector.
    Api,
    /// The network's postback to the integration's URL.
    Postback,
}

/// The tracking group an entry belongs to: several entries can share one
/// (Gala Partners runs on Income Access).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRef {
    pub key: String,
    /// Other names accepted in `data-tracking-group` / `rel`.
    #[serde(default)]
    pub aliases: Vec<String>,
}

/// One row of the entry's "standard conversions" table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardConversion {
    /// Our conversion event name (`OutboundClick`, `Lead`, `Purchase`).
    pub event: String,
    pub details: String,
    pub data_source: DataSource,
    /// The source event name the connector or postback reports for it
    /// (`registration`, `commission`, `sale`); absent for tag events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_event: Option<String>,
}

/// The postback URL to paste into the network, written with the network's
/// own macro syntax.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostbackSpec {
    /// Starts with `{postback_url}`; the rest uses the network's macros.
    pub template: String,
    /// Where to paste it in the network's interface, and its quirks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A secret or identifying value the install needs (stored encrypted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialField {
    pub name: String,
    pub label: String,
    pub help: String,
    /// Masked on read.
    #[serde(default = "yes")]
    pub secret: bool,
    #[serde(default = "yes")]
    pub required: bool,
}

fn yes() -> bool {
    true
}

/// The type of a setting's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettingKind {
    /// An absolute http(s) URL.
    Url,
    /// Free text, at most [`MAX_STRING_LEN`] characters.
    String,
    /// An integer within `min..=max`; JSON numbers or digit strings.
    Int,
    /// One of `options`.
    Enum,
    /// A name such as a tracking group or query parameter:
    /// 1 to 40 of `[A-Za-z0-9_.-]`.
    Identifier,
    /// A list of host globs (`*.example.com`), checked like catalog patterns.
    HostList,
}

/// A non-secret setting of an install.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingField {
    pub name: String,
    pub label: String,
    pub kind: SettingKind,
    #[serde(default)]
    pub required: bool,
    /// Filled in when the install leaves the setting out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    pub help: String,
    /// The allowed values of an `enum` setting.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// A setting most installs leave at its default: forms fold it under
    /// "Advanced".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub advanced: bool,
}

/// The facts a [`Source`] can document.
pub const SOURCE_FACTS: [&str; 6] = [
    "subid_param",
    "postback_macros",
    "link_patterns",
    "tracking_method",
    "website",
    "setup_steps",
];

/// Where a fact of the entry came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// One of [`SOURCE_FACTS`].
    pub fact: String,
    /// Public documentation URL.
    pub url: String,
    /// `true` when the network's own documentation (or documentation it
    /// links to) confirms the fact; `false` when it comes from third-party
    /// pages or could not be checked.
    pub verified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One network of the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Lower-case key, also the file name: `galapartners`.
    pub key: String,
    pub name: String,
    /// Other keys `GET /api/v1/catalog/{key}` accepts (`hasoffers` for TUNE).
    #[serde(default)]
    pub aliases: Vec<String>,
    pub description: String,
    /// The network's site; absent for the generic `custom` entry.
    #[serde(default)]
    pub website: Option<String>,
    pub category: Category,
    pub tracking_method: TrackingMethod,
    /// The API connector that polls this network (`incomeaccess`), when
    /// clicktrail has one.
    #[serde(default)]
    pub connector: Option<String>,
    pub tracking_group: GroupRef,
    /// The link parameter that carries our click id.
    pub subid_param: String,
    #[serde(default)]
    pub subid_placement: SubidPlacement,
    /// How the network's links look; empty when its links are on each
    /// program's own domain (use `data-tracking-group` or `--CLICK-ID--`).
    #[serde(default)]
    pub link_patterns: Vec<LinkPattern>,
    /// The source event of a postback that names none.
    pub default_postback_event: String,
    pub standard_conversions: Vec<StandardConversion>,
    #[serde(default)]
    pub postback: Option<PostbackSpec>,
    #[serde(default)]
    pub credentials: Vec<CredentialField>,
    #[serde(default)]
    pub settings: Vec<SettingField>,
    pub setup_steps: Vec<String>,
    pub event_mapping: EventMapping,
    pub sources: Vec<Source>,
}

/// How well an entry's main facts are backed by the network's own docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Verification {
    pub subid_param: bool,
    /// `None` when the entry has no postback template.
    pub postback_macros: Option<bool>,
    /// `None` when the entry has no link patterns.
    pub link_patterns: Option<bool>,
}

/// Why the catalog could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog/{file}: {message}")]
    Parse { file: String, message: String },
    #[error("catalog entry {key:?}: {message}")]
    Invalid { key: String, message: String },
    #[error("catalog key or alias {0:?} is used twice")]
    DuplicateKey(String),
}

/// The whole catalog, in key order.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
    /// Normalised key or alias -> index in `entries`.
    index: BTreeMap<String, usize>,
}

// ---------------------------------------------------------------------------
// Loading and validation
// ---------------------------------------------------------------------------

impl Catalog {
    /// Parses and validates the embedded catalog files.
    pub fn embedded() -> Result<Catalog, CatalogError> {
        Self::from_files(EMBEDDED.iter().copied())
    }

    /// Parses and validates catalog files given as (file name, TOML text).
    pub fn from_files<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Catalog, CatalogError> {
        let mut entries = Vec::new();
        for (file, text) in files {
            let entry: CatalogEntry = toml::from_str(text).map_err(|e| CatalogError::Parse {
                file: file.to_owned(),
                message: e.to_string(),
            })?;
            if file != format!("{}.toml", entry.key) {
                return Err(CatalogError::Parse {
                    file: file.to_owned(),
                    message: format!(
                        "the file of entry {:?} must be named {}.toml",
                        entry.key, entry.key
                    ),
                });
            }
            entry.check()?;
            entries.push(entry);
        }
        entries.sort_by(|a, b| a.key.cmp(&b.key));

        let mut index = BTreeMap::new();
        for (i, e) in entries.iter().enumerate() {
            for name in std::iter::once(&e.key).chain(&e.aliases) {
                if index.insert(normalise_name(name), i).is_some() {
                    return Err(CatalogError::DuplicateKey(name.clone()));
                }
            }
        }

        // Entries sharing a tracking group must agree on its subid
        // parameter, or AutoTag would tag the same link two ways.
        let mut params: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
        for e in &entries {
            let group = e.tracking_group.key.as_str();
            match params.get(group) {
                Some((param, other)) if *param != e.subid_param => {
                    return Err(CatalogError::Invalid {
                        key: e.key.clone(),
                        message: format!(
                            "tracking group {group:?} has subid parameter {:?} here but {param:?} in {other:?}",
                            e.subid_param
                        ),
                    });
                }
                _ => {
                    params.insert(group, (e.subid_param.as_str(), e.key.as_str()));
                }
            }
        }
        Ok(Catalog { entries, index })
    }

    /// All entries, in key order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// The entry with this key or alias, case-insensitively (`_`, `-` and
    /// spaces ignored).
    pub fn get(&self, key: &str) -> Option<&CatalogEntry> {
        if key.len() > 100 {
            return None;
        }
        self.index
            .get(&normalise_name(key))
            .and_then(|&i| self.entries.get(i))
    }

    /// The tracking groups of every entry, merged by group key (aliases and
    /// patterns united): what the server-side link matcher and AutoScan
    /// know. The `custom` entry has no group of its own and is left out.
    pub fn tracking_groups(&self) -> Vec<TrackingGroup> {
        let mut groups: BTreeMap<String, TrackingGroup> = BTreeMap::new();
        for e in self.entries.iter().filter(|e| e.key != CUSTOM_KEY) {
            let g = e.tracking_group();
            match groups.get_mut(&g.key) {
                None => {
                    groups.insert(g.key.clone(), g);
                }
                Some(existing) => {
                    for a in g.aliases {
                        if !existing.aliases.contains(&a) {
                            existing.aliases.push(a);
                        }
                    }
                    for p in g.patterns {
                        if !existing.patterns.contains(&p) {
                            existing.patterns.push(p);
                        }
                    }
                }
            }
        }
        groups.into_values().collect()
    }
}

fn invalid(key: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        key: key.to_owned(),
        message: message.into(),
    }
}

fn is_key(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s)
        .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
}

fn is_identifier(s: &str) -> bool {
    (1..=40).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// A host glob is safe when its wildcard cannot reach past the network's
/// own domain: `*` only in the first label, and at least two literal labels
/// after it (`*.adsrv.eacdn.com`, `wl*.adsrv.eacdn.com`; not `*.com`).
pub fn check_host_glob(host: &str) -> Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err(format!("host {host:?} must be 1 to 253 characters"));
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'*'))
    {
        return Err(format!(
            "host {host:?} may only hold lower-case letters, digits, '.', '-' and '*'"
        ));
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(format!("host {host:?} has an empty label"));
    }
    if labels.iter().skip(1).any(|l| l.contains('*')) {
        return Err(format!("host {host:?} may only use '*' in its first label"));
    }
    let literal_labels = if labels.first().is_some_and(|l| l.contains('*')) {
        labels.len() - 1
    } else {
        labels.len()
    };
    if literal_labels < 2 {
        return Err(format!(
            "host {host:?} is too generic: it needs at least two literal labels"
        ));
    }
    let tld = labels.last().copied().unwrap_or_default();
    if tld.len() < 2 || !tld.bytes().all(|b| b.is_ascii_lowercase()) {
        return Err(format!(
            "host {host:?} must end in an alphabetic top-level domain"
        ));
    }
    Ok(())
}

/// The host of a pattern that matches links on any host by their shape
/// alone (Income Access programs' own media domains:
/// `<any host>/redirect.aspx?pid=..&bid=..`).
pub const ANY_HOST: &str = "*";

/// Fewest required query parameters of an [`ANY_HOST`] pattern.
pub const ANY_HOST_MIN_QUERY: usize = 2;

/// Whether a pattern is an [`ANY_HOST`] (shape-only) pattern.
pub fn is_any_host_pattern(p: &LinkPattern) -> bool {
    p.hosts.iter().any(|h| h == ANY_HOST)
}

fn check_pattern(p: &LinkPattern) -> Result<(), String> {
    if p.hosts.is_empty() {
        return Err("a link pattern needs at least one host".into());
    }
    if is_any_host_pattern(p) {
        // A shape that claims every host must be one no ordinary link has:
        // a literal path and at least two required parameters.
        if p.hosts.len() != 1 {
            return Err(format!(
                "a {ANY_HOST:?} host stands alone in its pattern's hosts"
            ));
        }
        if p.paths.is_empty() || p.paths.iter().any(|x| x.contains('*')) {
            return Err(format!(
                "a pattern on any host ({ANY_HOST:?}) needs literal paths, without '*'"
            ));
        }
        if p.query.len() < ANY_HOST_MIN_QUERY {
            return Err(format!(
                "a pattern on any host ({ANY_HOST:?}) needs at least {ANY_HOST_MIN_QUERY} required query parameters"
            ));
        }
    } else {
        for h in &p.hosts {
            check_host_glob(h)?;
        }
    }
    for path in &p.paths {
        if !path.starts_with('/')
            || path.len() > 200
            || path
                .chars()
                .any(|c| c.is_whitespace() || c == '?' || c == '#')
        {
            return Err(format!(
                "path {path:?} must start with '/' and hold no spaces, '?' or '#'"
            ));
        }
    }
    for q in &p.query {
        if q.is_empty()
            || q.len() > 40
            || q.chars()
                .any(|c| c.is_whitespace() || matches!(c, '=' | '&' | '#'))
        {
            return Err(format!("query parameter name {q:?} is not valid"));
        }
    }
    Ok(())
}

impl SettingField {
    fn check(&self) -> Result<(), String> {
        if !is_identifier(&self.name) {
            return Err(format!("setting name {:?} is not valid", self.name));
        }
        if self.kind == SettingKind::Enum && self.options.is_empty() {
            return Err(format!("enum setting {:?} needs options", self.name));
        }
        if self.kind != SettingKind::Enum && !self.options.is_empty() {
            return Err(format!("only enum settings take options ({:?})", self.name));
        }
        if (self.min.is_some() || self.max.is_some()) && self.kind != SettingKind::Int {
            return Err(format!(
                "only int settings take min and max ({:?})",
                self.name
            ));
        }
        if let Some(default) = &self.default {
            if self.required {
                return Err(format!(
                    "required setting {:?} cannot have a default",
                    self.name
                ));
            }
            check_setting_value(self, default)
                .map_err(|(_, m)| format!("default of {:?}: {m}", self.name))?;
        }
        Ok(())
    }
}

impl CatalogEntry {
    fn check(&self) -> Result<(), CatalogError> {
        let key = self.key.as_str();
        if !is_key(key) {
            return Err(invalid(
                key,
                "key must be 1 to 40 of [a-z0-9_], starting with a letter",
            ));
        }
        for a in &self.aliases {
            if !is_key(a) {
                return Err(invalid(
                    key,
                    format!("alias {a:?} must be 1 to 40 of [a-z0-9_]"),
                ));
            }
        }
        for (what, v) in [("name", &self.name), ("description", &self.description)] {
            if v.trim().is_empty() {
                return Err(invalid(key, format!("{what} is empty")));
            }
        }
        match &self.website {
            Some(w) if !is_http_url(w) => {
                return Err(invalid(key, "website must be an http(s) URL"));
            }
            None if key != CUSTOM_KEY => return Err(invalid(key, "website is missing")),
            _ => {}
        }
        if !is_key(&self.tracking_group.key) {
            return Err(invalid(
                key,
                "tracking group key must be 1 to 40 of [a-z0-9_]",
            ));
        }
        for a in &self.tracking_group.aliases {
            if !is_key(a) {
                return Err(invalid(
                    key,
                    format!("tracking group alias {a:?} must be 1 to 40 of [a-z0-9_]"),
                ));
            }
        }
        if self.subid_param.trim().is_empty() || !is_identifier(&self.subid_param) {
            return Err(invalid(
                key,
                "subid_param must be 1 to 40 of [A-Za-z0-9_.-]",
            ));
        }
        for p in &self.link_patterns {
            check_pattern(p).map_err(|m| invalid(key, m))?;
        }

        match (&self.postback, self.tracking_method) {
            (None, TrackingMethod::Postback) => {
                return Err(invalid(
                    key,
                    "a postback integration needs a postback template",
                ));
            }
            (Some(pb), _) => check_template(&pb.template).map_err(|m| invalid(key, m))?,
            (None, TrackingMethod::Api) => {}
        }
        if self.connector.as_deref().is_some_and(|c| !is_key(c)) {
            return Err(invalid(key, "connector must be a key such as incomeaccess"));
        }

        self.event_mapping.validate().map_err(|m| invalid(key, m))?;
        if self.event_mapping.0.is_empty() {
            return Err(invalid(key, "event_mapping is empty"));
        }
        if self.default_postback_event.trim().is_empty() || self.default_postback_event.len() > 100
        {
            return Err(invalid(
                key,
                "default_postback_event must be 1 to 100 characters",
            ));
        }
        if self.event_mapping.map(&self.default_postback_event) == Mapped::Unmapped {
            return Err(invalid(
                key,
                "the event mapping has no rule for default_postback_event",
            ));
        }
        if self.standard_conversions.is_empty() {
            return Err(invalid(key, "standard_conversions is empty"));
        }
        for c in &self.standard_conversions {
            if let Some(src) = &c.source_event {
                match self.event_mapping.map(src) {
                    Mapped::Event { name, .. } if name == c.event => {}
                    _ => {
                        return Err(invalid(
                            key,
                            format!(
                                "standard conversion {:?}: the event mapping does not turn {src:?} into it",
                                c.event
                            ),
                        ));
                    }
                }
            }
        }

        let mut names = BTreeSet::new();
        for c in &self.credentials {
            if !is_identifier(&c.name) || !names.insert(format!("credentials.{}", c.name)) {
                return Err(invalid(
                    key,
                    format!("credential {:?} is not a valid, unique name", c.name),
                ));
            }
        }
        for s in &self.settings {
            s.check().map_err(|m| invalid(key, m))?;
            if !names.insert(format!("settings.{}", s.name)) {
                return Err(invalid(
                    key,
                    format!("setting {:?} is declared twice", s.name),
                ));
            }
        }
        if self.setup_steps.is_empty() {
            return Err(invalid(key, "setup_steps is empty"));
        }

        for s in &self.sources {
            if !SOURCE_FACTS.contains(&s.fact.as_str()) {
                return Err(invalid(
                    key,
                    format!("source fact {:?} is not one of {SOURCE_FACTS:?}", s.fact),
                ));
            }
            if !is_http_url(&s.url) {
                return Err(invalid(
                    key,
                    format!("source URL {:?} is not an http(s) URL", s.url),
                ));
            }
        }
        if key != CUSTOM_KEY {
            let documented = |fact: &str| self.sources.iter().any(|s| s.fact == fact);
            if !documented("subid_param") {
                return Err(invalid(key, "no source documents subid_param"));
            }
            if self.postback.is_some() && !documented("postback_macros") {
                return Err(invalid(key, "no source documents postback_macros"));
            }
            if !self.link_patterns.is_empty() && !documented("link_patterns") {
                return Err(invalid(key, "no source documents link_patterns"));
            }
        }
        Ok(())
    }
}

fn check_template(template: &str) -> Result<(), String> {
    let Some(rest) = template.strip_prefix(POSTBACK_URL_PLACEHOLDER) else {
        return Err(format!(
            "the postback template must start with {POSTBACK_URL_PLACEHOLDER}"
        ));
    };
    if rest.contains(POSTBACK_URL_PLACEHOLDER) {
        return Err(format!(
            "{POSTBACK_URL_PLACEHOLDER} appears twice in the postback template"
        ));
    }
    if !rest.starts_with('?') {
        return Err("the postback template must continue with a query string".into());
    }
    let filled = format!("https://clicktrail.invalid/postback/token{rest}");
    url::Url::parse(&filled).map_err(|e| format!("the postback template is not a URL: {e}"))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Entry helpers
// ---------------------------------------------------------------------------

impl CatalogEntry {
    /// The entry's tracking group as the tag and the matchers see it. For
    /// `custom` this is a placeholder; use [`CatalogEntry::install_tracking_group`].
    pub fn tracking_group(&self) -> TrackingGroup {
        TrackingGroup {
            key: self.tracking_group.key.clone(),
            aliases: self.tracking_group.aliases.clone(),
            param: self.subid_param.clone(),
            placement: self.subid_placement,
            patterns: self.link_patterns.clone(),
        }
    }

    /// The tracking group of an install with these (validated) settings: the
    /// catalog's for every entry but `custom`, whose group, subid parameter
    /// and hosts come from the settings.
    pub fn install_tracking_group(&self, settings: &Map<String, Value>) -> TrackingGroup {
        if self.key != CUSTOM_KEY {
            return self.tracking_group();
        }
        let text = |name: &str| {
            settings
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let hosts: Vec<String> = settings
            .get("hosts")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        TrackingGroup {
            key: text("tracking_group").unwrap_or_else(|| self.tracking_group.key.clone()),
            aliases: Vec::new(),
            param: text("subid_param").unwrap_or_else(|| self.subid_param.clone()),
            placement: SubidPlacement::Query,
            patterns: if hosts.is_empty() {
                Vec::new()
            } else {
                vec![LinkPattern {
                    hosts,
                    paths: Vec::new(),
                    query: Vec::new(),
                }]
            },
        }
    }

    /// The postback URL to paste into the network: the template with
    /// `{postback_url}` replaced by the integration's URL. `None` when the
    /// network takes no postback.
    pub fn postback_url(&self, integration_postback_url: &str) -> Option<String> {
        self.postback.as_ref().map(|p| {
            p.template
                .replacen(POSTBACK_URL_PLACEHOLDER, integration_postback_url, 1)
        })
    }

    /// Whether the main facts are confirmed by the network's own
    /// documentation: a fact counts as verified only when every source
    /// given for it is.
    pub fn verification(&self) -> Verification {
        let verified = |fact: &str| {
            let mut sources = self.sources.iter().filter(|s| s.fact == fact).peekable();
            sources.peek().is_some() && sources.all(|s| s.verified)
        };
        Verification {
            subid_param: verified("subid_param"),
            postback_macros: self.postback.as_ref().map(|_| verified("postback_macros")),
            link_patterns: (!self.link_patterns.is_empty()).then(|| verified("link_patterns")),
        }
    }
}

// ---------------------------------------------------------------------------
// Install validation
// ---------------------------------------------------------------------------

/// Longest string setting or credential accepted.
pub const MAX_STRING_LEN: usize = 1000;
/// Most hosts a `host_list` setting takes.
pub const MAX_HOSTS: usize = 20;

/// Stable codes of install validation errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldErrorCode {
    Required,
    UnknownField,
    InvalidType,
    InvalidUrl,
    InvalidOption,
    InvalidFormat,
    OutOfRange,
    TooLong,
}

impl FieldErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::UnknownField => "unknown_field",
            Self::InvalidType => "invalid_type",
            Self::InvalidUrl => "invalid_url",
            Self::InvalidOption => "invalid_option",
            Self::InvalidFormat => "invalid_format",
            Self::OutOfRange => "out_of_range",
            Self::TooLong => "too_long",
        }
    }
}

/// One problem with an install request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// `settings.api_url`, `credentials.security_key`.
    pub field: String,
    pub code: FieldErrorCode,
    pub message: String,
}

/// An install's credentials and settings, checked, with defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedInstall {
    /// Only declared credentials, as trimmed strings.
    pub credentials: Map<String, Value>,
    /// Every declared setting that has a value (given or default), in its
    /// canonical JSON type (ints as numbers, URLs as strings...).
    pub settings: Map<String, Value>,
    /// The tracking group the install's links use.
    pub tracking_group: TrackingGroup,
}

impl CatalogEntry {
    /// Checks an install request against the entry's declared credentials
    /// and settings: required fields present, types and formats right,
    /// unknown fields rejected, defaults filled in. All problems are
    /// reported at once.
    pub fn validate_install(
        &self,
        credentials: &Map<String, Value>,
        settings: &Map<String, Value>,
    ) -> Result<ValidatedInstall, Vec<FieldError>> {
        let mut errors = Vec::new();
        let err = |field: String, code: FieldErrorCode, message: String| FieldError {
            field,
            code,
            message,
        };

        let mut creds = Map::new();
        for name in credentials.keys() {
            if !self.credentials.iter().any(|c| &c.name == name) {
                errors.push(err(
                    format!("credentials.{}", truncate(name, 60)),
                    FieldErrorCode::UnknownField,
                    format!("{} takes no credential of that name", self.name),
                ));
            }
        }
        for c in &self.credentials {
            let field = format!("credentials.{}", c.name);
            match credentials.get(&c.name) {
                None | Some(Value::Null) => {
                    if c.required {
                        errors.push(err(
                            field,
                            FieldErrorCode::Required,
                            format!("{} is required", c.label),
                        ));
                    }
                }
                Some(Value::String(s)) => {
                    let s = s.trim();
                    if s.is_empty() {
                        if c.required {
                            errors.push(err(
                                field,
                                FieldErrorCode::Required,
                                format!("{} is required", c.label),
                            ));
                        }
                    } else if s.len() > MAX_STRING_LEN {
                        errors.push(err(
                            field,
                            FieldErrorCode::TooLong,
                            format!("at most {MAX_STRING_LEN} characters"),
                        ));
                    } else if s.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
                        errors.push(err(
                            field,
                            FieldErrorCode::InvalidFormat,
                            "must not contain spaces or control characters (was it pasted whole?)"
                                .into(),
                        ));
                    } else {
                        creds.insert(c.name.clone(), Value::String(s.to_owned()));
                    }
                }
                Some(_) => errors.push(err(
                    field,
                    FieldErrorCode::InvalidType,
                    "must be a string".into(),
                )),
            }
        }

        let mut out = Map::new();
        for name in settings.keys() {
            if !self.settings.iter().any(|s| &s.name == name) {
                errors.push(err(
                    format!("settings.{}", truncate(name, 60)),
                    FieldErrorCode::UnknownField,
                    format!("{} takes no setting of that name", self.name),
                ));
            }
        }
        for s in &self.settings {
            let field = format!("settings.{}", s.name);
            let given = settings
                .get(&s.name)
                .filter(|v| !v.is_null() && v.as_str().is_none_or(|t| !t.trim().is_empty()));
            match given {
                None => {
                    if s.required {
                        errors.push(err(
                            field,
                            FieldErrorCode::Required,
                            format!("{} is required", s.label),
                        ));
                    } else if let Some(d) = &s.default {
                        out.insert(s.name.clone(), d.clone());
                    }
                }
                Some(v) => match check_setting_value(s, v) {
                    Ok(canonical) => {
                        out.insert(s.name.clone(), canonical);
                    }
                    Err((code, message)) => errors.push(err(field, code, message)),
                },
            }
        }

        let bad_group = out
            .get("tracking_group")
            .and_then(Value::as_str)
            .is_some_and(|g| !is_key(g));
        if self.key == CUSTOM_KEY && bad_group {
            errors.push(err(
                "settings.tracking_group".into(),
                FieldErrorCode::InvalidFormat,
                "must be 1 to 40 of [a-z0-9_], starting with a letter".into(),
            ));
        }

        if !errors.is_empty() {
            return Err(errors);
        }
        let tracking_group = self.install_tracking_group(&out);
        Ok(ValidatedInstall {
            credentials: creds,
            settings: out,
            tracking_group,
        })
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Checks one setting value; returns its canonical form.
fn check_setting_value(s: &SettingField, v: &Value) -> Result<Value, (FieldErrorCode, String)> {
    use FieldErrorCode as C;
    let as_text = |v: &Value| -> Result<String, (FieldErrorCode, String)> {
        match v {
            Value::String(t) if t.len() > MAX_STRING_LEN => {
                Err((C::TooLong, format!("at most {MAX_STRING_LEN} characters")))
            }
            Value::String(t) => Ok(t.trim().to_owned()),
            _ => Err((C::InvalidType, "must be a string".into())),
        }
    };
    match s.kind {
        SettingKind::String => as_text(v).map(Value::String),
        SettingKind::Url => {
            let t = as_text(v)?;
            let u = url::Url::parse(&t)
                .map_err(|_| (C::InvalidUrl, "must be an absolute http(s) URL".into()))?;
            if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none_or(str::is_empty) {
                return Err((C::InvalidUrl, "must be an absolute http(s) URL".into()));
            }
            // The security key belongs in the credentials, which are
            // encrypted; a URL copied whole from the back office carries it.
            if u.query_pairs().any(|(k, _)| k.eq_ignore_ascii_case("key")) {
                return Err((
                    C::InvalidUrl,
                    "remove the key parameter from the URL and give the key as a credential instead".into(),
                ));
            }
            Ok(Value::String(t))
        }
        SettingKind::Int => {
            let n = match v {
                Value::Number(n) => n
                    .as_i64()
                    .ok_or((C::InvalidType, "must be a whole number".into()))?,
                Value::String(t) => t
                    .trim()
                    .parse::<i64>()
                    .map_err(|_| (C::InvalidType, "must be a whole number".into()))?,
                _ => return Err((C::InvalidType, "must be a whole number".into())),
            };
            if s.min.is_some_and(|m| n < m) || s.max.is_some_and(|m| n > m) {
                let range = match (s.min, s.max) {
                    (Some(a), Some(b)) => format!("between {a} and {b}"),
                    (Some(a), None) => format!("at least {a}"),
                    (None, Some(b)) => format!("at most {b}"),
                    (None, None) => String::new(),
                };
                return Err((C::OutOfRange, format!("must be {range}")));
            }
            Ok(Value::from(n))
        }
        SettingKind::Enum => {
            let t = as_text(v)?;
            match s.options.iter().find(|o| o.eq_ignore_ascii_case(&t)) {
                Some(o) => Ok(Value::String(o.clone())),
                None => Err((
                    C::InvalidOption,
                    format!("must be one of {}", s.options.join(", ")),
                )),
            }
        }
        SettingKind::Identifier => {
            let t = as_text(v)?;
            if is_identifier(&t) {
                Ok(Value::String(t))
            } else {
                Err((
                    C::InvalidFormat,
                    "must be 1 to 40 of letters, digits, '_', '-' or '.'".into(),
                ))
            }
        }
        SettingKind::HostList => {
            let items = v
                .as_array()
                .ok_or((C::InvalidType, "must be a list of host names".into()))?;
            if items.len() > MAX_HOSTS {
                return Err((C::TooLong, format!("at most {MAX_HOSTS} hosts")));
            }
            let mut hosts = Vec::with_capacity(items.len());
            for item in items {
                let h = item
                    .as_str()
                    .ok_or((C::InvalidType, "must be a list of host names".into()))?;
                let h = h.trim().to_ascii_lowercase();
                check_host_glob(&h).map_err(|m| (C::InvalidFormat, m))?;
                hosts.push(Value::String(h));
            }
            Ok(Value::Array(hosts))
        }
    }
}
