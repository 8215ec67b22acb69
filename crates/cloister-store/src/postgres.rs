//! The metadata store on PostgreSQL, for replicas that share one database.
//!
//! The store traits are synchronous (SQLite's shape), and the `postgres` client drives its
//! own small runtime, which must not run on a thread of the server's async runtime. So every
//! call runs on this store's worker threads (a rayon pool, whose `install` blocks the caller
//! until the work is done and lets the work borrow the caller's arguments), each taking a
//! pooled connection, which prepares each statement once. Writes run in SERIALIZABLE
//! transactions and are retried on a serialization failure, so every read-check-write keeps
//! the meaning it has on SQLite's single writer while replicas write at once. Reads and
//! transactions whose connection the server dropped run again on another connection.

use std::collections::HashMap;
use std::time::Duration;

use cloister_domain::{AuditEntry, Decision, Email, ProjectId};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, Row, Statement, Transaction};

use crate::metadata::StoreError;

mod compute;
mod keys;
mod metadata;
mod registry;
mod tls;

/// Schema migrations, applied in order under an advisory lock (replicas starting together
/// migrate once); `cloister_schema.version` records how many ran. Text that is compared or
/// ordered is `COLLATE "C"`: byte order, as SQLite and Cloud Storage's listings use.
const MIGRATIONS: &[&str] = &[
    // 1: the schema of SQLite's migrations 1–10, in PostgreSQL's types.
    r#"CREATE TABLE users (
        email TEXT COLLATE "C" PRIMARY KEY,
        display_name TEXT NOT NULL,
        admin BOOLEAN NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        user_email TEXT NOT NULL REFERENCES users(email),
        secret_sha256 BYTEA NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE TABLE projects (
        id TEXT COLLATE "C" PRIMARY KEY,
        number BIGINT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        create_time TEXT NOT NULL,
        creator TEXT NOT NULL
     );
     CREATE TABLE iam_policies (
        resource TEXT PRIMARY KEY,
        parent TEXT,
        policy TEXT NOT NULL,
        etag TEXT NOT NULL
     );
     CREATE TABLE audit_log (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time TEXT COLLATE "C" NOT NULL,
        principal TEXT NOT NULL,
        permission TEXT NOT NULL,
        resource TEXT COLLATE "C" NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
        reason TEXT NOT NULL,
        project TEXT
     );
     CREATE INDEX audit_log_resource ON audit_log(resource);
     CREATE INDEX audit_log_principal ON audit_log(principal);
     CREATE INDEX audit_log_project ON audit_log(project);
     CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$;
     CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
     CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
        FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
     CREATE TABLE service_accounts (
        email TEXT COLLATE "C" PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        unique_id TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        description TEXT NOT NULL,
        disabled BOOLEAN NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE INDEX service_accounts_project ON service_accounts(project_id);
     CREATE TABLE federation (
        name TEXT COLLATE "C" PRIMARY KEY,
        parent TEXT NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(id),
        resource TEXT NOT NULL,
        etag TEXT NOT NULL
     );
     CREATE INDEX federation_parent ON federation(parent);
     CREATE TABLE challenges (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        nonce BYTEA NOT NULL,
        create_time BIGINT NOT NULL,
        expire_time BIGINT NOT NULL,
        used BOOLEAN NOT NULL
     );
     CREATE TABLE reference_values (
        measurement TEXT COLLATE "C" PRIMARY KEY,
        swversion TEXT NOT NULL,
        dbgstat TEXT NOT NULL,
        support_attributes TEXT NOT NULL,
        description TEXT NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE TABLE buckets (
        name TEXT COLLATE "C" PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        location TEXT NOT NULL,
        storage_class TEXT NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE INDEX buckets_project ON buckets(project_id);
     CREATE TABLE objects (
        bucket TEXT COLLATE "C" NOT NULL REFERENCES buckets(name),
        name TEXT COLLATE "C" NOT NULL,
        generation BIGINT NOT NULL,
        metageneration BIGINT NOT NULL,
        size BIGINT NOT NULL,
        md5 BYTEA NOT NULL,
        crc32c BIGINT NOT NULL,
        content_type TEXT NOT NULL,
        create_time TEXT NOT NULL,
        update_time TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        PRIMARY KEY (bucket, name)
     );
     CREATE TABLE upload_sessions (
        upload_id TEXT PRIMARY KEY,
        bucket TEXT NOT NULL REFERENCES buckets(name),
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        if_generation_match BIGINT,
        if_generation_not_match BIGINT,
        received BIGINT NOT NULL,
        create_time BIGINT NOT NULL
     );
     CREATE TABLE kms_key_rings (
        name TEXT COLLATE "C" PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        create_time TEXT NOT NULL
     );
     CREATE TABLE kms_crypto_keys (
        name TEXT COLLATE "C" PRIMARY KEY,
        key_ring TEXT NOT NULL REFERENCES kms_key_rings(name),
        purpose TEXT NOT NULL,
        primary_version BIGINT NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE TABLE kms_key_versions (
        key TEXT NOT NULL REFERENCES kms_crypto_keys(name),
        version BIGINT NOT NULL,
        state TEXT NOT NULL,
        wrapped_material BYTEA NOT NULL,
        create_time TEXT NOT NULL,
        PRIMARY KEY (key, version)
     );
     CREATE TABLE registry_repositories (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        location TEXT NOT NULL,
        repository_id TEXT COLLATE "C" NOT NULL,
        format TEXT NOT NULL,
        description TEXT NOT NULL,
        create_time TEXT NOT NULL,
        UNIQUE (project_id, repository_id)
     );
     CREATE TABLE registry_blobs (
        digest TEXT PRIMARY KEY,
        size BIGINT NOT NULL,
        blob_key TEXT NOT NULL
     );
     CREATE TABLE registry_blob_links (
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES registry_blobs(digest),
        PRIMARY KEY (repository, image, digest)
     );
     CREATE INDEX registry_blob_links_digest ON registry_blob_links(digest);
     CREATE TABLE registry_manifests (
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT COLLATE "C" NOT NULL,
        digest TEXT COLLATE "C" NOT NULL,
        media_type TEXT NOT NULL,
        content BYTEA NOT NULL,
        subject TEXT,
        artifact_type TEXT,
        create_time TEXT COLLATE "C" NOT NULL,
        PRIMARY KEY (repository, image, digest)
     );
     CREATE INDEX registry_manifests_subject ON registry_manifests(repository, image, subject);
     CREATE TABLE registry_tags (
        repository TEXT NOT NULL,
        image TEXT NOT NULL,
        tag TEXT COLLATE "C" NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (repository, image, tag),
        FOREIGN KEY (repository, image, digest) REFERENCES registry_manifests(repository, image, digest)
     );
     CREATE TABLE registry_uploads (
        upload_id TEXT PRIMARY KEY,
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT NOT NULL,
        received BIGINT NOT NULL,
        chunks BIGINT NOT NULL,
        single_chunk_sha256 TEXT,
        create_time BIGINT NOT NULL
     );
     CREATE TABLE instances (
        resource_name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        zone TEXT NOT NULL,
        name TEXT COLLATE "C" NOT NULL,
        id BIGINT NOT NULL UNIQUE,
        service_account TEXT NOT NULL,
        metadata TEXT NOT NULL,
        confidential_type TEXT NOT NULL,
        status TEXT NOT NULL,
        create_time TEXT NOT NULL
     );
     CREATE TABLE signing_keys (
        issuer TEXT NOT NULL,
        created BIGINT NOT NULL,
        wrapped BYTEA NOT NULL,
        PRIMARY KEY (issuer, created)
     );
     CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BYTEA NOT NULL
     );"#,
    // 2: SQLite's migration 11, replicas' leases on the instances they run.
    r#"CREATE TABLE replica_leases (
        replica TEXT PRIMARY KEY,
        expires_at BIGINT NOT NULL,
        instance_ids BIGINT[] NOT NULL
     );"#,
    // 3: SQLite's migration 12, for the orphaned-blob sweep.
    "CREATE INDEX objects_by_blob ON objects (blob_key);",
    // 4: SQLite's migration 13, resumable uploads' creators and sessions by bucket.
    "ALTER TABLE upload_sessions ADD COLUMN creator TEXT;
     CREATE INDEX upload_sessions_by_bucket ON upload_sessions (bucket);",
];

/// Any number; it only has to be the same for every replica (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x636c_6f69_7374_6572; // "cloister"

/// Connections (and worker threads) per replica unless the operator says otherwise: enough for
/// two cores' worth of requests, few enough that dozens of replicas fit PostgreSQL's default
/// `max_connections` (100).
pub const DEFAULT_CONNECTIONS: u32 = 8;
/// How often a write that lost a serialization race is tried again.
const WRITE_ATTEMPTS: u32 = 30;

type Pool = r2d2::Pool<Manager>;

/// A pooled connection and the statements prepared on it, so each query is parsed and planned
/// once per connection instead of on every call (a round trip and most of the server's work).
pub(crate) struct Connection {
    client: Client,
    statements: HashMap<String, Statement>,
    /// Set when a call met the server dropping this connection, so the pool discards it
    /// rather than handing it out again before the client itself has noticed the close.
    lost: bool,
}

/// Opens [`Connection`]s for the pool. By hand because `r2d2_postgres` pools bare clients,
/// which have nowhere to keep their prepared statements.
struct Manager(postgres::Config, tls::Connector);

impl r2d2::ManageConnection for Manager {
    type Connection = Connection;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Connection, postgres::Error> {
        Ok(Connection {
            client: self.1.connect(&self.0)?,
            statements: HashMap::new(),
            lost: false,
        })
    }

    fn is_valid(&self, conn: &mut Connection) -> Result<(), postgres::Error> {
        conn.client.simple_query("").map(drop)
    }

    fn has_broken(&self, conn: &mut Connection) -> bool {
        conn.lost || conn.client.is_closed()
    }
}

/// A client or a transaction that prepares each statement once per connection.
pub(crate) struct Cached<'a, C> {
    inner: &'a mut C,
    statements: &'a mut HashMap<String, Statement>,
}

/// What a read runs on: a connection outside any transaction.
pub(crate) type Conn<'a> = Cached<'a, Client>;
/// What a write runs in: a serializable transaction.
pub(crate) type Tx<'a, 'b> = Cached<'a, Transaction<'b>>;

type Params<'p> = [&'p (dyn ToSql + Sync)];

