//! AMD SEV-SNP evidence verification, in pure Rust, against AMD's pinned roots (never fetched).
//!
//! [`verify`] checks, in order: the report's shape; that the VCEK (or VLEK) chains to a pinned
//! ASK (ASVK) and ARK of some product line, every certificate valid at the given time; that the
//! certificate's TCB extensions equal the report's `reported_tcb` and (for a VCEK) its hwID
//! equals the report's chip id; the report's ECDSA P-384 signature. [`Policy::check`] then
//! applies what a relying party requires (debug off, VMPL 0, a minimum TCB, a measurement).
//! Only verified facts reach [`Verified`].

pub mod azure;
pub mod cert_table;
pub mod chain;
pub mod launch;
pub mod report;

use p384::ecdsa::signature::Verifier as _;
use serde::Serialize;
use time::OffsetDateTime;

use chain::{Roots, hw_id, parse, signed_by, spl, valid_at};
pub use report::{Product, Report, SigningKey, Tcb};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnpError {
    /// The input is not usable evidence (wrong size, unparsable certificate…).
    #[error("unusable evidence: {0}")]
    Malformed(String),
    /// The evidence was understood and is refused.
    #[error("refused: {0}")]
    Refused(String),
}

/// What verified SNP evidence establishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub product: Product,
    pub signing_key: SigningKey,
    pub version: u32,
    pub vmpl: u32,
    pub debug: bool,
    pub guest_svn: u32,
    pub measurement: String,
    pub report_data: String,
    pub host_data: String,
    pub reported_tcb: Tcb,
    pub chip_id: String,
}

fn refuse(m: impl Into<String>) -> SnpError {
    SnpError::Refused(m.into())
}

/// Verifies `report` (1184 bytes) with its VCEK or VLEK (DER) at time `now`.
pub fn verify(report: &[u8], cert_der: &[u8], now: OffsetDateTime) -> Result<Verified, SnpError> {
    let report = Report::parse(report)?;
    if report.sig_algo != 1 {
        return Err(refuse(format!(
            "signature algorithm {} is not ECDSA P-384 with SHA-384 (1)",
            report.sig_algo
        )));
    }
    if report.mask_chip_key() {
        return Err(refuse("the chip key is masked: the report is not signed"));
    }
    let signing_key = report.signing_key()?;
    let cert = parse(cert_der, "VCEK/VLEK")?;

    // Which pinned chain signed this certificate: the report's CPUID says, when it has one.
    let candidates: Vec<Product> = match report.product() {
        Some(p) => vec![p],
        None => Product::ALL.to_vec(),
    };
    let mut chained = None;
    for product in candidates {
        let roots = Roots::pinned(product);
        let issuer_der = match signing_key {
            SigningKey::Vcek => &roots.ask,
            SigningKey::Vlek => &roots.asvk,
        };
        let issuer = parse(issuer_der, "pinned ASK/ASVK")?;
        if signed_by(&cert, &issuer) {
            chained = Some((product, roots));
            break;
        }
    }
    let what = match signing_key {
        SigningKey::Vcek => "VCEK",
        SigningKey::Vlek => "VLEK",
    };
    let Some((product, roots)) = chained else {
        return Err(refuse(format!(
            "the {what} is not signed by AMD's pinned {} for this product line",
            if signing_key == SigningKey::Vcek {
                "ASK"
            } else {
                "ASVK"
            }
        )));
    };
    let ark = parse(&roots.ark, "pinned ARK")?;
    let issuer_der = if signing_key == SigningKey::Vcek {
        &roots.ask
    } else {
        &roots.asvk
    };
    let issuer = parse(issuer_der, "pinned ASK/ASVK")?;
    if !signed_by(&ark, &ark) || !signed_by(&issuer, &ark) {
        return Err(refuse("the pinned AMD chain does not verify"));
    }
    valid_at(&ark, "ARK", now)?;
    valid_at(&issuer, "ASK/ASVK", now)?;
    valid_at(&cert, what, now)?;

    // The certificate vouches for one TCB (and, for a VCEK, one chip): the report's.
    let tcb = Tcb::decode(report.reported_tcb, product);
    let pairs = [
        ("blSPL", "3.1", tcb.bootloader),
        ("teeSPL", "3.2", tcb.tee),
        ("snpSPL", "3.3", tcb.snp),
        ("ucodeSPL", "3.8", tcb.microcode),
    ];
    for (name, suffix, reported) in pairs {
        match spl(&cert, suffix) {
            Some(v) if v == u64::from(reported) => {}
            Some(v) => {
                return Err(refuse(format!(
                    "the {what}'s {name} is {v}, the report's reported_tcb says {reported}"
                )));
            }
            None => {
                return Err(SnpError::Malformed(format!(
                    "the {what} has no {name} extension"
                )));
            }
        }
    }
    if let Some(fmc) = tcb.fmc
        && spl(&cert, "3.9").is_some_and(|v| v != u64::from(fmc))
    {
        return Err(refuse(format!(
            "the {what}'s fmcSPL does not match the report's ({fmc})"
        )));
    }
    if signing_key == SigningKey::Vcek {
        let hw = hw_id(&cert)
            .ok_or_else(|| SnpError::Malformed("the VCEK has no hwID extension".into()))?;
        if hw.is_empty() || report.chip_id.get(..hw.len()) != Some(hw) {
            return Err(refuse(
                "the report's chip id is not the VCEK's hwID: this VCEK belongs to another chip",
            ));
        }
    }

    // The report's signature: R and S little-endian, 72 bytes each, the upper 24 zero.
    let scalar = |le: &[u8; 72]| -> Result<p384::FieldBytes, SnpError> {
        if le[48..].iter().any(|b| *b != 0) {
            return Err(refuse(
                "the signature is not a P-384 signature (non-zero padding)",
            ));
        }
        let mut be = [0u8; 48];
        for (i, b) in le[..48].iter().enumerate() {
            be[47 - i] = *b;
        }
        Ok(be.into())
    };
    let signature = p384::ecdsa::Signature::from_scalars(
        scalar(&report.signature_r)?,
        scalar(&report.signature_s)?,
    )
    .map_err(|_| refuse("the report's signature is not a valid P-384 signature"))?;
    let key =
        p384::ecdsa::VerifyingKey::from_sec1_bytes(&cert.public_key().subject_public_key.data)
            .map_err(|_| SnpError::Malformed(format!("the {what}'s key is not a P-384 key")))?;
    key.verify(&report.bytes[..report::SIGNED_LEN], &signature)
        .map_err(|_| {
            refuse(format!(
                "the report's signature does not verify with the {what}"
            ))
        })?;

    Ok(Verified {
        product,
        signing_key,
        version: report.version,
        vmpl: report.vmpl,
        debug: report.debug(),
        guest_svn: report.guest_svn,
        measurement: hex::encode(report.measurement),
        report_data: hex::encode(report.report_data),
        host_data: hex::encode(report.host_data),
        reported_tcb: tcb,
        chip_id: hex::encode(report.chip_id),
    })
}

