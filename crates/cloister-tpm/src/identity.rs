//! The instance identity CA: it certifies an instance's attestation key (AK) when the
//! platform creates the instance, and the certificate carries the instance's identity in an
//! extension (OID 1.3.6.1.4.1.11129.2.1.21, the one Compute Engine uses for this, with the
//! fields `zone`, `projectNumber`, `projectId`, `instanceId`, `instanceName` as a DER
//! SEQUENCE). The verifier takes `submods.gce` from a certificate it checked against the CA.

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SubjectPublicKeyInfo,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};
use x509_parser::prelude::{FromDer, X509Certificate};

pub const INSTANCE_IDENTITY_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 11129, 2, 1, 21];
const INSTANCE_IDENTITY_OID_STR: &str = "1.3.6.1.4.1.11129.2.1.21";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceIdentity {
    pub zone: String,
    pub project_number: u64,
    pub project_id: String,
    pub instance_id: u64,
    pub instance_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("the instance identity CA failed: {0}")]
    Ca(String),
    #[error("the AK certificate does not parse: {0}")]
    Malformed(String),
    #[error("the AK certificate was not issued by this platform's instance identity CA")]
    NotFromCa,
    #[error("the AK certificate is not valid at this time (valid {not_before} to {not_after})")]
    Expired {
        not_before: String,
        not_after: String,
    },
    #[error("the AK certificate carries no instance identity")]
    NoIdentity,
}

// Minimal DER for the identity SEQUENCE: UTF8String and INTEGER only. Written by hand because
// these five fields are all there is, and a DER crate would be more code than the encoding.
fn der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
}

