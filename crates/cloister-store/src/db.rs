//! The one place the store meets a database. Every statement is written once, in the SQL that
//! SQLite (≥ 3.44) and PostgreSQL both accept: `$N` placeholders, `ON CONFLICT … DO UPDATE`,
//! `RETURNING`, `CAST(… AS BIGINT)`, `string_agg(… ORDER BY …)`. What the two do differently
//! lives here and only here:
//!
//! - **Where a statement runs.** SQLite has one writer connection and a few read-only ones (WAL:
//!   readers never wait for the writer's disk sync); each sqlx SQLite connection runs on its own
//!   thread, so no SQLite call blocks an async worker. PostgreSQL has one pool of natively async
//!   connections, each preparing a statement once.
//! - **How a transaction begins.** SQLite: `BEGIN IMMEDIATE`, so a read-check-write holds the
//!   write lock from its first read (a deferred transaction could not upgrade while a CLI beside
//!   the server writes). PostgreSQL: `SERIALIZABLE`, retried from the start when it loses a race
//!   with another replica, so every read-check-write means what it means on SQLite's single
//!   writer.
//! - **What a dropped connection costs** (PostgreSQL: a restart, a failover, an idle timeout).
//!   A read, or a transaction that had not reached its commit, runs again on another connection;
//!   a one-statement write does not (whether it ran is unknown).

use std::borrow::Cow;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use cloister_domain::{Email, ProjectId};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{Database, Decode, Encode, Executor, IntoArguments, Postgres, Sqlite, Type};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;

use crate::error::StoreError;

/// How often a write that lost a serialization race is tried again.
const WRITE_ATTEMPTS: u32 = 30;

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

/// A time kept as RFC 3339 text (sortable: always UTC, as Google's APIs write it).
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    // A UTC time in years 0..=9999 always formats.
    t.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
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

    /// The statement with its arguments bound, for backend `DB`.
    fn prepared<DB>(&self) -> sqlx::query::Query<'_, DB, <DB as Database>::Arguments>
    where
        DB: Database,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<Vec<u8>>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        let mut q = match &self.sql {
            Cow::Borrowed(s) => sqlx::query(*s),
            // Built from the store's own constants (column lists, `$N` lists), never from input.
            Cow::Owned(s) => sqlx::query(sqlx::AssertSqlSafe(s.clone())),
        };
        for arg in &self.args {
            q = match arg.clone() {
                Arg::Int(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Bytes(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
            };
        }
        q
    }

    async fn rows_on<'c, DB, E>(&self, on: E) -> Result<Vec<DB::Row>, StoreError>
    where
        DB: Database,
        E: Executor<'c, Database = DB>,
        for<'q> <DB as Database>::Arguments: IntoArguments<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<Vec<u8>>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        self.prepared::<DB>()
            .fetch_all(on)
            .await
            .map_err(|e| self.failed(e))
    }

    async fn execute_on<'c, DB, E>(&self, on: E) -> Result<DB::QueryResult, StoreError>
    where
        DB: Database,
        E: Executor<'c, Database = DB>,
        for<'q> <DB as Database>::Arguments: IntoArguments<DB>,
        Option<i64>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<String>: for<'t> Encode<'t, DB> + Type<DB>,
        Option<Vec<u8>>: for<'t> Encode<'t, DB> + Type<DB>,
        bool: for<'t> Encode<'t, DB> + Type<DB>,
    {
        self.prepared::<DB>()
            .execute(on)
            .await
            .map_err(|e| self.failed(e))
    }
}

/// `$from, $from+1, …` for `n` arguments: an `IN (…)` list both dialects read.
pub(crate) fn placeholders(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A column type both backends decode.
pub(crate) trait Column:
    Sized
    + for<'r> Decode<'r, Sqlite>
    + Type<Sqlite>
    + for<'r> Decode<'r, Postgres>
    + Type<Postgres>
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
    pub(crate) fn array<const N: usize>(&self, i: usize, what: &str) -> Result<[u8; N], StoreError> {
        let bytes: Vec<u8> = self.get(i)?;
        bytes
            .try_into()
            .map_err(|_| StoreError::corrupt(what, format!("not {N} bytes")))
    }
}

