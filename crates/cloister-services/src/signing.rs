//! RS256 signing keys for the tokens outside parties verify (service-account ID tokens now,
//! attestation tokens with the verifier), published as a JWKS with OIDC discovery.
//!
//! Keys live in the data directory as PKCS#8 PEM files (0600) named by their creation time,
//! one directory per issuer; the newest signs, and every key on disk stays in the JWKS so
//! tokens it signed keep verifying. Rotation adds a key and retires the keys whose successor
//! is older than a token's lifetime (every token they signed has expired).

use std::path::{Path, PathBuf};
use std::sync::RwLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::JwkSet;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing key {path}: {detail}")]
    Key { path: PathBuf, detail: String },
}

struct Key {
    /// Creation time, unix nanoseconds (the file name).
    created: i128,
    kid: String,
    /// Parsed once: jsonwebtoken's aws-lc backend re-parses (and re-validates) a DER key on
    /// every signature, which cost as much as the signature itself on the token hot path.
    pair: aws_lc_rs::signature::RsaKeyPair,
    decoding: DecodingKey,
    jwk: Value,
}

pub struct SigningKeys {
    issuer: String,
    dir: PathBuf,
    /// Oldest first; the last one signs.
    keys: RwLock<Vec<Key>>,
}

fn load(path: &Path) -> Result<Key, SigningError> {
    let fail = |detail: String| SigningError::Key {
        path: path.to_owned(),
        detail,
    };
    let pem = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let private = rsa::RsaPrivateKey::from_pkcs8_pem(&pem)
        .map_err(|e| fail(format!("not a PKCS#8 RSA key: {e}")))?;
    let der = private.to_pkcs1_der().map_err(|e| fail(e.to_string()))?;
    let public_der = private
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| fail(e.to_string()))?;
    // The key id is a digest of the public key, so it is the same on every replica.
    let kid = hex::encode(&Sha256::digest(public_der.as_bytes())[..8]);
    let (n, e) = (
        URL_SAFE_NO_PAD.encode(private.n().to_bytes_be()),
        URL_SAFE_NO_PAD.encode(private.e().to_bytes_be()),
    );
    let decoding = DecodingKey::from_rsa_components(&n, &e).map_err(|e| fail(e.to_string()))?;
    let created = path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok(Key {
        created,
        jwk: json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": n, "e": e}),
        kid,
        pair: aws_lc_rs::signature::RsaKeyPair::from_der(der.as_bytes())
            .map_err(|e| fail(format!("the RSA key is not usable: {e}")))?,
        decoding,
    })
}

fn generate(dir: &Path) -> Result<(), SigningError> {
    let fail = |detail: String| SigningError::Key {
        path: dir.to_owned(),
        detail,
    };
    let key =
        rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).map_err(|e| fail(e.to_string()))?;
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| fail(e.to_string()))?;
    let nanos = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
    let name = format!("{nanos:020}.pem");
    cloister_store::data_dir::write_private_file(&dir.join(name), pem.as_bytes())
        .map_err(|e| fail(e.to_string()))
}

