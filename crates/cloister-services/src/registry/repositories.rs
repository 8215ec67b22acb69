//! Artifact Registry's REST API for repositories (`/v1/projects/P/locations/L/repositories`):
//! create, get, list, delete, IAM, and the images inside (`…/dockerImages`). Creating and
//! deleting answer with a finished long-running operation, as Google's API does.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{Permission, Principal, ProjectId};
use cloister_store::{ImageVersion, RepositoryRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::policy_api;
use crate::json::ApiJson;
use crate::query::ApiQuery;
use crate::state::AppState;
use crate::time_util;

const REPOSITORIES: &str = "/v1/projects/{project}/locations/{location}/repositories";
const REPOSITORY: &str = "/v1/projects/{project}/locations/{location}/repositories/{repository}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(REPOSITORIES, get(list).post(create))
        .route(REPOSITORY, get(describe).delete(delete).post(method))
        .route(&format!("{REPOSITORY}/dockerImages"), get(images))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateQuery {
    repository_id: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct CreateRepository {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    description: Option<String>,
}

/// Repository ids: lowercase letters, digits and hyphens, starting with a letter (Google's
/// rule), so they are also valid OCI name components.
fn check_repository_id(id: &str) -> Result<(), ApiError> {
    let ok = cloister_domain::ids::is_rfc1035_label(id);
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Invalid repository id {id:?}: 1 to 63 lowercase letters, digits and hyphens, starting with a letter and not ending with a hyphen"
        )))
    }
}

fn project(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(id).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

pub fn view(state: &AppState, r: &RepositoryRecord) -> Value {
    json!({
        "name": r.name(),
        "format": r.format,
        "description": r.description,
        "mode": "STANDARD_REPOSITORY",
        "createTime": time_util::rfc3339(r.create_time),
        "updateTime": time_util::rfc3339(r.create_time),
        // Where `docker`/`podman` address it: HOST/PROJECT/REPOSITORY.
        "registryUri": format!("{}/{}/{}", host(state), r.project_id.as_str(), r.repository_id),
    })
}

/// The registry host clients put in image names (the public URL without its scheme).
pub fn host(state: &AppState) -> &str {
    state
        .public_url
        .split_once("://")
        .map_or(state.public_url.as_str(), |(_, h)| h)
}

fn done(name: &str, response: Value) -> Json<Value> {
    Json(json!({
        "name": format!("{name}/operations/{}", uuid::Uuid::new_v4()),
        "done": true,
        "response": response,
    }))
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project_id, location)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<CreateQuery>,
    ApiJson(req): ApiJson<CreateRepository>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&project_id)?;
    // A location is a name like `us` or `europe-west4`, which links and paths embed as is.
    if !cloister_domain::ids::is_rfc1035_label(&location) {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid location {location:?}: a region or multi-region name such as us or europe-west4"
        )));
    }
    let id = q.repository_id.ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter repositoryId is required".into())
    })?;
    check_repository_id(&id)?;
    let format = req
        .format
        .unwrap_or_else(|| "DOCKER".into())
        .to_ascii_uppercase();
    if format != "DOCKER" {
        return Err(ApiError::InvalidArgument(format!(
            "repository format {format} is not supported: Cloister serves DOCKER (OCI) repositories"
        )));
    }
    state
        .authorizer
        .check(
            &caller,
            "artifactregistry.repositories.create",
            &project.resource_name(),
        )
        .await?;
    if state.store.get_project(&project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Project {project} was not found"
        )));
    }
    let record = RepositoryRecord {
        project_id: project,
        location,
        repository_id: id,
        format,
        description: req.description.unwrap_or_default(),
        create_time: time::OffsetDateTime::now_utc(),
    };
    state.store.create_repository(&record).await?;
    Ok(done(&record.name(), view(&state, &record)))
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project_id, location)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&project_id)?;
    state
        .authorizer
        .check(
            &caller,
            "artifactregistry.repositories.list",
            &project.resource_name(),
        )
        .await?;
    let repositories: Vec<Value> = state
        .store
        .list_repositories(&project)
        .await?
        .iter()
        .filter(|r| location == "-" || r.location == location)
        .map(|r| view(&state, r))
        .collect();
    Ok(Json(json!({ "repositories": repositories })))
}

