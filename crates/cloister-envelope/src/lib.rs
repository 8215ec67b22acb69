//! Envelope-encrypted files, for models too large for KMS to encrypt directly.
//!
//! A random 256-bit data key encrypts the file; KMS encrypts (wraps) the data key; the file
//! carries the wrapped key. The body is a chunked AEAD stream — AES-256-GCM in the STREAM
//! construction (Hoang, Reyhanitabar, Rogaway, Vizár), through the `aead` crate: each chunk's
//! nonce holds its index and a last-chunk flag, so truncation, reordering and splicing are
//! detected, and the header is every chunk's associated data, so it cannot be swapped.
//!
//! Format (all integers big-endian):
//! ```text
//! "CLOISTER-ENVELOPE-1\n"            20 bytes, magic
//! u32 header length, header           JSON: {"kmsKey", "wrappedKey" (base64), "chunkSize",
//!                                            "noncePrefix" (base64, 7 bytes)}
//! then per chunk: u32 length, sealed chunk (plaintext ≤ chunkSize, + 16-byte tag)
//! ```
//! The last chunk is sealed with the last-chunk flag (it may be empty).
//!
//! Invariant: no I/O beyond the `Read`/`Write` given; KMS calls belong to the caller.

use std::io::{Read, Write};

use aead::stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::{Aes256Gcm, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::RngCore;
use serde::{Deserialize, Serialize};

pub const MAGIC: &[u8; 20] = b"CLOISTER-ENVELOPE-1\n";
pub const CHUNK_SIZE: usize = 1 << 20;
const TAG: usize = 16;
const MAX_HEADER: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("not an envelope-encrypted file (the magic bytes are missing)")]
    NotEnvelope,
    #[error("the envelope header is malformed: {0}")]
    BadHeader(String),
    #[error(
        "the encrypted file was altered, truncated, reordered or made with another key (chunk {chunk}); no plaintext past the last good chunk was released"
    )]
    Tampered { chunk: u64 },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The header: which KMS key wraps the data key, and the wrapped data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Header {
    pub kms_key: String,
    /// The KMS ciphertext of the data key, base64.
    pub wrapped_key: String,
    pub chunk_size: usize,
    pub nonce_prefix: String,
}

/// The additional authenticated data under which KMS wraps an envelope's data key, so a
/// ciphertext made for envelopes cannot be passed off as another KMS ciphertext (and back).
pub const WRAP_AAD: &[u8] = b"cloister-envelope";

/// A fresh data key for one file.
pub fn data_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    k
}

/// Reads until `buf` is full or the input ends; returns how much was read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Encrypts `input` into `output` with `key`; `kms_key` and `wrapped_key` (the KMS ciphertext
/// of `key`) go into the header. Returns the plaintext length.
pub fn encrypt(
    key: &[u8; 32],
    kms_key: &str,
    wrapped_key: &[u8],
    mut input: impl Read,
    mut output: impl Write,
) -> Result<u64, EnvelopeError> {
    let mut prefix = [0u8; 7];
    rand::rng().fill_bytes(&mut prefix);
    let header = Header {
        kms_key: kms_key.to_owned(),
        wrapped_key: STANDARD.encode(wrapped_key),
        chunk_size: CHUNK_SIZE,
        nonce_prefix: STANDARD.encode(prefix),
    };
    let header_bytes =
        serde_json::to_vec(&header).map_err(|e| EnvelopeError::BadHeader(e.to_string()))?;
    output.write_all(MAGIC)?;
    output.write_all(&(header_bytes.len() as u32).to_be_bytes())?;
    output.write_all(&header_bytes)?;
    let cipher = Aes256Gcm::new(key.into());
    let mut stream = EncryptorBE32::from_aead(cipher, (&prefix).into());
    let (mut current, mut next) = (vec![0u8; CHUNK_SIZE], vec![0u8; CHUNK_SIZE]);
    let mut len = fill(&mut input, &mut current)?;
    let mut total = 0u64;
    let mut chunk = 0u64;
    loop {
        // Read ahead one chunk: the last one must be sealed as last.
        let next_len = if len == CHUNK_SIZE {
            fill(&mut input, &mut next)?
        } else {
            0
        };
        let payload = aead::Payload {
            msg: &current[..len],
            aad: &header_bytes,
        };
        total += len as u64;
        if next_len == 0 {
            let sealed = stream
                .encrypt_last(payload)
                .map_err(|_| EnvelopeError::Tampered { chunk })?;
            output.write_all(&(sealed.len() as u32).to_be_bytes())?;
            output.write_all(&sealed)?;
            output.flush()?;
            return Ok(total);
        }
        let sealed = stream
            .encrypt_next(payload)
            .map_err(|_| EnvelopeError::Tampered { chunk })?;
        output.write_all(&(sealed.len() as u32).to_be_bytes())?;
        output.write_all(&sealed)?;
        std::mem::swap(&mut current, &mut next);
        len = next_len;
        chunk += 1;
    }
}