/// `what` already exists when `e` is a unique violation; otherwise `e`.
pub(crate) fn unique(e: StoreError, what: impl FnOnce() -> String) -> StoreError {
    match &e {
        StoreError::Database {
            source: sqlx::Error::Database(d),
            ..
        } if d.is_unique_violation() => StoreError::AlreadyExists(what()),
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
/// client notices the close. (sqlx tests each connection as it goes back to the pool and
/// closes a dead one, so the retry gets another.)
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

/// The backends' connections.
pub(crate) enum Pools {
    Sqlite {
        writer: SqlitePool,
        readers: SqlitePool,
    },
    Postgres {
        pool: PgPool,
        size: u32,
    },
}

/// Runs statements on a backend, with the rules in this module's doc.
pub(crate) struct Db {
    pools: Pools,
}

impl Db {
    pub(crate) fn new(pools: Pools) -> Self {
        Self { pools }
    }

    /// How often a call runs again after dropped connections: every pooled one may have been
    /// dropped at once.
    fn again_after_drops(&self) -> u32 {
        match &self.pools {
            Pools::Sqlite { .. } => 0,
            Pools::Postgres { size, .. } => *size,
        }
    }

    /// A read's rows; run again on another connection when the server dropped this one.
    pub(crate) async fn fetch_all(&self, q: Query) -> Result<Vec<Row>, StoreError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match &self.pools {
                Pools::Sqlite { readers, .. } => q
                    .rows_on(readers)
                    .await
                    .map(|rows| rows.into_iter().map(Row::Sqlite).collect()),
                Pools::Postgres { pool, .. } => q
                    .rows_on(pool)
                    .await
                    .map(|rows| rows.into_iter().map(Row::Postgres).collect()),
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

    pub(crate) async fn fetch_one(&self, q: Query) -> Result<Row, StoreError> {
        first(self.fetch_all(q.clone()).await?, &q)
    }

    /// A write that is one statement (atomic on its own), outside any transaction; returns the
    /// rows it changed. Never repeated: when the connection drops, whether it ran is unknown.
    pub(crate) async fn execute(&self, q: Query) -> Result<u64, StoreError> {
        Ok(match &self.pools {
            Pools::Sqlite { writer, .. } => q.execute_on(writer).await?.rows_affected(),
            Pools::Postgres { pool, .. } => q.execute_on(pool).await?.rows_affected(),
        })
    }

    /// Runs `body` in a transaction ([`Tx`]) and commits what it did, again from the start
    /// when it loses a race with another writer or its connection drops before the commit.
    /// `body` must therefore only touch the database through the `Tx` it is given.
    pub(crate) async fn transaction<T, F, Fut>(&self, mut body: F) -> Result<T, StoreError>
    where
        F: FnMut(Tx) -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (result, committing) = match self.begin().await {
                Ok(tx) => match body(tx.clone()).await {
                    Ok(value) => (tx.commit().await.map(|()| value), true),
                    Err(e) => (Err(e), false),
                },
                Err(e) => (Err(e), false),
            };
            match result {
                Err(e) if lost_race(&e) && attempt < WRITE_ATTEMPTS => {
                    // Back off a little, more each time, so racing writers spread out.
                    let micros = 200 * u64::from(attempt) + u64::from(rand::random::<u8>());
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
        let inner = match &self.pools {
            Pools::Sqlite { writer, .. } => TxInner::Sqlite(
                writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(|e| query("BEGIN IMMEDIATE").failed(e))?,
            ),
            Pools::Postgres { pool, .. } => {
                const BEGIN: &str = "BEGIN ISOLATION LEVEL SERIALIZABLE";
                TxInner::Postgres(
                    pool.begin_with(BEGIN)
                        .await
                        .map_err(|e| query(BEGIN).failed(e))?,
                )
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

enum TxInner {
    Sqlite(sqlx::Transaction<'static, Sqlite>),
    Postgres(sqlx::Transaction<'static, Postgres>),
}

/// A transaction in progress. A handle: [`Db::transaction`] keeps one to commit when the body
/// is done, and rolls back when it fails.
#[derive(Clone)]
pub(crate) struct Tx(Arc<Mutex<Option<TxInner>>>);

impl Tx {
    pub(crate) async fn fetch_all(&self, q: Query) -> Result<Vec<Row>, StoreError> {
        let mut guard = self.0.lock().await;
        match guard.as_mut().ok_or_else(finished)? {
            TxInner::Sqlite(tx) => Ok(q
                .rows_on(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Sqlite)
                .collect()),
            TxInner::Postgres(tx) => Ok(q
                .rows_on(&mut **tx)
                .await?
                .into_iter()
                .map(Row::Postgres)
                .collect()),
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
        Ok(match guard.as_mut().ok_or_else(finished)? {
            TxInner::Sqlite(tx) => q.execute_on(&mut **tx).await?.rows_affected(),
            TxInner::Postgres(tx) => q.execute_on(&mut **tx).await?.rows_affected(),
        })
    }

    async fn commit(&self) -> Result<(), StoreError> {
        let inner = self.0.lock().await.take().ok_or_else(finished)?;
        match inner {
            TxInner::Sqlite(tx) => tx.commit().await,
            TxInner::Postgres(tx) => tx.commit().await,
        }
        .map_err(|e| query("COMMIT").failed(e))
    }
}

/// A statement on a transaction that was already committed: a body kept its handle.
fn finished() -> StoreError {
    StoreError::Unusable("a statement ran after its transaction ended".into())
}
