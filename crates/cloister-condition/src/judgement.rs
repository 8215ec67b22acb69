//! One token judged by a provider: its attribute mapping, then its condition with each
//! clause's verdict. The expressions are a tenant's and CEL has no cost limit (a comprehension
//! inside another, or `replace` on a long claim, costs what its author wants), so the server
//! asks a worker process with bounded memory and a deadline ([`serve`]) rather than computing
//! a [`Judgement`] on its own threads.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, Write};

use serde::{Deserialize, Serialize};

use crate::{
    AttributeMapping, ClauseOutcome, ClauseReport, Condition, ConditionError, Input,
    MappedAttributes,
};

/// What to judge: a provider's expressions as saved, and a token's verified claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Question {
    pub mapping: BTreeMap<String, String>,
    pub condition: Option<String>,
    pub claims: serde_json::Value,
}

/// The provider's verdict on one token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Judgement {
    /// The mapping failed (why): the condition was not evaluated.
    Unmapped(String),
    Mapped {
        attributes: MappedAttributes,
        /// Whether the condition holds (true without one), or why it could not be evaluated.
        verdict: Result<bool, String>,
        /// Each top-level clause; none without a condition.
        clauses: Vec<ClauseReport>,
    },
}

/// A provider's expressions, compiled.
type Compiled = (AttributeMapping, Option<Condition>);

impl Question {
    /// Compiles the expressions and judges the claims; an expression that does not compile is
    /// the error (a provider's compiled when it was saved).
    pub fn judge(&self) -> Result<Judgement, ConditionError> {
        let (mapping, condition) = self.compile()?;
        Ok(judge(&mapping, condition.as_ref(), &self.claims))
    }

    fn compile(&self) -> Result<Compiled, ConditionError> {
        let mapping = AttributeMapping::compile(&self.mapping)?;
        let condition = self
            .condition
            .as_deref()
            .map(Condition::compile)
            .transpose()?;
        Ok((mapping, condition))
    }
}

/// Maps the claims, then judges the condition over the claims and the mapped attributes.
pub fn judge(
    mapping: &AttributeMapping,
    condition: Option<&Condition>,
    claims: &serde_json::Value,
) -> Judgement {
    let attributes = match mapping.apply(claims) {
        Ok(attributes) => attributes,
        Err(e) => return Judgement::Unmapped(e.to_string()),
    };
    let (verdict, clauses) = match condition {
        None => (Ok(true), Vec::new()),
        Some(condition) => {
            let input = Input::new(claims, &attributes);
            let clauses = condition.explain(&input).into_iter().map(kept).collect();
            (
                condition.evaluate(&input).map_err(|e| cut(e.to_string())),
                clauses,
            )
        }
    };
    Judgement::Mapped {
        attributes,
        verdict,
        clauses,
    }
}

/// The most of one compared value or error text a judgement keeps: the token's author chooses
/// them, and the audit log keeps every refused exchange's clauses for good.
pub const MAX_KEPT_BYTES: usize = 1024;

/// A clause's report with its values and error text bounded.
fn kept(report: ClauseReport) -> ClauseReport {
    let outcome = match report.outcome {
        ClauseOutcome::Error(e) => ClauseOutcome::Error(cut(e)),
        other => other,
    };
    let compared = report
        .compared
        .into_iter()
        .map(|(side, value)| {
            let text = value.to_string();
            if text.len() <= MAX_KEPT_BYTES {
                (side, value)
            } else {
                let all = text.len();
                (
                    side,
                    serde_json::Value::String(format!("{} ({all} bytes in all)", cut(text))),
                )
            }
        })
        .collect();
    ClauseReport {
        outcome,
        compared,
        ..report
    }
}

/// `text` cut to [`MAX_KEPT_BYTES`] at a character boundary, marked when cut.
fn cut(mut text: String) -> String {
    if text.len() > MAX_KEPT_BYTES {
        let end = (0..=MAX_KEPT_BYTES)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(end);
        text.push('…');
    }
    text
}

/// How many providers' compiled expressions a worker keeps.
pub const COMPILED_KEPT: usize = 64;

/// The worker's first line out, once it is ready: what it takes to start is not its question's.
pub const READY: &str = "ready";

