//! `verifyAttestation`'s `tokenOptions` (the Confidential Computing API's names; protojson
//! accepts the proto's snake_case names too, so both are read) and the token types: `OIDC`
//! (verified through the JWKS), `PKI` (an `x5c` chain to Cloister's attestation root) and
//! `AWS_PRINCIPALTAGS` (the claims plus `https://aws.amazon.com/tags`, for AWS STS
//! `AssumeRoleWithWebIdentity` session tags).

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ApiError;

const MAX_NONCES: usize = 6;
const NONCE_BYTES: std::ops::RangeInclusive<usize> = 8..=88;
const MAX_AUDIENCE: usize = 512;
/// AWS STS caps a session tag value at 256 characters.
const MAX_AWS_TAG_VALUE: usize = 256;
/// Several key ids share one tag value (AWS tags hold one string), sorted and separated by
/// this, as Google's tokens write them (`aKey1=bKey3=zKey2`), so a role names the set.
const KEY_ID_SEPARATOR: &str = "=";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    Oidc,
    Pki,
    AwsPrincipalTags,
}

impl TokenType {
    /// Google's enum names (`TOKEN_TYPE_PKI`), and the launcher's short ones (`PKI`).
    fn parse(name: Option<&str>) -> Result<Self, ApiError> {
        match name {
            None | Some("") | Some("OIDC") | Some("TOKEN_TYPE_OIDC") => Ok(Self::Oidc),
            Some("PKI") | Some("TOKEN_TYPE_PKI") => Ok(Self::Pki),
            Some("AWS_PRINCIPALTAGS") | Some("TOKEN_TYPE_AWS_PRINCIPALTAGS") => {
                Ok(Self::AwsPrincipalTags)
            }
            Some(other) => Err(bad(format!(
                "tokenOptions.tokenType {other:?} is not supported; use TOKEN_TYPE_OIDC, TOKEN_TYPE_PKI or TOKEN_TYPE_AWS_PRINCIPALTAGS"
            ))),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TokenOptions {
    #[serde(default)]
    pub audience: Option<String>,
    #[serde(default)]
    pub nonce: Vec<String>,
    #[serde(default, alias = "token_type")]
    token_type: Option<String>,
    #[serde(default, alias = "aws_principal_tags_options")]
    aws_principal_tags_options: Option<AwsPrincipalTagsOptions>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AwsPrincipalTagsOptions {
    #[serde(default, alias = "allowed_principal_tags")]
    allowed_principal_tags: Option<AllowedPrincipalTags>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AllowedPrincipalTags {
    #[serde(default, alias = "container_image_signatures")]
    container_image_signatures: Option<ContainerImageSignatures>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ContainerImageSignatures {
    #[serde(default, alias = "key_ids")]
    key_ids: Vec<String>,
}

/// What the token options ask for, checked.
pub struct Requested {
    pub token_type: TokenType,
    /// The signature key ids the caller allows in `container.signatures.key_ids`.
    pub allowed_key_ids: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument(msg.into())
}

impl TokenOptions {
    /// Checks the options before any evidence is judged (or a challenge spent).
    pub fn check(&self) -> Result<Requested, ApiError> {
        if self.nonce.len() > MAX_NONCES {
            return Err(bad(format!(
                "tokenOptions.nonce has {} nonces; at most {MAX_NONCES} are allowed",
                self.nonce.len()
            )));
        }
        if let Some(n) = self.nonce.iter().find(|n| !NONCE_BYTES.contains(&n.len())) {
            return Err(bad(format!(
                "tokenOptions.nonce {n:?} is {} bytes; each nonce must be 8 to 88 bytes",
                n.len()
            )));
        }
        match &self.audience {
            Some(a) if a.is_empty() || a.len() > MAX_AUDIENCE => {
                return Err(bad(format!(
                    "tokenOptions.audience must be 1 to {MAX_AUDIENCE} bytes"
                )));
            }
            None if !self.nonce.is_empty() => {
                return Err(bad(
                    "tokenOptions.audience is required when tokenOptions.nonce is set: name the relying party the nonces are for",
                ));
            }
            _ => {}
        }
        let token_type = TokenType::parse(self.token_type.as_deref())?;
        let allowed_key_ids: Vec<String> = self
            .aws_principal_tags_options
            .as_ref()
            .and_then(|o| o.allowed_principal_tags.as_ref())
            .and_then(|t| t.container_image_signatures.as_ref())
            .map(|s| s.key_ids.clone())
            .unwrap_or_default();
        if self.aws_principal_tags_options.is_some() && token_type != TokenType::AwsPrincipalTags {
            return Err(bad(
                "tokenOptions.awsPrincipalTagsOptions applies only to tokenType TOKEN_TYPE_AWS_PRINCIPALTAGS",
            ));
        }
        if allowed_key_ids.iter().any(String::is_empty) {
            return Err(bad(
                "tokenOptions.awsPrincipalTagsOptions.allowedPrincipalTags.containerImageSignatures.keyIds has an empty key id",
            ));
        }
        let joined = allowed_key_ids.join(KEY_ID_SEPARATOR).len();
        if joined > MAX_AWS_TAG_VALUE {
            return Err(bad(format!(
                "tokenOptions.awsPrincipalTagsOptions.allowedPrincipalTags.containerImageSignatures.keyIds take {joined} characters joined; an AWS session tag value holds at most {MAX_AWS_TAG_VALUE}: allow fewer key ids"
            )));
        }
        Ok(Requested {
            token_type,
            allowed_key_ids,
        })
    }
}

/// The `https://aws.amazon.com/tags` claim for the token whose other claims are `claims`:
/// Google's tag names, each value a one-element array (AWS's shape for session tags). The
/// image is named by its digest, or by the allowed signature key ids that signed it when the
/// caller allows some and any match (sorted, joined with `=`; never both, so a role can
/// require either).
pub fn aws_principal_tags(claims: &Value, allowed_key_ids: &[String]) -> Value {
    let mut tags = Map::new();
    let mut tag = |name: &str, value: Option<String>| {
        if let Some(v) = value {
            tags.insert(name.to_owned(), json!([v]));
        }
    };
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let submods = &claims["submods"];
    let attributes: Vec<&str> = submods["confidential_space"]["support_attributes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    tag(
        "confidential_space.support_attributes",
        (!attributes.is_empty()).then(|| attributes.join("=")),
    );
    let signed_by: Vec<&str> = submods["container"]["image_signatures"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["key_id"].as_str()).collect())
        .unwrap_or_default();
    let matching: std::collections::BTreeSet<&str> = allowed_key_ids
        .iter()
        .map(String::as_str)
        .filter(|k| signed_by.contains(k))
        .collect();
    if matching.is_empty() {
        tag(
            "container.image_digest",
            text(&submods["container"]["image_digest"]),
        );
    } else {
        tag(
            "container.signatures.key_ids",
            Some(Vec::from_iter(matching).join(KEY_ID_SEPARATOR)),
        );
    }
    tag("gce.project_id", text(&submods["gce"]["project_id"]));
    tag("gce.zone", text(&submods["gce"]["zone"]));
    tag("hwmodel", text(&claims["hwmodel"]));
    tag("swname", text(&claims["swname"]));
    tag("swversion", text(&claims["swversion"][0]));
    json!({ "principal_tags": tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Value {
        json!({
            "hwmodel": "GCP_INTEL_TDX", "swname": "CONFIDENTIAL_SPACE", "swversion": ["250301"],
            "submods": {
                "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
                "container": {
                    "image_digest": "sha256:aa",
                    "image_signatures": [
                        {"key_id": "k1", "signature": "s1", "signature_algorithm": "ECDSA_P256_SHA256"},
                        {"key_id": "k2", "signature": "s2", "signature_algorithm": "ECDSA_P256_SHA256"},
                    ],
                },
                "gce": {"project_id": "secundus-bank", "zone": "us-west1-b"},
            },
        })
    }

    #[test]
    fn tags_name_the_image_by_digest_or_by_allowed_signing_keys_never_both() {
        let cases: [(&[&str], Value); 4] = [
            (&[], json!({"container.image_digest": ["sha256:aa"]})),
            (&["k9"], json!({"container.image_digest": ["sha256:aa"]})),
            (&["k2"], json!({"container.signatures.key_ids": ["k2"]})),
            (
                &["k2", "k9", "k1", "k2"],
                json!({"container.signatures.key_ids": ["k1=k2"]}),
            ),
        ];
        for (allowed, image) in cases {
            let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
            let mut expected = json!({
                "confidential_space.support_attributes": ["LATEST=STABLE=USABLE"],
                "gce.project_id": ["secundus-bank"],
                "gce.zone": ["us-west1-b"],
                "hwmodel": ["GCP_INTEL_TDX"],
                "swname": ["CONFIDENTIAL_SPACE"],
                "swversion": ["250301"],
            });
            for (k, v) in image.as_object().unwrap() {
                expected[k] = v.clone();
            }
            assert_eq!(
                aws_principal_tags(&claims(), &allowed),
                json!({ "principal_tags": expected }),
                "{allowed:?}"
            );
        }
    }

    /// Google's two documented `https://aws.amazon.com/tags` examples, verbatim ("Integrate AWS
    /// resources", cloud.google.com/confidential-computing/confidential-space/docs/
    /// connect-external-resources): the same claims give the same tags, key for key.
    #[test]
    fn the_tags_are_googles_documented_examples() {
        let mut claims = json!({
            "hwmodel": "GCP_AMD_SEV", "swname": "CONFIDENTIAL_SPACE", "swversion": ["250101"],
            "submods": {
                "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
                "container": {"image_digest": "sha256:6eccbcf1a1de8bf50aefbb37e8c3600d5b59f4a12cf7d964b6f8ef964b782eb2"},
                "gce": {"project_id": "confidentialcomputing-e2e", "zone": "us-west1-a", "instance_name": "vm"},
            },
        });
        let by_digest: Value = serde_json::from_str(
            r#"{
              "https://aws.amazon.com/tags": {
                "principal_tags": {
                  "confidential_space.support_attributes": ["LATEST=STABLE=USABLE"],
                  "container.image_digest": ["sha256:6eccbcf1a1de8bf50aefbb37e8c3600d5b59f4a12cf7d964b6f8ef964b782eb2"],
                  "gce.project_id": ["confidentialcomputing-e2e"],
                  "gce.zone": ["us-west1-a"],
                  "hwmodel": ["GCP_AMD_SEV"],
                  "swname": ["CONFIDENTIAL_SPACE"],
                  "swversion": ["250101"]
                }
              }
            }"#,
        )
        .unwrap();
        assert_eq!(
            aws_principal_tags(&claims, &[]),
            by_digest["https://aws.amazon.com/tags"]
        );
        let by_keys: Value = serde_json::from_str(
            r#"{
              "https://aws.amazon.com/tags": {
                "principal_tags": {
                  "confidential_space.support_attributes": ["LATEST=STABLE=USABLE"],
                  "container.signatures.key_ids": ["keyid1=keyid2=keyid3"],
                  "gce.project_id": ["confidentialcomputing-e2e"],
                  "gce.zone": ["us-west1-a"],
                  "hwmodel": ["GCP_AMD_SEV"],
                  "swname": ["CONFIDENTIAL_SPACE"],
                  "swversion": ["250101"]
                }
              }
            }"#,
        )
        .unwrap();
        // Signed by three allowed keys and one the caller did not allow; allowed in any order.
        claims["submods"]["container"]["image_signatures"] = [
            "keyid3", "other", "keyid1", "keyid2",
        ]
        .iter()
        .map(|k| json!({"key_id": k, "signature": "s", "signature_algorithm": "ECDSA_P256_SHA256"}))
        .collect();
        let allowed: Vec<String> = ["keyid2", "keyid3", "keyid1", "unused"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            aws_principal_tags(&claims, &allowed),
            by_keys["https://aws.amazon.com/tags"]
        );
    }

    #[test]
    fn a_token_without_instance_or_attributes_has_no_such_tags() {
        let claims = json!({
            "hwmodel": "INSECURE", "swname": "CONFIDENTIAL_SPACE", "swversion": [],
            "submods": {"confidential_space": {"support_attributes": []}, "container": {"image_digest": "sha256:bb"}},
        });
        assert_eq!(
            aws_principal_tags(&claims, &[]),
            json!({"principal_tags": {
                "container.image_digest": ["sha256:bb"],
                "hwmodel": ["INSECURE"],
                "swname": ["CONFIDENTIAL_SPACE"],
            }})
        );
    }

    #[test]
    fn options_are_read_in_either_spelling_and_checked() {
        let ok = |v: Value| serde_json::from_value::<TokenOptions>(v).unwrap().check();
        let r = ok(json!({"audience": "a", "token_type": "AWS_PRINCIPALTAGS",
            "aws_principal_tags_options": {"allowed_principal_tags": {"container_image_signatures": {"key_ids": ["k1"]}}}}))
        .unwrap();
        assert_eq!(r.token_type, TokenType::AwsPrincipalTags);
        assert_eq!(r.allowed_key_ids, ["k1"]);
        let r = ok(json!({"tokenType": "TOKEN_TYPE_PKI"})).unwrap();
        assert_eq!(r.token_type, TokenType::Pki);
        let refused: [(Value, &str); 6] = [
            (json!({"nonce": ["0123456789"]}), "audience is required"),
            (json!({"audience": ""}), "1 to 512"),
            (
                json!({"tokenType": "TOKEN_TYPE_LIMITED_AWS"}),
                "not supported",
            ),
            (
                json!({"tokenType": "TOKEN_TYPE_PKI", "awsPrincipalTagsOptions": {}}),
                "applies only to",
            ),
            (
                json!({"tokenType": "TOKEN_TYPE_AWS_PRINCIPALTAGS", "awsPrincipalTagsOptions": {"allowedPrincipalTags": {"containerImageSignatures": {"keyIds": [""]}}}}),
                "empty key id",
            ),
            (
                json!({"tokenType": "TOKEN_TYPE_AWS_PRINCIPALTAGS", "awsPrincipalTagsOptions": {"allowedPrincipalTags": {"containerImageSignatures": {"keyIds": ["k".repeat(200), "k".repeat(60)]}}}}),
                "at most 256",
            ),
        ];
        for (v, why) in refused {
            let e = ok(v.clone()).err().unwrap().to_string();
            assert!(e.contains(why), "{v}: {e}");
        }
    }
}
