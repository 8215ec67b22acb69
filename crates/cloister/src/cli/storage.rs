//! `cloister storage …`: buckets (`gs://BUCKET`) and objects, as gsutil/gcloud storage do.

use anyhow::{Result, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::Context;
use super::format::{print_list, print_one};
use super::policy::{add_member, remove_member};

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    #[command(subcommand)]
    Buckets(BucketsCommand),
    /// Copy local → gs://BUCKET/OBJECT, gs:// → local (`-` = stdout), or gs:// → gs://.
    Cp {
        source: String,
        destination: String,
        /// Copy a directory or an object folder (gs://BUCKET/PREFIX) and everything below it.
        #[arg(short, long)]
        recursive: bool,
    },
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
pub(super) fn parse_gs(url: &str) -> Result<(String, String)> {
    let Some(rest) = url.strip_prefix("gs://") else {
        bail!("{url:?} is not a gs://BUCKET[/OBJECT] URL");
    };
    let (bucket, object) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        bail!("{url:?} names no bucket");
    }
    Ok((bucket.to_owned(), object.to_owned()))
}

pub(super) fn object_path(bucket: &str, object: &str) -> String {
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

pub async fn run(ctx: &mut Context, c: StorageCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        StorageCommand::Buckets(b) => buckets(ctx, &client, b).await,
        StorageCommand::Cp {
            source,
            destination,
            recursive,
        } => super::storage_cp::cp(&client, &source, &destination, recursive).await,
        StorageCommand::Cat { url } => {
            let (bucket, object) = parse_gs(&url)?;
            client
                .download(
                    &object_path(&bucket, &object),
                    &[("alt", "media".to_owned())],
                    &mut tokio::io::stdout(),
                    &cloister_client::Progress::default(),
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
