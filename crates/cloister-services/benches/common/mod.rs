//! Shared by the benchmarks: a real server on loopback in its own runtime (threads named
//! `server`, so a profile or /proc can tell its cost from the load generator's), logged-in
//! clients, and measurement helpers.

#![allow(dead_code)]

pub mod codelab;

use std::time::Duration;

use serde_json::{Value, json};

pub struct BenchServer {
    pub base: String,
    pub admin: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
    _opened: cloister_services::OpenedServer,
}

/// The server's and the load generator's runtimes.
pub fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
    let runtime = |name: &str| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name(name)
            .enable_all()
            .build()
            .expect("runtime")
    };
    (runtime("server"), runtime("client"))
}

impl BenchServer {
    /// The embedded default (SQLite, files) on a fresh data directory.
    pub async fn start(server: &tokio::runtime::Handle) -> BenchServer {
        Self::start_with(server, |_| {}, None).await
    }

    /// A server whose configuration `configure` adjusts. `admin`: a replica of a server
    /// already started, whose admin token it accepts (it finds the bootstrap admin made).
    pub async fn start_with(
        server: &tokio::runtime::Handle,
        configure: impl FnOnce(&mut cloister_services::ServerConfig) + Send + 'static,
        admin: Option<String>,
    ) -> BenchServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let (base, cred, opened) = server
            .spawn(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let base = format!("http://{}", listener.local_addr().expect("addr"));
                let mut config = cloister_services::ServerConfig {
                    data_dir,
                    public_url: base.clone(),
                    max_body_bytes: 1 << 20,
                    attestation_token_lifetime_secs: 3600,
                    launcher: None,
                    hardware_evidence_time: None,
                    database_url: None,
                    database_connections: cloister_services::DEFAULT_DATABASE_CONNECTIONS,
                    blob_url: None,
                    blob_options: Vec::new(),
                    kek: None,
                    replica_lease: cloister_services::DEFAULT_REPLICA_LEASE,
                    storage_limits: Default::default(),
                    oidc_fetch_allow: Vec::new(),
                    allow_insecure_evidence: true,
                    guest_image: None,
                    max_instances: None,
                    project_instance_quota: None,
                    user_project_quota: None,
                    condition_worker: cloister_services::federation::judge::WorkerCommand {
                        program: env!("CARGO_BIN_EXE_cloister-condition-worker").into(),
                        args: Vec::new(),
                    },
                    instance_disk_gb: None,
                };
                configure(&mut config);
                let opened = cloister_services::open(config).await.expect("open");
                let cred: Option<Value> = opened.bootstrap_credential.as_ref().map(|path| {
                    serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
                });
                tokio::spawn(axum::serve(listener, opened.router.clone()).into_future());
                (base, cred, opened)
            })
            .await
            .expect("server");
        let http = reqwest::Client::new();
        let mut s = BenchServer {
            base,
            admin: String::new(),
            http,
            _dir: dir,
            _opened: opened,
        };
        s.admin = match (admin, cred) {
            (Some(admin), _) => admin,
            (None, Some(cred)) => s.login(&cred).await,
            (None, None) => panic!("no bootstrap credential and no admin token"),
        };
        s
    }

    async fn login(&self, cred: &Value) -> String {
        let resp: Value = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", cred["client_id"].as_str().expect("id")),
                (
                    "client_secret",
                    cred["client_secret"].as_str().expect("secret"),
                ),
            ])
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        resp["access_token"].as_str().expect("token").to_owned()
    }

    /// Creates a user and returns its access token.
    pub async fn user(&self, email: &str) -> String {
        self.post("/cloister/v1/users", &self.admin, json!({"email": email}))
            .await;
        let cred = self
            .post(
                &format!("/cloister/v1/users/{email}/credentials"),
                &self.admin,
                json!({}),
            )
            .await;
        self.login(&cred).await
    }

    /// POSTs JSON with a bearer token; panics on failure (a benchmark's setup must work).
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = resp.status();
        let v: Value = resp.json().await.unwrap_or_default();
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }
}

/// CPU seconds used so far by this process's threads whose names start with one of
/// `prefixes` (from /proc; clock ticks of 10 ms).
pub fn cpu_seconds(prefixes: &[&str]) -> f64 {
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
        // Fields after the parenthesised name: utime is the 12th, stime the 13th.
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

/// Threads that do the server's work: the runtime's (the blocking pool threads are tokio's
/// default name; the audit writer is a task on them) and SQLite's connections' own.
pub const SERVER_THREADS: &[&str] = &["server", "tokio-runtime-w", "sqlx-sqlite"];

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Prints throughput, latency percentiles and the server's CPU per operation.
pub fn report(what: &str, mut latencies: Vec<Duration>, elapsed: f64, server_cpu: f64) {
    latencies.sort();
    let n = latencies.len() as f64;
    println!(
        "{what}: {:.0}/s; latency p50 {:.2} ms, p99 {:.2} ms ({} operations)",
        n / elapsed,
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.len()
    );
    println!(
        "  server CPU: {:.2} ms per operation ({:.0}% of the 2 cores; the load generator used the rest) => capacity on 2 dedicated cores ≈ {:.0}/s",
        server_cpu * 1e3 / n,
        server_cpu / elapsed / 2.0 * 100.0,
        2.0 * n / server_cpu
    );
}

pub const CHUNK: usize = 1 << 20;

/// Peak resident memory of this process so far (VmHWM), in MiB.
pub fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// References measured in the same run: memcpy, and writing + fsyncing a file of `mib` MiB on
/// the same disk. Returns bytes per second for each.
pub fn references(mib: usize, chunk: &[u8]) -> (f64, f64) {
    use std::io::Write;
    use std::time::Instant;
    let bytes = (mib * CHUNK) as f64;
    let start = Instant::now();
    let mut dst = vec![0u8; CHUNK];
    for _ in 0..mib {
        // Both sides opaque: otherwise the repeated copy is folded away.
        std::hint::black_box(&mut dst).copy_from_slice(std::hint::black_box(chunk));
    }
    let memcpy = bytes / start.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk-reference");
    let start = Instant::now();
    {
        let mut f = std::fs::File::create(&path).expect("create");
        for _ in 0..mib {
            f.write_all(chunk).expect("write");
        }
        f.sync_all().expect("sync");
    }
    let disk = bytes / start.elapsed().as_secs_f64();
    std::fs::remove_file(&path).expect("remove");
    println!(
        "reference: memcpy {:.0} MB/s; disk write+fsync {:.0} MB/s",
        memcpy / 1e6,
        disk / 1e6
    );

    (memcpy, disk)
}

/// Reads a streamed response body to its end; returns how many bytes came.
pub async fn drain(resp: reqwest::Response) -> usize {
    use futures::StreamExt;
    let mut stream = resp.bytes_stream();
    let mut received = 0usize;
    while let Some(c) = stream.next().await {
        received += c.expect("chunk").len();
    }
    received
}
