//! Manifests (OCI and Docker v2 manifests and indexes), tags and the referrers API.
//!
//! A manifest is parsed with `oci-spec` before it is stored; everything it refers to (config
//! and layers, or the manifests of an index) must already be in the image, so a pull can never
//! meet a dangling reference. Its exact bytes are kept: a digest-pinned pull returns what was
//! pushed.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_store::{ImageRef, ManifestRecord, ManifestRefs};
use futures::StreamExt;
use oci_spec::image::{ImageIndex, ImageManifest};
use serde_json::{Value, json};

use super::blobs::headers;
use super::error::RegistryError;
use super::names::{ImageName, Reference, parse_digest, sha256_digest};
use crate::state::AppState;

/// The distribution spec's suggested limit; larger bodies are refused before parsing.
pub const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

async fn read_limited(body: Body) -> Result<Vec<u8>, RegistryError> {
    let mut stream = body.into_data_stream();
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk
            .map_err(|e| RegistryError::ManifestInvalid(format!("reading the manifest: {e}")))?;
        if out.len() + chunk.len() > MAX_MANIFEST_BYTES {
            return Err(RegistryError::TooLarge(format!(
                "the manifest is larger than {MAX_MANIFEST_BYTES} bytes; nothing was stored"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// What a manifest refers to, its subject and artifact type, checked against its media type.
fn inspect(
    media_type: &str,
    bytes: &[u8],
) -> Result<(ManifestRefs, Option<String>, Option<String>), RegistryError> {
    let invalid =
        |why: String| RegistryError::ManifestInvalid(format!("{why}; nothing was stored"));
    let json: Value = serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("the manifest is not JSON: {e}")))?;
    if let Some(declared) = json["mediaType"].as_str()
        && declared != media_type
    {
        return Err(invalid(format!(
            "the manifest declares mediaType {declared} but was sent as {media_type}"
        )));
    }
    let digests = |ds: Vec<String>| {
        ds.iter()
            .map(|d| parse_digest(d))
            .collect::<Result<Vec<_>, _>>()
    };
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => {
            let m: ImageManifest = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("not a valid image manifest: {e}")))?;
            let mut blobs = vec![m.config().digest().to_string()];
            blobs.extend(m.layers().iter().map(|l| l.digest().to_string()));
            let artifact_type = m
                .artifact_type()
                .as_ref()
                .map(|t| t.to_string())
                .or_else(|| Some(m.config().media_type().to_string()));
            let subject = m.subject().as_ref().map(|s| s.digest().to_string());
            Ok((
                ManifestRefs {
                    blobs: digests(blobs)?,
                    manifests: vec![],
                },
                subject,
                artifact_type,
            ))
        }
        OCI_INDEX | DOCKER_LIST => {
            let i: ImageIndex = serde_json::from_slice(bytes)
                .map_err(|e| invalid(format!("not a valid image index: {e}")))?;
            let manifests = i
                .manifests()
                .iter()
                .map(|m| m.digest().to_string())
                .collect();
            let subject = i.subject().as_ref().map(|s| s.digest().to_string());
            let artifact_type = i.artifact_type().as_ref().map(|t| t.to_string());
            Ok((
                ManifestRefs {
                    blobs: vec![],
                    manifests: digests(manifests)?,
                },
                subject,
                artifact_type,
            ))
        }
        other => Err(invalid(format!(
            "unsupported manifest media type {other:?}: use {OCI_MANIFEST}, {OCI_INDEX}, {DOCKER_MANIFEST} or {DOCKER_LIST}"
        ))),
    }
}

pub async fn put(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    reference: &str,
    request_headers: &HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let reference = Reference::parse(reference)?;
    let bytes = read_limited(body).await?;
    let media_type = request_headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_owned())
        .filter(|v| !v.is_empty())
        .or_else(|| {
            serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v["mediaType"].as_str().map(str::to_owned))
        })
        .ok_or_else(|| {
            RegistryError::ManifestInvalid(
                "the manifest has no Content-Type and no mediaType".into(),
            )
        })?;
    let (refs, subject, artifact_type) = inspect(&media_type, &bytes)?;
    let digest = sha256_digest(&bytes);
    let tag = match &reference {
        Reference::Digest(d) if *d != digest => {
            return Err(RegistryError::DigestInvalid(format!(
                "the manifest's digest is {digest}, not {d}; nothing was stored"
            )));
        }
        Reference::Digest(_) => None,
        Reference::Tag(t) => Some(t.clone()),
    };
    let record = ManifestRecord {
        digest: digest.clone(),
        media_type,
        content: bytes,
        subject: subject.clone(),
        artifact_type,
        create_time: time::OffsetDateTime::now_utc(),
    };
    let stored = state
        .store
        .put_manifest(image, &record, &refs, tag.as_deref())
        .await?;
    if let Err(missing) = stored {
        return Err(RegistryError::ManifestBlobUnknown(format!(
            "the manifest refers to {missing}, which is not in {}; push it first (nothing was stored)",
            name.full()
        )));
    }
    let mut h = headers(&[
        (
            "location",
            format!("/v2/{}/manifests/{digest}", name.full()),
        ),
        ("docker-content-digest", digest),
        ("content-length", "0".into()),
    ]);
    if let Some(subject) = subject {
        h.extend(headers(&[("oci-subject", subject)]));
    }
    Ok((StatusCode::CREATED, h).into_response())
}

