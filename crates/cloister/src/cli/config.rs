//! `cloister config profiles …` and `cloister config set …`.

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{print_list, print_one};

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Named profiles: an endpoint plus a credential, like gcloud configurations.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Set a property of the current profile (`project`).
    Set { property: String, value: String },
    /// Clear a property of the current profile.
    Unset { property: String },
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Create a profile (the first one becomes active).
    Create {
        name: String,
        /// The Cloister server's URL, e.g. http://127.0.0.1:8080.
        #[arg(long)]
        endpoint: String,
        /// Default project for commands that take --project.
        #[arg(long)]
        project: Option<String>,
        /// Make it the active profile.
        #[arg(long)]
        activate: bool,
    },
    /// Make a profile the active one.
    Activate {
        name: String,
    },
    List,
    Describe {
        name: String,
    },
    Delete {
        name: String,
    },
}

pub fn run(ctx: &mut Context, c: ConfigCommand) -> Result<()> {
    match c {
        ConfigCommand::Profiles(p) => profiles(ctx, p),
        ConfigCommand::Set { property, value } => set(ctx, &property, Some(value)),
        ConfigCommand::Unset { property } => set(ctx, &property, None),
    }
}

fn profiles(ctx: &mut Context, c: ProfilesCommand) -> Result<()> {
    let view = |p: cloister_client::Profile| serde_json::to_value(p);
    match c {
        ProfilesCommand::Create {
            name,
            endpoint,
            project,
            activate,
        } => {
            let mut p = ctx.profiles.create(&name, &endpoint, project)?;
            if activate {
                p = ctx.profiles.activate(&name)?;
            }
            eprintln!("Created profile [{name}].");
            print_one(&ctx.format, &view(p)?)
        }
        ProfilesCommand::Activate { name } => {
            ctx.profiles.activate(&name)?;
            eprintln!("Activated [{name}].");
            Ok(())
        }
        ProfilesCommand::List => {
            let items: Vec<_> = ctx
                .profiles
                .list()
                .into_iter()
                .map(view)
                .collect::<Result<_, _>>()?;
            print_list(
                &ctx.format,
                &items,
                &[
                    ("NAME", "name"),
                    ("IS_ACTIVE", "active"),
                    ("ENDPOINT", "endpoint"),
                    ("PROJECT", "project"),
                ],
            )
        }
        ProfilesCommand::Describe { name } => {
            print_one(&ctx.format, &view(ctx.profiles.get(&name)?)?)
        }
        ProfilesCommand::Delete { name } => {
            ctx.profiles.delete(&name)?;
            eprintln!("Deleted [{name}].");
            Ok(())
        }
    }
}

fn set(ctx: &mut Context, property: &str, value: Option<String>) -> Result<()> {
    let profile = ctx.profile()?;
    match property {
        "project" => {
            if let Some(v) = &value {
                cloister_domain::ProjectId::parse(v)?;
            }
            ctx.profiles.set_project(&profile.name, value.clone())?;
            eprintln!("Updated property [project] of profile [{}].", profile.name);
            print_one(&ctx.format, &json!({"project": value}))
        }
        other => anyhow::bail!("unknown property {other:?}: the settable property is `project`"),
    }
}
