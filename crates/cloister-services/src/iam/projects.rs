//! Projects (Cloud Resource Manager v1 shapes): create, get, list, delete, and the IAM policy
//! methods `:getIamPolicy`, `:setIamPolicy`, `:testIamPermissions`.
//!
//! Delete is not Google's soft delete (DELETE_REQUESTED, then everything in the project shut
//! down and purged after 30 days, undeletable meanwhile): that would need every service to
//! stop serving a project's resources while it waits, and a purge of each kind at the end.
//! Cloister refuses instead while the project holds anything (buckets, service accounts,
//! pools, key rings, repositories, instances), naming what, as Google refuses a project with
//! a lien; an empty project is gone at once. As in Google, its id and number are never given
//! to another project, so no one inherits the grants and audit history that name them.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{Decision, Member, Policy, Principal, ProjectId, ProjectNumber};
use cloister_store::{DELETED_PROJECT, ProjectRecord, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::policy_api;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", get(list).post(create))
        // `{name}` is `ID` for GET and `ID:method` for the IAM methods (Google's custom verbs).
        .route(
            "/v1/projects/{name}",
            get(describe).post(custom_method).delete(delete),
        )
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectView {
    project_number: String,
    project_id: String,
    lifecycle_state: &'static str,
    name: String,
    create_time: String,
}

impl From<ProjectRecord> for ProjectView {
    fn from(p: ProjectRecord) -> Self {
        Self {
            project_number: p.number.to_string(),
            project_id: p.id.to_string(),
            lifecycle_state: "ACTIVE",
            name: p.display_name,
            create_time: time_util::rfc3339(p.create_time),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateProject {
    project_id: String,
    #[serde(default)]
    name: Option<String>,
}

fn parse_id(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(id).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

const CREATE: &str = "resourcemanager.projects.create";

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateProject>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&req.project_id)?;
    let resource = id.resource_name();
    // Like a Google organization where everyone holds Project Creator: any user may create a
    // project and becomes its owner. Workloads (service accounts, federated identities) may not.
    let refused = |reason: String| {
        let (caller, resource) = (caller.to_string(), resource.clone());
        let authorizer = &state.authorizer;
        async move {
            authorizer
                .record(caller, CREATE, &resource, Decision::Deny, reason)
                .await
        }
    };
    if !matches!(caller, Principal::User(_)) {
        refused("only users create projects".into()).await;
        return Err(ApiError::PermissionDenied {
            message: format!("Only users may create projects; {caller} is not a user."),
            permission: CREATE.into(),
            resource,
        });
    }
    let mut policy = Policy::default();
    policy.add_binding(
        "roles/owner",
        Member::parse(&caller.to_string()).map_err(|e| ApiError::Internal(e.to_string()))?,
    )?;
    let display_name = req.name.unwrap_or_else(|| id.to_string());
    if display_name.len() > 100 {
        return Err(ApiError::InvalidArgument(
            "The project name must be at most 100 characters".into(),
        ));
    }
    let record = loop {
        let record = ProjectRecord {
            id: id.clone(),
            number: ProjectNumber(
                rand::rng().random_range(ProjectNumber::MIN..=ProjectNumber::MAX),
            ),
            display_name: display_name.clone(),
            create_time: OffsetDateTime::now_utc(),
            creator: caller.to_string(),
        };
        match state
            .store
            .create_project(&record, &policy, state.user_project_quota)
            .await
        {
            Ok(()) => break record,
            // Resource Manager answers a spent project quota with FAILED_PRECONDITION.
            Err(StoreError::QuotaExceeded { limit, .. }) => {
                refused(format!("the user's project quota ({limit}) is spent")).await;
                return Err(ApiError::FailedPrecondition(format!(
                    "The project cannot be created because {caller} has already created \
                     {limit} projects, its quota. Delete one of them (an empty project can \
                     be deleted: `cloister projects delete PROJECT_ID`), or ask the operator \
                     for a larger quota (--user-project-quota)."
                )));
            }
            // A project number collision (one in ~10^12): draw another.
            Err(StoreError::AlreadyExists(what)) if what.starts_with("project number") => continue,
            Err(StoreError::AlreadyExists(what)) if what.starts_with(DELETED_PROJECT) => {
                return Err(ApiError::AlreadyExists(format!(
                    "Project id {id} belonged to a deleted project, and project ids are never reused (grants elsewhere may still name it); choose another id"
                )));
            }
            Err(StoreError::AlreadyExists(_)) => {
                return Err(ApiError::AlreadyExists(format!(
                    "Project {id} already exists. Project ids are unique across this Cloister; choose another id"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    };
    state
        .authorizer
        .record(
            caller.to_string(),
            CREATE,
            &resource,
            Decision::Allow,
            "any user may create a project".into(),
        )
        .await;
    let number = record.number;
    let mut response = serde_json::to_value(ProjectView::from(record))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    response["@type"] = json!("type.googleapis.com/google.cloudresourcemanager.v1.Project");
    // v1 create returns a long-running operation; creation here is synchronous, so it is done.
    Ok(Json(
        json!({"name": format!("operations/cp.{number}"), "done": true, "response": response}),
    ))
}

async fn load(state: &AppState, id: &ProjectId) -> Result<ProjectRecord, ApiError> {
    state
        .store
        .get_project(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Project {id} was not found")))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<ProjectView>, ApiError> {
    let id = parse_id(&name)?;
    // Check first: a caller without access learns nothing about whether the project exists.
    state
        .authorizer
        .check(&caller, "resourcemanager.projects.get", &id.resource_name())
        .await?;
    Ok(Json(load(&state, &id).await?.into()))
}

/// `DELETE /v1/projects/P`: Google's Empty on success; FAILED_PRECONDITION naming what the
/// project still holds.
async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&name)?;
    // Check first: a caller without access learns nothing about whether the project exists.
    state
        .authorizer
        .check(
            &caller,
            "resourcemanager.projects.delete",
            &id.resource_name(),
        )
        .await?;
    match state.store.delete_project(&id, &caller.to_string()).await {
        Ok(()) => Ok(Json(json!({}))),
        Err(StoreError::NotEmpty(what)) => Err(ApiError::FailedPrecondition(format!(
            "{what}. Cloister deletes only an empty project (it has no 30-day pending deletion): delete those first; key rings can never be deleted, so a project that holds one stays"
        ))),
        Err(StoreError::NotFound(_)) => {
            Err(ApiError::NotFound(format!("Project {id} was not found")))
        }
        Err(e) => Err(e.into()),
    }
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Value>, ApiError> {
    let visible: Vec<ProjectView> = visible_projects(&state, &caller)
        .await?
        .into_iter()
        .map(ProjectView::from)
        .collect();
    Ok(Json(json!({ "projects": visible })))
}

/// The projects `caller` may see (`resourcemanager.projects.get`): the API's list and the
/// console's.
pub(crate) async fn visible_projects(
    state: &AppState,
    caller: &Principal,
) -> Result<Vec<ProjectRecord>, ApiError> {
    let mut visible = Vec::new();
    for p in state.store.list_projects().await? {
        let grants = state
            .authorizer
            .grants(
                caller,
                &["resourcemanager.projects.get"],
                &p.id.resource_name(),
            )
            .await?;
        if grants.first().is_some_and(Option::is_some) {
            visible.push(p);
        }
    }
    Ok(visible)
}

async fn custom_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((id, method)) = name.split_once(':') else {
        return Err(ApiError::NotFound(format!(
            "POST /v1/projects/{name} is not a method; use :getIamPolicy, :setIamPolicy or :testIamPermissions"
        )));
    };
    let id = parse_id(id)?;
    let resource = id.resource_name();
    match method {
        "getIamPolicy" => {
            policy_api::get(
                &state,
                &caller,
                &resource,
                "resourcemanager.projects.getIamPolicy",
            )
            .await
        }
        "setIamPolicy" => {
            let rules = policy_api::Rules {
                permission: "resourcemanager.projects.setIamPolicy",
                keep_an_owner: true,
            };
            policy_api::set(&state, &caller, &resource, rules, body).await
        }
        "testIamPermissions" => policy_api::test(&state, &caller, &resource, body).await,
        other => Err(ApiError::NotFound(format!(
            "Unknown method :{other} on projects; use :getIamPolicy, :setIamPolicy or :testIamPermissions"
        ))),
    }
}
