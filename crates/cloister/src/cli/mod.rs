//! The gcloud-shaped CLI: argument parsing, dispatch, and turning errors into a message and a
//! non-zero exit.

mod artifacts;
mod artifacts_sign;
mod attest;
mod audit;
mod auth;
mod compute;
mod config;
mod cred_config;
pub mod docker_credential;
mod files;
pub mod format;
mod gsutil;
mod iam;
mod kms;
pub mod output;
pub mod package;
mod policy;
mod projects;
mod service_accounts;
mod storage;
mod storage_cp;
mod storage_glob;
mod storage_ls;
mod verifier;
mod workload_identity;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{CommandFactory, Parser, Subcommand};
use cloister_client::{ApiClient, ClientError, Profile, Profiles};

use crate::server::{self, ServerArgs};
use format::Format;

#[derive(Debug, Parser)]
#[command(
    name = "cloister",
    version,
    about = "Cloister: a self-hostable Confidential Space"
)]
pub struct Cli {
    /// The CLI profile to use (like a gcloud configuration) [default: the active profile].
    #[arg(long, global = true, env = "CLOISTER_PROFILE")]
    profile: Option<String>,
    /// Output format: json, yaml, table(KEY,…), csv(KEY,…), value(KEY,…) or none, with
    /// gcloud's projections (a.b, a[0], KEY:label=LABEL, name.basename(), name.segment(N)).
    #[arg(long, global = true, default_value = "default", value_parser = str::parse::<Format>)]
    format: Format,
    /// Never prompt (gcloud's --quiet). Cloister asks no questions, so scripts written for
    /// gcloud that pass it run unchanged.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the Cloister server (every control-plane service on one port).
    Server(ServerArgs),
    /// The codelab end to end on a fresh embedded server (Primus protects a model, Secundus
    /// runs the authorized workload on a VTPM instance, an unauthorized one is refused).
    Demo(crate::demo::DemoArgs),
    /// Run the launcher inside an instance (the local driver starts this).
    Launcher(crate::launcher::LauncherArgs),
    /// The VM driver's guest image.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Copy stdin/stdout to a socket (the VM driver's per-connection guest forwarder).
    #[command(hide = true)]
    Forward(crate::guest::forward::ForwardArgs),
    /// Compute Engine instances.
    #[command(subcommand)]
    Compute(compute::ComputeCommand),
    /// CLI profiles and settings.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Log in with a credential file; print access tokens.
    #[command(subcommand)]
    Auth(auth::AuthCommand),
    /// Projects and their IAM policies.
    #[command(subcommand)]
    Projects(projects::ProjectsCommand),
    /// Identity and access: users, predefined roles, service accounts, workload identity
    /// pools and their providers.
    #[command(subcommand)]
    Iam(iam::IamCommand),
    /// The audit log of authorization decisions.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Cloud KMS key rings, keys, encrypt and decrypt.
    #[command(subcommand)]
    Kms(kms::KmsCommand),
    /// Cloud Storage buckets and objects (gs:// URLs).
    #[command(subcommand)]
    Storage(storage::StorageCommand),
    /// gsutil's spellings of the storage commands (mb, rb, ls, cp, cat, rm, iam ch|get|set),
    /// for scripts written for gsutil.
    Gsutil(gsutil::GsutilArgs),
    /// Artifact Registry: Docker repositories and images.
    #[command(subcommand)]
    Artifacts(artifacts::ArtifactsCommand),
    /// Attestation tokens.
    #[command(subcommand)]
    Attest(attest::AttestCommand),
    /// The attestation verifier's settings.
    #[command(subcommand)]
    Verifier(verifier::VerifierCommand),
    /// Print a shell completion script: `source <(cloister completion bash)`.
    Completion {
        /// The shell to complete in.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build (or find in the data directory's cache) the guest image the VM driver boots, and
    /// print its files and boot measurement (the reference value the server registers).
    Build {
        /// The debug image: the kernel logs to the console, `debugonly` launch policies run,
        /// and its tokens say `dbgstat: enabled` (its own measurement).
        #[arg(long)]
        debug: bool,
        /// The server's data directory, whose `guest/` caches images.
        #[arg(long, env = "CLOISTER_DATA_DIR")]
        data_dir: PathBuf,
        /// An AmdSev build of OVMF: print the SEV-SNP launch digest of an SNP guest booting
        /// the image too [default: a distribution's OVMF.amdsev.fd where installed].
        #[arg(long, env = "CLOISTER_VM_SNP_FIRMWARE")]
        snp_firmware: Option<PathBuf>,
    },
}

/// What a command needs: the profiles, the chosen profile, and the output format.
pub struct Context {
    profiles: Profiles,
    profile_override: Option<String>,
    format: Format,
}

impl Context {
    fn profile(&self) -> Result<Profile, ClientError> {
        self.profiles.resolve(self.profile_override.as_deref())
    }

