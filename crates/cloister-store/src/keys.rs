//! Server secrets in the metadata store, so every replica shares them: the token-signing keys
//! of each issuer, and named secrets (the access-token HMAC key, the key-encryption key's check
//! value). Private material arrives already wrapped by the key-encryption key, which never
//! lives in the store.

use crate::metadata::StoreError;

/// One signing key of an issuer, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSigningKey {
    /// Creation time, unix nanoseconds (orders keys; the newest signs).
    pub created: i64,
    /// The PKCS#8 private key, wrapped by the key-encryption key.
    pub wrapped: Vec<u8>,
}

/// A value the key-encryption key protects, by where it is stored. Each is sealed with its
/// place's name as AAD ([`SealedPlace::aad`]), except the KEK's own check value, a secret too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealedPlace {
    SigningKey { issuer: String, created: i64 },
    Secret { name: String },
    KmsKeyVersion { key: String, version: u32 },
}

impl std::fmt::Display for SealedPlace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealedPlace::SigningKey { issuer, created } => {
                write!(f, "signing key {created} of {issuer}")
            }
            SealedPlace::Secret { name } => write!(f, "secret {name}"),
            SealedPlace::KmsKeyVersion { key, version } => {
                write!(f, "{key}/cryptoKeyVersions/{version}")
            }
        }
    }
}

/// The store's error for a value `reseal` refused.
pub(crate) fn reseal_failed(place: &SealedPlace, detail: String) -> StoreError {
    StoreError::Reseal {
        place: place.to_string(),
        detail,
    }
}

impl SealedPlace {
    /// The AAD the value was sealed with: the issuer, the secret's name, the crypto key's name.
    pub fn aad(&self) -> &str {
        match self {
            SealedPlace::SigningKey { issuer, .. } => issuer,
            SealedPlace::Secret { name } => name,
            SealedPlace::KmsKeyVersion { key, .. } => key,
        }
    }
}

/// Computes the value that replaces `value` at its place (for a new KEK), or why it cannot.
pub type Reseal<'a> = dyn Fn(&SealedPlace, &[u8]) -> Result<Vec<u8>, String> + Sync + 'a;

pub trait KeyStore: Send + Sync {
    /// The issuer's keys, oldest first.
    fn list_signing_keys(&self, issuer: &str) -> Result<Vec<StoredSigningKey>, StoreError>;
    fn add_signing_key(&self, issuer: &str, key: &StoredSigningKey) -> Result<(), StoreError>;
    fn delete_signing_key(&self, issuer: &str, created: i64) -> Result<bool, StoreError>;
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The secret called `name`, storing `value` first if there is none: whoever stores first
    /// wins, and every caller gets the stored value (replicas starting together agree).
    fn secret_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;
    /// Replaces every value the KEK protects (signing keys, secrets, KMS key versions) with
    /// `reseal(place, value)`, in one transaction: when any fails, nothing changes and the
    /// error names its place. Returns how many values it replaced.
    fn reseal_all(&self, reseal: &Reseal) -> Result<usize, StoreError>;
}
