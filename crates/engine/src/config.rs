//! Configuration: defaults, then an optional `clicktrail.toml`, then
//! `CLICKTRAIL_*` environment variables (nested keys with `__`, e.g.
//! `CLICKTRAIL_INGEST__QUEUE_CAPACITY`). Validated at start; unknown keys
//! are rejected with a message naming the key and where it came from.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// A secret from the configuration (the master key): never printed, never
/// serialised in clear (it serialises as `***`), zeroed when dropped, and
/// compared in constant time.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(SecretString::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether `candidate` is this secret, in constant time (digests are
    /// compared, so not even the length leaks).
    pub fn matches(&self, candidate: &str) -> bool {
        crate::auth::same_secret(self.expose(), candidate)
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to serve on.
    pub listen: SocketAddr,
    /// `sqlite://path` or `postgres://...`.
    pub database_url: String,
    /// SQLite only: `full` (default; every acknowledged write is fsynced)
    /// or `normal` (survives a process crash, not a power cut; faster).
    pub sqlite_synchronous: clicktrail_store::SqliteSync,
    /// Base URL written into the tag and postback URLs; `http://<listen>`
    /// when unset.
    pub public_url: Option<Url>,
    /// Bearer token with full API rights; also keys the encryption of
    /// stored credentials.
    pub master_key: Option<Secret>,
    /// Let server-side fetches reach loopback and private addresses.
    pub allow_private_networks: bool,
    /// Peers whose `X-Forwarded-For` is trusted (CIDRs), e.g.
    /// `["127.0.0.1/32", "10.0.0.0/8"]`.
    pub trusted_proxies: Vec<IpNet>,
    /// The addresses this server's outbound requests come from, as the
    /// operator knows them (e.g. `["203.0.113.7"]`): shown where a network
    /// must whitelist the caller (Income Access). clicktrail never asks an
    /// outside service for them. From the environment, a list or a comma
    /// separated string (`CLICKTRAIL_EGRESS_IPS=203.0.113.7,2001:db8::7`).
    #[serde(deserialize_with = "ip_list")]
    pub egress_ips: Vec<IpAddr>,
    /// Where the generated key file lives (and the SQLite database by
    /// default).
    pub data_dir: PathBuf,
    /// This process's id in claims shared through the database (poll
    /// claims). Unset: an id generated once and kept in
    /// `<data_dir>/instance.id`. Set it when processes share a data
    /// directory (each its own) or the data directory is not kept.
    pub instance_id: Option<String>,
    /// `tracing` filter, e.g. `info` or `clicktrail=debug,info`.
    pub log: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
    pub ingest: IngestConfig,
    pub delivery: DeliveryConfig,
    pub polling: PollingConfig,
    pub http: HttpConfig,
    pub metrics: MetricsConfig,
    pub retention: RetentionConfig,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Requests waiting for the writer before the collector answers 503.
    pub queue_capacity: usize,
    /// Most events committed in one transaction.
    pub max_batch_events: usize,
    /// Writer tasks (PostgreSQL only; SQLite always has one). 0: automatic.
    pub writers: usize,
    /// Largest `/collect` body in bytes.
    pub max_body_bytes: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 2048,
            max_batch_events: 2000,
            writers: 0,
            max_body_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Attempts before a delivery is `dead`.
    pub max_attempts: u32,
    /// First retry delay, seconds; doubles each attempt (with jitter).
    pub backoff_base_secs: u64,
    /// Longest retry delay, seconds (also the clamp of `Retry-After`).
    pub backoff_max_secs: u64,
    /// How often idle workers look for due deliveries, milliseconds.
    pub poll_interval_ms: u64,
    /// Per-request timeout to ad platforms, seconds.
    pub timeout_secs: u64,
    /// Concurrent batches in flight.
    pub concurrency: usize,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 12,
            backoff_base_secs: 10,
            backoff_max_secs: 6 * 3600,
            poll_interval_ms: 200,
            timeout_secs: 10,
            concurrency: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PollingConfig {
    /// Run scheduled API polls (Income Access) at all.
    pub enabled: bool,
    /// How often the scheduler looks for integrations due a poll, seconds.
    pub tick_secs: u64,
}

impl Default for PollingConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tick_secs: 30,
        }
    }
}

