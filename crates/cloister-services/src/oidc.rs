//! OIDC discovery and JWKS for the issuers whose tokens outside parties verify: attestation
//! tokens at `PUBLIC_URL`, service account ID tokens at `PUBLIC_URL/accounts`; and the root
//! certificate `PKI` attestation tokens chain to, found as Google's is
//! (`/.well-known/attestation-pki-root` names it in `root_ca_uri`).

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

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
        .route("/.well-known/attestation-pki-root", get(pki_discovery))
        .route(ROOT_CERTIFICATE, get(pki_root))
}

/// Where the PKI root certificate (PEM) is downloaded, at Google's path.
const ROOT_CERTIFICATE: &str = "/.well-known/confidential_space_root.crt";

fn root_ca_uri(state: &AppState) -> String {
    format!("{}{ROOT_CERTIFICATE}", state.public_url)
}

async fn pki_discovery(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "root_ca_uri": root_ca_uri(&state) }))
}

async fn pki_root(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/x-pem-file")],
        state.attestation_pki.root_pem(),
    )
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
    let mut discovery = keys.discovery(&format!("{}/jwks", keys.issuer()));
    discovery["root_ca_uri"] = json!(root_ca_uri(&state));
    Json(discovery)
}

async fn attestation_jwks(State(state): State<AppState>) -> Json<Value> {
    Json(state.attestation_keys.jwks())
}
