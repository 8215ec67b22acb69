//! The one place the store meets a database. Every statement is written once, in the SQL that
//! SQLite (≥ 3.44) and PostgreSQL both accept: `$N` placeholders, `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, `CAST(… AS BIGINT)`, `string_agg(… ORDER BY …)`. What the two do differently
//! lives here and only here:
//!
//! - **Where a statement runs.** SQLite has one writer connection and a few read-only ones (WAL:
//!   readers never wait for the writer's disk sync); each sqlx SQLite connection runs on its own
//!   thread, so no SQLite call blocks an async worker. PostgreSQL has N natively async
//!   connections, each preparing a statement once. Both are kept in [`Slots`], not sqlx's pool.
//! - **How a transaction begins.** SQLite: `BEGIN IMMEDIATE`, so a read-check-write holds the
//!   write lock from its first read (a deferred transaction could not upgrade while a CLI beside
//!   the server writes). PostgreSQL: `SERIALIZABLE`, retried from the start when it loses a race
//!   with another replica, so every read-check-write means what it means on SQLite's single
//!   writer.
//! - **How a claim skips rows others are claiming.** PostgreSQL: `FOR UPDATE SKIP LOCKED`
//!   ([`Tx::skip_locked`]); SQLite: nothing, its single writer claims one at a time.
//! - **What a dropped connection costs** (PostgreSQL: a restart, a failover, an idle timeout).
//!   A read, or a transaction that had not reached its commit, runs again on another connection;
//!   a one-statement write does not (whether it ran is unknown).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cloister_domain::{Email, ProjectId};
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::{Database, Decode, Executor, PgConnection, Postgres, Sqlite, SqliteConnection, Type};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::StoreError;

/// How often a write that lost a serialization race is tried again.
const WRITE_ATTEMPTS: usize = 30;

/// A statement's argument. Owned, so a statement can run again after a dropped connection.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Int(Option<i64>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
    Bool(bool),
}

macro_rules! arg_from {
    ($($t:ty => |$v:ident| $e:expr),* $(,)?) => {
        $(impl From<$t> for Arg { fn from($v: $t) -> Self { $e } })*
    };
}

arg_from! {
    i64 => |v| Arg::Int(Some(v)),
    u32 => |v| Arg::Int(Some(i64::from(v))),
    Option<i64> => |v| Arg::Int(v),
    &str => |v| Arg::Text(Some(v.to_owned())),
    &String => |v| Arg::Text(Some(v.clone())),
    String => |v| Arg::Text(Some(v)),
    Option<String> => |v| Arg::Text(v),
    Option<&str> => |v| Arg::Text(v.map(str::to_owned)),
    Option<&String> => |v| Arg::Text(v.cloned()),
    &[u8] => |v| Arg::Bytes(Some(v.to_vec())),
    &Vec<u8> => |v| Arg::Bytes(Some(v.clone())),
    Vec<u8> => |v| Arg::Bytes(Some(v)),
    bool => |v| Arg::Bool(v),
}

/// A count or size the database keeps as a signed 64-bit integer.
pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| {
        StoreError::Unusable(format!("{v} is more than the metadata database can hold"))
    })
}

/// A time kept as RFC 3339 text: UTC with all nine fractional digits, so that text order is
/// time order (`ORDER BY create_time`, `>=` comparisons) and nothing is lost.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    const FIXED: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    // A UTC time in years 0..=9999 always formats.
    t.to_offset(time::UtcOffset::UTC)
        .format(FIXED)
        .unwrap_or_default()
}

/// A statement and its arguments.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    sql: Cow<'static, str>,
    args: Vec<Arg>,
}

/// A statement, to `bind` arguments to in `$N` order.
pub(crate) fn query(sql: impl Into<Cow<'static, str>>) -> Query {
    Query {
        sql: sql.into(),
        args: Vec::new(),
    }
}