/// Reads the header (and leaves `input` at the first chunk).
pub fn read_header(input: &mut impl Read) -> Result<(Header, Vec<u8>), EnvelopeError> {
    let mut magic = [0u8; 20];
    if fill(input, &mut magic)? != 20 || &magic != MAGIC {
        return Err(EnvelopeError::NotEnvelope);
    }
    let mut len = [0u8; 4];
    if fill(input, &mut len)? != 4 {
        return Err(EnvelopeError::BadHeader("it ends before the header".into()));
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_HEADER {
        return Err(EnvelopeError::BadHeader(format!(
            "the header claims {len} bytes"
        )));
    }
    let mut bytes = vec![0u8; len];
    if fill(input, &mut bytes)? != len {
        return Err(EnvelopeError::BadHeader("it ends inside the header".into()));
    }
    let header: Header =
        serde_json::from_slice(&bytes).map_err(|e| EnvelopeError::BadHeader(e.to_string()))?;
    if header.chunk_size != CHUNK_SIZE {
        return Err(EnvelopeError::BadHeader(format!(
            "chunk size {} is not {CHUNK_SIZE}",
            header.chunk_size
        )));
    }
    Ok((header, bytes))
}

/// Decrypts the chunks that follow the header into `output` with the unwrapped data `key`.
pub fn decrypt(
    key: &[u8; 32],
    header: &Header,
    header_bytes: &[u8],
    mut input: impl Read,
    mut output: impl Write,
) -> Result<u64, EnvelopeError> {
    let prefix: [u8; 7] = STANDARD
        .decode(&header.nonce_prefix)
        .ok()
        .and_then(|p| p.try_into().ok())
        .ok_or_else(|| EnvelopeError::BadHeader("noncePrefix is not 7 bytes of base64".into()))?;
    let cipher = Aes256Gcm::new(key.into());
    let mut stream = DecryptorBE32::from_aead(cipher, (&prefix).into());
    let mut buf = vec![0u8; CHUNK_SIZE + TAG];
    let mut total = 0u64;
    let mut chunk = 0u64;
    loop {
        let tampered = EnvelopeError::Tampered { chunk };
        let mut len = [0u8; 4];
        if fill(&mut input, &mut len)? != 4 {
            return Err(tampered); // ended before a last chunk: truncated
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > buf.len() || len < TAG {
            return Err(tampered);
        }
        if fill(&mut input, &mut buf[..len])? != len {
            return Err(tampered);
        }
        let payload = aead::Payload {
            msg: &buf[..len],
            aad: header_bytes,
        };
        // A chunk that opens as "not last" and a stream that then ends is truncation; one that
        // opens only as "last" ends the file, and anything after it is refused.
        if let Ok(plain) = stream.decrypt_next(payload) {
            output.write_all(&plain)?;
            total += plain.len() as u64;
            chunk += 1;
            continue;
        }
        let payload = aead::Payload {
            msg: &buf[..len],
            aad: header_bytes,
        };
        let plain = stream
            .decrypt_last(payload)
            .map_err(|_| EnvelopeError::Tampered { chunk })?;
        output.write_all(&plain)?;
        total += plain.len() as u64;
        let mut extra = [0u8; 1];
        if fill(&mut input, &mut extra)? != 0 {
            return Err(EnvelopeError::Tampered { chunk: chunk + 1 });
        }
        output.flush()?;
        return Ok(total);
    }
}
