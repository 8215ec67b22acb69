//! `sevSnpAttestation` evidence: an AMD SEV-SNP report (verified against AMD's pinned roots by
//! `cloister-snp`), its VCEK or VLEK, and the canonical event log. The report's REPORT_DATA
//! must equal `cloister_eventlog::report_data` of the challenge's nonce and the log: that is what binds this
//! attestation to this challenge and this log (SNP has no PCR to replay into).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, EventLog, ReportKind};
use cloister_store::{ChallengeRecord, ReferenceValueRecord};
use serde::Deserialize;
use serde_json::json;

use super::claims::Verified;
use super::hardware;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SevSnpAttestation {
    /// The 1184-byte attestation report, base64.
    report: String,
    /// The VCEK (or VLEK) that signed it, DER, base64. Without it the server's VCEK cache must
    /// hold it (`{chip id}-{reported TCB}.der`, fetched from AMD's KDS ahead of time).
    #[serde(default)]
    vcek_cert: Option<String>,
    canonical_event_log: String,
    /// Cloister's addition: the AK certificate of the vTPM the platform gave the guest, which
    /// REPORT_DATA then binds, and the AK's quote over the nonce: the token names its
    /// instance (`submods.gce`).
    #[serde(flatten)]
    instance: hardware::InstanceProof,
}

fn bad(field: &str, why: impl std::fmt::Display) -> ApiError {
    ApiError::InvalidArgument(format!("sevSnpAttestation.{field}: {why}"))
}

fn b64(field: &str, text: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad(field, format!("not base64: {e}")))
}

/// The report's VCEK from the server's cache, or an error naming the file it needs.
fn cached_vcek(report: &[u8], cache: &std::path::Path) -> Result<Vec<u8>, ApiError> {
    let name = cloister_snp::vcek_cache_name(report).map_err(|err| bad("report", err))?;
    let path = cache.join(&name);
    std::fs::read(&path).map_err(|_| {
        bad(
            "vcekCert",
            format!(
                "no VCEK was sent and the server has none for this chip and TCB: send vcekCert, or have the operator put the VCEK from AMD's KDS at {}",
                path.display()
            ),
        )
    })
}