impl Query {
    pub(crate) fn bind(mut self, arg: impl Into<Arg>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// The statement for messages: its first words are enough to find it.
    fn shown(&self) -> String {
        let flat: String = self.sql.split_whitespace().collect::<Vec<_>>().join(" ");
        match flat.char_indices().nth(100) {
            Some((i, _)) => format!("{}…", &flat[..i]),
            None => flat,
        }
    }

    fn failed(&self, source: sqlx::Error) -> StoreError {
        StoreError::Database {
            statement: self.shown(),
            source,
        }
    }

    async fn rows_on<'c, DB, E>(&self, on: E) -> Result<Vec<DB::Row>, StoreError>
    where
        DB: Backend,
        E: Executor<'c, Database = DB>,
    {
        DB::prepared(self)
            .fetch_all(on)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn execute_on<'c, DB, E>(&self, on: E) -> Result<DB::QueryResult, StoreError>
    where
        DB: Backend,
        E: Executor<'c, Database = DB>,
    {
        DB::prepared(self)
            .execute(on)
            .await
            .map_err(|e| self.failed(e))
    }
}

/// A database sqlx drives that can take a [`Query`].
trait Backend: Database<Arguments: sqlx::IntoArguments<Self>> {
    /// The statement with its arguments bound.
    fn prepared(q: &Query) -> sqlx::query::Query<'_, Self, <Self as Database>::Arguments>;
}

/// `Backend::prepared`, the same for each backend but for the types, which sqlx's generic
/// bounds could only name at every caller.
macro_rules! backend {
    ($db:ty) => {
        impl Backend for $db {
            fn prepared(q: &Query) -> sqlx::query::Query<'_, Self, <Self as Database>::Arguments> {
                let mut prepared = match &q.sql {
                    Cow::Borrowed(s) => sqlx::query(*s),
                    // Built from the store's own constants (column lists, `$N` lists), never
                    // from input.
                    Cow::Owned(s) => sqlx::query(sqlx::AssertSqlSafe(s.clone())),
                };
                for arg in &q.args {
                    prepared = match arg.clone() {
                        Arg::Int(v) => prepared.bind(v),
                        Arg::Text(v) => prepared.bind(v),
                        Arg::Bytes(v) => prepared.bind(v),
                        Arg::Bool(v) => prepared.bind(v),
                    };
                }
                prepared
            }
        }
    };
}

backend!(Sqlite);
backend!(Postgres);

/// `$from, $from+1, …` for `n` arguments: an `IN (…)` list both dialects read.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column type both backends decode.
pub(crate) trait Column:
    Sized + for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

impl<T> Column for T where
    T: for<'r> Decode<'r, Sqlite> + Type<Sqlite> + for<'r> Decode<'r, Postgres> + Type<Postgres>
{
}

/// A result row, read by column index. A column of an unexpected type is an error, not a panic.
pub(crate) enum Row {
    Sqlite(SqliteRow),
    Postgres(PgRow),
}

impl Row {
    pub(crate) fn get<T: Column>(&self, i: usize) -> Result<T, StoreError> {
        use sqlx::Row as _;
        match self {
            Row::Sqlite(r) => r.try_get(i),
            Row::Postgres(r) => r.try_get(i),
        }
        .map_err(|source| StoreError::Database {
            statement: format!("reading column {i}"),
            source,
        })
    }

