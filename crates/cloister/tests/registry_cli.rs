//! Real OCI clients against the real server: `podman build` (FROM scratch, no container run)
//! and `podman push`/`pull`, `skopeo copy` both ways byte-identical, the Rust `oci-client`
//! crate pulling by tag and by digest, and the `artifacts` CLI (the codelab's
//! `images describe … --format='value(image_summary.digest)'`).

mod support;

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};
use support::World;

fn run(program: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} runs (scripts/install-deps.sh installs it): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn fails(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(
        !out.status.success(),
        "{program} {args:?} should have failed"
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every blob file of an OCI layout, by name.
fn layout_blobs(layout: &Path) -> Vec<(String, Vec<u8>)> {
    let mut blobs: Vec<(String, Vec<u8>)> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    blobs.sort();
    blobs
}

#[test]
fn podman_skopeo_and_oci_client_push_and_pull_through_cloister() {
    let w = World::with_users(&[]);
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    alice(&[
        "artifacts",
        "repositories",
        "create",
        "models",
        "--project",
        "primus-bank",
        "--repository-format",
        "docker",
        "--location",
        "us",
    ]);
    let token = alice(&["auth", "print-access-token"]).trim().to_owned();
    let creds = format!("oauth2accesstoken:{token}");
    let host = w.server.endpoint().trim_start_matches("http://").to_owned();
    let image = format!("{host}/primus-bank/models/hello");

    // podman builds FROM scratch without running anything, in its own storage.
    let root = w.dir.path().join("podman");
    let (graph, runroot) = (root.join("root"), root.join("run"));
    let podman = |args: &[&str]| {
        let mut all = vec![
            "--root",
            graph.to_str().unwrap(),
            "--runroot",
            runroot.to_str().unwrap(),
            "--storage-driver",
            "vfs",
            "--events-backend",
            "none",
        ];
        all.extend(args);
        run("podman", &all)
    };
    let context = w.dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(context.join("hello.txt"), "hello from the workload\n").unwrap();
    std::fs::write(
        context.join("Containerfile"),
        "FROM scratch\nCOPY hello.txt /hello.txt\nLABEL tee.launch_policy.allow_cmd_override=true\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    podman(&[
        "build",
        "-t",
        "localhost/hello:1",
        context.to_str().unwrap(),
    ]);
    podman(&[
        "push",
        "--tls-verify=false",
        "--creds",
        &creds,
        "localhost/hello:1",
        &format!("docker://{image}:v1"),
    ]);

    // The codelab's way to learn the digest; it names exactly the bytes skopeo reads back.
    let digest = alice(&[
        "artifacts",
        "docker",
        "images",
        "describe",
        &format!("{image}:v1"),
        "--format",
        "value(image_summary.digest)",
    ]);
    let digest = digest.trim();
    let raw = run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &creds,
            "--raw",
            &format!("docker://{image}:v1"),
        ],
    );
    assert_eq!(
        digest,
        format!("sha256:{}", hex::encode(Sha256::digest(&raw)))
    );

    // skopeo: an OCI layout pushed and pulled back is byte-identical.
    let (l1, l2) = (w.dir.path().join("layout1"), w.dir.path().join("layout2"));
    podman(&[
        "push",
        "localhost/hello:1",
        &format!("oci:{}:v2", l1.display()),
    ]);
    run(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &creds,
            &format!("oci:{}:v2", l1.display()),
            &format!("docker://{image}:v2"),
        ],
    );
    run(
        "skopeo",
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-creds",
            &creds,
            &format!("docker://{image}:v2"),
            &format!("oci:{}:v2", l2.display()),
        ],
    );
    assert_eq!(layout_blobs(&l1), layout_blobs(&l2));

    // podman pulls by digest into fresh storage.
    podman(&["rmi", "localhost/hello:1"]);
    podman(&[
        "pull",
        "--tls-verify=false",
        "--creds",
        &creds,
        &format!("{image}@{digest}"),
    ]);
    let labels = podman(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"tee.launch_policy.allow_cmd_override\"}}",
        &format!("{image}@{digest}"),
    ]);
    assert_eq!(String::from_utf8_lossy(&labels).trim(), "true");

    // The Rust oci-client crate, by tag and by digest.
    let rt = tokio::runtime::Runtime::new().unwrap();
    for reference in [format!("{image}:v1"), format!("{image}@{digest}")] {
        let pulled = rt.block_on(async {
            let client = oci_client::Client::try_from(oci_client::client::ClientConfig {
                protocol: oci_client::client::ClientProtocol::Http,
                ..Default::default()
            })
            .unwrap();
            let auth =
                oci_client::secrets::RegistryAuth::Basic("oauth2accesstoken".into(), token.clone());
            client
                .pull(
                    &reference.parse().unwrap(),
                    &auth,
                    vec![
                        oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE,
                        oci_client::manifest::IMAGE_LAYER_MEDIA_TYPE,
                    ],
                )
                .await
                .unwrap()
        });
        assert_eq!(pulled.digest.as_deref(), Some(digest), "{reference}");
        assert_eq!(pulled.layers.len(), 1);
    }

    let listed = alice(&[
        "artifacts",
        "docker",
        "images",
        "list",
        &format!("{host}/primus-bank/models"),
        "--format",
        "value(package,tags)",
    ]);
    assert!(listed.contains(&format!("{image}\tv1")), "{listed}");

    // Bob may not pull until he is a reader, and may not push once he is one.
    let bob_token = w
        .cli
        .ok(&["--profile", "bob", "auth", "print-access-token"])
        .trim()
        .to_owned();
    let bob = format!("oauth2accesstoken:{bob_token}");
    let err = fails(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &bob,
            &format!("docker://{image}:v1"),
        ],
    );
    assert!(
        err.to_lowercase().contains("denied") || err.contains("unauthorized"),
        "{err}"
    );
    alice(&[
        "artifacts",
        "repositories",
        "add-iam-policy-binding",
        "models",
        "--project",
        "primus-bank",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/artifactregistry.reader",
    ]);
    run(
        "skopeo",
        &[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &bob,
            &format!("docker://{image}:v1"),
        ],
    );
    let err = fails(
        "skopeo",
        &[
            "copy",
            "--dest-tls-verify=false",
            "--dest-creds",
            &bob,
            &format!("oci:{}:v2", l1.display()),
            &format!("docker://{image}:stolen"),
        ],
    );
    assert!(
        err.to_lowercase().contains("denied") || err.contains("unauthorized"),
        "{err}"
    );
}

