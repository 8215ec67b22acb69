//! A workload identity provider's page and its condition playground: edit the attribute
//! condition and judge it, clause by clause, against a pasted token (verified against the
//! provider's keys, or shown as unverified and why) or against the claims recorded by recent
//! exchanges at this provider; then save it. Judging changes nothing (it is a POST only so a
//! pasted token never lands in a URL); saving needs the update permission, the session's CSRF
//! token, and the version the page showed (the etag), and goes through the API's own update.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use cloister_condition::{Judgement, Question};
use cloister_domain::AuditDetails;
use cloister_store::AuditFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::STYLESHEET;
use super::pages::{PageError, render, user_name};
use super::session::{Session, check_csrf, check_origin};
use super::trust::ClauseRow;
use crate::audit::{READ_LOG, is_admin};
use crate::error::ApiError;
use crate::federation::exchange::{self, verdict_of};
use crate::federation::judge::JudgeError;
use crate::federation::provider::CompiledProvider;
use crate::federation::resources::{read_provider, update_provider};
use crate::federation::sts::EXCHANGE_ACTION;
use crate::jwt;
use crate::state::AppState;

type ProviderPath = (String, String, String, String);

/// How far back the playground looks for recorded exchanges, and how many it offers.
const RECENT_DAYS: i64 = 7;
const RECENT: usize = 10;

struct Recorded {
    id: i64,
    time: String,
    decision: &'static str,
    subject: String,
    checked: bool,
}

/// What a judgement was made on, and its outcome.
struct Verdict {
    source: String,
    /// `Some(why)` when the claims' signature or validity did not hold.
    unverified: Option<String>,
    mapping_error: Option<String>,
    accepted: bool,
    clauses: Vec<ClauseRow>,
}

#[derive(Template)]
#[template(path = "console/provider.html")]
struct ProviderPage<'a> {
    stylesheet: &'a str,
    user: Option<&'a str>,
    csrf: &'a str,
    base: String,
    project: &'a str,
    pool: &'a str,
    provider: &'a str,
    etag: &'a str,
    issuer: String,
    mapping: Vec<(String, String)>,
    saved_condition: String,
    condition: String,
    token: String,
    recorded: Option<Vec<Recorded>>,
    problem: Option<String>,
    verdict: Option<Verdict>,
}

#[derive(Deserialize, Default)]
pub struct PlaygroundForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    condition: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    exchange: String,
    #[serde(default)]
    etag: String,
}

pub async fn provider(
    State(state): State<AppState>,
    session: Session,
    Path(path): Path<ProviderPath>,
) -> Result<Response, PageError> {
    page(&state, &session, &path, None).await
}

/// Judges the edited condition; changes nothing.
pub async fn evaluate(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Form(form): Form<PlaygroundForm>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    check_csrf(&session, &form.csrf)?;
    page(&state, &session, &path, Some(form)).await
}

/// Saves the condition through the API's update (permission, validation, etag, audit).
pub async fn save(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Path(path): Path<ProviderPath>,
    Form(form): Form<PlaygroundForm>,
) -> Result<Response, PageError> {
    check_origin(&state, &headers)?;
    check_csrf(&session, &form.csrf)?;
    let condition = form.condition.trim();
    let patch = json!({ "attributeCondition": (!condition.is_empty()).then_some(condition) });
    update_provider(
        &state,
        &session.principal,
        &path,
        &patch,
        Some("attributeCondition"),
        Some(&form.etag),
    )
    .await?;
    Ok(Redirect::to(&base_path(&path)).into_response())
}

fn base_path((project, location, pool, provider): &ProviderPath) -> String {
    format!(
        "/console/projects/{project}/locations/{location}/workloadIdentityPools/{pool}/providers/{provider}"
    )
}