    pub(crate) fn text(&self, i: usize) -> Result<String, StoreError> {
        self.get(i)
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64, StoreError> {
        self.get(i)
    }

    pub(crate) fn u64(&self, i: usize) -> Result<u64, StoreError> {
        let v = self.int(i)?;
        u64::try_from(v).map_err(|_| StoreError::corrupt("count", format!("{v} is negative")))
    }

    pub(crate) fn u32(&self, i: usize) -> Result<u32, StoreError> {
        let v = self.int(i)?;
        u32::try_from(v).map_err(|_| StoreError::corrupt("number", format!("{v} is out of range")))
    }

    pub(crate) fn json<T: serde::de::DeserializeOwned>(
        &self,
        i: usize,
        what: &str,
    ) -> Result<T, StoreError> {
        serde_json::from_str(&self.text(i)?).map_err(|e| StoreError::corrupt(what, e))
    }

    pub(crate) fn project_id(&self, i: usize) -> Result<ProjectId, StoreError> {
        ProjectId::parse(&self.text(i)?).map_err(|e| StoreError::corrupt("project id", e))
    }

    pub(crate) fn email(&self, i: usize) -> Result<Email, StoreError> {
        Email::parse(&self.text(i)?).map_err(|e| StoreError::corrupt("email", e))
    }

    /// A time kept as RFC 3339 text.
    pub(crate) fn time(&self, i: usize) -> Result<OffsetDateTime, StoreError> {
        let text = self.text(i)?;
        OffsetDateTime::parse(&text, &Rfc3339).map_err(|e| StoreError::corrupt("time", e))
    }

    /// A time kept as Unix seconds.
    pub(crate) fn unix_time(&self, i: usize) -> Result<OffsetDateTime, StoreError> {
        OffsetDateTime::from_unix_timestamp(self.int(i)?)
            .map_err(|e| StoreError::corrupt("time", e))
    }

    /// A fixed-length byte string (a hash).
    pub(crate) fn array<const N: usize>(
        &self,
        i: usize,
        what: &str,
    ) -> Result<[u8; N], StoreError> {
        let bytes: Vec<u8> = self.get(i)?;
        bytes
            .try_into()
            .map_err(|_| StoreError::corrupt(what, format!("not {N} bytes")))
    }
}

/// A write's constraint violations in the caller's words: `what` already exists (a unique
/// violation), or what it belongs to is gone (a foreign-key violation: its project or parent
/// was deleted after the caller looked, e.g. a project deleted while a bucket was created in
/// it); otherwise `e`.
pub(crate) fn constraint(e: StoreError, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        StoreError::Database {
            source: sqlx::Error::Database(d),
            ..
        } if d.is_unique_violation() => StoreError::AlreadyExists(what()),
        StoreError::Database {
            source: sqlx::Error::Database(d),
            ..
        } if d.is_foreign_key_violation() => {
            StoreError::NotFound(format!("the project or parent resource of {}", what()))
        }
        _ => e,
    }
}

/// The database's SQLSTATE (PostgreSQL) or extended result code (SQLite).
fn code(e: &StoreError) -> Option<Cow<'_, str>> {
    match e {
        StoreError::Database {
            source: sqlx::Error::Database(d),
            ..
        } => d.code(),
        _ => None,
    }
}

/// Whether `e` lost a serialization race (or a deadlock) and may simply run again.
fn lost_race(e: &StoreError) -> bool {
    code(e).is_some_and(|c| c == "40001" || c == "40P01")
}

/// Whether `e` came from a connection the server dropped: the socket closed, or the server's
/// last words were a shutdown or connection error (class 57P, 08), which may arrive before the
/// client notices the close. Such a connection is dropped from its slot; the slot opens a new
/// one when next used.
fn connection_lost(e: &StoreError) -> bool {
    match e {
        StoreError::Database { source, .. } => match source {
            sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => true,
            sqlx::Error::Database(d) => d
                .code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        },
        _ => false,
    }
}

/// One connection the store keeps (opened when first needed, and again after the server
/// dropped it), and whether a transaction is open on it: a caller cancelled mid-transaction
/// (its request dropped) leaves one open, which the next caller rolls back.
///
/// Kept by hand rather than in sqlx's pool: the pool tests every connection it takes back with
/// a round trip (to SQLite's connection thread, or to PostgreSQL), which doubled the cost of a
/// statement and held each PostgreSQL connection through the round trip (measured with
/// `scripts/bench-against.py`, see the store's issue).
struct Slot<C> {
    conn: Option<C>,
    in_transaction: bool,
}

