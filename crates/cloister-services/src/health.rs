//! `GET /healthz`: 200 when the server can reach its metadata store.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(health))
}

async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    state.store.list_audit(&Default::default()).await?;
    Ok(Json(json!({"status": "ok"})))
}
