//! Platform users (admin API, Cloister-specific): create and list users, issue credentials.

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use cloister_domain::{Decision, Email};
use cloister_store::UserRecord;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::AdminCaller;
use crate::auth::credentials;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;
use crate::time_util;
use cloister_domain::CredentialFile;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloister/v1/users", get(list).post(create))
        .route(
            "/cloister/v1/users/{email}/credentials",
            post(create_credential),
        )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUser {
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    name: String,
    email: String,
    display_name: String,
    admin: bool,
    create_time: String,
}

impl From<UserRecord> for UserView {
    fn from(u: UserRecord) -> Self {
        Self {
            name: format!("users/{}", u.email),
            email: u.email.to_string(),
            display_name: u.display_name,
            admin: u.admin,
            create_time: time_util::rfc3339(u.create_time),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<Json<UserView>, ApiError> {
    let email = Email::parse(&req.email).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let user = UserRecord {
        display_name: if req.display_name.is_empty() {
            email.to_string()
        } else {
            req.display_name
        },
        email,
        admin: req.admin,
        create_time: time::OffsetDateTime::now_utc(),
    };
    state.store.create_user(&user).await?;
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.users.create",
            &format!("users/{}", user.email),
            Decision::Allow,
            "platform admin".into(),
        )
        .await;
    Ok(Json(user.into()))
}

async fn list(
    State(state): State<AppState>,
    AdminCaller(_): AdminCaller,
) -> Result<Json<Value>, ApiError> {
    let users = state.store.list_users().await?;
    let users: Vec<UserView> = users.into_iter().map(UserView::from).collect();
    Ok(Json(json!({ "users": users })))
}

async fn create_credential(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    Path(email): Path<String>,
) -> Result<Json<CredentialFile>, ApiError> {
    let email = Email::parse(&email).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    if state.store.get_user(&email).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "User {email} does not exist; create it first with `cloister iam users create {email}`"
        )));
    }
    let file = issue_credential(&state, &email).await?;
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.credentials.create",
            &format!("users/{email}"),
            Decision::Allow,
            format!("credential {}", file.client_id),
        )
        .await;
    Ok(Json(file))
}

/// Stores a new credential for `email` and returns the file to hand out (its only copy).
pub async fn issue_credential(state: &AppState, email: &Email) -> Result<CredentialFile, ApiError> {
    let token_uri = format!("{}/oauth2/token", state.public_url);
    let (record, file) = credentials::generate(email, &token_uri, time::OffsetDateTime::now_utc());
    state.store.create_credential(&record).await?;
    Ok(file)
}
