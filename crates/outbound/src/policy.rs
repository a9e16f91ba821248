//! What an outbound fetch may reach: schemes, ports, host names and IP
//! addresses.
//!
//! Refused by default (every refusal is an [`OutboundError`] with a stable
//! code):
//! - schemes other than `http` and `https`;
//! - ports other than [`OutboundPolicy::allowed_ports`] (80 and 443);
//! - loopback, private (RFC 1918), carrier-grade NAT, unspecified,
//!   broadcast, multicast, documentation, benchmarking and other reserved
//!   IPv4 ranges; IPv6 loopback, unspecified, unique-local, site-local,
//!   multicast, documentation, discard, Teredo and local-use NAT64 ranges;
//!   IPv4 addresses hidden in IPv6 (mapped `::ffff:a.b.c.d`, compatible
//!   `::a.b.c.d`, SIIT, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) are judged
//!   by their IPv4 address;
//! - link-local addresses (`169.254.0.0/16`, `fe80::/10`) and cloud
//!   metadata endpoints (`169.254.169.254`, `fd00:ec2::254`,
//!   `100.100.100.200`, `192.0.0.192`, `metadata.google.internal`, ...);
//! - names that only make sense inside a network: `localhost` and
//!   `*.localhost`, `*.local`, `*.internal`, `*.home.arpa`, `*.lan`, and
//!   single-label names.
//!
//! [`OutboundPolicy::allow_private_networks`]
//! (`CLICKTRAIL_ALLOW_PRIVATE_NETWORKS`, for tests and on-premise setups)
//! lifts the address, name and port rules, except link-local addresses and
//! cloud metadata endpoints, which stay refused: nothing clicktrail talks to
//! lives there, and they are the classic SSRF target on cloud machines.
//! [`OutboundPolicy::allowed_networks`] lets named networks through every
//! address rule, metadata included, for an on-premise host that must be
//! reached without opening all private ranges.
//!
//! Address rules are applied twice: to literal IP hosts before a request
//! ([`OutboundPolicy::check_url`]), and to every address a name resolves to,
//! inside the HTTP client's resolver, so the address connected to is the
//! address checked (no DNS-rebinding window).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::{Host, Url};

use crate::OutboundError;

/// What outbound fetches may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Lift the private-address, private-name and port rules (not the
    /// scheme rule, not link-local or cloud metadata).
    pub allow_private_networks: bool,
    /// Ports allowed when `allow_private_networks` is off.
    pub allowed_ports: Vec<u16>,
    /// Networks reachable whatever the other address rules say.
    pub allowed_networks: Vec<IpNet>,
}

impl Default for OutboundPolicy {
    fn default() -> Self {
        Self {
            allow_private_networks: false,
            allowed_ports: vec![80, 443],
            allowed_networks: Vec::new(),
        }
    }
}

/// How bad a refused address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Severity {
    /// Refused unless private networks are allowed.
    Private,
    /// Refused unless listed in `allowed_networks`.
    Always,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    severity: Severity,
    reason: &'static str,
}

const fn private(reason: &'static str) -> Option<Refusal> {
    Some(Refusal {
        severity: Severity::Private,
        reason,
    })
}

const fn always(reason: &'static str) -> Option<Refusal> {
    Some(Refusal {
        severity: Severity::Always,
        reason,
    })
}

const METADATA: &str = "cloud metadata address";

fn in_v4(ip: u32, base: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    ip & mask == u32::from_be_bytes(base) & mask
}

