//! `cloister audit list`: read the audit log with filters.

use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

use super::Context;
use super::format::{ListArgs, default_columns, print_list};

/// How many entries a list reads when `--limit` does not say.
const DEFAULT_LIMIT: usize = 100;

/// The default table's columns; `--filter` and `--sort-by` may name them too.
const COLUMNS: &[(&str, &str)] = &[
    ("TIME", "time"),
    ("DECISION", "decision"),
    ("PRINCIPAL", "principal"),
    ("PERMISSION", "permission"),
    ("RESOURCE", "resource"),
    ("REASON", "reason"),
];

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Decisions, oldest first. Non-admins must pass --project (or --resource under a project).
    /// At most --limit entries (100 unless given) are listed.
    List {
        /// Only decisions about this principal (`user:…`, `serviceAccount:…`).
        #[arg(long)]
        principal: Option<String>,
        /// Only decisions on this permission.
        #[arg(long)]
        permission: Option<String>,
        /// Only decisions on this resource and everything under it.
        #[arg(long, conflicts_with = "project")]
        resource: Option<String>,
        /// Shorthand for --resource projects/PROJECT.
        #[arg(long)]
        project: Option<String>,
        /// allow or deny.
        #[arg(long)]
        decision: Option<String>,
        /// Only decisions at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
}

pub async fn run(ctx: &mut Context, c: AuditCommand) -> Result<()> {
    let AuditCommand::List {
        principal,
        permission,
        resource,
        project,
        decision,
        since,
        mut list,
    } = c;
    let client = ctx.client().await?;
    let resource = resource.or(project.map(|p| format!("projects/{p}")));
    let query: Vec<(&str, String)> = [
        ("principal", principal),
        ("permission", permission),
        ("resource", resource),
        ("decision", decision),
        ("since", since),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| (k, v)))
    .collect();
    let limit = *list.limit.get_or_insert(DEFAULT_LIMIT);
    // Without --sort-by, reading stops once `limit` entries pass the filter; sorting needs
    // them all.
    let columns = default_columns(COLUMNS);
    let wanted = |entries: &[Value]| match &list.filter {
        _ if !list.sort_by.is_empty() => false,
        None => entries.len() >= limit,
        Some(f) => entries.iter().filter(|e| f.matches(e, &columns)).count() >= limit,
    };
    let unfiltered = list.filter.is_none() && list.sort_by.is_empty();
    let mut entries = Vec::new();
    let mut token: Option<String> = None;
    while !wanted(&entries) {
        let mut q = query.clone();
        let page = if unfiltered {
            limit.saturating_sub(entries.len()).clamp(1, 1000)
        } else {
            1000
        };
        q.push(("pageSize", page.to_string()));
        if let Some(t) = &token {
            q.push(("pageToken", t.clone()));
        }
        let resp = client.get_query("/cloister/v1/auditLogs", &q).await?;
        entries.extend(resp["entries"].as_array().cloned().unwrap_or_default());
        match resp["nextPageToken"].as_str() {
            Some(t) => token = Some(t.to_owned()),
            None => break,
        }
    }
    print_list(&ctx.format, &list, entries, COLUMNS)
}
