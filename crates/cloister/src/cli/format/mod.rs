//! `--format json|yaml|value(field.path,…)`, as gcloud spells it.

use std::str::FromStr;

use anyhow::Result;
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Format {
    /// YAML for one resource, a table for a list.
    #[default]
    Default,
    Json,
    Yaml,
    /// Bare values of the named fields, tab-separated, one line per resource.
    Value(Vec<String>),
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            _ => {
                let inner = s
                    .strip_prefix("value(")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(|| {
                        format!("unknown format {s:?}: use json, yaml or value(FIELD[,FIELD…])")
                    })?;
                let fields: Vec<String> = inner.split(',').map(|f| f.trim().to_owned()).collect();
                if fields.iter().any(String::is_empty) {
                    return Err(format!("{s:?} names an empty field: value(FIELD[,FIELD…])"));
                }
                Ok(Format::Value(fields))
            }
        }
    }
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

fn scalar(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| scalar(Some(i)))
            .collect::<Vec<_>>()
            .join(";"),
        Some(other) => other.to_string(),
    }
}

fn yaml(v: &Value) -> Result<String> {
    Ok(serde_yaml_ng::to_string(v)?)
}

pub fn print_one(format: &Format, v: &Value) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(v)?),
        Format::Yaml | Format::Default => print!("{}", yaml(v)?),
        Format::Value(fields) => {
            println!(
                "{}",
                fields
                    .iter()
                    .map(|f| scalar(lookup(v, f)))
                    .collect::<Vec<_>>()
                    .join("\t")
            )
        }
    }
    Ok(())
}

/// Prints a list; the default is a table of `columns` (header, field path).
pub fn print_list(format: &Format, items: &[Value], columns: &[(&str, &str)]) -> Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(items)?),
        Format::Yaml => {
            for item in items {
                print!("---\n{}", yaml(item)?);
            }
        }
        Format::Value(_) => {
            for item in items {
                print_one(format, item)?;
            }
        }
        Format::Default => {
            if items.is_empty() {
                eprintln!("Listed 0 items.");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|i| columns.iter().map(|(_, p)| scalar(lookup(i, p))).collect())
                .collect();
            let widths: Vec<usize> = columns
                .iter()
                .enumerate()
                .map(|(c, (h, _))| {
                    rows.iter()
                        .map(|r| r[c].len())
                        .chain([h.len()])
                        .max()
                        .unwrap_or(0)
                })
                .collect();
            let line = |cells: Vec<&str>| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                println!("{}", padded.join("  ").trim_end());
            };
            line(columns.iter().map(|(h, _)| *h).collect());
            for r in &rows {
                line(r.iter().map(String::as_str).collect());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_parse_like_gcloud() {
        assert_eq!("json".parse::<Format>().unwrap(), Format::Json);
        assert_eq!(
            "value(image_summary.digest)".parse::<Format>().unwrap(),
            Format::Value(vec!["image_summary.digest".into()])
        );
        assert!("table".parse::<Format>().is_err());
        assert!("value(a,)".parse::<Format>().is_err());
    }

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
        assert_eq!(scalar(lookup(&v, "n")), "12");
    }
}
