//! `cloister iam service-accounts …`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{ListArgs, print_list, print_one};
use super::policy::{add_member, edit_policy, get_policy, remove_member};

#[derive(Debug, Subcommand)]
pub enum ServiceAccountsCommand {
    /// Create NAME@PROJECT.iam.gserviceaccount.com.
    Create {
        /// The account id: the part of the email before '@'.
        name: String,
        /// The project [default: core/project].
        #[arg(long)]
        project: Option<String>,
        /// A human-readable name.
        #[arg(long)]
        display_name: Option<String>,
        /// What the account is for.
        #[arg(long)]
        description: Option<String>,
    },
    /// Service accounts of a project.
    List {
        /// The project [default: core/project].
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a service account.
    Describe {
        /// The account's email.
        email: String,
    },
    /// Delete a service account.
    Delete {
        /// The account's email.
        email: String,
    },
    /// Show who may use or manage the account.
    GetIamPolicy {
        /// The account's email.
        email: String,
    },
    /// Grant ROLE on the service account to MEMBER (e.g. roles/iam.workloadIdentityUser to a
    /// principalSet of a workload identity pool).
    AddIamPolicyBinding {
        /// The account's email.
        email: String,
        /// Who: user:EMAIL, serviceAccount:EMAIL, principalSet://…
        #[arg(long)]
        member: String,
        /// A predefined role, e.g. roles/iam.serviceAccountUser.
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE on the service account.
    RemoveIamPolicyBinding {
        /// The account's email.
        email: String,
        /// Who to remove.
        #[arg(long)]
        member: String,
        /// The role to remove them from.
        #[arg(long)]
        role: String,
    },
}

fn path(email: &str) -> String {
    format!("/v1/projects/-/serviceAccounts/{email}")
}

pub async fn run(ctx: &mut Context, c: ServiceAccountsCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        ServiceAccountsCommand::Create {
            name,
            project,
            display_name,
            description,
        } => {
            let project = ctx.project(project)?;
            let body = json!({"accountId": name, "serviceAccount": {
                "displayName": display_name.unwrap_or_default(),
                "description": description.unwrap_or_default(),
            }});
            let account = client
                .post(&format!("/v1/projects/{project}/serviceAccounts"), &body)
                .await?;
            eprintln!("Created service account [{name}].");
            print_one(&ctx.format, &account)
        }
        ServiceAccountsCommand::List { project, list } => {
            let project = ctx.project(project)?;
            let resp = client
                .get(&format!("/v1/projects/{project}/serviceAccounts"))
                .await?;
            let items = resp["accounts"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("DISPLAY NAME", "displayName"),
                    ("EMAIL", "email"),
                    ("DISABLED", "disabled"),
                ],
            )
        }
        ServiceAccountsCommand::Describe { email } => {
            print_one(&ctx.format, &client.get(&path(&email)).await?)
        }
        ServiceAccountsCommand::Delete { email } => {
            client.delete(&path(&email)).await?;
            eprintln!("Deleted service account [{email}].");
            Ok(())
        }
        ServiceAccountsCommand::GetIamPolicy { email } => {
            print_one(&ctx.format, &get_policy(&client, &path(&email)).await?)
        }
        ServiceAccountsCommand::AddIamPolicyBinding {
            email,
            member,
            role,
        } => {
            let policy =
                edit_policy(&client, &path(&email), |p| add_member(p, &role, &member)).await?;
            eprintln!("Updated IAM policy for serviceAccount [{email}].");
            print_one(&ctx.format, &policy)
        }
        ServiceAccountsCommand::RemoveIamPolicyBinding {
            email,
            member,
            role,
        } => {
            let policy =
                edit_policy(&client, &path(&email), |p| remove_member(p, &role, &member)).await?;
            eprintln!("Updated IAM policy for serviceAccount [{email}].");
            print_one(&ctx.format, &policy)
        }
    }
}
