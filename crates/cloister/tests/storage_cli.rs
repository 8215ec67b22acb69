//! Google's Cloud Storage client library (Python google-cloud-storage) against the real
//! server: bucket create, multipart uploads, list with a delimiter, download (whole and by
//! range), metadata and delete.

#[path = "../../cloister-store/tests/support/garage.rs"]
mod garage;
mod support;

use serde_json::Value;
use support::{PUBLIC_URL, World};

/// Alice creates the project primus-bank and `buckets` in it.
fn primus_buckets(w: &World, buckets: &[&str]) {
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    for b in buckets {
        alice(&[
            "storage",
            "buckets",
            "create",
            b,
            "--project",
            "primus-bank",
        ]);
    }
}

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
    let script = format!(
        "{}/tests/python/gcs_client.py",
        support::crate_dir().display()
    );
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
    assert_eq!(
        r["big_round_trip"], true,
        "a 10 MiB resumable upload in 4 MiB chunks"
    );
    assert_eq!(
        r["copy_same"], true,
        "copy_blob (rewriteTo) copies the bytes"
    );
}

/// The client as docs/storage-clients.md points it at Cloister (STORAGE_EMULATOR_HOST and a
/// Cloister token), through match_glob, patch/update with metageneration, compose, exists.
#[test]
fn googles_storage_client_globs_patches_and_composes() {
    let w = World::with_users(&[]);
    w.cli
        .ok(&["--profile", "alice", "projects", "create", "primus-bank"]);
    let token = w
        .cli
        .ok(&["--profile", "alice", "auth", "print-access-token"])
        .trim()
        .to_owned();
    let script = format!(
        "{}/tests/python/gcs_parity.py",
        support::crate_dir().display()
    );
    // The snippet the docs show is the one this test runs: every line of it is in the script.
    let docs = std::fs::read_to_string(support::crate_dir().join("../../docs/storage-clients.md"))
        .unwrap();
    let snippet = docs
        .split("```python\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/storage-clients.md shows a Python snippet");
    let source = std::fs::read_to_string(&script).unwrap();
    for line in snippet.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            source.lines().any(|s| s == line),
            "docs/storage-clients.md's line {line:?} is not in {script}"
        );
    }
    let out = std::process::Command::new("python3")
        .args([
            &script,
            &w.server.endpoint(),
            &token,
            "primus-bank",
            "primus-parity",
        ])
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "google-cloud-storage failed (scripts/test.sh installs it with pip):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    let json = |v| -> Value { serde_json::json!(v) };
    assert_eq!(r["glob_top_txt"], json(vec!["a.txt", "b.txt"]));
    assert_eq!(
        r["glob_all_txt"],
        json(vec!["a.txt", "b.txt", "dir/a.txt", "dir/sub/a.txt"])
    );
    assert_eq!(r["glob_alternatives"], json(vec!["dir/sub/b.jpg"]));
    assert_eq!(
        r["glob_with_prefix"],
        json(vec!["dir/sub/a.txt", "dir/sub/b.jpg"])
    );
    assert_eq!(r["offsets"], json(vec!["b.txt", "dir/a.txt"]));
    assert_eq!(
        r["versions"],
        json(vec!["dir/a.txt", "dir/sub/a.txt", "dir/sub/b.jpg"])
    );
    assert!(
        r["soft_deleted"].as_str().unwrap().contains("softDeleted"),
        "softDeleted=true is refused by name, not ignored: {r}"
    );
    assert_eq!(r["custom_metadata_on_upload"]["origin"], "parity");
    assert_eq!(r["time_created_ms"], true, "milliseconds, as Google");
    assert_eq!(
        r["patched"],
        serde_json::json!({
            "content_type": "application/json",
            "cache_control": "no-cache",
            "metadata": {"reviewed": "yes"},
            "same_generation": true,
            "metageneration": 2,
        })
    );
    assert_eq!(r["stale_patch"], 412);
    assert_eq!(r["updated_metadata"], serde_json::json!({"final": "1"}));
    assert_eq!(
        r["compose"],
        serde_json::json!({
            "bytes": "a.csvb.txtdir/a.txt",
            "component_count": 3,
            "md5": null,
            "has_crc32c": true,
        })
    );
    assert_eq!(r["compose_missing"], 404);
    assert_eq!(r["exists"], serde_json::json!([true, false]));
}

