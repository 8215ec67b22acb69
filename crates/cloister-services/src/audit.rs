//! `GET /cloister/v1/auditLogs`: reading the append-only log of decisions.
//!
//! Platform admins read everything. Anyone else must name a project (`resource=projects/P`)
//! and hold `logging.privateLogEntries.list` on it, as Google gates its data-access logs.
//! `GET /cloister/v1/auditLogs/ID` reads one entry under the same rule, applied to the entry's
//! project; to anyone else, an entry they may not read and one that does not exist look alike.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::{AuditEntry, Decision, Principal};
use cloister_store::AuditFilter;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloister/v1/auditLogs", get(list))
        .route("/cloister/v1/auditLogs/{id}", get(describe))
}

/// The permission that reads a project's audit log.
pub const READ_LOG: &str = "logging.privateLogEntries.list";

pub const MAX_PAGE: usize = 1000;

/// A listing's filters, as the API's query string and the console's form name them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListQuery {
    pub principal: Option<String>,
    pub permission: Option<String>,
    pub resource: Option<String>,
    pub decision: Option<String>,
    pub since: Option<String>,
    pub before: Option<String>,
    pub page_size: Option<usize>,
    pub page_token: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let (entries, next) = read(&state, &caller, q).await?;
    Ok(Json(json!({ "entries": entries, "nextPageToken": next })))
}

/// One page of the entries `caller` may read that match `q`, and the next page's token.
/// Refuses a non-admin who names no project or may not read its log.
pub async fn read(
    state: &AppState,
    caller: &Principal,
    q: ListQuery,
) -> Result<(Vec<AuditEntry>, Option<String>), ApiError> {
    let decision = match q.decision.as_deref() {
        None | Some("") => None,
        Some(d) => Some(Decision::parse(&d.to_ascii_lowercase()).ok_or_else(|| {
            ApiError::InvalidArgument(format!("decision {d:?} must be allow or deny"))
        })?),
    };
    let after_id = match q.page_token.as_deref() {
        None | Some("") => None,
        Some(t) => Some(t.parse::<i64>().map_err(|_| {
            ApiError::InvalidArgument(format!("pageToken {t:?} is not one this API returned"))
        })?),
    };
    for (name, time) in [("since", &q.since), ("before", &q.before)] {
        if let Some(t) = time {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|e| {
                    ApiError::InvalidArgument(format!(
                        "{name} {t:?} is not an RFC 3339 time ({e}), e.g. 2026-11-24T09:00:00Z"
                    ))
                })?;
        }
    }
    if !is_admin(state, caller).await? {
        let Some(project) = q.resource.as_deref().filter(|r| r.starts_with("projects/")) else {
            return Err(ApiError::PermissionDenied {
                message: format!(
                    "{caller} is not a platform admin: name a project to read its audit log (--resource projects/PROJECT)"
                ),
                permission: READ_LOG.into(),
                resource: "platform".into(),
            });
        };
        let project = project.split('/').take(2).collect::<Vec<_>>().join("/");
        state.authorizer.check(caller, READ_LOG, &project).await?;
    }
    let limit = q.page_size.unwrap_or(100).clamp(1, MAX_PAGE);
    let filter = AuditFilter {
        principal: q.principal,
        permission: q.permission,
        resource_prefix: q.resource,
        decision,
        since: q.since,
        before: q.before,
        subject: None,
        after_id,
        limit,
    };
    let entries = state.store.list_audit(&filter).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.id.to_string()))
        .flatten();
    Ok((entries, next))
}

async fn describe(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "audit entry id {id:?} is not a number: use the ID column of `cloister audit list`"
        ))
    })?;
    Ok(Json(json!(read_one(&state, &caller, id).await?)))
}

/// The entry `id`, if `caller` may read it: a platform admin, or whoever may read its
/// project's log. To anyone else, an entry they may not read and one that does not exist
/// look alike.
pub async fn read_one(
    state: &AppState,
    caller: &Principal,
    id: i64,
) -> Result<AuditEntry, ApiError> {
    let entry = state.store.get_audit(id).await?;
    if is_admin(state, caller).await? {
        return entry.ok_or_else(|| ApiError::NotFound(format!("Audit entry {id} was not found")));
    }
    let hidden = || ApiError::PermissionDenied {
        message: format!(
            "Permission '{READ_LOG}' denied on audit entry {id} (or it may not exist): \
             ask an owner of its project for roles/logging.privateLogViewer"
        ),
        permission: READ_LOG.into(),
        resource: format!("auditLogs/{id}"),
    };
    let Some(entry) = entry else {
        return Err(hidden());
    };
    let Some(project) = entry_project(&entry) else {
        return Err(hidden());
    };
    match state.authorizer.check(caller, READ_LOG, &project).await {
        Ok(_) => Ok(entry),
        Err(ApiError::PermissionDenied { .. }) => Err(hidden()),
        Err(e) => Err(e),
    }
}

/// The project whose log holds `entry`: the one it records, else the one its resource names.
pub fn entry_project(entry: &AuditEntry) -> Option<String> {
    entry.project.clone().or_else(|| {
        let mut parts = entry.resource.split('/');
        match (parts.next(), parts.next()) {
            (Some("projects"), Some(p)) if !p.is_empty() && p != "_" => {
                Some(format!("projects/{p}"))
            }
            _ => None,
        }
    })
}

pub async fn is_admin(state: &AppState, caller: &Principal) -> Result<bool, ApiError> {
    let Principal::User(email) = caller else {
        return Ok(false);
    };
    Ok(state.store.get_user(email).await?.is_some_and(|u| u.admin))
}
