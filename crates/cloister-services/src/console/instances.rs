//! Instances in the console: a project's instances, and one instance's state, metadata and
//! serial console (refreshed every few seconds while it runs). The same permissions as the
//! API's `list`, `get` and `getSerialPortOutput`.

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use cloister_domain::ProjectId;
use cloister_store::InstanceStatus;
use serde::Deserialize;
use serde_json::{Value, json};

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::Session;
use crate::compute;
use crate::error::ApiError;
use crate::state::AppState;

const SERIAL_PERMISSION: &str = "compute.instances.getSerialPortOutput";

/// The end of the console a page shows; `get-serial-port-output --start` reads the rest.
const CONSOLE_TAIL: usize = 64 * 1024;
/// How often a running instance's page reloads itself (a `<meta>` refresh: the console runs
/// no script).
pub const REFRESH_SECONDS: u32 = 3;

pub struct InstanceRow {
    pub name: String,
    pub zone: String,
    pub status: &'static str,
    pub kind: &'static str,
}

/// A project's instances, or `None` when the user may not list them.
pub async fn rows(
    state: &AppState,
    session: &Session,
    project: &ProjectId,
) -> Result<Option<Vec<InstanceRow>>, ApiError> {
    if !super::resources::may(
        state,
        session,
        "compute.instances.list",
        &project.resource_name(),
    )
    .await?
    {
        return Ok(None);
    }
    let rows = state
        .store
        .list_instances(project, "-")
        .await?
        .into_iter()
        .map(|i| InstanceRow {
            name: i.name,
            zone: i.zone,
            status: i.status.as_str(),
            kind: i.confidential_type.as_str(),
        })
        .collect();
    Ok(Some(rows))
}

#[derive(Template)]
#[template(path = "console/instance.html")]
struct InstancePage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    project: &'a str,
    zone: &'a str,
    name: &'a str,
    status: &'static str,
    kind: &'static str,
    service_account: &'a str,
    metadata: Vec<(String, String)>,
    /// `None` when the user may not read the console.
    console: Option<String>,
    /// The console's length in bytes: where following it starts.
    next: u64,
    refresh: Option<u32>,
    script: &'a str,
}

pub async fn instance(
    State(state): State<AppState>,
    session: Session,
    Path(path): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let i = compute::load(&state, &session.principal, &path, "compute.instances.get").await?;
    // Whether to show the console is a question (recorded as nothing); reading it is an access.
    let may_read = state
        .authorizer
        .holds(&session.principal, SERIAL_PERMISSION, &i.resource_name())
        .await?;
    let (console, next) = if may_read {
        let i = compute::load(&state, &session.principal, &path, SERIAL_PERMISSION).await?;
        let (tail, next) = compute::console::tail(&state, &i, CONSOLE_TAIL).await;
        (Some(tail), next)
    } else {
        (None, 0)
    };
    let live = matches!(
        i.status,
        InstanceStatus::Provisioning | InstanceStatus::Running
    );
    let user = user_name(&session.principal);
    Ok(render(&InstancePage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        project: i.project_id.as_str(),
        zone: &i.zone,
        name: &i.name,
        status: i.status.as_str(),
        kind: i.confidential_type.as_str(),
        service_account: &i.service_account,
        metadata: i.metadata.clone().into_iter().collect(),
        console,
        next,
        refresh: live.then_some(REFRESH_SECONDS),
        script: super::SCRIPT,
    }))
}

#[derive(Deserialize)]
pub struct StartQuery {
    #[serde(default)]
    start: u64,
}

/// The console's bytes from `start` on, for the page's script to follow a running instance:
/// the API's `serialPort` for the session's user (the same permission, audited).
pub async fn serial(
    State(state): State<AppState>,
    session: Session,
    Path(path): Path<(String, String, String)>,
    Query(q): Query<StartQuery>,
) -> Result<Json<Value>, ApiError> {
    let i = compute::load(&state, &session.principal, &path, SERIAL_PERMISSION).await?;
    let (contents, next) = compute::console::read(&state, &i, q.start).await;
    let running = matches!(
        i.status,
        InstanceStatus::Provisioning | InstanceStatus::Running
    );
    Ok(Json(json!({
        "contents": contents,
        "next": next,
        "running": running,
        "status": i.status.as_str(),
    })))
}
