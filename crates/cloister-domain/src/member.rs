//! IAM policy members in Google's syntax (`user:`, `serviceAccount:`, `principal://…`,
//! `principalSet://…`), parsed strictly so a typo is refused instead of silently never matching.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{Email, ProjectNumber};

const IAM_HOST: &str = "//iam.googleapis.com/";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid member {member:?}: {why}. {HELP}")]
pub struct MemberError {
    pub member: String,
    pub why: String,
}

const HELP: &str = "Expected one of user:EMAIL, serviceAccount:EMAIL, \
principal://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT, \
principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/* or \
principalSet://iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/attribute.NAME/VALUE";

/// A workload identity pool, named by its project's number as Google's principal URIs do.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolRef {
    pub project_number: ProjectNumber,
    pub pool_id: String,
}

impl PoolRef {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL`
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/locations/global/workloadIdentityPools/{}",
            self.project_number, self.pool_id
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalSetKind {
    /// `…/POOL/*`: every identity of the pool.
    All,
    /// `…/POOL/group/GROUP`: identities whose mapped `google.groups` contains GROUP.
    Group(String),
    /// `…/POOL/attribute.NAME/VALUE`: identities whose mapped `attribute.NAME` equals VALUE.
    Attribute { name: String, value: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Member {
    User(Email),
    ServiceAccount(Email),
    /// One federated identity: `principal://…/POOL/subject/SUBJECT`.
    Principal {
        pool: PoolRef,
        subject: String,
    },
    /// A set of federated identities of one pool.
    PrincipalSet {
        pool: PoolRef,
        kind: PrincipalSetKind,
    },
}

impl Member {
    pub fn parse(member: &str) -> Result<Self, MemberError> {
        let fail = |why: String| MemberError {
            member: member.to_owned(),
            why,
        };
        if let Some(email) = member.strip_prefix("user:") {
            return Email::parse(email)
                .map(Member::User)
                .map_err(|e| fail(e.to_string()));
        }
        if let Some(email) = member.strip_prefix("serviceAccount:") {
            let email = Email::parse(email).map_err(|e| fail(e.to_string()))?;
            if !email.as_str().ends_with(".iam.gserviceaccount.com") {
                return Err(fail(
                    "a service account email ends with .iam.gserviceaccount.com".into(),
                ));
            }
            return Ok(Member::ServiceAccount(email));
        }
        if let Some(rest) = member.strip_prefix("principal:") {
            let (pool, tail) = parse_pool(rest).map_err(fail)?;
            let subject = tail
                .strip_prefix("subject/")
                .ok_or_else(|| fail("after the pool a principal needs /subject/SUBJECT".into()))?;
            if subject.is_empty() || subject.len() > 127 {
                return Err(fail("the subject must be 1 to 127 bytes".into()));
            }
            return Ok(Member::Principal {
                pool,
                subject: subject.to_owned(),
            });
        }
        if let Some(rest) = member.strip_prefix("principalSet:") {
            let (pool, tail) = parse_pool(rest).map_err(fail)?;
            let kind = if tail == "*" {
                PrincipalSetKind::All
            } else if let Some(group) = tail.strip_prefix("group/") {
                if group.is_empty() {
                    return Err(fail("the group name is empty".into()));
                }
                PrincipalSetKind::Group(group.to_owned())
            } else if let Some(attr) = tail.strip_prefix("attribute.") {
                let (name, value) = attr
                    .split_once('/')
                    .ok_or_else(|| fail("expected attribute.NAME/VALUE".into()))?;
                if !is_attribute_name(name) {
                    return Err(fail(format!(
                        "attribute name {name:?} must match [a-z_][a-z0-9_]{{0,99}}"
                    )));
                }
                if value.is_empty() {
                    return Err(fail("the attribute value is empty".into()));
                }
                PrincipalSetKind::Attribute {
                    name: name.to_owned(),
                    value: value.to_owned(),
                }
            } else {
                return Err(fail(
                    "after the pool a principal set needs /*, /group/GROUP or /attribute.NAME/VALUE"
                        .into(),
                ));
            };
            return Ok(Member::PrincipalSet { pool, kind });
        }
        Err(fail("unknown member type".into()))
    }
}

/// Parses `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/POOL/` and
/// returns the pool and what follows it.
fn parse_pool(rest: &str) -> Result<(PoolRef, &str), String> {
    let path = rest
        .strip_prefix(IAM_HOST)
        .ok_or_else(|| format!("federated members start with {IAM_HOST:?} after the scheme"))?;
    let mut parts = path.splitn(7, '/');
    let mut next = || parts.next().unwrap_or("");
    let (p, number, l, location, w, pool_id, tail) =
        (next(), next(), next(), next(), next(), next(), next());
    if p != "projects" || l != "locations" || w != "workloadIdentityPools" {
        return Err("expected projects/NUMBER/locations/global/workloadIdentityPools/POOL".into());
    }
    let project_number = number
        .parse::<u64>()
        .ok()
        .filter(|n| (ProjectNumber::MIN..=ProjectNumber::MAX).contains(n))
        .ok_or_else(|| {
            format!(
                "{number:?} is not a project number (federated members name the project by number)"
            )
        })?;
    if location != "global" {
        return Err(format!(
            "location {location:?} is not supported: pools live in \"global\""
        ));
    }
    if !is_pool_id(pool_id) {
        return Err(format!(
            "pool id {pool_id:?} must be 4 to 32 lowercase letters, digits or hyphens"
        ));
    }
    let pool = PoolRef {
        project_number: ProjectNumber(project_number),
        pool_id: pool_id.to_owned(),
    };
    Ok((pool, tail))
}

pub fn is_pool_id(id: &str) -> bool {
    (4..=32).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn is_attribute_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::User(e) => write!(f, "user:{e}"),
            Member::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Member::Principal { pool, subject } => {
                write!(
                    f,
                    "principal:{IAM_HOST}{}/subject/{subject}",
                    pool.resource_name()
                )
            }
            Member::PrincipalSet { pool, kind } => {
                write!(f, "principalSet:{IAM_HOST}{}/", pool.resource_name())?;
                match kind {
                    PrincipalSetKind::All => f.write_str("*"),
                    PrincipalSetKind::Group(g) => write!(f, "group/{g}"),
                    PrincipalSetKind::Attribute { name, value } => {
                        write!(f, "attribute.{name}/{value}")
                    }
                }
            }
        }
    }
}

impl TryFrom<String> for Member {
    type Error = MemberError;
    fn try_from(s: String) -> Result<Self, MemberError> {
        Self::parse(&s)
    }
}

impl From<Member> for String {
    fn from(m: Member) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POOL: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/primus-pool";

    #[test]
    fn every_member_form_round_trips() {
        for m in [
            "user:alice@example.com".to_owned(),
            "serviceAccount:workload-sa@secundus-1.iam.gserviceaccount.com".to_owned(),
            format!(
                "principal:{POOL}/subject/https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/i"
            ),
            format!("principalSet:{POOL}/*"),
            format!("principalSet:{POOL}/group/admins"),
            format!("principalSet:{POOL}/attribute.image_digest/sha256:abc"),
        ] {
            let parsed = Member::parse(&m).unwrap_or_else(|e| panic!("{m}: {e}"));
            assert_eq!(parsed.to_string(), m);
        }
    }

    #[test]
    fn malformed_members_are_refused_with_the_reason() {
        let cases = [
            ("alice@example.com", "unknown member type"),
            ("user:alice", "no '@'"),
            ("group:eng@example.com", "unknown member type"),
            ("serviceAccount:bob@example.com", "iam.gserviceaccount.com"),
            (
                "principal://iam.googleapis.com/projects/primus/locations/global/workloadIdentityPools/pool/subject/x",
                "not a project number",
            ),
            (
                &format!("principal:{POOL}/attribute.x/y"),
                "/subject/SUBJECT",
            ),
            (&format!("principal:{POOL}/subject/"), "1 to 127"),
            (
                &format!("principalSet:{POOL}/attribute.Bad-Name/v"),
                "attribute name",
            ),
            (
                &format!("principalSet:{POOL}/attribute.name"),
                "attribute.NAME/VALUE",
            ),
            (
                &format!("principalSet:{POOL}/everyone"),
                "principal set needs",
            ),
            (
                "principalSet://iam.googleapis.com/projects/123456789012/locations/us/workloadIdentityPools/pool/*",
                "global",
            ),
            (
                "principalSet://evil.example.com/projects/123456789012/locations/global/workloadIdentityPools/pool/*",
                "iam.googleapis.com",
            ),
        ];
        for (bad, why) in cases {
            let err = Member::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
