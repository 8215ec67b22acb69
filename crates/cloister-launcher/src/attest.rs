//! Measuring the container into the canonical event log (and into the TEE's register: PCR 13
//! on a vTPM, RTMR3 on TDX; SEV-SNP has none), and attesting: challenge → evidence over its
//! nonce → `verifyAttestation` → token. SNP and TDX evidence comes from configfs-tsm, its
//! REPORT_DATA binding the nonce and the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{
    COS_EVENT_PCR, COS_EVENT_RTMR_CCEL_INDEX, Event, EventLog, HashAlg, ReportKind, report_data,
};
use cloister_tpm::attester::VtpmAttester;
use cloister_tpm::{BOOT_PCRS, LAUNCHER_PCR};
use serde_json::{Value, json};

use crate::LaunchError;
use crate::metadata::Metadata;
use crate::rtmr::Rtmr3;
use crate::tsm;

/// Where evidence comes from.
pub enum Tee {
    /// Nothing vouches for the log (`hwmodel: INSECURE`).
    Insecure,
    Vtpm {
        attester: VtpmAttester,
        /// The AK certificate the platform's identity CA issued (DER).
        ak_cert: Vec<u8>,
    },
    /// An AMD SEV-SNP guest: reports from configfs-tsm at this directory, and the platform's
    /// vTPM when it gave one (which names the instance).
    SevSnp {
        tsm: PathBuf,
        vtpm: Option<InstanceVtpm>,
    },
    /// An Intel TDX guest: quotes from configfs-tsm, container events extended into RTMR3.
    Tdx {
        tsm: PathBuf,
        rtmr3: Rtmr3,
        vtpm: Option<InstanceVtpm>,
    },
}

/// The vTPM the platform gives an SEV-SNP or TDX guest. Its AK certificate names the
/// instance; the report binds the certificate, and a quote by the AK over the challenge nonce
/// proves this guest holds that AK (a certificate alone is public: any guest could name one).
pub struct InstanceVtpm {
    pub attester: VtpmAttester,
    /// The AK certificate the platform's identity CA issued (DER).
    pub ak_cert: Vec<u8>,
}

impl InstanceVtpm {
    /// Adds the certificate and the AK's quote over `nonce` to `evidence`.
    fn attach(&mut self, nonce: &[u8], evidence: &mut Value) -> Result<(), LaunchError> {
        // Any one PCR: the quote proves who signs the nonce; the report proves the launch.
        let q = self
            .attester
            .quote(nonce, HashAlg::Sha256, &[COS_EVENT_PCR])
            .map_err(|e| LaunchError::Attest(format!("quoting with the AK: {e}")))?;
        evidence["akCert"] = json!(STANDARD.encode(&self.ak_cert));
        evidence["akQuote"] = quote_json(&q);
        Ok(())
    }
}

/// A quote in `verifyAttestation`'s shape (one element of `tpmAttestation.quotes`).
fn quote_json(q: &cloister_tpm::attester::QuoteEvidence) -> Value {
    let pcrs: BTreeMap<String, String> = q
        .pcr_values
        .iter()
        .map(|(i, v)| (i.to_string(), STANDARD.encode(v)))
        .collect();
    json!({"hashAlgo": 11, "pcrValues": pcrs, "rawQuote": STANDARD.encode(&q.attest), "rawSignature": STANDARD.encode(&q.signature)})
}

impl Tee {
    /// The register container events go to, by its index in the log.
    fn register(&self) -> u8 {
        match self {
            Tee::Tdx { .. } => COS_EVENT_RTMR_CCEL_INDEX,
            _ => COS_EVENT_PCR,
        }
    }
}

pub struct Measurements {
    tee: Tee,
    banks: Vec<HashAlg>,
    pub log: EventLog,
}

