//! The local driver (the embedded default): an instance is a runtime directory, a swtpm (for
//! `VTPM`) whose attestation key the platform's identity CA certifies and whose PCR 12 holds
//! the launcher's measurement before the launcher starts, a metadata server on loopback, and
//! the launcher process, whose output is the serial console and whose exit code drives the
//! instance's state (0/1/2 → TERMINATED, 3 → restarted, 4 → held as SUSPENDED).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cloister_eventlog::HashAlg;
use cloister_store::InstanceRecord;
use cloister_tpm::LAUNCHER_PCR;
use cloister_tpm::identity::InstanceIdentity;
use tokio::sync::watch;

use super::metadata_server::{self, InstanceInfo};
use super::replicas::ReplicaLease;
use crate::error::ApiError;
use crate::state::AppState;

/// The launcher binary and its digest in each PCR bank (what the platform extends into
/// PCR 12, and what reference values name).
pub struct Launcher {
    pub path: PathBuf,
    digests: BTreeMap<HashAlg, Vec<u8>>,
}

impl Launcher {
    /// Reads and hashes the binary once (it is large; the driver extends the digests).
    pub fn load(path: &Path) -> std::io::Result<Self> {
        let bytes = std::fs::read(path)?;
        let digests = [HashAlg::Sha1, HashAlg::Sha256]
            .into_iter()
            .map(|b| (b, b.hash(&[&bytes])))
            .collect();
        Ok(Launcher {
            path: path.to_owned(),
            digests,
        })
    }

    /// PCR 12 in the SHA-256 bank after the platform's one extension: the reference value.
    pub fn measurement(&self) -> String {
        let digest = self
            .digests
            .get(&HashAlg::Sha256)
            .cloned()
            .unwrap_or_default();
        hex::encode(HashAlg::Sha256.hash(&[&[0u8; 32], &digest]))
    }
}

struct Running {
    instance: InstanceRecord,
    stop: watch::Sender<bool>,
    supervisor: tokio::task::JoinHandle<()>,
    metadata: tokio::task::JoinHandle<()>,
    _tpm: Option<cloister_tpm::swtpm::Swtpm>,
}

pub struct LocalDriver {
    root: PathBuf,
    launcher: Option<Arc<Launcher>>,
    running: Mutex<HashMap<String, Running>>,
    /// With a shared database: this replica's lease on the instances it runs.
    lease: Option<ReplicaLease>,
}

fn unavailable(m: String) -> ApiError {
    ApiError::FailedPrecondition(m)
}

fn swtpm_available() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("swtpm").is_file()))
    })
}

impl LocalDriver {
    pub fn new(
        root: PathBuf,
        launcher: Option<Arc<Launcher>>,
        lease: Option<ReplicaLease>,
    ) -> Self {
        LocalDriver {
            root,
            launcher,
            running: Mutex::default(),
            lease,
        }
    }

    pub fn lease(&self) -> Option<&ReplicaLease> {
        self.lease.as_ref()
    }

    pub fn launcher(&self) -> Option<&Launcher> {
        self.launcher.as_deref()
    }

    fn dir(&self, instance: &InstanceRecord) -> PathBuf {
        self.root.join(instance.id.to_string())
    }

    /// What this host can run, or why not: never a downgrade to another type.
    pub fn check_type(&self, kind: &str) -> Result<(), ApiError> {
        match kind {
            "INSECURE" => {}
            "VTPM" if swtpm_available() => {}
            "VTPM" => {
                return Err(unavailable(
                    "this host cannot provide VTPM: swtpm is not installed (apt-get install swtpm swtpm-tools), and Cloister never downgrades an instance to another type".into(),
                ));
            }
            "SEV_SNP" | "TDX" => {
                return Err(unavailable(format!(
                    "this host cannot provide {kind}: the local driver runs instances as processes on this machine, which is not a {kind} guest (inside a {kind} guest, run `cloister launcher --tee sev-snp|tdx`, which attests with the hardware); Cloister never downgrades an instance to another type"
                )));
            }
            other => {
                return Err(ApiError::InvalidArgument(format!(
                    "confidentialInstanceType {other:?} is not one of VTPM, INSECURE, SEV_SNP, TDX"
                )));
            }
        }
        if self.launcher.is_none() {
            return Err(unavailable(
                "this server has no launcher binary configured, so it cannot run instances".into(),
            ));
        }
        Ok(())
    }

