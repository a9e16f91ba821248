//! The store's SQLite connection: rusqlite, with a statement cache, rows
//! bound straight from serde structs (see [`RowBinder`]) and read back
//! through serde (see [`decode`]). Every use of SQLite goes through one:
//! the hot writers (ingest, conversions) each keep one on their own thread
//! and run whole batches on it synchronously (see [`crate::WriterConn`]);
//! async callers reach pooled ones through blocking tasks (see
//! [`crate::sqlite`]).
//!
//! Why synchronous batches: with sqlx, every statement travelled to the
//! connection's worker thread and its result back, and a batch's multi-row
//! statements were parsed again whenever the batch's shape changed.
//! Profiled under load, the ingest writer spent more time in those
//! hand-offs, in the parser and in allocating arguments than in SQLite's
//! B-trees, and each hand-off waited for a CPU shared with the request
//! handlers. Here a batch runs start to finish on one thread with cached
//! one-row statements, bound straight from the row structs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rusqlite::{Connection, Statement};
use serde::Serialize;
use serde::ser::{self, Impossible};

use crate::{Arg, Result, SqliteSync, StoreError, Tx, TxInner, WAL_AUTOCHECKPOINT_PAGES, WalState};

mod decode;

/// What a connection needs to open the database.
#[derive(Debug, Clone)]
pub(crate) struct DirectSettings {
    pub(crate) path: PathBuf,
    pub(crate) synchronous: SqliteSync,
    pub(crate) cache_kib: i64,
}

/// A connection (see the module docs): a writer's, or a read-only one. A
/// transaction is begun and ended by hand; after any failure its owner
/// drops it (closing the connection rolls back whatever was left open).
pub(crate) struct DirectConn {
    conn: Connection,
    /// Per statement: the parameter index of each field, in the order the
    /// row type serialises them.
    bindings: HashMap<String, Vec<(String, usize)>>,
    wal: Arc<WalState>,
    /// The checkpointer's pass this writer last restarted the WAL after.
    restarted_after: u64,
}

impl std::fmt::Debug for DirectConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirectConn")
    }
}

