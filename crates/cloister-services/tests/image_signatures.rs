//! Container image signatures at the verifier's API: which ones reach
//! `submods.container.image_signatures`, why the others are left out, and Google's documented
//! condition over them at STS. The signatures are made here in cosign's format with aws-lc-rs
//! (Python's `cryptography` and the CLI make them in `crates/cloister/tests`).

mod support;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair, RsaKeyPair};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::message;
use support::secundus::{DIGEST, Secundus, WORKLOAD_SA, event_log, verify_token};
use support::vtpm::{Instance, nonce, request, trust_launcher};

/// A signer: its PEM public key, key id, and a way to sign.
enum Key {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Key {
    fn ec() -> Key {
        Key::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_ASN1_SIGNING).unwrap())
    }

    fn rsa() -> Key {
        Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
    }

    fn spki(&self) -> Vec<u8> {
        match self {
            Key::Ec(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
            Key::Rsa(k) => k.public_key().as_der().unwrap().as_ref().to_vec(),
        }
    }

    fn pem(&self) -> String {
        pem_rfc7468::encode_string("PUBLIC KEY", pem_rfc7468::LineEnding::LF, &self.spki()).unwrap()
    }

    /// What `openssl pkey -pubin -outform DER | sha256sum` prints.
    fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.spki()))
    }

    fn sign(&self, alg: &str, msg: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            Key::Ec(k) => k.sign(&rng, msg).unwrap().as_ref().to_vec(),
            Key::Rsa(k) => {
                let padding: &dyn signature::RsaEncoding = match alg {
                    "RSASSA_PSS_SHA256" => &signature::RSA_PSS_SHA256,
                    _ => &signature::RSA_PKCS1_SHA256,
                };
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(padding, &rng, msg, &mut sig).unwrap();
                sig
            }
        }
    }
}

/// Cosign's SimpleSigning payload for `digest`, carrying `key`'s PEM and `alg`.
fn payload(kind: &str, digest: &str, pem: Option<&str>, alg: &str) -> Vec<u8> {
    let mut optional = json!({"dev.cosignproject.cosign/sigalg": alg});
    if let Some(pem) = pem {
        optional["dev.cosignproject.cosign/pub"] = json!(STANDARD.encode(pem));
    }
    serde_json::to_vec(&json!({
        "critical": {
            "identity": {"docker-reference": "cloister.test/primus-bank/primus-workloads/workload-container"},
            "image": {"docker-manifest-digest": digest},
            "type": kind,
        },
        "optional": optional,
    }))
    .unwrap()
}

fn entry(payload: &[u8], signature: &[u8]) -> Value {
    json!({"payload": STANDARD.encode(payload), "signature": STANDARD.encode(signature)})
}

/// A valid signature of the running image by `key` with `alg`.
fn signed(key: &Key, alg: &str) -> Value {
    let p = payload(
        "cosign container image signature",
        DIGEST,
        Some(&key.pem()),
        alg,
    );
    entry(&p, &key.sign(alg, &p))
}

/// Secundus with an instance whose vTPM measured its launch: signatures are judged only
/// against a digest a root of trust vouched for.
struct World {
    s: Secundus,
    vm: Instance,
}

impl World {
    async fn setup() -> World {
        let s = Secundus::setup().await;
        trust_launcher(&s).await;
        let vm = Instance::create(&s).await;
        World { s, vm }
    }

    /// A verifyAttestation request with the instance's vTPM evidence and these signatures in
    /// Google's shape, and its challenge.
    async fn request(&mut self, signatures: Vec<Value>) -> (String, Value) {
        let (challenge, tpm_nonce) = self.s.challenge().await;
        let log = self.vm.log.clone();
        let mut body = request(&self.s, self.vm.evidence(&nonce(&tpm_nonce), &log));
        body["confidentialSpaceInfo"] = signed_entities(signatures);
        (challenge, body)
    }
}

fn signed_entities(signatures: Vec<Value>) -> Value {
    json!({"signedEntities": [{"containerImageSignatures": signatures}]})
}