async fn page(
    state: &AppState,
    session: &Session,
    path: &ProviderPath,
    form: Option<PlaygroundForm>,
) -> Result<Response, PageError> {
    let viewer = &session.principal;
    let record = read_provider(state, viewer, path).await?;
    let compiled = state
        .providers
        .get(state, &record.name)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Provider {} was not found", record.name)))?;
    let saved_condition = record.resource["attributeCondition"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let form = form.unwrap_or_else(|| PlaygroundForm {
        condition: saved_condition.clone(),
        ..Default::default()
    });

    // Recorded claims come from the provider's project's log: offered to who may read it.
    let project = format!("projects/{}", record.project_id.as_str());
    let may_read = is_admin(state, viewer).await?
        || state.authorizer.holds(viewer, READ_LOG, &project).await?;
    let recorded_entries = if may_read {
        let since = (OffsetDateTime::now_utc() - time::Duration::days(RECENT_DAYS))
            .format(&Rfc3339)
            .unwrap_or_default();
        let entries = state
            .store
            .list_audit(&AuditFilter {
                permission: Some(EXCHANGE_ACTION.into()),
                resource_prefix: Some(compiled.audit_resource()),
                since: Some(since),
                limit: 1000,
                ..Default::default()
            })
            .await
            .map_err(ApiError::from)?;
        let mut with_claims: Vec<_> = entries
            .into_iter()
            .filter_map(|e| match &e.details {
                Some(AuditDetails::TokenExchange(x)) => x
                    .claims
                    .clone()
                    .map(|c| (e.id, e.time.clone(), e.decision, c)),
                _ => None,
            })
            .collect();
        let keep = with_claims.len().saturating_sub(RECENT);
        with_claims.drain(..keep);
        with_claims.reverse();
        Some(with_claims)
    } else {
        None
    };

    let chosen: Option<i64> = form.exchange.parse().ok();
    let mut problem = None;
    let mut verdict = None;
    let condition_text = form.condition.trim().to_owned();
    let is_post = !form.csrf.is_empty();
    if is_post {
        let claims: Option<(String, Value, Option<String>)> = if !form.token.trim().is_empty() {
            let token = jwt::trim(&form.token);
            match exchange::verify_subject_token(state, &compiled, token).await {
                Ok(claims) => Some(("the pasted token".into(), claims, None)),
                Err(e) => match jsonwebtoken::dangerous::insecure_decode::<Value>(token) {
                    Ok(d) => Some(("the pasted token".into(), d.claims, Some(e.to_string()))),
                    Err(_) => {
                        problem = Some(format!(
                            "The pasted text is not a JWT ({e}). Paste the attestation token (three base64url parts joined by dots)."
                        ));
                        None
                    }
                },
            }
        } else if let Some(id) = chosen {
            recorded_entries
                .iter()
                .flatten()
                .find(|(i, ..)| *i == id)
                .map(|(i, t, _, c)| {
                    (
                        format!("the claims recorded by exchange {i} at {t}"),
                        c.clone(),
                        None,
                    )
                })
        } else {
            problem = Some(
                "Paste a token or choose a recorded exchange to judge the condition against."
                    .into(),
            );
            None
        };
        if let Some((source, claims, unverified)) = claims {
            match judge_condition(state, &compiled, &condition_text, claims).await {
                Ok((mapping_error, accepted, clauses)) => {
                    verdict = Some(Verdict {
                        source,
                        accepted: accepted && unverified.is_none(),
                        unverified,
                        mapping_error,
                        clauses,
                    });
                }
                Err(e) => problem = Some(e),
            }
        }
    }

    let (project_arg, _, pool, provider) = path;
    let user = user_name(viewer);
    Ok(render(&ProviderPage {
        stylesheet: STYLESHEET,
        user: Some(&user),
        csrf: &session.record.csrf_token,
        base: base_path(path),
        project: project_arg,
        pool,
        provider,
        etag: &record.etag,
        issuer: compiled.issuer.clone(),
        mapping: compiled
            .mapping
            .sources()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        saved_condition,
        condition: form.condition.clone(),
        token: form.token.clone(),
        recorded: recorded_entries.map(|v| {
            v.into_iter()
                .map(|(id, time, decision, claims)| Recorded {
                    id,
                    time,
                    decision: decision.as_str(),
                    subject: claims["sub"].as_str().unwrap_or_default().to_owned(),
                    checked: chosen == Some(id),
                })
                .collect()
        }),
        problem,
        verdict,
    })
    .into_response())
}

/// The edited condition over `claims`, judged as an exchange's is (in the judge's worker): a
/// mapping failure, whether it accepts, and each clause. A condition that does not compile,
/// or passes the judge's limits, is the user's to fix: its error, not a page error.
async fn judge_condition(
    state: &AppState,
    provider: &CompiledProvider,
    condition: &str,
    claims: Value,
) -> Result<(Option<String>, bool, Vec<ClauseRow>), String> {
    let question = Question {
        condition: (!condition.is_empty()).then(|| condition.to_owned()),
        ..provider.question(&claims)
    };
    let (verdict, clauses) = match state.judge.judge(&question).await {
        Ok(Judgement::Unmapped(e)) => return Ok((Some(e), false, Vec::new())),
        Ok(Judgement::Mapped {
            verdict, clauses, ..
        }) => (verdict, clauses),
        Err(JudgeError::Expression(e)) => {
            return Err(format!("The condition does not compile: {e}"));
        }
        Err(e) => return Err(format!("The condition could not be judged: {e}.")),
    };
    let rows = clauses
        .into_iter()
        .map(verdict_of)
        .map(|c| ClauseRow {
            outcome: c.outcome.as_str(),
            clause: c.clause,
            detail: c.detail,
            compared: c
                .compared
                .into_iter()
                .map(|v| (v.expression, v.value.to_string()))
                .collect(),
        })
        .collect::<Vec<_>>();
    Ok((None, verdict == Ok(true), rows))
}
