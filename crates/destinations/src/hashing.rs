//! Normalisation and SHA-256 hashing of personal identifiers the way the ad
//! platforms match them: email trimmed and lower case; phone as digits only
//! with the country code for Meta and TikTok, E.164 with its `+` for Google.
//! Hashes are lower-case hex. Clear values are never kept or logged.

use sha2::{Digest, Sha256};

/// Lower-case hex SHA-256 of `value` as given.
pub fn sha256_hex(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// Whether `value` is already a SHA-256 hex digest (either case).
pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Email as the platforms normalise it: surrounding whitespace removed, lower
/// case. `None` when it does not look like an address.
pub fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    if local.is_empty() || domain.is_empty() || e.chars().any(char::is_whitespace) {
        return None;
    }
    Some(e)
}

/// How a platform wants a phone number before hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhoneFormat {
    /// Meta, TikTok: digits only, country code included, no `+`.
    DigitsOnly,
    /// Google: E.164, `+` then digits.
    E164,
}

/// Phone normalised for `format`. The number must carry its country code
/// (`+33 6 12 34 56 78`, `0033612345678` or `33612345678`); a leading `00`
/// international prefix is dropped. `None` unless 7 to 15 digits remain.
pub fn normalise_phone(phone: &str, format: PhoneFormat) -> Option<String> {
    let trimmed = phone.trim();
    let mut digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if !trimmed.starts_with('+') && digits.starts_with("00") {
        digits.drain(..2);
    }
    if !(7..=15).contains(&digits.len()) || digits.starts_with('0') {
        return None;
    }
    Some(match format {
        PhoneFormat::DigitsOnly => digits,
        PhoneFormat::E164 => format!("+{digits}"),
    })
}

/// SHA-256 of the normalised email.
pub fn hash_email(email: &str) -> Option<String> {
    normalise_email(email).map(|e| sha256_hex(&e))
}

/// SHA-256 of the phone normalised for `format`.
pub fn hash_phone(phone: &str, format: PhoneFormat) -> Option<String> {
    normalise_phone(phone, format).map(|p| sha256_hex(&p))
}

/// A value that should already be a SHA-256 digest, checked and put in
/// lower case. Anything else is dropped rather than sent: a malformed hash
/// only lowers match quality, a clear value would leak.
pub(crate) fn checked_digest(value: Option<&str>) -> Option<String> {
    let v = value?.trim();
    is_sha256_hex(v).then(|| v.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Meta's published test vector (Conversions API customer information
    /// parameters documentation).
    #[test]
    fn meta_test_vector() {
        assert_eq!(
            hash_email("John_Smith@gmail.com").as_deref(),
            Some("62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f")
        );
        assert_eq!(
            hash_email("  John_Smith@Gmail.com \n"),
            hash_email("john_smith@gmail.com")
        );
    }

    #[test]
    fn emails() {
        assert_eq!(normalise_email(" A@B.fr ").as_deref(), Some("a@b.fr"));
        assert_eq!(normalise_email("not an email"), None);
        assert_eq!(normalise_email("@b.fr"), None);
        assert_eq!(normalise_email("a b@c.fr"), None);
    }

    #[test]
    fn phones() {
        use PhoneFormat::*;
        assert_eq!(
            normalise_phone("+33 6 12 34 56 78", DigitsOnly).as_deref(),
            Some("33612345678")
        );
        assert_eq!(
            normalise_phone("+33 6 12 34 56 78", E164).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("0033612345678", E164).as_deref(),
            Some("+33612345678")
        );
        assert_eq!(
            normalise_phone("(650) 555-1212", DigitsOnly).as_deref(),
            Some("6505551212")
        );
        // A national number without country code cannot be told apart.
        assert_eq!(normalise_phone("0612345678", DigitsOnly), None);
        assert_eq!(normalise_phone("12", DigitsOnly), None);
        assert_eq!(
            hash_phone("+1 650 555 1212", DigitsOnly),
            Some(sha256_hex("16505551212"))
        );
        assert_ne!(
            hash_phone("+1 650 555 1212", DigitsOnly),
            hash_phone("+1 650 555 1212", E164)
        );
    }

    #[test]
    fn digests() {
        let h = sha256_hex("x");
        assert_eq!(checked_digest(Some(&h.to_uppercase())), Some(h.clone()));
        assert_eq!(checked_digest(Some("john@example.com")), None);
        assert_eq!(checked_digest(None), None);
        assert!(is_sha256_hex(&h));
    }
}
