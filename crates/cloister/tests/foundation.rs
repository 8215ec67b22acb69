//! The foundation story through the real binary: bootstrap admin, users, projects, IAM,
//! audit, restart, and the data directory lock.

mod support;

use support::{Cli, PUBLIC_URL, Server, World};

#[test]
fn a_user_is_refused_on_anothers_project_until_granted_viewer_then_can_read_but_not_change() {
    let w = World::with_two_users();
    let cli = &w.cli;
    cli.ok(&["--profile", "alice", "projects", "create", "alpha-proj"]);
    cli.ok(&["--profile", "bob", "projects", "create", "bravo-proj"]);
    let policy_before = cli.json(&[
        "--profile",
        "alice",
        "projects",
        "get-iam-policy",
        "alpha-proj",
    ]);

    // Refused, with the permission, the resource and what to do.
    let err = cli.fails(&["--profile", "bob", "projects", "describe", "alpha-proj"]);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    assert!(err.contains("resourcemanager.projects.get"), "{err}");
    assert!(err.contains("projects/alpha-proj"), "{err}");
    assert!(
        err.contains("cloister projects add-iam-policy-binding alpha-proj"),
        "{err}"
    );
    let err = cli.fails(&[
        "--profile",
        "bob",
        "projects",
        "add-iam-policy-binding",
        "alpha-proj",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/owner",
    ]);
    assert!(err.contains("PERMISSION_DENIED"), "{err}");
    let bob_list = cli.json(&["--profile", "bob", "projects", "list"]);
    assert_eq!(
        bob_list.as_array().unwrap().len(),
        1,
        "bob sees only his project: {bob_list}"
    );

    // No side effect, and the audit log says who was denied what and why.
    let policy_after = cli.json(&[
        "--profile",
        "alice",
        "projects",
        "get-iam-policy",
        "alpha-proj",
    ]);
    assert_eq!(policy_before, policy_after);
    let denials = cli.json(&[
        "--profile",
        "admin",
        "audit",
        "list",
        "--decision",
        "deny",
        "--principal",
        "user:bob@example.com",
    ]);
    let denials = denials.as_array().unwrap();
    assert_eq!(denials.len(), 2, "{denials:?}");
    assert_eq!(denials[0]["permission"], "resourcemanager.projects.get");
    assert_eq!(denials[0]["resource"], "projects/alpha-proj");
    assert!(
        denials[0]["reason"]
            .as_str()
            .unwrap()
            .contains("no role granting")
    );
    // add-iam-policy-binding reads the policy first, as gcloud does, and that read is refused.
    assert_eq!(
        denials[1]["permission"],
        "resourcemanager.projects.getIamPolicy"
    );

    // The owner grants viewer: bob can describe, but still not change.
    cli.ok(&[
        "--profile",
        "alice",
        "projects",
        "add-iam-policy-binding",
        "alpha-proj",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/viewer",
    ]);
    let number = cli.ok(&[
        "--profile",
        "bob",
        "projects",
        "describe",
        "alpha-proj",
        "--format",
        "value(projectNumber)",
    ]);
    assert_eq!(number.trim().len(), 12, "{number}");
    let err = cli.fails(&[
        "--profile",
        "bob",
        "projects",
        "add-iam-policy-binding",
        "alpha-proj",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/owner",
    ]);
    assert!(
        err.contains("resourcemanager.projects.setIamPolicy"),
        "{err}"
    );
    let policy = cli.json(&[
        "--profile",
        "bob",
        "projects",
        "get-iam-policy",
        "alpha-proj",
    ]);
    assert_eq!(
        policy["bindings"].as_array().unwrap().len(),
        2,
        "owner and viewer only: {policy}"
    );

    // Alice, as owner, reads her project's audit log; bob, a viewer, may not.
    let log = cli.json(&[
        "--profile",
        "alice",
        "audit",
        "list",
        "--project",
        "alpha-proj",
    ]);
    assert!(
        log.as_array()
            .unwrap()
            .iter()
            .any(|e| e["decision"] == "deny")
    );
    let err = cli.fails(&[
        "--profile",
        "bob",
        "audit",
        "list",
        "--project",
        "alpha-proj",
    ]);
    assert!(err.contains("logging.privateLogEntries.list"), "{err}");
    let err = cli.fails(&["--profile", "bob", "audit", "list"]);
    assert!(err.contains("not a platform admin"), "{err}");
}

