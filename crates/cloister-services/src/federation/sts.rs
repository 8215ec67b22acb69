//! STS `POST /v1/token` (RFC 8693 token exchange, form or JSON body): a subject token from a
//! trusted issuer, accepted by a provider's condition, becomes a federated access token.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use cloister_domain::{AuditDetails, Decision, ExchangeDetails};
use serde::Deserialize;
use serde_json::json;

use super::exchange::{self, ExchangeError};
use crate::iam::authorizer::{MAX_AUDITED_REASON, bounded};
use crate::jwt;
use crate::state::AppState;
use crate::time_util;

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TOKEN_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];
/// The audit "permission" of an exchange (STS has no IAM permission of its own).
pub const EXCHANGE_ACTION: &str = "sts.googleapis.com/token.exchange";

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/token", post(token))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenRequest {
    #[serde(alias = "grant_type")]
    grant_type: Option<String>,
    audience: Option<String>,
    #[allow(dead_code)]
    scope: Option<String>,
    #[serde(alias = "requested_token_type")]
    requested_token_type: Option<String>,
    #[serde(alias = "subject_token")]
    subject_token: Option<String>,
    #[serde(alias = "subject_token_type")]
    subject_token_type: Option<String>,
}

fn parse(headers: &HeaderMap, body: &[u8]) -> Result<TokenRequest, ExchangeError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let parsed = if json {
        serde_json::from_slice(body).map_err(|e| e.to_string())
    } else {
        serde_urlencoded::from_bytes(body).map_err(|e| e.to_string())
    };
    parsed.map_err(|e| {
        ExchangeError::InvalidRequest(format!(
            "The request body is not a valid token exchange request: {e}."
        ))
    })
}

async fn token(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange_token(&state, &headers, &body).await {
        Ok(response) => response,
        Err(e) => {
            let (status, code) = e.oauth();
            if let ExchangeError::Internal(inner) = &e {
                tracing::error!(error = %inner, "token exchange failed");
            }
            (
                status,
                Json(json!({"error": code, "error_description": e.to_string()})),
            )
                .into_response()
        }
    }
}

async fn exchange_token(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ExchangeError> {
    let req = parse(headers, body)?;
    let invalid = |m: String| Err(ExchangeError::InvalidRequest(m));
    if req.grant_type.as_deref() != Some(TOKEN_EXCHANGE) {
        return invalid(format!(
            "Invalid value for \"grant_type\": expected {TOKEN_EXCHANGE}."
        ));
    }
    if let Some(t) = &req.requested_token_type
        && t != ACCESS_TOKEN_TYPE
    {
        return invalid(format!(
            "Invalid value for \"requested_token_type\": only {ACCESS_TOKEN_TYPE} is issued."
        ));
    }
    match req.subject_token_type.as_deref() {
        Some(t) if SUBJECT_TOKEN_TYPES.contains(&t) => {}
        _ => {
            return invalid(format!(
                "Invalid value for \"subject_token_type\": expected one of {}.",
                SUBJECT_TOKEN_TYPES.join(", ")
            ));
        }
    }
    // Surrounding whitespace is not part of the token (a token file ends in a newline).
    let subject_token = req
        .subject_token
        .as_deref()
        .map(jwt::trim)
        .unwrap_or_default();
    if subject_token.is_empty() {
        return invalid("Missing required parameter: \"subject_token\".".into());
    }
    let provider_name = req
        .audience
        .as_deref()
        .and_then(|a| {
            a.strip_prefix("//iam.googleapis.com/")
                .or_else(|| a.strip_prefix("https://iam.googleapis.com/"))
        })
        .filter(|n| n.contains("/workloadIdentityPools/") && n.contains("/providers/"))
        .ok_or(ExchangeError::InvalidTarget)?
        .to_owned();
    let provider = state
        .providers
        .get(state, &provider_name)
        .await?
        .ok_or(ExchangeError::InvalidTarget)?;
    if provider.disabled {
        return Err(ExchangeError::InvalidTarget);
    }
    let resource = provider.audit_resource();
    let condition = provider.condition.as_ref().map(|c| c.source().to_owned());
    // The claims are kept (never the token) only once the signature held: a forged token's
    // claims would let anyone write under another's workload.
    let (claims, outcome) =
        match exchange::verify_subject_token(state, &provider, subject_token).await {
            Ok(claims) => (
                Some(claims.clone()),
                exchange::authorize(&state.judge, &provider, &claims).await,
            ),
            Err(e) => (None, Err(e)),
        };
    match outcome {
        Ok((principal, clauses)) => {
            let (access_token, exp) = state
                .tokens
                .issue_federated(&principal, provider.provider_id());
            state.metrics.token("federated");
            state.metrics.exchange(true);
            let details = AuditDetails::TokenExchange(ExchangeDetails {
                provider: provider.name.clone(),
                failure: None,
                attribute_condition: condition,
                clauses,
                claims,
            });
            state
                .authorizer
                .record_detailed(
                    principal.to_string(),
                    EXCHANGE_ACTION,
                    &resource,
                    Decision::Allow,
                    "attribute condition holds".into(),
                    Some(details),
                )
                .await;
            Ok(Json(json!({
                "access_token": access_token,
                "issued_token_type": ACCESS_TOKEN_TYPE,
                "token_type": "Bearer",
                "expires_in": exp - time_util::now_unix(),
            }))
            .into_response())
        }
        Err(e) => {
            let subject =
                jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(subject_token)
                    .ok()
                    .and_then(|d| d.claims["sub"].as_str().map(|s| format!("subject:{s}")))
                    .unwrap_or_else(|| "subject:unknown".into());
            let (reason, clauses) = match e {
                ExchangeError::Rejected {
                    ref reason,
                    ref clauses,
                } => (reason.clone(), clauses.clone()),
                ref other => (other.to_string(), Vec::new()),
            };
            // A refusal before the condition ran (signature, audience, expiry) says so; the
            // token itself is never kept.
            // Bounded as the reason is: a refused token's text (a key id, a malformed part)
            // is anyone's to choose, and the log keeps every entry.
            let failure = clauses
                .is_empty()
                .then(|| bounded(reason.clone(), MAX_AUDITED_REASON));
            let details = AuditDetails::TokenExchange(ExchangeDetails {
                provider: provider.name.clone(),
                failure,
                attribute_condition: condition,
                clauses,
                claims,
            });
            state
                .authorizer
                .record_detailed(
                    subject,
                    EXCHANGE_ACTION,
                    &resource,
                    Decision::Deny,
                    reason,
                    Some(details),
                )
                .await;
            state.metrics.exchange(false);
            Err(e)
        }
    }
}
