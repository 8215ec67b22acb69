//! The audit log: every decision, append-only (triggers refuse updates and deletes).

use cloister_domain::{AuditEntry, Decision};

use crate::db::{Row, int, placeholders, query};
use crate::error::StoreError;
use crate::store::Store;

/// Filters for `list_audit`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub permission: Option<String>,
    /// Matches the resource itself and everything under it (`projects/p` matches
    /// `projects/p/serviceAccounts/…`), and entries whose project it is.
    pub resource_prefix: Option<String>,
    pub decision: Option<Decision>,
    /// Only entries at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only entries before this RFC 3339 time.
    pub before: Option<String>,
    /// Only entries about this attested workload (an instance's URL).
    pub subject: Option<String>,
    /// Only entries with an id above this, for paging.
    pub after_id: Option<i64>,
    pub limit: usize,
}

const COLUMNS: &str =
    "time, principal, permission, resource, decision, reason, project, details, subject";

/// Rows per INSERT: well under both databases' limit on a statement's parameters.
const ROWS_PER_INSERT: usize = 100;

fn audit_row(r: &Row) -> Result<AuditEntry, StoreError> {
    let decision = r.text(5)?;
    Ok(AuditEntry {
        id: r.int(0)?,
        time: r.text(1)?,
        principal: r.text(2)?,
        permission: r.text(3)?,
        resource: r.text(4)?,
        decision: Decision::parse(&decision)
            .ok_or_else(|| StoreError::corrupt("audit decision", &decision))?,
        reason: r.text(6)?,
        project: r.get(7)?,
        details: r
            .get::<Option<String>>(8)?
            .map(|d| serde_json::from_str(&d).map_err(|e| StoreError::corrupt("audit details", e)))
            .transpose()?,
        subject: r.get(9)?,
    })
}

impl Store {
    /// Appends decisions in one transaction (callers batch them to share one disk sync).
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                for chunk in entries.chunks(ROWS_PER_INSERT) {
                    let values: Vec<String> = (0..chunk.len())
                        .map(|i| format!("({})", placeholders(i * 9 + 1, 9)))
                        .collect();
                    let mut q = query(format!(
                        "INSERT INTO audit_log ({COLUMNS}) VALUES {}",
                        values.join(", ")
                    ));
                    for e in chunk {
                        let details = e
                            .details
                            .as_ref()
                            .map(serde_json::to_string)
                            .transpose()
                            .map_err(|e| {
                                StoreError::Unusable(format!("an audit entry's details: {e}"))
                            })?;
                        q = q
                            .bind(&e.time)
                            .bind(&e.principal)
                            .bind(&e.permission)
                            .bind(&e.resource)
                            .bind(e.decision.as_str())
                            .bind(&e.reason)
                            .bind(e.project.as_ref())
                            .bind(details)
                            .bind(e.subject.as_ref());
                    }
                    tx.execute(q).await?;
                }
                Ok(())
            })
            .await
    }

    /// The entry with this id, if there is one.
    pub async fn get_audit(&self, id: i64) -> Result<Option<AuditEntry>, StoreError> {
        let q = query(format!("SELECT id, {COLUMNS} FROM audit_log WHERE id = $1")).bind(id);
        self.db.one(q, audit_row).await
    }

    pub async fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        let under = f.resource_prefix.as_ref().map(|p| format!("{p}/"));
        let q = query(format!(
            "SELECT id, {COLUMNS} FROM audit_log
             WHERE (CAST($1 AS TEXT) IS NULL OR principal = $1)
               AND (CAST($2 AS TEXT) IS NULL OR permission = $2)
               AND (CAST($3 AS TEXT) IS NULL OR resource = $3 OR project = $3
                    OR substr(resource, 1, length($4)) = $4)
               AND (CAST($5 AS TEXT) IS NULL OR decision = $5)
               AND (CAST($6 AS TEXT) IS NULL OR time >= $6)
               AND (CAST($7 AS TEXT) IS NULL OR time < $7)
               AND (CAST($8 AS TEXT) IS NULL OR subject = $8)
               AND id > $9
             ORDER BY id LIMIT $10"
        ))
        .bind(f.principal.as_ref())
        .bind(f.permission.as_ref())
        .bind(f.resource_prefix.as_ref())
        .bind(under)
        .bind(f.decision.map(Decision::as_str))
        .bind(f.since.as_ref())
        .bind(f.before.as_ref())
        .bind(f.subject.as_ref())
        .bind(f.after_id.unwrap_or(0))
        .bind(int(f.limit as u64)?);
        self.db.all(q, audit_row).await
    }
}
