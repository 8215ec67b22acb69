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
    /// What the decision weighed, for decisions richer than one IAM check (a token exchange's
    /// clauses), so an owner can see why without the request that caused it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<AuditDetails>,
}

/// The structured record of a decision, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AuditDetails {
    TokenExchange(ExchangeDetails),
}

/// A token exchange as the provider judged it. Never the token itself: only the claims its
/// condition compared, as the clauses show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExchangeDetails {
    /// The provider's resource name (`projects/N/locations/global/workloadIdentityPools/…`).
    pub provider: String,
    /// Why the token was refused before its condition was evaluated (signature, audience,
    /// expiry, mapping), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// The provider's attribute condition at the time, if it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_condition: Option<String>,
    /// Each top-level clause of the condition, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clauses: Vec<ClauseVerdict>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ClauseOutcome {
    Pass,
    Fail,
    /// The clause could not be evaluated (a missing claim, a type error).
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClauseVerdict {
    /// The clause's source text.
    pub clause: String,
    pub outcome: ClauseOutcome,
    /// The evaluation error, for `Error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// For a comparison, each side's expression and the value it had.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<ComparedValue>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComparedValue {
    pub expression: String,
    pub value: serde_json::Value,
}
