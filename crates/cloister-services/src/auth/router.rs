//! `POST /oauth2/token`: exchanges a user's API credential (OAuth 2 client credentials grant,
//! RFC 6749 §4.4) for a one-hour access token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use cloister_domain::{Decision, Principal};
use serde::Deserialize;
use serde_json::json;

use super::credentials;
use crate::error::ApiError;
use crate::state::AppState;
use crate::time_util;

pub fn router() -> Router<AppState> {
    Router::new().route("/oauth2/token", post(token))
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// An OAuth 2 error response (RFC 6749 §5.2), the shape OAuth clients expect from this endpoint.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(state): State<AppState>, Form(req): Form<TokenRequest>) -> Response {
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be client_credentials (the client_id and client_secret of a Cloister credential file)",
        );
    }
    let (Some(id), Some(secret)) = (req.client_id, req.client_secret) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id and client_secret are required",
        );
    };
    let record = match state.store.get_credential(&id).await {
        Ok(r) => r,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let denied = "The client_id and client_secret do not match a credential issued by this server. \
                  Ask a platform admin for a new credential file.";
    let Some(record) = record.filter(|r| credentials::secret_matches(r, &secret)) else {
        audit(
            &state,
            format!("credential:{id}"),
            Decision::Deny,
            "unknown credential or wrong secret",
        )
        .await;
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", denied);
    };
    let principal = Principal::User(record.user.clone());
    let (access_token, exp) = state.tokens.issue(&principal);
    state.metrics.token("access");
    audit(
        &state,
        principal.to_string(),
        Decision::Allow,
        &format!("credential {id}"),
    )
    .await;
    Json(json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": exp - time_util::now_unix(),
    }))
    .into_response()
}

async fn audit(state: &AppState, principal: String, decision: Decision, reason: &str) {
    state
        .authorizer
        .record(
            principal,
            "auth.accessTokens.issue",
            "platform",
            decision,
            reason.to_owned(),
        )
        .await;
}
