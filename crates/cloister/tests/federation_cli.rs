//! Workload identity federation through the real binary and CLI, and through Google's own
//! Python client library (google-auth) for wire compatibility.

mod support;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::World;

const ISSUER: &str = "https://issuer.test";
const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";

fn fixture(name: &str) -> String {
    format!(
        "{}/../cloister-services/tests/fixtures/{name}",
        support::crate_dir().display()
    )
}

fn condition() -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes && assertion.submods.container.image_digest == '{DIGEST}'"
    )
}

fn token(digest: &str) -> String {
    token_with("instance-1", json!({"image_digest": digest}))
}

/// A token for `sub` whose `submods.container` is `container`.
fn token_with(sub: &str, container: serde_json::Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": ISSUER, "aud": "https://sts.googleapis.com", "sub": sub,
        "iat": now, "exp": now + 3600, "swname": "CONFIDENTIAL_SPACE",
        "submods": {"confidential_space": {"support_attributes": ["STABLE"]}, "container": container}
    });
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key =
        EncodingKey::from_rsa_pem(&std::fs::read(fixture("issuer-rsa.pem")).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

/// Primus's project, service account, pool and provider, all made with the CLI.
fn primus(w: &World) -> String {
    let cli = &w.cli;
    let a = |args: &[&str]| {
        let mut all = vec!["--profile", "alice"];
        all.extend(args);
        cli.ok(&all)
    };
    let number = a(&[
        "projects",
        "create",
        "primus-bank",
        "--format",
        "value(projectNumber)",
    ])
    .trim()
    .to_owned();
    a(&[
        "iam",
        "service-accounts",
        "create",
        "primus-sa",
        "--project",
        "primus-bank",
    ]);
    a(&[
        "iam",
        "workload-identity-pools",
        "create",
        "primus-pool",
        "--project",
        "primus-bank",
        "--location",
        "global",
    ]);
    a(&[
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
        ISSUER,
        "--allowed-audiences",
        "https://sts.googleapis.com",
        "--attribute-mapping",
        "google.subject=assertion.sub",
        "--attribute-condition",
        &condition(),
        "--jwk-json-path",
        &fixture("issuer-jwks.json"),
    ]);
    let pool_set = format!(
        "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*"
    );
    a(&[
        "iam",
        "service-accounts",
        "add-iam-policy-binding",
        PRIMUS_SA,
        "--member",
        &pool_set,
        "--role",
        "roles/iam.workloadIdentityUser",
    ]);
    a(&[
        "projects",
        "add-iam-policy-binding",
        "primus-bank",
        "--member",
        &format!("serviceAccount:{PRIMUS_SA}"),
        "--role",
        "roles/viewer",
    ]);
    number
}

#[test]
fn providers_are_managed_and_explained_with_the_cli() {
    let w = World::with_two_users();
    primus(&w);
    let cli = &w.cli;
    let provider = [
        "--workload-identity-pool",
        "primus-pool",
        "--project",
        "primus-bank",
    ];
    let mut describe = vec![
        "--profile",
        "alice",
        "iam",
        "workload-identity-pools",
        "providers",
        "describe",
        "attestation-verifier",
    ];
    describe.extend(provider);
    describe.extend([
        "--format",
        "value(oidc.issuerUri,attributeMapping.google.subject)",
    ]);
    assert_eq!(cli.ok(&describe).trim(), format!("{ISSUER}\tassertion.sub"));

    // A condition with a syntax error is refused with its position; the old one stays.
    let mut update = vec![
        "--profile",
        "alice",
        "iam",
        "workload-identity-pools",
        "providers",
        "update-oidc",
        "attestation-verifier",
    ];
    update.extend(provider);
    update.extend(["--attribute-condition", "assertion.swname == "]);
    let err = cli.fails(&update);
    assert!(
        err.contains("INVALID_ARGUMENT")
            && err.contains("does not compile")
            && err.contains("line 1"),
        "{err}"
    );

    // A provider whose issuer Cloister will not fetch is stored, with a warning saying why.
    let mut internal = vec![
        "--profile",
        "alice",
        "iam",
        "workload-identity-pools",
        "providers",
        "create-oidc",
        "internal-issuer",
    ];
    internal.extend(provider);
    internal.extend([
        "--location",
        "global",
        "--issuer-uri",
        "http://127.0.0.1:9",
        "--attribute-mapping",
        "google.subject=assertion.sub",
    ]);
    let out = cli.run(&internal);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("WARNING: could not fetch the keys of issuer http://127.0.0.1:9")
            && err.contains("--oidc-fetch-allow"),
        "{err}"
    );

    // A token file ends in a newline; it is not part of the token.
    let token_file = w.dir.path().join("token.jwt");
    std::fs::write(&token_file, format!("{}\n", token("sha256:0000"))).unwrap();
    let mut explain = vec![
        "--profile",
        "alice",
        "iam",
        "workload-identity-pools",
        "providers",
        "explain",
        "attestation-verifier",
    ];
    explain.extend(provider);
    explain.extend(["--token", token_file.to_str().unwrap()]);
    // REJECTED prints the clauses and exits non-zero, so scripts can branch on it.
    let run = cli.run(&explain);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(!run.status.success(), "{out}");
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("rejects this token"),
        "{run:?}"
    );
    assert!(out.contains("result:   REJECTED"), "{out}");
    assert!(
        out.contains("PASS  assertion.swname == 'CONFIDENTIAL_SPACE'"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  assertion.submods.container.image_digest"),
        "{out}"
    );
    assert!(
        out.contains("assertion.submods.container.image_digest = \"sha256:0000\""),
        "{out}"
    );

    // The authorized image: ACCEPTED, exit 0 (in JSON as well).
    std::fs::write(&token_file, token(DIGEST)).unwrap();
    let out = cli.ok(&explain);
    assert!(out.contains("result:   ACCEPTED"), "{out}");
    explain.extend(["--format", "json"]);
    assert_eq!(
        cli.json(&explain[..explain.len() - 2])["result"],
        "ACCEPTED"
    );

    // Google's signature condition: the clause shows the key it wants and the keys the token
    // has (here only another signer's), so the owner sees why without the token.
    let primus_key = format!("ECDSA_P256_SHA256:{}", "a1".repeat(32));
    let other_key = "b2".repeat(32);
    let signature_condition = format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && ['{primus_key}'].exists(fingerprint, fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id))"
    );
    update.pop();
    update.push(&signature_condition);
    cli.ok(&update);
    let signed = |key_id: &str| {
        token_with(
            "instance-1",
            json!({"image_digest": DIGEST, "image_signatures": [
            {"key_id": key_id, "signature": "MEUCIQ", "signature_algorithm": "ECDSA_P256_SHA256"}]}),
        )
    };
    std::fs::write(&token_file, signed(&other_key)).unwrap();
    let explain = &explain[..explain.len() - 2];
    let run = cli.run(explain);
    let out = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(!run.status.success(), "{out}");
    assert!(
        out.contains(&format!("FAIL  ['{primus_key}'].exists(fingerprint, ")),
        "{out}"
    );
    assert!(
        out.contains(&format!("['{primus_key}'] = [\"{primus_key}\"]")),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id) = [\"ECDSA_P256_SHA256:{other_key}\"]"
        )),
        "{out}"
    );
    std::fs::write(&token_file, signed(&"a1".repeat(32))).unwrap();
    assert!(cli.ok(explain).contains("result:   ACCEPTED"));

    // Bob may not read Primus's provider.
    let mut bob = describe.clone();
    bob[1] = "bob";
    let err = cli.fails(&bob);
    assert!(
        err.contains("iam.workloadIdentityPoolProviders.get"),
        "{err}"
    );
}

