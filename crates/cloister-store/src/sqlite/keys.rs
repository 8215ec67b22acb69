//! [`KeyStore`] on SQLite.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db};
use crate::keys::{KeyStore, StoredSigningKey};
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
}
