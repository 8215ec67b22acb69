//! The attestation PKI behind `PKI` tokens: a root CA (sealed in the store under the KEK,
//! rotated rarely, its certificate published at `/.well-known/confidential_space_root.crt`),
//! an intermediate CA each server makes for itself, and a leaf certifying the attestation
//! signing key in use. A PKI token carries `x5c: [leaf, intermediate, root]`, so a relying
//! party that trusts the downloaded root needs nothing else. The intermediate and the leaves
//! are never stored: they are reissued before they would expire under a token, and a new
//! signing key (rotation) gets its own leaf.

use std::collections::HashMap;
use std::sync::Mutex;

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SerialNumber, SubjectPublicKeyInfo,
};
use time::{Duration, OffsetDateTime};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("the attestation root CA: {0}")]
    Root(String),
    #[error("issuing an attestation certificate: {0}")]
    Issue(String),
}

fn issue_err(e: impl std::fmt::Display) -> PkiError {
    PkiError::Issue(e.to_string())
}

/// The root lives ten years; replacing it means relying parties download it again.
const ROOT_LIFETIME: Duration = Duration::days(3650);
const INTERMEDIATE_LIFETIME: Duration = Duration::days(30);
/// A leaf outlives the tokens signed under it by at least this much.
const LEAF_LIFETIME: Duration = Duration::days(1);

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Cloister");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn root_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name = name("Cloister attestation root CA");
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    p
}

/// A random positive serial, so reissued certificates never share one.
fn serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&bytes)
}

struct Intermediate {
    key: KeyPair,
    params: CertificateParams,
    der: Vec<u8>,
    not_after: OffsetDateTime,
}

struct Leaf {
    der: Vec<u8>,
    not_after: OffsetDateTime,
}

#[derive(Default)]
struct Issued {
    intermediate: Option<Intermediate>,
    /// By signing key id; emptied when the intermediate changes.
    leaves: HashMap<String, Leaf>,
}

pub struct AttestationPki {
    root_key: KeyPair,
    root_der: Vec<u8>,
    issued: Mutex<Issued>,
}

impl AttestationPki {
    /// A new root CA: a fresh P-256 key and a self-signed certificate.
    pub fn generate(now: OffsetDateTime) -> Result<Self, PkiError> {
        let root = |e: rcgen::Error| PkiError::Root(e.to_string());
        let key = KeyPair::generate().map_err(root)?;
        let mut params = root_params();
        params.serial_number = Some(serial());
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + ROOT_LIFETIME;
        let der = params.self_signed(&key).map_err(root)?.der().to_vec();
        Self::load(&key.serialize_pem(), &der)
    }

    /// The root CA from its key (PKCS#8 PEM) and certificate (DER).
    pub fn load(key_pem: &str, cert_der: &[u8]) -> Result<Self, PkiError> {
        Ok(Self {
            root_key: KeyPair::from_pem(key_pem).map_err(|e| PkiError::Root(e.to_string()))?,
            root_der: cert_der.to_vec(),
            issued: Mutex::default(),
        })
    }

    pub fn key_pem(&self) -> String {
        self.root_key.serialize_pem()
    }

    pub fn root_der(&self) -> &[u8] {
        &self.root_der
    }

    pub fn root_pem(&self) -> String {
        pem_encode(&self.root_der)
    }

    /// `[leaf, intermediate, root]` (DER) for the signing key `kid` (its SubjectPublicKeyInfo
    /// `spki_der`), every certificate valid at `now` and for `token_lifetime` after it.
    pub fn chain(
        &self,
        kid: &str,
        spki_der: &[u8],
        now: OffsetDateTime,
        token_lifetime: Duration,
    ) -> Result<[Vec<u8>; 3], PkiError> {
        let leaf_span = LEAF_LIFETIME
            .checked_add(token_lifetime)
            .ok_or_else(|| issue_err("the token lifetime is out of range"))?;
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let renew = issued
            .intermediate
            .as_ref()
            .is_none_or(|i| i.not_after < now + leaf_span);
        if renew {
            issued.intermediate = Some(self.intermediate(now)?);
            issued.leaves.clear();
        }
        let Some(intermediate) = issued.intermediate.as_ref() else {
            return Err(issue_err("no intermediate CA"));
        };
        let fresh = issued
            .leaves
            .get(kid)
            .is_some_and(|l| l.not_after >= now + token_lifetime);
        if !fresh {
            let leaf = leaf(intermediate, kid, spki_der, now, now + leaf_span)?;
            issued.leaves.insert(kid.to_owned(), leaf);
        }
        let leaf = issued.leaves.get(kid).map(|l| l.der.clone());
        let intermediate = issued.intermediate.as_ref().map(|i| i.der.clone());
        match (leaf, intermediate) {
            (Some(l), Some(i)) => Ok([l, i, self.root_der.clone()]),
            _ => Err(issue_err("the chain was not issued")),
        }
    }

