//! Money: ISO 4217 currency codes and exact amounts.
//!
//! An [`Amount`] is an integer number of micro-units (millionths) of its
//! currency's major unit, never a float: commission deltas such as
//! `1.02 - 0.99` must come out exact, and micro-units are also the form the
//! store keeps (its `*_micros` columns). Floats appear only where a JSON
//! body demands a number ([`Amount::to_f64`]). [`Money`] is an amount with
//! its currency, for the places where both are always known; where a
//! network may report one without the other (a conversion's own value and
//! currency), the two are kept apart.

use std::fmt;
use std::str::FromStr;

// Only to parse and round decimal text and floats exactly; it is not part
// of this crate's API.
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

/// Micro-units per major unit.
const MICROS: i64 = 1_000_000;

/// Largest absolute amount we accept from outside: a trillion major units.
/// Anything bigger is a typo or an attack, and it keeps micro-units (and the
/// difference of two amounts) well inside i64.
const MAX_ABS: i64 = 1_000_000_000_000;

/// An exact amount: an integer number of micro-units (millionths) of the
/// currency's major unit, so `12.5` is `12_500_000`.
///
/// Amounts from outside ([`Amount::parse`], [`Amount::from_f64`], serde)
/// are at most a trillion major units either way and are rounded to
/// micro-units (half to even). Stored values and sums come back through
/// [`Amount::from_micros`], which takes any `i64`.
///
/// Serde reads a decimal string (`"12.5"`, what is stored in JSON today) or
/// a JSON number (`12.5`, `25`), and writes the normalised decimal string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Amount(i64);

impl Amount {
    pub const ZERO: Amount = Amount(0);

    /// Parses a decimal string as networks send it: `"2.55"`, `"-0.18"`,
    /// `"1,234.50"` (thousands separators), `"12,5"` (decimal comma when it
    /// is the only separator). Rejects NaN, exponents and absurd
    /// magnitudes.
    pub fn parse(value: &str) -> Result<Self, InvalidAmount> {
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
        Self::from_decimal(d)
    }

    /// Converts a float from JSON, rounding to micro-units.
    pub fn from_f64(value: f64) -> Result<Self, InvalidAmount> {
        if !value.is_finite() {
            return Err(InvalidAmount::NotANumber);
        }
        if value.abs() > MAX_ABS as f64 {
            return Err(InvalidAmount::OutOfRange);
        }
        let d = Decimal::from_f64_retain(value).ok_or(InvalidAmount::NotANumber)?;
        Self::from_decimal(d)
    }

    /// A whole number of major units (a JSON integer).
    fn from_units(units: i128) -> Result<Self, InvalidAmount> {
        if units.abs() > i128::from(MAX_ABS) {
            return Err(InvalidAmount::OutOfRange);
        }
        i64::try_from(units * i128::from(MICROS))
            .map(Self)
            .map_err(|_| InvalidAmount::OutOfRange)
    }

    fn from_decimal(d: Decimal) -> Result<Self, InvalidAmount> {
        if d.abs() > Decimal::from(MAX_ABS) {
            return Err(InvalidAmount::OutOfRange);
        }
        // At most 6 decimals after rounding, so the mantissa scaled to
        // micro-units is exact: at most 1e18 in magnitude.
        let d = d.round_dp(6);
        let micros = d.mantissa() * 10i128.pow(6 - d.scale());
        i64::try_from(micros)
            .map(Self)
            .map_err(|_| InvalidAmount::OutOfRange)
    }

    /// An amount as stored: integer micro-units (1_500_000 is 1.5).
    pub const fn from_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// The storage form: integer micro-units.
    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The nearest float, for JSON bodies that need a number: `12.5` for
    /// 12.5, `39.99` (its shortest form) for 39.99.
    pub fn to_f64(self) -> f64 {
        // Both operands are exact below 2^53 micro-units, so one IEEE
        // division is correctly rounded; beyond that, parse the exact
        // decimal.
        const EXACT: u64 = 1 << 53;
        if self.0.unsigned_abs() <= EXACT {
            self.0 as f64 / MICROS as f64
        } else {
            self.to_string()
                .parse()
                .unwrap_or(self.0 as f64 / MICROS as f64)
        }
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// Strictly below zero.
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// Strictly above zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    pub const fn checked_add(self, other: Amount) -> Option<Amount> {
        match self.0.checked_add(other.0) {
            Some(m) => Some(Self(m)),
            None => None,
        }
    }

