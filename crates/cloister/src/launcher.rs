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
}

#[derive(Debug, Args)]
pub struct LauncherArgs {
    /// The instance's metadata server (host:port), as GCE_METADATA_HOST names it.
    #[arg(long, env = "GCE_METADATA_HOST")]
    metadata_host: String,
    /// Cloister's base URL (verifier, registry, every API).
    #[arg(long)]
    api_endpoint: String,
    /// Where the launcher keeps blobs, the bundle and /run/container_launcher.
    #[arg(long)]
    runtime_dir: PathBuf,
    #[arg(long, value_enum)]
    tee: TeeKind,
    /// The vTPM's TCTI (for --tee vtpm), e.g. swtpm:host=127.0.0.1,port=2321.
    #[arg(long, required_if_eq("tee", "vtpm"))]
    tcti: Option<String>,
    #[arg(long, default_value = "runc")]
    runc: PathBuf,
}

pub async fn run(args: LauncherArgs) -> ExitCode {
    let tee = match (args.tee, args.tcti) {
        (TeeKind::Vtpm, Some(tcti)) => TeeConfig::Vtpm { tcti },
        _ => TeeConfig::Insecure,
    };
    let code = cloister_launcher::run(Config {
        metadata_host: args.metadata_host,
        api_endpoint: args.api_endpoint,
        runtime_dir: args.runtime_dir,
        tee,
        runc: args.runc,
        // Production launcher: `debugonly` launch policies are refused.
        debug: false,
    })
    .await;
    ExitCode::from(code)
}
