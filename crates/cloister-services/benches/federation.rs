//! Federation throughput on loopback: STS exchange + generateAccessToken pairs per second
//! with concurrent clients against a real server (SQLite, audit log on), and attribute
//! condition evaluations per second.
//!
//! `cargo bench -p cloister-services --bench federation` (optional env: BENCH_SECONDS,
//! BENCH_CONCURRENCY). Client and server share the machine, as they would on one host.

use std::sync::Arc;
use std::time::{Duration, Instant};

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

async fn post(http: &reqwest::Client, url: &str, token: &str, body: Value) -> Value {
    let resp = http
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or_default();
    assert!(status.is_success(), "{url}: {status} {v}");
    v
}

/// CPU seconds used so far by this process's threads whose names start with one of `prefixes`
/// (from /proc; clock ticks of 10 ms).
fn cpu_seconds(prefixes: &[&str]) -> f64 {
    let mut ticks = 0u64;
    for task in std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
    {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !prefixes.iter().any(|p| comm.starts_with(p)) {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is 3rd, utime 14th, stime 15th.
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        ticks += fields
            .get(11)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
        ticks += fields
            .get(12)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0);
    }
    ticks as f64 / 100.0
}

const SERVER_THREADS: &[&str] = &["server", "audit-writer", "tokio-runtime-w"];

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    cel_evaluations();
    // The server and the load generator get their own runtimes (and thread names), so a
    // profile can tell their costs apart.
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    let (server, client) = (runtime("server"), runtime("client"));
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
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let (base, cred, _opened) = server
        .spawn(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let base = format!("http://{}", listener.local_addr().expect("addr"));
            let config = cloister_services::ServerConfig {
                data_dir,
                public_url: base.clone(),
                max_body_bytes: 1 << 20,
            };
            let opened = cloister_services::open(config).await.expect("open");
            let path = opened.bootstrap_credential.clone().expect("bootstrap");
            let cred: Value =
                serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
            tokio::spawn(axum::serve(listener, opened.router.clone()).into_future());
            (base, cred, opened)
        })
        .await
        .expect("server");
    let http = reqwest::Client::new();

    // Setup: the admin creates a project, Primus's SA, pool, provider and binding.
    let token = |c: Value| {
        let http = http.clone();
        let base = base.clone();
        async move {
            let resp: Value = http
                .post(format!("{base}/oauth2/token"))
                .form(&[
                    ("grant_type", "client_credentials"),
                    ("client_id", c["client_id"].as_str().unwrap()),
                    ("client_secret", c["client_secret"].as_str().unwrap()),
                ])
                .send()
                .await
                .expect("login")
                .json()
                .await
                .expect("json");
            resp["access_token"].as_str().expect("token").to_owned()
        }
    };
    let admin = token(cred).await;
    let alice_cred = {
        post(
            &http,
            &format!("{base}/cloister/v1/users"),
            &admin,
            json!({"email": "alice@example.com"}),
        )
        .await;
        post(
            &http,
            &format!("{base}/cloister/v1/users/alice@example.com/credentials"),
            &admin,
            json!({}),
        )
        .await
    };
    let alice = token(alice_cred).await;
    let op = post(
        &http,
        &format!("{base}/v1/projects"),
        &alice,
        json!({"projectId": "primus-bank"}),
    )
    .await;
    let number = op["response"]["projectNumber"]
        .as_str()
        .expect("number")
        .to_owned();
    post(
        &http,
        &format!("{base}/v1/projects/primus-bank/serviceAccounts"),
        &alice,
        json!({"accountId": "primus-sa"}),
    )
    .await;
    let pools = format!("{base}/v1/projects/primus-bank/locations/global/workloadIdentityPools");
    post(
        &http,
        &format!("{pools}?workloadIdentityPoolId=primus-pool"),
        &alice,
        json!({}),
    )
    .await;
    post(&http, &format!("{pools}/primus-pool/providers?workloadIdentityPoolProviderId=verifier"), &alice, json!({
        "attributeMapping": {"google.subject": "assertion.sub"},
        "attributeCondition": condition(),
        "oidc": {"issuerUri": "https://issuer.test", "allowedAudiences": ["https://sts.googleapis.com"], "jwksJson": String::from_utf8(fixture("issuer-jwks.json")).unwrap()}
    })).await;
    let member = format!(
        "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*"
    );
    post(&http, &format!("{base}/v1/projects/-/serviceAccounts/{PRIMUS_SA}:setIamPolicy"), &alice,
        json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}})).await;
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/verifier"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let subject = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_rsa_pem(&fixture("issuer-rsa.pem")).unwrap(),
    )
    .unwrap();

    let pair = {
        let (http, base) = (http.clone(), base.clone());
        Arc::new(move || {
            let (http, base, audience, subject) = (
                http.clone(),
                base.clone(),
                audience.clone(),
                subject.clone(),
            );
            async move {
                let sts: Value = http
                    .post(format!("{base}/v1/token"))
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
                let sa = post(
                    &http,
                    &format!(
                        "{base}/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"
                    ),
                    federated,
                    json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]}),
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
    all.sort();
    let pairs = all.len() as f64;
    println!(
        "sts+generateAccessToken: {concurrency} clients, {seconds}s: {:.0} pairs/s; pair latency p50 {:.2} ms, p99 {:.2} ms ({} pairs)",
        pairs / elapsed,
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.len()
    );
    println!(
        "server CPU: {:.2} ms per pair ({:.0}% of the 2 cores; the load generator used the rest) => server capacity on 2 dedicated cores ≈ {:.0} pairs/s",
        server_cpu * 1e3 / pairs,
        server_cpu / elapsed / 2.0 * 100.0,
        2.0 * pairs / server_cpu
    );
}
