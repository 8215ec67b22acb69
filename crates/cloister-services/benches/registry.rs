//! Registry push and pull of one large layer on loopback, as skopeo and podman do it (a
//! session, one streaming PATCH, the PUT with the digest; a plain GET to pull), beside the
//! disk and memory speeds measured in the same run, with the process's peak memory.
//!
//! `cargo bench -p cloister-services --bench registry` (optional env: BENCH_MIB, default 1024).

mod common;

use std::time::Instant;

use common::{BenchServer, CHUNK, env_or, peak_rss_mib, references, runtimes};
use serde_json::json;
use sha2::{Digest, Sha256};

fn main() {
    let mib = env_or("BENCH_MIB", 1024) as usize;
    let (server, client) = runtimes();
    client.block_on(run(server.handle().clone(), mib));
}

async fn run(server: tokio::runtime::Handle, mib: usize) {
    let bytes = (mib * CHUNK) as f64;
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let (memcpy, disk) = references(mib, &chunk);
    let mut hash = Sha256::new();
    for _ in 0..mib {
        hash.update(&chunk);
    }
    let digest = format!("sha256:{}", hex::encode(hash.finalize()));

    let srv = BenchServer::start(&server).await;
    let owner = srv.user("primus@example.com").await;
    srv.post("/v1/projects", &owner, json!({"projectId": "primus-bank"}))
        .await;
    srv.post(
        "/v1/projects/primus-bank/locations/us/repositories?repositoryId=models",
        &owner,
        json!({"format": "DOCKER"}),
    )
    .await;
    let rss_before = peak_rss_mib();
    let name = "primus-bank/models/big";

    let start = Instant::now();
    let session = srv
        .http
        .post(format!("{}/v2/{name}/blobs/uploads/", srv.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("start");
    let location = session.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let body = futures::stream::iter(
        (0..mib).map(move |_| Ok::<_, std::io::Error>(bytes::Bytes::from(chunk.clone()))),
    );
    let patch = srv
        .http
        .patch(format!("{}{location}", srv.base))
        .bearer_auth(&owner)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .expect("patch");
    assert_eq!(patch.status(), 202);
    let put = srv
        .http
        .put(format!("{}{location}?digest={digest}", srv.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
    let push = bytes / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let resp = srv
        .http
        .get(format!("{}/v2/{name}/blobs/{digest}", srv.base))
        .bearer_auth(&owner)
        .send()
        .await
        .expect("pull");
    let received = common::drain(resp).await;
    assert_eq!(received, mib * CHUNK);
    let pull = bytes / start.elapsed().as_secs_f64();
    println!(
        "push {mib} MiB layer: {:.0} MB/s ({:.2}× disk write+fsync); pull: {:.0} MB/s ({:.2}× memcpy)",
        push / 1e6,
        push / disk,
        pull / 1e6,
        pull / memcpy
    );
    println!(
        "peak memory: {rss_before:.0} MiB before the transfers, {:.0} MiB after (layer {mib} MiB)",
        peak_rss_mib()
    );
}
