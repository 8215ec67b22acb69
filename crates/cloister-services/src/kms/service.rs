//! The KeyManagementService's operations, apart from any transport: resource names in,
//! records out. The REST router (`router.rs`) and the gRPC service (`grpc.rs`) both call these,
//! so both authorize through the same IAM authorizer (and so write the same audit entries),
//! refuse with the same errors, and keep the same CRC32C rules.

use cloister_domain::{Permission, Principal, ProjectId};
use cloister_store::{KeyPurpose, KeyVersionState, KmsCryptoKey, KmsKeyRing, KmsKeyVersion};
use time::OffsetDateTime;

use super::{new_key, open, seal};
use crate::error::ApiError;
use crate::state::AppState;

/// Google's limit on `encrypt` plaintext (and on its AAD).
pub const MAX_PLAINTEXT: usize = 64 * 1024;

/// Bytes before the sealed data in a ciphertext: the key version, big-endian.
const VERSION_PREFIX: usize = 4;

/// Google's words for a resource name that is not a KMS resource's.
fn bad_name(name: &str) -> ApiError {
    ApiError::InvalidArgument(format!(
        "Resource name [{name}] does not match any known resource name pattern."
    ))
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

/// `projects/P/locations/L`: the project.
pub fn parse_location(name: &str) -> Result<ProjectId, ApiError> {
    match name.split('/').collect::<Vec<_>>()[..] {
        ["projects", project, "locations", location] => {
            check_id("location", location)?;
            ProjectId::parse(project).map_err(|e| ApiError::InvalidArgument(e.to_string()))
        }
        _ => Err(bad_name(name)),
    }
}

/// `projects/P/locations/L/keyRings/R`: the project.
pub fn parse_key_ring(name: &str) -> Result<ProjectId, ApiError> {
    let (parent, ring) = name
        .rsplit_once("/keyRings/")
        .ok_or_else(|| bad_name(name))?;
    check_id("key ring", ring)?;
    parse_location(parent).map_err(|_| bad_name(name))
}

/// `…/keyRings/R/cryptoKeys/K`: the key ring's name.
pub fn parse_crypto_key(name: &str) -> Result<&str, ApiError> {
    let (ring, key) = name
        .rsplit_once("/cryptoKeys/")
        .ok_or_else(|| bad_name(name))?;
    check_id("crypto key", key)?;
    parse_key_ring(ring).map_err(|_| bad_name(name))?;
    Ok(ring)
}

/// `…/cryptoKeys/K/cryptoKeyVersions/N`: the key's name and the version.
pub fn parse_key_version(name: &str) -> Result<(&str, u32), ApiError> {
    let (key, version) = name
        .rsplit_once("/cryptoKeyVersions/")
        .ok_or_else(|| bad_name(name))?;
    parse_crypto_key(key).map_err(|_| bad_name(name))?;
    // Versions count from 1, in decimal without a sign or leading zeros (as Google names them).
    let version = version
        .parse::<u32>()
        .ok()
        .filter(|v| *v > 0 && v.to_string() == version)
        .ok_or_else(|| bad_name(name))?;
    Ok((key, version))
}

pub fn version_name(key: &str, version: u32) -> String {
    format!("{key}/cryptoKeyVersions/{version}")
}

/// A crypto key with its primary version (None only if the store lost it).
pub struct KeyAndPrimary {
    pub key: KmsCryptoKey,
    pub primary: Option<KmsKeyVersion>,
}

pub async fn create_key_ring(
    state: &AppState,
    caller: &Principal,
    parent: &str,
    id: &str,
) -> Result<KmsKeyRing, ApiError> {
    if id.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the key ring id (keyRingId) is required".into(),
        ));
    }
    check_id("key ring", id)?;
    let project = parse_location(parent)?;
    state
        .authorizer
        .check(caller, "cloudkms.keyRings.create", &project.resource_name())
        .await?;
    let ring = KmsKeyRing {
        name: format!("{parent}/keyRings/{id}"),
        project_id: project,
        create_time: OffsetDateTime::now_utc(),
    };
    state.store.create_key_ring(&ring).await?;
    Ok(ring)
}

