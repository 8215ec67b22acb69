//! `cloister storage …`: buckets (`gs://BUCKET`) and objects, as gcloud storage and gsutil
//! spell them. URLs may carry wildcards (see [`super::storage_glob`]).

use anyhow::{Result, bail};
use clap::Subcommand;
use cloister_client::ApiClient;
use serde_json::{Value, json};

use super::Context;
use super::format::{ListArgs, print_list, print_one};
use super::policy::{add_member, remove_member};
use super::storage_glob::{expand, has_wildcard, list_objects};

#[derive(Debug, Subcommand)]
pub enum StorageCommand {
    /// Buckets: create, describe, list, delete and their IAM policies.
    #[command(subcommand)]
    Buckets(BucketsCommand),
    /// Object metadata.
    #[command(subcommand)]
    Objects(ObjectsCommand),
    /// Copy SOURCE… to DESTINATION: local → gs://, gs:// → local (`-` = stdout), gs:// → gs://;
    /// `-` as the source uploads stdin. Sources may be wildcards (`images/*`, `gs://b/dir/*`);
    /// with several sources the destination is a folder.
    Cp {
        /// SOURCE… DESTINATION.
        #[arg(required = true, num_args = 2.., value_name = "URL", allow_hyphen_values = true)]
        urls: Vec<String>,
        /// Copy directories and object folders (gs://BUCKET/PREFIX) and everything below them.
        #[arg(short, long, visible_short_alias = 'R')]
        recursive: bool,
    },
    /// Print objects to stdout, one after the other.
    Cat {
        /// gs://BUCKET/OBJECT (wildcards allowed).
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// List buckets (no URL) or objects and folders (gs://BUCKET[/PREFIX], wildcards allowed).
    Ls {
        /// What to list [default: the project's buckets].
        urls: Vec<String>,
        /// The project whose buckets to list [default: core/project].
        #[arg(long)]
        project: Option<String>,
        /// List everything under the prefix, not one level.
        #[arg(short, long, visible_short_alias = 'R')]
        recursive: bool,
        /// Long listing: size, update time and URL of each object, then a total.
        #[arg(short = 'l', long)]
        long: bool,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete objects (wildcards allowed); with -r, everything under a folder, and a whole
    /// bucket named alone (its objects, then the bucket).
    Rm {
        /// gs://BUCKET/OBJECT, gs://BUCKET/PREFIX with -r, or gs://BUCKET with -r.
        #[arg(required = true)]
        urls: Vec<String>,
        /// Delete folders' contents and, for a bucket URL, the bucket.
        #[arg(short, long, visible_short_alias = 'R')]
        recursive: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BucketsCommand {
    /// Create a bucket.
    Create {
        /// gs://BUCKET.
        url: String,
        /// The project to create it in [default: core/project].
        #[arg(long)]
        project: Option<String>,
        /// Where its data lives (recorded; Cloister keeps it on this server's storage).
        #[arg(long)]
        location: Option<String>,
    },
    /// Show a bucket.
    Describe {
        /// gs://BUCKET.
        url: String,
    },
    /// Delete an empty bucket.
    Delete {
        /// gs://BUCKET.
        url: String,
    },
    /// Buckets of a project.
    List {
        /// The project [default: core/project].
        #[arg(long)]
        project: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show who may read or write the bucket.
    GetIamPolicy {
        /// gs://BUCKET.
        url: String,
    },
    /// Grant ROLE on the bucket to MEMBER.
    AddIamPolicyBinding {
        /// gs://BUCKET.
        url: String,
        /// Who: user:EMAIL, serviceAccount:EMAIL, principalSet://…
        #[arg(long)]
        member: String,
        /// A predefined role, e.g. roles/storage.objectViewer.
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE on the bucket.
    RemoveIamPolicyBinding {
        /// gs://BUCKET.
        url: String,
        /// Who to remove.
        #[arg(long)]
        member: String,
        /// The role to remove them from.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ObjectsCommand {
    /// Show an object's metadata.
    Describe {
        /// gs://BUCKET/OBJECT.
        url: String,
    },
    /// Objects' metadata under gs://BUCKET[/PREFIX] (every level), or matching a wildcard.
    List {
        /// gs://BUCKET[/PREFIX] or a wildcard URL.
        url: String,
        #[command(flatten)]
        list: ListArgs,
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
    if has_wildcard(bucket) {
        bail!("{url:?}: wildcards in bucket names are not supported; name the bucket");
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
        StorageCommand::Objects(o) => objects(ctx, &client, o).await,
        StorageCommand::Cp {
            mut urls,
            recursive,
        } => {
            let destination = urls.pop().unwrap_or_default();
            super::storage_cp::cp(&client, &urls, &destination, recursive).await
        }
        StorageCommand::Cat { urls } => {
            for url in urls {
                for (bucket, object) in objects_named(&client, &url).await? {
                    client
                        .download(
                            &object_path(&bucket, &object),
                            &[("alt", "media".to_owned())],
                            &mut tokio::io::stdout(),
                            &cloister_client::Progress::default(),
                        )
                        .await?;
                }
            }
            Ok(())
        }
        StorageCommand::Ls {
            urls,
            project,
            recursive,
            long,
            list,
        } => {
            let rows = if urls.is_empty() {
                bucket_rows(ctx, &client, project).await?
            } else {
                let mut rows = Vec::new();
                for url in &urls {
                    rows.extend(super::storage_ls::rows(&client, url, recursive).await?);
                }
                rows
            };
            super::storage_ls::print(&ctx.format, &list, rows, long)
        }
        StorageCommand::Rm { urls, recursive } => {
            for url in urls {
                super::storage_ls::rm(&client, &url, recursive).await?;
            }
            Ok(())
        }
    }
}

/// The objects a URL names: one object, or every object its wildcard matches.
async fn objects_named(client: &ApiClient, url: &str) -> Result<Vec<(String, String)>> {
    let (bucket, object) = parse_gs(url)?;
    if !has_wildcard(&object) {
        return Ok(vec![(bucket, object)]);
    }
    let matches = expand(client, &bucket, &object).await?;
    if matches.objects.is_empty() {
        bail!("{url} matched no objects");
    }
    Ok(matches
        .objects
        .iter()
        .map(|o| {
            (
                bucket.clone(),
                o["name"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// The project's buckets as `ls` rows (`gs://NAME/`), with their metadata.
async fn bucket_rows(
    ctx: &Context,
    client: &ApiClient,
    project: Option<String>,
) -> Result<Vec<Value>> {
    let project = ctx.project(project)?;
    let resp = client
        .get_query("/storage/v1/b", &[("project", project)])
        .await?;
    Ok(resp["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            let mut row = b.clone();
            row["url"] = json!(format!("gs://{}/", b["name"].as_str().unwrap_or_default()));
            row
        })
        .collect())
}

async fn objects(ctx: &Context, client: &ApiClient, c: ObjectsCommand) -> Result<()> {
    match c {
        ObjectsCommand::Describe { url } => {
            let (bucket, object) = parse_gs(&url)?;
            if object.is_empty() {
                bail!("{url} names a bucket: `storage buckets describe {url}` shows it");
            }
            print_one(
                &ctx.format,
                &client.get(&object_path(&bucket, &object)).await?,
            )
        }
        ObjectsCommand::List { url, list } => {
            let (bucket, object) = parse_gs(&url)?;
            let items = if has_wildcard(&object) {
                expand(client, &bucket, &object).await?.objects
            } else {
                list_objects(client, &bucket, &object).await?
            };
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("NAME", "name"),
                    ("SIZE", "size"),
                    ("CONTENT_TYPE", "contentType"),
                    ("UPDATED", "updated"),
                ],
            )
        }
    }
}

async fn buckets(ctx: &Context, client: &ApiClient, c: BucketsCommand) -> Result<()> {
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
        BucketsCommand::List { project, list } => {
            let rows = bucket_rows(ctx, client, project).await?;
            print_list(
                &ctx.format,
                &list,
                rows,
                &[
                    ("NAME", "name"),
                    ("LOCATION", "location"),
                    ("CREATED", "timeCreated"),
                ],
            )
        }
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
    client: &ApiClient,
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
