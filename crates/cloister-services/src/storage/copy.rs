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
use super::params::StorageQuery;
use super::response::{method_not_allowed, shape};
use super::upload::{ObjectMetadata, store};
use super::{PreconditionQuery, authorized_bucket, precondition_failed};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/storage/v1/b/{bucket}/o/{object}/rewriteTo/b/{dest_bucket}/o/{dest_object}",
            post(rewrite).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}/o/{object}/copyTo/b/{dest_bucket}/o/{dest_object}",
            post(copy).fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(shape))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CopyQuery {
    source_generation: Option<i64>,
    /// Preconditions on the destination, as for an upload.
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
    /// Preconditions on the source.
    if_source_generation_match: Option<i64>,
    if_source_generation_not_match: Option<i64>,
    if_source_metageneration_match: Option<i64>,
    if_source_metageneration_not_match: Option<i64>,
    /// Rewrites finish in one call, whatever the most bytes a call may copy: Cloister has no
    /// locations or storage classes whose change would need several.
    #[allow(dead_code)]
    max_bytes_rewritten_per_call: Option<u64>,
    /// Only a token a rewrite answered may continue it, and Cloister's answer none.
    rewrite_token: Option<String>,
}

type CopyPath = Path<(String, String, String, String)>;

async fn rewrite(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(names): CopyPath,
    StorageQuery(q): StorageQuery<CopyQuery>,
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
    StorageQuery(q): StorageQuery<CopyQuery>,
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
    if q.rewrite_token.as_deref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::InvalidArgument(
            "rewriteToken is not one this API returned: Cloister's rewrites finish in one call"
                .into(),
        ));
    }
    // The body, when there is one, is the destination's metadata; an empty body keeps the
    // source's.
    let given = !body.iter().all(u8::is_ascii_whitespace);
    let overrides = ObjectMetadata::from_json(body, "The copy's metadata")?;
    authorized_bucket(state, caller, &bucket, "storage.objects.get").await?;
    let source = load(state, &bucket, &name, q.source_generation).await?;
    let source_pre = cloister_store::Preconditions {
        if_generation_match: q.if_source_generation_match,
        if_generation_not_match: q.if_source_generation_not_match,
        if_metageneration_match: q.if_source_metageneration_match,
        if_metageneration_not_match: q.if_source_metageneration_not_match,
    };
    if !source_pre.hold(Some((source.generation, source.metageneration))) {
        return Err(precondition_failed(&bucket, &name, Some(source.generation)));
    }
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
        attributes: if given {
            overrides.attributes
        } else {
            source.attributes
        },
        component_count: source.component_count,
    };
    let pre = PreconditionQuery {
        generation: None,
        if_generation_match: q.if_generation_match,
        if_generation_not_match: q.if_generation_not_match,
        if_metageneration_match: q.if_metageneration_match,
        if_metageneration_not_match: q.if_metageneration_not_match,
    };
    store(state, caller, &dest_bucket, metadata, &pre, bytes).await
}
