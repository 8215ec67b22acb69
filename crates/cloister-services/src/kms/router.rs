//! KMS HTTP API (Cloud KMS v1 paths and JSON). The operations are in `service.rs`, shared with
//! the gRPC service; this module maps paths and JSON to them.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::Principal;
use cloister_store::{KmsKeyRing, KmsKeyVersion};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value, json};

use super::service::{self, KeyAndPrimary};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::policy_api;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

const RINGS: &str = "/v1/projects/{project}/locations/{location}/keyRings";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(RINGS, get(list_rings).post(create_ring))
        .route(
            &format!("{RINGS}/{{ring}}"),
            get(get_ring).post(ring_method),
        )
        .route(
            &format!("{RINGS}/{{ring}}/cryptoKeys"),
            get(list_keys).post(create_key),
        )
        .route(
            &format!("{RINGS}/{{ring}}/cryptoKeys/{{key}}"),
            get(get_key).post(key_method),
        )
        .route(
            &format!("{RINGS}/{{ring}}/cryptoKeys/{{key}}/cryptoKeyVersions"),
            get(list_versions),
        )
        .route(
            &format!("{RINGS}/{{ring}}/cryptoKeys/{{key}}/cryptoKeyVersions/{{version}}"),
            get(get_version).post(version_method),
        )
}

/// The resource names the paths spell (validated by the service when it parses them).
fn location(project: &str, location: &str) -> String {
    format!("projects/{project}/locations/{location}")
}

fn ring_name(p: &(String, String, String)) -> String {
    format!("{}/keyRings/{}", location(&p.0, &p.1), p.2)
}

fn key_name(p: &(String, String, String, String)) -> String {
    format!(
        "{}/keyRings/{}/cryptoKeys/{}",
        location(&p.0, &p.1),
        p.2,
        p.3
    )
}

fn ring_view(r: &KmsKeyRing) -> Value {
    json!({"name": r.name, "createTime": time_util::rfc3339(r.create_time)})
}

pub fn version_view(v: &KmsKeyVersion) -> Value {
    json!({
        "name": service::version_name(&v.key, v.version),
        "state": v.state.as_str(),
        "protectionLevel": "SOFTWARE",
        "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION",
        "createTime": time_util::rfc3339(v.create_time),
        "generateTime": time_util::rfc3339(v.create_time),
    })
}

fn key_view(k: &KeyAndPrimary) -> Value {
    let mut view = json!({
        "name": k.key.name,
        "purpose": k.key.purpose.as_str(),
        "createTime": time_util::rfc3339(k.key.create_time),
        "versionTemplate": {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "protectionLevel": "SOFTWARE"},
    });
    if let Some(primary) = &k.primary {
        view["primary"] = version_view(primary);
    }
    view
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RingQuery {
    key_ring_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct KeyQuery {
    crypto_key_id: Option<String>,
}

async fn create_ring(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc)): Path<(String, String)>,
    Query(q): Query<RingQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q.key_ring_id.ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter keyRingId is required".into())
    })?;
    let ring = service::create_key_ring(&state, &caller, &location(&project, &loc), &id).await?;
    Ok(Json(ring_view(&ring)))
}

async fn list_rings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let rings = service::list_key_rings(&state, &caller, &location(&project, &loc)).await?;
    Ok(Json(
        json!({ "keyRings": rings.iter().map(ring_view).collect::<Vec<_>>(), "totalSize": rings.len() }),
    ))
}

async fn get_ring(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let ring =
        service::key_ring(&state, &caller, &ring_name(&path), "cloudkms.keyRings.get").await?;
    Ok(Json(ring_view(&ring)))
}

async fn ring_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc, ring)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((ring, method)) = ring.split_once(':') else {
        return Err(ApiError::NotFound("not a method".into()));
    };
    let name = ring_name(&(project, loc, ring.to_owned()));
    service::parse_key_ring(&name)?;
    let missing = state
        .store
        .get_key_ring(&name)
        .await?
        .is_none()
        .then(|| ApiError::NotFound(format!("KeyRing {name} not found.")));
    policy_api::method(&state, &caller, &name, method, &RING_POLICY, body, missing).await
}

const RING_POLICY: policy_api::PolicyPermissions = policy_api::PolicyPermissions {
    get_iam_policy: "cloudkms.keyRings.getIamPolicy",
    set_iam_policy: "cloudkms.keyRings.setIamPolicy",
    get: "cloudkms.keyRings.get",
};
const KEY_POLICY: policy_api::PolicyPermissions = policy_api::PolicyPermissions {
    get_iam_policy: "cloudkms.cryptoKeys.getIamPolicy",
    set_iam_policy: "cloudkms.cryptoKeys.setIamPolicy",
    get: "cloudkms.cryptoKeys.get",
};

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateKey {
    #[serde(default)]
    purpose: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
    Query(q): Query<KeyQuery>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<Json<Value>, ApiError> {
    let id = q.crypto_key_id.ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter cryptoKeyId is required".into())
    })?;
    let key = service::create_crypto_key(
        &state,
        &caller,
        &ring_name(&path),
        &id,
        req.purpose.as_deref(),
    )
    .await?;
    Ok(Json(key_view(&key)))
}

async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let keys = service::list_crypto_keys(&state, &caller, &ring_name(&path)).await?;
    Ok(Json(
        json!({ "cryptoKeys": keys.iter().map(key_view).collect::<Vec<_>>(), "totalSize": keys.len() }),
    ))
}

async fn get_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let key = service::get_crypto_key(&state, &caller, &key_name(&path)).await?;
    Ok(Json(key_view(&key)))
}

