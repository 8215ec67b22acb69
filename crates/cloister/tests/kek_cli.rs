//! `cloister server rotate-kek`: every key the key-encryption key protects is resealed under a
//! new one, so data encrypted before the rotation still decrypts and tokens issued before it
//! still work, while the old KEK no longer opens the store. Refused while a server runs on the
//! store, and with a KEK that is not the current one.

mod support;

use std::path::Path;

use support::{BIN, Cli, PRIMUS_KEY as KEY, PUBLIC_URL, Server, World};

/// Alice's KMS key, and a file it encrypted.
fn encrypt_with_kms(w: &World) -> std::path::PathBuf {
    support::create_primus_kms_key(w);
    let alice = w.as_user("alice");
    let plain = w.dir.path().join("dek.bin");
    let sealed = w.dir.path().join("dek.enc");
    std::fs::write(&plain, b"a data encryption key").unwrap();
    alice(
        &[
            &[
                "kms",
                "encrypt",
                "--plaintext-file",
                plain.to_str().unwrap(),
                "--ciphertext-file",
                sealed.to_str().unwrap(),
            ][..],
            &KEY[..],
        ]
        .concat(),
    );
    sealed
}

/// Points alice's profile at `server` (restarted on a new port) and decrypts `sealed`.
fn decrypt_with_kms(cli: &Cli, server: &Server, sealed: &Path) -> Vec<u8> {
    cli.point("alice", server);
    let back = sealed.with_extension("out");
    cli.ok(&[
        &[
            "--profile",
            "alice",
            "kms",
            "decrypt",
            "--ciphertext-file",
            sealed.to_str().unwrap(),
            "--plaintext-file",
            back.to_str().unwrap(),
        ][..],
        &KEY[..],
    ]
    .concat());
    std::fs::read(back).unwrap()
}

/// Runs `cloister server --data-dir DATA [flags] rotate-kek --new-kek-file NEW`.
fn rotate(data: &Path, flags: &[&str], new: &Path) -> Result<String, String> {
    let out = std::process::Command::new(BIN)
        .args(["server", "--data-dir"])
        .arg(data)
        .args(flags)
        .args(["rotate-kek", "--new-kek-file"])
        .arg(new)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

fn key_file(dir: &Path, name: &str, byte: u8) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, [byte; 32]).unwrap();
    path
}

#[test]
fn rotating_the_kek_keeps_every_key_and_retires_the_old_one() {
    let keys = tempfile::tempdir().unwrap();
    let old = key_file(keys.path(), "old-kek", 1);
    let new = key_file(keys.path(), "new-kek", 2);
    let wrong = key_file(keys.path(), "wrong-kek", 3);
    let with = |kek: &Path| {
        ["--public-url", PUBLIC_URL, "--kek-file"]
            .map(str::to_owned)
            .into_iter()
            .chain([kek.display().to_string()])
            .collect::<Vec<_>>()
    };
    let flags = with(&old);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let w = World::with_users(&flags);
    let sealed = encrypt_with_kms(&w);
    let token = w.as_user("alice")(&["auth", "print-access-token"]);
    let data = w.dir.path().join("data");
    let old_flag = ["--kek-file", old.to_str().unwrap()];

    let err = rotate(&data, &old_flag, &new).unwrap_err();
    assert!(err.contains("in use by another cloister server"), "{err}");
    w.server.stop();
    let err = rotate(&data, &["--kek-file", wrong.to_str().unwrap()], &new).unwrap_err();
    assert!(err.contains("not the one that sealed"), "{err}");
    let err = rotate(&data, &old_flag, &old).unwrap_err();
    assert!(err.contains("the one in use"), "{err}");
    let inside = key_file(&data, "kek-inside", 4);
    let err = rotate(&data, &old_flag, &inside).unwrap_err();
    assert!(err.contains("is inside the data directory"), "{err}");

    let done = rotate(&data, &old_flag, &new).unwrap();
    assert!(done.contains("Resealed"), "{done}");
    let old_flags = with(&old);
    let err = match Server::try_start(
        &data,
        &old_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    ) {
        Ok(_) => panic!("the old KEK still opens the store"),
        Err(log) => log,
    };
    assert!(err.contains("not the one that sealed"), "{err}");

    let new_flags = with(&new);
    let server = Server::try_start(
        &data,
        &new_flags.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .unwrap_or_else(|log| panic!("the new KEK did not open the store:\n{log}"));
    assert_eq!(
        decrypt_with_kms(&w.cli, &server, &sealed),
        b"a data encryption key",
        "KMS key material survived"
    );
    assert_eq!(
        w.cli
            .ok(&["--profile", "alice", "auth", "print-access-token"]),
        token,
        "the access token issued before still works"
    );
}

/// The embedded default keeps its KEK in the data directory; rotating moves it out.
#[test]
fn rotating_the_embedded_kek_moves_it_out_of_the_data_directory() {
    let w = World::with_users(&["--public-url", PUBLIC_URL]);
    let sealed = encrypt_with_kms(&w);
    let data = w.dir.path().join("data");
    let embedded = data.join("keys").join(cloister_services::EMBEDDED_KEK_FILE);
    assert!(embedded.exists());
    w.server.stop();
    let keys = tempfile::tempdir().unwrap();
    let new = key_file(keys.path(), "new-kek", 2);
    let done = rotate(&data, &[], &new).unwrap();
    assert!(
        done.contains("Removed the old key-encryption key"),
        "{done}"
    );
    assert!(
        !embedded.exists(),
        "the old KEK is gone from the data directory"
    );

    let err = match Server::try_start(&data, &["--public-url", PUBLIC_URL]) {
        Ok(_) => panic!("started without the KEK that sealed the store"),
        Err(log) => log,
    };
    assert!(err.contains("from outside the data directory"), "{err}");
    assert!(!embedded.exists(), "no new KEK was made beside the data");
    let server = Server::try_start(
        &data,
        &[
            "--public-url",
            PUBLIC_URL,
            "--kek-file",
            new.to_str().unwrap(),
        ],
    )
    .unwrap_or_else(|log| panic!("the new KEK did not open the store:\n{log}"));
    assert_eq!(
        decrypt_with_kms(&w.cli, &server, &sealed),
        b"a data encryption key"
    );
}
