//! Object upload and download throughput on loopback for one large object, beside the disk
//! and memory speeds measured in the same run, with the process's peak memory.
//!
//! `cargo bench -p cloister-services --bench storage` (optional env: BENCH_MIB, default 1024).

mod common;

use std::time::Instant;

use common::{BenchServer, CHUNK, env_or, peak_rss_mib, references, runtimes};
use serde_json::json;

fn main() {
    let mib = env_or("BENCH_MIB", 1024) as usize;
    let (server, client) = runtimes();
    client.block_on(run(server.handle().clone(), mib));
}

async fn run(server: tokio::runtime::Handle, mib: usize) {
    let bytes = (mib * CHUNK) as f64;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();

    let (memcpy, disk) = references(mib, &chunk);
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
    let received = common::drain(resp).await;
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
