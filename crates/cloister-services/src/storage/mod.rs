//! Cloud Storage JSON API subset: buckets (`buckets.rs`), object metadata, listing, download,
//! patch/update and delete (`objects.rs`; `glob.rs` for `matchGlob`), uploads (`upload.rs`,
//! media and multipart; `resumable.rs`), server-side copies (`copy.rs`) and composition
//! (`compose.rs`); object size and project quota (`limits.rs`); the sweep of blobs no object
//! points at (`orphans.rs`). Every method's query parameters go through `params.rs` (what a
//! method does not implement is refused, never ignored) and every answer through `response.rs`
//! (`fields`, `prettyPrint`, Google-shaped 405s).
//!
//! Bytes live in the blob store under a fresh key per generation; an object's metadata row
//! is written only after its bytes are durably stored and their checksums known (and matched
//! against any the client sent), so an object is never visible half-written.

pub mod buckets;
pub mod compose;
pub mod copy;
pub mod glob;
pub mod limits;
pub mod metadata;
pub mod multipart;
pub mod objects;
pub mod orphans;
pub mod params;
pub mod response;
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
        && !name.contains(['\r', '\n', '\0'])
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Invalid object name {name:?}: 1 to 1024 bytes, no newlines or NUL, not \".\" or \"..\""
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

/// Generation and metageneration preconditions from the query string (also the whole query of
/// objects.delete, with the generation it names).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreconditionQuery {
    pub generation: Option<i64>,
    pub if_generation_match: Option<i64>,
    pub if_generation_not_match: Option<i64>,
    pub if_metageneration_match: Option<i64>,
    pub if_metageneration_not_match: Option<i64>,
}

impl PreconditionQuery {
    pub fn preconditions(&self) -> Preconditions {
        Preconditions {
            if_generation_match: self.if_generation_match,
            if_generation_not_match: self.if_generation_not_match,
            if_metageneration_match: self.if_metageneration_match,
            if_metageneration_not_match: self.if_metageneration_not_match,
        }
    }
}

/// The 412 for preconditions that do not hold; `current` is the live generation (None: absent).
pub fn precondition_failed(bucket: &str, name: &str, current: Option<i64>) -> ApiError {
    ApiError::PreconditionFailed(format!(
        "At least one of the pre-conditions you specified did not hold for gs://{bucket}/{name} (its live generation is {}); read the object again and retry with its current generation and metageneration",
        current
            .map(|g| g.to_string())
            .unwrap_or_else(|| "none: it does not exist".into())
    ))
}

/// Timestamps as Cloud Storage writes them: RFC 3339 in UTC with milliseconds
/// (`2026-12-07T04:05:06.789Z`). gsutil and gcloud parse exactly this precision, and warn
/// "Truncating the datetime string" on every object for finer ones.
pub fn timestamp(t: time::OffsetDateTime) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&format)
        .unwrap_or_default()
}

/// An object resource in the JSON API's shape.
pub fn object_view(state: &AppState, o: &ObjectRecord) -> Value {
    let encoded = urlencode(&o.name);
    let mut view = json!({
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
        "timeCreated": timestamp(o.create_time),
        "updated": timestamp(o.update_time),
        "timeStorageClassUpdated": timestamp(o.create_time),
    });
    let a = &o.attributes;
    for (key, value) in [
        ("cacheControl", &a.cache_control),
        ("contentDisposition", &a.content_disposition),
        ("contentEncoding", &a.content_encoding),
        ("contentLanguage", &a.content_language),
    ] {
        if let Some(v) = value {
            view[key] = json!(v);
        }
    }
    if !a.metadata.is_empty() {
        view["metadata"] = json!(a.metadata);
    }
    if let Some(n) = o.component_count {
        // Google computes no MD5 for a composite object: only its CRC32C describes it.
        view["componentCount"] = json!(n);
        if let Some(v) = view.as_object_mut() {
            v.remove("md5Hash");
        }
    }
    view
}

/// Accepts a JSON int64 as Google writes it (a string) or as clients often send it (a number).
pub fn int64<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Int64 {
        Number(i64),
        Text(String),
    }
    match Option::<Int64>::deserialize(d)? {
        None => Ok(None),
        Some(Int64::Number(n)) => Ok(Some(n)),
        Some(Int64::Text(t)) => t
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("{t:?} is not a 64-bit integer"))),
    }
}

/// The `boundary` parameter of a multipart Content-Type. Quotes around it, double as RFC 2046
/// writes them or single as gcloud sends them (`boundary='===…=='`), are not part of it; the
/// `mime` crate refuses gcloud's form (`=` is not a token character), so it is read here.
pub fn multipart_boundary(content_type: &str) -> Option<String> {
    let (kind, params) = content_type.split_once(';')?;
    if !kind.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        if !k.trim().eq_ignore_ascii_case("boundary") {
            return None;
        }
        let v = v.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(v);
        (!unquoted.is_empty()).then(|| unquoted.to_owned())
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

#[cfg(test)]
mod tests {
    use super::{multipart_boundary, timestamp};

    #[test]
    fn boundaries_quoted_as_rfc_2046_or_as_gcloud_sends_them() {
        for (content_type, boundary) in [
            ("multipart/related; boundary=abc", Some("abc")),
            ("multipart/related; boundary=\"a=b c\"", Some("a=b c")),
            (
                "multipart/related; boundary='===============7330845974216740156=='",
                Some("===============7330845974216740156=="),
            ),
            ("Multipart/Related;charset=x;BOUNDARY=z", Some("z")),
            ("multipart/related", None),
            ("multipart/related; boundary=''", None),
            ("text/plain; boundary=abc", None),
        ] {
            assert_eq!(
                multipart_boundary(content_type).as_deref(),
                boundary,
                "{content_type}"
            );
        }
    }

    #[test]
    fn timestamps_have_milliseconds_like_google() {
        let t = time::macros::datetime!(2026-12-07 04:05:06.789123 UTC);
        assert_eq!(timestamp(t), "2026-12-07T04:05:06.789Z");
        let t = time::macros::datetime!(2026-12-07 04:05:06 UTC);
        assert_eq!(timestamp(t), "2026-12-07T04:05:06.000Z");
    }
}
