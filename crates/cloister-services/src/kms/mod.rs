//! Cloud KMS subset: key rings, crypto keys (ENCRYPT_DECRYPT, AES-256-GCM) with versions and
//! rotation, `:encrypt` / `:decrypt` with additional authenticated data, IAM on key rings and
//! keys. Key material is stored encrypted under the server's key-encryption key (KEK).
//! Served as REST (`router.rs`) and gRPC (`grpc.rs`), both over the operations in
//! `service.rs`.
//!
//! Ciphertext format (opaque to clients, as Google's is): the key version as a 4-byte
//! big-endian number, the 12-byte nonce, then AES-256-GCM ciphertext and tag. The version
//! lets decryption pick the right key after rotation.

pub mod grpc;
pub mod router;
pub mod service;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use rand::RngCore;

use crate::error::ApiError;

const NONCE: usize = 12;

/// AES-256-GCM under `key` with `aad`; returns nonce ‖ ciphertext ‖ tag.
pub fn seal(key: &[u8], plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, ApiError> {
    let cipher = Aes256Gcm::new_from_slice(key)
        .map_err(|e| ApiError::Internal(format!("bad key length: {e}")))?;
    let mut nonce = [0u8; NONCE];
    rand::rng().fill_bytes(&mut nonce);
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| ApiError::Internal("encryption failed".into()))?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// The inverse of [`seal`]; `None` when the data was altered or the key or AAD is wrong.
pub fn open(key: &[u8], sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
    let cipher = Aes256Gcm::new_from_slice(key).ok()?;
    let nonce: [u8; NONCE] = sealed.get(..NONCE)?.try_into().ok()?;
    let body = sealed.get(NONCE..)?;
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: body, aad })
        .ok()
}

/// A fresh 256-bit data key.
pub fn new_key() -> Vec<u8> {
    let mut k = vec![0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_is_authenticated() {
        let key = new_key();
        let sealed = seal(&key, b"model weights", b"aad").unwrap();
        assert_eq!(open(&key, &sealed, b"aad").unwrap(), b"model weights");
        assert!(open(&key, &sealed, b"other aad").is_none());
        assert!(open(&new_key(), &sealed, b"aad").is_none());
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert!(open(&key, &flipped, b"aad").is_none());
        assert!(open(&key, &sealed[..10], b"aad").is_none());
    }
}
