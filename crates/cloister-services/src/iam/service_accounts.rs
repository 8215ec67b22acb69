//! Service accounts (IAM v1 shapes): create, list, get, delete, their IAM policies, and the
//! IAM Credentials methods addressed to them (`:generateAccessToken`).

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{
    Email, Principal, ProjectId, service_account_email, service_account_project,
};
use cloister_store::ServiceAccountRecord;
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use super::policy_api;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iamcredentials;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/projects/{project}/serviceAccounts",
            get(list).post(create),
        )
        .route(
            "/v1/projects/{project}/serviceAccounts/{name}",
            get(describe).delete(delete).post(custom_method),
        )
}

pub fn view(a: &ServiceAccountRecord) -> Value {
    json!({
        "name": a.resource_name(),
        "projectId": a.project_id.as_str(),
        "uniqueId": a.unique_id,
        "email": a.email.as_str(),
        "displayName": a.display_name,
        "description": a.description,
        "oauth2ClientId": a.unique_id,
        "disabled": a.disabled,
    })
}

fn parse_project(project: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(project).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

/// The account an email names, and its IAM resource name. The project comes from the email,
/// so `projects/-/serviceAccounts/EMAIL` works as in Google's API.
pub fn resource_of(email: &str) -> Result<(Email, String), ApiError> {
    let email = Email::parse(email).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let project = service_account_project(&email).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "{email} is not a service account email (NAME@PROJECT.iam.gserviceaccount.com)"
        ))
    })?;
    let resource = format!("projects/{project}/serviceAccounts/{email}");
    Ok((email, resource))
}

/// Loads an account the caller was already allowed to touch; 404 when it does not exist.
pub async fn load(state: &AppState, email: &Email) -> Result<ServiceAccountRecord, ApiError> {
    state
        .store
        .get_service_account(email)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Service account {email} does not exist")))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    account_id: String,
    #[serde(default)]
    service_account: Option<Details>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Details {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(project): Path<String>,
    ApiJson(req): ApiJson<CreateRequest>,
) -> Result<Json<Value>, ApiError> {
    let project = parse_project(&project)?;
    let email = service_account_email(&req.account_id, &project)
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    state
        .authorizer
        .check(
            &caller,
            "iam.serviceAccounts.create",
            &project.resource_name(),
        )
        .await?;
    let details = req.service_account.unwrap_or_default();
    if details.display_name.len() > 100 || details.description.len() > 256 {
        return Err(ApiError::InvalidArgument(
            "displayName is at most 100 characters and description at most 256".into(),
        ));
    }
    let account = ServiceAccountRecord {
        email,
        project_id: project,
        unique_id: format!("1{:020}", rand::rng().random_range(0..10u128.pow(20))),
        display_name: details.display_name,
        description: details.description,
        disabled: false,
        create_time: time::OffsetDateTime::now_utc(),
    };
    state.store.create_service_account(&account).await?;
    Ok(Json(view(&account)))
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(project): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let project = parse_project(&project)?;
    state
        .authorizer
        .check(
            &caller,
            "iam.serviceAccounts.list",
            &project.resource_name(),
        )
        .await?;
    let accounts = state.store.list_service_accounts(&project).await?;
    Ok(Json(
        json!({ "accounts": accounts.iter().map(view).collect::<Vec<_>>() }),
    ))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (email, resource) = resource_of(&name)?;
    state
        .authorizer
        .check(&caller, "iam.serviceAccounts.get", &resource)
        .await?;
    Ok(Json(view(&load(&state, &email).await?)))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((_, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let (email, resource) = resource_of(&name)?;
    state
        .authorizer
        .check(&caller, "iam.serviceAccounts.delete", &resource)
        .await?;
    if !state.store.delete_service_account(&email).await? {
        return Err(ApiError::NotFound(format!(
            "Service account {email} does not exist"
        )));
    }
    Ok(Json(json!({})))
}

async fn custom_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((_, name)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((email, method)) = name.split_once(':') else {
        return Err(ApiError::NotFound(format!(
            "POST …/serviceAccounts/{name} is not a method"
        )));
    };
    let (email, resource) = resource_of(email)?;
    match method {
        "getIamPolicy" => {
            policy_api::get(
                &state,
                &caller,
                &resource,
                "iam.serviceAccounts.getIamPolicy",
            )
            .await
        }
        "setIamPolicy" => {
            let rules = policy_api::Rules {
                permission: "iam.serviceAccounts.setIamPolicy",
                keep_an_owner: false,
            };
            policy_api::set(&state, &caller, &resource, rules, body).await
        }
        "testIamPermissions" => policy_api::test(&state, &caller, &resource, body).await,
        "generateAccessToken" => {
            iamcredentials::generate_access_token(&state, &caller, &email, &resource, body).await
        }
        "generateIdToken" => {
            iamcredentials::generate_id_token(&state, &caller, &email, &resource, body).await
        }
        other => Err(ApiError::NotFound(format!(
            "Unknown method :{other} on service accounts; use :getIamPolicy, :setIamPolicy, \
             :testIamPermissions, :generateAccessToken or :generateIdToken"
        ))),
    }
}

/// Whether `principal` is a service account that still exists and is enabled.
pub async fn is_active(state: &AppState, principal: &Principal) -> Result<bool, ApiError> {
    let Principal::ServiceAccount(email) = principal else {
        return Ok(true);
    };
    Ok(state
        .store
        .get_service_account(email)
        .await?
        .is_some_and(|a| !a.disabled))
}
