//! Instance create → container running with a valid token, on the local driver, for a small
//! image (a static probe), INSECURE and VTPM. The clock starts before `cloister compute
//! instances create` runs and stops when the serial console (read from disk) says the workload
//! started; the launcher's own phase report (metadata, pull, unpack, measure, attest, bundle)
//! is printed beside it.
//!
//! `cargo bench -p cloister --bench instance_start` (optional env: BENCH_RUNS, default 5).

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::instances::Secundus;

fn serial_files(instances: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(instances)
        .map(|d| {
            d.filter_map(|e| Some(e.ok()?.path().join("serial.log")))
                .collect()
        })
        .unwrap_or_default()
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let s = Secundus::setup();
    let instances = s.w.dir.path().join("data/instances");
    for kind in ["INSECURE", "VTPM"] {
        let mut totals = Vec::new();
        for i in 0..runs {
            let name = format!("bench-{}-{i}", kind.to_ascii_lowercase());
            let metadata = format!("tee-image-reference={}", s.image);
            let start = Instant::now();
            s.create(&name, kind, &metadata);
            let (elapsed, ready) = loop {
                let found = serial_files(&instances).into_iter().find_map(|f| {
                    let text = std::fs::read_to_string(f).ok()?;
                    text.contains("workload started").then(|| {
                        text.lines()
                            .find_map(|l| l.strip_prefix("[launcher] ready in "))
                            .unwrap_or("?")
                            .to_owned()
                    })
                });
                if let Some(ready) = found {
                    break (start.elapsed(), ready);
                }
                assert!(
                    start.elapsed() < Duration::from_secs(120),
                    "{name} never started:\n{}",
                    s.serial(&name)
                );
                std::thread::sleep(Duration::from_millis(2));
            };
            println!(
                "{kind} run {i}: running with a token after {} ms; launcher ready in {ready}",
                elapsed.as_millis()
            );
            totals.push(elapsed);
            s.alice(&[
                "compute",
                "instances",
                "delete",
                &name,
                "--project",
                "secundus-bank",
                "--zone",
                "us-west1-b",
            ]);
        }
        totals.sort();
        println!(
            "{kind}: median {} ms, best {} ms, worst {} ms over {runs} runs (goal ≤ 1000 ms)",
            totals[runs / 2].as_millis(),
            totals[0].as_millis(),
            totals[runs - 1].as_millis()
        );
    }
}
