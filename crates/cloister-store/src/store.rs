//! [`Store`]: the metadata store, on SQLite (the embedded default) or PostgreSQL (replicas
//! sharing one database). Its methods live beside their records, one module per aggregate.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, PgConnection};

use crate::db::{Connections, Db, Slots};
use crate::error::StoreError;
use crate::migrate;

/// PostgreSQL connections per replica unless the operator says otherwise: enough for two
/// cores' worth of requests, few enough that dozens of replicas fit PostgreSQL's default
/// `max_connections` (100).
pub const DEFAULT_CONNECTIONS: u32 = 8;

/// SQLite's read-only connections beside its one writer.
const SQLITE_READERS: usize = 4;

/// Statements each connection keeps prepared: more than the store has.
const STATEMENT_CACHE: usize = 256;

/// The metadata store. Cheap to share (`Arc`); every method is async and atomic on its own.
pub struct Store {
    pub(crate) db: Db,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` and applies pending migrations.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let unavailable = |source| StoreError::Unavailable {
            what: format!("could not open the metadata database {shown}"),
            source,
        };
        let common = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true)
            .statement_cache_capacity(STATEMENT_CACHE);
        let writer_options = common
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: an acknowledged IAM change or audit entry survives power loss, not just a
            // crash.
            .synchronous(SqliteSynchronous::Full);
        let mut writer = writer_options.connect().await.map_err(unavailable)?;
        migrate::sqlite(&mut writer).await?;
        // Readers open when first needed (the file and its WAL exist by then).
        let readers = Slots::new(SQLITE_READERS, common.read_only(true), None);
        Ok(Store {
            db: Db::new(Connections::Sqlite {
                writer: Slots::new(1, writer_options, Some(writer)),
                readers,
            }),
        })
    }

    /// Connects to the PostgreSQL database at `url`
    /// (`postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=…&sslrootcert=…]`) with a pool of
    /// `connections`, and applies pending migrations.
    pub async fn open_postgres(url: &str, connections: u32) -> Result<Store, StoreError> {
        let shown = redacted(url);
        if connections == 0 {
            return Err(StoreError::Unusable(format!(
                "a pool of 0 connections to {shown} could serve nothing: give it at least 1 \
                 (the default is {DEFAULT_CONNECTIONS})"
            )));
        }
        let options = connect_options(url, &shown)?;
        let unavailable = |source: sqlx::Error| StoreError::Unavailable {
            what: format!(
                "could not connect to PostgreSQL at {shown}: {source}; check that it runs, the \
                 URL, the credentials and, with TLS, that the server's certificate is for that \
                 host and chains to sslrootcert"
            ),
            source,
        };
        // One connection first, for a clear error and the migrations; the rest open as needed.
        let mut first = PgConnection::connect_with(&options)
            .await
            .map_err(unavailable)?;
        migrate::postgres(&mut first).await?;
        let slots = usize::try_from(connections).unwrap_or(usize::MAX);
        Ok(Store {
            db: Db::new(Connections::Postgres(Slots::new(
                slots,
                options,
                Some(first),
            ))),
        })
    }
}

/// The URL without its password, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The connection settings a database URL asks for, in libpq's words: `sslmode=require`,
/// `verify-ca` or `verify-full`, and `sslrootcert=FILE` for the CA that signed the server's
/// certificate (else the system's roots). A server's certificate is always verified: `require`
/// verifies as `verify-full` does, since a managed database is worth verifying. Without
/// `sslmode`, or with `disable` or `prefer`, the connection is plain.
fn connect_options(url: &str, shown: &str) -> Result<PgConnectOptions, StoreError> {
    let bad = |what: String| {
        StoreError::Unusable(format!(
            "the database URL {shown} {what}; write it as \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem]"
        ))
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("does not parse ({e})")))?;
    let (mut mode, mut root) = (None, None);
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "sslmode" => mode = Some(v.into_owned()),
            "sslrootcert" => root = Some(v.into_owned()),
            _ => {}
        }
    }
    let ssl_mode = match mode.as_deref() {
        None | Some("disable" | "prefer") => PgSslMode::Disable,
        Some("require" | "verify-full") => PgSslMode::VerifyFull,
        Some("verify-ca") => PgSslMode::VerifyCa,
        Some(other) => {
            return Err(bad(format!(
                "has sslmode={other}; use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    if root.is_some() && matches!(ssl_mode, PgSslMode::Disable) {
        return Err(bad(
            "names an sslrootcert but does not ask for TLS (add sslmode=verify-full)".into(),
        ));
    }
    if let Some(path) = &root {
        check_roots(path)?;
    }
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| bad(format!("does not parse ({e})")))?
        .ssl_mode(ssl_mode)
        .statement_cache_capacity(STATEMENT_CACHE);
    Ok(match root {
        Some(path) => options.ssl_root_cert(path),
        None => options,
    })
}

/// Refuses an `sslrootcert` that holds no usable CA certificate, before connecting: the TLS
/// handshake's own error would not say that the file was the problem.
fn check_roots(path: &str) -> Result<(), StoreError> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect())
        .map_err(|e| StoreError::Unusable(format!("sslrootcert {path}: {e}")))?;
    if certs.is_empty() {
        return Err(StoreError::Unusable(format!(
            "no CA certificates in {path}: name the database server's CA with sslrootcert=FILE"
        )));
    }
    Ok(())
}
