//! `cloister config profiles …` and `cloister config set|get|unset|list`, with gcloud's
//! property names (`core/project` or `project`, `compute/zone` or `zone`, `core/account`).

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{Kind, ListArgs, print_list, print_one};
use super::output::outln;

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Named profiles: an endpoint plus a credential, like gcloud configurations.
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Set a property of the current profile: core/project (project) or compute/zone (zone).
    Set {
        /// core/project, project, compute/zone or zone.
        property: String,
        /// The new value.
        value: String,
    },
    /// Print a property of the current profile; "(unset)" on stderr when it has none.
    #[command(visible_alias = "get-value")]
    Get {
        /// core/project, compute/zone, core/account (or their short names).
        property: String,
    },
    /// Clear a property of the current profile.
    Unset {
        /// core/project, project, compute/zone or zone.
        property: String,
    },
    /// The current profile's properties, grouped by section as gcloud prints them.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProfilesCommand {
    /// Create a profile (the first one becomes active).
    Create {
        /// The profile's name (a-z, 0-9, '-', '_').
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
        /// The profile to activate.
        name: String,
    },
    /// Every profile, with the active one marked.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show one profile's settings.
    Describe {
        /// The profile to show.
        name: String,
    },
    /// Delete a profile with its stored credential and cached token.
    Delete {
        /// The profile to delete.
        name: String,
    },
}

/// The properties Cloister keeps, by gcloud's full name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Property {
    Project,
    Zone,
    Account,
}

impl Property {
    fn parse(name: &str) -> Result<Property> {
        Ok(match name {
            "core/project" | "project" => Property::Project,
            "compute/zone" | "zone" => Property::Zone,
            "core/account" | "account" => Property::Account,
            other => bail!(
                "unknown property {other:?}: Cloister keeps core/project, compute/zone and core/account (read-only)"
            ),
        })
    }
}

pub fn run(ctx: &mut Context, c: ConfigCommand) -> Result<()> {
    match c {
        ConfigCommand::Profiles(p) => profiles(ctx, p),
        ConfigCommand::Set { property, value } => set(ctx, &property, Some(value)),
        ConfigCommand::Unset { property } => set(ctx, &property, None),
        ConfigCommand::Get { property } => {
            let value = get(ctx, Property::parse(&property)?)?;
            match value {
                Some(v) if ctx.format.kind == Kind::Default => Ok(outln!("{v}")?),
                Some(v) => print_one(&ctx.format, &json!(v)),
                None => {
                    eprintln!("(unset)");
                    Ok(())
                }
            }
        }
        ConfigCommand::List => {
            let profile = ctx.profile()?;
            let (project, zone, account) = (
                get(ctx, Property::Project)?,
                get(ctx, Property::Zone)?,
                get(ctx, Property::Account)?,
            );
            if ctx.format.kind != Kind::Default {
                let mut core = serde_json::Map::new();
                for (k, v) in [("account", account), ("project", project)] {
                    if let Some(v) = v {
                        core.insert(k.into(), json!(v));
                    }
                }
                let mut all = json!({"core": core});
                if let Some(zone) = zone {
                    all["compute"] = json!({"zone": zone});
                }
                return print_one(&ctx.format, &all);
            }
            if let Some(zone) = zone {
                outln!("[compute]\nzone = {zone}")?;
            }
            outln!("[core]")?;
            if let Some(account) = account {
                outln!("account = {account}")?;
            }
            if let Some(project) = project {
                outln!("project = {project}")?;
            }
            eprintln!("\nYour active profile is: [{}]", profile.name);
            Ok(())
        }
    }
}

fn get(ctx: &Context, property: Property) -> Result<Option<String>> {
    let profile = ctx.profile()?;
    Ok(match property {
        Property::Project => profile.project,
        Property::Zone => profile.zone,
        // The account is whoever the stored credential names; `auth login` sets it.
        Property::Account => ctx
            .profiles
            .credential(&profile.name)
            .ok()
            .map(|c| c.client_email),
    })
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
        ProfilesCommand::List { list } => {
            let items: Vec<_> = ctx
                .profiles
                .list()
                .into_iter()
                .map(view)
                .collect::<Result<_, _>>()?;
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("NAME", "name"),
                    ("IS_ACTIVE", "active"),
                    ("ENDPOINT", "endpoint"),
                    ("PROJECT", "project"),
                    ("ZONE", "zone"),
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
    let (section, name) = match Property::parse(property)? {
        Property::Project => {
            if let Some(v) = &value {
                cloister_domain::ProjectId::parse(v)?;
            }
            ctx.profiles.set_project(&profile.name, value.clone())?;
            ("core", "project")
        }
        Property::Zone => {
            if let Some(v) = &value
                && (v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
            {
                bail!("zone {v:?} is not a zone name such as us-west1-b");
            }
            ctx.profiles.set_zone(&profile.name, value.clone())?;
            ("compute", "zone")
        }
        Property::Account => bail!(
            "core/account is the identity of the profile's credential: change it with `cloister auth login --cred-file FILE`"
        ),
    };
    eprintln!(
        "Updated property [{section}/{name}] of profile [{}].",
        profile.name
    );
    Ok(())
}