pub async fn list_key_rings(
    state: &AppState,
    caller: &Principal,
    parent: &str,
) -> Result<Vec<KmsKeyRing>, ApiError> {
    let project = parse_location(parent)?;
    state
        .authorizer
        .check(caller, "cloudkms.keyRings.list", &project.resource_name())
        .await?;
    Ok(state.store.list_key_rings(parent).await?)
}

/// A project's key rings in every location (the console's view; the API lists one location).
pub async fn list_project_key_rings(
    state: &AppState,
    caller: &Principal,
    project: &ProjectId,
) -> Result<Vec<KmsKeyRing>, ApiError> {
    state
        .authorizer
        .check(caller, "cloudkms.keyRings.list", &project.resource_name())
        .await?;
    Ok(state.store.list_project_key_rings(project).await?)
}

/// The key ring after checking `permission` on it (NOT_FOUND only to those allowed to know).
pub async fn key_ring(
    state: &AppState,
    caller: &Principal,
    name: &str,
    permission: Permission,
) -> Result<KmsKeyRing, ApiError> {
    parse_key_ring(name)?;
    state.authorizer.check(caller, permission, name).await?;
    state
        .store
        .get_key_ring(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("KeyRing {name} not found.")))
}

pub async fn create_crypto_key(
    state: &AppState,
    caller: &Principal,
    parent: &str,
    id: &str,
    purpose: Option<&str>,
) -> Result<KeyAndPrimary, ApiError> {
    if id.is_empty() {
        return Err(ApiError::InvalidArgument(
            "the crypto key id (cryptoKeyId) is required".into(),
        ));
    }
    check_id("crypto key", id)?;
    let purpose = match purpose {
        None => KeyPurpose::EncryptDecrypt,
        Some(given) => KeyPurpose::parse(given).ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "purpose {given:?} is not supported; use {}",
                KeyPurpose::EncryptDecrypt
            ))
        })?,
    };
    let ring = key_ring(state, caller, parent, "cloudkms.cryptoKeys.create").await?;
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
    Ok(KeyAndPrimary {
        key,
        primary: Some(first),
    })
}

pub async fn list_crypto_keys(
    state: &AppState,
    caller: &Principal,
    parent: &str,
) -> Result<Vec<KeyAndPrimary>, ApiError> {
    let ring = key_ring(state, caller, parent, "cloudkms.cryptoKeys.list").await?;
    let mut keys = Vec::new();
    for key in state.store.list_crypto_keys(&ring.name).await? {
        keys.push(with_primary(state, key).await?);
    }
    Ok(keys)
}

async fn with_primary(state: &AppState, key: KmsCryptoKey) -> Result<KeyAndPrimary, ApiError> {
    let primary = state
        .store
        .get_key_version(&key.name, key.primary_version)
        .await?;
    Ok(KeyAndPrimary { key, primary })
}

/// The key, once known to exist (after the permission check).
async fn load_key(state: &AppState, name: &str) -> Result<KmsCryptoKey, ApiError> {
    state
        .store
        .get_crypto_key(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("CryptoKey {name} not found.")))
}

/// The crypto key after checking `permission` on it.
pub async fn crypto_key(
    state: &AppState,
    caller: &Principal,
    name: &str,
    permission: Permission,
) -> Result<KmsCryptoKey, ApiError> {
    parse_crypto_key(name)?;
    state.authorizer.check(caller, permission, name).await?;
    load_key(state, name).await
}

pub async fn get_crypto_key(
    state: &AppState,
    caller: &Principal,
    name: &str,
) -> Result<KeyAndPrimary, ApiError> {
    let key = crypto_key(state, caller, name, "cloudkms.cryptoKeys.get").await?;
    with_primary(state, key).await
}

