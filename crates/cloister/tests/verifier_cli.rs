//! The attestation verifier through the real server, checked by an independent relying party
//! (Python PyJWT) and by `cloister attest decode-token`.

mod support;

use base64::Engine;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType, HashAlg};
use serde_json::Value;
use support::World;

const SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";

#[test]
fn pyjwt_verifies_an_attestation_token_through_discovery_and_so_does_the_cli() {
    let w = World::with_users(&[]);
    let endpoint = w.server.endpoint();
    let a = |args: &[&str]| {
        let mut all = vec!["--profile", "alice"];
        all.extend(args);
        w.cli.ok(&all)
    };
    a(&["projects", "create", "secundus-bank"]);
    a(&[
        "iam",
        "service-accounts",
        "create",
        "workload-sa",
        "--project",
        "secundus-bank",
    ]);
    a(&[
        "projects",
        "add-iam-policy-binding",
        "secundus-bank",
        "--member",
        &format!("serviceAccount:{SA}"),
        "--role",
        "roles/confidentialcomputing.workloadUser",
    ]);
    let sa_token = a(&[
        "auth",
        "print-access-token",
        "--impersonate-service-account",
        SA,
    ])
    .trim()
    .to_owned();
    let id_token = a(&[
        "auth",
        "print-identity-token",
        "--impersonate-service-account",
        SA,
        "--audiences",
        &endpoint,
        "--include-email",
    ])
    .trim()
    .to_owned();

    let mut log = EventLog::default();
    for e in [
        Event::new(EventType::ImageRef, "example.test/workload:latest"),
        Event::new(EventType::ImageDigest, "sha256:abcd"),
        Event::new(EventType::RestartPolicy, "Never"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        log.append(COS_EVENT_PCR, &[HashAlg::Sha256], &e);
    }
    let log = base64::engine::general_purpose::STANDARD.encode(log.encode());
    let token_file = w.dir.path().join("attestation.jwt");
    let script = format!(
        "{}/tests/python/pyjwt_verify_attestation.py",
        env!("CARGO_MANIFEST_DIR")
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
