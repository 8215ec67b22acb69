//! gcloud's projections: the `(KEY[:label=LABEL], …)` part of `--format`, and the keys that
//! `--filter` and `--sort-by` name. A key is a field path (`primary.state`,
//! `bindings[0].role`), optionally ending in one transform (`name.basename()`,
//! `name.segment(3)`, `reason.trailoff(60)`).

use serde_json::Value;

/// The transforms Cloister implements; any other is refused by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transform {
    /// The last `/`-separated part of a resource name.
    Basename,
    /// The Nth (0-based) `/`-separated part; negative counts from the end.
    Segment(i64),
    /// At most N characters: a longer text is cut to N-1 and ends in `…`.
    Trailoff(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// The field path, as written (`primary.state`).
    pub path: String,
    pub transform: Option<Transform>,
}

/// One column of a projection: a key and the label a table heads it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub key: Key,
    pub label: String,
}

impl Key {
    /// A key from a command's own default columns (never carries a transform).
    pub fn plain(path: &str) -> Key {
        Key {
            path: path.to_owned(),
            transform: None,
        }
    }

    pub fn parse(text: &str) -> Result<Key, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("a key is empty".into());
        }
        let Some(open) = text.find('(') else {
            check_path(text)?;
            return Ok(Key::plain(text));
        };
        let (path, call) = text[..open].rsplit_once('.').ok_or_else(|| {
            format!("{text:?}: a transform follows a field, as in name.basename()")
        })?;
        let name = call;
        let args = text[open + 1..].strip_suffix(')').ok_or_else(|| {
            format!("{text:?}: the transform's argument list is not closed with ')'")
        })?;
        let transform = match (name, args.trim()) {
            ("basename", "") => Transform::Basename,
            ("segment", n) => Transform::Segment(n.parse().map_err(|_| {
                format!("{text:?}: segment() takes an integer, e.g. name.segment(3)")
            })?),
            ("trailoff", n) => {
                Transform::Trailoff(n.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    format!(
                        "{text:?}: trailoff() takes a positive integer, e.g. reason.trailoff(60)"
                    )
                })?)
            }
            _ => {
                return Err(format!(
                    "{text:?}: the transform {name}() is not supported; Cloister supports basename(), segment(N) and trailoff(N)"
                ));
            }
        };
        check_path(path)?;
        Ok(Key {
            path: path.to_owned(),
            transform: Some(transform),
        })
    }

    /// The key's value in `v`, transformed; `None` when the field is absent.
    pub fn get(&self, v: &Value) -> Option<Value> {
        let found = lookup(v, &self.path)?;
        let Some(t) = &self.transform else {
            return Some(found.clone());
        };
        let text = found.as_str()?;
        let parts: Vec<&str> = text.split('/').collect();
        let part = match t {
            Transform::Basename => parts.last().copied(),
            Transform::Segment(n) => {
                let i = if *n < 0 {
                    parts.len().checked_sub(n.unsigned_abs() as usize)
                } else {
                    Some(*n as usize)
                };
                i.and_then(|i| parts.get(i).copied())
            }
            Transform::Trailoff(n) => {
                return Some(Value::String(match text.chars().nth(*n) {
                    None => text.to_owned(),
                    Some(_) => text.chars().take(n - 1).chain(['…']).collect(),
                }));
            }
        };
        Some(Value::String(part.unwrap_or_default().to_owned()))
    }

    /// gcloud's default column label: the last field name, camelCase as UPPER_SNAKE.
    pub fn default_label(&self) -> String {
        let last = self.path.rsplit('.').next().unwrap_or(&self.path);
        let last = last.split('[').next().unwrap_or(last);
        let mut label = String::new();
        for (i, c) in last.chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                label.push('_');
            }
            label.push(c.to_ascii_uppercase());
        }
        label
    }
}

/// Refuses what is not a field path, so a typo is an error rather than an empty column.
fn check_path(path: &str) -> Result<(), String> {
    let ok = !path.is_empty()
        && path.chars().all(|c| {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '[' | ']' | '@' | '/')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path:?} is not a field path (letters, digits, '_', '-', '.', and [N] for list items)"
        ))
    }
}

impl Column {
    #[cfg(test)]
    pub fn plain(label: &str, path: &str) -> Column {
        Column {
            key: Key::plain(path),
            label: label.to_owned(),
        }
    }