/// The retention job: deleted properties purged after their grace period,
/// raw data past each property's retention, encrypted addresses past the
/// attribution window (see `docs/PRIVACY.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Run the daily job at all (off: nothing is purged or expired).
    pub enabled: bool,
    /// Days a deleted property can be restored before its data is purged.
    pub deleted_property_grace_days: u32,
    /// Rows deleted per statement.
    pub batch_rows: u32,
    /// Pause between two batches, milliseconds: lets the ingest writer
    /// (on SQLite, the one writer) commit in between.
    pub batch_pause_ms: u64,
    /// Hours between two runs.
    pub interval_hours: u32,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            deleted_property_grace_days: 30,
            batch_rows: 1000,
            batch_pause_ms: 50,
            interval_hours: 24,
        }
    }
}

/// The HTTP server's own limits: how long a client may take, how many
/// connections are served at once, and how long shutdown waits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds a connection may take to send a request's headers; also how
    /// long an idle keep-alive connection is kept.
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may go without sending data.
    pub body_read_timeout_secs: u64,
    /// Seconds a request may take from its headers to the response's.
    pub request_timeout_secs: u64,
    /// Connections served at once; more are answered 503 + `Retry-After`
    /// (or closed at once when many are waiting for that answer). 0: half
    /// of the open-file limit left after 256 kept for everything else, at
    /// most 16,384.
    pub max_connections: usize,
    /// Longest request target (path and query) in bytes; longer: 414.
    pub max_uri_bytes: usize,
    /// Seconds in-flight requests get to finish at shutdown before their
    /// connections are closed.
    pub shutdown_grace_secs: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_secs: 20,
            body_read_timeout_secs: 20,
            request_timeout_secs: 60,
            max_connections: 0,
            max_uri_bytes: 8 * 1024,
            shutdown_grace_secs: 10,
        }
    }
}

impl HttpConfig {
    /// Open-file descriptors kept for the database, logs, outbound requests
    /// and the like when `max_connections` is automatic.
    pub const RESERVED_FILES: u64 = 256;
    /// The automatic connection cap's ceiling.
    pub const AUTO_MAX_CONNECTIONS: usize = 16_384;

    /// The connection cap, given the process's open-file soft limit.
    pub fn connection_cap(&self, open_files_limit: u64) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let half = open_files_limit.saturating_sub(Self::RESERVED_FILES) / 2;
        usize::try_from(half)
            .unwrap_or(usize::MAX)
            .clamp(16, Self::AUTO_MAX_CONNECTIONS)
    }
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// When set, `/metrics` answers only `Authorization: Bearer <token>`.
    pub token: Option<Secret>,
    /// When set, `/metrics` is served only on this address (and not on
    /// `listen`), e.g. `127.0.0.1:9090` for a local Prometheus.
    pub listen: Option<SocketAddr>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://clicktrail-data/clicktrail.db".into(),
            sqlite_synchronous: clicktrail_store::SqliteSync::Full,
            public_url: None,
            master_key: None,
            allow_private_networks: false,
            trusted_proxies: Vec::new(),
            egress_ips: Vec::new(),
            data_dir: PathBuf::from("clicktrail-data"),
            instance_id: None,
            log: "info".into(),
            log_format: LogFormat::Text,
            ingest: IngestConfig::default(),
            delivery: DeliveryConfig::default(),
            polling: PollingConfig::default(),
            http: HttpConfig::default(),
            metrics: MetricsConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

