//! Cloud Storage JSON API subset: buckets (`buckets.rs`), object metadata, listing, download
//! and delete (`objects.rs`), uploads (`upload.rs`, media and multipart; `resumable.rs`), and
//! server-side copies (`copy.rs`); object size and project quota (`limits.rs`); the sweep of
//! blobs no object points at (`orphans.rs`).
//!
//! Bytes live in the blob store under a fresh key per generation; an object's metadata row
//! is written only after its bytes are durably stored and their checksums known (and matched
//! against any the client sent), so an object is never visible half-written.

pub mod buckets;
pub mod copy;
pub mod limits;
pub mod objects;
pub mod orphans;
pub mod resumable;
pub mod upload;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::{Permission, Principal};
use cloister_store::{BucketRecord, ObjectRecord, Preconditions};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// Listing a large bucket costs; orphans are rare, and a day old before they are swept anyway.
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// Sweeps what uploads leave behind (expired resumable sessions with their bytes, orphaned
/// object blobs) now and then every few hours, for as long as the server runs. Replicas may
/// sweep at once: removing something twice is harmless.
pub fn spawn_sweeper(state: AppState) {
    tokio::spawn(async move {
        loop {
            let expired = time::OffsetDateTime::now_utc()
                - time::Duration::seconds(resumable::SESSION_LIFETIME_SECS);
            match resumable::sweep_expired(&state, expired).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed expired resumable upload sessions"),
                Err(e) => tracing::error!(error = %e, "sweeping expired upload sessions"),
            }
            match orphans::sweep_orphaned_blobs(&state, orphans::ORPHAN_MIN_AGE).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed orphaned object blobs"),
                Err(e) => tracing::error!(error = %e, "sweeping orphaned object blobs"),
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// Google's bucket naming rules (the common case: 3–63 characters).
pub fn check_bucket_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && !name.contains("..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Invalid bucket name {name:?}: 3 to 63 lowercase letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        )))
    }
}

/// Google's object name rules: 1–1024 bytes of UTF-8, no CR/LF, not `.` or `..`.
pub fn check_object_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && !name.contains(['\r', '\n'])
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Invalid object name {name:?}: 1 to 1024 bytes, no newlines, not \".\" or \"..\""
        )))
    }
}

/// The bucket, or 404 when absent (bucket names are global and public, as in Google).
pub async fn existing_bucket(state: &AppState, bucket: &str) -> Result<BucketRecord, ApiError> {
    check_bucket_name(bucket)?;
    state
        .store
        .get_bucket(bucket)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("The specified bucket does not exist: {bucket}")))
}

/// The bucket after checking `permission` on it.
pub async fn authorized_bucket(
    state: &AppState,
    caller: &Principal,
    bucket: &str,
    permission: Permission,
) -> Result<BucketRecord, ApiError> {
    let record = existing_bucket(state, bucket).await?;
    state
        .authorizer
        .check(caller, permission, &record.resource_name())
        .await?;
    Ok(record)
}

/// Generation preconditions from the query string.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreconditionQuery {
    pub if_generation_match: Option<i64>,
    pub if_generation_not_match: Option<i64>,
}

impl PreconditionQuery {
    pub fn preconditions(&self) -> Preconditions {
        Preconditions {
            if_generation_match: self.if_generation_match,
            if_generation_not_match: self.if_generation_not_match,
        }
    }
}

pub fn precondition_failed(bucket: &str, name: &str, current: Option<i64>) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "At least one of the pre-conditions you specified did not hold for gs://{bucket}/{name} (its live generation is {})",
        current
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none: it does not exist".into())
    ))
}

/// An object resource in the JSON API's shape.
pub fn object_view(state: &AppState, o: &ObjectRecord) -> Value {
    let encoded = urlencode(&o.name);
    json!({
        "kind": "storage#object",
        "id": format!("{}/{}/{}", o.bucket, o.name, o.generation),
        "selfLink": format!("{}/storage/v1/b/{}/o/{encoded}", state.public_url, o.bucket),
        "mediaLink": format!("{}/download/storage/v1/b/{}/o/{encoded}?generation={}&alt=media", state.public_url, o.bucket, o.generation),
        "name": o.name,
        "bucket": o.bucket,
        "generation": o.generation.to_string(),
        "metageneration": o.metageneration.to_string(),
        "contentType": o.content_type,
        "storageClass": "STANDARD",
        "size": o.size.to_string(),
        "md5Hash": b64(&o.md5),
        "crc32c": b64(&o.crc32c.to_be_bytes()),
        "etag": etag(o),
        "timeCreated": crate::time_util::rfc3339(o.create_time),
        "updated": crate::time_util::rfc3339(o.update_time),
    })
}

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn etag(o: &ObjectRecord) -> String {
    STANDARD.encode(format!("{}/{}", o.generation, o.metageneration))
}

/// Percent-encodes an object name for a URL path segment (everything but unreserved).
pub fn urlencode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}
