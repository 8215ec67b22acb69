//! The one place permissions are decided: default deny, bindings inherited from ancestors,
//! and every decision written to the audit log.

use std::sync::Arc;

use cloister_domain::{AuditDetails, AuditEntry, Decision, Permission, Principal, role};
use cloister_store::Store;

use crate::audit_log::AuditLog;
use crate::error::ApiError;
use crate::time_util;

/// Resource hierarchies are shallow (project → resource → child); a longer chain means a
/// corrupt parent link, not a real hierarchy.
const MAX_DEPTH: usize = 8;

#[derive(Clone)]
pub struct Authorizer {
    store: Arc<Store>,
    audit: AuditLog,
    /// This server's issuer (its public URL): exchanged tokens it signed name their workload.
    issuer: String,
}

/// Why a permission is held: which role, bound on which resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: String,
    pub bound_on: String,
}

impl Authorizer {
    /// Starts the audit log's writer task: call it inside the runtime.
    pub fn new(store: Arc<Store>, issuer: String) -> Self {
        Self {
            audit: AuditLog::start(Arc::clone(&store)),
            store,
            issuer,
        }
    }

    /// Allows or refuses `permission` on `resource` for `principal`, and records the decision.
    pub async fn check(
        &self,
        principal: &Principal,
        permission: Permission,
        resource: &str,
    ) -> Result<Grant, ApiError> {
        let chain = policy_chain(&self.store, resource).await?;
        let grant = grant_in(&chain, principal, permission);
        let (decision, reason) = match &grant {
            Some(g) => (
                Decision::Allow,
                format!("granted by {} bound on {}", g.role, g.bound_on),
            ),
            None => (
                Decision::Deny,
                format!(
                    "no role granting {permission} is bound to {principal} on {resource} or its ancestors"
                ),
            ),
        };
        let entry = AuditEntry {
            id: 0,
            time: time_util::now_rfc3339(),
            principal: principal.to_string(),
            permission: permission.to_owned(),
            resource: resource.to_owned(),
            decision,
            reason,
            project: owning_project(&chain),
            details: None,
            subject: None,
        };
        self.audit.record(entry).await;
        grant.ok_or_else(|| denied(principal, permission, resource))
    }

    /// For each permission, the grant that gives it to `principal` on `resource`, if any.
    /// Reads the policy chain once. Records nothing: callers use this to filter lists and to
    /// answer `testIamPermissions`, which are questions, not accesses.
    pub async fn grants(
        &self,
        principal: &Principal,
        permissions: &[Permission],
        resource: &str,
    ) -> Result<Vec<Option<Grant>>, ApiError> {
        let chain = policy_chain(&self.store, resource).await?;
        Ok(permissions
            .iter()
            .map(|p| grant_in(&chain, principal, p))
            .collect())
    }

    /// Whether `principal` holds `permission` on `resource`: a question, recorded as nothing
    /// (the console asks it before showing a section, so a page view leaves no refusal for
    /// each section it hides; the access itself then goes through [`check`](Self::check)).
    pub async fn holds(
        &self,
        principal: &Principal,
        permission: Permission,
        resource: &str,
    ) -> Result<bool, ApiError> {
        let grants = self.grants(principal, &[permission], resource).await?;
        Ok(grants.first().is_some_and(Option::is_some))
    }

    /// Appends an audit entry (durably, before returning); a failure to write it is logged,
    /// never shown to the caller.
    pub async fn record(
        &self,
        principal: String,
        permission: &str,
        resource: &str,
        decision: Decision,
        reason: String,
    ) {
        self.record_detailed(principal, permission, resource, decision, reason, None)
            .await
    }

    /// [`record`](Self::record) with what the decision weighed; verified claims in it link
    /// the entry to their workload (see [`AuditDetails::subject`]).
    pub async fn record_detailed(
        &self,
        principal: String,
        permission: &str,
        resource: &str,
        decision: Decision,
        reason: String,
        details: Option<AuditDetails>,
    ) {
        let project = match policy_chain(&self.store, resource).await {
            Ok(chain) => owning_project(&chain),
            Err(_) => None,
        };
        let entry = AuditEntry {
            id: 0,
            time: time_util::now_rfc3339(),
            principal: bounded(principal, MAX_AUDITED_NAME),
            permission: permission.to_owned(),
            resource: bounded(resource.to_owned(), MAX_AUDITED_NAME),
            decision,
            reason: bounded(reason, MAX_AUDITED_REASON),
            project,
            subject: details.as_ref().and_then(|d| d.subject(&self.issuer)),
            details,
        };
        self.audit.record(entry).await;
    }
}

