//! One replica versus two: STS exchanges per second and object read MB/s, each on PostgreSQL
//! (metadata) and Garage (S3 blobs), real servers on loopback; the embedded default (SQLite,
//! files) as the reference. The load generator sends each request to the next replica in
//! turn, as a round-robin load balancer would.
//!
//! `cargo bench -p cloister-services --bench replicas` (optional env: BENCH_SECONDS,
//! BENCH_CONCURRENCY, BENCH_OBJECT_MIB). Everything shares this machine's cores: the replicas,
//! PostgreSQL, Garage and the load generator.

#[path = "../../cloister-store/tests/support/garage.rs"]
mod garage;
#[path = "../../cloister-store/tests/support/postgres.rs"]
mod postgres;

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::codelab::{exchange, primus};
use common::{BenchServer, cpu_seconds, drain, env_or};
use serde_json::json;

#[derive(Clone, Copy)]
enum Deployment {
    Embedded,
    Replicas(usize),
}

impl Deployment {
    fn label(self) -> String {
        match self {
            Deployment::Embedded => "embedded (SQLite + files), 1 server".into(),
            Deployment::Replicas(n) => format!("PostgreSQL + Garage, {n} replica(s)"),
        }
    }
}

struct Measured {
    exchanges: Rate,
    reads: Rate,
}

/// Operations (or bytes) per second, and the CPU each part spent per operation.
#[derive(Clone, Copy)]
struct Rate {
    per_sec: f64,
    cpu: Cpu,
}

/// CPU seconds of the replicas (this process's server threads), PostgreSQL and Garage.
#[derive(Clone, Copy, Default)]
struct Cpu {
    replicas: f64,
    postgres: f64,
    garage: f64,
}

impl Cpu {
    fn now() -> Cpu {
        Cpu {
            // The audit writer and PostgreSQL's connections are tasks on the server's threads;
            // SQLite's connections (the embedded reference) have threads of their own.
            replicas: cpu_seconds(&["server", "sqlx-sqlite"]),
            postgres: processes_cpu_seconds("postgres"),
            garage: processes_cpu_seconds("garage"),
        }
    }

    fn since(self, before: Cpu) -> Cpu {
        Cpu {
            replicas: self.replicas - before.replicas,
            postgres: self.postgres - before.postgres,
            garage: self.garage - before.garage,
        }
    }
}

/// CPU seconds used so far by the processes named `name` (PostgreSQL runs a process per
/// connection), from /proc; clock ticks of 10 ms.
fn processes_cpu_seconds(name: &str) -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map(|(_, a)| a).unwrap_or_default();
        let fields: Vec<&str> = after.split_whitespace().collect();
        for i in [11, 12] {
            ticks += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
}

fn main() {
    let seconds = env_or("BENCH_SECONDS", 8);
    let concurrency = env_or("BENCH_CONCURRENCY", 32) as usize;
    let object_mib = env_or("BENCH_OBJECT_MIB", 64) as usize;
    let garage = garage::Garage::start();
    let client = tokio::runtime::Builder::new_multi_thread()
        .thread_name("client")
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = Vec::new();
    for deployment in [
        Deployment::Embedded,
        Deployment::Replicas(1),
        Deployment::Replicas(2),
    ] {
        // Each replica runs on its own runtime, as its own process would.
        let runtimes: Vec<tokio::runtime::Runtime> = (0..match deployment {
            Deployment::Embedded => 1,
            Deployment::Replicas(n) => n,
        })
            .map(|_| {
                tokio::runtime::Builder::new_multi_thread()
                    .thread_name("server")
                    .enable_all()
                    .build()
                    .expect("runtime")
            })
            .collect();
        let m = client.block_on(measure(
            deployment,
            &runtimes,
            &garage,
            seconds,
            concurrency,
            object_mib,
        ));
        let per = |r: Rate, unit: f64| {
            let n = r.per_sec * unit;
            format!(
                "replicas {:.3}, PostgreSQL {:.3}, Garage {:.3}",
                r.cpu.replicas * 1e3 / n,
                r.cpu.postgres * 1e3 / n,
                r.cpu.garage * 1e3 / n
            )
        };
        println!(
            "{}: {:.0} STS exchanges/s (CPU ms per exchange: {}); {:.0} MB/s object reads (CPU ms per MB: {})",
            deployment.label(),
            m.exchanges.per_sec,
            per(m.exchanges, seconds as f64),
            m.reads.per_sec / 1e6,
            per(m.reads, seconds as f64 / 1e6),
        );
        results.push((deployment, m));
        drop(runtimes);
    }
    let one = &results[1].1;
    let two = &results[2].1;
    println!(
        "measured here (everything on these cores): two replicas / one: STS {:.2}x, reads {:.2}x; one replica on PostgreSQL + Garage / embedded: STS {:.2}x, reads {:.2}x",
        two.exchanges.per_sec / one.exchanges.per_sec,
        two.reads.per_sec / one.reads.per_sec,
        one.exchanges.per_sec / results[0].1.exchanges.per_sec,
        one.reads.per_sec / results[0].1.reads.per_sec,
    );
    // What the CPU costs imply when each replica has 2 cores of its own and PostgreSQL too.
    let ops = two.exchanges.per_sec * seconds as f64;
    let (replica, database) = (
        two.exchanges.cpu.replicas / ops,
        two.exchanges.cpu.postgres / ops,
    );
    for n in [1.0, 2.0] {
        println!(
            "  STS capacity with {n} replica(s) on 2 dedicated cores each and PostgreSQL on 2: {:.0}/s (replicas' bound {:.0}/s, PostgreSQL's {:.0}/s)",
            (n * 2.0 / replica).min(2.0 / database),
            n * 2.0 / replica,
            2.0 / database
        );
    }
}

