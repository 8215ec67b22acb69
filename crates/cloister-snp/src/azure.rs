//! Azure confidential VMs' SNP + vTPM evidence: the HCL report (an SNP report whose
//! REPORT_DATA binds a JSON "var data" holding the vTPM's attestation key) and a TPM quote by
//! that key. Verified here: the SNP report (as [`crate::verify`]), SHA-256 of the var data
//! equal to REPORT_DATA[0..32], the quote's signature by the HCL key over the nonce, and the
//! quoted PCR digest.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rsa::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::report::REPORT_LEN;
use crate::{SnpError, Verified, verify};

/// Offsets in the HCL report.
const REPORT_AT: usize = 0x20;
const VAR_HEADER_AT: usize = 0x4C0;
const VAR_DATA_AT: usize = 0x4D4;

#[derive(Debug, Clone)]
pub struct AzureVerified {
    pub snp: Verified,
    /// The quoted PCRs (SHA-256 bank), hex.
    pub pcrs: BTreeMap<u8, String>,
}

fn malformed(m: impl Into<String>) -> SnpError {
    SnpError::Malformed(m.into())
}

/// The vTPM's attestation key from the var data (`{"keys":[{"kid":"HCLAkPub",…}]}`), as SPKI DER.
fn hcl_key(var_data: &[u8]) -> Result<Vec<u8>, SnpError> {
    let v: serde_json::Value = serde_json::from_slice(var_data)
        .map_err(|e| malformed(format!("the HCL var data is not JSON: {e}")))?;
    let jwk = v["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == "HCLAkPub"))
        .ok_or_else(|| malformed("the HCL var data has no HCLAkPub key"))?;
    let part = |name: &str| {
        jwk[name]
            .as_str()
            .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
            .ok_or_else(|| malformed(format!("HCLAkPub has no usable {name}")))
    };
    let key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&part("n")?),
        rsa::BigUint::from_bytes_be(&part("e")?),
    )
    .map_err(|e| malformed(format!("HCLAkPub is not an RSA key: {e}")))?;
    key.to_public_key_der()
        .map(|d| d.as_bytes().to_vec())
        .map_err(|e| malformed(e.to_string()))
}

pub fn verify_azure(
    hcl_report: &[u8],
    quote: &[u8],
    quote_signature: &[u8],
    pcrs: &[Vec<u8>],
    vcek_der: &[u8],
    nonce: &[u8],
    now: OffsetDateTime,
) -> Result<AzureVerified, SnpError> {
    if hcl_report.len() < VAR_DATA_AT || &hcl_report[..4] != b"HCLA" {
        return Err(malformed("not an HCL report (no HCLA header)"));
    }
    let snp = verify(
        &hcl_report[REPORT_AT..REPORT_AT + REPORT_LEN],
        vcek_der,
        now,
    )?;
    let var_size = u32::from_le_bytes(
        hcl_report[VAR_HEADER_AT + 16..VAR_HEADER_AT + 20]
            .try_into()
            .map_err(|_| malformed("truncated HCL header"))?,
    ) as usize;
    let var_data = hcl_report
        .get(VAR_DATA_AT..VAR_DATA_AT + var_size)
        .ok_or_else(|| malformed("the HCL var data runs past the report"))?;
    if hex::encode(Sha256::digest(var_data)) != snp.report_data[..64] {
        return Err(SnpError::Refused(
            "the HCL var data is not what the SNP report vouches for (SHA-256 ≠ REPORT_DATA[0..32])".into(),
        ));
    }
    let key = hcl_key(var_data)?;
    let values: BTreeMap<u8, Vec<u8>> = pcrs
        .iter()
        .enumerate()
        .map(|(i, v)| (i as u8, v.clone()))
        .collect();
    let sha256 = cloister_tpm::quote::bank_id("sha256").unwrap_or(0x000b);
    // Azure ships the bare RSA signature; the verifier reads a TPMT_SIGNATURE (RSASSA, SHA-256).
    let mut signature = Vec::with_capacity(quote_signature.len() + 6);
    signature.extend_from_slice(&0x0014u16.to_be_bytes());
    signature.extend_from_slice(&0x000bu16.to_be_bytes());
    signature.extend_from_slice(&(quote_signature.len() as u16).to_be_bytes());
    signature.extend_from_slice(quote_signature);
    cloister_tpm::quote::verify_quote(quote, &signature, &key, nonce, sha256, &values)
        .map_err(|e| SnpError::Refused(format!("the vTPM quote: {e}")))?;
    Ok(AzureVerified {
        snp,
        pcrs: values
            .into_iter()
            .map(|(i, v)| (i, hex::encode(v)))
            .collect(),
    })
}
