//! Objects: metadata, download (whole or by `Range`), listing (prefix, delimiter, paging,
//! `matchGlob`, offsets), patch/update of the metadata (`metadata.rs`), and delete.

use std::collections::BTreeSet;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_store::{BlobKey, ObjectRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use super::glob::MatchGlob;
use super::params::{StorageQuery, only_false};
use super::response::{method_not_allowed, shape};
use super::{
    PreconditionQuery, authorized_bucket, check_object_name, etag, object_view, precondition_failed,
};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/storage/v1/b/{bucket}/o",
            get(list).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}/o/{object}",
            get(get_object)
                .delete(delete)
                .patch(super::metadata::patch)
                .put(super::metadata::update)
                .fallback(method_not_allowed),
        )
        .route(
            "/download/storage/v1/b/{bucket}/o/{object}",
            get(get_object).fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(shape))
}

const MAX_PAGE: usize = 1000;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GetQuery {
    alt: Option<String>,
    generation: Option<i64>,
    if_generation_match: Option<i64>,
    if_generation_not_match: Option<i64>,
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
    /// Cloister keeps no soft-deleted objects, so only the live one can be asked for.
    #[serde(default, deserialize_with = "super::params::flag")]
    soft_deleted: Option<bool>,
}

pub(super) async fn load(
    state: &AppState,
    bucket: &str,
    name: &str,
    generation: Option<i64>,
) -> Result<ObjectRecord, ApiError> {
    check_object_name(name)?;
    let missing = || ApiError::NotFound(format!("No such object: {bucket}/{name}"));
    let object = state
        .store
        .get_object(bucket, name)
        .await?
        .ok_or_else(missing)?;
    if generation.is_some_and(|g| g != object.generation) {
        return Err(missing());
    }
    Ok(object)
}

async fn get_object(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((bucket, name)): Path<(String, String)>,
    StorageQuery(q): StorageQuery<GetQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    only_false(
        "softDeleted",
        q.soft_deleted,
        "Cloister keeps no soft-deleted objects",
    )?;
    authorized_bucket(&state, &caller, &bucket, "storage.objects.get").await?;
    let object = load(&state, &bucket, &name, q.generation).await?;
    let pre = PreconditionQuery {
        generation: None,
        if_generation_match: q.if_generation_match,
        if_generation_not_match: q.if_generation_not_match,
        if_metageneration_match: q.if_metageneration_match,
        if_metageneration_not_match: q.if_metageneration_not_match,
    };
    if !pre
        .preconditions()
        .hold(Some((object.generation, object.metageneration)))
    {
        return Err(precondition_failed(&bucket, &name, Some(object.generation)));
    }
    if q.alt.as_deref() != Some("media") {
        return Ok(Json(object_view(&state, &object)).into_response());
    }
    media(&state, &object, headers.get(header::RANGE)).await
}

/// An object's record and bytes for the console's download, after the API's own check
/// (`storage.objects.get`). The console serves them as an attachment, never as a page.
pub async fn read_for_console(
    state: &AppState,
    caller: &cloister_domain::Principal,
    bucket: &str,
    name: &str,
) -> Result<(ObjectRecord, cloister_store::ByteStream), ApiError> {
    authorized_bucket(state, caller, bucket, "storage.objects.get").await?;
    let object = load(state, bucket, name, None).await?;
    let stream = bytes(state, &object, None).await?;
    Ok((object, stream))
}

/// An object's bytes (or the `range` of them) from the blob store.
async fn bytes(
    state: &AppState,
    object: &ObjectRecord,
    range: Option<std::ops::Range<u64>>,
) -> Result<cloister_store::ByteStream, ApiError> {
    let key = BlobKey::new(&object.blob_key).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .blobs
        .get(&key, range)
        .await
        .map_err(|e| ApiError::Internal(format!("reading {}/{}: {e}", object.bucket, object.name)))
}

/// A byte position; digits past u64 mean "beyond any object" rather than an error.
fn position(digits: &str) -> Result<u64, ()> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(());
    }
    Ok(digits.parse().unwrap_or(u64::MAX))
}

