//! Cloud KMS: key rings, crypto keys and their versions (material wrapped by the server's
//! key-encryption key).

use cloister_domain::ProjectId;
use time::OffsetDateTime;

use crate::db::{Row, constraint, query, rfc3339};
use crate::error::StoreError;
use crate::identity::insert_empty_policy;
use crate::store::Store;

/// What a crypto key is for, in Google's words (Cloister serves symmetric encryption).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    EncryptDecrypt,
}

/// A key version's state, in Google's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyVersionState {
    Enabled,
    Disabled,
    Destroyed,
}

google_enum!(KeyPurpose { EncryptDecrypt = "ENCRYPT_DECRYPT" });
google_enum!(KeyVersionState {
    Enabled = "ENABLED",
    Disabled = "DISABLED",
    Destroyed = "DESTROYED",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyRing {
    /// `projects/P/locations/L/keyRings/R`.
    pub name: String,
    pub project_id: ProjectId,
    pub create_time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsCryptoKey {
    /// `…/keyRings/R/cryptoKeys/K`.
    pub name: String,
    pub key_ring: String,
    pub purpose: KeyPurpose,
    pub primary_version: u32,
    pub create_time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyVersion {
    pub key: String,
    pub version: u32,
    pub state: KeyVersionState,
    /// The key material, encrypted under the server's key-encryption key.
    pub wrapped_material: Vec<u8>,
    pub create_time: OffsetDateTime,
}

const KEY_RING_COLUMNS: &str = "name, project_id, create_time";
const CRYPTO_KEY_COLUMNS: &str = "name, key_ring, purpose, primary_version, create_time";
const VERSION_COLUMNS: &str = "key, version, state, wrapped_material, create_time";

fn key_ring_row(r: &Row) -> Result<KmsKeyRing, StoreError> {
    Ok(KmsKeyRing {
        name: r.text(0)?,
        project_id: r.project_id(1)?,
        create_time: r.time(2)?,
    })
}

fn crypto_key_row(r: &Row) -> Result<KmsCryptoKey, StoreError> {
    let purpose = r.text(2)?;
    Ok(KmsCryptoKey {
        name: r.text(0)?,
        key_ring: r.text(1)?,
        purpose: KeyPurpose::parse(&purpose)
            .ok_or_else(|| StoreError::corrupt("key purpose", &purpose))?,
        primary_version: r.u32(3)?,
        create_time: r.time(4)?,
    })
}

fn version_row(r: &Row) -> Result<KmsKeyVersion, StoreError> {
    let state = r.text(2)?;
    Ok(KmsKeyVersion {
        key: r.text(0)?,
        version: r.u32(1)?,
        state: KeyVersionState::parse(&state)
            .ok_or_else(|| StoreError::corrupt("key version state", &state))?,
        wrapped_material: r.get(3)?,
        create_time: r.time(4)?,
    })
}

fn insert_version(v: &KmsKeyVersion) -> crate::db::Query {
    query(format!(
        "INSERT INTO kms_key_versions ({VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
    ))
    .bind(&v.key)
    .bind(v.version)
    .bind(v.state.as_str())
    .bind(&v.wrapped_material)
    .bind(rfc3339(v.create_time))
}

impl Store {
    /// Creates a key ring and its IAM policy (parent: the project).
    pub async fn create_key_ring(&self, r: &KmsKeyRing) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(
                    query(format!(
                        "INSERT INTO kms_key_rings ({KEY_RING_COLUMNS}) VALUES ($1, $2, $3)"
                    ))
                    .bind(&r.name)
                    .bind(r.project_id.as_str())
                    .bind(rfc3339(r.create_time)),
                )
                .await
                .map_err(|e| constraint(e, || format!("key ring {}", r.name)))?;
                insert_empty_policy(&tx, &r.name, &r.project_id.resource_name()).await
            })
            .await
    }

    pub async fn get_key_ring(&self, name: &str) -> Result<Option<KmsKeyRing>, StoreError> {
        let q = query(format!(
            "SELECT {KEY_RING_COLUMNS} FROM kms_key_rings WHERE name = $1"
        ));
        self.db.one(q.bind(name), key_ring_row).await
    }

    /// Key rings whose names start with `parent/` (`projects/P/locations/L`).
    pub async fn list_key_rings(&self, parent: &str) -> Result<Vec<KmsKeyRing>, StoreError> {
        let q = query(format!(
            "SELECT {KEY_RING_COLUMNS} FROM kms_key_rings
             WHERE substr(name, 1, length($1)) = $1 ORDER BY name"
        ));
        self.db
            .all(q.bind(format!("{parent}/keyRings/")), key_ring_row)
            .await
    }

    /// A project's key rings, in every location, by name.
    pub async fn list_project_key_rings(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<KmsKeyRing>, StoreError> {
        let q = query(format!(
            "SELECT {KEY_RING_COLUMNS} FROM kms_key_rings WHERE project_id = $1 ORDER BY name"
        ));
        self.db.all(q.bind(project.as_str()), key_ring_row).await
    }

    /// Creates a crypto key with its first version and IAM policy (parent: the key ring).
    pub async fn create_crypto_key(
        &self,
        k: &KmsCryptoKey,
        first: &KmsKeyVersion,
    ) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(
                    query(format!(
                        "INSERT INTO kms_crypto_keys ({CRYPTO_KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                    ))
                    .bind(&k.name)
                    .bind(&k.key_ring)
                    .bind(k.purpose.as_str())
                    .bind(k.primary_version)
                    .bind(rfc3339(k.create_time)),
                )
                .await
                .map_err(|e| constraint(e, || format!("crypto key {}", k.name)))?;
                tx.execute(insert_version(first)).await?;
                insert_empty_policy(&tx, &k.name, &k.key_ring).await
            })
            .await
    }

    pub async fn get_crypto_key(&self, name: &str) -> Result<Option<KmsCryptoKey>, StoreError> {
        let q = query(format!(
            "SELECT {CRYPTO_KEY_COLUMNS} FROM kms_crypto_keys WHERE name = $1"
        ));
        self.db.one(q.bind(name), crypto_key_row).await
    }

    pub async fn list_crypto_keys(&self, key_ring: &str) -> Result<Vec<KmsCryptoKey>, StoreError> {
        let q = query(format!(
            "SELECT {CRYPTO_KEY_COLUMNS} FROM kms_crypto_keys WHERE key_ring = $1 ORDER BY name"
        ));
        self.db.all(q.bind(key_ring), crypto_key_row).await
    }

    /// Adds the next version (enabled) and makes it primary (rotation); returns its number.
    pub async fn rotate_crypto_key(
        &self,
        key: &str,
        material: Vec<u8>,
        create_time: OffsetDateTime,
    ) -> Result<u32, StoreError> {
        self.db
            .transaction(|tx| {
                let material = material.clone();
                async move {
                    let next = query(
                        "SELECT COALESCE(MAX(version), 0) + 1 FROM kms_key_versions WHERE key = $1",
                    );
                    let next = tx.fetch_one(next.bind(key)).await?.u32(0)?;
                    let primary =
                        query("UPDATE kms_crypto_keys SET primary_version = $2 WHERE name = $1");
                    if tx.execute(primary.bind(key).bind(next)).await? != 1 {
                        return Err(StoreError::NotFound(format!("crypto key {key}")));
                    }
                    let version = KmsKeyVersion {
                        key: key.to_owned(),
                        version: next,
                        state: KeyVersionState::Enabled,
                        wrapped_material: material,
                        create_time,
                    };
                    tx.execute(insert_version(&version)).await?;
                    Ok(next)
                }
            })
            .await
    }

    pub async fn get_key_version(
        &self,
        key: &str,
        version: u32,
    ) -> Result<Option<KmsKeyVersion>, StoreError> {
        let q = query(format!(
            "SELECT {VERSION_COLUMNS} FROM kms_key_versions WHERE key = $1 AND version = $2"
        ));
        self.db.one(q.bind(key).bind(version), version_row).await
    }

    /// Destroys a version at once: its state becomes DESTROYED and its material is erased, so
    /// nothing it encrypted can be decrypted again. Returns whether this call destroyed it
    /// (false: it already was); NotFound when the key has no such version.
    pub async fn destroy_key_version(&self, key: &str, version: u32) -> Result<bool, StoreError> {
        let destroyed = KeyVersionState::Destroyed.as_str();
        let q = query(
            "UPDATE kms_key_versions SET state = $3, wrapped_material = $4
             WHERE key = $1 AND version = $2 AND state <> $3",
        );
        let q = q
            .bind(key)
            .bind(version)
            .bind(destroyed)
            .bind(Vec::<u8>::new());
        if self.db.execute(q).await? == 1 {
            return Ok(true);
        }
        match self.get_key_version(key, version).await? {
            Some(_) => Ok(false),
            None => Err(StoreError::NotFound(format!(
                "crypto key version {key}/cryptoKeyVersions/{version}"
            ))),
        }
    }

    pub async fn list_key_versions(&self, key: &str) -> Result<Vec<KmsKeyVersion>, StoreError> {
        let q = query(format!(
            "SELECT {VERSION_COLUMNS} FROM kms_key_versions WHERE key = $1 ORDER BY version"
        ));
        self.db.all(q.bind(key), version_row).await
    }
}
