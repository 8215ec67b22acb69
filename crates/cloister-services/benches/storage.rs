//! Object upload and download throughput on loopback for one large object, beside the disk
//! and memory speeds measured in the same run, with the process's peak memory.
//!
//! `cargo bench -p cloister-services --bench storage` (optional env: BENCH_MIB, default 1024).

mod common;

use std::io::Write;
use std::time::Instant;

use common::{BenchServer, env_or, runtimes};
use futures::StreamExt;
use serde_json::json;

const CHUNK: usize = 1 << 20;

/// Peak resident memory of this process so far (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() {
    let mib = env_or("BENCH_MIB", 1024) as usize;
    let (server, client) = runtimes();
    client.block_on(run(server.handle().clone(), mib));
}

async fn run(server: tokio::runtime::Handle, mib: usize) {
    let bytes = (mib * CHUNK) as f64;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();

    // References: memcpy, and writing + fsyncing a file of the same size on the same disk.
    let start = Instant::now();
    let mut dst = vec![0u8; CHUNK];
    for _ in 0..mib {
        dst.copy_from_slice(std::hint::black_box(&chunk));
    }
    let memcpy = bytes / start.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("disk-reference");
    let start = Instant::now();
    {
        let mut f = std::fs::File::create(&path).expect("create");
        for _ in 0..mib {
            f.write_all(&chunk).expect("write");
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

    let srv = BenchServer::start(&server).await;
    let owner = srv.user("primus@example.com").await;
    srv.post("/v1/projects", &owner, json!({"projectId": "primus-bank"}))
        .await;
    srv.post(
        "/storage/v1/b?project=primus-bank",
        &owner,
        json!({"name": "models"}),
    )
    .await;
    let rss_before = peak_rss_mib();

    let body = futures::stream::iter(
        (0..mib).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone()))),
    );
    let start = Instant::now();
    let resp = srv
        .http
        .post(format!(
            "{}/upload/storage/v1/b/models/o?uploadType=media&name=big",
            srv.base
        ))
        .bearer_auth(&owner)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("upload");
    assert!(resp.status().is_success(), "{}", resp.status());
    let up = bytes / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let resp = srv
        .http
        .get(format!(
            "{}/download/storage/v1/b/models/o/big?alt=media",
            srv.base
        ))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("download");
    let mut stream = resp.bytes_stream();
    let mut received = 0usize;
    while let Some(c) = stream.next().await {
        received += c.expect("chunk").len();
    }
    assert_eq!(received, mib * CHUNK);
    let down = bytes / start.elapsed().as_secs_f64();
    println!(
        "upload {mib} MiB: {:.0} MB/s ({:.2}× disk write+fsync); download: {:.0} MB/s ({:.2}× memcpy)",
        up / 1e6,
        up / disk,
        down / 1e6,
        down / memcpy
    );
    println!(
        "peak memory: {rss_before:.0} MiB before the transfers, {:.0} MiB after (object {mib} MiB)",
        peak_rss_mib()
    );
}
