//! Buckets: create, get, list, delete (only when empty), and their IAM policies.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::ProjectId;
use cloister_store::{BucketRecord, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{authorized_bucket, check_bucket_name, existing_bucket};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::policy_api;
use crate::json::ApiJson;
use crate::query::ApiQuery;
use crate::state::AppState;
use crate::time_util;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/storage/v1/b", get(list).post(create))
        .route("/storage/v1/b/{bucket}", get(describe).delete(delete))
        .route(
            "/storage/v1/b/{bucket}/iam",
            get(get_policy).put(set_policy),
        )
        .route(
            "/storage/v1/b/{bucket}/iam/testPermissions",
            get(test_permissions),
        )
}

fn view(state: &AppState, b: &BucketRecord, number: Option<u64>) -> Value {
    json!({
        "kind": "storage#bucket",
        "id": b.name,
        "name": b.name,
        "selfLink": format!("{}/storage/v1/b/{}", state.public_url, b.name),
        "projectNumber": number.map(|n| n.to_string()),
        "location": b.location,
        "storageClass": b.storage_class,
        "metageneration": "1",
        "timeCreated": time_util::rfc3339(b.create_time),
        "updated": time_util::rfc3339(b.create_time),
        "etag": "CAE=",
    })
}

#[derive(Deserialize)]
struct ProjectQuery {
    project: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateBucket {
    name: String,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    storage_class: Option<String>,
}

fn project_param(q: &ProjectQuery) -> Result<ProjectId, ApiError> {
    let p = q.project.as_deref().ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter project is required".into())
    })?;
    ProjectId::parse(p).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

async fn project_number(state: &AppState, project: &ProjectId) -> Result<Option<u64>, ApiError> {
    Ok(state.store.get_project(project).await?.map(|p| p.number.0))
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ProjectQuery>,
    ApiJson(req): ApiJson<CreateBucket>,
) -> Result<Json<Value>, ApiError> {
    let project = project_param(&q)?;
    check_bucket_name(&req.name)?;
    state
        .authorizer
        .check(&caller, "storage.buckets.create", &project.resource_name())
        .await?;
    let number = project_number(&state, &project)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Project {project} was not found")))?;
    let bucket = BucketRecord {
        name: req.name,
        project_id: project,
        location: req
            .location
            .unwrap_or_else(|| "US".into())
            .to_ascii_uppercase(),
        storage_class: req.storage_class.unwrap_or_else(|| "STANDARD".into()),
        create_time: time::OffsetDateTime::now_utc(),
    };
    state
        .store
        .create_bucket(&bucket)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists(_) => ApiError::AlreadyExists(format!(
                "The bucket name {} is not available: bucket names are global. Try another name.",
                bucket.name
            )),
            other => ApiError::from(other),
        })?;
    Ok(Json(view(&state, &bucket, Some(number))))
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(q): ApiQuery<ProjectQuery>,
) -> Result<Json<Value>, ApiError> {
    let project = project_param(&q)?;
    state
        .authorizer
        .check(&caller, "storage.buckets.list", &project.resource_name())
        .await?;
    let number = project_number(&state, &project).await?;
    let buckets = state.store.list_buckets(&project).await?;
    let items: Vec<Value> = buckets.iter().map(|b| view(&state, b, number)).collect();
    Ok(Json(json!({"kind": "storage#buckets", "items": items})))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let b = authorized_bucket(&state, &caller, &bucket, "storage.buckets.get").await?;
    let number = project_number(&state, &b.project_id).await?;
    Ok(Json(view(&state, &b, number)))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
) -> Result<StatusCode, ApiError> {
    authorized_bucket(&state, &caller, &bucket, "storage.buckets.delete").await?;
    // Uploads still open on an empty bucket are cancelled with it, whoever opened them.
    let cancelled = state
        .store
        .delete_bucket(&bucket)
        .await
        .map_err(|e| match e {
            // Google's 409 for a bucket that still holds objects.
            e @ StoreError::NotEmpty(_) => {
                ApiError::AlreadyExists(format!("The bucket you tried to delete is not empty: {e}"))
            }
            other => ApiError::from(other),
        })?
        .ok_or_else(|| {
            ApiError::NotFound(format!("The specified bucket does not exist: {bucket}"))
        })?;
    super::resumable::remove_cancelled(&state, &cancelled).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn get_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
) -> Result<Json<Value>, ApiError> {
    existing_bucket(&state, &bucket).await?;
    let resource = format!("projects/_/buckets/{bucket}");
    let Json(mut policy) =
        policy_api::get(&state, &caller, &resource, "storage.buckets.getIamPolicy").await?;
    policy["kind"] = json!("storage#policy");
    policy["resourceId"] = json!(resource);
    Ok(Json(policy))
}

async fn set_policy(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    ApiJson(mut body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    existing_bucket(&state, &bucket).await?;
    let resource = format!("projects/_/buckets/{bucket}");
    // The JSON API sends the policy itself (with kind and resourceId), not {"policy": …}.
    if let Some(obj) = body.as_object_mut() {
        obj.remove("kind");
        obj.remove("resourceId");
    }
    let rules = policy_api::Rules {
        permission: "storage.buckets.setIamPolicy",
        keep_an_owner: false,
    };
    let Json(mut policy) =
        policy_api::set(&state, &caller, &resource, rules, json!({ "policy": body })).await?;
    policy["kind"] = json!("storage#policy");
    policy["resourceId"] = json!(resource);
    Ok(Json(policy))
}

/// `GET …/iam/testPermissions?permissions=P&permissions=Q`: which of them the caller holds.
async fn test_permissions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, ApiError> {
    existing_bucket(&state, &bucket).await?;
    let permissions: Vec<String> = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "permissions")
        .map(|(_, v)| v.into_owned())
        .collect();
    let Json(held) = policy_api::test(
        &state,
        &caller,
        &format!("projects/_/buckets/{bucket}"),
        json!({ "permissions": permissions }),
    )
    .await?;
    Ok(Json(
        json!({"kind": "storage#testIamPermissionsResponse", "permissions": held["permissions"].as_array().cloned().unwrap_or_default()}),
    ))
}
