//! A visitor's consent, per purpose, as the site signals it and as the ad
//! platforms take it: Google's `ad_user_data` (may data about the visitor
//! be used for advertising: the visitor id, the address, hashed email and
//! phone) and `ad_personalization` (may it be used for personalised
//! advertising). Each is granted, denied or unknown (the site said
//! nothing).
//!
//! The rule of the server (`docs/PRIVACY.md`, "Consent"): identifiers are
//! stored only when `ad_user_data` is granted, or when it is unknown and
//! the property does not require consent. [`Consent::resolve`] applies it
//! at the edge (collector and `/go`), [`anonymise`] strips what may not be
//! kept, and the result is stored with the session and the click
//! ([`Consent::code`]) so that conversions carry it to the platforms.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::collect::{CollectedEvent, PixelCookies, UserHashes};
use crate::ids::{EventId, VisitorId};

/// One purpose's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentState {
    Granted,
    Denied,
    /// The site said nothing.
    #[default]
    Unknown,
}

impl ConsentState {
    /// The wire value: `granted` or `denied` (case-insensitive); anything
    /// else is refused.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("granted") {
            Some(Self::Granted)
        } else if s.eq_ignore_ascii_case("denied") {
            Some(Self::Denied)
        } else {
            None
        }
    }

    /// `GRANTED` / `DENIED` as Google's APIs spell it; `None` when unknown.
    pub fn google(self) -> Option<&'static str> {
        match self {
            Self::Granted => Some("GRANTED"),
            Self::Denied => Some("DENIED"),
            Self::Unknown => None,
        }
    }

    fn code(self) -> char {
        match self {
            Self::Granted => 'g',
            Self::Denied => 'd',
            Self::Unknown => 'u',
        }
    }

    fn from_code(c: char) -> Option<Self> {
        match c {
            'g' => Some(Self::Granted),
            'd' => Some(Self::Denied),
            'u' => Some(Self::Unknown),
            _ => None,
        }
    }
}

/// A visitor's consent for each purpose the platforms take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Consent {
    pub ad_user_data: ConsentState,
    pub ad_personalization: ConsentState,
}

impl Consent {
    /// Nothing known (what every event was before consent had a field).
    pub const UNKNOWN: Consent = Consent {
        ad_user_data: ConsentState::Unknown,
        ad_personalization: ConsentState::Unknown,
    };

    /// Every purpose granted (`true`) or denied (`false`): the tag's
    /// `clicktrail('consent', true | false)`, its `_ctc` cookie and `/go`'s
    /// `ct_consent` parameter are one choice for all purposes.
    pub fn all(granted: bool) -> Consent {
        let s = if granted {
            ConsentState::Granted
        } else {
            ConsentState::Denied
        };
        Consent {
            ad_user_data: s,
            ad_personalization: s,
        }
    }

    pub fn is_unknown(self) -> bool {
        self == Self::UNKNOWN
    }

    /// The consent as the server keeps and sends it: on a property that
    /// requires consent, what the site did not grant is denied.
    pub fn resolve(self, consent_required: bool) -> Consent {
        if !consent_required {
            return self;
        }
        let deny_unknown = |s: ConsentState| match s {
            ConsentState::Unknown => ConsentState::Denied,
            s => s,
        };
        Consent {
            ad_user_data: deny_unknown(self.ad_user_data),
            ad_personalization: deny_unknown(self.ad_personalization),
        }
    }

    /// Whether identifiers (visitor id and cookie, address, hashed email
    /// and phone, pixel cookies) may be stored: `ad_user_data` granted, or
    /// unknown on a property that does not require consent.
    pub fn allows_identifiers(self, consent_required: bool) -> bool {
        match self.ad_user_data {
            ConsentState::Granted => true,
            ConsentState::Denied => false,
            ConsentState::Unknown => !consent_required,
        }
    }

    /// The stored form (`sessions.consent`, `clicks.consent`): two letters,
    /// `ad_user_data` then `ad_personalization`, each `g`, `d` or `u`;
    /// `None` when nothing is known (the column stays NULL, as for rows
    /// from before consent was stored).
    pub fn code(self) -> Option<String> {
        (!self.is_unknown()).then(|| {
            [self.ad_user_data.code(), self.ad_personalization.code()]
                .iter()
                .collect()
        })
    }

    /// Reads [`Consent::code`]'s form; anything else (NULL included) is
    /// unknown.
    pub fn from_code(code: Option<&str>) -> Consent {
        let mut chars = code.unwrap_or("").chars();
        match (
            chars.next().and_then(ConsentState::from_code),
            chars.next().and_then(ConsentState::from_code),
            chars.next(),
        ) {
            (Some(a), Some(p), None) => Consent {
                ad_user_data: a,
                ad_personalization: p,
            },
            _ => Consent::UNKNOWN,
        }
    }
}

