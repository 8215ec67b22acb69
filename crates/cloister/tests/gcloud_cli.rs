//! gcloud's command surface against a real server: output formats and list flags, describe,
//! config defaults, `-` for file flags, closed pipes, completions, the roles codelabs grant,
//! and a script written with the codelab's own gcloud spellings.

mod support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use support::{BIN, World};

/// Runs the CLI as `profile` with `input` on stdin.
fn with_stdin(w: &World, profile: &str, args: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(["--profile", profile])
        .args(args)
        .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "`cloister {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs the CLI as alice with standard output closed before it writes, as `| head -1` leaves
/// it: the command must end with exit 0, not a panic.
fn closed_pipe(w: &World, args: &[&str]) {
    let mut child = Command::new(BIN)
        .args(["--profile", "alice"])
        .args(args)
        .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{args:?}: {stderr}"
    );
}

#[test]
fn lists_format_filter_sort_and_limit_like_gcloud() {
    let w = World::with_two_users();
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    // core/project is the default wherever gcloud takes --project.
    alice(&["config", "set", "core/project", "primus-bank"]);
    alice(&["kms", "keyrings", "create", "ring"]);
    for key in ["k1", "k2"] {
        alice(&["kms", "keys", "create", key, "--keyring", "ring"]);
    }
    alice(&["kms", "keys", "rotate", "k2", "--keyring", "ring"]);
    let list = ["kms", "keys", "list", "--keyring", "ring"];
    let cases: &[(&[&str], &str)] = &[
        (&["--format", "value(name.basename())"], "k1\nk2\n"),
        (
            &["--format", "value(name.basename())", "--sort-by", "~name"],
            "k2\nk1\n",
        ),
        (
            &[
                "--format",
                "value(name.basename())",
                "--sort-by",
                "name",
                "--limit",
                "1",
            ],
            "k1\n",
        ),
        // A column label of the default table works as a key, as in the codelab's cleanup.
        (
            &[
                "--format",
                "value(name.basename())",
                "--filter",
                "PRIMARY_ID=2",
            ],
            "k2\n",
        ),
        (
            &[
                "--format",
                "value(name.basename())",
                "--filter",
                "PRIMARY_STATE=(ENABLED) AND name:k1",
            ],
            "k1\n",
        ),
        (
            &[
                "--format",
                "value(name.basename())",
                "--filter",
                "NOT name~k1$",
            ],
            "k2\n",
        ),
        (
            &["--format", "csv(name.basename():label=KEY,purpose)"],
            "KEY,purpose\nk1,ENCRYPT_DECRYPT\nk2,ENCRYPT_DECRYPT\n",
        ),
        (
            &["--format", "csv[no-heading](primary.name.segment(9))"],
            "1\n2\n",
        ),
        (
            &[
                "--format",
                "table(name.basename(),primary.state:label=STATE)",
            ],
            "NAME  STATE\nk1    ENABLED\nk2    ENABLED\n",
        ),
        (
            &["--format", "json(name.basename())", "--limit", "1"],
            "[\n  {\n    \"name\": \"k1\"\n  }\n]\n",
        ),
        (&["--format", "none"], ""),
    ];
    for (flags, want) in cases {
        let args = [&list[..], flags].concat();
        assert_eq!(alice(&args), *want, "{args:?}");
    }
    let table = alice(&list);
    assert!(
        table.starts_with("NAME") && table.contains("PRIMARY_STATE"),
        "{table}"
    );
    for (flags, says) in [
        (
            &["--filter", "name.scope(key):k1"][..],
            "scope() is not supported",
        ),
        (&["--filter", "a=1 AND b=2 OR c=3"], "parentheses"),
        (&["--format", "table[box](name)"], "not supported"),
        (&["--sort-by", "name.date()"], "date() is not supported"),
    ] {
        let err = w
            .cli
            .fails(&[&["--profile", "alice"][..], &list, flags].concat());
        assert!(err.contains(says), "{flags:?}: {err}");
    }

    // describe, for resources whose describe is new, by positional KEY or a full name.
    let describes: &[(&[&str], &str)] = &[
        (
            &[
                "kms",
                "keyrings",
                "describe",
                "ring",
                "--format",
                "value(name.basename())",
            ],
            "ring\n",
        ),
        (
            &[
                "kms",
                "keys",
                "describe",
                "k2",
                "--keyring",
                "ring",
                "--format",
                "value(primary.name.basename())",
            ],
            "2\n",
        ),
        (
            &[
                "kms",
                "keys",
                "describe",
                "projects/primus-bank/locations/global/keyRings/ring/cryptoKeys/k1",
                "--format",
                "value(purpose)",
            ],
            "ENCRYPT_DECRYPT\n",
        ),
        (
            &[
                "iam",
                "roles",
                "describe",
                "roles/storage.legacyBucketReader",
                "--format",
                "value(name)",
            ],
            "roles/storage.legacyBucketReader\n",
        ),
        (&["config", "get", "core/project"], "primus-bank\n"),
        (&["config", "get-value", "account"], "alice@example.com\n"),
    ];
    for (args, want) in describes {
        assert_eq!(alice(args), *want, "{args:?}");
    }
    assert!(
        w.cli.ok(&[
            "--profile",
            "admin",
            "iam",
            "users",
            "describe",
            "bob@example.com",
            "--format",
            "value(email)"
        ]) == "bob@example.com\n"
    );
    // gcloud's positional KEY, and the flag form older scripts use.
    alice(&[
        "kms",
        "keys",
        "add-iam-policy-binding",
        "k1",
        "--keyring",
        "ring",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/cloudkms.cryptoKeyEncrypterDecrypter",
    ]);
    let policy = alice(&[
        "kms",
        "keys",
        "get-iam-policy",
        "--key",
        "k1",
        "--keyring",
        "ring",
        "--format",
        "value(bindings[0].members)",
    ]);
    assert_eq!(policy, "user:bob@example.com\n");

    // A reader that goes away early (`| head -1`) ends the command quietly with exit 0.
    closed_pipe(&w, &["kms", "keys", "list", "--keyring", "ring"]);
}

