//! Resumable uploads (the JSON API's protocol): a POST opens a session and answers its URI in
//! `Location`; PUTs carry chunks with `Content-Range: bytes A-B/TOTAL` (or `/*` while the total
//! is unknown) and get 308 with `Range: bytes=0-N` until the last chunk; a PUT with
//! `bytes */TOTAL` asks how far the upload got. Sessions live in the database, so any replica
//! can continue one; chunks are blobs `uploads/ID/OFFSET`, joined into the object at the end.
//!
//! The session id is a bearer credential, but the session is its creator's: every chunk and
//! the commit are authorized as them again, so revoking their access stops the upload.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_domain::Principal;
use cloister_store::{BlobKey, UploadSession};
use futures::{Stream, StreamExt, TryStreamExt};
use rand::RngCore;
use serde::Deserialize;
use time::OffsetDateTime;

use super::params::StorageQuery;
use super::upload::{MAX_METADATA_BYTES, ObjectMetadata, check_overwrite, remove_blob, store};
use super::{PreconditionQuery, authorized_bucket, check_object_name, existing_bucket, limits};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    upload_id: Option<String>,
    /// The session URI Cloister hands out carries `uploadType=resumable`.
    #[serde(rename = "uploadType")]
    upload_type: Option<String>,
}

/// A session URI is good for a week after it was made, as Google's are; afterwards it is
/// refused, and the sweep removes it with the bytes it received.
pub const SESSION_LIFETIME_SECS: i64 = 7 * 24 * 3600;