impl<C: GenericClient> Cached<'_, C> {
    fn prepared(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.inner.prepare(sql)?;
        self.statements.insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    pub fn execute(&mut self, sql: &str, params: &Params) -> Result<u64, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.inner.execute(&statement, params)
    }

    pub fn query(&mut self, sql: &str, params: &Params) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.inner.query(&statement, params)
    }

    pub fn query_opt(
        &mut self,
        sql: &str,
        params: &Params,
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.inner.query_opt(&statement, params)
    }

    pub fn query_one(&mut self, sql: &str, params: &Params) -> Result<Row, postgres::Error> {
        let statement = self.prepared(sql)?;
        self.inner.query_one(&statement, params)
    }
}

pub struct PostgresStore {
    /// Always `Some` but in `drop`, which closes the connections on a worker thread.
    pool: Option<Pool>,
    workers: rayon::ThreadPool,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing a connection runs the client's own runtime, which must not happen on a
        // thread of the server's async runtime (where the last handle is usually dropped).
        let pool = self.pool.take();
        self.workers.install(move || drop(pool));
    }
}

/// What a unit of work can fail with: the database (keeping its SQLSTATE, so a lost
/// serialization race is retried) or the method's own answer.
pub(crate) enum Fail {
    Pg(postgres::Error),
    Store(StoreError),
}

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Pg(e) => db(e),
            Fail::Store(e) => e,
        }
    }
}