#[test]
fn config_defaults_stdio_files_quiet_and_roles() {
    let w = World::with_two_users();
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    let key = [
        "--key",
        "k",
        "--keyring",
        "ring",
        "--project",
        "primus-bank",
    ];
    alice(&[
        "kms",
        "keyrings",
        "create",
        "ring",
        "--project",
        "primus-bank",
    ]);
    alice(&[
        "kms",
        "keys",
        "create",
        "k",
        "--keyring",
        "ring",
        "--project",
        "primus-bank",
    ]);

    // `-` is stdin and stdout for every file flag.
    let sealed = with_stdin(
        &w,
        "alice",
        &[
            &[
                "kms",
                "encrypt",
                "--plaintext-file",
                "-",
                "--ciphertext-file",
                "-",
            ][..],
            &key,
        ]
        .concat(),
        b"model weights",
    );
    let opened = with_stdin(
        &w,
        "alice",
        &[
            &[
                "kms",
                "decrypt",
                "--ciphertext-file",
                "-",
                "--plaintext-file",
                "-",
            ][..],
            &key,
        ]
        .concat(),
        &sealed.stdout,
    );
    assert_eq!(opened.stdout, b"model weights");
    assert!(
        !std::path::Path::new("-").exists(),
        "no file named - was written"
    );
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    let envelope = with_stdin(
        &w,
        "alice",
        &[&["kms", "encrypt-file"][..], &key, &["-", "-"]].concat(),
        &big,
    );
    let back = with_stdin(
        &w,
        "alice",
        &["kms", "decrypt-file", "-", "-"],
        &envelope.stdout,
    );
    assert!(back.stdout == big, "the envelope round-trips through pipes");

    // compute/zone is the default zone; without one the error says how to set it.
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "compute",
        "instances",
        "describe",
        "vm",
        "--project",
        "primus-bank",
    ]);
    assert!(err.contains("config set compute/zone"), "{err}");
    alice(&["config", "set", "compute/zone", "us-west1-b"]);
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "compute",
        "instances",
        "describe",
        "vm",
        "--project",
        "primus-bank",
    ]);
    assert!(err.contains("zones/us-west1-b/instances/vm"), "{err}");
    let listed = alice(&["config", "list"]);
    assert!(listed.contains("[compute]\nzone = us-west1-b"), "{listed}");
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "config",
        "set",
        "core/account",
        "x@y.z",
    ]);
    assert!(err.contains("auth login"), "{err}");

    // --quiet anywhere; projects delete refuses a project that still holds something (here
    // a key ring, which can never be deleted) and names it, and deletes an empty one.
    alice(&[
        "-q",
        "iam",
        "service-accounts",
        "create",
        "model-sa",
        "--project",
        "primus-bank",
    ]);
    alice(&[
        "iam",
        "service-accounts",
        "delete",
        "model-sa@primus-bank.iam.gserviceaccount.com",
        "--quiet",
    ]);
    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "projects",
        "delete",
        "primus-bank",
        "--quiet",
    ]);
    assert!(
        err.contains("FAILED_PRECONDITION")
            && err.contains(
                "project primus-bank still holds key rings projects/primus-bank/locations/global/keyRings/ring"
            ),
        "{err}"
    );
    alice(&["projects", "describe", "primus-bank"]);
    alice(&["projects", "create", "scratch-bank"]);
    let out = w.cli.run(&[
        "--profile",
        "alice",
        "projects",
        "delete",
        "scratch-bank",
        "--quiet",
    ]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stderr).lines().next(),
        Some("Deleted project [scratch-bank].")
    );
    let err = w
        .cli
        .fails(&["--profile", "alice", "projects", "describe", "scratch-bank"]);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");

    // --cred-file is --credential-file, in both directions; `-` prints the credential.
    let cred = w.dir.path().join("carol.json");
    w.cli.ok(&[
        "--profile",
        "admin",
        "iam",
        "users",
        "create",
        "carol@example.com",
        "--cred-file",
        cred.to_str().unwrap(),
    ]);
    w.cli.point("carol", &w.server);
    w.cli.ok(&[
        "--profile",
        "carol",
        "auth",
        "login",
        "--cred-file",
        cred.to_str().unwrap(),
    ]);
    let printed = w.cli.ok(&[
        "--profile",
        "admin",
        "iam",
        "users",
        "issue-credential",
        "carol@example.com",
        "--credential-file",
        "-",
    ]);
    assert!(
        printed.contains("\"client_email\": \"carol@example.com\""),
        "{printed}"
    );

    // The codelab's grants: legacyBucketReader lists a bucket but reads nothing in it;
    // editor may change resources but not who may use them.
    alice(&[
        "storage",
        "buckets",
        "create",
        "gs://primus-input",
        "--project",
        "primus-bank",
    ]);
    let file = w.dir.path().join("model.bin");
    std::fs::write(&file, b"weights").unwrap();
    alice(&[
        "storage",
        "cp",
        file.to_str().unwrap(),
        "gs://primus-input/",
    ]);
    alice(&[
        "storage",
        "buckets",
        "add-iam-policy-binding",
        "gs://primus-input",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/storage.legacyBucketReader",
    ]);
    // A download streamed to a reader that went away ends quietly too.
    closed_pipe(&w, &["storage", "cat", "gs://primus-input/model.bin"]);
    let bob = w.as_user("bob");
    assert_eq!(
        bob(&["storage", "ls", "gs://primus-input"]),
        "gs://primus-input/model.bin\n"
    );
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "storage",
        "cat",
        "gs://primus-input/model.bin",
    ]);
    assert!(err.contains("storage.objects.get"), "{err}");
    alice(&[
        "projects",
        "add-iam-policy-binding",
        "primus-bank",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/editor",
    ]);
    assert_eq!(
        bob(&["storage", "cat", "gs://primus-input/model.bin"]),
        "weights"
    );
    let err = w.cli.fails(&[
        "--profile",
        "bob",
        "projects",
        "add-iam-policy-binding",
        "primus-bank",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/owner",
    ]);
    assert!(err.contains("setIamPolicy"), "{err}");
}

