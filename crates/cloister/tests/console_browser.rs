//! The console in a real browser: headless Chromium (Debian's package) driven over WebDriver
//! (Debian's chromium-driver, Selenium's Python client) signs in as two users and sees what
//! each may see. Screenshots are kept in the build's test-artifacts directory.

mod support;

use std::process::Command;

use support::World;

#[test]
fn two_users_see_their_own_projects_in_chromium() {
    let w = World::with_users(&[]);
    let (alice, bob) = (w.as_user("alice"), w.as_user("bob"));
    alice(&["projects", "create", "primus-bank"]);
    bob(&["projects", "create", "secundus-bank"]);
    // Primus's provider, whose condition the playground edits.
    for args in [
        &[
            "iam",
            "workload-identity-pools",
            "create",
            "primus-pool",
            "--project",
            "primus-bank",
            "--location",
            "global",
        ][..],
        &[
            "iam",
            "workload-identity-pools",
            "providers",
            "create-oidc",
            "attestation-verifier",
            "--workload-identity-pool",
            "primus-pool",
            "--project",
            "primus-bank",
            "--location",
            "global",
            "--issuer-uri",
            "https://issuer.test",
            "--allowed-audiences",
            "https://sts.googleapis.com",
            "--attribute-mapping",
            "google.subject=assertion.sub",
            "--attribute-condition",
            "assertion.swname == 'CONFIDENTIAL_SPACE' && assertion.submods.container.image_digest == 'sha256:aaaa'",
            "--jwk-json-path",
            &format!(
                "{}/../cloister-services/tests/fixtures/issuer-jwks.json",
                support::crate_dir().display()
            ),
        ][..],
    ] {
        alice(args);
    }
    let alice_link = alice(&["auth", "console-login"]).trim().to_owned();
    let bob_link = bob(&["auth", "console-login"]).trim().to_owned();
    assert!(alice_link.starts_with(&w.server.endpoint()), "{alice_link}");

    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = support::crate_dir().join("tests/python/console_browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&alice_link, &bob_link, "primus-bank", "secundus-bank"])
        .arg(&shots)
        .arg(unsigned_token())
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs selenium and chromium)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        seen["alice_projects"],
        serde_json::json!(["primus-bank"]),
        "{seen}"
    );
    assert_eq!(
        seen["bob_projects"],
        serde_json::json!(["secundus-bank"]),
        "{seen}"
    );
    assert_eq!(seen["alice_cookie_http_only"], true, "{seen}");
    assert_eq!(seen["project_heading"], "primus-bank", "{seen}");
    assert!(
        seen["project_roles"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "roles/owner"),
        "{seen}"
    );
    assert!(
        seen["after_sign_out"]
            .as_str()
            .unwrap()
            .ends_with("/console/login"),
        "{seen}"
    );
    assert!(
        seen["reused_code"]
            .as_str()
            .unwrap()
            .contains("unknown, used or expired"),
        "{seen}"
    );
    assert!(
        seen["bob_on_alices_project"]
            .as_str()
            .unwrap()
            .contains("resourcemanager.projects.getIamPolicy"),
        "{seen}"
    );
    // The playground: the token is unsigned, so judged as unverified and never accepted;
    // narrowing the digest clause turns its PASS into FAIL.
    assert_eq!(
        seen["playground_before"],
        serde_json::json!(["PASS", "PASS"]),
        "{seen}"
    );
    assert_eq!(
        seen["playground_after"],
        serde_json::json!(["PASS", "FAIL"]),
        "{seen}"
    );
    assert_eq!(seen["playground_result"], "REJECTED", "{seen}");
    assert!(seen["playground_unverified"].as_bool().unwrap(), "{seen}");
    assert!(seen["audit_rows"].as_u64().unwrap() > 0, "{seen}");
    assert!(
        seen["bob_on_alices_provider"]
            .as_str()
            .unwrap()
            .contains("iam.workloadIdentityPoolProviders.get"),
        "{seen}"
    );
    for shot in [
        "alice-projects.png",
        "alice-project.png",
        "alice-playground.png",
        "alice-audit.png",
        "bob-projects.png",
        "bob-refused.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
}

/// A JWT with Confidential Space's claims and no valid signature: the playground judges its
/// claims and says it is unverified.
fn unsigned_token() -> String {
    use base64::Engine;
    let b64 = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    format!(
        "{}.{}.c2ln",
        b64(serde_json::json!({"alg": "RS256", "kid": "rsa-1"})),
        b64(serde_json::json!({
            "iss": "https://issuer.test", "aud": "https://sts.googleapis.com", "sub": "workload",
            "swname": "CONFIDENTIAL_SPACE",
            "submods": {"container": {"image_digest": "sha256:aaaa"}},
        }))
    )
}
