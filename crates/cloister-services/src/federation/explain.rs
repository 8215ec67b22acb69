//! Explain (beyond Google): why a given subject token is or is not accepted by a provider —
//! token verification, the mapped attributes, and each top-level clause of the condition with
//! PASS / FAIL / error and the values it compared.

use axum::Json;
use serde::Deserialize;
use serde_json::{Value, json};

use cloister_condition::Judgement;

use super::exchange;
use super::judge::JudgeError;
use crate::error::ApiError;
use crate::jwt;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExplainRequest {
    subject_token: String,
}

pub async fn explain(
    state: &AppState,
    provider_name: &str,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: ExplainRequest = serde_json::from_value(body).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "Invalid explain request (expected {{\"subjectToken\": JWT}}): {e}"
        ))
    })?;
    let provider = state
        .providers
        .get(state, provider_name)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "Workload identity pool provider {provider_name} was not found"
            ))
        })?;
    let token = jwt::trim(&req.subject_token);
    let verified = exchange::verify_subject_token(state, &provider, token).await;
    // Even a token that fails verification is worth explaining: its claims are shown as
    // unverified, so the owner sees both problems at once.
    let claims = match &verified {
        Ok(claims) => claims.clone(),
        Err(_) => jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .map(|d| d.claims)
            .map_err(|e| {
                ApiError::InvalidArgument(format!(
                    "The subject token is malformed: {}.",
                    jwt::reason(token, &e)
                ))
            })?,
    };
    let verification = match &verified {
        Ok(_) => json!({"outcome": "PASS"}),
        Err(e) => json!({"outcome": "ERROR", "detail": e.to_string()}),
    };
    let unjudged = |detail: String| {
        (
            json!({"outcome": "ERROR", "detail": detail}),
            json!([]),
            false,
        )
    };
    let (mapping, clauses, condition_ok) =
        match state.judge.judge(&provider.question(&claims)).await {
            Ok(Judgement::Unmapped(e)) => unjudged(e),
            Err(e @ (JudgeError::OverLimits(_) | JudgeError::Expression(_))) => {
                unjudged(e.to_string())
            }
            Err(e @ JudgeError::Busy) => return Err(ApiError::Unavailable(e.to_string())),
            Err(e @ JudgeError::Worker { .. }) => {
                return Err(ApiError::Internal(format!("{e}: {}", e.chain_tail())));
            }
            Ok(Judgement::Mapped {
                attributes,
                verdict,
                clauses,
            }) => (
                json!({
                    "outcome": "PASS",
                    "google.subject": attributes.subject,
                    "google.groups": attributes.groups,
                    "attributes": attributes.attributes,
                }),
                serde_json::to_value(clauses).unwrap_or_default(),
                verdict == Ok(true),
            ),
        };
    let accepted = verified.is_ok() && condition_ok && !provider.disabled;
    Ok(Json(json!({
        "provider": provider.name,
        "result": if accepted { "ACCEPTED" } else { "REJECTED" },
        "providerDisabled": provider.disabled,
        "tokenVerification": verification,
        "attributeMapping": mapping,
        "attributeCondition": provider.condition.as_ref().map(|c| c.source()),
        "clauses": clauses,
    })))
}
