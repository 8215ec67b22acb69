//! `cloister compute instances …`, as `gcloud compute instances` names it.

use anyhow::{Result, anyhow, bail};
use clap::Subcommand;
use cloister_store::ConfidentialType;
use serde_json::{Value, json};

use super::Context;
use super::format::{print_list, print_one};

#[derive(Debug, Subcommand)]
pub enum ComputeCommand {
    #[command(subcommand)]
    Instances(InstancesCommand),
}

#[derive(Debug, clap::Args)]
pub struct At {
    #[arg(long)]
    project: Option<String>,
    #[arg(long)]
    zone: String,
}

#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    Create {
        name: String,
        #[command(flatten)]
        at: At,
        /// VTPM, INSECURE, SEV_SNP or TDX (refused when this host cannot provide it).
        #[arg(long, default_value = "VTPM")]
        confidential_compute_type: String,
        #[arg(long)]
        service_account: String,
        /// KEY=VALUE pairs separated by commas, or gcloud's `^D^` form choosing delimiter D
        /// (e.g. `^~^tee-image-reference=…~tee-restart-policy=Never`).
        #[arg(long, allow_hyphen_values = true)]
        metadata: Option<String>,
        /// Accepted for gcloud compatibility (the local driver has no images or scopes).
        #[arg(long)]
        image_project: Option<String>,
        #[arg(long)]
        image_family: Option<String>,
        #[arg(long)]
        scopes: Option<String>,
        #[arg(long)]
        shielded_secure_boot: bool,
        #[arg(long)]
        maintenance_policy: Option<String>,
    },
    Describe {
        name: String,
        #[command(flatten)]
        at: At,
    },
    List {
        #[arg(long)]
        project: Option<String>,
        #[arg(long, default_value = "-")]
        zone: String,
    },
    Delete {
        name: String,
        #[command(flatten)]
        at: At,
    },
    GetSerialPortOutput {
        name: String,
        #[command(flatten)]
        at: At,
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
        at.zone
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
            client
                .post(
                    &format!("/compute/v1/projects/{project}/zones/{}/instances", at.zone),
                    &body,
                )
                .await?;
            eprintln!("Created [{name}].");
            print_one(&ctx.format, &client.get(&path(ctx, &at, &name)?).await?)
        }
        InstancesCommand::Describe { name, at } => {
            print_one(&ctx.format, &client.get(&path(ctx, &at, &name)?).await?)
        }
        InstancesCommand::List { project, zone } => {
            let project = ctx.project(project)?;
            let list = client
                .get(&format!(
                    "/compute/v1/projects/{project}/zones/{zone}/instances"
                ))
                .await?;
            let items = list["items"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &items,
                &[("NAME", "name"), ("STATUS", "status"), ("ID", "id")],
            )
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
            print!("{}", out["contents"].as_str().unwrap_or_default());
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
