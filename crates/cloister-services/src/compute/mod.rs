//! Compute Engine's instances API (subset) over the local driver (`driver.rs`), with a
//! metadata server per instance (`metadata_server.rs`). Creating an instance takes
//! `compute.instances.create` on the project and `iam.serviceAccounts.actAs` on its service
//! account, as in Google.

pub mod console;
pub mod disk;
pub mod driver;
pub mod metadata_server;
mod metadata_tree;
pub mod placement;
pub mod replicas;
mod sandbox;
pub mod serial;
pub mod vm;

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::ProjectId;
use cloister_store::{ConfidentialType, InstanceRecord, InstanceStatus};
use rand::Rng;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::iam::service_accounts;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;

const INSTANCES: &str = "/compute/v1/projects/{project}/zones/{zone}/instances";
const INSTANCE: &str = "/compute/v1/projects/{project}/zones/{zone}/instances/{name}";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(INSTANCES, get(list).post(insert))
        .route(INSTANCE, get(describe).delete(delete))
        .route(&format!("{INSTANCE}/serialPort"), get(serial_port))
        .route(&format!("{INSTANCE}/stop"), axum::routing::post(stop))
        .route(&format!("{INSTANCE}/start"), axum::routing::post(start))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InsertInstance {
    name: String,
    #[serde(default)]
    service_accounts: Vec<ServiceAccountRef>,
    #[serde(default)]
    metadata: Option<MetadataItems>,
    #[serde(default)]
    confidential_instance_config: Option<ConfidentialConfig>,
}

#[derive(Deserialize)]
struct ServiceAccountRef {
    email: String,
}

#[derive(Deserialize)]
struct MetadataItems {
    #[serde(default)]
    items: Vec<MetadataItem>,
}

#[derive(Deserialize)]
struct MetadataItem {
    key: String,
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConfidentialConfig {
    confidential_instance_type: String,
}

/// RFC 1035 labels, as Compute Engine names instances.
fn check_name(kind: &str, name: &str) -> Result<(), ApiError> {
    let ok = cloister_domain::ids::is_rfc1035_label(name);
    if ok {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Invalid {kind} {name:?}: 1 to 63 lowercase letters, digits and hyphens, starting with a letter"
        )))
    }
}

fn project(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::parse(id).map_err(|e| ApiError::InvalidArgument(e.to_string()))
}

fn view(state: &AppState, i: &InstanceRecord) -> Value {
    let items: Vec<Value> = i
        .metadata
        .iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    json!({
        "kind": "compute#instance",
        "id": i.id.to_string(),
        "name": i.name,
        "zone": format!("{}/compute/v1/projects/{}/zones/{}", state.public_url, i.project_id.as_str(), i.zone),
        "selfLink": format!("{}/compute/v1/{}", state.public_url, i.resource_name()),
        "status": i.status.as_str(),
        "creationTimestamp": time_util::rfc3339(i.create_time),
        "serviceAccounts": [{"email": i.service_account, "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}],
        "metadata": {"items": items},
        "confidentialInstanceConfig": {"confidentialInstanceType": i.confidential_type.as_str()},
    })
}

fn operation(state: &AppState, kind: &str, i: &InstanceRecord) -> Json<Value> {
    Json(json!({
        "kind": "compute#operation",
        "name": format!("operation-{}", uuid::Uuid::new_v4()),
        "operationType": kind,
        "status": "DONE",
        "targetId": i.id.to_string(),
        "targetLink": format!("{}/compute/v1/{}", state.public_url, i.resource_name()),
    }))
}

async fn insert(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project_id, zone)): Path<(String, String)>,
    ApiJson(req): ApiJson<InsertInstance>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&project_id)?;
    check_name("zone", &zone)?;
    check_name("instance name", &req.name)?;
    state
        .authorizer
        .check(
            &caller,
            "compute.instances.create",
            &project.resource_name(),
        )
        .await?;
    if state.store.get_project(&project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Project {project} was not found"
        )));
    }
    let [account] = req.service_accounts.as_slice() else {
        return Err(ApiError::InvalidArgument(
            "an instance needs exactly one service account (serviceAccounts[0].email): the workload runs as it".into(),
        ));
    };
    let (email, sa_resource) = service_accounts::resource_of(&account.email)?;
    state
        .authorizer
        .check(&caller, "iam.serviceAccounts.actAs", &sa_resource)
        .await?;
    crate::iamcredentials::enabled_account(&state, &email).await?;
    let kind = match req.confidential_instance_config {
        None => ConfidentialType::Vtpm,
        Some(c) => {
            let given = c.confidential_instance_type.to_ascii_uppercase();
            // Google's SEV (the codelab's flag): on Cloister, an SEV-SNP guest, the only AMD
            // confidential VM it launches and attests.
            let given = if given == "SEV" {
                "SEV_SNP".to_owned()
            } else {
                given
            };
            ConfidentialType::parse(&given).ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "confidentialInstanceType {given:?} is not one of VTPM, INSECURE, SEV (as SEV_SNP), SEV_SNP, TDX"
                ))
            })?
        }
    };
    if kind == ConfidentialType::Insecure && !state.allow_insecure_evidence {
        return Err(ApiError::FailedPrecondition(
            "confidentialInstanceType INSECURE is refused by this server: its evidence is refused too (nothing vouches for it). Use VTPM (the default), SEV_SNP or TDX; on a development machine only, start the server with --allow-insecure-evidence".into(),
        ));
    }
    check_offered(&state, kind).await?;
    let metadata: BTreeMap<String, String> = req
        .metadata
        .map(|m| m.items.into_iter().map(|i| (i.key, i.value)).collect())
        .unwrap_or_default();
    let instance = InstanceRecord {
        project_id: project,
        zone,
        name: req.name,
        // Google's ids are 19-digit numbers.
        id: rand::rng().random_range(1_000_000_000_000_000_000..9_000_000_000_000_000_000),
        service_account: email.as_str().to_owned(),
        metadata,
        confidential_type: kind,
        status: InstanceStatus::Provisioning,
        create_time: time::OffsetDateTime::now_utc(),
    };
    // One project cannot take every replica's room from the others.
    state
        .store
        .create_instance(&instance, state.project_instance_quota)
        .await?;
    match state.placer.place_here(&state, &instance).await {
        Ok(true) => {}
        // Another replica may claim it first: the message is only set on a waiting instance.
        Ok(false) => {
            let why = placement::waiting_message(&instance);
            state
                .store
                .set_waiting_message(&instance.resource_name(), &why)
                .await?;
        }
        Err(e) => {
            let _ = state.store.delete_instance(&instance.resource_name()).await;
            console::remove(&state, &instance).await;
            return Err(e);
        }
    }
    Ok(operation(&state, "insert", &instance))
}