/// IP addresses as a list, or as one string of addresses separated by
/// commas or spaces (how an environment variable gives them).
fn ip_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        List(Vec<String>),
        Text(String),
    }
    let items = match Given::deserialize(d)? {
        Given::List(l) => l,
        Given::Text(t) => t
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    items
        .iter()
        .map(|s| {
            s.trim().parse::<IpAddr>().map_err(|_| {
                serde::de::Error::custom(format!(
                    "egress_ips: {s:?} is not an IP address (give addresses such as 203.0.113.7, not names or CIDRs)"
                ))
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Figment(#[from] Box<figment::Error>),
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads defaults, then `file` (or `./clicktrail.toml` when present),
    /// then the environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match file {
            Some(f) => {
                if !f.exists() {
                    return Err(ConfigError::Invalid(format!(
                        "config file {} does not exist",
                        f.display()
                    )));
                }
                fig = fig.merge(Toml::file(f));
            }
            None => {
                if Path::new("clicktrail.toml").exists() {
                    fig = fig.merge(Toml::file("clicktrail.toml"));
                }
            }
        }
        fig = fig.merge(Env::prefixed("CLICKTRAIL_").split("__"));
        Self::from_figment(fig)
    }

    pub fn from_figment(fig: Figment) -> Result<Config, ConfigError> {
        let c: Config = fig.extract().map_err(Box::new)?;
        c.validate()?;
        Ok(c)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if let Some(k) = &self.master_key
            && k.expose().len() < 16
        {
            return Err(ConfigError::Invalid(
                "master_key must be at least 16 characters".into(),
            ));
        }
        if let Some(u) = &self.public_url
            && !matches!(u.scheme(), "http" | "https")
        {
            return Err(ConfigError::Invalid(
                "public_url must be an http(s) URL".into(),
            ));
        }
        if self.ingest.queue_capacity == 0 || self.ingest.max_batch_events == 0 {
            return Err(ConfigError::Invalid(
                "ingest.queue_capacity and ingest.max_batch_events must be > 0".into(),
            ));
        }
        if self.delivery.max_attempts == 0 || self.delivery.concurrency == 0 {
            return Err(ConfigError::Invalid(
                "delivery.max_attempts and delivery.concurrency must be > 0".into(),
            ));
        }
        let r = &self.retention;
        if r.batch_rows == 0 || r.interval_hours == 0 {
            return Err(ConfigError::Invalid(
                "retention.batch_rows and retention.interval_hours must be > 0".into(),
            ));
        }
        let h = &self.http;
        if h.header_read_timeout_secs == 0
            || h.body_read_timeout_secs == 0
            || h.request_timeout_secs == 0
        {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_secs, http.body_read_timeout_secs and http.request_timeout_secs must be > 0".into(),
            ));
        }
        if h.max_uri_bytes < 256 {
            return Err(ConfigError::Invalid(
                "http.max_uri_bytes must be at least 256".into(),
            ));
        }
        if let Some(t) = &self.metrics.token
            && t.expose().len() < 16
        {
            return Err(ConfigError::Invalid(
                "metrics.token must be at least 16 characters".into(),
            ));
        }
        if self.metrics.listen.is_some_and(|m| m == self.listen) {
            return Err(ConfigError::Invalid(
                "metrics.listen must differ from listen".into(),
            ));
        }
        Ok(())
    }

    /// The public base URL without a trailing slash.
    pub fn public_base(&self) -> String {
        match &self.public_url {
            Some(u) => u.as_str().trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen),
        }
    }
}

