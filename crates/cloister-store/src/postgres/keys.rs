//! [`KeyStore`] on PostgreSQL.

use super::{Fail, PostgresStore, rows};
use crate::keys::{KeyStore, Reseal, SealedPlace, StoredSigningKey, reseal_failed};
use crate::metadata::StoreError;

impl KeyStore for PostgresStore {
    fn list_signing_keys(&self, issuer: &str) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT created, wrapped FROM signing_keys WHERE issuer = $1 ORDER BY created",
                    &[&issuer],
                )?,
                |r| {
                    Ok(StoredSigningKey {
                        created: r.try_get(0)?,
                        wrapped: r.try_get(1)?,
                    })
                },
            )
        })
    }

    fn add_signing_key(&self, issuer: &str, key: &StoredSigningKey) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                "INSERT INTO signing_keys (issuer, created, wrapped) VALUES ($1, $2, $3)",
                &[&issuer, &key.created, &key.wrapped],
            )?;
            Ok(())
        })
    }

    fn delete_signing_key(&self, issuer: &str, created: i64) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM signing_keys WHERE issuer = $1 AND created = $2",
                &[&issuer, &created],
            )? > 0)
        })
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|c| {
            c.query_opt("SELECT value FROM secrets WHERE name = $1", &[&name])?
                .map(|r| Ok(r.try_get(0)?))
                .transpose()
        })
    }

    fn secret_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        // Two statements, each with its own snapshot: when another replica's insert wins the
        // race, ours waits for it, does nothing, and the select then sees the winner's value.
        self.write_one(|c| {
            c.execute(
                "INSERT INTO secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &value],
            )?;
            Ok(
                c.query_one("SELECT value FROM secrets WHERE name = $1", &[&name])?
                    .try_get(0)?,
            )
        })
    }

    fn reseal_all(&self, reseal: &Reseal) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut sealed: Vec<(SealedPlace, Vec<u8>)> = Vec::new();
            for r in tx.query("SELECT issuer, created, wrapped FROM signing_keys", &[])? {
                let place = SealedPlace::SigningKey {
                    issuer: r.try_get(0)?,
                    created: r.try_get(1)?,
                };
                sealed.push((place, r.try_get(2)?));
            }
            for r in tx.query("SELECT name, value FROM secrets", &[])? {
                sealed.push((SealedPlace::Secret { name: r.try_get(0)? }, r.try_get(1)?));
            }
            for r in tx.query("SELECT key, version, wrapped_material FROM kms_key_versions", &[])? {
                let place = SealedPlace::KmsKeyVersion {
                    key: r.try_get(0)?,
                    version: r.try_get::<_, i64>(1)? as u32,
                };
                sealed.push((place, r.try_get(2)?));
            }
            for (place, value) in &sealed {
                let new = reseal(place, value).map_err(|e| Fail::Store(reseal_failed(place, e)))?;
                match place {
                    SealedPlace::SigningKey { issuer, created } => tx.execute(
                        "UPDATE signing_keys SET wrapped = $3 WHERE issuer = $1 AND created = $2",
                        &[issuer, created, &new],
                    ),
                    SealedPlace::Secret { name } => tx.execute(
                        "UPDATE secrets SET value = $2 WHERE name = $1",
                        &[name, &new],
                    ),
                    SealedPlace::KmsKeyVersion { key, version } => tx.execute(
                        "UPDATE kms_key_versions SET wrapped_material = $3 WHERE key = $1 AND version = $2",
                        &[key, &i64::from(*version), &new],
                    ),
                }?;
            }
            Ok(sealed.len())
        })
    }
}
