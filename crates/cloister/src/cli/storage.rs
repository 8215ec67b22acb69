//! `cloister storage …`: buckets (`gs://BUCKET`) and objects, as gsutil/gcloud storage do.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use super::format::{print_list, print_one};
use super::policy::{add_member, remove_member};

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    #[command(subcommand)]
    Buckets(BucketsCommand),
    /// Copy a local file to gs://BUCKET/OBJECT, or an object to a local file (`-` = stdout).
    Cp { source: String, destination: String },
    /// Print an object.
    Cat { url: String },
    /// List objects (gs://BUCKET[/PREFIX]) or, with --project, buckets.
    Ls {
        url: Option<String>,
        #[arg(long)]
        project: Option<String>,
        /// List everything under the prefix, not one level.
        #[arg(short, long)]
        recursive: bool,
    },
    /// Delete an object.
    Rm { url: String },
}

#[derive(Debug, Subcommand)]
pub enum BucketsCommand {
    Create {
        url: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        location: Option<String>,
    },
    Describe {
        url: String,
    },
    Delete {
        url: String,
    },
    List {
        #[arg(long)]
        project: Option<String>,
    },
    GetIamPolicy {
        url: String,
    },
    AddIamPolicyBinding {
        url: String,
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
    RemoveIamPolicyBinding {
        url: String,
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
}

/// `gs://BUCKET[/OBJECT]` → (bucket, object).
fn parse_gs(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("gs://") else {
        bail!("{url:?} is not a gs://BUCKET[/OBJECT] URL");
    };
    let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url:?} names no bucket");
    }
    Ok((bucket.to_owned(), object.to_owned()))
}

fn object_path(bucket: &str, object: &str) -> String {
    let encoded: String = object
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect();
    format!("/storage/v1/b/{bucket}/o/{encoded}")
}

fn content_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("txt") => "text/plain",
        _ => "application/octet-stream",
    }
}

pub async fn run(ctx: &mut Context, c: StorageCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        StorageCommand::Buckets(b) => buckets(ctx, &client, b).await,
        StorageCommand::Cp {
            source,
            destination,
        } => match (
            source.starts_with("gs://"),
            destination.starts_with("gs://"),
        ) {
            (false, true) => {
                let (bucket, mut object) = parse_gs(&destination)?;
                let file = PathBuf::from(&source);
                if object.is_empty() || object.ends_with('/') {
                    let name = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .context("the source has no file name")?;
                    object.push_str(name);
                }
                // Ask first: a refused upload would otherwise surface as a broken connection
                // once the server answers before reading the whole file.
                let held = client
                    .get_query(
                        &format!("/storage/v1/b/{bucket}/iam/testPermissions"),
                        &[("permissions", "storage.objects.create".to_owned())],
                    )
                    .await?;
                if !held["permissions"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|p| p == "storage.objects.create"))
                {
                    bail!(
                        "PERMISSION_DENIED: you lack storage.objects.create on gs://{bucket}; ask its owner for roles/storage.objectCreator or objectUser"
                    );
                }
                let query = [("uploadType", "media".to_owned()), ("name", object.clone())];
                let o = client
                    .upload_file(
                        &format!("/upload/storage/v1/b/{bucket}/o"),
                        &query,
                        &file,
                        content_type(&file),
                    )
                    .await?;
                eprintln!(
                    "Copied {} to gs://{bucket}/{object} ({} bytes).",
                    file.display(),
                    o["size"].as_str().unwrap_or("?")
                );
                Ok(())
            }
            (true, false) => {
                let (bucket, object) = parse_gs(&source)?;
                let path = object_path(&bucket, &object);
                let query = [("alt", "media".to_owned())];
                if destination == "-" {
                    client
                        .download(&path, &query, &mut tokio::io::stdout())
                        .await?;
                } else {
                    // Into a temporary file first, so a failed download leaves no partial file.
                    let tmp = format!("{destination}.cloister-download");
                    let mut file = tokio::fs::File::create(&tmp)
                        .await
                        .with_context(|| format!("creating {tmp}"))?;
                    let result = client.download(&path, &query, &mut file).await;
                    match result {
                        Ok(n) => {
                            tokio::fs::rename(&tmp, &destination).await?;
                            eprintln!(
                                "Copied gs://{bucket}/{object} to {destination} ({n} bytes)."
                            );
                        }
                        Err(e) => {
                            let _ = tokio::fs::remove_file(&tmp).await;
                            return Err(e.into());
                        }
                    }
                }
                Ok(())
            }
            _ => bail!(
                "cp copies between a local file and gs://: one side must be gs://BUCKET/OBJECT and the other a local path"
            ),
        },
        StorageCommand::Cat { url } => {
            let (bucket, object) = parse_gs(&url)?;
            client
                .download(
                    &object_path(&bucket, &object),
                    &[("alt", "media".to_owned())],
                    &mut tokio::io::stdout(),
                )
                .await?;
            Ok(())
        }
        StorageCommand::Ls {
            url: None, project, ..
        } => list_buckets(ctx, &client, project).await,
        StorageCommand::Ls {
            url: Some(url),
            recursive,
            ..
        } => {
            let (bucket, prefix) = parse_gs(&url)?;
            let mut query = vec![("prefix", prefix)];
            if !recursive {
                query.push(("delimiter", "/".to_owned()));
            }
            let mut rows = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let mut q = query.clone();
                if let Some(t) = &token {
                    q.push(("pageToken", t.clone()));
                }
                let page = client
                    .get_query(&format!("/storage/v1/b/{bucket}/o"), &q)
                    .await?;
                for p in page["prefixes"].as_array().into_iter().flatten() {
                    rows.push(json!({"url": format!("gs://{bucket}/{}", p.as_str().unwrap_or_default()), "size": "", "updated": ""}));
                }
                for o in page["items"].as_array().into_iter().flatten() {
                    rows.push(json!({"url": format!("gs://{bucket}/{}", o["name"].as_str().unwrap_or_default()), "size": o["size"], "updated": o["updated"]}));
                }
                match page["nextPageToken"].as_str() {
                    Some(t) => token = Some(t.to_owned()),
                    None => break,
                }
            }
            print_list(
                &ctx.format,
                &rows,
                &[("SIZE", "size"), ("UPDATED", "updated"), ("URL", "url")],
            )
        }
        StorageCommand::Rm { url } => {
            let (bucket, object) = parse_gs(&url)?;
            client.delete(&object_path(&bucket, &object)).await?;
            eprintln!("Removed gs://{bucket}/{object}.");
            Ok(())
        }
    }
}

