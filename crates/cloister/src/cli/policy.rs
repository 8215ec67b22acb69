//! Read-modify-write of IAM policies, as gcloud's add-/remove-iam-policy-binding do it.

use anyhow::Result;
use cloister_client::{ApiClient, ClientError};
use serde_json::{Value, json};

/// `RESOURCE:getIamPolicy`, where `resource` is an API path such as `/v1/projects/P`.
pub async fn get_policy(client: &ApiClient, resource: &str) -> Result<Value, ClientError> {
    client
        .post(&format!("{resource}:getIamPolicy"), &json!({}))
        .await
}

/// Read, change, write with the etag; retried when another writer got there first.
pub async fn edit_policy(
    client: &ApiClient,
    resource: &str,
    change: impl Fn(&mut Value),
) -> Result<Value> {
    let mut attempts = 0;
    loop {
        let mut policy = get_policy(client, resource).await?;
        change(&mut policy);
        match client
            .post(
                &format!("{resource}:setIamPolicy"),
                &json!({"policy": policy}),
            )
            .await
        {
            Err(ClientError::Api { status, .. }) if status == "ABORTED" && attempts < 3 => {
                attempts += 1
            }
            other => return Ok(other?),
        }
    }
}

pub fn add_member(policy: &mut Value, role: &str, member: &str) {
    let bindings = bindings(policy);
    match bindings.iter_mut().find(|b| b["role"] == role) {
        Some(b) => {
            if let Some(members) = b["members"].as_array_mut()
                && !members.iter().any(|m| m == member)
            {
                members.push(json!(member));
            }
        }
        None => bindings.push(json!({"role": role, "members": [member]})),
    }
}

pub fn remove_member(policy: &mut Value, role: &str, member: &str) {
    let bindings = bindings(policy);
    for b in bindings.iter_mut().filter(|b| b["role"] == role) {
        if let Some(members) = b["members"].as_array_mut() {
            members.retain(|m| m != member);
        }
    }
    bindings.retain(|b| b["members"].as_array().is_some_and(|m| !m.is_empty()));
}

fn bindings(policy: &mut Value) -> &mut Vec<Value> {
    if !policy["bindings"].is_array() {
        policy["bindings"] = json!([]);
    }
    // Just ensured it is an array.
    policy["bindings"]
        .as_array_mut()
        .expect("bindings is an array")
}