    pub const fn checked_sub(self, other: Amount) -> Option<Amount> {
        match self.0.checked_sub(other.0) {
            Some(m) => Some(Self(m)),
            None => None,
        }
    }

    /// For sums of stored amounts (reports, adjustments): they cannot
    /// overflow in practice, and a clamped figure beats a panic.
    pub const fn saturating_add(self, other: Amount) -> Amount {
        Self(self.0.saturating_add(other.0))
    }

    pub const fn saturating_sub(self, other: Amount) -> Amount {
        Self(self.0.saturating_sub(other.0))
    }

    /// The opposite amount (a reversal of the whole value).
    pub const fn saturating_neg(self) -> Amount {
        Self(self.0.saturating_neg())
    }
}

/// The normalised decimal: `12.5`, `-0.18`, `0`, `1234` (no exponent, no
/// separators, no trailing zeros).
impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let abs = self.0.unsigned_abs();
        let micros = MICROS.unsigned_abs();
        let (units, frac) = (abs / micros, abs % micros);
        let sign = if self.0 < 0 { "-" } else { "" };
        if frac == 0 {
            return write!(f, "{sign}{units}");
        }
        let digits = format!("{frac:06}");
        write!(f, "{sign}{units}.{}", digits.trim_end_matches('0'))
    }
}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({self})")
    }
}

impl FromStr for Amount {
    type Err = InvalidAmount;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AmountVisitor)
    }
}

/// Reads what `rust_decimal`'s serde read before this type (strings and
/// JSON numbers), with [`Amount::parse`]'s rules and range.
struct AmountVisitor;

