//! `cloister auth login|print-access-token`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister_client::api::access_token;
use cloister_client::profiles::parse_credential;
use serde_json::json;

use super::Context;
use super::format::print_one;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Store a credential file in the profile and check it by obtaining an access token.
    Login {
        #[arg(long)]
        credential_file: PathBuf,
    },
    /// Print a current access token for the profile (refreshed when near expiry), for other
    /// tools to send as `Authorization: Bearer TOKEN`.
    PrintAccessToken,
}

pub async fn run(ctx: &mut Context, c: AuthCommand) -> Result<()> {
    let profile = ctx.profile()?;
    match c {
        AuthCommand::Login { credential_file } => {
            let text = std::fs::read(&credential_file).with_context(|| {
                format!("reading credential file {}", credential_file.display())
            })?;
            let cred = parse_credential(&text, &credential_file)?;
            ctx.profiles.save_credential(&profile.name, &cred)?;
            access_token(&ctx.profiles, &profile).await?;
            eprintln!(
                "Logged in as [{}] in profile [{}].",
                cred.client_email, profile.name
            );
            print_one(
                &ctx.format,
                &json!({"account": cred.client_email, "profile": profile.name}),
            )
        }
        AuthCommand::PrintAccessToken => {
            println!("{}", access_token(&ctx.profiles, &profile).await?);
            Ok(())
        }
    }
}