#[test]
fn restarting_keeps_everything_and_a_second_server_on_the_same_data_dir_is_refused() {
    let w = World::with_two_users();
    let data = w.dir.path().join("data");
    let cli = &w.cli;
    cli.ok(&["--profile", "alice", "projects", "create", "alpha-proj"]);
    cli.ok(&[
        "--profile",
        "alice",
        "projects",
        "add-iam-policy-binding",
        "alpha-proj",
        "--member",
        "user:bob@example.com",
        "--role",
        "roles/viewer",
    ]);
    let described = cli.json(&["--profile", "alice", "projects", "describe", "alpha-proj"]);
    let token_before = cli.ok(&["--profile", "bob", "auth", "print-access-token"]);

    let err = match Server::try_start(&data, &[]) {
        Ok(_) => panic!("a second server opened the same data dir"),
        Err(log) => log,
    };
    assert!(
        err.contains("is in use by another cloister server"),
        "{err}"
    );

    let credential_before = std::fs::read(data.join("bootstrap-admin-credential.json")).unwrap();
    let World { dir, server, cli } = w;
    server.stop();
    let server = Server::try_start(&data, &["--public-url", PUBLIC_URL]).unwrap();
    for profile in ["admin", "alice", "bob"] {
        cli.point(profile, &server);
    }
    // The signing key persisted: a token issued before the restart still verifies.
    assert_eq!(
        cli.ok(&["--profile", "bob", "auth", "print-access-token"]),
        token_before
    );
    assert_eq!(
        cli.json(&["--profile", "bob", "projects", "describe", "alpha-proj"]),
        described
    );
    let users = cli.json(&["--profile", "admin", "iam", "users", "list"]);
    assert_eq!(users.as_array().unwrap().len(), 3);
    assert_eq!(
        std::fs::read(data.join("bootstrap-admin-credential.json")).unwrap(),
        credential_before,
        "no second bootstrap"
    );
    assert!(
        !server
            .log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("created the bootstrap"))
    );
    drop(dir);
}

#[test]
fn the_bootstrap_credential_is_private_and_its_value_never_logged() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    let path = data.join("bootstrap-admin-credential.json");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The embedded default keeps its KEK in the data directory, private; the keys it seals
    // live in the database.
    assert_eq!(
        std::fs::metadata(data.join("keys/kms-kek.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert!(!data.join("keys/access-token-hmac.key").exists());
    let cred: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let secret = cred["client_secret"].as_str().unwrap();
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains(path.to_str().unwrap()),
        "the path is logged: {log}"
    );
    assert!(!log.contains(secret), "the secret is not");
}

#[test]
fn cli_errors_name_the_problem_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::new(dir.path().join("config"));
    let err = cli.fails(&["projects", "list"]);
    assert!(err.contains("no profile is active"), "{err}");
    cli.ok(&[
        "config",
        "profiles",
        "create",
        "nowhere",
        "--endpoint",
        "http://127.0.0.1:9",
    ]);
    let err = cli.fails(&["projects", "list"]);
    assert!(err.contains("has no credential"), "{err}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{}").unwrap();
    let err = cli.fails(&["auth", "login", "--credential-file", bad.to_str().unwrap()]);
    assert!(err.contains("not a Cloister credential file"), "{err}");
    let err = cli.fails(&["projects", "list", "--format", "tabel(name)"]);
    assert!(err.contains("unknown format"), "{err}");
}

