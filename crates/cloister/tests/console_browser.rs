//! The console in a real browser: headless Chromium (Debian's package) driven over WebDriver
//! (Debian's chromium-driver, Selenium's Python client) signs in as Primus and as Secundus and
//! sees what each may see: a vTPM instance's workload is refused by Primus's provider, Primus
//! finds the failing clause in its trust chain, Secundus sees the launch and the token; the
//! playground turns a clause's PASS into FAIL; a file uploads to a bucket with its progress
//! shown; the keyboard skips to the content. Screenshots are kept in the build's
//! test-artifacts directory.

mod support;

use std::process::Command;

#[test]
fn primus_and_secundus_each_see_their_part_of_a_refused_workload_in_chromium() {
    // Secundus (the CLI's alice) runs a probe workload on a vTPM instance; Primus (bob) owns
    // a provider whose condition wants another image digest.
    let s = support::instances::Secundus::setup();
    let w = &s.w;
    let bob = w.as_user("bob");
    let number = bob(&[
        "projects",
        "create",
        "primus-bank",
        "--format",
        "value(projectNumber)",
    ])
    .trim()
    .to_owned();
    let endpoint = w.server.endpoint();
    let condition = "assertion.swname == 'CONFIDENTIAL_SPACE' && assertion.submods.container.image_digest == 'sha256:aaaa'";
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
            &endpoint,
            "--allowed-audiences",
            "https://sts.googleapis.com",
            "--attribute-mapping",
            "google.subject=assertion.sub",
            "--attribute-condition",
            condition,
        ][..],
        &[
            "storage",
            "buckets",
            "create",
            "gs://primus-models",
            "--project",
            "primus-bank",
        ][..],
    ] {
        bob(args);
    }
    s.create(
        "workload-vm",
        "VTPM",
        &format!(
            "^~^tee-image-reference={}~tee-restart-policy=Never~tee-container-log-redirect=true",
            s.image
        ),
    );
    let serial = s.finished_serial("workload-vm");
    let token = serial
        .lines()
        .find_map(|l| l.strip_prefix("PROBE DEFAULT "))
        .unwrap_or_else(|| panic!("no token on the serial console:\n{serial}"))
        .trim()
        .to_owned();
    // The workload's exchange at Primus's provider, refused by the digest clause.
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"
    );
    let refused = Command::new("curl")
        .args([
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("{endpoint}/v1/token"),
        ])
        .args([
            "--data-urlencode",
            "grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
        ])
        .args(["--data-urlencode", &format!("audience={audience}")])
        .args([
            "--data-urlencode",
            "subject_token_type=urn:ietf:params:oauth:token-type:jwt",
        ])
        .args(["--data-urlencode", &format!("subject_token={token}")])
        .output()
        .unwrap();
    let refused = String::from_utf8_lossy(&refused.stdout);
    assert!(
        refused.ends_with("\n400") && refused.contains("unauthorized_client"),
        "{refused}"
    );

    // A workload that keeps writing, for the live serial console.
    let (ticker, _) = s.push_program("ticker", TICKER, &["tee.launch_policy.log_redirect=always"]);
    s.create(
        "ticker-vm",
        "VTPM",
        &format!("^~^tee-image-reference={ticker}~tee-restart-policy=Never~tee-container-log-redirect=true"),
    );
    s.wait_for("ticker-vm", "TICK 0");

    let primus_link = bob(&["auth", "console-login"]).trim().to_owned();
    let secundus_link = w.as_user("alice")(&["auth", "console-login"])
        .trim()
        .to_owned();
    assert!(primus_link.starts_with(&endpoint), "{primus_link}");
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    let script = support::crate_dir().join("tests/python/console_browser.py");
    let out = Command::new("python3")
        .arg(&script)
        .args([&primus_link, &secundus_link, "primus-bank", "secundus-bank"])
        .arg(&shots)
        .arg(unsigned_token())
        .arg("/console/projects/secundus-bank/zones/us-west1-b/instances/workload-vm/trust")
        .arg("/console/projects/secundus-bank/zones/us-west1-b/instances/ticker-vm")
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
        seen["primus_projects"],
        serde_json::json!(["primus-bank"]),
        "{seen}"
    );
    assert_eq!(
        seen["secundus_projects"],
        serde_json::json!(["secundus-bank"]),
        "{seen}"
    );
    assert_eq!(seen["primus_cookie_http_only"], true, "{seen}");
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
        seen["secundus_on_primus_project"]
            .as_str()
            .unwrap()
            .contains("'resourcemanager.projects.get'"),
        "{seen}"
    );
    // The keyboard reaches the content first; a file uploaded from the bucket's page, its
    // progress followed to the last byte, is listed with its download link.
    assert_eq!(seen["first_tab"], "Skip to content", "{seen}");
    assert_eq!(seen["after_skip"], "main", "{seen}");
    let size = (3 * 1024 * 1024).to_string();
    assert_eq!(
        seen["upload_status"],
        format!("Uploaded {size} bytes. Show the bucket's objects"),
        "{seen}"
    );
    // The bar counts the form's bytes (the file and its multipart framing), to the last.
    let bar = &seen["upload_progress"];
    let (sent, total) = (bar[0].as_str().unwrap(), bar[1].as_str().unwrap());
    assert!(
        sent == total && total.parse::<u64>().unwrap() > 3 * 1024 * 1024,
        "{seen}"
    );
    assert_eq!(
        seen["bucket_objects"],
        serde_json::json!(["weights.bin"]),
        "{seen}"
    );
    assert!(
        seen["download_href"]
            .as_str()
            .unwrap()
            .ends_with("/console/buckets/primus-models/download?name=weights.bin"),
        "{seen}"
    );
    let stored = bob(&["storage", "ls", "-l", "gs://primus-models/weights.bin"]);
    assert!(stored.contains(&size), "{stored}");
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
        seen["secundus_on_primus_provider"]
            .as_str()
            .unwrap()
            .contains("iam.workloadIdentityPoolProviders.get"),
        "{seen}"
    );
    // The trust chain: Primus finds the failing clause and the digest the workload ran;
    // Secundus sees the launch and the token, not Primus's decision.
    let failing = seen["primus_failing_clause"].as_str().unwrap();
    assert!(failing.contains("image_digest == 'sha256:aaaa'"), "{seen}");
    assert!(
        seen["primus_presented"]
            .as_str()
            .unwrap()
            .contains(s.digest.as_str()),
        "{seen}"
    );
    assert!(
        seen["secundus_chain"].as_str().unwrap().contains("VTPM"),
        "{seen}"
    );
    assert!(
        !seen["secundus_chain"]
            .as_str()
            .unwrap()
            .contains("sha256:aaaa"),
        "{seen}"
    );
    // The running instance's console grew in place: our script appended, the page stayed.
    assert_eq!(seen["console_grew"], true, "{seen}");
    assert_eq!(seen["console_not_reloaded"], true, "{seen}");
    for shot in [
        "secundus-live-console.png",
        "primus-projects.png",
        "primus-project.png",
        "primus-bucket-upload.png",
        "primus-bucket.png",
        "primus-playground.png",
        "primus-audit.png",
        "primus-trust-chain.png",
        "secundus-projects.png",
        "secundus-refused.png",
        "secundus-trust-chain.png",
    ] {
        let png = std::fs::read(shots.join(shot)).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{shot}");
    }
}

/// Writes a line a second for a minute.
const TICKER: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(void) {
  for (int i = 0; i < 60; i++) { printf("TICK %d\n", i); fflush(stdout); sleep(1); }
  return 0;
}
"#;

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
