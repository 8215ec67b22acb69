//! Real recorded SEV-SNP evidence (shared/fixtures/tee): each fixture gives the outcome its
//! README states, and any flipped bit in what is signed is refused.

use std::path::PathBuf;

use cloister_snp::{Policy, Product, SigningKey, SnpError, verify};
use time::macros::datetime;

fn fixture(path: &str) -> Vec<u8> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let found = dir
        .ancestors()
        .map(|a| a.join("shared/fixtures/tee").join(path))
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "shared/fixtures/tee/{path} not found above {}",
                dir.display()
            )
        });
    std::fs::read(found).unwrap()
}

fn milan_v2() -> (Vec<u8>, Vec<u8>) {
    (fixture("snp/test-report.bin"), fixture("snp/test-vcek.der"))
}

const NOW: time::OffsetDateTime = datetime!(2026-12-01 00:00 UTC);

#[test]
fn a_milan_report_verifies_with_its_vcek() {
    let (report, vcek) = milan_v2();
    let v = verify(&report, &vcek, NOW).unwrap();
    assert_eq!(
        (v.product, v.signing_key, v.version),
        (Product::Milan, SigningKey::Vcek, 2)
    );
    assert_eq!(
        v.reported_tcb.microcode, 0x73,
        "the reported TCB, not the current one"
    );
    Policy::default().check(&v).unwrap();

    let hex_report = String::from_utf8(fixture("sev-certs/report_milan.hex")).unwrap();
    let report = hex::decode(hex_report.split_whitespace().collect::<String>()).unwrap();
    let v = verify(&report, &fixture("sev-certs/vcek_milan.der"), NOW).unwrap();
    assert_eq!(v.product, Product::Milan);
}

#[test]
fn the_vlek_report_is_refused_for_vmpl_1_and_its_expired_vlek() {
    let (report, vlek) = (
        fixture("snp/test-vlek-report.bin"),
        fixture("snp/test-vlek.der"),
    );
    // While the VLEK was valid, the evidence verifies, and policy refuses VMPL 1.
    let v = verify(&report, &vlek, datetime!(2025-06-01 00:00 UTC)).unwrap();
    assert_eq!(v.signing_key, SigningKey::Vlek);
    let err = Policy::default().check(&v).unwrap_err();
    assert!(err.to_string().contains("VMPL 1"), "{err}");
    // Today the VLEK has expired.
    let err = verify(&report, &vlek, NOW).unwrap_err();
    assert!(
        matches!(&err, SnpError::Refused(m) if m.contains("VLEK certificate is valid from")),
        "{err}"
    );
}

#[test]
fn altered_vceks_and_other_chips_vceks_are_refused() {
    let (report, _) = milan_v2();
    for bad in [
        "snp/test-vcek-invalid-legacy.der",
        "snp/test-vcek-invalid-new.der",
    ] {
        let err = verify(&report, &fixture(bad), NOW).unwrap_err();
        assert!(matches!(err, SnpError::Refused(_)), "{bad}: {err}");
    }
    // A genuine VCEK of another chip (and TCB).
    let err = verify(&report, &fixture("sev-certs/vcek_milan.der"), NOW).unwrap_err();
    assert!(matches!(err, SnpError::Refused(_)), "{err}");
    // A Turin VCEK does not chain to Milan's ASK.
    assert!(verify(&report, &fixture("sev-certs/vcek_turin.der"), NOW).is_err());
}

#[test]
fn every_flipped_bit_in_the_signed_report_or_signature_is_refused() {
    let (report, vcek) = milan_v2();
    // Every byte of the signed part and of the signature's 48 significant bytes.
    let positions = (0..0x2A0).chain(0x2A0..0x2A0 + 48).chain(0x2E8..0x2E8 + 48);
    for i in positions.step_by(7) {
        let mut bad = report.clone();
        bad[i] ^= 0x01;
        assert!(
            verify(&bad, &vcek, NOW).is_err(),
            "byte {i:#x} flipped was accepted"
        );
    }
    // A flipped bit anywhere in the VCEK breaks its chain or its key.
    for i in (0..vcek.len()).step_by(97) {
        let mut bad = vcek.clone();
        bad[i] ^= 0x01;
        assert!(
            verify(&report, &bad, NOW).is_err(),
            "VCEK byte {i} flipped was accepted"
        );
    }
}

#[test]
fn debug_guests_and_unusable_input_are_refused() {
    let (report, vcek) = milan_v2();
    let v = verify(&report, &vcek, NOW).unwrap();
    let debug = cloister_snp::Verified { debug: true, ..v };
    assert!(
        Policy::default()
            .check(&debug)
            .unwrap_err()
            .to_string()
            .contains("debugging")
    );
    assert!(matches!(
        verify(&report[..100], &vcek, NOW),
        Err(SnpError::Malformed(_))
    ));
    assert!(matches!(
        verify(&report, b"not a certificate", NOW),
        Err(SnpError::Malformed(_))
    ));
    // The VCEK's validity is checked at the time given.
    assert!(verify(&report, &vcek, datetime!(2040-01-01 00:00 UTC)).is_err());
}
