//! Real recorded SEV-SNP evidence (testdata/tee): each fixture gives the outcome its
//! README states, and any flipped bit in what is signed is refused.

use std::path::PathBuf;

use cloister_snp::{Policy, Product, SigningKey, SnpError, verify};
use time::macros::datetime;

fn fixture(path: &str) -> Vec<u8> {
    let found = PathBuf::from(
        // At run time, not compile time: a binary built in another checkout reads this one.
        std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with `cargo test`"),
    )
    .join("../../testdata/tee")
    .join(path);
    std::fs::read(&found).unwrap_or_else(|e| panic!("{}: {e}", found.display()))
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

/// trustee's Genoa evidence is the `sev` crate's JSON of a v3 report: re-encoded here to the
/// 1184-byte ABI layout (reserved bytes zero).
fn genoa_from_trustee_json() -> (Vec<u8>, Vec<u8>) {
    let v: serde_json::Value =
        serde_json::from_slice(&fixture("snp/trustee-genoa-evidence.json")).unwrap();
    let r = &v["attestation_report"];
    let mut b = vec![0u8; cloister_snp::report::REPORT_LEN];
    let mut put = |at: usize, bytes: &[u8]| b[at..at + bytes.len()].copy_from_slice(bytes);
    let list = |key: &str| -> Vec<u8> {
        r[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    };
    let tcb = |key: &str| -> [u8; 8] {
        let t = &r[key];
        let f = |k: &str| t[k].as_u64().unwrap_or(0) as u8;
        [
            f("bootloader"),
            f("tee"),
            0,
            0,
            0,
            0,
            f("snp"),
            f("microcode"),
        ]
    };
    let version = |key: &str| -> [u8; 4] {
        let t = &r[key];
        let f = |k: &str| t[k].as_u64().unwrap() as u8;
        [f("build"), f("minor"), f("major"), 0]
    };
    let u32le = |key: &str| (r[key].as_u64().unwrap() as u32).to_le_bytes();
    put(0x000, &u32le("version"));
    put(0x004, &u32le("guest_svn"));
    put(0x008, &r["policy"].as_u64().unwrap().to_le_bytes());
    put(0x010, &list("family_id"));
    put(0x020, &list("image_id"));
    put(0x030, &u32le("vmpl"));
    put(0x034, &u32le("sig_algo"));
    put(0x038, &tcb("current_tcb"));
    put(0x040, &r["plat_info"].as_u64().unwrap().to_le_bytes());
    put(0x048, &u32le("key_info"));
    put(0x050, &list("report_data"));
    put(0x090, &list("measurement"));
    put(0x0C0, &list("host_data"));
    put(0x0E0, &list("id_key_digest"));
    put(0x110, &list("author_key_digest"));
    put(0x140, &list("report_id"));
    put(0x160, &list("report_id_ma"));
    put(0x180, &tcb("reported_tcb"));
    put(
        0x188,
        &[
            r["cpuid_fam_id"].as_u64().unwrap() as u8,
            r["cpuid_mod_id"].as_u64().unwrap() as u8,
            r["cpuid_step"].as_u64().unwrap() as u8,
        ],
    );
    put(0x1A0, &list("chip_id"));
    put(0x1E0, &tcb("committed_tcb"));
    put(0x1E8, &version("current"));
    put(0x1EC, &version("committed"));
    put(0x1F0, &tcb("launch_tcb"));
    let sig = |k: &str| -> Vec<u8> {
        r["signature"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_u64().unwrap() as u8)
            .collect()
    };
    put(0x2A0, &sig("r"));
    put(0x2E8, &sig("s"));
    let vcek: Vec<u8> = v["cert_chain"][0]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u8)
        .collect();
    (b, vcek)
}

#[test]
fn a_genoa_v3_report_verifies_with_its_vcek() {
    let (report, vcek) = genoa_from_trustee_json();
    let v = verify(&report, &vcek, NOW).unwrap();
    assert_eq!((v.product, v.version, v.vmpl), (Product::Genoa, 3, 0));
    Policy::default().check(&v).unwrap();
    // Genoa's VCEK does not verify a Milan report, nor the reverse.
    let (milan, milan_vcek) = milan_v2();
    assert!(verify(&milan, &vcek, NOW).is_err());
    assert!(verify(&report, &milan_vcek, NOW).is_err());
}

/// Azure's HCL report + vTPM quote, the three recorded machines (the quote nonce is the
/// ASCII string "challenge").
/// (HCL report, quote, quote signature, PCRs, VCEK).
type AzureEvidence = (Vec<u8>, Vec<u8>, Vec<u8>, Vec<Vec<u8>>, Vec<u8>);

fn azure(file: &str) -> AzureEvidence {
    use base64::Engine;
    let v: serde_json::Value =
        serde_json::from_slice(&fixture(&format!("az-snp-vtpm/{file}"))).unwrap();
    let (hcl, quote, vcek) = if v["hcl_report"].is_string() {
        let hcl = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v["hcl_report"].as_str().unwrap().trim_end_matches('='))
            .unwrap();
        // Base64 in the URL-safe alphabet.
        let vcek = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(v["vcek"].as_str().unwrap().trim_end_matches('='))
            .unwrap();
        (hcl, &v["tpm_quote"], vcek)
    } else {
        let hcl: Vec<u8> = v["report"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b.as_u64().unwrap() as u8)
            .collect();
        let pem = v["vcek"].as_str().unwrap();
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        (
            hcl,
            &v["quote"],
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
    };
    // Hex strings (v1, v2) or byte arrays (genoa).
    let bytes = |v: &serde_json::Value| -> Vec<u8> {
        match v.as_str() {
            Some(h) => hex::decode(h).unwrap(),
            None => v
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b.as_u64().unwrap() as u8)
                .collect(),
        }
    };
    let hexes = |k: &str| bytes(&quote[k]);
    let pcrs = quote["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .map(bytes)
        .collect();
    (hcl, hexes("message"), hexes("signature"), pcrs, vcek)
}

#[test]
fn azure_snp_vtpm_evidence_verifies_and_its_bindings_hold() {
    use cloister_snp::azure::verify_azure;
    // The quotes' nonces: v1 answers "challenge"; v2 and genoa answer 48-byte nonces
    // (recorded here, as the fixtures' README only names v1's).
    let v2 = hex::decode("982f5c6e45df0ed3f10b6f60b02f0c8390e281300f3805e2279c16168cd6ae9aa398f647caa2338748cd0fd9f5f819ef").unwrap();
    let genoa = hex::decode("0218488bae25d2509232bf676f1a66a30d7372add909109b36016ef136f2938ca05475f8b46094de6b64270ea35d950f").unwrap();
    for (file, nonce) in [
        ("evidence-v1.json", b"challenge".to_vec()),
        ("evidence-v2.json", v2),
        ("evidence-genoa.json", genoa),
    ] {
        let (hcl, quote, sig, pcrs, vcek) = azure(file);
        let v = verify_azure(&hcl, &quote, &sig, &pcrs, &vcek, &nonce, NOW)
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(v.pcrs.len(), 24, "{file}");
        // Another nonce, altered var data, an altered quote: refused.
        assert!(
            verify_azure(&hcl, &quote, &sig, &pcrs, &vcek, b"another", NOW).is_err(),
            "{file}"
        );
        let mut bad = hcl.clone();
        bad[0x4D4 + 20] ^= 1;
        assert!(
            verify_azure(&bad, &quote, &sig, &pcrs, &vcek, &nonce, NOW).is_err(),
            "{file}"
        );
        let mut bad = quote.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(
            verify_azure(&hcl, &bad, &sig, &pcrs, &vcek, &nonce, NOW).is_err(),
            "{file}"
        );
    }
}
