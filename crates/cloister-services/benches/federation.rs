//! Federation throughput on loopback: STS exchange + generateAccessToken pairs per second
//! with concurrent clients against a real server (SQLite, audit log on), and attribute
//! condition evaluations per second.
//!
//! `cargo bench -p cloister-services --bench federation` (optional env: BENCH_SECONDS,
//! BENCH_CONCURRENCY). Client and server share the machine, as they would on one host.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{BenchServer, SERVER_THREADS, cpu_seconds, env_or, report, runtimes};

use cloister_condition::{Condition, Input};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn condition() -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes && \
         assertion.submods.container.image_digest == '{DIGEST}' && \
         assertion.submods.container.image_reference == 'cloister.test/primus-bank/repo/workload:latest' && \
         'workload-sa@secundus-bank.iam.gserviceaccount.com' in assertion.google_service_accounts"
    )
}

fn claims() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": "https://issuer.test", "aud": "https://sts.googleapis.com", "sub": "instance-1",
        "iat": now, "exp": now + 3600, "swname": "CONFIDENTIAL_SPACE",
        "google_service_accounts": ["workload-sa@secundus-bank.iam.gserviceaccount.com"],
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
            "container": {"image_digest": DIGEST, "image_reference": "cloister.test/primus-bank/repo/workload:latest"}
        }
    })
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    cel_evaluations();
    let (server, client) = runtimes();
    client.block_on(exchanges(server.handle().clone(), seconds, concurrency));
}

fn cel_evaluations() {
    let c = Condition::compile(&condition()).expect("condition");
    let input = Input {
        assertion: claims(),
        ..Default::default()
    };
    assert_eq!(c.evaluate(&input), Ok(true));
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        for _ in 0..100 {
            std::hint::black_box(c.evaluate(&input)).ok();
        }
        n += 100;
    }
    let per_sec = n as f64 / start.elapsed().as_secs_f64();
    println!(
        "cel: codelab condition, 1 thread: {per_sec:.0} evaluations/s ({:.1} µs each)",
        1e6 / per_sec
    );
}

async fn exchanges(server: tokio::runtime::Handle, seconds: u64, concurrency: usize) {
    let srv = BenchServer::start(&server).await;
    // Setup: a user creates a project, Primus's SA, pool, provider and binding.
    let alice = srv.user("alice@example.com").await;
    let op = srv
        .post("/v1/projects", &alice, json!({"projectId": "primus-bank"}))
        .await;
    let number = op["response"]["projectNumber"]
        .as_str()
        .expect("number")
        .to_owned();
    srv.post(
        "/v1/projects/primus-bank/serviceAccounts",
        &alice,
        json!({"accountId": "primus-sa"}),
    )
    .await;
    let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
    srv.post(
        &format!("{pools}?workloadIdentityPoolId=primus-pool"),
        &alice,
        json!({}),
    )
    .await;
    let jwks = String::from_utf8(fixture("issuer-jwks.json")).expect("utf8");
    srv.post(
        &format!("{pools}/primus-pool/providers?workloadIdentityPoolProviderId=verifier"),
        &alice,
        json!({
            "attributeMapping": {"google.subject": "assertion.sub"},
            "attributeCondition": condition(),
            "oidc": {"issuerUri": "https://issuer.test", "allowedAudiences": ["https://sts.googleapis.com"], "jwksJson": jwks}
        }),
    )
    .await;
    let member = format!(
        "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*"
    );
    let binding = json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}});
    srv.post(
        &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:setIamPolicy"),
        &alice,
        binding,
    )
    .await;
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/verifier"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_pem(&fixture("issuer-rsa.pem")).expect("key");
    let subject = jsonwebtoken::encode(&header, &claims(), &key).expect("sign");

    let srv = Arc::new(srv);
    let pair = {
        let srv = Arc::clone(&srv);
        Arc::new(move || {
            let (srv, audience, subject) = (Arc::clone(&srv), audience.clone(), subject.clone());
            async move {
                let sts: Value = srv
                    .http
                    .post(format!("{}/v1/token", srv.base))
                    .form(&[
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
                        ("subject_token", subject.as_str()),
                        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                    ])
                    .send()
                    .await
                    .expect("sts")
                    .json()
                    .await
                    .expect("sts json");
                let federated = sts["access_token"].as_str().expect("federated token");
                let scope = json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]});
                let sa = srv
                    .post(
                        &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"),
                        federated,
                        scope,
                    )
                    .await;
                assert!(sa["accessToken"].is_string());
            }
        })
    };
    // Warm up, then measure.
    for _ in 0..50 {
        pair().await;
    }
    let server_cpu_before = cpu_seconds(SERVER_THREADS);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let pair = Arc::clone(&pair);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    pair().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let server_cpu = cpu_seconds(SERVER_THREADS) - server_cpu_before;
    report(
        &format!("sts+generateAccessToken pairs, {concurrency} clients, {seconds}s"),
        all,
        elapsed,
        server_cpu,
    );
}