pub async fn verify(
    state: &AppState,
    e: &SevSnpAttestation,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Result<Verified, ApiError> {
    let report = b64("report", &e.report)?;
    let cert = match &e.vcek_cert {
        Some(c) => b64("vcekCert", c)?,
        None => cached_vcek(&report, &state.vcek_cache_dir)?,
    };
    let log_bytes = b64("canonicalEventLog", &e.canonical_event_log)?;
    let verified = cloister_snp::verify(&report, &cert, state.hardware_evidence_time())
        .map_err(|err| bad("report", err))?;
    // `judge` stays pure (its tests need no store): the one value it may look up, the
    // reference value of the launch measurement, is read first.
    let reference = state
        .store
        .get_reference_value(&verified.measurement)
        .await?;
    let instance =
        hardware::instance_of(state, "sevSnpAttestation", &e.instance, &challenge.nonce)?;
    let v = judge(
        &verified,
        &challenge.nonce,
        &log_bytes,
        instance.as_ref(),
        |_| Ok(reference),
    )?;
    Ok(hardware::for_challenge(v, challenge, accounts))
}

/// Everything after the report's signature: policy, binding, log, reference value. Apart from
/// the hardware so it can be tested on reports no recorded evidence can supply.
pub(super) fn judge(
    verified: &cloister_snp::Verified,
    nonce: &[u8],
    log_bytes: &[u8],
    instance: Option<&hardware::BoundInstance>,
    reference_value: impl FnOnce(&str) -> Result<Option<ReferenceValueRecord>, ApiError>,
) -> Result<Verified, ApiError> {
    // Production policy: no debuggable guest, the launcher at VMPL 0.
    cloister_snp::Policy::default()
        .check(verified)
        .map_err(|err| bad("report", err))?;
    if !hardware::binds(
        &verified.report_data,
        ReportKind::SevSnp,
        nonce,
        log_bytes,
        instance,
    ) {
        return Err(bad(
            "report",
            "REPORT_DATA does not bind this challenge's nonce, this event log and the akCert sent (or its absence): the report was made for another attestation",
        ));
    }
    let log = EventLog::decode(log_bytes).map_err(|err| bad("canonicalEventLog", err))?;
    let container = log
        .container_claims(COS_EVENT_PCR)
        .map_err(|err| bad("canonicalEventLog", err))?;
    // The launch measurement must be a trusted build: it decides swversion and support.
    let reference = reference_value(&verified.measurement)?.ok_or_else(|| {
        bad(
            "report",
            format!(
                "launch measurement {} is not among the reference values",
                verified.measurement
            ),
        )
    })?;
    // What the hardware reported about itself: a relying party's condition can require a
    // minimum TCB or a product line.
    let tee = json!({
        "product": verified.product,
        "signing_key": verified.signing_key,
        "reported_tcb": verified.reported_tcb,
        "guest_svn": verified.guest_svn,
        "launch_measurement": verified.measurement,
    });
    // The chip's id starts the subject; `verify` appends the challenge.
    let subject = format!("snp://{}", verified.chip_id.get(..16).unwrap_or_default());
    Ok(hardware::claims(
        "GCP_AMD_SEV_SNP",
        container,
        reference,
        ("sev_snp", tee),
        subject,
        instance,
    ))
}

#[cfg(test)]
mod tests {
    use cloister_eventlog::{HashAlg, report_data};
    use cloister_snp::{Product, SigningKey, Tcb};

    use super::*;
    use crate::verifier::test_support::{NONCE, names_only_its_instance, refusal, trusting};

    fn log(after_separator: bool) -> Vec<u8> {
        crate::verifier::test_support::log(COS_EVENT_PCR, HashAlg::Sha256, after_separator)
    }

    fn trusted(m: &str) -> Result<Option<ReferenceValueRecord>, ApiError> {
        trusting("7a".repeat(48))(m)
    }

    /// A report as a Genoa chip would have signed it for `log` and `nonce`.
    fn report_for(log_bytes: &[u8], nonce: &[u8]) -> cloister_snp::Verified {
        cloister_snp::Verified {
            product: Product::Genoa,
            signing_key: SigningKey::Vcek,
            version: 3,
            vmpl: 0,
            debug: false,
            guest_svn: 2,
            measurement: "7a".repeat(48),
            report_data: hex::encode(report_data(ReportKind::SevSnp, nonce, log_bytes, None)),
            host_data: "00".repeat(32),
            reported_tcb: Tcb {
                fmc: None,
                bootloader: 9,
                tee: 0,
                snp: 23,
                microcode: 72,
            },
            chip_id: "c1".repeat(64),
        }
    }

    #[test]
    fn a_bound_trusted_report_yields_snp_claims() {
        let log = log(false);
        let v = judge(&report_for(&log, NONCE), NONCE, &log, None, trusted).unwrap();
        assert_eq!(
            (v.hwmodel, v.dbgstat.as_str()),
            ("GCP_AMD_SEV_SNP", "disabled-since-boot")
        );
        assert!(v.secboot, "the launch digest covers the firmware");
        assert_eq!(v.swversion, ["250301"]);
        assert_eq!(v.support_attributes, ["STABLE", "USABLE"]);
        assert_eq!(v.container.restart_policy, "Never");
        let (name, tee) = v.tee.unwrap();
        assert_eq!(name, "sev_snp");
        assert_eq!(tee["product"], "GENOA");
        assert_eq!(tee["reported_tcb"]["snp"], 23);
        assert!(v.subject.starts_with("snp://c1c1"));
        assert!(v.gce.is_none(), "no AK certificate, no instance");
    }

    /// With the vTPM's AK certificate bound into REPORT_DATA, the token names the instance;
    /// the same report with another certificate, or none, is refused.
    #[test]
    fn a_report_bound_to_an_instance_names_it_and_only_it() {
        let log = log(false);
        names_only_its_instance(ReportKind::SevSnp, &log, |data, instance| {
            let mut r = report_for(&log, NONCE);
            r.report_data = hex::encode(data);
            judge(&r, NONCE, &log, instance, trusted)
        });
    }

    #[test]
    fn debug_guests_other_vmpls_and_foreign_bindings_are_refused() {
        let log = log(false);
        let mut r = report_for(&log, NONCE);
        r.debug = true;
        assert!(refusal(judge(&r, NONCE, &log, None, trusted)).contains("debug"));
        let mut r = report_for(&log, NONCE);
        r.vmpl = 1;
        assert!(refusal(judge(&r, NONCE, &log, None, trusted)).contains("VMPL"));
        let r = report_for(&log, b"another-challenge-nonce");
        assert!(refusal(judge(&r, NONCE, &log, None, trusted)).contains("REPORT_DATA"));
        let mut r = report_for(&log, NONCE);
        r.report_data = hex::encode(report_data(ReportKind::Tdx, NONCE, &log, None));
        assert!(refusal(judge(&r, NONCE, &log, None, trusted)).contains("REPORT_DATA"));
    }

    /// What the server registers for its guest image decides an SNP report: the image's
    /// launch digest earns STABLE; any other launch (an edited initrd, another firmware or
    /// vCPU count: another digest) is refused; the debug image's says `dbgstat: enabled`.
    #[test]
    fn the_guest_images_launch_digest_is_its_snp_reference_value() {
        use crate::compute::vm::{GuestImage, SnpLaunch};
        let image = |debug: bool, vtpm: &str, snp: &str| GuestImage {
            kernel: "/boot/vmlinuz".into(),
            initrd: "/data/guest/abc/initrd.cpio".into(),
            cmdline: "console=ttyS0".into(),
            firmware: "/usr/share/ovmf/OVMF.fd".into(),
            measurement: vtpm.repeat(32),
            debug,
            snp: Some(SnpLaunch {
                firmware: "/usr/share/ovmf/OVMF.amdsev.fd".into(),
                measurement: snp.repeat(48),
            }),
        };
        let mut registered = crate::app::guest_image_reference_values(
            &image(false, "a1", "5e"),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        registered.extend(crate::app::guest_image_reference_values(
            &image(true, "d1", "de"),
            time::OffsetDateTime::UNIX_EPOCH,
        ));
        let lookup = |m: &str| -> Result<Option<ReferenceValueRecord>, ApiError> {
            Ok(registered.iter().find(|r| r.measurement == m).cloned())
        };
        let log = log(false);
        let launched = |measurement: String| {
            let mut r = report_for(&log, NONCE);
            r.measurement = measurement;
            r
        };

        let v = judge(&launched("5e".repeat(48)), NONCE, &log, None, lookup).unwrap();
        assert_eq!(v.support_attributes, ["LATEST", "STABLE", "USABLE"]);
        assert_eq!(v.dbgstat, "disabled-since-boot");

        let v = judge(&launched("de".repeat(48)), NONCE, &log, None, lookup).unwrap();
        assert!(
            v.support_attributes.is_empty(),
            "{:?}",
            v.support_attributes
        );
        assert_eq!(v.dbgstat, "enabled");

        // Another launch: its digest differs, if only in one byte.
        let mut other = "5e".repeat(48);
        other.replace_range(94.., "5f");
        let e = refusal(judge(&launched(other), NONCE, &log, None, lookup));
        assert!(e.contains("not among the reference values"), "{e}");
    }

    #[test]
    fn bad_logs_and_untrusted_launchers_are_refused() {
        let log_after = log(true);
        let r = report_for(&log_after, NONCE);
        assert!(refusal(judge(&r, NONCE, &log_after, None, trusted)).contains("canonicalEventLog"));
        let log = log(false);
        let mut r = report_for(&log, NONCE);
        r.measurement = "ee".repeat(48);
        assert!(
            refusal(judge(&r, NONCE, &log, None, trusted))
                .contains("not among the reference values")
        );
    }
}