#[test]
fn artifacts_push_packages_executables_that_run_from_their_image_alone() {
    let w = World::with_users(&[]);
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    alice(&[
        "artifacts",
        "repositories",
        "create",
        "workloads",
        "--project",
        "primus-bank",
    ]);
    let token = alice(&["auth", "print-access-token"]).trim().to_owned();
    let creds = format!("oauth2accesstoken:{token}");
    let host = w.server.endpoint().trim_start_matches("http://").to_owned();

    // A static executable (built here) and a dynamic one (from the system, with its libc).
    let src = w.dir.path().join("hello.c");
    std::fs::write(&src, "#include <stdio.h>\nint main(int c, char **v){printf(\"hello %s\\n\", c > 1 ? v[1] : \"nobody\");return 0;}\n").unwrap();
    let static_exe = w.dir.path().join("hello");
    run(
        "gcc",
        &[
            "-static",
            "-O1",
            "-o",
            static_exe.to_str().unwrap(),
            src.to_str().unwrap(),
        ],
    );
    let model = w.dir.path().join("model.onnx");
    std::fs::write(&model, b"weights").unwrap();

    for (exe, image, args) in [
        (static_exe.to_str().unwrap(), "hello", vec!["secundus"]),
        ("/bin/echo", "echo", vec!["from", "the", "image"]),
    ] {
        let reference = format!("{host}/primus-bank/workloads/{image}:v1");
        let model_file = format!("{}:/models/model.onnx", model.display());
        let mut push = vec![
            "artifacts",
            "push",
            &reference,
            "--executable",
            exe,
            "--file",
            &model_file,
            "--label",
            "tee.launch_policy.allow_cmd_override=true",
            "--env",
            "MODEL=/models/model.onnx",
        ];
        for a in &args {
            push.extend(["--cmd", a]);
        }
        let digest = alice(&push).trim().to_owned();
        assert!(digest.starts_with("sha256:"), "{digest}");
        // Deterministic: the same files give the same digest.
        assert_eq!(alice(&push).trim(), digest);

        let layout = w.dir.path().join(format!("{image}-layout"));
        run(
            "skopeo",
            &[
                "copy",
                "--src-tls-verify=false",
                "--src-creds",
                &creds,
                &format!("docker://{reference}"),
                &format!("oci:{}:v1", layout.display()),
            ],
        );
        let config: serde_json::Value = serde_json::from_slice(&run(
            "skopeo",
            &[
                "inspect",
                "--config",
                &format!("oci:{}:v1", layout.display()),
            ],
        ))
        .unwrap();
        assert_eq!(
            config["config"]["Labels"]["tee.launch_policy.allow_cmd_override"],
            "true"
        );
        assert!(
            config["config"]["Env"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!("MODEL=/models/model.onnx"))
        );
        let exe_name = Path::new(exe).file_name().unwrap().to_str().unwrap();
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!([format!("/usr/local/bin/{exe_name}")])
        );

        // Unpack the only layer and run the entrypoint inside it: nothing from the host.
        let manifest: serde_json::Value = serde_json::from_slice(&run(
            "skopeo",
            &["inspect", "--raw", &format!("oci:{}:v1", layout.display())],
        ))
        .unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1);
        let layer_hex = layers[0]["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let rootfs = w.dir.path().join(format!("{image}-rootfs"));
        std::fs::create_dir_all(&rootfs).unwrap();
        run(
            "tar",
            &[
                "-xf",
                layout
                    .join("blobs/sha256")
                    .join(layer_hex)
                    .to_str()
                    .unwrap(),
                "-C",
                rootfs.to_str().unwrap(),
            ],
        );
        assert_eq!(
            std::fs::read(rootfs.join("models/model.onnx")).unwrap(),
            b"weights"
        );
        let mut chroot = vec![
            rootfs.to_str().unwrap().to_owned(),
            format!("/usr/local/bin/{exe_name}"),
        ];
        chroot.extend(args.iter().map(|a| a.to_string()));
        let out = run(
            "chroot",
            &chroot.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let expected = if image == "hello" {
            "hello secundus\n".to_owned()
        } else {
            format!("{}\n", args.join(" "))
        };
        assert_eq!(String::from_utf8_lossy(&out), expected);
        let files = walk(&rootfs);
        if image == "hello" {
            assert_eq!(
                files,
                ["models/model.onnx", "usr/local/bin/hello"],
                "a static executable needs nothing else"
            );
        } else {
            assert!(files.iter().any(|f| f.ends_with("libc.so.6")), "{files:?}");
        }
    }

    let err = w.cli.fails(&[
        "--profile",
        "alice",
        "artifacts",
        "push",
        &format!("{host}/primus-bank/workloads/bad:v1"),
        "--executable",
        "/bin/true",
        "--file",
        &format!("{}:/models/../../etc/passwd", model.display()),
    ]);
    assert!(
        err.contains("not an absolute file path inside the image"),
        "{err}"
    );
}

