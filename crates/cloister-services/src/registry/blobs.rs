//! Blobs and blob uploads.
//!
//! Uploads are sessions in the database (so any replica can continue one); each PATCH streams
//! into its own chunk blob while the blob store computes its SHA-256. Finishing the upload
//! checks the digest the client claims against what arrived: a single-chunk upload (what
//! skopeo and podman send) is adopted as the blob without a second read, several chunks are
//! joined through a fresh hash. A mismatch stores nothing. Blobs are deduplicated by digest.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_store::{BlobKey, ImageRef, OverQuota, RegistryBlob, RegistryUpload};
use futures::{StreamExt, TryStreamExt};
use rand::RngCore;
use time::OffsetDateTime;

use super::error::RegistryError;
use super::names::{ImageName, parse_digest};
use crate::error::ApiError;
use crate::state::AppState;
use crate::storage::limits::{self, Budget, Exceeded};

fn key(k: &str) -> Result<BlobKey, RegistryError> {
    BlobKey::new(k).map_err(|e| RegistryError::Internal(e.to_string()))
}

fn chunk_key(upload_id: &str, n: u32) -> String {
    format!("registry-uploads/{upload_id}/{n:06}")
}

pub(super) fn headers(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(*k, v);
        }
    }
    h
}

async fn remove(state: &AppState, k: &str) {
    if let Ok(k) = BlobKey::new(k)
        && let Err(e) = state.blobs.delete(&k).await
    {
        tracing::error!(error = %e, key = k.as_str(), "could not delete a registry blob");
    }
}

fn body_stream(body: Body) -> cloister_store::ByteStream {
    Box::pin(body.into_data_stream().map_err(std::io::Error::other))
}

/// Streams `body` into a new blob, stopping (nothing kept) once the upload would hold more
/// than `budget` allows after the `have` bytes it holds; returns the blob's size and digest.
async fn put(
    state: &AppState,
    k: &str,
    body: Body,
    budget: Budget,
    have: u64,
) -> Result<(u64, String), RegistryError> {
    let stream = Box::pin(limits::limited(body_stream(body), budget, have));
    let info = state
        .blobs
        .put(&key(k)?, stream)
        .await
        .map_err(|e| match e {
            cloister_store::BlobError::Source { source, .. } => match limits::exceeded(&source) {
                Some(limit) => ApiError::from(limit).into(),
                None => RegistryError::BlobUploadInvalid(format!(
                    "the upload was interrupted: {source}"
                )),
            },
            other => RegistryError::Internal(other.to_string()),
        })?;
    Ok((info.size, format!("sha256:{}", hex::encode(info.sha256))))
}

fn upload_headers(name: &ImageName, upload: &RegistryUpload) -> HeaderMap {
    let range = if upload.received == 0 {
        "0-0".to_owned()
    } else {
        format!("0-{}", upload.received - 1)
    };
    headers(&[
        (
            "location",
            format!("/v2/{}/blobs/uploads/{}", name.full(), upload.upload_id),
        ),
        ("docker-upload-uuid", upload.upload_id.clone()),
        ("range", range),
        ("content-length", "0".into()),
    ])
}

fn created(name: &ImageName, digest: &str) -> Response {
    (
        StatusCode::CREATED,
        headers(&[
            ("location", format!("/v2/{}/blobs/{digest}", name.full())),
            ("docker-content-digest", digest.to_owned()),
            ("content-length", "0".into()),
        ]),
    )
        .into_response()
}

/// The refusal of a push past its project's storage quota.
fn over_quota(name: &ImageName, OverQuota { used, quota }: OverQuota) -> RegistryError {
    ApiError::from(Exceeded::Quota {
        project: name.project.as_str().to_owned(),
        used,
        quota,
    })
    .into()
}