/// The file name a local VCEK cache keeps this report's VCEK under: its chip id and reported
/// TCB (a VCEK certifies exactly one chip at one TCB), so AMD's KDS answers can be stored
/// ahead of time and nothing is fetched at verification time.
pub fn vcek_cache_name(report: &[u8]) -> Result<String, SnpError> {
    let r = Report::parse(report)?;
    Ok(format!(
        "{}-{}.der",
        hex::encode(r.chip_id),
        hex::encode(r.reported_tcb)
    ))
}

/// What a relying party requires of verified evidence.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Accept debuggable guests (never in production).
    pub allow_debug: bool,
    /// Accept VMPLs above 0 (the launcher runs at VMPL 0).
    pub allow_vmpl_above_zero: bool,
    pub minimum_tcb: Option<Tcb>,
    /// Accepted launch measurements (hex); empty accepts any.
    pub measurements: Vec<String>,
}

impl Policy {
    pub fn check(&self, v: &Verified) -> Result<(), SnpError> {
        if v.debug && !self.allow_debug {
            return Err(refuse(
                "the guest policy allows debugging (policy bit 19): its memory is readable by the host",
            ));
        }
        if v.vmpl != 0 && !self.allow_vmpl_above_zero {
            return Err(refuse(format!(
                "the report was requested at VMPL {}, not VMPL 0",
                v.vmpl
            )));
        }
        if let Some(min) = self.minimum_tcb {
            let t = v.reported_tcb;
            if t.bootloader < min.bootloader
                || t.tee < min.tee
                || t.snp < min.snp
                || t.microcode < min.microcode
            {
                return Err(refuse(format!(
                    "the reported TCB {t:?} is below the minimum {min:?}"
                )));
            }
        }
        if !self.measurements.is_empty()
            && !self
                .measurements
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&v.measurement))
        {
            return Err(refuse(format!(
                "measurement {} is not among the reference values",
                v.measurement
            )));
        }
        Ok(())
    }
}
