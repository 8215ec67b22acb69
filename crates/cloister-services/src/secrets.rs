//! The server's own secrets, kept in the metadata store so every replica shares them, and
//! sealed by the key-encryption key (KEK), which comes from outside the store.

use std::path::Path;

use cloister_store::MetadataStore;
use sha2::{Digest, Sha256};

const KEK_CHECK: &str = "kek-check";

/// A one-way check value of the KEK.
fn kek_check_value(kek: &[u8]) -> Vec<u8> {
    Sha256::new()
        .chain_update(b"cloister-kek-check-v1\0")
        .chain_update(kek)
        .finalize()
        .to_vec()
}

/// Whether a KEK has sealed this store's keys already (its check value is recorded).
pub fn kek_is_recorded(store: &dyn MetadataStore) -> Result<bool, cloister_store::StoreError> {
    Ok(store.secret(KEK_CHECK)?.is_some())
}

/// The first start records the KEK's check value; a later start with another KEK is refused
/// before it could seal new material that the other replicas cannot open.
pub fn check_kek(store: &dyn MetadataStore, kek: &[u8]) -> Result<(), String> {
    let check = kek_check_value(kek);
    let recorded = match store.secret(KEK_CHECK).map_err(|e| e.to_string())? {
        Some(recorded) => recorded,
        None => store
            .secret_or_insert(KEK_CHECK, &check)
            .map_err(|e| e.to_string())?,
    };
    if recorded != check {
        return Err("this key-encryption key is not the one that sealed the keys in this database: start the server with the KEK it was first started with (--kek-file or CLOISTER_KEK)".into());
    }
    Ok(())
}

/// Reseals everything `old` protects in the store under `new`, in one transaction, and records
/// `new`'s check value: afterwards only `new` opens the store. Every server on the store must
/// be stopped first, since a running one keeps sealing with `old`. Returns how many values it
/// resealed.
pub fn rotate_kek(store: &dyn MetadataStore, old: &[u8], new: &[u8]) -> Result<usize, String> {
    if new.len() != 32 {
        return Err(format!(
            "the new key-encryption key is {} bytes; it must be 32",
            new.len()
        ));
    }
    check_kek(store, old)?;
    if old == new {
        return Err("the new key-encryption key is the one in use: generate another (`head -c 32 /dev/urandom > new-kek`)".into());
    }
    store
        .reseal_all(&|place, value| {
            if matches!(place, cloister_store::SealedPlace::Secret { name } if name == KEK_CHECK) {
                return Ok(kek_check_value(new));
            }
            let clear = crate::kms::open(old, value, place.aad().as_bytes())
                .ok_or("it does not open with the current key-encryption key")?;
            crate::kms::seal(new, &clear, place.aad().as_bytes()).map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
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
    fn rotating_the_kek_keeps_every_key_and_only_the_new_kek_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let none = dir.path().join("none");
        let (old, new) = ([1u8; 32], [2u8; 32]);
        check_kek(store.as_ref(), &old).unwrap();
        let token_key = access_token_key(store.as_ref(), &old, &none).unwrap();
        let ca = identity_ca(store.as_ref(), &old, &none).unwrap();
        let signing = |kek: [u8; 32]| {
            crate::signing::SigningKeys::open(
                Arc::clone(&store),
                Arc::new(kek.to_vec()),
                "http://issuer.test",
                None,
            )
        };
        let jwks = signing(old).unwrap().jwks();

        for (current, next, refusal) in [
            ([3; 32], new, "not the one that sealed"),
            (old, old, "the one in use"),
        ] {
            let err = rotate_kek(store.as_ref(), &current, &next).unwrap_err();
            assert!(err.contains(refusal), "{err}");
        }
        check_kek(store.as_ref(), &old).expect("a refused rotation changes nothing");
        // Four: the KEK's check value, the token key, the identity CA, one signing key.
        assert_eq!(rotate_kek(store.as_ref(), &old, &new).unwrap(), 4);

        let err = check_kek(store.as_ref(), &old).unwrap_err();
        assert!(err.contains("not the one that sealed"), "{err}");
        check_kek(store.as_ref(), &new).unwrap();
        assert_eq!(
            access_token_key(store.as_ref(), &new, &none).unwrap(),
            token_key
        );
        assert!(access_token_key(store.as_ref(), &old, &none).is_err());
        assert_eq!(
            identity_ca(store.as_ref(), &new, &none).unwrap().cert_der(),
            ca.cert_der()
        );
        assert_eq!(signing(new).unwrap().jwks(), jwks);
        assert!(signing(old).is_err());
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
