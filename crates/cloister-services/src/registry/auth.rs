//! Who may do what in the registry.
//!
//! Docker token auth: `/v2/` answers 401 with `WWW-Authenticate: Bearer realm=…/v2/token,
//! service=…`; clients then ask the realm for a token with Basic credentials and the scopes
//! they need, and the token names the principal and only the scopes IAM grants it. As in
//! Artifact Registry, Basic credentials are user `oauth2accesstoken` with a Cloister access
//! token as password (so a workload pulls with its metadata-server token), and a Cloister
//! access token as `Bearer` is also accepted directly.
//!
//! Every request is still checked against IAM (and audited); a token's scopes only narrow it.
//! Only API credentials obtain registry tokens: a registry token never mints another, so its
//! scopes and its expiry mean what they say.

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::{Permission, Principal};
use serde_json::{Value, json};

use super::error::RegistryError;
use super::names::ImageName;
use crate::auth::caller::require_active;
use crate::auth::tokens::ACCESS_TOKEN_LIFETIME_SECS;
use crate::error::ApiError;
use crate::iam::authorizer::denied;
use crate::jwt;
use crate::state::AppState;
use crate::time_util;

/// Artifact Registry's Basic user name for an OAuth access token.
const TOKEN_USER: &str = "oauth2accesstoken";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pull,
    Push,
    Delete,
}

