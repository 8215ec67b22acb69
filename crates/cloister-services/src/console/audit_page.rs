//! The audit log in the console: filter by project, principal, decision, permission and time;
//! an entry opens its explanation (a token exchange's clauses and the fix); export as JSON or
//! CSV under the same filters. The same reads as `GET /cloister/v1/auditLogs` and the same
//! rule ([`crate::audit::read`]): a platform admin reads everything, anyone else one project's
//! log at a time, with `logging.privateLogEntries.list` on it.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use cloister_domain::{AuditDetails, AuditEntry};
use serde::{Deserialize, Serialize};

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::Session;
use super::trust::{CallRow, ExchangeRow, call_row, chain_path, exchange_row};
use crate::audit::{self, ListQuery, MAX_PAGE, entry_project, is_admin};
use crate::error::ApiError;
use crate::state::AppState;

/// Entries one page shows.
const PAGE: usize = 100;
/// Most entries one export holds; narrow the filters (or page the API) for more.
const MAX_EXPORT: usize = 10_000;

/// The filter form's fields (empty means any), and the page token of a "next" link.
#[derive(Debug, Default, Clone, Deserialize, Serialize)]
pub struct Filters {
    #[serde(default)]
    project: String,
    #[serde(default)]
    principal: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    permission: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    before: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    page: String,
}

impl Filters {
    fn query(&self, page_size: usize) -> ListQuery {
        let some = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
        ListQuery {
            principal: some(&self.principal),
            permission: some(&self.permission),
            resource: some(&self.project).map(|p| format!("projects/{p}")),
            decision: some(&self.decision),
            since: some(&self.since),
            before: some(&self.before),
            page_size: Some(page_size),
            page_token: some(&self.page),
        }
    }

    /// The query string that reproduces these filters (without the page).
    fn encoded(&self) -> String {
        let without_page = Filters {
            page: String::new(),
            ..self.clone()
        };
        serde_urlencoded::to_string(&without_page).unwrap_or_default()
    }

    /// The CLI command that lists the same entries.
    fn command(&self) -> String {
        let mut cmd = String::from("cloister audit list");
        for (flag, value) in [
            ("project", &self.project),
            ("principal", &self.principal),
            ("decision", &self.decision),
            ("permission", &self.permission),
            ("since", &self.since),
            ("before", &self.before),
        ] {
            if !value.trim().is_empty() {
                cmd.push_str(&format!(
                    " --{flag} '{}'",
                    value.trim().replace('\'', "'\\''")
                ));
            }
        }
        cmd
    }
}

/// The audit page's link to `principal`'s entries in `entry`'s project from `entry`'s time.
pub fn link(entry: &AuditEntry, principal: &str) -> String {
    let filters = Filters {
        project: entry_project(entry)
            .and_then(|p| p.strip_prefix("projects/").map(str::to_owned))
            .unwrap_or_default(),
        principal: principal.to_owned(),
        since: entry.time.clone(),
        ..Default::default()
    };
    format!("/console/audit?{}", filters.encoded())
}

struct EntryRow {
    call: CallRow,
    chain: Option<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct AuditPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    filters: &'a Filters,
    query: String,
    command: String,
    /// `None` until a project is chosen (a non-admin reads one project's log at a time).
    entries: Option<Vec<EntryRow>>,
    next: Option<String>,
}

pub async fn list(
    State(state): State<AppState>,
    session: Session,
    Query(filters): Query<Filters>,
) -> Result<Response, PageError> {
    let viewer = &session.principal;
    let chosen = !filters.project.trim().is_empty() || is_admin(&state, viewer).await?;
    let (entries, next) = if chosen {
        let (entries, next) = audit::read(&state, viewer, filters.query(PAGE)).await?;
        let rows = entries
            .iter()
            .map(|e| EntryRow {
                call: call_row(e),
                chain: e.subject.as_deref().and_then(chain_path),
            })
            .collect();
        let next = next.map(|token| {
            let page = Filters {
                page: token,
                ..filters.clone()
            };
            format!(
                "/console/audit?{}",
                serde_urlencoded::to_string(&page).unwrap_or_default()
            )
        });
        (Some(rows), next)
    } else {
        (None, None)
    };
    let user = user_name(viewer);
    Ok(render(&AuditPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        filters: &filters,
        query: filters.encoded(),
        command: filters.command(),
        entries,
        next,
    }))
}

