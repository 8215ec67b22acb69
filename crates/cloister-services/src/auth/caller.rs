//! Extractors for the authenticated caller.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use cloister_domain::Principal;

use super::tokens::Verified;
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
            .and_then(|h| h.to_str().ok());
        authenticate(state, header).await.map(Caller)
    }
}

/// The principal whose access token is in `authorization` (`Bearer TOKEN`): the value of the
/// HTTP header, or of the gRPC metadata of the same name, which is that header too.
pub async fn authenticate(
    state: &AppState,
    authorization: Option<&str>,
) -> Result<Principal, ApiError> {
    let token = authorization
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(jwt::trim)
        .ok_or_else(|| ApiError::Unauthenticated(MISSING.into()))?;
    let verified = state.tokens.verify(token).map_err(|e| {
        ApiError::Unauthenticated(format!("Invalid authentication credential: {e}."))
    })?;
    require_active(state, &verified).await?;
    Ok(verified.principal)
}

/// A user or service account deleted (or disabled) after its token was issued loses access
/// at once, not when the token expires; so does a federated token whose provider or pool is
/// deleted or disabled.
pub async fn require_active(state: &AppState, verified: &Verified) -> Result<(), ApiError> {
    let principal = &verified.principal;
    let active = match principal {
        Principal::User(email) => state.store.get_user(email).await?.is_some(),
        Principal::ServiceAccount(_) => service_accounts::is_active(state, principal).await?,
        Principal::Federated { .. } => {
            let Some(provider) = verified.provider_name() else {
                return Err(ApiError::Internal(
                    "a verified federated token without its provider".into(),
                ));
            };
            if !federation_active(state, &provider).await? {
                return Err(ApiError::Unauthenticated(format!(
                    "Invalid authentication credential: the token was exchanged through \
                     workload identity pool provider {provider}, which (or whose pool) has been \
                     deleted or disabled since; its tokens no longer work."
                )));
            }
            true
        }
    };
    if active {
        Ok(())
    } else {
        Err(ApiError::Unauthenticated(format!(
            "Invalid authentication credential: the token's principal {principal} no longer exists or is disabled."
        )))
    }
}

/// Whether the provider `name` and its pool both exist and are enabled.
async fn federation_active(state: &AppState, name: &str) -> Result<bool, ApiError> {
    let pool = name.rsplit_once("/providers/").map_or("", |(p, _)| p);
    let provider = state.store.get_federation(name).await?;
    let pool = state.store.get_federation(pool).await?;
    let enabled = |r: Option<cloister_store::FederationRecord>| {
        r.is_some_and(|r| !r.resource["disabled"].as_bool().unwrap_or(false))
    };
    Ok(enabled(provider) && enabled(pool))
}

impl FromRequestParts<AppState> for AdminCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        let is_admin = match &principal {
            Principal::User(email) => state.store.get_user(email).await?.is_some_and(|u| u.admin),
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
