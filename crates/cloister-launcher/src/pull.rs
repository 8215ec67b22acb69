//! Pulling the image: the tag is resolved to a digest once, then everything is fetched by
//! digest and every blob's SHA-256 is checked while it is written, so a tag moved mid-pull or
//! a registry serving other bytes cannot change what runs. The instance account's token is
//! sent only to Cloister's own registry, never to a third-party one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use sha2::{Digest, Sha256};

use crate::LaunchError;

/// The pulled image: its digests, its configuration and its layers on disk.
#[derive(Debug)]
pub struct PulledImage {
    pub reference: String,
    pub digest: String,
    /// The config blob's digest (Docker's "image ID").
    pub image_id: String,
    pub config: serde_json::Value,
    /// (layer file, gzip-compressed?, digest), lowest first.
    pub layers: Vec<(PathBuf, bool, String)>,
}

impl PulledImage {
    pub fn labels(&self) -> BTreeMap<String, String> {
        self.config["config"]["Labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn fail(what: String) -> LaunchError {
    LaunchError::Pull(what)
}

/// A blob fetch failure; a digest mismatch caught by the client says so plainly.
fn fetch_failed(desc: &OciDescriptor, e: oci_client::errors::OciDistributionError) -> LaunchError {
    match e {
        oci_client::errors::OciDistributionError::DigestError(d) => fail(format!(
            "blob digest mismatch for {}: {d}; refusing to run it",
            desc.digest
        )),
        other => fail(format!("fetching blob {}: {other}", desc.digest)),
    }
}

fn check(desc: &OciDescriptor, actual: String) -> Result<(), LaunchError> {
    if actual != desc.digest {
        return Err(fail(format!(
            "blob digest mismatch: the registry sent {actual} for {}; refusing to run it",
            desc.digest
        )));
    }
    Ok(())
}

/// A small blob (the config), held in memory and checked.
async fn fetch_small(
    client: &Client,
    image: &Reference,
    desc: &OciDescriptor,
) -> Result<Vec<u8>, LaunchError> {
    let mut buf = Vec::new();
    client
        .pull_blob(image, desc, &mut buf)
        .await
        .map_err(|e| fetch_failed(desc, e))?;
    check(
        desc,
        format!("sha256:{}", hex::encode(Sha256::digest(&buf))),
    )?;
    Ok(buf)
}

/// A layer, streamed to `path` and then hashed from disk (memory stays flat for any size).
async fn fetch_to_file(
    client: &Client,
    image: &Reference,
    desc: &OciDescriptor,
    path: &Path,
) -> Result<(), LaunchError> {
    use tokio::io::AsyncWriteExt;
    let io = |e: std::io::Error| LaunchError::Io(format!("writing blob {}: {e}", desc.digest));
    let mut file = tokio::fs::File::create(path).await.map_err(io)?;
    client
        .pull_blob(image, desc, &mut file)
        .await
        .map_err(|e| fetch_failed(desc, e))?;
    file.flush().await.map_err(io)?;
    let path = path.to_owned();
    let actual = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
        let mut hash = Sha256::new();
        std::io::copy(&mut std::fs::File::open(path)?, &mut hash)?;
        Ok(format!("sha256:{}", hex::encode(hash.finalize())))
    })
    .await
    .map_err(|e| LaunchError::Io(e.to_string()))?
    .map_err(io)?;
    check(desc, actual)
}

/// Pulls `reference` into `dir`. `cloister_host` is Cloister's registry host (where `token`
/// may be sent); `insecure_hosts` are reached over plain HTTP.
pub async fn pull(
    reference: &str,
    dir: &Path,
    cloister_host: &str,
    token: Option<&str>,
    insecure_hosts: Vec<String>,
) -> Result<PulledImage, LaunchError> {
    let parsed: Reference = reference
        .parse()
        .map_err(|e| fail(format!("invalid image reference {reference:?}: {e}")))?;
    let client = Client::try_from(ClientConfig {
        protocol: ClientProtocol::HttpsExcept(insecure_hosts),
        ..Default::default()
    })
    .map_err(|e| fail(format!("building the registry client: {e}")))?;
    let auth = match token {
        Some(t) if parsed.resolve_registry() == cloister_host => {
            RegistryAuth::Basic("oauth2accesstoken".into(), t.to_owned())
        }
        _ => RegistryAuth::Anonymous,
    };
    let digest = match parsed.digest() {
        Some(d) => d.to_owned(),
        None => client
            .fetch_manifest_digest(&parsed, &auth)
            .await
            .map_err(|e| fail(format!("resolving {reference}: {e}")))?,
    };
    let pinned = parsed.clone_with_digest(digest.clone());
    let (manifest, manifest_digest) =
        client
            .pull_image_manifest(&pinned, &auth)
            .await
            .map_err(|e| {
                fail(format!(
                    "fetching the manifest of {reference}@{digest}: {e}"
                ))
            })?;
    if manifest_digest != digest {
        return Err(fail(format!(
            "the registry answered manifest {manifest_digest} for {digest}; refusing to run it"
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| LaunchError::Io(e.to_string()))?;
    let config = fetch_small(&client, &pinned, &manifest.config).await?;
    let config: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| fail(format!("the image config is not JSON: {e}")))?;
    let mut layers = Vec::new();
    for layer in &manifest.layers {
        let gzip = match layer.media_type.as_str() {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => false,
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip" => true,
            other => {
                return Err(fail(format!(
                    "unsupported layer media type {other} (tar and tar+gzip are)"
                )));
            }
        };
        let path = dir.join(layer.digest.replace(':', "-"));
        fetch_to_file(&client, &pinned, layer, &path).await?;
        layers.push((path, gzip, layer.digest.clone()));
    }
    Ok(PulledImage {
        reference: reference.to_owned(),
        digest,
        image_id: manifest.config.digest.clone(),
        config,
        layers,
    })
}
