//! Identifiers with Google's syntax rules, validated once at the edge and trusted afterwards.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid project id {id:?}: {why}. A project id is 6 to 30 characters: lowercase letters, \
         digits and hyphens, starting with a letter and not ending with a hyphen (e.g. \"primus-bank\")"
    )]
    ProjectId { id: String, why: &'static str },
    #[error("invalid email {email:?}: {why}. Expected NAME@DOMAIN, e.g. \"alice@example.com\"")]
    Email { email: String, why: &'static str },
    #[error(
        "invalid service account id {id:?}: {why}. An account id is 6 to 30 characters: lowercase \
         letters, digits and hyphens, starting with a letter and not ending with a hyphen (e.g. \"workload-sa\")"
    )]
    AccountId { id: String, why: &'static str },
}

/// Google's rule for project ids and service account ids alike: 6–30 characters of
/// `[a-z0-9-]`, starting with a letter, not ending with a hyphen.
fn check_resource_id(id: &str) -> Result<(), &'static str> {
    if id.len() < 6 {
        return Err("it is shorter than 6 characters");
    }
    if id.len() > 30 {
        return Err("it is longer than 30 characters");
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("it does not start with a lowercase letter");
    }
    if id.ends_with('-') {
        return Err("it ends with a hyphen");
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err("it contains a character other than a-z, 0-9 and '-'");
    }
    Ok(())
}

/// An RFC 1035 label, as Google names instances, zones and repositories: 1 to 63 lowercase
/// letters, digits and hyphens, starting with a letter, not ending with a hyphen.
pub fn is_rfc1035_label(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The email of service account `account_id` in `project`: `NAME@PROJECT.iam.gserviceaccount.com`.
pub fn service_account_email(account_id: &str, project: &ProjectId) -> Result<Email, IdError> {
    check_resource_id(account_id).map_err(|why| IdError::AccountId {
        id: account_id.to_owned(),
        why,
    })?;
    Email::parse(&format!("{account_id}@{project}.iam.gserviceaccount.com"))
}

/// The project id of a service account email, when it has Google's form.
pub fn service_account_project(email: &Email) -> Option<ProjectId> {
    let (_, domain) = email.as_str().split_once('@')?;
    ProjectId::parse(domain.strip_suffix(".iam.gserviceaccount.com")?).ok()
}

/// A project id such as `primus-bank` (Google's rules: 6–30 chars, `[a-z][a-z0-9-]*[a-z0-9]`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProjectId(String);

impl ProjectId {
    pub fn parse(id: &str) -> Result<Self, IdError> {
        let fail = |why| IdError::ProjectId {
            id: id.to_owned(),
            why,
        };
        if id.len() < 6 {
            return Err(fail("it is shorter than 6 characters"));
        }
        if id.len() > 30 {
            return Err(fail("it is longer than 30 characters"));
        }
        if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(fail("it does not start with a lowercase letter"));
        }
        if id.ends_with('-') {
            return Err(fail("it ends with a hyphen"));
        }
        if !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(fail("it contains a character other than a-z, 0-9 and '-'"));
        }
        Ok(Self(id.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The IAM resource name of the project, `projects/ID`.
    pub fn resource_name(&self) -> String {
        format!("projects/{}", self.0)
    }
}

impl TryFrom<String> for ProjectId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<ProjectId> for String {
    fn from(id: ProjectId) -> String {
        id.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The numeric project number Google assigns at creation (12 digits, never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectNumber(pub u64);

impl ProjectNumber {
    pub const MIN: u64 = 100_000_000_000;
    pub const MAX: u64 = 999_999_999_999;
}

impl fmt::Display for ProjectNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An email address identifying a user or a service account. Stored lowercased: Google treats
/// principal emails case-insensitively, and one spelling avoids two policy entries for one person.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    pub fn parse(email: &str) -> Result<Self, IdError> {
        let fail = |why| IdError::Email {
            email: email.to_owned(),
            why,
        };
        if email.len() > 254 {
            return Err(fail("it is longer than 254 characters"));
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(fail("it has no '@'"));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(fail("the part before or after '@' is empty"));
        }
        if domain.contains('@') {
            return Err(fail("it has more than one '@'"));
        }
        let allowed = |c: char| c.is_ascii_alphanumeric() || "._+-".contains(c);
        if !local.chars().all(allowed) || !domain.chars().all(allowed) {
            return Err(fail(
                "it contains a character other than letters, digits and . _ + -",
            ));
        }
        if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') {
            return Err(fail("the domain is not of the form NAME.TLD"));
        }
        Ok(Self(email.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_follow_googles_rules() {
        for good in ["primus-bank", "abcdef", "a12345", "secundus-2026-x"] {
            assert!(ProjectId::parse(good).is_ok(), "{good}");
        }
        let cases = [
            ("short", "shorter than 6"),
            ("a-very-long-project-id-that-goes-on", "longer than 30"),
            ("1project", "start with a lowercase letter"),
            ("project-", "ends with a hyphen"),
            ("Project-x", "start with a lowercase letter"),
            ("proj_ect", "character other than"),
            ("proj/../x", "character other than"),
        ];
        for (bad, why) in cases {
            let err = ProjectId::parse(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.contains(bad), "error names the input: {err}");
        }
    }

    #[test]
    fn service_account_emails_follow_googles_form() {
        let p = ProjectId::parse("secundus-bank").unwrap();
        let e = service_account_email("workload-sa", &p).unwrap();
        assert_eq!(
            e.as_str(),
            "workload-sa@secundus-bank.iam.gserviceaccount.com"
        );
        assert_eq!(service_account_project(&e), Some(p.clone()));
        assert!(
            service_account_email("sa", &p)
                .unwrap_err()
                .to_string()
                .contains("service account id")
        );
        assert!(service_account_email("Bad_Id", &p).is_err());
        assert_eq!(
            service_account_project(&Email::parse("a@example.com").unwrap()),
            None
        );
    }

    #[test]
    fn emails_are_validated_and_lowercased() {
        assert_eq!(
            Email::parse("Alice@Example.COM").unwrap().as_str(),
            "alice@example.com"
        );
        for bad in [
            "alice",
            "@example.com",
            "alice@",
            "a@b@c.com",
            "al ice@x.com",
            "a@localhost",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
