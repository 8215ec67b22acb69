//! Splitting a condition's text into its top-level `&&` clauses, and a clause into the two
//! sides of its top-level comparison, for explanations.
//!
//! Written by hand: the `cel` crate exposes no way back from its AST to source text, and an
//! explanation must show the owner their own words. The scan only has to respect string
//! literals and brackets; anything it cannot split stays one clause.

/// Byte ranges of `source` at bracket depth 0 and outside string literals.
fn top_level_positions(source: &str) -> Vec<(usize, char)> {
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
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            _ if depth == 0 => out.push((i, c as char)),
            _ => {}
        }
        i += 1;
    }
    out
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
        for op in ["==", "!=", "<=", ">=", " in "] {
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
    }
}