fn walk(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// The codelab's `gcloud auth configure-docker` then `docker push`: Cloister is named as the
/// credential helper in Docker's config (other settings kept), and skopeo reads and pushes
/// with the profile's token through `docker-credential-cloister`, with no credentials given.
/// The helper hands a token only to its profile's own server.
#[test]
fn configure_docker_lets_registry_clients_sign_in_through_the_helper() {
    let w = World::with_users(&[]);
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    alice(&[
        "artifacts",
        "repositories",
        "create",
        "workloads",
        "--project",
        "primus-bank",
        "--repository-format",
        "docker",
        "--location",
        "us",
    ]);
    let host = w.server.endpoint().trim_start_matches("http://").to_owned();
    let image = format!("{host}/primus-bank/workloads/echo");
    alice(&[
        "artifacts",
        "push",
        &format!("{image}:v1"),
        "--executable",
        "/bin/echo",
    ]);

    let home = w.dir.path().join("home");
    let docker = home.join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        r#"{"psFormat": "table {{.ID}}"}"#,
    )
    .unwrap();
    let bin = w.dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(support::BIN, bin.join("docker-credential-cloister")).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let with_env = |program: &str, args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new(program)
            .args(args)
            .env("HOME", &home)
            .env("PATH", &path)
            .env("CLOISTER_CONFIG_DIR", &w.cli.config_dir)
            .env("CLOISTER_PROFILE", "alice")
            .env_remove("DOCKER_CONFIG")
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = with_env(support::BIN, &["auth", "configure-docker"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(docker.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["credHelpers"][&host], "cloister");
    assert_eq!(config["psFormat"], "table {{.ID}}");

    // skopeo, with no --creds: reads v1, pushes it as v2, reads v2.
    for args in [
        vec![
            "inspect".to_owned(),
            "--tls-verify=false".into(),
            format!("docker://{image}:v1"),
        ],
        vec![
            "copy".to_owned(),
            "--src-tls-verify=false".into(),
            "--dest-tls-verify=false".into(),
            format!("docker://{image}:v1"),
            format!("docker://{image}:v2"),
        ],
        vec![
            "inspect".to_owned(),
            "--tls-verify=false".into(),
            format!("docker://{image}:v2"),
        ],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = with_env("skopeo", &args, "");
        assert!(
            out.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Another registry mapped to the helper gets no token, only the reason.
    let helper = bin.join("docker-credential-cloister");
    let helper = helper.to_str().unwrap();
    let out = with_env(helper, &["get"], "https://registry.example.com");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("not registry.example.com") && !said.contains("Secret"),
        "{said}"
    );
    let out = with_env(helper, &["get"], &format!("http://{host}"));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["Username"], "oauth2accesstoken");
    assert_eq!(
        answer["Secret"].as_str().unwrap(),
        alice(&["auth", "print-access-token"]).trim()
    );
}
