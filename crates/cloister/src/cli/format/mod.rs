//! `--format NAME[ATTRIBUTES](PROJECTION)` and the list flags `--filter`, `--sort-by` and
//! `--limit`, as gcloud spells them. Formats: `json`, `yaml`, `table`, `csv`, `value`, `none`;
//! attributes `no-heading` (table, csv) and `separator=S` (csv, value); projections as in
//! [`projection`]. Lists are sorted, then filtered, then cut to the limit, in gcloud's order.

pub mod filter;
pub mod projection;

use std::cmp::Ordering;
use std::str::FromStr;

use anyhow::{Result, bail};
use serde_json::{Map, Value};

use super::output;
use filter::Filter;
use projection::{Column, Key, cell, parse_columns, split_top, unquote};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// YAML for one resource, the command's table for a list.
    Default,
    Json,
    Yaml,
    Table,
    Csv,
    /// Bare values, separated by tabs, one line per resource.
    Value,
    /// Nothing at all (gcloud's `--format=none`, for scripts that only want the exit code).
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Format {
    pub kind: Kind,
    /// The projection's columns; `None` means the command's own.
    columns: Option<Vec<Column>>,
    no_heading: bool,
    separator: Option<String>,
}

impl Default for Format {
    fn default() -> Self {
        Format {
            kind: Kind::Default,
            columns: None,
            no_heading: false,
            separator: None,
        }
    }
}

const FORMATS: &str = "json, yaml, table, csv, value, none (with an optional (KEY,…) projection)";

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let name_end = s.find(['[', '(']).unwrap_or(s.len());
        let kind = match &s[..name_end] {
            "default" => Kind::Default,
            "json" => Kind::Json,
            "yaml" => Kind::Yaml,
            "table" => Kind::Table,
            "csv" => Kind::Csv,
            "value" => Kind::Value,
            "none" => Kind::None,
            other => return Err(format!("unknown format {other:?}: use {FORMATS}")),
        };
        let mut rest = &s[name_end..];
        let mut format = Format {
            kind,
            ..Format::default()
        };
        if let Some(after) = rest.strip_prefix('[') {
            let end = after
                .find(']')
                .ok_or_else(|| format!("{s:?}: the attribute list is not closed with ']'"))?;
            for attr in split_top(&after[..end], ',') {
                match attr.trim().split_once('=') {
                    None if attr.trim() == "no-heading" => format.no_heading = true,
                    Some(("separator", sep)) => format.separator = Some(unquote(sep).to_owned()),
                    _ => {
                        return Err(format!(
                            "{s:?}: the format attribute {attr:?} is not supported; Cloister supports no-heading and separator=S"
                        ));
                    }
                }
            }
            rest = &after[end + 1..];
        }
        if let Some(after) = rest.strip_prefix('(') {
            let inner = after
                .strip_suffix(')')
                .ok_or_else(|| format!("{s:?}: the projection is not closed with ')'"))?;
            format.columns = Some(parse_columns(inner).map_err(|e| format!("{s:?}: {e}"))?);
        } else if !rest.is_empty() {
            return Err(format!("{s:?}: unexpected {rest:?}; use {FORMATS}"));
        }
        Ok(format)
    }
}

/// `--filter`, `--limit` and `--sort-by`, on every list command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ListArgs {
    /// Only the items for which EXPRESSION holds, in gcloud's filter syntax (KEY=VALUE,
    /// KEY:VALUE, KEY:*, <, >, ~, (A B) lists, NOT, AND, OR, parentheses); column names of the
    /// table work as keys too.
    #[arg(long, value_name = "EXPRESSION", value_parser = Filter::parse)]
    pub filter: Option<Filter>,
    /// At most this many items (applied after --sort-by and --filter).
    #[arg(long, value_name = "LIMIT")]
    pub limit: Option<usize>,
    /// Sort by these keys, comma-separated; ~KEY sorts that key descending.
    #[arg(long, value_name = "FIELD", value_delimiter = ',')]
    pub sort_by: Vec<String>,
}

impl ListArgs {
    /// Sorts, filters and limits `items` as gcloud does, in that order.
    pub fn apply(&self, mut items: Vec<Value>, columns: &[Column]) -> Result<Vec<Value>> {
        let mut keys = Vec::new();
        for spec in &self.sort_by {
            let (descending, text) = match spec.trim().strip_prefix('~') {
                Some(k) => (true, k),
                None => (false, spec.trim()),
            };
            let key = Key::parse(text).map_err(|e| anyhow::anyhow!("--sort-by {spec:?}: {e}"))?;
            keys.push((key, descending));
        }
        if !keys.is_empty() {
            items.sort_by(|a, b| {
                keys.iter().fold(Ordering::Equal, |acc, (key, descending)| {
                    acc.then_with(|| {
                        let a = filter::resolve(key, a, columns);
                        let b = filter::resolve(key, b, columns);
                        let o = order(a.as_ref(), b.as_ref());
                        if *descending { o.reverse() } else { o }
                    })
                })
            });
        }
        if let Some(f) = &self.filter {
            items.retain(|i| f.matches(i, columns));
        }
        if let Some(n) = self.limit {
            items.truncate(n);
        }
        Ok(items)
    }
}