/// Prefix of the visitor ids the server makes for events stored without
/// identifiers (see [`anonymous_visitor`]). Never set in a cookie, never
/// sent to a platform.
pub const ANONYMOUS_PREFIX: &str = "anon.";

/// The visitor id of an event stored without identifiers: `anon.` and 32
/// hex digits of the SHA-256 of its page view's id (the event's
/// `pageview_id`, else its own id). A page view and its clicks share it, so
/// a click keeps its landing's session (utm, ad click ids); two page views
/// never do, so nothing links one visit's pages.
pub fn anonymous_visitor(pageview: &EventId) -> VisitorId {
    let digest = Sha256::digest(pageview.as_str().as_bytes());
    let id = format!("{ANONYMOUS_PREFIX}{}", &hex::encode(digest)[..32]);
    // 37 characters of [a-z0-9.]: always a valid visitor id.
    VisitorId::parse(&id).unwrap_or_else(|_| unreachable!("anonymous visitor id {id}"))
}

/// Whether a stored visitor id is one [`anonymous_visitor`] made.
pub fn is_anonymous(visitor_id: &str) -> bool {
    visitor_id.starts_with(ANONYMOUS_PREFIX)
}

/// Strips from an event what may not be kept without consent: its visitor
/// id (replaced by [`anonymous_visitor`]), the session hint (from the
/// `_cts` cookie), the pixel cookies and the hashed email and phone. Page
/// data (URL, referrer, title, props, value) and the landing's ad click
/// ids stay: they are what the event counts under.
pub fn anonymise(ev: &mut CollectedEvent) {
    let pageview = ev.pageview_id.as_ref().unwrap_or(&ev.event_id);
    ev.visitor_id = anonymous_visitor(pageview);
    ev.session_hint = None;
    ev.cookies = PixelCookies::default();
    ev.user = UserHashes::default();
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentState::{Denied as D, Granted as G, Unknown as U};

    fn c(a: ConsentState, p: ConsentState) -> Consent {
        Consent {
            ad_user_data: a,
            ad_personalization: p,
        }
    }

    #[test]
    fn states_parse_strictly() {
        assert_eq!(ConsentState::parse("granted"), Some(G));
        assert_eq!(ConsentState::parse("DENIED"), Some(D));
        for bad in ["", "yes", "true", "1", "granted "] {
            assert_eq!(ConsentState::parse(bad), None, "{bad:?}");
        }
        assert_eq!(G.google(), Some("GRANTED"));
        assert_eq!(D.google(), Some("DENIED"));
        assert_eq!(U.google(), None);
    }

    #[test]
    fn resolve_denies_the_unknown_only_when_required() {
        assert_eq!(Consent::UNKNOWN.resolve(false), Consent::UNKNOWN);
        assert_eq!(Consent::UNKNOWN.resolve(true), Consent::all(false));
        assert_eq!(c(G, U).resolve(true), c(G, D));
        assert_eq!(c(G, U).resolve(false), c(G, U));
        assert_eq!(Consent::all(true).resolve(true), Consent::all(true));
    }

    #[test]
    fn identifiers_follow_ad_user_data() {
        assert!(Consent::UNKNOWN.allows_identifiers(false));
        assert!(!Consent::UNKNOWN.allows_identifiers(true));
        assert!(c(G, D).allows_identifiers(true));
        assert!(!c(D, G).allows_identifiers(false));
        assert!(!c(U, G).allows_identifiers(true));
    }

    #[test]
    fn codes_round_trip() {
        assert_eq!(Consent::UNKNOWN.code(), None);
        assert_eq!(Consent::from_code(None), Consent::UNKNOWN);
        for a in [G, D, U] {
            for p in [G, D, U] {
                let x = c(a, p);
                assert_eq!(Consent::from_code(x.code().as_deref()), x);
            }
        }
        assert_eq!(c(G, D).code().as_deref(), Some("gd"));
        for bad in ["", "g", "gdx", "xx", "GD"] {
            assert_eq!(Consent::from_code(Some(bad)), Consent::UNKNOWN, "{bad}");
        }
    }

    #[test]
    fn anonymous_visitors_are_per_page_view() {
        let pv = EventId::parse("0190f1a2-7d3c-7abc-8def-0123456789ab").unwrap();
        let other = EventId::parse("0190f1a2-7d3c-7abc-8def-0123456789ac").unwrap();
        let v = anonymous_visitor(&pv);
        assert_eq!(v, anonymous_visitor(&pv));
        assert_ne!(v, anonymous_visitor(&other));
        assert!(is_anonymous(v.as_str()));
        assert_eq!(v.as_str().len(), 37);
        // Any event id makes a valid visitor id, even one with ':'.
        let odd = EventId::parse(&format!("a:{}", "Z".repeat(62))).unwrap();
        assert!(is_anonymous(anonymous_visitor(&odd).as_str()));
        assert!(!is_anonymous("v_visitor_0001"));
    }
}