#[test]
fn a_bad_server_config_is_refused_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.toml");
    let refused = |toml: &str, flags: &[&str]| {
        std::fs::write(&config, toml).unwrap();
        let out = std::process::Command::new(support::BIN)
            .args(["server", "--config", config.to_str().unwrap(), "--data-dir"])
            .arg(dir.path().join("d"))
            .args(flags)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{toml} {flags:?} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = refused("listen = \"127.0.0.1:0\"\nbogus = 1\n", &[]);
    assert!(
        err.contains("server.toml") && err.contains("bogus"),
        "{err}"
    );
    // A lease shorter than a few renewals would end instances of a replica that is merely
    // slow: refused from the file and from the command line.
    let err = refused("listen = \"127.0.0.1:0\"\nreplica_lease_secs = 2\n", &[]);
    assert!(err.contains("replica_lease_secs = 2"), "{err}");
    let err = refused(
        "listen = \"127.0.0.1:0\"\n",
        &["--replica-lease-secs", "4000"],
    );
    assert!(err.contains("--replica-lease-secs"), "{err}");
    // A pool of no database connections could serve nothing.
    let err = refused("listen = \"127.0.0.1:0\"\ndatabase_connections = 0\n", &[]);
    assert!(err.contains("database_connections = 0"), "{err}");
    let err = refused(
        "listen = \"127.0.0.1:0\"\n",
        &["--database-connections", "0"],
    );
    assert!(err.contains("--database-connections"), "{err}");
    // An object limit of 0 would refuse every upload.
    let err = refused("listen = \"127.0.0.1:0\"\nmax_object_bytes = 0\n", &[]);
    assert!(err.contains("max_object_bytes = 0"), "{err}");
    let err = refused("listen = \"127.0.0.1:0\"\n", &["--max-object-bytes", "0"]);
    assert!(err.contains("--max-object-bytes"), "{err}");
    let err = refused(
        "listen = \"127.0.0.1:0\"\n",
        &["--project-storage-quota-bytes", "lots"],
    );
    assert!(err.contains("--project-storage-quota-bytes"), "{err}");
}

/// The key-encryption key comes from outside the data directory: a KEK file inside it is
/// refused, the signing keys and access-token key move into the database sealed by the KEK,
/// and a restart with another KEK is refused rather than sealing new keys no replica could
/// open. With the right KEK, tokens issued before the restart still verify.
#[test]
fn the_kek_comes_from_outside_and_a_wrong_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let inside = data.join("kek");
    std::fs::write(&inside, [9u8; 32]).unwrap();
    let err = match Server::try_start(&data, &["--kek-file", inside.to_str().unwrap()]) {
        Ok(_) => panic!("a KEK inside the data directory was accepted"),
        Err(log) => log,
    };
    assert!(err.contains("is inside the data directory"), "{err}");

    let kek = dir.path().join("kek.b64");
    std::fs::write(&kek, "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\n").unwrap();
    let flags = [
        "--public-url",
        PUBLIC_URL,
        "--kek-file",
        kek.to_str().unwrap(),
    ];
    let server = Server::try_start(&data, &flags).unwrap();
    let cli = Cli::new(dir.path().join("config"));
    support::login(
        &cli,
        &server,
        "admin",
        &data.join("bootstrap-admin-credential.json"),
    );
    let token_before = cli.ok(&["--profile", "admin", "auth", "print-access-token"]);
    assert!(
        !data.join("keys/kms-kek.key").exists(),
        "no KEK beside the data"
    );
    assert!(
        !data.join("keys/access-token-hmac.key").exists()
            && !data.join("keys/identity-ca/key.pem").exists()
            && std::fs::read_dir(data.join("keys/attestation")).map_or(true, |d| d.count() == 0),
        "no clear key files in the data directory"
    );
    server.stop();

    let wrong = dir.path().join("wrong-kek");
    std::fs::write(&wrong, [2u8; 32]).unwrap();
    let err = match Server::try_start(&data, &["--kek-file", wrong.to_str().unwrap()]) {
        Ok(_) => panic!("a second KEK was accepted"),
        Err(log) => log,
    };
    assert!(err.contains("not the one that sealed"), "{err}");

    let server = Server::try_start(&data, &flags).unwrap();
    cli.point("admin", &server);
    assert_eq!(
        cli.ok(&["--profile", "admin", "auth", "print-access-token"]),
        token_before
    );
    cli.ok(&["--profile", "admin", "iam", "users", "list"]);
}