impl<C> Slot<C>
where
    C: sqlx::Connection,
    C::Database: Backend,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
{
    /// The connection, opened if need be, with nothing left open on it.
    async fn ready(&mut self, options: &C::Options) -> Result<&mut C, StoreError> {
        if self.conn.is_none() {
            let conn = C::connect_with(options)
                .await
                .map_err(|e| query("connecting").failed(e))?;
            self.conn = Some(conn);
        }
        if self.in_transaction {
            self.run("ROLLBACK").await?;
        }
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Unusable("a connection slot lost its connection".into()))
    }

    /// Runs `sql` on the open connection; forgets the connection when the server dropped it.
    async fn run(&mut self, sql: &'static str) -> Result<(), StoreError> {
        let result = match self.conn.as_mut() {
            Some(conn) => query(sql).execute_on(conn).await.map(drop),
            None => Ok(()),
        };
        self.after(&result);
        if result.is_ok() {
            self.in_transaction = sql.starts_with("BEGIN");
        }
        result
    }

    /// Forgets the connection if `result` says the server dropped it (and with it any
    /// transaction open on it).
    fn after<T>(&mut self, result: &Result<T, StoreError>) {
        if result.as_ref().is_err_and(connection_lost) {
            self.conn = None;
            self.in_transaction = false;
        }
    }
}

/// Connections of one kind (SQLite's writer, SQLite's readers, PostgreSQL's), each behind its
/// own lock, handed out free ones first.
pub(crate) struct Slots<C: sqlx::Connection> {
    slots: Vec<Arc<Mutex<Slot<C>>>>,
    next: AtomicUsize,
    options: C::Options,
}

impl<C: sqlx::Connection> Slots<C> {
    /// `n` slots, the first holding `first` (already open, e.g. for the migrations).
    pub(crate) fn new(n: usize, options: C::Options, first: Option<C>) -> Self {
        let mut first = first;
        let slots = (0..n.max(1))
            .map(|_| {
                Arc::new(Mutex::new(Slot {
                    conn: first.take(),
                    in_transaction: false,
                }))
            })
            .collect();
        Self {
            slots,
            next: AtomicUsize::new(0),
            options,
        }
    }

    /// A free slot, or the next one in turn once it is free.
    async fn take(&self) -> OwnedMutexGuard<Slot<C>> {
        let n = self.slots.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            if let Ok(slot) = Arc::clone(&self.slots[(start + i) % n]).try_lock_owned() {
                return slot;
            }
        }
        Arc::clone(&self.slots[start % n]).lock_owned().await
    }
}

/// The backends' connections.
pub(crate) enum Connections {
    Sqlite {
        writer: Slots<SqliteConnection>,
        readers: Slots<SqliteConnection>,
    },
    Postgres(Slots<PgConnection>),
}

/// Runs statements on a backend, with the rules in this module's doc.
pub(crate) struct Db {
    connections: Connections,
}

/// Runs `$body` with `$conn` bound to a ready connection of `$slots`.
/// A macro because the two backends' connection types differ and nothing else does.
macro_rules! on_slot {
    ($slots:expr, |$conn:ident| $body:expr) => {{
        let mut slot = $slots.take().await;
        let result = match slot.ready(&$slots.options).await {
            Ok($conn) => $body.await,
            Err(e) => Err(e),
        };
        slot.after(&result);
        result
    }};
}

impl Db {
    pub(crate) fn new(connections: Connections) -> Self {
        Self { connections }
    }

    /// How often a call runs again after dropped connections: every connection may have been
    /// dropped at once.
    fn again_after_drops(&self) -> usize {
        match &self.connections {
            Connections::Sqlite { .. } => 0,
            Connections::Postgres(slots) => slots.slots.len(),
        }
    }

    /// A read's rows; run again on another connection when the server dropped this one.
    pub(crate) async fn fetch_all(&self, q: Query) -> Result<Vec<Row>, StoreError> {
        let mut attempt: usize = 0;
        loop {
            attempt += 1;
            let result = match &self.connections {
                Connections::Sqlite { readers, .. } => on_slot!(readers, |conn| async {
                    Ok(q.rows_on(conn)
                        .await?
                        .into_iter()
                        .map(Row::Sqlite)
                        .collect())
                }),
                Connections::Postgres(slots) => on_slot!(slots, |conn| async {
                    Ok(q.rows_on(conn)
                        .await?
                        .into_iter()
                        .map(Row::Postgres)
                        .collect())
                }),
            };
            match result {
                Err(e) if connection_lost(&e) && attempt <= self.again_after_drops() => {}
                other => return other,
            }
        }
    }