/// An int64 field as Google's JSON writes it (a decimal string), or as a plain number.
fn int64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Option::<Int64>::deserialize(d)? {
        None => Ok(None),
        Some(Int64::Number(n)) => Ok(Some(n)),
        Some(Int64::Text(s)) => s.parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("{s:?} is not an int64 (a decimal number)"))
        }),
    }
}

/// The body of `:encrypt` and `:decrypt` (bytes in base64, checksums as int64).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CryptoRequest {
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    ciphertext: Option<String>,
    #[serde(default)]
    additional_authenticated_data: Option<String>,
    #[serde(default, deserialize_with = "int64")]
    plaintext_crc32c: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    ciphertext_crc32c: Option<i64>,
    #[serde(default, deserialize_with = "int64")]
    additional_authenticated_data_crc32c: Option<i64>,
}

fn b64(field: &str, v: Option<&str>) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(v.unwrap_or_default())
        .map_err(|e| ApiError::InvalidArgument(format!("{field} is not base64: {e}")))
}

/// An int64 as Google's JSON writes it: a decimal string.
fn int64_text(n: u32) -> Value {
    Value::String(n.to_string())
}

async fn encrypt(
    state: &AppState,
    caller: &Principal,
    name: String,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: CryptoRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid encrypt request: {e}")))?;
    let r = service::encrypt(
        state,
        caller,
        service::EncryptRequest {
            name,
            plaintext: b64("plaintext", req.plaintext.as_deref())?,
            additional_authenticated_data: b64(
                "additionalAuthenticatedData",
                req.additional_authenticated_data.as_deref(),
            )?,
            plaintext_crc32c: req.plaintext_crc32c,
            additional_authenticated_data_crc32c: req.additional_authenticated_data_crc32c,
        },
    )
    .await?;
    let mut out = Map::new();
    out.insert("name".into(), r.name.into());
    out.insert("ciphertext".into(), STANDARD.encode(r.ciphertext).into());
    out.insert("ciphertextCrc32c".into(), int64_text(r.ciphertext_crc32c));
    // Google's JSON leaves out a false boolean (proto3's default).
    if r.verified_plaintext_crc32c {
        out.insert("verifiedPlaintextCrc32c".into(), true.into());
    }
    if r.verified_additional_authenticated_data_crc32c {
        out.insert(
            "verifiedAdditionalAuthenticatedDataCrc32c".into(),
            true.into(),
        );
    }
    out.insert("protectionLevel".into(), "SOFTWARE".into());
    Ok(Json(Value::Object(out)))
}

async fn decrypt(
    state: &AppState,
    caller: &Principal,
    name: String,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: CryptoRequest = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid decrypt request: {e}")))?;
    let r = service::decrypt(
        state,
        caller,
        service::DecryptRequest {
            name,
            ciphertext: b64("ciphertext", req.ciphertext.as_deref())?,
            additional_authenticated_data: b64(
                "additionalAuthenticatedData",
                req.additional_authenticated_data.as_deref(),
            )?,
            ciphertext_crc32c: req.ciphertext_crc32c,
            additional_authenticated_data_crc32c: req.additional_authenticated_data_crc32c,
        },
    )
    .await?;
    Ok(Json(json!({
        "plaintext": STANDARD.encode(r.plaintext),
        "plaintextCrc32c": int64_text(r.plaintext_crc32c),
        "usedPrimary": r.used_primary,
        "protectionLevel": "SOFTWARE",
    })))
}

async fn key_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc, ring, key)): Path<(String, String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((key, method)) = key.split_once(':') else {
        return Err(ApiError::NotFound("not a method".into()));
    };
    let name = key_name(&(project, loc, ring, key.to_owned()));
    match method {
        "encrypt" => encrypt(&state, &caller, name, body).await,
        "decrypt" => decrypt(&state, &caller, name, body).await,
        "rotate" => Ok(Json(key_view(
            &service::rotate(&state, &caller, &name).await?,
        ))),
        other => {
            service::parse_crypto_key(&name)?;
            let missing = state
                .store
                .get_crypto_key(&name)
                .await?
                .is_none()
                .then(|| ApiError::NotFound(format!("CryptoKey {name} not found.")));
            policy_api::method(&state, &caller, &name, other, &KEY_POLICY, body, missing).await
        }
    }
}

async fn list_versions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let versions = service::list_key_versions(&state, &caller, &key_name(&path)).await?;
    Ok(Json(json!({
        "cryptoKeyVersions": versions.iter().map(version_view).collect::<Vec<_>>(),
        "totalSize": versions.len(),
    })))
}

async fn get_version(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc, ring, key, version)): Path<(String, String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = format!(
        "{}/cryptoKeyVersions/{version}",
        key_name(&(project, loc, ring, key))
    );
    Ok(Json(version_view(
        &service::get_key_version(&state, &caller, &name).await?,
    )))
}

async fn version_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, loc, ring, key, version)): Path<(String, String, String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((version, method)) = version.split_once(':') else {
        return Err(ApiError::NotFound("not a method".into()));
    };
    let name = format!(
        "{}/cryptoKeyVersions/{version}",
        key_name(&(project, loc, ring, key))
    );
    match method {
        "destroy" => Ok(Json(version_view(
            &service::destroy_key_version(&state, &caller, &name).await?,
        ))),
        // Google encrypts with a named version too (`cryptoKeys/**:encrypt`).
        "encrypt" => encrypt(&state, &caller, name, body).await,
        other => Err(ApiError::NotFound(format!("Unknown method :{other}"))),
    }
}