    fn intermediate(&self, now: OffsetDateTime) -> Result<Intermediate, PkiError> {
        let key = KeyPair::generate().map_err(issue_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name("Cloister attestation intermediate CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.serial_number = Some(serial());
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + INTERMEDIATE_LIFETIME;
        let root_params = root_params();
        let root = Issuer::from_params(&root_params, &self.root_key);
        let der = params
            .signed_by(&key, &root)
            .map_err(issue_err)?
            .der()
            .to_vec();
        Ok(Intermediate {
            not_after: params.not_after,
            key,
            params,
            der,
        })
    }
}

fn leaf(
    intermediate: &Intermediate,
    kid: &str,
    spki_der: &[u8],
    now: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Leaf, PkiError> {
    let public = SubjectPublicKeyInfo::from_der(spki_der).map_err(issue_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = name(&format!("Cloister attestation token signer {kid}"));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.serial_number = Some(serial());
    params.not_before = now - Duration::minutes(5);
    params.not_after = not_after;
    let issuer = Issuer::from_params(&intermediate.params, &intermediate.key);
    let der = params
        .signed_by(&public, &issuer)
        .map_err(issue_err)?
        .der()
        .to_vec();
    Ok(Leaf { der, not_after })
}

fn pem_encode(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn spki() -> Vec<u8> {
        use rcgen::PublicKeyData;
        KeyPair::generate().unwrap().subject_public_key_info()
    }

    #[test]
    fn the_chain_links_leaf_to_intermediate_to_root_and_is_reused_until_it_would_expire() {
        let now = OffsetDateTime::now_utc();
        let pki = AttestationPki::generate(now).unwrap();
        let key = spki();
        let hour = Duration::hours(1);
        let chain = pki.chain("k1", &key, now, hour).unwrap();
        fn parse(der: &[u8]) -> X509Certificate<'_> {
            X509Certificate::from_der(der).unwrap().1
        }
        let (leaf, inter, root) = (parse(&chain[0]), parse(&chain[1]), parse(&chain[2]));
        leaf.verify_signature(Some(inter.public_key())).unwrap();
        inter.verify_signature(Some(root.public_key())).unwrap();
        root.verify_signature(None).unwrap();
        assert!(leaf.verify_signature(Some(root.public_key())).is_err());
        assert_eq!(leaf.public_key().raw, key.as_slice());
        assert!(!leaf.is_ca() && inter.is_ca() && root.is_ca());
        assert_eq!(chain[2], pki.root_der());
        // Reused while it covers a token's life; a later time gets a new leaf.
        assert_eq!(pki.chain("k1", &key, now, hour).unwrap(), chain);
        let later = pki
            .chain(
                "k1",
                &key,
                now + Duration::days(1) + Duration::minutes(1),
                hour,
            )
            .unwrap();
        assert_ne!(later[0], chain[0]);
        assert_eq!(later[1], chain[1]);
        // A month later the intermediate has been replaced too; the root stays.
        let month = pki
            .chain("k1", &key, now + Duration::days(29), hour)
            .unwrap();
        assert_ne!(month[1], chain[1]);
        assert_eq!(month[2], chain[2]);
        // The root survives a reload from its stored form.
        let reloaded = AttestationPki::load(&pki.key_pem(), pki.root_der()).unwrap();
        let c = reloaded.chain("k2", &spki(), now, hour).unwrap();
        let reissued = parse(&c[1]);
        reissued.verify_signature(Some(root.public_key())).unwrap();
    }
}
