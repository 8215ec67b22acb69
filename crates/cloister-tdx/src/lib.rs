//! Intel TDX (and SGX) DCAP quotes, verified offline with collateral the caller supplies
//! (never fetched at run time) through `dcap-qvl` (pure Rust: PCK chain to the pinned Intel SGX
//! root, CRLs, TCB info and QE identity signatures, QE report, quote signature, TCB status),
//! then Cloister's policy: debug refused, only acceptable TCB statuses.

use dcap_qvl::QuoteCollateralV3;
use dcap_qvl::quote::{Quote, Report};
use serde::Serialize;
use sha2::{Digest, Sha384};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TdxError {
    #[error("unusable evidence: {0}")]
    Malformed(String),
    #[error("refused: {0}")]
    Refused(String),
}

/// What a quote says, once parsed (and, from [`verify`], verified).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    /// `TDX` or `SGX`.
    pub tee: &'static str,
    /// Intel's TCB status (`UpToDate`, `SWHardeningNeeded`, …); absent when only parsed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcb_status: Option<String>,
    pub advisory_ids: Vec<String>,
    pub debug: bool,
    /// TDX: MRTD and RTMR0–3; SGX: MRENCLAVE and MRSIGNER.
    pub measurements: Vec<(String, String)>,
    /// TDX: [`launch_measurement`] of the quote, the key of its reference value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launch_measurement: Option<String>,
    pub report_data: String,
}

impl Verified {
    /// A measurement by name (`mr_td`, `rtmr3`, …), hex.
    pub fn measurement(&self, name: &str) -> Option<&str> {
        self.measurements
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What identifies a TD's boot, for the reference values: SHA-384 over MRTD (the firmware) and
/// RTMR0–2 (firmware configuration, bootloader and kernel, command line). RTMR3 is left out:
/// it holds the launcher's container events, replayed from the canonical event log instead.
pub fn launch_measurement(mr_td: &[u8], rtmr0: &[u8], rtmr1: &[u8], rtmr2: &[u8]) -> String {
    let mut h = Sha384::new();
    for part in [mr_td, rtmr0, rtmr1, rtmr2] {
        h.update(part);
    }
    hex::encode(h.finalize())
}

/// The FMSPC (family-model-stepping-platform-customSKU) of the platform that signed `quote`,
/// upper-case hex as Intel's PCS names collateral: the key of a local collateral cache.
pub fn fmspc(quote: &[u8]) -> Result<String, TdxError> {
    let q = Quote::parse(quote)
        .map_err(|e| TdxError::Malformed(format!("the quote does not parse: {e:#}")))?;
    let fmspc = dcap_qvl::intel::quote_fmspc(&q).map_err(|e| {
        TdxError::Malformed(format!("the quote's PCK certificate names no FMSPC: {e:#}"))
    })?;
    Ok(hex::encode_upper(fmspc))
}

/// The file a local collateral cache keeps a platform's collateral in: `{FMSPC}.json`.
pub fn collateral_cache_name(fmspc: &str) -> String {
    format!("{}.json", fmspc.to_ascii_uppercase())
}

fn summary(report: &Report) -> Verified {
    fn h(bytes: &[u8]) -> String {
        hex::encode(bytes)
    }
    match report.as_td10() {
        Some(td) => Verified {
            tee: "TDX",
            tcb_status: None,
            advisory_ids: vec![],
            // TDATTRIBUTES bit 0: the TD is debuggable (its state readable by the host).
            debug: td.td_attributes[0] & 1 == 1,
            measurements: vec![
                ("mr_td".into(), h(&td.mr_td)),
                ("rtmr0".into(), h(&td.rt_mr0)),
                ("rtmr1".into(), h(&td.rt_mr1)),
                ("rtmr2".into(), h(&td.rt_mr2)),
                ("rtmr3".into(), h(&td.rt_mr3)),
            ],
            launch_measurement: Some(launch_measurement(
                &td.mr_td, &td.rt_mr0, &td.rt_mr1, &td.rt_mr2,
            )),
            report_data: h(&td.report_data),
        },
        None => match report {
            Report::SgxEnclave(e) => Verified {
                tee: "SGX",
                tcb_status: None,
                advisory_ids: vec![],
                // ATTRIBUTES.FLAGS bit 1: DEBUG.
                debug: e.attributes[0] & 0b10 != 0,
                measurements: vec![
                    ("mr_enclave".into(), h(&e.mr_enclave)),
                    ("mr_signer".into(), h(&e.mr_signer)),
                ],
                launch_measurement: None,
                report_data: h(&e.report_data),
            },
            _ => unreachable!("a report is either a TD report or an enclave report"),
        },
    }
}

/// Parses a quote without verifying it (for inspecting evidence that has no collateral).
pub fn parse(quote: &[u8]) -> Result<Verified, TdxError> {
    let q = Quote::parse(quote)
        .map_err(|e| TdxError::Malformed(format!("the quote does not parse: {e:#}")))?;
    Ok(summary(&q.report))
}

/// TCB statuses a production relying party accepts (the platform is patched, possibly with
/// configuration or software hardening the workload owner has judged acceptable).
const ACCEPTED: &[&str] = &[
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded",
];

/// Verifies `quote` with `collateral` (dcap-qvl's QuoteCollateralV3 JSON) as of `now_secs`
/// (unix seconds: take it from the evidence's time, never assume the wall clock).
pub fn verify(quote: &[u8], collateral_json: &[u8], now_secs: u64) -> Result<Verified, TdxError> {
    let collateral: QuoteCollateralV3 = serde_json::from_slice(collateral_json).map_err(|e| {
        TdxError::Malformed(format!("the collateral is not QuoteCollateralV3 JSON: {e}"))
    })?;
    let parsed = parse(quote)?;
    if parsed.debug {
        return Err(TdxError::Refused(format!(
            "the {} is debuggable (its debug attribute is set)",
            if parsed.tee == "TDX" { "TD" } else { "enclave" }
        )));
    }
    let report = dcap_qvl::verify::verify(quote, &collateral, now_secs)
        .map_err(|e| TdxError::Refused(format!("{e:#}")))?;
    if !ACCEPTED.contains(&report.status.as_str()) {
        return Err(TdxError::Refused(format!(
            "TCB status {} (advisories {:?}) is not acceptable",
            report.status, report.advisory_ids
        )));
    }
    Ok(Verified {
        tcb_status: Some(report.status.clone()),
        advisory_ids: report.advisory_ids.clone(),
        ..summary(&report.report)
    })
}
