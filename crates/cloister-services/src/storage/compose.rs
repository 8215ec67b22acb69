//! objects.compose: `POST /storage/v1/b/B/o/DEST/compose` joins up to 32 objects of one bucket
//! into a new generation of DEST (what `blob.compose` and gcloud's parallel composite uploads
//! call). Authorized as Google does: `storage.objects.get` to read the sources,
//! `storage.objects.create` on the destination (and `storage.objects.delete` when it replaces
//! one, or when the sources are to be deleted).
//!
//! The bytes stream from the sources' blobs into a fresh blob through the same `store` path as
//! an upload, so the composite is visible only when whole. Its CRC32C must equal the one
//! combined from the sources' (a source replaced or rotted meanwhile is caught, nothing
//! stored); like Google's, a composite has `componentCount` and no MD5.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use std::sync::Arc;

use cloister_store::{BlobKey, BlobStore, ByteStream};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::objects::load;
use super::params::StorageQuery;
use super::response::{method_not_allowed, shape};
use super::upload::{MAX_METADATA_BYTES, ObjectMetadata, store};
use super::{PreconditionQuery, authorized_bucket, check_object_name, int64, precondition_failed};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Google's limits: sources per request, and components of a composite in all.
pub const MAX_SOURCES: usize = 32;
pub const MAX_COMPONENTS: u32 = 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/storage/v1/b/{bucket}/o/{object}/compose",
            post(compose).fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(shape))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ComposeQuery {
    /// Preconditions on the destination.
    if_generation_match: Option<i64>,
    if_metageneration_match: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ComposeRequest {
    #[allow(dead_code)]
    kind: Option<String>,
    #[serde(default)]
    source_objects: Vec<SourceObject>,
    /// The destination's metadata (its name is the path's).
    #[serde(default)]
    destination: Option<Map<String, Value>>,
    #[serde(default)]
    delete_source_objects: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourceObject {
    name: String,
    /// The source's generation (the live one must be it); the Python client sends `null` when
    /// it does not know one.
    #[serde(default, deserialize_with = "int64")]
    generation: Option<i64>,
    #[serde(default)]
    object_preconditions: Option<SourcePreconditions>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SourcePreconditions {
    #[serde(default, deserialize_with = "int64")]
    if_generation_match: Option<i64>,
}

async fn open(blobs: Arc<dyn BlobStore>, key: BlobKey) -> std::io::Result<ByteStream> {
    blobs.get(&key, None).await.map_err(std::io::Error::other)
}

async fn compose(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((bucket, dest_name)): Path<(String, String)>,
    StorageQuery(q): StorageQuery<ComposeQuery>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    if body.len() > MAX_METADATA_BYTES {
        return Err(ApiError::PayloadTooLarge(format!(
            "The compose request is larger than {MAX_METADATA_BYTES} bytes"
        )));
    }
    // Through serde_path_to_error, so a refusal names the member (`sourceObjects[1].generation`).
    let req: ComposeRequest =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body))
            .map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "Invalid compose request at {}: {}",
                    e.path(),
                    e.inner()
                ))
            })?;
    check_object_name(&dest_name)?;
    let count = req.source_objects.len();
    if count == 0 || count > MAX_SOURCES {
        return Err(ApiError::InvalidArgument(format!(
            "A compose request takes 1 to {MAX_SOURCES} sourceObjects; this one has {count}. Compose larger sets in stages (composites can be composed again)"
        )));
    }
    let mut metadata = match &req.destination {
        Some(d) => ObjectMetadata::from_map(d)?,
        None => ObjectMetadata::default(),
    };
    authorized_bucket(&state, &caller, &bucket, "storage.objects.get").await?;
    authorized_bucket(&state, &caller, &bucket, "storage.objects.create").await?;
    let delete_sources = req.delete_source_objects == Some(true);
    if delete_sources {
        authorized_bucket(&state, &caller, &bucket, "storage.objects.delete").await?;
    }
    let mut sources = Vec::with_capacity(count);
    for (i, s) in req.source_objects.iter().enumerate() {
        let object = load(&state, &bucket, &s.name, s.generation)
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => ApiError::NotFound(format!(
                    "sourceObjects[{i}]: no such object: {bucket}/{}{}",
                    s.name,
                    s.generation
                        .map(|g| format!(" at generation {g}"))
                        .unwrap_or_default()
                )),
                other => other,
            })?;
        let wanted = s
            .object_preconditions
            .as_ref()
            .and_then(|p| p.if_generation_match);
        if wanted.is_some_and(|g| g != object.generation) {
            return Err(precondition_failed(
                &bucket,
                &s.name,
                Some(object.generation),
            ));
        }
        sources.push(object);
    }
    let mut components: u32 = 0;
    let mut crc32c: u32 = 0;
    for s in &sources {
        components = components
            .checked_add(s.component_count.unwrap_or(1))
            .filter(|n| *n <= MAX_COMPONENTS)
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "The composite would have more than {MAX_COMPONENTS} components, Cloud Storage's limit"
                ))
            })?;
        let len = usize::try_from(s.size).map_err(|_| {
            ApiError::InvalidArgument(format!("{} is too large to compose here", s.name))
        })?;
        crc32c = crc32c::crc32c_combine(crc32c, s.crc32c, len);
    }
    let keys = sources
        .iter()
        .map(|s| BlobKey::new(&s.blob_key).map_err(|e| ApiError::Internal(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let blobs = state.blobs.clone();
    // Each source's blob is opened when the previous one is done: one open read at a time.
    let bytes = futures::stream::iter(keys)
        .then(move |key| open(blobs.clone(), key))
        .try_flatten();
    metadata.name = Some(dest_name.clone());
    metadata.md5_hash = None;
    metadata.crc32c = Some(super::b64(&crc32c.to_be_bytes()));
    metadata.component_count = Some(components);
    if metadata.content_type.is_none() {
        metadata.content_type = Some("application/octet-stream".into());
    }
    let pre = PreconditionQuery {
        if_generation_match: q.if_generation_match,
        if_metageneration_match: q.if_metageneration_match,
        ..Default::default()
    };
    let composite = store(&state, &caller, &bucket, metadata, &pre, bytes).await?;
    if delete_sources {
        for s in sources.iter().filter(|s| s.name != dest_name) {
            let only_this = cloister_store::Preconditions {
                if_generation_match: Some(s.generation),
                ..Default::default()
            };
            // A source replaced since it was read is someone else's new object: left alone.
            if let Ok(Ok(Some(blob))) = state.store.delete_object(&bucket, &s.name, only_this).await
            {
                super::upload::remove_blob(&state, &blob).await;
            }
        }
    }
    Ok(Json(composite))
}