    /// `KEY[:label=LABEL]`.
    pub fn parse(text: &str) -> Result<Column, String> {
        let mut parts = split_top(text, ':').into_iter();
        let key = Key::parse(parts.next().unwrap_or_default())?;
        let mut label = None;
        for attr in parts {
            match attr.trim().split_once('=') {
                Some(("label", value)) => label = Some(unquote(value.trim()).to_owned()),
                _ => {
                    return Err(format!(
                        "{text:?}: the key attribute {attr:?} is not supported; Cloister supports :label=LABEL"
                    ));
                }
            }
        }
        let label = label.unwrap_or_else(|| key.default_label());
        Ok(Column { key, label })
    }
}

/// Parses `KEY[:ATTR…], …` into columns.
pub fn parse_columns(text: &str) -> Result<Vec<Column>, String> {
    let columns = split_top(text, ',')
        .into_iter()
        .map(Column::parse)
        .collect::<Result<Vec<_>, _>>()?;
    if columns.is_empty() {
        return Err("the projection names no keys".into());
    }
    Ok(columns)
}

/// Splits on `sep` outside parentheses, brackets and quotes.
pub fn split_top(text: &str, sep: char) -> Vec<&str> {
    let (mut depth, mut quote, mut start) = (0i32, None, 0);
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '(' | '[') => depth += 1,
            (None, ')' | ']') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

pub fn unquote(s: &str) -> &str {
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Looks up `a.b[0].c` in `v`. A map key that itself contains dots (`google.subject` in an
/// attribute mapping) is found too: the longest run of segments naming a key wins.
pub fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    let parts: Vec<&str> = path.split('.').collect();
    lookup_parts(v, &parts)
}

fn lookup_parts<'a>(v: &'a Value, parts: &[&str]) -> Option<&'a Value> {
    if parts.is_empty() {
        return Some(v);
    }
    (1..=parts.len()).rev().find_map(|n| {
        let segment = parts[..n].join(".");
        let (key, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment.as_str(), ""),
        };
        let mut cur = if key.is_empty() { v } else { v.get(key)? };
        for idx in indexes.split('[').skip(1) {
            let n: usize = idx.strip_suffix(']')?.parse().ok()?;
            cur = cur.get(n)?;
        }
        lookup_parts(cur, &parts[n..])
    })
}

/// A value as one cell of text: strings bare, lists joined with ';', objects as JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| cell(Some(i)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_reach_nested_values_and_list_items() {
        let v = json!({"a": {"b": [{"c": 1}, {"c": "x"}]}, "n": "12"});
        assert_eq!(lookup(&v, "a.b[1].c"), Some(&json!("x")));
        assert_eq!(lookup(&v, "a.b[0].c"), Some(&json!(1)));
        assert_eq!(lookup(&v, "a.z"), None);
        let m = json!({"attributeMapping": {"google.subject": "assertion.sub"}});
        assert_eq!(
            lookup(&m, "attributeMapping.google.subject"),
            Some(&json!("assertion.sub"))
        );
        assert_eq!(cell(lookup(&v, "n")), "12");
    }

    #[test]
    fn columns_take_labels_and_transforms_and_refuse_the_rest() {
        let name = json!({"name": "projects/p/locations/global/keyRings/r"});
        let cases: &[(&str, &str, &str)] = &[
            ("name", "NAME", "projects/p/locations/global/keyRings/r"),
            ("name.basename()", "NAME", "r"),
            ("name.segment(1)", "NAME", "p"),
            ("name.segment(-1)", "NAME", "r"),
            (
                "name:label=RING",
                "RING",
                "projects/p/locations/global/keyRings/r",
            ),
            ("name.basename():label='Key ring'", "Key ring", "r"),
            ("name.trailoff(10)", "NAME", "projects/…"),
            (
                "name.trailoff(38)",
                "NAME",
                "projects/p/locations/global/keyRings/r",
            ),
            (
                "name.trailoff(37)",
                "NAME",
                "projects/p/locations/global/keyRings…",
            ),
            ("createTime", "CREATE_TIME", ""),
            ("primary.state", "STATE", ""),
        ];
        for (text, label, value) in cases {
            let c = Column::parse(text).unwrap();
            assert_eq!(c.label, *label, "{text}");
            assert_eq!(cell(c.key.get(&name).as_ref()), *value, "{text}");
        }
        for bad in [
            "name.date()",
            "name:sort=1",
            "name.basename(",
            "name.trailoff(0)",
            "a b",
            "",
        ] {
            assert!(Column::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_columns("a, b.c:label=X").unwrap().len(), 2);
    }
}
