//! A software TPM (swtpm) process: the vTPM of an instance on the local compute driver, and
//! of tests. One process per instance, with its own state directory, on loopback ports: the
//! local driver starts it inside the instance's platform network namespace (on fixed ports
//! there, [`Swtpm::start_on`]), where only that instance's launcher can reach it; tests start
//! it on free ports of the host's loopback ([`Swtpm::start`]).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum SwtpmError {
    #[error("cannot start swtpm ({0}); install it with `apt-get install swtpm swtpm-tools`")]
    Spawn(std::io::Error),
    #[error("swtpm did not start listening on 127.0.0.1:{port} within {waited:?}")]
    NotListening { port: u16, waited: Duration },
    #[error("swtpm did not create its control socket {path} within {waited:?}")]
    NoSocket { path: String, waited: Duration },
    #[error("no free pair of loopback ports for swtpm")]
    NoPorts,
}

pub struct Swtpm {
    child: Child,
    port: u16,
}

/// A swtpm serving only a control channel on a unix socket, the way QEMU's `-tpmdev
/// emulator` wants it (QEMU initializes it and hands TPM commands over that channel; swtpm's
/// `--server` cannot be combined with that). Only processes that may open the socket file
/// reach it: it is created 0600 in a directory of the platform's.
pub struct QemuSwtpm {
    child: Child,
}

impl QemuSwtpm {
    /// Starts swtpm on the TPM state in `state_dir` (a TPM the platform may already have
    /// provisioned through [`Swtpm`]: its seeds and NV persist) with its control channel at
    /// `ctrl`, and waits until the socket is there.
    pub fn start(state_dir: &Path, ctrl: &Path) -> Result<Self, SwtpmError> {
        let _ = std::fs::remove_file(ctrl);
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .args([
                "--ctrl",
                &format!("type=unixio,path={},mode=0600", ctrl.display()),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(SwtpmError::Spawn)?;
        let mut swtpm = QemuSwtpm { child };
        let waited = Duration::from_secs(10);
        let start = Instant::now();
        // The socket's existence, not a connection: the control channel is QEMU's alone.
        while !ctrl.exists() {
            if start.elapsed() > waited || swtpm.child.try_wait().ok().flatten().is_some() {
                let _ = swtpm.child.kill();
                return Err(SwtpmError::NoSocket {
                    path: ctrl.display().to_string(),
                    waited,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(swtpm)
    }
}

impl Drop for QemuSwtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two consecutive free loopback ports (the TCTI finds the control port at port + 1).
fn free_port_pair() -> Option<u16> {
    for _ in 0..50 {
        let first = TcpListener::bind("127.0.0.1:0").ok()?;
        let port = first.local_addr().ok()?.port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return Some(port);
        }
    }
    None
}

impl Swtpm {
    /// Starts swtpm with its state in `state_dir` (created if needed), TPM 2.0, already
    /// started up, and waits until it accepts connections.
    pub fn start(state_dir: &Path) -> Result<Self, SwtpmError> {
        let port = free_port_pair().ok_or(SwtpmError::NoPorts)?;
        Self::start_on(state_dir, port)
    }

    /// As [`Swtpm::start`], on `port` and `port + 1` of 127.0.0.1 in the calling thread's
    /// network namespace (swtpm inherits it, and the readiness check runs in it).
    pub fn start_on(state_dir: &Path, port: u16) -> Result<Self, SwtpmError> {
        std::fs::create_dir_all(state_dir).map_err(SwtpmError::Spawn)?;
        let ctrl = port.checked_add(1).ok_or(SwtpmError::NoPorts)?;
        let child = Command::new("swtpm")
            .arg("socket")
            .arg("--tpm2")
            .arg("--tpmstate")
            .arg(format!("dir={}", state_dir.display()))
            .args([
                "--server",
                &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
            ])
            .args([
                "--ctrl",
                &format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"),
            ])
            .args(["--flags", "not-need-init,startup-clear"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(SwtpmError::Spawn)?;
        let mut swtpm = Swtpm { child, port };
        // Bounded wait for the listening socket: a broken install must fail, not hang.
        let waited = Duration::from_secs(10);
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if start.elapsed() > waited || swtpm.child.try_wait().ok().flatten().is_some() {
                let _ = swtpm.child.kill();
                return Err(SwtpmError::NotListening { port, waited });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(swtpm)
    }

    /// The TCTI configuration string for tss-esapi.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
