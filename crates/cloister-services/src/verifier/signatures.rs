//! Container image signatures in cosign's format, judged the way Confidential Space's verifier
//! judges them: the launcher only carries them (`confidentialSpaceInfo.signedEntities[]
//! .containerImageSignatures[]`, each a payload and a signature); everything that makes one
//! count is checked here, never taken from the launcher's word.
//!
//! A signature counts when: its payload is cosign's SimpleSigning JSON with
//! `critical.type` = `cosign container image signature`, its
//! `critical.image.docker-manifest-digest` is the digest the launcher measured (so a
//! signature of another image, copied beside this one, says nothing), its public key
//! (`optional["dev.cosignproject.cosign/pub"]`, base64 of a PEM `PUBLIC KEY`) is of the kind
//! its algorithm (`optional["dev.cosignproject.cosign/sigalg"]`) names, and the signature
//! verifies over the payload's exact bytes. `key_id` is the lowercase hex SHA-256 of the
//! key's DER SubjectPublicKeyInfo, what `openssl pkey -pubin -outform DER | sha256sum` prints.
//! A signature that does not count is left out of the token with the reason recorded; it
//! never fails the attestation.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, ParsedPublicKey, VerificationAlgorithm};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// Confidential Space accepts at most this many signatures in one request.
pub const MAX_SIGNATURES: usize = 300;
/// `critical.type` of a cosign signature payload.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";
/// The payload's `optional` keys that carry the public key and its algorithm.
pub const PUB_KEY: &str = "dev.cosignproject.cosign/pub";
pub const SIGALG_KEY: &str = "dev.cosignproject.cosign/sigalg";
/// The signature manifest layer's annotation holding the base64 signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The media type of a payload layer.
pub const PAYLOAD_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// The algorithms Confidential Space accepts, by Google's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureAlgorithm {
    /// ECDSA over P-256 with SHA-256, the signature ASN.1 DER.
    EcdsaP256Sha256,
    RsassaPkcs1v15Sha256,
    RsassaPssSha256,
}

impl SignatureAlgorithm {
    pub const ALL: [SignatureAlgorithm; 3] = [
        SignatureAlgorithm::EcdsaP256Sha256,
        SignatureAlgorithm::RsassaPkcs1v15Sha256,
        SignatureAlgorithm::RsassaPssSha256,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => "ECDSA_P256_SHA256",
            SignatureAlgorithm::RsassaPkcs1v15Sha256 => "RSASSA_PKCS1V15_SHA256",
            SignatureAlgorithm::RsassaPssSha256 => "RSASSA_PSS_SHA256",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            SignatureAlgorithm::EcdsaP256Sha256 => &signature::ECDSA_P256_SHA256_ASN1,
            SignatureAlgorithm::RsassaPkcs1v15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            SignatureAlgorithm::RsassaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        }
    }
}

/// One signature as the token states it (`submods.container.image_signatures[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageSignature {
    pub key_id: String,
    /// The signature, base64.
    pub signature: String,
    pub signature_algorithm: &'static str,
}

/// Why a signature does not count.
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("the payload is not JSON: {0}")]
    PayloadJson(#[source] serde_json::Error),
    #[error("the payload's critical.type is {0:?}, not {PAYLOAD_TYPE:?}")]
    PayloadType(String),
    #[error(
        "the payload signs image {signed}, not the running image {running}: a signature of another image"
    )]
    OtherImage { signed: String, running: String },
    #[error("the payload has no optional[{PUB_KEY:?}] (base64 of the signer's PEM public key)")]
    NoPublicKey,
    #[error("optional[{PUB_KEY:?}] is not base64 of a PEM PUBLIC KEY: {0}")]
    PublicKeyEncoding(String),
    #[error(
        "optional[{SIGALG_KEY:?}] is {0:?}; use ECDSA_P256_SHA256, RSASSA_PKCS1V15_SHA256 or RSASSA_PSS_SHA256"
    )]
    Algorithm(String),
    #[error("the public key is not a {0} key")]
    KeyKind(&'static str),
    #[error("the signature does not verify over the payload with the payload's {0} key")]
    Mismatch(&'static str),
}

/// What the verifier needs of the payload; cosign's other fields are ignored, as they are by
/// Confidential Space.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
    #[serde(default)]
    optional: Option<serde_json::Map<String, Value>>,
}

#[derive(Deserialize)]
struct Critical {
    #[serde(rename = "type")]
    kind: String,
    image: CriticalImage,
}

#[derive(Deserialize)]
struct CriticalImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: String,
}

