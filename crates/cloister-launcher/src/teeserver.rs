//! `teeserver.sock`: the workload asks the launcher for tokens and evidence over a Unix socket
//! in `/run/container_launcher`, as Confidential Space's launcher serves it:
//! - `GET /v1/token`: a fresh default token (OIDC, audience Google's STS), attested now, as
//!   Google's launcher does; the token file the launcher refreshes is left as it is.
//! - `POST /v1/token`: a custom token, with Google's body (`audience`, `nonces`, `token_type`:
//!   `OIDC`, `PKI` or `AWS_PRINCIPALTAGS`, and `aws_principal_tag_options`). Unknown fields are
//!   refused, as Google's decoder does.
//! - `POST /v1/evidence`: raw evidence over the workload's own `challenge`, for a verifier of
//!   the workload's choosing (see [`evidence_nonce`]).
//!
//! Errors are plain text, as Google's are (clients print the body): what was wrong and what to
//! do. A request the verifier refused is a 400, a failure on the way a 500.

use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::attest::{TokenOptions, TokenType};
use crate::{Attestation, LaunchError};

/// The audience of the default token: Google's STS.
const DEFAULT_AUDIENCE: &str = "https://sts.googleapis.com";
const MAX_NONCES: usize = 6;
const NONCE_BYTES: std::ops::RangeInclusive<usize> = 8..=88;
const MAX_AUDIENCE: usize = 512;
/// The label `/v1/evidence` binds its quotes to, so they cannot pass for the launcher's own.
pub const EVIDENCE_LABEL: &[u8] = b"WORKLOAD_ATTESTATION";

/// Google's launcher's `TokenOptions` JSON.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CustomToken {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    nonces: Vec<String>,
    #[serde(default)]
    token_type: String,
    #[serde(default)]
    aws_principal_tag_options: Option<AwsPrincipalTagOptions>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AwsPrincipalTagOptions {
    #[serde(default)]
    allowed_principal_tags: Option<AllowedPrincipalTags>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedPrincipalTags {
    #[serde(default)]
    container_image_signatures: Option<ContainerImageSignatures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContainerImageSignatures {
    #[serde(default)]
    key_ids: Vec<String>,
}

/// `GetAttestationEvidenceRequest` in protojson: `challenge` is bytes, so standard base64.
#[derive(Deserialize)]
struct EvidenceRequest {
    #[serde(default)]
    challenge: String,
}

type Shared = Arc<Mutex<Attestation>>;

fn bad(message: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, message.into()).into_response()
}

/// What the workload sent, as the options to attest with; or why not.
fn custom_options(body: &[u8]) -> Result<TokenOptions, String> {
    let req: CustomToken = serde_json::from_slice(body).map_err(|e| {
        format!("failed to parse POST body as TokenOptions: {e}; send {{\"audience\": …, \"token_type\": \"OIDC\"|\"PKI\"|\"AWS_PRINCIPALTAGS\", \"nonces\": […]}}")
    })?;
    if req.audience.is_empty() {
        return Err(
            "use GET request for the default identity token (a POST must name its audience)".into(),
        );
    }
    if req.audience.len() > MAX_AUDIENCE {
        return Err(format!(
            "audience is {} bytes; at most {MAX_AUDIENCE} are allowed",
            req.audience.len()
        ));
    }
    if req.token_type.is_empty() {
        return Err("token_type is a required parameter: OIDC, PKI or AWS_PRINCIPALTAGS".into());
    }
    let token_type = TokenType::parse(&req.token_type).ok_or_else(|| {
        format!(
            "token_type {:?} is not supported: use OIDC, PKI or AWS_PRINCIPALTAGS",
            req.token_type
        )
    })?;
    if req.nonces.len() > MAX_NONCES {
        return Err(format!(
            "got {} nonces, but at most {MAX_NONCES} are allowed",
            req.nonces.len()
        ));
    }
    if let Some(n) = req.nonces.iter().find(|n| !NONCE_BYTES.contains(&n.len())) {
        return Err(format!(
            "nonce {n:?} is {} bytes; each nonce must be 8 to 88 bytes",
            n.len()
        ));
    }
    let allowed_key_ids = req
        .aws_principal_tag_options
        .and_then(|o| o.allowed_principal_tags)
        .and_then(|t| t.container_image_signatures)
        .map(|s| s.key_ids);
    Ok(TokenOptions {
        audience: Some(req.audience),
        nonces: req.nonces,
        token_type,
        allowed_key_ids,
    })
}

async fn attest(a: &Shared, options: &TokenOptions) -> Response {
    match a.lock().await.token(options).await {
        Ok(token) => token.into_response(),
        Err(e @ LaunchError::Refused(_)) => bad(format!("failed to retrieve attestation service token: {e}")),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to retrieve attestation service token: {e}; retry, and if it persists read the launcher's log on the serial console"),
        )
            .into_response(),
    }
}

