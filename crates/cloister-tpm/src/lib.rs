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
pub mod identity;
pub mod quote;
#[cfg(feature = "tss")]
pub mod swtpm;
