//! verifyAttestation throughput on loopback: attestation tokens per second for vTPM evidence
//! (quotes made beforehand by a real swtpm, one per challenge) and for INSECURE evidence,
//! with concurrent clients against a real server.
//!
//! `cargo bench -p cloister-services --bench verifier` (optional env: BENCH_TOKENS,
//! BENCH_CONCURRENCY).

mod common;

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType, HashAlg};
use cloister_tpm::LAUNCHER_PCR;
use cloister_tpm::attester::VtpmAttester;
use cloister_tpm::swtpm::Swtpm;
use common::{BenchServer, SERVER_THREADS, cpu_seconds, env_or, report, runtimes};
use serde_json::{Value, json};

const SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";

fn main() {
    let tokens = env_or("BENCH_TOKENS", 400) as usize;
    let concurrency = env_or("BENCH_CONCURRENCY", 16) as usize;
    let (server, client) = runtimes();
    client.block_on(run(server.handle().clone(), tokens, concurrency));
}

async fn run(server: tokio::runtime::Handle, tokens: usize, concurrency: usize) {
    let srv = Arc::new(BenchServer::start(&server).await);
    let owner = srv.user("secundus@example.com").await;
    let op = srv
        .post(
            "/v1/projects",
            &owner,
            json!({"projectId": "secundus-bank"}),
        )
        .await;
    let number: u64 = op["response"]["projectNumber"]
        .as_str()
        .expect("number")
        .parse()
        .expect("number");
    srv.post(
        "/v1/projects/secundus-bank/serviceAccounts",
        &owner,
        json!({"accountId": "workload-sa"}),
    )
    .await;
    let mut policy = srv
        .post("/v1/projects/secundus-bank:getIamPolicy", &owner, json!({}))
        .await;
    policy["bindings"].as_array_mut().expect("bindings").push(json!({"role": "roles/confidentialcomputing.workloadUser", "members": [format!("serviceAccount:{SA}")]}));
    srv.post(
        "/v1/projects/secundus-bank:setIamPolicy",
        &owner,
        json!({"policy": policy}),
    )
    .await;
    let base = format!("/v1/projects/-/serviceAccounts/{SA}");
    let sa_token = srv
        .post(
            &format!("{base}:generateAccessToken"),
            &owner,
            json!({"scope": ["x"]}),
        )
        .await["accessToken"]
        .as_str()
        .expect("token")
        .to_owned();
    let id_token = srv
        .post(
            &format!("{base}:generateIdToken"),
            &owner,
            json!({"audience": srv.base, "includeEmail": true}),
        )
        .await["token"]
        .as_str()
        .expect("token")
        .to_owned();

    // One instance: swtpm, its certified AK, the launcher and a container measured.
    let dir = tempfile::tempdir().expect("tempdir");
    let tpm = Swtpm::start(dir.path()).expect("swtpm");
    let mut attester = VtpmAttester::open(&tpm.tcti()).expect("attester");
    let banks = attester.active_banks().expect("banks");
    let instance = json!({"zone": "local-a", "project_number": number, "project_id": "secundus-bank", "instance_id": 1, "instance_name": "vm-1"});
    let cert = srv
        .post("/cloister/v1/identityCa:certifyAttestationKey", &srv.admin, json!({"attestationKey": STANDARD.encode(attester.ak_public_key().expect("ak")), "instance": instance}))
        .await["certificate"]
        .clone();
    let launcher: BTreeMap<HashAlg, Vec<u8>> =
        banks.iter().map(|b| (*b, b.hash(&[b"launcher"]))).collect();
    attester.extend(LAUNCHER_PCR, &launcher).expect("extend");
    let mut log = EventLog::default();
    for e in [
        Event::new(EventType::ImageRef, "cloister.test/primus/workload:latest"),
        Event::new(EventType::ImageDigest, "sha256:abcd"),
        Event::new(EventType::Arg, "/workload"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        let d = log.append(COS_EVENT_PCR, &banks, &e);
        attester.extend(COS_EVENT_PCR, &d).expect("extend");
    }
    let log = STANDARD.encode(log.encode());

    // Challenges and evidence, made beforehand: the benchmark measures the verifier.
    let challenge_path = "/v1/projects/secundus-bank/locations/local/challenges";
    let mut vtpm = VecDeque::new();
    let quoting = Instant::now();
    for _ in 0..tokens {
        let c = srv.post(challenge_path, &sa_token, json!({})).await;
        let nonce = STANDARD
            .decode(c["tpmNonce"].as_str().expect("nonce"))
            .expect("b64");
        let q = attester
            .quote(&nonce, HashAlg::Sha256, &[LAUNCHER_PCR, COS_EVENT_PCR])
            .expect("quote");
        let pcrs: BTreeMap<String, String> = q
            .pcr_values
            .iter()
            .map(|(i, v)| (i.to_string(), STANDARD.encode(v)))
            .collect();
        let body = json!({
            "gcpCredentials": {"serviceAccountIdTokens": [id_token]},
            "tpmAttestation": {"quotes": [{"hashAlgo": 11, "pcrValues": pcrs, "rawQuote": STANDARD.encode(&q.attest), "rawSignature": STANDARD.encode(&q.signature)}],
                               "canonicalEventLog": log, "akCert": cert},
        });
        vtpm.push_back((c["name"].as_str().expect("name").to_owned(), body));
    }
    println!(
        "swtpm: {:.1} ms per quote (the attester's cost, not measured below)",
        quoting.elapsed().as_secs_f64() * 1e3 / tokens as f64
    );
    let mut insecure = VecDeque::new();
    for _ in 0..tokens {
        let c = srv.post(challenge_path, &sa_token, json!({})).await;
        let body = json!({"gcpCredentials": {"serviceAccountIdTokens": [id_token]}, "insecureAttestation": {"canonicalEventLog": log}});
        insecure.push_back((c["name"].as_str().expect("name").to_owned(), body));
    }

    for (kind, work) in [
        ("verifyAttestation (VTPM evidence)", vtpm),
        ("verifyAttestation (INSECURE evidence)", insecure),
    ] {
        let queue = Arc::new(Mutex::new(work));
        let before = cpu_seconds(SERVER_THREADS);
        let start = Instant::now();
        let workers: Vec<_> = (0..concurrency)
            .map(|_| {
                let (srv, queue, sa_token) =
                    (Arc::clone(&srv), Arc::clone(&queue), sa_token.clone());
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    loop {
                        let Some((name, body)) = queue.lock().expect("queue").pop_front() else {
                            break;
                        };
                        let t = Instant::now();
                        let v: Value = srv
                            .post(&format!("/v1/{name}:verifyAttestation"), &sa_token, body)
                            .await;
                        assert!(v["oidcClaimsToken"].is_string());
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
        report(
            &format!("{kind}, {concurrency} clients"),
            all,
            elapsed,
            cpu_seconds(SERVER_THREADS) - before,
        );
    }
}
