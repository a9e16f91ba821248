//! Identifiers. Each id is parsed once at the edge (HTTP, database) into a
//! newtype whose constructor enforces its format, so code inside the domain
//! never meets a malformed id.

use std::fmt;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Why a string is not a valid id of some kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {rule}")]
pub struct InvalidId {
    pub kind: &'static str,
    pub rule: &'static str,
}

fn is_url_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Random string over `[0-9a-z]`; `len` 16 gives about 82 bits.
pub fn random_base36(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// Random URL-safe token over `[A-Za-z0-9_-]` (6 bits per character).
pub fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

macro_rules! string_id {
    ($(#[$meta:meta])* $name:ident, $kind:literal, $rule:literal, |$s:ident| $check:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, InvalidId> {
                let $s = value;
                if $check {
                    Ok(Self(value.to_owned()))
                } else {
                    Err(InvalidId { kind: $kind, rule: $rule })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(value: String) -> Result<Self, InvalidId> {
                Self::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A property's public id: it appears in the tag URL, so it is random
    /// (16 characters of `[0-9a-z]`, about 82 bits) and not enumerable.
    PropertyId,
    "property_id",
    "16 to 32 characters of [0-9a-z]",
    |s| (16..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase())
);

impl PropertyId {
    pub fn generate() -> Self {
        Self(random_base36(16))
    }
}

string_id!(
    /// A click id: the value we put in the affiliate link's subid parameter,
    /// and that the network reports back. Any URL-safe string of 16 to 64
    /// characters is accepted; see [`crate::clickid`] for the ids the tag mints.
    ClickId,
    "click_id",
    "16 to 64 characters of [A-Za-z0-9_-]",
    |s| (16..=64).contains(&s.len()) && s.bytes().all(is_url_safe)
);

string_id!(
    /// The client-made id of a collected event: the de-duplication key of a
    /// retried beacon. The tag sends UUIDs; other senders may use any token.
    EventId,
    "event_id",
    "8 to 64 characters of [A-Za-z0-9_.:-]",
    |s| (8..=64).contains(&s.len()) && s.bytes().all(|b| is_url_safe(b) || b == b'.' || b == b':')
);

impl EventId {
    /// The UUID this id spells, if it is one (case-insensitive, hyphenated).
    pub fn as_uuid(&self) -> Option<uuid::Uuid> {
        uuid::Uuid::try_parse(&self.0).ok()
    }
}

string_id!(
    /// A first-party visitor id, made by the tag and kept in a cookie.
    VisitorId,
    "visitor_id",
    "8 to 64 characters of [A-Za-z0-9_.-]",
    |s| (8..=64).contains(&s.len()) && s.bytes().all(|b| is_url_safe(b) || b == b'.')
);

string_id!(
    /// Server-made ids of stored things (integrations, destinations,
    /// conversions, deliveries...): a short type prefix and random base36.
    /// The prefix makes a pasted id self-explaining in support threads.
    EntityId,
    "id",
    "a prefixed id such as int_0123456789abcdef",
    |s| {
        (6..=64).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            && s.contains('_')
    }
);

impl EntityId {
    /// `prefix` is a few lower-case letters such as `int`, `dst`, `cv`.
    pub fn generate(prefix: &str) -> Self {
        debug_assert!(prefix.bytes().all(|b| b.is_ascii_lowercase()));
        Self(format!("{prefix}_{}", random_base36(20)))
    }

    /// Like [`generate`](Self::generate), but the id starts with `at_ms`
    /// (9 base36 digits, good until the year 5138), then 11 random ones
    /// (56 bits): ids made together sort together, so rows written in one
    /// batch share the index pages of their ids instead of touching a
    /// random page each.
    pub fn generate_at(prefix: &str, at_ms: i64) -> Self {
        debug_assert!(prefix.bytes().all(|b| b.is_ascii_lowercase()));
        const ALPHABET: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
        let mut t = at_ms.max(0).unsigned_abs();
        let mut time = [b'0'; 9];
        for d in time.iter_mut().rev() {
            *d = ALPHABET[(t % 36) as usize];
            t /= 36;
        }
        let time = std::str::from_utf8(&time).unwrap_or("000000000");
        Self(format!("{prefix}_{time}{}", random_base36(11)))
    }
}

/// A secret URL token (postback URLs, API tokens): 32 URL-safe characters,
/// 192 bits.
pub fn secret_token() -> String {
    random_token(32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn click_id_bounds() {
        assert!(ClickId::parse("abcdefghijklmnop").is_ok());
        assert!(ClickId::parse("abcdefghijklmno").is_err());
        assert!(ClickId::parse(&"a".repeat(64)).is_ok());
        assert!(ClickId::parse(&"a".repeat(65)).is_err());
        assert!(ClickId::parse("abcdefghijklmno=").is_err());
        assert!(ClickId::parse("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ").is_ok());
    }

    #[test]
    fn generated_ids_parse() {
        for _ in 0..100 {
            let p = PropertyId::generate();
            assert_eq!(PropertyId::parse(p.as_str()).unwrap(), p);
            let e = EntityId::generate("int");
            assert!(EntityId::parse(e.as_str()).is_ok());
            assert!(ClickId::parse(&secret_token()).is_ok());
        }
    }

    #[test]
    fn time_ordered_ids_sort_by_time() {
        let times = [
            0,
            1,
            35,
            36,
            1_700_000_000_000,
            1_700_000_000_001,
            3_000_000_000_000,
        ];
        let ids: Vec<EntityId> = times
            .iter()
            .map(|&t| EntityId::generate_at("cv", t))
            .collect();
        for id in &ids {
            assert!(EntityId::parse(id.as_str()).is_ok(), "{id:?}");
            assert_eq!(id.as_str().len(), "cv_".len() + 20);
        }
        assert!(ids.windows(2).all(|w| w[0].as_str() < w[1].as_str()));
        assert!(
            EntityId::generate_at("cv", -5)
                .as_str()
                .starts_with("cv_000000000")
        );
        assert_ne!(
            EntityId::generate_at("cv", 1).as_str(),
            EntityId::generate_at("cv", 1).as_str()
        );
    }

    #[test]
    fn serde_rejects_bad_ids() {
        let r: Result<ClickId, _> = serde_json::from_str("\"short\"");
        assert!(r.is_err());
        let ok: EventId = serde_json::from_str("\"0190f1a2-7d3c-7abc-8def-0123456789ab\"").unwrap();
        assert!(ok.as_uuid().is_some());
    }
}
