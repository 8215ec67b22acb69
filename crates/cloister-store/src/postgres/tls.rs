//! TLS to PostgreSQL, when the database URL asks for it, in libpq's words: `sslmode=require`,
//! `verify-ca` or `verify-full`, and `sslrootcert=FILE` for the CA that signed the server's
//! certificate (else the system's roots). The server's certificate and name are always
//! verified (rustls has no unverified mode, and a managed database is worth verifying);
//! without `sslmode`, or with `disable` or `prefer`, the connection is plain.

use std::sync::Arc;

use tokio_postgres_rustls::MakeRustlsConnect;

use crate::metadata::StoreError;

/// How connections are made.
#[derive(Clone)]
pub(super) enum Connector {
    Plain,
    Tls(MakeRustlsConnect),
}

impl Connector {
    pub(super) fn connect(
        &self,
        config: &postgres::Config,
    ) -> Result<postgres::Client, postgres::Error> {
        match self {
            Connector::Plain => config.connect(postgres::NoTls),
            Connector::Tls(tls) => config.connect(tls.clone()),
        }
    }
}

/// The client configuration and connector a database URL asks for. `shown` is the URL
/// without its password, for messages.
pub(super) fn parse(url: &str, shown: &str) -> Result<(postgres::Config, Connector), StoreError> {
    let bad = |what: String| {
        StoreError::Database(format!(
            "the database URL {shown} {what}; write it as \
             postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=verify-full&sslrootcert=CA.pem]"
        ))
    };
    // tokio-postgres knows neither `sslrootcert` nor the verify modes: take them off the URL.
    let (url, mode, root) = match url::Url::parse(url) {
        Ok(mut parsed) if parsed.query().is_some() => {
            let (mut mode, mut root, mut rest) = (None, None, Vec::new());
            for (k, v) in parsed.query_pairs() {
                match k.as_ref() {
                    "sslmode" => mode = Some(v.into_owned()),
                    "sslrootcert" => root = Some(v.into_owned()),
                    _ => rest.push((k.into_owned(), v.into_owned())),
                }
            }
            parsed.query_pairs_mut().clear().extend_pairs(&rest);
            if rest.is_empty() {
                parsed.set_query(None);
            }
            (parsed.to_string(), mode, root)
        }
        _ => (url.to_owned(), None, None),
    };
    let tls = match mode.as_deref() {
        None | Some("disable" | "prefer") => false,
        Some("require" | "verify-ca" | "verify-full") => true,
        Some(other) => {
            return Err(bad(format!(
                "has sslmode={other}; use disable, prefer, require, verify-ca or verify-full"
            )));
        }
    };
    if root.is_some() && !tls {
        return Err(bad(
            "names an sslrootcert but does not ask for TLS (add sslmode=verify-full)".into(),
        ));
    }
    let mut config: postgres::Config = url
        .parse()
        .map_err(|e| bad(format!("does not parse ({e})")))?;
    if !tls {
        return Ok((config, Connector::Plain));
    }
    config.ssl_mode(postgres::config::SslMode::Require);
    let roots = roots(root.as_deref())?;
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Database(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok((config, Connector::Tls(MakeRustlsConnect::new(client))))
}

/// The CA certificates in `file` (PEM), or the system's.
fn roots(file: Option<&str>) -> Result<rustls::RootCertStore, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    let certs: Vec<CertificateDer<'static>> = match file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect())
            .map_err(|e| StoreError::Database(format!("sslrootcert {path}: {e}")))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    for cert in certs {
        store.add(cert).map_err(|e| {
            StoreError::Database(format!(
                "a CA certificate in {} is not usable: {e}",
                file.unwrap_or("the system's roots")
            ))
        })?;
    }
    if store.is_empty() {
        return Err(StoreError::Database(format!(
            "no CA certificates in {}: name the database server's CA with sslrootcert=FILE",
            file.unwrap_or("the system's roots")
        )));
    }
    Ok(store)
}