#[cfg(test)]
#[expect(
    clippy::result_large_err,
    reason = "figment's Jail closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn defaults_and_env() {
        Jail::expect_with(|jail| {
            jail.set_env("CLICKTRAIL_LISTEN", "127.0.0.1:9999");
            jail.set_env("CLICKTRAIL_INGEST__QUEUE_CAPACITY", "10");
            jail.set_env("CLICKTRAIL_ALLOW_PRIVATE_NETWORKS", "true");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.listen.port(), 9999);
            assert_eq!(c.ingest.queue_capacity, 10);
            assert!(c.allow_private_networks);
            assert_eq!(c.public_base(), "http://127.0.0.1:9999");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("CLICKTRAIL_LISTN", "127.0.0.1:9999");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("listn"), "{err}");
            jail.clear_env();
            jail.create_file("clicktrail.toml", "[ingest]\nqueue_capacty = 3\n")?;
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("queue_capacty"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn sqlite_synchronous_is_full_unless_set() {
        Jail::expect_with(|jail| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.sqlite_synchronous, clicktrail_store::SqliteSync::Full);
            jail.set_env("CLICKTRAIL_SQLITE_SYNCHRONOUS", "normal");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.sqlite_synchronous, clicktrail_store::SqliteSync::Normal);
            jail.set_env("CLICKTRAIL_SQLITE_SYNCHRONOUS", "off");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("off"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn the_master_key_never_serialises_in_clear() {
        let cfg = Config {
            master_key: Some(Secret::new("a-very-secret-master-key")),
            ..Config::default()
        };
        let text = serde_json::to_string(&cfg).unwrap();
        assert!(!text.contains("a-very-secret"), "{text}");
        assert!(format!("{cfg:?}").contains("Secret(***)"));
        let k = cfg.master_key.unwrap();
        assert!(k.matches("a-very-secret-master-key"));
        assert!(!k.matches("a-very-secret-master-kez"));
        assert!(!k.matches(""));
    }

    #[test]
    fn http_and_metrics_settings_load_from_env() {
        Jail::expect_with(|jail| {
            jail.set_env("CLICKTRAIL_HTTP__HEADER_READ_TIMEOUT_SECS", "3");
            jail.set_env("CLICKTRAIL_HTTP__MAX_CONNECTIONS", "100");
            jail.set_env("CLICKTRAIL_METRICS__TOKEN", "metrics-token-0123456789");
            jail.set_env("CLICKTRAIL_METRICS__LISTEN", "127.0.0.1:9090");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.http.header_read_timeout_secs, 3);
            assert_eq!(c.http.connection_cap(1024), 100);
            assert!(
                c.metrics
                    .token
                    .is_some_and(|t| t.matches("metrics-token-0123456789"))
            );
            assert_eq!(c.metrics.listen, Some("127.0.0.1:9090".parse().unwrap()));
            jail.set_env("CLICKTRAIL_METRICS__TOKEN", "short");
            assert!(Config::load(None).is_err());
            jail.set_env("CLICKTRAIL_METRICS__TOKEN", "metrics-token-0123456789");
            jail.set_env("CLICKTRAIL_HTTP__REQUEST_TIMEOUT_SECS", "0");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }

    #[test]
    fn the_automatic_connection_cap_stays_below_the_open_file_limit() {
        let h = HttpConfig::default();
        assert_eq!(h.connection_cap(1024), 384);
        assert_eq!(h.connection_cap(512), 128);
        assert_eq!(h.connection_cap(100), 16);
        assert_eq!(h.connection_cap(1 << 20), HttpConfig::AUTO_MAX_CONNECTIONS);
    }

    #[test]
    fn egress_ips_from_env_and_file() {
        Jail::expect_with(|jail| {
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert!(c.egress_ips.is_empty());
            jail.set_env("CLICKTRAIL_EGRESS_IPS", "203.0.113.7, 2001:db8::7");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                c.egress_ips,
                vec![
                    "203.0.113.7".parse::<IpAddr>().unwrap(),
                    "2001:db8::7".parse::<IpAddr>().unwrap()
                ]
            );
            jail.set_env("CLICKTRAIL_EGRESS_IPS", "[203.0.113.8]");
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(c.egress_ips, vec!["203.0.113.8".parse::<IpAddr>().unwrap()]);
            jail.set_env("CLICKTRAIL_EGRESS_IPS", "egress.example.com");
            let err = Config::load(None).unwrap_err().to_string();
            assert!(err.contains("egress_ips"), "{err}");
            jail.clear_env();
            jail.create_file("clicktrail.toml", "egress_ips = [\"198.51.100.4\"]\n")?;
            let c = Config::load(None).map_err(|e| e.to_string())?;
            assert_eq!(
                c.egress_ips,
                vec!["198.51.100.4".parse::<IpAddr>().unwrap()]
            );
            Ok(())
        });
    }

    #[test]
    fn short_master_key_is_rejected() {
        Jail::expect_with(|jail| {
            jail.set_env("CLICKTRAIL_MASTER_KEY", "short");
            assert!(Config::load(None).is_err());
            Ok(())
        });
    }
}