impl serde::de::Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal amount such as \"12.50\" or 12.5")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Amount, E> {
        Amount::parse(v).map_err(E::custom)
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Amount, E> {
        Amount::from_units(i128::from(v)).map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Amount, E> {
        Amount::from_units(i128::from(v)).map_err(E::custom)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Amount, E> {
        Amount::from_f64(v).map_err(E::custom)
    }
}

/// An amount in a known currency: a fixed mapping value, a spend line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Money {
    pub amount: Amount,
    pub currency: Currency,
}

impl Money {
    pub const fn new(amount: Amount, currency: Currency) -> Self {
        Self { amount, currency }
    }
}

/// `12.5 EUR`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn amount(s: &str) -> Amount {
        Amount::parse(s).unwrap()
    }

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
        assert_eq!(amount("2.55").to_string(), "2.55");
        assert_eq!(amount("-0.18").to_string(), "-0.18");
        assert_eq!(amount("1,234.50").to_string(), "1234.5");
        assert_eq!(amount("12,5").to_string(), "12.5");
        assert_eq!(amount("0.000").to_string(), "0");
        assert_eq!(amount("-0").to_string(), "0");
        assert_eq!(amount("0.0000015").micros(), 2, "half to even");
        assert_eq!(amount("0.0000025").micros(), 2, "half to even");
        assert_eq!(Amount::parse("NaN"), Err(InvalidAmount::NotANumber));
        assert_eq!(Amount::parse("1e9"), Err(InvalidAmount::NotANumber));
        assert_eq!(Amount::parse(" "), Err(InvalidAmount::NotANumber));
        assert_eq!(
            Amount::parse("99999999999999999"),
            Err(InvalidAmount::OutOfRange)
        );
        assert_eq!(amount("1000000000000").micros(), MAX_ABS * MICROS);
        assert_eq!(
            amount("1.02").checked_sub(amount("0.99")),
            Some(amount("0.03"))
        );
        assert_eq!(amount("1.5").micros(), 1_500_000);
        assert_eq!(Amount::from_micros(1_500_000).to_string(), "1.5");
        assert_eq!(
            Amount::from_micros(i64::MIN).to_string(),
            "-9223372036854.775808"
        );
        assert_eq!(Amount::from_f64(f64::NAN), Err(InvalidAmount::NotANumber));
        assert_eq!(Amount::from_f64(1e13), Err(InvalidAmount::OutOfRange));
        assert_eq!(Amount::from_f64(12.5).unwrap().to_string(), "12.5");
        assert_eq!(Amount::from_f64(0.1).unwrap().to_string(), "0.1");
        assert!(amount("-0.01").is_negative() && !Amount::ZERO.is_negative());
        assert!(amount("0.01").is_positive() && !Amount::ZERO.is_positive());
        assert_eq!(amount("2.5").saturating_neg(), amount("-2.5"));
        assert_eq!(
            Amount::from_micros(i64::MAX).saturating_add(amount("1")),
            Amount::from_micros(i64::MAX)
        );
        assert_eq!(amount("39.99").to_f64(), 39.99);
        assert_eq!(amount("-12.5").to_f64(), -12.5);
        assert_eq!(format!("{:?}", amount("12.50")), "Amount(12.5)");
        assert_eq!(
            Money::new(amount("12.5"), Currency::EUR).to_string(),
            "12.5 EUR"
        );
    }

    #[test]
    fn serde_reads_strings_and_numbers_writes_strings() {
        let read = |j: &str| serde_json::from_str::<Amount>(j);
        assert_eq!(read(r#""12.50""#).unwrap(), amount("12.5"));
        assert_eq!(read("12.5").unwrap(), amount("12.5"));
        assert_eq!(read("25").unwrap(), amount("25"));
        assert_eq!(read("-3").unwrap(), amount("-3"));
        assert!(read(r#""abc""#).is_err());
        assert!(read("1e13").is_err());
        assert!(read("10000000000000").is_err());
        assert!(read("true").is_err());
        assert_eq!(
            serde_json::to_string(&amount("12.50")).unwrap(),
            r#""12.5""#
        );
        let m = Money::new(amount("25"), Currency::EUR);
        let j = serde_json::to_value(m).unwrap();
        assert_eq!(j, serde_json::json!({"amount": "25", "currency": "EUR"}));
        assert_eq!(serde_json::from_value::<Money>(j).unwrap(), m);
        assert!(
            serde_json::from_str::<Money>(r#"{"amount": 1, "currency": "EUR", "x": 1}"#).is_err()
        );
    }

    /// What `rust_decimal` (with `serde-with-str`) wrote before `Amount`:
    /// the decimal as a string, with the scale it had (`"12.50"`, `"0"`).
    #[test]
    fn decodes_what_rust_decimal_wrote() {
        for (d, want) in [
            (Decimal::new(1250, 2), "12.5"),
            (Decimal::ZERO, "0"),
            (Decimal::new(-99, 2), "-0.99"),
            (Decimal::new(10_000, 0), "10000"),
            (Decimal::new(1_234_567, 6), "1.234567"),
        ] {
            let old = serde_json::to_string(&d).unwrap();
            assert!(old.starts_with('"'), "{old}");
            let a: Amount = serde_json::from_str(&old).unwrap();
            assert_eq!(a.to_string(), want);
        }
    }

    const RANGE: std::ops::RangeInclusive<i64> = -MAX_ABS * MICROS..=MAX_ABS * MICROS;

    proptest! {
        #[test]
        fn display_parse_round_trip(m in RANGE) {
            let a = Amount::from_micros(m);
            let text = a.to_string();
            prop_assert_eq!(Amount::parse(&text), Ok(a));
            // The same text rust_decimal gives the normalised decimal.
            prop_assert_eq!(&text, &Decimal::new(m, 6).normalize().to_string());
            let json = serde_json::to_string(&a).unwrap();
            prop_assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), a);
        }

        #[test]
        fn micros_round_trip(m in any::<i64>()) {
            prop_assert_eq!(Amount::from_micros(m).micros(), m);
        }

        #[test]
        fn floats_are_the_nearest(m in -(1i64 << 60)..(1i64 << 60)) {
            let a = Amount::from_micros(m);
            prop_assert_eq!(a.to_f64(), a.to_string().parse::<f64>().unwrap());
        }

        #[test]
        fn parse_rounds_like_decimal(units in -1_000_000i64..1_000_000, frac in 0u32..100_000_000) {
            let text = format!("{units}.{frac:08}");
            let want = Decimal::from_str_exact(&text).unwrap().round_dp(6);
            let got = Amount::parse(&text).unwrap();
            prop_assert_eq!(Decimal::new(got.micros(), 6), want);
        }
    }
}
