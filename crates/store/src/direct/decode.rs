//! Result rows of a direct connection read into serde types, so that one
//! query function serves a sqlx transaction and a direct one: a struct is
//! read by column name (as sqlx's `FromRow` does), a tuple by position.
//!
//! Values convert as sqlx converts them from SQLite: INTEGER into integers
//! and, 0 or not, into booleans; INTEGER or REAL into floats; TEXT into
//! strings; NULL into `None`.

use rusqlite::Row;
use rusqlite::types::ValueRef;
use serde::de::value::StrDeserializer;
use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use crate::{Result, StoreError};

/// Reads one row (column names come from its statement, unallocated).
pub(super) fn row<T: de::DeserializeOwned>(row: &Row<'_>) -> Result<T> {
    T::deserialize(RowDe { row })
}

impl de::Error for StoreError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        StoreError::Corrupt(format!("reading a row: {msg}"))
    }
}

struct RowDe<'a, 'r> {
    row: &'a Row<'r>,
}

impl RowDe<'_, '_> {
    fn columns(&self) -> Columns<'_, '_> {
        Columns {
            row: self.row,
            count: self.row.as_ref().column_count(),
            next: 0,
        }
    }
}

impl<'de> de::Deserializer<'de> for RowDe<'_, '_> {
    type Error = StoreError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_map(self.columns())
    }
    fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        v.visit_seq(self.columns())
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, v: V) -> Result<V::Value> {
        v.visit_seq(self.columns())
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        v: V,
    ) -> Result<V::Value> {
        v.visit_seq(self.columns())
    }
    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct map struct enum
        identifier ignored_any
    }
}

/// The columns of a row, as map entries (name, value) or a sequence.
struct Columns<'a, 'r> {
    row: &'a Row<'r>,
    count: usize,
    next: usize,
}

impl Columns<'_, '_> {
    fn value(&mut self) -> Result<ValueDe<'_>> {
        let v = self.row.get_ref(self.next)?;
        self.next += 1;
        Ok(ValueDe(v))
    }
}

impl<'de> de::MapAccess<'de> for Columns<'_, '_> {
    type Error = StoreError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        if self.next >= self.count {
            return Ok(None);
        }
        let name = self.row.as_ref().column_name(self.next)?;
        let key: StrDeserializer<'_, StoreError> = name.into_deserializer();
        seed.deserialize(key).map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(self.value()?)
    }
}

impl<'de> de::SeqAccess<'de> for Columns<'_, '_> {
    type Error = StoreError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.next >= self.count {
            return Ok(None);
        }
        seed.deserialize(self.value()?).map(Some)
    }
}

/// One column's value.
struct ValueDe<'a>(ValueRef<'a>);

impl<'de> de::Deserializer<'de> for ValueDe<'_> {
    type Error = StoreError;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.0 {
            ValueRef::Null => v.visit_none(),
            ValueRef::Integer(i) => v.visit_i64(i),
            ValueRef::Real(f) => v.visit_f64(f),
            ValueRef::Text(t) => v.visit_str(std::str::from_utf8(t).map_err(|e| {
                StoreError::Corrupt(format!("reading a row: text is not UTF-8: {e}"))
            })?),
            ValueRef::Blob(b) => v.visit_bytes(b),
        }
    }
    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.0 {
            ValueRef::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }
    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.0 {
            ValueRef::Integer(i) => v.visit_bool(i != 0),
            _ => self.deserialize_any(v),
        }
    }
    fn deserialize_f64<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        match self.0 {
            #[expect(
                clippy::cast_precision_loss,
                reason = "as SQLite itself converts an INTEGER read as REAL"
            )]
            ValueRef::Integer(i) => v.visit_f64(i as f64),
            _ => self.deserialize_any(v),
        }
    }
    fn deserialize_f32<V: Visitor<'de>>(self, v: V) -> Result<V::Value> {
        self.deserialize_f64(v)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        v: V,
    ) -> Result<V::Value> {
        v.visit_newtype_struct(self)
    }
    forward_to_deserialize_any! {
        i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;
    use serde::Deserialize;

    use super::*;

    fn read<T: de::DeserializeOwned>(sql: &str) -> Result<Vec<T>> {
        let conn = Connection::open_in_memory().unwrap();
        let mut stmt = conn.prepare(sql).unwrap();
        let mut rows = stmt.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(r) = rows.next().unwrap() {
            out.push(row(r)?);
        }
        Ok(out)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct S {
        id: i64,
        name: String,
        note: Option<String>,
        flag: bool,
        ratio: f64,
    }

    #[test]
    fn structs_by_name_and_tuples_by_position() {
        // Columns in another order than the fields, and one the struct has
        // no field for.
        let got: Vec<S> = read(
            "SELECT 0.5 AS ratio, 'x' AS extra, 1 AS flag, NULL AS note, 'n' AS name, 7 AS id \
             UNION ALL SELECT 2, 'y', 0, 'a note', 'm', 8",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                S {
                    id: 7,
                    name: "n".into(),
                    note: None,
                    flag: true,
                    ratio: 0.5
                },
                S {
                    id: 8,
                    name: "m".into(),
                    note: Some("a note".into()),
                    flag: false,
                    ratio: 2.0
                },
            ]
        );
        let t: Vec<(String, i64, Option<i64>)> = read("SELECT 'a', 3, NULL").unwrap();
        assert_eq!(t, vec![("a".into(), 3, None)]);
    }

    #[test]
    fn mismatches_are_errors_not_panics() {
        for err in [
            read::<(i64,)>("SELECT 'text'").unwrap_err(),
            read::<(String,)>("SELECT NULL").unwrap_err(),
            read::<(i64, i64)>("SELECT 1").unwrap_err(),
            read::<S>("SELECT 1 AS id").unwrap_err(),
            read::<(i32,)>("SELECT 4294967296").unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
    }
}