impl DirectConn {
    pub(crate) fn open(s: &DirectSettings, wal: Arc<WalState>) -> Result<Self> {
        let conn = Connection::open(&s.path)?;
        conn.busy_handler(Some(wait_briefly))?;
        conn.set_prepared_statement_cache_capacity(64);
        let sync = match s.synchronous {
            SqliteSync::Full => "FULL",
            SqliteSync::Normal => "NORMAL",
        };
        conn.execute_batch(&format!(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; \
             PRAGMA foreign_keys = ON; PRAGMA temp_store = MEMORY; \
             PRAGMA cache_size = -{}; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};",
            s.cache_kib
        ))?;
        Ok(Self::new(conn, wal))
    }

    /// A read-only connection, with a quarter of the writer's page cache
    /// (as the pool's readers have).
    pub(crate) fn open_read_only(s: &DirectSettings, wal: Arc<WalState>) -> Result<Self> {
        let conn = Connection::open_with_flags(
            &s.path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_handler(Some(wait_briefly))?;
        conn.set_prepared_statement_cache_capacity(64);
        conn.execute_batch(&format!(
            "PRAGMA temp_store = MEMORY; PRAGMA cache_size = -{};",
            (s.cache_kib / 4).max(1024)
        ))?;
        Ok(Self::new(conn, wal))
    }

    fn new(conn: Connection, wal: Arc<WalState>) -> Self {
        Self {
            conn,
            bindings: HashMap::new(),
            wal,
            restarted_after: 0,
        }
    }

    /// Restarts the WAL when it has grown past
    /// [`WalState::RESTART_ABOVE_FRAMES`], right after a background passive
    /// checkpoint copied most of it. Returns whether it did. Call it between
    /// transactions.
    ///
    /// Why here and not in the checkpointer: a `RESTART` checkpoint from
    /// another connection makes the writer's next `BEGIN` busy, and SQLite's
    /// busy handler then sleeps in growing steps; measured, those sleeps
    /// held acknowledged requests for up to 250 ms. The writer itself only
    /// copies what the passive checkpoint left, and with no busy timeout a
    /// reader in the way turns the restart into one more passive copy
    /// instead of a wait.
    pub(crate) fn restart_wal_if_large(&mut self) -> Result<bool> {
        let passes = self.wal.passes.load(Relaxed);
        if passes == self.restarted_after
            || self.wal.frames.load(Relaxed) <= WalState::RESTART_ABOVE_FRAMES
        {
            return Ok(false);
        }
        self.restarted_after = passes;
        self.conn.busy_handler(None)?;
        let r = self
            .conn
            .query_row("PRAGMA wal_checkpoint(RESTART)", [], |r| r.get::<_, i64>(0));
        self.conn.busy_handler(Some(wait_briefly))?;
        let restarted = r? == 0;
        if restarted {
            self.wal.frames.store(0, Relaxed);
            self.wal.writer_restarts.fetch_add(1, Relaxed);
        }
        Ok(restarted)
    }

    /// `BEGIN IMMEDIATE`: takes the write lock now, so the transaction can
    /// never fail half-way on a lock upgrade.
    pub(crate) fn begin(&mut self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        self.conn.execute_batch("COMMIT")?;
        Ok(())
    }

    pub(crate) fn rollback(&mut self) -> Result<()> {
        if !self.conn.is_autocommit() {
            self.conn.execute_batch("ROLLBACK")?;
        }
        Ok(())
    }

    pub(crate) fn conn(&self) -> &Connection {
        &self.conn
    }

    /// Whether no transaction is open.
    pub(crate) fn is_idle(&self) -> bool {
        self.conn.is_autocommit()
    }

    /// Begins a transaction (as [`begin`](Self::begin)) that the store's
    /// functions taking a [`Tx`] run in, synchronously on this connection.
    /// Dropped unfinished, it rolls back.
    pub(crate) fn transaction(&mut self) -> Result<Tx<'_>> {
        self.begin()?;
        Ok(Tx(TxInner::Direct(DirectTx {
            w: self,
            open: true,
        })))
    }

    /// A read transaction (deferred `BEGIN`): its reads see one snapshot of
    /// the database.
    pub(crate) fn read_transaction(&mut self) -> Result<Tx<'_>> {
        self.conn.execute_batch("BEGIN")?;
        Ok(Tx(TxInner::Direct(DirectTx {
            w: self,
            open: true,
        })))
    }

    /// Runs `sql` with [`Arg`]s bound to its `$n` (or `?`) parameters, as
    /// a sqlx query would bind them.
    pub(crate) fn execute_args(&mut self, sql: &str, args: &[Arg]) -> Result<u64> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind_args(&mut stmt, args)?;
        Ok(stmt.raw_execute()? as u64)
    }

    /// Runs the query `sql` (bound as [`execute_args`](Self::execute_args))
    /// and reads up to `limit` of its rows (see [`decode`]).
    pub(crate) fn query_args<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        args: &[Arg],
        limit: usize,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        bind_args(&mut stmt, args)?;
        read_rows(stmt.raw_query(), limit)
    }

    /// [`query_args`](Self::query_args) with rusqlite's own parameters
    /// (no [`Arg`] built per call: for lookups made once per event).
    pub(crate) fn query_params<T: serde::de::DeserializeOwned>(
        &mut self,
        sql: &str,
        params: impl rusqlite::Params,
        limit: usize,
    ) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        read_rows(stmt.query(params)?, limit)
    }

    /// Runs the one-row statement `sql` (named parameters `:field`) once per
    /// row; returns the rows it changed in all.
    pub(crate) fn execute_rows<T: Serialize>(&mut self, sql: &str, rows: &[T]) -> Result<u64> {
        if rows.is_empty() {
            return Ok(0);
        }
        let mut stmt = self.conn.prepare_cached(sql)?;
        let order = self.bindings.entry(sql.to_owned()).or_default();
        let expected = stmt.parameter_count();
        let mut changed = 0u64;
        for row in rows {
            let mut binder = RowBinder {
                stmt: &mut stmt,
                order,
                field: 0,
                key: String::new(),
            };
            row.serialize(&mut binder)?;
            if binder.field != expected {
                return Err(StoreError::Corrupt(format!(
                    "a row bound {} of the {expected} parameters of {sql}",
                    binder.field
                )));
            }
            changed += stmt.raw_execute()? as u64;
        }
        Ok(changed)
    }
}

/// A transaction on a [`DirectConn`], run synchronously by a [`Tx`].
pub(crate) struct DirectTx<'w> {
    w: &'w mut DirectConn,
    open: bool,
}