/// Parses `bytes=a-b`, `bytes=a-` and `bytes=-n` against `size` into the first and last byte
/// served; `Err` when unsatisfiable (no byte of the object selected, or not a range).
pub(crate) fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None); // several ranges: serve the whole object, as HTTP allows
    }
    let (start, end) = spec.split_once('-').ok_or(())?;
    let (start, end) = match (start.trim(), end.trim()) {
        ("", n) => {
            let n = position(n)?;
            if n == 0 {
                return Err(()); // the last 0 bytes: nothing
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (a, "") => (position(a)?, size.checked_sub(1).ok_or(())?),
        (a, b) => {
            let (a, b) = (position(a)?, position(b)?);
            if b < a {
                return Err(());
            }
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

async fn media(
    state: &AppState,
    object: &ObjectRecord,
    range: Option<&HeaderValue>,
) -> Result<Response, ApiError> {
    let range = match range.and_then(|v| v.to_str().ok()) {
        None => None,
        Some(v) => parse_range(v, object.size).map_err(|()| ApiError::RangeNotSatisfiable)?,
    };
    let stream = bytes(state, object, range.map(|(a, b)| a..b + 1)).await?;
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    let set = |h: &mut HeaderMap, k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(h, "content-type", object.content_type.clone());
    // The stored headers come back on a download, as Google serves them.
    let a = &object.attributes;
    for (name, value) in [
        ("cache-control", &a.cache_control),
        ("content-disposition", &a.content_disposition),
        ("content-encoding", &a.content_encoding),
        ("content-language", &a.content_language),
    ] {
        if let Some(v) = value {
            set(h, name, v.clone());
        }
    }
    for (k, v) in &a.metadata {
        if let (Ok(name), Ok(v)) = (
            axum::http::HeaderName::try_from(format!("x-goog-meta-{k}")),
            HeaderValue::from_str(v),
        ) {
            h.insert(name, v);
        }
    }
    set(h, "etag", etag(object));
    set(h, "x-goog-generation", object.generation.to_string());
    set(
        h,
        "x-goog-metageneration",
        object.metageneration.to_string(),
    );
    set(h, "x-goog-stored-content-length", object.size.to_string());
    let crc32c = format!("crc32c={}", STANDARD.encode(object.crc32c.to_be_bytes()));
    // A composite object has no MD5 (see `object_view`).
    let hashes = match object.component_count {
        Some(_) => crc32c,
        None => format!("{crc32c},md5={}", STANDARD.encode(object.md5)),
    };
    set(h, "x-goog-hash", hashes);
    set(h, "accept-ranges", "bytes".into());
    match range {
        Some((a, b)) => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                response.headers_mut(),
                "content-range",
                format!("bytes {a}-{b}/{}", object.size),
            );
            set(
                response.headers_mut(),
                "content-length",
                (b + 1 - a).to_string(),
            );
        }
        None => set(
            response.headers_mut(),
            "content-length",
            object.size.to_string(),
        ),
    }
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    #[serde(default)]
    prefix: String,
    delimiter: Option<String>,
    page_token: Option<String>,
    max_results: Option<usize>,
    match_glob: Option<String>,
    /// Only names at or after this one (inclusive), and before `end_offset` (exclusive).
    start_offset: Option<String>,
    end_offset: Option<String>,
    /// With a delimiter, objects whose names end in it are listed as items too.
    #[serde(default, deserialize_with = "super::params::flag")]
    include_trailing_delimiter: Option<bool>,
    /// `versions=true` asks for the noncurrent generations as well as the live ones; Cloister
    /// keeps none (a bucket without versioning), so the live ones are the whole answer, as
    /// Google's for such a bucket. (`gcloud storage rm -r` asks so.)
    #[serde(default, deserialize_with = "super::params::flag")]
    #[allow(dead_code)]
    versions: Option<bool>,
    #[serde(default, deserialize_with = "super::params::flag")]
    soft_deleted: Option<bool>,
    /// Folders of hierarchical-namespace buckets; Cloister's buckets are flat and hold none, so
    /// the listing is the same either way.
    #[allow(dead_code)]
    #[serde(default, deserialize_with = "super::params::flag")]
    include_folders_as_prefixes: Option<bool>,
}

/// The page token: the last name the previous page covered.
fn decode_token(token: Option<&str>) -> Result<String, ApiError> {
    let bad = || ApiError::InvalidArgument("pageToken is not one this API returned".into());
    match token {
        None | Some("") => Ok(String::new()),
        Some(t) => String::from_utf8(STANDARD.decode(t).map_err(|_| bad())?).map_err(|_| bad()),
    }
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    StorageQuery(q): StorageQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    only_false(
        "softDeleted",
        q.soft_deleted,
        "Cloister keeps no soft-deleted objects",
    )?;
    let glob = q.match_glob.as_deref().map(MatchGlob::new).transpose()?;
    authorized_bucket(&state, &caller, &bucket, "storage.objects.list").await?;
    let limit = q.max_results.unwrap_or(MAX_PAGE).clamp(1, MAX_PAGE);
    let mut after = decode_token(q.page_token.as_deref())?;
    // startOffset is inclusive; the store's bound is exclusive: start just before it.
    let start = q.start_offset.filter(|s| !s.is_empty());
    let end = q.end_offset.filter(|e| !e.is_empty());
    let delimiter = q.delimiter.filter(|d| !d.is_empty());
    let trailing = q.include_trailing_delimiter == Some(true);
    // Only names under both the prefix and the glob's literal start can match: scan those.
    let scan_prefix = match &glob {
        Some(g) if g.literal_prefix().starts_with(&q.prefix) => g.literal_prefix().to_owned(),
        _ => q.prefix.clone(),
    };
    if let Some(start) = start.as_deref()
        && after.as_str() < start
    {
        after = before(start);
    }
    let (mut items, mut prefixes) = (Vec::new(), BTreeSet::new());
    let mut next = None;
    // Each page holds up to `limit` entries, items and collapsed prefixes together.
    'pages: loop {
        // Filters may skip many names per entry kept: read them in large batches.
        let batch_size = if glob.is_some() || start.is_some() {
            MAX_PAGE
        } else {
            limit
        };
        let batch = state
            .store
            .list_objects(&bucket, &scan_prefix, &after, batch_size)
            .await?;
        let exhausted = batch.len() < batch_size;
        for o in batch {
            if end.as_deref().is_some_and(|e| o.name.as_str() >= e) {
                break 'pages;
            }
            if items.len() + prefixes.len() == limit {
                next = Some(after.clone());
                break 'pages;
            }
            after = o.name.clone();
            // `before` is a close bound, not an exact one: what still sorts before the
            // start is skipped here.
            if start.as_deref().is_some_and(|s| o.name.as_str() < s)
                || glob.as_ref().is_some_and(|g| !g.is_match(&o.name))
            {
                continue;
            }
            // `scan_prefix` starts with the prefix, and so does every name listed.
            let rest = o.name.get(q.prefix.len()..).unwrap_or_default();
            match delimiter
                .as_deref()
                .and_then(|d| rest.find(d).map(|i| i + d.len()))
            {
                Some(end) => {
                    let p = format!("{}{}", q.prefix, &rest[..end]);
                    if trailing && p == o.name {
                        items.push(object_view(&state, &o));
                    }
                    // Without a glob, skip the rest of this prefix: everything below it sorts
                    // before the next one. With one, names below it are still to be matched.
                    if glob.is_none() && !trailing {
                        after = format!("{p}\u{10FFFF}");
                    }
                    prefixes.insert(p);
                }
                None => items.push(object_view(&state, &o)),
            }
        }
        if exhausted {
            break;
        }
    }
    let mut body = json!({ "kind": "storage#objects", "items": items });
    if !prefixes.is_empty() {
        body["prefixes"] = json!(prefixes);
    }
    if let Some(token) = next {
        body["nextPageToken"] = json!(STANDARD.encode(token));
    }
    Ok(Json(body))
}

/// The greatest string that sorts before `name` closely enough for an exclusive bound: `name`
/// less its last character, followed by the highest character (nothing lies between).
fn before(name: &str) -> String {
    let mut chars = name.chars();
    match chars.next_back() {
        None => String::new(),
        Some(last) => match char::from_u32(u32::from(last).saturating_sub(1)) {
            Some(prev) if u32::from(last) > 0 => format!("{}{prev}\u{10FFFF}", chars.as_str()),
            _ => chars.as_str().to_owned(),
        },
    }
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((bucket, name)): Path<(String, String)>,
    StorageQuery(q): StorageQuery<PreconditionQuery>,
) -> Result<StatusCode, ApiError> {
    authorized_bucket(&state, &caller, &bucket, "storage.objects.delete").await?;
    // A generation that is not the live one names nothing Cloister keeps.
    if let Some(g) = q.generation {
        load(&state, &bucket, &name, Some(g)).await?;
    }
    check_object_name(&name)?;
    match state
        .store
        .delete_object(&bucket, &name, q.preconditions())
        .await?
    {
        Ok(Some(blob)) => {
            super::upload::remove_blob(&state, &blob).await;
            Ok(StatusCode::NO_CONTENT)
        }
        Ok(None) => Err(ApiError::NotFound(format!(
            "No such object: {bucket}/{name}"
        ))),
        Err(current) => Err(precondition_failed(&bucket, &name, current)),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_follow_http() {
        assert_eq!(parse_range("bytes=0-4", 10), Ok(Some((0, 4))));
        assert_eq!(parse_range("bytes=5-", 10), Ok(Some((5, 9))));
        assert_eq!(parse_range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(parse_range("bytes=8-100", 10), Ok(Some((8, 9))));
        assert_eq!(parse_range("bytes=10-", 10), Err(()));
        assert_eq!(parse_range("bytes=5-2", 10), Err(()));
        assert_eq!(parse_range("items=0-1", 10), Ok(None));
    }

    #[test]
    fn extreme_ranges_are_refused_or_clamped_never_wrapped() {
        let max = u64::MAX;
        for (range, size, expected) in [
            (format!("bytes=0-{max}"), 10, Ok(Some((0, 9)))),
            (format!("bytes={max}-{max}"), 10, Err(())),
            (format!("bytes={max}-"), 10, Err(())),
            (format!("bytes=-{max}"), 10, Ok(Some((0, 9)))),
            (
                "bytes=0-99999999999999999999999".into(),
                10,
                Ok(Some((0, 9))),
            ),
            ("bytes=0-0".into(), 10, Ok(Some((0, 0)))),
            ("bytes=0-0".into(), 0, Err(())),
            ("bytes=-0".into(), 10, Err(())),
            ("bytes=-5".into(), 0, Err(())),
            ("bytes=9-3".into(), 10, Err(())),
            ("bytes=-".into(), 10, Err(())),
            ("bytes=+1-2".into(), 10, Err(())),
            ("bytes=1-+2".into(), 10, Err(())),
        ] {
            assert_eq!(parse_range(&range, size), expected, "{range} of {size}");
        }
    }
}