/// Numbers (also numeric strings, as the JSON APIs send sizes) by value, the rest as text;
/// absent values first.
fn order(a: Option<&Value>, b: Option<&Value>) -> Ordering {
    let num = |v: Option<&Value>| match v {
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => {
            let present = |v: Option<&Value>| !matches!(v, None | Some(Value::Null));
            present(a)
                .cmp(&present(b))
                .then_with(|| cell(a).cmp(&cell(b)))
        }
    }
}

/// A command's own columns; their keys may carry a transform (`zone.basename()`).
pub fn default_columns(columns: &[(&str, &str)]) -> Vec<Column> {
    columns
        .iter()
        .map(|(label, path)| Column {
            key: Key::parse(path).unwrap_or_else(|_| Key::plain(path)),
            label: (*label).to_owned(),
        })
        .collect()
}

impl Format {
    /// The projection, else the command's columns.
    fn columns(&self, defaults: &[Column]) -> Vec<Column> {
        self.columns.clone().unwrap_or_else(|| defaults.to_vec())
    }

    /// Prints one resource (describe, create).
    pub fn print_one(&self, v: &Value) -> Result<()> {
        let columns = self.columns(&[]);
        match self.kind {
            Kind::Table | Kind::Csv | Kind::Value if columns.is_empty() => bail!(
                "--format {}: this command prints one resource; name its keys, e.g. value(name)",
                self.name()
            ),
            Kind::Default | Kind::Yaml => Ok(output::bytes(yaml(&self.project(v))?.as_bytes())?),
            Kind::Json => Ok(output::line(&serde_json::to_string_pretty(
                &self.project(v),
            )?)?),
            _ => self.print_rows(std::slice::from_ref(v), &columns),
        }
    }

    /// Prints a list; `columns` (heading, key) are the default table's.
    pub fn print_list(
        &self,
        list: &ListArgs,
        items: Vec<Value>,
        columns: &[(&str, &str)],
    ) -> Result<()> {
        let defaults = default_columns(columns);
        let columns = self.columns(&defaults);
        // Keys may name the labels of the projection or of the command's own table.
        let items = list.apply(items, &[columns.as_slice(), &defaults].concat())?;
        match self.kind {
            Kind::Json => {
                let items: Vec<Value> = items.iter().map(|i| self.project(i)).collect();
                Ok(output::line(&serde_json::to_string_pretty(&items)?)?)
            }
            Kind::Yaml => {
                for item in &items {
                    output::bytes(format!("---\n{}", yaml(&self.project(item))?).as_bytes())?;
                }
                Ok(())
            }
            Kind::Default if items.is_empty() => {
                eprintln!("Listed 0 items.");
                Ok(())
            }
            _ => self.print_rows(&items, &columns),
        }
    }

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Default => "default",
            Kind::Json => "json",
            Kind::Yaml => "yaml",
            Kind::Table => "table",
            Kind::Csv => "csv",
            Kind::Value => "value",
            Kind::None => "none",
        }
    }

    /// With a projection, JSON and YAML show only its keys (nested as in the resource).
    fn project(&self, v: &Value) -> Value {
        let Some(columns) = &self.columns else {
            return v.clone();
        };
        let mut out = Map::new();
        for c in columns {
            let Some(value) = c.key.get(v) else { continue };
            let names: Vec<&str> = c.key.path.split('.').collect();
            let mut at = &mut out;
            for name in &names[..names.len() - 1] {
                let next = at
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !next.is_object() {
                    *next = Value::Object(Map::new());
                }
                let Value::Object(next) = next else {
                    unreachable!("made an object just above")
                };
                at = next;
            }
            at.insert(names[names.len() - 1].to_owned(), value);
        }
        Value::Object(out)
    }

    fn print_rows(&self, items: &[Value], columns: &[Column]) -> Result<()> {
        // CSV is data for another program; tables and values are for a terminal.
        let for_terminal = self.kind != Kind::Csv;
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|i| {
                columns
                    .iter()
                    .map(|c| cell(c.key.get(i).as_ref()))
                    .map(|c| {
                        if for_terminal {
                            crate::cli::output::printable(&c).into_owned()
                        } else {
                            c
                        }
                    })
                    .collect()
            })
            .collect();
        let mut text = String::new();
        match self.kind {
            Kind::None => return Ok(()),
            Kind::Value => {
                let sep = self.separator.as_deref().unwrap_or("\t");
                for r in &rows {
                    text.push_str(&r.join(sep));
                    text.push('\n');
                }
            }
            Kind::Csv => {
                let sep = self.separator.as_deref().unwrap_or(",");
                let quote = |c: &str| {
                    if c.contains([',', '"', '\n']) || (!sep.is_empty() && c.contains(sep)) {
                        format!("\"{}\"", c.replace('"', "\"\""))
                    } else {
                        c.to_owned()
                    }
                };
                let mut push = |cells: Vec<String>| {
                    text.push_str(&cells.iter().map(|c| quote(c)).collect::<Vec<_>>().join(sep));
                    text.push('\n');
                };
                if !self.no_heading {
                    // gcloud heads csv columns with their keys unless a label is given.
                    push(columns.iter().map(csv_heading).collect());
                }
                for r in rows {
                    push(r);
                }
            }
            Kind::Default | Kind::Table | Kind::Json | Kind::Yaml => {
                let widths: Vec<usize> = (0..columns.len())
                    .map(|i| {
                        rows.iter()
                            .map(|r| r[i].chars().count())
                            .chain([if self.no_heading {
                                0
                            } else {
                                columns[i].label.len()
                            }])
                            .max()
                            .unwrap_or(0)
                    })
                    .collect();
                let mut line = |cells: Vec<&str>| {
                    let padded: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(c, w)| format!("{c:<w$}"))
                        .collect();
                    text.push_str(padded.join("  ").trim_end());
                    text.push('\n');
                };
                if !self.no_heading {
                    line(columns.iter().map(|c| c.label.as_str()).collect());
                }
                for r in &rows {
                    line(r.iter().map(String::as_str).collect());
                }
            }
        }
        Ok(output::bytes(text.as_bytes())?)
    }
}

