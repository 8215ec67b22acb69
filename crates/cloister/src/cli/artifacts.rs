//! `cloister artifacts …`: Artifact Registry repositories and the Docker images in them, as
//! `gcloud artifacts` names them.

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use cloister_client::ApiClient;
use serde_json::{Value, json};

use std::path::PathBuf;

use super::Context;
use super::format::{ListArgs, print_list, print_one};
use super::output::outln;
use super::package;
use super::policy::{add_member, remove_member};

/// The location used when none is given (Artifact Registry's multi-region name).
const DEFAULT_LOCATION: &str = "us";

#[derive(Debug, Subcommand)]
pub enum ArtifactsCommand {
    /// Repositories of container images and their IAM policies.
    #[command(subcommand)]
    Repositories(RepositoriesCommand),
    /// Docker images in repositories.
    #[command(subcommand)]
    Docker(DockerCommand),
    /// Package a local executable (with the shared libraries it loads) and extra files as a
    /// minimal OCI image, push it to HOST/PROJECT/REPOSITORY/IMAGE[:TAG], print its digest.
    Push(PushArgs),
    /// Sign an image in cosign's format (the payload carries the public key and algorithm, as
    /// Confidential Space reads them); prints ALGORITHM:KEY_ID for attribute conditions.
    Sign(super::artifacts_sign::SignArgs),
    /// Check an image's cosign signatures as the verifier would.
    Verify(super::artifacts_sign::VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// Where to push: HOST/PROJECT/REPOSITORY/IMAGE[:TAG].
    image: String,
    /// The program the image runs.
    #[arg(long)]
    executable: PathBuf,
    /// Where the executable goes in the image [default: /usr/local/bin/NAME].
    #[arg(long)]
    dest: Option<String>,
    /// Extra files, HOST_PATH:IMAGE_PATH (repeatable; a directory is copied whole; an ELF
    /// library brings the libraries it links).
    #[arg(long = "file")]
    files: Vec<String>,
    /// The entrypoint [default: the executable].
    #[arg(long)]
    entrypoint: Option<String>,
    /// Default arguments (repeatable, in order).
    #[arg(long = "cmd", allow_hyphen_values = true)]
    cmd: Vec<String>,
    /// Environment variables, NAME=VALUE (repeatable).
    #[arg(long = "env")]
    env: Vec<String>,
    /// The working directory the program starts in.
    #[arg(long)]
    workdir: Option<String>,
    /// Labels, KEY=VALUE (repeatable), e.g. tee.launch_policy.allow_cmd_override=true.
    #[arg(long = "label")]
    labels: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct Where {
    /// The project [default: core/project].
    #[arg(long)]
    project: Option<String>,
    /// The repository's location.
    #[arg(long, default_value = DEFAULT_LOCATION)]
    location: String,
}

#[derive(Debug, Subcommand)]
pub enum RepositoriesCommand {
    /// Create a repository.
    Create {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
        /// docker is the format Cloister serves.
        #[arg(long, default_value = "docker")]
        repository_format: String,
        /// What the repository holds.
        #[arg(long)]
        description: Option<String>,
    },
    /// Show a repository.
    Describe {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
    },
    /// Repositories of a project in a location.
    List {
        #[command(flatten)]
        at: Where,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete a repository and its images.
    Delete {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
        /// Accepted for gcloud compatibility: the delete has finished when the command returns.
        #[arg(long = "async")]
        run_async: bool,
    },
    /// Show who may read or write the repository.
    GetIamPolicy {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
    },
    /// Grant ROLE on the repository to MEMBER.
    AddIamPolicyBinding {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
        /// Who: user:EMAIL, serviceAccount:EMAIL, principalSet://…
        #[arg(long)]
        member: String,
        /// A predefined role, e.g. roles/artifactregistry.reader.
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE on the repository.
    RemoveIamPolicyBinding {
        /// The repository's id.
        repository: String,
        #[command(flatten)]
        at: Where,
        /// Who to remove.
        #[arg(long)]
        member: String,
        /// The role to remove them from.
        #[arg(long)]
        role: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DockerCommand {
    /// Images: their digests and tags.
    #[command(subcommand)]
    Images(ImagesCommand),
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Resolve HOST/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST] to its digest (image_summary).
    Describe {
        /// HOST/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST].
        image: String,
    },
    /// Images in HOST/PROJECT/REPOSITORY[/IMAGE], with their digests and tags.
    List {
        /// HOST/PROJECT/REPOSITORY[/IMAGE].
        repository: String,
        #[command(flatten)]
        list: ListArgs,
    },
}

pub async fn run(ctx: &mut Context, c: ArtifactsCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        ArtifactsCommand::Repositories(c) => repositories(ctx, &client, c).await,
        ArtifactsCommand::Docker(DockerCommand::Images(c)) => images(ctx, &client, c).await,
        ArtifactsCommand::Push(args) => push(&client, args).await,
        ArtifactsCommand::Sign(args) => super::artifacts_sign::sign(&client, args).await,
        ArtifactsCommand::Verify(args) => super::artifacts_sign::verify(&client, args).await,
    }
}

fn key_value(kind: &str, s: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .with_context(|| format!("{kind} {s:?} is not KEY=VALUE"))?;
    Ok((k.to_owned(), v.to_owned()))
}

async fn push(client: &ApiClient, args: PushArgs) -> Result<()> {
    let r = parse_reference(&args.image)?;
    let name = args
        .executable
        .file_name()
        .and_then(|n| n.to_str())
        .context("the executable has no file name")?;
    let dest = package::image_path(
        &args
            .dest
            .unwrap_or_else(|| format!("/usr/local/bin/{name}")),
    )?;
    let mut files = package::elf_closure(&args.executable)?;
    files.insert(dest.clone(), args.executable.clone());
    for spec in &args.files {
        let (host, inside) = spec
            .split_once(':')
            .with_context(|| format!("--file {spec:?} is not HOST_PATH:IMAGE_PATH"))?;
        let inside = package::image_path(inside)?;
        let host = PathBuf::from(host);
        if host.is_dir() {
            for entry in walkdir::WalkDir::new(&host).sort_by_file_name() {
                let entry = entry?;
                if entry.file_type().is_file() {
                    let rel = entry
                        .path()
                        .strip_prefix(&host)?
                        .to_string_lossy()
                        .into_owned();
                    files.insert(
                        package::image_path(&format!("{inside}/{rel}"))?,
                        entry.path().to_owned(),
                    );
                }
            }
        } else {
            // A shared library added as a file (one the program dlopens, such as ONNX
            // Runtime) brings the libraries it needs too.
            if package::is_elf(&host) {
                files.extend(package::elf_closure(&host)?);
            }
            files.insert(inside, host);
        }
    }
    let settings = package::Settings {
        entrypoint: vec![args.entrypoint.unwrap_or(dest)],
        cmd: args.cmd,
        env: args
            .env
            .iter()
            .map(|e| key_value("--env", e).map(|(k, v)| format!("{k}={v}")))
            .collect::<Result<_>>()?,
        workdir: args.workdir,
        labels: args
            .labels
            .iter()
            .map(|l| key_value("--label", l))
            .collect::<Result<_>>()?,
    };
    let dir = tempfile::tempdir()?;
    let layer_path = dir.path().join("layer.tar");
    let (layer_digest, layer_size) = {
        let (files, out) = (files.clone(), std::fs::File::create(&layer_path)?);
        tokio::task::spawn_blocking(move || package::write_layer(&files, out)).await??
    };
    let config = serde_json::to_vec(&package::config(&settings, &layer_digest))?;
    let config_path = dir.path().join("config.json");
    std::fs::write(&config_path, &config)?;
    let config_digest = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&config))
    );
    client
        .push_blob(&r.name, &layer_path, &layer_digest)
        .await?;
    client
        .push_blob(&r.name, &config_path, &config_digest)
        .await?;
    let manifest = package::manifest(&config, &layer_digest, layer_size);
    let reference = if r.reference.starts_with("sha256:") {
        "latest".to_owned()
    } else {
        r.reference
    };
    let digest = client
        .push_manifest(
            &r.name,
            &reference,
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        )
        .await?;
    eprintln!(
        "Pushed {} files ({layer_size} bytes) as {}/{}:{reference}",
        files.len(),
        r.host,
        r.name
    );
    Ok(outln!("{digest}")?)
}

fn repository_path(ctx: &Context, repository: &str, at: &Where) -> Result<String> {
    Ok(format!(
        "/v1/projects/{}/locations/{}/repositories/{repository}",
        ctx.project(at.project.clone())?,
        at.location
    ))
}

async fn repositories(ctx: &Context, client: &ApiClient, c: RepositoriesCommand) -> Result<()> {
    match c {
        RepositoriesCommand::Create {
            repository,
            at,
            repository_format,
            description,
        } => {
            let project = ctx.project(at.project)?;
            let op = client
                .post_query(
                    &format!("/v1/projects/{project}/locations/{}/repositories", at.location),
                    &[("repositoryId", repository.clone())],
                    &json!({"format": repository_format.to_ascii_uppercase(), "description": description}),
                )
                .await?;
            eprintln!("Created repository [{repository}].");
            print_one(&ctx.format, &op["response"])
        }
        RepositoriesCommand::Describe { repository, at } => {
            let path = repository_path(ctx, &repository, &at)?;
            print_one(&ctx.format, &client.get(&path).await?)
        }
        RepositoriesCommand::List { at, list } => {
            let project = ctx.project(at.project)?;
            let resp = client
                .get(&format!(
                    "/v1/projects/{project}/locations/{}/repositories",
                    at.location
                ))
                .await?;
            let items = resp["repositories"].as_array().cloned().unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("REPOSITORY", "name"),
                    ("FORMAT", "format"),
                    ("URI", "registryUri"),
                ],
            )
        }
        RepositoriesCommand::Delete { repository, at, .. } => {
            client
                .delete(&repository_path(ctx, &repository, &at)?)
                .await?;
            eprintln!("Deleted repository [{repository}].");
            Ok(())
        }
        RepositoriesCommand::GetIamPolicy { repository, at } => {
            let path = format!("{}:getIamPolicy", repository_path(ctx, &repository, &at)?);
            print_one(&ctx.format, &client.post(&path, &json!({})).await?)
        }
        RepositoriesCommand::AddIamPolicyBinding {
            repository,
            at,
            member,
            role,
        } => {
            let path = repository_path(ctx, &repository, &at)?;
            edit(ctx, client, &path, |p| add_member(p, &role, &member)).await
        }
        RepositoriesCommand::RemoveIamPolicyBinding {
            repository,
            at,
            member,
            role,
        } => {
            let path = repository_path(ctx, &repository, &at)?;
            edit(ctx, client, &path, |p| remove_member(p, &role, &member)).await
        }
    }
}

