//! Keys: server secrets in the metadata store, so every replica shares them: the token-signing keys
//! of each issuer, and named secrets (the access-token HMAC key, the key-encryption key's check
//! value). Private material arrives already wrapped by the key-encryption key, which never
//! lives in the store.

use crate::db::query;
use crate::error::StoreError;
use crate::store::Store;

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

impl Store {
    /// The issuer's keys, oldest first.
    pub async fn list_signing_keys(&self, issuer: &str) -> Result<Vec<StoredSigningKey>, StoreError> {
        let q = query("SELECT created, wrapped FROM signing_keys WHERE issuer = $1 ORDER BY created");
        self.db
            .fetch_all(q.bind(issuer))
            .await?
            .iter()
            .map(|r| {
                Ok(StoredSigningKey {
                    created: r.int(0)?,
                    wrapped: r.get(1)?,
                })
            })
            .collect()
    }

    pub async fn add_signing_key(&self, issuer: &str, key: &StoredSigningKey) -> Result<(), StoreError> {
        let q = query("INSERT INTO signing_keys (issuer, created, wrapped) VALUES ($1, $2, $3)")
            .bind(issuer)
            .bind(key.created)
            .bind(&key.wrapped);
        self.db.execute(q).await?;
        Ok(())
    }

    pub async fn delete_signing_key(&self, issuer: &str, created: i64) -> Result<bool, StoreError> {
        let q = query("DELETE FROM signing_keys WHERE issuer = $1 AND created = $2")
            .bind(issuer)
            .bind(created);
        Ok(self.db.execute(q).await? > 0)
    }

    pub async fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let q = query("SELECT value FROM secrets WHERE name = $1").bind(name);
        self.db.fetch_optional(q).await?.map(|r| r.get(0)).transpose()
    }

    /// The secret called `name`, storing `value` first if there is none: whoever stores first
    /// wins, and every caller gets the stored value (replicas starting together agree).
    pub async fn secret_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        // Two statements, each with its own snapshot: when another replica's insert wins the
        // race, ours waits for it, does nothing, and the select then sees the winner's value.
        let insert = query(
            "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        );
        self.db.execute(insert.bind(name).bind(value)).await?;
        let q = query("SELECT value FROM secrets WHERE name = $1").bind(name);
        self.db.fetch_one(q).await?.get(0)
    }

    /// Replaces every value the KEK protects (signing keys, secrets, KMS key versions) with
    /// `reseal(place, value)`, in one transaction: when any fails, nothing changes and the
    /// error names its place. Returns how many values it replaced.
    pub async fn reseal_all(&self, reseal: &Reseal<'_>) -> Result<usize, StoreError> {
        self.db
            .transaction(|tx| async move {
                let mut sealed: Vec<(SealedPlace, Vec<u8>)> = Vec::new();
                for r in tx.fetch_all(query("SELECT issuer, created, wrapped FROM signing_keys")).await? {
                    let place = SealedPlace::SigningKey {
                        issuer: r.text(0)?,
                        created: r.int(1)?,
                    };
                    sealed.push((place, r.get(2)?));
                }
                for r in tx.fetch_all(query("SELECT name, value FROM secrets")).await? {
                    sealed.push((SealedPlace::Secret { name: r.text(0)? }, r.get(1)?));
                }
                let versions = query("SELECT key, version, wrapped_material FROM kms_key_versions");
                for r in tx.fetch_all(versions).await? {
                    let place = SealedPlace::KmsKeyVersion {
                        key: r.text(0)?,
                        version: r.u32(1)?,
                    };
                    sealed.push((place, r.get(2)?));
                }
                for (place, value) in &sealed {
                    let new = reseal(place, value).map_err(|e| reseal_failed(place, e))?;
                    let update = match place {
                        SealedPlace::SigningKey { issuer, created } => query(
                            "UPDATE signing_keys SET wrapped = $3 WHERE issuer = $1 AND created = $2",
                        )
                        .bind(issuer)
                        .bind(*created),
                        SealedPlace::Secret { name } => {
                            query("UPDATE secrets SET value = $2 WHERE name = $1").bind(name)
                        }
                        SealedPlace::KmsKeyVersion { key, version } => query(
                            "UPDATE kms_key_versions SET wrapped_material = $3
                             WHERE key = $1 AND version = $2",
                        )
                        .bind(key)
                        .bind(*version),
                    };
                    tx.execute(update.bind(new)).await?;
                }
                Ok(sealed.len())
            })
            .await
    }
}
