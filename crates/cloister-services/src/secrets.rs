//! The server's own secrets, kept in the metadata store so every replica shares them, and
//! sealed by the key-encryption key (KEK), which comes from outside the store.

use std::path::{Path, PathBuf};

use cloister_store::{Store, StoreError};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error(
        "this key-encryption key is not the one that sealed the keys in this database: start the server with the KEK it was first started with (--kek-file or CLOISTER_KEK)"
    )]
    WrongKek,
    #[error("the new key-encryption key is {0} bytes; it must be 32")]
    NewKekLength(usize),
    #[error(
        "the new key-encryption key is the one in use: generate another (`head -c 32 /dev/urandom > new-kek`)"
    )]
    SameKek,
    #[error("the stored {0} does not open with this key-encryption key")]
    DoesNotOpen(String),
    #[error("sealing {name}: {detail}")]
    Seal { name: String, detail: String },
    #[error("{what}: {detail}")]
    Unusable { what: String, detail: String },
    #[error("removing the clear copy {path}: {source}")]
    Legacy {
        path: PathBuf,
        source: std::io::Error,
    },
    /// With its causes: callers show this error as a message.
    #[error("{}", .0.chain())]
    Store(#[from] StoreError),
}

fn unusable(what: impl std::fmt::Display) -> impl FnOnce(String) -> SecretsError {
    let what = what.to_string();
    move |detail| SecretsError::Unusable { what, detail }
}

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
pub async fn kek_is_recorded(store: &Store) -> Result<bool, StoreError> {
    Ok(store.secret(KEK_CHECK).await?.is_some())
}

/// The first start records the KEK's check value; a later start with another KEK is refused
/// before it could seal new material that the other replicas cannot open.
pub async fn check_kek(store: &Store, kek: &[u8]) -> Result<(), SecretsError> {
    let check = kek_check_value(kek);
    let recorded = match store.secret(KEK_CHECK).await? {
        Some(recorded) => recorded,
        None => store.secret_or_insert(KEK_CHECK, &check).await?,
    };
    if recorded != check {
        return Err(SecretsError::WrongKek);
    }
    Ok(())
}

/// Reseals everything `old` protects in the store under `new`, in one transaction, and records
/// `new`'s check value: afterwards only `new` opens the store. Every server on the store must
/// be stopped first, since a running one keeps sealing with `old`. Returns how many values it
/// resealed.
pub async fn rotate_kek(store: &Store, old: &[u8], new: &[u8]) -> Result<usize, SecretsError> {
    if new.len() != 32 {
        return Err(SecretsError::NewKekLength(new.len()));
    }
    check_kek(store, old).await?;
    if old == new {
        return Err(SecretsError::SameKek);
    }
    Ok(store
        .reseal_all(&|place, value| {
            if matches!(place, cloister_store::SealedPlace::Secret { name } if name == KEK_CHECK) {
                return Ok(kek_check_value(new));
            }
            let clear = crate::kms::open(old, value, place.aad().as_bytes())
                .ok_or("it does not open with the current key-encryption key")?;
            crate::kms::seal(new, &clear, place.aad().as_bytes()).map_err(|e| e.to_string())
        })
        .await?)
}

/// The secret `name`, sealed by `kek` (AAD: the name). Made by `make` only when the store has
/// none, so a usual start neither generates nor writes anything; replicas that make one at the
/// same moment all end up with whichever was stored first.
async fn sealed_secret(
    store: &Store,
    kek: &[u8],
    name: &str,
    make: impl FnOnce() -> Result<Vec<u8>, SecretsError>,
) -> Result<Vec<u8>, SecretsError> {
    let stored = match store.secret(name).await? {
        Some(stored) => stored,
        None => {
            let sealed = crate::kms::seal(kek, &make()?, name.as_bytes()).map_err(|e| {
                SecretsError::Seal {
                    name: name.to_owned(),
                    detail: e.to_string(),
                }
            })?;
            store.secret_or_insert(name, &sealed).await?
        }
    };
    crate::kms::open(kek, &stored, name.as_bytes())
        .ok_or_else(|| SecretsError::DoesNotOpen(name.to_owned()))
}

/// Removes the clear files an earlier Cloister kept a secret in, once the sealed copy is stored.
fn remove_legacy(files: &[&Path]) -> Result<(), SecretsError> {
    for f in files {
        if f.exists() {
            std::fs::remove_file(f).map_err(|source| SecretsError::Legacy {
                path: f.to_path_buf(),
                source,
            })?;
        }
    }
    Ok(())
}

