//! An object's writable metadata: read from an upload's, copy's or compose's JSON, and changed
//! in place by objects.patch (`PATCH`: what the body names) and objects.update (`PUT`: the body
//! replaces it all). A change bumps the metageneration, never the generation (the bytes stay).
//!
//! Fields Cloister stores: `contentType`, `cacheControl`, `contentDisposition`,
//! `contentEncoding`, `contentLanguage` and custom `metadata`. Fields it only reports (the
//! read-only ones a client echoes back, as `update()` does) are ignored, as Google ignores
//! them. Writable fields Cloister does not implement (holds, retention, customTime, ACLs, KMS
//! keys, storage classes) are refused by name when a client sets them, never dropped.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::{Json, body::Bytes};
use cloister_store::{ObjectAttributes, ObjectRecord};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::objects::load;
use super::params::{StorageQuery, only_false};
use super::{authorized_bucket, object_view, precondition_failed};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Google's limit on custom metadata: keys and values together.
const MAX_CUSTOM_METADATA_BYTES: usize = 8 * 1024;

/// Largest metadata body accepted (a patch, an upload's metadata part, a copy's or compose's).
pub const MAX_METADATA_BYTES: usize = 64 * 1024;

/// How often a patch is tried again when another change landed between its read and its write.
const PATCH_ATTEMPTS: usize = 5;

/// Members of an object resource that only the server sets. A client may send them back (the
/// Python client's `update()` sends every property it read); they change nothing.
const READ_ONLY: &[&str] = &[
    "kind",
    "id",
    "selfLink",
    "mediaLink",
    "name",
    "bucket",
    "generation",
    "metageneration",
    "size",
    "md5Hash",
    "crc32c",
    "etag",
    "timeCreated",
    "updated",
    "timeStorageClassUpdated",
    "componentCount",
    "owner",
];

/// The metadata of an object being written (upload, copy, compose).
#[derive(Default, Debug)]
pub struct ObjectMetadata {
    pub name: Option<String>,
    pub content_type: Option<String>,
    /// Checksums the client computed: the bytes must match them.
    pub md5_hash: Option<String>,
    pub crc32c: Option<String>,
    pub attributes: ObjectAttributes,
    /// Set for a composite object.
    pub component_count: Option<u32>,
}

impl ObjectMetadata {
    /// Reads an object resource sent with a write; `what` names it in refusals.
    pub fn from_json(bytes: &[u8], what: &str) -> Result<ObjectMetadata, ApiError> {
        if bytes.len() > MAX_METADATA_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "{what} is larger than {MAX_METADATA_BYTES} bytes"
            )));
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(ObjectMetadata::default());
        }
        let map: Map<String, Value> = serde_json::from_slice(bytes).map_err(|e| {
            ApiError::InvalidArgument(format!("{what} is not an object resource in JSON: {e}"))
        })?;
        Self::from_map(&map)
    }

    pub fn from_map(map: &Map<String, Value>) -> Result<ObjectMetadata, ApiError> {
        let mut content_type = None;
        let mut attributes = ObjectAttributes::default();
        apply(map, &mut content_type, &mut attributes, Mode::Replace)?;
        Ok(ObjectMetadata {
            name: text(map, "name")?,
            content_type,
            md5_hash: text(map, "md5Hash")?,
            crc32c: text(map, "crc32c")?,
            attributes,
            component_count: None,
        })
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// PATCH: what the body names changes; `null` clears it; custom metadata merges by key.
    Merge,
    /// PUT, and a new object: the body is the whole metadata; what it lacks is cleared.
    Replace,
}

fn text(map: &Map<String, Value>, key: &str) -> Result<Option<String>, ApiError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::InvalidArgument(format!(
            "Invalid value for {key}: expected a string, got {other}"
        ))),
    }
}