impl DirectTx<'_> {
    pub(crate) fn writer(&mut self) -> &mut DirectConn {
        self.w
    }

    pub(crate) fn commit(&mut self) -> Result<()> {
        self.open = false;
        self.w.commit()
    }

    pub(crate) fn rollback(&mut self) -> Result<()> {
        self.open = false;
        self.w.rollback()
    }
}

impl Drop for DirectTx<'_> {
    fn drop(&mut self) {
        if self.open
            && let Err(e) = self.w.rollback()
        {
            tracing::warn!(error = %e, "rolling back an abandoned transaction failed");
        }
    }
}

/// Reads up to `limit` of `rows` (see [`decode`]).
fn read_rows<T: serde::de::DeserializeOwned>(
    mut rows: rusqlite::Rows<'_>,
    limit: usize,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    while out.len() < limit {
        let Some(r) = rows.next()? else { break };
        out.push(decode::row(r)?);
    }
    Ok(out)
}

/// Binds `args` to a statement's parameters: `$n` and `?n` take the n-th
/// argument, an anonymous `?` the one at its own position.
fn bind_args(stmt: &mut Statement<'_>, args: &[Arg]) -> Result<()> {
    for i in 1..=stmt.parameter_count() {
        let n = match stmt.parameter_name(i) {
            None => i,
            Some(name) => name
                .strip_prefix(['$', '?'])
                .and_then(|n| n.parse::<usize>().ok())
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("parameter {name} is neither $n nor ?n"))
                })?,
        };
        let arg = n.checked_sub(1).and_then(|n| args.get(n)).ok_or_else(|| {
            StoreError::Corrupt(format!(
                "parameter {n} of a statement, but {} argument(s)",
                args.len()
            ))
        })?;
        match arg {
            Arg::I64(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::F64(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Text(v) => stmt.raw_bind_parameter(i, v)?,
            Arg::Bool(v) => stmt.raw_bind_parameter(i, v.map(i64::from))?,
            Arg::Bytes(v) => stmt.raw_bind_parameter(i, v)?,
        }
    }
    Ok(())
}

/// The busy handler: retry every half millisecond, for up to ten seconds.
///
/// Why not `busy_timeout`: SQLite's own handler sleeps in growing steps
/// (1, 2, 5, 10, 15, 20, 25 ... 100 ms), so a writer that found the lock
/// taken for a few milliseconds by another connection (a cursor update,
/// an API write) slept on for up to 100 ms after it was free; measured,
/// those sleeps were the collector's worst latencies at 5,000 events/s.
pub(crate) fn wait_briefly(retries: i32) -> bool {
    const STEP: Duration = Duration::from_micros(500);
    const GIVE_UP_AFTER: i32 = 20_000;
    if retries >= GIVE_UP_AFTER {
        return false;
    }
    std::thread::sleep(STEP);
    true
}

/// Binds one row, a struct (or a map, which is what `#[serde(flatten)]`
/// makes of one) of plain fields, to a statement's named parameters.
///
/// The n-th field of a row lands where the n-th field of the previous row
/// did when the names agree, so a row costs one comparison per field after
/// the first.
struct RowBinder<'a, 's> {
    stmt: &'a mut Statement<'s>,
    order: &'a mut Vec<(String, usize)>,
    field: usize,
    /// The key of a map entry whose value comes next.
    key: String,
}

impl RowBinder<'_, '_> {
    fn index_of(&mut self, name: &str) -> Result<usize> {
        if let Some((n, i)) = self.order.get(self.field)
            && n == name
        {
            return Ok(*i);
        }
        let i = self
            .stmt
            .parameter_index(&format!(":{name}"))?
            .ok_or_else(|| StoreError::Corrupt(format!("no parameter :{name}")))?;
        self.order.truncate(self.field);
        self.order.push((name.to_owned(), i));
        Ok(i)
    }

    fn bind<V: Serialize + ?Sized>(&mut self, name: &str, value: &V) -> Result<()> {
        let index = self.index_of(name)?;
        value.serialize(ValueBinder {
            stmt: self.stmt,
            index,
        })?;
        self.field += 1;
        Ok(())
    }
}

impl ser::Error for StoreError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        StoreError::Corrupt(format!("binding a row: {msg}"))
    }
}

