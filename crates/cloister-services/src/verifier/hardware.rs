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
use crate::state::AppState;

/// The instance a report names: the AK certificate the platform's identity CA issued to the
/// vTPM it gave the guest, bound into REPORT_DATA by the launcher (measured, so trusted to
/// read its own vTPM; the workload reaches neither the vTPM nor the report device), with a
/// quote by that AK over the challenge nonce: a certificate is public, so only the quote
/// shows this guest holds the AK (a guest on another host, given a copy of the certificate in
/// a vTPM of its own, cannot sign with it).
pub(super) struct BoundInstance {
    pub(super) cert: Vec<u8>,
    pub(super) identity: InstanceIdentity,
}

/// What SNP and TDX evidence may carry to name their instance.
#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProof {
    /// The AK certificate (DER, base64).
    #[serde(default)]
    ak_cert: Option<String>,
    /// The AK's quote over the challenge nonce, in `tpmAttestation.quotes`' shape.
    #[serde(default)]
    ak_quote: Option<evidence::TpmQuote>,
}

/// The instance `proof` names (its fields under the evidence's `kind`), once the certificate
/// verifies against `ca_der` at `now` and its AK's quote over `nonce` does; none without a
/// certificate.
pub(super) fn bound_instance(
    kind: &str,
    proof: &InstanceProof,
    ca_der: &[u8],
    now: OffsetDateTime,
    nonce: &[u8],
) -> Result<Option<BoundInstance>, ApiError> {
    let bad =
        |field: &str, why: String| ApiError::InvalidArgument(format!("{kind}.{field}: {why}"));
    let (text, quote) = match (&proof.ak_cert, &proof.ak_quote) {
        (None, None) => return Ok(None),
        (Some(text), Some(quote)) => (text, quote),
        (Some(_), None) => {
            return Err(bad(
                "akQuote",
                "is required with akCert: a quote by the AK over the challenge nonce shows the guest holds it".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(bad("akCert", "is required with akQuote".into()));
        }
    };
    let cert = STANDARD
        .decode(text.as_bytes())
        .map_err(|e| bad("akCert", format!("not base64: {e}")))?;
    let (ak, identity) =
        verify_ak_cert(&cert, ca_der, now).map_err(|e| bad("akCert", e.to_string()))?;
    quote.checked(&format!("{kind}.akQuote"), &ak, nonce)?;
    Ok(Some(BoundInstance { cert, identity }))
}

/// [`bound_instance`] against this server's identity CA, now.
pub(super) fn instance_of(
    state: &AppState,
    kind: &str,
    proof: &InstanceProof,
    nonce: &[u8],
) -> Result<Option<BoundInstance>, ApiError> {
    let ca = state.identity_ca.cert_der();
    bound_instance(kind, proof, ca, OffsetDateTime::now_utc(), nonce)
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

    /// Evidence naming an instance: a certificate and a quote, each possibly missing.
    fn proof(cert: Option<String>, quote: Option<serde_json::Value>) -> InstanceProof {
        serde_json::from_value(serde_json::json!({"akCert": cert, "akQuote": quote})).unwrap()
    }

    /// Only an AK certificate the platform's CA issued names an instance, and only with a
    /// quote by that AK over this challenge's nonce: the certificate alone is public.
    #[test]
    fn an_instance_is_named_by_the_platforms_certificate_and_the_aks_own_quote() {
        let now = OffsetDateTime::now_utc();
        let (ca, rogue) = (
            IdentityCa::generate(now).unwrap(),
            IdentityCa::generate(now).unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let tpm = cloister_tpm::swtpm::Swtpm::start(&dir.path().join("tpm")).unwrap();
        let mut attester = cloister_tpm::attester::VtpmAttester::open(&tpm.tcti()).unwrap();
        let ak = attester.ak_public_key().unwrap();
        let other = rcgen::KeyPair::generate().unwrap();
        let other = rcgen::PublicKeyData::subject_public_key_info(&other);
        let cert = |ca: &IdentityCa, key: &[u8]| {
            Some(STANDARD.encode(ca.certify_ak(key, &identity(), now).unwrap()))
        };
        let mut quote = |nonce: &[u8]| {
            let q = attester
                .quote(nonce, cloister_eventlog::HashAlg::Sha256, &[13])
                .unwrap();
            let pcrs: std::collections::BTreeMap<String, String> = q
                .pcr_values
                .iter()
                .map(|(i, v)| (i.to_string(), STANDARD.encode(v)))
                .collect();
            Some(serde_json::json!({"hashAlgo": 11, "pcrValues": pcrs,
                "rawQuote": STANDARD.encode(&q.attest), "rawSignature": STANDARD.encode(&q.signature)}))
        };
        let nonce = b"challenge nonce";
        let kind = "sevSnpAttestation";
        let named = bound_instance(
            kind,
            &proof(cert(&ca, &ak), quote(nonce)),
            ca.cert_der(),
            now,
            nonce,
        )
        .unwrap()
        .unwrap();
        assert_eq!(named.identity, identity());
        assert!(
            bound_instance(kind, &proof(None, None), ca.cert_der(), now, nonce)
                .unwrap()
                .is_none()
        );
        let refused = [
            (
                proof(cert(&rogue, &ak), quote(nonce)),
                "akCert: the AK certificate was not issued by this platform",
            ),
            // A copy of the instance's certificate, in a guest that does not hold its AK.
            (proof(cert(&ca, &other), quote(nonce)), "akQuote"),
            (
                proof(cert(&ca, &ak), quote(b"another challenge")),
                "akQuote",
            ),
            (
                proof(cert(&ca, &ak), None),
                "akQuote: is required with akCert",
            ),
            (proof(None, quote(nonce)), "akCert: is required"),
            (
                proof(Some("not base64!".into()), quote(nonce)),
                "akCert: not base64",
            ),
        ];
        for (proof, why) in refused {
            let e = bound_instance(kind, &proof, ca.cert_der(), now, nonce)
                .err()
                .unwrap_or_else(|| panic!("{why}: accepted"))
                .to_string();
            assert!(e.contains(kind) && e.contains(why), "{why}: {e}");
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
