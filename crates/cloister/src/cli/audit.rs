//! `cloister audit list` reads the audit log with filters; `cloister audit describe ID` shows
//! one entry, and for a token exchange each clause of the provider's condition with what it
//! compared: a pool's owner sees why a workload was refused without ever holding its token.

use anyhow::Result;
use clap::Subcommand;
use cloister_domain::AuditDetails;
use serde_json::Value;

use super::Context;
use super::format::{Kind, ListArgs, default_columns, print_list, print_one};
use super::output::outln;

/// How many entries a list reads when `--limit` does not say.
const DEFAULT_LIMIT: usize = 100;

/// The default table's columns; `--filter` and `--sort-by` may name them too.
const COLUMNS: &[(&str, &str)] = &[
    ("ID", "id"),
    ("TIME", "time"),
    ("DECISION", "decision"),
    ("PRINCIPAL", "principal"),
    ("PERMISSION", "permission"),
    ("RESOURCE", "resource"),
    // Whole in `--format json` and in `audit describe`.
    ("REASON", "reason.trailoff(60)"),
];

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Decisions, oldest first. Non-admins must pass --project (or --resource under a project).
    /// At most --limit entries (100 unless given) are listed.
    List(Box<ListFlags>),
    /// One entry, by the ID `audit list` shows; a token exchange's clauses with PASS/FAIL and
    /// the values compared.
    Describe {
        /// The entry's ID.
        id: i64,
    },
}

#[derive(Debug, clap::Args)]
pub struct ListFlags {
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
    /// Only decisions before this RFC 3339 time.
    #[arg(long)]
    before: Option<String>,
    #[command(flatten)]
    list: ListArgs,
}

pub async fn run(ctx: &mut Context, c: AuditCommand) -> Result<()> {
    match c {
        AuditCommand::List(flags) => list(ctx, *flags).await,
        AuditCommand::Describe { id } => describe(ctx, id).await,
    }
}

async fn list(ctx: &mut Context, flags: ListFlags) -> Result<()> {
    let ListFlags {
        principal,
        permission,
        resource,
        project,
        decision,
        since,
        before,
        mut list,
    } = flags;
    let client = ctx.client().await?;
    let resource = resource.or(project.map(|p| format!("projects/{p}")));
    let query: Vec<(&str, String)> = [
        ("principal", principal),
        ("permission", permission),
        ("resource", resource),
        ("decision", decision),
        ("since", since),
        ("before", before),
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

async fn describe(ctx: &mut Context, id: i64) -> Result<()> {
    let client = ctx.client().await?;
    let entry = client.get(&format!("/cloister/v1/auditLogs/{id}")).await?;
    if ctx.format.kind == Kind::Default {
        Ok(print_entry(&entry)?)
    } else {
        print_one(&ctx.format, &entry)
    }
}

/// A field of the entry, safe to print on a terminal.
fn text(v: &Value) -> String {
    let text = v
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string());
    super::output::printable(&text).into_owned()
}

/// Text from the entry, safe to print on a terminal.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    super::output::printable(text)
}

/// The entry as readable text: who, what, the decision, and for a token exchange each clause.
fn print_entry(e: &Value) -> std::io::Result<()> {
    outln!("id:         {}", text(&e["id"]))?;
    outln!("time:       {}", text(&e["time"]))?;
    outln!("decision:   {}", text(&e["decision"]).to_uppercase())?;
    outln!("principal:  {}", text(&e["principal"]))?;
    outln!("permission: {}", text(&e["permission"]))?;
    outln!("resource:   {}", text(&e["resource"]))?;
    outln!("reason:     {}", text(&e["reason"]))?;
    if e["subject"].is_string() {
        outln!("workload:   {}", text(&e["subject"]))?;
    }
    let details = serde_json::from_value::<AuditDetails>(e["details"].clone());
    let Ok(AuditDetails::TokenExchange(x)) = details else {
        return Ok(());
    };
    outln!("provider:   {}", shown(&x.provider))?;
    if let Some(failure) = &x.failure {
        let failure = shown(failure);
        outln!("the token was refused before the condition was evaluated: {failure}")?;
    }
    if let Some(condition) = &x.attribute_condition {
        outln!("attribute condition: {}", shown(&one_line(condition)))?;
    }
    for clause in &x.clauses {
        let detail = clause
            .detail
            .as_deref()
            .map(|d| format!(" ({})", shown(d)))
            .unwrap_or_default();
        outln!(
            "{:<5} {}{detail}",
            clause.outcome.as_str(),
            shown(&one_line(&clause.clause))
        )?;
        for compared in &clause.compared {
            outln!(
                "        {} = {}",
                shown(&compared.expression),
                compared.value
            )?;
        }
    }
    // The explanation the console shows too (`ExchangeDetails::fixes`).
    let fixes = x.fixes();
    if !fixes.is_empty() {
        outln!("to accept this workload, the condition must allow what it presented:")?;
        for fix in fixes {
            outln!("        {} = {}", shown(&fix.expression), fix.value)?;
        }
        outln!(
            "(change it with `cloister iam workload-identity-pools providers update-oidc … --attribute-condition …`)"
        )?;
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