fn unsupported<T>(what: &str) -> Result<T> {
    Err(StoreError::Corrupt(format!(
        "binding a row: {what} is not a plain column value"
    )))
}

/// Methods that refuse their argument: `reject!(Ok, "why": method(args), ...)`.
macro_rules! reject {
    ($ok:ty, $what:literal: $($m:ident($($t:ty),*)),* $(,)?) => {
        $(fn $m(self, $(_: $t),*) -> Result<$ok> { unsupported($what) })*
    };
}

/// The rest of a serializer that takes no compound value (sequences,
/// tuples, enums with data, and maps and structs unless it says otherwise),
/// and sees through newtypes.
macro_rules! no_compounds {
    ($ok:ty) => {
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            v: &T,
        ) -> Result<$ok> {
            v.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _: &'static str,
            _: u32,
            _: &'static str,
            _: &T,
        ) -> Result<$ok> {
            unsupported("an enum with data")
        }
        reject!(Self::SerializeSeq, "a sequence": serialize_seq(Option<usize>));
        reject!(Self::SerializeTuple, "a tuple": serialize_tuple(usize));
        reject!(
            Self::SerializeTupleStruct,
            "a tuple": serialize_tuple_struct(&'static str, usize)
        );
        reject!(
            Self::SerializeTupleVariant,
            "an enum with data": serialize_tuple_variant(&'static str, u32, &'static str, usize)
        );
        reject!(
            Self::SerializeStructVariant,
            "an enum with data": serialize_struct_variant(&'static str, u32, &'static str, usize)
        );
    };
}

