//! What every storage response goes through: `fields` (Google's partial-response selector,
//! e.g. `items(name,size),nextPageToken`) keeps only the selected members of a JSON answer,
//! `prettyPrint=true` indents it, and a method a storage path does not have is a Google-shaped
//! 405 rather than an empty one.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::ApiError;

/// JSON answers larger than this are passed through unfiltered rather than buffered (a listing
/// page of 1000 objects is well under it).
const MAX_SHAPED_BYTES: usize = 16 * 1024 * 1024;

/// A parsed `fields` selector: each selected member, with the selection inside it (None: all).
#[derive(Debug, Default, PartialEq)]
pub struct Fields(BTreeMap<String, Option<Fields>>);

impl Fields {
    /// Parses Google's grammar: `a,b/c,d(e,f)`; `*` selects every member at its level.
    pub fn parse(text: &str) -> Result<Fields, String> {
        let mut chars = text.chars().peekable();
        let fields = Self::list(&mut chars, 0)?;
        match chars.next() {
            None => Ok(fields),
            Some(c) => Err(format!("unexpected {c:?}")),
        }
    }

    fn list(
        chars: &mut std::iter::Peekable<std::str::Chars>,
        depth: usize,
    ) -> Result<Fields, String> {
        // Nesting deeper than any resource is a hostile selector, not a real one.
        if depth > 8 {
            return Err("nested too deeply".into());
        }
        let mut fields = Fields::default();
        loop {
            let mut path = Vec::new();
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                match c {
                    ',' | '(' | ')' => break,
                    '/' => {
                        path.push(std::mem::take(&mut name));
                        chars.next();
                    }
                    // Custom metadata keys may hold any character but these (gcloud's rsync
                    // selects `items/metadata/goog-reserved-posix-mtime`).
                    c if c.is_whitespace() => return Err(format!("unexpected {c:?}")),
                    c => {
                        name.push(c);
                        chars.next();
                    }
                }
            }
            path.push(name);
            if path.iter().any(String::is_empty) {
                return Err("an empty field name".into());
            }
            let mut inner = None;
            if chars.peek() == Some(&'(') {
                chars.next();
                inner = Some(Self::list(chars, depth + 1)?);
                if chars.next() != Some(')') {
                    return Err("a '(' without its ')'".into());
                }
            }
            fields.insert(&path, inner);
            match chars.peek() {
                Some(',') => {
                    chars.next();
                }
                _ => return Ok(fields),
            }
        }
    }

    fn insert(&mut self, path: &[String], inner: Option<Fields>) {
        match path {
            [] => {}
            [last] => {
                self.0.insert(last.clone(), inner);
            }
            [first, rest @ ..] => {
                let child = self
                    .0
                    .entry(first.clone())
                    .or_insert_with(|| Some(Fields::default()));
                // A member already selected whole stays whole.
                if let Some(child) = child {
                    child.insert(rest, inner);
                }
            }
        }
    }

    /// Keeps only the selected members; a selection applies to each element of an array.
    pub fn apply(&self, value: &mut Value) {
        match value {
            Value::Array(items) => items.iter_mut().for_each(|v| self.apply(v)),
            Value::Object(map) => {
                if self.0.contains_key("*") {
                    return;
                }
                map.retain(|k, _| self.0.contains_key(k));
                for (k, v) in map.iter_mut() {
                    if let Some(Some(inner)) = self.0.get(k) {
                        inner.apply(v);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The middleware: validates `fields` and `prettyPrint` before the method runs (so a bad
/// selector changes nothing), then shapes a successful JSON answer.
pub async fn shape(request: Request, next: Next) -> Response {
    let mut fields = None;
    let mut pretty = false;
    for (k, v) in form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()) {
        match k.as_ref() {
            "fields" => match Fields::parse(&v) {
                Ok(f) => fields = Some(f),
                Err(why) => {
                    return ApiError::InvalidArgument(format!(
                        "Invalid field selection {v:?} in the query parameter fields: {why}"
                    ))
                    .into_response();
                }
            },
            "prettyPrint" => pretty = super::params::parse_flag(&v) == Some(true),
            // A download's bytes are the object's, whatever its type: never reshaped.
            "alt" if v == "media" => return next.run(request).await,
            _ => {}
        }
    }
    let response = next.run(request).await;
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (fields.is_none() && !pretty) || !response.status().is_success() || !is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_SHAPED_BYTES).await else {
        return ApiError::Internal("a JSON answer too large to shape".into()).into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    if let Some(fields) = &fields {
        fields.apply(&mut value);
    }
    let text = if pretty {
        serde_json::to_vec_pretty(&value)
    } else {
        serde_json::to_vec(&value)
    };
    let mut response = Response::from_parts(parts, Body::from(text.unwrap_or_default()));
    response.headers_mut().remove(header::CONTENT_LENGTH);
    response
}

/// The answer for a method a storage path does not have, in Google's error shape.
pub async fn method_not_allowed(request: Request) -> Response {
    let message = format!(
        "The storage API has no method {} at {}",
        request.method(),
        request.uri().path()
    );
    let body = json!({"error": {
        "code": 405,
        "message": message,
        "status": "UNIMPLEMENTED",
        "errors": [{"message": message, "domain": "global", "reason": "methodNotAllowed"}],
    }});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::Fields;
    use serde_json::json;

    #[test]
    fn fields_select_members_like_google() {
        let mut v = json!({
            "kind": "storage#objects", "nextPageToken": "t", "prefixes": ["a/"],
            "items": [{"name": "x", "size": "1", "bucket": "b", "metadata": {"k": "v", "j": "w"}}],
        });
        Fields::parse("items(name,metadata/k),nextPageToken")
            .unwrap()
            .apply(&mut v);
        assert_eq!(
            v,
            json!({"nextPageToken": "t", "items": [{"name": "x", "metadata": {"k": "v"}}]})
        );
        let mut v = json!({"name": "x", "size": "1"});
        Fields::parse("name").unwrap().apply(&mut v);
        assert_eq!(v, json!({"name": "x"}));
        let mut v = json!({"items": [{"metadata": {"goog-reserved-posix-mtime": "1", "o": "2"}}]});
        Fields::parse("items/metadata/goog-reserved-posix-mtime")
            .unwrap()
            .apply(&mut v);
        assert_eq!(
            v,
            json!({"items": [{"metadata": {"goog-reserved-posix-mtime": "1"}}]})
        );
        let mut v = json!({"items": [{"name": "x"}], "kind": "k"});
        Fields::parse("items/name,kind").unwrap().apply(&mut v);
        assert_eq!(v, json!({"items": [{"name": "x"}], "kind": "k"}));
        for bad in [
            "",
            "a,,b",
            "a(b",
            "a)b",
            "a b",
            "a/(b)",
            "a(((((((((((b)))))))))))",
        ] {
            assert!(Fields::parse(bad).is_err(), "{bad:?}");
        }
    }
}
