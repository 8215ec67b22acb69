//! What SEV-SNP and TDX evidence share once their hardware checks pass: the REPORT_DATA
//! binding, the claims a hardware TEE running a trusted launch earns, and the parts of a token
//! that come from the challenge.

use cloister_eventlog::{ContainerClaims, ReportKind, report_data};
use cloister_store::{ChallengeRecord, ReferenceValueRecord};
use serde_json::Value;

use super::claims::Verified;

/// Whether `report_data_hex` (from the verified report or quote) binds `nonce` and the log.
pub(super) fn binds(report_data_hex: &str, kind: ReportKind, nonce: &[u8], log: &[u8]) -> bool {
    report_data_hex == hex::encode(report_data(kind, nonce, log))
}

/// The claims of verified hardware whose launch measurement is the reference value
/// `reference`; `tee` is the submodule about the hardware itself, `subject` names it.
pub(super) fn claims(
    hwmodel: &'static str,
    container: ContainerClaims,
    reference: ReferenceValueRecord,
    tee: (&'static str, Value),
    subject: String,
) -> Verified {
    Verified {
        hwmodel,
        secboot: true,
        // A debuggable guest never gets this far (the hardware policy refuses it), but the
        // launch may be of a debug image (a console), which its reference value says.
        dbgstat: reference.dbgstat,
        swversion: vec![reference.swversion],
        support_attributes: reference.support_attributes,
        container,
        gce: None,
        tee: Some(tee),
        subject,
        service_accounts: Vec::new(),
        image_signatures: Vec::new(),
        measured: true,
    }
}

/// Completes `v` for the challenge it answered: the subject names the attestation, the
/// accounts are the verified ID tokens'.
pub(super) fn for_challenge(
    mut v: Verified,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Verified {
    v.subject = format!(
        "{}/{}",
        v.subject,
        challenge.name.rsplit('/').next().unwrap_or_default()
    );
    v.service_accounts = accounts;
    v
}
