//! The attestation verifier through the real server, checked by an independent relying party
//! (Python PyJWT) and by `cloister attest decode-token`.

mod support;

use base64::Engine;
use serde_json::Value;
use support::World;
use support::attestation::{self, SA};

#[test]
fn pyjwt_verifies_an_attestation_token_through_discovery_and_so_does_the_cli() {
    let w = World::with_users(&[]);
    let endpoint = w.server.endpoint();
    let (sa_token, id_token) = attestation::workload_account(&w, &endpoint);
    let log = attestation::event_log();
    let token_file = w.dir.path().join("attestation.jwt");
    let script = format!(
        "{}/tests/python/pyjwt_verify_attestation.py",
        support::crate_dir().display()
    );
    let out = std::process::Command::new("python3")
        .args([
            &script,
            &endpoint,
            &sa_token,
            &id_token,
            &log,
            "secundus-bank",
            token_file.to_str().unwrap(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyJWT verification failed (scripts/test.sh installs PyJWT with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let claims: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(claims["iss"], endpoint);
    assert_eq!(claims["hwmodel"], "INSECURE");
    assert_eq!(
        claims["submods"]["container"]["image_digest"],
        "sha256:abcd"
    );
    assert_eq!(claims["google_service_accounts"][0], SA);
    assert_eq!(claims["eat_nonce"], "0123456789abcdef");

    let decoded = w.cli.json(&[
        "--profile",
        "alice",
        "attest",
        "decode-token",
        token_file.to_str().unwrap(),
        "--audience",
        "https://sts.googleapis.com",
    ]);
    assert_eq!(decoded, claims);
    // A token altered after signing is refused.
    let token = std::fs::read_to_string(&token_file).unwrap();
    let mut parts: Vec<String> = token.split('.').map(String::from).collect();
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
        serde_json::to_vec(&serde_json::json!({"iss": endpoint, "hwmodel": "INTEL_TDX"})).unwrap(),
    );
    std::fs::write(&token_file, parts.join(".")).unwrap();
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "attest",
        "decode-token",
        token_file.to_str().unwrap(),
    ]);
    assert!(err.contains("does not verify"), "{err}");
}

/// Every token type through the real server, each verified by an independent relying party
/// (PyJWT and cryptography): OIDC through the JWKS, PKI through its x5c chain to the root
/// downloaded from `root_ca_uri` (forged chains refused), AWS principal tags in Google's shape.
#[test]
fn a_python_relying_party_verifies_oidc_pki_and_aws_principal_tag_tokens() {
    let w = World::with_users(&[]);
    let endpoint = w.server.endpoint();
    let (sa_token, id_token) = attestation::workload_account(&w, &endpoint);
    let script = format!(
        "{}/tests/python/pyjwt_token_types.py",
        support::crate_dir().display()
    );
    let relying_party = || -> Value {
        let out = std::process::Command::new("python3")
            .args([
                &script,
                &endpoint,
                &sa_token,
                &id_token,
                &attestation::event_log(),
                "secundus-bank",
            ])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "the relying party failed (scripts/install-deps.sh installs PyJWT and cryptography):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = relying_party();
    assert_eq!(v["oidc"]["eat_nonce"], "0123456789abcdef");
    assert_eq!(v["pki"]["iss"], endpoint);
    assert_eq!(
        v["pki"]["submods"]["container"]["image_digest"],
        "sha256:abcd"
    );
    assert!(
        v["pki_header"]["kid"].is_null(),
        "a PKI token is verified by its chain"
    );
    for (forgery, why) in [
        ("rogue_root", "does not end at the downloaded root"),
        ("rogue_intermediate", "is not issued by"),
        ("altered_payload", "do not verify"),
    ] {
        let refusal = v["refused"][forgery].as_str().unwrap_or_default();
        assert!(refusal.contains(why), "{forgery}: {refusal:?}");
    }
    // No signature matched the allowed key ids: the image is named by its digest.
    assert_eq!(
        v["aws"]["https://aws.amazon.com/tags"],
        serde_json::json!({"principal_tags": {
            "container.image_digest": ["sha256:abcd"],
            "hwmodel": ["INSECURE"],
            "swname": ["INSECURE"],
        }})
    );
    assert!(
        v["oidc"].get("https://aws.amazon.com/tags").is_none(),
        "only AWS tokens carry tags"
    );

    // Rotating the signing key gives PKI tokens a new leaf under the same intermediate (one
    // per server) and the same root: the relying party verifies them to the root it downloaded.
    w.cli
        .ok(&["--profile", "admin", "verifier", "signing-keys", "rotate"]);
    let after = relying_party();
    let chain = |v: &Value| -> Vec<String> {
        v["pki_header"]["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_owned())
            .collect()
    };
    let (before, after_chain) = (chain(&v), chain(&after));
    assert_ne!(before[0], after_chain[0], "a new signing key, a new leaf");
    assert_eq!(before[1], after_chain[1], "the server's intermediate stays");
    assert_eq!(before[2], after_chain[2], "the root stays");
    assert_eq!(after["pki"]["iss"], endpoint);
}