/// The repository after checking `permission` on it; 404 when it does not exist.
async fn authorized(
    state: &AppState,
    caller: &Principal,
    (project_id, location, id): &(String, String, String),
    permission: Permission,
) -> Result<RepositoryRecord, ApiError> {
    let project = project(project_id)?;
    let name = format!("projects/{project_id}/locations/{location}/repositories/{id}");
    state.authorizer.check(caller, permission, &name).await?;
    state
        .store
        .get_repository(&project, id)
        .await?
        .filter(|r| &r.location == location)
        .ok_or_else(|| ApiError::NotFound(format!("Repository {name} not found")))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let r = authorized(&state, &caller, &path, "artifactregistry.repositories.get").await?;
    Ok(Json(view(&state, &r)))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let r = authorized(
        &state,
        &caller,
        &path,
        "artifactregistry.repositories.delete",
    )
    .await?;
    let name = r.name();
    let orphans = state.store.delete_repository(&name).await?;
    for key in orphans {
        if let Ok(key) = cloister_store::BlobKey::new(&key)
            && let Err(e) = state.blobs.delete(&key).await
        {
            tracing::error!(error = %e, "could not delete an unreferenced registry blob");
        }
    }
    Ok(done(&r.name(), json!({})))
}

/// `…/repositories/R:getIamPolicy` and friends.
const POLICY: policy_api::PolicyPermissions = policy_api::PolicyPermissions {
    get_iam_policy: "artifactregistry.repositories.getIamPolicy",
    set_iam_policy: "artifactregistry.repositories.setIamPolicy",
    get: "artifactregistry.repositories.get",
};

async fn method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project_id, location, repository)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((id, method)) = repository.split_once(':') else {
        return Err(ApiError::NotFound(format!(
            "No API at …/repositories/{repository}"
        )));
    };
    let path = (project_id, location, id.to_owned());
    let name = format!("projects/{}/locations/{}/repositories/{id}", path.0, path.1);
    let project = project(&path.0)?;
    let missing = state
        .store
        .get_repository(&project, id)
        .await?
        .is_none()
        .then(|| ApiError::NotFound(format!("Repository {name} not found")));
    policy_api::method(&state, &caller, &name, method, &POLICY, body, missing).await
}

/// A repository's manifests with their tags, for whoever may list its images (the API's
/// `dockerImages` and the console's repository page).
pub async fn image_versions(
    state: &AppState,
    caller: &Principal,
    path: &(String, String, String),
) -> Result<(RepositoryRecord, Vec<ImageVersion>), ApiError> {
    let r = authorized(state, caller, path, "artifactregistry.dockerimages.list").await?;
    let versions = state.store.list_image_versions(&r.name()).await?;
    Ok((r, versions))
}

/// `…/dockerImages`: each manifest in the repository with its tags, in Google's shape.
async fn images(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (r, versions) = image_versions(&state, &caller, &path).await?;
    let name = r.name();
    let images: Vec<Value> = versions
        .iter()
        .map(|v| {
            json!({
                "name": format!("{name}/dockerImages/{}@{}", v.image.replace('/', "%2F"), v.digest),
                "uri": format!("{}/{}/{}/{}@{}", host(&state), r.project_id.as_str(), r.repository_id, v.image, v.digest),
                "tags": v.tags,
                "mediaType": v.media_type,
                "imageSizeBytes": v.size.to_string(),
                "uploadTime": time_util::rfc3339(v.create_time),
            })
        })
        .collect();
    Ok(Json(json!({ "dockerImages": images })))
}