pub(crate) type Work<T> = Result<T, Fail>;

fn db(e: postgres::Error) -> StoreError {
    StoreError::Database(describe(&e))
}

/// The server's message (with its detail), or the client's error with its causes: both say
/// more than the client's one-word summary ("db error").
fn describe(e: &postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return match d.detail() {
            Some(detail) => format!("{}: {detail}", d.message()),
            None => d.message().to_owned(),
        };
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let next = c.to_string();
        if !text.contains(&next) {
            text = format!("{text}: {next}");
        }
        cause = c.source();
    }
    text
}

/// Whether `fail` came from a connection the server dropped: the client saw it close, or the
/// server's last words were a shutdown or connection error (class 57P, 08), which may arrive
/// before the client notices the close. A lost connection is marked so the pool discards it:
/// otherwise the pool, which hands out the connection returned last, would give the retry the
/// same dead connection, and one drop of the whole pool could use up every attempt.
fn connection_lost(conn: &mut Connection, fail: &Fail) -> bool {
    let Fail::Pg(e) = fail else {
        return false;
    };
    let lost = conn.client.is_closed()
        || e.code().is_some_and(|c| {
            let code = c.code();
            code.starts_with("57P") || code.starts_with("08")
        });
    conn.lost |= lost;
    lost
}

