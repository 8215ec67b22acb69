//! Judging evidence: each kind turns into [`Verified`] claims, or a refusal that says what
//! failed. Nothing here trusts a value the evidence does not prove.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, ContainerClaims, EventLog, HashAlg};
use cloister_store::ChallengeRecord;
use cloister_tpm::identity::{InstanceIdentity, verify_ak_cert};
use cloister_tpm::quote::{bank_id, verify_quote};
use cloister_tpm::{BOOT_PCRS, LAUNCHER_PCR};
use serde::Deserialize;
use serde_json::json;

use super::claims::Verified;
use crate::error::ApiError;
use crate::state::AppState;

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument(msg.into())
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad(format!("{field} is not base64: {e}")))
}

/// Cloister's `INSECURE` evidence: the canonical event log with nothing to vouch for it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InsecureAttestation {
    canonical_event_log: String,
}

/// vTPM evidence in the Confidential Computing API's shape.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TpmAttestation {
    quotes: Vec<TpmQuote>,
    canonical_event_log: String,
    /// The AK certificate (DER, base64) from the instance identity CA.
    ak_cert: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TpmQuote {
    /// The PCR bank's TPM algorithm id (11 = SHA-256).
    hash_algo: u16,
    /// PCR index → value (base64).
    pcr_values: BTreeMap<String, String>,
    raw_quote: String,
    raw_signature: String,
}

impl TpmQuote {
    /// The quoted PCRs, once the quote is verified: signed by `ak` (SPKI DER) over `nonce`,
    /// of the SHA-256 bank, its values those given. `field` names it in refusals.
    pub(super) fn checked(
        &self,
        field: &str,
        ak: &[u8],
        nonce: &[u8],
    ) -> Result<BTreeMap<u8, Vec<u8>>, ApiError> {
        let sha256 = bank_id("sha256").unwrap_or(0x000b);
        if self.hash_algo != sha256 {
            return Err(bad(format!(
                "{field} is of bank {}; send the SHA-256 bank's (hashAlgo 11)",
                self.hash_algo
            )));
        }
        let mut pcrs = BTreeMap::new();
        for (index, value) in &self.pcr_values {
            let index: u8 = index.parse().map_err(|_| {
                bad(format!(
                    "{field} pcrValues key {index:?} is not a PCR index"
                ))
            })?;
            pcrs.insert(index, b64(&format!("{field} pcrValues"), value)?);
        }
        let attest = b64(&format!("{field} rawQuote"), &self.raw_quote)?;
        let signature = b64(&format!("{field} rawSignature"), &self.raw_signature)?;
        verify_quote(&attest, &signature, ak, nonce, sha256, &pcrs)
            .map_err(|err| bad(format!("{field}: {err}")))?;
        Ok(pcrs)
    }
}

fn container_claims(log: &EventLog, field: &str) -> Result<ContainerClaims, ApiError> {
    log.container_claims(COS_EVENT_PCR)
        .map_err(|e| bad(format!("{field}: {e}")))
}

