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
    /// The attested workload the decision is about: the `sub` of a verified attestation token
    /// (an instance's URL), on token issuance and on exchanges of a token whose signature
    /// held. Never taken from an unverified token, so no caller can file entries under
    /// another's instance. Links an instance to decisions in other projects' logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// The structured record of a decision, by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum AuditDetails {
    TokenExchange(ExchangeDetails),
    AttestationToken(AttestationDetails),
}

impl AuditDetails {
    /// The attested workload the decision is about: the `sub` of claims this server, as
    /// `issuer`, signed (a token it issued, or one exchanged once its signature held), else
    /// none. An exchanged token of another issuer names no workload: a tenant with an issuer
    /// of their own may put any instance's URL in `sub`.
    pub fn subject(&self, issuer: &str) -> Option<String> {
        let ours = |claims: &serde_json::Value| {
            claims["iss"].as_str().map(|i| i.trim_end_matches('/'))
                == Some(issuer.trim_end_matches('/'))
        };
        let claims = match self {
            AuditDetails::TokenExchange(e) => e.claims.as_ref().filter(|c| ours(c))?,
            AuditDetails::AttestationToken(a) => &a.claims,
        };
        claims["sub"].as_str().map(str::to_owned)
    }
}

/// An attestation token as issued: its claims (never the signed token, which is a
/// credential), so the trust chain shows what the workload proved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationDetails {
    pub claims: serde_json::Value,
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
    /// The claims of the subject token, when its signature held (never the token or its
    /// signature): what a condition can be tried against before it is saved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<serde_json::Value>,
}

impl ExchangeDetails {
    /// What the workload presented on the clauses that refused it: each claim a failing clause
    /// compared, with its value — what an owner would authorize (an image digest, a support
    /// attribute) to accept this workload. Empty when the exchange passed.
    pub fn fixes(&self) -> Vec<&ComparedValue> {
        self.clauses
            .iter()
            .filter(|c| c.outcome != ClauseOutcome::Pass)
            .flat_map(|c| &c.compared)
            .filter(|v| is_claim(&v.expression))
            .collect()
    }

    /// The first clause that did not pass.
    pub fn failing_clause(&self) -> Option<&ClauseVerdict> {
        self.clauses
            .iter()
            .find(|c| c.outcome != ClauseOutcome::Pass)
    }
}

/// An expression over the token's claims or the attributes mapped from them (not a literal).
pub fn is_claim(expression: &str) -> bool {
    ["assertion.", "attribute.", "google."]
        .iter()
        .any(|p| expression.starts_with(p))
}

impl ClauseOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ClauseOutcome::Pass => "PASS",
            ClauseOutcome::Fail => "FAIL",
            ClauseOutcome::Error => "ERROR",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_this_servers_tokens_name_their_workload() {
        let exchanged = |iss: &str| {
            AuditDetails::TokenExchange(ExchangeDetails {
                provider: "projects/1/locations/global/workloadIdentityPools/p/providers/v".into(),
                failure: None,
                attribute_condition: None,
                clauses: Vec::new(),
                claims: Some(json!({"iss": iss, "sub": "https://c/instances/vm"})),
            })
        };
        let issued = AuditDetails::AttestationToken(AttestationDetails {
            claims: json!({"iss": "https://c", "sub": "https://c/instances/vm"}),
        });
        let vm = Some("https://c/instances/vm".to_owned());
        for (details, subject) in [
            (exchanged("https://c"), vm.clone()),
            (exchanged("https://c/"), vm.clone()),
            (exchanged("https://tenant.example"), None),
            (issued, vm),
        ] {
            assert_eq!(details.subject("https://c"), subject, "{details:?}");
        }
    }
}
