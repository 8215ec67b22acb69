//! Google's Cloud Storage client library (Python google-cloud-storage) against the real
//! server: bucket create, multipart uploads, list with a delimiter, download (whole and by
//! range), metadata and delete.

mod support;

use serde_json::Value;
use support::World;

#[test]
fn googles_storage_client_works_against_cloister() {
    let w = World::with_users(&[]);
    w.cli
        .ok(&["--profile", "alice", "projects", "create", "primus-bank"]);
    let token = w
        .cli
        .ok(&["--profile", "alice", "auth", "print-access-token"])
        .trim()
        .to_owned();
    let script = format!("{}/tests/python/gcs_client.py", env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new("python3")
        .args([
            &script,
            &w.server.endpoint(),
            &token,
            "primus-bank",
            "primus-models",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "google-cloud-storage failed (scripts/test.sh installs it with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        r["names"],
        serde_json::json!(["images/cat.jpg", "model.onnx"])
    );
    assert_eq!(r["top"], serde_json::json!(["model.onnx"]));
    assert_eq!(r["prefixes"], serde_json::json!(["images/"]));
    assert_eq!(r["size"], 7000);
    assert_eq!(r["partial"], "weights");
    assert_eq!(r["content_type"], "image/jpeg");
    assert_eq!(r["after_delete"], serde_json::json!(["model.onnx"]));
}
