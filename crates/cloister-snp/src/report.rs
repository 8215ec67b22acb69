//! The SNP ATTESTATION_REPORT (1184 bytes, little-endian; AMD SEV-SNP ABI, versions 2–5).

use serde::Serialize;

use crate::SnpError;

pub const REPORT_LEN: usize = 0x4A0;
/// The signature covers bytes 0x000..0x2A0.
pub const SIGNED_LEN: usize = 0x2A0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Product {
    Milan,
    Genoa,
    Turin,
}

impl Product {
    pub const ALL: [Product; 3] = [Product::Milan, Product::Genoa, Product::Turin];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SigningKey {
    Vcek,
    Vlek,
}

/// A TCB_VERSION as its security patch levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tcb {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl Tcb {
    /// Milan and Genoa: [bl, tee, 0, 0, 0, 0, snp, ucode]; Turin: [fmc, bl, tee, snp, 0, 0, 0, ucode].
    pub fn decode(raw: [u8; 8], product: Product) -> Tcb {
        match product {
            Product::Turin => Tcb {
                fmc: Some(raw[0]),
                bootloader: raw[1],
                tee: raw[2],
                snp: raw[3],
                microcode: raw[7],
            },
            _ => Tcb {
                fmc: None,
                bootloader: raw[0],
                tee: raw[1],
                snp: raw[6],
                microcode: raw[7],
            },
        }
    }
}

/// The fields the verifier uses; `bytes` keeps the whole report for the signature check.
#[derive(Debug, Clone)]
pub struct Report {
    pub bytes: Vec<u8>,
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub vmpl: u32,
    pub sig_algo: u32,
    pub key_info: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub reported_tcb: [u8; 8],
    pub cpuid: Option<(u8, u8, u8)>,
    pub chip_id: [u8; 64],
    pub signature_r: [u8; 72],
    pub signature_s: [u8; 72],
}

fn array<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(array(b, at))
}

impl Report {
    pub fn parse(b: &[u8]) -> Result<Self, SnpError> {
        if b.len() != REPORT_LEN {
            return Err(SnpError::Malformed(format!(
                "an SNP attestation report is {REPORT_LEN} bytes, this is {}",
                b.len()
            )));
        }
        let version = u32_at(b, 0);
        if !(2..=5).contains(&version) {
            return Err(SnpError::Malformed(format!(
                "report version {version} is not 2 to 5"
            )));
        }
        Ok(Report {
            bytes: b.to_vec(),
            version,
            guest_svn: u32_at(b, 0x4),
            policy: u64::from_le_bytes(array(b, 0x8)),
            vmpl: u32_at(b, 0x30),
            sig_algo: u32_at(b, 0x34),
            key_info: u32_at(b, 0x48),
            report_data: array(b, 0x50),
            measurement: array(b, 0x90),
            host_data: array(b, 0xC0),
            reported_tcb: array(b, 0x180),
            cpuid: (version >= 3).then(|| (b[0x188], b[0x189], b[0x18A])),
            chip_id: array(b, 0x1A0),
            signature_r: array(b, 0x2A0),
            signature_s: array(b, 0x2E8),
        })
    }

    /// Policy bit 19: the guest may be debugged (its memory read by the host).
    pub fn debug(&self) -> bool {
        self.policy >> 19 & 1 == 1
    }

    /// key_info bits 4:2: which key signed (0 VCEK, 1 VLEK).
    pub fn signing_key(&self) -> Result<SigningKey, SnpError> {
        match self.key_info >> 2 & 0b111 {
            0 => Ok(SigningKey::Vcek),
            1 => Ok(SigningKey::Vlek),
            other => Err(SnpError::Refused(format!(
                "the report names signing key {other}, neither VCEK nor VLEK: it is unsigned"
            ))),
        }
    }

    /// key_info bit 1: the chip id was masked (the report is then unsigned).
    pub fn mask_chip_key(&self) -> bool {
        self.key_info >> 1 & 1 == 1
    }

    /// The product line from the report's CPUID (v3+).
    pub fn product(&self) -> Option<Product> {
        match self.cpuid? {
            (0x19, 0x00..=0x0F, _) => Some(Product::Milan),
            (0x19, 0x10..=0x1F | 0xA0..=0xAF, _) => Some(Product::Genoa),
            (0x1A, 0x00..=0x11, _) => Some(Product::Turin),
            _ => None,
        }
    }
}