async fn measure(
    deployment: Deployment,
    runtimes: &[tokio::runtime::Runtime],
    garage: &garage::Garage,
    seconds: u64,
    concurrency: usize,
    object_mib: usize,
) -> Measured {
    let mut replicas = Vec::new();
    let shared = match deployment {
        Deployment::Embedded => None,
        Deployment::Replicas(_) => Some((
            postgres::Postgres::database(),
            format!("s3://{}/bench-{}", garage.bucket, rand::random::<u32>()),
            garage.options(),
            rand::random::<[u8; 32]>().to_vec(),
        )),
    };
    for runtime in runtimes {
        let shared = shared.clone();
        let admin = replicas.first().map(|r: &BenchServer| r.admin.clone());
        replicas.push(
            BenchServer::start_with(
                runtime.handle(),
                move |c| {
                    if let Some((database, blobs, options, kek)) = shared {
                        // Replicas sit behind one address: it issues and accepts the tokens.
                        c.public_url = "http://cloister.bench".into();
                        c.database_url = Some(database);
                        c.blob_url = Some(blobs);
                        c.blob_options = options;
                        c.kek = Some(kek);
                    }
                },
                admin,
            )
            .await,
        );
    }
    let replicas = Arc::new(replicas);
    let first = &replicas[0];
    let (audience, subject) = primus(first).await;
    let alice = first.user("bob@example.com").await;
    // Alice's project and bucket hold the object every reader downloads.
    first
        .post("/v1/projects", &alice, json!({"projectId": "bench-reads"}))
        .await;
    first
        .post(
            "/storage/v1/b?project=bench-reads",
            &alice,
            json!({"name": "bench-reads"}),
        )
        .await;
    let object: Vec<u8> = (0..object_mib << 20).map(|i| (i % 251) as u8).collect();
    let resp = first
        .http
        .post(format!(
            "{}/upload/storage/v1/b/bench-reads/o?uploadType=media&name=model",
            first.base
        ))
        .bearer_auth(&alice)
        .body(object)
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success(), "upload: {}", resp.status());

    let exchanges = run(&replicas, seconds, concurrency, {
        let (audience, subject) = (Arc::new(audience), Arc::new(subject));
        move |replicas: Arc<Vec<BenchServer>>, i: usize| {
            let (audience, subject) = (Arc::clone(&audience), Arc::clone(&subject));
            async move {
                let token = exchange(&replicas[i], &audience, &subject).await;
                assert!(!token.is_empty());
                1
            }
        }
    })
    .await;
    // Four readers: the read path is bandwidth, not request rate.
    let bytes = run(&replicas, seconds, 4, {
        let alice = Arc::new(alice);
        move |replicas: Arc<Vec<BenchServer>>, i: usize| {
            let alice = Arc::clone(&alice);
            async move {
                let srv = &replicas[i];
                let resp = srv
                    .http
                    .get(format!(
                        "{}/download/storage/v1/b/bench-reads/o/model?alt=media",
                        srv.base
                    ))
                    .bearer_auth(alice.as_str())
                    .send()
                    .await
                    .expect("download");
                assert!(resp.status().is_success(), "download: {}", resp.status());
                drain(resp).await as u64
            }
        }
    })
    .await;
    Measured {
        exchanges,
        reads: bytes,
    }
}

/// Runs `op` from `concurrency` workers for `seconds`, each request on the next replica in
/// turn; returns the sum of what `op` counted, per second, and the CPU spent meanwhile.
async fn run<F, Fut>(
    replicas: &Arc<Vec<BenchServer>>,
    seconds: u64,
    concurrency: usize,
    op: F,
) -> Rate
where
    F: Fn(Arc<Vec<BenchServer>>, usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let op = Arc::new(op);
    // Warm up every replica (connections, caches).
    for i in 0..replicas.len() {
        for _ in 0..5 {
            op(Arc::clone(replicas), i).await;
        }
    }
    let cpu = Cpu::now();
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let (op, replicas) = (Arc::clone(&op), Arc::clone(replicas));
            tokio::spawn(async move {
                let mut counted = 0;
                let mut next = w;
                while Instant::now() < deadline {
                    counted += op(Arc::clone(&replicas), next % replicas.len()).await;
                    next += 1;
                }
                counted
            })
        })
        .collect();
    let mut total = 0;
    for w in workers {
        total += w.await.expect("worker");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = Cpu::now().since(cpu);
    // Per second of the run, so a rate times the run's length gives the operations.
    let per_sec = total as f64 / elapsed;
    Rate {
        per_sec,
        cpu: Cpu {
            replicas: cpu.replicas / elapsed * seconds as f64,
            postgres: cpu.postgres / elapsed * seconds as f64,
            garage: cpu.garage / elapsed * seconds as f64,
        },
    }
}
