//! `cloister iam service-accounts …`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{print_list, print_one};
use super::policy::{add_member, edit_policy, get_policy, remove_member};

#[derive(Debug, Subcommand)]
pub enum ServiceAccountsCommand {
    /// Create NAME@PROJECT.iam.gserviceaccount.com.
    Create {
        name: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    List {
        #[arg(long)]
        project: Option<String>,
    },
    Describe {
        email: String,
    },
    Delete {
        email: String,
    },
    GetIamPolicy {
        email: String,
    },
    /// Grant ROLE on the service account to MEMBER (e.g. roles/iam.workloadIdentityUser to a
    /// principalSet of a workload identity pool).
    AddIamPolicyBinding {
        email: String,
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
    RemoveIamPolicyBinding {
        email: String,
        #[arg(long)]
        member: String,
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
        ServiceAccountsCommand::List { project } => {
            let project = ctx.project(project)?;
            let resp = client
                .get(&format!("/v1/projects/{project}/serviceAccounts"))
                .await?;
            let items = resp["accounts"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &items,
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
