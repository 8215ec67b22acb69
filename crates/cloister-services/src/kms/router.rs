//! KMS HTTP API (Cloud KMS v1 paths and JSON).

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::{Permission, Principal, ProjectId};
use cloister_store::{KeyPurpose, KeyVersionState, KmsCryptoKey, KmsKeyRing, KmsKeyVersion};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::{new_key, open, seal};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::policy_api;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

const RINGS: &str = "/v1/projects/{project}/locations/{location}/keyRings";
/// Google's limit on `:encrypt` plaintext.
const MAX_PLAINTEXT: usize = 64 * 1024;

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
}

fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    let ok = (1..=63).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "invalid {kind} id {id:?}: 1 to 63 letters, digits, '-' and '_'"
        )))
    }
}

fn ring_name(project: &str, location: &str, ring: &str) -> Result<(ProjectId, String), ApiError> {
    let project =
        ProjectId::parse(project).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    check_id("location", location)?;
    check_id("key ring", ring)?;
    let name = format!("projects/{project}/locations/{location}/keyRings/{ring}");
    Ok((project, name))
}

fn ring_view(r: &KmsKeyRing) -> Value {
    json!({"name": r.name, "createTime": time_util::rfc3339(r.create_time)})
}

fn key_view(k: &KmsCryptoKey) -> Value {
    json!({
        "name": k.name,
        "purpose": k.purpose.as_str(),
        "createTime": time_util::rfc3339(k.create_time),
        "primary": {"name": format!("{}/cryptoKeyVersions/{}", k.name, k.primary_version),
                    "state": KeyVersionState::Enabled.as_str(),
                    "algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION"},
        "versionTemplate": {"algorithm": "GOOGLE_SYMMETRIC_ENCRYPTION", "protectionLevel": "SOFTWARE"},
    })
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
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<RingQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = q.key_ring_id.ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter keyRingId is required".into())
    })?;
    let (project, name) = ring_name(&project, &location, &id)?;
    state
        .authorizer
        .check(
            &caller,
            "cloudkms.keyRings.create",
            &project.resource_name(),
        )
        .await?;
    let ring = KmsKeyRing {
        name,
        project_id: project,
        create_time: OffsetDateTime::now_utc(),
    };
    state.store.create_key_ring(&ring).await?;
    Ok(Json(ring_view(&ring)))
}

async fn list_rings(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project =
        ProjectId::parse(&project).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    state
        .authorizer
        .check(&caller, "cloudkms.keyRings.list", &project.resource_name())
        .await?;
    let parent = format!("projects/{project}/locations/{location}");
    let rings = state.store.list_key_rings(&parent).await?;
    Ok(Json(
        json!({ "keyRings": rings.iter().map(ring_view).collect::<Vec<_>>(), "totalSize": rings.len() }),
    ))
}

/// The resource after checking `permission` on it (404 for a key ring that does not exist).
async fn authorized_ring(
    state: &AppState,
    caller: &Principal,
    path: &(String, String, String),
    permission: Permission,
) -> Result<KmsKeyRing, ApiError> {
    let (_, name) = ring_name(&path.0, &path.1, &path.2)?;
    state.authorizer.check(caller, permission, &name).await?;
    state
        .store
        .get_key_ring(&name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("KeyRing {name} not found.")))
}

async fn get_ring(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(ring_view(
        &authorized_ring(&state, &caller, &path, "cloudkms.keyRings.get").await?,
    )))
}

async fn ring_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location, ring)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((ring, method)) = ring.split_once(':') else {
        return Err(ApiError::NotFound("not a method".into()));
    };
    let (_, name) = ring_name(&project, &location, ring)?;
    if state.store.get_key_ring(&name).await?.is_none() {
        return Err(ApiError::NotFound(format!("KeyRing {name} not found.")));
    }
    iam_method(&state, &caller, &name, method, body, "cloudkms.keyRings").await
}