fn der_utf8(out: &mut Vec<u8>, s: &str) {
    out.push(0x0c);
    der_len(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn der_uint(out: &mut Vec<u8>, v: u64) {
    let mut bytes: Vec<u8> = v
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    if bytes.first().is_none_or(|b| b & 0x80 != 0) {
        bytes.insert(0, 0); // non-negative, and zero is one 0x00 byte
    }
    out.push(0x02);
    der_len(out, bytes.len());
    out.extend(bytes);
}

impl InstanceIdentity {
    fn to_der(&self) -> Vec<u8> {
        let mut body = Vec::new();
        der_utf8(&mut body, &self.zone);
        der_uint(&mut body, self.project_number);
        der_utf8(&mut body, &self.project_id);
        der_uint(&mut body, self.instance_id);
        der_utf8(&mut body, &self.instance_name);
        let mut out = vec![0x30];
        der_len(&mut out, body.len());
        out.extend(body);
        out
    }

    fn from_der(bytes: &[u8]) -> Option<Self> {
        use x509_parser::der_parser::ber::BerObjectContent;
        let (rest, seq) = x509_parser::der_parser::der::parse_der(bytes).ok()?;
        if !rest.is_empty() {
            return None;
        }
        let items = seq.as_sequence().ok()?;
        let text = |i: usize| match &items.get(i)?.content {
            BerObjectContent::UTF8String(s) => Some(s.to_string()),
            _ => None,
        };
        let int = |i: usize| items.get(i)?.as_u64().ok();
        if items.len() != 5 {
            return None;
        }
        Some(Self {
            zone: text(0)?,
            project_number: int(1)?,
            project_id: text(2)?,
            instance_id: int(3)?,
            instance_name: text(4)?,
        })
    }
}

pub struct IdentityCa {
    key: KeyPair,
    params: CertificateParams,
    cert_der: Vec<u8>,
}

fn ca_err(e: impl std::fmt::Display) -> IdentityError {
    IdentityError::Ca(e.to_string())
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cloister");
    dn.push(DnType::CommonName, "Cloister instance identity CA");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl IdentityCa {
    /// A new CA: a fresh P-256 key and a self-signed certificate valid for ten years.
    pub fn generate(now: OffsetDateTime) -> Result<Self, IdentityError> {
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = ca_params();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(3650);
        let cert_der = params.self_signed(&key).map_err(ca_err)?.der().to_vec();
        Ok(Self {
            key,
            params,
            cert_der,
        })
    }

    /// The CA from its key (PKCS#8 PEM) and certificate (DER).
    pub fn load(key_pem: &str, cert_der: &[u8]) -> Result<Self, IdentityError> {
        let key = KeyPair::from_pem(key_pem).map_err(ca_err)?;
        Ok(Self {
            key,
            params: ca_params(),
            cert_der: cert_der.to_vec(),
        })
    }

    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Certifies the attestation key `ak_spki_der` of the instance `identity`.
    pub fn certify_ak(
        &self,
        ak_spki_der: &[u8],
        identity: &InstanceIdentity,
        now: OffsetDateTime,
    ) -> Result<Vec<u8>, IdentityError> {
        let ak = SubjectPublicKeyInfo::from_der(ak_spki_der).map_err(ca_err)?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Cloister");
        dn.push(DnType::CommonName, identity.instance_name.as_str());
        params.distinguished_name = dn;
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(365);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.custom_extensions = vec![CustomExtension::from_oid_content(
            INSTANCE_IDENTITY_OID,
            identity.to_der(),
        )];
        let issuer = Issuer::from_params(&self.params, &self.key);
        Ok(params
            .signed_by(&ak, &issuer)
            .map_err(ca_err)?
            .der()
            .to_vec())
    }
}

/// Checks that `ak_cert_der` was issued by the CA `ca_cert_der` and is valid at `now`;
/// returns the AK's public key (SPKI DER) and the instance identity it certifies.
pub fn verify_ak_cert(
    ak_cert_der: &[u8],
    ca_cert_der: &[u8],
    now: OffsetDateTime,
) -> Result<(Vec<u8>, InstanceIdentity), IdentityError> {
    let malformed = |e: String| IdentityError::Malformed(e);
    let (_, ca) =
        X509Certificate::from_der(ca_cert_der).map_err(|e| malformed(format!("CA: {e}")))?;
    let (rest, ak) =
        X509Certificate::from_der(ak_cert_der).map_err(|e| malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(malformed("bytes after the certificate".into()));
    }
    if ak.issuer() != ca.subject() || ak.verify_signature(Some(ca.public_key())).is_err() {
        return Err(IdentityError::NotFromCa);
    }
    let validity = ak.validity();
    let t = x509_parser::time::ASN1Time::from_timestamp(now.unix_timestamp())
        .map_err(|e| malformed(e.to_string()))?;
    if t < validity.not_before || t > validity.not_after {
        return Err(IdentityError::Expired {
            not_before: validity.not_before.to_string(),
            not_after: validity.not_after.to_string(),
        });
    }
    let identity = ak
        .extensions()
        .iter()
        .find(|e| e.oid.to_id_string() == INSTANCE_IDENTITY_OID_STR)
        .and_then(|e| InstanceIdentity::from_der(e.value))
        .ok_or(IdentityError::NoIdentity)?;
    Ok((ak.public_key().raw.to_vec(), identity))
}

#[cfg(test)]
mod tests {
    use rsa::pkcs8::EncodePublicKey;

    use super::*;

    fn identity() -> InstanceIdentity {
        InstanceIdentity {
            zone: "us-west1-b".into(),
            project_number: 123456789012,
            project_id: "secundus-bank".into(),
            instance_id: 9_223_372_036_854_775_900,
            instance_name: "workload-vm".into(),
        }
    }

    fn ak() -> Vec<u8> {
        let k = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
        k.to_public_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec()
    }

    #[test]
    fn an_ak_certificate_carries_the_identity_and_chains_to_the_ca() {
        let now = OffsetDateTime::now_utc();
        let ca = IdentityCa::generate(now).unwrap();
        let ak = ak();
        let cert = ca.certify_ak(&ak, &identity(), now).unwrap();
        let (spki, id) = verify_ak_cert(&cert, ca.cert_der(), now).unwrap();
        assert_eq!(spki, ak);
        assert_eq!(id, identity());
        // The CA reloaded from its files certifies the same way.
        let reloaded = IdentityCa::load(&ca.key_pem(), ca.cert_der()).unwrap();
        let cert2 = reloaded.certify_ak(&ak, &identity(), now).unwrap();
        assert!(verify_ak_cert(&cert2, ca.cert_der(), now).is_ok());
    }

    #[test]
    fn certificates_from_another_ca_altered_or_out_of_date_are_refused() {
        let now = OffsetDateTime::now_utc();
        let ca = IdentityCa::generate(now).unwrap();
        let rogue = IdentityCa::generate(now).unwrap();
        let ak = ak();
        let forged = rogue.certify_ak(&ak, &identity(), now).unwrap();
        assert_eq!(
            verify_ak_cert(&forged, ca.cert_der(), now),
            Err(IdentityError::NotFromCa)
        );
        let mut altered = ca.certify_ak(&ak, &identity(), now).unwrap();
        let pos = altered
            .windows(11)
            .position(|w| w == b"workload-vm")
            .unwrap();
        altered[pos] = b'W';
        assert_eq!(
            verify_ak_cert(&altered, ca.cert_der(), now),
            Err(IdentityError::NotFromCa)
        );
        let cert = ca.certify_ak(&ak, &identity(), now).unwrap();
        assert!(matches!(
            verify_ak_cert(&cert, ca.cert_der(), now + Duration::days(400)),
            Err(IdentityError::Expired { .. })
        ));
        assert!(matches!(
            verify_ak_cert(b"junk", ca.cert_der(), now),
            Err(IdentityError::Malformed(_))
        ));
    }

    #[test]
    fn identity_integers_encode_as_der() {
        for v in [0u64, 1, 127, 128, 255, 256, u64::MAX] {
            let id = InstanceIdentity {
                instance_id: v,
                ..identity()
            };
            assert_eq!(InstanceIdentity::from_der(&id.to_der()), Some(id));
        }
    }
}
