//! JSON claims → CEL values with Google's rule that every JSON number is a double, and the
//! shared environment (stdlib, strings extension, `extract`).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, Value};

/// The environment every expression compiles and runs in, built once.
pub(crate) fn env() -> Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    Arc::clone(ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        // Registering a built-in extension into a fresh stdlib env cannot conflict.
        let _ = env.add_extension(cel::extensions::strings);
        Arc::new(env)
    }))
}

/// A fresh evaluation context with Google's extra functions.
pub(crate) fn context() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(env());
    // `extract` is not a stdlib name, so adding it cannot conflict.
    let _ = ctx.add_function("extract", extract);
    ctx
}

/// Google's `extract`: `'/a/b/c'.extract('/a/{x}/')` is `'b'`; the text between the template's
/// prefix and suffix around its one `{name}`, or `''` when the string does not match.
fn extract(This(this): This<Arc<String>>, template: Arc<String>) -> String {
    let Some(open) = template.find('{') else {
        return String::new();
    };
    let Some(close) = template[open..].find('}').map(|i| open + i) else {
        return String::new();
    };
    let (prefix, suffix) = (&template[..open], &template[close + 1..]);
    let Some(start) = this.find(prefix).map(|i| i + prefix.len()) else {
        return String::new();
    };
    let rest = &this[start..];
    match suffix {
        "" => rest.to_owned(),
        s => rest
            .find(s)
            .map(|end| rest[..end].to_owned())
            .unwrap_or_default(),
    }
}

pub(crate) fn from_json(v: &serde_json::Value) -> Value {
    match v {
        serde_json::Value::Null => Value::Null,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        // Google evaluates conditions over JSON with every number a double.
        serde_json::Value::Number(n) => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Value::String(Arc::new(s.clone())),
        serde_json::Value::Array(items) => {
            Value::List(Arc::new(items.iter().map(from_json).collect()))
        }
        serde_json::Value::Object(obj) => map(obj.iter().map(|(k, v)| (k.clone(), from_json(v)))),
    }
}

pub(crate) fn map(entries: impl IntoIterator<Item = (String, Value)>) -> Value {
    let map: HashMap<Key, Value> = entries
        .into_iter()
        .map(|(k, v)| (Key::String(Arc::new(k)), v))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// A CEL value as JSON for explanations (numbers, strings, lists, maps; others by debug form).
pub(crate) fn to_json(v: &Value) -> serde_json::Value {
    v.json()
        .unwrap_or_else(|_| serde_json::Value::String(format!("{v:?}")))
}

pub(crate) fn type_name(v: &Value) -> String {
    v.type_of().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extract_takes_the_text_between_prefix_and_suffix() {
        let e = |s: &str, t: &str| extract(This(Arc::new(s.into())), Arc::new(t.into()));
        assert_eq!(
            e("projects/123/zones/us-a/instances/x", "projects/{p}/"),
            "123"
        );
        assert_eq!(e("projects/123/zones/us-a", "zones/{z}"), "us-a");
        assert_eq!(e("nothing here", "projects/{p}/"), "");
        assert_eq!(e("abc", "no placeholder"), "");
    }
}
