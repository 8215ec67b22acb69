//! Attribute mappings: `google.subject`, `google.groups` and `attribute.NAME`, each a CEL
//! expression over `assertion`.

use std::collections::BTreeMap;

use cel::{Program, Value};

use crate::condition::compile;
use crate::{ConditionError, value};

/// Google's limits: a subject of at most 127 bytes; at most 50 mapped attributes.
pub const MAX_SUBJECT_BYTES: usize = 127;
pub const MAX_ATTRIBUTES: usize = 50;
const MAX_EXPRESSION_BYTES: usize = 2048;

pub struct AttributeMapping {
    entries: Vec<(String, Program)>,
    sources: BTreeMap<String, String>,
}

impl std::fmt::Debug for AttributeMapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.sources.iter()).finish()
    }
}

/// The result of applying a mapping to a token's claims.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MappedAttributes {
    pub subject: String,
    pub groups: Vec<String>,
    /// `attribute.NAME` → value, without the prefix.
    pub attributes: BTreeMap<String, String>,
}

fn valid_attribute_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl AttributeMapping {
    /// Compiles every expression; refuses unknown targets, a missing `google.subject`, and
    /// syntax errors (with the target and position).
    pub fn compile(mapping: &BTreeMap<String, String>) -> Result<Self, ConditionError> {
        if !mapping.contains_key("google.subject") {
            return Err(ConditionError::Mapping(
                "the attribute mapping must map google.subject (e.g. google.subject=assertion.sub)"
                    .into(),
            ));
        }
        if mapping.len() > MAX_ATTRIBUTES {
            return Err(ConditionError::Mapping(format!(
                "at most {MAX_ATTRIBUTES} attributes may be mapped"
            )));
        }
        let mut entries = Vec::new();
        for (target, source) in mapping {
            let valid = match target.strip_prefix("attribute.") {
                Some(name) => valid_attribute_name(name),
                None => target == "google.subject" || target == "google.groups",
            };
            if !valid {
                return Err(ConditionError::Mapping(format!(
                    "cannot map {target:?}: targets are google.subject, google.groups and attribute.NAME with NAME matching [a-z_][a-z0-9_]*"
                )));
            }
            let what = format!("attribute mapping for {target}");
            if source.len() > MAX_EXPRESSION_BYTES {
                return Err(ConditionError::TooLong {
                    what,
                    len: source.len(),
                    max: MAX_EXPRESSION_BYTES,
                });
            }
            entries.push((target.clone(), compile(&what, source)?));
        }
        Ok(Self {
            entries,
            sources: mapping.clone(),
        })
    }

    pub fn sources(&self) -> &BTreeMap<String, String> {
        &self.sources
    }

    /// Applies the mapping to verified claims.
    pub fn apply(&self, assertion: &serde_json::Value) -> Result<MappedAttributes, ConditionError> {
        let mut ctx = value::context();
        ctx.add_variable_from_value("assertion", value::from_json(assertion));
        let mut out = MappedAttributes::default();
        for (target, program) in &self.entries {
            let what = format!("the attribute mapping for {target}");
            let result = program.execute(&ctx);
            match (target.as_str(), result) {
                ("google.subject", Ok(Value::String(s))) => out.subject = s.to_string(),
                ("google.subject", Ok(other)) => {
                    return Err(ConditionError::WrongType {
                        what,
                        got: value::type_name(&other),
                        expected: "string",
                    });
                }
                ("google.subject", Err(e)) => {
                    return Err(ConditionError::Evaluation {
                        what,
                        message: e.to_string(),
                    });
                }
                ("google.groups", Ok(Value::List(items))) => {
                    out.groups = items
                        .iter()
                        .filter_map(|v| match v {
                            Value::String(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .collect();
                }
                (name, Ok(Value::String(s))) => {
                    if let Some(attr) = name.strip_prefix("attribute.") {
                        out.attributes.insert(attr.to_owned(), s.to_string());
                    }
                }
                // Like Google: an attribute whose expression fails or is not a string is unset.
                _ => {}
            }
        }
        if out.subject.is_empty() {
            return Err(ConditionError::Mapping(
                "the mapped google.subject is empty".into(),
            ));
        }
        if out.subject.len() > MAX_SUBJECT_BYTES {
            return Err(ConditionError::Mapping(format!(
                "the mapped google.subject is {} bytes; at most {MAX_SUBJECT_BYTES} are allowed",
                out.subject.len()
            )));
        }
        Ok(out)
    }
}
