//! Splitting a condition's text into its top-level `&&` clauses, and a clause into the two
//! sides of its top-level comparison, for explanations.
//!
//! Written by hand: the `cel` crate exposes no way back from its AST to source text, and an
//! explanation must show the owner their own words. The scan only has to respect string
//! literals and brackets; anything it cannot split stays one clause.

/// Each character of `source` outside string literals, with its byte offset and bracket depth
/// (a closing bracket is listed at the depth it returns to).
fn code_positions(source: &str) -> Vec<(usize, char, i32)> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut i) = (0i32, 0usize);
    while i < bytes.len() {
        let c = bytes[i];
        match c {
            b'\'' | b'"' => {
                // Skip the literal, honouring backslash escapes and triple quotes.
                let triple = bytes.get(i..i + 3) == Some(&[c, c, c][..]);
                let close_len = if triple { 3 } else { 1 };
                i += close_len;
                while i < bytes.len() {
                    if bytes[i] == b'\\' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == c && (!triple || bytes.get(i..i + 3) == Some(&[c, c, c][..])) {
                        i += close_len;
                        break;
                    }
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                out.push((i, c as char, depth));
                depth += 1;
            }
            b')' | b']' | b'}' => {
                depth -= 1;
                out.push((i, c as char, depth));
            }
            _ => out.push((i, c as char, depth)),
        }
        i += 1;
    }
    out
}

/// The characters of `source` at bracket depth 0 and outside string literals (brackets
/// excluded).
fn top_level_positions(source: &str) -> Vec<(usize, char)> {
    code_positions(source)
        .into_iter()
        .filter(|&(_, c, depth)| depth == 0 && !"()[]{}".contains(c))
        .map(|(i, c, _)| (i, c))
        .collect()
}

/// The top-level `&&` clauses, or the whole text when its top level is not a conjunction
/// (an `||` or `?:` binds looser than `&&`).
pub(crate) fn split_conjunction(source: &str) -> Vec<String> {
    let positions = top_level_positions(source);
    let at = |i: usize, s: &str| source.get(i..i + s.len()) == Some(s);
    if positions
        .iter()
        .any(|&(i, c)| (c == '|' && at(i, "||")) || c == '?')
    {
        return vec![source.trim().to_owned()];
    }
    let mut clauses = Vec::new();
    let mut start = 0;
    let mut skip_next = false;
    for &(i, c) in &positions {
        if skip_next {
            skip_next = false;
            continue;
        }
        if c == '&' && at(i, "&&") {
            clauses.push(source[start..i].trim().to_owned());
            start = i + 2;
            skip_next = true;
        }
    }
    clauses.push(source[start..].trim().to_owned());
    clauses.retain(|c| !c.is_empty());
    clauses
}

/// The two sides of a clause's top-level comparison (`==`, `!=`, `<=`, `>=`, `<`, `>`, `in`).
pub(crate) fn split_comparison(clause: &str) -> Option<(String, &'static str, String)> {
    let positions = top_level_positions(clause);
    let at = |i: usize, s: &str| clause.get(i..i + s.len()) == Some(s);
    for &(i, _) in &positions {
        // Two-character operators first, so `<=` is never read as `<`.
        for op in ["==", "!=", "<=", ">=", "<", ">", " in "] {
            if at(i, op) {
                return Some((
                    clause[..i].trim().to_owned(),
                    op.trim(),
                    clause[i + op.len()..].trim().to_owned(),
                ));
            }
        }
    }
    None
}