fn retryable(e: &postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// `what` already exists when `e` is a unique violation; otherwise the database error.
pub(crate) fn unique(e: postgres::Error, what: impl FnOnce() -> String) -> Fail {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        Fail::Store(StoreError::AlreadyExists(what()))
    } else {
        Fail::Pg(e)
    }
}

/// A stored value that does not parse: the database holds something Cloister did not write.
pub(crate) fn corrupt(column: &str, e: impl std::fmt::Display) -> Fail {
    Fail::Store(StoreError::Database(format!(
        "stored {column} does not parse: {e}"
    )))
}

/// The URL without its password, for messages and logs.
pub(crate) fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

impl PostgresStore {
    /// `url` with its password replaced by `***`, for logs.
    pub fn redacted(url: &str) -> String {
        redacted(url)
    }

    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`) with
    /// a pool of `connections`, and applies pending migrations.
    pub fn open(url: &str, connections: u32) -> Result<Self, StoreError> {
        let shown = redacted(url);
        if connections == 0 {
            return Err(StoreError::Database(format!(
                "a pool of 0 connections to {shown} could serve nothing: give it at least 1 \
                 (the default is {DEFAULT_CONNECTIONS})"
            )));
        }
        let (config, connector) = tls::parse(url, &shown)?;
        let workers = rayon::ThreadPoolBuilder::new()
            .num_threads(connections as usize)
            .thread_name(|i| format!("cloister-pg-{i}"))
            .build()
            .map_err(|e| StoreError::Database(format!("starting database workers: {e}")))?;
        let pool = workers.install(|| {
            let unreachable = |e: String| {
                StoreError::Database(format!(
                    "could not connect to PostgreSQL at {shown}: {e}; check that it runs, \
                     the URL, the credentials and, with TLS, that the server's certificate \
                     is for that host and chains to sslrootcert"
                ))
            };
            // One connection first, for a clear error and the migrations.
            let mut first = connector
                .connect(&config)
                .map_err(|e| unreachable(describe(&e)))?;
            migrate(&mut first)?;
            drop(first);
            r2d2::Pool::builder()
                .max_size(connections)
                .connection_timeout(Duration::from_secs(10))
                // A broken connection is noticed by the query that meets it (`has_broken`);
                // a test query per checkout would double every call's round trips.
                .test_on_check_out(false)
                .build(Manager(config, connector))
                .map_err(|e| unreachable(e.to_string()))
        })?;
        Ok(Self {
            pool: Some(pool),
            workers,
        })
    }

    /// Runs a read on a pooled connection. A read is safe to repeat, so one whose connection
    /// the server had dropped (a restart, a failover, an idle timeout) runs again on another.
    fn read<T: Send>(&self, f: impl FnMut(&mut Conn) -> Work<T> + Send) -> Result<T, StoreError> {
        self.on_connection(true, f)
    }

    /// Runs a write that is one statement (atomic on its own) outside any transaction. Never
    /// repeated: when the connection drops, whether the statement ran is unknown.
    fn write_one<T: Send>(
        &self,
        f: impl FnMut(&mut Conn) -> Work<T> + Send,
    ) -> Result<T, StoreError> {
        self.on_connection(false, f)
    }

    fn on_connection<T: Send>(
        &self,
        again_if_dropped: bool,
        mut f: impl FnMut(&mut Conn) -> Work<T> + Send,
    ) -> Result<T, StoreError> {
        self.on_worker(|| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut pooled = self.connection()?;
                let conn = &mut *pooled;
                let result = f(&mut Cached {
                    inner: &mut conn.client,
                    statements: &mut conn.statements,
                });
                // Every pooled connection may have been dropped at once: try each.
                let lost = result.as_ref().is_err_and(|f| connection_lost(conn, f));
                if again_if_dropped && lost && attempt <= self.pool_size() {
                    continue;
                }
                return result.map_err(StoreError::from);
            }
        })
    }

    /// Runs `f` in a SERIALIZABLE transaction, again from the start when it loses a race with
    /// another writer (any replica's), so it behaves as if it ran alone; also when the
    /// connection turns out dropped before the commit (the server rolled the work back).
    fn write<T: Send>(
        &self,
        mut f: impl FnMut(&mut Tx) -> Work<T> + Send,
    ) -> Result<T, StoreError> {
        self.on_worker(|| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                let mut pooled = self.connection()?;
                let conn = &mut *pooled;
                let mut committing = false;
                let result = conn
                    .client
                    .build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .start()
                    .map_err(Fail::from)
                    .and_then(|mut tx| {
                        let value = f(&mut Cached {
                            inner: &mut tx,
                            statements: &mut conn.statements,
                        })?;
                        committing = true;
                        tx.commit()?;
                        Ok(value)
                    });
                // Checked even when committing, so a dropped connection is never pooled again.
                let lost = result.as_ref().is_err_and(|f| connection_lost(conn, f));
                let dropped = lost && !committing;
                match result {
                    Err(_) if dropped && attempt <= self.pool_size() => {}
                    Err(Fail::Pg(e)) if retryable(&e) && attempt < WRITE_ATTEMPTS => {
                        // Back off a little, more each time, so racing writers spread out.
                        std::thread::sleep(Duration::from_micros(
                            200 * u64::from(attempt) + u64::from(rand::random::<u8>()),
                        ));
                    }
                    other => return other.map_err(StoreError::from),
                }
            }
        })
    }

    /// How often a call tries again after dropped connections: every pooled one may have been
    /// dropped at once.
    fn pool_size(&self) -> u32 {
        self.pool.as_ref().map_or(1, r2d2::Pool::max_size)
    }

    /// Runs `f` on this store's worker threads (see the module's doc), off the async runtime.
    fn on_worker<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, StoreError> + Send,
    ) -> Result<T, StoreError> {
        off_runtime(|| self.workers.install(f))
    }

    fn connection(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        self.pool
            .as_ref()
            .ok_or_else(|| StoreError::Database("the store is closing".into()))?
            .get()
            .map_err(|e| StoreError::Database(format!("no database connection: {e}")))
    }
}

/// Waits for the database without stalling the async runtime the caller may be a worker of
/// (services call the store inline for reads): a multi-threaded runtime hands this worker's
/// other tasks to another thread meanwhile. Elsewhere (a blocking-pool thread, a test's
/// single-threaded runtime, no runtime) it simply waits.
fn off_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn migrate(conn: &mut Client) -> Result<(), StoreError> {
    let mut tx = conn.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(db)?;
    tx.batch_execute("CREATE TABLE IF NOT EXISTS cloister_schema (version BIGINT NOT NULL)")
        .map_err(db)?;
    let applied: i64 = match tx
        .query_opt("SELECT version FROM cloister_schema", &[])
        .map_err(db)?
    {
        Some(row) => row.try_get(0).map_err(db)?,
        None => {
            tx.execute("INSERT INTO cloister_schema (version) VALUES (0)", &[])
                .map_err(db)?;
            0
        }
    };
    let applied = crate::metadata::pending_from(applied, MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        tx.batch_execute(sql).map_err(db)?;
        tx.execute(
            "UPDATE cloister_schema SET version = $1",
            &[&((i + 1) as i64)],
        )
        .map_err(db)?;
        tracing::info!(version = i + 1, "applied PostgreSQL schema migration");
    }
    tx.commit().map_err(db)
}

// Row readers shared by the trait implementations. `try_get` everywhere: a column of an
// unexpected type is an error, not a panic.

pub(crate) fn project_id(row: &Row, i: usize) -> Work<ProjectId> {
    let s: String = row.try_get(i)?;
    ProjectId::parse(&s).map_err(|e| corrupt("project id", e))
}

pub(crate) fn email(row: &Row, i: usize) -> Work<Email> {
    let s: String = row.try_get(i)?;
    Email::parse(&s).map_err(|e| corrupt("email", e))
}

pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &Row, i: usize, what: &str) -> Work<T> {
    let s: String = row.try_get(i)?;
    serde_json::from_str(&s).map_err(|e| corrupt(what, e))
}

pub(crate) fn audit_row(row: &Row) -> Work<AuditEntry> {
    let decision: String = row.try_get(5)?;
    Ok(AuditEntry {
        id: row.try_get(0)?,
        time: row.try_get(1)?,
        principal: row.try_get(2)?,
        permission: row.try_get(3)?,
        resource: row.try_get(4)?,
        decision: Decision::parse(&decision).unwrap_or(Decision::Deny),
        reason: row.try_get(6)?,
        project: row.try_get(7)?,
    })
}

/// Collects rows through `f`, stopping at the first that does not read.
pub(crate) fn rows<T>(rows: Vec<Row>, f: impl Fn(&Row) -> Work<T>) -> Work<Vec<T>> {
    rows.iter().map(f).collect()
}