impl Measurements {
    pub fn new(mut tee: Tee) -> Result<Self, LaunchError> {
        let banks = match &mut tee {
            Tee::Insecure | Tee::SevSnp { .. } => vec![HashAlg::Sha256],
            Tee::Tdx { .. } => vec![HashAlg::Sha384],
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

    /// Appends the event to the log and extends it into the TEE's register (PCR 13 in every
    /// bank, or RTMR3).
    pub fn measure(&mut self, event: &Event) -> Result<(), LaunchError> {
        let digests = self.log.append(self.tee.register(), &self.banks, event);
        match &mut self.tee {
            Tee::Vtpm { attester, .. } => attester
                .extend(COS_EVENT_PCR, &digests)
                .map_err(|e| LaunchError::Attest(format!("extending PCR {COS_EVENT_PCR}: {e}")))?,
            Tee::Tdx { rtmr3, .. } => {
                let digest = digests.get(&HashAlg::Sha384).ok_or_else(|| {
                    LaunchError::Attest("the log made no SHA-384 digest for RTMR3".into())
                })?;
                rtmr3.extend(digest)?;
            }
            Tee::Insecure | Tee::SevSnp { .. } => {}
        }
        Ok(())
    }

    /// The evidence for `nonce`, as `verifyAttestation` takes it.
    pub fn evidence(&mut self, nonce: &[u8]) -> Result<(&'static str, Value), LaunchError> {
        let encoded = self.log.encode();
        let log = STANDARD.encode(&encoded);
        match &mut self.tee {
            Tee::SevSnp { tsm, vtpm } => {
                let ak_cert = vtpm.as_ref().map(|v| v.ak_cert.as_slice());
                let binding = report_data(ReportKind::SevSnp, nonce, &encoded, ak_cert);
                let report = tee_report(tsm, "sev_guest", &binding)?;
                let mut evidence = json!({
                    "report": STANDARD.encode(&report.outblob),
                    "canonicalEventLog": log,
                });
                if let Some(v) = vtpm {
                    v.attach(nonce, &mut evidence)?;
                }
                // Hosts that supply no certificates (Google Cloud's among them) leave the
                // VCEK to the verifier's cache; a table that is there must be well formed.
                if let Some(table) = &report.auxblob {
                    let cert = cloister_snp::cert_table::signing_certificate(table)
                        .map_err(|e| LaunchError::Attest(format!("configfs-tsm auxblob: {e}")))?;
                    evidence["vcekCert"] = json!(STANDARD.encode(cert));
                }
                Ok(("sevSnpAttestation", evidence))
            }
            Tee::Tdx { tsm, vtpm, .. } => {
                let ak_cert = vtpm.as_ref().map(|v| v.ak_cert.as_slice());
                let binding = report_data(ReportKind::Tdx, nonce, &encoded, ak_cert);
                let quote = tee_report(tsm, "tdx_guest", &binding)?;
                let mut evidence =
                    json!({"tdQuote": STANDARD.encode(&quote.outblob), "canonicalEventLog": log});
                if let Some(v) = vtpm {
                    v.attach(nonce, &mut evidence)?;
                }
                Ok(("tdCcel", evidence))
            }
            Tee::Insecure => Ok(("insecureAttestation", json!({"canonicalEventLog": log}))),
            Tee::Vtpm { attester, ak_cert } => {
                let q = attester
                    .quote(
                        nonce,
                        HashAlg::Sha256,
                        &[BOOT_PCRS[0], BOOT_PCRS[1], LAUNCHER_PCR, COS_EVENT_PCR],
                    )
                    .map_err(|e| LaunchError::Attest(format!("quoting: {e}")))?;
                Ok((
                    "tpmAttestation",
                    json!({
                        "quotes": [quote_json(&q)],
                        "canonicalEventLog": log,
                        "akCert": STANDARD.encode(ak_cert),
                    }),
                ))
            }
        }
    }
}

/// A report from configfs-tsm whose REPORT_DATA is `binding`, from the provider this launcher
/// was told it runs on (another one is an error, never a downgrade).
fn tee_report(
    root: &Path,
    provider: &str,
    binding: &[u8; 64],
) -> Result<tsm::TsmReport, LaunchError> {
    let report = tsm::request(root, binding)?;
    if report.provider != provider {
        return Err(LaunchError::Attest(format!(
            "configfs-tsm's provider is {:?}, not {provider:?}: this guest is not the TEE the launcher was told it runs on",
            report.provider
        )));
    }
    Ok(report)
}

/// The token types a workload may ask for (`token_type` on the teeserver).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TokenType {
    #[default]
    Oidc,
    Pki,
    AwsPrincipalTags,
}

impl TokenType {
    /// The teeserver's names (Google's launcher's).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "OIDC" => Some(Self::Oidc),
            "PKI" => Some(Self::Pki),
            "AWS_PRINCIPALTAGS" => Some(Self::AwsPrincipalTags),
            _ => None,
        }
    }

    /// The Confidential Computing API's enum name.
    fn api_name(self) -> &'static str {
        match self {
            Self::Oidc => "TOKEN_TYPE_OIDC",
            Self::Pki => "TOKEN_TYPE_PKI",
            Self::AwsPrincipalTags => "TOKEN_TYPE_AWS_PRINCIPALTAGS",
        }
    }
}

