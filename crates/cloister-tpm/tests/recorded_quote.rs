//! A real TPM quote recorded from hardware (testdata/tee/tpm), and its mutations.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_tpm::quote::{QuoteError, bank_id, parse_quote, verify_quote};
use serde_json::Value;

struct Evidence {
    ak: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcrs: BTreeMap<u8, Vec<u8>>,
}

fn evidence() -> Evidence {
    let path = format!(
        "{}/../../testdata/tee/tpm/tpm_evidence.json",
        // At run time, not compile time: a binary built in another checkout reads this one.
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with `cargo test`")
    );
    let v: Value = serde_json::from_slice(&std::fs::read(path).expect("testdata/tee")).unwrap();
    let q = &v["tpm_quote"];
    let pcrs = q["pcrs"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, p)| (i as u8, hex::decode(p.as_str().unwrap()).unwrap()))
        .collect();
    Evidence {
        ak: STANDARD.decode(v["ak_public"].as_str().unwrap()).unwrap(),
        attest: STANDARD.decode(q["message"].as_str().unwrap()).unwrap(),
        signature: STANDARD.decode(q["signature"].as_str().unwrap()).unwrap(),
        pcrs,
    }
}

#[test]
fn the_recorded_quote_verifies() {
    let e = evidence();
    let nonce = parse_quote(&e.attest).unwrap().extra_data;
    assert_eq!(nonce.len(), 64);
    let q = verify_quote(
        &e.attest,
        &e.signature,
        &e.ak,
        &nonce,
        bank_id("sha256").unwrap(),
        &e.pcrs,
    )
    .unwrap();
    assert_eq!(q.selections[0].1.len(), 24);
}

#[test]
fn every_mutation_is_refused() {
    let e = evidence();
    let nonce = parse_quote(&e.attest).unwrap().extra_data;
    let sha256 = bank_id("sha256").unwrap();
    let verify = |attest: &[u8], sig: &[u8], nonce: &[u8], pcrs: &BTreeMap<u8, Vec<u8>>| {
        verify_quote(attest, sig, &e.ak, nonce, sha256, pcrs)
    };
    // A flipped bit anywhere in the signed quote.
    for i in [0, 7, 40, e.attest.len() - 1] {
        let mut a = e.attest.clone();
        a[i] ^= 1;
        assert_eq!(
            verify(&a, &e.signature, &nonce, &e.pcrs),
            Err(QuoteError::BadSignature),
            "byte {i}"
        );
    }
    let mut s = e.signature.clone();
    let last = s.len() - 1;
    s[last] ^= 1;
    assert_eq!(
        verify(&e.attest, &s, &nonce, &e.pcrs),
        Err(QuoteError::BadSignature)
    );
    assert_eq!(
        verify(&e.attest, &e.signature, b"another nonce", &e.pcrs),
        Err(QuoteError::WrongNonce)
    );
    let mut pcrs = e.pcrs.clone();
    pcrs.get_mut(&13).unwrap()[0] ^= 1;
    assert_eq!(
        verify(&e.attest, &e.signature, &nonce, &pcrs),
        Err(QuoteError::PcrDigestMismatch)
    );
    // The same bytes, split otherwise between two PCRs: the digest still matches, but each
    // value must be one digest of the bank.
    let mut moved = e.pcrs.clone();
    let taken = moved.get_mut(&12).unwrap().split_off(16);
    moved.get_mut(&13).unwrap().splice(0..0, taken);
    assert_eq!(
        verify(&e.attest, &e.signature, &nonce, &moved),
        Err(QuoteError::WrongValueSize {
            index: 12,
            len: 16,
            size: 32
        })
    );
    let mut fewer = e.pcrs.clone();
    fewer.remove(&23);
    assert!(matches!(
        verify(&e.attest, &e.signature, &nonce, &fewer),
        Err(QuoteError::WrongSelection { .. })
    ));
    assert!(matches!(
        verify_quote(
            &e.attest,
            &e.signature,
            &e.ak,
            &nonce,
            bank_id("sha1").unwrap(),
            &e.pcrs
        ),
        Err(QuoteError::WrongBank { .. })
    ));
    // Signed by another key: the same quote checked against a different RSA key.
    let other = {
        use rsa::pkcs8::EncodePublicKey;
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        k.to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    };
    assert_eq!(
        verify_quote(&e.attest, &e.signature, &other, &nonce, sha256, &e.pcrs),
        Err(QuoteError::BadSignature)
    );
    assert!(matches!(
        verify(&e.attest[..50], &e.signature, &nonce, &e.pcrs),
        Err(QuoteError::BadSignature)
    ));
}
