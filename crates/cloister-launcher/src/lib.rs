//! The launcher (`cloister launcher`): runs inside the instance, turns the operator's launch
//! spec and the image into a measured, attested container run by runc.
//!
//! Order matters and is the security argument: the spec (`spec.rs`) and the image
//! (`pull.rs`, by digest, every blob verified) are read; the image's launch policy
//! (`policy.rs`) is enforced; layers are unpacked without escaping the rootfs (`unpack.rs`);
//! the process is fixed (`bundle.rs`) and every part of it measured (`attest.rs`) before the
//! separator; the first token must be obtained before anything runs; then runc starts the
//! container, the token is refreshed, and the teeserver (`teeserver.rs`) answers the workload.

pub mod attest;
pub mod bundle;
pub mod metadata;
pub mod policy;
pub mod pull;
pub mod rtmr;
mod run;
mod seccomp;
pub mod signatures;
pub mod spec;
pub mod teeserver;
pub mod tsm;
pub mod unpack;

use std::path::PathBuf;

pub use run::{Config, TeeConfig, run};

use attest::{Measurements, TokenOptions, Verifier};
use metadata::Metadata;

/// Confidential Space's launcher exit codes.
pub mod exit {
    pub const SUCCESS: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const PANIC: u8 = 2;
    pub const REBOOT: u8 = 3;
    pub const HOLD: u8 = 4;
}

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("invalid launch spec: {0}")]
    Spec(String),
    #[error("launch policy: {0}")]
    Policy(String),
    #[error("metadata server: {0}")]
    Metadata(String),
    #[error("pulling the image: {0}")]
    Pull(String),
    #[error("unpacking the image: {0}")]
    Unpack(String),
    #[error("attestation: {0}")]
    Attest(String),
    /// The verifier refused the request (a 4xx): the request, not the platform, must change.
    #[error("the verifier refused the request: {0}")]
    Refused(String),
    #[error("{0}")]
    Io(String),
    #[error("running the container: {0}")]
    Runtime(String),
}

/// Everything needed to produce tokens: the measurements (and TEE), the verifier, the
/// instance's metadata server.
pub struct Attestation {
    pub measurements: Measurements,
    pub verifier: Verifier,
    pub metadata: Metadata,
    pub launcher_dir: PathBuf,
}

impl Attestation {
    pub async fn token(&mut self, options: &TokenOptions) -> Result<String, LaunchError> {
        self.verifier
            .attest(&mut self.measurements, &self.metadata, options)
            .await
    }
}