/// Token options (`POST /v1/token` on the teeserver, or the default token).
#[derive(Debug, Clone, Default)]
pub struct TokenOptions {
    pub audience: Option<String>,
    pub nonces: Vec<String>,
    pub token_type: TokenType,
    /// `aws_principal_tag_options.allowed_principal_tags.container_image_signatures.key_ids`.
    pub allowed_key_ids: Option<Vec<String>>,
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
    /// `tee-signed-image-repos`, searched again for every token.
    pub signatures: crate::signatures::Discovery,
    /// The measured image digest the signatures must be of.
    pub image_digest: String,
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
            let message = format!(
                "{url} answered {status}: {}",
                v["error"]["message"].as_str().unwrap_or("no message")
            );
            // The caller's request was refused (bad options, permissions), as opposed to a
            // failure on the way: the teeserver tells the workload which.
            return Err(if status.is_client_error() {
                LaunchError::Refused(message)
            } else {
                LaunchError::Attest(message)
            });
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
        let mut token_options = json!({"tokenType": options.token_type.api_name()});
        if let Some(a) = &options.audience {
            token_options["audience"] = json!(a);
        }
        if !options.nonces.is_empty() {
            token_options["nonce"] = json!(options.nonces);
        }
        if let Some(ids) = &options.allowed_key_ids {
            token_options["awsPrincipalTagsOptions"] =
                json!({"allowedPrincipalTags": {"containerImageSignatures": {"keyIds": ids}}});
        }
        let mut body = json!({
            "gcpCredentials": {"serviceAccountIdTokens": id_tokens},
            kind: evidence,
            "tokenOptions": token_options,
        });
        let signatures = self.signatures.find(&self.image_digest, &access).await;
        if !signatures.is_empty() {
            body["confidentialSpaceInfo"] =
                json!({"signedEntities": [{"containerImageSignatures": signatures}]});
        }
        let v = self
            .post(&access, &format!("/v1/{name}:verifyAttestation"), &body)
            .await?;
        for e in v["partialErrors"].as_array().into_iter().flatten() {
            println!(
                "[launcher] the verifier left out {}",
                e["message"].as_str().unwrap_or("a signature")
            );
        }
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

#[cfg(test)]
mod tests {
    use cloister_eventlog::EventType;

    use super::*;
    use crate::tsm::fake_kernel;

    const NONCE: &[u8] = b"a-challenge-nonce";

    fn events() -> Vec<Event> {
        vec![
            Event::new(
                EventType::ImageRef,
                "registry.example/primus/workload:latest",
            ),
            Event::new(
                EventType::ImageDigest,
                format!("sha256:{}", "ab".repeat(32)),
            ),
            Event::new(EventType::LaunchSeparator, Vec::new()),
        ]
    }

    /// The fake hardware's report: a marker, then the REPORT_DATA it was asked for.
    fn report(inblob: &[u8]) -> Vec<u8> {
        [b"REPORT:".as_slice(), inblob].concat()
    }