pub fn insecure(
    e: &InsecureAttestation,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Result<Verified, ApiError> {
    let field = "insecureAttestation.canonicalEventLog";
    let log = EventLog::decode(&b64(field, &e.canonical_event_log)?)
        .map_err(|err| bad(format!("{field}: {err}")))?;
    let id = challenge.name.rsplit('/').next().unwrap_or_default();
    Ok(Verified {
        hwmodel: "INSECURE",
        secboot: false,
        dbgstat: "enabled".into(),
        swversion: Vec::new(),
        support_attributes: Vec::new(),
        container: container_claims(&log, field)?,
        gce: None,
        tee: None,
        // Nothing proves which instance sent INSECURE evidence; the subject says so (and fits
        // Google's 127-byte limit on mapped subjects).
        subject: format!("insecure://{}/{id}", challenge.project_id),
        service_accounts: accounts,
        image_signatures: Vec::new(),
        measured: false,
    })
}

pub async fn vtpm(
    state: &AppState,
    e: &TpmAttestation,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Result<Verified, ApiError> {
    let now = time::OffsetDateTime::now_utc();
    let cert = b64("tpmAttestation.akCert", &e.ak_cert)?;
    let (ak, instance) = verify_ak_cert(&cert, state.identity_ca.cert_der(), now)
        .map_err(|err| bad(format!("tpmAttestation.akCert: {err}")))?;
    let sha256 = bank_id("sha256").unwrap_or(0x000b);
    let quote = e
        .quotes
        .iter()
        .find(|q| q.hash_algo == sha256)
        .ok_or_else(|| {
            bad("tpmAttestation.quotes has no quote of the SHA-256 PCR bank (hashAlgo 11)")
        })?;
    let pcrs = quote.checked("tpmAttestation", &ak, &challenge.nonce)?;

    let field = "tpmAttestation.canonicalEventLog";
    let log = EventLog::decode(&b64(field, &e.canonical_event_log)?)
        .map_err(|err| bad(format!("{field}: {err}")))?;
    let quoted = pcrs.get(&COS_EVENT_PCR).ok_or_else(|| {
        bad(format!(
            "the quote does not cover PCR {COS_EVENT_PCR}, where container events are measured"
        ))
    })?;
    let replayed = log
        .replay(HashAlg::Sha256, COS_EVENT_PCR)
        .map_err(|err| bad(format!("{field}: {err}")))?;
    if &replayed != quoted {
        return Err(bad(format!(
            "{field} does not replay to the quoted PCR {COS_EVENT_PCR}: the log is not what was measured"
        )));
    }
    let container = container_claims(&log, field)?;

    // What booted decides what the token may say about the software: on a VM, its measured
    // boot (PCR 4: the kernel, PCR 9: the initrd holding the launcher); on the local driver,
    // the launcher the platform measured into PCR 12. A PCR 4 of zeros is no boot at all.
    let measurement = match (pcrs.get(&BOOT_PCRS[0]), pcrs.get(&BOOT_PCRS[1])) {
        (Some(pcr4), Some(pcr9)) if pcr4.iter().any(|b| *b != 0) => {
            cloister_tpm::boot_measurement(pcr4, pcr9)
        }
        _ => {
            let launcher = pcrs.get(&LAUNCHER_PCR).ok_or_else(|| {
                bad(format!(
                    "the quote does not cover PCR {LAUNCHER_PCR}, the launcher measurement"
                ))
            })?;
            hex::encode(launcher)
        }
    };
    let reference = state.store.get_reference_value(&measurement).await?;
    let (swversion, dbgstat, support_attributes) = match reference {
        Some(r) => (vec![r.swversion], r.dbgstat, r.support_attributes),
        // An unknown launcher gets no support attributes, and is not vouched free of debug.
        None => (Vec::new(), "enabled".to_owned(), Vec::new()),
    };
    Ok(Verified {
        hwmodel: "VTPM",
        secboot: false,
        dbgstat,
        swversion,
        support_attributes,
        container,
        gce: Some(gce(&instance)),
        tee: None,
        subject: instance_url(&instance),
        service_accounts: accounts,
        image_signatures: Vec::new(),
        measured: true,
    })
}

/// `submods.gce`: the instance an AK certificate names.
pub(super) fn gce(instance: &InstanceIdentity) -> serde_json::Value {
    json!({
        "zone": instance.zone,
        "project_id": instance.project_id,
        "project_number": instance.project_number.to_string(),
        "instance_name": instance.instance_name,
        "instance_id": instance.instance_id.to_string(),
    })
}

/// The token's `sub` for an instance: its Compute Engine URL, as Google's.
pub(super) fn instance_url(instance: &InstanceIdentity) -> String {
    format!(
        "https://www.googleapis.com/compute/v1/projects/{}/zones/{}/instances/{}",
        instance.project_id, instance.zone, instance.instance_name
    )
}
