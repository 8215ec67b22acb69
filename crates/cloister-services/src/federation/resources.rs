//! Workload identity pools and OIDC providers (IAM v1 shapes): create, get, list, patch,
//! delete. Settings are validated and compiled before anything is stored, so a provider with
//! a broken condition never exists.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{Permission, Principal, ProjectId};
use cloister_store::{FederationRecord, ProjectRecord};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::explain;
use super::provider::{self, ProviderSettings};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::authorizer::denied;
use crate::json::ApiJson;
use crate::state::AppState;

const POOLS: &str = "/v1/projects/{project}/locations/{location}/workloadIdentityPools";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(POOLS, get(list_pools).post(create_pool))
        .route(
            &format!("{POOLS}/{{pool}}"),
            get(get_pool).patch(patch_pool).delete(delete_pool),
        )
        .route(
            &format!("{POOLS}/{{pool}}/providers"),
            get(list_providers).post(create_provider),
        )
        .route(
            &format!("{POOLS}/{{pool}}/providers/{{provider}}"),
            get(get_provider)
                .patch(patch_provider)
                .delete(delete_provider)
                .post(provider_method),
        )
}

/// Google's rule for pool and provider ids: 4–32 of `[a-z0-9-]`, no `gcp-` prefix.
fn check_id(kind: &str, id: &str) -> Result<(), ApiError> {
    let ok = (4..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && !id.ends_with('-')
        && !id.starts_with("gcp-")
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "invalid {kind} id {id:?}: 4 to 32 lowercase letters, digits and hyphens, not starting with \"gcp-\""
        )))
    }
}

/// The project a path names, by id or by number as Google accepts both.
pub async fn resolve_project(
    state: &AppState,
    project: &str,
    location: &str,
) -> Result<ProjectRecord, ApiError> {
    if location != "global" {
        return Err(ApiError::InvalidArgument(format!(
            "location {location:?} is not supported: workload identity pools live in \"global\""
        )));
    }
    let found = match project.parse::<u64>() {
        Ok(n) => {
            let projects = state.store.list_projects().await?;
            projects.into_iter().find(|p| p.number.0 == n)
        }
        Err(_) => match ProjectId::parse(project) {
            Ok(id) => state.store.get_project(&id).await?,
            Err(_) => None,
        },
    };
    found.ok_or_else(|| ApiError::NotFound(format!("Project {project} was not found")))
}

/// Checks `permission` on the project, then resolves it, so a refused caller learns nothing:
/// by id, an unknown project is refused like a known one (its policy is empty); by number, the
/// refusal names the number, never the project id behind it, and an unknown number is refused
/// the same way (as Google answers 403 for both).
async fn authorized_project(
    state: &AppState,
    caller: &Principal,
    project: &str,
    location: &str,
    permission: Permission,
) -> Result<ProjectRecord, ApiError> {
    if let Ok(id) = ProjectId::parse(project) {
        state
            .authorizer
            .check(caller, permission, &id.resource_name())
            .await?;
        return resolve_project(state, project, location).await;
    }
    let as_named = format!("projects/{project}");
    let record = match resolve_project(state, project, location).await {
        Ok(record) => record,
        // No such number: the check on `projects/NUMBER` (no policy) refuses and audits it.
        Err(ApiError::NotFound(_)) => {
            state
                .authorizer
                .check(caller, permission, &as_named)
                .await?;
            return Err(ApiError::NotFound(format!(
                "Project {project} was not found"
            )));
        }
        Err(e) => return Err(e),
    };
    match state
        .authorizer
        .check(caller, permission, &record.id.resource_name())
        .await
    {
        Ok(_) => Ok(record),
        Err(ApiError::PermissionDenied { .. }) => Err(denied(caller, permission, &as_named)),
        Err(e) => Err(e),
    }
}

fn pool_name(p: &ProjectRecord, pool: &str) -> String {
    format!(
        "projects/{}/locations/global/workloadIdentityPools/{pool}",
        p.number
    )
}

fn done(resource: &str, response: Value) -> Json<Value> {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    Json(
        json!({"name": format!("{resource}/operations/{}", hex::encode(id)), "done": true, "response": response}),
    )
}

fn new_etag() -> String {
    let mut id = [0u8; 8];
    rand::rng().fill_bytes(&mut id);
    hex::encode(id)
}

