//! IAM policies: role → members bindings attached to a project or a resource, in Google's JSON
//! shape (`{"version":1,"etag":"…","bindings":[{"role":"…","members":["…"]}]}`).

use serde::{Deserialize, Serialize};

use crate::member::Member;
use crate::principal::Principal;
use crate::role::{Role, RoleError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error(transparent)]
    Role(#[from] RoleError),
    #[error("binding for {role} has no members: remove the binding or add a member")]
    EmptyBinding { role: String },
    #[error("a policy may hold at most {max} members in all; this one has {count}")]
    TooManyMembers { count: usize, max: usize },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default = "one")]
    pub version: i32,
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Optimistic concurrency: a `setIamPolicy` carrying a stale etag is refused.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub etag: String,
}

fn one() -> i32 {
    1
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            version: 1,
            bindings: Vec::new(),
            etag: String::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub role: String,
    pub members: Vec<Member>,
}

impl Policy {
    /// Google's limit on principals in one policy.
    pub const MAX_MEMBERS: usize = 1500;

    /// Refuses unknown roles and empty bindings. Members were already parsed on the way in.
    pub fn validate(&self) -> Result<(), PolicyError> {
        let mut count = 0;
        for b in &self.bindings {
            Role::lookup(&b.role)?;
            if b.members.is_empty() {
                return Err(PolicyError::EmptyBinding {
                    role: b.role.clone(),
                });
            }
            count += b.members.len();
        }
        if count > Self::MAX_MEMBERS {
            return Err(PolicyError::TooManyMembers {
                count,
                max: Self::MAX_MEMBERS,
            });
        }
        Ok(())
    }

    /// Adds `member` to `role`'s binding; returns false when it was already there.
    pub fn add_binding(&mut self, role: &str, member: Member) -> Result<bool, PolicyError> {
        Role::lookup(role)?;
        match self.bindings.iter_mut().find(|b| b.role == role) {
            Some(b) if b.members.contains(&member) => return Ok(false),
            Some(b) => b.members.push(member),
            None => self.bindings.push(Binding {
                role: role.to_owned(),
                members: vec![member],
            }),
        }
        Ok(true)
    }

    /// Removes `member` from `role`'s binding (dropping the binding when it empties); returns
    /// false when there was nothing to remove.
    pub fn remove_binding(&mut self, role: &str, member: &Member) -> bool {
        let Some(i) = self.bindings.iter().position(|b| b.role == role) else {
            return false;
        };
        let before = self.bindings[i].members.len();
        self.bindings[i].members.retain(|m| m != member);
        let removed = self.bindings[i].members.len() != before;
        if self.bindings[i].members.is_empty() {
            self.bindings.remove(i);
        }
        removed
    }

    /// The first role in this policy that grants `permission` to `principal`, if any.
    pub fn role_granting(&self, principal: &Principal, permission: &str) -> Option<&str> {
        self.bindings
            .iter()
            .filter(|b| Role::lookup(&b.role).is_ok_and(|r| r.grants(permission)))
            .find(|b| b.members.iter().any(|m| principal.is_named_by(m)))
            .map(|b| b.role.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Email;

    fn user(e: &str) -> Member {
        Member::parse(&format!("user:{e}")).unwrap()
    }

    #[test]
    fn bindings_add_and_remove_idempotently() {
        let mut p = Policy::default();
        assert!(p.add_binding("roles/viewer", user("b@x.com")).unwrap());
        assert!(!p.add_binding("roles/viewer", user("b@x.com")).unwrap());
        assert!(p.add_binding("roles/viewer", user("c@x.com")).unwrap());
        assert_eq!(p.bindings.len(), 1);
        assert!(p.remove_binding("roles/viewer", &user("b@x.com")));
        assert!(!p.remove_binding("roles/viewer", &user("b@x.com")));
        assert!(p.remove_binding("roles/viewer", &user("c@x.com")));
        assert!(p.bindings.is_empty(), "an emptied binding disappears");
        assert!(p.add_binding("roles/god", user("b@x.com")).is_err());
    }

    #[test]
    fn a_policy_grants_only_through_a_role_listing_the_permission() {
        let mut p = Policy::default();
        p.add_binding("roles/viewer", user("b@x.com")).unwrap();
        let bob = Principal::User(Email::parse("b@x.com").unwrap());
        let eve = Principal::User(Email::parse("eve@x.com").unwrap());
        assert_eq!(
            p.role_granting(&bob, "resourcemanager.projects.get"),
            Some("roles/viewer")
        );
        assert_eq!(
            p.role_granting(&bob, "resourcemanager.projects.setIamPolicy"),
            None
        );
        assert_eq!(p.role_granting(&eve, "resourcemanager.projects.get"), None);
    }

    #[test]
    fn google_json_shape_parses_and_bad_members_are_refused() {
        let p: Policy = serde_json::from_str(
            r#"{"bindings":[{"role":"roles/owner","members":["user:a@x.com"]}],"etag":"e1"}"#,
        )
        .unwrap();
        assert_eq!(p.version, 1);
        p.validate().unwrap();
        let bad = serde_json::from_str::<Policy>(
            r#"{"bindings":[{"role":"roles/owner","members":["a@x.com"]}]}"#,
        );
        assert!(bad.unwrap_err().to_string().contains("invalid member"));
        let unknown: Policy = serde_json::from_str(
            r#"{"bindings":[{"role":"roles/nope","members":["user:a@x.com"]}]}"#,
        )
        .unwrap();
        assert!(matches!(unknown.validate(), Err(PolicyError::Role(_))));
    }
}
