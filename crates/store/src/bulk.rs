//! Bulk statements: many rows in one statement.
//!
//! PostgreSQL takes the rows as one JSON parameter (`json_to_recordset`),
//! one statement for any number of rows. SQLite takes them as multi-row
//! `VALUES` lists with bound parameters, in chunks of a few fixed sizes so
//! the prepared statements stay cached: SQLite's JSON functions would
//! re-parse each row once per column, which profiling showed to cost more
//! than the inserts themselves.

use serde::Serialize;
use serde_json::Value;

use crate::{Arg, Args, Backend, Result, StoreError, Tx};

/// SQLite's limit on bound parameters is 32766; stay well under it.
const MAX_PARAMS: usize = 8000;
const MAX_CHUNK: usize = 64;

/// A bulk statement over `cols` (name, PostgreSQL type).
#[derive(Debug)]
pub struct Bulk {
    cols: &'static [(&'static str, &'static str)],
    /// SQLite: text before and after the `(..),(..)` list.
    sqlite_prefix: String,
    sqlite_suffix: String,
    /// PostgreSQL: the statement with the rows as JSON in `$1`.
    pg_sql: String,
    /// SQLite, one row at a time: the statement with a named parameter
    /// (`:column`) per column (see `crate::direct`).
    sqlite_named: String,
}

/// `(:a, :b, ...)` for the columns `cols`.
fn named_row(cols: &[(&str, &str)]) -> String {
    let names: Vec<String> = cols.iter().map(|(c, _)| format!(":{c}")).collect();
    format!("({})", names.join(", "))
}

/// `SELECT <cols> FROM json_to_recordset($1::json) AS x(<cols typed>)`.
pub fn pg_recordset(cols: &[(&str, &str)]) -> String {
    let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
    let typed: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
    format!(
        "SELECT {} FROM json_to_recordset($1::json) AS x({})",
        names.join(", "),
        typed.join(", ")
    )
}

impl Bulk {
    /// `INSERT INTO table (cols) ... tail` (tail: `ON CONFLICT ...`,
    /// `RETURNING ...`).
    pub fn insert(table: &str, cols: &'static [(&'static str, &'static str)], tail: &str) -> Bulk {
        let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        let names = names.join(", ");
        Bulk {
            cols,
            sqlite_named: format!(
                "INSERT INTO {table} ({names}) VALUES {} {tail}",
                named_row(cols)
            ),
            sqlite_prefix: format!("INSERT INTO {table} ({names}) VALUES "),
            sqlite_suffix: format!(" {tail}"),
            pg_sql: format!(
                "INSERT INTO {table} ({names}) {} {tail}",
                pg_recordset(cols)
            ),
        }
    }

    /// A statement reading the rows as a table `x`: `update` is the rest of
    /// the statement after `WITH x(cols) AS (...)` on SQLite, and is given
    /// `json_to_recordset(...) AS x(...)` in place of `{rows}` on
    /// PostgreSQL.
    pub fn with_rows(
        cols: &'static [(&'static str, &'static str)],
        sqlite: &str,
        pg: &str,
    ) -> Bulk {
        let names: Vec<&str> = cols.iter().map(|(c, _)| *c).collect();
        let typed: Vec<String> = cols.iter().map(|(c, t)| format!("{c} {t}")).collect();
        Bulk {
            cols,
            sqlite_named: format!(
                "WITH x({}) AS (VALUES {}) {sqlite}",
                names.join(", "),
                named_row(cols)
            ),
            sqlite_prefix: format!("WITH x({}) AS (VALUES ", names.join(", ")),
            sqlite_suffix: format!(") {sqlite}"),
            pg_sql: pg.replace(
                "{rows}",
                &format!("json_to_recordset($1::json) AS x({})", typed.join(", ")),
            ),
        }
    }

    fn chunk_len(&self, remaining: usize) -> usize {
        let max = (MAX_PARAMS / self.cols.len().max(1)).clamp(1, MAX_CHUNK);
        if remaining >= max {
            return max;
        }
        // Powers of two for the rest: few distinct statements to cache.
        let mut n = 1;
        while n * 2 <= remaining {
            n *= 2;
        }
        n
    }

    fn sqlite_sql(&self, rows: usize) -> String {
        let w = self.cols.len();
        let mut sql = String::with_capacity(
            self.sqlite_prefix.len() + rows * w * 5 + self.sqlite_suffix.len(),
        );
        sql.push_str(&self.sqlite_prefix);
        // Anonymous `?` parameters: with numbered ones, binding each looks
        // its name up in a list as long as the statement (quadratic in the
        // rows of a chunk).
        for r in 0..rows {
            if r > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..w {
                if c > 0 {
                    sql.push(',');
                }
                sql.push('?');
            }
            sql.push(')');
        }
        sql.push_str(&self.sqlite_suffix);
        sql
    }

    fn row_args<T: Serialize>(&self, row: &T, out: &mut Args) -> Result<()> {
        let v = serde_json::to_value(row)
            .map_err(|e| StoreError::Corrupt(format!("serialising a row: {e}")))?;
        let Value::Object(mut m) = v else {
            return Err(StoreError::Corrupt(
                "bulk rows must serialise to objects".into(),
            ));
        };
        for (c, _) in self.cols {
            out.push(match m.remove(*c) {
                None | Some(Value::Null) => Arg::Text(None),
                Some(Value::Bool(b)) => Arg::Bool(Some(b)),
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(i) => Arg::I64(Some(i)),
                    None => Arg::F64(n.as_f64()),
                },
                Some(Value::String(s)) => Arg::Text(Some(s)),
                Some(other) => Arg::Text(Some(other.to_string())),
            });
        }
        Ok(())
    }

    fn pg_json<T: Serialize>(rows: &[T]) -> Result<String> {
        serde_json::to_string(rows)
            .map_err(|e| StoreError::Corrupt(format!("serialising rows: {e}")))
    }

    /// Runs the statement over `rows`; returns rows affected.
    pub async fn execute<T: Serialize>(&self, tx: &mut Tx<'_>, rows: &[T]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        if let Some(w) = tx.direct() {
            return w.execute_rows(&self.sqlite_named, rows);
        }
        match tx.backend() {
            Backend::Postgres => {
                tx.execute(&self.pg_sql, vec![Arg::Text(Some(Self::pg_json(rows)?))])
                    .await
            }
            Backend::Sqlite => {
                let mut total = 0;
                let mut rest = rows;
                while !rest.is_empty() {
                    let n = self.chunk_len(rest.len());
                    let (chunk, tail) = rest.split_at(n);
                    let mut args = Vec::with_capacity(n * self.cols.len());
                    for r in chunk {
                        self.row_args(r, &mut args)?;
                    }
                    total += tx.execute(&self.sqlite_sql(n), args).await?;
                    rest = tail;
                }
                Ok(total)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COLS: &[(&str, &str)] = &[("a", "bigint"), ("b", "text")];

    #[test]
    fn chunks_are_few_sizes() {
        let b = Bulk::insert("t", COLS, "");
        let mut sizes = std::collections::BTreeSet::new();
        for total in 1..300 {
            let mut rest = total;
            while rest > 0 {
                let n = b.chunk_len(rest);
                sizes.insert(n);
                rest -= n;
            }
        }
        assert_eq!(
            sizes.into_iter().collect::<Vec<_>>(),
            vec![1, 2, 4, 8, 16, 32, 64]
        );
        assert_eq!(b.sqlite_sql(2), "INSERT INTO t (a, b) VALUES (?,?),(?,?) ");
    }
}
