//! `cloister`: the server (`cloister server`) and the gcloud-shaped CLI, in one binary.

mod cli;
mod demo;
mod guest;
mod kek;
mod launcher;
mod server;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

/// Processes start with a soft limit of 1024 descriptors (the kernel's for PID 1, systemd's
/// default for services): a server forwarding its instances' connections, or the guest's
/// PID 1 proxying its API, would run short long before the bounds they keep themselves. The
/// soft limit is raised to the hard one, which the administrator (or the kernel) still sets.
fn raise_descriptor_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

fn main() -> ExitCode {
    raise_descriptor_limit();
    // The guest image's PID 1 (the kernel runs this binary as /init).
    if std::process::id() == 1 {
        match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(guest::init::run()),
            Err(e) => {
                eprintln!("ERROR: could not start the async runtime: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    // The server's CEL worker (`federation::judge`): no runtime, its memory bounded.
    if std::env::args_os().nth(1).as_deref() == Some(std::ffi::OsStr::new(server::CONDITION_WORKER))
    {
        return cloister_services::federation::judge::worker_main();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ERROR: could not start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Run as `docker-credential-cloister` (a link to this binary) it is Docker's credential
    // helper, which `cloister auth configure-docker` names in Docker's config.
    let mut args = std::env::args();
    let invoked = args.next().unwrap_or_default();
    if std::path::Path::new(&invoked)
        .file_name()
        .is_some_and(|n| n == "docker-credential-cloister")
    {
        let action = args.next();
        return runtime.block_on(cli::docker_credential::helper(action.as_deref()));
    }
    let matches = cli::Cli::command().get_matches();
    let command_name = cli::command_name(&matches);
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    runtime.block_on(cli::run(cli, command_name))
}
