//! `teeserver.sock`: the workload asks the launcher for tokens over a Unix socket in
//! `/run/container_launcher` (`GET /v1/token` for the default token, `POST /v1/token` for a
//! custom audience and nonces), as Confidential Space's launcher serves it.

use std::path::Path;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::sync::Mutex;

use crate::Attestation;
use crate::attest::TokenOptions;

#[derive(Deserialize)]
struct CustomToken {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    nonces: Vec<String>,
    #[serde(default)]
    token_type: String,
}

type Shared = Arc<Mutex<Attestation>>;

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, message).into_response()
}

async fn default_token(State(a): State<Shared>) -> Response {
    let a = a.lock().await;
    match std::fs::read_to_string(a.launcher_dir.join("attestation_verifier_claims_token")) {
        Ok(token) => token.into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("no token yet: {e}"),
        )
            .into_response(),
    }
}

async fn custom_token(State(a): State<Shared>, Json(req): Json<CustomToken>) -> Response {
    if req.audience.is_empty() {
        return bad("audience must not be empty".into());
    }
    if req.token_type != "OIDC" {
        return bad(format!(
            "token_type {:?} is not supported: use \"OIDC\"",
            req.token_type
        ));
    }
    if req.nonces.len() > 6 {
        return bad(format!(
            "got {} nonces, but at most 6 are allowed",
            req.nonces.len()
        ));
    }
    if let Some(n) = req.nonces.iter().find(|n| !(8..=88).contains(&n.len())) {
        return bad(format!("nonce {n:?} must be between 8 and 88 bytes"));
    }
    let mut a = a.lock().await;
    let options = TokenOptions {
        audience: Some(req.audience),
        nonces: req.nonces,
    };
    match a.token(&options).await {
        Ok(token) => token.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Serves the socket until the task is dropped.
pub async fn serve(
    socket: &Path,
    attestation: Shared,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let _ = std::fs::remove_file(socket);
    let listener = tokio::net::UnixListener::bind(socket)?;
    let app = axum::Router::new()
        .route("/v1/token", get(default_token).post(custom_token))
        .with_state(attestation);
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            eprintln!("teeserver stopped: {e}");
        }
    }))
}
