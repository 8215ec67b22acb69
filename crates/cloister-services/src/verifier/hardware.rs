//! What SEV-SNP and TDX evidence share once their hardware checks pass: the REPORT_DATA
//! binding, the instance its vTPM's AK certificate names, the claims a hardware TEE running a
//! trusted launch earns, and the parts of a token that come from the challenge.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{ContainerClaims, ReportKind, report_data};
use cloister_store::{ChallengeRecord, ReferenceValueRecord};
use cloister_tpm::identity::{InstanceIdentity, verify_ak_cert};
use serde_json::Value;
use time::OffsetDateTime;

use super::claims::Verified;
use super::evidence;
use crate::error::ApiError;

/// The instance a report names: the AK certificate the platform's identity CA issued to the
/// vTPM it gave the guest, bound into REPORT_DATA by the launcher (measured, so trusted to
/// read its own vTPM; the workload reaches neither the vTPM nor the report device).
pub(super) struct BoundInstance {
    pub(super) cert: Vec<u8>,
    pub(super) identity: InstanceIdentity,
}

/// The instance `ak_cert` (base64 DER, the evidence's `field`) names, once it verifies
/// against `ca_der` at `now`; none without a certificate.
pub(super) fn bound_instance(
    field: &str,
    ak_cert: Option<&str>,
    ca_der: &[u8],
    now: OffsetDateTime,
) -> Result<Option<BoundInstance>, ApiError> {
    let Some(text) = ak_cert else {
        return Ok(None);
    };
    let bad = |why: String| ApiError::InvalidArgument(format!("{field}: {why}"));
    let cert = STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad(format!("not base64: {e}")))?;
    let (_, identity) = verify_ak_cert(&cert, ca_der, now).map_err(|e| bad(e.to_string()))?;
    Ok(Some(BoundInstance { cert, identity }))
}

/// Whether `report_data_hex` (from the verified report or quote) binds `nonce`, the log, and
/// the instance when the evidence names one.
pub(super) fn binds(
    report_data_hex: &str,
    kind: ReportKind,
    nonce: &[u8],
    log: &[u8],
    instance: Option<&BoundInstance>,
) -> bool {
    let cert = instance.map(|i| i.cert.as_slice());
    report_data_hex == hex::encode(report_data(kind, nonce, log, cert))
}

/// The claims of verified hardware whose launch measurement is the reference value
/// `reference`; `tee` is the submodule about the hardware itself, `subject` names it when no
/// instance does.
pub(super) fn claims(
    hwmodel: &'static str,
    container: ContainerClaims,
    reference: ReferenceValueRecord,
    tee: (&'static str, Value),
    subject: String,
    instance: Option<&BoundInstance>,
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
        gce: instance.map(|i| evidence::gce(&i.identity)),
        tee: Some(tee),
        subject: instance.map_or(subject, |i| evidence::instance_url(&i.identity)),
        service_accounts: Vec::new(),
        image_signatures: Vec::new(),
        measured: true,
    }
}

/// Completes `v` for the challenge it answered: a subject that names no instance names the
/// attestation; the accounts are the verified ID tokens'.
pub(super) fn for_challenge(
    mut v: Verified,
    challenge: &ChallengeRecord,
    accounts: Vec<String>,
) -> Verified {
    if v.gce.is_none() {
        v.subject = format!(
            "{}/{}",
            v.subject,
            challenge.name.rsplit('/').next().unwrap_or_default()
        );
    }
    v.service_accounts = accounts;
    v
}

#[cfg(test)]
mod tests {
    use cloister_tpm::identity::IdentityCa;

    use super::*;
    use crate::verifier::test_support::identity;

    /// An AK certificate `ca` issued to the instance, base64.
    fn certificate(ca: &IdentityCa, now: OffsetDateTime) -> String {
        let ak = rcgen::KeyPair::generate().unwrap();
        STANDARD.encode(
            ca.certify_ak(
                &rcgen::PublicKeyData::subject_public_key_info(&ak),
                &identity(),
                now,
            )
            .unwrap(),
        )
    }

