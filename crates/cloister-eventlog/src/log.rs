//! Records, encoding, decoding and replay.

use std::collections::BTreeMap;
use std::fmt;

use sha2::Digest;

use crate::{COS_CONTENT_TYPE, Event, EventLogError, tlv};

const RECNUM: u8 = 0;
const REGISTER: u8 = 1;
const DIGESTS: u8 = 3;

/// A register bank's hash algorithm, by its TPM algorithm id.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum HashAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlg {
    pub fn tpm_id(self) -> u8 {
        match self {
            HashAlg::Sha1 => 0x04,
            HashAlg::Sha256 => 0x0B,
            HashAlg::Sha384 => 0x0C,
            HashAlg::Sha512 => 0x0D,
        }
    }

    pub fn from_tpm_id(id: u8) -> Option<Self> {
        [
            HashAlg::Sha1,
            HashAlg::Sha256,
            HashAlg::Sha384,
            HashAlg::Sha512,
        ]
        .into_iter()
        .find(|a| a.tpm_id() == id)
    }

    pub fn size(self) -> usize {
        match self {
            HashAlg::Sha1 => 20,
            HashAlg::Sha256 => 32,
            HashAlg::Sha384 => 48,
            HashAlg::Sha512 => 64,
        }
    }

    pub fn hash(self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<D: Digest>(parts: &[&[u8]]) -> Vec<u8> {
            let mut h = D::new();
            for p in parts {
                h.update(p);
            }
            h.finalize().to_vec()
        }
        match self {
            HashAlg::Sha1 => run::<sha1::Sha1>(parts),
            HashAlg::Sha256 => run::<sha2::Sha256>(parts),
            HashAlg::Sha384 => run::<sha2::Sha384>(parts),
            HashAlg::Sha512 => run::<sha2::Sha512>(parts),
        }
    }
}

impl fmt::Display for HashAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HashAlg::Sha1 => "SHA-1",
            HashAlg::Sha256 => "SHA-256",
            HashAlg::Sha384 => "SHA-384",
            HashAlg::Sha512 => "SHA-512",
        })
    }
}

/// One record as it appears in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub recnum: u64,
    /// The register index: a PCR number, or a CCEL MR index for TDX.
    pub index: u8,
    pub digests: BTreeMap<HashAlg, Vec<u8>>,
    /// The content TLV's type and value.
    pub content_type: u8,
    pub content: Vec<u8>,
}

impl Record {
    /// The bytes every bank hashes: the whole content TLV.
    pub fn content_tlv(&self) -> Vec<u8> {
        tlv::encode(self.content_type, &self.content)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventLog {
    pub records: Vec<Record>,
}

impl EventLog {
    /// Appends a container event for register `index`, with a digest for each bank in `algs`;
    /// returns those digests (what the attester extends into the register).
    pub fn append(
        &mut self,
        index: u8,
        algs: &[HashAlg],
        event: &Event,
    ) -> BTreeMap<HashAlg, Vec<u8>> {
        let content = tlv::encode(event.kind as u8, &event.content);
        let whole = tlv::encode(COS_CONTENT_TYPE, &content);
        let digests: BTreeMap<_, _> = algs.iter().map(|a| (*a, a.hash(&[&whole]))).collect();
        self.records.push(Record {
            recnum: self.records.len() as u64,
            index,
            digests: digests.clone(),
            content_type: COS_CONTENT_TYPE,
            content,
        });
        digests
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in &self.records {
            tlv::write(&mut out, RECNUM, &r.recnum.to_be_bytes());
            tlv::write(&mut out, REGISTER, &[r.index]);
            let mut digests = Vec::new();
            for (alg, d) in &r.digests {
                tlv::write(&mut digests, alg.tpm_id(), d);
            }
            tlv::write(&mut out, DIGESTS, &digests);
            tlv::write(&mut out, r.content_type, &r.content);
        }
        out
    }

    /// Parses a log, refusing truncation, misnumbered records, unknown banks and digests of
    /// the wrong size. (Digests are checked against content by [`Self::container_claims`].)
    pub fn decode(bytes: &[u8]) -> Result<Self, EventLogError> {
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let record = records.len();
            let field = |pos: &mut usize, expected: u8, what| -> Result<&[u8], EventLogError> {
                let (kind, value) = tlv::read(bytes, pos, what)?;
                if kind != expected {
                    return Err(EventLogError::UnexpectedField {
                        record,
                        expected,
                        found: kind,
                    });
                }
                Ok(value)
            };
            let recnum = field(&mut pos, RECNUM, "record number")?;
            let recnum: [u8; 8] = recnum.try_into().map_err(|_| EventLogError::FieldLength {
                record,
                field: "record number",
                len: recnum.len(),
                expected: 8,
            })?;
            let recnum = u64::from_be_bytes(recnum);
            if recnum != record as u64 {
                return Err(EventLogError::RecordNumber {
                    record,
                    found: recnum,
                    expected: record as u64,
                });
            }
            let index = field(&mut pos, REGISTER, "register index")?;
            let [index] = index[..] else {
                return Err(EventLogError::FieldLength {
                    record,
                    field: "register index",
                    len: index.len(),
                    expected: 1,
                });
            };
            let digest_bytes = field(&mut pos, DIGESTS, "digests")?;
            let mut digests = BTreeMap::new();
            let mut dpos = 0;
            while dpos < digest_bytes.len() {
                let (id, digest) = tlv::read(digest_bytes, &mut dpos, "digest")?;
                let alg = HashAlg::from_tpm_id(id)
                    .ok_or(EventLogError::UnknownAlgorithm { record, alg: id })?;
                if digest.len() != alg.size() {
                    return Err(EventLogError::DigestLength {
                        record,
                        alg,
                        len: digest.len(),
                        expected: alg.size(),
                    });
                }
                // A second digest of a bank would be silently dropped here but might be the
                // one another parser reads: refuse the ambiguity.
                if digests.insert(alg, digest.to_vec()).is_some() {
                    return Err(EventLogError::DuplicateDigest { record, alg });
                }
            }
            let (content_type, content) = tlv::read(bytes, &mut pos, "content")?;
            records.push(Record {
                recnum,
                index,
                digests,
                content_type,
                content: content.to_vec(),
            });
        }
        Ok(Self { records })
    }

    /// The value register `index` of bank `alg` holds after replaying every record for it from
    /// zero. Every such record must carry a digest for `alg`.
    pub fn replay(&self, alg: HashAlg, index: u8) -> Result<Vec<u8>, EventLogError> {
        let mut register = vec![0u8; alg.size()];
        for (i, r) in self
            .records
            .iter()
            .enumerate()
            .filter(|(_, r)| r.index == index)
        {
            let digest = r
                .digests
                .get(&alg)
                .ok_or(EventLogError::MissingDigest { record: i, alg })?;
            register = alg.hash(&[&register, digest]);
        }
        Ok(register)
    }
}