impl Action {
    fn scope_word(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    pub fn permission(self) -> Permission {
        match self {
            Action::Pull => "artifactregistry.repositories.downloadArtifacts",
            Action::Push => "artifactregistry.repositories.uploadArtifacts",
            Action::Delete => "artifactregistry.repositories.deleteArtifacts",
        }
    }
}

/// An authenticated registry caller: scopes are `None` for an unscoped API token.
pub struct RegistryCaller {
    pub principal: Principal,
    /// The provider a federated principal's token was exchanged through.
    provider: Option<String>,
    scopes: Option<Vec<String>>,
}

fn service(state: &AppState) -> String {
    state
        .public_url
        .split_once("://")
        .map_or(state.public_url.as_str(), |(_, host)| host)
        .to_owned()
}

pub fn challenge(state: &AppState, scope: Option<String>) -> String {
    let mut c = format!(
        "Bearer realm=\"{}/v2/token\",service=\"{}\"",
        state.public_url,
        service(state)
    );
    if let Some(scope) = scope {
        c.push_str(&format!(",scope=\"{scope}\""));
    }
    c
}

fn unauthorized(state: &AppState, message: String, scope: Option<String>) -> RegistryError {
    RegistryError::Unauthorized {
        message,
        challenge: challenge(state, scope),
    }
}

const HOW: &str = "log in with user oauth2accesstoken and the output of `cloister auth print-access-token` as password";

/// The principal behind the request's `Authorization` header, if any.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<RegistryCaller>, RegistryError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().unwrap_or_default();
    let bad = |why: String| unauthorized(state, format!("{why}; {HOW}"), None);
    let (verified, scoped) = if let Some(token) = value.strip_prefix("Bearer ") {
        let token = jwt::trim(token);
        match state.tokens.verify_registry(token) {
            Ok(verified) => (verified, true),
            Err(_) => (
                state
                    .tokens
                    .verify(token)
                    .map_err(|e| bad(format!("invalid bearer token: {e}")))?,
                false,
            ),
        }
    } else if let Some(basic) = value.strip_prefix("Basic ") {
        let (user, password) =
            decode_basic(basic).ok_or_else(|| bad("malformed Basic credentials".into()))?;
        if user != TOKEN_USER {
            return Err(bad(format!("unknown user {user:?}")));
        }
        let verified = state
            .tokens
            .verify(jwt::trim(&password))
            .map_err(|e| bad(format!("invalid access token: {e}")))?;
        (verified, false)
    } else {
        return Err(bad("unsupported Authorization scheme".into()));
    };
    require_active(state, &verified)
        .await
        .map_err(|e| bad(e.to_string()))?;
    Ok(Some(RegistryCaller {
        principal: verified.principal,
        provider: verified.provider,
        scopes: scoped.then_some(verified.scopes),
    }))
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = STANDARD.decode(b64.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn scope_for(name: &str, actions: &[Action]) -> String {
    let words: Vec<&str> = actions.iter().map(|a| a.scope_word()).collect();
    format!("repository:{name}:{}", words.join(","))
}

/// The 401 an anonymous caller gets: the challenge names the scope to ask the realm for.
pub fn anonymous(state: &AppState, name: &ImageName, action: Action) -> RegistryError {
    let full = name.full();
    let actions: &[Action] = match action {
        Action::Pull => &[Action::Pull],
        other => &[Action::Pull, other],
    };
    unauthorized(
        state,
        format!(
            "authentication required to {} {full}; {HOW}",
            action.scope_word()
        ),
        Some(scope_for(&full, actions)),
    )
}

/// Allows `action` on the image's repository (resource name `repository`), or explains why not.
pub async fn authorize(
    state: &AppState,
    caller: &RegistryCaller,
    name: &ImageName,
    repository: &str,
    action: Action,
) -> Result<Principal, RegistryError> {
    let full = name.full();
    let in_scope = caller.scopes.as_ref().is_none_or(|scopes| {
        scopes.iter().any(|s| {
            s.strip_prefix("repository:")
                .and_then(|s| s.rsplit_once(':'))
                .is_some_and(|(n, acts)| {
                    n == full && acts.split(',').any(|a| a == action.scope_word())
                })
        })
    });
    // IAM decides (and audits) first, so a refusal says which permission is missing. The
    // refusal names the repository without its location, so it reads the same whether or not
    // the repository exists.
    state
        .authorizer
        .check(&caller.principal, action.permission(), repository)
        .await
        .map_err(|e| match e {
            ApiError::PermissionDenied { .. } => RegistryError::from(denied(
                &caller.principal,
                action.permission(),
                &name.repository_resource(),
            )),
            other => other.into(),
        })?;
    if !in_scope {
        return Err(RegistryError::Unauthorized {
            message: format!("the token does not grant {} on {full}", action.scope_word()),
            challenge: format!(
                "{},error=\"insufficient_scope\"",
                challenge(state, Some(scope_for(&full, &[action])))
            ),
        });
    }
    Ok(caller.principal.clone())
}

/// `GET /v2/token?service=…&scope=repository:NAME:pull,push…`: a token for the caller with
/// the requested actions IAM grants (possibly none, as Docker's token spec says).
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Result<Json<Value>, RegistryError> {
    let Some(caller) = authenticate(&state, &headers).await? else {
        return Err(unauthorized(
            &state,
            format!("the token endpoint needs credentials; {HOW}"),
            None,
        ));
    };
    if caller.scopes.is_some() {
        return Err(unauthorized(
            &state,
            format!("a registry token cannot obtain another registry token; {HOW}"),
            None,
        ));
    }
    let scopes = form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_owned).collect::<Vec<_>>())
        .collect::<Vec<_>>();
    let mut granted = Vec::new();
    for scope in scopes {
        let Some((name, actions)) = scope
            .strip_prefix("repository:")
            .and_then(|s| s.rsplit_once(':'))
        else {
            continue;
        };
        let Ok(image) = ImageName::parse(name) else {
            continue;
        };
        let repository = match state
            .store
            .get_repository(&image.project, &image.repository_id)
            .await?
        {
            Some(r) => r.name(),
            None => continue,
        };
        let wanted: Vec<Action> = actions
            .split(',')
            .filter_map(|a| match a {
                "pull" => Some(Action::Pull),
                "push" => Some(Action::Push),
                "delete" => Some(Action::Delete),
                _ => None,
            })
            .collect();
        let permissions: Vec<Permission> = wanted.iter().map(|a| a.permission()).collect();
        let grants = state
            .authorizer
            .grants(&caller.principal, &permissions, &repository)
            .await
            .map_err(RegistryError::from)?;
        let allowed: Vec<Action> = wanted
            .iter()
            .zip(grants)
            .filter_map(|(a, g)| g.map(|_| *a))
            .collect();
        if !allowed.is_empty() {
            granted.push(scope_for(name, &allowed));
        }
    }
    let (token, _) =
        state
            .tokens
            .issue_registry(&caller.principal, caller.provider.as_deref(), granted);
    state.metrics.token("registry");
    Ok(Json(json!({
        "token": token,
        "access_token": token,
        "expires_in": ACCESS_TOKEN_LIFETIME_SECS,
        // Clients compute expiry from this; a stale value makes them fetch a token per request.
        "issued_at": time_util::now_rfc3339(),
    })))
}
