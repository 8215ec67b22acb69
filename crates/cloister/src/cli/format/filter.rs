//! `--filter EXPRESSION`: the part of gcloud's filter language that lists need, evaluated on
//! the client. Anything outside it is refused when the flag is parsed, never ignored.
//!
//! Supported: `KEY=VALUE`, `KEY!=VALUE`, `KEY:VALUE` (contains; `*` makes it an anchored
//! glob), `KEY:*` (has a value), `KEY<VALUE` `<=` `>` `>=` (numbers as numbers, otherwise
//! text, which orders RFC 3339 times), `KEY~REGEX` `KEY!~REGEX`, a parenthesised value list
//! `KEY=(A B)` / `KEY:(A,B)` matching any, `NOT`/`-` before a term, `AND` (or just a space),
//! `OR`, and parentheses. Matching ignores case except for `~`. A key naming a list matches
//! when any item does. Mixing AND and OR needs parentheses, as gcloud asks.

use regex::Regex;
use serde_json::Value;

use super::projection::{Column, Key};

#[derive(Debug, Clone)]
pub struct Filter {
    expr: Expr,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A parenthesised expression (kept apart so `(A AND B) OR C` is not refused).
    Group(Box<Expr>),
    Term(Term),
}

#[derive(Debug, Clone)]
struct Term {
    key: Key,
    op: Op,
    values: Vec<String>,
    /// For `~` and `!~`: the compiled pattern.
    regex: Option<Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
    Re,
    NotRe,
}

impl Filter {
    pub fn parse(text: &str) -> Result<Filter, String> {
        let mut p = Parser {
            s: text,
            pos: 0,
            text,
        };
        let expr = p.or()?;
        p.skip_space();
        if p.pos < p.s.len() {
            return Err(p.error("unexpected text"));
        }
        Ok(Filter { expr })
    }

    /// Whether `item` passes; a key that is not a field of the item may name one of the
    /// list's column labels (gcloud's `--filter=PRIMARY_STATE=ENABLED`).
    pub fn matches(&self, item: &Value, columns: &[Column]) -> bool {
        eval(&self.expr, item, columns)
    }
}

fn eval(e: &Expr, item: &Value, columns: &[Column]) -> bool {
    match e {
        Expr::And(all) => all.iter().all(|e| eval(e, item, columns)),
        Expr::Or(any) => any.iter().any(|e| eval(e, item, columns)),
        Expr::Not(e) => !eval(e, item, columns),
        Expr::Group(e) => eval(e, item, columns),
        Expr::Term(t) => {
            let value = resolve(&t.key, item, columns);
            match t.op {
                // gcloud: `KEY!=V` is `NOT KEY=V`, so an absent key passes.
                Op::Ne => !matches_any(t, Op::Eq, value.as_ref()),
                Op::NotRe => !matches_any(t, Op::Re, value.as_ref()),
                op => matches_any(t, op, value.as_ref()),
            }
        }
    }
}

/// A key's value in `item`, or through a column label of the same name.
pub fn resolve(key: &Key, item: &Value, columns: &[Column]) -> Option<Value> {
    if let Some(v) = key.get(item) {
        return Some(v);
    }
    if key.transform.is_none()
        && let Some(c) = columns
            .iter()
            .find(|c| c.label.eq_ignore_ascii_case(&key.path))
    {
        return c.key.get(item);
    }
    None
}

fn matches_any(t: &Term, op: Op, value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Array(items)) => items.iter().any(|i| matches_any(t, op, Some(i))),
        Some(v) => {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if op == Op::Re {
                return t.regex.as_ref().is_some_and(|r| r.is_match(&text));
            }
            t.values.iter().any(|want| compare(op, &text, want))
        }
    }
}

fn compare(op: Op, have: &str, want: &str) -> bool {
    if op == Op::Has {
        if want == "*" {
            return !have.is_empty();
        }
        let (have, want) = (have.to_lowercase(), want.to_lowercase());
        if !want.contains('*') {
            return have.contains(&want);
        }
        // Anchored: `*` matches any run of characters.
        return glob::Pattern::new(&glob::Pattern::escape(&want).replace("[*]", "*"))
            .is_ok_and(|p| p.matches(&have));
    }
    let ordering = match (have.parse::<f64>(), want.parse::<f64>()) {
        (Ok(a), Ok(b)) => a.partial_cmp(&b),
        _ => Some(have.to_lowercase().cmp(&want.to_lowercase())),
    };
    let Some(ordering) = ordering else {
        return false;
    };
    match op {
        Op::Eq => ordering.is_eq(),
        Op::Lt => ordering.is_lt(),
        Op::Le => ordering.is_le(),
        Op::Gt => ordering.is_gt(),
        Op::Ge => ordering.is_ge(),
        Op::Has | Op::Ne | Op::Re | Op::NotRe => false,
    }
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
    text: &'a str,
}