async fn load(state: &AppState, name: &str, kind: &str) -> Result<FederationRecord, ApiError> {
    state
        .store
        .get_federation(name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("{kind} {name} was not found")))
}

fn with_name(mut resource: Value, name: &str) -> Value {
    resource["name"] = json!(name);
    resource["state"] = json!("ACTIVE");
    resource
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolQuery {
    workload_identity_pool_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProviderQuery {
    workload_identity_pool_provider_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PatchQuery {
    update_mask: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PoolSettings {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    disabled: bool,
    #[serde(default, rename = "name")]
    _name: Option<String>,
    #[serde(default, rename = "state")]
    _state: Option<String>,
}

fn pool_resource(settings: &PoolSettings) -> Value {
    json!({"displayName": settings.display_name, "description": settings.description, "disabled": settings.disabled})
}

async fn create_pool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location)): Path<(String, String)>,
    Query(q): Query<PoolQuery>,
    ApiJson(settings): ApiJson<PoolSettings>,
) -> Result<Json<Value>, ApiError> {
    let id = q.workload_identity_pool_id.ok_or_else(|| {
        ApiError::InvalidArgument("the query parameter workloadIdentityPoolId is required".into())
    })?;
    check_id("workload identity pool", &id)?;
    let project = authorized_project(
        &state,
        &caller,
        &project,
        &location,
        "iam.workloadIdentityPools.create",
    )
    .await?;
    let name = pool_name(&project, &id);
    let record = FederationRecord {
        name: name.clone(),
        project_id: project.id,
        resource: pool_resource(&settings),
        etag: new_etag(),
    };
    let resource = record.resource.clone();
    state.store.create_federation(&record).await?;
    Ok(done(&name, with_name(resource, &name)))
}

async fn list_pools(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = authorized_project(
        &state,
        &caller,
        &project,
        &location,
        "iam.workloadIdentityPools.list",
    )
    .await?;
    let parent = format!("projects/{}/locations/global", project.number);
    let pools = state.store.list_federation(&parent).await?;
    let pools: Vec<Value> = pools
        .into_iter()
        .map(|r| with_name(r.resource, &r.name))
        .collect();
    Ok(Json(json!({ "workloadIdentityPools": pools })))
}

type PoolPath = Path<(String, String, String)>;
type ProviderPath = Path<(String, String, String, String)>;

/// The pool a path names, once `permission` on its project is checked.
async fn pool_at(
    state: &AppState,
    caller: &Principal,
    path: &(String, String, String),
    permission: Permission,
) -> Result<String, ApiError> {
    let (project, location, pool) = path;
    let project = authorized_project(state, caller, project, location, permission).await?;
    Ok(pool_name(&project, pool))
}

/// The provider a path names, once `permission` on its project is checked.
async fn provider_at(
    state: &AppState,
    caller: &Principal,
    (project, location, pool, provider): &(String, String, String, String),
    permission: Permission,
) -> Result<String, ApiError> {
    let pool = pool_at(
        state,
        caller,
        &(project.clone(), location.clone(), pool.clone()),
        permission,
    )
    .await?;
    Ok(format!("{pool}/providers/{provider}"))
}

async fn get_pool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): PoolPath,
) -> Result<Json<Value>, ApiError> {
    let name = pool_at(&state, &caller, &path, "iam.workloadIdentityPools.get").await?;
    let record = load(&state, &name, "Workload identity pool").await?;
    Ok(Json(with_name(record.resource, &record.name)))
}

async fn patch_pool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): PoolPath,
    Query(q): Query<PatchQuery>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let name = pool_at(&state, &caller, &path, "iam.workloadIdentityPools.update").await?;
    let record = load(&state, &name, "Workload identity pool").await?;
    let merged = merge(record.resource.clone(), &patch, q.update_mask.as_deref())?;
    let settings: PoolSettings = serde_json::from_value(merged)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid workload identity pool: {e}")))?;
    let resource = pool_resource(&settings);
    store_update(&state, &record, resource.clone()).await?;
    Ok(done(&record.name, with_name(resource, &record.name)))
}

async fn delete_pool(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): PoolPath,
) -> Result<Json<Value>, ApiError> {
    let name = pool_at(&state, &caller, &path, "iam.workloadIdentityPools.delete").await?;
    remove(&state, name, "Workload identity pool").await
}