/// Applies an object resource's writable members to `content_type` and `attributes`.
fn apply(
    map: &Map<String, Value>,
    content_type: &mut Option<String>,
    a: &mut ObjectAttributes,
    mode: Mode,
) -> Result<(), ApiError> {
    for (key, value) in map {
        let known = matches!(
            key.as_str(),
            "contentType"
                | "cacheControl"
                | "contentDisposition"
                | "contentEncoding"
                | "contentLanguage"
                | "metadata"
        ) || READ_ONLY.contains(&key.as_str());
        if !known {
            unsupported(key, value)?;
        }
    }
    let header = |key: &str, field: &mut Option<String>| -> Result<(), ApiError> {
        if mode == Mode::Replace || map.contains_key(key) {
            *field = text(map, key)?.filter(|v| !v.is_empty());
        }
        Ok(())
    };
    header("contentType", content_type)?;
    header("cacheControl", &mut a.cache_control)?;
    header("contentDisposition", &mut a.content_disposition)?;
    header("contentEncoding", &mut a.content_encoding)?;
    header("contentLanguage", &mut a.content_language)?;
    match (map.get("metadata"), mode) {
        (None, Mode::Merge) => {}
        (None | Some(Value::Null), _) => a.metadata.clear(),
        (Some(Value::Object(entries)), mode) => {
            if mode == Mode::Replace {
                a.metadata.clear();
            }
            for (k, v) in entries {
                match v {
                    // In a patch, a null value removes the key (in a new object: not set).
                    Value::Null => {
                        a.metadata.remove(k);
                    }
                    Value::String(s) => {
                        a.metadata.insert(k.clone(), s.clone());
                    }
                    // Google keeps values as strings; numbers and booleans are written as text.
                    Value::Number(_) | Value::Bool(_) => {
                        a.metadata.insert(k.clone(), v.to_string());
                    }
                    other => {
                        return Err(ApiError::InvalidArgument(format!(
                            "Invalid value for metadata.{k}: custom metadata values are strings, got {other}"
                        )));
                    }
                }
            }
        }
        (Some(other), _) => {
            return Err(ApiError::InvalidArgument(format!(
                "Invalid value for metadata: expected an object of string values, got {other}"
            )));
        }
    }
    check_custom_metadata(&a.metadata)
}

/// A writable member Cloister does not implement: accepted only as its default, which is
/// what the object has (so a client echoing the resource back is not refused).
fn unsupported(key: &str, value: &Value) -> Result<(), ApiError> {
    let default = match (key, value) {
        (_, Value::Null) => true,
        ("storageClass", Value::String(c)) => c == "STANDARD",
        ("temporaryHold" | "eventBasedHold", Value::Bool(b)) => !b,
        ("acl", Value::Array(a)) => a.is_empty(),
        _ => false,
    };
    if default {
        return Ok(());
    }
    let why = match key {
        "storageClass" => "Cloister's objects are all STANDARD",
        "acl" => "Cloister's objects have no ACLs; grant IAM roles on the bucket instead",
        "temporaryHold" | "eventBasedHold" | "retention" | "retentionExpirationTime" => {
            "Cloister has no object holds or retention"
        }
        "kmsKeyName" | "customerEncryption" => "Cloister does not encrypt objects with your keys",
        "customTime" | "contexts" => "Cloister does not store it",
        _ => "it is not a member of an object resource Cloister knows",
    };
    Err(ApiError::InvalidArgument(format!(
        "The object field {key} cannot be set: {why}"
    )))
}

fn check_custom_metadata(m: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let mut total = 0usize;
    for (k, v) in m {
        if k.is_empty() {
            return Err(ApiError::InvalidArgument(
                "Custom metadata keys cannot be empty".into(),
            ));
        }
        total = total.saturating_add(k.len()).saturating_add(v.len());
    }
    if total > MAX_CUSTOM_METADATA_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "Custom metadata holds {total} bytes of keys and values; at most {MAX_CUSTOM_METADATA_BYTES} are allowed"
        )));
    }
    Ok(())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChangeQuery {
    generation: Option<i64>,
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
    /// Only meaningful for objects under retention, which Cloister has none of.
    #[serde(default, deserialize_with = "super::params::flag")]
    override_unlocked_retention: Option<bool>,
}

/// `PATCH /storage/v1/b/B/o/O`: objects.patch.
pub async fn patch(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((bucket, name)): Path<(String, String)>,
    StorageQuery(q): StorageQuery<ChangeQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    change(&state, &caller, &bucket, &name, &q, &body, Mode::Merge).await
}

/// `PUT /storage/v1/b/B/o/O`: objects.update.
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((bucket, name)): Path<(String, String)>,
    StorageQuery(q): StorageQuery<ChangeQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    change(&state, &caller, &bucket, &name, &q, &body, Mode::Replace).await
}