    /// An SNP certificate table holding one VCEK.
    fn vcek_table(inblob: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let cert = b"vcek-der";
        let mut table = cloister_snp::cert_table::VCEK_GUID.to_vec();
        table.extend_from_slice(&48u32.to_le_bytes());
        table.extend_from_slice(&(cert.len() as u32).to_le_bytes());
        table.extend_from_slice(&[0; 24]);
        table.extend_from_slice(cert);
        (report(inblob), table)
    }

    /// A table holding only some other certificate (an ASK, say).
    fn no_vcek(inblob: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut table = [0x11u8; 16].to_vec();
        table.extend_from_slice(&48u32.to_le_bytes());
        table.extend_from_slice(&3u32.to_le_bytes());
        table.extend_from_slice(&[0; 24]);
        table.extend_from_slice(b"ask");
        (report(inblob), table)
    }

    fn no_certs(inblob: &[u8]) -> (Vec<u8>, Vec<u8>) {
        (report(inblob), Vec::new())
    }

    fn decode(v: &Value) -> Vec<u8> {
        STANDARD.decode(v.as_str().unwrap()).unwrap()
    }

    /// The platform's vTPM as a guest has it (a real swtpm; the launcher never judges the
    /// certificate, so any bytes stand for it), and its AK's public key.
    fn instance_vtpm(dir: &Path) -> (cloister_tpm::swtpm::Swtpm, InstanceVtpm, Vec<u8>) {
        let tpm = cloister_tpm::swtpm::Swtpm::start(&dir.join("vtpm")).unwrap();
        let mut attester = VtpmAttester::open(&tpm.tcti()).unwrap();
        let ak = attester.ak_public_key().unwrap();
        let vtpm = InstanceVtpm {
            attester,
            ak_cert: b"ak-cert-der".to_vec(),
        };
        (tpm, vtpm, ak)
    }

    /// The evidence carries a quote by the AK over the nonce: the guest holds that AK.
    fn assert_holds_the_ak(evidence: &Value, ak: &[u8]) {
        let q = &evidence["akQuote"];
        let pcrs = q["pcrValues"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(i, v)| (i.parse().unwrap(), decode(v)))
            .collect();
        cloister_tpm::quote::verify_quote(
            &decode(&q["rawQuote"]),
            &decode(&q["rawSignature"]),
            ak,
            NONCE,
            11,
            &pcrs,
        )
        .unwrap();
    }

    #[test]
    fn tdx_events_extend_rtmr3_and_the_quote_binds_the_nonce_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("report");
        std::fs::create_dir_all(&tsm).unwrap();
        let rtmr3_path = dir.path().join("rtmr3:sha384");
        std::fs::write(&rtmr3_path, []).unwrap();
        let rtmr3 = Rtmr3::open(&rtmr3_path).unwrap();
        // A guest with the platform's vTPM: the quote names its instance's AK certificate.
        let (_tpm, vtpm, ak) = instance_vtpm(dir.path());
        let mut m = Measurements::new(Tee::Tdx {
            tsm: tsm.clone(),
            rtmr3,
            vtpm: Some(vtpm),
        })
        .unwrap();
        // Every event's SHA-384 digest reaches the register; extending them replays the log.
        let mut register = vec![0u8; 48];
        for e in events() {
            m.measure(&e).unwrap();
            let written = std::fs::read(&rtmr3_path).unwrap();
            assert_eq!(written.len(), 48);
            register = HashAlg::Sha384.hash(&[&register, &written]);
        }
        assert_eq!(
            m.log
                .replay(HashAlg::Sha384, COS_EVENT_RTMR_CCEL_INDEX)
                .unwrap(),
            register
        );