async fn token(State(a): State<Shared>, method: Method, body: Bytes) -> Response {
    match method {
        Method::GET => {
            let options = TokenOptions {
                audience: Some(DEFAULT_AUDIENCE.into()),
                ..TokenOptions::default()
            };
            attest(&a, &options).await
        }
        Method::POST => match custom_options(&body) {
            Ok(options) => attest(&a, &options).await,
            Err(why) => bad(why),
        },
        other => bad(format!(
            "TEE server received an invalid HTTP method: {other}; use GET for the default token or POST for a custom one"
        )),
    }
}

/// The nonce the evidence's quote covers for `challenge`: Google's nested hashing,
/// SHA-256(label ‖ SHA-256(challenge)), so a challenge of any length fits a TPM quote and
/// evidence for the workload can never be taken for the launcher's own attestation.
pub fn evidence_nonce(challenge: &[u8]) -> Vec<u8> {
    let inner = Sha256::digest(challenge);
    Sha256::new()
        .chain_update(EVIDENCE_LABEL)
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Cloister's evidence (in `verifyAttestation`'s shape) as Google's `VmAttestation.quote`.
fn quote(kind: &str, mut e: Value) -> Value {
    let log = e["canonicalEventLog"].take();
    match kind {
        "tpmAttestation" => {
            let quotes: Vec<Value> = e["quotes"]
                .as_array()
                .map(|qs| {
                    qs.iter()
                        .map(|q| json!({"hashAlgorithm": q["hashAlgo"], "pcrValues": q["pcrValues"], "tpmsAttest": q["rawQuote"], "tpmtSignature": q["rawSignature"]}))
                        .collect()
                })
                .unwrap_or_default();
            json!({"tpmQuote": {"quotes": quotes, "celLaunchEventLog": log, "endorsement": {"akCertEndorsement": {"akCert": e["akCert"]}}}})
        }
        "tdCcel" => instance(
            json!({"tdxCcelQuote": {"tdQuote": e["tdQuote"], "celLaunchEventLog": log}}),
            "tdxCcelQuote",
            &e,
        ),
        // Google's message has no SEV-SNP or INSECURE quote; Cloister's are named for theirs.
        "sevSnpAttestation" => instance(
            json!({"sevSnpQuote": {"report": e["report"], "vcekCert": e["vcekCert"], "celLaunchEventLog": log}}),
            "sevSnpQuote",
            &e,
        ),
        _ => json!({"insecureQuote": {"celLaunchEventLog": log}}),
    }
}

/// A hardware quote's instance, when the guest has the platform's vTPM: the AK certificate
/// its REPORT_DATA binds (a relying party recomputes the binding with it) and the AK's quote.
fn instance(mut quote: Value, kind: &str, e: &Value) -> Value {
    for field in ["akCert", "akQuote"] {
        if let Some(v) = e.get(field) {
            quote[kind][field] = v.clone();
        }
    }
    quote
}

async fn evidence(State(a): State<Shared>, method: Method, body: Bytes) -> Response {
    if method != Method::POST {
        return (
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed: POST {\"challenge\": \"<base64>\"}",
        )
            .into_response();
    }
    let req: EvidenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(format!(
                "failed to decode request: {e}; send {{\"challenge\": \"<base64>\"}}"
            ));
        }
    };
    let challenge = match STANDARD.decode(req.challenge.as_bytes()) {
        Ok(c) => c,
        Err(e) => return bad(format!("challenge is not base64: {e}")),
    };
    if challenge.is_empty() {
        return bad(
            "challenge is required: send {\"challenge\": \"<base64>\"} with at least one byte",
        );
    }
    let nonce = evidence_nonce(&challenge);
    let mut a = a.lock().await;
    match a.measurements.evidence(&nonce) {
        Ok((kind, e)) => axum::Json(json!({
            "label": STANDARD.encode(EVIDENCE_LABEL),
            "challenge": STANDARD.encode(&challenge),
            "quote": quote(kind, e),
        }))
        .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("failed to collect attestation evidence: {e}"),
        )
            .into_response(),
    }
}

/// Serves the socket until the task is dropped.
pub async fn serve(
    socket: &Path,
    attestation: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    let app = axum::Router::new()
        .route("/v1/token", any(token))
        .route("/v1/evidence", any(evidence))
        .with_state(attestation);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("teeserver stopped: {e}");
        }
    }))
}

#[cfg(test)]
#[path = "teeserver_tests.rs"]
mod tests;
