//! Amounts in and out of the `*_micros` BIGINT columns, which hold
//! [`Amount::micros`]. Row types name their amount fields `Amount` and
//! read them through these adapters: on PostgreSQL sqlx's
//! `#[sqlx(try_from = "Micros")]` (or [`OptMicros`]) decodes the column as
//! an integer and converts it; on SQLite, whose rows are read through serde
//! (see `direct::decode`), `#[serde(with = "crate::micros")]` (or
//! [`opt`]) does the same. Writes bind `Amount::micros` (the same `with`
//! serialises a row field as its integer).
//!
//! Amount's own serde form (a decimal string) is for JSON, never for a
//! column: an integer read through it would be taken as major units.

use clicktrail_domain::money::Amount;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A `*_micros` column as sqlx decodes it.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct Micros(i64);

impl From<Micros> for Amount {
    fn from(m: Micros) -> Amount {
        Amount::from_micros(m.0)
    }
}

/// A nullable `*_micros` column as sqlx decodes it.
#[derive(sqlx::Type)]
#[sqlx(transparent)]
pub struct OptMicros(Option<i64>);

impl From<OptMicros> for Option<Amount> {
    fn from(m: OptMicros) -> Option<Amount> {
        m.0.map(Amount::from_micros)
    }
}

pub fn serialize<S: Serializer>(a: &Amount, s: S) -> Result<S::Ok, S::Error> {
    a.micros().serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
    i64::deserialize(d).map(Amount::from_micros)
}

/// The same for a nullable column.
pub mod opt {
    use super::*;

    pub fn serialize<S: Serializer>(a: &Option<Amount>, s: S) -> Result<S::Ok, S::Error> {
        a.map(Amount::micros).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Amount>, D::Error> {
        Option::<i64>::deserialize(d).map(|m| m.map(Amount::from_micros))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Row {
        #[serde(with = "crate::micros")]
        spend_micros: Amount,
        #[serde(with = "crate::micros::opt")]
        value_micros: Option<Amount>,
    }

    #[test]
    fn columns_hold_micro_units() {
        let row = Row {
            spend_micros: Amount::parse("12.5").unwrap(),
            value_micros: None,
        };
        let json = serde_json::to_value(&row).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"spend_micros": 12_500_000, "value_micros": null})
        );
        assert_eq!(serde_json::from_value::<Row>(json).unwrap(), row);
        let back: Row =
            serde_json::from_str(r#"{"spend_micros": -180000, "value_micros": 1}"#).unwrap();
        assert_eq!(back.spend_micros.to_string(), "-0.18");
        assert_eq!(back.value_micros, Some(Amount::from_micros(1)));
    }
}