/// The token's claims and the response's partial errors' messages.
async fn claims(w: &mut World, signatures: Vec<Value>) -> (Value, String, Vec<String>) {
    let (challenge, body) = w.request(signatures).await;
    let (status, b) = w.s.verify(&w.s.sa_token, &challenge, body).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let token = b["oidcClaimsToken"].as_str().unwrap().to_owned();
    let errors = b["partialErrors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["message"].as_str().unwrap().to_owned())
        .collect();
    (verify_token(&w.s.api, &token).await, token, errors)
}

#[tokio::test]
async fn each_algorithm_verifies_and_the_claim_names_key_and_algorithm() {
    let mut w = World::setup().await;
    let (ec, rsa) = (Key::ec(), Key::rsa());
    for (key, alg) in [
        (&ec, "ECDSA_P256_SHA256"),
        (&rsa, "RSASSA_PKCS1V15_SHA256"),
        (&rsa, "RSASSA_PSS_SHA256"),
    ] {
        let sig = signed(key, alg);
        let (claims, _, errors) = claims(&mut w, vec![sig.clone()]).await;
        assert!(errors.is_empty(), "{alg}: {errors:?}");
        assert_eq!(
            claims["submods"]["container"]["image_signatures"],
            json!([{"key_id": key.key_id(), "signature": sig["signature"], "signature_algorithm": alg}]),
            "{alg}"
        );
    }
    // No signature: no claim, as Google's tokens.
    let (claims, _, _) = claims(&mut w, vec![]).await;
    assert!(claims["submods"]["container"]["image_signatures"].is_null());
}

#[tokio::test]
async fn a_signature_that_does_not_hold_is_left_out_with_the_reason() {
    let mut w = World::setup().await;
    let (ec, rsa, other) = (Key::ec(), Key::rsa(), Key::ec());
    let ecdsa = "ECDSA_P256_SHA256";
    let good = payload(
        "cosign container image signature",
        DIGEST,
        Some(&ec.pem()),
        ecdsa,
    );
    let mut flipped = ec.sign(ecdsa, &good);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let other_image = payload(
        "cosign container image signature",
        &format!("sha256:{}", "0".repeat(64)),
        Some(&ec.pem()),
        ecdsa,
    );
    let wrong_type = payload(
        "cosign container image attestation",
        DIGEST,
        Some(&ec.pem()),
        ecdsa,
    );
    let no_key = payload("cosign container image signature", DIGEST, None, ecdsa);
    let unknown_alg = payload(
        "cosign container image signature",
        DIGEST,
        Some(&ec.pem()),
        "ED25519",
    );
    let rsa_as_ec = payload(
        "cosign container image signature",
        DIGEST,
        Some(&rsa.pem()),
        ecdsa,
    );
    let pkcs1 = "RSASSA_PKCS1V15_SHA256";
    let pss_as_pkcs1 = payload(
        "cosign container image signature",
        DIGEST,
        Some(&rsa.pem()),
        pkcs1,
    );
    let private_pem = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
    let private = payload(
        "cosign container image signature",
        DIGEST,
        Some(std::str::from_utf8(private_pem).unwrap()),
        ecdsa,
    );
    let cases: Vec<(&str, Value, &str)> = vec![
        ("a flipped bit", entry(&good, &flipped), "does not verify"),
        // Another key's signature over a payload that names this key.
        (
            "another key's signature",
            entry(&good, &other.sign(ecdsa, &good)),
            "does not verify",
        ),
        (
            "another image's digest",
            entry(&other_image, &ec.sign(ecdsa, &other_image)),
            "not the running image",
        ),
        (
            "a wrong type",
            entry(&wrong_type, &ec.sign(ecdsa, &wrong_type)),
            "critical.type",
        ),
        (
            "no public key",
            entry(&no_key, &ec.sign(ecdsa, &no_key)),
            "no optional",
        ),
        (
            "an unknown algorithm",
            entry(&unknown_alg, &ec.sign(ecdsa, &unknown_alg)),
            "\"ED25519\"",
        ),
        (
            "an RSA key named ECDSA",
            entry(&rsa_as_ec, &rsa.sign(pkcs1, &rsa_as_ec)),
            "not a P-256 key",
        ),
        (
            "PSS named PKCS#1",
            entry(&pss_as_pkcs1, &rsa.sign("RSASSA_PSS_SHA256", &pss_as_pkcs1)),
            "does not verify",
        ),
        (
            "a private key's PEM",
            entry(&private, b"x"),
            "not a \"PUBLIC KEY\"",
        ),
        (
            "a payload that is not JSON",
            entry(b"not json", b"x"),
            "not JSON",
        ),
        (
            "a payload that is not base64",
            json!({"payload": "%%", "signature": "AA=="}),
            "not base64",
        ),
    ];
    for (what, sig, why) in cases {
        let (claims, _, errors) = claims(&mut w, vec![sig, signed(&ec, ecdsa)]).await;
        // The good signature beside it still counts; the bad one is named and explained.
        let listed = &claims["submods"]["container"]["image_signatures"];
        assert_eq!(listed.as_array().map(Vec::len), Some(1), "{what}: {listed}");
        assert_eq!(listed[0]["key_id"], ec.key_id(), "{what}");
        assert_eq!(errors.len(), 1, "{what}: {errors:?}");
        assert!(
            errors[0].starts_with("container image signature 0: ") && errors[0].contains(why),
            "{what}: {errors:?}"
        );
    }
}

#[tokio::test]
async fn at_most_300_signatures_and_a_refusal_does_not_spend_the_challenge() {
    let mut w = World::setup().await;
    let key = Key::ec();
    let sig = signed(&key, "ECDSA_P256_SHA256");
    let (challenge, mut body) = w.request(vec![sig.clone(); 301]).await;
    let s = &w.s;
    let (status, b) = s.verify(&s.sa_token, &challenge, body.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&b).contains("carries 301 container image signatures; at most 300"),
        "{b}"
    );
    // 300 are judged (the same one repeated is stated once), on the same challenge.
    body["confidentialSpaceInfo"] = signed_entities(vec![sig; 300]);
    let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let claims = verify_token(&s.api, b["oidcClaimsToken"].as_str().unwrap()).await;
    assert_eq!(
        claims["submods"]["container"]["image_signatures"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
}

/// Google's documented condition, verbatim but for the fingerprint and the account.
fn google_condition(key_id: &str) -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && ['ECDSA_P256_SHA256:{key_id}'].exists(fingerprint, fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id)) && '{WORKLOAD_SA}' in assertion.google_service_accounts"
    )
}