/// Rotation (Cloister's shortcut for "create a version and make it primary").
pub async fn rotate(
    state: &AppState,
    caller: &Principal,
    name: &str,
) -> Result<KeyAndPrimary, ApiError> {
    crypto_key(state, caller, name, "cloudkms.cryptoKeyVersions.create").await?;
    let wrapped = seal(&state.kek, &new_key(), name.as_bytes())?;
    state
        .store
        .rotate_crypto_key(name, wrapped, OffsetDateTime::now_utc())
        .await?;
    with_primary(state, load_key(state, name).await?).await
}

pub async fn list_key_versions(
    state: &AppState,
    caller: &Principal,
    key: &str,
) -> Result<Vec<KmsKeyVersion>, ApiError> {
    crypto_key(state, caller, key, "cloudkms.cryptoKeyVersions.list").await?;
    Ok(state.store.list_key_versions(key).await?)
}

/// The version named `name` after checking `permission` on its key (where its IAM policy is).
async fn key_version(
    state: &AppState,
    caller: &Principal,
    name: &str,
    permission: Permission,
) -> Result<KmsKeyVersion, ApiError> {
    let (key, version) = parse_key_version(name)?;
    crypto_key(state, caller, key, permission).await?;
    state
        .store
        .get_key_version(key, version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("CryptoKeyVersion {name} not found.")))
}

pub async fn get_key_version(
    state: &AppState,
    caller: &Principal,
    name: &str,
) -> Result<KmsKeyVersion, ApiError> {
    key_version(state, caller, name, "cloudkms.cryptoKeyVersions.get").await
}

/// Destroys a version at once (Google schedules destruction and keeps the material for a
/// configurable period, 30 days by default, during which it can be restored; Cloister has no
/// restore, so destruction is immediate and final). The primary version may be destroyed, as
/// on Google: encryption with the key then fails until it is rotated.
pub async fn destroy_key_version(
    state: &AppState,
    caller: &Principal,
    name: &str,
) -> Result<KmsKeyVersion, ApiError> {
    let version = key_version(state, caller, name, "cloudkms.cryptoKeyVersions.destroy").await?;
    if !state
        .store
        .destroy_key_version(&version.key, version.version)
        .await?
    {
        return Err(ApiError::FailedPrecondition(format!(
            "{name} is not in a state that can be destroyed, current state is: {}.",
            KeyVersionState::Destroyed
        )));
    }
    state
        .store
        .get_key_version(&version.key, version.version)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("CryptoKeyVersion {name} not found.")))
}

/// Google's refusal of data whose CRC32C checksum (sent beside it) does not match it.
fn check_crc32c(field: &str, data: &[u8], checksum: Option<i64>) -> Result<bool, ApiError> {
    match checksum {
        None => Ok(false),
        Some(c) if c == i64::from(crc32c::crc32c(data)) => Ok(true),
        Some(_) => Err(ApiError::InvalidArgument(format!(
            "The checksum in field {field}_crc32c did not match the data in field {field}."
        ))),
    }
}

pub struct EncryptRequest {
    /// A crypto key (its primary version encrypts) or one of its versions.
    pub name: String,
    pub plaintext: Vec<u8>,
    pub additional_authenticated_data: Vec<u8>,
    pub plaintext_crc32c: Option<i64>,
    pub additional_authenticated_data_crc32c: Option<i64>,
}

pub struct EncryptResponse {
    /// The version that encrypted.
    pub name: String,
    pub ciphertext: Vec<u8>,
    pub ciphertext_crc32c: u32,
    pub verified_plaintext_crc32c: bool,
    pub verified_additional_authenticated_data_crc32c: bool,
}

pub struct DecryptRequest {
    pub name: String,
    pub ciphertext: Vec<u8>,
    pub additional_authenticated_data: Vec<u8>,
    pub ciphertext_crc32c: Option<i64>,
    pub additional_authenticated_data_crc32c: Option<i64>,
}

pub struct DecryptResponse {
    pub plaintext: Vec<u8>,
    pub plaintext_crc32c: u32,
    pub used_primary: bool,
}

