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

#[tokio::test]
async fn checksums_are_verified_and_returned_as_googles_int64_strings() {
    let (api, owner, _) = world().await;
    let (plaintext, aad) = (b"a data key".as_slice(), b"model.onnx".as_slice());
    let crc = |d: &[u8]| crc32c::crc32c(d).to_string();
    // Sent as Google's JSON writes an int64 (a string) and as a plain number: both are read.
    let body = json!({
        "plaintext": STANDARD.encode(plaintext),
        "additionalAuthenticatedData": STANDARD.encode(aad),
        "plaintextCrc32c": crc(plaintext),
        "additionalAuthenticatedDataCrc32c": crc32c::crc32c(aad),
    });
    let (s, e) = api
        .call(&owner, "POST", &format!("{KEY}:encrypt"), Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{e}");
    assert_eq!(e["verifiedPlaintextCrc32c"], true);
    assert_eq!(e["verifiedAdditionalAuthenticatedDataCrc32c"], true);
    let ciphertext = STANDARD.decode(e["ciphertext"].as_str().unwrap()).unwrap();
    assert_eq!(e["ciphertextCrc32c"], crc(&ciphertext));
    // Without checksums in the request, the flags are left out (false), as Google's JSON does.
    let (_, plain) = encrypt(&api, &owner, plaintext, aad).await;
    assert!(plain.get("verifiedPlaintextCrc32c").is_none(), "{plain}");
    assert!(plain["ciphertextCrc32c"].is_string(), "{plain}");

    let body = json!({
        "ciphertext": e["ciphertext"],
        "additionalAuthenticatedData": STANDARD.encode(aad),
        "ciphertextCrc32c": crc(&ciphertext),
        "additionalAuthenticatedDataCrc32c": crc(aad),
    });
    let (s, d) = api
        .call(&owner, "POST", &format!("{KEY}:decrypt"), Some(body))
        .await;
    assert_eq!(s, StatusCode::OK, "{d}");
    assert_eq!(d["plaintextCrc32c"], crc(plaintext));

    let wrong = |field: &str| {
        let mut body = json!({
            "plaintext": STANDARD.encode(plaintext),
            "ciphertext": e["ciphertext"],
            "additionalAuthenticatedData": STANDARD.encode(aad),
        });
        body[field] = json!("12345");
        body
    };
    for (method, field, expected) in [
        (
            "encrypt",
            "plaintextCrc32c",
            "The checksum in field plaintext_crc32c did not match the data in field plaintext.",
        ),
        (
            "encrypt",
            "additionalAuthenticatedDataCrc32c",
            "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.",
        ),
        (
            "decrypt",
            "ciphertextCrc32c",
            "The checksum in field ciphertext_crc32c did not match the data in field ciphertext.",
        ),
        (
            "decrypt",
            "additionalAuthenticatedDataCrc32c",
            "The checksum in field additional_authenticated_data_crc32c did not match the data in field additional_authenticated_data.",
        ),
    ] {
        let (s, b) = api
            .call(
                &owner,
                "POST",
                &format!("{KEY}:{method}"),
                Some(wrong(field)),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {field}: {b}");
        assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(message(&b), expected, "{method} {field}");
    }
    let mut not_a_number = wrong("plaintextCrc32c");
    not_a_number["plaintextCrc32c"] = json!("twelve");
    let (s, b) = api
        .call(
            &owner,
            "POST",
            &format!("{KEY}:encrypt"),
            Some(not_a_number),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

#[tokio::test]
async fn versions_are_listed_and_a_destroyed_version_no_longer_decrypts() {
    let (api, owner, other) = world().await;
    let (_, old) = encrypt(&api, &owner, b"before", b"").await;
    api.call(&owner, "POST", &format!("{KEY}:rotate"), None)
        .await;
    let (s, list) = api
        .call(&owner, "GET", &format!("{KEY}/cryptoKeyVersions"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{list}");
    let states: Vec<_> = list["cryptoKeyVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                v["state"].clone(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            ("1".to_owned(), json!("ENABLED")),
            ("2".to_owned(), json!("ENABLED"))
        ]
    );
    let v1 = format!("{KEY}/cryptoKeyVersions/1");
    let (s, got) = api.call(&owner, "GET", &v1, None).await;
    assert_eq!(s, StatusCode::OK, "{got}");
    assert_eq!(got["algorithm"], "GOOGLE_SYMMETRIC_ENCRYPTION");

    // Destroying needs cloudkms.cryptoKeyVersions.destroy; the refusal changes nothing.
    let (s, b) = api
        .call(&other, "POST", &format!("{v1}:destroy"), None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, destroyed) = api
        .call(&owner, "POST", &format!("{v1}:destroy"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{destroyed}");
    assert_eq!(destroyed["state"], "DESTROYED");
    let name = KEY.trim_start_matches("/v1/");
    let stored = api
        .server
        .state
        .store
        .get_key_version(name, 1)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.wrapped_material.is_empty(), "the material is erased");

    let (s, b) = decrypt(&api, &owner, old["ciphertext"].as_str().unwrap(), b"").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["status"], "FAILED_PRECONDITION");
    assert!(
        message(&b).ends_with("cryptoKeyVersions/1 is not enabled, current state is: DESTROYED."),
        "{b}"
    );
    let (s, b) = api
        .call(&owner, "POST", &format!("{v1}:destroy"), None)
        .await;
    assert_eq!(
        (s, b["error"]["status"].clone()),
        (StatusCode::BAD_REQUEST, json!("FAILED_PRECONDITION")),
        "{b}"
    );

    // The primary may be destroyed too (the codelab's cleanup does): encryption then stops.
    let (s, _) = api
        .call(
            &owner,
            "POST",
            &format!("{KEY}/cryptoKeyVersions/2:destroy"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = encrypt(&api, &owner, b"after", b"").await;
    assert_eq!(
        (s, b["error"]["status"].clone()),
        (StatusCode::BAD_REQUEST, json!("FAILED_PRECONDITION")),
        "{b}"
    );
    let (_, key) = api.call(&owner, "GET", KEY, None).await;
    assert_eq!(key["primary"]["state"], "DESTROYED");

    for missing in ["cryptoKeyVersions/9", "cryptoKeyVersions/9:destroy"] {
        let method = if missing.ends_with(":destroy") {
            "POST"
        } else {
            "GET"
        };
        let (s, b) = api
            .call(&owner, method, &format!("{KEY}/{missing}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{missing}: {b}");
    }
    for bad in [
        "cryptoKeyVersions/0",
        "cryptoKeyVersions/01",
        "cryptoKeyVersions/x",
    ] {
        let (s, b) = api.call(&owner, "GET", &format!("{KEY}/{bad}"), None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
}

/// A stranger's policy methods on another tenant's key ring or key answer alike whether it
/// exists or not (a 404 for a missing one, before, found them by name); its owner is told
/// what is missing.
#[tokio::test]
async fn a_stranger_cannot_tell_a_missing_ring_or_key_from_an_existing_one() {
    let (api, owner, stranger) = world().await;
    let ring = "/v1/projects/primus-bank/locations/global/keyRings/primus-ring";
    let absent_ring = "/v1/projects/primus-bank/locations/global/keyRings/no-ring";
    let absent_key = format!("{ring}/cryptoKeys/no-key");
    let policy = json!({"policy": {"bindings": []}});
    let methods = [
        ("getIamPolicy", None),
        ("setIamPolicy", Some(policy)),
        ("setIamPolicy", Some(json!({"not": "a policy"}))),
        (
            "testIamPermissions",
            Some(json!({"permissions": ["cloudkms.keyRings.get"]})),
        ),
    ];
    for (existing, absent) in [(ring, absent_ring), (KEY, absent_key.as_str())] {
        for (method, body) in &methods {
            let ask = |path: &str, who: &str| {
                let (api, who, body) = (&api, who.to_owned(), body.clone());
                let path = format!("{path}:{method}");
                async move { api.call(&who, "POST", &path, body).await }
            };
            let (s, there) = ask(existing, &stranger).await;
            let (t, missing) = ask(absent, &stranger).await;
            let name = |p: &str| p.trim_start_matches("/v1/").to_owned();
            let missing = missing.to_string().replace(&name(absent), &name(existing));
            assert_eq!((s, there.to_string()), (t, missing), "{absent}:{method}");
            let (s, b) = ask(absent, &owner).await;
            if *method != "setIamPolicy" || body.as_ref().is_some_and(|b| b.get("policy").is_some())
            {
                assert_eq!(s, StatusCode::NOT_FOUND, "{absent}:{method}: {b}");
            }
        }
    }
}
