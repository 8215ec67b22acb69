//! Google's own Python clients (google-auth, google-cloud-storage) run the codelab's workload
//! code path against a real VTPM instance: `google.auth.default()` and `storage.Client()` with
//! no arguments find the instance's metadata server, and the codelab's federation path
//! (`identity_pool.Credentials.from_info` on `create-cred-config`'s file, with the attestation
//! token the launcher wrote) reads Primus's model.
//!
//! Where the Python runs: in the instance's own workload network namespace (where GCE's
//! 169.254.169.254:80 is the instance's metadata server and the public URL is Cloister's API),
//! with exactly the environment the launcher gave the container (read from its OCI bundle),
//! on this host's Python. The instance's container itself runs a tiny static program: an
//! image with Python and Google's libraries would be hundreds of megabytes to build and pull
//! per test run, and the network namespace and environment are what the clients depend on.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::Value;
use support::attestation::SA;
use support::instances::{COUNTER, COUNTER_LABELS, Secundus};

const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";

/// Bob plays Primus: the model bucket, its reader account, the pool and the codelab's
/// provider trusting exactly `digest` run as Secundus's workload account. Returns the
/// provider's full name.
fn primus(s: &Secundus, digest: &str, model: &Path) -> String {
    let bob = s.w.as_user("bob");
    let number = bob(&[
        "projects",
        "create",
        "primus-bank",
        "--format",
        "value(projectNumber)",
    ])
    .trim()
    .to_owned();
    bob(&[
        "storage",
        "buckets",
        "create",
        "gs://primus-ml-models",
        "--project",
        "primus-bank",
    ]);
    bob(&[
        "storage",
        "cp",
        model.to_str().unwrap(),
        "gs://primus-ml-models/model.tar.gz",
    ]);
    bob(&[
        "iam",
        "service-accounts",
        "create",
        "primus-sa",
        "--project",
        "primus-bank",
    ]);
    bob(&[
        "storage",
        "buckets",
        "add-iam-policy-binding",
        "gs://primus-ml-models",
        "--member",
        &format!("serviceAccount:{PRIMUS_SA}"),
        "--role",
        "roles/storage.objectViewer",
    ]);
    bob(&[
        "iam",
        "workload-identity-pools",
        "create",
        "primus-pool",
        "--project",
        "primus-bank",
        "--location",
        "global",
    ]);
    // The codelab's attribute condition, verbatim but for the names.
    let condition = format!(
        "assertion.submods.container.image_digest == '{digest}' && '{SA}' in assertion.google_service_accounts && assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes"
    );
    bob(&[
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
        &s.w.server.endpoint(),
        "--allowed-audiences",
        "https://sts.googleapis.com",
        "--attribute-mapping",
        "google.subject=assertion.sub",
        "--attribute-condition",
        &condition,
    ]);
    bob(&[
        "iam",
        "service-accounts",
        "add-iam-policy-binding",
        PRIMUS_SA,
        "--member",
        &format!(
            "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*"
        ),
        "--role",
        "roles/iam.workloadIdentityUser",
    ]);
    format!(
        "projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"
    )
}

/// Alice plays Secundus: an images bucket the workload reads, a results bucket it writes.
fn secundus_buckets(s: &Secundus) {
    let dir = s.w.dir.path().join("images");
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["cat.jpg", "dog.png", "notes.txt"] {
        std::fs::write(dir.join(name), format!("not really {name}")).unwrap();
    }
    for bucket in ["secundus-images", "secundus-results"] {
        s.alice(&[
            "storage",
            "buckets",
            "create",
            &format!("gs://{bucket}"),
            "--project",
            "secundus-bank",
        ]);
    }
    for name in ["cat.jpg", "dog.png", "notes.txt"] {
        s.alice(&[
            "storage",
            "cp",
            dir.join(name).to_str().unwrap(),
            "gs://secundus-images/",
        ]);
    }
    for (bucket, role) in [
        ("secundus-images", "roles/storage.objectViewer"),
        ("secundus-results", "roles/storage.objectAdmin"),
    ] {
        s.alice(&[
            "storage",
            "buckets",
            "add-iam-policy-binding",
            &format!("gs://{bucket}"),
            "--member",
            &format!("serviceAccount:{SA}"),
            "--role",
            role,
        ]);
    }
}