async fn list_buckets(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    project: Option<String>,
) -> Result<()> {
    let project = ctx.project(project)?;
    let resp = client
        .get_query("/storage/v1/b", &[("project", project)])
        .await?;
    let items = resp["items"].as_array().cloned().unwrap_or_default();
    print_list(
        &ctx.format,
        &items,
        &[
            ("NAME", "name"),
            ("LOCATION", "location"),
            ("CREATED", "timeCreated"),
        ],
    )
}

async fn buckets(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    c: BucketsCommand,
) -> Result<()> {
    match c {
        BucketsCommand::Create {
            url,
            project,
            location,
        } => {
            let (bucket, _) = parse_gs(&url)?;
            let project = ctx.project(project)?;
            let body = json!({"name": bucket, "location": location});
            let b = client
                .post_query("/storage/v1/b", &[("project", project)], &body)
                .await?;
            eprintln!("Created bucket [gs://{bucket}].");
            print_one(&ctx.format, &b)
        }
        BucketsCommand::Describe { url } => {
            let (bucket, _) = parse_gs(&url)?;
            print_one(
                &ctx.format,
                &client.get(&format!("/storage/v1/b/{bucket}")).await?,
            )
        }
        BucketsCommand::Delete { url } => {
            let (bucket, _) = parse_gs(&url)?;
            client.delete(&format!("/storage/v1/b/{bucket}")).await?;
            eprintln!("Deleted bucket [gs://{bucket}].");
            Ok(())
        }
        BucketsCommand::List { project } => list_buckets(ctx, client, project).await,
        BucketsCommand::GetIamPolicy { url } => {
            let (bucket, _) = parse_gs(&url)?;
            print_one(
                &ctx.format,
                &client.get(&format!("/storage/v1/b/{bucket}/iam")).await?,
            )
        }
        BucketsCommand::AddIamPolicyBinding { url, member, role } => {
            edit(ctx, client, &url, |p| add_member(p, &role, &member)).await
        }
        BucketsCommand::RemoveIamPolicyBinding { url, member, role } => {
            edit(ctx, client, &url, |p| remove_member(p, &role, &member)).await
        }
    }
}

/// Read, change, write a bucket's policy (the JSON API's GET/PUT `…/iam`), with its etag.
async fn edit(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    url: &str,
    change: impl Fn(&mut Value),
) -> Result<()> {
    let (bucket, _) = parse_gs(url)?;
    let path = format!("/storage/v1/b/{bucket}/iam");
    let mut policy = client.get(&path).await?;
    change(&mut policy);
    let policy = client.put(&path, &policy).await?;
    eprintln!("Updated IAM policy for bucket [gs://{bucket}].");
    print_one(&ctx.format, &policy)
}