fn in_v6(ip: u128, base: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    ip & mask == u128::from(Ipv6Addr::from(base)) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<Refusal> {
    let o = ip.octets();
    if matches!(
        o,
        [169, 254, 169, 254] | [169, 254, 170, 2] | [100, 100, 100, 200] | [192, 0, 0, 192]
    ) {
        return always(METADATA);
    }
    let n = u32::from(ip);
    if ip.is_broadcast() {
        return private("broadcast address");
    }
    let ranges: &[([u8; 4], u32, Option<Refusal>)] = &[
        ([0, 0, 0, 0], 8, private("unspecified address")),
        ([10, 0, 0, 0], 8, private("private address")),
        ([100, 64, 0, 0], 10, private("carrier-grade NAT address")),
        ([127, 0, 0, 0], 8, private("loopback address")),
        ([169, 254, 0, 0], 16, always("link-local address")),
        ([172, 16, 0, 0], 12, private("private address")),
        ([192, 0, 0, 0], 24, private("IETF protocol address")),
        ([192, 0, 2, 0], 24, private("documentation address")),
        ([192, 88, 99, 0], 24, private("6to4 relay address")),
        ([192, 168, 0, 0], 16, private("private address")),
        ([198, 18, 0, 0], 15, private("benchmarking address")),
        ([198, 51, 100, 0], 24, private("documentation address")),
        ([203, 0, 113, 0], 24, private("documentation address")),
        ([224, 0, 0, 0], 4, private("multicast address")),
        ([240, 0, 0, 0], 4, private("reserved address")),
    ];
    ranges
        .iter()
        .find(|(base, prefix, _)| in_v4(n, *base, *prefix))
        .and_then(|(_, _, r)| *r)
}

/// The IPv4 address an IPv6 address stands for, when it embeds one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let n = u128::from(ip);
    let low32 = Ipv4Addr::from((n & 0xffff_ffff) as u32);
    if in_v6(n, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) // mapped
        || in_v6(n, [0, 0, 0, 0, 0xffff, 0, 0, 0], 96) // SIIT
        || in_v6(n, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) // NAT64
        || (in_v6(n, [0; 8], 96) && n > 1)
    // compatible (deprecated), except :: and ::1
    {
        return Some(low32);
    }
    if in_v6(n, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        let s = ip.segments();
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return Some(Ipv4Addr::new(a, b, c, d));
    }
    None
}

fn classify_v6(ip: Ipv6Addr) -> Option<Refusal> {
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        return always(METADATA);
    }
    if let Some(v4) = embedded_v4(ip) {
        return classify_v4(v4);
    }
    let n = u128::from(ip);
    if n == 0 {
        return private("unspecified address");
    }
    if n == 1 {
        return private("loopback address");
    }
    let ranges: &[([u16; 8], u32, Option<Refusal>)] = &[
        (
            [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
            48,
            private("local NAT64 address"),
        ),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, private("discard address")),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, private("Teredo address")),
        (
            [0x2001, 2, 0, 0, 0, 0, 0, 0],
            48,
            private("benchmarking address"),
        ),
        (
            [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
            32,
            private("documentation address"),
        ),
        (
            [0x3fff, 0, 0, 0, 0, 0, 0, 0],
            20,
            private("documentation address"),
        ),
        (
            [0xfc00, 0, 0, 0, 0, 0, 0, 0],
            7,
            private("unique-local address"),
        ),
        (
            [0xfe80, 0, 0, 0, 0, 0, 0, 0],
            10,
            always("link-local address"),
        ),
        (
            [0xfec0, 0, 0, 0, 0, 0, 0, 0],
            10,
            private("site-local address"),
        ),
        (
            [0xff00, 0, 0, 0, 0, 0, 0, 0],
            8,
            private("multicast address"),
        ),
        // The rest of ::/8 (IPv4-embedding forms were handled above).
        ([0, 0, 0, 0, 0, 0, 0, 0], 8, private("reserved address")),
    ];
    ranges
        .iter()
        .find(|(base, prefix, _)| in_v6(n, *base, *prefix))
        .and_then(|(_, _, r)| *r)
}

fn classify_ip(ip: IpAddr) -> Option<Refusal> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

/// Names of cloud metadata services.
const METADATA_NAMES: &[&str] = &[
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.internal",
];

/// Suffixes of names that only resolve inside a network.
const PRIVATE_SUFFIXES: &[&str] = &[
    ".localhost",
    ".local",
    ".internal",
    ".home.arpa",
    ".lan",
    ".intranet",
];

fn classify_name(name: &str) -> Option<Refusal> {
    let name = name.trim_end_matches('.');
    if METADATA_NAMES.iter().any(|m| name.eq_ignore_ascii_case(m)) {
        return always(METADATA);
    }
    if name.eq_ignore_ascii_case("localhost") {
        return private("loopback name");
    }
    let lower = name.to_ascii_lowercase();
    if PRIVATE_SUFFIXES.iter().any(|s| lower.ends_with(s)) {
        return private("private network name");
    }
    if !name.contains('.') {
        return private("single-label (intranet) name");
    }
    None
}

impl OutboundPolicy {
    /// The production default: public http(s) on ports 80 and 443 only.
    pub fn strict() -> Self {
        Self::default()
    }