/// Prints one resource in `format`.
pub fn print_one(format: &Format, v: &Value) -> Result<()> {
    format.print_one(v)
}

/// Prints a list in `format` after `list`'s sorting, filtering and limit.
pub fn print_list(
    format: &Format,
    list: &ListArgs,
    items: Vec<Value>,
    columns: &[(&str, &str)],
) -> Result<()> {
    format.print_list(list, items, columns)
}

fn csv_heading(c: &Column) -> String {
    if c.label == c.key.default_label() {
        c.key.path.clone()
    } else {
        c.label.clone()
    }
}

fn yaml(v: &Value) -> Result<String> {
    Ok(serde_yaml_ng::to_string(v)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_parse_like_gcloud() {
        let f: Format = "value(image_summary.digest)".parse().unwrap();
        assert_eq!(f.kind, Kind::Value);
        assert_eq!(f.columns.unwrap()[0].key.path, "image_summary.digest");
        let f: Format = "csv[no-heading,separator=';'](name,size)".parse().unwrap();
        assert!(f.no_heading);
        assert_eq!(f.separator.as_deref(), Some(";"));
        assert_eq!("table".parse::<Format>().unwrap().columns, None);
        for bad in [
            "tabel(name)",
            "value(a,)",
            "table[box](name)",
            "json(name",
            "table(name)x",
        ] {
            assert!(bad.parse::<Format>().is_err(), "{bad}");
        }
    }

    #[test]
    fn json_projections_keep_the_nesting() {
        let f: Format = "json(name.basename(),primary.state)".parse().unwrap();
        let v = json!({"name": "a/b", "primary": {"state": "ENABLED", "x": 1}, "other": 2});
        assert_eq!(
            f.project(&v),
            json!({"name": "b", "primary": {"state": "ENABLED"}})
        );
    }

    #[test]
    fn lists_are_sorted_then_filtered_then_limited() {
        let items: Vec<Value> = [("b", "10"), ("a", "9"), ("c", "100")]
            .iter()
            .map(|(n, s)| json!({"name": n, "size": s}))
            .collect();
        let names = |l: ListArgs| -> Vec<String> {
            l.apply(items.clone(), &[Column::plain("SIZE", "size")])
                .unwrap()
                .iter()
                .map(|i| i["name"].as_str().unwrap().to_owned())
                .collect()
        };
        let by = |keys: &[&str]| keys.iter().map(|k| k.to_string()).collect();
        assert_eq!(
            names(ListArgs {
                sort_by: by(&["size"]),
                ..Default::default()
            }),
            ["a", "b", "c"]
        );
        assert_eq!(
            names(ListArgs {
                sort_by: by(&["~SIZE"]),
                ..Default::default()
            }),
            ["c", "b", "a"]
        );
        assert_eq!(
            names(ListArgs {
                sort_by: by(&["name"]),
                limit: Some(2),
                ..Default::default()
            }),
            ["a", "b"]
        );
        let filter = Some(Filter::parse("size>9").unwrap());
        assert_eq!(
            names(ListArgs {
                sort_by: by(&["~name"]),
                filter,
                limit: Some(1)
            }),
            ["c"]
        );
    }
}