async fn edit(
    ctx: &Context,
    client: &ApiClient,
    path: &str,
    change: impl Fn(&mut Value),
) -> Result<()> {
    let mut policy = client
        .post(&format!("{path}:getIamPolicy"), &json!({}))
        .await?;
    change(&mut policy);
    let policy = client
        .post(
            &format!("{path}:setIamPolicy"),
            &json!({ "policy": policy }),
        )
        .await?;
    eprintln!(
        "Updated IAM policy for repository [{}].",
        path.rsplit('/').next().unwrap_or(path)
    );
    print_one(&ctx.format, &policy)
}

/// An image reference split as Docker does: `HOST/NAME[:TAG|@DIGEST]`.
pub(super) struct ImageReference {
    pub(super) host: String,
    pub(super) name: String,
    pub(super) reference: String,
}

pub(super) fn parse_reference(image: &str) -> Result<ImageReference> {
    let (host, rest) = image
        .split_once('/')
        .filter(|(h, _)| h.contains('.') || h.contains(':') || *h == "localhost")
        .with_context(|| {
            format!("{image:?} does not start with a registry host (HOST/PROJECT/REPOSITORY/IMAGE)")
        })?;
    let (name, reference) = match rest.split_once('@') {
        Some((name, digest)) => (name, digest.to_owned()),
        None => match rest.rsplit_once(':') {
            Some((name, tag)) if !tag.contains('/') => (name, tag.to_owned()),
            _ => (rest, "latest".to_owned()),
        },
    };
    if name.split('/').count() < 3 {
        bail!("{image:?} names no image: expected HOST/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST]");
    }
    Ok(ImageReference {
        host: host.to_owned(),
        name: name.to_owned(),
        reference,
    })
}