#[test]
fn the_cli_copies_folders_recursively_between_disk_and_buckets() {
    let w = World::with_two_users();
    primus_buckets(&w, &["gs://primus-input", "gs://primus-archive"]);
    let alice = w.as_user("alice");
    let images = w.dir.path().join("images");
    std::fs::create_dir_all(images.join("night")).unwrap();
    std::fs::write(images.join("cat.jpg"), b"cat").unwrap();
    std::fs::write(images.join("night/owl.png"), b"owl").unwrap();
    // Above the resumable threshold: goes up in chunks through an upload session.
    let big: Vec<u8> = (0..9_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(images.join("big.bin"), &big).unwrap();
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "storage",
        "cp",
        images.to_str().unwrap(),
        "gs://primus-input",
    ]);
    assert!(err.contains("-r"), "{err}");
    alice(&[
        "storage",
        "cp",
        "-r",
        images.to_str().unwrap(),
        "gs://primus-input",
    ]);
    let listed = alice(&[
        "storage",
        "ls",
        "-r",
        "gs://primus-input",
        "--format",
        "value(url)",
    ]);
    assert_eq!(
        listed.lines().collect::<Vec<_>>(),
        [
            "gs://primus-input/images/big.bin",
            "gs://primus-input/images/cat.jpg",
            "gs://primus-input/images/night/owl.png"
        ]
    );

    // gs:// → gs:// is a server-side copy; folders keep their name.
    alice(&[
        "storage",
        "cp",
        "-r",
        "gs://primus-input/images",
        "gs://primus-archive/2026",
    ]);
    alice(&[
        "storage",
        "cp",
        "gs://primus-input/images/cat.jpg",
        "gs://primus-archive/single/",
    ]);
    assert_eq!(
        alice(&[
            "storage",
            "cat",
            "gs://primus-archive/2026/images/night/owl.png"
        ]),
        "owl"
    );
    assert_eq!(
        alice(&["storage", "cat", "gs://primus-archive/single/cat.jpg"]),
        "cat"
    );

    let out = w.dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    alice(&[
        "storage",
        "cp",
        "-r",
        "gs://primus-archive/2026/images",
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(out.join("images/big.bin")).unwrap(), big);
    assert_eq!(
        std::fs::read(out.join("images/night/owl.png")).unwrap(),
        b"owl"
    );

    // A bucket cannot make a recursive download write outside its destination.
    alice(&[
        "storage",
        "cp",
        images.join("cat.jpg").to_str().unwrap(),
        "gs://primus-archive/evil/../../escaped",
    ]);
    let trap = w.dir.path().join("trap");
    std::fs::create_dir_all(&trap).unwrap();
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "storage",
        "cp",
        "-r",
        "gs://primus-archive/evil",
        trap.to_str().unwrap(),
    ]);
    assert!(err.contains("outside the destination"), "{err}");
    assert!(!w.dir.path().join("escaped").exists());
    assert_eq!(
        std::fs::read_dir(&trap).unwrap().count(),
        0,
        "nothing was copied"
    );

    // Bob, who may not read the source, copies nothing.
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "storage",
        "cp",
        "gs://primus-input/images/cat.jpg",
        "gs://primus-archive/stolen",
    ]);
    assert!(err.contains("storage.objects.get"), "{err}");
}

