//! The acceptance story: `cloister demo` (what `scripts/demo.sh`, the README's main job, runs:
//! the scripts of `examples/ml-model-protection/`) on a fresh server, with the signed-release
//! act (`--signed-release`) in the same run. The script itself checks every outcome (the
//! authorized workload's classifications, the unauthorized one's refusal, the signed release's
//! classifications, the unsigned and other-key refusals); this test checks them again in the
//! output, each in its own step, and that the script exited 0.

mod support;

use std::path::Path;
use std::process::Command;

#[test]
fn the_codelab_demo_releases_the_model_only_to_the_authorized_workload() {
    let started = std::time::Instant::now();
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
        .arg("--signed-release")
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
    signed_release_act(&stdout);
    eprintln!("the demo took {:?}", started.elapsed());
}

/// The output of the step whose header (`==> …`) starts with `header`, up to the next step.
fn step<'a>(stdout: &'a str, header: &str) -> &'a str {
    let start = stdout
        .find(&format!("==> {header}"))
        .unwrap_or_else(|| panic!("no step {header:?} in:\n{stdout}"));
    let rest = &stdout[start + 4..];
    &rest[..rest.find("\n==> ").unwrap_or(rest.len())]
}

/// The value after `label` on its line.
fn value_after<'a>(text: &'a str, label: &str) -> &'a str {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in:\n{text}"));
    text[at + label.len()..]
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
}

/// Google's signed container image codelab, as the demo's last act: a key, not a digest.
fn signed_release_act(stdout: &str) {
    const REFUSED: &str = "Error: The given credential is rejected by the attribute condition.";
    let fingerprint = |text: &str, label: &str| {
        let f = value_after(text, label).to_owned();
        let id = f.strip_prefix("ECDSA_P256_SHA256:").unwrap_or_default();
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{label} {f}"
        );
        f
    };
    let primus = fingerprint(
        step(stdout, "signed release: Primus signs"),
        "Primus's signing key: ",
    );
    // The policy is written before the new release exists; nothing edits it afterwards.
    let release = step(stdout, "Primus publishes a new release");
    assert_ne!(
        value_after(release, "new release digest: "),
        value_after(stdout, "workload image digest: "),
        "the new release is another image"
    );
    assert!(
        release.contains("Image: cat.jpg, Response: {'predicted_class': "),
        "the signed release reads the model: {release}"
    );
    assert!(!stdout.contains("update-oidc"), "no policy edit");
    let unsigned = step(stdout, "an unsigned image");
    assert!(unsigned.contains(REFUSED), "{unsigned}");
    assert!(!unsigned.contains("predicted_class"), "{unsigned}");
    let other = step(stdout, "the same image signed by Secundus's own key");
    assert!(other.contains(REFUSED), "{other}");
    assert!(!other.contains("predicted_class"), "{other}");
    let secundus = fingerprint(other, "Secundus's signing key: ");
    assert_ne!(primus, secundus);
    // The refusal's reason: Primus's key was looked for, Secundus's was in the token.
    let why = step(stdout, "Primus reads why in its audit log");
    assert!(
        why.contains(&format!("FAIL  ['{primus}'].exists(fingerprint")),
        "{why}"
    );
    assert!(why.contains(&format!("= [\"{secundus}\"]")), "{why}");
}
