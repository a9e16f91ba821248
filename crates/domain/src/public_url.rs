//! Whether the server's public URL can serve a live site.
//!
//! The snippet, the tag URL, the collector and every postback URL are
//! written with `public_url`. Its default, `http://<listen>`, is an address
//! of the server's own machine (`http://127.0.0.1:8080`): pasted into a site
//! on the internet, the tag never loads and networks cannot call the
//! postbacks. A plain `http://` address that is reachable still fails on an
//! https site, whose browser blocks it as mixed content. The first-run
//! message, the property page and its setup checklist say so with
//! [`PublicUrlProblem`], and what to set instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a public URL cannot serve a live site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicUrlProblem {
    /// An address only this machine or its local network reaches: loopback
    /// (`127.0.0.1`, `localhost`, `::1`), unspecified (`0.0.0.0`), private
    /// or link-local ranges, or a local-only name (`*.localhost`, `*.local`,
    /// `*.internal`, ...).
    LocalAddress,
    /// A reachable address over plain http: https pages block the tag
    /// (mixed content), and tracking data crosses the internet unencrypted.
    PlainHttp,
}

/// What to set, in one sentence (the same for both problems).
pub const PUBLIC_URL_FIX: &str = "Set public_url in clicktrail.toml (or the CLICKTRAIL_PUBLIC_URL environment variable) to the https address at which visitors and networks reach this server, for example https://track.your-domain.com behind a reverse proxy with TLS, restart clicktrail, then copy the snippet again.";

impl PublicUrlProblem {
    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            Self::LocalAddress => "public_url_local",
            Self::PlainHttp => "public_url_plain_http",
        }
    }

    /// What goes wrong, in plain words, for the public base `base`.
    pub fn explain(self, base: &str) -> String {
        match self {
            Self::LocalAddress => format!(
                "The snippet, tag and postback URLs point at {base}, an address of this server's own machine or local network. Pasted into a live site they track nothing: visitors' browsers cannot load the tag from it, and networks cannot call the postback URLs."
            ),
            Self::PlainHttp => format!(
                "The snippet, tag and postback URLs use plain http ({base}). Browsers block the tag on https pages (mixed content), so a live https site tracks nothing, and tracking data would cross the internet unencrypted."
            ),
        }
    }
}

/// The problem with `public_base` (an absolute URL, as the server writes it
/// into the snippet) for a live site, if any. An unparsable base is a local
/// address: nothing outside can reach it either.
pub fn check_public_url(public_base: &str) -> Option<PublicUrlProblem> {
    let Ok(url) = Url::parse(public_base) else {
        return Some(PublicUrlProblem::LocalAddress);
    };
    let local = match url.host() {
        None => true,
        Some(Host::Domain(d)) => is_local_name(d),
        Some(Host::Ipv4(ip)) => is_local_ip(IpAddr::V4(ip)),
        Some(Host::Ipv6(ip)) => is_local_ip(IpAddr::V6(ip)),
    };
    if local {
        Some(PublicUrlProblem::LocalAddress)
    } else if url.scheme() != "https" {
        Some(PublicUrlProblem::PlainHttp)
    } else {
        None
    }
}

/// [`check_public_url`] for a property: only when it serves at least one
/// domain that is not local itself (a property on `localhost` or a `.test`
/// name is fine with a local server).
pub fn check_public_url_for(public_base: &str, domains: &[String]) -> Option<PublicUrlProblem> {
    domains
        .iter()
        .any(|d| !is_local_host(d))
        .then(|| check_public_url(public_base))
        .flatten()
}

/// Whether a host (a name or an IP literal, IPv6 with or without brackets)
/// is reachable only from this machine or its local network.
pub fn is_local_host(host: &str) -> bool {
    let host = host.trim().trim_end_matches('.');
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<IpAddr>() {
        Ok(ip) => is_local_ip(ip),
        Err(_) => is_local_name(host),
    }
}

