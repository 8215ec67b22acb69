//! Measuring the container into the canonical event log (and, on a vTPM, into PCR 13), and
//! attesting: challenge → evidence over its nonce → `verifyAttestation` → token.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, HashAlg};
use cloister_tpm::LAUNCHER_PCR;
use cloister_tpm::attester::VtpmAttester;
use serde_json::{Value, json};

use crate::LaunchError;
use crate::metadata::Metadata;

/// Where evidence comes from.
pub enum Tee {
    /// Nothing vouches for the log (`hwmodel: INSECURE`).
    Insecure,
    Vtpm {
        attester: VtpmAttester,
        /// The AK certificate the platform's identity CA issued (DER).
        ak_cert: Vec<u8>,
    },
}

pub struct Measurements {
    tee: Tee,
    banks: Vec<HashAlg>,
    pub log: EventLog,
}

impl Measurements {
    pub fn new(mut tee: Tee) -> Result<Self, LaunchError> {
        let banks = match &mut tee {
            Tee::Insecure => vec![HashAlg::Sha256],
            Tee::Vtpm { attester, .. } => attester
                .active_banks()
                .map_err(|e| LaunchError::Attest(e.to_string()))?,
        };
        Ok(Measurements {
            tee,
            banks,
            log: EventLog::default(),
        })
    }

    /// Appends the event to the log and extends it into PCR 13 in every bank.
    pub fn measure(&mut self, event: &Event) -> Result<(), LaunchError> {
        let digests = self.log.append(COS_EVENT_PCR, &self.banks, event);
        if let Tee::Vtpm { attester, .. } = &mut self.tee {
            attester
                .extend(COS_EVENT_PCR, &digests)
                .map_err(|e| LaunchError::Attest(format!("extending PCR {COS_EVENT_PCR}: {e}")))?;
        }
        Ok(())
    }

    /// The evidence for `nonce`, as `verifyAttestation` takes it.
    fn evidence(&mut self, nonce: &[u8]) -> Result<(&'static str, Value), LaunchError> {
        let log = STANDARD.encode(self.log.encode());
        match &mut self.tee {
            Tee::Insecure => Ok(("insecureAttestation", json!({"canonicalEventLog": log}))),
            Tee::Vtpm { attester, ak_cert } => {
                let q = attester
                    .quote(nonce, HashAlg::Sha256, &[LAUNCHER_PCR, COS_EVENT_PCR])
                    .map_err(|e| LaunchError::Attest(format!("quoting: {e}")))?;
                let pcrs: BTreeMap<String, String> = q
                    .pcr_values
                    .iter()
                    .map(|(i, v)| (i.to_string(), STANDARD.encode(v)))
                    .collect();
                Ok((
                    "tpmAttestation",
                    json!({
                        "quotes": [{"hashAlgo": 11, "pcrValues": pcrs, "rawQuote": STANDARD.encode(&q.attest), "rawSignature": STANDARD.encode(&q.signature)}],
                        "canonicalEventLog": log,
                        "akCert": STANDARD.encode(ak_cert),
                    }),
                ))
            }
        }
    }
}

/// Token options (`POST /v1/token` on the teeserver, or the default token).
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    pub audience: Option<String>,
    pub nonces: Vec<String>,
}

/// Cloister's verifier, reached at the API endpoint with the instance account's credentials.
pub struct Verifier {
    pub endpoint: String,
    pub project: String,
    pub location: String,
    pub http: reqwest::Client,
    /// `tee-impersonate-service-accounts`: their ID tokens join the instance account's, so
    /// tokens list them in `google_service_accounts`.
    pub impersonate: Vec<String>,
}

impl Verifier {
    async fn post(&self, token: &str, path: &str, body: &Value) -> Result<Value, LaunchError> {
        let url = format!("{}{path}", self.endpoint);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| LaunchError::Attest(format!("{url}: {e}")))?;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            return Err(LaunchError::Attest(format!(
                "{url} answered {status}: {}",
                v["error"]["message"].as_str().unwrap_or("no message")
            )));
        }
        Ok(v)
    }

    /// An ID token for `account`, for the verifier, made with the instance account's access
    /// token (IAM decides: it needs `iam.serviceAccounts.getOpenIdToken` on `account`).
    async fn impersonated_id_token(
        &self,
        access: &str,
        account: &str,
    ) -> Result<String, LaunchError> {
        let v = self
            .post(
                access,
                &format!("/v1/projects/-/serviceAccounts/{account}:generateIdToken"),
                &json!({"audience": self.endpoint, "includeEmail": true}),
            )
            .await
            .map_err(|e| LaunchError::Attest(format!("impersonating {account}: {e}")))?;
        v["token"].as_str().map(str::to_owned).ok_or_else(|| {
            LaunchError::Attest(format!("generateIdToken for {account} returned no token"))
        })
    }

    /// One attestation round: a fresh challenge, evidence over its nonce, a token.
    pub async fn attest(
        &self,
        measurements: &mut Measurements,
        metadata: &Metadata,
        options: &TokenOptions,
    ) -> Result<String, LaunchError> {
        let access = metadata.access_token().await?;
        let challenge = self
            .post(
                &access,
                &format!(
                    "/v1/projects/{}/locations/{}/challenges",
                    self.project, self.location
                ),
                &json!({}),
            )
            .await?;
        let name = challenge["name"].as_str().unwrap_or_default().to_owned();
        let nonce = STANDARD
            .decode(challenge["tpmNonce"].as_str().unwrap_or_default())
            .map_err(|e| LaunchError::Attest(format!("the challenge nonce is not base64: {e}")))?;
        let mut id_tokens = vec![metadata.id_token(&self.endpoint).await?];
        for account in &self.impersonate {
            id_tokens.push(self.impersonated_id_token(&access, account).await?);
        }
        let (kind, evidence) = measurements.evidence(&nonce)?;
        let mut token_options = json!({"tokenType": "TOKEN_TYPE_OIDC"});
        if let Some(a) = &options.audience {
            token_options["audience"] = json!(a);
        }
        if !options.nonces.is_empty() {
            token_options["nonce"] = json!(options.nonces);
        }
        let body = json!({
            "gcpCredentials": {"serviceAccountIdTokens": id_tokens},
            kind: evidence,
            "tokenOptions": token_options,
        });
        let v = self
            .post(&access, &format!("/v1/{name}:verifyAttestation"), &body)
            .await?;
        v["oidcClaimsToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                LaunchError::Attest("verifyAttestation returned no oidcClaimsToken".into())
            })
    }
}

/// Writes the token where the workload reads it: a temp file, then a rename, so a reader
/// never sees half a token.
pub fn write_token(dir: &Path, token: &str) -> Result<(), LaunchError> {
    let path = dir.join("attestation_verifier_claims_token");
    let tmp = dir.join(".attestation_verifier_claims_token.tmp");
    let io = |e: std::io::Error| LaunchError::Io(format!("writing {}: {e}", path.display()));
    std::fs::write(&tmp, token).map_err(io)?;
    std::fs::rename(&tmp, &path).map_err(io)
}
