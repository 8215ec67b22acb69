//! User API credentials: an id and a 256-bit random secret, handed out once as a JSON file.
//!
//! The store keeps SHA-256 of the secret. A slow password hash would add nothing here: the
//! secret is random and high-entropy, so its hash cannot be brute-forced.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_domain::{CREDENTIAL_TYPE, CredentialFile, Email};
use cloister_store::CredentialRecord;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Creates a new credential for `user`: the record to store and the file to hand out.
pub fn generate(
    user: &Email,
    token_uri: &str,
    now: time::OffsetDateTime,
) -> (CredentialRecord, CredentialFile) {
    let mut id = [0u8; 12];
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut id);
    rand::rng().fill_bytes(&mut secret);
    let id = format!("cred-{}", hex::encode(id));
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let record = CredentialRecord {
        id: id.clone(),
        user: user.clone(),
        secret_sha256: Sha256::digest(secret.as_bytes()).into(),
        create_time: now,
    };
    let file = CredentialFile {
        kind: CREDENTIAL_TYPE.into(),
        client_email: user.to_string(),
        client_id: id,
        client_secret: secret,
        token_uri: token_uri.to_owned(),
    };
    (record, file)
}

/// Whether `secret` is the one `record` was issued with, compared in constant time.
pub fn secret_matches(record: &CredentialRecord, secret: &str) -> bool {
    let hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
    hash.ct_eq(&record.secret_sha256).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issued_secret_matches_and_it_is_not_stored() {
        let user = Email::parse("a@x.com").unwrap();
        let (record, file) = generate(
            &user,
            "http://h/oauth2/token",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        assert!(secret_matches(&record, &file.client_secret));
        assert!(!secret_matches(&record, "guess"));
        assert_ne!(hex::encode(record.secret_sha256), file.client_secret);
        let (other, _) = generate(
            &user,
            "http://h/oauth2/token",
            time::OffsetDateTime::UNIX_EPOCH,
        );
        assert_ne!(other.id, record.id);
    }
}