    pub async fn start(
        &self,
        state: &AppState,
        instance: &InstanceRecord,
        project_number: u64,
    ) -> Result<(), ApiError> {
        let launcher = self
            .launcher
            .clone()
            .ok_or_else(|| unavailable("no launcher configured".into()))?;
        let dir = self.dir(instance);
        let internal =
            |e: String| ApiError::Internal(format!("starting instance {}: {e}", instance.name));
        std::fs::create_dir_all(dir.join("run")).map_err(|e| internal(e.to_string()))?;
        let service_account = cloister_domain::Email::parse(&instance.service_account)
            .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
        let mut launcher_args: Vec<String> = vec![];
        let tpm = if instance.confidential_type == "VTPM" {
            let identity = InstanceIdentity {
                zone: instance.zone.clone(),
                project_number,
                project_id: instance.project_id.as_str().to_owned(),
                instance_id: instance.id,
                instance_name: instance.name.clone(),
            };
            let (tpm, tcti) = provision_vtpm(state, &dir, &identity, &launcher)
                .await
                .map_err(internal)?;
            launcher_args.extend(["--tee".into(), "vtpm".into(), "--tcti".into(), tcti]);
            Some(tpm)
        } else {
            launcher_args.extend(["--tee".into(), "insecure".into()]);
            None
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| internal(e.to_string()))?;
        let address = listener.local_addr().map_err(|e| internal(e.to_string()))?;
        let info = InstanceInfo {
            project_id: instance.project_id.as_str().to_owned(),
            project_number,
            zone: instance.zone.clone(),
            name: instance.name.clone(),
            id: instance.id,
            service_account,
            attributes: instance.metadata.clone(),
        };
        let app = metadata_server::router(state.clone(), info);
        let metadata = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        launcher_args.extend([
            "--metadata-host".into(),
            address.to_string(),
            "--api-endpoint".into(),
            state.public_url.clone(),
            "--runtime-dir".into(),
            dir.join("run").display().to_string(),
        ]);
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            state.clone(),
            instance.resource_name(),
            launcher.path.clone(),
            launcher_args,
            dir.join("serial.log"),
            stopped,
        ));
        let running = Running {
            instance: instance.clone(),
            stop,
            supervisor,
            metadata,
            _tpm: tpm,
        };
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance.resource_name(), running);
        if let Some(lease) = &self.lease
            && let Err(e) = lease.renew(state).await
        {
            tracing::warn!(error = %e, "renewing this replica's lease on its instances");
        }
        Ok(())
    }

    /// Stops everything the instance started and removes its runtime directory.
    pub async fn stop(&self, instance: &InstanceRecord) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&instance.resource_name());
        if let Some(r) = running {
            let _ = r.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(30), r.supervisor).await;
            r.metadata.abort();
        }
        let dir = self.dir(instance);
        if let Err(e) = std::fs::remove_dir_all(&dir)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::error!(error = %e, dir = %dir.display(), "could not remove an instance's runtime directory");
        }
    }

    /// The ids of the instances a previous run of this server ran (their runtime directories
    /// are still here: nothing stops them all before a crash, or on a shutdown).
    pub fn previous_run(&self) -> std::collections::HashSet<u64> {
        std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect()
    }

    /// The instances this driver runs now.
    pub fn running(&self) -> Vec<InstanceRecord> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|r| r.instance.clone())
            .collect()
    }

    /// The serial console of an instance this driver ran (none when its runtime directory is
    /// not here: another replica runs it, or it was deleted).
    pub fn console(&self, instance: &InstanceRecord) -> Option<Vec<u8>> {
        std::fs::read(self.console_path(instance)).ok()
    }

    /// The size of [`Self::console`], without reading it.
    pub fn console_size(&self, instance: &InstanceRecord) -> Option<u64> {
        std::fs::metadata(self.console_path(instance))
            .ok()
            .map(|m| m.len())
    }

    fn console_path(&self, instance: &InstanceRecord) -> PathBuf {
        self.dir(instance).join("serial.log")
    }

    /// Stops every instance (the server is shutting down).
    pub async fn shutdown(&self) {
        let all: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in all {
            let _ = r.stop.send(true);
            let _ = tokio::time::timeout(Duration::from_secs(30), r.supervisor).await;
            r.metadata.abort();
        }
    }
}

