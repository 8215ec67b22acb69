//! How a hardware report binds one attestation: its 64-byte REPORT_DATA is a hash of the
//! challenge nonce, the canonical event log and, where the guest has the platform's vTPM, the
//! AK certificate that names its instance. The launcher asks the hardware for it and the
//! verifier recomputes it, so a report made for another challenge, another log or another
//! instance is refused.

use sha2::{Digest, Sha256, Sha512};

/// The hardware a binding is made for. Each has its own domain separator, so a binding made
/// for one kind of report never passes as another kind's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportKind {
    SevSnp,
    Tdx,
}

impl ReportKind {
    /// With an AK certificate, another separator: a binding that names an instance never
    /// passes for one that does not, nor the reverse.
    fn domain(self, names_instance: bool) -> &'static [u8] {
        match (self, names_instance) {
            (ReportKind::SevSnp, false) => b"cloister-snp-report-data-v1\0",
            (ReportKind::SevSnp, true) => b"cloister-snp-instance-report-data-v1\0",
            (ReportKind::Tdx, false) => b"cloister-tdx-report-data-v1\0",
            (ReportKind::Tdx, true) => b"cloister-tdx-instance-report-data-v1\0",
        }
    }
}

/// REPORT_DATA: SHA-512 over the domain separator, the nonce, the SHA-256 of the encoded
/// event log and, when given, the SHA-256 of the instance's AK certificate (DER). (On TDX,
/// RTMR3 also proves the log; binding it here too costs nothing and keeps one rule for every
/// report.) The nonce is the only part of varying length; what follows it is fixed in size for
/// the domain, so no two different inputs hash the same bytes.
pub fn report_data(
    kind: ReportKind,
    nonce: &[u8],
    event_log: &[u8],
    ak_cert: Option<&[u8]>,
) -> [u8; 64] {
    let mut h = Sha512::new();
    h.update(kind.domain(ak_cert.is_some()));
    h.update(nonce);
    h.update(Sha256::digest(event_log));
    if let Some(cert) = ak_cert {
        h.update(Sha256::digest(cert));
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_binds_the_kind_the_nonce_the_log_and_the_instance() {
        let base = report_data(ReportKind::SevSnp, b"nonce-1", b"log", None);
        let a = Some(&b"ak certificate of instance a"[..]);
        let b = Some(&b"ak certificate of instance b"[..]);
        let differs = [
            report_data(ReportKind::SevSnp, b"nonce-2", b"log", None),
            report_data(ReportKind::SevSnp, b"nonce-1", b"log2", None),
            report_data(ReportKind::Tdx, b"nonce-1", b"log", None),
            report_data(ReportKind::SevSnp, b"nonce-1", b"log", a),
            report_data(ReportKind::Tdx, b"nonce-1", b"log", a),
        ];
        for other in differs {
            assert_ne!(base, other);
        }
        assert_eq!(
            base,
            report_data(ReportKind::SevSnp, b"nonce-1", b"log", None)
        );
        let with_a = report_data(ReportKind::SevSnp, b"nonce-1", b"log", a);
        assert_ne!(
            with_a,
            report_data(ReportKind::SevSnp, b"nonce-1", b"log", b)
        );
        assert_eq!(
            with_a,
            report_data(ReportKind::SevSnp, b"nonce-1", b"log", a)
        );
    }
}