/// Records a verified blob in the image; a duplicate of a stored digest is dropped. Its
/// project's quota is checked once more as it is recorded: pushes at once cannot pass it.
async fn adopt(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    blob: RegistryBlob,
) -> Result<(), RegistryError> {
    let quota = state.storage_limits.project_quota_bytes;
    match state.store.put_blob(image, &blob, quota).await? {
        Ok(Some(duplicate)) => remove(state, &duplicate).await,
        Ok(None) => {}
        Err(over) => {
            remove(state, &blob.blob_key).await;
            return Err(over_quota(name, over));
        }
    }
    Ok(())
}

/// `POST …/blobs/uploads/`: a cross-repository mount, a monolithic upload (`?digest=`), or a
/// new upload session.
pub async fn start(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    mount: Option<(ImageRef, String)>,
    digest: Option<&str>,
    body: Body,
) -> Result<Response, RegistryError> {
    // Not mountable: fall back to a normal upload, as the spec says.
    if let Some((from, digest)) = mount {
        let quota = state.storage_limits.project_quota_bytes;
        match state.store.mount_blob(image, &from, &digest, quota).await? {
            Ok(Some(_)) => return Ok(created(name, &digest)),
            Ok(None) => {}
            Err(over) => return Err(over_quota(name, over)),
        }
    }
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    let upload_id = hex::encode(id);
    if let Some(expected) = digest {
        let expected = parse_digest(expected)?;
        let k = format!("registry/{upload_id}");
        let budget = limits::project_budget(state, &name.project, 0, 0).await?;
        let (size, actual) = put(state, &k, body, budget, 0).await?;
        return finish_verified(state, name, image, &expected, &actual, size, &k).await;
    }
    let upload = RegistryUpload {
        upload_id,
        image: image.clone(),
        received: 0,
        chunks: 0,
        single_chunk_sha256: None,
        create_time: OffsetDateTime::now_utc(),
    };
    state.store.create_registry_upload(&upload).await?;
    Ok((StatusCode::ACCEPTED, upload_headers(name, &upload)).into_response())
}

async fn finish_verified(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    expected: &str,
    actual: &str,
    size: u64,
    k: &str,
) -> Result<Response, RegistryError> {
    if actual != expected {
        remove(state, k).await;
        return Err(RegistryError::DigestInvalid(format!(
            "the uploaded content has digest {actual}, not {expected}; nothing was stored"
        )));
    }
    let blob = RegistryBlob {
        digest: expected.to_owned(),
        size,
        blob_key: k.to_owned(),
    };
    adopt(state, name, image, blob).await?;
    Ok(created(name, expected))
}

async fn session(
    state: &AppState,
    image: &ImageRef,
    upload_id: &str,
) -> Result<RegistryUpload, RegistryError> {
    state
        .store
        .get_registry_upload(upload_id)
        .await?
        .filter(|u| &u.image == image)
        .ok_or_else(|| {
            RegistryError::BlobUploadUnknown(format!(
                "no blob upload {upload_id:?} in progress for this repository"
            ))
        })
}

/// `Content-Range: A-B` (or `bytes A-B/…`): the offset the chunk starts at and its length.
/// What no real chunk can say (B before A, a length past u64, not numbers) is a 400, never
/// arithmetic that wraps.
fn content_range(headers: &HeaderMap) -> Result<Option<(u64, u64)>, RegistryError> {
    let Some(v) = headers.get(header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let bad = |why: &str| {
        RegistryError::BlobUploadInvalid(format!(
            "Content-Range {v:?} {why}; send A-B, the chunk's first and last byte"
        ))
    };
    let text = v.to_str().map_err(|_| bad("is not text"))?;
    let text = text
        .trim_start_matches("bytes ")
        .split('/')
        .next()
        .unwrap_or("");
    let (a, b) = text.split_once('-').ok_or_else(|| bad("has no A-B"))?;
    let number = |n: &str| -> Result<u64, RegistryError> {
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad("is not two byte offsets"));
        }
        n.parse().map_err(|_| bad("has an offset past any upload"))
    };
    let (a, b) = (number(a)?, number(b)?);
    let len = b
        .checked_sub(a)
        .and_then(|d| d.checked_add(1))
        .ok_or_else(|| bad("ends before it starts, or is longer than any upload"))?;
    Ok(Some((a, len)))
}

