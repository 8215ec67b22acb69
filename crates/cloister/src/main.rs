//! `cloister`: the server (`cloister server`) and the gcloud-shaped CLI, in one binary.

mod cli;
mod demo;
mod guest;
mod kek;
mod launcher;
mod server;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

fn main() -> ExitCode {
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
