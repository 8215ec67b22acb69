//! `cloister gsutil …`: the gsutil spellings Confidential Space's codelab scripts use (`mb`,
//! `rb`, `ls`, `cp`, `cat`, `rm`, `iam ch|get|set`), so those lines run unchanged with
//! `gsutil() { cloister gsutil "$@"; }`. Each is the `storage` command that does the same;
//! only gsutil's flags and its `iam ch MEMBER:ROLE` grammar are translated here.

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use cloister_client::{ApiClient, ClientError};
use serde_json::{Value, json};

use super::Context;
use super::format::ListArgs;
use super::policy::{add_member, remove_member};
use super::storage::{self, StorageCommand, parse_gs};

#[derive(Debug, Args)]
pub struct GsutilArgs {
    /// gsutil's -m (run operations in parallel): accepted so scripts run unchanged; Cloister
    /// performs them one after the other, with the same result.
    #[arg(short = 'm')]
    parallel: bool,
    #[command(subcommand)]
    command: GsutilCommand,
}

#[derive(Debug, Subcommand)]
pub enum GsutilCommand {
    /// Make buckets: `mb [-p PROJECT] [-l LOCATION] gs://BUCKET…`.
    Mb {
        /// The project to create them in [default: core/project].
        #[arg(short = 'p')]
        project: Option<String>,
        /// Where their data lives (recorded).
        #[arg(short = 'l')]
        location: Option<String>,
        /// gs://BUCKET…
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Remove empty buckets: `rb gs://BUCKET…`.
    Rb {
        /// gs://BUCKET…
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// List buckets, or objects under gs://BUCKET[/PREFIX] (wildcards allowed).
    Ls {
        /// The project whose buckets to list [default: core/project].
        #[arg(short = 'p')]
        project: Option<String>,
        /// Everything under the prefix, not one level.
        #[arg(short = 'r', visible_short_alias = 'R')]
        recursive: bool,
        /// Long listing: size, update time and URL, then a total.
        #[arg(short = 'l')]
        long: bool,
        /// What to list [default: the project's buckets].
        urls: Vec<String>,
    },
    /// Copy SOURCE… DESTINATION (local files, gs:// URLs, wildcards, `-` for stdin/stdout).
    Cp {
        /// Copy folders and everything below them.
        #[arg(short = 'r', visible_short_alias = 'R')]
        recursive: bool,
        /// SOURCE… DESTINATION.
        #[arg(required = true, num_args = 2.., allow_hyphen_values = true)]
        urls: Vec<String>,
    },
    /// Print objects to stdout.
    Cat {
        /// gs://BUCKET/OBJECT… (wildcards allowed).
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Remove objects; with -r folders, and a bucket named alone with its objects.
    Rm {
        /// Folders' contents, and a bucket URL's objects and the bucket.
        #[arg(short = 'r', visible_short_alias = 'R')]
        recursive: bool,
        /// Go on past URLs that fail (each failure is still reported, and the exit is 1).
        #[arg(short = 'f')]
        force: bool,
        /// gs://BUCKET[/OBJECT]…
        #[arg(required = true)]
        urls: Vec<String>,
    },
    /// Bucket IAM policies.
    #[command(subcommand)]
    Iam(IamCommand),
}

#[derive(Debug, Subcommand)]
pub enum IamCommand {
    /// `iam ch [-d MEMBER[:ROLE]]… [MEMBER:ROLE[,ROLE…]]… gs://BUCKET…`: grant (and with -d
    /// revoke) roles. ROLE is a storage role's short name (`objectViewer`,
    /// `legacyBucketReader`, `admin`, …) or a full `roles/…` name; MEMBER is
    /// `user:EMAIL`, `serviceAccount:EMAIL`, `group:EMAIL`, `domain:DOMAIN`, `principal…://…`,
    /// `allUsers` or `allAuthenticatedUsers`.
    Ch {
        /// Revoke: MEMBER (every storage role it holds) or MEMBER:ROLE.
        #[arg(short = 'd', value_name = "MEMBER[:ROLE]")]
        delete: Vec<String>,
        /// MEMBER:ROLE[,ROLE…]… then gs://BUCKET….
        #[arg(required = true, value_name = "BINDING_OR_URL")]
        args: Vec<String>,
    },
    /// Print a bucket's policy as JSON.
    Get {
        /// gs://BUCKET.
        url: String,
    },
    /// Replace buckets' policies with the one in FILE (JSON, as `iam get` prints it).
    Set {
        /// The policy file.
        file: std::path::PathBuf,
        /// gs://BUCKET…
        #[arg(required = true)]
        urls: Vec<String>,
    },
}

pub async fn run(ctx: &mut Context, args: GsutilArgs) -> Result<()> {
    let _ = args.parallel;
    let command = match args.command {
        GsutilCommand::Mb {
            project,
            location,
            urls,
        } => {
            let client = ctx.client().await?;
            let project = ctx.project(project)?;
            for url in urls {
                let (bucket, _) = parse_gs(&url)?;
                eprintln!("Creating gs://{bucket}/...");
                let body = json!({"name": bucket, "location": location});
                client
                    .post_query("/storage/v1/b", &[("project", project.clone())], &body)
                    .await?;
            }
            return Ok(());
        }
        GsutilCommand::Rb { urls } => {
            let client = ctx.client().await?;
            for url in urls {
                let (bucket, _) = parse_gs(&url)?;
                eprintln!("Removing gs://{bucket}/...");
                client.delete(&format!("/storage/v1/b/{bucket}")).await?;
            }
            return Ok(());
        }
        GsutilCommand::Ls {
            project,
            recursive,
            long,
            urls,
        } => StorageCommand::Ls {
            urls,
            project,
            recursive,
            long,
            list: ListArgs::default(),
        },
        GsutilCommand::Cp { recursive, urls } => StorageCommand::Cp { urls, recursive },
        GsutilCommand::Cat { urls } => StorageCommand::Cat { urls },
        GsutilCommand::Rm {
            recursive,
            force,
            urls,
        } => return rm(ctx, recursive, force, urls).await,
        GsutilCommand::Iam(c) => return iam(ctx, c).await,
    };
    storage::run(ctx, command).await
}

/// gsutil's `rm -f` goes on past a URL that fails; without it the first failure stops.
async fn rm(ctx: &mut Context, recursive: bool, force: bool, urls: Vec<String>) -> Result<()> {
    let mut failed = 0usize;
    for url in urls {
        let one = StorageCommand::Rm {
            urls: vec![url],
            recursive,
        };
        match storage::run(ctx, one).await {
            Ok(()) => {}
            Err(e) if force => {
                eprintln!("{e:#}");
                failed += 1;
            }
            Err(e) => return Err(e),
        }
    }
    if failed > 0 {
        bail!("{failed} URL(s) could not be removed");
    }
    Ok(())
}

async fn iam(ctx: &Context, c: IamCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        IamCommand::Get { url } => {
            let (bucket, _) = parse_gs(&url)?;
            let policy = client.get(&format!("/storage/v1/b/{bucket}/iam")).await?;
            println!("{}", serde_json::to_string_pretty(&policy)?);
            Ok(())
        }
        IamCommand::Set { file, urls } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading the policy file {}", file.display()))?;
            let mut policy: Value = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a JSON policy", file.display()))?;
            if let Some(p) = policy.as_object_mut() {
                // gsutil's `set` replaces the policy whatever changed since the file was read.
                p.remove("etag");
            }
            for url in urls {
                let (bucket, _) = parse_gs(&url)?;
                client
                    .put(&format!("/storage/v1/b/{bucket}/iam"), &policy)
                    .await?;
            }
            Ok(())
        }
        IamCommand::Ch { delete, args } => {
            let split = args
                .iter()
                .position(|a| a.starts_with("gs://"))
                .with_context(|| "iam ch: name at least one gs://BUCKET after the bindings")?;
            let (bindings, urls) = args.split_at(split);
            if let Some(stray) = urls.iter().find(|u| !u.starts_with("gs://")) {
                bail!("iam ch: {stray:?} comes after the URLs; put every binding before them");
            }
            let grants = bindings
                .iter()
                .map(|b| parse_binding(b, false))
                .collect::<Result<Vec<_>>>()?;
            let revokes = delete
                .iter()
                .map(|b| parse_binding(b, true))
                .collect::<Result<Vec<_>>>()?;
            if grants.is_empty() && revokes.is_empty() {
                bail!("iam ch: give MEMBER:ROLE to grant or -d MEMBER[:ROLE] to revoke");
            }
            for url in urls {
                change_policy(&client, url, |policy| {
                    for (member, roles) in &revokes {
                        revoke(policy, member, roles);
                    }
                    for (member, roles) in &grants {
                        for role in roles {
                            add_member(policy, role, member);
                        }
                    }
                })
                .await?;
            }
            Ok(())
        }
    }
}

/// Read, change, write a bucket's policy with its etag; run again when another writer got
/// there first (the JSON API answers 412), as gsutil does.
async fn change_policy(client: &ApiClient, url: &str, change: impl Fn(&mut Value)) -> Result<()> {
    let (bucket, _) = parse_gs(url)?;
    let path = format!("/storage/v1/b/{bucket}/iam");
    let mut attempts = 0;
    loop {
        let mut policy = client.get(&path).await?;
        change(&mut policy);
        match client.put(&path, &policy).await {
            Err(ClientError::Api {
                http_status: 412, ..
            }) if attempts < 3 => attempts += 1,
            other => return Ok(other.map(drop)?),
        }
    }
}

/// Removes `member` from `roles`, or from every role when `roles` is empty.
fn revoke(policy: &mut Value, member: &str, roles: &[String]) {
    let all: Vec<String> = match roles {
        [] => policy["bindings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["role"].as_str().map(str::to_owned))
            .collect(),
        some => some.to_vec(),
    };
    for role in all {
        remove_member(policy, &role, member);
    }
}

/// The member kinds a binding may start with, gsutil's short forms included.
const MEMBER_KINDS: &[(&str, &str)] = &[
    ("user", "user"),
    ("u", "user"),
    ("serviceAccount", "serviceAccount"),
    ("sa", "serviceAccount"),
    ("group", "group"),
    ("g", "group"),
    ("domain", "domain"),
    ("d", "domain"),
];

/// `MEMBER:ROLE[,ROLE…]` → (member in IAM's spelling, full role names). The member is
/// everything before the last `:` (a principal URI has colons of its own); for a revoke the
/// roles may be left out.
fn parse_binding(binding: &str, revoke: bool) -> Result<(String, Vec<String>)> {
    let fail = || {
        anyhow::anyhow!(
            "iam ch: {binding:?} is not MEMBER:ROLE (e.g. serviceAccount:sa@p.iam.gserviceaccount.com:objectViewer)"
        )
    };
    let whole_member = |s: &str| {
        matches!(s, "allUsers" | "allAuthenticatedUsers")
            || s.starts_with("principal://")
            || s.starts_with("principalSet://")
    };
    let (member, roles) = if revoke && (whole_member(binding) || kind_and_value(binding).is_some())
    {
        (binding, "")
    } else {
        binding.rsplit_once(':').ok_or_else(fail)?
    };
    let member = if whole_member(member) {
        member.to_owned()
    } else {
        let (kind, value) = kind_and_value(member).ok_or_else(fail)?;
        format!("{kind}:{value}")
    };
    let roles = roles
        .split(',')
        .filter(|r| !r.is_empty())
        .map(|r| match r.strip_prefix("roles/") {
            Some(_) => r.to_owned(),
            None => format!("roles/storage.{r}"),
        })
        .collect::<Vec<_>>();
    if roles.is_empty() && !revoke {
        return Err(fail());
    }
    Ok((member, roles))
}

/// `KIND:VALUE` with a known kind and a value without `:` → (IAM's kind, value).
fn kind_and_value(member: &str) -> Option<(&'static str, &str)> {
    let (kind, value) = member.split_once(':')?;
    let (_, iam_kind) = MEMBER_KINDS.iter().find(|(k, _)| *k == kind)?;
    (!value.is_empty() && !value.contains(':')).then_some((iam_kind, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bindings_are_read_as_gsutil_reads_them() {
        let sa = "serviceAccount:w@p.iam.gserviceaccount.com";
        let ok: &[(&str, bool, &str, &[&str])] = &[
            (
                "serviceAccount:w@p.iam.gserviceaccount.com:objectViewer",
                false,
                sa,
                &["roles/storage.objectViewer"],
            ),
            (
                "sa:w@p.iam.gserviceaccount.com:objectUser,legacyBucketReader",
                false,
                sa,
                &[
                    "roles/storage.objectUser",
                    "roles/storage.legacyBucketReader",
                ],
            ),
            (
                "user:a@example.com:roles/storage.admin",
                false,
                "user:a@example.com",
                &["roles/storage.admin"],
            ),
            (
                "allUsers:objectViewer",
                false,
                "allUsers",
                &["roles/storage.objectViewer"],
            ),
            (
                "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*:objectViewer",
                false,
                "principalSet://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/*",
                &["roles/storage.objectViewer"],
            ),
            ("user:a@example.com", true, "user:a@example.com", &[]),
            ("allUsers", true, "allUsers", &[]),
            (
                "u:a@example.com:admin",
                true,
                "user:a@example.com",
                &["roles/storage.admin"],
            ),
        ];
        for (binding, revoke, member, roles) in ok {
            let (m, r) = parse_binding(binding, *revoke).unwrap();
            assert_eq!(
                (m.as_str(), r),
                (*member, roles.iter().map(|s| s.to_string()).collect()),
                "{binding}"
            );
        }
        for bad in [
            "user:a@example.com",
            "nobody:x:objectViewer",
            "objectViewer",
            ":objectViewer",
            "user::admin",
        ] {
            assert!(parse_binding(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_revoke_without_roles_takes_every_role() {
        let mut policy = json!({"bindings": [
            {"role": "roles/storage.objectViewer", "members": ["user:a@x.com", "user:b@x.com"]},
            {"role": "roles/storage.admin", "members": ["user:a@x.com"]},
        ]});
        revoke(&mut policy, "user:a@x.com", &[]);
        assert_eq!(
            policy["bindings"],
            json!([{"role": "roles/storage.objectViewer", "members": ["user:b@x.com"]}])
        );
    }
}
