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
    let recorded = match store.secret("kek-check").map_err(|e| e.to_string())? {
        Some(recorded) => recorded,
        None => store
            .secret_or_insert("kek-check", &check)
            .map_err(|e| e.to_string())?,
    };
    if recorded != check {
        return Err("this key-encryption key is not the one that sealed the keys in this database: start the server with the KEK it was first started with (--kek-file or CLOISTER_KEK)".into());
    }
    Ok(())
}

/// The secret `name`, sealed by `kek` (AAD: the name). Made by `make` only when the store has
/// none, so a usual start neither generates nor writes anything; replicas that make one at the
/// same moment all end up with whichever was stored first.
fn sealed_secret(
    store: &dyn MetadataStore,
    kek: &[u8],
    name: &str,
    make: impl FnOnce() -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let stored = match store.secret(name).map_err(|e| e.to_string())? {
        Some(stored) => stored,
        None => {
            let sealed =
                crate::kms::seal(kek, &make()?, name.as_bytes()).map_err(|e| e.to_string())?;
            store
                .secret_or_insert(name, &sealed)
                .map_err(|e| e.to_string())?
        }
    };
    crate::kms::open(kek, &stored, name.as_bytes())
        .ok_or_else(|| format!("the stored {name} does not open with this key-encryption key"))
}

/// Removes the clear files an earlier Cloister kept a secret in, once the sealed copy is stored.
fn remove_legacy(files: &[&Path]) -> Result<(), String> {
    for f in files {
        if f.exists() {
            std::fs::remove_file(f).map_err(|e| format!("{}: {e}", f.display()))?;
        }
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
    let key = sealed_secret(store, kek, "access-token-hmac", || {
        Ok(std::fs::read(legacy_file)
            .ok()
            .filter(|k| k.len() == 32)
            .unwrap_or_else(crate::kms::new_key))
    })?;
    remove_legacy(&[legacy_file])?;
    Ok(key)
}

/// The platform's instance identity CA (it certifies instances' attestation keys, so every
/// replica's verifier must trust the same one): its P-256 key and certificate, sealed in the
/// store as one secret so replicas starting together cannot pair one's key with another's
/// certificate. An earlier Cloister's `legacy_dir` (`key.pem`, `cert.der`) is kept, then removed.
pub fn identity_ca(
    store: &dyn MetadataStore,
    kek: &[u8],
    legacy_dir: &Path,
) -> Result<cloister_tpm::identity::IdentityCa, String> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use cloister_tpm::identity::IdentityCa;
    let (key_file, cert_file) = (legacy_dir.join("key.pem"), legacy_dir.join("cert.der"));
    let bundle = sealed_secret(store, kek, "identity-ca", || {
        let legacy = std::fs::read_to_string(&key_file)
            .ok()
            .zip(std::fs::read(&cert_file).ok());
        let ca =
            match &legacy {
                Some((key, cert)) => IdentityCa::load(key, cert)
                    .map_err(|e| format!("{}: {e}", legacy_dir.display()))?,
                None => IdentityCa::generate(time::OffsetDateTime::now_utc())
                    .map_err(|e| e.to_string())?,
            };
        let bundle = serde_json::json!({
            "key_pem": ca.key_pem(),
            "cert_der": STANDARD.encode(ca.cert_der()),
        });
        Ok(bundle.to_string().into_bytes())
    })?;
    let bundle: serde_json::Value =
        serde_json::from_slice(&bundle).map_err(|e| format!("the stored identity CA: {e}"))?;
    let cert = STANDARD
        .decode(bundle["cert_der"].as_str().unwrap_or_default())
        .map_err(|e| format!("the stored identity CA certificate: {e}"))?;
    let ca = IdentityCa::load(bundle["key_pem"].as_str().unwrap_or_default(), &cert)
        .map_err(|e| format!("the stored identity CA: {e}"))?;
    remove_legacy(&[&key_file, &cert_file])?;
    Ok(ca)
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
    fn every_replica_gets_the_same_identity_ca_and_an_earlier_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let none = dir.path().join("no-legacy");
        let a = identity_ca(store.as_ref(), &[1; 32], &none).unwrap();
        let b = identity_ca(store.as_ref(), &[1; 32], &none).unwrap();
        assert_eq!(a.cert_der(), b.cert_der());
        assert_eq!(a.key_pem(), b.key_pem());
        assert!(identity_ca(store.as_ref(), &[2; 32], &none).is_err());

        let other = tempfile::tempdir().unwrap();
        let legacy = other.path().join("identity-ca");
        std::fs::create_dir_all(&legacy).unwrap();
        let old =
            cloister_tpm::identity::IdentityCa::generate(time::OffsetDateTime::now_utc()).unwrap();
        std::fs::write(legacy.join("key.pem"), old.key_pem()).unwrap();
        std::fs::write(legacy.join("cert.der"), old.cert_der()).unwrap();
        let kept = identity_ca(self::store(other.path()).as_ref(), &[1; 32], &legacy).unwrap();
        assert_eq!(kept.cert_der(), old.cert_der());
        assert!(!legacy.join("key.pem").exists(), "no clear key is left");
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
