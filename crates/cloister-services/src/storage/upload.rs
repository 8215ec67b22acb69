//! Uploads: `uploadType=media` and `uploadType=multipart` (JSON metadata + media, as Google's
//! client libraries send small objects). Bytes stream into the blob store while MD5 and CRC32C
//! are computed; the object becomes visible only after its blob is durable and any checksum
//! the client sent matches. Resumable uploads are in `resumable.rs`.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use cloister_domain::Principal;
use cloister_store::{BlobKey, ByteStream, ObjectRecord, PutLimits, PutRefused};
use futures::{Stream, TryStreamExt};
use md5::{Digest, Md5};
use rand::RngCore;
use serde::Deserialize;
use serde_json::Value;

pub use super::metadata::{MAX_METADATA_BYTES, ObjectMetadata};
use super::params::StorageQuery;
use super::response::{method_not_allowed, shape};
use super::{
    PreconditionQuery, authorized_bucket, check_object_name, existing_bucket, limits,
    multipart_boundary, object_view, precondition_failed, resumable,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/upload/storage/v1/b/{bucket}/o",
            post(upload)
                .put(resumable::chunk)
                .delete(resumable::cancel)
                .fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(shape))
}

/// (Flattening the precondition fields into this struct would break numeric parsing in
/// serde_urlencoded, so they are listed here and converted by `pre()`.)
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct UploadQuery {
    upload_type: Option<String>,
    name: Option<String>,
    /// The stored Content-Encoding (`gzip` for bytes the client compressed), as a parameter.
    content_encoding: Option<String>,
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
}

impl UploadQuery {
    fn pre(&self) -> PreconditionQuery {
        PreconditionQuery {
            generation: None,
            if_generation_match: self.if_generation_match,
            if_generation_not_match: self.if_generation_not_match,
            if_metageneration_match: self.if_metageneration_match,
            if_metageneration_not_match: self.if_metageneration_not_match,
        }
    }
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
    if state.store.get_object(bucket, name).await?.is_some() {
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
    StorageQuery(q): StorageQuery<UploadQuery>,
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
            let mut metadata = ObjectMetadata {
                name: Some(name),
                content_type: Some(content_type),
                ..Default::default()
            };
            metadata.attributes.content_encoding = q.content_encoding.clone();
            store(&state, &caller, &bucket, metadata, &q.pre(), bytes)
                .await
                .map(|v| Json(v).into_response())
        }
        Some("multipart") => {
            let boundary = multipart_boundary(&content_type).ok_or_else(|| {
                ApiError::InvalidArgument(
                    "uploadType=multipart needs Content-Type: multipart/related; boundary=…".into(),
                )
            })?;
            let related = super::multipart::split(bytes, &boundary).await?;
            let mut metadata =
                ObjectMetadata::from_json(&related.metadata, "The multipart metadata part")?;
            if metadata.attributes.content_encoding.is_none() {
                metadata.attributes.content_encoding = q.content_encoding.clone();
            }
            if let Some(name) = &q.name {
                metadata.name.get_or_insert_with(|| name.clone());
            }
            if metadata.content_type.is_none() {
                metadata.content_type = related.media_type;
            }
            let media = related.media;
            store(&state, &caller, &bucket, metadata, &q.pre(), media)
                .await
                .map(|v| Json(v).into_response())
        }
        Some("resumable") => {
            if q.content_encoding.is_some() {
                return Err(ApiError::InvalidArgument(
                    "contentEncoding goes in a resumable upload's metadata, not its query".into(),
                ));
            }
            resumable::start(&state, &caller, &bucket, &q.name, &q.pre(), &headers, bytes).await
        }
        other => Err(ApiError::InvalidArgument(format!(
            "uploadType {other:?} is not one of media, multipart, resumable"
        ))),
    }
}