/// Anonymous callers choose some audited names (a refused credential's `client_id`, an
/// unverified token's `sub`): the log keeps enough to recognise them, not megabytes of them.
const MAX_AUDITED_NAME: usize = 512;
pub(crate) const MAX_AUDITED_REASON: usize = 4096;

/// `text` cut to at most `max` bytes (at a character boundary), saying how much was cut.
pub(crate) fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let cut = (0..=max)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    let dropped = text.len() - cut;
    text.truncate(cut);
    text.push_str(&format!("… ({dropped} more bytes not kept)"));
    text
}

type PolicyChain = Vec<(String, cloister_domain::Policy)>;

/// The first role in the chain (nearest resource first) that gives `permission`.
fn grant_in(chain: &PolicyChain, principal: &Principal, permission: &str) -> Option<Grant> {
    chain.iter().find_map(|(on, policy)| {
        policy
            .role_granting(principal, permission)
            .map(|role| Grant {
                role: role.to_owned(),
                bound_on: on.clone(),
            })
    })
}

/// The project (`projects/P`) in a resource's ancestry, for the audit entry.
fn owning_project(chain: &PolicyChain) -> Option<String> {
    chain
        .iter()
        .map(|(name, _)| name)
        .find(|name| {
            name.strip_prefix("projects/")
                .is_some_and(|p| !p.is_empty() && p != "_" && !p.contains('/'))
        })
        .cloned()
}

async fn policy_chain(store: &Store, resource: &str) -> Result<PolicyChain, ApiError> {
    let mut chain = Vec::new();
    let mut next = Some(resource.to_owned());
    while let Some(name) = next.take() {
        if chain.len() == MAX_DEPTH {
            // The parent links stored in the database loop or run too deep: not the caller's
            // fault, and nothing they can fix (the log has the detail).
            return Err(ApiError::Internal(format!(
                "resource hierarchy above {resource} is deeper than {MAX_DEPTH}: a stored \
                 parent link is corrupt"
            )));
        }
        let (policy, parent) = store.get_policy(&name).await?;
        // A resource without a stored policy (not created, or deleted) still sits under its
        // project, so the project's owners get a 404 for it rather than a 403.
        next = parent.or_else(|| implied_parent(&name));
        chain.push((name, policy));
    }
    Ok(chain)
}

/// `projects/P/anything…` lies under `projects/P`.
fn implied_parent(resource: &str) -> Option<String> {
    let mut parts = resource.splitn(3, '/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("projects"), Some(project), Some(_)) => Some(format!("projects/{project}")),
        _ => None,
    }
}

/// The 403 a caller sees: what was denied, on what, and how to get it.
pub fn denied(principal: &Principal, permission: &str, resource: &str) -> ApiError {
    let roles: Vec<&str> = role::roles_granting(permission).collect();
    let suggestion = roles
        .iter()
        .find(|r| **r != "roles/owner")
        .or(roles.first())
        .copied()
        .unwrap_or("roles/owner");
    let how = match resource
        .strip_prefix("projects/")
        .filter(|p| !p.contains('/'))
    {
        Some(project) => format!(
            "`cloister projects add-iam-policy-binding {project} --member={principal} --role={suggestion}`"
        ),
        None => format!(
            "an add-iam-policy-binding for {principal} with role {suggestion} on {resource}"
        ),
    };
    ApiError::PermissionDenied {
        message: format!(
            "Permission '{permission}' denied on resource '{resource}' (or it may not exist) for \
             {principal}. Roles that grant it: {}. An owner of the resource can grant one: {how}.",
            roles.join(", ")
        ),
        permission: permission.to_owned(),
        resource: resource.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn audited_text_is_bounded_at_a_character_boundary() {
        for (text, max, kept) in [
            ("short", 10, "short"),
            ("exactly10!", 10, "exactly10!"),
            ("abcdefghijk", 10, "abcdefghij"),
            // 'é' is two bytes: a cut inside it keeps the characters before.
            ("aaaaaaaaaé", 10, "aaaaaaaaa"),
        ] {
            let got = bounded(text.to_owned(), max);
            assert!(got.starts_with(kept), "{text}: {got}");
            assert_eq!(got == text, text.len() <= max, "{text}: {got}");
        }
        assert_eq!(
            bounded("x".repeat(600), 512),
            format!("{}… (88 more bytes not kept)", "x".repeat(512))
        );
    }
}
