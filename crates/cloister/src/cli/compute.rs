//! `cloister compute instances …`, as `gcloud compute instances` names it.

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use cloister_store::ConfidentialType;
use serde_json::{Value, json};

use super::Context;
use super::format::{ListArgs, print_list, print_one};
use super::output;

#[derive(Debug, Subcommand)]
pub enum ComputeCommand {
    /// Confidential instances that run one workload container each.
    #[command(subcommand)]
    Instances(InstancesCommand),
}

#[derive(Debug, clap::Args)]
pub struct At {
    /// The instance's project [default: core/project].
    #[arg(long)]
    project: Option<String>,
    /// The instance's zone [default: compute/zone].
    #[arg(long)]
    zone: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// Create an instance that launches the workload image named in its metadata.
    Create {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
        /// VTPM, INSECURE, SEV_SNP or TDX (refused when no replica can provide it; one with no
        /// room now leaves the instance PROVISIONING until one has).
        #[arg(long, default_value = "VTPM")]
        confidential_compute_type: String,
        /// The service account the workload runs as.
        #[arg(long)]
        service_account: String,
        /// KEY=VALUE pairs separated by commas, or gcloud's `^D^` form choosing delimiter D
        /// (e.g. `^~^tee-image-reference=…~tee-restart-policy=Never`).
        #[arg(long, allow_hyphen_values = true)]
        metadata: Option<String>,
        /// Accepted for gcloud compatibility (the local driver has no images or scopes).
        #[arg(long)]
        image_project: Option<String>,
        /// Accepted for gcloud compatibility (the local driver has no images).
        #[arg(long)]
        image_family: Option<String>,
        /// Accepted for gcloud compatibility (tokens carry the cloud-platform scope).
        #[arg(long)]
        scopes: Option<String>,
        /// Accepted for gcloud compatibility (the launcher is always measured).
        #[arg(long)]
        shielded_secure_boot: bool,
        /// Accepted for gcloud compatibility (the local driver never migrates).
        #[arg(long)]
        maintenance_policy: Option<String>,
    },
    /// Show an instance: its status, metadata and service account.
    Describe {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// Instances of a project, in one zone or all.
    List {
        /// The project to list [default: core/project].
        #[arg(long)]
        project: Option<String>,
        /// Only this zone [default: every zone].
        #[arg(long, default_value = "-")]
        zone: String,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Stop an instance's workload; the instance stays, TERMINATED, to be started again.
    Stop {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// Start a stopped (TERMINATED) instance again, on any replica with room.
    Start {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// Stop an instance's workload and delete the instance.
    Delete {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
    },
    /// The instance's serial console: the launcher's and the workload's output.
    GetSerialPortOutput {
        /// The instance's name.
        name: String,
        #[command(flatten)]
        at: At,
        /// Byte offset to start from (to follow the console in steps).
        #[arg(long, default_value_t = 0)]
        start: u64,
    },
}

/// gcloud's metadata syntax: `k=v,k2=v2`, or `^D^k=vDk2=v2` with delimiter D.
pub fn parse_metadata(spec: &str) -> Result<Vec<(String, String)>> {
    let (delimiter, body) = match spec.strip_prefix('^').and_then(|r| r.split_once('^')) {
        Some((d, body)) if !d.is_empty() => (d.to_owned(), body),
        _ => (",".to_owned(), spec),
    };
    body.split(delimiter.as_str())
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => bail!("metadata item {item:?} is not KEY=VALUE"),
        })
        .collect()
}

fn path(ctx: &Context, at: &At, name: &str) -> Result<String> {
    Ok(format!(
        "/compute/v1/projects/{}/zones/{}/instances/{name}",
        ctx.project(at.project.clone())?,
        ctx.zone(at.zone.clone())?
    ))
}

pub async fn run(ctx: &mut Context, c: ComputeCommand) -> Result<()> {
    let client = ctx.client().await?;
    let ComputeCommand::Instances(c) = c;
    match c {
        InstancesCommand::Create {
            name,
            at,
            confidential_compute_type,
            service_account,
            metadata,
            ..
        } => {
            let given = confidential_compute_type.to_ascii_uppercase();
            let kind = ConfidentialType::parse(&given).ok_or_else(|| {
                anyhow!(
                    "--confidential-compute-type {given:?} is not one of VTPM, INSECURE, SEV_SNP, TDX"
                )
            })?;
            let items: Vec<Value> = parse_metadata(metadata.as_deref().unwrap_or(""))?
                .into_iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            let body = json!({
                "name": name,
                "serviceAccounts": [{"email": service_account}],
                "metadata": {"items": items},
                "confidentialInstanceConfig": {"confidentialInstanceType": kind.as_str()},
            });
            let project = ctx.project(at.project.clone())?;
            let zone = ctx.zone(at.zone.clone())?;
            client
                .post(
                    &format!("/compute/v1/projects/{project}/zones/{zone}/instances"),
                    &body,
                )
                .await?;
            eprintln!("Created [{name}].");
            print_one(&ctx.format, &client.get(&path(ctx, &at, &name)?).await?)
        }
        InstancesCommand::Describe { name, at } => {
            print_one(&ctx.format, &client.get(&path(ctx, &at, &name)?).await?)
        }
        InstancesCommand::List {
            project,
            zone,
            list,
        } => {
            let project = ctx.project(project)?;
            let items = client
                .get(&format!(
                    "/compute/v1/projects/{project}/zones/{zone}/instances"
                ))
                .await?;
            let items = items["items"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("NAME", "name"),
                    ("ZONE", "zone.basename()"),
                    ("STATUS", "status"),
                    ("ID", "id"),
                ],
            )
        }
        InstancesCommand::Stop { name, at } => {
            let stop = format!("{}/stop", path(ctx, &at, &name)?);
            client.post(&stop, &json!({})).await?;
            eprintln!("Stopped [{name}].");
            Ok(())
        }
        InstancesCommand::Start { name, at } => {
            let start = format!("{}/start", path(ctx, &at, &name)?);
            client.post(&start, &json!({})).await?;
            eprintln!("Started [{name}].");
            Ok(())
        }
        InstancesCommand::Delete { name, at } => {
            client.delete(&path(ctx, &at, &name)?).await?;
            eprintln!("Deleted [{name}].");
            Ok(())
        }
        InstancesCommand::GetSerialPortOutput { name, at, start } => {
            let out = client
                .get_query(
                    &format!("{}/serialPort", path(ctx, &at, &name)?),
                    &[("start", start.to_string())],
                )
                .await?;
            output::bytes(out["contents"].as_str().unwrap_or_default().as_bytes())?;
            // gcloud's hint: a read returns at most 1 MB, and a console keeps growing.
            eprintln!(
                "\nSpecify --start={} in the next get-serial-port-output invocation to get only the new output starting from here.",
                out["next"].as_str().unwrap_or("0")
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_takes_gclouds_delimiter_syntax() {
        let m = parse_metadata(
            "^~^tee-image-reference=h/p/r/i:latest~tee-cmd=[\"a\",\"b\"]~tee-env-X=1,2",
        )
        .unwrap();
        assert_eq!(m[1], ("tee-cmd".to_owned(), "[\"a\",\"b\"]".to_owned()));
        assert_eq!(m[2], ("tee-env-X".to_owned(), "1,2".to_owned()));
        let plain = parse_metadata("a=1,b=2").unwrap();
        assert_eq!(plain, [("a".into(), "1".into()), ("b".into(), "2".into())]);
        assert!(parse_metadata("novalue").is_err());
    }
}
