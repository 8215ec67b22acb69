//! Artifact Registry: Docker repositories per project (`repositories.rs`, Google's REST shape)
//! and the OCI distribution API under `/v2/` (`manifests.rs`, `blobs.rs`), with Docker token
//! auth (`auth.rs`). Image names are `HOST/PROJECT/REPOSITORY/IMAGE` (`names.rs`).
//!
//! OCI paths cannot be routed by pattern (image names contain slashes), so `/v2/{*path}` is
//! split here from the right: `…/manifests/REF`, `…/blobs/DIGEST`, `…/blobs/uploads/[ID]`,
//! `…/tags/list`, `…/referrers/DIGEST`.

pub mod auth;
pub mod blobs;
mod error;
pub mod manifests;
mod names;
pub mod repositories;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use cloister_store::ImageRef;

use auth::{Action, authenticate, authorize};
pub use error::RegistryError;
use names::ImageName;

use crate::state::AppState;

/// Abandoned uploads are swept after a day (Docker's registry uses a week; a day is plenty for
/// any resumable push and bounds what a vanished client leaves behind).
pub const UPLOAD_MAX_AGE_SECS: i64 = 24 * 3600;

/// Sweeps abandoned uploads now and then every hour, for as long as the server runs.
pub fn spawn_upload_sweeper(state: AppState) {
    tokio::spawn(async move {
        loop {
            match blobs::sweep_abandoned(&state, UPLOAD_MAX_AGE_SECS).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(count = n, "removed abandoned registry uploads"),
                Err(e) => tracing::error!(error = %e, "sweeping abandoned registry uploads"),
            }
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        }
    });
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v2/", get(ping))
        .route("/v2", get(ping))
        .route("/v2/token", get(auth::token))
        .route("/v2/{*path}", any(dispatch))
        .merge(repositories::router())
}

