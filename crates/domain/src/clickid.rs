//! The click-id scheme of ids minted by the tag.
//!
//! A click id the tag puts on a link is 28 URL-safe characters:
//!
//! ```text
//! <22 chars: base64url (no padding) of the 16 bytes of the pageview's event_id UUID>
//! <6 chars: base64url of 36 random bits, one per link>
//! ```
//!
//! The pageview's `event_id` is a UUID the tag made (v7, so the server's
//! indexes see roughly ordered keys) and sent with the `PageView` event. If
//! the `OutboundClick` beacon is lost (blocked, tab closed, copied link), the
//! server can still find the pageview (and so the session and its traffic
//! source) from the first 22 characters. The 122 random bits of the UUID and
//! the 36 random bits of the suffix make ids unguessable.
//!
//! Any other URL-safe id of 16 to 64 characters is still a valid click id
//! (the `/go/` redirect mints its own; a site's backend may too); it just
//! cannot be resolved without its `OutboundClick`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use uuid::Uuid;

use crate::ids::{ClickId, random_token};

/// Length of a tag-minted click id.
pub const TAG_CLICK_ID_LEN: usize = 28;
const PAGEVIEW_PART: usize = 22;

/// Mints a click id for a link on the page whose `PageView` had `pageview`
/// as event id. The tag does the same in TypeScript; this one serves tests
/// and server-side minting.
pub fn mint(pageview: Uuid) -> ClickId {
    let mut s = URL_SAFE_NO_PAD.encode(pageview.as_bytes());
    s.push_str(&random_token(TAG_CLICK_ID_LEN - PAGEVIEW_PART));
    ClickId::parse(&s).expect("minted click ids are well formed")
}

/// The pageview event id (as the tag sends it: lower-case hyphenated UUID)
/// that a tag-minted click id names, if it has that structure.
pub fn pageview_of(click_id: &ClickId) -> Option<Uuid> {
    let s = click_id.as_str();
    if s.len() != TAG_CLICK_ID_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(&s[..PAGEVIEW_PART]).ok()?;
    let bytes: [u8; 16] = bytes.try_into().ok()?;
    Some(Uuid::from_bytes(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for _ in 0..1000 {
            let pv = Uuid::now_v7();
            let id = mint(pv);
            assert_eq!(id.as_str().len(), TAG_CLICK_ID_LEN);
            assert_eq!(pageview_of(&id), Some(pv));
        }
    }

    #[test]
    fn known_vector() {
        // Shared with the tag's tests (tag/test/clickid.test.ts).
        let pv = Uuid::parse_str("0190f1a2-7d3c-7abc-8def-0123456789ab").unwrap();
        let id = ClickId::parse("AZDxon08eryN7wEjRWeJqwAAAAAA").unwrap();
        assert_eq!(pageview_of(&id), Some(pv));
    }

    #[test]
    fn foreign_ids_do_not_resolve() {
        let id = ClickId::parse("QfdSVGM3YZTZjwj0DElkDFYFBbgendJlTZ").unwrap();
        assert_eq!(pageview_of(&id), None);
        // 28 chars but not valid base64url for 16 bytes in the first 22
        // characters is impossible to guarantee; any 22 chars decode, so a
        // lookup simply finds no pageview.
    }
}