async fn iam_method(
    state: &AppState,
    caller: &Principal,
    name: &str,
    method: &str,
    body: Value,
    kind: &str,
) -> Result<Json<Value>, ApiError> {
    match (method, kind) {
        ("getIamPolicy", "cloudkms.keyRings") => {
            policy_api::get(state, caller, name, "cloudkms.keyRings.getIamPolicy").await
        }
        ("getIamPolicy", _) => {
            policy_api::get(state, caller, name, "cloudkms.cryptoKeys.getIamPolicy").await
        }
        ("setIamPolicy", "cloudkms.keyRings") => {
            policy_api::set(
                state,
                caller,
                name,
                policy_api::Rules {
                    permission: "cloudkms.keyRings.setIamPolicy",
                    keep_an_owner: false,
                },
                body,
            )
            .await
        }
        ("setIamPolicy", _) => {
            policy_api::set(
                state,
                caller,
                name,
                policy_api::Rules {
                    permission: "cloudkms.cryptoKeys.setIamPolicy",
                    keep_an_owner: false,
                },
                body,
            )
            .await
        }
        ("testIamPermissions", _) => policy_api::test(state, caller, name, body).await,
        (other, _) => Err(ApiError::NotFound(format!("Unknown method :{other}"))),
    }
}

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
    check_id("crypto key", &id)?;
    let purpose = match req.purpose.as_deref() {
        None => KeyPurpose::EncryptDecrypt,
        Some(given) => KeyPurpose::parse(given).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "purpose {given:?} is not supported; use {}",
                KeyPurpose::EncryptDecrypt
            ))
        })?,
    };
    let ring = authorized_ring(&state, &caller, &path, "cloudkms.cryptoKeys.create").await?;
    let now = OffsetDateTime::now_utc();
    let key = KmsCryptoKey {
        name: format!("{}/cryptoKeys/{id}", ring.name),
        key_ring: ring.name,
        purpose,
        primary_version: 1,
        create_time: now,
    };
    let first = KmsKeyVersion {
        key: key.name.clone(),
        version: 1,
        state: KeyVersionState::Enabled,
        wrapped_material: seal(&state.kek, &new_key(), key.name.as_bytes())?,
        create_time: now,
    };
    state.store.create_crypto_key(&key, &first).await?;
    Ok(Json(key_view(&key)))
}

async fn list_keys(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let ring = authorized_ring(&state, &caller, &path, "cloudkms.cryptoKeys.list").await?;
    let keys = state.store.list_crypto_keys(&ring.name).await?;
    Ok(Json(
        json!({ "cryptoKeys": keys.iter().map(key_view).collect::<Vec<_>>(), "totalSize": keys.len() }),
    ))
}

fn key_name(path: &(String, String, String, String)) -> Result<String, ApiError> {
    let (_, ring) = ring_name(&path.0, &path.1, &path.2)?;
    check_id("crypto key", &path.3)?;
    Ok(format!("{ring}/cryptoKeys/{}", path.3))
}

async fn load_key(state: &AppState, name: &str) -> Result<KmsCryptoKey, ApiError> {
    state
        .store
        .get_crypto_key(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("CryptoKey {name} not found.")))
}

async fn get_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let name = key_name(&path)?;
    state
        .authorizer
        .check(&caller, "cloudkms.cryptoKeys.get", &name)
        .await?;
    Ok(Json(key_view(&load_key(&state, &name).await?)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CryptoRequest {
    #[serde(default)]
    plaintext: Option<String>,
    #[serde(default)]
    ciphertext: Option<String>,
    #[serde(default)]
    additional_authenticated_data: Option<String>,
}

fn b64(field: &str, v: Option<&str>) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(v.unwrap_or_default())
        .map_err(|e| ApiError::InvalidArgument(format!("{field} is not base64: {e}")))
}

/// The data key of `version`, unwrapped with the KEK.
async fn material(state: &AppState, key: &str, version: u32) -> Result<Vec<u8>, ApiError> {
    let v = state
        .store
        .get_key_version(key, version)
        .await?
        .filter(|v| v.state == KeyVersionState::Enabled)
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "key version {version} of {key} does not exist or is not enabled"
            ))
        })?;
    open(&state.kek, &v.wrapped_material, key.as_bytes()).ok_or_else(|| {
        ApiError::Internal(format!(
            "the stored material of {key} version {version} does not unwrap"
        ))
    })
}

