//! Signature discovery (`tee-signed-image-repos`), as Confidential Space's launcher does it:
//! for each repository, cosign's tag `sha256-<hex>.sig` of the measured image digest; each
//! layer of that manifest is a payload blob (its digest checked here) with its signature in
//! the layer annotation `dev.cosignproject.cosign/signature`. The launcher only carries what
//! it finds: the verifier judges every signature itself. A missing or failing repository is
//! logged and skipped, never fatal. Discovery runs again for every token, so a signature
//! added after launch is in the next one.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The verifier accepts at most this many signatures.
pub const MAX_SIGNATURES: usize = 300;
const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// A SimpleSigning payload is a few hundred bytes; anything far larger is not one.
const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// Attempts per repository, and the first pause between them (doubled each time).
const ATTEMPTS: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(200);

fn log(line: impl AsRef<str>) {
    println!("[launcher] {}", line.as_ref());
}

/// `tee-signed-image-repos` and how to reach the registries.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    pub repos: Vec<String>,
    /// Cloister's registry host: the only one the instance account's token is sent to.
    pub cloister_host: String,
    /// Hosts reached over plain HTTP.
    pub insecure_hosts: Vec<String>,
}

/// One signature as verifyAttestation takes it (`containerImageSignatures[]`).
fn entry(payload: &[u8], signature: &[u8]) -> Value {
    json!({"payload": STANDARD.encode(payload), "signature": STANDARD.encode(signature)})
}

impl Discovery {
    /// The signatures of `digest` (`sha256:<hex>`) in every repository, at most
    /// [`MAX_SIGNATURES`].
    pub async fn find(&self, digest: &str, token: &str) -> Vec<Value> {
        let mut found = Vec::new();
        if self.repos.is_empty() {
            return found;
        }
        let Some(hex) = digest.strip_prefix("sha256:") else {
            log(format!(
                "image digest {digest} is not sha256: no signatures looked up"
            ));
            return found;
        };
        let client = match Client::try_from(ClientConfig {
            protocol: ClientProtocol::HttpsExcept(self.insecure_hosts.clone()),
            ..Default::default()
        }) {
            Ok(c) => c,
            Err(e) => {
                log(format!(
                    "signature discovery: building the registry client: {e}"
                ));
                return found;
            }
        };
        for repo in &self.repos {
            // Full: no more payloads are fetched, whatever the other repositories hold.
            let room = MAX_SIGNATURES.saturating_sub(found.len());
            if room == 0 {
                log(format!(
                    "{MAX_SIGNATURES} signatures found; repository {repo} not read"
                ));
                continue;
            }
            let reference = match sig_reference(repo, hex) {
                Ok(r) => r,
                Err(why) => {
                    log(format!("signature repository {repo:?} skipped: {why}"));
                    continue;
                }
            };
            let auth = if reference.resolve_registry() == self.cloister_host {
                RegistryAuth::Basic("oauth2accesstoken".into(), token.to_owned())
            } else {
                RegistryAuth::Anonymous
            };
            match with_retries(&client, &reference, &auth, room).await {
                Ok(mut sigs) => {
                    log(format!("{} signature(s) found in {repo}", sigs.len()));
                    found.append(&mut sigs);
                }
                Err(why) => log(format!("signature repository {repo} skipped: {why}")),
            }
        }
        found
    }
}

/// `REPO:sha256-<hex>.sig`; `repo` must name a repository, not a tag or digest.
fn sig_reference(repo: &str, hex: &str) -> Result<Reference, String> {
    let last = repo.rsplit('/').next().unwrap_or(repo);
    if repo.contains('@') || last.contains(':') || !repo.contains('/') {
        return Err("expected HOST/PATH of a repository, without a tag or digest".into());
    }
    format!("{repo}:sha256-{hex}.sig")
        .parse()
        .map_err(|e| format!("not a repository name: {e}"))
}

async fn with_retries(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    room: usize,
) -> Result<Vec<Value>, String> {
    let mut pause = BACKOFF;
    let mut attempt = 1;
    loop {
        match fetch(client, reference, auth, room).await {
            Ok(sigs) => return Ok(sigs),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause *= 2;
                attempt += 1;
            }
        }
    }
}

/// The signatures of one `.sig` manifest, at most `room`: a manifest of many layers costs no
/// more fetches than the verifier would take.
async fn fetch(
    client: &Client,
    reference: &Reference,
    auth: &RegistryAuth,
    room: usize,
) -> Result<Vec<Value>, String> {
    let (manifest, _) = client
        .pull_image_manifest(reference, auth)
        .await
        .map_err(|e| format!("fetching {reference}: {e}"))?;
    let mut sigs = Vec::new();
    for layer in &manifest.layers {
        if sigs.len() == room {
            log(format!(
                "{reference} has more signatures than the {MAX_SIGNATURES} sent; the rest are not read"
            ));
            break;
        }
        let Some(signature) = layer
            .annotations
            .as_ref()
            .and_then(|a| a.get(SIGNATURE_ANNOTATION))
        else {
            log(format!(
                "layer {} of {reference} has no {SIGNATURE_ANNOTATION} annotation; skipped",
                layer.digest
            ));
            continue;
        };
        let Ok(signature) = STANDARD.decode(signature) else {
            log(format!(
                "layer {} of {reference}: the signature is not base64; skipped",
                layer.digest
            ));
            continue;
        };
        let payload = payload(client, reference, layer).await?;
        sigs.push(entry(&payload, &signature));
    }
    Ok(sigs)
}

/// A payload blob, read up to [`MAX_PAYLOAD_BYTES`] and checked against its digest.
async fn payload(
    client: &Client,
    reference: &Reference,
    layer: &OciDescriptor,
) -> Result<Vec<u8>, String> {
    let too_big = || format!("payload {} is over {MAX_PAYLOAD_BYTES} bytes", layer.digest);
    if usize::try_from(layer.size).map_or(true, |n| n > MAX_PAYLOAD_BYTES) {
        return Err(too_big());
    }
    let mut stream = client
        .pull_blob_stream(reference, layer)
        .await
        .map_err(|e| format!("fetching payload {}: {e}", layer.digest))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("reading payload {}: {e}", layer.digest))?;
        if bytes.len() + chunk.len() > MAX_PAYLOAD_BYTES {
            return Err(too_big());
        }
        bytes.extend_from_slice(&chunk);
    }
    let actual = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    if actual != layer.digest {
        return Err(format!(
            "the registry sent {actual} for payload {}",
            layer.digest
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
#[path = "signatures_tests.rs"]
mod hostile_registry_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_repository_name_becomes_a_signature_tag() {
        let hex = "ab".repeat(32);
        let r = sig_reference("cloister.test:8080/primus/sigs/workload", &hex).unwrap();
        assert_eq!(r.tag(), Some(format!("sha256-{hex}.sig").as_str()));
        assert_eq!(r.repository(), "primus/sigs/workload");
        for bad in [
            "cloister.test/primus/sigs/workload:v1",
            "cloister.test/primus/sigs/workload@sha256:00",
            "workload",
        ] {
            assert!(sig_reference(bad, &hex).is_err(), "{bad}");
        }
    }
}
