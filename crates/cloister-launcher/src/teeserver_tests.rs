//! The teeserver over its real Unix socket: Google's request rules and refusals, `GET`
//! attesting afresh, and `/v1/evidence`. A launcher with INSECURE measurements whose metadata
//! server and verifier are unreachable: every refusal here happens before either is asked, and
//! a request that passes the checks shows it by reaching for them.

use std::path::Path;

use cloister_eventlog::{Event, EventType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::*;
use crate::attest::{Measurements, Tee, Verifier};
use crate::metadata::Metadata;

/// Nothing listens on the discard port: attesting fails at its first step.
const NOWHERE: &str = "127.0.0.1:9";

async fn launcher(dir: &Path) -> (std::path::PathBuf, tokio::task::JoinHandle<()>, String) {
    let mut measurements = Measurements::new(Tee::Insecure).unwrap();
    for e in [
        Event::new(EventType::ImageDigest, "sha256:abcd"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        measurements.measure(&e).unwrap();
    }
    let log = STANDARD.encode(measurements.log.encode());
    let attestation = Attestation {
        measurements,
        verifier: Verifier {
            endpoint: format!("http://{NOWHERE}"),
            project: "secundus-bank".into(),
            location: "us-west1".into(),
            http: reqwest::Client::new(),
            impersonate: vec![],
            signatures: crate::signatures::Discovery {
                repos: vec![],
                cloister_host: NOWHERE.into(),
                insecure_hosts: vec![],
            },
            image_digest: "sha256:abcd".into(),
        },
        metadata: Metadata::new(NOWHERE),
        launcher_dir: dir.to_path_buf(),
    };
    let socket = dir.join("teeserver.sock");
    let server = serve(&socket, Arc::new(Mutex::new(attestation)))
        .await
        .unwrap();
    (socket, server, log)
}

/// One HTTP/1.1 request over the socket, as curl --unix-socket sends it.
async fn call(socket: &Path, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = UnixStream::connect(socket).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text[9..12].parse().unwrap();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned());
    (status, body.unwrap_or_default())
}

#[tokio::test]
async fn token_requests_follow_googles_rules_and_refusals_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _server, _) = launcher(dir.path()).await;
    let seven = format!("[{}]", ["\"0123456789\""; 7].join(","));
    let long_audience = "a".repeat(513);
    let cases: Vec<(&str, String, &str)> = vec![
        ("POST", "{}".into(), "use GET request for the default identity token"),
        ("POST", r#"{"audience":"https://rp"}"#.into(), "token_type is a required parameter"),
        ("POST", r#"{"audience":"https://rp","token_type":"JWT"}"#.into(), "use OIDC, PKI or AWS_PRINCIPALTAGS"),
        ("POST", format!(r#"{{"audience":"https://rp","token_type":"OIDC","nonces":{seven}}}"#), "at most 6"),
        ("POST", r#"{"audience":"https://rp","token_type":"OIDC","nonces":["short"]}"#.into(), "8 to 88 bytes"),
        ("POST", format!(r#"{{"audience":"https://rp","token_type":"PKI","nonces":["{}"]}}"#, "n".repeat(89)), "8 to 88 bytes"),
        ("POST", format!(r#"{{"audience":"{long_audience}","token_type":"OIDC"}}"#), "at most 512"),
        ("POST", r#"{"audience":"https://rp","token_type":"OIDC","nonce":["0123456789"]}"#.into(), "failed to parse POST body as TokenOptions: unknown field `nonce`"),
        ("POST", r#"{"audience":"https://rp","token_type":"AWS_PRINCIPALTAGS","aws_principal_tag_options":{"allowed_principal_tags":{"image_digests":[]}}}"#.into(), "unknown field `image_digests`"),
        ("POST", "not json".into(), "failed to parse POST body"),
        ("PUT", "{}".into(), "TEE server received an invalid HTTP method: PUT"),
    ];
    for (method, body, why) in cases {
        let (status, text) = call(&socket, method, "/v1/token", &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.contains(why), "{body}: {text}");
    }
    // Requests that pass the checks go on to attest (here the metadata server is unreachable).
    for body in [
        r#"{"audience":"https://rp","token_type":"OIDC","nonces":["0123456789"]}"#,
        r#"{"audience":"https://rp","token_type":"PKI"}"#,
        r#"{"audience":"https://rp","token_type":"AWS_PRINCIPALTAGS","aws_principal_tag_options":{"allowed_principal_tags":{"container_image_signatures":{"key_ids":["k1"]}}}}"#,
    ] {
        let (status, text) = call(&socket, "POST", "/v1/token", body).await;
        assert_eq!(status, 500, "{body}: {text}");
        assert!(
            text.contains("failed to retrieve attestation service token: metadata server"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn get_attests_afresh_instead_of_returning_the_token_file() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _server, _) = launcher(dir.path()).await;
    std::fs::write(
        dir.path().join("attestation_verifier_claims_token"),
        "cached.token.file",
    )
    .unwrap();
    let (status, text) = call(&socket, "GET", "/v1/token", "").await;
    assert_eq!(status, 500, "{text}");
    assert!(!text.contains("cached.token.file"), "{text}");
    assert!(text.contains("metadata server"), "{text}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("attestation_verifier_claims_token")).unwrap(),
        "cached.token.file",
        "the launcher's token file is left as it is"
    );
}

#[tokio::test]
async fn evidence_echoes_the_challenge_with_the_quote_and_the_event_log() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, _server, log) = launcher(dir.path()).await;
    let challenge = STANDARD.encode(b"the workload's own verifier's challenge");
    let (status, text) = call(
        &socket,
        "POST",
        "/v1/evidence",
        &format!(r#"{{"challenge":"{challenge}"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["challenge"], challenge);
    assert_eq!(v["label"], STANDARD.encode(EVIDENCE_LABEL));
    assert_eq!(v["quote"]["insecureQuote"]["celLaunchEventLog"], log);

    let refusals = [
        ("GET", "", 405, "method not allowed"),
        ("POST", "{}", 400, "challenge is required"),
        ("POST", r#"{"challenge":"!!"}"#, 400, "not base64"),
        ("POST", "not json", 400, "failed to decode request"),
    ];
    for (method, body, code, why) in refusals {
        let (status, text) = call(&socket, method, "/v1/evidence", body).await;
        assert_eq!(status, code, "{method} {body}: {text}");
        assert!(text.contains(why), "{method} {body}: {text}");
    }
}

#[test]
fn the_evidence_nonce_separates_workload_evidence_from_the_launchers() {
    let challenge = b"challenge";
    let expected = Sha256::new()
        .chain_update(b"WORKLOAD_ATTESTATION")
        .chain_update(Sha256::digest(challenge))
        .finalize();
    assert_eq!(evidence_nonce(challenge), expected.to_vec());
    assert_ne!(evidence_nonce(challenge), challenge.as_slice());
    assert_eq!(
        evidence_nonce(&[0; 4096]).len(),
        32,
        "any challenge fits a TPM quote"
    );
}
