//! `tdCcel` evidence (Google's `TdxCcelAttestation`): an Intel TDX quote verified through
//! `cloister-tdx` (DCAP: PCK chain to Intel's pinned root, CRLs, TCB info, QE identity, TCB
//! status), with collateral the caller sends or the server's local cache holds (never fetched
//! at run time). Then the attestation itself:
//! - REPORT_DATA must bind this challenge's nonce and this event log;
//! - RTMR3 must equal the replay of the log's container events (CCEL index 4, SHA-384);
//! - the launch measurement (MRTD and RTMR0–2) must be a reference value: it decides
//!   `swversion` and the support attributes.
//!
//! The CCEL fields Google's shape carries (`ccelAcpiTable`, `ccelData`: the firmware's log of
//! RTMR0–2) are accepted (unknown fields are ignored) and not replayed: the reference value
//! pins RTMR0–2 directly.

use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_RTMR_CCEL_INDEX, EventLog, HashAlg, ReportKind};
use cloister_store::{ChallengeRecord, ReferenceValueRecord};
use serde::Deserialize;
use serde_json::json;

use super::claims::Verified;
use super::hardware;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TdxCcelAttestation {
    /// The TD quote (v4 or v5), base64.
    td_quote: String,
    canonical_event_log: String,
    /// Cloister's addition: the quote's DCAP collateral (dcap-qvl's QuoteCollateralV3 JSON),
    /// base64. Without it the server's cache must hold `{FMSPC}.json`.
    #[serde(default)]
    collateral: Option<String>,
    /// Cloister's addition: the AK certificate of the vTPM the platform gave the guest, which
    /// REPORT_DATA then binds, and the AK's quote over the nonce: the token names its
    /// instance (`submods.gce`).
    #[serde(flatten)]
    instance: hardware::InstanceProof,
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument(format!("tdCcel.{field}: {why}"))
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad(field, format!("not base64: {e}")))
}

/// The quote's collateral: sent with the evidence, else from the cache directory.
fn collateral(e: &TdxCcelAttestation, quote: &[u8], cache: &Path) -> Result<Vec<u8>, ApiError> {
    if let Some(c) = &e.collateral {
        return b64("collateral", c);
    }
    let fmspc = cloister_tdx::fmspc(quote).map_err(|err| bad("tdQuote", err))?;
    let path = cache.join(cloister_tdx::collateral_cache_name(&fmspc));
    std::fs::read(&path).map_err(|_| {
        bad(
            "collateral",
            format!(
                "no collateral for this platform (FMSPC {fmspc}): send tdCcel.collateral, or have the operator put Intel PCS collateral at {}",
                path.display()
            ),
        )
    })
}

