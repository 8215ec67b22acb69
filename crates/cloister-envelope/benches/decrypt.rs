//! decrypt-file speed: a 1 GiB envelope-encrypted file from disk to nowhere, beside memcpy
//! and a plain read of the same file, with peak memory.
//!
//! `cargo bench -p cloister-envelope --bench decrypt` (optional env: BENCH_MIB, default 1024).

use std::io::{BufReader, BufWriter, Read};
use std::time::Instant;

use cloister_envelope::{data_key, decrypt, encrypt, read_header};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// An endless pattern, so the plaintext never sits in memory whole.
struct Pattern(u64);
impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0 as usize);
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        self.0 -= n as u64;
        Ok(n)
    }
}

fn main() {
    let mib: u64 = std::env::var("BENCH_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024);
    let bytes = (mib << 20) as f64;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("model.enc");
    let key = data_key();
    {
        let out = BufWriter::new(std::fs::File::create(&path).expect("create"));
        encrypt(
            &key,
            "projects/p/locations/global/keyRings/r/cryptoKeys/k",
            b"wrapped",
            Pattern(mib << 20),
            out,
        )
        .expect("encrypt");
    }
    let chunk = vec![7u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let start = Instant::now();
    for i in 0..mib {
        dst.copy_from_slice(std::hint::black_box(&chunk));
        std::hint::black_box(&mut dst)[0] = i as u8;
    }
    let memcpy = bytes / start.elapsed().as_secs_f64();
    let start = Instant::now();
    std::io::copy(
        &mut BufReader::new(std::fs::File::open(&path).expect("open")),
        &mut std::io::sink(),
    )
    .expect("read");
    let read = bytes / start.elapsed().as_secs_f64();
    let before = peak_rss_mib();
    let start = Instant::now();
    let mut input = BufReader::with_capacity(1 << 20, std::fs::File::open(&path).expect("open"));
    let (header, header_bytes) = read_header(&mut input).expect("header");
    let n = decrypt(&key, &header, &header_bytes, input, std::io::sink()).expect("decrypt");
    assert_eq!(n, mib << 20);
    let speed = bytes / start.elapsed().as_secs_f64();
    println!(
        "decrypt-file {mib} MiB: {:.0} MB/s ({:.2}× a plain read of the file at {:.0} MB/s, {:.2}× memcpy at {:.0} MB/s); peak memory {before:.0} → {:.0} MiB",
        speed / 1e6,
        speed / read,
        read / 1e6,
        speed / memcpy,
        memcpy / 1e6,
        peak_rss_mib()
    );
}