/// The worker's loop: [`READY`], then one [`Question`] per line in, one
/// `Result<Judgement, String>` per line out (JSON, which never holds a raw newline), until
/// `input` ends.
///
/// A worker keeps what it compiled, by source, for the next question (a provider's tokens ask
/// the same), up to [`COMPILED_KEPT`] providers' expressions, then starts afresh.
pub fn serve(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    type Sources = (BTreeMap<String, String>, Option<String>);
    let mut compiled: HashMap<Sources, Result<Compiled, String>> = HashMap::new();
    writeln!(output, "{READY}")?;
    output.flush()?;
    for line in input.lines() {
        let line = line?;
        let answer: Result<Judgement, String> = serde_json::from_str::<Question>(&line)
            .map_err(|e| format!("the question does not parse: {e}"))
            .and_then(|q| {
                let sources = (q.mapping.clone(), q.condition.clone());
                if !compiled.contains_key(&sources) && compiled.len() >= COMPILED_KEPT {
                    compiled.clear();
                }
                let entry = compiled
                    .entry(sources)
                    .or_insert_with(|| q.compile().map_err(|e| e.to_string()));
                match entry {
                    Ok((mapping, condition)) => Ok(judge(mapping, condition.as_ref(), &q.claims)),
                    Err(e) => Err(e.clone()),
                }
            });
        serde_json::to_writer(&mut output, &answer)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn question(condition: Option<&str>) -> Question {
        Question {
            mapping: BTreeMap::from([("google.subject".into(), "assertion.sub".into())]),
            condition: condition.map(str::to_owned),
            claims: json!({"sub": "workload", "n": 3}),
        }
    }

    #[test]
    fn a_worker_answers_each_line_in_order() {
        let lines: Vec<String> = [
            Some("assertion.n == 3.0 && google.subject == 'workload'"),
            Some("assertion.n == 4.0"),
            None,
            Some("assertion.n =="),
        ]
        .into_iter()
        .map(|c| serde_json::to_string(&question(c)).unwrap())
        .chain(["not json".to_owned()])
        .chain({
            // The first provider again (compiled before), on another token.
            let mut q = question(Some("assertion.n == 3.0 && google.subject == 'workload'"));
            q.claims["n"] = json!(4);
            [serde_json::to_string(&q).unwrap()]
        })
        .collect();
        let mut out = Vec::new();
        serve(lines.join("\n").as_bytes(), &mut out).unwrap();
        let answers: Vec<Result<Judgement, String>> = String::from_utf8(out)
            .unwrap()
            .lines()
            .skip_while(|l| *l == READY)
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let verdicts: Vec<_> = answers
            .iter()
            .map(|a| match a {
                Ok(Judgement::Mapped { verdict, .. }) => format!("{verdict:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(verdicts[..3], ["Ok(true)", "Ok(false)", "Ok(true)"]);
        assert!(verdicts[3].contains("does not compile"), "{}", verdicts[3]);
        assert!(verdicts[4].contains("does not parse"), "{}", verdicts[4]);
        assert_eq!(verdicts[5], "Ok(false)");
    }

    #[test]
    fn compared_values_and_errors_are_kept_bounded() {
        // An error that repeats the claim (an unknown key), and a comparison showing it.
        let long = "é".repeat(5000);
        let mut q = question(Some(
            "assertion.s == 'x' || assertion.m[assertion.s] == 1.0",
        ));
        q.claims = json!({"sub": "workload", "s": long, "m": {}});
        let Ok(Judgement::Mapped {
            clauses, verdict, ..
        }) = q.judge()
        else {
            panic!("judged");
        };
        let error = verdict.unwrap_err();
        assert!(
            error.contains("éé") && error.len() <= MAX_KEPT_BYTES + 3,
            "{error}"
        );
        let compared = clauses[0].compared[0].1.as_str().unwrap();
        assert!(compared.len() < MAX_KEPT_BYTES + 64, "{compared}");
        assert!(compared.ends_with("(10002 bytes in all)"), "{compared}");
    }

    #[test]
    fn a_failed_mapping_leaves_the_condition_unjudged() {
        let mut q = question(Some("true"));
        q.claims = json!({"no_sub": 1});
        assert!(matches!(q.judge(), Ok(Judgement::Unmapped(_))));
    }
}