#[tokio::test]
async fn googles_condition_admits_the_signers_image_and_refuses_unsigned_and_other_keys() {
    let mut w = World::setup().await;
    let s = &w.s;
    let (primus, other) = (Key::ec(), Key::ec());
    let pools = "/v1/projects/secundus-bank/locations/global/workloadIdentityPools";
    let (st, b) = s
        .api
        .call(
            &s.owner,
            "POST",
            &format!("{pools}?workloadIdentityPoolId=pool-1"),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let body = json!({
        "attributeMapping": {"google.subject": "assertion.sub"},
        "attributeCondition": google_condition(&primus.key_id()),
        "oidc": {"issuerUri": "http://cloister.test", "allowedAudiences": ["https://sts.googleapis.com"]},
    });
    let (st, b) = s
        .api
        .call(
            &s.owner,
            "POST",
            &format!("{pools}/pool-1/providers?workloadIdentityPoolProviderId=signed"),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (_, project) = s
        .api
        .call(&s.owner, "GET", "/v1/projects/secundus-bank", None)
        .await;
    let number = project["projectNumber"].as_str().unwrap().to_owned();
    let sts = |token: &str| {
        let form = serde_urlencoded::to_string([
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", &format!("//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/pool-1/providers/signed")),
            ("subject_token", token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .unwrap();
        Request::post("/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap()
    };
    let ecdsa = "ECDSA_P256_SHA256";
    let (_, signed_token, _) =
        claims(&mut w, vec![signed(&other, ecdsa), signed(&primus, ecdsa)]).await;
    let (st, b) = w.s.api.send(sts(&signed_token)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    for (what, signatures) in [
        ("unsigned", vec![]),
        ("signed by another key", vec![signed(&other, ecdsa)]),
    ] {
        let (_, token, _) = claims(&mut w, signatures).await;
        let (st, b) = w.s.api.send(sts(&token)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{what}: {b}");
        assert_eq!(
            b["error_description"], "The given credential is rejected by the attribute condition.",
            "{what}"
        );
    }
    // A hostile workload's INSECURE evidence naming the signed image, with the signer's own
    // (public) signature: nothing measured that image, so no signature is judged and the
    // condition refuses the token.
    let s = &w.s;
    let (challenge, _) = s.challenge().await;
    let mut body = s.request(event_log(false), &[]);
    body["confidentialSpaceInfo"] = signed_entities(vec![signed(&primus, ecdsa)]);
    let (st, b) = s.verify(&s.sa_token, &challenge, body).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert!(
        b["partialErrors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("INSECURE evidence measures no image")),
        "{b}"
    );
    let token = b["oidcClaimsToken"].as_str().unwrap();
    let claims = verify_token(&s.api, token).await;
    assert!(claims["submods"]["container"]["image_signatures"].is_null());
    let (st, b) = s.api.send(sts(token)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "INSECURE evidence: {b}");
}
