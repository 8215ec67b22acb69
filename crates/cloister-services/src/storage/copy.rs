//! Server-side copies: `…/o/{src}/rewriteTo/b/{bucket}/o/{dst}` (what the client libraries'
//! `copy_blob` and `gcloud storage cp gs://… gs://…` call) and the older `…/copyTo/…`.
//! The bytes stream from the source blob into a fresh blob through the same `store` path as an
//! upload, so the copy gets its own generation and checksums, and is visible only when whole.
//! Rewrites finish in one call (`done: true`); Cloister has no storage classes or locations to
//! move between, which is what Google's multi-call rewrites are for.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use cloister_store::BlobKey;
use serde::Deserialize;
use serde_json::{Value, json};

use super::objects::load;
use super::upload::{MAX_METADATA_BYTES, ObjectMetadata, store};
use super::{PreconditionQuery, authorized_bucket};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::query::ApiQuery;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/storage/v1/b/{bucket}/o/{object}/rewriteTo/b/{dest_bucket}/o/{dest_object}",
            post(rewrite),
        )
        .route(
            "/storage/v1/b/{bucket}/o/{object}/copyTo/b/{dest_bucket}/o/{dest_object}",
            post(copy),
        )
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CopyQuery {
    source_generation: Option<i64>,
    /// Preconditions on the destination, as for an upload.
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
}

type CopyPath = Path<(String, String, String, String)>;

async fn rewrite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(names): CopyPath,
    ApiQuery(q): ApiQuery<CopyQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let object = copy_object(&state, &caller, names, q, &body).await?;
    let size = object["size"].clone();
    Ok(Json(json!({
        "kind": "storage#rewriteResponse",
        "totalBytesRewritten": size,
        "objectSize": size,
        "done": true,
        "resource": object,
    })))
}

async fn copy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(names): CopyPath,
    ApiQuery(q): ApiQuery<CopyQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    copy_object(&state, &caller, names, q, &body)
        .await
        .map(Json)
}

async fn copy_object(
    state: &AppState,
    caller: &cloister_domain::Principal,
    (bucket, name, dest_bucket, dest_name): (String, String, String, String),
    q: CopyQuery,
    body: &[u8],
) -> Result<Value, ApiError> {
    if body.len() > MAX_METADATA_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "object metadata is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    // The body may override the destination's metadata; an empty body keeps the source's.
    let overrides: ObjectMetadata = if body.iter().all(u8::is_ascii_whitespace) {
        ObjectMetadata::default()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::InvalidArgument(format!("the copy's metadata is not object JSON: {e}"))
        })?
    };
    authorized_bucket(state, caller, &bucket, "storage.objects.get").await?;
    let source = load(state, &bucket, &name, q.source_generation).await?;
    authorized_bucket(state, caller, &dest_bucket, "storage.objects.create").await?;
    let key = BlobKey::new(&source.blob_key).map_err(|e| ApiError::Internal(e.to_string()))?;
    let bytes = state
        .blobs
        .get(&key, None)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {bucket}/{name}: {e}")))?;
    let metadata = ObjectMetadata {
        name: Some(dest_name),
        content_type: overrides.content_type.or(Some(source.content_type)),
        // The source's checksums must hold for the copy: a blob that rotted on disk is not
        // silently copied.
        md5_hash: Some(super::b64(&source.md5)),
        crc32c: Some(super::b64(&source.crc32c.to_be_bytes())),
    };
    let pre = PreconditionQuery {
        if_generation_match: q.if_generation_match,
        if_generation_not_match: q.if_generation_not_match,
    };
    store(state, caller, &dest_bucket, metadata, &pre, bytes).await
}
