//! A real PostgreSQL server for tests (Debian's `postgresql` package; `scripts/install-deps.sh
//! --test-servers` installs it): one per test process, on a loopback port in its own
//! directory, with a fresh database for each test.
//!
//! The server is started by a thread that lives as long as the process, with a parent-death
//! signal, so it goes away with the test process however that ends.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Where test servers keep their data: `ROOT/PID`, removed by the next run once PID is gone.
const ROOT: &str = "/tmp/cloister-test-postgres";
const USER: &str = "cloister";

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    /// The CA that signed the server's certificate (for 127.0.0.1 and localhost).
    pub ca: PathBuf,
}

/// A role that may only connect over TLS (`pg_hba.conf`), to prove a connection used it.
pub const TLS_ONLY_USER: &str = "tls_only";

/// Debian installs each major version's programs in `/usr/lib/postgresql/VERSION/bin`.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (scripts/install-deps.sh --test-servers)")
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .expect("a PostgreSQL version in /usr/lib/postgresql")
        .1
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// `program args…`, as the `postgres` user when we are root (PostgreSQL refuses to run as root).
fn command(program: &Path, pdeathsig: bool) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]);
        if pdeathsig {
            c.args(["--pdeathsig", "QUIT"]);
        }
        c.arg("--").arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Removes the directories of earlier runs whose process has ended.
fn sweep_old_runs() {
    let Ok(entries) = std::fs::read_dir(ROOT) else {
        return;
    };
    for e in entries.flatten() {
        let alive = e
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A CA and a server certificate it signed (for 127.0.0.1 and localhost), made with the
/// `openssl` command (ca-certificates depends on it); the server's files go in `data`.
/// Returns the CA certificate's path.
fn certificates(dir: &Path, data: &Path) -> PathBuf {
    let openssl = |args: &[&str]| {
        let mut c = Command::new("openssl");
        c.args(args).current_dir(dir);
        run(c, "openssl");
    };
    let key = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    openssl(
        &[
            &["req", "-x509"],
            &key[..],
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=cloister test CA",
            ],
        ]
        .concat(),
    );
    openssl(
        &[
            &["req"],
            &key[..],
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=127.0.0.1",
            ],
        ]
        .concat(),
    );
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    for file in ["server.crt", "server.key"] {
        std::fs::copy(dir.join(file), data.join(file)).unwrap();
    }
    if is_root() {
        let mut chown = Command::new("chown");
        chown
            .arg("postgres:postgres")
            .arg(data.join("server.crt"))
            .arg(data.join("server.key"));
        run(chown, "chown");
    }
    let mut chmod = Command::new("chmod");
    chmod.arg("600").arg(data.join("server.key"));
    run(chmod, "chmod");
    dir.join("ca.crt")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Postgres {
    /// This process's server, started on first use.
    pub fn shared() -> &'static Postgres {
        static SERVER: OnceLock<Postgres> = OnceLock::new();
        SERVER.get_or_init(Postgres::start)
    }

    fn start() -> Postgres {
        sweep_old_runs();
        let bin = bin_dir();
        let dir = Path::new(ROOT).join(std::process::id().to_string());
        std::fs::create_dir_all(&dir).unwrap();
        if is_root() {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", "postgres:postgres", ROOT]);
                    c
                },
                "chown",
            );
        }
        let data = dir.join("data");
        let mut initdb = command(&bin.join("initdb"), false);
        initdb
            .arg("-D")
            .arg(&data)
            .args(["-U", USER, "-A", "trust", "-E", "UTF8", "--no-sync"]);
        run(initdb, "initdb");
        let ca = certificates(&dir, &data);
        // The TLS-only role is refused on a plain connection, before every other rule.
        let hba = data.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).unwrap();
        std::fs::write(
            &hba,
            format!(
                "hostnossl all {TLS_ONLY_USER} 127.0.0.1/32 reject\n\
                 hostssl all {TLS_ONLY_USER} 127.0.0.1/32 trust\n{rules}"
            ),
        )
        .unwrap();
        let port = free_port();
        let mut server = command(&bin.join("postgres"), true);
        server
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(&dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=400",
                // A test server: its own durability is not under test.
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "ssl=on",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The thread that starts the server waits on it for the rest of the process's life:
        // the parent-death signal is tied to this thread.
        let (started, ready) = std::sync::mpsc::channel();
        std::thread::spawn(move || match server.spawn() {
            Ok(mut child) => {
                let _ = started.send(Ok(()));
                let _ = child.wait();
                std::thread::park();
            }
            Err(e) => {
                let _ = started.send(Err(e.to_string()));
            }
        });
        if let Ok(Err(e)) = ready.recv() {
            panic!("starting postgres: {e}");
        }
        let pg = Postgres { port, bin, ca };
        for _ in 0..300 {
            let ok = Command::new(pg.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", USER])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return pg;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("postgres did not accept connections on port {port}");
    }

    /// A fresh, empty database on the shared server; its URL.
    pub fn database() -> String {
        let (pg, name) = Postgres::create(USER);
        format!("postgres://{USER}@127.0.0.1:{}/{name}", pg.port)
    }

    /// A fresh database owned by the TLS-only role; its URL without TLS parameters.
    pub fn tls_only_database() -> String {
        static ROLE: OnceLock<()> = OnceLock::new();
        let pg = Postgres::shared();
        ROLE.get_or_init(|| pg.client("createuser", &[TLS_ONLY_USER]));
        let (pg, name) = Postgres::create(TLS_ONLY_USER);
        format!("postgres://{TLS_ONLY_USER}@127.0.0.1:{}/{name}", pg.port)
    }

    /// Runs one of PostgreSQL's client programs against this server as the superuser.
    fn client(&self, program: &str, args: &[&str]) {
        let mut c = Command::new(self.bin.join(program));
        c.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args(args);
        run(c, program);
    }

    fn create(owner: &str) -> (&'static Postgres, String) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let pg = Postgres::shared();
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        pg.client("createdb", &["-O", owner, &name]);
        (pg, name)
    }
}