    pub(crate) async fn fetch_optional(&self, q: Query) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(q).await?.into_iter().next())
    }

    /// The record a read finds, if any, made by `record` from its row.
    pub(crate) async fn one<T>(
        &self,
        q: Query,
        record: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        self.fetch_optional(q)
            .await?
            .as_ref()
            .map(record)
            .transpose()
    }

    /// The records a read finds, made by `record` from each row.
    pub(crate) async fn all<T>(
        &self,
        q: Query,
        record: impl Fn(&Row) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        self.fetch_all(q).await?.iter().map(record).collect()
    }

    pub(crate) async fn fetch_one(&self, q: Query) -> Result<Row, StoreError> {
        first(self.fetch_all(q.clone()).await?, &q)
    }

    /// A write that is one statement (atomic on its own), outside any transaction; returns the
    /// rows it changed. Never repeated: when the connection drops, whether it ran is unknown.
    pub(crate) async fn execute(&self, q: Query) -> Result<u64, StoreError> {
        match &self.connections {
            Connections::Sqlite { writer, .. } => on_slot!(writer, |conn| async {
                Ok(q.execute_on(conn).await?.rows_affected())
            }),
            Connections::Postgres(slots) => on_slot!(slots, |conn| async {
                Ok(q.execute_on(conn).await?.rows_affected())
            }),
        }
    }

    /// Runs `body` in a transaction ([`Tx`]) and commits what it did, again from the start
    /// when it loses a race with another writer or its connection drops before the commit.
    /// `body` must therefore only touch the database through the `Tx` it is given.
    pub(crate) async fn transaction<T, F, Fut>(&self, mut body: F) -> Result<T, StoreError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt: usize = 0;
        loop {
            attempt += 1;
            let (result, committing) = match self.begin().await {
                Ok(tx) => match body(tx.clone()).await {
                    Ok(value) => (tx.end("COMMIT").await.map(|()| value), true),
                    Err(e) => {
                        // Best effort: a rollback that fails leaves the transaction open on
                        // its connection, and the next caller of that connection rolls back.
                        let _ = tx.end("ROLLBACK").await;
                        (Err(e), false)
                    }
                },
                Err(e) => (Err(e), false),
            };
            match result {
                Err(e) if lost_race(&e) && attempt < WRITE_ATTEMPTS => {
                    // Back off a little, more each time, so racing writers spread out.
                    let micros = 200 * attempt as u64 + u64::from(rand::random::<u8>());
                    tokio::time::sleep(Duration::from_micros(micros)).await;
                }
                // The server rolled the work back: nothing of it happened.
                Err(e)
                    if !committing
                        && connection_lost(&e)
                        && attempt <= self.again_after_drops() => {}
                other => return other,
            }
        }
    }

    async fn begin(&self) -> Result<Tx, StoreError> {
        let inner = match &self.connections {
            Connections::Sqlite { writer, .. } => {
                let mut slot = writer.take().await;
                slot.ready(&writer.options).await?;
                slot.run("BEGIN IMMEDIATE").await?;
                TxInner::Sqlite(slot)
            }
            Connections::Postgres(slots) => {
                let mut slot = slots.take().await;
                let ready = slot.ready(&slots.options).await.map(drop);
                slot.after(&ready);
                ready?;
                slot.run("BEGIN ISOLATION LEVEL SERIALIZABLE").await?;
                TxInner::Postgres(slot)
            }
        };
        Ok(Tx(Arc::new(Mutex::new(Some(inner)))))
    }
}

fn first(rows: Vec<Row>, q: &Query) -> Result<Row, StoreError> {
    rows.into_iter()
        .next()
        .ok_or_else(|| q.failed(sqlx::Error::RowNotFound))
}

/// A connection held for a transaction, which is open on it.
enum TxInner {
    Sqlite(OwnedMutexGuard<Slot<SqliteConnection>>),
    Postgres(OwnedMutexGuard<Slot<PgConnection>>),
}

/// A transaction in progress. A handle: [`Db::transaction`] keeps one to commit when the body
/// is done, and rolls back when it fails.
#[derive(Clone)]
pub(crate) struct Tx(Arc<Mutex<Option<TxInner>>>);