/// A clause that is one quantifier over a list, `RANGE.exists(VAR, BODY)` (or `all`,
/// `exists_one`), as (range, variable, body): Google's signature condition is one.
pub(crate) fn split_quantifier(clause: &str) -> Option<(String, String, String)> {
    let clause = clause.trim();
    let positions = code_positions(clause);
    // The call's opening parenthesis is the last bracket opened at depth 0, and its closing
    // one ends the clause.
    let &(open, _, _) = positions
        .iter()
        .rev()
        .find(|&&(_, c, depth)| c == '(' && depth == 0)?;
    let last = positions.last()?;
    if last.1 != ')' || last.0 + 1 != clause.len() {
        return None;
    }
    if positions
        .iter()
        .any(|&(i, c, depth)| i > open && i < last.0 && depth == 0 && !c.is_whitespace())
    {
        return None;
    }
    let range = ["exists_one", "exists", "all"]
        .iter()
        .find_map(|m| clause[..open].strip_suffix(m)?.strip_suffix('.'))?;
    let inner = &clause[open + 1..last.0];
    let (comma, _) = top_level_positions(inner)
        .into_iter()
        .find(|&(_, c)| c == ',')?;
    let var = inner[..comma].trim();
    let is_ident = |s: &str| {
        s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    // A range that is itself an expression with operators would be shown misleadingly.
    let plain = top_level_positions(range)
        .iter()
        .all(|&(_, c)| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if range.trim().is_empty() || !plain || !is_ident(var) {
        return None;
    }
    Some((
        range.trim().to_owned(),
        var.to_owned(),
        inner[comma + 1..].trim().to_owned(),
    ))
}

/// Whether `text` names the variable `var` (outside string literals, not as a field).
pub(crate) fn mentions(text: &str, var: &str) -> bool {
    let (bytes, name) = (text.as_bytes(), var.as_bytes());
    if name.is_empty() {
        return false;
    }
    let code = code_positions(text);
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    code.iter().enumerate().any(|(k, &(i, _, _))| {
        bytes[i..].starts_with(name)
            // All of the name is code (no literal starts inside it).
            && code.get(k + name.len() - 1).is_some_and(|&(j, _, _)| j == i + name.len() - 1)
            && (i == 0 || !(ident(bytes[i - 1]) || bytes[i - 1] == b'.'))
            && !bytes.get(i + name.len()).is_some_and(|&b| ident(b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conjunctions_split_at_top_level_only() {
        let c = "a == 'x && y' && (b || c) && f(d && e) && 'S' in l";
        assert_eq!(
            split_conjunction(c),
            ["a == 'x && y'", "(b || c)", "f(d && e)", "'S' in l"]
        );
        assert_eq!(split_conjunction("a && b || c"), ["a && b || c"]);
        assert_eq!(split_conjunction("a ? b && c : d"), ["a ? b && c : d"]);
        assert_eq!(split_conjunction("  single  "), ["single"]);
    }

    #[test]
    fn comparisons_split_into_their_sides() {
        assert_eq!(
            split_comparison("assertion.swname == 'A==B'"),
            Some(("assertion.swname".into(), "==", "'A==B'".into()))
        );
        assert_eq!(
            split_comparison("'STABLE' in assertion.x"),
            Some(("'STABLE'".into(), "in", "assertion.x".into()))
        );
        assert_eq!(split_comparison("has(assertion.x)"), None);
        assert_eq!(
            split_comparison("int(assertion.swversion[0]) < 250301"),
            Some(("int(assertion.swversion[0])".into(), "<", "250301".into()))
        );
        assert_eq!(
            split_comparison("a >= 'x>y'"),
            Some(("a".into(), ">=", "'x>y'".into()))
        );
    }

    #[test]
    fn quantifiers_split_into_range_variable_and_body() {
        let google = "['ECDSA_P256_SHA256:ab'].exists(fingerprint, fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id))";
        assert_eq!(
            split_quantifier(google),
            Some((
                "['ECDSA_P256_SHA256:ab']".into(),
                "fingerprint".into(),
                "fingerprint in assertion.submods.container.image_signatures.map(sig, sig.signature_algorithm+':'+sig.key_id)".into()
            ))
        );
        assert_eq!(
            split_quantifier("a.all(x, x > 1)"),
            Some(("a".into(), "x".into(), "x > 1".into()))
        );
        assert_eq!(
            split_quantifier("l.exists_one(x, x == ')')"),
            Some(("l".into(), "x".into(), "x == ')'".into()))
        );
        for not_one in [
            "a.exists(x, x) || b",
            "a.exists(x, x) == true",
            "f(a, b)",
            "a.size(x, y)",
            "a.exists(x.y, true)",
            ".exists(x, x)",
            "a.exists(x, x) || b.all(y, y)",
        ] {
            assert_eq!(split_quantifier(not_one), None, "{not_one}");
        }
    }

    #[test]
    fn a_variable_is_found_by_name_only() {
        assert!(mentions("fingerprint", "fingerprint"));
        assert!(mentions("x in l", "x"));
        assert!(mentions("f(x)", "x"));
        assert!(!mentions("assertion.x", "x"));
        assert!(!mentions("'x' in l", "x"));
        assert!(!mentions("xs in l", "x"));
        assert!(!mentions("l.map(y, y)", "x"));
    }
}
