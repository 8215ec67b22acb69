//! `cloister iam users …`, `cloister iam roles …`, and the dispatch to service accounts and
//! workload identity pools.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Subcommand;
use cloister_client::ClientError;
use serde_json::{Value, json};

use super::Context;
use super::files;
use super::format::{ListArgs, print_list, print_one};
use super::output;

#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// Platform users (platform admins only).
    #[command(subcommand)]
    Users(UsersCommand),
    /// Predefined roles.
    #[command(subcommand)]
    Roles(RolesCommand),
    /// Service accounts and their IAM policies.
    #[command(subcommand)]
    ServiceAccounts(super::service_accounts::ServiceAccountsCommand),
    /// Workload identity pools and their OIDC providers.
    #[command(subcommand)]
    WorkloadIdentityPools(super::workload_identity::PoolsCommand),
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a user; with --credential-file, also issue a credential and write it there (0600).
    Create {
        /// The user's email address.
        email: String,
        /// A human-readable name.
        #[arg(long)]
        display_name: Option<String>,
        /// Make the user a platform admin.
        #[arg(long)]
        admin: bool,
        /// Where to write the new user's credential (`-` writes stdout).
        #[arg(long, visible_alias = "cred-file")]
        credential_file: Option<PathBuf>,
    },
    /// Show one user.
    Describe {
        /// The user's email address.
        email: String,
    },
    /// Every platform user.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Issue a new API credential for a user and write it to FILE (0600).
    IssueCredential {
        /// The user's email address.
        email: String,
        /// Where to write the credential (`-` writes stdout).
        #[arg(long, visible_alias = "cred-file")]
        credential_file: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum RolesCommand {
    /// The predefined roles and their titles.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// A role with the permissions it grants.
    Describe {
        /// The role's name, e.g. roles/storage.objectViewer.
        role: String,
    },
}

pub async fn run(ctx: &mut Context, c: IamCommand) -> Result<()> {
    let c = match c {
        IamCommand::ServiceAccounts(c) => return super::service_accounts::run(ctx, c).await,
        IamCommand::WorkloadIdentityPools(c) => return super::workload_identity::run(ctx, c).await,
        other => other,
    };
    let client = ctx.client().await?;
    match c {
        IamCommand::Users(UsersCommand::Create {
            email,
            display_name,
            admin,
            credential_file,
        }) => {
            let user = client
                .post("/cloister/v1/users", &json!({"email": email, "displayName": display_name.unwrap_or_default(), "admin": admin}))
                .await?;
            eprintln!("Created user [{email}].");
            if let Some(path) = credential_file {
                issue(&client, &email, &path).await?;
            }
            print_one(&ctx.format, &user)
        }
        IamCommand::Users(UsersCommand::Describe { email }) => {
            let resp = client.get("/cloister/v1/users").await?;
            let found = resp["users"]
                .as_array()
                .and_then(|u| u.iter().find(|u| u["email"] == email.as_str()))
                .cloned();
            let user = found.ok_or_else(|| ClientError::Api {
                http_status: 404,
                status: "NOT_FOUND".into(),
                message: format!(
                    "user {email} does not exist; `cloister iam users list` shows them"
                ),
            })?;
            print_one(&ctx.format, &user)
        }
        IamCommand::Users(UsersCommand::List { list }) => {
            let resp = client.get("/cloister/v1/users").await?;
            let items = resp["users"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("EMAIL", "email"),
                    ("DISPLAY_NAME", "displayName"),
                    ("ADMIN", "admin"),
                ],
            )
        }
        IamCommand::Users(UsersCommand::IssueCredential {
            email,
            credential_file,
        }) => issue(&client, &email, &credential_file).await,
        IamCommand::Roles(RolesCommand::List { list }) => {
            let resp = client.get("/v1/roles").await?;
            let items = resp["roles"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[("NAME", "name"), ("TITLE", "title")],
            )
        }
        IamCommand::Roles(RolesCommand::Describe { role }) => {
            let resp = client.get("/v1/roles").await?;
            let found = resp["roles"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["name"] == role.as_str()))
                .cloned();
            let role_view: Value = found.ok_or_else(|| ClientError::Api {
                http_status: 404,
                status: "NOT_FOUND".into(),
                message: format!(
                    "role {role} does not exist; `cloister iam roles list` shows them"
                ),
            })?;
            print_one(&ctx.format, &role_view)
        }
        IamCommand::ServiceAccounts(_) | IamCommand::WorkloadIdentityPools(_) => {
            unreachable!("dispatched above")
        }
    }
}

async fn issue(client: &cloister_client::ApiClient, email: &str, path: &PathBuf) -> Result<()> {
    let cred = client
        .post(
            &format!("/cloister/v1/users/{email}/credentials"),
            &json!({}),
        )
        .await?;
    let bytes = serde_json::to_vec_pretty(&cred)?;
    if files::is_stdio(path) {
        output::bytes(&bytes)?;
        eprintln!(
            "Wrote a credential for [{email}] to standard output. It is shown only once: keep it secret."
        );
        return Ok(());
    }
    write_secret(path, &bytes)
        .with_context(|| format!("writing credential file {}", path.display()))?;
    eprintln!(
        "Wrote a credential for [{email}] to [{}]. It is shown only once: keep it secret.",
        path.display()
    );
    Ok(())
}

fn write_secret(path: &PathBuf, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
