//! Blob write and read throughput: the filesystem store, and `ObjectBlobStore` on a real S3
//! server (Garage, on loopback), side by side with a plain file write+fsync and read of the
//! same bytes. `cargo bench -p cloister-store --bench blob_stores [MiB]` (default 256).

#[path = "../tests/support/garage.rs"]
mod garage;

use std::io::Write;
use std::time::Instant;

use bytes::Bytes;
use cloister_store::{BlobKey, BlobStore, ByteStream, FsBlobStore, ObjectBlobStore};
use futures::StreamExt;

const CHUNK: usize = 1024 * 1024;
const ROUNDS: usize = 3;

fn source(data: &Bytes) -> ByteStream {
    let chunks: Vec<std::io::Result<Bytes>> = (0..data.len())
        .step_by(CHUNK)
        .map(|at| Ok(data.slice(at..(at + CHUNK).min(data.len()))))
        .collect();
    Box::pin(futures::stream::iter(chunks))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// (write MB/s, read MB/s), medians of a few rounds.
async fn measure(store: &dyn BlobStore, data: &Bytes) -> (f64, f64) {
    let mb = data.len() as f64 / 1e6;
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let key = BlobKey::new(&format!("bench/blob-{round}")).expect("key");
        let t = Instant::now();
        let info = store.put(&key, source(data)).await.expect("put");
        writes.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(info.size, data.len() as u64);
        let t = Instant::now();
        let mut s = store.get(&key, None).await.expect("get");
        let mut n = 0;
        while let Some(c) = s.next().await {
            n += c.expect("read").len();
        }
        reads.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(n, data.len());
        store.delete(&key).await.expect("delete");
    }
    (median(writes), median(reads))
}

fn plain_file(dir: &std::path::Path, data: &Bytes) -> (f64, f64) {
    let mb = data.len() as f64 / 1e6;
    let (mut writes, mut reads) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let path = dir.join(format!("plain-{round}"));
        let t = Instant::now();
        let mut f = std::fs::File::create(&path).expect("create");
        for chunk in data.chunks(CHUNK) {
            f.write_all(chunk).expect("write");
        }
        f.sync_all().expect("fsync");
        writes.push(mb / t.elapsed().as_secs_f64());
        let t = Instant::now();
        let n = std::fs::read(&path).expect("read").len();
        reads.push(mb / t.elapsed().as_secs_f64());
        assert_eq!(n, data.len());
        std::fs::remove_file(&path).expect("remove");
    }
    (median(writes), median(reads))
}

#[tokio::main]
async fn main() {
    let mib: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(256);
    let data = Bytes::from(
        (0..mib * CHUNK)
            .map(|i| (i * 31 + i / 4099) as u8)
            .collect::<Vec<u8>>(),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let plain = plain_file(dir.path(), &data);
    let fs = FsBlobStore::open(&dir.path().join("fs"))
        .await
        .expect("fs store");
    let fs = measure(&fs, &data).await;
    let garage = garage::Garage::start();
    let s3 = ObjectBlobStore::open(&format!("s3://{}/bench", garage.bucket), garage.options())
        .expect("s3 store");
    let s3 = measure(&s3, &data).await;
    println!("{mib} MiB blobs, median of {ROUNDS} rounds (MB/s)");
    println!("{:<28} {:>10} {:>10}", "", "write", "read");
    for (name, (w, r)) in [
        ("plain file (write+fsync)", plain),
        ("FsBlobStore", fs),
        ("ObjectBlobStore on Garage", s3),
    ] {
        println!("{name:<28} {w:>10.0} {r:>10.0}");
    }
    println!(
        "S3/filesystem store: write {:.2}x, read {:.2}x",
        s3.0 / fs.0,
        s3.1 / fs.1
    );
}