/// The HMAC key of access tokens (any replica verifies any replica's tokens). An earlier
/// Cloister kept it in `legacy_file`: its value is kept, so issued tokens stay valid, and the
/// clear copy removed once the sealed one is stored.
pub async fn access_token_key(
    store: &Store,
    kek: &[u8],
    legacy_file: &Path,
) -> Result<Vec<u8>, SecretsError> {
    let key = sealed_secret(store, kek, "access-token-hmac", || {
        Ok(std::fs::read(legacy_file)
            .ok()
            .filter(|k| k.len() == 32)
            .unwrap_or_else(crate::kms::new_key))
    })
    .await?;
    remove_legacy(&[legacy_file])?;
    Ok(key)
}

/// A CA's private key and certificate, sealed as one secret so replicas starting together
/// cannot pair one's key with another's certificate. The JSON shape is what earlier versions
/// stored: `{"key_pem": PEM, "cert_der": base64(DER)}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct CaBundle {
    key_pem: String,
    cert_der: String,
}

/// The CA sealed as secret `name` (`what` names it in errors), made by `make` (key PEM,
/// certificate DER) only when the store has none.
async fn sealed_ca(
    store: &Store,
    kek: &[u8],
    name: &str,
    what: &str,
    make: impl FnOnce() -> Result<(String, Vec<u8>), SecretsError>,
) -> Result<(String, Vec<u8>), SecretsError> {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    let bundle = sealed_secret(store, kek, name, || {
        let (key_pem, cert_der) = make()?;
        let bundle = CaBundle {
            key_pem,
            cert_der: STANDARD.encode(cert_der),
        };
        serde_json::to_vec(&bundle).map_err(|e| unusable(what)(e.to_string()))
    })
    .await?;
    let bundle: CaBundle = serde_json::from_slice(&bundle)
        .map_err(|e| unusable(format!("the stored {what}"))(e.to_string()))?;
    let cert = STANDARD
        .decode(&bundle.cert_der)
        .map_err(|e| unusable(format!("the stored {what}'s certificate"))(e.to_string()))?;
    Ok((bundle.key_pem, cert))
}

/// The platform's instance identity CA (it certifies instances' attestation keys, so every
/// replica's verifier must trust the same one). An earlier Cloister's `legacy_dir` (`key.pem`,
/// `cert.der`) is kept, then removed.
pub async fn identity_ca(
    store: &Store,
    kek: &[u8],
    legacy_dir: &Path,
) -> Result<cloister_tpm::identity::IdentityCa, SecretsError> {
    use cloister_tpm::identity::IdentityCa;
    const WHAT: &str = "identity CA";
    let (key_file, cert_file) = (legacy_dir.join("key.pem"), legacy_dir.join("cert.der"));
    let (key, cert) = sealed_ca(store, kek, "identity-ca", WHAT, || {
        let legacy = std::fs::read_to_string(&key_file)
            .ok()
            .zip(std::fs::read(&cert_file).ok());
        let ca = match &legacy {
            Some((key, cert)) => IdentityCa::load(key, cert)
                .map_err(|e| unusable(legacy_dir.display())(e.to_string()))?,
            None => IdentityCa::generate(time::OffsetDateTime::now_utc())
                .map_err(|e| unusable("generating the identity CA")(e.to_string()))?,
        };
        Ok((ca.key_pem(), ca.cert_der().to_vec()))
    })
    .await?;
    let ca = IdentityCa::load(&key, &cert)
        .map_err(|e| unusable(format!("the stored {WHAT}"))(e.to_string()))?;
    remove_legacy(&[&key_file, &cert_file])?;
    Ok(ca)
}