    /// Everything but link-local and cloud metadata (tests, on-premise).
    pub fn allowing_private_networks() -> Self {
        Self {
            allow_private_networks: true,
            ..Self::default()
        }
    }

    fn judge(&self, refusal: Option<Refusal>) -> Result<(), &'static str> {
        match refusal {
            None => Ok(()),
            Some(r) if r.severity == Severity::Private && self.allow_private_networks => Ok(()),
            Some(r) => Err(r.reason),
        }
    }

    /// Whether `ip` may be connected to; `Err` holds the reason.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allowed_networks.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        self.judge(classify_ip(ip))
    }

    /// Whether a host name may be looked up at all; `Err` holds the reason.
    pub fn check_name(&self, name: &str) -> Result<(), &'static str> {
        self.judge(classify_name(name))
    }

    /// Whether `port` may be connected to.
    pub fn check_port(&self, port: u16) -> Result<(), OutboundError> {
        if self.allow_private_networks || self.allowed_ports.contains(&port) {
            Ok(())
        } else {
            Err(OutboundError::PortNotAllowed { port })
        }
    }

    /// Checks a URL before any request: scheme, port, and the host when it
    /// is a literal address or a private name. Addresses that a name
    /// resolves to are checked later, by the client's resolver.
    pub fn check_url(&self, url: &Url) -> Result<(), OutboundError> {
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(OutboundError::SchemeNotAllowed {
                    scheme: other.chars().take(32).collect(),
                });
            }
        }
        let host = url
            .host()
            .ok_or(OutboundError::InvalidUrl("it has no host"))?;
        let port = url
            .port_or_known_default()
            .ok_or(OutboundError::InvalidUrl("it has no port"))?;
        self.check_port(port)?;
        let refused = |host: String, reason| OutboundError::AddressNotAllowed { host, reason };
        match host {
            Host::Ipv4(ip) => self
                .check_ip(IpAddr::V4(ip))
                .map_err(|r| refused(ip.to_string(), r)),
            Host::Ipv6(ip) => self
                .check_ip(IpAddr::V6(ip))
                .map_err(|r| refused(format!("[{ip}]"), r)),
            Host::Domain(name) => self
                .check_name(name)
                .map_err(|r| refused(name.to_owned(), r)),
        }
    }
}

/// [`OutboundPolicy::check_url`], as a free function.
pub fn check_url(policy: &OutboundPolicy, url: &Url) -> Result<(), OutboundError> {
    policy.check_url(url)
}