/// The Python interpreter itself (not a shim that needs this shell's environment).
fn python() -> String {
    let out = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .expect("python3 runs (scripts/test.sh installs google-auth and google-cloud-storage)");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The environment runc gave the container, from the bundle the launcher wrote.
fn container_env(instance_dir: &Path) -> Vec<(String, String)> {
    let config = std::fs::read(instance_dir.join("run/bundle/config.json")).unwrap();
    let config: Value = serde_json::from_slice(&config).unwrap();
    config["process"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str()?.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[test]
fn googles_python_clients_run_the_codelab_workload_in_an_instance() {
    let s = Secundus::setup();
    let (image, digest) = s.push_program("codelab-workload", COUNTER, COUNTER_LABELS);
    let model_dir = s.w.dir.path().join("model");
    std::fs::create_dir_all(model_dir.join("variables")).unwrap();
    std::fs::write(model_dir.join("saved_model.pb"), b"weights").unwrap();
    std::fs::write(model_dir.join("variables/variables.index"), b"index").unwrap();
    let model = s.w.dir.path().join("model.tar.gz");
    let tar = Command::new("tar")
        .args([
            "czf",
            model.to_str().unwrap(),
            "-C",
            model_dir.to_str().unwrap(),
            ".",
        ])
        .status()
        .unwrap();
    assert!(tar.success());
    let provider = primus(&s, &digest, &model);
    secundus_buckets(&s);

    // The image is signed before launch (cosign's format, in its own repository).
    let signatures = image.rsplit_once(':').unwrap().0.to_owned();
    let first_signer = sign(&s, &image, "first");
    s.create(
        "codelab-vm",
        "VTPM",
        &format!(
            "^~^tee-image-reference={image}~tee-restart-policy=Never~tee-container-log-redirect=true~tee-cmd=[\"sleep\"]~tee-signed-image-repos={signatures}"
        ),
    );
    // Deleted however the test ends: a panic would otherwise leave its workload running.
    let _vm = DeleteOnDrop(&s, "codelab-vm");
    s.wait_for("codelab-vm", "RUN 1 sleep");
    let id = s
        .alice(&[
            "compute",
            "instances",
            "describe",
            "codelab-vm",
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
            "--format",
            "value(id)",
        ])
        .trim()
        .to_owned();
    let dir: PathBuf = s.w.dir.path().join("data/instances").join(&id);
    let token_file = dir.join("run/container_launcher/attestation_verifier_claims_token");
    wait_for_file(&token_file);
    let first = jwt_claims(std::fs::read_to_string(&token_file).unwrap().trim());
    assert_eq!(
        key_ids(&first),
        std::slice::from_ref(&first_signer),
        "{first}"
    );

    // What the workload's image would carry: the codelab's credential configuration, here
    // written by create-cred-config for the token file as this host sees it (in the container
    // it is /run/container_launcher/attestation_verifier_claims_token).
    let config = s.w.dir.path().join("credential-config.json");
    s.alice(&[
        "iam",
        "workload-identity-pools",
        "create-cred-config",
        &provider,
        "--service-account",
        PRIMUS_SA,
        "--credential-source-file",
        token_file.to_str().unwrap(),
        "--output-file",
        config.to_str().unwrap(),
    ]);

    let env = container_env(&dir);
    let var = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("the container has no {name}: {env:?}"))
    };
    assert_eq!(var("GCE_METADATA_HOST"), "169.254.169.254");
    assert_eq!(var("GCE_METADATA_IP"), "169.254.169.254");
    assert_eq!(var("API_ENDPOINT_OVERRIDE"), s.w.server.endpoint());
    let script = format!(
        "{}/tests/python/codelab_workload.py",
        support::crate_dir().display()
    );
    let home = s.w.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = Command::new("nsenter")
        .arg(format!("--net={}", dir.join("net/workload").display()))
        .arg(python())
        .args([
            &script,
            config.to_str().unwrap(),
            "primus-ml-models",
            "secundus-images",
            "secundus-results",
        ])
        // Only the container's environment (and a HOME without gcloud's credentials in it).
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("HOME", &home)
        .output()
        .expect("nsenter runs");
    assert!(
        out.status.success(),
        "the codelab's Python failed in the instance:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();

    // google.auth.default(): Compute Engine credentials for the instance's account and project.
    assert_eq!(
        r["default_credentials"], "google.auth.compute_engine.credentials.Credentials",
        "{r}"
    );
    assert_eq!(r["default_project"], "secundus-bank");
    assert_eq!(r["default_account"], SA);
    assert_eq!(r["client_project"], "secundus-bank");
    let id_token = jwt_claims(r["id_token"].as_str().unwrap());
    assert_eq!(id_token["aud"], "https://secundus.example/");
    assert_eq!(id_token["email"], SA);
    assert_eq!(
        id_token["google"]["compute_engine"]["instance_name"],
        "codelab-vm"
    );
    // The codelab's federation path read Primus's model as Primus's account.
    assert_eq!(r["federated_account"], PRIMUS_SA);
    assert_eq!(
        r["model_files"],
        serde_json::json!(["saved_model.pb", "variables/variables.index"])
    );
    // And wrote Secundus's result with the default credentials.
    let result = s.alice(&["storage", "cat", "gs://secundus-results/result"]);
    assert_eq!(
        result,
        "Image: cat.jpg, Response: {'skipped': 'no TensorFlow here'}\nImage: dog.png, Response: {'skipped': 'no TensorFlow here'}"
    );
    assert_eq!(r["results"].as_array().unwrap().len(), 2);

    // The launcher's teeserver, as the workload reaches it, issues every token type.
    let socket = dir.join("run/container_launcher/teeserver.sock");
    let pki = teeserver_token(
        &socket,
        r#"{"audience":"https://relying-party.example","token_type":"PKI","nonces":["0123456789abcdef"]}"#,
    );
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            pki.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(header["x5c"].as_array().map(Vec::len), Some(3), "{header}");
    let claims = jwt_claims(&pki);
    assert_eq!(claims["aud"], "https://relying-party.example");
    assert_eq!(claims["eat_nonce"], "0123456789abcdef");
    let aws = jwt_claims(&teeserver_token(
        &socket,
        r#"{"audience":"https://sts.amazonaws.com","token_type":"AWS_PRINCIPALTAGS"}"#,
    ));
    // A signature added after launch is in the next token (GET attests afresh, as Google's).
    let second_signer = sign(&s, &image, "second");
    let refreshed = jwt_claims(&teeserver(&socket, "GET", ""));
    let mut both = vec![first_signer, second_signer];
    both.sort();
    assert_eq!(key_ids(&refreshed), both, "{refreshed}");
    // An AWS token allowing both signers (and one that did not sign) names the image by the
    // signers' key ids, sorted and `=`-joined as Google's, instead of by its digest.
    let by_keys = jwt_claims(&teeserver_token(
        &socket,
        &format!(
            r#"{{"audience":"https://sts.amazonaws.com","token_type":"AWS_PRINCIPALTAGS","aws_principal_tag_options":{{"allowed_principal_tags":{{"container_image_signatures":{{"key_ids":["{}","{}","{}"]}}}}}}}}"#,
            both[1],
            "0".repeat(64),
            both[0]
        ),
    ));
    let tags = &by_keys["https://aws.amazon.com/tags"]["principal_tags"];
    assert_eq!(
        tags["container.signatures.key_ids"],
        serde_json::json!([both.join("=")]),
        "{by_keys}"
    );
    assert!(tags.get("container.image_digest").is_none(), "{by_keys}");
    let tags = &aws["https://aws.amazon.com/tags"]["principal_tags"];
    assert_eq!(
        tags["gce.project_id"],
        serde_json::json!(["secundus-bank"]),
        "{aws}"
    );
    assert_eq!(
        tags["container.image_digest"],
        serde_json::json!([claims["submods"]["container"]["image_digest"]]),
        "{aws}"
    );
}

/// `POST /v1/token` on the launcher's socket; the token, or a panic with the refusal.
fn teeserver_token(socket: &Path, body: &str) -> String {
    teeserver(socket, "POST", body)
}

/// `METHOD /v1/token` on the launcher's socket; the token, or a panic with the refusal.
fn teeserver(socket: &Path, method: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        stream,
        "{method} /v1/token HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, token) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{response}");
    token.trim().to_owned()
}

/// Signs `image` with a new P-256 key (`name.pem`) as the image's owner; returns its key id.
fn sign(s: &Secundus, image: &str, name: &str) -> String {
    let key = s.w.dir.path().join(format!("{name}.pem"));
    let generated = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl ecparam -genkey -name prime256v1 -noout | openssl pkcs8 -topk8 -nocrypt -out {}",
            key.display()
        ))
        .status()
        .expect("openssl runs");
    assert!(generated.success());
    let printed = s.alice(&["artifacts", "sign", image, "--key", key.to_str().unwrap()]);
    let (algorithm, key_id) = printed.trim().split_once(':').unwrap();
    assert_eq!(algorithm, "ECDSA_P256_SHA256");
    key_id.to_owned()
}

/// The sorted key ids of a token's `image_signatures`.
fn key_ids(claims: &Value) -> Vec<String> {
    let mut ids: Vec<String> = claims["submods"]["container"]["image_signatures"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| s["key_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

struct DeleteOnDrop<'a>(&'a Secundus, &'a str);

impl Drop for DeleteOnDrop<'_> {
    fn drop(&mut self) {
        let out = self.0.w.cli.run(&[
            "--profile",
            "alice",
            "compute",
            "instances",
            "delete",
            self.1,
            "--project",
            "secundus-bank",
            "--zone",
            "us-west1-b",
        ]);
        if !out.status.success() && !std::thread::panicking() {
            panic!(
                "deleting {}: {}",
                self.1,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
