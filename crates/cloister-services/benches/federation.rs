//! Federation throughput on loopback: STS exchange + generateAccessToken pairs per second
//! with concurrent clients against a real server (SQLite, audit log on), attribute condition
//! evaluations per second, and a token's whole judgement in process beside the same through
//! the judge's worker process (what an exchange pays for the worker's limits), as a ratio.
//!
//! `cargo bench -p cloister-services --bench federation` (optional env: BENCH_SECONDS,
//! BENCH_CONCURRENCY). Client and server share the machine, as they would on one host.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::codelab::{PRIMUS_SA, claims, condition, exchange, primus};
use common::{BenchServer, SERVER_THREADS, cpu_seconds, env_or, report, runtimes};

use cloister_condition::{AttributeMapping, Condition, Input, Judgement, Question};
use cloister_services::federation::judge::{Judge, WorkerCommand};
use serde_json::json;

fn main() {
    let seconds = env_or("BENCH_SECONDS", 10);
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    cel_evaluations();
    let (server, client) = runtimes();
    client.block_on(judgements());
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

/// The codelab provider's judgement of its token in this thread, beside the same question
/// asked of a worker process (pipes, JSON both ways; it compiles a provider's expressions
/// once, as the server did).
async fn judgements() {
    let question = Question {
        mapping: [("google.subject".to_owned(), "assertion.sub".to_owned())].into(),
        condition: Some(condition()),
        claims: claims(),
    };
    let judge = Judge::new(WorkerCommand {
        program: env!("CARGO_BIN_EXE_cloister-condition-worker").into(),
        args: Vec::new(),
    });
    // The reference is what an exchange did before the worker: expressions compiled once
    // (a provider's are cached), then mapped and judged on the server's thread.
    let mapping = AttributeMapping::compile(&question.mapping).expect("mapping");
    let compiled = Condition::compile(&condition()).expect("condition");
    let in_process = rate(|| async {
        cloister_condition::judgement::judge(&mapping, Some(&compiled), &question.claims)
    })
    .await;
    let worker = rate(|| async { judge.judge(&question).await.expect("judged") }).await;
    println!(
        "judgement of the codelab token: in process {in_process:.0}/s ({:.1} µs each), \
         through the worker {worker:.0}/s ({:.1} µs each): the worker costs {:.2}× in process",
        1e6 / in_process,
        1e6 / worker,
        in_process / worker
    );
}

/// Sequential calls of `f` per second, over 2 s after 20 to warm up.
async fn rate<F, Fut>(f: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Judgement>,
{
    for _ in 0..20 {
        assert!(matches!(
            f().await,
            Judgement::Mapped {
                verdict: Ok(true),
                ..
            }
        ));
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < Duration::from_secs(2) {
        std::hint::black_box(f().await);
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

async fn exchanges(server: tokio::runtime::Handle, seconds: u64, concurrency: usize) {
    let srv = BenchServer::start(&server).await;
    let (audience, subject) = primus(&srv).await;
    let srv = Arc::new(srv);
    let pair = {
        let srv = Arc::clone(&srv);
        Arc::new(move || {
            let (srv, audience, subject) = (Arc::clone(&srv), audience.clone(), subject.clone());
            async move {
                let federated = exchange(&srv, &audience, &subject).await;
                let scope = json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]});
                let sa = srv
                    .post(
                        &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"),
                        &federated,
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
