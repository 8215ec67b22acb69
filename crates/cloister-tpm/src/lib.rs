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
/// The PCRs a VM's measured boot fills (UEFI firmware measures the kernel's PE image into
/// PCR 4; Linux's EFI stub measures the initrd into PCR 9). On the VM driver these, not PCR
/// 12, name the launcher: it is a file of the measured initrd.
pub const BOOT_PCRS: [u8; 2] = [4, 9];

/// The reference-value key of a VM's measured boot: SHA-256 of a domain separator and the
/// SHA-256 bank's PCR 4 and PCR 9, hex. The separator keeps it apart from launcher
/// measurements (PCR 12 values), which share the reference values' table.
pub fn boot_measurement(pcr4: &[u8], pcr9: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::new()
        .chain_update(b"cloister vm boot: pcr4, pcr9\0")
        .chain_update(pcr4)
        .chain_update(pcr9)
        .finalize();
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
pub mod identity;
pub mod quote;
#[cfg(feature = "tss")]
pub mod swtpm;