    async fn client(&self) -> Result<ApiClient, ClientError> {
        ApiClient::for_profile(&self.profiles, &self.profile()?).await
    }

    /// `--project`, else the profile's `core/project` (`cloister config set project P`).
    fn project(&self, flag: Option<String>) -> Result<String, ClientError> {
        if let Some(p) = flag {
            return Ok(p);
        }
        self.profile()?.project.ok_or_else(|| {
            ClientError::Config(
                "no project: pass --project, or set one with `cloister config set core/project PROJECT`"
                    .into(),
            )
        })
    }

    /// `--zone`, else the profile's `compute/zone`, as gcloud's compute commands do.
    fn zone(&self, flag: Option<String>) -> Result<String, ClientError> {
        if let Some(z) = flag {
            return Ok(z);
        }
        self.profile()?.zone.ok_or_else(|| {
            ClientError::Config(
                "no zone: pass --zone, or set one with `cloister config set compute/zone ZONE`"
                    .into(),
            )
        })
    }
}

pub async fn run(cli: Cli, command_name: String) -> ExitCode {
    let result = match cli.command {
        Command::Server(args) => server::run(args).await,
        Command::Launcher(args) => return crate::launcher::run(args).await,
        // Offline: no profile or server needed, and its exit code says verified/refused/unusable.
        Command::Attest(attest::AttestCommand::VerifyEvidence(args)) => {
            return attest::verify_evidence(args);
        }
        Command::Demo(args) => {
            return tokio::task::spawn_blocking(move || crate::demo::run(args))
                .await
                .unwrap_or(ExitCode::FAILURE);
        }
        Command::Completion { shell } => completion(shell),
        Command::Forward(args) => crate::guest::forward::run(args),
        Command::Image(ImageCommand::Build {
            debug,
            data_dir,
            snp_firmware,
        }) => tokio::task::spawn_blocking(move || -> Result<()> {
            let exe = std::env::current_exe()?;
            let snp = crate::guest::image::snp_firmware(snp_firmware);
            let image = crate::guest::image::build(&data_dir, &exe, debug, snp.as_deref())?;
            println!("{}", serde_json::to_string_pretty(&image)?);
            Ok(())
        })
        .await
        .unwrap_or_else(|e| Err(e.into())),
        command => match Profiles::load(&Profiles::default_dir()) {
            Ok(profiles) => {
                let mut ctx = Context {
                    profiles,
                    profile_override: cli.profile,
                    format: cli.format,
                };
                dispatch(&mut ctx, command).await
            }
            Err(e) => Err(e.into()),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`… | head -1`): it has what it wanted.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<ClientError>() {
                Some(ClientError::Api { .. }) => eprintln!("ERROR: ({command_name}) {e}"),
                _ => eprintln!("ERROR: ({command_name}) {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(ctx: &mut Context, command: Command) -> Result<()> {
    match command {
        Command::Server(_)
        | Command::Launcher(_)
        | Command::Demo(_)
        | Command::Forward(_)
        | Command::Image(_)
        | Command::Completion { .. } => {
            unreachable!("handled in run")
        }
        Command::Compute(c) => compute::run(ctx, c).await,
        Command::Config(c) => config::run(ctx, c),
        Command::Auth(c) => auth::run(ctx, c).await,
        Command::Projects(c) => projects::run(ctx, c).await,
        Command::Iam(c) => iam::run(ctx, c).await,
        Command::Audit(c) => audit::run(ctx, c).await,
        Command::Artifacts(c) => artifacts::run(ctx, c).await,
        Command::Attest(c) => attest::run(ctx, c).await,
        Command::Storage(c) => storage::run(ctx, c).await,
        Command::Gsutil(c) => gsutil::run(ctx, c).await,
        Command::Kms(c) => kms::run(ctx, c).await,
        Command::Verifier(c) => verifier::run(ctx, c).await,
    }
}

fn completion(shell: clap_complete::Shell) -> Result<()> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cloister", &mut script);
    Ok(output::bytes(&script)?)
}

/// `cloister.projects.describe`-style name of the invoked command, as gcloud prints in errors.
pub fn command_name(matches: &clap::ArgMatches) -> String {
    let mut name = String::from("cloister");
    let mut cur = matches;
    while let Some((sub, next)) = cur.subcommand() {
        name.push('.');
        name.push_str(sub);
        cur = next;
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command and every argument explains itself in `--help`.
    #[test]
    fn every_command_and_flag_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", cmd.get_name());
            if cmd.get_about().is_none() && path != " cloister" {
                missing.push(format!("{path}: no description"));
            }
            for arg in cmd.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}: no help", arg.get_id()));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        // clap's own checks too (no two flags share a name or short form, e.g. -q).
        Cli::command().debug_assert();
        let mut missing = Vec::new();
        walk(&Cli::command(), "", &mut missing);
        assert!(missing.is_empty(), "{}", missing.join("\n"));
    }
}
