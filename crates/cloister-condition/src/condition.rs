//! A compiled attribute condition: evaluation, and an explanation per top-level clause.

use std::collections::BTreeMap;

use cel::{Program, Value};
use serde::{Deserialize, Serialize};

use crate::clauses::{mentions, split_comparison, split_conjunction, split_quantifier};
use crate::{ConditionError, value};

/// Google's limit on an attribute condition's length.
pub const MAX_CONDITION_BYTES: usize = 4096;

/// What a condition sees: the verified token's claims and the mapped attributes.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// The subject token's claims (`assertion`).
    pub assertion: serde_json::Value,
    /// `google.subject`, `google.groups` (`google`).
    pub google: BTreeMap<String, serde_json::Value>,
    /// `attribute.NAME` values without the prefix (`attribute`).
    pub attribute: BTreeMap<String, serde_json::Value>,
}

impl Input {
    /// What a condition sees of verified claims and the attributes mapped from them.
    pub fn new(claims: &serde_json::Value, mapped: &crate::MappedAttributes) -> Self {
        let mut input = Input {
            assertion: claims.clone(),
            ..Default::default()
        };
        input.google.insert(
            "subject".into(),
            serde_json::Value::String(mapped.subject.clone()),
        );
        input.google.insert(
            "groups".into(),
            mapped
                .groups
                .iter()
                .cloned()
                .map(serde_json::Value::String)
                .collect(),
        );
        for (k, v) in &mapped.attributes {
            input
                .attribute
                .insert(k.clone(), serde_json::Value::String(v.clone()));
        }
        input
    }

    fn context(&self) -> cel::Context<'static, 'static> {
        let mut ctx = value::context();
        ctx.add_variable_from_value("assertion", value::from_json(&self.assertion));
        let as_map = |m: &BTreeMap<String, serde_json::Value>| {
            value::map(m.iter().map(|(k, v)| (k.clone(), value::from_json(v))))
        };
        ctx.add_variable_from_value("google", as_map(&self.google));
        ctx.add_variable_from_value("attribute", as_map(&self.attribute));
        ctx
    }
}

pub struct Condition {
    source: String,
    program: Program,
    clauses: Vec<(String, Program)>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("source", &self.source)
            .finish()
    }
}

/// How one clause fared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE", tag = "outcome", content = "detail")]
pub enum ClauseOutcome {
    Pass,
    Fail,
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClauseReport {
    pub clause: String,
    #[serde(flatten)]
    pub outcome: ClauseOutcome,
    /// For a comparison, the value of each side (expression text → value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compared: Vec<(String, serde_json::Value)>,
}

pub(crate) fn compile(what: &str, source: &str) -> Result<Program, ConditionError> {
    value::env().compile(source).map_err(|errors| {
        let first = errors.errors.first();
        let (line, column) = first
            .map(|e| (e.pos.0 as i64, e.pos.1 as i64 + 1))
            .unwrap_or((1, 1));
        ConditionError::Syntax {
            what: what.to_owned(),
            line,
            column,
            message: first
                .map(|e| e.msg.clone())
                .unwrap_or_else(|| errors.to_string()),
            snippet: source
                .lines()
                .nth((line.max(1) - 1) as usize)
                .unwrap_or(source)
                .trim()
                .to_owned(),
        }
    })
}

impl Condition {
    /// Compiles a condition, refusing syntax errors with their position.
    pub fn compile(source: &str) -> Result<Self, ConditionError> {
        let what = "attribute condition";
        if source.len() > MAX_CONDITION_BYTES {
            return Err(ConditionError::TooLong {
                what: what.into(),
                len: source.len(),
                max: MAX_CONDITION_BYTES,
            });
        }
        let program = compile(what, source)?;
        // A clause that does not compile alone (an odd split) leaves the explanation whole.
        let clauses = split_conjunction(source)
            .into_iter()
            .map(|c| compile(what, &c).map(|p| (c, p)))
            .collect::<Result<Vec<_>, _>>()
            .unwrap_or_default();
        Ok(Self {
            source: source.to_owned(),
            program,
            clauses,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// True when the condition holds; an error or a non-boolean result is an error.
    pub fn evaluate(&self, input: &Input) -> Result<bool, ConditionError> {
        let what = "the attribute condition";
        match self.program.execute(&input.context()) {
            Ok(Value::Bool(b)) => Ok(b),
            Ok(other) => Err(ConditionError::WrongType {
                what: what.into(),
                got: value::type_name(&other),
                expected: "bool",
            }),
            Err(e) => Err(ConditionError::Evaluation {
                what: what.into(),
                message: e.to_string(),
            }),
        }
    }

    /// Each top-level clause with PASS / FAIL / error, and for comparisons the values compared.
    pub fn explain(&self, input: &Input) -> Vec<ClauseReport> {
        let ctx = input.context();
        if self.clauses.is_empty() {
            let outcome = outcome(self.program.execute(&ctx));
            return vec![ClauseReport {
                clause: self.source.trim().to_owned(),
                outcome,
                compared: vec![],
            }];
        }
        self.clauses
            .iter()
            .map(|(text, program)| ClauseReport {
                clause: text.clone(),
                outcome: outcome(program.execute(&ctx)),
                compared: compared(text, &ctx),
            })
            .collect()
    }
}

fn outcome(result: cel::ResolveResult) -> ClauseOutcome {
    match result {
        Ok(Value::Bool(true)) => ClauseOutcome::Pass,
        Ok(Value::Bool(false)) => ClauseOutcome::Fail,
        Ok(other) => ClauseOutcome::Error(format!(
            "evaluated to {}, not a bool",
            value::type_name(&other)
        )),
        Err(e) => ClauseOutcome::Error(e.to_string()),
    }
}

/// The values a clause compared: both sides of a comparison; for a quantifier
/// (`RANGE.exists(VAR, BODY)`, as Google's signature condition), the range and each side of
/// the body's comparison that does not depend on the variable (the list the range's items are
/// looked for in).
fn compared(clause: &str, ctx: &cel::Context) -> Vec<(String, serde_json::Value)> {
    let sides = if let Some((left, _, right)) = split_comparison(clause) {
        vec![left, right]
    } else if let Some((range, var, body)) = split_quantifier(clause) {
        let mut sides = vec![range];
        if let Some((left, _, right)) = split_comparison(&body) {
            sides.extend([left, right].into_iter().filter(|s| !mentions(s, &var)));
        }
        sides
    } else {
        return vec![];
    };
    sides
        .into_iter()
        .map(|side| {
            let v = match compile("clause", &side).map(|p| p.execute(ctx)) {
                Ok(Ok(v)) => value::to_json(&v),
                Ok(Err(e)) => serde_json::Value::String(format!("error: {e}")),
                Err(_) => serde_json::Value::Null,
            };
            (side, v)
        })
        .collect()
}
