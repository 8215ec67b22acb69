//! `cloister launcher`: what runs inside an instance (the local driver starts it). The work is
//! in the `cloister-launcher` crate; this is its command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use cloister_launcher::{Config, TeeConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TeeKind {
    Vtpm,
    Insecure,
    /// Inside an AMD SEV-SNP guest (reports from configfs-tsm).
    SevSnp,
    /// Inside an Intel TDX guest (quotes from configfs-tsm, events into RTMR3).
    Tdx,
}

#[derive(Debug, Args)]
pub struct LauncherArgs {
    /// The instance's metadata server (host[:port]), as GCE_METADATA_HOST names it.
    #[arg(long, env = "GCE_METADATA_HOST")]
    metadata_host: String,
    /// Cloister's base URL (verifier, registry, every API).
    #[arg(long)]
    api_endpoint: String,
    /// Where the launcher keeps blobs, the bundle and /run/container_launcher.
    #[arg(long)]
    runtime_dir: PathBuf,
    /// The instance's TEE, which the attestation evidence comes from.
    #[arg(long, value_enum)]
    tee: TeeKind,
    /// The vTPM's TCTI, e.g. swtpm:host=127.0.0.1,port=2321: required for --tee vtpm; for
    /// sev-snp and tdx, the platform's vTPM whose AK certificate names the instance.
    #[arg(long, required_if_eq("tee", "vtpm"))]
    tcti: Option<String>,
    /// configfs-tsm's report directory (for --tee sev-snp and tdx).
    #[arg(long, default_value = cloister_launcher::tsm::CONFIGFS_TSM)]
    tsm_dir: PathBuf,
    /// The sysfs attribute that extends RTMR3 (for --tee tdx).
    #[arg(long, default_value = cloister_launcher::rtmr::RTMR3_SYSFS)]
    rtmr3: PathBuf,
    /// The OCI runtime that runs the workload container.
    #[arg(long, default_value = "runc")]
    runc: PathBuf,
    /// The network namespace (a path, as `ip netns` keeps them) the workload joins; without
    /// it the workload shares the launcher's network, as on a Confidential Space VM.
    #[arg(long)]
    workload_netns: Option<PathBuf>,
}

pub async fn run(args: LauncherArgs) -> ExitCode {
    let tee = match args.tee {
        // clap requires --tcti with --tee vtpm.
        TeeKind::Vtpm => TeeConfig::Vtpm {
            tcti: args.tcti.unwrap_or_default(),
        },
        TeeKind::Insecure => TeeConfig::Insecure,
        TeeKind::SevSnp => TeeConfig::SevSnp {
            tsm: args.tsm_dir,
            vtpm: args.tcti,
        },
        TeeKind::Tdx => TeeConfig::Tdx {
            tsm: args.tsm_dir,
            rtmr3: args.rtmr3,
            vtpm: args.tcti,
        },
    };
    let code = cloister_launcher::run(Config {
        metadata_host: args.metadata_host,
        api_endpoint: args.api_endpoint,
        runtime_dir: args.runtime_dir,
        tee,
        runc: args.runc,
        workload_netns: args.workload_netns,
        // Production launcher: `debugonly` launch policies are refused.
        debug: false,
    })
    .await;
    ExitCode::from(code)
}
