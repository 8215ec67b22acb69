//! `cloister artifacts sign|verify` and cosign-format interop both ways: Cloister's signatures
//! verify with Python's `cryptography` over the pulled payload, and signatures made outside
//! Cloister (`tests/python/cosign_format.py`, from cosign's spec, pushed with the registry
//! API) are accepted by Cloister's verifier code.

mod support;

use std::process::Command;

use support::World;

fn python(args: &[&str]) -> String {
    let script = format!(
        "{}/tests/python/cosign_format.py",
        support::crate_dir().display()
    );
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 runs (scripts/install-deps.sh installs cryptography, requests)");
    assert!(
        out.status.success(),
        "cosign_format.py {args:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cloister_and_cosign_format_signers_verify_each_other() {
    let w = World::with_users(&[]);
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    alice(&[
        "artifacts",
        "repositories",
        "create",
        "workloads",
        "--project",
        "primus-bank",
    ]);
    let host = w.server.endpoint().trim_start_matches("http://").to_owned();
    let name = "primus-bank/workloads/workload";
    let push = |tag: &str| {
        alice(&[
            "artifacts",
            "push",
            &format!("{host}/{name}:{tag}"),
            "--executable",
            "/bin/true",
            "--env",
            &format!("RELEASE={tag}"),
        ])
        .trim()
        .to_owned()
    };
    let (digest, unsigned) = (push("v1"), push("v2"));
    let image = format!("{host}/{name}@{digest}");
    let token = alice(&["auth", "print-access-token"]).trim().to_owned();
    let endpoint = w.server.endpoint();
    let dir = w.dir.path();
    let key = |n: &str| dir.join(n).to_str().unwrap().to_owned();
    let ec_id = python(&["keygen", "ec", &key("ec.pem"), &key("ec.pub")]);
    let rsa_id = python(&["keygen", "rsa", &key("rsa.pem"), &key("rsa.pub")]);
    let other_id = python(&["keygen", "ec", &key("other.pem"), &key("other.pub")]);

    // Cloister signs (by tag: resolved to the digest); the key id is openssl's fingerprint.
    let printed = alice(&[
        "artifacts",
        "sign",
        &format!("{host}/{name}:v1"),
        "--key",
        &key("ec.pem"),
    ]);
    assert_eq!(
        printed.trim(),
        format!("ECDSA_P256_SHA256:{}", ec_id.trim())
    );
    // …and Python's cryptography verifies it over the pulled payload.
    let seen = python(&["verify", &endpoint, &token, name, &digest]);
    assert_eq!(seen.trim(), printed.trim());

    // A cosign-format signer outside Cloister adds an RSA-PSS signature beside it.
    python(&[
        "sign",
        &endpoint,
        &token,
        name,
        &digest,
        &key("rsa.pem"),
        "RSASSA_PSS_SHA256",
    ]);
    let out = alice(&["artifacts", "verify", &image, "--key", &key("rsa.pub")]);
    assert!(
        out.contains(&format!("RSASSA_PSS_SHA256:{}\tvalid", rsa_id.trim())),
        "{out}"
    );
    assert!(
        out.contains(&format!("ECDSA_P256_SHA256:{}\tvalid", ec_id.trim())),
        "{out}"
    );
    // Cloister appends to the same manifest: a PKCS#1 v1.5 signature by the RSA key.
    alice(&[
        "artifacts",
        "sign",
        &image,
        "--key",
        &key("rsa.pem"),
        "--algorithm",
        "RSASSA_PKCS1V15_SHA256",
    ]);
    let seen = python(&["verify", &endpoint, &token, name, &digest]);
    assert_eq!(seen.lines().count(), 3, "{seen}");

    // Refusals: a key that signed nothing, an unsigned image.
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "artifacts",
        "verify",
        &image,
        "--key",
        &key("other.pub"),
    ]);
    assert!(
        err.contains(&format!("no valid signature by key {}", other_id.trim())),
        "{err}"
    );
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "artifacts",
        "verify",
        &format!("{host}/{name}@{unsigned}"),
        "--key",
        &key("rsa.pub"),
    ]);
    assert!(err.contains("has no valid signature by key"), "{err}");
    // Without a key, "some signature verifies" would accept anyone's: the key is required.
    let err = w
        .cli
        .fails(&["--profile", "alice", "artifacts", "verify", &image]);
    assert!(err.contains("--key"), "{err}");
    // A private key of the wrong kind for the algorithm is refused before anything is pushed.
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "artifacts",
        "sign",
        &image,
        "--key",
        &key("ec.pem"),
        "--algorithm",
        "RSASSA_PSS_SHA256",
    ]);
    assert!(err.contains("signs ECDSA_P256_SHA256"), "{err}");
}