/// Appends one chunk (a PATCH, or the body of the final PUT), within the storage limits.
async fn append(
    state: &AppState,
    name: &ImageName,
    upload: &mut RegistryUpload,
    headers: &HeaderMap,
    body: Body,
) -> Result<(), RegistryError> {
    let range = content_range(headers)?;
    if let Some((start, _)) = range
        && start != upload.received
    {
        return Err(RegistryError::RangeInvalid(format!(
            "the chunk starts at byte {start}, but the upload holds {} bytes; resume from there",
            upload.received
        )));
    }
    let budget = limits::project_budget(state, &name.project, 0, upload.received).await?;
    if let Some((_, len)) = range {
        budget.admit(upload.received, len)?;
    }
    let k = chunk_key(&upload.upload_id, upload.chunks);
    let (size, digest) = put(state, &k, body, budget, upload.received).await?;
    if size == 0 {
        remove(state, &k).await;
        return Ok(());
    }
    if let Some((_, len)) = range
        && len != size
    {
        remove(state, &k).await;
        return Err(RegistryError::RangeInvalid(format!(
            "Content-Range announced {len} bytes but {size} arrived"
        )));
    }
    let quota = state.storage_limits.project_quota_bytes;
    let advanced = state
        .store
        .advance_registry_upload(&upload.upload_id, upload.received, size, &digest, quota)
        .await?;
    let advanced = match advanced {
        Ok(advanced) => advanced,
        Err(over) => {
            remove(state, &k).await;
            return Err(over_quota(name, over));
        }
    };
    if !advanced {
        remove(state, &k).await;
        return Err(RegistryError::RangeInvalid(
            "another request appended to this upload at the same time; query its status and resume"
                .into(),
        ));
    }
    upload.single_chunk_sha256 = (upload.chunks == 0).then_some(digest);
    upload.received += size;
    upload.chunks += 1;
    Ok(())
}

pub async fn patch(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    upload_id: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let mut upload = session(state, image, upload_id).await?;
    append(state, name, &mut upload, headers, body).await?;
    Ok((StatusCode::ACCEPTED, upload_headers(name, &upload)).into_response())
}

pub async fn status(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    upload_id: &str,
) -> Result<Response, RegistryError> {
    let upload = session(state, image, upload_id).await?;
    Ok((StatusCode::NO_CONTENT, upload_headers(name, &upload)).into_response())
}

async fn discard(state: &AppState, upload: &RegistryUpload, keep: Option<u32>) {
    for n in 0..upload.chunks {
        if Some(n) != keep {
            remove(state, &chunk_key(&upload.upload_id, n)).await;
        }
    }
    if let Err(e) = state.store.delete_registry_upload(&upload.upload_id).await {
        tracing::error!(error = %e.chain(), "could not delete a finished registry upload");
    }
}

/// Removes uploads older than `max_age_secs` with their chunks: a client that went away must
/// not leave its bytes forever.
pub async fn sweep_abandoned(state: &AppState, max_age_secs: i64) -> Result<usize, RegistryError> {
    let before = OffsetDateTime::now_utc().saturating_sub(time::Duration::seconds(max_age_secs));
    let stale = state.store.stale_registry_uploads(before).await?;
    for upload in &stale {
        discard(state, upload, None).await;
    }
    Ok(stale.len())
}

