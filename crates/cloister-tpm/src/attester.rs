//! The vTPM attester: the launcher's side of vTPM evidence, through tss-esapi against any
//! TCTI (`swtpm:host=127.0.0.1,port=2321` for swtpm, `device:/dev/tpmrm0` on a VM).
//!
//! The attestation key is a primary key of the owner hierarchy made from a fixed template, so
//! the platform (which has the CA certify it when the instance is created) and the launcher
//! (which quotes with it later) get the same key from the same TPM without storing it.

use std::collections::BTreeMap;
use std::str::FromStr;

use cloister_eventlog::HashAlg;
use rsa::BigUint;
use rsa::pkcs8::EncodePublicKey;
use tss_esapi::attributes::ObjectAttributesBuilder;
use tss_esapi::constants::CapabilityType;
use tss_esapi::handles::{KeyHandle, PcrHandle};
use tss_esapi::interface_types::algorithm::{
    HashingAlgorithm, PublicAlgorithm, RsaSchemeAlgorithm,
};
use tss_esapi::interface_types::key_bits::RsaKeyBits;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::structures::{
    CapabilityData, Data, Digest, DigestValues, HashScheme, PcrSelectionList, PcrSlot, Public,
    PublicBuilder, PublicKeyRsa, PublicRsaParametersBuilder, RsaExponent, RsaScheme,
    SignatureScheme,
};
use tss_esapi::traits::Marshall;
use tss_esapi::{Context, TctiNameConf};

#[derive(Debug, thiserror::Error)]
pub enum AttesterError {
    #[error("TPM ({tcti}): {source}")]
    Tpm {
        tcti: String,
        source: tss_esapi::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// A quote and what it covers, ready for `verifyAttestation`'s `tpmAttestation`.
#[derive(Debug, Clone)]
pub struct QuoteEvidence {
    /// Marshalled `TPMS_ATTEST`.
    pub attest: Vec<u8>,
    /// Marshalled `TPMT_SIGNATURE`.
    pub signature: Vec<u8>,
    pub bank: HashAlg,
    pub pcr_values: BTreeMap<u8, Vec<u8>>,
}

pub struct VtpmAttester {
    ctx: Context,
    tcti: String,
}

fn hashing(alg: HashAlg) -> HashingAlgorithm {
    match alg {
        HashAlg::Sha1 => HashingAlgorithm::Sha1,
        HashAlg::Sha256 => HashingAlgorithm::Sha256,
        HashAlg::Sha384 => HashingAlgorithm::Sha384,
        HashAlg::Sha512 => HashingAlgorithm::Sha512,
    }
}

fn pcr_slot(index: u8) -> Result<PcrSlot, AttesterError> {
    PcrSlot::try_from(1u32.checked_shl(index as u32).unwrap_or(0))
        .map_err(|_| AttesterError::Invalid(format!("no PCR {index}")))
}

/// The attestation key's template: RSA-2048, restricted signing, RSASSA with SHA-256.
fn ak_template() -> Result<Public, tss_esapi::Error> {
    let attributes = ObjectAttributesBuilder::new()
        .with_restricted(true)
        .with_user_with_auth(true)
        .with_sign_encrypt(true)
        .with_decrypt(false)
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .build()?;
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Rsa)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_rsa_parameters(
            PublicRsaParametersBuilder::new()
                .with_scheme(RsaScheme::create(
                    RsaSchemeAlgorithm::RsaSsa,
                    Some(HashingAlgorithm::Sha256),
                )?)
                .with_key_bits(RsaKeyBits::Rsa2048)
                .with_exponent(RsaExponent::default())
                .with_is_signing_key(true)
                .with_is_decryption_key(false)
                .with_restricted(true)
                .build()?,
        )
        .with_rsa_unique_identifier(PublicKeyRsa::default())
        .build()
}

/// The NV index holding the AK certificate (GCE's index for the RSA AK certificate), where the
/// platform leaves it and the launcher reads it, as on a Shielded VM.
pub const AK_CERT_NV_INDEX: u32 = 0x01c1_0000;

fn io_to_tss(e: std::io::Error) -> tss_esapi::Error {
    match e
        .into_inner()
        .map(|inner| inner.downcast::<tss_esapi::Error>())
    {
        Some(Ok(e)) => *e,
        _ => tss_esapi::Error::WrapperError(tss_esapi::WrapperErrorKind::InvalidParam),
    }
}

impl VtpmAttester {
    pub fn open(tcti: &str) -> Result<Self, AttesterError> {
        let conf = TctiNameConf::from_str(tcti).map_err(|source| AttesterError::Tpm {
            tcti: tcti.into(),
            source,
        })?;
        let ctx = Context::new(conf).map_err(|source| AttesterError::Tpm {
            tcti: tcti.into(),
            source,
        })?;
        Ok(Self {
            ctx,
            tcti: tcti.into(),
        })
    }

