//! The local driver (the embedded default): an instance is a runtime directory, a sandbox of
//! two network namespaces (`sandbox.rs`), a swtpm (for `VTPM`) in the platform namespace whose
//! attestation key the platform's identity CA certifies and whose PCR 12 holds the launcher's
//! measurement before the launcher starts, a metadata server reached only from inside the
//! sandbox, and the launcher process (in the platform namespace), whose output is the serial
//! console and whose exit code drives the instance's state (0/1/2 → TERMINATED, 3 →
//! restarted, 4 → held as SUSPENDED). When the launcher exits for good, all of it stops.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use cloister_eventlog::HashAlg;
use cloister_store::{ConfidentialType, InstanceRecord, InstanceStatus};
use cloister_tpm::LAUNCHER_PCR;
use cloister_tpm::identity::InstanceIdentity;
use tokio::sync::watch;

use super::disk::{self, InstanceDisk};
use super::metadata_server::{self, InstanceInfo};
use super::replicas::ReplicaLease;
use super::sandbox::{
    self, ApiAddress, ChildEntry, METADATA_IP, NetNs, SWTPM_PORT, Sandbox, SandboxError, in_netns,
};
use super::vm::{self, Accelerator, GuestImage, HostCapabilities, VmPaths};
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
}

/// What an instance runs beside its launcher. The supervisor owns it and drops it as soon as
/// the launcher exits for good, so an instance that leaves RUNNING has no vTPM, metadata
/// server or namespace left.
struct Platform {
    _sandbox: Option<Sandbox>,
    _tpm: Option<cloister_tpm::swtpm::Swtpm>,
    _vm_tpm: Option<cloister_tpm::swtpm::QemuSwtpm>,
    _metadata: Task,
    /// Dropped last (fields drop in order): the launcher's files are on it.
    _disk: Option<InstanceDisk>,
}

