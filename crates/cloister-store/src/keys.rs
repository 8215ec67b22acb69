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

pub trait KeyStore: Send + Sync {
    /// The issuer's keys, oldest first.
    fn list_signing_keys(&self, issuer: &str) -> Result<Vec<StoredSigningKey>, StoreError>;
    fn add_signing_key(&self, issuer: &str, key: &StoredSigningKey) -> Result<(), StoreError>;
    fn delete_signing_key(&self, issuer: &str, created: i64) -> Result<bool, StoreError>;
    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError>;
    /// The secret called `name`, storing `value` first if there is none: whoever stores first
    /// wins, and every caller gets the stored value (replicas starting together agree).
    fn secret_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError>;
}