    fn tpm(&self) -> impl Fn(tss_esapi::Error) -> AttesterError + '_ {
        |source| AttesterError::Tpm {
            tcti: self.tcti.clone(),
            source,
        }
    }

    /// The PCR banks the TPM has active, among those Cloister knows.
    pub fn active_banks(&mut self) -> Result<Vec<HashAlg>, AttesterError> {
        let (caps, _) = self
            .ctx
            .get_capability(CapabilityType::AssignedPcr, 0, 8)
            .map_err(self.tpm())?;
        let CapabilityData::AssignedPcr(list) = caps else {
            return Err(AttesterError::Invalid(
                "the TPM did not list its PCR banks".into(),
            ));
        };
        Ok(list
            .get_selections()
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| match s.hashing_algorithm() {
                HashingAlgorithm::Sha1 => Some(HashAlg::Sha1),
                HashingAlgorithm::Sha256 => Some(HashAlg::Sha256),
                HashingAlgorithm::Sha384 => Some(HashAlg::Sha384),
                HashingAlgorithm::Sha512 => Some(HashAlg::Sha512),
                _ => None,
            })
            .collect())
    }

    fn load_ak(&mut self) -> Result<(KeyHandle, Public), AttesterError> {
        let template = ak_template().map_err(self.tpm())?;
        let created = self
            .ctx
            .execute_with_nullauth_session(|ctx| {
                ctx.create_primary(Hierarchy::Owner, template, None, None, None, None)
            })
            .map_err(self.tpm())?;
        Ok((created.key_handle, created.out_public))
    }

    /// The attestation key's public key (SubjectPublicKeyInfo DER), for the identity CA.
    pub fn ak_public_key(&mut self) -> Result<Vec<u8>, AttesterError> {
        let (handle, public) = self.load_ak()?;
        self.ctx.flush_context(handle.into()).map_err(self.tpm())?;
        let Public::Rsa {
            unique, parameters, ..
        } = public
        else {
            return Err(AttesterError::Invalid(
                "the attestation key is not RSA".into(),
            ));
        };
        let e = match parameters.exponent().value() {
            0 => 65537,
            e => e,
        };
        let key = rsa::RsaPublicKey::new(BigUint::from_bytes_be(unique.value()), BigUint::from(e))
            .map_err(|e| AttesterError::Invalid(e.to_string()))?;
        Ok(key
            .to_public_key_der()
            .map_err(|e| AttesterError::Invalid(e.to_string()))?
            .as_bytes()
            .to_vec())
    }

    /// Stores the AK certificate in NV (the platform does this once, when it provisions the
    /// instance). Owner-writable, readable by anyone, so the launcher needs no secret.
    pub fn store_ak_cert(&mut self, cert_der: &[u8]) -> Result<(), AttesterError> {
        use std::io::Write;
        use tss_esapi::abstraction::nv::NvOpenOptions;
        use tss_esapi::attributes::NvIndexAttributesBuilder;
        use tss_esapi::handles::NvIndexTpmHandle;
        use tss_esapi::interface_types::resource_handles::NvAuth;
        use tss_esapi::structures::NvPublicBuilder;
        let index = NvIndexTpmHandle::new(AK_CERT_NV_INDEX).map_err(self.tpm())?;
        let attributes = NvIndexAttributesBuilder::new()
            .with_owner_write(true)
            .with_owner_read(true)
            .with_auth_read(true)
            .with_no_da(true)
            .build()
            .map_err(self.tpm())?;
        let public = NvPublicBuilder::new()
            .with_nv_index(index)
            .with_index_name_algorithm(HashingAlgorithm::Sha256)
            .with_index_attributes(attributes)
            .with_data_area_size(cert_der.len())
            .build()
            .map_err(self.tpm())?;
        let written = self.ctx.execute_with_nullauth_session(|ctx| {
            let mut nv = NvOpenOptions::NewIndex {
                nv_public: public,
                auth_handle: NvAuth::Owner,
            }
            .open(ctx)?;
            nv.write_all(cert_der).map_err(io_to_tss)
        });
        written.map_err(self.tpm())
    }

    /// Reads the AK certificate the platform stored in NV.
    pub fn ak_cert(&mut self) -> Result<Vec<u8>, AttesterError> {
        use tss_esapi::abstraction::nv;
        use tss_esapi::handles::NvIndexTpmHandle;
        use tss_esapi::interface_types::resource_handles::NvAuth;
        let index = NvIndexTpmHandle::new(AK_CERT_NV_INDEX).map_err(self.tpm())?;
        self.ctx
            .execute_with_nullauth_session(|ctx| nv::read_full(ctx, NvAuth::Owner, index))
            .map_err(self.tpm())
    }

    /// Extends PCR `index` in every bank given (the event log's digests for one event).
    pub fn extend(
        &mut self,
        index: u8,
        digests: &BTreeMap<HashAlg, Vec<u8>>,
    ) -> Result<(), AttesterError> {
        let handle = PcrHandle::try_from(index as u32).map_err(self.tpm())?;
        let mut values = DigestValues::new();
        for (alg, d) in digests {
            values.set(
                hashing(*alg),
                Digest::try_from(d.clone()).map_err(self.tpm())?,
            );
        }
        self.ctx
            .execute_with_nullauth_session(|ctx| ctx.pcr_extend(handle, values))
            .map_err(self.tpm())
    }

    /// Quotes `pcrs` of `bank` with `nonce` as qualifying data, and reads their values.
    pub fn quote(
        &mut self,
        nonce: &[u8],
        bank: HashAlg,
        pcrs: &[u8],
    ) -> Result<QuoteEvidence, AttesterError> {
        let slots = pcrs
            .iter()
            .map(|p| pcr_slot(*p))
            .collect::<Result<Vec<_>, _>>()?;
        let selection = PcrSelectionList::builder()
            .with_selection(hashing(bank), &slots)
            .build()
            .map_err(self.tpm())?;
        let (handle, _) = self.load_ak()?;
        let data = Data::try_from(nonce.to_vec()).map_err(self.tpm())?;
        let scheme = SignatureScheme::RsaSsa {
            hash_scheme: HashScheme::new(HashingAlgorithm::Sha256),
        };
        let quoted = self.ctx.execute_with_nullauth_session(|ctx| {
            ctx.quote(handle, data, scheme, selection.clone())
        });
        let flushed = self.ctx.flush_context(handle.into());
        let (attest, signature) = quoted.map_err(self.tpm())?;
        flushed.map_err(self.tpm())?;
        let mut pcr_values = BTreeMap::new();
        // PCR_Read answers at most eight PCRs at a time.
        for chunk in pcrs.chunks(8) {
            let slots = chunk
                .iter()
                .map(|p| pcr_slot(*p))
                .collect::<Result<Vec<_>, _>>()?;
            let sel = PcrSelectionList::builder()
                .with_selection(hashing(bank), &slots)
                .build()
                .map_err(self.tpm())?;
            let (_, _, digests) = self.ctx.pcr_read(sel).map_err(self.tpm())?;
            for (index, d) in chunk.iter().zip(digests.value()) {
                pcr_values.insert(*index, d.value().to_vec());
            }
        }
        Ok(QuoteEvidence {
            attest: attest.marshall().map_err(self.tpm())?,
            signature: signature.marshall().map_err(self.tpm())?,
            bank,
            pcr_values,
        })
    }
}