/// The scalar methods, all refused, of a serializer that takes only other
/// shapes.
macro_rules! no_scalars {
    ($ok:ty, $what:literal) => {
        reject!($ok, $what:
            serialize_bool(bool), serialize_i8(i8), serialize_i16(i16),
            serialize_i32(i32), serialize_i64(i64), serialize_u8(u8),
            serialize_u16(u16), serialize_u32(u32), serialize_u64(u64),
            serialize_f32(f32), serialize_f64(f64), serialize_char(char),
            serialize_bytes(&[u8]), serialize_none(), serialize_unit(),
            serialize_unit_struct(&'static str),
            serialize_unit_variant(&'static str, u32, &'static str),
        );
        fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<$ok> {
            unsupported($what)
        }
    };
}

/// The associated types of a serializer with no compound values of its
/// own (maps and structs aside, which `$map` and `$struct` name).
macro_rules! serializer_types {
    ($ok:ty, $map:ty, $struct:ty) => {
        type Ok = $ok;
        type Error = StoreError;
        type SerializeSeq = Impossible<$ok, StoreError>;
        type SerializeTuple = Impossible<$ok, StoreError>;
        type SerializeTupleStruct = Impossible<$ok, StoreError>;
        type SerializeTupleVariant = Impossible<$ok, StoreError>;
        type SerializeMap = $map;
        type SerializeStruct = $struct;
        type SerializeStructVariant = Impossible<$ok, StoreError>;
    };
}

impl ser::Serializer for &mut RowBinder<'_, '_> {
    serializer_types!((), Self, Self);

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self> {
        Ok(self)
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self> {
        Ok(self)
    }
    no_scalars!((), "a bare value");
    reject!((), "a bare value": serialize_str(&str));
    no_compounds!(());
}

impl ser::SerializeStruct for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = StoreError;

    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<()> {
        self.bind(key, value)
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

impl ser::SerializeMap for &mut RowBinder<'_, '_> {
    type Ok = ();
    type Error = StoreError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.key.clear();
        key.serialize(KeyName(&mut self.key))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        let key = std::mem::take(&mut self.key);
        let r = self.bind(&key, value);
        self.key = key;
        r
    }
    fn end(self) -> Result<()> {
        Ok(())
    }
}

/// A map key, written into the binder's buffer (no allocation per field):
/// only strings are field names.
struct KeyName<'k>(&'k mut String);

impl ser::Serializer for KeyName<'_> {
    serializer_types!(
        (),
        Impossible<(), StoreError>,
        Impossible<(), StoreError>
    );

    fn serialize_str(self, v: &str) -> Result<()> {
        self.0.push_str(v);
        Ok(())
    }
    no_scalars!((), "a non-string key");
    reject!(Self::SerializeMap, "a non-string key": serialize_map(Option<usize>));
    reject!(
        Self::SerializeStruct,
        "a non-string key": serialize_struct(&'static str, usize)
    );
    no_compounds!(());
}

/// Binds one field's value: integers, floats, booleans (as 0/1, as sqlx
/// stores them), strings, and `None` as NULL.
struct ValueBinder<'a, 's> {
    stmt: &'a mut Statement<'s>,
    index: usize,
}

impl ValueBinder<'_, '_> {
    fn put<T: rusqlite::ToSql>(self, v: T) -> Result<()> {
        self.stmt.raw_bind_parameter(self.index, v)?;
        Ok(())
    }
}

/// Methods binding their number as the wider type SQLite stores.
macro_rules! widened {
    ($to:ty: $($m:ident($t:ty)),* $(,)?) => {
        $(fn $m(self, v: $t) -> Result<()> {
            self.put(<$to>::from(v))
        })*
    };
}

impl ser::Serializer for ValueBinder<'_, '_> {
    serializer_types!(
        (),
        Impossible<(), StoreError>,
        Impossible<(), StoreError>
    );

    widened!(i64: serialize_bool(bool), serialize_i8(i8), serialize_i16(i16),
        serialize_i32(i32), serialize_i64(i64), serialize_u8(u8), serialize_u16(u16),
        serialize_u32(u32));
    fn serialize_u64(self, v: u64) -> Result<()> {
        match i64::try_from(v) {
            Ok(v) => self.put(v),
            Err(_) => unsupported("an integer above i64"),
        }
    }
    widened!(f64: serialize_f32(f32), serialize_f64(f64));
    fn serialize_char(self, v: char) -> Result<()> {
        self.put(v.to_string())
    }
    fn serialize_str(self, v: &str) -> Result<()> {
        self.put(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<()> {
        self.put(v)
    }
    fn serialize_none(self) -> Result<()> {
        self.put(rusqlite::types::Null)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<()> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<()> {
        self.put(rusqlite::types::Null)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        self.put(rusqlite::types::Null)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<()> {
        self.put(variant)
    }
    reject!(Self::SerializeMap, "a nested map": serialize_map(Option<usize>));
    reject!(
        Self::SerializeStruct,
        "a nested struct": serialize_struct(&'static str, usize)
    );
    no_compounds!(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner<'a> {
        c: Option<&'a str>,
        d: bool,
    }

    #[derive(Serialize)]
    struct Row<'a> {
        a: i64,
        b: String,
        #[serde(flatten)]
        inner: Inner<'a>,
    }

    fn writer() -> DirectConn {
        let dir = std::env::temp_dir().join(format!("ct-direct-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        DirectConn::open(
            &DirectSettings {
                path: dir.join("t.db"),
                synchronous: SqliteSync::Normal,
                cache_kib: 1024,
            },
            Arc::default(),
        )
        .unwrap()
    }

    fn uuid_like() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    #[test]
    fn binds_struct_and_flattened_fields_by_name() {
        let mut w = writer();
        w.conn()
            .execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c TEXT, d INTEGER)")
            .unwrap();
        // The parameters are in another order than the fields.
        let sql = "INSERT INTO t (d, c, b, a) VALUES (:d, :c, :b, :a)";
        let rows = [
            Row {
                a: 1,
                b: "x".into(),
                inner: Inner {
                    c: Some("y"),
                    d: true,
                },
            },
            // A NULL after a value: nothing is left over from the last row.
            Row {
                a: 2,
                b: "z".into(),
                inner: Inner { c: None, d: false },
            },
        ];
        w.begin().unwrap();
        assert_eq!(w.execute_rows(sql, &rows).unwrap(), 2);
        w.commit().unwrap();
        let got: Vec<(i64, String, Option<String>, i64)> = w
            .conn()
            .prepare("SELECT a, b, c, d FROM t ORDER BY a")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            got,
            vec![
                (1, "x".into(), Some("y".into()), 1),
                (2, "z".into(), None, 0)
            ]
        );
    }

    #[test]
    fn a_row_missing_a_parameter_is_refused() {
        #[derive(Serialize)]
        struct Short {
            a: i64,
        }
        let mut w = writer();
        w.conn()
            .execute_batch("CREATE TABLE t (a INTEGER, b TEXT)")
            .unwrap();
        let err = w
            .execute_rows("INSERT INTO t (a, b) VALUES (:a, :b)", &[Short { a: 1 }])
            .unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        let n: i64 = w
            .conn()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn values_that_are_not_plain_columns_are_refused() {
        #[derive(Serialize)]
        struct Nested {
            a: Vec<i64>,
        }
        #[derive(Serialize)]
        struct Huge {
            a: u64,
        }
        #[derive(Serialize)]
        enum E {
            Data(i64),
        }
        #[derive(Serialize)]
        struct WithEnum {
            a: E,
        }
        let mut w = writer();
        w.conn().execute_batch("CREATE TABLE t (a)").unwrap();
        let sql = "INSERT INTO t (a) VALUES (:a)";
        for err in [
            w.execute_rows(sql, &[Nested { a: vec![1] }]).unwrap_err(),
            w.execute_rows(sql, &[Huge { a: u64::MAX }]).unwrap_err(),
            w.execute_rows(sql, &[WithEnum { a: E::Data(1) }])
                .unwrap_err(),
            // A bare value is no row.
            w.execute_rows(sql, &[1i64]).unwrap_err(),
        ] {
            assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        }
        let n: i64 = w
            .conn()
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 0);
    }

    #[test]
    fn rollback_discards_and_the_connection_stays_usable() {
        let mut w = writer();
        w.conn()
            .execute_batch("CREATE TABLE t (a INTEGER)")
            .unwrap();
        #[derive(Serialize)]
        struct A {
            a: i64,
        }
        w.begin().unwrap();
        w.execute_rows("INSERT INTO t (a) VALUES (:a)", &[A { a: 1 }])
            .unwrap();
        w.rollback().unwrap();
        w.begin().unwrap();
        w.execute_rows("INSERT INTO t (a) VALUES (:a)", &[A { a: 2 }])
            .unwrap();
        w.commit().unwrap();
        let v: Vec<i64> = w
            .conn()
            .prepare("SELECT a FROM t")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(v, vec![2]);
    }

    #[tokio::test]
    async fn a_direct_transaction_serves_the_tx_api() {
        let mut w = writer();
        w.conn()
            .execute_batch("CREATE TABLE t (a INTEGER, b TEXT, c INTEGER)")
            .unwrap();
        {
            let mut tx = w.transaction().unwrap();
            // `$n` out of order and repeated, as sqlx binds them.
            let n = tx
                .execute(
                    "INSERT INTO t (b, a, c) VALUES ($2, $1, $1 + 1)",
                    crate::args![5i64, "five"],
                )
                .await
                .unwrap();
            assert_eq!(n, 1);
            tx.execute(
                "INSERT INTO t (a, b, c) VALUES (?, ?, ?)",
                crate::args![6i64, Option::<String>::None, true],
            )
            .await
            .unwrap();
            let rows: Vec<(i64, Option<String>, i64)> = tx
                .fetch_all("SELECT a, b, c FROM t ORDER BY a", crate::args![])
                .await
                .unwrap();
            assert_eq!(rows, vec![(5, Some("five".into()), 6), (6, None, 1)]);
            let none: Option<(i64,)> = tx
                .fetch_optional("SELECT a FROM t WHERE a = $1", crate::args![7i64])
                .await
                .unwrap();
            assert_eq!(none, None);
            let missing = tx
                .fetch_one::<(i64,)>("SELECT a FROM t WHERE a = $1", crate::args![7i64])
                .await;
            assert!(missing.is_err());
            // Too few arguments is an error, not a NULL.
            let short = tx
                .execute("INSERT INTO t (a) VALUES ($2)", crate::args![1i64])
                .await;
            assert!(matches!(short, Err(StoreError::Corrupt(_))), "{short:?}");
            // Named parameters are the row binder's, not an argument list's.
            let named = tx
                .execute("INSERT INTO t (a) VALUES (:a)", crate::args![1i64])
                .await;
            assert!(matches!(named, Err(StoreError::Corrupt(_))), "{named:?}");
            tx.commit().await.unwrap();
        }
        {
            // Dropped unfinished: rolled back.
            let mut tx = w.transaction().unwrap();
            tx.execute("DELETE FROM t", crate::args![]).await.unwrap();
        }
        let mut tx = w.read_transaction().unwrap();
        let (n,): (i64,) = tx
            .fetch_one("SELECT COUNT(*) FROM t", crate::args![])
            .await
            .unwrap();
        assert_eq!(n, 2);
    }
}
