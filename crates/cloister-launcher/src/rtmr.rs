//! Extending TDX's RTMR3 from a guest: Linux (6.16 and later) exposes the TD's runtime
//! measurement registers under the `tdx_guest` device; writing a 48-byte SHA-384 digest to
//! `rtmr3:sha384` extends the register with it (`RTMR3 = SHA-384(RTMR3 || digest)`), as
//! replaying the canonical event log will.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::LaunchError;

pub const RTMR3_SYSFS: &str = "/sys/class/misc/tdx_guest/measurements/rtmr3:sha384";

pub struct Rtmr3 {
    path: PathBuf,
}

impl Rtmr3 {
    /// The register at `path` (normally [`RTMR3_SYSFS`]); its absence is an error, never a
    /// reason to skip measuring.
    pub fn open(path: &Path) -> Result<Self, LaunchError> {
        if !path.exists() {
            return Err(LaunchError::Attest(format!(
                "this TD's kernel offers no RTMR3 extension at {} (it needs Linux 6.16 or later with the tdx_guest driver): container events cannot be measured",
                path.display()
            )));
        }
        Ok(Rtmr3 {
            path: path.to_owned(),
        })
    }

    /// Extends RTMR3 with `digest` (one write of exactly 48 bytes, at offset 0, as the
    /// attribute takes it).
    pub fn extend(&self, digest: &[u8]) -> Result<(), LaunchError> {
        if digest.len() != 48 {
            return Err(LaunchError::Attest(format!(
                "RTMR3 takes SHA-384 digests (48 bytes), not {} bytes",
                digest.len()
            )));
        }
        let err = |e: std::io::Error| {
            LaunchError::Attest(format!("extending RTMR3 at {}: {e}", self.path.display()))
        };
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(err)?;
        f.write_all(digest).map_err(err)
    }
}
