//! The launch, start to finish, and the container's life under runc.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cloister_eventlog::{Event, EventType};
use tokio::sync::Mutex;

use crate::attest::{Measurements, Tee, TokenOptions, Verifier, write_token};
use crate::metadata::Metadata;
use crate::policy::LaunchPolicy;
use crate::spec::{LaunchSpec, LogRedirect, RestartPolicy};
use crate::{Attestation, LaunchError, bundle, exit, pull, teeserver, unpack};

/// The default token's audience, as Confidential Space's.
const DEFAULT_AUDIENCE: &str = "https://sts.googleapis.com";

pub enum TeeConfig {
    Insecure,
    /// A TPM at this TCTI, holding the platform's AK certificate in NV.
    Vtpm {
        tcti: String,
    },
    /// An SEV-SNP guest, its configfs-tsm report directory; `vtpm`: the TCTI of the vTPM the
    /// platform gave it, whose AK certificate its reports then name (its instance).
    SevSnp {
        tsm: PathBuf,
        vtpm: Option<String>,
    },
    /// A TDX guest: configfs-tsm for quotes, the sysfs RTMR3 attribute for extensions, and
    /// the platform's vTPM as for SEV-SNP.
    Tdx {
        tsm: PathBuf,
        rtmr3: PathBuf,
        vtpm: Option<String>,
    },
}

pub struct Config {
    /// `host:port` of the instance's metadata server.
    pub metadata_host: String,
    /// Cloister's base URL (verifier, registry, every API).
    pub api_endpoint: String,
    /// Where the launcher keeps blobs, the bundle and `/run/container_launcher`.
    pub runtime_dir: PathBuf,
    pub tee: TeeConfig,
    pub runc: PathBuf,
    /// The network namespace the workload joins (the local driver's sandbox gives each
    /// workload one, holding only its metadata server and the API). None: the workload
    /// shares the launcher's network, as on a Confidential Space VM.
    pub workload_netns: Option<PathBuf>,
    /// A debug launcher build (allows `debugonly` policies). Never for production images.
    pub debug: bool,
}

fn log(line: impl AsRef<str>) {
    println!("[launcher] {}", line.as_ref());
}

/// Runs the launch and returns Confidential Space's exit code.
pub async fn run(config: Config) -> u8 {
    match launch(&config).await {
        Ok(code) => code,
        Err(e) => {
            log(format!("ERROR: {e}"));
            exit::FAILURE
        }
    }
}

/// The vTPM at `tcti` and the AK certificate the platform stored in its NV.
fn open_vtpm(tcti: &str) -> Result<(cloister_tpm::attester::VtpmAttester, Vec<u8>), LaunchError> {
    let mut attester = cloister_tpm::attester::VtpmAttester::open(tcti)
        .map_err(|e| LaunchError::Attest(format!("opening the vTPM: {e}")))?;
    let ak_cert = attester.ak_cert().map_err(|e| {
        LaunchError::Attest(format!(
            "reading the AK certificate from NV index {:#x}: {e}",
            cloister_tpm::attester::AK_CERT_NV_INDEX
        ))
    })?;
    Ok((attester, ak_cert))
}

fn instance_vtpm(tcti: &str) -> Result<crate::attest::InstanceVtpm, LaunchError> {
    let (attester, ak_cert) = open_vtpm(tcti)?;
    Ok(crate::attest::InstanceVtpm { attester, ak_cert })
}

fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