/// Starts the instance's swtpm, certifies its AK, and measures the launcher into PCR 12.
async fn provision_vtpm(
    state: &AppState,
    dir: &Path,
    identity: &InstanceIdentity,
    launcher: &Launcher,
) -> Result<(cloister_tpm::swtpm::Swtpm, String), String> {
    let tpm_dir = dir.join("tpm");
    let digests = launcher.digests.clone();
    let (tpm, tcti, ak) = tokio::task::spawn_blocking(move || -> Result<_, String> {
        std::fs::create_dir_all(&tpm_dir).map_err(|e| e.to_string())?;
        let tpm = cloister_tpm::swtpm::Swtpm::start(&tpm_dir).map_err(|e| e.to_string())?;
        let tcti = tpm.tcti();
        let mut attester =
            cloister_tpm::attester::VtpmAttester::open(&tcti).map_err(|e| e.to_string())?;
        let ak = attester.ak_public_key().map_err(|e| e.to_string())?;
        let banks = attester.active_banks().map_err(|e| e.to_string())?;
        let launcher: BTreeMap<HashAlg, Vec<u8>> = banks
            .iter()
            .filter_map(|b| digests.get(b).map(|d| (*b, d.clone())))
            .collect();
        attester
            .extend(LAUNCHER_PCR, &launcher)
            .map_err(|e| e.to_string())?;
        Ok((tpm, tcti, ak))
    })
    .await
    .map_err(|e| e.to_string())??;
    let cert = state
        .identity_ca
        .certify_ak(&ak, identity, time::OffsetDateTime::now_utc())
        .map_err(|e| e.to_string())?;
    // Into the TPM's NV, where the launcher reads it (as on a Shielded VM).
    let nv_tcti = tcti.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let mut attester =
            cloister_tpm::attester::VtpmAttester::open(&nv_tcti).map_err(|e| e.to_string())?;
        attester.store_ak_cert(&cert).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok((tpm, tcti))
}

/// Runs the launcher until it exits for good, or until told to stop (SIGTERM, then SIGKILL).
async fn supervise(
    state: AppState,
    name: String,
    launcher: PathBuf,
    args: Vec<String>,
    serial: PathBuf,
    mut stopped: watch::Receiver<bool>,
) {
    let set = |status: &'static str| {
        let (state, name) = (state.clone(), name.clone());
        async move {
            if let Err(e) = state
                .db(move |s| s.set_instance_status(&name, status))
                .await
            {
                tracing::error!(error = %e, "could not record an instance's status");
            }
        }
    };
    loop {
        let log = match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&serial)
        {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "cannot open the serial log");
                return set("TERMINATED").await;
            }
        };
        let err_log = log.try_clone().ok();
        let child = tokio::process::Command::new(&launcher)
            .arg("launcher")
            .args(&args)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(err_log.map_or(std::process::Stdio::null(), std::process::Stdio::from))
            .kill_on_drop(true)
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the launcher");
                return set("TERMINATED").await;
            }
        };
        set("RUNNING").await;
        let code = tokio::select! {
            status = child.wait() => status.ok().and_then(|s| s.code()).unwrap_or(2),
            _ = stopped.changed() => {
                if let Some(pid) = child.id() {
                    // SAFETY: kill(2) on our own child's pid; no memory is touched.
                    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                }
                if tokio::time::timeout(Duration::from_secs(20), child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return set("TERMINATED").await;
            }
        };
        match code {
            3 => {
                tracing::info!(instance = %name, "the launcher asked for a restart");
                continue;
            }
            4 => return set("SUSPENDED").await,
            _ => return set("TERMINATED").await,
        }
    }
}
