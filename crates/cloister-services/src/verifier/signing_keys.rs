//! Rotating the attestation token signing key (platform admins). The old keys stay in the
//! JWKS until every token they signed has expired, then they are retired. Replicas sharing
//! a data directory through the database come with the scale-out work; today a rotation is
//! seen by the server that made it (and by the others at their next start).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_domain::Decision;
use serde_json::{Value, json};

use super::TOKEN_LIFETIME_SECS;
use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloister/v1/verifier/signingKeys", get(list))
        .route("/cloister/v1/verifier/signingKeys:rotate", post(rotate))
}

fn kids(state: &AppState) -> Vec<Value> {
    state.attestation_keys.jwks()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|k| k["kid"].clone())
        .collect()
}

async fn list(State(state): State<AppState>, AdminCaller(_): AdminCaller) -> Json<Value> {
    Json(json!({ "keys": kids(&state) }))
}

async fn rotate(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
) -> Result<Json<Value>, ApiError> {
    // Old keys stay published while tokens they signed may still be valid.
    let retire_after = state
        .attestation_token_lifetime_secs
        .max(TOKEN_LIFETIME_SECS);
    // The new key's generation runs off the runtime's worker threads (see `rotate`).
    let kid = state
        .attestation_keys
        .rotate(retire_after)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.signingKeys.rotate",
            "verifier/signingKeys",
            Decision::Allow,
            format!("new key {kid}"),
        )
        .await;
    Ok(Json(json!({ "kid": kid, "keys": kids(&state) })))
}