pub async fn verify(
    state: &AppState,
    e: &TdxCcelAttestation,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Result<Verified, ApiError> {
    let quote = b64("tdQuote", &e.td_quote)?;
    let log_bytes = b64("canonicalEventLog", &e.canonical_event_log)?;
    let collateral = collateral(e, &quote, &state.tdx_collateral_dir)?;
    let now = state.hardware_evidence_time().unix_timestamp().max(0) as u64;
    let quoted =
        cloister_tdx::verify(&quote, &collateral, now).map_err(|err| bad("tdQuote", err))?;
    // `judge` stays pure (its tests need no store): the one value it may look up, the
    // reference value of the launch measurement, is read first.
    let measurement = quoted.launch_measurement.clone().unwrap_or_default();
    let reference = state.store.get_reference_value(&measurement).await?;
    let instance = hardware::instance_of(state, "tdCcel", &e.instance, &challenge.nonce)?;
    let v = judge(
        &quoted,
        &challenge.nonce,
        &log_bytes,
        instance.as_ref(),
        |_| Ok(reference),
    )?;
    Ok(hardware::for_challenge(v, challenge, accounts))
}

/// Everything after the quote's signatures: binding, RTMR3 replay, reference value. Apart
/// from the hardware so it can be tested on quotes no recorded evidence can supply.
pub(super) fn judge(
    quoted: &cloister_tdx::Verified,
    nonce: &[u8],
    log_bytes: &[u8],
    instance: Option<&hardware::BoundInstance>,
    reference_value: impl FnOnce(&str) -> Result<Option<ReferenceValueRecord>, ApiError>,
) -> Result<Verified, ApiError> {
    if quoted.tee != "TDX" {
        return Err(bad(
            "tdQuote",
            format!("this is an {} quote, not a TD quote", quoted.tee),
        ));
    }
    if !hardware::binds(
        &quoted.report_data,
        ReportKind::Tdx,
        nonce,
        log_bytes,
        instance,
    ) {
        return Err(bad(
            "tdQuote",
            "REPORT_DATA does not bind this challenge's nonce, this event log and the akCert sent (or its absence): the quote was made for another attestation",
        ));
    }
    let log = EventLog::decode(log_bytes).map_err(|err| bad("canonicalEventLog", err))?;
    let replayed = log
        .replay(HashAlg::Sha384, COS_EVENT_RTMR_CCEL_INDEX)
        .map_err(|err| bad("canonicalEventLog", err))?;
    let rtmr3 = quoted.measurement("rtmr3").unwrap_or_default();
    if hex::encode(&replayed) != rtmr3 {
        return Err(bad(
            "canonicalEventLog",
            format!(
                "the log replays to {} but the quote's RTMR3 is {rtmr3}: the log is not what was measured",
                hex::encode(&replayed)
            ),
        ));
    }
    let container = log
        .container_claims(COS_EVENT_RTMR_CCEL_INDEX)
        .map_err(|err| bad("canonicalEventLog", err))?;
    let measurement = quoted.launch_measurement.clone().unwrap_or_default();
    let reference = reference_value(&measurement)?.ok_or_else(|| {
        bad(
            "tdQuote",
            format!(
                "launch measurement {measurement} (MRTD and RTMR0–2) is not among the reference values"
            ),
        )
    })?;
    let tee = json!({
        "tcb_status": quoted.tcb_status,
        "advisory_ids": quoted.advisory_ids,
        "launch_measurement": measurement,
    });
    // The MRTD's start names the TD build; `verify` appends the challenge.
    let subject = format!(
        "tdx://{}",
        quoted
            .measurement("mr_td")
            .and_then(|m| m.get(..16))
            .unwrap_or_default()
    );
    // A debuggable TD never gets here: cloister-tdx refuses it.
    Ok(hardware::claims(
        "GCP_INTEL_TDX",
        container,
        reference,
        ("tdx", tee),
        subject,
        instance,
    ))
}

#[cfg(test)]
mod tests {
    use cloister_eventlog::report_data;

    use super::*;
    use crate::verifier::test_support::{NONCE, names_only_its_instance, refusal, trusting};

    fn log(after_separator: bool) -> Vec<u8> {
        crate::verifier::test_support::log(
            COS_EVENT_RTMR_CCEL_INDEX,
            HashAlg::Sha384,
            after_separator,
        )
    }

    fn trusted(m: &str) -> Result<Option<ReferenceValueRecord>, ApiError> {
        trusting(cloister_tdx::launch_measurement(
            &[1; 48], &[2; 48], &[3; 48], &[4; 48],
        ))(m)
    }

    /// A quote as the hardware would have made it for `log` (RTMR3 its replay) and `nonce`.
    fn quote_for(log_bytes: &[u8], nonce: &[u8]) -> cloister_tdx::Verified {
        let rtmr3 = EventLog::decode(log_bytes)
            .unwrap()
            .replay(HashAlg::Sha384, COS_EVENT_RTMR_CCEL_INDEX)
            .unwrap();
        let m = |b: u8| vec![b; 48];
        cloister_tdx::Verified {
            tee: "TDX",
            tcb_status: Some("UpToDate".into()),
            advisory_ids: vec!["INTEL-SA-00837".into()],
            debug: false,
            measurements: vec![
                ("mr_td".into(), hex::encode(m(1))),
                ("rtmr0".into(), hex::encode(m(2))),
                ("rtmr1".into(), hex::encode(m(3))),
                ("rtmr2".into(), hex::encode(m(4))),
                ("rtmr3".into(), hex::encode(rtmr3)),
            ],
            launch_measurement: Some(cloister_tdx::launch_measurement(&m(1), &m(2), &m(3), &m(4))),
            report_data: hex::encode(report_data(ReportKind::Tdx, nonce, log_bytes, None)),
        }
    }

    #[test]
    fn a_bound_replayed_trusted_quote_yields_tdx_claims() {
        let log = log(false);
        let v = judge(&quote_for(&log, NONCE), NONCE, &log, None, trusted).unwrap();
        assert_eq!(v.hwmodel, "GCP_INTEL_TDX");
        assert!(v.secboot, "the TD's measurement covers its firmware");
        assert_eq!(v.dbgstat, "disabled-since-boot");
        assert_eq!(v.swversion, ["250301"]);
        assert_eq!(v.support_attributes, ["STABLE", "USABLE"]);
        assert_eq!(v.container.restart_policy, "Never");
        let (name, tee) = v.tee.unwrap();
        assert_eq!(name, "tdx");
        assert_eq!(tee["tcb_status"], "UpToDate");
        assert_eq!(tee["advisory_ids"][0], "INTEL-SA-00837");
        assert!(v.subject.starts_with("tdx://0101010101010101"));
        assert!(v.gce.is_none(), "no AK certificate, no instance");
    }

    /// With the vTPM's AK certificate bound into REPORT_DATA, the token names the instance;
    /// the same quote with another certificate, or none, is refused.
    #[test]
    fn a_quote_bound_to_an_instance_names_it_and_only_it() {
        let log = log(false);
        names_only_its_instance(ReportKind::Tdx, &log, |data, instance| {
            let mut q = quote_for(&log, NONCE);
            q.report_data = hex::encode(data);
            judge(&q, NONCE, &log, instance, trusted)
        });
    }

    #[test]
    fn a_quote_for_another_challenge_or_log_is_refused() {
        let log = log(false);
        let q = quote_for(&log, b"another-challenge-nonce");
        assert!(
            refusal(judge(&q, NONCE, &log, None, trusted)).contains("REPORT_DATA does not bind")
        );
        // An SNP-domain binding of the same nonce and log is not a TDX binding.
        let mut q = quote_for(&log, NONCE);
        q.report_data = hex::encode(report_data(ReportKind::SevSnp, NONCE, &log, None));
        assert!(
            refusal(judge(&q, NONCE, &log, None, trusted)).contains("REPORT_DATA does not bind")
        );
    }

    #[test]
    fn a_log_that_is_not_what_rtmr3_measured_is_refused() {
        let log = log(false);
        let mut q = quote_for(&log, NONCE);
        q.measurements[4].1 = hex::encode([9u8; 48]);
        assert!(refusal(judge(&q, NONCE, &log, None, trusted)).contains("quote's RTMR3"));
    }

    #[test]
    fn events_after_the_separator_are_refused() {
        let log = log(true);
        let q = quote_for(&log, NONCE);
        assert!(refusal(judge(&q, NONCE, &log, None, trusted)).contains("canonicalEventLog"));
    }

    #[test]
    fn an_untrusted_boot_or_an_sgx_quote_is_refused() {
        let log = log(false);
        let mut q = quote_for(&log, NONCE);
        q.launch_measurement = Some(cloister_tdx::launch_measurement(
            &[1; 48], &[2; 48], &[3; 48], &[5; 48],
        ));
        assert!(
            refusal(judge(&q, NONCE, &log, None, trusted))
                .contains("not among the reference values")
        );
        let mut q = quote_for(&log, NONCE);
        q.tee = "SGX";
        assert!(refusal(judge(&q, NONCE, &log, None, trusted)).contains("not a TD quote"));
    }
}
