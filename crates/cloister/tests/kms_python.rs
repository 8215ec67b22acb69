//! Google's Cloud KMS client library (Python google-cloud-kms) with its default transport,
//! gRPC, against the real server: Google's gRPC channels are always TLS, so the server runs
//! with a certificate (--tls-cert-file, --tls-key-file) from a CA the client is told to trust
//! by GRPC_DEFAULT_SSL_ROOTS_FILE_PATH. Nothing in the client's code changes but its endpoint
//! and credentials.

mod support;

use std::path::Path;

use serde_json::{Value, json};
use support::Server;

/// A CA, and a certificate it signed for 127.0.0.1 and localhost: `(ca.pem, cert.pem, key.pem)`.
fn certificates(dir: &Path) -> [std::path::PathBuf; 3] {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    // Names of their own: with rcgen's one default name, the leaf would look self-signed.
    ca.distinguished_name = rcgen::DistinguishedName::new();
    ca.distinguished_name
        .push(rcgen::DnType::CommonName, "Cloister test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::from_params(&ca, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut leaf =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap();
    leaf.distinguished_name = rcgen::DistinguishedName::new();
    leaf.distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).unwrap();
    let paths = ["ca.pem", "cert.pem", "key.pem"].map(|f| dir.join(f));
    for (path, pem) in paths
        .iter()
        .zip([ca_cert.pem(), cert.pem(), key.serialize_pem()])
    {
        std::fs::write(path, pem).unwrap();
    }
    paths
}

/// Over https: the bootstrap admin's access token, and the project primus-bank it creates.
async fn admin_with_project(server: &Server, ca: &Path, data: &Path) -> String {
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap())
        .build()
        .unwrap();
    let base = format!("https://{}", server.address);
    let cred: Value = serde_json::from_slice(
        &std::fs::read(data.join("bootstrap-admin-credential.json")).unwrap(),
    )
    .unwrap();
    let token: Value = http
        .post(format!("{base}/oauth2/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cred["client_id"].as_str().unwrap()),
            ("client_secret", cred["client_secret"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let created = http
        .post(format!("{base}/v1/projects"))
        .bearer_auth(&token)
        .json(&json!({"projectId": "primus-bank"}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{:?}", created.text().await);
    token
}

#[test]
fn googles_kms_client_works_over_grpc_against_cloister() {
    let dir = tempfile::tempdir().unwrap();
    let [ca, cert, key] = certificates(dir.path());
    let data = dir.path().join("data");
    let server = Server::try_start(
        &data,
        &[
            "--tls-cert-file",
            cert.to_str().unwrap(),
            "--tls-key-file",
            key.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|log| panic!("server did not start:\n{log}"));
    let token = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(admin_with_project(&server, &ca, &data));

    let script = format!(
        "{}/tests/python/kms_client.py",
        support::crate_dir().display()
    );
    let out = std::process::Command::new("python3")
        .args([
            &script,
            &server.address,
            &token,
            "projects/primus-bank/locations/global",
        ])
        .env("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", &ca)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "google-cloud-kms failed (scripts/install-deps.sh installs it with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let key = "projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys/model-key";
    assert_eq!(
        r["transport"], "KeyManagementServiceGrpcTransport",
        "the default transport"
    );
    assert_eq!(r["encrypted_with"], format!("{key}/cryptoKeyVersions/1"));
    for check in [
        "verified_plaintext_crc32c",
        "verified_aad_crc32c",
        "ciphertext_crc32c_ok",
        "round_trip",
        "plaintext_crc32c_ok",
    ] {
        assert_eq!(r[check], true, "{check}: {r}");
    }
    assert_eq!(r["keys"], json!([key]));
    assert_eq!(r["versions"], json!([format!("{key}/cryptoKeyVersions/1")]));
    assert_eq!(r["destroyed_state"], "DESTROYED");
    let refusals = &r["refusals"];
    assert_eq!(
        refusals["missing_key"],
        format!("CryptoKey {key}-missing not found.")
    );
    assert_eq!(
        refusals["crc32c_mismatch"],
        "The checksum in field plaintext_crc32c did not match the data in field plaintext."
    );
    assert_eq!(
        refusals["destroyed"],
        format!("{key}/cryptoKeyVersions/1 is not enabled, current state is: DESTROYED.")
    );
    server.stop();
}
