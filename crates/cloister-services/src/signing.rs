//! RS256 signing keys for the tokens outside parties verify (service-account ID tokens now,
//! attestation tokens with the verifier), published as a JWKS with OIDC discovery.
//!
//! Keys live in the metadata store, each PKCS#8 key sealed by the key-encryption key (AAD: the
//! issuer), so every replica signs with the same keys and none is ever stored in the clear.
//! The newest signs; every stored key stays in the JWKS so tokens it signed keep verifying.
//! Rotation adds a key and retires the keys whose successor is older than a token's lifetime
//! (every token they signed has expired). A replica reloads the keys when it meets a key id it
//! does not know and every minute, so a rotation on one replica reaches the others.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_store::{Store, StoredSigningKey};
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing keys of {issuer}: {detail}")]
    Key { issuer: String, detail: String },
}

struct Key {
    kid: String,
    /// Parsed once: jsonwebtoken's aws-lc backend re-parses (and re-validates) a DER key on
    /// every signature, which cost as much as the signature itself on the token hot path.
    pair: aws_lc_rs::signature::RsaKeyPair,
    decoding: DecodingKey,
    jwk: Value,
    /// The public key's SubjectPublicKeyInfo (DER), for the certificate of `PKI` tokens.
    spki: Vec<u8>,
}

pub struct SigningKeys {
    issuer: String,
    store: Arc<Store>,
    kek: Arc<Vec<u8>>,
    /// Oldest first; the last one signs.
    keys: RwLock<Vec<Key>>,
    /// When the keys were last read from the store (a miss reloads at most this often).
    loaded: RwLock<Instant>,
}

/// How often a replica may reload its keys on meeting an unknown key id.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);

fn parse(pkcs8_der: &[u8]) -> Result<Key, String> {
    let private = rsa::RsaPrivateKey::from_pkcs8_der(pkcs8_der)
        .map_err(|e| format!("not a PKCS#8 RSA key: {e}"))?;
    let der = private.to_pkcs1_der().map_err(|e| e.to_string())?;
    let public_der = private
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| e.to_string())?;
    // The key id is a digest of the public key, so it is the same on every replica.
    let kid = hex::encode(&Sha256::digest(public_der.as_bytes())[..8]);
    let (n, e) = (
        URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
    );
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| e.to_string())?;
    Ok(Key {
        jwk: json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e}),
        kid,
        pair: aws_lc_rs::signature::RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| format!("the RSA key is not usable: {e}"))?,
        decoding,
        spki: public_der.as_bytes().to_vec(),
    })
}