async fn change(
    state: &AppState,
    caller: &cloister_domain::Principal,
    bucket: &str,
    name: &str,
    q: &ChangeQuery,
    body: &[u8],
    mode: Mode,
) -> Result<Json<Value>, ApiError> {
    only_false(
        "overrideUnlockedRetention",
        q.override_unlocked_retention,
        "Cloister has no object retention",
    )?;
    if body.len() > MAX_METADATA_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "The object metadata is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    let map: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::InvalidArgument(format!(
                "The request body is not an object resource in JSON: {e}"
            ))
        })?
    };
    authorized_bucket(state, caller, bucket, "storage.objects.update").await?;
    let pre = cloister_store::Preconditions {
        if_generation_match: q.if_generation_match,
        if_generation_not_match: q.if_generation_not_match,
        if_metageneration_match: q.if_metageneration_match,
        if_metageneration_not_match: q.if_metageneration_not_match,
    };
    for _ in 0..PATCH_ATTEMPTS {
        let current = load(state, bucket, name, q.generation).await?;
        if !pre.hold(Some((current.generation, current.metageneration))) {
            return Err(precondition_failed(bucket, name, Some(current.generation)));
        }
        let mut changed: ObjectRecord = current.clone();
        let mut content_type = Some(current.content_type.clone());
        apply(&map, &mut content_type, &mut changed.attributes, mode)?;
        changed.content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
        changed.metageneration = current.metageneration.checked_add(1).ok_or_else(|| {
            ApiError::FailedPrecondition(format!(
                "gs://{bucket}/{name} cannot be changed again: its metageneration is at the maximum"
            ))
        })?;
        changed.update_time = time::OffsetDateTime::now_utc();
        if state
            .store
            .update_object_metadata(&changed, current.metageneration)
            .await?
        {
            return Ok(Json(object_view(state, &changed)));
        }
        // Another change (or a new generation) landed since the read: read again.
    }
    Err(ApiError::Aborted(format!(
        "gs://{bucket}/{name} kept changing while this request tried to change it; retry"
    )))
}

#[cfg(test)]
mod tests {
    use super::{Mode, ObjectMetadata, apply};
    use cloister_store::ObjectAttributes;
    use serde_json::json;

    fn map(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn a_patch_merges_and_an_update_replaces() {
        let mut a = ObjectAttributes::default();
        a.metadata.insert("keep".into(), "1".into());
        a.metadata.insert("drop".into(), "2".into());
        a.cache_control = Some("no-cache".into());
        let mut ct = Some("text/plain".into());
        let body = map(json!({"metadata": {"drop": null, "new": "3"}, "contentLanguage": "en"}));
        apply(&body, &mut ct, &mut a, Mode::Merge).unwrap();
        assert_eq!(ct.as_deref(), Some("text/plain"));
        assert_eq!(a.cache_control.as_deref(), Some("no-cache"));
        assert_eq!(a.content_language.as_deref(), Some("en"));
        assert_eq!(a.metadata.keys().collect::<Vec<_>>(), vec!["keep", "new"]);
        apply(
            &map(json!({"contentType": "a/b"})),
            &mut ct,
            &mut a,
            Mode::Replace,
        )
        .unwrap();
        assert_eq!(ct.as_deref(), Some("a/b"));
        assert_eq!(a, ObjectAttributes::default());
    }

    #[test]
    fn unsupported_fields_are_refused_by_name_unless_default() {
        for (body, named) in [
            (json!({"customTime": "2026-01-01T00:00:00Z"}), "customTime"),
            (json!({"storageClass": "COLDLINE"}), "storageClass"),
            (json!({"temporaryHold": true}), "temporaryHold"),
            (json!({"acl": [{"entity": "allUsers"}]}), "acl"),
            (json!({"colour": "red"}), "colour"),
            (json!({"metadata": {"k": [1]}}), "metadata.k"),
            (json!({"metadata": "k=v"}), "metadata"),
            (json!({"contentType": 5}), "contentType"),
        ] {
            let e = ObjectMetadata::from_map(&map(body.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(named), "{body}: {e}");
        }
        let echoed = json!({"storageClass": "STANDARD", "temporaryHold": false, "acl": [],
            "kind": "storage#object", "size": "3", "generation": "1", "customTime": null});
        assert!(ObjectMetadata::from_map(&map(echoed)).is_ok());
        let big = json!({"metadata": {"k": "v".repeat(8 * 1024)}});
        assert!(ObjectMetadata::from_map(&map(big)).is_err());
    }
}
