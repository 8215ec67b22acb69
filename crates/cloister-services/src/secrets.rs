//! The server's own secrets, kept in the metadata store so every replica shares them, and
//! sealed by the key-encryption key (KEK), which comes from outside the store.

use std::path::Path;

use cloister_store::MetadataStore;
use sha2::{Digest, Sha256};

/// A one-way check value of the KEK. The first start records it; a later start with another
/// KEK is refused before it could seal new material that the other replicas cannot open.
pub fn check_kek(store: &dyn MetadataStore, kek: &[u8]) -> Result<(), String> {
    let check: [u8; 32] = Sha256::new()
        .chain_update(b"cloister-kek-check-v1\0")
        .chain_update(kek)
        .finalize()
        .into();
    let recorded = store
        .secret_or_insert("kek-check", &check)
        .map_err(|e| e.to_string())?;
    if recorded != check {
        return Err("this key-encryption key is not the one that sealed the keys in this database: start the server with the KEK it was first started with (--kek-file or CLOISTER_KEK)".into());
    }
    Ok(())
}

/// The HMAC key of access tokens (any replica verifies any replica's tokens). An earlier
/// Cloister kept it in `legacy_file`: its value is kept, so issued tokens stay valid, and the
/// clear copy removed once the sealed one is stored.
pub fn access_token_key(
    store: &dyn MetadataStore,
    kek: &[u8],
    legacy_file: &Path,
) -> Result<Vec<u8>, String> {
    const NAME: &str = "access-token-hmac";
    let legacy = std::fs::read(legacy_file).ok().filter(|k| k.len() == 32);
    let fresh = legacy.clone().unwrap_or_else(crate::kms::new_key);
    let sealed = crate::kms::seal(kek, &fresh, NAME.as_bytes()).map_err(|e| e.to_string())?;
    let stored = store
        .secret_or_insert(NAME, &sealed)
        .map_err(|e| e.to_string())?;
    let key = crate::kms::open(kek, &stored, NAME.as_bytes())
        .ok_or("the stored access-token key does not open with this key-encryption key")?;
    if legacy.is_some() {
        std::fs::remove_file(legacy_file).map_err(|e| format!("{}: {e}", legacy_file.display()))?;
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store(dir: &Path) -> Arc<dyn MetadataStore> {
        Arc::new(cloister_store::SqliteStore::open(&dir.join("m.db")).unwrap())
    }

    #[test]
    fn a_second_kek_is_refused_and_the_token_key_is_shared_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        check_kek(store.as_ref(), &[1; 32]).unwrap();
        check_kek(store.as_ref(), &[1; 32]).unwrap();
        let err = check_kek(store.as_ref(), &[2; 32]).unwrap_err();
        assert!(err.contains("not the one that sealed"), "{err}");

        let none = dir.path().join("no-such-file");
        let key = access_token_key(store.as_ref(), &[1; 32], &none).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(
            access_token_key(store.as_ref(), &[1; 32], &none).unwrap(),
            key
        );
        assert!(access_token_key(store.as_ref(), &[2; 32], &none).is_err());
    }

    #[test]
    fn an_earlier_versions_token_key_file_is_kept_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access-token-hmac.key");
        std::fs::write(&file, [7u8; 32]).unwrap();
        let key = access_token_key(store(dir.path()).as_ref(), &[1; 32], &file).unwrap();
        assert_eq!(key, [7u8; 32]);
        assert!(!file.exists());
    }
}
