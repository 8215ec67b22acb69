//! Opening a server: the data directory, stores and keys, the bootstrap admin, and the one
//! router that composes every service.

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use cloister_domain::Email;
use cloister_store::{DataDir, DataDirError, FsBlobStore, InstanceStatus, Store, UserRecord};
use tower_http::trace::TraceLayer;

use crate::auth::tokens::AccessTokens;
use crate::compute::driver::{Launcher, LocalDriver};
use crate::compute::replicas::ReplicaLease;
use crate::error::ApiError;
use crate::federation::fetch::{AllowedHost, FetchPolicy};
use crate::federation::jwks::JwksCache;
use crate::iam::authorizer::Authorizer;
use crate::signing::SigningKeys;
use crate::state::AppState;
use crate::{
    audit, auth, compute, console, federation, health, iam, kms, metrics, oidc, registry, storage,
    verifier,
};

/// The platform admin created on first start.
pub const BOOTSTRAP_ADMIN_EMAIL: &str = "admin@cloister.local";
/// Where the bootstrap admin's credential is written, relative to the data directory.
pub const BOOTSTRAP_CREDENTIAL_FILE: &str = "bootstrap-admin-credential.json";
/// The embedded default's KEK, in the data directory's `keys/` (only without `kek`).
pub const EMBEDDED_KEK_FILE: &str = "kms-kek.key";
/// How long a replica's instances outlive its last renewal of their lease, by default: fifteen
/// renewals, so a stalled or briefly cut-off replica does not lose them.
pub const DEFAULT_REPLICA_LEASE: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    /// Base URL clients use to reach this server; the issuer of its tokens.
    pub public_url: String,
    /// Largest JSON request body accepted by the control-plane APIs.
    pub max_body_bytes: usize,
    /// Lifetime of attestation tokens (Google's is an hour; shorter shows refreshes).
    pub attestation_token_lifetime_secs: i64,
    /// The launcher binary instances run (the `cloister` binary itself); none = no instances.
    pub launcher: Option<PathBuf>,
    /// Judge hardware evidence as of this time, not the clock (replaying recorded evidence).
    pub hardware_evidence_time: Option<time::OffsetDateTime>,
    /// The metadata database replicas share (`postgres://…`); none = SQLite in the data
    /// directory (one server).
    pub database_url: Option<String>,
    /// Connections this replica keeps to that database (and threads that use them).
    pub database_connections: u32,
    /// Where blobs live: an object store URL (`s3://BUCKET/PREFIX`, `gs://…`, `az://…`,
    /// `file:///DIR`); none = files in the data directory.
    pub blob_url: Option<String>,
    /// The object store's configuration (`AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, …; the server
    /// passes its environment).
    pub blob_options: Vec<(String, String)>,
    /// The key-encryption key (32 bytes) sealing KMS material and the server's signing keys
    /// in the metadata store. Supply it from outside the data (a file elsewhere, a secret
    /// manager); none = the embedded default, a key file in the data directory.
    pub kek: Option<Vec<u8>>,
    /// With a shared database: how long a replica's instances outlive its last renewal of
    /// their lease (every 2 s) before another replica marks them TERMINATED.
    pub replica_lease: std::time::Duration,
    /// The largest object and each project's storage quota.
    pub storage_limits: crate::storage::limits::StorageLimits,
    /// Hosts (`HOST[:PORT]`) that issuer discovery and JWKS fetches may reach over plain
    /// http or at a private address; everything else is https to public addresses only.
    pub oidc_fetch_allow: Vec<AllowedHost>,
    /// Accept INSECURE evidence (an event log nothing vouches for) and INSECURE instances:
    /// for development machines only; off unless asked for.
    pub allow_insecure_evidence: bool,
    /// Set: instances are VMs booting this guest image (`--compute-driver vm`).
    pub guest_image: Option<compute::vm::GuestImage>,
    /// How many instances this replica runs at once; none = the driver's default
    /// (`compute::placement`).
    pub max_instances: Option<u32>,
    /// How many instances one project may hold, over every replica; none = no quota.
    pub project_instance_quota: Option<u32>,
    /// How many projects one user may have created and not deleted; none = no quota.
    pub user_project_quota: Option<u32>,
    /// The program that judges tokens with providers' CEL under limits (`federation::judge`).
    pub condition_worker: crate::federation::judge::WorkerCommand,
    /// Each process instance's disk, GiB; none = `compute::disk::DEFAULT_GB`.
    pub instance_disk_gb: Option<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Store(#[from] cloister_store::StoreError),
    #[error(transparent)]
    Blob(#[from] cloister_store::BlobError),
    #[error("could not create the bootstrap admin: {0}")]
    Bootstrap(ApiError),
    #[error(transparent)]
    Signing(#[from] crate::signing::SigningError),
    #[error("instance identity CA in {path}: {detail}")]
    IdentityCa { path: PathBuf, detail: String },
    #[error("public URL {0:?} is not an http(s) URL such as https://cloister.example.com")]
    PublicUrl(String),
    #[error("reading the launcher binary: {0}")]
    Launcher(String),
    #[error("key-encryption key: {0}")]
    Kek(String),
}

pub struct OpenedServer {
    pub router: Router,
    /// Holds the data directory lock for as long as the server lives.
    pub data_dir: DataDir,
    /// Set when this start created the bootstrap admin: where its credential file is.
    pub bootstrap_credential: Option<PathBuf>,
    /// The instances this server runs (stop them on shutdown).
    pub compute: Arc<LocalDriver>,
    /// The services' shared state (for embedding and tests).
    pub state: AppState,
}

impl OpenedServer {
    /// Stops every instance this server runs, then gives up its replica lease (they are all
    /// ended), so the other replicas and `rotate-kek` see it gone at once.
    pub async fn shutdown(&self) {
        self.compute.shutdown().await;
        if let Some(lease) = self.compute.lease()
            && let Err(e) = lease.release(&self.state).await
        {
            tracing::warn!(error = %e, "giving up this replica's lease");
        }
    }
}

pub async fn open(config: ServerConfig) -> Result<OpenedServer, StartupError> {
    let public_url = config.public_url.trim_end_matches('/').to_owned();
    let valid_url = public_url
        .parse::<Uri>()
        .is_ok_and(|u| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some());
    if !valid_url {
        return Err(StartupError::PublicUrl(config.public_url));
    }
    let data_dir = DataDir::open(&config.data_dir)?;
    let launcher = match &config.launcher {
        Some(path) => {
            let path = path.clone();
            let loaded =
                tokio::task::spawn_blocking(move || Launcher::load(&path).map_err(|e| (path, e)))
                    .await
                    .map_err(|e| StartupError::Launcher(e.to_string()))?
                    .map_err(|(path, e)| {
                        StartupError::Launcher(format!("{}: {e}", path.display()))
                    })?;
            Some(Arc::new(loaded))
        }
        None => None,
    };
    let store = Arc::new(match &config.database_url {
        Some(url) => {
            // Replicas share the database, so they must share the KEK that seals what is in it.
            if config.kek.is_none() {
                return Err(StartupError::Kek(
                    "a shared database (--database-url) needs the key-encryption key from \
                     outside the data directory, the same for every replica: pass --kek-file \
                     or set CLOISTER_KEK"
                        .into(),
                ));
            }
            Store::open_postgres(url, config.database_connections).await?
        }
        None => Store::open_sqlite(&data_dir.metadata_db()).await?,
    });
    let shared_database = config.database_url.is_some();
    let blobs: Arc<dyn cloister_store::BlobStore> = match &config.blob_url {
        Some(url) => Arc::new(cloister_store::ObjectBlobStore::open(
            url,
            config.blob_options.iter().cloned(),
        )?),
        None => Arc::new(FsBlobStore::open(&data_dir.blob_root()).await?),
    };
    // The KEK comes from outside (a file elsewhere, or the environment); only the embedded
    // single-machine default keeps one in the data directory.
    let kek = Arc::new(match &config.kek {
        Some(kek) => kek.clone(),
        None => {
            // Keys sealed by a KEK that is not here (moved out by `rotate-kek`, or a start with
            // --kek-file): a new key file would seal nothing and open nothing.
            let file = data_dir.root().join("keys").join(EMBEDDED_KEK_FILE);
            if !file.exists() && crate::secrets::kek_is_recorded(&store).await? {
                return Err(StartupError::Kek(format!(
                    "the keys in {} were sealed by a key-encryption key from outside the data directory: start with it (--kek-file or CLOISTER_KEK)",
                    data_dir.root().display()
                )));
            }
            data_dir.secret(EMBEDDED_KEK_FILE, 32)?
        }
    });
    if kek.len() != 32 {
        return Err(StartupError::Kek(format!(
            "the key-encryption key is {} bytes; it must be 32",
            kek.len()
        )));
    }
    crate::secrets::check_kek(&store, &kek)
        .await
        .map_err(|e| StartupError::Kek(e.to_string()))?;
    let keys_dir = data_dir.root().join("keys");
    let token_key =
        crate::secrets::access_token_key(&store, &kek, &keys_dir.join("access-token-hmac.key"))
            .await
            .map_err(|e| StartupError::Kek(e.to_string()))?;
    let attestation_keys = SigningKeys::open(
        Arc::clone(&store),
        Arc::clone(&kek),
        &public_url,
        Some(&keys_dir.join("attestation")),
    )
    .await?;
    let identity_ca = Arc::new(
        crate::secrets::identity_ca(&store, &kek, &keys_dir.join("identity-ca"))
            .await
            .map_err(|e| StartupError::IdentityCa {
                path: keys_dir.join("identity-ca"),
                detail: e.to_string(),
            })?,
    );
    let attestation_pki = Arc::new(
        crate::secrets::attestation_pki(&store, &kek)
            .await
            .map_err(|e| StartupError::Kek(e.to_string()))?,
    );
    let account_keys = SigningKeys::open(
        Arc::clone(&store),
        Arc::clone(&kek),
        &format!("{public_url}/accounts"),
        Some(&keys_dir.join("accounts")),
    )
    .await?;
    let lease = shared_database.then(|| ReplicaLease::new(config.replica_lease));
    // The name this replica's placements carry: its lease's, so a takeover releases them.
    let lease_name = lease.as_ref().map_or_else(
        || format!("local-{}", hex::encode(rand::random::<[u8; 8]>())),
        |l| l.replica().to_owned(),
    );
    let max_instances = config.max_instances.unwrap_or_else(|| {
        if config.guest_image.is_some() {
            compute::placement::default_max_vm_instances()
        } else {
            compute::placement::DEFAULT_MAX_PROCESS_INSTANCES
        }
    });
    if config.guest_image.is_none() {
        let disk_gb = config.instance_disk_gb.unwrap_or(compute::disk::DEFAULT_GB);
        compute::disk::warn_if_overcommitted(data_dir.root(), max_instances, disk_gb);
    }
    let state = AppState {
        authorizer: Authorizer::new(Arc::clone(&store), public_url.clone()),
        store,
        blobs,
        tokens: Arc::new(AccessTokens::new(&token_key, &public_url)),
        providers: Arc::default(),
        account_keys: Arc::new(account_keys),
        attestation_keys: Arc::new(attestation_keys),
        kek,
        identity_ca,
        attestation_pki,
        jwks: Arc::new(JwksCache::new(FetchPolicy::new(
            &public_url,
            config.oidc_fetch_allow.clone(),
        ))),
        attestation_token_lifetime_secs: config.attestation_token_lifetime_secs,
        allow_insecure_evidence: config.allow_insecure_evidence,
        project_instance_quota: config.project_instance_quota,
        user_project_quota: config.user_project_quota,
        judge: Arc::new(crate::federation::judge::Judge::new(
            config.condition_worker.clone(),
        )),
        metrics: Arc::default(),
        compute: Arc::new({
            let driver =
                LocalDriver::new(data_dir.root().join("instances"), launcher.clone(), lease)
                    .with_disk_gb(config.instance_disk_gb.unwrap_or(compute::disk::DEFAULT_GB));
            match config.guest_image.clone() {
                Some(image) => driver.with_vm(compute::driver::VmSettings {
                    host: compute::vm::HostCapabilities::detect().for_image(&image),
                    image,
                    accel: compute::vm::Accelerator::detect(),
                }),
                None => driver,
            }
        }),
        placer: Arc::new(compute::placement::Placer::new(
            lease_name,
            max_instances,
            shared_database,
        )),
        tdx_collateral_dir: data_dir.root().join("tee/tdx-collateral"),
        vcek_cache_dir: data_dir.root().join("tee/vcek"),
        hardware_evidence_time: config.hardware_evidence_time,
        storage_limits: config.storage_limits,
        public_url,
    };
    if let Some(launcher) = &launcher {
        register_launcher(&state, launcher)
            .await
            .map_err(StartupError::Bootstrap)?;
    }
    if let Some(image) = &config.guest_image {
        register_guest_image(&state, image)
            .await
            .map_err(StartupError::Bootstrap)?;
    }
    registry::spawn_upload_sweeper(state.clone());
    crate::storage::spawn_sweeper(state.clone());
    spawn_key_refresh(&state);
    // Instances are processes of this server: none survived its last stop. With a shared
    // database, only those this replica ran (their runtime directories are in its data
    // directory): the others are other replicas', which still run them.
    let previous = shared_database.then(|| state.compute.previous_run());
    mark_instances_terminated(&state, previous)
        .await
        .map_err(StartupError::Bootstrap)?;
    if let Some(lease) = state.compute.lease() {
        // Held before serving, so a replica that serves is always seen running.
        lease.renew(&state).await.map_err(StartupError::Bootstrap)?;
        compute::replicas::spawn_sync(&state);
    }
    compute::placement::spawn(&state);
    let bootstrap_credential = bootstrap_admin(&state, &data_dir)
        .await
        .map_err(StartupError::Bootstrap)?;
    Ok(OpenedServer {
        compute: Arc::clone(&state.compute),
        state: state.clone(),
        router: router(state, config.max_body_bytes),
        data_dir,
        bootstrap_credential,
    })
}

/// Marks TERMINATED the instances that are not, all or only those with the given ids.
async fn mark_instances_terminated(
    state: &AppState,
    only: Option<std::collections::HashSet<u64>>,
) -> Result<(), ApiError> {
    let s = &state.store;
    for p in s.list_projects().await? {
        for i in s.list_instances(&p.id, "-").await? {
            if i.status != InstanceStatus::Terminated
                && only.as_ref().is_none_or(|o| o.contains(&i.id))
            {
                s.release_instance(&i.resource_name(), None).await?;
            }
        }
    }
    Ok(())
}

/// The platform's instance identity CA: its key (0600) and certificate in `keys/identity-ca/`,
/// created on first start.
pub fn router(state: AppState, max_body_bytes: usize) -> Router {
    Router::new()
        .merge(health::router())
        .merge(auth::router::router())
        .merge(iam::projects::router())
        .merge(iam::service_accounts::router())
        .merge(federation::resources::router())
        .merge(federation::sts::router())
        .merge(oidc::router())
        .merge(kms::router::router())
        .merge(kms::grpc::router(state.clone()))
        .merge(storage::buckets::router())
        .merge(storage::objects::router())
        .merge(storage::copy::router())
        .merge(storage::compose::router())
        .merge(storage::upload::router())
        .merge(registry::router())
        .merge(compute::router())
        .merge(metrics::router())
        .merge(verifier::challenges::router())
        .merge(verifier::reference_values::router())
        .merge(verifier::identity_ca::router())
        .merge(verifier::signing_keys::router())
        .merge(iam::users::router())
        .merge(iam::roles::router())
        .merge(audit::router())
        .merge(console::router())
        .fallback(not_found)
        // Inside the routing: the matched route template labels each request.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn not_found(uri: Uri, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    // A gRPC client understands a gRPC status, not a JSON body.
    let grpc = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if grpc {
        return kms::grpc::unimplemented(uri.path().trim_start_matches('/')).into_response();
    }
    ApiError::NotFound(format!(
        "No API at {}: check the endpoint and the path",
        uri.path()
    ))
    .into_response()
}

/// The embedded default trusts the launcher it ships: its measurement becomes a reference
/// value (support attributes LATEST, STABLE, USABLE), so its instances' tokens carry them.
async fn register_launcher(state: &AppState, launcher: &Launcher) -> Result<(), ApiError> {
    let record = cloister_store::ReferenceValueRecord {
        measurement: launcher.measurement(),
        swversion: numeric_version(env!("CARGO_PKG_VERSION")),
        dbgstat: "disabled-since-boot".into(),
        support_attributes: vec!["LATEST".into(), "STABLE".into(), "USABLE".into()],
        description: "the launcher this server ships (registered at start)".into(),
        create_time: time::OffsetDateTime::now_utc(),
    };
    Ok(state.store.put_reference_value(&record).await?)
}

/// `swversion` is a number in Google's tokens (`int(assertion.swversion[0]) >= N` conditions):
/// major·10000 + minor·100 + patch, so later releases compare greater.
fn numeric_version(semver: &str) -> String {
    let mut parts = semver
        .split(['.', '-', '+'])
        .map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    let (major, minor, patch) = (next(), next(), next());
    major
        .saturating_mul(10_000)
        .saturating_add(minor.saturating_mul(100))
        .saturating_add(patch)
        .to_string()
}

/// The VM driver's guest image, by its measured boot: the production image is vouched for
/// like the launcher; the debug image (a console, `debugonly` policies) says `dbgstat:
/// enabled` and has no support attributes.
async fn register_guest_image(
    state: &AppState,
    image: &compute::vm::GuestImage,
) -> Result<(), ApiError> {
    for record in guest_image_reference_values(image, time::OffsetDateTime::now_utc()) {
        state.store.put_reference_value(&record).await?;
    }
    Ok(())
}

/// The reference values of the guest image: its vTPM boot measurement (PCR 4 and PCR 9), and
/// where it has an SNP launch, the SEV-SNP launch digest an SNP guest booting it reports.
pub(crate) fn guest_image_reference_values(
    image: &compute::vm::GuestImage,
    now: time::OffsetDateTime,
) -> Vec<cloister_store::ReferenceValueRecord> {
    let (dbgstat, support_attributes, what) = if image.debug {
        ("enabled", vec![], "debug guest image")
    } else {
        (
            "disabled-since-boot",
            vec!["LATEST".into(), "STABLE".into(), "USABLE".into()],
            "guest image",
        )
    };
    let record = |measurement: &str, how: String| cloister_store::ReferenceValueRecord {
        measurement: measurement.to_owned(),
        swversion: numeric_version(env!("CARGO_PKG_VERSION")),
        dbgstat: dbgstat.into(),
        support_attributes: support_attributes.clone(),
        description: format!("the VM driver's {what} ({how}; registered at start)"),
        create_time: now,
    };
    let mut values = vec![record(
        &image.measurement,
        "PCR 4 and PCR 9 of its measured boot".into(),
    )];
    if let Some(snp) = &image.snp {
        values.push(record(
            &snp.measurement,
            format!(
                "SEV-SNP launch digest: {}, {} vCPU {}, kernel hashes",
                snp.firmware.display(),
                compute::vm::VCPUS,
                compute::vm::SNP_CPU
            ),
        ));
    }
    values
}

/// On a server with no users, creates the bootstrap admin and writes its credential (0600) to
/// the data directory. Returns the file's path when it did.
async fn bootstrap_admin(
    state: &AppState,
    data_dir: &DataDir,
) -> Result<Option<PathBuf>, ApiError> {
    if !state.store.list_users().await?.is_empty() {
        return Ok(None);
    }
    let email =
        Email::parse(BOOTSTRAP_ADMIN_EMAIL).map_err(|e| ApiError::Internal(e.to_string()))?;
    let admin = UserRecord {
        email: email.clone(),
        display_name: "Bootstrap admin".into(),
        admin: true,
        create_time: time::OffsetDateTime::now_utc(),
    };
    let token_uri = format!("{}/oauth2/token", state.public_url);
    let (record, file) = auth::credentials::generate(&email, &token_uri, admin.create_time);
    // The file first: a crash before the database writes leaves no users, so the next start
    // bootstraps again and overwrites it.
    let path = data_dir.root().join(BOOTSTRAP_CREDENTIAL_FILE);
    let json = serde_json::to_vec_pretty(&file).map_err(|e| ApiError::Internal(e.to_string()))?;
    cloister_store::data_dir::write_private_file(&path, &json)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let created = match state.store.create_user(&admin).await {
        Ok(()) => {
            state.store.create_credential(&record).await?;
            true
        }
        // Another replica, starting at the same time, created the admin first: its data
        // directory holds the credential.
        Err(cloister_store::StoreError::AlreadyExists(_)) => false,
        Err(e) => return Err(e.into()),
    };
    if !created {
        let _ = std::fs::remove_file(&path);
        return Ok(None);
    }
    Ok(Some(path))
}

/// Every minute, reads the signing keys again, so a rotation on another replica reaches this
/// one's JWKS and signer (an unknown key id also reloads them at once).
fn spawn_key_refresh(state: &AppState) {
    let keys = [
        Arc::clone(&state.attestation_keys),
        Arc::clone(&state.account_keys),
    ];
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            for k in &keys {
                if let Err(e) = k.reload().await {
                    tracing::warn!(error = %e, "reloading signing keys");
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_shipped_launchers_swversion_is_a_number_that_grows_with_the_release() {
        assert_eq!(super::numeric_version("0.1.0"), "100");
        assert_eq!(super::numeric_version("1.2.3"), "10203");
        assert!(super::numeric_version("0.2.0").parse::<u64>().unwrap() > 100);
    }
}