    #[test]
    fn only_the_platforms_ak_certificates_name_an_instance() {
        let now = OffsetDateTime::now_utc();
        let ca = IdentityCa::generate(now).unwrap();
        let rogue = IdentityCa::generate(now).unwrap();
        let field = "sevSnpAttestation.akCert";
        let cert = certificate(&ca, now);
        let bound = bound_instance(field, Some(&cert), ca.cert_der(), now)
            .unwrap()
            .unwrap();
        assert_eq!(bound.identity, identity());
        assert!(
            bound_instance(field, None, ca.cert_der(), now)
                .unwrap()
                .is_none()
        );
        let cases = [
            (certificate(&rogue, now), "not issued by this platform"),
            ("not base64!".to_owned(), "not base64"),
            (STANDARD.encode(b"not a certificate"), ""),
        ];
        for (cert, why) in cases {
            let e = bound_instance(field, Some(&cert), ca.cert_der(), now)
                .err()
                .unwrap_or_else(|| panic!("{why}: accepted"))
                .to_string();
            assert!(e.contains(field) && e.contains(why), "{e}");
        }
    }

    /// The binding names the instance: a report made with one instance's certificate never
    /// passes with another's, nor with none, nor the reverse.
    #[test]
    fn the_binding_holds_the_instance_it_was_made_for() {
        let a = BoundInstance {
            cert: b"instance a".to_vec(),
            identity: identity(),
        };
        let b = BoundInstance {
            cert: b"instance b".to_vec(),
            identity: identity(),
        };
        let kind = ReportKind::SevSnp;
        let made = hex::encode(report_data(kind, b"n", b"log", Some(b"instance a")));
        assert!(binds(&made, kind, b"n", b"log", Some(&a)));
        assert!(!binds(&made, kind, b"n", b"log", Some(&b)));
        assert!(!binds(&made, kind, b"n", b"log", None));
        let unnamed = hex::encode(report_data(kind, b"n", b"log", None));
        assert!(binds(&unnamed, kind, b"n", b"log", None));
        assert!(!binds(&unnamed, kind, b"n", b"log", Some(&a)));
    }

    /// A token about an instance is named by the instance, as Google's; one about a chip
    /// alone by the attestation.
    #[test]
    fn the_subject_is_the_instance_or_else_the_attestation() {
        let challenge = ChallengeRecord {
            name: "projects/p/locations/global/challenges/c-1".into(),
            project_id: cloister_domain::ProjectId::parse("secundus-bank").unwrap(),
            nonce: b"n".to_vec(),
            create_time: OffsetDateTime::UNIX_EPOCH,
            expire_time: OffsetDateTime::UNIX_EPOCH,
        };
        let log = crate::verifier::test_support::log(13, cloister_eventlog::HashAlg::Sha256, false);
        let container = cloister_eventlog::EventLog::decode(&log)
            .unwrap()
            .container_claims(13)
            .unwrap();
        let reference = || {
            crate::verifier::test_support::trusting("m".into())("m")
                .unwrap()
                .unwrap()
        };
        let chip = || ("sev_snp", Value::Null);
        let accounts = vec!["sa@secundus-bank.iam.gserviceaccount.com".to_owned()];
        let named = claims(
            "X",
            container.clone(),
            reference(),
            chip(),
            "snp://c1".into(),
            Some(&crate::verifier::test_support::bound(b"a")),
        );
        let named = for_challenge(named, &challenge, accounts.clone());
        crate::verifier::test_support::assert_names_the_instance(&named);
        assert_eq!(named.service_accounts, accounts);
        let unnamed = claims("X", container, reference(), chip(), "snp://c1".into(), None);
        let unnamed = for_challenge(unnamed, &challenge, accounts);
        assert_eq!(unnamed.subject, "snp://c1/c-1");
        assert!(unnamed.gce.is_none());
    }
}