async fn images(ctx: &Context, client: &ApiClient, c: ImagesCommand) -> Result<()> {
    match c {
        ImagesCommand::Describe { image } => {
            let r = parse_reference(&image)?;
            let digest = client
                .manifest_digest(&format!("/v2/{}/manifests/{}", r.name, r.reference))
                .await?;
            let repository = r.name.split('/').nth(1).unwrap_or_default();
            print_one(
                &ctx.format,
                &json!({"image_summary": {
                    "digest": digest,
                    "fully_qualified_digest": format!("{}/{}@{digest}", r.host, r.name),
                    "registry": r.host,
                    "repository": repository,
                }}),
            )
        }
        ImagesCommand::List { repository, list } => {
            let (_, path) = repository
                .split_once('/')
                .context("expected HOST/PROJECT/REPOSITORY[/IMAGE]")?;
            let parts: Vec<&str> = path.splitn(3, '/').collect();
            let [project, repo, rest @ ..] = parts.as_slice() else {
                bail!("expected HOST/PROJECT/REPOSITORY[/IMAGE], got {repository:?}");
            };
            // The repository's location is not part of the image name: find it first.
            let repos = client
                .get(&format!("/v1/projects/{project}/locations/-/repositories"))
                .await?;
            let name = repos["repositories"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|r| r["name"].as_str())
                .find(|n| n.ends_with(&format!("/repositories/{repo}")))
                .with_context(|| format!("no repository {repo} in project {project}"))?
                .to_owned();
            let images = client.get(&format!("/v1/{name}/dockerImages")).await?;
            let host = repository.split('/').next().unwrap_or_default();
            let rows: Vec<Value> = images["dockerImages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|i| {
                    rest.first().is_none_or(|image| {
                        i["uri"].as_str().is_some_and(|u| u.contains(&format!("/{repo}/{image}@")))
                    })
                })
                .map(|i| {
                    let uri = i["uri"].as_str().unwrap_or_default();
                    let (name, digest) = uri.split_once('@').unwrap_or((uri, ""));
                    let name = name.split_once('/').map_or(name, |(_, n)| n);
                    json!({
                        "package": format!("{host}/{name}"),
                        "digest": digest,
                        "tags": i["tags"].as_array().map(|t| t.iter().filter_map(|t| t.as_str()).collect::<Vec<_>>().join(",")).unwrap_or_default(),
                        "createTime": i["uploadTime"],
                    })
                })
                .collect();
            print_list(
                &ctx.format,
                &list,
                rows,
                &[
                    ("IMAGE", "package"),
                    ("DIGEST", "digest"),
                    ("TAGS", "tags"),
                    ("CREATE_TIME", "createTime"),
                ],
            )
        }
    }
}