#[test]
fn googles_python_client_exchanges_and_impersonates_against_cloister() {
    let w = World::with_users(&[]);
    let number = primus(&w);
    let endpoint = w.server.endpoint();
    let token_file = w.dir.path().join("subject.jwt");
    // With the newline a token file usually ends in: Cloister's STS trims it, as Google's does.
    std::fs::write(&token_file, format!("{}\n", token(DIGEST))).unwrap();
    // The credential configuration is create-cred-config's, as gcloud's would be.
    let config_file = w.dir.path().join("external-account.json");
    w.cli.ok(&[
        "--profile",
        "alice",
        "iam",
        "workload-identity-pools",
        "create-cred-config",
        &format!("projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"),
        "--service-account",
        PRIMUS_SA,
        "--service-account-token-lifetime-seconds",
        "1200",
        "--credential-source-file",
        token_file.to_str().unwrap(),
        "--output-file",
        config_file.to_str().unwrap(),
    ]);
    let config: Value = serde_json::from_slice(&std::fs::read(&config_file).unwrap()).unwrap();
    assert_eq!(config["token_url"], format!("{endpoint}/v1/token"));
    let script = format!(
        "{}/tests/python/google_auth_federation.py",
        support::crate_dir().display()
    );
    let out = std::process::Command::new("python3")
        .args([
            &script,
            config_file.to_str().unwrap(),
            &endpoint,
            "primus-bank",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "google-auth failed (scripts/test.sh installs it with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result["service_account_email"], PRIMUS_SA);
    // The lifetime the configuration asks for is the one generateAccessToken gave.
    // google-auth's expiry is a naive datetime in UTC.
    let expiry = time::PrimitiveDateTime::parse(
        result["expiry"].as_str().unwrap(),
        &time::format_description::well_known::Iso8601::DEFAULT,
    )
    .unwrap()
    .assume_utc();
    let left = (expiry - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((1100..=1200).contains(&left), "{result}");
    assert_eq!(result["status"], 200, "{result}");
    assert_eq!(result["project"]["projectId"], "primus-bank");

    // The unauthorized image gets Google's exact refusal through the same library.
    std::fs::write(&token_file, token("sha256:0000")).unwrap();
    let out = std::process::Command::new("python3")
        .args([
            &script,
            config_file.to_str().unwrap(),
            &endpoint,
            "primus-bank",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("The given credential is rejected by the attribute condition."),
        "{err}"
    );
}

/// Posts `token` to STS for Primus's provider; returns the HTTP status.
fn exchange(w: &World, number: &str, token: &str) -> u16 {
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"
    );
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", audience.as_str()),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ("subject_token", token),
    ];
    let url = format!("{}/v1/token", w.server.endpoint());
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let response = reqwest::Client::new()
            .post(url)
            .form(&form)
            .send()
            .await
            .unwrap();
        response.status().as_u16()
    })
}