/// The attestation root CA of `PKI` tokens (relying parties pin its certificate, so every
/// replica must sign under the same one).
pub async fn attestation_pki(
    store: &Store,
    kek: &[u8],
) -> Result<crate::verifier::pki::AttestationPki, SecretsError> {
    use crate::verifier::pki::AttestationPki;
    const WHAT: &str = "attestation root CA";
    let (key, cert) = sealed_ca(store, kek, "attestation-pki-root", WHAT, || {
        let ca = AttestationPki::generate(time::OffsetDateTime::now_utc())
            .map_err(|e| unusable("generating the attestation root CA")(e.to_string()))?;
        Ok((ca.key_pem(), ca.root_der().to_vec()))
    })
    .await?;
    AttestationPki::load(&key, &cert)
        .map_err(|e| unusable(format!("the stored {WHAT}"))(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    async fn store(dir: &Path) -> Arc<Store> {
        Arc::new(Store::open_sqlite(&dir.join("m.db")).await.unwrap())
    }

    #[tokio::test]
    async fn a_second_kek_is_refused_and_the_token_key_is_shared_and_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        check_kek(store.as_ref(), &[1; 32]).await.unwrap();
        check_kek(store.as_ref(), &[1; 32]).await.unwrap();
        let err = check_kek(store.as_ref(), &[2; 32]).await.unwrap_err();
        assert!(matches!(err, SecretsError::WrongKek), "{err}");

        let none = dir.path().join("no-such-file");
        let key = access_token_key(store.as_ref(), &[1; 32], &none)
            .await
            .unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(
            access_token_key(store.as_ref(), &[1; 32], &none)
                .await
                .unwrap(),
            key
        );
        assert!(
            access_token_key(store.as_ref(), &[2; 32], &none)
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn every_replica_gets_the_same_attestation_root_sealed_by_the_kek() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let a = attestation_pki(store.as_ref(), &[1; 32]).await.unwrap();
        let b = attestation_pki(store.as_ref(), &[1; 32]).await.unwrap();
        assert_eq!(a.root_der(), b.root_der());
        assert_eq!(a.key_pem(), b.key_pem());
        let sealed = store.secret("attestation-pki-root").await.unwrap().unwrap();
        assert!(!String::from_utf8_lossy(&sealed).contains("PRIVATE KEY"));
        assert!(attestation_pki(store.as_ref(), &[2; 32]).await.is_err());
    }

    #[tokio::test]
    async fn every_replica_gets_the_same_identity_ca_and_an_earlier_one_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let none = dir.path().join("no-legacy");
        let a = identity_ca(store.as_ref(), &[1; 32], &none).await.unwrap();
        let b = identity_ca(store.as_ref(), &[1; 32], &none).await.unwrap();
        assert_eq!(a.cert_der(), b.cert_der());
        assert_eq!(a.key_pem(), b.key_pem());
        assert!(identity_ca(store.as_ref(), &[2; 32], &none).await.is_err());

        let other = tempfile::tempdir().unwrap();
        let legacy = other.path().join("identity-ca");
        std::fs::create_dir_all(&legacy).unwrap();
        let old =
            cloister_tpm::identity::IdentityCa::generate(time::OffsetDateTime::now_utc()).unwrap();
        std::fs::write(legacy.join("key.pem"), old.key_pem()).unwrap();
        std::fs::write(legacy.join("cert.der"), old.cert_der()).unwrap();
        let kept = identity_ca(self::store(other.path()).await.as_ref(), &[1; 32], &legacy)
            .await
            .unwrap();
        assert_eq!(kept.cert_der(), old.cert_der());
        assert!(!legacy.join("key.pem").exists(), "no clear key is left");
    }

    #[tokio::test]
    async fn rotating_the_kek_keeps_every_key_and_only_the_new_kek_opens_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let none = dir.path().join("none");
        let (old, new) = ([1u8; 32], [2u8; 32]);
        check_kek(store.as_ref(), &old).await.unwrap();
        let token_key = access_token_key(store.as_ref(), &old, &none).await.unwrap();
        let ca = identity_ca(store.as_ref(), &old, &none).await.unwrap();
        let signing = |kek: [u8; 32]| {
            crate::signing::SigningKeys::open(
                Arc::clone(&store),
                Arc::new(kek.to_vec()),
                "http://issuer.test",
                None,
            )
        };
        let jwks = signing(old).await.unwrap().jwks();

        let err = rotate_kek(store.as_ref(), &[3; 32], &new)
            .await
            .unwrap_err();
        assert!(matches!(err, SecretsError::WrongKek), "{err}");
        let err = rotate_kek(store.as_ref(), &old, &old).await.unwrap_err();
        assert!(matches!(err, SecretsError::SameKek), "{err}");
        check_kek(store.as_ref(), &old)
            .await
            .expect("a refused rotation changes nothing");
        // Four: the KEK's check value, the token key, the identity CA, one signing key.
        assert_eq!(rotate_kek(store.as_ref(), &old, &new).await.unwrap(), 4);

        let err = check_kek(store.as_ref(), &old).await.unwrap_err();
        assert!(matches!(err, SecretsError::WrongKek), "{err}");
        check_kek(store.as_ref(), &new).await.unwrap();
        assert_eq!(
            access_token_key(store.as_ref(), &new, &none).await.unwrap(),
            token_key
        );
        assert!(access_token_key(store.as_ref(), &old, &none).await.is_err());
        assert_eq!(
            identity_ca(store.as_ref(), &new, &none)
                .await
                .unwrap()
                .cert_der(),
            ca.cert_der()
        );
        assert_eq!(signing(new).await.unwrap().jwks(), jwks);
        assert!(signing(old).await.is_err());
    }

    #[tokio::test]
    async fn an_earlier_versions_token_key_file_is_kept_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("access-token-hmac.key");
        std::fs::write(&file, [7u8; 32]).unwrap();
        let key = access_token_key(store(dir.path()).await.as_ref(), &[1; 32], &file)
            .await
            .unwrap();
        assert_eq!(key, [7u8; 32]);
        assert!(!file.exists());
    }
}
