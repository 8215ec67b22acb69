//! `cloister artifacts sign|verify`: container image signatures in cosign's format (the
//! SimpleSigning payload as a layer of the manifest tagged `sha256-<hex>.sig`, the signature
//! in the layer annotation), carrying the public key and algorithm in the payload's
//! `optional` as Confidential Space reads them. Judging reuses the verifier's own code, so
//! `verify` says what a token would state.

use anyhow::{Context as _, Result, bail};
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_client::{ApiClient, ClientError, Progress};
use cloister_services::verifier::signatures::{
    self as cosign, PAYLOAD_MEDIA_TYPE, PAYLOAD_TYPE, PUB_KEY, SIGALG_KEY, SIGNATURE_ANNOTATION,
    SignatureAlgorithm,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::path::PathBuf;

use super::artifacts::{ImageReference, parse_reference};
use super::output::outln;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    /// The image: HOST/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST] (a tag is resolved once).
    image: String,
    /// The private key, PEM: PKCS#8 (`PRIVATE KEY`), SEC1 (`EC PRIVATE KEY`, P-256) or
    /// PKCS#1 (`RSA PRIVATE KEY`). Cosign's encrypted key files are not read.
    #[arg(long)]
    key: PathBuf,
    /// For an RSA key: RSASSA_PKCS1V15_SHA256 (default) or RSASSA_PSS_SHA256.
    #[arg(long)]
    algorithm: Option<String>,
    /// Where the signature goes: HOST/PROJECT/REPOSITORY/IMAGE [default: the image's].
    #[arg(long)]
    signature_repo: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The image: HOST/PROJECT/REPOSITORY/IMAGE[:TAG|@DIGEST].
    image: String,
    /// The public key (PEM) that must have signed the image. Required, as cosign's: a
    /// signature's payload carries its own key, so "some signature verifies" proves nothing.
    #[arg(long)]
    key: PathBuf,
    /// Where to look for signatures [default: the image's repository].
    #[arg(long)]
    signature_repo: Option<String>,
}

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair, SignatureAlgorithm),
}

fn load_signer(path: &PathBuf, algorithm: Option<&str>) -> Result<Signer> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (label, der) = pem_rfc7468::decode_vec(&text)
        .map_err(|e| anyhow::anyhow!("{} is not a PEM private key: {e}", path.display()))?;
    let ec = |der: &[u8]| {
        EcdsaKeyPair::from_private_key_der(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, der).ok()
    };
    let rsa_alg = match algorithm.map(SignatureAlgorithm::parse) {
        None => SignatureAlgorithm::RsassaPkcs1v15Sha256,
        Some(Some(a)) => a,
        Some(None) => bail!(
            "--algorithm {:?} is not one of ECDSA_P256_SHA256, RSASSA_PKCS1V15_SHA256, RSASSA_PSS_SHA256",
            algorithm.unwrap_or_default()
        ),
    };
    let signer = match label {
        "PRIVATE KEY" | "EC PRIVATE KEY" => match ec(&der) {
            Some(k) => Some(Signer::Ec(k)),
            None => RsaKeyPair::from_pkcs8(&der)
                .ok()
                .map(|k| Signer::Rsa(k, rsa_alg)),
        },
        "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der)
            .ok()
            .map(|k| Signer::Rsa(k, rsa_alg)),
        other => bail!(
            "{} holds a {other:?}; give an unencrypted PEM private key (PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY)",
            path.display()
        ),
    };
    let signer = signer.with_context(|| {
        format!(
            "{} is not a P-256 or RSA (2048 to 8192 bits) private key",
            path.display()
        )
    })?;
    match (&signer, algorithm) {
        (Signer::Ec(_), Some(a)) if a != "ECDSA_P256_SHA256" => {
            bail!("an EC P-256 key signs ECDSA_P256_SHA256, not {a}")
        }
        (Signer::Rsa(..), _) if rsa_alg == SignatureAlgorithm::EcdsaP256Sha256 => {
            bail!("an RSA key cannot sign ECDSA_P256_SHA256")
        }
        _ => Ok(signer),
    }
}

impl Signer {
    fn algorithm(&self) -> SignatureAlgorithm {
        match self {
            Signer::Ec(_) => SignatureAlgorithm::EcdsaP256Sha256,
            Signer::Rsa(_, a) => *a,
        }
    }

    fn public_pem(&self) -> Result<String> {
        let der = match self {
            Signer::Ec(k) => k.public_key().as_der()?.as_ref().to_vec(),
            Signer::Rsa(k, _) => k.public_key().as_der()?.as_ref().to_vec(),
        };
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &der)
            .map_err(|e| anyhow::anyhow!("encoding the public key as PEM: {e}"))
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = SystemRandom::new();
        Ok(match self {
            Signer::Ec(k) => k.sign(&rng, message)?.as_ref().to_vec(),
            Signer::Rsa(k, alg) => {
                let padding: &'static dyn signature::RsaEncoding = match alg {
                    SignatureAlgorithm::RsassaPssSha256 => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, message, &mut sig)?;
                sig
            }
        })
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The image's digest, and the repository name its signatures live in.
async fn locate(
    client: &ApiClient,
    image: &str,
    signature_repo: Option<&str>,
) -> Result<(ImageReference, String, String)> {
    let r = parse_reference(image)?;
    let digest = if r.reference.starts_with("sha256:") {
        r.reference.clone()
    } else {
        client
            .manifest_digest(&format!("/v2/{}/manifests/{}", r.name, r.reference))
            .await?
    };
    let sig_name = match signature_repo {
        None => r.name.clone(),
        Some(repo) => {
            let s = parse_reference(repo)?;
            if s.host != r.host {
                bail!(
                    "--signature-repo {repo:?} is on {}, not on this Cloister's registry {}",
                    s.host,
                    r.host
                );
            }
            s.name
        }
    };
    Ok((r, digest, sig_name))
}

