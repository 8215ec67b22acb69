//! An instance's trust chain, from evidence to data: its launch (the instance's record), the
//! attestation tokens it was issued, each token exchange at a workload identity provider with
//! every clause's verdict, and what the federated identity did next (impersonation, reads).
//!
//! The link is the attestation token's subject (the instance's URL), recorded on an audit
//! entry only from claims whose signature held ([`AuditDetails::subject`]): a forged token
//! files nothing under an instance. Entries come from every project's log the viewer may read
//! (`logging.privateLogEntries.list`, or a platform admin), so the operator of an instance
//! sees its launch and attestation, and a pool's owner sees why their provider refused it; no
//! one sees another project's decisions through it.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, State};
use axum::response::Response;
use cloister_domain::{AuditDetails, AuditEntry, Decision, ExchangeDetails, Principal, ProjectId};
use cloister_store::{AuditFilter, InstanceRecord};
use time::format_description::well_known::Rfc3339;

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::Session;
use crate::audit::{READ_LOG, entry_project, is_admin};
use crate::compute;
use crate::error::ApiError;
use crate::federation::sts::EXCHANGE_ACTION;
use crate::state::AppState;
use crate::verifier::challenges::ISSUE_ACTION;

/// Most entries one chain reads per query: a page, not an archive.
const MAX_ENTRIES: usize = 500;
/// Most federated identities whose calls one chain follows.
const MAX_IDENTITIES: usize = 10;

pub struct TokenRow {
    pub id: i64,
    pub time: String,
    pub hwmodel: String,
    pub dbgstat: String,
    pub image_digest: String,
    pub image_reference: String,
    pub support: String,
    pub signatures: usize,
    pub audience: String,
    pub claims: String,
}

pub struct ClauseRow {
    pub outcome: &'static str,
    pub clause: String,
    pub detail: Option<String>,
    pub compared: Vec<(String, String)>,
}

pub struct ExchangeRow {
    pub id: i64,
    pub time: String,
    pub allowed: bool,
    pub principal: String,
    pub provider: String,
    pub failure: Option<String>,
    pub condition: Option<String>,
    pub clauses: Vec<ClauseRow>,
    /// On a refusal: the first clause that failed, and what the workload presented there.
    pub failing: Option<String>,
    pub presented: Vec<(String, String)>,
    /// A condition that would accept this workload, and the command that saves it.
    pub fix_command: Option<String>,
}

pub struct CallRow {
    pub id: i64,
    pub time: String,
    pub decision: &'static str,
    pub principal: String,
    pub permission: String,
    pub resource: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "console/trust.html")]
struct TrustPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    project: &'a str,
    zone: &'a str,
    name: &'a str,
    subject: &'a str,
    instance: Option<InstanceRecord>,
    tokens: Vec<TokenRow>,
    exchanges: Vec<ExchangeRow>,
    calls: Vec<CallRow>,
    /// Service accounts the workload impersonated, and a link to their calls.
    impersonated: Vec<(String, String)>,
    /// Exchanges of tokens naming this instance from issuers other than this server.
    foreign: usize,
}

/// The instance's URL as an attestation token's `sub` names it.
pub fn subject_of(project: &str, zone: &str, name: &str) -> String {
    format!(
        "https://www.googleapis.com/compute/v1/projects/{project}/zones/{zone}/instances/{name}"
    )
}

/// The console path of the trust chain of the instance `subject` names, if it names one.
pub fn chain_path(subject: &str) -> Option<String> {
    let rest = subject.strip_prefix("https://www.googleapis.com/compute/v1/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "zones", z, "instances", n]
            if ProjectId::parse(p).is_ok() && is_label(z) && is_label(n) =>
        {
            Some(format!(
                "/console/projects/{p}/zones/{z}/instances/{n}/trust"
            ))
        }
        _ => None,
    }
}

fn is_label(s: &str) -> bool {
    cloister_domain::ids::is_rfc1035_label(s)
}

/// Which projects' logs the viewer may read: asked once each, without recording (a question,
/// as a list filter is); the reads themselves are recorded by [`record_reads`].
struct LogAccess {
    admin: bool,
    known: BTreeMap<String, bool>,
}

