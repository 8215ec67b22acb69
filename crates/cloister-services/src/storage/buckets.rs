//! Buckets: create, get, list, delete (only when empty), and their IAM policies.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::ProjectId;
use cloister_store::{BucketRecord, StoreError};
use serde::Deserialize;
use serde_json::{Value, json};

use super::params::{StorageQuery, check_names, only_false};
use super::response::{method_not_allowed, shape};
use super::{authorized_bucket, check_bucket_name, existing_bucket, timestamp};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::policy_api;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/storage/v1/b",
            get(list).post(create).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}",
            get(describe).delete(delete).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}/storageLayout",
            get(storage_layout).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}/iam",
            get(get_policy).put(set_policy).fallback(method_not_allowed),
        )
        .route(
            "/storage/v1/b/{bucket}/iam/testPermissions",
            get(test_permissions).fallback(method_not_allowed),
        )
        .layer(axum::middleware::from_fn(shape))
}

/// Buckets are never changed in place: their metageneration is always 1.
const BUCKET_METAGENERATION: i64 = 1;
const MAX_BUCKETS_PAGE: usize = 1000;

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
        "timeCreated": timestamp(b.create_time),
        "updated": timestamp(b.create_time),
        "etag": "CAE=",
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateQuery {
    project: Option<String>,
    /// Object retention needs holds and retention periods, which Cloister does not have.
    #[serde(default, deserialize_with = "super::params::flag")]
    enable_object_retention: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    project: Option<String>,
    #[serde(default)]
    prefix: String,
    max_results: Option<usize>,
    page_token: Option<String>,
    #[serde(default, deserialize_with = "super::params::flag")]
    soft_deleted: Option<bool>,
}

/// Metageneration preconditions, on a bucket's get and delete.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct BucketQuery {
    if_metageneration_match: Option<i64>,
    if_metageneration_not_match: Option<i64>,
}

impl BucketQuery {
    fn check(&self, bucket: &str) -> Result<(), ApiError> {
        let m = BUCKET_METAGENERATION;
        if self.if_metageneration_match.is_some_and(|g| g != m)
            || self.if_metageneration_not_match == Some(m)
        {
            return Err(ApiError::PreconditionFailed(format!(
                "The metageneration precondition did not hold for gs://{bucket} (its metageneration is {m})"
            )));
        }
        Ok(())
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PolicyQuery {
    /// Cloister's policies have no conditions on buckets, so every version reads the same.
    #[allow(dead_code)]
    options_requested_policy_version: Option<u8>,
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

fn project_param(project: Option<&str>) -> Result<ProjectId, ApiError> {
    let p = project.ok_or_else(|| {
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
    StorageQuery(q): StorageQuery<CreateQuery>,
    ApiJson(req): ApiJson<CreateBucket>,
) -> Result<Json<Value>, ApiError> {
    only_false(
        "enableObjectRetention",
        q.enable_object_retention,
        "Cloister has no object retention",
    )?;
    let project = project_param(q.project.as_deref())?;
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
    StorageQuery(q): StorageQuery<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    only_false(
        "softDeleted",
        q.soft_deleted,
        "Cloister keeps no soft-deleted buckets",
    )?;
    let project = project_param(q.project.as_deref())?;
    state
        .authorizer
        .check(&caller, "storage.buckets.list", &project.resource_name())
        .await?;
    let number = project_number(&state, &project).await?;
    let limit = q
        .max_results
        .unwrap_or(MAX_BUCKETS_PAGE)
        .clamp(1, MAX_BUCKETS_PAGE);
    // The page token is the last name the previous page held (names sort, and are public).
    let after = q.page_token.unwrap_or_default();
    let buckets = state.store.list_buckets(&project).await?;
    let mut matching = buckets
        .iter()
        .filter(|b| b.name.starts_with(&q.prefix) && b.name > after);
    let items: Vec<Value> = matching
        .by_ref()
        .take(limit)
        .map(|b| view(&state, b, number))
        .collect();
    let mut body = json!({"kind": "storage#buckets", "items": items});
    if matching.next().is_some()
        && let Some(last) = items_last_name(&body)
    {
        body["nextPageToken"] = json!(last);
    }
    Ok(Json(body))
}

fn items_last_name(body: &Value) -> Option<String> {
    body["items"].as_array()?.last()?["name"]
        .as_str()
        .map(str::to_owned)
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    StorageQuery(q): StorageQuery<BucketQuery>,
) -> Result<Json<Value>, ApiError> {
    let b = authorized_bucket(&state, &caller, &bucket, "storage.buckets.get").await?;
    q.check(&bucket)?;
    let number = project_number(&state, &b.project_id).await?;
    Ok(Json(view(&state, &b, number)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LayoutQuery {
    /// The layout is the bucket's, whatever the prefix the caller may list under.
    #[allow(dead_code)]
    prefix: Option<String>,
}

/// `GET /storage/v1/b/B/storageLayout`: gcloud asks before copying whether the bucket has a
/// hierarchical namespace. Cloister's buckets are flat.
async fn storage_layout(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    StorageQuery(_): StorageQuery<LayoutQuery>,
) -> Result<Json<Value>, ApiError> {
    let b = authorized_bucket(&state, &caller, &bucket, "storage.objects.list").await?;
    Ok(Json(json!({
        "kind": "storage#storageLayout",
        "bucket": b.name,
        "location": b.location,
        "locationType": "region",
        "hierarchicalNamespace": {"enabled": false},
    })))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(bucket): Path<String>,
    StorageQuery(q): StorageQuery<BucketQuery>,
) -> Result<StatusCode, ApiError> {
    authorized_bucket(&state, &caller, &bucket, "storage.buckets.delete").await?;
    q.check(&bucket)?;
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
    StorageQuery(_): StorageQuery<PolicyQuery>,
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
    StorageQuery(_): StorageQuery<BucketQuery>,
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
    let query = query.unwrap_or_default();
    check_names(&query, &["permissions"])?;
    existing_bucket(&state, &bucket).await?;
    let permissions: Vec<String> = form_urlencoded::parse(query.as_bytes())
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
