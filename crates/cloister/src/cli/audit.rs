//! `cloister audit list`: read the audit log with filters.

use anyhow::Result;
use clap::Subcommand;

use super::Context;
use super::format::print_list;

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Decisions, oldest first. Non-admins must pass --project (or --resource under a project).
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
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
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
        limit,
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
    let mut entries = Vec::new();
    let mut token: Option<String> = None;
    while entries.len() < limit {
        let mut q = query.clone();
        q.push(("pageSize", (limit - entries.len()).min(1000).to_string()));
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
    print_list(
        &ctx.format,
        &entries,
        &[
            ("TIME", "time"),
            ("DECISION", "decision"),
            ("PRINCIPAL", "principal"),
            ("PERMISSION", "permission"),
            ("RESOURCE", "resource"),
            ("REASON", "reason"),
        ],
    )
}