#[derive(Template)]
#[template(path = "console/audit_entry.html")]
struct EntryPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    entry: CallRow,
    project: Option<String>,
    subject: Option<String>,
    chain: Option<String>,
    exchange: Option<ExchangeRow>,
    claims: Option<String>,
}

/// One entry and, for a token exchange, why: each clause, and the fix for a refusal.
pub async fn entry(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let id: i64 = id.parse().map_err(|_| {
        ApiError::InvalidArgument(format!(
            "audit entry id {id:?} is not a number: open entries from the audit log's list"
        ))
    })?;
    let e = audit::read_one(&state, &session.principal, id).await?;
    let (exchange, claims) = match &e.details {
        Some(AuditDetails::TokenExchange(x)) => (Some(exchange_row(&e, x)), None),
        Some(AuditDetails::AttestationToken(a)) => {
            (None, serde_json::to_string_pretty(&a.claims).ok())
        }
        None => (None, None),
    };
    let user = user_name(&session.principal);
    Ok(render(&EntryPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        project: entry_project(&e),
        subject: e.subject.clone(),
        chain: e.subject.as_deref().and_then(chain_path),
        entry: call_row(&e),
        exchange,
        claims,
    }))
}

/// Every entry the filters match (up to [`MAX_EXPORT`]), as a download.
pub async fn export(
    State(state): State<AppState>,
    session: Session,
    Path(format): Path<String>,
    Query(filters): Query<Filters>,
) -> Result<Response, PageError> {
    let csv = match format.as_str() {
        "audit.json" => false,
        "audit.csv" => true,
        other => {
            return Err(ApiError::NotFound(format!(
                "{other:?} is not an export: audit.json or audit.csv"
            ))
            .into());
        }
    };
    let mut filters = filters;
    let mut entries = Vec::new();
    loop {
        let (page, next) = audit::read(&state, &session.principal, filters.query(MAX_PAGE)).await?;
        entries.extend(page);
        match next {
            Some(token) if entries.len() < MAX_EXPORT => filters.page = token,
            _ => break,
        }
    }
    entries.truncate(MAX_EXPORT);
    let (body, content_type) = if csv {
        (to_csv(&entries)?, "text/csv; charset=utf-8")
    } else {
        let json = serde_json::to_string_pretty(&serde_json::json!({ "entries": entries }))
            .map_err(|e| ApiError::Internal(format!("the export: {e}")))?;
        (json, "application/json")
    };
    Ok((
        [
            (CONTENT_TYPE, content_type.to_owned()),
            (
                CONTENT_DISPOSITION,
                format!("attachment; filename=\"{format}\""),
            ),
        ],
        body,
    )
        .into_response())
}

fn to_csv(entries: &[AuditEntry]) -> Result<String, ApiError> {
    let failed = |e: csv::Error| ApiError::Internal(format!("the CSV export: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "id",
        "time",
        "decision",
        "principal",
        "permission",
        "resource",
        "project",
        "subject",
        "reason",
        "details",
    ])
    .map_err(failed)?;
    for e in entries {
        let details = e
            .details
            .as_ref()
            .and_then(|d| serde_json::to_string(d).ok())
            .unwrap_or_default();
        let cells = [
            e.id.to_string(),
            e.time.clone(),
            e.decision.as_str().to_owned(),
            e.principal.clone(),
            e.permission.clone(),
            e.resource.clone(),
            e.project.clone().unwrap_or_default(),
            e.subject.clone().unwrap_or_default(),
            e.reason.clone(),
            details,
        ];
        w.write_record(cells.iter().map(|c| inert(c)))
            .map_err(failed)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("the CSV export: {e}")))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A cell a spreadsheet will not run as a formula: anyone can put text in the log (a refused
/// token's subject, a reason), so a leading `=`, `+`, `-`, `@`, tab or CR gets a `'` first
/// (OWASP's advice for CSV injection).
fn inert(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::inert;

    #[test]
    fn cells_a_spreadsheet_would_run_get_a_quote() {
        for (cell, exported) in [
            (
                "=HYPERLINK(\"http://evil\")",
                "'=HYPERLINK(\"http://evil\")",
            ),
            ("+1", "'+1"),
            ("-1", "'-1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("subject:=x", "subject:=x"),
            ("user:alice@example.com", "user:alice@example.com"),
        ] {
            assert_eq!(inert(cell), exported, "{cell:?}");
        }
    }
}