/// An upload from the console, as the API's `uploadType=media`: the same permissions (create,
/// and delete to replace), limits, checksums and audit.
pub async fn upload_from_console(
    state: &AppState,
    caller: &Principal,
    bucket: &str,
    name: String,
    content_type: String,
    bytes: impl Stream<Item = std::io::Result<Bytes>> + Send + 'static,
) -> Result<Value, ApiError> {
    authorized_bucket(state, caller, bucket, "storage.objects.create").await?;
    let metadata = ObjectMetadata {
        name: Some(name),
        content_type: Some(content_type),
        ..Default::default()
    };
    store(
        state,
        caller,
        bucket,
        metadata,
        &PreconditionQuery::default(),
        bytes,
    )
    .await
}

/// Stores `bytes` as the new live generation of the object `metadata` names, written by
/// `caller` (for a resumable upload, whoever opened the session). What would be refused at the
/// end is refused before a byte is read; the bytes may then take hours, so the commit
/// authorizes the caller again, and a caller who may not replace objects cannot replace one
/// that appeared meanwhile (the store checks that in the write's own transaction).
pub(super) async fn store(
    state: &AppState,
    caller: &Principal,
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
    let record = existing_bucket(state, bucket).await?;
    check_overwrite(state, caller, bucket, &name).await?;
    let budget = limits::budget(state, &record, &name, 0).await?;
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let blob = format!("{OBJECT_BLOB_PREFIX}/{}", hex::encode(id));
    let key = BlobKey::new(&blob).map_err(|e| ApiError::Internal(e.to_string()))?;
    let sums = Arc::new(Mutex::new(Sums::default()));
    let bytes = limits::limited(Box::pin(bytes), budget, 0);
    let info = state
        .blobs
        .put(&key, summed(bytes, Arc::clone(&sums)))
        .await
        .map_err(limits::write_failed)?;
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
    let now = time::OffsetDateTime::now_utc();
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
        create_time: now,
        update_time: now,
        blob_key: blob.clone(),
        attributes: metadata.attributes,
        component_count: metadata.component_count,
    };
    let committed = match commit_limits(state, caller, bucket).await {
        Ok(limits) => state
            .store
            .put_object(&object, pre.preconditions(), limits)
            .await
            .map_err(ApiError::from),
        Err(e) => Err(e),
    };
    match committed {
        Ok(Ok(replaced)) => {
            if let Some(old) = replaced {
                remove_blob(state, &old).await;
            }
            Ok(object_view(state, &object))
        }
        Ok(Err(refused)) => {
            remove_blob(state, &blob).await;
            Err(match refused {
                PutRefused::Precondition(current) => precondition_failed(bucket, &name, current),
                PutRefused::WouldReplace(_) => refuse_replace(state, caller, bucket).await,
                PutRefused::OverQuota { used, quota } => limits::Exceeded::Quota {
                    project: record.project_id.as_str().to_owned(),
                    used,
                    quota,
                }
                .into(),
            })
        }
        Err(e) => {
            remove_blob(state, &blob).await;
            Err(e)
        }
    }
}

/// At the commit: `caller` must still hold `storage.objects.create`; whether they may replace
/// a live object, and the project's quota, go into the write's transaction.
async fn commit_limits(
    state: &AppState,
    caller: &Principal,
    bucket: &str,
) -> Result<PutLimits, ApiError> {
    authorized_bucket(state, caller, bucket, "storage.objects.create").await?;
    let resource = format!("projects/_/buckets/{bucket}");
    let may_replace = state
        .authorizer
        .grants(caller, &["storage.objects.delete"], &resource)
        .await?
        .first()
        .is_some_and(Option::is_some);
    Ok(PutLimits {
        may_replace,
        project_quota: state.storage_limits.project_quota_bytes,
    })
}

/// The 403 (audited) for a writer whose object appeared before their commit.
async fn refuse_replace(state: &AppState, caller: &Principal, bucket: &str) -> ApiError {
    let resource = format!("projects/_/buckets/{bucket}");
    match state
        .authorizer
        .check(caller, "storage.objects.delete", &resource)
        .await
    {
        Err(denied) => denied,
        // Granted between the commit and this answer: the caller may simply retry.
        Ok(_) => ApiError::Aborted(
            "the object appeared while this upload was written, and your permissions changed meanwhile; retry the upload".into(),
        ),
    }
}
