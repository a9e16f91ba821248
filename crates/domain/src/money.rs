//! Money: ISO 4217 currency codes and decimal amounts. Amounts are exact
//! decimals (`rust_decimal`), never floats, because commission deltas such as
//! `1.02 - 0.99` must come out exact; the store keeps them as integer
//! micro-units.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// A three-letter ISO 4217 code, upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("currency must be a three-letter ISO 4217 code such as EUR")]
pub struct InvalidCurrency;

impl Currency {
    pub const EUR: Currency = Currency(*b"EUR");
    pub const USD: Currency = Currency(*b"USD");
    pub const GBP: Currency = Currency(*b"GBP");

    /// Parses a code case-insensitively. A few unambiguous symbols that
    /// networks put where a code belongs (`£`, `€`) are accepted too; `$` is
    /// taken as USD.
    pub fn parse(value: &str) -> Result<Self, InvalidCurrency> {
        let v = value.trim();
        match v {
            "£" => return Ok(Self::GBP),
            "€" => return Ok(Self::EUR),
            "$" | "US$" => return Ok(Self::USD),
            _ => {}
        }
        let b = v.as_bytes();
        if b.len() == 3 && b.iter().all(u8::is_ascii_alphabetic) {
            Ok(Self([
                b[0].to_ascii_uppercase(),
                b[1].to_ascii_uppercase(),
                b[2].to_ascii_uppercase(),
            ]))
        } else {
            Err(InvalidCurrency)
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII letters are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl FromStr for Currency {
    type Err = InvalidCurrency;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidCurrency;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidAmount {
    #[error("amount is not a decimal number")]
    NotANumber,
    #[error("amount is out of range")]
    OutOfRange,
}

/// Largest absolute amount we accept: a trillion. Anything bigger is a typo
/// or an attack, and must fit in i64 micro-units.
const MAX_ABS: i64 = 1_000_000_000_000;

/// Parses a decimal string as networks send it: `"2.55"`, `"-0.18"`,
/// `"1,234.50"` (thousands separators), `"12,5"` (decimal comma when it is the
/// only separator). Rejects NaN, exponents and absurd magnitudes.
pub fn parse_amount(value: &str) -> Result<Decimal, InvalidAmount> {
    let v = value.trim();
    if v.is_empty() {
        return Err(InvalidAmount::NotANumber);
    }
    let normalised: String = if v.contains('.') {
        v.replace(',', "")
    } else if v.matches(',').count() == 1 {
        v.replace(',', ".")
    } else {
        v.replace(',', "")
    };
    let d = Decimal::from_str_exact(&normalised).map_err(|_| InvalidAmount::NotANumber)?;
    check_range(d)
}

/// Converts a float from JSON, rounding to micro-units.
pub fn amount_from_f64(value: f64) -> Result<Decimal, InvalidAmount> {
    if !value.is_finite() {
        return Err(InvalidAmount::NotANumber);
    }
    if value.abs() > MAX_ABS as f64 {
        return Err(InvalidAmount::OutOfRange);
    }
    let d = Decimal::from_f64_retain(value).ok_or(InvalidAmount::NotANumber)?;
    Ok(d.round_dp(6).normalize())
}

fn check_range(d: Decimal) -> Result<Decimal, InvalidAmount> {
    if d.abs() > Decimal::from(MAX_ABS) {
        return Err(InvalidAmount::OutOfRange);
    }
    Ok(d.round_dp(6).normalize())
}

/// Amount as integer micro-units (1.5 -> 1_500_000), the storage form.
pub fn to_micros(d: Decimal) -> i64 {
    let scaled = (d * Decimal::from(1_000_000)).round();
    i64::try_from(scaled).unwrap_or(if d.is_sign_negative() {
        i64::MIN
    } else {
        i64::MAX
    })
}

pub fn from_micros(m: i64) -> Decimal {
    Decimal::new(m, 6).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies() {
        assert_eq!(Currency::parse("gbp").unwrap().as_str(), "GBP");
        assert_eq!(Currency::parse(" EUR ").unwrap(), Currency::EUR);
        assert_eq!(Currency::parse("£").unwrap(), Currency::GBP);
        assert!(Currency::parse("EURO").is_err());
        assert!(Currency::parse("E1R").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("2.55").unwrap().to_string(), "2.55");
        assert_eq!(parse_amount("-0.18").unwrap().to_string(), "-0.18");
        assert_eq!(parse_amount("1,234.50").unwrap().to_string(), "1234.5");
        assert_eq!(parse_amount("12,5").unwrap().to_string(), "12.5");
        assert!(parse_amount("NaN").is_err());
        assert!(parse_amount("1e9").is_err());
        assert!(parse_amount("99999999999999999").is_err());
        let a = parse_amount("1.02").unwrap();
        let b = parse_amount("0.99").unwrap();
        assert_eq!((a - b).to_string(), "0.03");
        assert_eq!(to_micros(parse_amount("1.5").unwrap()), 1_500_000);
        assert_eq!(from_micros(1_500_000).to_string(), "1.5");
        assert!(amount_from_f64(f64::NAN).is_err());
        assert_eq!(amount_from_f64(12.5).unwrap().to_string(), "12.5");
    }
}