/// The API version check: 200 for an authenticated caller, else the challenge that starts
/// Docker token auth.
async fn ping(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let api_version = [("docker-distribution-api-version", "registry/2.0")];
    match authenticate(&state, &headers).await {
        Ok(Some(_)) => (StatusCode::OK, api_version, "{}").into_response(),
        Ok(None) => (
            api_version,
            RegistryError::Unauthorized {
                message: "authentication required".into(),
                challenge: auth::challenge(&state, None),
            },
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Op {
    Manifest(String),
    Blob(String),
    StartUpload,
    Upload(String),
    Tags,
    Referrers(String),
}

/// Splits `NAME/manifests/REF` and friends into the repository name and the operation.
fn split(path: &str) -> Result<(&str, Op), RegistryError> {
    let unknown = || RegistryError::NameInvalid(format!("/v2/{path} is not a registry API path"));
    if let Some(name) = path
        .strip_suffix("/blobs/uploads/")
        .or_else(|| path.strip_suffix("/blobs/uploads"))
    {
        return Ok((name, Op::StartUpload));
    }
    if let Some(name) = path.strip_suffix("/tags/list") {
        return Ok((name, Op::Tags));
    }
    let (head, last) = path.rsplit_once('/').ok_or_else(unknown)?;
    let (name, kind) = head.rsplit_once('/').ok_or_else(unknown)?;
    let op = match kind {
        "manifests" => Op::Manifest(last.to_owned()),
        "blobs" => Op::Blob(last.to_owned()),
        "referrers" => Op::Referrers(last.to_owned()),
        "uploads" => {
            let name = name.strip_suffix("/blobs").ok_or_else(unknown)?;
            return Ok((name, Op::Upload(last.to_owned())));
        }
        _ => return Err(unknown()),
    };
    Ok((name, op))
}

fn query_value(query: &Option<String>, key: &str) -> Option<String> {
    form_urlencoded::parse(query.as_deref().unwrap_or_default().as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// The image's repository, once `caller` may do `action` on it; a caller who may not gets the
/// same refusal whether or not it exists (a missing repository sits under its project, so only
/// those who could see it learn that it is missing).
async fn locate(
    state: &AppState,
    caller: &auth::RegistryCaller,
    name: &ImageName,
    action: Action,
) -> Result<ImageRef, RegistryError> {
    let found = state
        .store
        .get_repository(&name.project, &name.repository_id)
        .await?;
    let resource = found
        .as_ref()
        .map_or_else(|| name.repository_resource(), |r| r.name());
    authorize(state, caller, name, &resource, action).await?;
    let repository = found.ok_or_else(|| {
            RegistryError::NameUnknown(format!(
                "repository {} does not exist in project {}; create it with `cloister artifacts repositories create {} --project {} --repository-format docker`",
                name.repository_id,
                name.project.as_str(),
                name.repository_id,
                name.project.as_str()
            ))
        })?;
    Ok(ImageRef {
        repository: repository.name(),
        image: name.image.clone(),
    })
}

async fn dispatch(
    State(state): State<AppState>,
    method: Method,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, RegistryError> {
    let (name, op) = split(&path)?;
    let name = ImageName::parse(name)?;
    let caller = authenticate(&state, &headers).await?;
    let action = match (&method, &op) {
        (&Method::GET | &Method::HEAD, _) => Action::Pull,
        (&Method::DELETE, Op::Manifest(_)) => Action::Delete,
        _ => Action::Push,
    };
    // Before looking anything up: an anonymous caller learns nothing about what exists.
    let Some(caller) = caller else {
        return Err(auth::anonymous(&state, &name, action));
    };
    let image = locate(&state, &caller, &name, action).await?;
    let head = method == Method::HEAD;
    match (method, op) {
        (Method::GET | Method::HEAD, Op::Manifest(r)) => {
            manifests::get(&state, &image, &r, head).await
        }
        (Method::PUT, Op::Manifest(r)) => {
            manifests::put(&state, &name, &image, &r, &headers, body).await
        }
        (Method::DELETE, Op::Manifest(r)) => manifests::delete(&state, &image, &r).await,
        (Method::GET | Method::HEAD, Op::Blob(d)) => {
            blobs::get(&state, &image, &d, head, headers.get(header::RANGE)).await
        }
        (Method::POST, Op::StartUpload) => {
            let mount = match (query_value(&query, "mount"), query_value(&query, "from")) {
                (Some(digest), Some(from)) => {
                    let from_name = ImageName::parse(&from)?;
                    // Mounting reads the source: the caller must be able to pull it.
                    let from_image = locate(&state, &caller, &from_name, Action::Pull).await?;
                    Some((from_image, names::parse_digest(&digest)?))
                }
                _ => None,
            };
            let digest = query_value(&query, "digest");
            blobs::start(&state, &name, &image, mount, digest.as_deref(), body).await
        }
        (Method::PATCH, Op::Upload(id)) => {
            blobs::patch(&state, &name, &image, &id, &headers, body).await
        }
        (Method::PUT, Op::Upload(id)) => {
            let digest = query_value(&query, "digest");
            blobs::finish(
                &state,
                &name,
                &image,
                &id,
                digest.as_deref(),
                &headers,
                body,
            )
            .await
        }
        (Method::GET, Op::Upload(id)) => blobs::status(&state, &name, &image, &id).await,
        (Method::DELETE, Op::Upload(id)) => blobs::cancel(&state, &image, &id).await,
        (Method::GET, Op::Tags) => {
            let n = match query_value(&query, "n") {
                Some(n) => Some(n.parse().map_err(|_| {
                    RegistryError::PaginationNumberInvalid(format!(
                        "query parameter n={n:?} is not a count of tags (0 or more)"
                    ))
                })?),
                None => None,
            };
            manifests::tags(
                &state,
                &name,
                &image,
                n,
                query_value(&query, "last").as_deref(),
            )
            .await
        }
        (Method::GET, Op::Referrers(d)) => {
            manifests::referrers(
                &state,
                &image,
                &d,
                query_value(&query, "artifactType").as_deref(),
            )
            .await
        }
        (method, _) => Err(RegistryError::Unsupported(format!(
            "{method} is not supported on /v2/{path}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_from_the_right() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            split("p/r/i/manifests/v1").unwrap(),
            ("p/r/i", Op::Manifest("v1".into()))
        );
        assert_eq!(
            split(&format!("p/r/a/b/blobs/{d}")).unwrap(),
            ("p/r/a/b", Op::Blob(d.clone()))
        );
        assert_eq!(
            split("p/r/i/blobs/uploads/").unwrap(),
            ("p/r/i", Op::StartUpload)
        );
        assert_eq!(
            split("p/r/i/blobs/uploads/abc").unwrap(),
            ("p/r/i", Op::Upload("abc".into()))
        );
        assert_eq!(split("p/r/i/tags/list").unwrap(), ("p/r/i", Op::Tags));
        assert_eq!(
            split(&format!("p/r/i/referrers/{d}")).unwrap(),
            ("p/r/i", Op::Referrers(d))
        );
        assert!(split("p/r/i/other/x").is_err());
        assert!(split("nothing").is_err());
    }
}