async fn launch(config: &Config) -> Result<u8, LaunchError> {
    let began = std::time::Instant::now();
    let mut phases = Phases::new(began);
    let metadata = Metadata::new(&config.metadata_host);
    let spec = LaunchSpec::from_attributes(&metadata.attributes().await?)?;
    log(format!(
        "launch spec: image {}, restart policy {}",
        spec.image_reference,
        spec.restart_policy.as_str()
    ));
    let project = metadata.get("project/project-id").await?;
    let zone = metadata.get("instance/zone").await?;
    let zone = zone.rsplit('/').next().unwrap_or(&zone).to_owned();
    let instance = metadata.get("instance/name").await?;
    let instance_id = metadata.get("instance/id").await?;
    if instance_id.is_empty() || !instance_id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(LaunchError::Metadata(format!(
            "instance/id {instance_id:?} is not a number"
        )));
    }

    let io = |e: std::io::Error| LaunchError::Io(e.to_string());
    let blobs = config.runtime_dir.join("blobs");
    let bundle_dir = config.runtime_dir.join("bundle");
    let launcher_dir = config.runtime_dir.join("container_launcher");
    for d in [&blobs, &launcher_dir] {
        std::fs::create_dir_all(d).map_err(io)?;
    }
    let cloister_host = host_of(&config.api_endpoint);
    let insecure_hosts = if config.api_endpoint.starts_with("http://") {
        vec![cloister_host.clone()]
    } else {
        vec![]
    };
    let token = metadata.access_token().await?;
    phases.mark("metadata");
    let image = pull::pull(
        &spec.image_reference,
        &blobs,
        &cloister_host,
        Some(&token),
        insecure_hosts.clone(),
    )
    .await?;
    log(format!("pulled {}@{}", spec.image_reference, image.digest));
    phases.mark("pull");

    LaunchPolicy::from_labels(&image.labels())?.check(&spec, config.debug)?;

    let rootfs = bundle_dir.join("rootfs");
    if bundle_dir.exists() {
        std::fs::remove_dir_all(&bundle_dir).map_err(io)?;
    }
    std::fs::create_dir_all(&rootfs).map_err(io)?;
    let mut usage = unpack::Usage::default();
    for (file, gzip, digest) in &image.layers {
        unpack::unpack_layer(
            digest,
            file,
            *gzip,
            &rootfs,
            unpack::Limits::default(),
            &mut usage,
        )?;
    }
    phases.mark("unpack");
    // Google's client libraries find the metadata server by GCE_METADATA_HOST (every path)
    // and GCE_METADATA_IP (google-auth's "am I on GCE?" probe, which would otherwise try only
    // 169.254.169.254:80), so `google.auth.default()` works wherever the launcher runs.
    let added = [
        ("GCE_METADATA_HOST".to_owned(), config.metadata_host.clone()),
        ("GCE_METADATA_IP".to_owned(), config.metadata_host.clone()),
        (
            "CLOISTER_API_ENDPOINT".to_owned(),
            config.api_endpoint.clone(),
        ),
    ];
    // google-cloud-storage (Python) sends requests to API_ENDPOINT_OVERRIDE, with the
    // default or given credentials: `storage.Client()` then reaches Cloister unchanged.
    let defaults = [(
        "API_ENDPOINT_OVERRIDE".to_owned(),
        config.api_endpoint.clone(),
    )];
    let process = bundle::process(&image.config, &spec, &added, &defaults)?;

    let tee = match &config.tee {
        TeeConfig::Insecure => Tee::Insecure,
        TeeConfig::Vtpm { tcti } => {
            let (attester, ak_cert) = open_vtpm(tcti)?;
            Tee::Vtpm { attester, ak_cert }
        }
        TeeConfig::SevSnp { tsm, vtpm } => Tee::SevSnp {
            tsm: tsm.clone(),
            vtpm: vtpm.as_deref().map(instance_vtpm).transpose()?,
        },
        TeeConfig::Tdx { tsm, rtmr3, vtpm } => Tee::Tdx {
            tsm: tsm.clone(),
            rtmr3: crate::rtmr::Rtmr3::open(rtmr3)?,
            vtpm: vtpm.as_deref().map(instance_vtpm).transpose()?,
        },
    };
    let mut measurements = Measurements::new(tee)?;
    let mut events = vec![
        Event::new(EventType::ImageRef, spec.image_reference.clone()),
        Event::new(EventType::ImageDigest, image.digest.clone()),
        Event::new(EventType::RestartPolicy, spec.restart_policy.as_str()),
        Event::new(EventType::ImageId, image.image_id.clone()),
    ];
    events.extend(
        process
            .args
            .iter()
            .map(|a| Event::new(EventType::Arg, a.clone())),
    );
    events.extend(
        process
            .env
            .iter()
            .map(|e| Event::new(EventType::EnvVar, e.clone())),
    );
    for a in spec.cmd.iter().flatten() {
        events.push(Event::new(EventType::OverrideArg, a.clone()));
    }
    for (k, v) in &spec.env {
        events.push(Event::new(EventType::OverrideEnv, format!("{k}={v}")));
    }
    if spec.memory_monitoring {
        events.push(Event::new(EventType::MemoryMonitor, vec![1u8]));
    }
    events.push(Event::new(EventType::LaunchSeparator, Vec::new()));
    for e in &events {
        measurements.measure(e)?;
    }
    phases.mark("measure");

    let attestation = Arc::new(Mutex::new(Attestation {
        measurements,
        verifier: Verifier {
            endpoint: config.api_endpoint.clone(),
            project,
            location: zone
                .rsplit_once('-')
                .map_or(zone.clone(), |(region, _)| region.to_owned()),
            http: reqwest::Client::new(),
            impersonate: spec.impersonate_service_accounts.clone(),
            signatures: crate::signatures::Discovery {
                repos: spec.signed_image_repos.clone(),
                cloister_host: cloister_host.clone(),
                insecure_hosts: insecure_hosts.clone(),
            },
            image_digest: image.digest.clone(),
        },
        metadata,
        launcher_dir: launcher_dir.clone(),
    }));
    // The first token must exist before anything runs.
    let default = TokenOptions {
        audience: Some(DEFAULT_AUDIENCE.into()),
        ..TokenOptions::default()
    };
    let token = attestation.lock().await.token(&default).await?;
    write_token(&launcher_dir, &token)?;
    log("attestation token written to /run/container_launcher/attestation_verifier_claims_token");
    phases.mark("attest");
    let _server = teeserver::serve(
        &launcher_dir.join("teeserver.sock"),
        Arc::clone(&attestation),
    )
    .await
    .map_err(io)?;
    let refresher = tokio::spawn(refresh(
        Arc::clone(&attestation),
        launcher_dir.clone(),
        token,
    ));

    bundle::write_config(
        &bundle_dir,
        &bundle::Container {
            process: &process,
            launcher_dir: &launcher_dir,
            spec: &spec,
            hostname: &instance,
            netns: config.workload_netns.as_deref(),
            cgroup: format!("/cloister/{instance_id}"),
        },
    )?;
    let forward = spec.log_redirect != LogRedirect::Nowhere;
    phases.mark("bundle");
    log(format!(
        "ready in {} ms ({})",
        began.elapsed().as_millis(),
        phases.report()
    ));
    let code = supervise(config, &bundle_dir, &instance, spec.restart_policy, forward).await?;
    refresher.abort();
    Ok(code)
}

