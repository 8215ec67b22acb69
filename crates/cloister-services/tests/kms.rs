//! Cloud KMS in process: key rings, keys, encrypt/decrypt with AAD, rotation, who may use a
//! key, and that key material is never stored in the clear.

mod support;

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::{Api, message};

const KEY: &str =
    "/v1/projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys/model-key";

async fn world() -> (Api, String, String) {
    let api = Api::start().await;
    let owner = api.user("primus@example.com").await;
    let other = api.user("secundus@example.com").await;
    api.call(
        &owner,
        "POST",
        "/v1/projects",
        Some(json!({"projectId": "primus-bank"})),
    )
    .await;
    let (s, b) = api
        .call(
            &owner,
            "POST",
            "/v1/projects/primus-bank/locations/global/keyRings?keyRingId=primus-ring",
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = api
        .call(&owner, "POST", "/v1/projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys?cryptoKeyId=model-key", Some(json!({"purpose": "ENCRYPT_DECRYPT"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (api, owner, other)
}

async fn encrypt(api: &Api, token: &str, plaintext: &[u8], aad: &[u8]) -> (StatusCode, Value) {
    let body = json!({"plaintext": STANDARD.encode(plaintext), "additionalAuthenticatedData": STANDARD.encode(aad)});
    api.call(token, "POST", &format!("{KEY}:encrypt"), Some(body))
        .await
}

async fn decrypt(api: &Api, token: &str, ciphertext: &str, aad: &[u8]) -> (StatusCode, Value) {
    let body =
        json!({"ciphertext": ciphertext, "additionalAuthenticatedData": STANDARD.encode(aad)});
    api.call(token, "POST", &format!("{KEY}:decrypt"), Some(body))
        .await
}

async fn grant(api: &Api, owner: &str, member: &str, role: &str) {
    let (_, mut policy) = api
        .call(owner, "POST", &format!("{KEY}:getIamPolicy"), None)
        .await;
    let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
    bindings.push(json!({"role": role, "members": [member]}));
    policy["bindings"] = json!(bindings);
    let (s, b) = api
        .call(
            owner,
            "POST",
            &format!("{KEY}:setIamPolicy"),
            Some(json!({"policy": policy})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn encrypt_and_decrypt_round_trip_and_refuse_tampering_and_wrong_aad() {
    let (api, owner, _) = world().await;
    let (s, e) = encrypt(&api, &owner, b"a data key", b"model.onnx").await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert!(
        e["name"]
            .as_str()
            .unwrap()
            .ends_with("/cryptoKeyVersions/1")
    );
    let ct = e["ciphertext"].as_str().unwrap();
    let (s, d) = decrypt(&api, &owner, ct, b"model.onnx").await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(
        STANDARD.decode(d["plaintext"].as_str().unwrap()).unwrap(),
        b"a data key"
    );
    let (s, b) = decrypt(&api, &owner, ct, b"other.onnx").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("Decryption failed"), "{b}");
    let mut bytes = STANDARD.decode(ct).unwrap();
    bytes[10] ^= 1;
    let (s, _) = decrypt(&api, &owner, &STANDARD.encode(&bytes), b"model.onnx").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, _) = decrypt(&api, &owner, "AAAA", b"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn rotation_keeps_old_ciphertexts_decryptable_and_encrypts_with_the_new_version() {
    let (api, owner, _) = world().await;
    let (_, old) = encrypt(&api, &owner, b"before", b"").await;
    let (s, k) = api
        .call(&owner, "POST", &format!("{KEY}:rotate"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{k}");
    assert!(
        k["primary"]["name"]
            .as_str()
            .unwrap()
            .ends_with("/cryptoKeyVersions/2")
    );
    let (_, new) = encrypt(&api, &owner, b"after", b"").await;
    assert!(
        new["name"]
            .as_str()
            .unwrap()
            .ends_with("/cryptoKeyVersions/2")
    );
    let (_, d) = decrypt(&api, &owner, old["ciphertext"].as_str().unwrap(), b"").await;
    assert_eq!(d["plaintext"], STANDARD.encode(b"before"));
    assert_eq!(d["usedPrimary"], false);
}

#[tokio::test]
async fn encrypters_cannot_decrypt_and_decrypters_cannot_encrypt() {
    let (api, owner, other) = world().await;
    let (_, e) = encrypt(&api, &owner, b"secret", b"").await;
    let ct = e["ciphertext"].as_str().unwrap().to_owned();
    let (s, b) = decrypt(&api, &other, &ct, b"").await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(
        message(&b).contains("cloudkms.cryptoKeyVersions.useToDecrypt"),
        "{b}"
    );
    grant(
        &api,
        &owner,
        "user:secundus@example.com",
        "roles/cloudkms.cryptoKeyEncrypter",
    )
    .await;
    assert_eq!(encrypt(&api, &other, b"x", b"").await.0, StatusCode::OK);
    assert_eq!(
        decrypt(&api, &other, &ct, b"").await.0,
        StatusCode::FORBIDDEN
    );
    grant(
        &api,
        &owner,
        "user:secundus@example.com",
        "roles/cloudkms.cryptoKeyDecrypter",
    )
    .await;
    assert_eq!(decrypt(&api, &other, &ct, b"").await.0, StatusCode::OK);
    // cloudkms.admin manages keys but may not use them.
    let (_, log) = api.call(&api.admin, "GET", "/cloister/v1/auditLogs?decision=deny&permission=cloudkms.cryptoKeyVersions.useToDecrypt", None).await;
    assert_eq!(log["entries"].as_array().unwrap().len(), 2, "{log}");
}

#[tokio::test]
async fn key_material_is_encrypted_at_rest() {
    let (api, owner, _) = world().await;
    encrypt(&api, &owner, b"x", b"").await;
    let store = &api.server.state.store;
    let name = "projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys/model-key";
    let v = store.get_key_version(name, 1).await.unwrap().unwrap();
    assert_eq!(
        v.wrapped_material.len(),
        12 + 32 + 16,
        "nonce, wrapped 256-bit key, tag"
    );
    let kek = api.server.state.kek.as_slice();
    if api.config.kek.is_none() {
        // The embedded default keeps its KEK in the data directory, outside the database.
        let file = std::fs::read(api.server.data_dir.root().join("keys/kms-kek.key")).unwrap();
        assert_eq!(file, kek);
    }
    assert!(cloister_services::kms::open(kek, &v.wrapped_material, name.as_bytes()).is_some());
    assert!(
        cloister_services::kms::open(kek, &v.wrapped_material, b"another key").is_none(),
        "bound to its key name"
    );
}

#[tokio::test]
async fn bad_ids_oversized_plaintext_and_unknown_keys_are_refused() {
    let (api, owner, _) = world().await;
    let (s, _) = api
        .call(
            &owner,
            "POST",
            "/v1/projects/primus-bank/locations/global/keyRings?keyRingId=bad/ring",
            Some(json!({})),
        )
        .await;
    assert_ne!(s, StatusCode::OK);
    let (s, b) = api
        .call(&owner, "POST", "/v1/projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys?cryptoKeyId=k2", Some(json!({"purpose": "ASYMMETRIC_SIGN"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = encrypt(&api, &owner, &vec![0u8; 65 * 1024], b"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("envelope encryption"), "{b}");
    let (s, _) = api.call(&owner, "POST", "/v1/projects/primus-bank/locations/global/keyRings/primus-ring/cryptoKeys/nope:encrypt", Some(json!({"plaintext": ""}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