#[test]
fn the_pool_owner_sees_why_an_exchange_was_refused_and_a_stranger_does_not() {
    let w = World::with_two_users();
    let number = primus(&w);
    // Its subject carries a terminal escape (a title change): shown, never obeyed.
    let refused = token_with(
        "instance-1\u{1b}]0;owned\u{7}",
        json!({"image_digest": "sha256:0000"}),
    );
    assert_eq!(exchange(&w, &number, &refused), 400);
    assert_eq!(exchange(&w, &number, &token(DIGEST)), 200);
    let alice = w.as_user("alice");
    let denied = [
        "audit",
        "list",
        "--project",
        "primus-bank",
        "--permission",
        "sts.googleapis.com/token.exchange",
        "--decision",
        "deny",
    ];
    let ids = alice(&[&denied[..], &["--format", "value(id)"]].concat());
    let id = ids.trim();
    assert!(!id.is_empty() && !id.contains('\n'), "one refusal: {ids}");
    // A time window bounds the list: nothing was decided before 2000.
    let before = &["--before", "2000-01-01T00:00:00Z", "--format", "value(id)"];
    assert_eq!(alice(&[&denied[..], before].concat()).trim(), "");

    // The default list is a table whose ID column `describe` takes; its reasons are cut short.
    let table = alice(&denied);
    let heading = table.lines().next().unwrap_or_default();
    assert!(
        heading.starts_with("ID") && heading.contains("REASON"),
        "{table}"
    );
    assert!(table.contains('…'), "a long reason is truncated: {table}");
    assert!(!table.contains('\u{1b}'), "{table:?}");
    let full = w.cli.json(&[&["--profile", "alice"][..], &denied].concat());
    assert!(
        full[0]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("image_digest") && !r.contains('…')),
        "{full}"
    );

    // The owner's view: the failing clause, the value the workload presented, the fix.
    let out = alice(&["audit", "describe", id]);
    for expected in [
        "decision:   DENY",
        "principal:  subject:instance-1\\u{1b}]0;owned\\u{7}",
        "PASS  assertion.swname == 'CONFIDENTIAL_SPACE'",
        "FAIL  assertion.submods.container.image_digest ==",
        "assertion.submods.container.image_digest = \"sha256:0000\"",
        "to accept this workload, the condition must allow what it presented:",
    ] {
        assert!(out.contains(expected), "{expected:?} in:\n{out}");
    }
    assert!(!out.contains('\u{1b}'), "{out:?}");
    let entry = w.cli.json(&["--profile", "alice", "audit", "describe", id]);
    let clauses = &entry["details"]["clauses"];
    assert_eq!(entry["details"]["kind"], "tokenExchange", "{entry}");
    assert_eq!(clauses[2]["outcome"], "FAIL", "{entry}");
    assert_eq!(clauses[2]["compared"][0]["value"], "sha256:0000", "{entry}");
    // The token is never kept: not whole, not its signature.
    let signature = refused.rsplit('.').next().unwrap();
    assert!(!entry.to_string().contains(signature), "{entry}");

    // Bob learns nothing: the entry he may not read and one that does not exist look alike.
    let err = w.cli.fails(&["--profile", "bob", "audit", "describe", id]);
    assert!(
        err.contains("PERMISSION_DENIED") && err.contains("logging.privateLogEntries.list"),
        "{err}"
    );
    assert!(
        !err.contains("sha256:0000") && !err.contains("image_digest"),
        "{err}"
    );
    let missing = w
        .cli
        .fails(&["--profile", "bob", "audit", "describe", "999999"]);
    assert_eq!(err.replace(id, "N"), missing.replace("999999", "N"));
    let bad = w.cli.fails(&["--profile", "bob", "audit", "describe", "x"]);
    assert!(bad.contains("invalid value"), "{bad}");
}