/// PKCS#8 PEM files a data directory of an earlier Cloister kept keys in (named by their
/// creation time in nanoseconds), oldest first.
fn legacy_files(dir: &Path) -> Vec<(i64, PathBuf)> {
    let mut found: Vec<(i64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .filter_map(|p| {
            let created = p.file_stem()?.to_str()?.parse().ok()?;
            Some((created, p))
        })
        .collect();
    found.sort();
    found
}

fn now_nanos() -> i64 {
    i64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

impl SigningKeys {
    /// The keys of `issuer` in `store`, sealed by `kek`. The first start creates one, after
    /// importing (and removing) the PEM files an earlier Cloister kept in `legacy_dir`, so
    /// tokens signed before the upgrade keep verifying.
    pub async fn open(
        store: Arc<Store>,
        kek: Arc<Vec<u8>>,
        issuer: &str,
        legacy_dir: Option<&Path>,
    ) -> Result<Self, SigningError> {
        let keys = Self {
            issuer: issuer.to_owned(),
            store,
            kek,
            keys: RwLock::default(),
            loaded: RwLock::new(Instant::now()),
        };
        if let Some(dir) = legacy_dir {
            keys.import(dir).await?;
        }
        if keys
            .store
            .list_signing_keys(issuer)
            .await
            .map_err(|e| keys.fail(e.chain()))?
            .is_empty()
        {
            keys.generate().await?;
        }
        keys.reload().await?;
        Ok(keys)
    }

    fn fail(&self, detail: impl std::fmt::Display) -> SigningError {
        SigningError::Key {
            issuer: self.issuer.clone(),
            detail: detail.to_string(),
        }
    }

    async fn add(&self, created: i64, pkcs8_der: &[u8]) -> Result<(), SigningError> {
        let wrapped = crate::kms::seal(&self.kek, pkcs8_der, self.issuer.as_bytes())
            .map_err(|e| self.fail(e))?;
        self.store
            .add_signing_key(&self.issuer, &StoredSigningKey { created, wrapped })
            .await
            .map_err(|e| self.fail(e.chain()))
    }

    async fn import(&self, dir: &Path) -> Result<(), SigningError> {
        for (created, path) in legacy_files(dir) {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| self.fail(format!("{}: {e}", path.display())))?;
            let key = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
                .map_err(|e| self.fail(format!("{}: not a PKCS#8 RSA key: {e}", path.display())))?;
            let der = key.to_pkcs8_der().map_err(|e| self.fail(e))?;
            self.add(created, der.as_bytes()).await?;
            // Stored (sealed) first, then the clear copy goes.
            std::fs::remove_file(&path)
                .map_err(|e| self.fail(format!("{}: {e}", path.display())))?;
            tracing::info!(issuer = %self.issuer, path = %path.display(), "moved a signing key into the metadata store, sealed by the key-encryption key");
        }
        Ok(())
    }

    async fn generate(&self) -> Result<(), SigningError> {
        // Finding 2048-bit primes takes a while: off the runtime's worker threads.
        let der = tokio::task::spawn_blocking(|| {
            let key =
                rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| e.to_string())?;
            key.to_pkcs8_der().map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| self.fail(format!("generating a key: {e}")))?
        .map_err(|e| self.fail(e))?;
        self.add(now_nanos(), der.as_bytes()).await
    }

    /// Reads the keys from the store again (a rotation on another replica shows up here).
    pub async fn reload(&self) -> Result<(), SigningError> {
        let stored = self
            .store
            .list_signing_keys(&self.issuer)
            .await
            .map_err(|e| self.fail(e.chain()))?;
        let keys = stored
            .iter()
            .map(|k| {
                let der = crate::kms::open(&self.kek, &k.wrapped, self.issuer.as_bytes())
                    .ok_or_else(|| {
                        self.fail("a stored key does not open with this key-encryption key: the server was started with a different KEK than the one that sealed its keys")
                    })?;
                parse(&der).map_err(|e| self.fail(e))
            })
            .collect::<Result<Vec<_>, _>>()?;
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keys;
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        Ok(())
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Adds a new signing key, retires keys whose successor is more than `retire_after_secs`
    /// old, and returns the new key id.
    pub async fn rotate(&self, retire_after_secs: i64) -> Result<String, SigningError> {
        self.generate().await?;
        let now = now_nanos();
        let stored = self
            .store
            .list_signing_keys(&self.issuer)
            .await
            .map_err(|e| self.fail(e.chain()))?;
        for pair in stored.windows(2) {
            let successor_age = now.saturating_sub(pair[1].created);
            if successor_age >= retire_after_secs.saturating_mul(1_000_000_000) {
                self.store
                    .delete_signing_key(&self.issuer, pair[0].created)
                    .await
                    .map_err(|e| self.fail(e.chain()))?;
            }
        }
        self.reload().await?;
        Ok(self
            .keys()
            .last()
            .map(|k| k.kid.clone())
            .unwrap_or_default())
    }

    /// Signs `claims` with the newest key (RS256, with its `kid`). The JWT is assembled here
    /// (header, claims, signature, base64url) so the parsed key can be reused; tokens are
    /// verified by `jsonwebtoken` everywhere, which checks this encoding.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        self.sign_with(claims, |kid, _| {
            Ok::<_, std::convert::Infallible>(json!({"typ": "JWT", "alg": "RS256", "kid": kid}))
        })
        .unwrap_or_default()
    }

    /// Signs `claims` with the newest key under the header `header(kid, spki_der)` makes (it
    /// must say `alg: RS256`), read under the same lock as the key so a rotation in between
    /// cannot pair one key's header with another's signature. Empty if no key can sign.
    pub fn sign_with<T: Serialize, E>(
        &self,
        claims: &T,
        header: impl FnOnce(&str, &[u8]) -> Result<Value, E>,
    ) -> Result<String, E> {
        let keys = self.keys();
        let Some(key) = keys.last() else {
            return Ok(String::new());
        };
        let header = header(&key.kid, &key.spki)?;
        let Ok(payload) = serde_json::to_vec(claims) else {
            return Ok(String::new());
        };
        let message = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let mut signature = vec![0; key.pair.public_modulus_len()];
        let signed = key.pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            message.as_bytes(),
            &mut signature,
        );
        Ok(match signed {
            Ok(()) => format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)),
            Err(_) => String::new(),
        })
    }

    /// The key with `kid`, for verifying this issuer's own tokens in process. An unknown kid
    /// may be a key another replica just made: reload (at most once a second) and look again.
    pub async fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        let find = || {
            self.keys()
                .iter()
                .find(|k| k.kid == kid)
                .map(|k| k.decoding.clone())
        };
        if let Some(key) = find() {
            return Some(key);
        }
        let stale = self
            .loaded
            .read()
            .map(|t| t.elapsed() >= RELOAD_AT_MOST_EVERY)
            .unwrap_or(true);
        if stale && self.reload().await.is_ok() {
            return find();
        }
        None
    }

    /// Every key, for `GET …/jwks`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys().iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }

    pub fn jwk_set(&self) -> JwkSet {
        serde_json::from_value(self.jwks()).unwrap_or(JwkSet { keys: vec![] })
    }

    /// The OIDC discovery document for this issuer, its JWKS at `jwks_uri`.
    pub fn discovery(&self, jwks_uri: &str) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": ["iss", "aud", "sub", "iat", "exp", "email", "email_verified", "azp"],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store(dir: &Path) -> Arc<Store> {
        Arc::new(Store::open_sqlite(&dir.join("m.db")).await.unwrap())
    }

    fn kek(byte: u8) -> Arc<Vec<u8>> {
        Arc::new(vec![byte; 32])
    }

    async fn verifies(keys: &SigningKeys, token: &str) -> bool {
        let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
        let Some(key) = keys.decoding_key(&kid).await else {
            return false;
        };
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key, &v).is_ok()
    }

    #[tokio::test]
    async fn keys_are_shared_through_the_store_and_sealed_by_the_kek() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let keys = SigningKeys::open(store.clone(), kek(1), "http://issuer.test", None)
            .await
            .unwrap();
        let token = keys.sign(&json!({"sub": "x", "exp": 4_000_000_000u64}));
        // Another replica (same store, same KEK) verifies it and signs with the same key.
        let replica = SigningKeys::open(store.clone(), kek(1), "http://issuer.test", None)
            .await
            .unwrap();
        assert!(verifies(&replica, &token).await);
        assert_eq!(replica.jwks(), keys.jwks());
        // Stored sealed: the private key's bytes are not in the database.
        let stored = store.list_signing_keys("http://issuer.test").await.unwrap();
        assert_eq!(stored.len(), 1);
        assert!(crate::kms::open(&[1; 32], &stored[0].wrapped, b"http://issuer.test").is_some());
        assert!(crate::kms::open(&[1; 32], &stored[0].wrapped, b"http://other.test").is_none());
        // A server with another KEK cannot use them, and says why.
        let err = SigningKeys::open(store, kek(2), "http://issuer.test", None)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("different KEK"), "{err}");
    }

    #[tokio::test]
    async fn rotation_on_one_replica_reaches_the_other_and_retires_keys_after_their_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let keys = SigningKeys::open(store.clone(), kek(1), "http://issuer.test", None)
            .await
            .unwrap();
        let replica = SigningKeys::open(store.clone(), kek(1), "http://issuer.test", None)
            .await
            .unwrap();
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        let first_token = keys.sign(&json!({"n": 1}));
        let first = kid(&first_token);
        let second = keys.rotate(3600).await.unwrap();
        assert_ne!(first, second);
        let second_token = keys.sign(&json!({"n": 2}));
        assert_eq!(kid(&second_token), second);
        assert!(
            verifies(&keys, &first_token).await,
            "tokens of the old key still verify"
        );
        tokio::time::sleep(RELOAD_AT_MOST_EVERY).await;
        assert!(
            verifies(&replica, &second_token).await,
            "the replica learns the new key"
        );
        assert_eq!(replica.jwks()["keys"].as_array().unwrap().len(), 2);
        // With no lifetime left to honour, the superseded keys are retired.
        let third = keys.rotate(0).await.unwrap();
        assert!(keys.decoding_key(&first).await.is_none());
        assert!(keys.decoding_key(&second).await.is_none());
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
        let reopened = SigningKeys::open(store, kek(1), "x", None).await.unwrap();
        assert_ne!(
            reopened.jwks()["keys"][0]["kid"],
            third,
            "another issuer, other keys"
        );
        assert_eq!(keys.jwks()["keys"][0]["kid"], third);
    }

    #[tokio::test]
    async fn pem_files_of_an_earlier_version_move_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("keys/attestation");
        std::fs::create_dir_all(&legacy).unwrap();
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
        let pem = key.to_pkcs8_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        std::fs::write(legacy.join("00000000000000000042.pem"), pem.as_bytes()).unwrap();
        let keys = SigningKeys::open(
            store(dir.path()).await,
            kek(1),
            "http://issuer.test",
            Some(&legacy),
        )
        .await
        .unwrap();
        assert_eq!(
            keys.jwks()["keys"].as_array().unwrap().len(),
            1,
            "imported, none generated"
        );
        assert_eq!(
            keys.jwks()["keys"][0]["n"],
            URL_SAFE_NO_PAD.encode(key.n().to_bytes_be())
        );
        assert_eq!(
            std::fs::read_dir(&legacy).unwrap().count(),
            0,
            "no clear copy is left"
        );
    }
}