/// Runs `$body` with `$conn` bound to the transaction's connection.
macro_rules! in_tx {
    ($slot:expr, |$conn:ident| $body:expr) => {{
        let result = match $slot.conn.as_mut() {
            Some($conn) => $body.await,
            None => Err(finished()),
        };
        $slot.after(&result);
        result
    }};
}

impl Tx {
    pub(crate) async fn fetch_all(&self, q: Query) -> Result<Vec<Row>, StoreError> {
        let mut guard = self.0.lock().await;
        match guard.as_mut().ok_or_else(finished)? {
            TxInner::Sqlite(slot) => in_tx!(slot, |conn| async {
                Ok(q.rows_on(conn)
                    .await?
                    .into_iter()
                    .map(Row::Sqlite)
                    .collect())
            }),
            TxInner::Postgres(slot) => in_tx!(slot, |conn| async {
                Ok(q.rows_on(conn)
                    .await?
                    .into_iter()
                    .map(Row::Postgres)
                    .collect())
            }),
        }
    }

    pub(crate) async fn fetch_optional(&self, q: Query) -> Result<Option<Row>, StoreError> {
        Ok(self.fetch_all(q).await?.into_iter().next())
    }

    pub(crate) async fn fetch_one(&self, q: Query) -> Result<Row, StoreError> {
        first(self.fetch_all(q.clone()).await?, &q)
    }

    /// Runs a statement; returns the rows it changed.
    pub(crate) async fn execute(&self, q: Query) -> Result<u64, StoreError> {
        let mut guard = self.0.lock().await;
        match guard.as_mut().ok_or_else(finished)? {
            TxInner::Sqlite(slot) => in_tx!(slot, |conn| async {
                Ok(q.execute_on(conn).await?.rows_affected())
            }),
            TxInner::Postgres(slot) => in_tx!(slot, |conn| async {
                Ok(q.execute_on(conn).await?.rows_affected())
            }),
        }
    }

    /// The clause that ends a `SELECT` picking a row to claim: on PostgreSQL `FOR UPDATE SKIP
    /// LOCKED`, so replicas claiming at once each lock a different row instead of queueing on
    /// (and then losing) the same one; on SQLite nothing (it has no such clause), since its
    /// transactions hold the one write lock from their start.
    pub(crate) async fn skip_locked(&self) -> Result<&'static str, StoreError> {
        match self.0.lock().await.as_ref().ok_or_else(finished)? {
            TxInner::Sqlite(_) => Ok(""),
            TxInner::Postgres(_) => Ok(" FOR UPDATE SKIP LOCKED"),
        }
    }

    /// Ends the transaction with `COMMIT` or `ROLLBACK`. One that fails leaves the transaction
    /// open (or its connection dropped): the connection's next caller rolls back.
    async fn end(&self, how: &'static str) -> Result<(), StoreError> {
        match self.0.lock().await.take().ok_or_else(finished)? {
            TxInner::Sqlite(mut slot) => slot.run(how).await,
            TxInner::Postgres(mut slot) => slot.run(how).await,
        }
    }
}

/// A statement on a transaction that was already committed: a body kept its handle.
fn finished() -> StoreError {
    StoreError::Unusable("a statement ran after its transaction ended".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    /// A request dropped in the middle of a transaction (its client went away) leaves nothing
    /// behind: its writes are rolled back and the next writer is not refused.
    #[tokio::test]
    async fn a_transaction_cancelled_midway_is_rolled_back_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("meta.db"))
            .await
            .unwrap();
        let insert = |name: &'static str| {
            query("INSERT INTO secrets (name, value) VALUES ($1, $2)")
                .bind(name)
                .bind(vec![1u8])
        };
        let cancelled = store.db.transaction(|tx| async move {
            tx.execute(insert("half-done")).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
        let timed_out = tokio::time::timeout(Duration::from_millis(200), cancelled).await;
        assert!(timed_out.is_err(), "the body never ends");

        store
            .db
            .transaction(|tx| async move { tx.execute(insert("next")).await })
            .await
            .unwrap();
        assert_eq!(store.secret("half-done").await.unwrap(), None);
        assert_eq!(store.secret("next").await.unwrap(), Some(vec![1]));
    }
}