        let kernel = fake_kernel(&tsm, "tdx_guest", false, no_certs);
        let (kind, evidence) = m.evidence(NONCE).unwrap();
        kernel.join().unwrap();
        assert_eq!(kind, "tdCcel");
        let log = m.log.encode();
        assert_eq!(decode(&evidence["canonicalEventLog"]), log);
        assert_eq!(
            decode(&evidence["tdQuote"]),
            report(&report_data(
                ReportKind::Tdx,
                NONCE,
                &log,
                Some(b"ak-cert-der")
            ))
        );
        assert_eq!(decode(&evidence["akCert"]), b"ak-cert-der");
        assert_holds_the_ak(&evidence, &ak);
    }

    #[test]
    fn snp_reports_bind_the_nonce_log_and_instance_and_carry_the_hosts_vcek() {
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("report");
        std::fs::create_dir_all(&tsm).unwrap();
        let mut m = Measurements::new(Tee::SevSnp {
            tsm: tsm.clone(),
            vtpm: None,
        })
        .unwrap();
        for e in events() {
            m.measure(&e).unwrap();
        }
        let kernel = fake_kernel(&tsm, "sev_guest", false, vcek_table);
        let (kind, evidence) = m.evidence(NONCE).unwrap();
        kernel.join().unwrap();
        assert_eq!(kind, "sevSnpAttestation");
        let log = m.log.encode();
        assert_eq!(
            decode(&evidence["report"]),
            report(&report_data(ReportKind::SevSnp, NONCE, &log, None))
        );
        assert_eq!(decode(&evidence["vcekCert"]), b"vcek-der");
        assert!(evidence.get("akCert").is_none(), "no vTPM, no instance");
        // With the platform's vTPM, the report names the instance's AK certificate.
        let (_tpm, instance, ak) = instance_vtpm(dir.path());
        if let Tee::SevSnp { vtpm, .. } = &mut m.tee {
            *vtpm = Some(instance);
        }
        let kernel = fake_kernel(&tsm, "sev_guest", false, no_certs);
        let (_, evidence) = m.evidence(NONCE).unwrap();
        kernel.join().unwrap();
        assert_eq!(
            decode(&evidence["report"]),
            report(&report_data(
                ReportKind::SevSnp,
                NONCE,
                &log,
                Some(b"ak-cert-der")
            ))
        );
        assert_eq!(decode(&evidence["akCert"]), b"ak-cert-der");
        assert_holds_the_ak(&evidence, &ak);

        // A host that supplies no certificates leaves the VCEK to the verifier's cache.
        let kernel = fake_kernel(&tsm, "sev_guest", false, no_certs);
        let (_, evidence) = m.evidence(NONCE).unwrap();
        kernel.join().unwrap();
        assert!(evidence.get("vcekCert").is_none(), "{evidence}");
        // A table that is there but holds no VCEK or VLEK is an error, not a silent omission.
        let kernel = fake_kernel(&tsm, "sev_guest", false, no_vcek);
        let err = m.evidence(NONCE).unwrap_err().to_string();
        kernel.join().unwrap();
        assert!(err.contains("no VCEK or VLEK"), "{err}");
    }

    #[test]
    fn another_tee_or_a_missing_rtmr_is_an_error_never_a_downgrade() {
        let dir = tempfile::tempdir().unwrap();
        let tsm = dir.path().join("report");
        std::fs::create_dir_all(&tsm).unwrap();
        let mut m = Measurements::new(Tee::SevSnp {
            tsm: tsm.clone(),
            vtpm: None,
        })
        .unwrap();
        let kernel = fake_kernel(&tsm, "tdx_guest", false, vcek_table);
        let err = m.evidence(NONCE).unwrap_err().to_string();
        kernel.join().unwrap();
        assert!(err.contains("not \"sev_guest\""), "{err}");
        let err = Rtmr3::open(&dir.path().join("no-such-rtmr3"))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("no RTMR3 extension"), "{err}");
        let rtmr3_path = dir.path().join("rtmr3");
        std::fs::write(&rtmr3_path, []).unwrap();
        assert!(Rtmr3::open(&rtmr3_path).unwrap().extend(&[0; 32]).is_err());
    }
}
