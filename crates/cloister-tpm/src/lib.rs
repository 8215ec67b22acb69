//! vTPM evidence for Cloister's verifier and launcher.
//!
//! - [`quote`]: TPM 2.0 quotes (`TPMS_ATTEST` + `TPMT_SIGNATURE`) parsed and verified in pure
//!   Rust: signature by the attestation key, qualifying data = the challenge nonce, PCR
//!   digest = the PCR values presented.
//! - [`identity`]: the instance identity CA: it certifies an instance's attestation key and
//!   puts the instance's identity (project, zone, name, id) in the certificate, so the
//!   verifier takes `gce` claims from a certificate it can check, never from the operator.
//! - `attester` (feature `tss`): creates the AK, extends PCRs and quotes, through tss-esapi
//!   against any TCTI (swtpm locally).
//!
//! Invariant: the verification half does no I/O; only the attester talks to a device.

#[cfg(feature = "tss")]
pub mod attester;

/// The PCR into which the platform measures the launcher binary (SHA-256 of the file) before
/// starting it; its value in the SHA-256 bank is the launcher measurement that reference
/// values name. PCR 13 holds the container events (`cloister_eventlog::COS_EVENT_PCR`).
pub const LAUNCHER_PCR: u8 = 12;
pub mod identity;
pub mod quote;
#[cfg(feature = "tss")]
pub mod swtpm;