impl LogAccess {
    async fn may_read(
        &mut self,
        state: &AppState,
        viewer: &Principal,
        entry: &AuditEntry,
    ) -> Result<bool, ApiError> {
        if self.admin {
            return Ok(true);
        }
        let Some(project) = entry_project(entry) else {
            return Ok(false);
        };
        if let Some(&known) = self.known.get(&project) {
            return Ok(known);
        }
        let ok = state.authorizer.holds(viewer, READ_LOG, &project).await?;
        self.known.insert(project, ok);
        Ok(ok)
    }

    /// Records the read of each project's log this page showed, as the API would.
    async fn record_reads(&self, state: &AppState, viewer: &Principal) -> Result<(), ApiError> {
        for (project, ok) in &self.known {
            if *ok {
                state.authorizer.check(viewer, READ_LOG, project).await?;
            }
        }
        Ok(())
    }
}

pub async fn trust_chain(
    State(state): State<AppState>,
    session: Session,
    Path(path): Path<(String, String, String)>,
) -> Result<Response, PageError> {
    let (project, zone, name) = &path;
    let id = ProjectId::parse(project)
        .map_err(|e| ApiError::InvalidArgument(format!("{project:?} is not a project id: {e}")))?;
    if !is_label(zone) || !is_label(name) {
        return Err(ApiError::InvalidArgument(format!(
            "{zone:?} / {name:?} is not a zone and an instance name (lowercase letters, digits, hyphens)"
        ))
        .into());
    }
    let viewer = &session.principal;
    let resource = format!("projects/{}/zones/{zone}/instances/{name}", id.as_str());
    let subject = subject_of(id.as_str(), zone, name);

    // The instance's own record, for whoever may read it; asked first so that a pool owner
    // reading only their own log leaves no needless refusal in the instance's.
    let may_get = state
        .authorizer
        .holds(viewer, "compute.instances.get", &resource)
        .await?;
    let instance = if may_get {
        match compute::load(&state, viewer, &path, "compute.instances.get").await {
            Ok(i) => Some(i),
            Err(ApiError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };

    let mut access = LogAccess {
        admin: is_admin(&state, viewer).await?,
        known: BTreeMap::new(),
    };
    let since = instance
        .as_ref()
        .and_then(|i| i.create_time.format(&Rfc3339).ok());
    let linked = state
        .store
        .list_audit(&AuditFilter {
            subject: Some(subject.clone()),
            since: since.clone(),
            limit: MAX_ENTRIES,
            ..Default::default()
        })
        .await
        .map_err(ApiError::from)?;
    let issuer = state.public_url.trim_end_matches('/');
    let (mut tokens, mut exchanges, mut foreign) = (Vec::new(), Vec::new(), 0);
    let mut identities: Vec<(String, String)> = Vec::new();
    for entry in linked {
        if !access.may_read(&state, viewer, &entry).await? {
            continue;
        }
        match &entry.details {
            Some(AuditDetails::AttestationToken(a)) if entry.permission == ISSUE_ACTION => {
                tokens.push(token_row(&entry, &a.claims));
            }
            Some(AuditDetails::TokenExchange(x)) if entry.permission == EXCHANGE_ACTION => {
                let iss = x.claims.as_ref().and_then(|c| c["iss"].as_str());
                if iss.map(|i| i.trim_end_matches('/')) != Some(issuer) {
                    foreign += 1;
                    continue;
                }
                if entry.decision == Decision::Allow
                    && identities.len() < MAX_IDENTITIES
                    && !identities.iter().any(|(p, _)| *p == entry.principal)
                {
                    identities.push((entry.principal.clone(), entry.time.clone()));
                }
                exchanges.push(exchange_row(&entry, x));
            }
            _ => {}
        }
    }

    // What each identity the workload federated into did: impersonation, reads, refusals.
    let mut calls = Vec::new();
    let mut impersonated = Vec::new();
    for (principal, from) in &identities {
        let entries = state
            .store
            .list_audit(&AuditFilter {
                principal: Some(principal.clone()),
                since: Some(from.clone()),
                limit: MAX_ENTRIES,
                ..Default::default()
            })
            .await
            .map_err(ApiError::from)?;
        for e in entries {
            if e.permission == EXCHANGE_ACTION || !access.may_read(&state, viewer, &e).await? {
                continue;
            }
            if e.permission == "iam.serviceAccounts.getAccessToken"
                && e.decision == Decision::Allow
                && let Some(email) = e.resource.rsplit('/').next()
            {
                let member = format!("serviceAccount:{email}");
                if !impersonated.iter().any(|(m, _)| *m == member) {
                    let link = super::audit_page::link(&e, &member);
                    impersonated.push((member, link));
                }
            }
            calls.push(call_row(&e));
        }
    }

    if instance.is_none() && tokens.is_empty() && exchanges.is_empty() {
        // Nothing this viewer may see: the refusal the instance page gives, the same whether
        // the instance is another's or does not exist (and recorded, as a refusal is).
        compute::load(&state, viewer, &path, "compute.instances.get").await?;
        return Err(ApiError::NotFound(format!("The resource '{resource}' was not found")).into());
    }
    access.record_reads(&state, viewer).await?;
    let user = user_name(viewer);
    Ok(render(&TrustPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        project: id.as_str(),
        zone,
        name,
        subject: &subject,
        instance,
        tokens,
        exchanges,
        calls,
        impersonated,
        foreign,
    }))
}

fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn token_row(entry: &AuditEntry, claims: &serde_json::Value) -> TokenRow {
    let container = &claims["submods"]["container"];
    let support = claims["submods"]["confidential_space"]["support_attributes"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    TokenRow {
        id: entry.id,
        time: entry.time.clone(),
        hwmodel: text(&claims["hwmodel"]),
        dbgstat: text(&claims["dbgstat"]),
        image_digest: text(&container["image_digest"]),
        image_reference: text(&container["image_reference"]),
        support,
        signatures: container["image_signatures"].as_array().map_or(0, Vec::len),
        audience: text(&claims["aud"]),
        claims: serde_json::to_string_pretty(claims).unwrap_or_default(),
    }
}

pub fn exchange_row(entry: &AuditEntry, x: &ExchangeDetails) -> ExchangeRow {
    let allowed = entry.decision == Decision::Allow;
    let clauses = x
        .clauses
        .iter()
        .map(|c| ClauseRow {
            outcome: c.outcome.as_str(),
            clause: c.clause.clone(),
            detail: c.detail.clone(),
            compared: c
                .compared
                .iter()
                .map(|v| (v.expression.clone(), v.value.to_string()))
                .collect(),
        })
        .collect();
    let presented: Vec<(String, String)> = x
        .fixes()
        .into_iter()
        .map(|v| (v.expression.clone(), v.value.to_string()))
        .collect();
    ExchangeRow {
        id: entry.id,
        time: entry.time.clone(),
        allowed,
        principal: entry.principal.clone(),
        provider: entry.resource.clone(),
        failure: x.failure.clone(),
        condition: x.attribute_condition.clone(),
        clauses,
        failing: (!allowed)
            .then(|| x.failing_clause().map(|c| c.clause.clone()))
            .flatten(),
        presented,
        fix_command: (!allowed)
            .then(|| fix_command(&entry.resource, x))
            .flatten(),
    }
}

/// The command that makes the provider accept what this workload presented: each failing
/// clause widened to also allow the string value the workload presented there (an image
/// digest, a reference). `None` when no failing clause compared a string claim (a missing
/// support attribute is the workload's to fix, not the condition's).
fn fix_command(provider: &str, x: &ExchangeDetails) -> Option<String> {
    let mut condition = x.attribute_condition.clone()?;
    let mut changed = false;
    for clause in x.clauses.iter().filter(|c| c.outcome.as_str() != "PASS") {
        let allow: Vec<String> = clause
            .compared
            .iter()
            .filter(|v| cloister_domain::audit::is_claim(&v.expression) && v.value.is_string())
            .map(|v| format!("{} == {}", v.expression, v.value))
            .collect();
        if allow.is_empty() || !condition.contains(&clause.clause) {
            continue;
        }
        let widened = format!("({} || {})", clause.clause, allow.join(" || "));
        condition = condition.replacen(&clause.clause, &widened, 1);
        changed = true;
    }
    if !changed {
        return None;
    }
    // projects/P/locations/L/workloadIdentityPools/POOL/providers/ID
    let parts: Vec<&str> = provider.split('/').collect();
    let [
        "projects",
        project,
        "locations",
        location,
        "workloadIdentityPools",
        pool,
        "providers",
        id,
    ] = parts.as_slice()
    else {
        return None;
    };
    Some(format!(
        "cloister iam workload-identity-pools providers update-oidc {id} \\\n  --workload-identity-pool {pool} --location {location} --project {project} \\\n  --attribute-condition '{}'",
        condition.replace('\'', "'\\''")
    ))
}

pub fn call_row(e: &AuditEntry) -> CallRow {
    CallRow {
        id: e.id,
        time: e.time.clone(),
        decision: e.decision.as_str(),
        principal: e.principal.clone(),
        permission: e.permission.clone(),
        resource: e.resource.clone(),
        reason: e.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use cloister_domain::{ClauseOutcome, ClauseVerdict, ComparedValue};
    use serde_json::json;

    use super::*;

    #[test]
    fn only_an_instance_url_links_to_a_chain() {
        for (subject, path) in [
            (
                "https://www.googleapis.com/compute/v1/projects/proj-one/zones/us-west1-b/instances/vm",
                Some("/console/projects/proj-one/zones/us-west1-b/instances/vm/trust"),
            ),
            ("insecure://proj-one/123", None),
            (
                "https://www.googleapis.com/compute/v1/projects/proj-one/zones/us-west1-b/instances/a/../b",
                None,
            ),
            (
                "https://www.googleapis.com/compute/v1/projects/P/zones/z/instances/<b>",
                None,
            ),
        ] {
            assert_eq!(chain_path(subject).as_deref(), path, "{subject}");
        }
    }

    fn verdict(clause: &str, outcome: ClauseOutcome, value: serde_json::Value) -> ClauseVerdict {
        ClauseVerdict {
            clause: clause.into(),
            outcome,
            detail: None,
            compared: vec![
                ComparedValue {
                    expression: "assertion.x".into(),
                    value,
                },
                ComparedValue {
                    expression: "'lit'".into(),
                    value: json!("lit"),
                },
            ],
        }
    }

    #[test]
    fn the_fix_widens_each_failing_clause_to_what_was_presented() {
        let provider = "projects/primus/locations/global/workloadIdentityPools/pool/providers/v";
        let details = |clauses| ExchangeDetails {
            provider: String::new(),
            failure: None,
            attribute_condition: Some("assertion.a == 'A' && assertion.x == 'lit'".into()),
            clauses,
            claims: None,
        };
        let digest = details(vec![
            verdict("assertion.a == 'A'", ClauseOutcome::Pass, json!("A")),
            verdict("assertion.x == 'lit'", ClauseOutcome::Fail, json!("it's")),
        ]);
        let cmd = fix_command(provider, &digest).unwrap();
        assert!(cmd.starts_with("cloister iam workload-identity-pools providers update-oidc v \\\n  --workload-identity-pool pool --location global --project primus"), "{cmd}");
        assert!(
            cmd.ends_with(r#"--attribute-condition 'assertion.a == '\''A'\'' && (assertion.x == '\''lit'\'' || assertion.x == "it'\''s")'"#),
            "{cmd}"
        );
        assert_eq!(digest.fixes().len(), 1);
        // A list claim (a missing support attribute) is the workload's to fix, not the condition's.
        let list = details(vec![verdict(
            "assertion.x == 'lit'",
            ClauseOutcome::Fail,
            json!(["USABLE"]),
        )]);
        assert_eq!(fix_command(provider, &list), None);
        assert_eq!(fix_command("not/a/provider", &digest), None);
    }
}
