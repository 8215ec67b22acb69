//! Drives the real `cloister` binary: a server on an ephemeral port with a temp data dir, and
//! CLI invocations with their own config directory.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

pub mod attestation;
pub mod instances;

pub const BIN: &str = env!("CARGO_BIN_EXE_cloister");

pub struct Server {
    child: Child,
    pub address: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts a server on `data_dir`; returns once it logs that it is listening.
    pub fn start(data_dir: &Path) -> Server {
        Self::try_start(data_dir, &[]).unwrap_or_else(|log| panic!("server did not start:\n{log}"))
    }

    /// Starts a server with extra flags, or returns its log if it exits before listening.
    pub fn try_start(data_dir: &Path, extra: &[&str]) -> Result<Server, String> {
        Self::try_start_env(data_dir, extra, &[])
    }

    /// Like `try_start`, with extra environment variables. The server accepts INSECURE
    /// evidence, which tests use where a vTPM is beside the point; `try_start_production`
    /// starts one that refuses it, as a server does unless told otherwise.
    pub fn try_start_env(
        data_dir: &Path,
        extra: &[&str],
        env: &[(String, String)],
    ) -> Result<Server, String> {
        let extra: Vec<&str> = std::iter::once("--allow-insecure-evidence")
            .chain(extra.iter().copied())
            .collect();
        Self::spawn(data_dir, &extra, env)
    }

    /// A server with only these flags: INSECURE evidence refused.
    pub fn try_start_production(data_dir: &Path, extra: &[&str]) -> Result<Server, String> {
        Self::spawn(data_dir, extra, &[])
    }

    fn spawn(data_dir: &Path, extra: &[&str], env: &[(String, String)]) -> Result<Server, String> {
        let mut child = Command::new(BIN)
            .args([
                "server",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
                "--data-dir",
            ])
            .arg(data_dir)
            .args(extra)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn cloister server");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let listening = line.contains("cloister server listening").then(|| {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap_or_default();
                    v["fields"]["address"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned()
                });
                // Logged before announced: whoever sees the address also sees the line.
                sink.lock().unwrap().push(line);
                if let Some(address) = listening {
                    let _ = tx.send(address);
                }
            }
        });
        // A generous bound only so a broken build fails instead of hanging CI.
        match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(address) => Ok(Server {
                child,
                address,
                log,
            }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                Err(log.lock().unwrap().join("\n"))
            }
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// SIGTERM, then wait: the server must shut down gracefully and exit 0.
    pub fn stop(mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(
            exit.success(),
            "server exited with {exit}: {}",
            self.log.lock().unwrap().join("\n")
        );
    }
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the server dies at once, mid-request, as in a crash.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The CLI with its own config directory (profiles, credentials, cached tokens).
pub struct Cli {
    pub config_dir: PathBuf,
}

impl Cli {
    pub fn new(config_dir: PathBuf) -> Self {
        Cli { config_dir }
    }

    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .args(args)
            .env("CLOISTER_CONFIG_DIR", &self.config_dir)
            .env_remove("CLOISTER_PROFILE")
            .output()
            .expect("run cloister")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "`cloister {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "`cloister {}` unexpectedly succeeded",
            args.join(" ")
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Points `profile` at `server`, creating it if needed (a restarted server listens on a
    /// new port).
    pub fn point(&self, profile: &str, server: &Server) {
        self.ok(&[
            "config",
            "profiles",
            "create",
            profile,
            "--endpoint",
            &server.endpoint(),
        ]);
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["--format", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("json output")
    }
}

/// Logs `profile` in to `server` with `credential`.
pub fn login(cli: &Cli, server: &Server, profile: &str, credential: &Path) {
    cli.point(profile, server);
    cli.ok(&[
        "--profile",
        profile,
        "auth",
        "login",
        "--credential-file",
        credential.to_str().unwrap(),
    ]);
}

/// A running server, the CLI, and users alice and bob with their own profiles (plus `admin`).
pub struct World {
    pub dir: tempfile::TempDir,
    pub server: Server,
    pub cli: Cli,
}

/// A fixed public URL: it is the token issuer, and must survive a restart on a new port.
pub const PUBLIC_URL: &str = "http://cloister.test";

impl World {
    /// Runs the CLI as `who`'s profile, expecting success; returns stdout.
    pub fn as_user<'a>(&'a self, who: &'a str) -> impl Fn(&[&str]) -> String + 'a {
        move |args: &[&str]| {
            let mut all = vec!["--profile", who];
            all.extend(args);
            self.cli.ok(&all)
        }
    }

    pub fn with_two_users() -> World {
        Self::with_users(&["--public-url", PUBLIC_URL])
    }

    /// Like `with_two_users`, with extra server flags.
    pub fn with_users(server_flags: &[&str]) -> World {
        Self::with_users_env(server_flags, &[])
    }

    /// Like `with_users`, with extra environment variables for the server.
    pub fn with_users_env(server_flags: &[&str], env: &[(String, String)]) -> World {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = Server::try_start_env(&data, server_flags, env)
            .unwrap_or_else(|log| panic!("server did not start:\n{log}"));
        let cli = Cli::new(dir.path().join("config"));
        login(
            &cli,
            &server,
            "admin",
            &data.join("bootstrap-admin-credential.json"),
        );
        for user in ["alice", "bob"] {
            let cred = dir.path().join(format!("{user}.json"));
            let email = format!("{user}@example.com");
            cli.ok(&[
                "--profile",
                "admin",
                "iam",
                "users",
                "create",
                &email,
                "--credential-file",
                cred.to_str().unwrap(),
            ]);
            login(&cli, &server, user, &cred);
        }
        World { dir, server, cli }
    }
}

/// The flags naming alice's KMS key of [`create_primus_kms_key`].
pub const PRIMUS_KEY: [&str; 6] = [
    "--key",
    "model-key",
    "--keyring",
    "primus-ring",
    "--project",
    "primus-bank",
];

/// As alice: the project primus-bank, its key ring primus-ring, and the ENCRYPT_DECRYPT key
/// model-key (named by [`PRIMUS_KEY`]).
pub fn create_primus_kms_key(w: &World) {
    let alice = w.as_user("alice");
    alice(&["projects", "create", "primus-bank"]);
    alice(&[
        "kms",
        "keyrings",
        "create",
        "primus-ring",
        "--project",
        "primus-bank",
        "--location",
        "global",
    ]);
    alice(
        &[
            &[
                "kms",
                "keys",
                "create",
                "model-key",
                "--purpose",
                "encryption",
            ][..],
            &PRIMUS_KEY[2..],
        ]
        .concat(),
    );
}

/// This crate's directory, read when the test runs (cargo sets it for `cargo test`), not when
/// it was compiled: a test binary built in another checkout must still read this checkout's
/// files.
pub fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            panic!("CARGO_MANIFEST_DIR is not set: run the tests with `cargo test`, which sets it")
        })
}