fn chunk_key(upload_id: &str, offset: u64) -> Result<BlobKey, ApiError> {
    BlobKey::new(&format!("uploads/{upload_id}/{offset:020}"))
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// Opens a session; the request body is the object's JSON metadata (possibly empty).
pub async fn start(
    state: &AppState,
    caller: &Principal,
    bucket: &str,
    name: &Option<String>,
    pre: &PreconditionQuery,
    headers: &HeaderMap,
    body: impl Stream<Item = std::io::Result<Bytes>> + Send,
) -> Result<Response, ApiError> {
    let mut json = Vec::new();
    let mut body = std::pin::pin!(body);
    while let Some(chunk) = body.next().await {
        json.extend_from_slice(
            &chunk.map_err(|e| ApiError::InvalidArgument(format!("reading the request: {e}")))?,
        );
        if json.len() > MAX_METADATA_BYTES {
            return Err(ApiError::PayloadTooLarge(format!(
                "object metadata is larger than {MAX_METADATA_BYTES} bytes"
            )));
        }
    }
    let metadata = ObjectMetadata::from_json(&json, "The resumable upload's metadata")?;
    let name = metadata
        .name
        .or(name.clone())
        .ok_or_else(|| ApiError::InvalidArgument("the object has no name".into()))?;
    check_object_name(&name)?;
    check_overwrite(state, caller, bucket, &name).await?;
    // A client that announces the size learns now, not after sending it, that it cannot fit.
    if let Some(announced) = headers
        .get("x-upload-content-length")
        .and_then(|v| v.to_str().ok())
    {
        let announced: u64 = announced.trim().parse().map_err(|_| {
            ApiError::InvalidArgument(format!(
                "X-Upload-Content-Length {announced:?} is not a byte count"
            ))
        })?;
        let record = existing_bucket(state, bucket).await?;
        limits::budget(state, &record, &name, 0)
            .await?
            .admit(0, announced)?;
    }
    let content_type = metadata
        .content_type
        .or_else(|| {
            headers
                .get("x-upload-content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "application/octet-stream".into());
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let session = UploadSession {
        upload_id: hex::encode(id),
        bucket: bucket.to_owned(),
        name,
        content_type,
        attributes: metadata.attributes,
        preconditions: pre.preconditions(),
        creator: Some(caller.clone()),
        received: 0,
        create_time: OffsetDateTime::now_utc(),
    };
    let location = format!(
        "{}/upload/storage/v1/b/{bucket}/o?uploadType=resumable&upload_id={}",
        state.public_url, session.upload_id
    );
    state.store.create_upload_session(&session).await?;
    let mut response = StatusCode::OK.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(response)
}

/// The session and its creator, who must still be allowed to write to the bucket.
/// The session the query's `upload_id` names in `bucket`, whoever opened it.
async fn find_session(
    state: &AppState,
    q: &SessionQuery,
    bucket: &str,
) -> Result<UploadSession, ApiError> {
    if q.upload_type.as_deref().is_some_and(|t| t != "resumable") {
        return Err(ApiError::InvalidArgument(
            "a session's chunks go with uploadType=resumable (or none)".into(),
        ));
    }
    let id = q
        .upload_id
        .as_deref()
        .ok_or_else(|| ApiError::InvalidArgument("upload_id is required".into()))?;
    state
        .store
        .get_upload_session(id)
        .await?
        .filter(|s| s.bucket == bucket)
        .ok_or_else(|| ApiError::NotFound(format!("No such upload session: {id}")))
}

async fn session_of(
    state: &AppState,
    q: &SessionQuery,
    bucket: &str,
) -> Result<(UploadSession, Principal), ApiError> {
    let session = find_session(state, q, bucket).await?;
    let id = &session.upload_id;
    if OffsetDateTime::now_utc() - session.create_time
        >= time::Duration::seconds(SESSION_LIFETIME_SECS)
    {
        return Err(ApiError::NotFound(format!(
            "The upload session {id} expired (a session lasts a week): start a new upload"
        )));
    }
    let creator = session.creator.clone().ok_or_else(|| {
        ApiError::NotFound(format!(
            "The upload session {id} was opened by an older server, which did not record who opened it: start a new upload"
        ))
    })?;
    authorized_bucket(state, &creator, bucket, "storage.objects.create").await?;
    Ok((session, creator))
}

/// 308 with the range received so far.
fn incomplete(received: u64) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if received > 0
        && let Ok(v) = HeaderValue::from_str(&format!("bytes=0-{}", received - 1))
    {
        response.headers_mut().insert(header::RANGE, v);
    }
    response
}

/// What a chunk's `Content-Range` says.
#[derive(Debug, PartialEq, Eq)]
struct ContentRange {
    /// The first byte and how many follow (None: a status query).
    chunk: Option<(u64, u64)>,
    /// The object's size, once the client knows it.
    total: Option<u64>,
}

/// `Content-Range: bytes A-B/T`, `bytes A-B/*`, `bytes */T` or `bytes */*`. Refuses, rather
/// than wraps, whatever no real upload can say: B before A, a range past the total, a length
/// that does not fit in a u64.
fn parse_content_range(value: &str) -> Result<ContentRange, String> {
    let bad = |why: &str| format!("Content-Range {value:?} {why}");
    let spec = value
        .trim()
        .strip_prefix("bytes ")
        .ok_or_else(|| bad("is not bytes A-B/TOTAL, bytes A-B/* or bytes */TOTAL"))?;
    let (range, total) = spec
        .split_once('/')
        .ok_or_else(|| bad("has no /TOTAL (or /*)"))?;
    let number = |n: &str| -> Result<u64, String> {
        n.parse()
            .map_err(|_| bad(&format!("has {n:?} where a byte offset belongs")))
    };
    let total = match total {
        "*" => None,
        t => Some(number(t)?),
    };
    let chunk = match range {
        "*" => None,
        r => {
            let (a, b) = r.split_once('-').ok_or_else(|| bad("has no A-B range"))?;
            let (a, b) = (number(a)?, number(b)?);
            let len = b
                .checked_sub(a)
                .and_then(|d| d.checked_add(1))
                .ok_or_else(|| bad("ends before it starts, or is longer than any upload"))?;
            if total.is_some_and(|t| b >= t) {
                return Err(bad("ends past the total size"));
            }
            Some((a, len))
        }
    };
    Ok(ContentRange { chunk, total })
}

/// A PUT on the session URI: a chunk, or a status query.
pub async fn chunk(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    StorageQuery(q): StorageQuery<SessionQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The session id is the credential, as with Google's session URIs; its creator must
    // still be allowed to write.
    let (session, creator) = session_of(&state, &q, &bucket).await?;
    let range = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("bytes */*");
    let ContentRange { chunk, total } =
        parse_content_range(range).map_err(ApiError::InvalidArgument)?;
    let mut received = session.received;
    if let Some((a, len)) = chunk {
        if a != received {
            return Err(ApiError::InvalidArgument(format!(
                "this chunk starts at byte {a}, but the upload has {received} bytes: resume from byte {received}"
            )));
        }
        let to = a.checked_add(len).ok_or_else(|| {
            ApiError::InvalidArgument(format!("Content-Range {range:?} ends past any upload"))
        })?;
        let record = existing_bucket(&state, &bucket).await?;
        let budget = limits::budget(&state, &record, &session.name, session.received).await?;
        budget.admit(a, len)?;
        let key = chunk_key(&session.upload_id, a)?;
        let stream = Box::pin(body.into_data_stream().map_err(std::io::Error::other));
        let info = state
            .blobs
            .put(&key, Box::pin(limits::limited(stream, budget, a)))
            .await
            .map_err(limits::write_failed)?;
        if info.size != len {
            let _ = state.blobs.delete(&key).await;
            return Err(ApiError::InvalidArgument(format!(
                "Content-Range announced {len} bytes but the body held {}",
                info.size
            )));
        }
        let id = &session.upload_id;
        let quota = state.storage_limits.project_quota_bytes;
        let advanced = state.store.advance_upload_session(id, a, to, quota).await?;
        let advanced = match advanced {
            Ok(advanced) => advanced,
            Err(cloister_store::OverQuota { used, quota }) => {
                let _ = state.blobs.delete(&key).await;
                return Err(limits::Exceeded::Quota {
                    project: record.project_id.as_str().to_owned(),
                    used,
                    quota,
                }
                .into());
            }
        };
        if !advanced {
            let _ = state.blobs.delete(&key).await;
            if state.store.get_upload_session(id).await?.is_none() {
                return Err(ApiError::NotFound(format!(
                    "The upload session {id} was cancelled or completed by another request"
                )));
            }
            return Err(ApiError::Aborted("another request advanced this upload at the same time; query its status and resume".into()));
        }
        received = to;
    }
    match total {
        Some(t) if t == received => finish(&state, &session, &creator, received).await,
        Some(t) if t < received => Err(ApiError::InvalidArgument(format!(
            "the total {t} is less than the {received} bytes received"
        ))),
        _ => Ok(incomplete(received)),
    }
}

/// The session's chunks, in order, as one stream.
fn joined(
    state: &AppState,
    upload_id: String,
    total: u64,
) -> impl Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    let blobs = std::sync::Arc::clone(&state.blobs);
    futures::stream::try_unfold(0u64, move |offset| {
        let (blobs, upload_id) = (std::sync::Arc::clone(&blobs), upload_id.clone());
        async move {
            if offset >= total {
                return Ok::<_, std::io::Error>(None);
            }
            let key = BlobKey::new(&format!("uploads/{upload_id}/{offset:020}"))
                .map_err(std::io::Error::other)?;
            let size = blobs
                .size(&key)
                .await
                .map_err(std::io::Error::other)?
                .ok_or_else(|| std::io::Error::other(format!("chunk at {offset} is missing")))?;
            let stream = blobs.get(&key, None).await.map_err(std::io::Error::other)?;
            Ok(Some((stream, offset + size)))
        }
    })
    .try_flatten()
}

async fn remove_chunks(state: &AppState, upload_id: &str, total: u64) {
    let mut offset = 0;
    while offset < total {
        let Ok(key) = chunk_key(upload_id, offset) else {
            return;
        };
        match state.blobs.size(&key).await {
            Ok(Some(size)) if size > 0 => {
                remove_blob(state, key.as_str()).await;
                offset += size;
            }
            _ => return,
        }
    }
}

/// Commits the upload once: the request that removes the session finishes it; any other
/// (a retried or concurrent final PUT, a status query) is told it lost.
async fn finish(
    state: &AppState,
    session: &UploadSession,
    creator: &Principal,
    total: u64,
) -> Result<Response, ApiError> {
    if !state
        .store
        .delete_upload_session(&session.upload_id)
        .await?
    {
        return Err(ApiError::Aborted(format!(
            "another request is completing the upload session {} at the same time; read the object to see its result",
            session.upload_id
        )));
    }
    let metadata = ObjectMetadata {
        name: Some(session.name.clone()),
        content_type: Some(session.content_type.clone()),
        attributes: session.attributes.clone(),
        ..Default::default()
    };
    let pre = PreconditionQuery {
        generation: None,
        if_generation_match: session.preconditions.if_generation_match,
        if_generation_not_match: session.preconditions.if_generation_not_match,
        if_metageneration_match: session.preconditions.if_metageneration_match,
        if_metageneration_not_match: session.preconditions.if_metageneration_not_match,
    };
    let stored = store(
        state,
        creator,
        &session.bucket,
        metadata,
        &pre,
        joined(state, session.upload_id.clone(), total),
    )
    .await;
    remove_chunks(state, &session.upload_id, total).await;
    Ok(Json(stored?).into_response())
}

/// Deletes the chunks cancelled sessions received (their bucket was deleted).
pub async fn remove_cancelled(state: &AppState, sessions: &[UploadSession]) {
    for session in sessions {
        remove_chunks(state, &session.upload_id, session.received).await;
    }
}

/// Removes sessions created before `created_before` with what they received; returns how
/// many.
pub async fn sweep_expired(
    state: &AppState,
    created_before: OffsetDateTime,
) -> Result<usize, ApiError> {
    let expired = state.store.stale_upload_sessions(created_before).await?;
    for session in &expired {
        remove_chunks(state, &session.upload_id, session.received).await;
        state
            .store
            .delete_upload_session(&session.upload_id)
            .await?;
    }
    Ok(expired.len())
}

/// DELETE on the session URI: cancel the upload and drop what it received.
pub async fn cancel(
    State(state): State<AppState>,
    Path(bucket): Path<String>,
    StorageQuery(q): StorageQuery<SessionQuery>,
) -> Result<Response, ApiError> {
    // Anyone holding the session URI may cancel it, even after the creator lost access.
    let session = find_session(&state, &q, &bucket).await?;
    remove_chunks(&state, &session.upload_id, session.received).await;
    state
        .store
        .delete_upload_session(&session.upload_id)
        .await?;
    // Google answers a cancelled upload with 499.
    Ok(StatusCode::from_u16(499)
        .map(IntoResponse::into_response)
        .unwrap_or_else(|_| StatusCode::NO_CONTENT.into_response()))
}

#[cfg(test)]
mod tests {
    use super::{ContentRange, parse_content_range};

    #[test]
    fn content_ranges_parse() {
        let ok = |chunk, total| Ok(ContentRange { chunk, total });
        assert_eq!(
            parse_content_range("bytes 0-99/200"),
            ok(Some((0, 100)), Some(200))
        );
        assert_eq!(
            parse_content_range("bytes 100-199/*"),
            ok(Some((100, 100)), None)
        );
        assert_eq!(
            parse_content_range("bytes 0-0/1"),
            ok(Some((0, 1)), Some(1))
        );
        assert_eq!(parse_content_range("bytes */200"), ok(None, Some(200)));
        assert_eq!(parse_content_range("bytes */*"), ok(None, None));
        let max = u64::MAX;
        assert_eq!(
            parse_content_range(&format!("bytes 1-{max}/*")),
            ok(Some((1, max)), None),
            "the longest range that fits"
        );
    }

    #[test]
    fn impossible_content_ranges_are_refused_not_wrapped() {
        let max = u64::MAX;
        for bad in [
            format!("bytes 0-{max}/*"), // length 2^64: overflows
            format!("bytes 0-{max}/{max}"),
            "bytes 9-1/*".into(),                    // ends before it starts
            "bytes 0-99/50".into(),                  // past the total
            "bytes 0-18446744073709551616/*".into(), // not a u64
            "bytes -1-5/*".into(),
            "bytes 0-5".into(),
            "bytes a-b/*".into(),
            "items 0-1/2".into(),
        ] {
            assert!(parse_content_range(&bad).is_err(), "{bad}");
        }
    }
}
