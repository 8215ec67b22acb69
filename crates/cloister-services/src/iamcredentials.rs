//! IAM Credentials: short-lived credentials for service accounts
//! (`POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`).
//!
//! Allowed when the caller holds `iam.serviceAccounts.getAccessToken` on the account: directly
//! (`roles/iam.serviceAccountTokenCreator`) or, for federated principals, through
//! `roles/iam.workloadIdentityUser`. The authorizer records each decision: that is the
//! impersonation audit trail.

use axum::Json;
use cloister_domain::{Email, Principal};
use cloister_store::ServiceAccountRecord;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::tokens::ACCESS_TOKEN_LIFETIME_SECS;
use crate::error::ApiError;
use crate::iam::service_accounts;
use crate::state::AppState;
use crate::time_util;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateIdToken {
    #[serde(default)]
    audience: String,
    #[serde(default)]
    include_email: bool,
    #[serde(default)]
    delegates: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessToken {
    #[serde(default)]
    scope: Vec<String>,
    #[serde(default)]
    lifetime: Option<String>,
    /// Google's clients send `null` when there is no chain.
    #[serde(default)]
    delegates: Option<Vec<String>>,
}

/// Google's clients send `delegates` (`null` when there is no chain); chains are not supported.
fn refuse_delegates(delegates: Option<&[String]>) -> Result<(), ApiError> {
    match delegates {
        Some(d) if !d.is_empty() => Err(ApiError::InvalidArgument(
            "delegation chains (delegates) are not supported; impersonate the account directly"
                .into(),
        )),
        _ => Ok(()),
    }
}

pub async fn enabled_account(
    state: &AppState,
    email: &Email,
) -> Result<ServiceAccountRecord, ApiError> {
    let account = service_accounts::load(state, email).await?;
    if account.disabled {
        return Err(ApiError::InvalidArgument(format!(
            "Service account {email} is disabled"
        )));
    }
    Ok(account)
}

/// Parses Google's duration form (`"3600s"`) into seconds within 1..=3600.
fn lifetime(given: Option<&str>) -> Result<i64, ApiError> {
    let Some(text) = given else {
        return Ok(ACCESS_TOKEN_LIFETIME_SECS);
    };
    let secs = text
        .strip_suffix('s')
        .and_then(|n| n.parse::<f64>().ok())
        .filter(|n| n.is_finite())
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "lifetime {text:?} is not a duration such as \"3600s\""
            ))
        })?;
    if !(1.0..=ACCESS_TOKEN_LIFETIME_SECS as f64).contains(&secs) {
        return Err(ApiError::InvalidArgument(format!(
            "lifetime {text:?} is out of range: 1s to {ACCESS_TOKEN_LIFETIME_SECS}s"
        )));
    }
    Ok(secs as i64)
}

pub async fn generate_access_token(
    state: &AppState,
    caller: &Principal,
    email: &Email,
    resource: &str,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: GenerateAccessToken = serde_json::from_value(body).map_err(|e| {
        ApiError::InvalidArgument(format!("Invalid generateAccessToken request: {e}"))
    })?;
    if req.scope.is_empty() {
        return Err(ApiError::InvalidArgument(
            "scope is required, e.g. [\"https://www.googleapis.com/auth/cloud-platform\"]".into(),
        ));
    }
    refuse_delegates(req.delegates.as_deref())?;
    let lifetime = lifetime(req.lifetime.as_deref())?;
    state
        .authorizer
        .check(caller, "iam.serviceAccounts.getAccessToken", resource)
        .await?;
    enabled_account(state, email).await?;
    state.metrics.token("service_account_access");
    let (token, exp) = state.tokens.issue_with(
        &Principal::ServiceAccount(email.clone()),
        time_util::now_unix(),
        lifetime,
    );
    Ok(Json(
        json!({ "accessToken": token, "expireTime": time_util::unix_to_rfc3339_seconds(exp) }),
    ))
}

/// `:generateIdToken`: an RS256 OIDC ID token for the account, for `audience`, signed by the
/// `PUBLIC_URL/accounts` issuer (verifiable through its discovery document and JWKS).
pub async fn generate_id_token(
    state: &AppState,
    caller: &Principal,
    email: &Email,
    resource: &str,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: GenerateIdToken = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid generateIdToken request: {e}")))?;
    if req.audience.is_empty() || req.audience.len() > 2048 {
        return Err(ApiError::InvalidArgument(
            "audience is required (at most 2048 characters)".into(),
        ));
    }
    refuse_delegates(req.delegates.as_deref())?;
    state
        .authorizer
        .check(caller, "iam.serviceAccounts.getOpenIdToken", resource)
        .await?;
    let token = id_token(state, email, &req.audience, req.include_email, None).await?;
    Ok(Json(json!({ "token": token })))
}

/// An ID token for an enabled account (the caller's right to it already decided: by IAM
/// above, or by the instance running as the account in the metadata server). `google` is the
/// `google` claim a GCE instance's `format=full` token carries (its `compute_engine` block).
pub async fn id_token(
    state: &AppState,
    email: &Email,
    audience: &str,
    include_email: bool,
    google: Option<Value>,
) -> Result<String, ApiError> {
    let account = enabled_account(state, email).await?;
    let now = time_util::now_unix();
    let mut claims = json!({
        "iss": state.account_keys.issuer(),
        "aud": audience,
        "sub": account.unique_id,
        "azp": account.unique_id,
        "iat": now,
        "exp": now + ACCESS_TOKEN_LIFETIME_SECS,
    });
    if include_email {
        claims["email"] = json!(email.as_str());
        claims["email_verified"] = json!(true);
    }
    if let Some(google) = google {
        claims["google"] = google;
    }
    Ok(state.account_keys.sign(&claims))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_googles_durations_within_an_hour() {
        assert_eq!(lifetime(None).unwrap(), 3600);
        assert_eq!(lifetime(Some("600s")).unwrap(), 600);
        assert!(lifetime(Some("7200s")).is_err());
        assert!(lifetime(Some("0s")).is_err());
        assert!(lifetime(Some("ten minutes")).is_err());
    }
}
