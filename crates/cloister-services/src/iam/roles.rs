//! `GET /v1/roles`: the predefined roles and their permissions (IAM's roles.list, view FULL).

use axum::routing::get;
use axum::{Json, Router};
use cloister_domain::Role;
use serde_json::{Value, json};

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/v1/roles", get(list))
}

async fn list() -> Json<Value> {
    let roles: Vec<Value> = Role::all()
        .iter()
        .map(|r| json!({"name": r.name, "title": r.title, "includedPermissions": r.permissions, "stage": "GA"}))
        .collect();
    Json(json!({ "roles": roles }))
}
