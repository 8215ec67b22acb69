//! [`KeyStore`] on PostgreSQL.

use super::{PostgresStore, rows};
use crate::keys::{KeyStore, StoredSigningKey};
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
}
