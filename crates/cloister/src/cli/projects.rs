//! `cloister projects …`: Resource Manager projects and their IAM policies.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{ListArgs, print_list, print_one};
use super::policy::{add_member, edit_policy, get_policy, remove_member};

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project; you become its owner.
    Create {
        /// The project id (6 to 30 of a-z, 0-9 and '-').
        project_id: String,
        /// Display name [default: the id].
        #[arg(long)]
        name: Option<String>,
    },
    /// Projects you can see.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a project, with its number.
    Describe {
        /// The project id.
        project_id: String,
    },
    /// Delete an empty project. A project that still holds anything (buckets, service
    /// accounts, pools, key rings, repositories, instances) is refused, naming what: there is
    /// no 30-day undelete. Its id is never given to another project.
    Delete {
        /// The project id.
        project_id: String,
    },
    /// Show who may do what in the project.
    GetIamPolicy {
        /// The project id.
        project_id: String,
    },
    /// Grant ROLE to MEMBER on the project (read-modify-write with the policy's etag).
    AddIamPolicyBinding {
        /// The project id.
        project_id: String,
        /// Who: user:EMAIL, serviceAccount:EMAIL, principalSet://…
        #[arg(long)]
        member: String,
        /// A predefined role, e.g. roles/viewer.
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE on the project.
    RemoveIamPolicyBinding {
        /// The project id.
        project_id: String,
        /// Who to remove.
        #[arg(long)]
        member: String,
        /// The role to remove them from.
        #[arg(long)]
        role: String,
    },
    /// Which of PERMISSIONS you hold on the project.
    TestIamPermissions {
        /// The project id.
        project_id: String,
        /// Permission names, e.g. resourcemanager.projects.get.
        #[arg(required = true)]
        permissions: Vec<String>,
    },
}

pub async fn run(ctx: &mut Context, c: ProjectsCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        ProjectsCommand::Create { project_id, name } => {
            let op = client
                .post(
                    "/v1/projects",
                    &json!({"projectId": project_id, "name": name}),
                )
                .await?;
            let mut project = op["response"].clone();
            if let Some(obj) = project.as_object_mut() {
                obj.remove("@type");
            }
            eprintln!("Created project [{project_id}].");
            print_one(&ctx.format, &project)
        }
        ProjectsCommand::List { list } => {
            let resp = client.get("/v1/projects").await?;
            let items = resp["projects"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("PROJECT_ID", "projectId"),
                    ("NAME", "name"),
                    ("PROJECT_NUMBER", "projectNumber"),
                ],
            )
        }
        ProjectsCommand::Describe { project_id } => print_one(
            &ctx.format,
            &client.get(&format!("/v1/projects/{project_id}")).await?,
        ),
        ProjectsCommand::Delete { project_id } => {
            client.delete(&format!("/v1/projects/{project_id}")).await?;
            eprintln!("Deleted project [{project_id}].");
            eprintln!(
                "Its id and number are never given to another project; there is no undelete."
            );
            Ok(())
        }
        ProjectsCommand::GetIamPolicy { project_id } => print_one(
            &ctx.format,
            &get_policy(&client, &format!("/v1/projects/{project_id}")).await?,
        ),
        ProjectsCommand::AddIamPolicyBinding {
            project_id,
            member,
            role,
        } => {
            let policy = edit_policy(&client, &format!("/v1/projects/{project_id}"), |p| {
                add_member(p, &role, &member)
            })
            .await?;
            eprintln!("Updated IAM policy for project [{project_id}].");
            print_one(&ctx.format, &policy)
        }
        ProjectsCommand::RemoveIamPolicyBinding {
            project_id,
            member,
            role,
        } => {
            let policy = edit_policy(&client, &format!("/v1/projects/{project_id}"), |p| {
                remove_member(p, &role, &member)
            })
            .await?;
            eprintln!("Updated IAM policy for project [{project_id}].");
            print_one(&ctx.format, &policy)
        }
        ProjectsCommand::TestIamPermissions {
            project_id,
            permissions,
        } => {
            let resp = client
                .post(
                    &format!("/v1/projects/{project_id}:testIamPermissions"),
                    &json!({"permissions": permissions}),
                )
                .await?;
            print_one(&ctx.format, &resp)
        }
    }
}