/// How long each launch phase took (reported on the serial console; the benchmark reads it).
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, u128)>,
}

impl Phases {
    fn new(start: std::time::Instant) -> Self {
        Phases {
            last: start,
            done: Vec::new(),
        }
    }

    /// Ends the phase `name` now.
    fn mark(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done
            .push((name, now.duration_since(self.last).as_millis()));
        self.last = now;
    }

    fn report(&self) -> String {
        self.done
            .iter()
            .map(|(n, ms)| format!("{n} {ms} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Seconds until the token's `exp`.
fn remaining(token: &str) -> Option<i64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs() as i64;
    Some(claims["exp"].as_i64()? - now)
}

/// Refreshes the default token at 0.8±0.1 of its remaining life; on failure retries with
/// exponential backoff (the old token stays until it expires).
async fn refresh(attestation: Arc<Mutex<Attestation>>, dir: PathBuf, mut token: String) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let life = remaining(&token).unwrap_or(3600).max(1) as f64;
        let jitter = 0.7 + rand::random::<f64>() * 0.2;
        tokio::time::sleep(Duration::from_secs_f64(life * jitter)).await;
        loop {
            let options = TokenOptions {
                audience: Some(DEFAULT_AUDIENCE.into()),
                ..TokenOptions::default()
            };
            let fresh = attestation.lock().await.token(&options).await;
            match fresh.and_then(|t| write_token(&dir, &t).map(|()| t)) {
                Ok(t) => {
                    log("attestation token refreshed");
                    token = t;
                    backoff = Duration::from_secs(1);
                    break;
                }
                Err(e) => {
                    log(format!(
                        "token refresh failed ({e}); retrying in {}s",
                        backoff.as_secs()
                    ));
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
            }
        }
    }
}

/// Runs the container under runc, restarting it as the policy says; stops it gracefully on
/// SIGTERM.
async fn supervise(
    config: &Config,
    bundle: &Path,
    instance: &str,
    policy: RestartPolicy,
    forward: bool,
) -> Result<u8, LaunchError> {
    use tokio::signal::unix::{SignalKind, signal};
    let state = config.runtime_dir.join("runc");
    let mut term = signal(SignalKind::terminate()).map_err(|e| LaunchError::Io(e.to_string()))?;
    let mut attempt = 0u32;
    loop {
        let id = format!("{instance}-{attempt}");
        // Through pipes, never the launcher's own descriptors: the console is a file the
        // workload could otherwise reopen (/proc/self/fd/1) to rewrite or truncate.
        let stdio = || {
            if forward {
                std::process::Stdio::piped()
            } else {
                std::process::Stdio::null()
            }
        };
        let mut child = tokio::process::Command::new(&config.runc)
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(&id)
            .stdin(std::process::Stdio::null())
            .stdout(stdio())
            .stderr(stdio())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                LaunchError::Runtime(format!("starting {}: {e}", config.runc.display()))
            })?;
        let copies = [
            child.stdout.take().map(|out| {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut { out }, &mut tokio::io::stdout()).await;
                })
            }),
            child.stderr.take().map(|err| {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut { err }, &mut tokio::io::stderr()).await;
                })
            }),
        ];
        log(format!("workload started (container {id})"));
        let status = tokio::select! {
            s = child.wait() => s.map_err(|e| LaunchError::Runtime(e.to_string()))?,
            _ = term.recv() => {
                log("SIGTERM: stopping the workload");
                let _ = tokio::process::Command::new(&config.runc).arg("--root").arg(&state).args(["kill", &id, "TERM"]).status().await;
                let waited = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                if waited.is_err() {
                    let _ = tokio::process::Command::new(&config.runc).arg("--root").arg(&state).args(["kill", &id, "KILL"]).status().await;
                    let _ = child.wait().await;
                }
                let _ = tokio::process::Command::new(&config.runc).arg("--root").arg(&state).args(["delete", "-f", &id]).status().await;
                return Ok(exit::SUCCESS);
            }
        };
        let _ = tokio::process::Command::new(&config.runc)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", &id])
            .status()
            .await;
        // The workload's last lines reach the console before the launcher's verdict.
        for copy in copies.into_iter().flatten() {
            let _ = copy.await;
        }
        let code = status.code().unwrap_or(128);
        log(format!("workload finished with exit code {code}"));
        let again = match policy {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => code != 0,
            RestartPolicy::Always => true,
        };
        if !again {
            return Ok(if code == 0 {
                exit::SUCCESS
            } else {
                exit::FAILURE
            });
        }
        attempt += 1;
        let delay = Duration::from_millis((250u64 << attempt.min(7)).min(30_000));
        log(format!(
            "restarting the workload in {} ms (policy {})",
            delay.as_millis(),
            policy.as_str()
        ));
        tokio::time::sleep(delay).await;
    }
}