pub async fn cancel(
    state: &AppState,
    image: &ImageRef,
    upload_id: &str,
) -> Result<Response, RegistryError> {
    let upload = session(state, image, upload_id).await?;
    discard(state, &upload, None).await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PUT …/blobs/uploads/ID?digest=D`: the last chunk (if any), then the digest check.
pub async fn finish(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    upload_id: &str,
    digest: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let expected = parse_digest(digest.ok_or_else(|| {
        RegistryError::DigestInvalid("finishing an upload needs ?digest=sha256:…".into())
    })?)?;
    let mut upload = session(state, image, upload_id).await?;
    append(state, name, &mut upload, headers, body).await?;
    if upload.chunks == 1 && upload.single_chunk_sha256.as_deref() == Some(expected.as_str()) {
        let k = chunk_key(&upload.upload_id, 0);
        let blob = RegistryBlob {
            digest: expected.clone(),
            size: upload.received,
            blob_key: k,
        };
        // The upload is dropped either way; its one chunk is kept only as the recorded blob.
        let adopted = adopt(state, name, image, blob).await;
        discard(state, &upload, adopted.is_ok().then_some(0)).await;
        adopted?;
        return Ok(created(name, &expected));
    }
    // Several chunks (or none): join them through a fresh hash.
    let mut parts = Vec::new();
    for n in 0..upload.chunks {
        parts.push(
            state
                .blobs
                .get(&key(&chunk_key(upload_id, n))?, None)
                .await
                .map_err(|e| RegistryError::Internal(e.to_string()))?,
        );
    }
    let joined: cloister_store::ByteStream = Box::pin(futures::stream::iter(parts).flatten());
    let k = format!("registry/{upload_id}");
    let info = state
        .blobs
        .put(&key(&k)?, joined)
        .await
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    let actual = format!("sha256:{}", hex::encode(info.sha256));
    discard(state, &upload, None).await;
    finish_verified(state, name, image, &expected, &actual, info.size, &k).await
}

/// `GET`/`HEAD …/blobs/DIGEST`, with `Range` on GET.
pub async fn get(
    state: &AppState,
    image: &ImageRef,
    digest: &str,
    head: bool,
    range: Option<&HeaderValue>,
) -> Result<Response, RegistryError> {
    let digest = parse_digest(digest)?;
    let blob = state
        .store
        .linked_blob(image, &digest)
        .await?
        .ok_or_else(|| {
            RegistryError::BlobUnknown(format!("blob {digest} is not in this repository"))
        })?;
    let range = match range.and_then(|v| v.to_str().ok()) {
        Some(v) => crate::storage::objects::parse_range(v, blob.size).map_err(|()| {
            RegistryError::RangeInvalid(format!(
                "the Range {v:?} cannot be satisfied for a blob of {} bytes",
                blob.size
            ))
        })?,
        None => None,
    };
    let mut h = headers(&[
        ("docker-content-digest", digest.clone()),
        ("content-type", "application/octet-stream".into()),
        ("accept-ranges", "bytes".into()),
        ("content-length", blob.size.to_string()),
    ]);
    if head {
        return Ok((StatusCode::OK, h, Body::empty()).into_response());
    }
    let stream = state
        .blobs
        .get(&key(&blob.blob_key)?, range.map(|(a, b)| a..b + 1))
        .await
        .map_err(|e| RegistryError::Internal(e.to_string()))?;
    let status = match range {
        Some((a, b)) => {
            h.extend(headers(&[
                ("content-range", format!("bytes {a}-{b}/{}", blob.size)),
                ("content-length", (b + 1 - a).to_string()),
            ]));
            StatusCode::PARTIAL_CONTENT
        }
        None => StatusCode::OK,
    };
    Ok((status, h, Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::content_range;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn parse(value: &str) -> Result<Option<(u64, u64)>, String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_RANGE, HeaderValue::from_str(value).unwrap());
        content_range(&headers).map_err(|e| e.to_string())
    }

    #[test]
    fn chunk_ranges_are_checked_not_wrapped() {
        let max = u64::MAX;
        for (value, expected) in [
            ("0-0".to_owned(), Some((0, 1))),
            ("0-99".into(), Some((0, 100))),
            ("bytes 100-199/*".into(), Some((100, 100))),
            (format!("1-{max}"), Some((1, max))),
            (format!("{max}-{max}"), Some((max, 1))),
        ] {
            assert_eq!(parse(&value), Ok(expected), "{value}");
        }
        for value in [
            format!("0-{max}"), // 2^64 bytes
            "5-4".into(),
            "0-18446744073709551616".into(),
            "-1-5".into(),
            "+1-5".into(),
            "a-b".into(),
            "7".into(),
        ] {
            assert!(parse(&value).is_err(), "{value}");
        }
    }
}