/// The data key of `version` of `key`, unwrapped with the KEK: FAILED_PRECONDITION (Google's
/// words) when the version is not enabled, `missing` when there is no such version.
async fn material(
    state: &AppState,
    key: &str,
    version: u32,
    missing: impl FnOnce() -> ApiError,
) -> Result<Vec<u8>, ApiError> {
    let v = state
        .store
        .get_key_version(key, version)
        .await?
        .ok_or_else(missing)?;
    if v.state != KeyVersionState::Enabled {
        return Err(ApiError::FailedPrecondition(format!(
            "{} is not enabled, current state is: {}.",
            version_name(key, version),
            v.state
        )));
    }
    open(&state.kek, &v.wrapped_material, key.as_bytes()).ok_or_else(|| {
        ApiError::Internal(format!(
            "the stored material of {key} version {version} does not unwrap"
        ))
    })
}

pub async fn encrypt(
    state: &AppState,
    caller: &Principal,
    req: EncryptRequest,
) -> Result<EncryptResponse, ApiError> {
    // A version name picks that version; a key name, its primary.
    let (key_name, version) = match parse_key_version(&req.name) {
        Ok((key, version)) => (key, Some(version)),
        Err(_) => (
            parse_crypto_key(&req.name).map(|_| req.name.as_str())?,
            None,
        ),
    };
    let key = crypto_key(
        state,
        caller,
        key_name,
        "cloudkms.cryptoKeyVersions.useToEncrypt",
    )
    .await?;
    // Checked on the bytes as received, before anything else looks at them.
    let verified_plaintext_crc32c =
        check_crc32c("plaintext", &req.plaintext, req.plaintext_crc32c)?;
    let verified_additional_authenticated_data_crc32c = check_crc32c(
        "additional_authenticated_data",
        &req.additional_authenticated_data,
        req.additional_authenticated_data_crc32c,
    )?;
    for (field, data) in [
        ("plaintext", &req.plaintext),
        (
            "additional_authenticated_data",
            &req.additional_authenticated_data,
        ),
    ] {
        if data.len() > MAX_PLAINTEXT {
            return Err(ApiError::InvalidArgument(format!(
                "{field} is larger than {MAX_PLAINTEXT} bytes; encrypt a data key instead (envelope encryption)"
            )));
        }
    }
    let version = version.unwrap_or(key.primary_version);
    let name = version_name(&key.name, version);
    let data_key = material(state, &key.name, version, || {
        ApiError::NotFound(format!("CryptoKeyVersion {name} not found."))
    })
    .await?;
    let sealed = seal(
        &data_key,
        &req.plaintext,
        &req.additional_authenticated_data,
    )?;
    let ciphertext = [version.to_be_bytes().as_slice(), &sealed].concat();
    Ok(EncryptResponse {
        ciphertext_crc32c: crc32c::crc32c(&ciphertext),
        name,
        ciphertext,
        verified_plaintext_crc32c,
        verified_additional_authenticated_data_crc32c,
    })
}

pub async fn decrypt(
    state: &AppState,
    caller: &Principal,
    req: DecryptRequest,
) -> Result<DecryptResponse, ApiError> {
    let key = crypto_key(
        state,
        caller,
        &req.name,
        "cloudkms.cryptoKeyVersions.useToDecrypt",
    )
    .await?;
    check_crc32c("ciphertext", &req.ciphertext, req.ciphertext_crc32c)?;
    check_crc32c(
        "additional_authenticated_data",
        &req.additional_authenticated_data,
        req.additional_authenticated_data_crc32c,
    )?;
    let refused = || {
        ApiError::InvalidArgument(
            "Decryption failed: the ciphertext is invalid, was altered, or was made with another key or AAD.".into(),
        )
    };
    let (version, sealed) = req
        .ciphertext
        .split_first_chunk::<VERSION_PREFIX>()
        .ok_or_else(refused)?;
    let version = u32::from_be_bytes(*version);
    let data_key = material(state, &key.name, version, refused).await?;
    let plaintext =
        open(&data_key, sealed, &req.additional_authenticated_data).ok_or_else(refused)?;
    Ok(DecryptResponse {
        plaintext_crc32c: crc32c::crc32c(&plaintext),
        plaintext,
        used_primary: version == key.primary_version,
    })
}