/// The signer's public key: base64 of a PEM `PUBLIC KEY` → its DER SubjectPublicKeyInfo.
fn public_key_der(optional: &serde_json::Map<String, Value>) -> Result<Vec<u8>, SignatureError> {
    let encoded = optional
        .get(PUB_KEY)
        .and_then(Value::as_str)
        .ok_or(SignatureError::NoPublicKey)?;
    let pem = STANDARD
        .decode(encoded.trim())
        .map_err(|e| SignatureError::PublicKeyEncoding(e.to_string()))?;
    let (label, der) = pem_rfc7468::decode_vec(&pem)
        .map_err(|e| SignatureError::PublicKeyEncoding(e.to_string()))?;
    if label != "PUBLIC KEY" {
        return Err(SignatureError::PublicKeyEncoding(format!(
            "the PEM is a {label:?}, not a \"PUBLIC KEY\""
        )));
    }
    Ok(der)
}

/// Judges one signature (`payload`'s exact bytes, the raw `signature`) for the running image
/// `image_digest`.
pub fn verify(
    payload: &[u8],
    signature: &[u8],
    image_digest: &str,
) -> Result<ImageSignature, SignatureError> {
    let p: Payload = serde_json::from_slice(payload).map_err(SignatureError::PayloadJson)?;
    if p.critical.kind != PAYLOAD_TYPE {
        return Err(SignatureError::PayloadType(p.critical.kind));
    }
    if p.critical.image.docker_manifest_digest != image_digest {
        return Err(SignatureError::OtherImage {
            signed: p.critical.image.docker_manifest_digest,
            running: image_digest.to_owned(),
        });
    }
    let optional = p.optional.unwrap_or_default();
    let der = public_key_der(&optional)?;
    let alg_name = optional
        .get(SIGALG_KEY)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let alg = SignatureAlgorithm::parse(alg_name)
        .ok_or_else(|| SignatureError::Algorithm(alg_name.to_owned()))?;
    let kind = match alg {
        SignatureAlgorithm::EcdsaP256Sha256 => "P-256",
        _ => "RSA (2048 to 8192 bits)",
    };
    // Parsing for the algorithm refuses a key of another kind or curve.
    let key = ParsedPublicKey::new(alg.verification(), &der)
        .map_err(|_| SignatureError::KeyKind(kind))?;
    key.verify_sig(payload, signature)
        .map_err(|_| SignatureError::Mismatch(alg.as_str()))?;
    // The key's canonical DER, so one key has one id however its PEM was written.
    let spki = key.as_der().map_err(|_| SignatureError::KeyKind(kind))?;
    Ok(ImageSignature {
        key_id: hex::encode(Sha256::digest(spki.as_ref())),
        signature: STANDARD.encode(signature),
        signature_algorithm: alg.as_str(),
    })
}

/// `confidentialSpaceInfo` of a verifyAttestation request (Google's shape).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfidentialSpaceInfo {
    #[serde(default)]
    signed_entities: Vec<SignedEntity>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct SignedEntity {
    #[serde(default)]
    container_image_signatures: Vec<ContainerImageSignature>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerImageSignature {
    /// The payload's bytes, base64.
    #[serde(default)]
    payload: String,
    /// The signature's bytes, base64.
    #[serde(default)]
    signature: String,
}

impl ConfidentialSpaceInfo {
    /// Refuses a request with too many signatures before the challenge is spent on it.
    pub fn check(&self) -> Result<(), ApiError> {
        let n = self.count();
        if n > MAX_SIGNATURES {
            return Err(ApiError::InvalidArgument(format!(
                "confidentialSpaceInfo.signedEntities carries {n} container image signatures; at most {MAX_SIGNATURES} are accepted"
            )));
        }
        Ok(())
    }

    fn count(&self) -> usize {
        self.signed_entities
            .iter()
            .map(|e| e.container_image_signatures.len())
            .sum()
    }

    /// The signatures that count for `image_digest`, and why each other one was left out.
    pub fn judge(&self, image_digest: &str) -> (Vec<ImageSignature>, Vec<String>) {
        let mut valid = Vec::new();
        let mut left_out = Vec::new();
        let all = self
            .signed_entities
            .iter()
            .flat_map(|e| &e.container_image_signatures);
        for (i, s) in all.enumerate() {
            let decoded = STANDARD
                .decode(&s.payload)
                .map_err(|e| format!("payload is not base64: {e}"))
                .and_then(|p| {
                    let sig = STANDARD
                        .decode(&s.signature)
                        .map_err(|e| format!("signature is not base64: {e}"))?;
                    Ok((p, sig))
                });
            let judged = decoded
                .and_then(|(p, sig)| verify(&p, &sig, image_digest).map_err(|e| e.to_string()));
            match judged {
                Ok(sig) if !valid.contains(&sig) => valid.push(sig),
                Ok(_) => {}
                Err(why) => left_out.push(format!("container image signature {i}: {why}")),
            }
        }
        (valid, left_out)
    }
}