/// The manifest a tag or digest names.
pub async fn resolve(
    state: &AppState,
    image: &ImageRef,
    reference: &str,
) -> Result<ManifestRecord, RegistryError> {
    let digest = match Reference::parse(reference)? {
        Reference::Digest(d) => d,
        Reference::Tag(t) => state.store.resolve_tag(image, &t).await?.ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("no tag {t:?} in this repository"))
        })?,
    };
    state
        .store
        .get_manifest(image, &digest)
        .await?
        .ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("no manifest {digest} in this repository"))
        })
}

pub async fn get(
    state: &AppState,
    image: &ImageRef,
    reference: &str,
    head: bool,
) -> Result<Response, RegistryError> {
    let m = resolve(state, image, reference).await?;
    let h = headers(&[
        ("content-type", m.media_type.clone()),
        ("docker-content-digest", m.digest.clone()),
        ("content-length", m.content.len().to_string()),
    ]);
    let body = if head {
        Body::empty()
    } else {
        Body::from(m.content)
    };
    Ok((StatusCode::OK, h, body).into_response())
}

pub async fn delete(
    state: &AppState,
    image: &ImageRef,
    reference: &str,
) -> Result<Response, RegistryError> {
    let deleted = match Reference::parse(reference)? {
        Reference::Digest(d) => state.store.delete_manifest(image, &d).await?,
        Reference::Tag(t) => state.store.delete_tag(image, &t).await?,
    };
    if !deleted {
        return Err(RegistryError::ManifestUnknown(format!(
            "{reference} is not in this repository"
        )));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

const MAX_TAGS_PAGE: usize = 1000;

pub async fn tags(
    state: &AppState,
    name: &ImageName,
    image: &ImageRef,
    n: Option<usize>,
    last: Option<&str>,
) -> Result<Response, RegistryError> {
    let n = n.unwrap_or(MAX_TAGS_PAGE).min(MAX_TAGS_PAGE);
    let mut tags = if n == 0 {
        vec![]
    } else {
        state.store.list_tags(image, last, n + 1).await?
    };
    let mut h = HeaderMap::new();
    if tags.len() > n {
        tags.truncate(n);
        if let Some(after) = tags.last() {
            h = headers(&[(
                "link",
                format!(
                    "</v2/{}/tags/list?last={after}&n={n}>; rel=\"next\"",
                    name.full()
                ),
            )]);
        }
    }
    Ok((h, axum::Json(json!({"name": name.full(), "tags": tags}))).into_response())
}

pub async fn referrers(
    state: &AppState,
    image: &ImageRef,
    digest: &str,
    artifact_type: Option<&str>,
) -> Result<Response, RegistryError> {
    let digest = parse_digest(digest)?;
    let found = state.store.list_referrers(image, &digest).await?;
    let manifests: Vec<Value> = found
        .iter()
        .filter(|m| artifact_type.is_none_or(|t| m.artifact_type.as_deref() == Some(t)))
        .map(|m| {
            let annotations = serde_json::from_slice::<Value>(&m.content)
                .ok()
                .map(|v| v["annotations"].clone())
                .filter(|a| a.is_object());
            let mut d = json!({
                "mediaType": m.media_type,
                "digest": m.digest,
                "size": m.content.len(),
                "artifactType": m.artifact_type,
            });
            if let Some(a) = annotations {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let mut h = headers(&[("content-type", OCI_INDEX.into())]);
    if artifact_type.is_some() {
        h.extend(headers(&[("oci-filters-applied", "artifactType".into())]));
    }
    let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests});
    Ok((StatusCode::OK, h, index.to_string()).into_response())
}
