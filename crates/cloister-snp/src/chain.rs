//! AMD's certificate chains, checked by hand over `x509-parser`'s parsed certificates with
//! `rsa` (RSASSA-PSS, SHA-384, salt 48): ARK (self-signed) → ASK → VCEK, or ARK → ASVK → VLEK.
//! By hand because the certificates' signatures must be checked on the original TBS bytes
//! (AMD's VCEKs encode the PSS trailer field explicitly, so re-encoding breaks them) and
//! x509-parser's own verifier needs ring or aws-lc.

use ::time::OffsetDateTime;
use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::signature::Verifier as _;
use x509_parser::prelude::*;
use x509_parser::signature_algorithm::SignatureAlgorithm;

use crate::SnpError;
use crate::report::Product;

const SHA384: &str = "2.16.840.1.101.3.4.2.2";

/// The pinned roots of one product line (DER): ASK, ARK, ASVK.
pub struct Roots {
    pub ask: Vec<u8>,
    pub ark: Vec<u8>,
    pub asvk: Vec<u8>,
}

fn pem_certs(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .filter_map(Result::ok)
        .map(|p| p.contents)
        .collect()
}

impl Roots {
    pub fn pinned(product: Product) -> Roots {
        let pem = match product {
            Product::Milan => include_str!("../roots/milan_ask_ark_asvk.pem"),
            Product::Genoa => include_str!("../roots/genoa_ask_ark_asvk.pem"),
            Product::Turin => include_str!("../roots/turin_ask_ark_asvk.pem"),
        };
        let mut certs = pem_certs(pem).into_iter();
        Roots {
            ask: certs.next().unwrap_or_default(),
            ark: certs.next().unwrap_or_default(),
            asvk: certs.next().unwrap_or_default(),
        }
    }
}

pub fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, SnpError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SnpError::Malformed(format!(
            "the {what} certificate has trailing bytes"
        ))),
        Err(e) => Err(SnpError::Malformed(format!(
            "the {what} certificate does not parse: {e}"
        ))),
    }
}

/// `subject` is signed by `issuer` with RSASSA-PSS / SHA-384 / salt 48.
pub fn signed_by(subject: &X509Certificate, issuer: &X509Certificate) -> bool {
    let Ok(SignatureAlgorithm::RSASSA_PSS(params)) =
        SignatureAlgorithm::try_from(&subject.signature_algorithm)
    else {
        return false;
    };
    let sha384 = params.hash_algorithm_oid().to_id_string() == SHA384;
    if !sha384 || params.salt_length() != 48 {
        return false;
    }
    let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(&issuer.public_key().subject_public_key.data)
    else {
        return false;
    };
    let Ok(signature) = rsa::pss::Signature::try_from(subject.signature_value.data.as_ref()) else {
        return false;
    };
    rsa::pss::VerifyingKey::<sha2::Sha384>::new(key)
        .verify(subject.tbs_certificate.as_ref(), &signature)
        .is_ok()
}

/// Refuses a certificate outside its validity at `now`.
pub fn valid_at(cert: &X509Certificate, what: &str, now: OffsetDateTime) -> Result<(), SnpError> {
    let v = cert.validity();
    let (from, to) = (v.not_before.to_datetime(), v.not_after.to_datetime());
    if now < from || now > to {
        return Err(SnpError::Refused(format!(
            "the {what} certificate is valid from {from} to {to}, not at {now}"
        )));
    }
    Ok(())
}

/// The value of AMD extension `1.3.6.1.4.1.3704.1.SUFFIX`, as DER content bytes.
pub fn amd_extension<'a>(cert: &'a X509Certificate, suffix: &str) -> Option<&'a [u8]> {
    let oid = format!("1.3.6.1.4.1.3704.1.{suffix}");
    cert.extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == oid)
        .map(|e| e.value)
}

/// An SPL extension: a DER INTEGER.
pub fn spl(cert: &X509Certificate, suffix: &str) -> Option<u64> {
    let value = amd_extension(cert, suffix)?;
    let (_, int) = x509_parser::der_parser::der::parse_der_integer(value).ok()?;
    int.as_u64().ok()
}

/// The hwID extension: raw bytes (legacy VCEKs) or wrapped in an OCTET STRING (newer ones).
pub fn hw_id<'a>(cert: &'a X509Certificate) -> Option<&'a [u8]> {
    let value = amd_extension(cert, "4")?;
    match value {
        [0x04, len, rest @ ..] if *len as usize == rest.len() => Some(rest),
        raw => Some(raw),
    }
}
