//! The registry's names: repository paths (`PROJECT/REPOSITORY/IMAGE`), tags and digests,
//! validated with the distribution spec's grammar before they reach the database, so `..`,
//! absolute paths and other traversal attempts are refused as `NAME_INVALID`.

use cloister_domain::ProjectId;

use super::error::RegistryError;

/// An OCI repository name split into Cloister's parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageName {
    pub project: ProjectId,
    pub repository_id: String,
    pub image: String,
}

impl ImageName {
    pub fn parse(name: &str) -> Result<Self, RegistryError> {
        let invalid = |why: &str| {
            RegistryError::NameInvalid(format!(
                "invalid repository name {name:?}: {why}; names are PROJECT/REPOSITORY/IMAGE in lowercase letters, digits and separators (. _ __ -)"
            ))
        };
        if name.len() > 255 {
            return Err(invalid("longer than 255 characters"));
        }
        let parts: Vec<&str> = name.split('/').collect();
        if parts.len() < 3 {
            return Err(invalid("it needs at least three path components"));
        }
        if let Some(bad) = parts.iter().find(|p| !is_component(p)) {
            return Err(invalid(&format!("the component {bad:?} is not allowed")));
        }
        let project = ProjectId::parse(parts[0])
            .map_err(|e| invalid(&format!("{:?} is not a project id ({e})", parts[0])))?;
        Ok(Self {
            project,
            repository_id: parts[1].to_owned(),
            image: parts[2..].join("/"),
        })
    }

    /// The repository's IAM resource name with any location (`locations/-`, as Google writes
    /// it): what a refusal names, since a caller who may not see the repository must not learn
    /// whether, or where, it exists.
    pub fn repository_resource(&self) -> String {
        format!(
            "projects/{}/locations/-/repositories/{}",
            self.project.as_str(),
            self.repository_id
        )
    }

    pub fn full(&self) -> String {
        format!(
            "{}/{}/{}",
            self.project.as_str(),
            self.repository_id,
            self.image
        )
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: ".", "_", "__" or one or more "-".
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

/// `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`
pub fn is_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A `sha256:` digest in canonical form (Cloister verifies and stores SHA-256 only).
pub fn parse_digest(d: &str) -> Result<String, RegistryError> {
    match d.split_once(':') {
        Some(("sha256", hex))
            if hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(d.to_owned())
        }
        Some((alg, _)) if alg != "sha256" => Err(RegistryError::DigestInvalid(format!(
            "the digest {d:?} uses {alg}; this registry verifies sha256 digests only"
        ))),
        _ => Err(RegistryError::DigestInvalid(format!(
            "{d:?} is not a digest: expected sha256: and 64 lowercase hex digits"
        ))),
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// A manifest reference: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Tag(String),
    Digest(String),
}

impl Reference {
    pub fn parse(r: &str) -> Result<Self, RegistryError> {
        if r.contains(':') {
            parse_digest(r).map(Reference::Digest)
        } else if is_tag(r) {
            Ok(Reference::Tag(r.to_owned()))
        } else {
            Err(RegistryError::TagInvalid(format!(
                "{r:?} is neither a tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}) nor a sha256 digest"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_distribution_grammar_and_cannot_traverse() {
        let n = ImageName::parse("primus-bank/models/ml/inference").unwrap();
        assert_eq!(
            (
                n.project.as_str(),
                n.repository_id.as_str(),
                n.image.as_str()
            ),
            ("primus-bank", "models", "ml/inference")
        );
        for bad in [
            "primus-bank/models",
            "primus-bank/models/../etc",
            "primus-bank/models/./x",
            "/primus-bank/models/x",
            "primus-bank//models/x",
            "primus-bank/Models/x",
            "primus-bank/models/x/",
            "primus-bank/models/a...b",
            "primus-bank/models/%2e%2e",
        ] {
            assert!(
                matches!(ImageName::parse(bad), Err(RegistryError::NameInvalid(_))),
                "{bad}"
            );
        }
        assert!(is_component("a__b") && is_component("a--b") && !is_component("a___b"));
    }

    #[test]
    fn tags_and_digests_are_checked() {
        assert!(matches!(
            Reference::parse("v1.0_rc-2"),
            Ok(Reference::Tag(_))
        ));
        assert!(Reference::parse("-bad").is_err());
        assert!(Reference::parse(&"a".repeat(129)).is_err());
        let d = format!("sha256:{}", "ab".repeat(32));
        assert_eq!(Reference::parse(&d).unwrap(), Reference::Digest(d));
        assert!(parse_digest("sha256:ABC").is_err());
        assert!(matches!(
            parse_digest(&format!("sha512:{}", "a".repeat(128))),
            Err(RegistryError::DigestInvalid(_))
        ));
    }
}