#[test]
fn the_cli_copies_lists_and_shares_objects() {
    let w = World::with_two_users();
    primus_buckets(&w, &["gs://primus-models"]);
    let alice = w.as_user("alice");
    let model: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let local = w.dir.path().join("model.onnx");
    std::fs::write(&local, &model).unwrap();
    alice(&[
        "storage",
        "cp",
        local.to_str().unwrap(),
        "gs://primus-models/models/",
    ]);
    let listing = alice(&["storage", "ls", "gs://primus-models"]);
    assert!(listing.contains("gs://primus-models/models/"), "{listing}");
    let deep = alice(&[
        "storage",
        "ls",
        "gs://primus-models",
        "--recursive",
        "--format",
        "value(url,size)",
    ]);
    assert_eq!(deep.trim(), "gs://primus-models/models/model.onnx\t3000000");
    let back = w.dir.path().join("back.onnx");
    alice(&[
        "storage",
        "cp",
        "gs://primus-models/models/model.onnx",
        back.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&back).unwrap(), model);

    // Bob may read once granted objectViewer, and never write.
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "storage",
        "cat",
        "gs://primus-models/models/model.onnx",
    ]);
    assert!(err.contains("storage.objects.get"), "{err}");
    alice(&[
        "storage",
        "buckets",
        "add-iam-policy-binding",
        "gs://primus-models",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/storage.objectViewer",
    ]);
    let bob_copy = w.dir.path().join("bob.onnx");
    w.cli.ok(&[
        "--profile",
        "bob",
        "storage",
        "cp",
        "gs://primus-models/models/model.onnx",
        bob_copy.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&bob_copy).unwrap(), model);
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "storage",
        "cp",
        local.to_str().unwrap(),
        "gs://primus-models/stolen",
    ]);
    assert!(err.contains("storage.objects.create"), "{err}");
    let missing = w.dir.path().join("missing.onnx");
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "storage",
        "cp",
        "gs://primus-models/nope",
        missing.to_str().unwrap(),
    ]);
    assert!(err.contains("NOT_FOUND"), "{err}");
    assert!(!missing.exists(), "a failed download leaves no file");

    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "storage",
        "buckets",
        "delete",
        "gs://primus-models",
    ]);
    assert!(err.contains("not empty"), "{err}");
    alice(&["storage", "rm", "gs://primus-models/models/model.onnx"]);
    alice(&["storage", "buckets", "delete", "gs://primus-models"]);
}

