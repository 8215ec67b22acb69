//! `sevSnpAttestation` evidence: an AMD SEV-SNP report (verified against AMD's pinned roots by
//! `cloister-snp`), its VCEK or VLEK, and the canonical event log. The report's REPORT_DATA
//! must equal `cloister_eventlog::report_data` of the challenge's nonce and the log: that is what binds this
//! attestation to this challenge and this log (SNP has no PCR to replay into).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, EventLog, ReportKind, report_data};
use cloister_store::ChallengeRecord;
use serde::Deserialize;

use super::claims::Verified;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SevSnpAttestation {
    /// The 1184-byte attestation report, base64.
    report: String,
    /// The VCEK (or VLEK) that signed it, DER, base64.
    vcek_cert: String,
    canonical_event_log: String,
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument(format!("sevSnpAttestation.{field}: {why}"))
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad(field, format!("not base64: {e}")))
}

pub fn verify(
    state: &AppState,
    e: &SevSnpAttestation,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Result<Verified, ApiError> {
    let report = b64("report", &e.report)?;
    let cert = b64("vcekCert", &e.vcek_cert)?;
    let log_bytes = b64("canonicalEventLog", &e.canonical_event_log)?;
    let verified = cloister_snp::verify(&report, &cert, state.hardware_evidence_time())
        .map_err(|err| bad("report", err))?;
    // Production policy: no debuggable guest, the launcher at VMPL 0.
    cloister_snp::Policy::default()
        .check(&verified)
        .map_err(|err| bad("report", err))?;
    if verified.report_data
        != hex::encode(report_data(
            ReportKind::SevSnp,
            &challenge.nonce,
            &log_bytes,
        ))
    {
        return Err(bad(
            "report",
            "REPORT_DATA does not bind this challenge's nonce and this event log: the report was made for another attestation",
        ));
    }
    let log = EventLog::decode(&log_bytes).map_err(|err| bad("canonicalEventLog", err))?;
    let container = log
        .container_claims(COS_EVENT_PCR)
        .map_err(|err| bad("canonicalEventLog", err))?;
    // The launch measurement must be a trusted build: it decides swversion and support.
    let reference = state
        .read(|s| s.get_reference_value(&verified.measurement))?
        .ok_or_else(|| {
            bad(
                "report",
                format!(
                    "launch measurement {} is not among the reference values",
                    verified.measurement
                ),
            )
        })?;
    Ok(Verified {
        hwmodel: "AMD_SEV_SNP",
        secboot: true,
        dbgstat: "disabled-since-boot".into(),
        swversion: vec![reference.swversion],
        support_attributes: reference.support_attributes,
        container,
        gce: None,
        tee: None,
        subject: format!(
            "snp://{}/{}",
            &verified.chip_id[..16],
            challenge.name.rsplit('/').next().unwrap_or_default()
        ),
        service_accounts: accounts,
    })
}
