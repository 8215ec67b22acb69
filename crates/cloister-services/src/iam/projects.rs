//! Projects (Cloud Resource Manager v1 shapes): create, get, list, and the IAM policy methods
//! `:getIamPolicy`, `:setIamPolicy`, `:testIamPermissions`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{Decision, Member, Policy, Principal, ProjectId, ProjectNumber, role};
use cloister_store::{ProjectRecord, StoreError};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", get(list).post(create))
        // `{name}` is `ID` for GET and `ID:method` for the IAM methods (Google's custom verbs).
        .route("/v1/projects/{name}", get(describe).post(custom_method))
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
            create_time: p.create_time,
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

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(req): ApiJson<CreateProject>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&req.project_id)?;
    let resource = id.resource_name();
    // Like a Google organization where everyone holds Project Creator: any user may create a
    // project and becomes its owner. Workloads (service accounts, federated identities) may not.
    if !matches!(caller, Principal::User(_)) {
        state
            .authorizer
            .record(
                caller.to_string(),
                "resourcemanager.projects.create",
                &resource,
                Decision::Deny,
                "only users create projects".into(),
            )
            .await;
        return Err(ApiError::PermissionDenied {
            message: format!("Only users may create projects; {caller} is not a user."),
            permission: "resourcemanager.projects.create".into(),
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
            create_time: time_util::now_rfc3339(),
            creator: caller.to_string(),
        };
        let (stored, policy) = (record.clone(), policy.clone());
        match state.db(move |s| s.create_project(&stored, &policy)).await {
            Ok(()) => break record,
            // A project number collision (one in ~10^12): draw another.
            Err(ApiError::AlreadyExists(what)) if what.starts_with("project number") => continue,
            Err(ApiError::AlreadyExists(_)) => {
                return Err(ApiError::AlreadyExists(format!(
                    "Project {id} already exists. Project ids are unique across this Cloister; choose another id"
                )));
            }
            Err(e) => return Err(e),
        }
    };
    state
        .authorizer
        .record(
            caller.to_string(),
            "resourcemanager.projects.create",
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
    let lookup = id.clone();
    state
        .db(move |s| s.get_project(&lookup))
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

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Value>, ApiError> {
    let all = state.db(|s| s.list_projects()).await?;
    let mut visible = Vec::new();
    for p in all {
        let grants = state
            .authorizer
            .grants(
                &caller,
                &["resourcemanager.projects.get"],
                &p.id.resource_name(),
            )
            .await?;
        if grants.first().is_some_and(Option::is_some) {
            visible.push(ProjectView::from(p));
        }
    }
    Ok(Json(json!({ "projects": visible })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetIamPolicy {
    policy: Policy,
    #[serde(default, rename = "updateMask")]
    _update_mask: Option<String>,
}

#[derive(Deserialize)]
struct TestIamPermissions {
    #[serde(default)]
    permissions: Vec<String>,
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
            state
                .authorizer
                .check(&caller, "resourcemanager.projects.getIamPolicy", &resource)
                .await?;
            let (policy, _) = state.db(move |s| s.get_policy(&resource)).await?;
            Ok(Json(to_json(&policy)?))
        }
        "setIamPolicy" => {
            let req: SetIamPolicy = serde_json::from_value(body).map_err(|e| {
                ApiError::InvalidArgument(format!("Invalid setIamPolicy request: {e}"))
            })?;
            state
                .authorizer
                .check(&caller, "resourcemanager.projects.setIamPolicy", &resource)
                .await?;
            let policy = validate_project_policy(&state, req.policy).await?;
            let stored = state.db(move |s| s.set_policy(&resource, &policy)).await.map_err(|e| match e {
                ApiError::Aborted(_) => ApiError::Aborted(format!(
                    "The policy of project {id} changed since it was read (stale etag). Read it again and retry."
                )),
                other => other,
            })?;
            Ok(Json(to_json(&stored)?))
        }
        "testIamPermissions" => {
            let req: TestIamPermissions = serde_json::from_value(body).map_err(|e| {
                ApiError::InvalidArgument(format!("Invalid testIamPermissions request: {e}"))
            })?;
            let permissions = req
                .permissions
                .iter()
                .map(|p| role::lookup_permission(p))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
            let grants = state
                .authorizer
                .grants(&caller, &permissions, &resource)
                .await?;
            let held: Vec<&str> = permissions
                .iter()
                .zip(grants)
                .filter(|(_, g)| g.is_some())
                .map(|(p, _)| *p)
                .collect();
            Ok(Json(if held.is_empty() {
                json!({})
            } else {
                json!({ "permissions": held })
            }))
        }
        other => Err(ApiError::NotFound(format!(
            "Unknown method :{other} on projects; use :getIamPolicy, :setIamPolicy or :testIamPermissions"
        ))),
    }
}

fn to_json(policy: &Policy) -> Result<Value, ApiError> {
    serde_json::to_value(policy).map_err(|e| ApiError::Internal(e.to_string()))
}

/// Refuses unknown roles, users that do not exist, and a policy that leaves the project with
/// no owner (nobody could ever change it again).
async fn validate_project_policy(state: &AppState, policy: Policy) -> Result<Policy, ApiError> {
    policy
        .validate()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let users: Vec<_> = policy
        .bindings
        .iter()
        .flat_map(|b| &b.members)
        .filter_map(|m| match m {
            Member::User(e) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let missing = state
        .db(move |s| {
            let mut missing = Vec::new();
            for u in users {
                if s.get_user(&u)?.is_none() {
                    missing.push(u.to_string());
                }
            }
            Ok::<_, StoreError>(missing)
        })
        .await?;
    if let Some(user) = missing.first() {
        return Err(ApiError::InvalidArgument(format!(
            "User {user} does not exist. A platform admin creates users with `cloister iam users create {user}`"
        )));
    }
    if !policy
        .bindings
        .iter()
        .any(|b| b.role == "roles/owner" && !b.members.is_empty())
    {
        return Err(ApiError::InvalidArgument(
            "The policy would leave the project without an owner; keep at least one member in roles/owner".into(),
        ));
    }
    Ok(policy)
}

impl From<cloister_domain::PolicyError> for ApiError {
    fn from(e: cloister_domain::PolicyError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}
