//! The attester against a real software TPM (swtpm), checked by the pure verifier: the
//! launcher's half and the verifier's half of vTPM evidence meet.

#![cfg(feature = "tss")]

use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType};
use cloister_tpm::attester::VtpmAttester;
use cloister_tpm::identity::{IdentityCa, InstanceIdentity, verify_ak_cert};
use cloister_tpm::quote::{QuoteError, bank_id, verify_quote};
use cloister_tpm::swtpm::Swtpm;

#[test]
fn a_quote_from_swtpm_verifies_and_its_pcr_replays_from_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(dir.path()).unwrap();
    let mut attester = VtpmAttester::open(&tpm.tcti()).unwrap();
    let banks = attester.active_banks().unwrap();
    assert!(
        banks.contains(&cloister_eventlog::HashAlg::Sha256),
        "{banks:?}"
    );

    // The platform certifies the AK; the key is the same each time it is loaded.
    let ak = attester.ak_public_key().unwrap();
    assert_eq!(attester.ak_public_key().unwrap(), ak);
    let now = time::OffsetDateTime::now_utc();
    let ca = IdentityCa::generate(now).unwrap();
    let identity = InstanceIdentity {
        zone: "local-a".into(),
        project_number: 123456789012,
        project_id: "secundus-bank".into(),
        instance_id: 42,
        instance_name: "workload-vm".into(),
    };
    let cert = ca.certify_ak(&ak, &identity, now).unwrap();
    // The platform leaves the certificate in NV; the launcher reads it back from there.
    attester.store_ak_cert(&cert).unwrap();
    assert_eq!(attester.ak_cert().unwrap(), cert);
    assert!(
        attester.store_ak_cert(&cert).is_err(),
        "the index is defined once"
    );

    // The launcher measures its events into PCR 13 of every bank.
    let mut log = EventLog::default();
    for e in [
        Event::new(EventType::ImageRef, "example.test/workload:latest"),
        Event::new(EventType::ImageDigest, "sha256:abcd"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        let digests = log.append(COS_EVENT_PCR, &banks, &e);
        attester.extend(COS_EVENT_PCR, &digests).unwrap();
    }
    let nonce = [7u8; 32];
    let q = attester
        .quote(&nonce, cloister_eventlog::HashAlg::Sha256, &[COS_EVENT_PCR])
        .unwrap();

    // The verifier's side.
    let (spki, certified) = verify_ak_cert(&cert, ca.cert_der(), now).unwrap();
    assert_eq!(certified, identity);
    let sha256 = bank_id("sha256").unwrap();
    verify_quote(
        &q.attest,
        &q.signature,
        &spki,
        &nonce,
        sha256,
        &q.pcr_values,
    )
    .unwrap();
    let decoded = EventLog::decode(&log.encode()).unwrap();
    assert_eq!(
        decoded
            .replay(cloister_eventlog::HashAlg::Sha256, COS_EVENT_PCR)
            .unwrap(),
        q.pcr_values[&COS_EVENT_PCR]
    );
    assert_eq!(
        decoded
            .container_claims(COS_EVENT_PCR)
            .unwrap()
            .image_digest,
        "sha256:abcd"
    );
    assert_eq!(
        verify_quote(
            &q.attest,
            &q.signature,
            &spki,
            &[8u8; 32],
            sha256,
            &q.pcr_values
        ),
        Err(QuoteError::WrongNonce)
    );
}