/// A task that ends when its handle is dropped.
struct Task(tokio::task::JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What runs the instance: the launcher as a process in the instance's sandbox, or a VM
/// whose PID 1 runs it.
enum Launch {
    Process {
        path: PathBuf,
        args: Vec<String>,
        entry: ChildEntry,
        /// runc's state of the instance's containers.
        runc_root: PathBuf,
    },
    Vm {
        qemu_args: Vec<String>,
        /// Where the guest writes the launcher's exit code.
        exit_port: PathBuf,
        /// QEMU's monitor, to press the guest's power button.
        qmp: PathBuf,
    },
}

/// The VM driver's settings (`--compute-driver vm`): the guest image, how QEMU runs, and
/// what the host offers confidential guests.
pub struct VmSettings {
    pub image: GuestImage,
    pub accel: Accelerator,
    pub host: HostCapabilities,
}

/// Stops what a crashed run left running of the instances under `root`: their containers
/// (through runc's own state), then their launchers, VMs and swtpms (found, in one pass over the
/// processes, by the runtime directory their command lines name), and releases their
/// namespaces.
fn stop_leftovers(root: &Path) {
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
        delete_containers(&dir.path().join("run/runc"));
    }
    let needle = format!("{}/", root.display());
    for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(process.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let program = args.first().map(|a| a.rsplit('/').next().unwrap_or(a));
        // swtpm, the local driver's launchers and the VM driver's QEMUs.
        let ours = matches!(program, Some("swtpm" | "qemu-system-x86_64"))
            || args.get(1).is_some_and(|a| a == "launcher");
        if ours && args.iter().any(|a| a.contains(&needle)) {
            tracing::warn!(pid, "stopping a process a crashed run left behind");
            // SAFETY: kill(2) on a pid; no memory is touched.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for dir in std::fs::read_dir(root).into_iter().flatten().flatten() {
        release_namespaces(&dir.path());
        release_disk(&dir.path());
    }
}

/// An instance's disk file, beside the runtime directory it is mounted on.
const DISK_FILE: &str = "disk.img";

/// Unmounts an instance's disk and removes its file (a crashed run's, or one whose
/// supervisor did not end in time).
fn release_disk(dir: &Path) {
    disk::release(&dir.join("run"), &dir.join(DISK_FILE));
}

/// Kills and deletes every container in a runc state directory: those a launcher that died
/// (or a crashed run) could not stop itself.
fn delete_containers(runc_root: &Path) {
    for container in std::fs::read_dir(runc_root).into_iter().flatten().flatten() {
        let _ = std::process::Command::new("runc")
            .arg("--root")
            .arg(runc_root)
            .args(["delete", "--force"])
            .arg(container.file_name())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Releases the namespace mounts under an instance's runtime directory (none when its
/// sandbox was dropped; a crashed server's otherwise).
fn release_namespaces(dir: &Path) {
    for ns in ["platform", "workload"] {
        sandbox::release(&dir.join("net").join(ns));
    }
}

pub struct LocalDriver {
    root: PathBuf,
    launcher: Option<Arc<Launcher>>,
    running: Mutex<HashMap<String, Running>>,
    /// Instances being stopped: out of `running`, their launchers not yet ended.
    stopping: std::sync::atomic::AtomicUsize,
    /// With a shared database: this replica's lease on the instances it runs.
    lease: Option<ReplicaLease>,
    /// Set: instances are VMs (the VM driver), not processes.
    vm: Option<VmSettings>,
    /// The size of a process instance's disk (`disk.rs`), GiB.
    disk_gb: u32,
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
        // A previous run of this server (it held the data directory's lock, so nothing else
        // runs these instances) may have crashed with its instances still running: nothing
        // of them may outlive it.
        stop_leftovers(&root);
        LocalDriver {
            root,
            launcher,
            running: Mutex::default(),
            stopping: Default::default(),
            lease,
            vm: None,
            disk_gb: disk::DEFAULT_GB,
        }
    }

    /// Gives each process instance a disk of `gb` GiB.
    pub fn with_disk_gb(mut self, gb: u32) -> Self {
        self.disk_gb = gb;
        self
    }

    /// Runs instances as VMs booting `vm`'s image.
    pub fn with_vm(mut self, vm: VmSettings) -> Self {
        self.vm = Some(vm);
        self
    }

    pub fn vm(&self) -> Option<&VmSettings> {
        self.vm.as_ref()
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
    pub fn check_type(&self, kind: ConfidentialType) -> Result<(), ApiError> {
        match kind {
            ConfidentialType::Insecure => {}
            ConfidentialType::Vtpm if swtpm_available() => {}
            ConfidentialType::Vtpm => {
                return Err(unavailable(
                    "this host cannot provide VTPM: swtpm is not installed (apt-get install swtpm swtpm-tools), and Cloister never downgrades an instance to another type".into(),
                ));
            }
            ConfidentialType::SevSnp | ConfidentialType::Tdx if self.vm.is_some() => {
                if let Some(vm) = &self.vm {
                    vm.host
                        .check(kind, vm.accel)
                        .map_err(|e| unavailable(e.to_string()))?;
                }
            }
            ConfidentialType::SevSnp | ConfidentialType::Tdx => {
                return Err(unavailable(format!(
                    "this host cannot provide {kind}: the local driver runs instances as processes on this machine, which is not a {kind} guest (inside a {kind} guest, run `cloister launcher --tee sev-snp|tdx`, which attests with the hardware); Cloister never downgrades an instance to another type"
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
        if let Some(vm) = &self.vm {
            return self
                .start_vm(state, instance, project_number, vm, &launcher)
                .await;
        }
        let dir = self.dir(instance);
        let internal =
            |e: String| ApiError::Internal(format!("starting instance {}: {e}", instance.name));
        std::fs::create_dir_all(dir.join("run")).map_err(|e| internal(e.to_string()))?;
        // Everything the launcher and the workload write goes to the instance's own disk.
        let disk = {
            let (file, mount) = (dir.join(DISK_FILE), dir.join("run"));
            let bytes = disk::gib(self.disk_gb);
            tokio::task::spawn_blocking(move || InstanceDisk::create(&file, &mount, bytes))
                .await
                .map_err(|e| internal(e.to_string()))?
                .map_err(|e| match e {
                    // The host, not the request: it lacks loop devices or e2fsprogs.
                    e @ disk::DiskError::Tool(..) => unavailable(format!(
                        "this host cannot make instance {}'s disk ({e}): the local driver needs loop devices, mkfs.ext4 and mount (scripts/install-deps.sh)",
                        instance.name
                    )),
                    e => internal(format!("making its disk: {e}")),
                })?
        };
        // The metadata server listens on a socket in the runtime directory, which only the
        // sandbox's forwarders reach (from GCE's address inside the instance).
        let metadata_socket = dir.join("metadata.sock");
        let metadata = serve_metadata(state, instance, project_number, &metadata_socket)?;
        let api = ApiAddress::resolve(&state.public_url)
            .await
            .map_err(unavailable)?;
        let sandbox = Sandbox::create(&dir, &api, &metadata_socket)
            .await
            .map_err(|e| match e {
                e @ (SandboxError::Namespace(_) | SandboxError::NoIp(_)) => {
                    unavailable(e.to_string())
                }
                e => internal(e.to_string()),
            })?;
        let mut launcher_args: Vec<String> = vec![];
        let tpm = if instance.confidential_type == ConfidentialType::Vtpm {
            let identity = InstanceIdentity {
                zone: instance.zone.clone(),
                project_number,
                project_id: instance.project_id.as_str().to_owned(),
                instance_id: instance.id,
                instance_name: instance.name.clone(),
            };
            let (tpm, tcti) = provision_vtpm(state, &dir, &sandbox, &identity, &launcher)
                .await
                .map_err(internal)?;
            launcher_args.extend(["--tee".into(), "vtpm".into(), "--tcti".into(), tcti]);
            Some(tpm)
        } else {
            launcher_args.extend(["--tee".into(), "insecure".into()]);
            None
        };
        launcher_args.extend([
            "--metadata-host".into(),
            METADATA_IP.to_string(),
            "--api-endpoint".into(),
            state.public_url.clone(),
            "--runtime-dir".into(),
            dir.join("run").display().to_string(),
            "--workload-netns".into(),
            sandbox.workload.path().display().to_string(),
        ]);
        let entry = ChildEntry::new(&sandbox).map_err(|e| internal(e.to_string()))?;
        let platform = Platform {
            _sandbox: Some(sandbox),
            _tpm: tpm,
            _vm_tpm: None,
            _metadata: metadata,
            _disk: Some(disk),
        };
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            state.clone(),
            instance.resource_name(),
            Launch::Process {
                path: launcher.path.clone(),
                args: launcher_args,
                entry,
                runc_root: dir.join("run/runc"),
            },
            dir.join("serial.log"),
            platform,
            stopped,
        ));
        self.register(state, instance, stop, supervisor).await
    }

    /// Makes a started instance findable (to stop, list, read its console), then stops it
    /// again if it was deleted meanwhile.
    async fn register(
        &self,
        state: &AppState,
        instance: &InstanceRecord,
        stop: watch::Sender<bool>,
        supervisor: tokio::task::JoinHandle<()>,
    ) -> Result<(), ApiError> {
        let running = Running {
            instance: instance.clone(),
            stop,
            supervisor,
        };
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(instance.resource_name(), running);
        // A delete that arrived while this instance was starting found nothing to stop:
        // now that it can be found, stop it if its record is gone.
        let name = instance.resource_name();
        if state.store.get_instance(&name).await?.is_none() {
            self.stop(instance).await;
            self.forget(instance);
            return Err(ApiError::NotFound(format!(
                "instance {} was deleted while it started",
                instance.name
            )));
        }
        if let Some(lease) = &self.lease
            && let Err(e) = lease.renew(state).await
        {
            tracing::warn!(error = %e, "renewing this replica's lease on its instances");
        }
        Ok(())
    }

    /// Stops everything the instance started and removes its runtime directory. A single
    /// server keeps the console, as Compute Engine keeps a stopped instance's, until the
    /// instance is deleted (`forget`); with a shared database the copy in the blob store is
    /// the console (`console.rs`), and nothing of the instance may stay here: a directory
    /// left behind would name it a previous run's at this replica's next start.
    pub async fn stop(&self, instance: &InstanceRecord) {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&instance.resource_name());
        let dir = self.dir(instance);
        if let Some(r) = running {
            use std::sync::atomic::Ordering;
            self.stopping.fetch_add(1, Ordering::SeqCst);
            let _ = r.stop.send(true);
            let mut supervisor = r.supervisor;
            if tokio::time::timeout(STOP_GRACE + Duration::from_secs(10), &mut supervisor)
                .await
                .is_err()
            {
                // Stuck (a runc that does not answer, say): ended here, its platform dropped
                // before anything is released, so no late cleanup of this run can reach a
                // next run's disk or containers at the same paths.
                tracing::warn!(instance = %instance.resource_name(), "the instance did not stop in time: ending it");
                supervisor.abort();
                let _ = supervisor.await;
                let runc = dir.join("run/runc");
                let _ = tokio::task::spawn_blocking(move || delete_containers(&runc)).await;
            }
            self.stopping.fetch_sub(1, Ordering::SeqCst);
        }
        release_namespaces(&dir);
        release_disk(&dir);
        let console = self.console_path(instance);
        let entries = std::fs::read_dir(&dir).into_iter().flatten().flatten();
        for entry in entries.filter(|e| self.lease.is_some() || e.path() != console) {
            let path = entry.path();
            let removed = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
            if let Err(e) = removed {
                tracing::error!(error = %e, path = %path.display(), "could not remove part of an instance's runtime directory");
            }
        }
        if self.lease.is_some() {
            self.forget(instance);
        }
    }

    /// Removes what is left of a deleted instance here: its console.
    pub fn forget(&self, instance: &InstanceRecord) {
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

    /// How many instances still run here: their launchers have not ended for good, whatever
    /// their records say (one deleted elsewhere runs until the sync has stopped it).
    pub fn live(&self) -> usize {
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| !r.stop.is_closed())
            .count();
        running + self.stopping.load(std::sync::atomic::Ordering::SeqCst)
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
        }
    }
}

/// Starts the instance's metadata server on a unix socket (only the platform's forwarders
/// reach it); it stops when the returned task is dropped.
fn serve_metadata(
    state: &AppState,
    instance: &InstanceRecord,
    project_number: u64,
    socket: &Path,
) -> Result<Task, ApiError> {
    let internal =
        |e: String| ApiError::Internal(format!("starting instance {}: {e}", instance.name));
    let service_account = cloister_domain::Email::parse(&instance.service_account)
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)
        .map_err(|e| internal(format!("{}: {e}", socket.display())))?;
    let info = InstanceInfo {
        project_id: instance.project_id.as_str().to_owned(),
        project_number,
        zone: instance.zone.clone(),
        name: instance.name.clone(),
        id: instance.id,
        service_account,
        attributes: instance.metadata.clone(),
        create_time: instance.create_time.unix_timestamp(),
    };
    let app = metadata_server::router(state.clone(), info);
    Ok(Task(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })))
}

impl LocalDriver {
    /// The VM driver's start: the metadata server, the vTPM (provisioned, then handed to
    /// QEMU), the launch settings the guest reads through fw_cfg, and QEMU under the
    /// supervisor.
    async fn start_vm(
        &self,
        state: &AppState,
        instance: &InstanceRecord,
        project_number: u64,
        vm: &VmSettings,
        launcher: &Launcher,
    ) -> Result<(), ApiError> {
        let dir = self.dir(instance);
        let paths = VmPaths::new(&dir);
        let internal =
            |e: String| ApiError::Internal(format!("starting instance {}: {e}", instance.name));
        std::fs::create_dir_all(&dir).map_err(|e| internal(e.to_string()))?;
        let metadata = serve_metadata(state, instance, project_number, &paths.metadata_socket)?;
        let api = ApiAddress::resolve(&state.public_url)
            .await
            .map_err(unavailable)?;
        let kind = instance.confidential_type;
        let tee = match kind {
            ConfidentialType::Vtpm => "vtpm",
            ConfidentialType::Insecure => "insecure",
            ConfidentialType::SevSnp => "sev-snp",
            ConfidentialType::Tdx => "tdx",
        };
        let settings = serde_json::json!({
            "api_endpoint": state.public_url,
            "api_host": api.name,
            "tee": tee,
        });
        std::fs::write(&paths.settings, settings.to_string())
            .map_err(|e| internal(e.to_string()))?;
        let qemu_args = vm::qemu_args(&vm.image, kind, vm.accel, &paths, &launcher.path, api.addr)
            .map_err(|e| unavailable(e.to_string()))?;
        // Confidential guests get a vTPM too, as on Compute Engine: its AK certificate names
        // the instance, which their reports bind (the token's `submods.gce`).
        let vm_tpm = if vm::has_vtpm(kind) {
            let identity = InstanceIdentity {
                zone: instance.zone.clone(),
                project_number,
                project_id: instance.project_id.as_str().to_owned(),
                instance_id: instance.id,
                instance_name: instance.name.clone(),
            };
            Some(
                provision_vm_tpm(state, &dir, &paths, identity)
                    .await
                    .map_err(internal)?,
            )
        } else {
            None
        };
        let platform = Platform {
            _sandbox: None,
            _tpm: None,
            _vm_tpm: vm_tpm,
            _metadata: metadata,
            _disk: None,
        };
        let (stop, stopped) = watch::channel(false);
        let supervisor = tokio::spawn(supervise(
            state.clone(),
            instance.resource_name(),
            Launch::Vm {
                qemu_args,
                exit_port: paths.exit_port.clone(),
                qmp: paths.qmp.clone(),
            },
            paths.console.clone(),
            platform,
            stopped,
        ));
        self.register(state, instance, stop, supervisor).await
    }
}

/// The VM's vTPM: the platform first runs its swtpm on the loopback of a network namespace of
/// its own to certify the AK (an owner-hierarchy primary from a fixed template, so the
/// launcher in the guest derives the same key from the same persistent seed) and store the
/// certificate in NV, as on a Shielded VM; then restarts it on the same state with only the control socket QEMU needs. Nothing is
/// extended: the firmware and the EFI stub measure the boot, from a fresh TPM.
async fn provision_vm_tpm(
    state: &AppState,
    dir: &Path,
    paths: &VmPaths,
    identity: InstanceIdentity,
) -> Result<cloister_tpm::swtpm::QemuSwtpm, String> {
    let tpm_dir = dir.join("tpm");
    let ctrl = paths.tpm_ctrl.clone();
    let ca = Arc::clone(&state.identity_ca);
    let netns_path = dir.join("provision.netns");
    tokio::task::spawn_blocking(move || -> Result<_, String> {
        std::fs::create_dir_all(&tpm_dir).map_err(|e| e.to_string())?;
        // The TCP swtpm listens only in a namespace of its own, for the moment it takes to
        // certify the AK: no process on the host can send it commands (a quote by the AK
        // about to be certified, with PCRs of its choosing).
        let netns = NetNs::create(&netns_path, &[]).map_err(|e| e.to_string())?;
        let handle = netns.handle().map_err(|e| e.to_string())?;
        in_netns(&handle, || -> Result<(), String> {
            let tpm = cloister_tpm::swtpm::Swtpm::start_on(&tpm_dir, SWTPM_PORT)
                .map_err(|e| e.to_string())?;
            let mut attester = cloister_tpm::attester::VtpmAttester::open(&tpm.tcti())
                .map_err(|e| e.to_string())?;
            let ak = attester.ak_public_key().map_err(|e| e.to_string())?;
            let cert = ca
                .certify_ak(&ak, &identity, time::OffsetDateTime::now_utc())
                .map_err(|e| e.to_string())?;
            attester.store_ak_cert(&cert).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())??;
        drop(netns);
        cloister_tpm::swtpm::QemuSwtpm::start(&tpm_dir, &ctrl).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Starts the instance's swtpm in its platform namespace, certifies its AK, and measures the
/// launcher into PCR 12. Every TPM connection is made from inside that namespace, the only
/// place the swtpm listens.
async fn provision_vtpm(
    state: &AppState,
    dir: &Path,
    sandbox: &Sandbox,
    identity: &InstanceIdentity,
    launcher: &Launcher,
) -> Result<(cloister_tpm::swtpm::Swtpm, String), String> {
    let tpm_dir = dir.join("tpm");
    let digests = launcher.digests.clone();
    let netns = sandbox.platform.handle().map_err(|e| e.to_string())?;
    let ca = Arc::clone(&state.identity_ca);
    let identity = identity.clone();
    let tcti = format!("swtpm:host=127.0.0.1,port={SWTPM_PORT}");
    let launcher_tcti = tcti.clone();
    let tpm = tokio::task::spawn_blocking(move || {
        in_netns(&netns, || -> Result<_, String> {
            std::fs::create_dir_all(&tpm_dir).map_err(|e| e.to_string())?;
            let tpm = cloister_tpm::swtpm::Swtpm::start_on(&tpm_dir, SWTPM_PORT)
                .map_err(|e| e.to_string())?;
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
            let cert = ca
                .certify_ak(&ak, &identity, time::OffsetDateTime::now_utc())
                .map_err(|e| e.to_string())?;
            // Into the TPM's NV, where the launcher reads it (as on a Shielded VM).
            attester.store_ak_cert(&cert).map_err(|e| e.to_string())?;
            Ok(tpm)
        })
        .map_err(|e| e.to_string())?
    })
    .await
    .map_err(|e| e.to_string())??;
    Ok((tpm, launcher_tcti))
}

/// How long a stopped instance's launcher (or guest) has to end after SIGTERM (or the power
/// button) before it is killed: the launcher gives the workload 10 s of it.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// How long QEMU's monitor has to take the power button press.
const QMP_WAIT: Duration = Duration::from_secs(5);

/// Runs the launcher until it exits for good, or until told to stop (SIGTERM, then SIGKILL);
/// then drops the instance's platform at once.
async fn supervise(
    state: AppState,
    name: String,
    launch: Launch,
    serial: PathBuf,
    platform: Platform,
    mut stopped: watch::Receiver<bool>,
) {
    let console = serial.clone();
    let made = tokio::task::spawn_blocking(move || super::serial::make_room(&console)).await;
    if let Err(e) = made.map_err(std::io::Error::other).and_then(|r| r) {
        tracing::warn!(error = %e, instance = %name, "making room in a serial console");
    }
    let set = |status: InstanceStatus| {
        let (state, name) = (state.clone(), name.clone());
        async move {
            let replica = state.placer.replica();
            if let Err(e) = state
                .store
                .set_placed_instance_status(&name, replica, status)
                .await
            {
                tracing::error!(error = %e.chain(), "could not record an instance's status");
            }
        }
    };
    let status = run_launcher(&name, &launch, &serial, &mut stopped, || {
        set(InstanceStatus::Running)
    })
    .await;
    // A launcher killed outright leaves its container running: nothing of the instance may
    // outlive it.
    if let Launch::Process { runc_root, .. } = &launch {
        let runc_root = runc_root.clone();
        let _ = tokio::task::spawn_blocking(move || delete_containers(&runc_root)).await;
    }
    drop(platform);
    set(status).await;
    // Ended: `live` no longer counts it (its sender sees the channel closed), so there is room
    // for a waiting instance.
    drop(stopped);
    state.placer.wake();
}

/// The launcher's runs (restarted when it asks); the status the instance ends in.
async fn run_launcher<F: Future<Output = ()>>(
    name: &str,
    launch: &Launch,
    serial: &Path,
    stopped: &mut watch::Receiver<bool>,
    running: impl Fn() -> F,
) -> InstanceStatus {
    loop {
        let mut command = match launch {
            Launch::Process {
                path, args, entry, ..
            } => {
                let mut command = tokio::process::Command::new(path);
                command.arg("launcher").args(args);
                let entry = entry.clone();
                // SAFETY: `enter` makes only async-signal-safe system calls on memory
                // prepared before the fork (see ChildEntry).
                unsafe { command.pre_exec(move || entry.enter()) };
                command
            }
            Launch::Vm { qemu_args, .. } => {
                let mut command = tokio::process::Command::new("qemu-system-x86_64");
                command.args(qemu_args);
                command
            }
        };
        // Through pipes the platform copies, bounded (`serial.rs`): the console is never a
        // file the launcher or the guest could grow without end.
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot start the launcher");
                return InstanceStatus::Terminated;
            }
        };
        super::serial::spawn_copy(child.stdout.take(), serial);
        super::serial::spawn_copy(child.stderr.take(), serial);
        running().await;
        let code = tokio::select! {
            status = child.wait() => match launch {
                Launch::Process { .. } => status.ok().and_then(|s| s.code()).unwrap_or(2),
                // A guest that died before its PID 1 wrote the code: the launcher's PANIC.
                Launch::Vm { exit_port, .. } => vm::exit_code(exit_port).map_or(2, i32::from),
            },
            _ = stopped.changed() => {
                let asked = match launch {
                    // A VM's power button: its PID 1 stops the launcher with SIGTERM. A
                    // monitor that does not answer in time gets no grace either.
                    Launch::Vm { qmp, .. } => {
                        match tokio::time::timeout(QMP_WAIT, vm::powerdown(qmp)).await {
                            Ok(Ok(())) => true,
                            Ok(Err(e)) => {
                                tracing::warn!(instance = %name, error = %e, "could not power the guest down: stopping it");
                                false
                            }
                            Err(_) => {
                                tracing::warn!(instance = %name, "QEMU's monitor did not answer: stopping the guest");
                                false
                            }
                        }
                    }
                    Launch::Process { .. } => {
                        if let Some(pid) = child.id() {
                            // SAFETY: kill(2) on our own child's pid; no memory is touched.
                            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                        }
                        true
                    }
                };
                if !asked || tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    let _ = child.kill().await;
                }
                return InstanceStatus::Terminated;
            }
        };
        match code {
            3 => {
                tracing::info!(instance = %name, "the launcher asked for a restart");
                continue;
            }
            4 => return InstanceStatus::Suspended,
            _ => return InstanceStatus::Terminated,
        }
    }
}
