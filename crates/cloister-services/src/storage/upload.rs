//! Uploads: `uploadType=media` and `uploadType=multipart` (JSON metadata + media, as Google's
//! client libraries send small objects). Bytes stream into the blob store while MD5 and CRC32C
//! are computed; the object becomes visible only after its blob is durable and any checksum
//! the client sent matches. Resumable uploads are in `resumable.rs`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use cloister_domain::Principal;
use cloister_store::{BlobKey, ByteStream, ObjectRecord};
use futures::{Stream, TryStreamExt};
use md5::{Digest, Md5};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;

use super::resumable;
use super::{
    PreconditionQuery, authorized_bucket, check_object_name, object_view, precondition_failed,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time_util;

/// Largest JSON metadata part accepted with an upload.
pub(super) const MAX_METADATA_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route(
        "/upload/storage/v1/b/{bucket}/o",
        post(upload).put(resumable::chunk).delete(resumable::cancel),
    )
}

/// (Flattening the precondition fields into this struct would break numeric parsing in
/// serde_urlencoded, so they are listed here and converted by `pre()`.)
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct UploadQuery {
    upload_type: Option<String>,
    name: Option<String>,
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
}

impl UploadQuery {
    fn pre(&self) -> PreconditionQuery {
        PreconditionQuery {
            if_generation_match: self.if_generation_match,
            if_generation_not_match: self.if_generation_not_match,
        }
    }
}

/// The metadata part of a multipart upload (the fields Cloister keeps).
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ObjectMetadata {
    pub name: Option<String>,
    pub content_type: Option<String>,
    pub md5_hash: Option<String>,
    pub crc32c: Option<String>,
}

#[derive(Default)]
struct Sums {
    md5: Md5,
    crc32c: u32,
}

/// Wraps a byte stream so MD5 and CRC32C are computed as the bytes pass.
fn summed(
    stream: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
    sums: Arc<Mutex<Sums>>,
) -> ByteStream {
    Box::pin(stream.inspect_ok(move |chunk| {
        let mut s = sums.lock().unwrap_or_else(|p| p.into_inner());
        s.md5.update(chunk);
        s.crc32c = crc32c::crc32c_append(s.crc32c, chunk);
    }))
}

/// Replacing an object deletes its old generation, so it takes `storage.objects.delete` too
/// (objectCreator may add objects, never overwrite them).
pub(super) async fn check_overwrite(
    state: &AppState,
    caller: &Principal,
    bucket: &str,
    name: &str,
) -> Result<(), ApiError> {
    if state.read(|s| s.get_object(bucket, name))?.is_some() {
        let resource = format!("projects/_/buckets/{bucket}");
        state
            .authorizer
            .check(caller, "storage.objects.delete", &resource)
            .await?;
    }
    Ok(())
}

/// Where objects' bytes live in the blob store, one fresh key per generation.
pub const OBJECT_BLOB_PREFIX: &str = "objects";

pub async fn remove_blob(state: &AppState, key: &str) {
    if let Ok(key) = BlobKey::new(key)
        && let Err(e) = state.blobs.delete(&key).await
    {
        tracing::error!(error = %e, "could not delete a replaced object's blob");
    }
}

async fn upload(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    authorized_bucket(&state, &caller, &bucket, "storage.objects.create").await?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let bytes = body.into_data_stream().map_err(std::io::Error::other);
    match q.upload_type.as_deref() {
        Some("media") => {
            let name = q.name.clone().ok_or_else(|| {
                ApiError::InvalidArgument("uploadType=media needs the query parameter name".into())
            })?;
            let metadata = ObjectMetadata {
                name: Some(name),
                content_type: Some(content_type),
                ..Default::default()
            };
            store(&state, Some(&caller), &bucket, metadata, &q.pre(), bytes)
                .await
                .map(|v| Json(v).into_response())
        }
        Some("multipart") => {
            let boundary = content_type
                .parse::<mime::Mime>()
                .ok()
                .filter(|m| m.type_() == mime::MULTIPART)
                .and_then(|m| m.get_param(mime::BOUNDARY).map(|b| b.to_string()))
                .ok_or_else(|| {
                    ApiError::InvalidArgument(
                        "uploadType=multipart needs Content-Type: multipart/related; boundary=…"
                            .into(),
                    )
                })?;
            let mut parts = multer::Multipart::new(bytes, boundary);
            let bad = |e: multer::Error| {
                ApiError::InvalidArgument(format!("Malformed multipart body: {e}"))
            };
            let first = parts.next_field().await.map_err(bad)?.ok_or_else(|| {
                ApiError::InvalidArgument("the multipart body has no metadata part".into())
            })?;
            let json = first.bytes().await.map_err(bad)?;
            if json.len() > MAX_METADATA_BYTES {
                return Err(ApiError::PayloadTooLarge(format!(
                    "object metadata is larger than {MAX_METADATA_BYTES} bytes"
                )));
            }
            let mut metadata: ObjectMetadata = serde_json::from_slice(&json).map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "the multipart metadata part is not object JSON: {e}"
                ))
            })?;
            if let Some(name) = &q.name {
                metadata.name.get_or_insert_with(|| name.clone());
            }
            let media = parts.next_field().await.map_err(bad)?.ok_or_else(|| {
                ApiError::InvalidArgument("the multipart body has no media part".into())
            })?;
            if metadata.content_type.is_none() {
                metadata.content_type = media.content_type().map(|m| m.to_string());
            }
            let media = media.map_err(std::io::Error::other);
            store(&state, Some(&caller), &bucket, metadata, &q.pre(), media)
                .await
                .map(|v| Json(v).into_response())
        }
        Some("resumable") => {
            resumable::start(&state, &caller, &bucket, &q.name, &q.pre(), &headers, bytes).await
        }
        other => Err(ApiError::InvalidArgument(format!(
            "uploadType {other:?} is not one of media, multipart, resumable"
        ))),
    }
}

