//! Audit entries: one authorization decision each, recorded append-only.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Assigned by the store; 0 before the entry is appended.
    #[serde(default)]
    pub id: i64,
    /// RFC 3339, UTC.
    pub time: String,
    /// The member string of who asked (`user:…`, `serviceAccount:…`, `principal://…`).
    pub principal: String,
    /// The permission checked, or an action name for non-IAM events (e.g. `auth.login`).
    pub permission: String,
    /// The resource name (`projects/primus-bank`).
    pub resource: String,
    pub decision: Decision,
    /// Why: the role that granted, or what was missing.
    pub reason: String,
    /// The project the resource belongs to (`projects/P`), where it has one; lets a
    /// project's owners find decisions on resources not named under it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
}
