//! How a hardware report binds one attestation: its 64-byte REPORT_DATA is a hash of the
//! challenge nonce and the canonical event log. The launcher asks the hardware for it and the
//! verifier recomputes it, so a report made for another challenge or another log is refused.

use sha2::{Digest, Sha256, Sha512};

/// The hardware a binding is made for. Each has its own domain separator, so a binding made
/// for one kind of report never passes as another kind's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    SevSnp,
    Tdx,
}

impl ReportKind {
    fn domain(self) -> &'static [u8] {
        match self {
            ReportKind::SevSnp => b"cloister-snp-report-data-v1\0",
            ReportKind::Tdx => b"cloister-tdx-report-data-v1\0",
        }
    }
}

/// REPORT_DATA: SHA-512 over the domain separator, the nonce and the SHA-256 of the encoded
/// event log. (On TDX, RTMR3 also proves the log; binding it here too costs nothing and keeps
/// one rule for every report.)
pub fn report_data(kind: ReportKind, nonce: &[u8], event_log: &[u8]) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(kind.domain());
    h.update(nonce);
    h.update(Sha256::digest(event_log));
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_binds_the_kind_the_nonce_and_the_log() {
        let base = report_data(ReportKind::SevSnp, b"nonce-1", b"log");
        assert_ne!(base, report_data(ReportKind::SevSnp, b"nonce-2", b"log"));
        assert_ne!(base, report_data(ReportKind::SevSnp, b"nonce-1", b"log2"));
        assert_ne!(base, report_data(ReportKind::Tdx, b"nonce-1", b"log"));
        assert_eq!(base, report_data(ReportKind::SevSnp, b"nonce-1", b"log"));
    }
}