fn sig_tag(digest: &str) -> String {
    format!("{}.sig", digest.replacen(':', "-", 1))
}

/// A GET's raw bytes; `None` for a 404.
async fn get_bytes(client: &ApiClient, path: &str) -> Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    match client
        .download(path, &[], &mut buf, &Progress::default())
        .await
    {
        Ok(_) => Ok(Some(buf)),
        Err(ClientError::Api {
            http_status: 404, ..
        }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The signature manifest's layers, or none when no signature is there yet.
async fn existing_layers(client: &ApiClient, sig_name: &str, tag: &str) -> Result<Vec<Value>> {
    let Some(bytes) = get_bytes(client, &format!("/v2/{sig_name}/manifests/{tag}")).await? else {
        return Ok(Vec::new());
    };
    let manifest: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("the signature manifest {sig_name}:{tag} is not JSON"))?;
    Ok(manifest["layers"].as_array().cloned().unwrap_or_default())
}

async fn push_bytes(client: &ApiClient, name: &str, bytes: &[u8]) -> Result<String> {
    let digest = sha256(bytes);
    let file = tempfile::NamedTempFile::new()?;
    std::fs::write(file.path(), bytes)?;
    client.push_blob(name, file.path(), &digest).await?;
    Ok(digest)
}

pub async fn sign(client: &ApiClient, args: SignArgs) -> Result<()> {
    let signer = load_signer(&args.key, args.algorithm.as_deref())?;
    let (r, digest, sig_name) = locate(client, &args.image, args.signature_repo.as_deref()).await?;
    let alg = signer.algorithm().as_str();
    let payload = serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": format!("{}/{}", r.host, r.name)},
            "image": {"docker-manifest-digest": digest},
            "type": PAYLOAD_TYPE,
        },
        "optional": {
            PUB_KEY: STANDARD.encode(signer.public_pem()?),
            SIGALG_KEY: alg,
        },
    }))?;
    let sig = signer.sign(&payload)?;
    // What a verifier will say of it, before anything is pushed.
    let judged = cosign::verify(&payload, &sig, &digest)?;

    let tag = sig_tag(&digest);
    let mut layers = existing_layers(client, &sig_name, &tag).await?;
    let payload_digest = push_bytes(client, &sig_name, &payload).await?;
    layers.push(json!({
        "mediaType": PAYLOAD_MEDIA_TYPE,
        "size": payload.len(),
        "digest": payload_digest,
        "annotations": {SIGNATURE_ANNOTATION: STANDARD.encode(&sig)},
    }));
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "os": "",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>()},
    }))?;
    let config_digest = push_bytes(client, &sig_name, &config).await?;
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "size": config.len(), "digest": config_digest},
        "layers": layers,
    }))?;
    client
        .push_manifest(&sig_name, &tag, OCI_MANIFEST, manifest)
        .await?;
    eprintln!(
        "Signed {}/{}@{digest} with {alg} key {}; the signature is {}/{sig_name}:{tag}",
        r.host, r.name, judged.key_id, r.host
    );
    Ok(outln!("{alg}:{}", judged.key_id)?)
}

/// The key id of a PEM public key file (what `--key` of verify names).
fn key_id_of(path: &PathBuf) -> Result<String> {
    let text = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (label, der) = pem_rfc7468::decode_vec(&text)
        .map_err(|e| anyhow::anyhow!("{} is not PEM: {e}", path.display()))?;
    if label != "PUBLIC KEY" {
        bail!("{} holds a {label:?}, not a PUBLIC KEY", path.display());
    }
    Ok(hex::encode(Sha256::digest(&der)))
}

pub async fn verify(client: &ApiClient, args: VerifyArgs) -> Result<()> {
    let want = key_id_of(&args.key)?;
    let (r, digest, sig_name) = locate(client, &args.image, args.signature_repo.as_deref()).await?;
    let tag = sig_tag(&digest);
    let layers = existing_layers(client, &sig_name, &tag).await?;
    let mut valid = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let judged = async {
            let blob = layer["digest"].as_str().unwrap_or_default();
            let payload = get_bytes(client, &format!("/v2/{sig_name}/blobs/{blob}"))
                .await?
                .with_context(|| format!("payload {blob} is missing"))?;
            if sha256(&payload) != blob {
                bail!("the registry sent other bytes for payload {blob}");
            }
            let sig = layer["annotations"][SIGNATURE_ANNOTATION]
                .as_str()
                .with_context(|| format!("no {SIGNATURE_ANNOTATION} annotation"))?;
            let sig = STANDARD
                .decode(sig)
                .context("the signature is not base64")?;
            Ok(cosign::verify(&payload, &sig, &digest)?)
        }
        .await;
        match judged {
            Ok(s) => {
                outln!("{}:{}\tvalid", s.signature_algorithm, s.key_id)?;
                valid.push(s.key_id);
            }
            Err(e) => outln!("signature {i}\tleft out: {e:#}")?,
        }
    }
    if !valid.contains(&want) {
        bail!(
            "{}/{}@{digest} has no valid signature by key {want} in {}/{sig_name}:{tag}",
            r.host,
            r.name,
            r.host
        );
    }
    Ok(())
}
