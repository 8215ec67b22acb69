//! Extractors for the authenticated caller.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cloister_domain::Principal;

use crate::error::ApiError;
use crate::iam::service_accounts;
use crate::jwt;
use crate::state::AppState;

/// The authenticated principal of a request (from `Authorization: Bearer TOKEN`).
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// A caller who is a platform admin (manages users and platform settings).
#[derive(Debug, Clone)]
pub struct AdminCaller(pub Principal);

const MISSING: &str = "Request is missing required authentication credential. Expected an OAuth 2 \
access token in the header `Authorization: Bearer TOKEN`. Run `cloister auth login` to set up \
credentials, or `cloister auth print-access-token` to get a token for other tools.";

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| ApiError::Unauthenticated(MISSING.into()))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(jwt::trim)
            .ok_or_else(|| ApiError::Unauthenticated(MISSING.into()))?;
        let principal = state.tokens.verify(token).map_err(|e| {
            ApiError::Unauthenticated(format!("Invalid authentication credential: {e}."))
        })?;
        require_active(state, &principal).await?;
        Ok(Caller(principal))
    }
}

/// A user or service account deleted (or disabled) after its token was issued loses access
/// at once, not when the token expires.
pub async fn require_active(state: &AppState, principal: &Principal) -> Result<(), ApiError> {
    let active = match principal {
        Principal::User(email) => {
            let email = email.clone();
            state.read(|s| s.get_user(&email))?.is_some()
        }
        Principal::ServiceAccount(_) => service_accounts::is_active(state, principal).await?,
        Principal::Federated { .. } => true,
    };
    if active {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated(format!(
            "Invalid authentication credential: the token's principal {principal} no longer exists or is disabled."
        )))
    }
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let is_admin = match &principal {
            Principal::User(email) => {
                let email = email.clone();
                state.read(|s| s.get_user(&email))?.is_some_and(|u| u.admin)
            }
            _ => false,
        };
        if !is_admin {
            return Err(ApiError::PermissionDenied {
                message: format!(
                    "Only platform admins may do this; {principal} is not one. Ask a platform \
                     admin (the bootstrap admin's credential is in the server's data directory)."
                ),
                permission: "cloister.platform.admin".into(),
                resource: "platform".into(),
            });
        }
        Ok(AdminCaller(principal))
    }
}
