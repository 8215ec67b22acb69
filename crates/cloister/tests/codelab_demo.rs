//! The acceptance story: `cloister demo` (what `scripts/demo.sh`, the README's main job, runs:
//! the scripts of `examples/ml-model-protection/`) on a fresh server. The script itself checks both outcomes (the
//! authorized workload's classifications, the unauthorized one's refusal); this test checks
//! them again in the output and that the script exited 0.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn the_codelab_demo_releases_the_model_only_to_the_authorized_workload() {
    let cloister = Path::new(env!("CARGO_BIN_EXE_cloister"));
    let workload = cloister.with_file_name("ml-inference");
    assert!(
        workload.exists(),
        "{} is missing: build it first (`cargo build --workspace --bins`, as scripts/test.sh does)",
        workload.display()
    );
    let root = support::crate_dir().join("../..");
    let ort = Command::new("bash")
        .arg(root.join("scripts/ort-library.sh"))
        .output()
        .unwrap();
    assert!(
        ort.status.success(),
        "{}",
        String::from_utf8_lossy(&ort.stderr)
    );
    let out = Command::new(cloister)
        .args(["demo", "--workload"])
        .arg(&workload)
        .arg("--ort-library")
        .arg(String::from_utf8_lossy(&ort.stdout).trim())
        // Also: an empty image bucket, and a tampered encrypted model.
        .env("DEMO_REFUSALS", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Image: cat.jpg, Response: {'predicted_class': "),
        "{stdout}"
    );
    assert!(
        stdout.contains("Image: broken.jpg, Response: {'error': "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("notes.txt"),
        "only .jpg .jpeg .png are classified"
    );
    assert!(
        stdout.contains("Error: The given credential is rejected by the attribute condition."),
        "{stdout}",
    );
    assert!(
        stdout.contains("==> the console was at http://127.0.0.1:"),
        "the demo names its console: {stdout}"
    );
    assert!(stdout.contains("empty bucket: empty result"), "{stdout}");
    assert!(
        stdout.contains("Error: the encrypted model does not decrypt"),
        "{stdout}"
    );
}