/// Names that never resolve on the public internet: `localhost` and the
/// special-use or customary local suffixes.
fn is_local_name(name: &str) -> bool {
    const LOCAL_SUFFIXES: [&str; 7] = [
        "localhost",
        "local",
        "test",
        "internal",
        "invalid",
        "lan",
        "home.arpa",
    ];
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    // A single label (`tracker`, `intranet`) only resolves on a local network.
    let single_label = !name.is_empty() && !name.contains('.');
    single_label
        || LOCAL_SUFFIXES
            .iter()
            .any(|s| name == *s || name.ends_with(&format!(".{s}")))
}

fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_local_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_local_v4(v4),
            None => is_local_v6(v6),
        },
    }
}

fn is_local_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_private()
        || ip.is_link_local()
        // 100.64.0.0/10, carrier-grade NAT: not reachable from outside.
        || (ip.octets()[0] == 100 && (ip.octets()[1] & 0xc0) == 64)
}

fn is_local_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        // fc00::/7 unique local, fe80::/10 link-local.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_plain_http_bases() {
        use PublicUrlProblem::*;
        for (base, want) in [
            ("http://127.0.0.1:8080", Some(LocalAddress)),
            ("https://127.0.0.1:8443", Some(LocalAddress)),
            ("http://localhost:8080", Some(LocalAddress)),
            ("http://0.0.0.0:8080", Some(LocalAddress)),
            ("http://[::1]:8080", Some(LocalAddress)),
            ("http://[::]:8080", Some(LocalAddress)),
            ("http://[::ffff:127.0.0.1]:8080", Some(LocalAddress)),
            ("http://[fd12::1]", Some(LocalAddress)),
            ("http://192.168.1.20:8080", Some(LocalAddress)),
            ("http://10.0.0.5", Some(LocalAddress)),
            ("http://100.100.1.1", Some(LocalAddress)),
            ("http://169.254.1.1", Some(LocalAddress)),
            ("https://tracker.localhost", Some(LocalAddress)),
            ("https://nas.local", Some(LocalAddress)),
            ("https://box.home.arpa", Some(LocalAddress)),
            ("http://tracker", Some(LocalAddress)),
            ("not a url", Some(LocalAddress)),
            ("http://track.example.com", Some(PlainHttp)),
            ("http://203.0.113.7:8080", Some(PlainHttp)),
            ("https://track.example.com", None),
            ("https://track.example.com/", None),
            ("https://203.0.113.7", None),
            ("HTTPS://Track.Example.COM", None),
        ] {
            assert_eq!(check_public_url(base), want, "{base}");
        }
    }

    #[test]
    fn only_sites_on_the_internet_are_warned() {
        let live = vec!["localhost".to_owned(), "casino-reviews.co.uk".to_owned()];
        let local = vec![
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
            "[::1]".to_owned(),
            "shop.test".to_owned(),
            "intranet".to_owned(),
        ];
        assert_eq!(
            check_public_url_for("http://127.0.0.1:8080", &live),
            Some(PublicUrlProblem::LocalAddress)
        );
        assert_eq!(
            check_public_url_for("http://track.example.com", &live),
            Some(PublicUrlProblem::PlainHttp)
        );
        assert_eq!(
            check_public_url_for("https://track.example.com", &live),
            None
        );
        assert_eq!(check_public_url_for("http://127.0.0.1:8080", &local), None);
        assert_eq!(check_public_url_for("http://127.0.0.1:8080", &[]), None);
    }

    #[test]
    fn explanations_name_the_base_and_codes_are_stable() {
        let p = PublicUrlProblem::LocalAddress;
        assert!(
            p.explain("http://127.0.0.1:8080")
                .contains("http://127.0.0.1:8080")
        );
        assert_eq!(p.code(), "public_url_local");
        assert_eq!(PublicUrlProblem::PlainHttp.code(), "public_url_plain_http");
        assert!(PUBLIC_URL_FIX.contains("CLICKTRAIL_PUBLIC_URL"));
    }
}
