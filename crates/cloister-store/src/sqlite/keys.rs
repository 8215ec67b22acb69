//! [`KeyStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db};
use crate::keys::{KeyStore, Reseal, SealedPlace, StoredSigningKey, reseal_failed};
use crate::metadata::StoreError;

impl KeyStore for SqliteStore {
    fn list_signing_keys(&self, issuer: &str) -> Result<Vec<StoredSigningKey>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT created, wrapped FROM signing_keys WHERE issuer = ?1 ORDER BY created",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![issuer], |r| {
                    Ok(StoredSigningKey {
                        created: r.get(0)?,
                        wrapped: r.get(1)?,
                    })
                })
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn add_signing_key(&self, issuer: &str, key: &StoredSigningKey) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO signing_keys (issuer, created, wrapped) VALUES (?1, ?2, ?3)",
                params![issuer, key.created, key.wrapped],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn delete_signing_key(&self, issuer: &str, created: i64) -> Result<bool, StoreError> {
        self.with(|conn| {
            let n = conn
                .execute(
                    "DELETE FROM signing_keys WHERE issuer = ?1 AND created = ?2",
                    params![issuer, created],
                )
                .map_err(db)?;
            Ok(n > 0)
        })
    }

    fn secret(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached("SELECT value FROM secrets WHERE name = ?1")
                .map_err(db)?
                .query_row(params![name], |r| r.get(0))
                .optional()
                .map_err(db)
        })
    }

    fn secret_or_insert(&self, name: &str, value: &[u8]) -> Result<Vec<u8>, StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO secrets (name, value) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, value],
            )
            .map_err(db)?;
            conn.query_row(
                "SELECT value FROM secrets WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| StoreError::Database(format!("secret {name} vanished after insert")))
        })
    }

    fn reseal_all(&self, reseal: &Reseal) -> Result<usize, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db)?;
            let mut sealed: Vec<(SealedPlace, Vec<u8>)> = Vec::new();
            let mut select = |sql: &str, place: fn(&rusqlite::Row) -> rusqlite::Result<SealedPlace>| {
                let mut stmt = tx.prepare(sql).map_err(db)?;
                let rows = stmt
                    .query_map([], |r| Ok((place(r)?, r.get::<_, Vec<u8>>(2)?)))
                    .map_err(db)?;
                for row in rows {
                    sealed.push(row.map_err(db)?);
                }
                Ok::<_, StoreError>(())
            };
            select("SELECT issuer, created, wrapped FROM signing_keys", |r| {
                Ok(SealedPlace::SigningKey { issuer: r.get(0)?, created: r.get(1)? })
            })?;
            // The value third, as in the others.
            select("SELECT name, NULL, value FROM secrets", |r| {
                Ok(SealedPlace::Secret { name: r.get(0)? })
            })?;
            select("SELECT key, version, wrapped_material FROM kms_key_versions", |r| {
                Ok(SealedPlace::KmsKeyVersion { key: r.get(0)?, version: r.get(1)? })
            })?;
            for (place, value) in &sealed {
                let new = reseal(place, value).map_err(|e| reseal_failed(place, e))?;
                match place {
                    SealedPlace::SigningKey { issuer, created } => tx.execute(
                        "UPDATE signing_keys SET wrapped = ?3 WHERE issuer = ?1 AND created = ?2",
                        params![issuer, created, new],
                    ),
                    SealedPlace::Secret { name } => tx.execute(
                        "UPDATE secrets SET value = ?2 WHERE name = ?1",
                        params![name, new],
                    ),
                    SealedPlace::KmsKeyVersion { key, version } => tx.execute(
                        "UPDATE kms_key_versions SET wrapped_material = ?3 WHERE key = ?1 AND version = ?2",
                        params![key, version, new],
                    ),
                }
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(sealed.len())
        })
    }
}