#[test]
fn completions_and_help_describe_the_whole_cli() {
    let dir = tempfile::tempdir().unwrap();
    let cli = support::Cli::new(dir.path().join("config"));
    for (shell, marker) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef cloister"),
        ("fish", "complete -c cloister"),
    ] {
        let script = cli.ok(&["completion", shell]);
        assert!(
            script.contains(marker) && script.contains("workload-identity-pools"),
            "{shell}"
        );
    }
    let help = cli.ok(&["iam", "--help"]);
    assert!(
        help.contains("service accounts") && help.contains("workload identity pools"),
        "{help}"
    );
}

/// The codelab's scripts call `gcloud`; with `gcloud` standing for Cloister's CLI the same
/// lines (wildcard copies, quoted wildcards, --filter checks piped to grep, --quiet
/// cleanup, gsutil-style rm -r of a bucket) run unchanged.
#[test]
fn a_script_with_the_codelabs_gcloud_lines_runs_unchanged() {
    let w = World::with_two_users();
    let images = w.dir.path().join("artifacts/sample_images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 1..=3 {
        std::fs::write(
            images.join(format!("sample_image_{i}.jpeg")),
            format!("jpeg {i}"),
        )
        .unwrap();
    }
    let script = r#"
set -euo pipefail
gcloud() { "$CLOISTER" --profile alice "$@"; }
gcloud projects create secundus-bank >/dev/null
gcloud config set project secundus-bank > /dev/null
gcloud storage buckets create gs://secundus-input >/dev/null
gcloud storage buckets create gs://secundus-result >/dev/null
gcloud storage cp "$PARENT_DIR"/artifacts/sample_images/* gs://secundus-input/
gcloud storage cp 'gs://secundus-input/*_2.jpeg' gs://secundus-result/copies/
gcloud storage cp "$PARENT_DIR/artifacts/sample_images/sample_image_1.jpeg" "$PARENT_DIR/artifacts/sample_images/sample_image_3.jpeg" gs://secundus-result/pair
echo "== ls"
gcloud storage ls gs://secundus-input | head -1
gcloud storage ls -l gs://secundus-result/** | tail -1
echo "== cat"
gcloud storage cat 'gs://secundus-result/pair/*'
echo
gcloud kms keyrings create ring --location=global >/dev/null
gcloud kms keys create key --location=global --keyring=ring --purpose=encryption >/dev/null
gcloud kms keys list --keyring=ring --location=global --filter="PRIMARY_STATE=(ENABLED)" | grep -q key
gcloud kms keys versions list --key=key --keyring=ring --location=global --format='value(state)'
gcloud kms keys versions destroy 1 --key=key --keyring=ring --location=global --quiet >/dev/null
gcloud kms keys versions describe 1 --key=key --keyring=ring --location=global --format='value(state)'
gcloud iam workload-identity-pools create pool --location global >/dev/null
gcloud iam workload-identity-pools list --filter="state=(ACTIVE)" --location=global | grep -q pool
gcloud iam workload-identity-pools describe pool --location=global --format='value(state)'
gcloud iam workload-identity-pools delete pool --location=global --quiet
gcloud artifacts repositories create repo --repository-format=docker --location=us >/dev/null
gcloud artifacts repositories delete repo --location=us --async --quiet
echo "== rm"
gcloud storage rm 'gs://secundus-input/sample_image_[12].jpeg'
gcloud storage ls gs://secundus-input
gcloud storage rm -r gs://secundus-input
gcloud storage ls | grep -c secundus
"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .env("CLOISTER", BIN)
        .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
        .env("PARENT_DIR", w.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let total = "TOTAL: 3 objects, 18 bytes (18 B)";
    let want = format!(
        "== ls\ngs://secundus-input/sample_image_1.jpeg\n{total}\n== cat\njpeg 1jpeg 3\nENABLED\nDESTROYED\nACTIVE\n== rm\ngs://secundus-input/sample_image_3.jpeg\n1\n"
    );
    assert_eq!(stdout, want);
}

/// The codelab's gsutil lines (create_storage_bucket's `gsutil ls | grep` check, `mb`, the
/// grants with `iam ch MEMBER:ROLE`, `cp` of a wildcard, `rm -r` of a bucket in cleanup) run
/// unchanged with `gsutil` standing for `cloister gsutil`, and grant exactly what they say.
#[test]
fn a_script_with_the_codelabs_gsutil_lines_runs_unchanged() {
    let w = World::with_two_users();
    let images = w.dir.path().join("artifacts/sample_images");
    std::fs::create_dir_all(&images).unwrap();
    for i in 1..=2 {
        std::fs::write(images.join(format!("sample_image_{i}.jpeg")), "jpeg").unwrap();
    }
    let script = r#"
set -euo pipefail
gcloud() { "$CLOISTER" --profile alice "$@"; }
gsutil() { "$CLOISTER" --profile alice gsutil "$@"; }
SECUNDUS_PROJECT_ID=secundus-bank
WORKLOAD_SERVICEACCOUNT=workload-sa
SECUNDUS_INPUT_STORAGE_BUCKET=secundus-input
SECUNDUS_RESULT_STORAGE_BUCKET=secundus-result
gcloud projects create "${SECUNDUS_PROJECT_ID}" >/dev/null
gcloud config set project "${SECUNDUS_PROJECT_ID}" > /dev/null
gcloud iam service-accounts create "${WORKLOAD_SERVICEACCOUNT}" >/dev/null
create_storage_bucket() {
  if gsutil ls | grep "${1}"; then
    echo "Bucket ${1} already exists."
  else
    gsutil mb gs://$1
  fi
}
create_storage_bucket "${SECUNDUS_INPUT_STORAGE_BUCKET}"
create_storage_bucket "${SECUNDUS_RESULT_STORAGE_BUCKET}"
create_storage_bucket "${SECUNDUS_RESULT_STORAGE_BUCKET}"
gsutil iam ch \
  serviceAccount:"${WORKLOAD_SERVICEACCOUNT}"@"${SECUNDUS_PROJECT_ID}".iam.gserviceaccount.com:objectViewer \
  gs://"${SECUNDUS_INPUT_STORAGE_BUCKET}"
gsutil iam ch \
  serviceAccount:"${WORKLOAD_SERVICEACCOUNT}"@"${SECUNDUS_PROJECT_ID}".iam.gserviceaccount.com:objectUser \
  gs://"${SECUNDUS_RESULT_STORAGE_BUCKET}"
gsutil cp "${PARENT_DIR}"/artifacts/sample_images/* gs://"${SECUNDUS_INPUT_STORAGE_BUCKET}"/
gsutil ls gs://"${SECUNDUS_INPUT_STORAGE_BUCKET}"
gsutil -m rm -r gs://"${SECUNDUS_INPUT_STORAGE_BUCKET}"
gsutil ls | grep -c secundus
"#;
    let out = Command::new("bash")
        .args(["-c", script])
        .env("CLOISTER", BIN)
        .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
        .env("PARENT_DIR", w.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout,
        "gs://secundus-result/\nBucket secundus-result already exists.\n\
         gs://secundus-input/sample_image_1.jpeg\ngs://secundus-input/sample_image_2.jpeg\n1\n"
    );
    let alice = w.as_user("alice");
    let policy: serde_json::Value =
        serde_json::from_str(&alice(&["gsutil", "iam", "get", "gs://secundus-result"])).unwrap();
    let sa = "serviceAccount:workload-sa@secundus-bank.iam.gserviceaccount.com";
    let objects_user = policy["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["role"] == "roles/storage.objectUser")
        .unwrap();
    assert_eq!(objects_user["members"], serde_json::json!([sa]));
    // A revoke takes the member out; bob, who has no role on the bucket, changes nothing.
    alice(&["gsutil", "iam", "ch", "-d", sa, "gs://secundus-result"]);
    let refused = w.cli.fails(&[
        "--profile",
        "bob",
        "gsutil",
        "iam",
        "ch",
        "user:bob@example.com:admin",
        "gs://secundus-result",
    ]);
    assert!(
        refused.contains("storage.buckets.getIamPolicy"),
        "{refused}"
    );
    let after = alice(&["gsutil", "iam", "get", "gs://secundus-result"]);
    assert!(!after.contains(sa) && !after.contains("bob@"), "{after}");
    // What gsutil would refuse, Cloister refuses by name.
    let bad = w.cli.fails(&[
        "--profile",
        "alice",
        "gsutil",
        "iam",
        "ch",
        "objectViewer",
        "gs://secundus-result",
    ]);
    assert!(bad.contains("is not MEMBER:ROLE"), "{bad}");
}

/// `auth console-login` prints a link whose code signs the profile's user in to the console
/// once.
#[tokio::test(flavor = "multi_thread")]
async fn console_login_prints_a_link_that_signs_in_once() {
    let w = World::with_two_users();
    let link = w.as_user("alice")(&["auth", "console-login"]);
    let code = link
        .trim()
        .strip_prefix(&format!("{}/console/login?code=", support::PUBLIC_URL))
        .unwrap_or_else(|| panic!("{link}"))
        .to_owned();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = format!("{}/console/login", w.server.endpoint());
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let resp = client
            .post(&url)
            .header("origin", support::PUBLIC_URL)
            .form(&[("code", code.as_str())])
            .send()
            .await
            .unwrap();
        statuses.push(resp.status().as_u16());
    }
    assert_eq!(statuses, [303, 401]);
}