#[test]
fn kms_keys_are_created_used_and_shared_with_the_cli() {
    let w = World::with_two_users();
    support::create_primus_kms_key(&w);
    let alice = w.as_user("alice");
    let plain = w.dir.path().join("dek.bin");
    let sealed = w.dir.path().join("dek.enc");
    let back = w.dir.path().join("dek.out");
    std::fs::write(&plain, b"a data encryption key").unwrap();
    let key = support::PRIMUS_KEY;
    let mut encrypt = vec![
        "kms",
        "encrypt",
        "--plaintext-file",
        plain.to_str().unwrap(),
        "--ciphertext-file",
        sealed.to_str().unwrap(),
    ];
    encrypt.extend(key);
    alice(&encrypt);
    assert_ne!(std::fs::read(&sealed).unwrap(), b"a data encryption key");
    let mut decrypt = vec![
        "kms",
        "decrypt",
        "--ciphertext-file",
        sealed.to_str().unwrap(),
        "--plaintext-file",
        back.to_str().unwrap(),
    ];
    decrypt.extend(key);
    let mut bob = vec!["--profile", "bob"];
    bob.extend(decrypt.iter().copied());
    let err = w.cli.fails(&bob);
    assert!(err.contains("useToDecrypt"), "{err}");
    let mut grant = vec![
        "kms",
        "keys",
        "add-iam-policy-binding",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/cloudkms.cryptoKeyDecrypter",
    ];
    grant.extend(key);
    alice(&grant);
    w.cli.ok(&bob);
    assert_eq!(std::fs::read(&back).unwrap(), b"a data encryption key");

    // Envelope encryption of a file larger than KMS takes, then tampering.
    let model: Vec<u8> = (0..3_500_000u32).map(|i| (i % 241) as u8).collect();
    let (plain, sealed, out) = (
        w.dir.path().join("model.onnx"),
        w.dir.path().join("model.enc"),
        w.dir.path().join("model.dec"),
    );
    std::fs::write(&plain, &model).unwrap();
    let mut enc = vec![
        "kms",
        "encrypt-file",
        plain.to_str().unwrap(),
        sealed.to_str().unwrap(),
    ];
    enc.extend(key);
    alice(&enc);
    w.cli.ok(&[
        "--profile",
        "bob",
        "kms",
        "decrypt-file",
        sealed.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert_eq!(std::fs::read(&out).unwrap(), model);
    let mut bytes = std::fs::read(&sealed).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    std::fs::write(&sealed, &bytes).unwrap();
    std::fs::remove_file(&out).unwrap();
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "kms",
        "decrypt-file",
        sealed.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    assert!(err.contains("altered"), "{err}");
    assert!(!out.exists(), "no plaintext is released");
    assert!(!w.dir.path().join("model.dec.cloister-partial").exists());
}

#[test]
fn a_server_killed_mid_upload_leaves_every_object_complete_or_absent() {
    use std::process::{Command, Stdio};
    let w = World::with_two_users();
    let data = w.dir.path().join("data");
    w.cli
        .ok(&["--profile", "alice", "projects", "create", "primus-bank"]);
    w.cli.ok(&[
        "--profile",
        "alice",
        "storage",
        "buckets",
        "create",
        "gs://crash-test",
        "--project",
        "primus-bank",
    ]);
    let files: Vec<(String, Vec<u8>)> = (0..6u32)
        .map(|n| {
            (
                format!("file-{n}.bin"),
                (0..4_000_000u32)
                    .map(|i| ((i * (n + 3)) % 251) as u8)
                    .collect(),
            )
        })
        .collect();
    for (name, bytes) in &files {
        std::fs::write(w.dir.path().join(name), bytes).unwrap();
    }
    // Two uploads finish before the crash; the rest run concurrently when it comes.
    for (name, _) in &files[..2] {
        w.cli.ok(&[
            "--profile",
            "alice",
            "storage",
            "cp",
            w.dir.path().join(name).to_str().unwrap(),
            &format!("gs://crash-test/{name}"),
        ]);
    }
    let uploads: Vec<_> = files[2..]
        .iter()
        .map(|(name, _)| {
            Command::new(support::BIN)
                .args([
                    "--profile",
                    "alice",
                    "storage",
                    "cp",
                    w.dir.path().join(name).to_str().unwrap(),
                    &format!("gs://crash-test/{name}"),
                ])
                .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Kill once bytes are being written (a temp file exists): a bounded wait, not a timing test.
    let tmp = data.join("blobs/tmp");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::fs::read_dir(&tmp).map(|d| d.count()).unwrap_or(0) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no upload started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let World { dir, server, cli } = w;
    server.kill9();
    for mut u in uploads {
        let _ = u.wait();
    }

    let server = support::Server::try_start(&data, &["--public-url", support::PUBLIC_URL]).unwrap();
    cli.point("alice", &server);
    let listed = cli.ok(&[
        "--profile",
        "alice",
        "storage",
        "ls",
        "gs://crash-test",
        "--format",
        "value(url)",
    ]);
    for (name, bytes) in &files {
        let url = format!("gs://crash-test/{name}");
        if listed.lines().any(|l| l == url) {
            let back = dir.path().join(format!("{name}.back"));
            cli.ok(&[
                "--profile",
                "alice",
                "storage",
                "cp",
                &url,
                back.to_str().unwrap(),
            ]);
            assert_eq!(
                &std::fs::read(&back).unwrap(),
                bytes,
                "{name} is listed, so it must be whole"
            );
        }
    }
    assert!(
        listed.lines().count() >= 2,
        "the uploads that finished before the crash survive: {listed}"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "no temp file survives a restart"
    );
}

/// `cloister server --blob-url s3://…` with the AWS_* settings in its environment keeps
/// object bytes in the bucket of a real S3 server (Garage); the CLI's resumable upload of a
/// file larger than a multipart part and its download round-trip unchanged.
#[test]
fn a_server_with_blobs_in_s3_serves_the_cli() {
    let garage = garage::Garage::start();
    let url = format!("s3://{}/cloister", garage.bucket);
    let w = World::with_users_env(
        &["--public-url", PUBLIC_URL, "--blob-url", &url],
        &garage.options(),
    );
    primus_buckets(&w, &["gs://primus-models"]);
    let alice = w.as_user("alice");
    let model: Vec<u8> = (0..20_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let local = w.dir.path().join("model.bin");
    std::fs::write(&local, &model).unwrap();
    alice(&[
        "storage",
        "cp",
        local.to_str().unwrap(),
        "gs://primus-models/model.bin",
    ]);
    let back = w.dir.path().join("back.bin");
    alice(&[
        "storage",
        "cp",
        "gs://primus-models/model.bin",
        back.to_str().unwrap(),
    ]);
    assert!(
        std::fs::read(&back).unwrap() == model,
        "the bytes came back unchanged"
    );
    let blobs = w.dir.path().join("data/blobs/data");
    let local_blobs = std::fs::read_dir(&blobs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(local_blobs, 0, "no blob was written to the data directory");
}

/// Google's own gcloud pointed at Cloister with `api_endpoint_overrides/storage` and an
/// access-token file, through the storage commands a Confidential Space user runs: cp (file,
/// folder, bucket to bucket), ls, ls -l, cat, rsync (twice: the second copies nothing, the file
/// times kept in custom metadata), objects update/compose/describe, rm and rm -r. Ignored by
/// default, since gcloud is not a Debian package scripts/install-deps.sh can install:
/// scripts/test.sh runs it by name when gcloud is on the PATH (and then it must pass).
#[test]
#[ignore = "needs the Google Cloud SDK (gcloud) installed"]
fn googles_gcloud_copies_lists_syncs_composes_and_removes() {
    let w = World::with_users(&[]);
    primus_buckets(&w, &["gs://primus-gcloud"]);
    let token = w.dir.path().join("token.txt");
    let access = w.as_user("alice")(&["auth", "print-access-token"]);
    std::fs::write(&token, access.trim()).unwrap();
    let src = w.dir.path().join("src");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    for (name, text) in [
        ("a.txt", "one\n"),
        ("sub/b.txt", "two\n"),
        ("c.md", "three\n"),
    ] {
        std::fs::write(src.join(name), text).unwrap();
    }
    let script = r#"
set -euo pipefail
B=gs://primus-gcloud
gcloud storage cp src/a.txt $B/
gcloud storage cp -r src $B/dir
echo "== ls"; gcloud storage ls $B
echo "== ls -l"; gcloud storage ls -l "$B/**" | tail -1
echo "== cat"; gcloud storage cat $B/a.txt
gcloud storage rsync -r src $B/sync
echo "== rsync again"; gcloud storage rsync -r src $B/sync 2>&1 | grep -c '^Copying' || true
gcloud storage cp $B/a.txt $B/copy.txt
gcloud storage objects update $B/a.txt --content-type=text/x-one --custom-metadata=k=v
gcloud storage objects compose $B/a.txt $B/copy.txt $B/joined.txt
echo "== describe"; gcloud storage objects describe $B/joined.txt --format='value(component_count,content_type)'
echo "== cat joined"; gcloud storage cat $B/joined.txt
gcloud storage rm -r $B/sync
gcloud storage rm "$B/dir/**"
echo "== after rm"; gcloud storage ls $B
"#;
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(w.dir.path())
        .env("CLOUDSDK_CONFIG", w.dir.path().join("gcloud"))
        .env(
            "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE",
            format!("{}/storage/v1/", w.server.endpoint()),
        )
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN_FILE", &token)
        .env("CLOUDSDK_CORE_PROJECT", "primus-bank")
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .output()
        .expect("bash runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "gcloud failed:\n{stdout}\n{stderr}");
    let section = |name: &str| {
        stdout
            .split(&format!("== {name}\n"))
            .nth(1)
            .and_then(|s| s.split("== ").next())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        section("ls"),
        "gs://primus-gcloud/a.txt\ngs://primus-gcloud/dir/\n"
    );
    assert!(section("ls -l").starts_with("TOTAL: 4 objects"), "{stdout}");
    assert_eq!(section("cat"), "one\n");
    assert_eq!(section("rsync again"), "0\n", "{stdout}\n{stderr}");
    assert_eq!(section("describe"), "2\ttext/x-one\n", "{stdout}");
    assert_eq!(section("cat joined"), "one\none\n");
    assert_eq!(
        section("after rm"),
        "gs://primus-gcloud/a.txt\ngs://primus-gcloud/copy.txt\ngs://primus-gcloud/joined.txt\n"
    );
    assert!(
        !stderr.contains("Truncating"),
        "gcloud parses Cloister's timestamps as Google's: {stderr}"
    );
}