async fn key_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location, ring, key)): Path<(String, String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((key, method)) = key.split_once(':') else {
        return Err(ApiError::NotFound("not a method".into()));
    };
    let name = key_name(&(project, location, ring, key.to_owned()))?;
    match method {
        "encrypt" | "decrypt" => {
            let req: CryptoRequest = serde_json::from_value(body)
                .map_err(|e| ApiError::InvalidArgument(format!("Invalid {method} request: {e}")))?;
            let aad = b64(
                "additionalAuthenticatedData",
                req.additional_authenticated_data.as_deref(),
            )?;
            if method == "encrypt" {
                state
                    .authorizer
                    .check(&caller, "cloudkms.cryptoKeyVersions.useToEncrypt", &name)
                    .await?;
                let key = load_key(&state, &name).await?;
                let plaintext = b64("plaintext", req.plaintext.as_deref())?;
                if plaintext.len() > MAX_PLAINTEXT {
                    return Err(ApiError::InvalidArgument(format!(
                        "plaintext is larger than {MAX_PLAINTEXT} bytes; encrypt a data key instead (envelope encryption)"
                    )));
                }
                let sealed = seal(
                    &material(&state, &name, key.primary_version).await?,
                    &plaintext,
                    &aad,
                )?;
                let ciphertext = [key.primary_version.to_be_bytes().as_slice(), &sealed].concat();
                Ok(Json(
                    json!({"name": format!("{name}/cryptoKeyVersions/{}", key.primary_version), "ciphertext": STANDARD.encode(ciphertext)}),
                ))
            } else {
                state
                    .authorizer
                    .check(&caller, "cloudkms.cryptoKeyVersions.useToDecrypt", &name)
                    .await?;
                load_key(&state, &name).await?;
                let ciphertext = b64("ciphertext", req.ciphertext.as_deref())?;
                let refused = || {
                    ApiError::InvalidArgument("Decryption failed: the ciphertext is invalid, was altered, or was made with another key or AAD.".into())
                };
                let (version, sealed) = ciphertext.split_at_checked(4).ok_or_else(refused)?;
                let version = u32::from_be_bytes([version[0], version[1], version[2], version[3]]);
                let plaintext = open(
                    &material(&state, &name, version)
                        .await
                        .map_err(|_| refused())?,
                    sealed,
                    &aad,
                )
                .ok_or_else(refused)?;
                Ok(Json(
                    json!({"plaintext": STANDARD.encode(plaintext), "usedPrimary": version == load_key(&state, &name).await?.primary_version}),
                ))
            }
        }
        "rotate" => {
            // Cloister's shortcut for "create a version and make it primary".
            state
                .authorizer
                .check(&caller, "cloudkms.cryptoKeyVersions.create", &name)
                .await?;
            load_key(&state, &name).await?;
            let wrapped = seal(&state.kek, &new_key(), name.as_bytes())?;
            state
                .store
                .rotate_crypto_key(&name, wrapped, OffsetDateTime::now_utc())
                .await?;
            Ok(Json(key_view(&load_key(&state, &name).await?)))
        }
        other => {
            if state.store.get_crypto_key(&name).await?.is_none() {
                return Err(ApiError::NotFound(format!("CryptoKey {name} not found.")));
            }
            iam_method(&state, &caller, &name, other, body, "cloudkms.cryptoKeys").await
        }
    }
}
