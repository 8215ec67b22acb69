//! A real Garage S3 server for tests (`cargo install garage`; scripts/install-deps.sh does it):
//! one node on loopback ports in a temp dir, with a bucket and a key allowed on it.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Garage {
    child: Child,
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
    pub endpoint: String,
    pub bucket: String,
    pub key_id: String,
    pub secret: String,
}

impl Drop for Garage {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn garage(config: &Path, args: &[&str]) -> String {
    let out = Command::new("garage")
        .arg("-c")
        .arg(config)
        .args(args)
        .output()
        .expect("garage is installed (scripts/install-deps.sh: cargo install garage)");
    assert!(
        out.status.success(),
        "garage {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value after `label` on the line that has it (`Key ID: GK…`).
fn field(text: &str, label: &str) -> String {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(label))
        .map(|v| v.trim_start_matches(':').trim().to_owned())
        .unwrap_or_else(|| panic!("no {label:?} in garage's output:\n{text}"))
}

impl Garage {
    pub fn start() -> Garage {
        let dir = tempfile::tempdir().unwrap();
        let (s3, rpc, admin) = (free_port(), free_port(), free_port());
        let config = dir.path().join("garage.toml");
        let secret: String = (0..32).map(|i| format!("{:02x}", i * 7 + 3)).collect();
        std::fs::write(
            &config,
            format!(
                r#"metadata_dir = "{meta}"
data_dir = "{data}"
db_engine = "sqlite"
replication_factor = 1
# Blobs are mostly compressed model weights and layers: do not spend CPU recompressing them.
compression_level = "none"
rpc_bind_addr = "127.0.0.1:{rpc}"
rpc_public_addr = "127.0.0.1:{rpc}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "garage"
api_bind_addr = "127.0.0.1:{s3}"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:{admin}"
admin_token = "cloister-test-admin"
"#,
                meta = dir.path().join("meta").display(),
                data = dir.path().join("data").display(),
            ),
        )
        .unwrap();
        let child = Command::new("garage")
            .arg("-c")
            .arg(&config)
            .arg("server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("garage is installed (scripts/install-deps.sh: cargo install garage)");
        let mut g = Garage {
            child,
            config,
            _dir: dir,
            endpoint: format!("http://127.0.0.1:{s3}"),
            bucket: "cloister-blobs".into(),
            key_id: String::new(),
            secret: String::new(),
        };
        // Wait for the node to answer, then give it the whole (one-node) layout.
        let mut status = String::new();
        for _ in 0..200 {
            let out = Command::new("garage")
                .arg("-c")
                .arg(&g.config)
                .args(["status"])
                .output()
                .unwrap();
            if out.status.success() {
                status = String::from_utf8_lossy(&out.stdout).into_owned();
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let node = status
            .lines()
            .find_map(|l| {
                let id = l.split_whitespace().next()?;
                (id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| id.to_owned())
            })
            .unwrap_or_else(|| panic!("no node id in garage status:\n{status}"));
        garage(
            &g.config,
            &["layout", "assign", "-z", "dc1", "-c", "1G", &node],
        );
        garage(&g.config, &["layout", "apply", "--version", "1"]);
        let key = garage(&g.config, &["key", "create", "cloister"]);
        g.key_id = field(&key, "Key ID");
        g.secret = field(&key, "Secret key");
        garage(&g.config, &["bucket", "create", &g.bucket]);
        garage(
            &g.config,
            &[
                "bucket", "allow", "--read", "--write", "--owner", &g.bucket, "--key", "cloister",
            ],
        );
        g
    }

    /// The options `ObjectBlobStore::open` (or the server's environment) needs.
    pub fn options(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", &self.key_id),
            ("AWS_SECRET_ACCESS_KEY", &self.secret),
            ("AWS_REGION", "garage"),
            ("AWS_ALLOW_HTTP", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }
}