/// The save-time check of a URL a user gives for a server-side fetch (an
/// Income Access `api_url`, a destination's `endpoint`, ...): it parses,
/// is http(s), and passes [`OutboundPolicy::check_url`]. Every surface
/// runs this one check when the URL is saved, and the guarded client
/// checks again (with the addresses names resolve to) when it is used.
pub fn check_user_url(policy: &OutboundPolicy, raw: &str) -> Result<Url, OutboundError> {
    let url = Url::parse(raw.trim()).map_err(|_| OutboundError::InvalidUrl("it does not parse"))?;
    policy.check_url(&url)?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn code(policy: &OutboundPolicy, s: &str) -> &'static str {
        match policy.check_url(&url(s)) {
            Ok(()) => "ok",
            Err(e) => e.code(),
        }
    }

    #[test]
    fn refuses_non_http_schemes() {
        let p = OutboundPolicy::strict();
        for u in [
            "ftp://example.com/x",
            "file:///etc/passwd",
            "gopher://example.com/1",
            "data:text/plain,hi",
            "javascript:alert(1)",
            "ws://example.com/",
            "dict://example.com:11211/",
        ] {
            assert_eq!(code(&p, u), "scheme_not_allowed", "{u}");
            // Private networks do not lift the scheme rule.
            assert_eq!(
                code(&OutboundPolicy::allowing_private_networks(), u),
                "scheme_not_allowed",
                "{u}"
            );
        }
    }

    #[test]
    fn refuses_private_and_special_addresses() {
        let p = OutboundPolicy::strict();
        let refused = [
            "http://127.0.0.1/",
            "http://127.1.2.3/",
            "http://[::1]/",
            "http://10.0.0.1/",
            "http://10.255.255.255/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.1.1/",
            "http://100.64.0.1/",
            "http://100.100.100.200/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://255.255.255.255/",
            "http://224.0.0.1/",
            "http://240.0.0.1/",
            "http://192.0.0.192/",
            "http://192.0.2.1/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://198.18.0.1/",
            "http://[fd00::1]/",
            "http://[fc00::1]/",
            "http://[fd00:ec2::254]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[::]/",
            "http://[2001:db8::1]/",
            "http://[100::1]/",
            "http://[2001::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::127.0.0.1]/",
            "http://[::ffff:0:127.0.0.1]/",
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[64:ff9b:1::1]/",
            "http://[2002:7f00:1::]/",
            "http://[2002:c0a8:101::1]/",
            // Other spellings of 127.0.0.1, which the URL parser normalises.
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            // Names.
            "http://localhost/",
            "http://LOCALHOST./",
            "http://app.localhost/",
            "http://printer.local/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://metadata/",
            "http://db.corp.internal/",
            "http://router.home.arpa/",
            "http://intranet/",
        ];
        for u in refused {
            assert_eq!(code(&p, u), "address_not_allowed", "{u}");
        }
        for u in [
            "http://93.184.215.14/",
            "https://8.8.8.8/",
            "http://[2606:4700::1111]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "https://example.com/",
            "https://sub.example.co.uk/path?q=1",
            "http://100.128.0.1/",
            "http://172.32.0.1/",
            "http://192.169.0.1/",
        ] {
            assert_eq!(code(&p, u), "ok", "{u}");
        }
    }

    #[test]
    fn allow_private_networks_lifts_all_but_metadata_and_link_local() {
        let p = OutboundPolicy::allowing_private_networks();
        for u in [
            "http://127.0.0.1:8080/",
            "http://[::1]:3000/",
            "http://10.0.0.1/",
            "http://192.168.1.1:9999/",
            "http://[fd00::1]/",
            "http://localhost:1234/",
            "http://db.internal/",
        ] {
            assert_eq!(code(&p, u), "ok", "{u}");
        }
        for u in [
            "http://169.254.169.254/",
            "http://169.254.10.10/",
            "http://[fe80::1]/",
            "http://[fd00:ec2::254]/",
            "http://[::ffff:169.254.169.254]/",
            "http://metadata.google.internal/",
            "http://100.100.100.200/",
        ] {
            assert_eq!(code(&p, u), "address_not_allowed", "{u}");
        }
    }

    #[test]
    fn allowed_networks_are_exceptions() {
        let p = OutboundPolicy {
            allowed_networks: vec![
                "10.1.2.0/24".parse().unwrap(),
                "169.254.169.254/32".parse().unwrap(),
            ],
            ..OutboundPolicy::strict()
        };
        assert_eq!(code(&p, "http://10.1.2.3/"), "ok");
        assert_eq!(code(&p, "http://169.254.169.254/"), "ok");
        assert_eq!(code(&p, "http://10.1.3.3/"), "address_not_allowed");
    }

    #[test]
    fn ports() {
        let p = OutboundPolicy::strict();
        assert_eq!(code(&p, "http://example.com:80/"), "ok");
        assert_eq!(code(&p, "https://example.com/"), "ok");
        assert_eq!(code(&p, "http://example.com:443/"), "ok");
        assert_eq!(code(&p, "http://example.com:8080/"), "port_not_allowed");
        assert_eq!(code(&p, "https://example.com:22/"), "port_not_allowed");
        assert_eq!(code(&p, "http://8.8.8.8:25/"), "port_not_allowed");
        let custom = OutboundPolicy {
            allowed_ports: vec![443, 8443],
            ..OutboundPolicy::strict()
        };
        assert_eq!(code(&custom, "https://example.com:8443/"), "ok");
        assert_eq!(code(&custom, "http://example.com/"), "port_not_allowed");
        assert_eq!(
            code(
                &OutboundPolicy::allowing_private_networks(),
                "http://example.com:8080/"
            ),
            "ok"
        );
    }

    #[test]
    fn error_messages_do_not_leak_urls() {
        let p = OutboundPolicy::strict();
        let e = p
            .check_url(&url("http://127.0.0.1/report?security_key=SECRET123"))
            .unwrap_err();
        let msg = e.to_string();
        assert!(!msg.contains("SECRET123"), "{msg}");
        assert_eq!(msg, "127.0.0.1 is not allowed: loopback address");
    }
}