/// Stores `bytes` as the new live generation of the object `metadata` names. With `caller`,
/// replacing an existing object also takes `storage.objects.delete` (checked at the start of
/// a resumable upload instead).
pub(super) async fn store(
    state: &AppState,
    caller: Option<&Principal>,
    bucket: &str,
    metadata: ObjectMetadata,
    pre: &PreconditionQuery,
    bytes: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Result<Value, ApiError> {
    let name = metadata
        .name
        .clone()
        .ok_or_else(|| ApiError::InvalidArgument("the object has no name".into()))?;
    check_object_name(&name)?;
    if let Some(caller) = caller {
        check_overwrite(state, caller, bucket, &name).await?;
    }
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let blob = format!("{OBJECT_BLOB_PREFIX}/{}", hex::encode(id));
    let key = BlobKey::new(&blob).map_err(|e| ApiError::Internal(e.to_string()))?;
    let sums = Arc::new(Mutex::new(Sums::default()));
    let info = state
        .blobs
        .put(&key, summed(bytes, Arc::clone(&sums)))
        .await
        .map_err(|e| match e {
            cloister_store::BlobError::Source { source, .. } => {
                ApiError::InvalidArgument(format!("the upload was interrupted: {source}"))
            }
            other => ApiError::Internal(other.to_string()),
        })?;
    let (md5, crc32c) = {
        let s = std::mem::take(&mut *sums.lock().unwrap_or_else(|p| p.into_inner()));
        (<[u8; 16]>::from(s.md5.finalize()), s.crc32c)
    };
    let expected_md5 = metadata
        .md5_hash
        .as_deref()
        .map(|m| STANDARD.decode(m).unwrap_or_default());
    let expected_crc = metadata
        .crc32c
        .as_deref()
        .map(|c| STANDARD.decode(c).unwrap_or_default());
    if expected_md5.is_some_and(|m| m != md5)
        || expected_crc.is_some_and(|c| c != crc32c.to_be_bytes())
    {
        remove_blob(state, &blob).await;
        return Err(ApiError::InvalidArgument(format!(
            "The checksum you specified does not match what the server received for {bucket}/{name} (md5 {}, crc32c {}); nothing was stored",
            STANDARD.encode(md5),
            STANDARD.encode(crc32c.to_be_bytes())
        )));
    }
    let now = time_util::now_rfc3339();
    let object = ObjectRecord {
        bucket: bucket.to_owned(),
        name: name.clone(),
        // Like Google: the generation is the creation time in microseconds.
        generation: time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1000,
        metageneration: 1,
        size: info.size,
        md5,
        crc32c,
        content_type: metadata
            .content_type
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "application/octet-stream".into()),
        create_time: now.clone(),
        update_time: now,
        blob_key: blob.clone(),
    };
    let (stored, pre) = (object.clone(), pre.preconditions());
    match state.db(move |s| s.put_object(&stored, pre)).await {
        Ok(Ok(replaced)) => {
            if let Some(old) = replaced {
                remove_blob(state, &old).await;
            }
            Ok(object_view(state, &object))
        }
        Ok(Err(current)) => {
            remove_blob(state, &blob).await;
            Err(precondition_failed(bucket, &name, current))
        }
        Err(e) => {
            remove_blob(state, &blob).await;
            Err(e)
        }
    }
}
