//! OIDC discovery and JWKS for the issuers whose tokens outside parties verify: attestation
//! tokens at `PUBLIC_URL`, service account ID tokens at `PUBLIC_URL/accounts`.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::Value;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(attestation_discovery),
        )
        .route("/jwks", get(attestation_jwks))
        .route(
            "/accounts/.well-known/openid-configuration",
            get(accounts_discovery),
        )
        .route("/accounts/jwks", get(accounts_jwks))
}

async fn accounts_discovery(State(state): State<AppState>) -> Json<Value> {
    let keys = &state.account_keys;
    Json(keys.discovery(&format!("{}/jwks", keys.issuer())))
}

async fn accounts_jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.account_keys.jwks())
}

async fn attestation_discovery(State(state): State<AppState>) -> Json<Value> {
    let keys = &state.attestation_keys;
    Json(keys.discovery(&format!("{}/jwks", keys.issuer())))
}

async fn attestation_jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.attestation_keys.jwks())
}