/// Refuses a type that no replica runs: this one's refusal (never a downgrade), unless with a
/// shared database another live replica offers it.
async fn check_offered(state: &AppState, kind: ConfidentialType) -> Result<(), ApiError> {
    let here = state.compute.check_type(kind);
    match here {
        Err(e) if state.compute.lease().is_some() => {
            let now = time::OffsetDateTime::now_utc();
            if state.store.replica_offers(kind, now).await? {
                return Ok(());
            }
            Err(match e {
                ApiError::FailedPrecondition(m) => ApiError::FailedPrecondition(format!(
                    "{m}; and no other replica of this control plane runs {kind} instances"
                )),
                e => e,
            })
        }
        here => here,
    }
}

pub(crate) async fn load(
    state: &AppState,
    caller: &cloister_domain::Principal,
    (project_id, zone, name): &(String, String, String),
    permission: cloister_domain::Permission,
) -> Result<InstanceRecord, ApiError> {
    let resource = format!(
        "projects/{}/zones/{zone}/instances/{name}",
        project(project_id)?
    );
    state
        .authorizer
        .check(caller, permission, &resource)
        .await?;
    state
        .store
        .get_instance(&resource)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("The resource '{resource}' was not found")))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &caller, &path, "compute.instances.get").await?;
    let mut described = view(&state, &i);
    let placed = state.store.instance_placement(&i.resource_name()).await?;
    if let Some(message) = placed.and_then(|p| p.status_message) {
        described["statusMessage"] = Value::String(message);
    }
    Ok(Json(described))
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project_id, zone)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let project = project(&project_id)?;
    state
        .authorizer
        .check(&caller, "compute.instances.list", &project.resource_name())
        .await?;
    let items: Vec<Value> = state
        .store
        .list_instances(&project, &zone)
        .await?
        .iter()
        .map(|i| view(&state, i))
        .collect();
    Ok(Json(
        json!({"kind": "compute#instanceList", "items": items}),
    ))
}

async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &caller, &path, "compute.instances.delete").await?;
    state.compute.stop(&i).await;
    state.store.delete_instance(&i.resource_name()).await?;
    state.placer.wake();
    console::remove(&state, &i).await;
    Ok(operation(&state, "delete", &i))
}

/// Compute Engine's stop: the workload ends (where it runs: this replica at once, another at
/// its next sync, since the record no longer places it there) and the instance is
/// TERMINATED, to be started again.
async fn stop(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &caller, &path, "compute.instances.stop").await?;
    state
        .store
        .release_instance(&i.resource_name(), None)
        .await?;
    state.compute.stop(&i).await;
    state.placer.wake();
    Ok(operation(&state, "stop", &i))
}

/// Compute Engine's start of a TERMINATED instance: placed again as a new one is, on any
/// replica with room. Starting one that runs or waits changes nothing, as in Google.
async fn start(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    let i = load(&state, &caller, &path, "compute.instances.start").await?;
    check_offered(&state, i.confidential_type).await?;
    if !state.store.restart_instance(&i.resource_name()).await? {
        return Ok(operation(&state, "start", &i));
    }
    match state.placer.place_here(&state, &i).await {
        Ok(true) => {}
        Ok(false) => {
            let why = placement::waiting_message(&i);
            state
                .store
                .set_waiting_message(&i.resource_name(), &why)
                .await?;
        }
        // Claimed here and failed to start: ended again, saying why.
        Err(e) => {
            let why = e.to_string();
            state
                .store
                .release_instance(&i.resource_name(), Some(&why))
                .await?;
            return Err(e);
        }
    }
    Ok(operation(&state, "start", &i))
}

#[derive(Deserialize, Default)]
struct SerialQuery {
    start: Option<u64>,
}

async fn serial_port(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(path): Path<(String, String, String)>,
    Query(q): Query<SerialQuery>,
) -> Result<Json<Value>, ApiError> {
    let i = load(
        &state,
        &caller,
        &path,
        "compute.instances.getSerialPortOutput",
    )
    .await?;
    let start = q.start.unwrap_or(0);
    let (contents, next) = console::read(&state, &i, start).await;
    Ok(Json(json!({
        "kind": "compute#serialPortOutput",
        "contents": contents,
        "start": start.min(next).to_string(),
        "next": next.to_string(),
    })))
}