/// Deletes a pool (with its providers) or a provider.
async fn remove(state: &AppState, name: String, kind: &str) -> Result<Json<Value>, ApiError> {
    if !state.store.delete_federation(&name).await? {
        return Err(ApiError::NotFound(format!("{kind} {name} was not found")));
    }
    Ok(done(&name, json!({})))
}

/// Parses and validates provider settings from a request body; returns the resource to store
/// and warnings for the caller.
async fn provider_resource(
    state: &AppState,
    body: Value,
) -> Result<(Value, Vec<String>), ApiError> {
    let settings: ProviderSettings = serde_json::from_value(body).map_err(|e| {
        ApiError::InvalidArgument(format!("Invalid workload identity pool provider: {e}"))
    })?;
    provider::validate(&settings)?;
    if let Some(oidc) = &settings.oidc
        && oidc.jwks_json.is_some()
        && oidc.issuer_uri.trim_end_matches('/') == state.public_url
    {
        return Err(ApiError::InvalidArgument(format!(
            "oidc.jwksJson cannot be given for this server's own issuer {}: its tokens verify \
             with its own keys, which rotate; leave jwksJson out",
            state.public_url
        )));
    }
    let warnings = issuer_warnings(state, &settings).await;
    let resource =
        serde_json::to_value(&settings).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((resource, warnings))
}

/// A warning when Cloister cannot fetch the issuer's keys now. The provider is still stored,
/// as Google stores any https issuer: the issuer may come up later, or the admin may allow
/// its host; but the owner learns now, not from a refused exchange later.
async fn issuer_warnings(state: &AppState, settings: &ProviderSettings) -> Vec<String> {
    let Some(oidc) = &settings.oidc else {
        return Vec::new();
    };
    let ours = oidc.issuer_uri.trim_end_matches('/') == state.public_url;
    if oidc.jwks_json.is_some() || ours {
        return Vec::new();
    }
    match state.jwks.probe(&oidc.issuer_uri).await {
        Ok(()) => Vec::new(),
        Err(e) => vec![format!(
            "{e}. Subject tokens from this issuer will be refused until its keys can be \
             fetched: give them inline (oidc.jwksJson), or for a host on a private network or \
             plain http ask the server's admin to allow it (--oidc-fetch-allow)."
        )],
    }
}

/// The operation for a provider write, with `warnings` when there are any.
fn done_with(name: &str, resource: Value, warnings: Vec<String>) -> Json<Value> {
    let Json(mut op) = done(name, with_name(resource, name));
    if !warnings.is_empty() {
        op["warnings"] = json!(warnings);
    }
    Json(op)
}

async fn create_provider(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location, pool)): Path<(String, String, String)>,
    Query(q): Query<ProviderQuery>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let id = q.workload_identity_pool_provider_id.ok_or_else(|| {
        ApiError::InvalidArgument(
            "the query parameter workloadIdentityPoolProviderId is required".into(),
        )
    })?;
    check_id("workload identity pool provider", &id)?;
    let project = authorized_project(
        &state,
        &caller,
        &project,
        &location,
        "iam.workloadIdentityPoolProviders.create",
    )
    .await?;
    let (resource, warnings) = provider_resource(&state, body).await?;
    let name = format!("{}/providers/{id}", pool_name(&project, &pool));
    let record = FederationRecord {
        name: name.clone(),
        project_id: project.id,
        resource: resource.clone(),
        etag: new_etag(),
    };
    state.store.create_federation(&record).await?;
    Ok(done_with(&name, resource, warnings))
}

async fn list_providers(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location, pool)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = authorized_project(
        &state,
        &caller,
        &project,
        &location,
        "iam.workloadIdentityPoolProviders.list",
    )
    .await?;
    let parent = pool_name(&project, &pool);
    let providers = state.store.list_federation(&parent).await?;
    let providers: Vec<Value> = providers
        .into_iter()
        .map(|r| with_name(r.resource, &r.name))
        .collect();
    Ok(Json(json!({ "workloadIdentityPoolProviders": providers })))
}

async fn get_provider(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): ProviderPath,
) -> Result<Json<Value>, ApiError> {
    let record = read_provider(&state, &caller, &path).await?;
    Ok(Json(with_name(record.resource, &record.name)))
}

