//! `cloister auth login|print-access-token|print-identity-token|console-login|configure-docker`.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister_client::api::access_token;
use cloister_client::profiles::parse_credential;
use serde_json::json;

use super::Context;
use super::files;
use super::format::print_one;
use super::output::outln;

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Store a credential file in the profile and check it by obtaining an access token.
    Login {
        /// The credential file `iam users create --credential-file` wrote (`-` reads stdin).
        #[arg(long, visible_alias = "cred-file")]
        credential_file: PathBuf,
    },
    /// Print a current access token for the profile (refreshed when near expiry), for other
    /// tools to send as `Authorization: Bearer TOKEN`.
    PrintAccessToken {
        /// Print a token for this service account instead (needs
        /// iam.serviceAccounts.getAccessToken on it).
        #[arg(long)]
        impersonate_service_account: Option<String>,
    },
    /// Print an OIDC ID token for a service account you may impersonate (needs
    /// iam.serviceAccounts.getOpenIdToken on it).
    PrintIdentityToken {
        /// The service account the token names.
        #[arg(long)]
        impersonate_service_account: String,
        /// The token's audience.
        #[arg(long)]
        audiences: String,
        /// Add the email and email_verified claims.
        #[arg(long)]
        include_email: bool,
    },
    /// Print a one-time link that signs this profile's user in to the console, served by the
    /// server at /console/ (the link works once, for five minutes).
    ConsoleLogin,
    /// Name Cloister as Docker's credential helper for registries (comma-separated hosts)
    /// [default: this profile's server], so `docker push`, podman and skopeo sign in with the
    /// profile's access token through `docker-credential-cloister`.
    ConfigureDocker {
        /// REGISTRY[,REGISTRY…] as `host:port`.
        registries: Option<String>,
    },
}

pub async fn run(ctx: &mut Context, c: AuthCommand) -> Result<()> {
    let profile = ctx.profile()?;
    match c {
        AuthCommand::Login { credential_file } => {
            let text = files::read(&credential_file).with_context(|| {
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
        AuthCommand::PrintAccessToken {
            impersonate_service_account: None,
        } => Ok(outln!("{}", access_token(&ctx.profiles, &profile).await?)?),
        AuthCommand::PrintAccessToken {
            impersonate_service_account: Some(sa),
        } => {
            let client = ctx.client().await?;
            let body = json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]});
            let resp = client
                .post(
                    &format!("/v1/projects/-/serviceAccounts/{sa}:generateAccessToken"),
                    &body,
                )
                .await?;
            Ok(outln!(
                "{}",
                resp["accessToken"].as_str().unwrap_or_default()
            )?)
        }
        AuthCommand::ConsoleLogin => {
            let client = ctx.client().await?;
            let resp = client.post("/console/v1/loginCodes", &json!({})).await?;
            eprintln!("Open this link to sign in to the console (once, within five minutes):");
            Ok(outln!("{}", resp["url"].as_str().unwrap_or_default())?)
        }
        AuthCommand::ConfigureDocker { registries } => {
            let hosts = match registries {
                Some(list) => list
                    .split(',')
                    .map(|h| super::docker_credential::registry_host(h.trim()))
                    .filter(|h| !h.is_empty())
                    .collect(),
                None => vec![super::docker_credential::registry_host(&profile.endpoint)],
            };
            super::docker_credential::configure(&hosts)
        }
        AuthCommand::PrintIdentityToken {
            impersonate_service_account,
            audiences,
            include_email,
        } => {
            let client = ctx.client().await?;
            let body = json!({"audience": audiences, "includeEmail": include_email});
            let path = format!(
                "/v1/projects/-/serviceAccounts/{impersonate_service_account}:generateIdToken"
            );
            let resp = client.post(&path, &body).await?;
            Ok(outln!("{}", resp["token"].as_str().unwrap_or_default())?)
        }
    }
}
