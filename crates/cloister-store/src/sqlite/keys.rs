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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_listed_oldest_first_and_secrets_keep_the_first_value() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("m.db")).unwrap();
        for created in [30, 10, 20] {
            let key = StoredSigningKey {
                created,
                wrapped: vec![created as u8],
            };
            store.add_signing_key("https://issuer", &key).unwrap();
        }
        let listed: Vec<i64> = store
            .list_signing_keys("https://issuer")
            .unwrap()
            .iter()
            .map(|k| k.created)
            .collect();
        assert_eq!(listed, [10, 20, 30]);
        assert!(store.list_signing_keys("other").unwrap().is_empty());
        assert!(store.delete_signing_key("https://issuer", 10).unwrap());
        assert!(!store.delete_signing_key("https://issuer", 10).unwrap());
        assert_eq!(store.secret("hmac").unwrap(), None);
        assert_eq!(store.secret_or_insert("hmac", b"first").unwrap(), b"first");
        assert_eq!(
            store.secret("hmac").unwrap().as_deref(),
            Some(&b"first"[..])
        );
        assert_eq!(store.secret_or_insert("hmac", b"second").unwrap(), b"first");
    }
}