/// The provider a path (project, location, pool, provider) names, if `caller` may get it.
pub async fn read_provider(
    state: &AppState,
    caller: &Principal,
    path: &(String, String, String, String),
) -> Result<FederationRecord, ApiError> {
    let name = provider_at(state, caller, path, "iam.workloadIdentityPoolProviders.get").await?;
    load(state, &name, "Workload identity pool provider").await
}

async fn patch_provider(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): ProviderPath,
    Query(q): Query<PatchQuery>,
    ApiJson(patch): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let (name, resource, warnings) = update_provider(
        &state,
        &caller,
        &path,
        &patch,
        q.update_mask.as_deref(),
        None,
    )
    .await?;
    Ok(done_with(&name, resource, warnings))
}

/// Applies `patch` (under `update_mask`) to the provider, validated as a create is, if
/// `caller` may update it and, when `etag` is given, nobody changed it since that version.
pub async fn update_provider(
    state: &AppState,
    caller: &Principal,
    path: &(String, String, String, String),
    patch: &Value,
    update_mask: Option<&str>,
    etag: Option<&str>,
) -> Result<(String, Value, Vec<String>), ApiError> {
    let name = provider_at(
        state,
        caller,
        path,
        "iam.workloadIdentityPoolProviders.update",
    )
    .await?;
    let record = load(state, &name, "Workload identity pool provider").await?;
    if etag.is_some_and(|e| e != record.etag) {
        return Err(ApiError::Aborted(format!(
            "Provider {name} changed since you loaded it; reload it and apply your change again"
        )));
    }
    let merged = merge(record.resource.clone(), patch, update_mask)?;
    let (resource, warnings) = provider_resource(state, merged).await?;
    store_update(state, &record, resource.clone()).await?;
    Ok((name, resource, warnings))
}

async fn delete_provider(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): ProviderPath,
) -> Result<Json<Value>, ApiError> {
    let name = provider_at(
        &state,
        &caller,
        &path,
        "iam.workloadIdentityPoolProviders.delete",
    )
    .await?;
    remove(&state, name, "Workload identity pool provider").await
}

async fn provider_method(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location, pool, provider)): ProviderPath,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let Some((provider, "explain")) = provider.split_once(':') else {
        return Err(ApiError::NotFound(format!(
            "POST …/providers/{provider} is not a method; use :explain"
        )));
    };
    let path = (project, location, pool, provider.to_owned());
    let name = provider_at(
        &state,
        &caller,
        &path,
        "iam.workloadIdentityPoolProviders.get",
    )
    .await?;
    explain::explain(&state, &name, body).await
}

async fn store_update(
    state: &AppState,
    record: &FederationRecord,
    resource: Value,
) -> Result<(), ApiError> {
    state
        .store
        .update_federation(&record.name, &resource, &record.etag)
        .await?;
    Ok(())
}

/// Applies a PATCH: the fields named in `update_mask` (camelCase, comma-separated, `oidc.x`
/// for nested ones), or every field present in the patch when there is no mask.
fn merge(mut current: Value, patch: &Value, update_mask: Option<&str>) -> Result<Value, ApiError> {
    let Some(patch_obj) = patch.as_object() else {
        return Err(ApiError::InvalidArgument(
            "the request body must be a JSON object".into(),
        ));
    };
    let fields: Vec<String> = match update_mask {
        Some(mask) => mask
            .split(',')
            .map(|f| f.trim().to_owned())
            .filter(|f| !f.is_empty())
            .collect(),
        None => patch_obj.keys().cloned().collect(),
    };
    for field in fields {
        let path: Vec<&str> = field.split('.').collect();
        let value = path
            .iter()
            .try_fold(patch, |v, k| v.get(*k))
            .cloned()
            .unwrap_or(Value::Null);
        let mut target = &mut current;
        for key in &path[..path.len() - 1] {
            if !target.get(*key).is_some_and(Value::is_object) {
                target[*key] = Value::Object(Map::new());
            }
            target = &mut target[*key];
        }
        let last = path[path.len() - 1];
        match target.as_object_mut() {
            Some(obj) if value.is_null() => {
                obj.remove(last);
            }
            Some(obj) => {
                obj.insert(last.to_owned(), value);
            }
            None => return Err(ApiError::InvalidArgument(format!("cannot update {field}"))),
        }
    }
    Ok(current)
}
