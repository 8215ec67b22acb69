//! Who is calling: the authenticated identity behind a request, and whether a policy member
//! names it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::Email;
use crate::member::{Member, PoolRef, PrincipalSetKind};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Principal {
    User(Email),
    ServiceAccount(Email),
    /// An identity from a workload identity pool, after STS token exchange. Its attributes are
    /// the provider's attribute mapping applied to the verified subject token.
    Federated {
        pool_project_number: u64,
        pool_id: String,
        subject: String,
        attributes: BTreeMap<String, String>,
        groups: Vec<String>,
    },
}

impl Principal {
    /// Whether `member` (from a policy binding) names this principal.
    pub fn is_named_by(&self, member: &Member) -> bool {
        match (self, member) {
            (Principal::User(a), Member::User(b)) => a == b,
            (Principal::ServiceAccount(a), Member::ServiceAccount(b)) => a == b,
            (Principal::Federated { subject, .. }, Member::Principal { pool, subject: s }) => {
                self.in_pool(pool) && subject == s
            }
            (
                Principal::Federated {
                    attributes, groups, ..
                },
                Member::PrincipalSet { pool, kind },
            ) => {
                self.in_pool(pool)
                    && match kind {
                        PrincipalSetKind::All => true,
                        PrincipalSetKind::Group(g) => groups.contains(g),
                        PrincipalSetKind::Attribute { name, value } => {
                            attributes.get(name) == Some(value)
                        }
                    }
            }
            _ => false,
        }
    }

    fn in_pool(&self, pool: &PoolRef) -> bool {
        matches!(self, Principal::Federated { pool_project_number, pool_id, .. }
            if *pool_project_number == pool.project_number.0 && *pool_id == pool.pool_id)
    }
}

impl fmt::Display for Principal {
    /// The member string that names exactly this principal, as audit entries record it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::User(e) => write!(f, "user:{e}"),
            Principal::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Principal::Federated {
                pool_project_number,
                pool_id,
                subject,
                ..
            } => write!(
                f,
                "principal://iam.googleapis.com/projects/{pool_project_number}/locations/global/workloadIdentityPools/{pool_id}/subject/{subject}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn federated() -> Principal {
        Principal::Federated {
            pool_project_number: 123456789012,
            pool_id: "primus-pool".into(),
            subject: "sub-1".into(),
            attributes: BTreeMap::from([("image_digest".into(), "sha256:abc".into())]),
            groups: vec!["ml".into()],
        }
    }

    fn member(s: &str) -> Member {
        Member::parse(s).unwrap()
    }

    #[test]
    fn users_and_service_accounts_match_only_their_own_member() {
        let alice = Principal::User(Email::parse("alice@example.com").unwrap());
        assert!(alice.is_named_by(&member("user:alice@example.com")));
        assert!(!alice.is_named_by(&member("user:bob@example.com")));
        assert!(!alice.is_named_by(&member(
            "serviceAccount:alice@p-123456.iam.gserviceaccount.com"
        )));
    }

    #[test]
    fn federated_principals_match_subject_sets_and_attributes_of_their_pool_only() {
        let p = federated();
        let pool = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/primus-pool";
        let other = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/other-pool";
        assert!(p.is_named_by(&member(&format!("principal:{pool}/subject/sub-1"))));
        assert!(!p.is_named_by(&member(&format!("principal:{pool}/subject/sub-2"))));
        assert!(p.is_named_by(&member(&format!("principalSet:{pool}/*"))));
        assert!(!p.is_named_by(&member(&format!("principalSet:{other}/*"))));
        assert!(p.is_named_by(&member(&format!("principalSet:{pool}/group/ml"))));
        assert!(!p.is_named_by(&member(&format!("principalSet:{pool}/group/ops"))));
        assert!(p.is_named_by(&member(&format!(
            "principalSet:{pool}/attribute.image_digest/sha256:abc"
        ))));
        assert!(!p.is_named_by(&member(&format!(
            "principalSet:{pool}/attribute.image_digest/sha256:def"
        ))));
        assert_eq!(p.to_string(), format!("principal:{pool}/subject/sub-1"));
    }
}
