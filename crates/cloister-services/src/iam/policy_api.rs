//! `:getIamPolicy`, `:setIamPolicy` and `:testIamPermissions`, shared by every resource that
//! carries an IAM policy (projects, service accounts, and later buckets, keys, repositories).

use axum::Json;
use cloister_domain::{Member, Permission, Policy, Principal, role};
use cloister_store::StoreError;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::state::AppState;

/// What a resource's `setIamPolicy` checks.
pub struct Rules {
    /// The permission needed to change the policy.
    pub permission: Permission,
    /// Refuse a policy with no `roles/owner` member (projects: nobody could change it again).
    pub keep_an_owner: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetIamPolicy {
    policy: Policy,
    #[serde(default, rename = "updateMask")]
    _update_mask: Option<String>,
}

#[derive(Deserialize)]
struct TestIamPermissions {
    #[serde(default)]
    permissions: Vec<String>,
}

fn to_json(policy: &Policy) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(policy)
        .map(Json)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub async fn get(
    state: &AppState,
    caller: &Principal,
    resource: &str,
    permission: Permission,
) -> Result<Json<Value>, ApiError> {
    state.authorizer.check(caller, permission, resource).await?;
    let (policy, _) = state.store.get_policy(resource).await?;
    to_json(&policy)
}

pub async fn set(
    state: &AppState,
    caller: &Principal,
    resource: &str,
    rules: Rules,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    // Authorized before the body is read: a stranger learns nothing from its errors.
    state
        .authorizer
        .check(caller, rules.permission, resource)
        .await?;
    let req: SetIamPolicy = serde_json::from_value(body)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid setIamPolicy request: {e}")))?;
    let policy = validate(state, req.policy, rules.keep_an_owner).await?;
    let stored = state
        .store
        .set_policy(resource, &policy)
        .await
        .map_err(|e| match e {
            StoreError::StaleEtag { .. } => ApiError::Aborted(format!(
                "The policy of {resource} changed since it was read (stale etag). Read it again and retry."
            )),
            other => other.into(),
        })?;
    to_json(&stored)
}

pub async fn test(
    state: &AppState,
    caller: &Principal,
    resource: &str,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let req: TestIamPermissions = serde_json::from_value(body).map_err(|e| {
        ApiError::InvalidArgument(format!("Invalid testIamPermissions request: {e}"))
    })?;
    let permissions = req
        .permissions
        .iter()
        .map(|p| role::lookup_permission(p))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let grants = state
        .authorizer
        .grants(caller, &permissions, resource)
        .await?;
    let held: Vec<&str> = permissions
        .iter()
        .zip(grants)
        .filter(|(_, g)| g.is_some())
        .map(|(p, _)| *p)
        .collect();
    Ok(Json(if held.is_empty() {
        json!({})
    } else {
        json!({ "permissions": held })
    }))
}

/// The permissions of a kind of resource's policy methods.
pub struct PolicyPermissions {
    pub get_iam_policy: Permission,
    pub set_iam_policy: Permission,
    /// Reading the resource itself.
    pub get: Permission,
}

/// `:getIamPolicy`, `:setIamPolicy` or `:testIamPermissions` (`method`) on a resource with
/// these `permissions`; `missing` is the error for a resource that does not exist, none when
/// it does.
///
/// A caller hears of a missing resource only if they may call the method: otherwise they get
/// what a stranger to an existing one gets (the method's 403; testIamPermissions' empty
/// answer), so another tenant's key rings and repositories cannot be found by their names.
/// testIamPermissions needs no permission; the resource is named missing to a caller holding
/// its `get`.
pub async fn method(
    state: &AppState,
    caller: &Principal,
    resource: &str,
    method: &str,
    permissions: &PolicyPermissions,
    body: Value,
    missing: Option<ApiError>,
) -> Result<Json<Value>, ApiError> {
    let Some(not_found) = missing else {
        return match method {
            "getIamPolicy" => get(state, caller, resource, permissions.get_iam_policy).await,
            "setIamPolicy" => {
                let rules = Rules {
                    permission: permissions.set_iam_policy,
                    keep_an_owner: false,
                };
                set(state, caller, resource, rules, body).await
            }
            "testIamPermissions" => test(state, caller, resource, body).await,
            other => Err(ApiError::NotFound(format!("Unknown method :{other}"))),
        };
    };
    let needed = match method {
        "getIamPolicy" => permissions.get_iam_policy,
        "setIamPolicy" => permissions.set_iam_policy,
        "testIamPermissions" => {
            if state
                .authorizer
                .holds(caller, permissions.get, resource)
                .await?
            {
                return Err(not_found);
            }
            return test(state, caller, resource, body).await;
        }
        other => return Err(ApiError::NotFound(format!("Unknown method :{other}"))),
    };
    state.authorizer.check(caller, needed, resource).await?;
    Err(not_found)
}

/// Refuses unknown roles, users and service accounts that do not exist, and (when asked) a
/// policy without an owner.
async fn validate(
    state: &AppState,
    policy: Policy,
    keep_an_owner: bool,
) -> Result<Policy, ApiError> {
    policy
        .validate()
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let mut missing = None;
    for m in policy.bindings.iter().flat_map(|b| b.members.iter()) {
        let exists = match m {
            Member::User(e) => state.store.get_user(e).await?.is_some(),
            Member::ServiceAccount(e) => state.store.get_service_account(e).await?.is_some(),
            _ => true,
        };
        if !exists {
            missing = Some(m);
            break;
        }
    }
    match missing {
        Some(Member::User(user)) => {
            return Err(ApiError::InvalidArgument(format!(
                "User {user} does not exist. A platform admin creates users with `cloister iam users create {user}`"
            )));
        }
        Some(Member::ServiceAccount(sa)) => {
            return Err(ApiError::InvalidArgument(format!(
                "Service account {sa} does not exist. Create it with `cloister iam service-accounts create`"
            )));
        }
        _ => {}
    }
    if keep_an_owner
        && !policy
            .bindings
            .iter()
            .any(|b| b.role == "roles/owner" && !b.members.is_empty())
    {
        return Err(ApiError::InvalidArgument(
            "The policy would leave the project without an owner; keep at least one member in roles/owner".into(),
        ));
    }
    Ok(policy)
}
