//! `cloister server`: configuration (flags, environment, config file), logging, the listener,
//! and graceful shutdown around the services' router.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use cloister_services::AllowedHost;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDriver {
    Local,
    Vm,
}

/// OVMF as Debian's `ovmf` package installs it (one image: code and variables together).
const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// The VM driver's guest image, built (or found in the data directory's cache) for this
/// very binary.
async fn guest_image(
    data_dir: &std::path::Path,
    debug: bool,
    snp_firmware: Option<PathBuf>,
) -> Result<cloister_services::compute::vm::GuestImage> {
    if !std::path::Path::new(OVMF).exists() {
        anyhow::bail!(
            "--compute-driver vm needs OVMF at {OVMF}: apt-get install ovmf qemu-system-x86 (scripts/install-deps.sh does)"
        );
    }
    let data_dir = data_dir.to_owned();
    let built = tokio::task::spawn_blocking(move || {
        let exe = std::env::current_exe()?;
        let snp = crate::guest::image::snp_firmware(snp_firmware);
        crate::guest::image::build(&data_dir, &exe, debug, snp.as_deref())
    })
    .await??;
    tracing::info!(initrd = %built.initrd.display(), measurement = %built.measurement, debug_image = built.debug, "VM driver: guest image ready");
    match &built.snp {
        Some(snp) => {
            tracing::info!(firmware = %snp.firmware.display(), measurement = %snp.measurement, "VM driver: SEV-SNP launch digest of the guest image computed")
        }
        None => tracing::info!(
            "VM driver: no AmdSev OVMF (--vm-snp-firmware), so SEV_SNP instances will be refused"
        ),
    }
    Ok(cloister_services::compute::vm::GuestImage {
        kernel: built.kernel,
        initrd: built.initrd,
        cmdline: built.cmdline,
        firmware: OVMF.into(),
        measurement: built.measurement,
        debug,
        snp: built
            .snp
            .map(|s| cloister_services::compute::vm::SnpLaunch {
                firmware: s.firmware,
                measurement: s.measurement,
            }),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Every setting can come from a flag, an environment variable, or the config file, in that
/// order of precedence.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "CLOISTER_LISTEN")]
    listen: Option<SocketAddr>,
    /// Directory holding the database, blobs and keys [default: $XDG_DATA_HOME/cloister].
    #[arg(long, env = "CLOISTER_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// URL clients reach this server at; the issuer of its tokens [default: http://LISTEN].
    #[arg(long, env = "CLOISTER_PUBLIC_URL")]
    public_url: Option<String>,
    /// Log format.
    #[arg(long, env = "CLOISTER_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormat>,
    /// Largest JSON request body accepted, in bytes.
    #[arg(long, env = "CLOISTER_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Lifetime of attestation tokens in seconds [default: 3600, as Google's].
    #[arg(long, env = "CLOISTER_ATTESTATION_TOKEN_LIFETIME_SECS", value_parser = clap::value_parser!(i64).range(10..=86400))]
    attestation_token_lifetime_secs: Option<i64>,
    /// The metadata database shared by replicas: postgres://USER:PASSWORD@HOST:PORT/DATABASE
    /// (needs the KEK from outside: --kek-file or CLOISTER_KEK) [default: SQLite in the data
    /// directory].
    #[arg(long, env = "CLOISTER_DATABASE_URL")]
    database_url: Option<String>,
    /// With --database-url: connections this replica keeps to the database. Every replica
    /// keeps its own, so replicas × connections must stay under PostgreSQL's max_connections
    /// [default: 8].
    #[arg(long, env = "CLOISTER_DATABASE_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..=MAX_DATABASE_CONNECTIONS as i64))]
    database_connections: Option<u32>,
    /// Where blobs (object data, image layers) live: s3://BUCKET/PREFIX (S3, MinIO, Garage;
    /// configured by AWS_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION,
    /// AWS_ALLOW_HTTP), gs://…, az://… or file:///DIR [default: DATA_DIR/blobs].
    #[arg(long, env = "CLOISTER_BLOB_URL")]
    blob_url: Option<String>,
    /// A file holding the 32-byte key-encryption key (raw, or base64), kept outside the data
    /// directory; or set CLOISTER_KEK to its base64 [default: a key file in the data directory,
    /// for a single machine].
    #[arg(long, env = "CLOISTER_KEK_FILE")]
    kek_file: Option<PathBuf>,
    /// With a shared database: seconds a replica's instances outlive its last renewal of
    /// their lease (every 2 s) before another replica marks them TERMINATED, as after a crash
    /// of its machine [default: 30].
    #[arg(long, env = "CLOISTER_REPLICA_LEASE_SECS", value_parser = clap::value_parser!(u64).range(5..=3600))]
    replica_lease_secs: Option<u64>,
    /// The largest Cloud Storage object or registry blob, in bytes; a larger upload is refused
    /// while it streams
    /// [default: 5497558138880, Google's 5 TiB].
    #[arg(long, env = "CLOISTER_MAX_OBJECT_BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    max_object_bytes: Option<u64>,
    /// The most bytes one project's objects and registry blobs may hold together, its
    /// unfinished uploads counted [default: no quota].
    #[arg(long, env = "CLOISTER_PROJECT_STORAGE_QUOTA_BYTES")]
    project_storage_quota_bytes: Option<u64>,
    /// Hosts that providers' issuer discovery and key fetches may reach over plain http or at
    /// a private (loopback, RFC 1918, link-local…) address, as HOST or HOST:PORT, comma
    /// separated; all other fetches are https to public addresses only [default: none; this
    /// server's own public URL is always allowed].
    #[arg(long, env = "CLOISTER_OIDC_FETCH_ALLOW", value_delimiter = ',')]
    oidc_fetch_allow: Vec<AllowedHost>,
    /// How instances run: `local` (runc containers on this host, the fast default) or `vm`
    /// (one QEMU VM per instance booting the guest image `cloister image build` makes, built
    /// at start if needed; KVM when the host has it, TCG otherwise).
    #[arg(long, env = "CLOISTER_COMPUTE_DRIVER", value_enum)]
    compute_driver: Option<ComputeDriver>,
    /// How many instances this replica runs at once; an instance no replica has room for
    /// waits, PROVISIONING, until one has. 0: this replica runs none (it only serves the API)
    /// [default: for vm, the 1.5 GiB guests three quarters of the host's memory holds; for
    /// local, 64].
    #[arg(long, env = "CLOISTER_MAX_INSTANCES")]
    max_instances: Option<u32>,
    /// How many instances one project may hold, on every replica together (Compute Engine's
    /// INSTANCES quota): one project cannot take all the room from the others
    /// [default: 24].
    #[arg(long, env = "CLOISTER_PROJECT_INSTANCE_QUOTA", value_parser = clap::value_parser!(u32).range(1..))]
    project_instance_quota: Option<u32>,
    /// How many projects one user may have created and not yet deleted (Google's per-user
    /// project quota): with the per-project quotas it bounds what one user can hold
    /// [default: 25].
    #[arg(long, env = "CLOISTER_USER_PROJECT_QUOTA", value_parser = clap::value_parser!(u32).range(1..))]
    user_project_quota: Option<u32>,
    /// The size of each local instance's disk, in GB (GiB): what its image and its
    /// workload's writes may take of the host's disk, together [default: 10, Compute Engine's
    /// boot disk].
    #[arg(long, env = "CLOISTER_INSTANCE_DISK_GB", value_parser = clap::value_parser!(u32).range(1..))]
    instance_disk_gb: Option<u32>,
    /// With --compute-driver vm: boot the debug guest image (its tokens say `dbgstat:
    /// enabled`, and `debugonly` launch policies run).
    #[arg(long, env = "CLOISTER_VM_DEBUG_IMAGE")]
    vm_debug_image: bool,
    /// Accept INSECURE evidence (an event log that nothing vouches for: any caller allowed
    /// to verify could claim any image) and INSECURE instances. For a development machine
    /// without swtpm only; such tokens say `swname: INSECURE` [default: refused].
    #[arg(long, env = "CLOISTER_ALLOW_INSECURE_EVIDENCE")]
    allow_insecure_evidence: bool,
    /// With --compute-driver vm: the AmdSev build of OVMF SEV-SNP guests boot (it puts the
    /// kernel, initrd and command line into the launch digest) [default: a distribution's
    /// OVMF.amdsev.fd where installed; without one, SEV_SNP instances are refused].
    #[arg(long, env = "CLOISTER_VM_SNP_FIRMWARE")]
    vm_snp_firmware: Option<PathBuf>,
    /// Serve TLS with this certificate chain (PEM), and --tls-key-file's key: HTTP/1.1 and
    /// HTTP/2 by ALPN on the one port, so Google's gRPC clients (which always use TLS) reach
    /// the KMS API [default: plain HTTP/1.1 and HTTP/2 cleartext, for a TLS load balancer in
    /// front].
    #[arg(long, env = "CLOISTER_TLS_CERT_FILE", requires = "tls_key_file")]
    tls_cert_file: Option<PathBuf>,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1) of --tls-cert-file's certificate.
    #[arg(long, env = "CLOISTER_TLS_KEY_FILE", requires = "tls_cert_file")]
    tls_key_file: Option<PathBuf>,
    /// A TOML file with any of: listen, data_dir, public_url, log_format, max_body_bytes,
    /// attestation_token_lifetime_secs, database_url, database_connections, blob_url, kek_file,
    /// replica_lease_secs, max_object_bytes, project_storage_quota_bytes, oidc_fetch_allow (a
    /// list of HOST[:PORT]), compute_driver, max_instances, project_instance_quota,
    /// user_project_quota, instance_disk_gb, tls_cert_file, tls_key_file.
    #[arg(long, env = "CLOISTER_SERVER_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Option<ServerAction>,
}

/// Operations on the server's stores instead of serving (every replica stopped).
#[derive(Debug, Subcommand)]
enum ServerAction {
    /// Reseal every key the key-encryption key protects (KMS key material, token signing keys,
    /// the access-token key, the instance identity CA) under a new KEK, in one transaction.
    /// Stop every server on the store first; then start them all with the new KEK. The current
    /// KEK comes from --kek-file or CLOISTER_KEK, or the data directory's for the embedded
    /// default (which is then removed: start with --kek-file NEW from then on).
    RotateKek {
        /// A file holding the new 32-byte KEK (raw, or base64), outside the data directory.
        #[arg(long)]
        new_kek_file: PathBuf,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    log_format: Option<LogFormat>,
    max_body_bytes: Option<usize>,
    attestation_token_lifetime_secs: Option<i64>,
    database_url: Option<String>,
    database_connections: Option<u32>,
    blob_url: Option<String>,
    kek_file: Option<PathBuf>,
    replica_lease_secs: Option<u64>,
    max_object_bytes: Option<u64>,
    project_storage_quota_bytes: Option<u64>,
    oidc_fetch_allow: Option<Vec<String>>,
    compute_driver: Option<ComputeDriver>,
    allow_insecure_evidence: Option<bool>,
    max_instances: Option<u32>,
    project_instance_quota: Option<u32>,
    user_project_quota: Option<u32>,
    instance_disk_gb: Option<u32>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Instances one project may hold unless the operator says otherwise.
const DEFAULT_PROJECT_INSTANCE_QUOTA: u32 = 24;
/// The argument that makes this binary the server's condition worker (`main`).
pub const CONDITION_WORKER: &str = "condition-worker";
/// Projects one user may have unless the operator says otherwise (Google's default).
const DEFAULT_USER_PROJECT_QUOTA: u32 = 25;
/// More connections than this per replica would only queue in PostgreSQL.
const MAX_DATABASE_CONNECTIONS: u32 = 1000;

pub async fn run(args: ServerArgs) -> Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading server config {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("server config {} does not parse", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let log_format = args
        .log_format
        .or(file.log_format)
        .unwrap_or(LogFormat::Text);
    init_logging(log_format);

    let listen = match args.listen.or(file.listen) {
        Some(addr) => addr,
        None => DEFAULT_LISTEN.parse()?,
    };
    let data_dir = match args.data_dir.or(file.data_dir) {
        Some(dir) => dir,
        None => dirs::data_dir()
            .context(
                "no data directory: pass --data-dir (or set CLOISTER_DATA_DIR, or XDG_DATA_HOME)",
            )?
            .join("cloister"),
    };
    if let Some(ServerAction::RotateKek { new_kek_file }) = args.action {
        let current = key_encryption_key(args.kek_file.or(file.kek_file).as_deref(), &data_dir)?;
        let new = key_encryption_key(Some(&new_kek_file), &data_dir)?
            .context("the new key-encryption key did not load")?;
        let database_url = args.database_url.or(file.database_url);
        return crate::kek::rotate(&data_dir, database_url.as_deref(), current, &new).await;
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| {
            format!("cannot listen on {listen}: pass another address with --listen")
        })?;
    let bound = listener.local_addr()?;
    let tls = match (
        args.tls_cert_file.or(file.tls_cert_file),
        args.tls_key_file.or(file.tls_key_file),
    ) {
        (Some(cert), Some(key)) => Some(tls_config(&cert, &key)?),
        (None, None) => None,
        _ => anyhow::bail!(
            "TLS needs both a certificate and its key: set tls_cert_file and tls_key_file (or --tls-cert-file and --tls-key-file)"
        ),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let public_url = args
        .public_url
        .or(file.public_url)
        .unwrap_or_else(|| format!("{scheme}://{bound}"));
    let kek = key_encryption_key(args.kek_file.or(file.kek_file).as_deref(), &data_dir)?;
    let database_url = args.database_url.or(file.database_url);
    let replica_lease = match args.replica_lease_secs.or(file.replica_lease_secs) {
        None => cloister_services::DEFAULT_REPLICA_LEASE,
        // The flag's own range check covers the command line; this one, the config file.
        Some(secs @ 5..=3600) => Duration::from_secs(secs),
        Some(secs) => anyhow::bail!(
            "replica_lease_secs = {secs} in the server config: it must be 5 to 3600 seconds (renewals come every 2)"
        ),
    };
    let database_connections = match args.database_connections.or(file.database_connections) {
        None => cloister_services::DEFAULT_DATABASE_CONNECTIONS,
        // The flag's own range check covers the command line; this one, the config file.
        Some(n @ 1..=MAX_DATABASE_CONNECTIONS) => n,
        Some(n) => anyhow::bail!(
            "database_connections = {n} in the server config: it must be 1 to {MAX_DATABASE_CONNECTIONS}"
        ),
    };
    let blob_url = args.blob_url.or(file.blob_url);
    let storage_limits = cloister_services::storage::limits::StorageLimits {
        max_object_bytes: match args.max_object_bytes.or(file.max_object_bytes) {
            None => cloister_services::storage::limits::DEFAULT_MAX_OBJECT_BYTES,
            Some(0) => anyhow::bail!(
                "max_object_bytes = 0 in the server config: no object could be stored"
            ),
            Some(n) => n,
        },
        project_quota_bytes: args
            .project_storage_quota_bytes
            .or(file.project_storage_quota_bytes),
    };
    let oidc_fetch_allow = if args.oidc_fetch_allow.is_empty() {
        file.oidc_fetch_allow
            .unwrap_or_default()
            .iter()
            .map(|h| h.parse::<AllowedHost>())
            .collect::<Result<Vec<_>, _>>()
            .context("oidc_fetch_allow in the server config")?
    } else {
        args.oidc_fetch_allow
    };
    let guest_image = match args.compute_driver.or(file.compute_driver) {
        Some(ComputeDriver::Vm) => {
            Some(guest_image(&data_dir, args.vm_debug_image, args.vm_snp_firmware.clone()).await?)
        }
        Some(ComputeDriver::Local) | None => None,
    };
    let config = cloister_services::ServerConfig {
        guest_image,
        max_instances: args.max_instances.or(file.max_instances),
        project_instance_quota: match args.project_instance_quota.or(file.project_instance_quota) {
            Some(0) => anyhow::bail!(
                "project_instance_quota = 0 in the server config: no instance could be created"
            ),
            Some(n) => Some(n),
            None => Some(DEFAULT_PROJECT_INSTANCE_QUOTA),
        },
        // This very binary, even once an upgrade replaced or removed its file: a worker
        // always speaks the server's protocol and judges with the server's CEL.
        // This very binary, even once an upgrade replaced or removed its file: a worker
        // always speaks the server's protocol and judges with the server's CEL.
        condition_worker: cloister_services::federation::judge::WorkerCommand {
            program: "/proc/self/exe".into(),
            args: vec![CONDITION_WORKER.into()],
        },
        user_project_quota: match args.user_project_quota.or(file.user_project_quota) {
            Some(0) => anyhow::bail!(
                "user_project_quota = 0 in the server config: no project could be created"
            ),
            Some(n) => Some(n),
            None => Some(DEFAULT_USER_PROJECT_QUOTA),
        },
        instance_disk_gb: match args.instance_disk_gb.or(file.instance_disk_gb) {
            Some(0) => anyhow::bail!(
                "instance_disk_gb = 0 in the server config: no instance could pull its image"
            ),
            gb => gb,
        },
        data_dir: data_dir.clone(),
        public_url: public_url.clone(),
        max_body_bytes: args
            .max_body_bytes
            .or(file.max_body_bytes)
            .unwrap_or(DEFAULT_MAX_BODY_BYTES),
        attestation_token_lifetime_secs: args
            .attestation_token_lifetime_secs
            .or(file.attestation_token_lifetime_secs)
            .unwrap_or(3600),
        // Instances run this very binary as their launcher (`cloister launcher`).
        launcher: std::env::current_exe().ok(),
        hardware_evidence_time: None,
        database_url: database_url.clone(),
        database_connections,
        blob_url: blob_url.clone(),
        kek,
        replica_lease,
        storage_limits,
        oidc_fetch_allow,
        allow_insecure_evidence: args.allow_insecure_evidence
            || file.allow_insecure_evidence.unwrap_or(false),
        blob_options: std::env::vars()
            .filter(|(k, _)| {
                ["AWS_", "GOOGLE_", "AZURE_"]
                    .iter()
                    .any(|p| k.starts_with(p))
            })
            .collect(),
    };
    let opened = cloister_services::open(config).await?;
    if let Some(path) = &opened.bootstrap_credential {
        tracing::info!(
            path = %path.display(),
            "created the bootstrap platform admin {}; its credential file is at this path (log in with `cloister auth login --credential-file PATH`)",
            cloister_services::BOOTSTRAP_ADMIN_EMAIL
        );
    }
    // Which stores this replica uses, so an operator can tell from the log (no password).
    let metadata = match &database_url {
        Some(url) => cloister_store::redacted(url),
        None => opened.data_dir.metadata_db().display().to_string(),
    };
    let blobs = blob_url.unwrap_or_else(|| opened.data_dir.blob_root().display().to_string());
    tracing::info!(address = %bound, public_url = %public_url, data_dir = %data_dir.display(), %metadata, %blobs, tls = tls.is_some(), "cloister server listening");
    match tls {
        Some(tls) => serve_tls(listener, opened.router.clone(), tls).await,
        // HTTP/1.1, and HTTP/2 with prior knowledge (h2c: gRPC behind a TLS load balancer).
        None => axum::serve(listener, opened.router.clone())
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("serving HTTP"),
    }?;
    opened.shutdown().await;
    tracing::info!("cloister server stopped");
    drop(opened.data_dir);
    Ok(())
}

/// The TLS server configuration: the certificate chain and key from PEM files, and ALPN
/// offering HTTP/2 (which gRPC requires) before HTTP/1.1.
fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<tokio_rustls::rustls::ServerConfig>> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the TLS certificate and key do not go together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS until SIGTERM or SIGINT, then lets in-flight requests finish, as
/// `axum::serve`'s graceful shutdown does for plain HTTP (which has no TLS of its own).
async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto::Builder;
    use hyper_util::service::TowerToHyperService;
    /// A client that connects and never finishes its handshake holds only its own task.
    const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let builder = Builder::new(TokioExecutor::new());
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum::serve does.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let (acceptor, builder, router) = (acceptor.clone(), builder.clone(), router.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => return tracing::debug!(%peer, "TLS handshake timed out"),
            };
            let connection = builder
                .serve_connection_with_upgrades(
                    TokioIo::new(stream),
                    TowerToHyperService::new(router),
                )
                .into_owned();
            if let Err(e) = watcher.watch(connection).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOISTER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Resolves on SIGTERM or SIGINT; in-flight requests then finish before the server exits.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down gracefully"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down gracefully"),
    }
}

/// The KEK from `--kek-file` or `CLOISTER_KEK`: 32 bytes, raw or base64. A file inside the data
/// directory is refused: a KEK stored beside what it seals protects nothing.
fn key_encryption_key(
    file: Option<&std::path::Path>,
    data_dir: &std::path::Path,
) -> Result<Option<Vec<u8>>> {
    use base64::Engine;
    let decode = |bytes: Vec<u8>, from: &str| -> Result<Vec<u8>> {
        if bytes.len() == 32 {
            return Ok(bytes);
        }
        let text = String::from_utf8_lossy(&bytes);
        let key = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .ok()
            .filter(|k| k.len() == 32);
        key.with_context(|| format!("{from} must hold a 32-byte key, raw or base64 (e.g. `head -c 32 /dev/urandom | base64`)"))
    };
    if let Some(path) = file {
        let canonical = std::fs::canonicalize(path)
            .with_context(|| format!("reading the key-encryption key {}", path.display()))?;
        if std::fs::canonicalize(data_dir).is_ok_and(|d| canonical.starts_with(d)) {
            anyhow::bail!(
                "the key-encryption key {} is inside the data directory {}: keep it elsewhere (a secret manager, another volume), or omit --kek-file for the single-machine default",
                path.display(),
                data_dir.display()
            );
        }
        let bytes = std::fs::read(&canonical)
            .with_context(|| format!("reading the key-encryption key {}", path.display()))?;
        return decode(bytes, &path.display().to_string()).map(Some);
    }
    match std::env::var("CLOISTER_KEK") {
        Ok(value) => decode(value.into_bytes(), "CLOISTER_KEK").map(Some),
        Err(_) => Ok(None),
    }
}