fn list(dir: &Path) -> Result<Vec<PathBuf>, SigningError> {
    let fail = |detail: String| SigningError::Key {
        path: dir.to_owned(),
        detail,
    };
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| fail(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pem"))
        .collect();
    paths.sort();
    Ok(paths)
}

impl SigningKeys {
    /// Loads the keys in `dir` (creating the first one if there is none) for `issuer`.
    pub fn open(dir: &Path, issuer: &str) -> Result<Self, SigningError> {
        std::fs::create_dir_all(dir).map_err(|e| SigningError::Key {
            path: dir.to_owned(),
            detail: e.to_string(),
        })?;
        if list(dir)?.is_empty() {
            generate(dir)?;
        }
        let keys = list(dir)?
            .iter()
            .map(|p| load(p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            issuer: issuer.to_owned(),
            dir: dir.to_owned(),
            keys: RwLock::new(keys),
        })
    }

    fn keys(&self) -> std::sync::RwLockReadGuard<'_, Vec<Key>> {
        self.keys.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Adds a new signing key, retires keys whose successor is more than `retire_after_secs`
    /// old, and returns the new key id.
    pub fn rotate(&self, retire_after_secs: i64) -> Result<String, SigningError> {
        generate(&self.dir)?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos();
        let paths = list(&self.dir)?;
        let mut keep = Vec::new();
        for (i, path) in paths.iter().enumerate() {
            let successor = paths.get(i + 1).map(|p| load(p)).transpose()?;
            let retired = successor
                .is_some_and(|s| s.created + i128::from(retire_after_secs) * 1_000_000_000 <= now);
            if retired {
                std::fs::remove_file(path).map_err(|e| SigningError::Key {
                    path: path.clone(),
                    detail: e.to_string(),
                })?;
            } else {
                keep.push(load(path)?);
            }
        }
        let kid = keep.last().map(|k| k.kid.clone()).unwrap_or_default();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = keep;
        Ok(kid)
    }

    /// Signs `claims` with the newest key (RS256, with its `kid`). The JWT is assembled here
    /// (header, claims, signature, base64url) so the parsed key can be reused; tokens are
    /// verified by `jsonwebtoken` everywhere, which checks this encoding.
    pub fn sign<T: Serialize>(&self, claims: &T) -> String {
        let keys = self.keys();
        let Some(key) = keys.last() else {
            return String::new();
        };
        let header = json!({"typ": "JWT", "alg": "RS256", "kid": key.kid});
        let Ok(payload) = serde_json::to_vec(claims) else {
            return String::new();
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
        match signed {
            Ok(()) => format!("{message}.{}", URL_SAFE_NO_PAD.encode(signature)),
            Err(_) => String::new(),
        }
    }

    /// The key with `kid`, for verifying this issuer's own tokens in process.
    pub fn decoding_key(&self, kid: &str) -> Option<DecodingKey> {
        self.keys()
            .iter()
            .find(|k| k.kid == kid)
            .map(|k| k.decoding.clone())
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

    #[test]
    fn keys_persist_sign_and_verify() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::open(dir.path(), "http://issuer.test").unwrap();
        let token = keys.sign(&json!({"sub": "x", "exp": 4_000_000_000u64}));
        let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
        let again = SigningKeys::open(dir.path(), "http://issuer.test").unwrap();
        let key = &again.decoding_key(&kid).expect("same key after reopening");
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_aud = false;
        assert!(jsonwebtoken::decode::<Value>(&token, key, &v).is_ok());
        assert_eq!(again.jwks()["keys"].as_array().unwrap().len(), 1);
        let mode = std::fs::metadata(
            std::fs::read_dir(dir.path())
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path(),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn rotation_signs_with_the_new_key_and_retires_keys_only_after_their_tokens_expire() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SigningKeys::open(dir.path(), "http://issuer.test").unwrap();
        let kid = |t: &str| jsonwebtoken::decode_header(t).unwrap().kid.unwrap();
        let first = kid(&keys.sign(&json!({"n": 1})));
        let second = keys.rotate(3600).unwrap();
        assert_ne!(first, second);
        assert_eq!(kid(&keys.sign(&json!({"n": 2}))), second);
        assert!(
            keys.decoding_key(&first).is_some(),
            "tokens of the old key still verify"
        );
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 2);
        // With no lifetime left to honour, the superseded keys are retired.
        let third = keys.rotate(0).unwrap();
        assert!(keys.decoding_key(&first).is_none());
        assert!(keys.decoding_key(&second).is_none());
        assert_eq!(keys.jwks()["keys"].as_array().unwrap().len(), 1);
        assert_eq!(
            SigningKeys::open(dir.path(), "x").unwrap().jwks()["keys"][0]["kid"],
            third
        );
    }
}
