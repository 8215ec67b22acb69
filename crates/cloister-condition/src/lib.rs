//! Attribute conditions and attribute mappings of workload identity providers, in CEL with
//! Google's semantics: JSON numbers are doubles, `has()`, `in`, the macros (`exists`, `all`,
//! `map`, `filter`), the strings extension, and Google's `extract()`.
//!
//! Expressions compile once (when a provider is created or updated) and evaluate per token.
//! [`Condition::explain`] evaluates each top-level clause of a condition on its own, for the
//! owner's "why was this token refused" question.
//!
//! [`judgement`] is a whole judgement (mapping, then condition) as a worker process computes it.
//!
//! Invariant: pure computation; no I/O but the streams [`judgement::serve`] is handed. Depends
//! on no Cloister crate.

mod clauses;
mod condition;
pub mod judgement;
mod mapping;
mod value;

pub use condition::{ClauseOutcome, ClauseReport, Condition, Input};
pub use judgement::{Judgement, Question};
pub use mapping::{AttributeMapping, MappedAttributes};

/// A compile or evaluation failure, saying what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("{what} does not compile: {message} (line {line}, column {column}): {snippet}")]
    Syntax {
        what: String,
        line: i64,
        column: i64,
        message: String,
        snippet: String,
    },
    #[error("{what} is too long ({len} bytes, at most {max})")]
    TooLong {
        what: String,
        len: usize,
        max: usize,
    },
    #[error("{what} failed to evaluate: {message}")]
    Evaluation { what: String, message: String },
    #[error("{what} evaluated to {got}, not a {expected}")]
    WrongType {
        what: String,
        got: String,
        expected: &'static str,
    },
    #[error("{0}")]
    Mapping(String),
}