impl<'a> Parser<'a> {
    fn error(&self, what: &str) -> String {
        format!(
            "--filter {:?}: {what} at character {}. Cloister supports KEY=VALUE, KEY!=VALUE, KEY:VALUE, KEY:*, <, <=, >, >=, ~, !~, (VALUE …) lists, NOT, AND, OR and parentheses",
            self.text,
            self.pos + 1
        )
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn skip_space(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.s.len() - trimmed.len();
    }

    /// Consumes `word` when it stands alone (followed by a space, a parenthesis or the end).
    fn keyword(&mut self, word: &str) -> bool {
        self.skip_space();
        let rest = self.rest();
        let ends = rest
            .get(word.len()..)
            .is_some_and(|after| after.is_empty() || after.starts_with([' ', '\t', '\n', '(']));
        if rest.starts_with(word) && ends {
            self.pos += word.len();
            true
        } else {
            false
        }
    }

    fn at_end_of_group(&mut self) -> bool {
        self.skip_space();
        self.rest().is_empty() || self.rest().starts_with(')')
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut any = vec![self.and()?];
        while self.keyword("OR") {
            any.push(self.and()?);
        }
        if any.len() > 1 && any.iter().any(|e| matches!(e, Expr::And(_))) {
            return Err(self.error("AND and OR together need parentheses, as in (A AND B) OR C"));
        }
        Ok(if any.len() == 1 {
            any.remove(0)
        } else {
            Expr::Or(any)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut all = vec![self.unary()?];
        loop {
            if self.at_end_of_group() || self.peek_keyword("OR") {
                break;
            }
            self.keyword("AND");
            all.push(self.unary()?);
        }
        Ok(if all.len() == 1 {
            all.remove(0)
        } else {
            Expr::And(all)
        })
    }

    fn peek_keyword(&mut self, word: &str) -> bool {
        let at = self.pos;
        let found = self.keyword(word);
        self.pos = at;
        found
    }

    fn unary(&mut self) -> Result<Expr, String> {
        if self.keyword("NOT") {
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        self.skip_space();
        if let Some(rest) = self.rest().strip_prefix('-') {
            self.pos = self.s.len() - rest.len();
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if let Some(rest) = self.rest().strip_prefix('(') {
            self.pos = self.s.len() - rest.len();
            let inner = self.or()?;
            self.skip_space();
            let Some(rest) = self.rest().strip_prefix(')') else {
                return Err(self.error("a '(' is not closed"));
            };
            self.pos = self.s.len() - rest.len();
            // Wrapped, so a parenthesised AND group may stand beside OR.
            return Ok(Expr::Group(Box::new(inner)));
        }
        self.term().map(Expr::Term)
    }

    fn term(&mut self) -> Result<Term, String> {
        self.skip_space();
        let rest = self.rest();
        let key_len = rest
            .find(|c: char| c.is_whitespace() || "=!<>:~".contains(c))
            .unwrap_or(rest.len());
        let key_text = &rest[..key_len];
        if key_text.is_empty() {
            return Err(self.error("expected a KEY"));
        }
        if key_text.ends_with(')') && !key_text.contains('(') {
            return Err(self.error("unbalanced ')'"));
        }
        let key = Key::parse(key_text).map_err(|e| self.error(&e))?;
        self.pos += key_len;
        self.skip_space();
        let ops = [
            ("!~", Op::NotRe),
            ("!=", Op::Ne),
            ("<=", Op::Le),
            (">=", Op::Ge),
            ("=", Op::Eq),
            (":", Op::Has),
            ("<", Op::Lt),
            (">", Op::Gt),
            ("~", Op::Re),
        ];
        let Some((sym, op)) = ops.iter().find(|(sym, _)| self.rest().starts_with(sym)) else {
            return Err(self.error(&format!(
                "{key_text:?} has no operator: bare words are not supported, write KEY:VALUE"
            )));
        };
        self.pos += sym.len();
        let values = self.values()?;
        let regex = match op {
            Op::Re | Op::NotRe => Some(Regex::new(&values[0]).map_err(|e| {
                self.error(&format!("{:?} is not a regular expression: {e}", values[0]))
            })?),
            _ => None,
        };
        if regex.is_some() && values.len() > 1 {
            return Err(self.error("~ takes one pattern, not a list"));
        }
        Ok(Term {
            key,
            op: *op,
            values,
            regex,
        })
    }

    /// A word, a quoted string, or a parenthesised list of them.
    fn values(&mut self) -> Result<Vec<String>, String> {
        self.skip_space();
        let Some(rest) = self.rest().strip_prefix('(') else {
            return Ok(vec![self.word()?]);
        };
        self.pos = self.s.len() - rest.len();
        let mut values = Vec::new();
        loop {
            self.skip_space();
            if let Some(rest) = self.rest().strip_prefix(')') {
                self.pos = self.s.len() - rest.len();
                break;
            }
            if let Some(rest) = self.rest().strip_prefix(',') {
                self.pos = self.s.len() - rest.len();
                continue;
            }
            if self.rest().is_empty() {
                return Err(self.error("a value list is not closed with ')'"));
            }
            if self.keyword("OR") {
                continue;
            }
            if self.peek_keyword("AND") {
                return Err(
                    self.error("a value list matches any of its values; AND is not allowed in it")
                );
            }
            values.push(self.word()?);
        }
        if values.is_empty() {
            return Err(self.error("an empty value list"));
        }
        Ok(values)
    }

    fn word(&mut self) -> Result<String, String> {
        self.skip_space();
        let rest = self.rest();
        for q in ['"', '\''] {
            if let Some(inner) = rest.strip_prefix(q) {
                let Some(end) = inner.find(q) else {
                    return Err(self.error("a quoted value is not closed"));
                };
                self.pos += end + 2;
                return Ok(inner[..end].to_owned());
            }
        }
        let len = rest
            .find(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
            .unwrap_or(rest.len());
        if len == 0 {
            return Err(self.error("expected a VALUE"));
        }
        self.pos += len;
        Ok(rest[..len].to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filters_select_like_gclouds() {
        let items = [
            json!({"name": "projects/p/keyRings/r/cryptoKeys/alpha", "state": "ACTIVE", "size": "9", "tags": ["a", "b"], "primary": {"state": "ENABLED"}, "disabled": false}),
            json!({"name": "projects/p/keyRings/r/cryptoKeys/beta", "state": "DELETED", "size": "10", "tags": [], "primary": {"state": "DESTROYED"}, "disabled": true}),
        ];
        let columns = [Column::plain("PRIMARY_STATE", "primary.state")];
        let cases: &[(&str, &[usize])] = &[
            ("state=ACTIVE", &[0]),
            ("state=active", &[0]),
            ("state=(ACTIVE)", &[0]),
            ("state=(ACTIVE DELETED)", &[0, 1]),
            ("state:(active, deleted)", &[0, 1]),
            ("state!=ACTIVE", &[1]),
            ("NOT state=ACTIVE", &[1]),
            ("-state=ACTIVE", &[1]),
            ("name:beta", &[1]),
            ("name:*alpha", &[0]),
            ("name:alp*", &[]),
            ("name:projects/*", &[0, 1]),
            ("size>9", &[1]),
            ("size<=9", &[0]),
            ("tags:a", &[0]),
            ("tags:*", &[0]),
            ("missing:*", &[]),
            ("missing!=x", &[0, 1]),
            ("primary.state=ENABLED", &[0]),
            ("PRIMARY_STATE=(ENABLED)", &[0]),
            ("name.basename()=beta", &[1]),
            ("disabled=false", &[0]),
            ("name~a$", &[0, 1]),
            ("name~^projects/.*/beta$", &[1]),
            ("name!~alpha", &[1]),
            ("state=ACTIVE AND size=9", &[0]),
            ("state=ACTIVE size=10", &[]),
            ("state=ACTIVE OR size=10", &[0, 1]),
            ("(state=ACTIVE OR size=10) AND NOT disabled=true", &[0]),
            ("name=\"projects/p/keyRings/r/cryptoKeys/beta\"", &[1]),
        ];
        for (text, want) in cases {
            let f = Filter::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            let got: Vec<usize> = (0..items.len())
                .filter(|i| f.matches(&items[*i], &columns))
                .collect();
            assert_eq!(got, *want, "{text}");
        }
    }

    #[test]
    fn what_the_filter_language_does_not_cover_is_refused() {
        for (text, says) in [
            ("alpha", "bare words"),
            ("a=1 AND b=2 OR c=3", "parentheses"),
            ("a=1 OR b=2 c=3", "parentheses"),
            ("name.scope(topic):x", "scope() is not supported"),
            ("a=(1", "not closed"),
            ("(a=1", "not closed"),
            ("a=\"x", "not closed"),
            ("a~[", "regular expression"),
            ("a=(1 AND 2)", "AND is not allowed"),
            ("a=", "expected a VALUE"),
        ] {
            let err = Filter::parse(text).unwrap_err();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
