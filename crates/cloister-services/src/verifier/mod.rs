//! The attestation verifier (Confidential Computing API shapes): challenges,
//! `verifyAttestation`, attestation tokens with Confidential Space's claims, and the
//! reference values of trusted launcher builds.
//!
//! Evidence kinds: `VTPM` (a TPM quote by an attestation key the instance identity CA
//! certified, over PCR 12 = the launcher measurement and PCR 13 = the replayed canonical
//! event log) and `INSECURE` (the canonical event log alone, for tests and laptops; its tokens
//! say so), and `SEV_SNP` (`snp.rs`: an AMD report verified against AMD's pinned roots, its
//! REPORT_DATA binding the challenge nonce and the event log, its launch measurement a
//! reference value), and `TDX` (`tdx.rs`: a DCAP quote verified against Intel's pinned root
//! with offline collateral, REPORT_DATA binding the nonce and the log, RTMR3 the replayed log,
//! MRTD and RTMR0–2 a reference value).

pub mod challenges;
pub mod claims;
mod evidence;
mod hardware;
pub mod identity_ca;
pub mod pki;
pub mod reference_values;
pub mod signatures;
pub mod signing_keys;
pub mod snp;
pub mod tdx;
#[cfg(test)]
mod test_support;
pub mod token_types;

/// How long a challenge may wait for its evidence.
pub const CHALLENGE_LIFETIME_SECS: i64 = 600;
/// Attestation tokens live an hour, as Confidential Space's do.
pub const TOKEN_LIFETIME_SECS: i64 = 3600;
/// The audience of a token when the caller asks for none: Google's STS.
pub const DEFAULT_AUDIENCE: &str = "https://sts.googleapis.com";
