//! Query parameters of the storage API. A parameter Cloister does not implement is refused
//! (400 naming it), never ignored: a client that asked for `matchGlob` or `versions=true` and
//! got everything back would act on the wrong answer. Each method's parameters are its query
//! struct's fields (`#[serde(deny_unknown_fields)]`); the standard parameters every method
//! takes are checked and taken out here first.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Google's standard parameters that Cloister accepts on every storage method, and why they
/// change nothing: `fields` and `prettyPrint` shape the response (see `response.rs`);
/// `userProject` and `quotaUser`/`userIp` name who is billed or counted, and Cloister bills no
/// one; `projection=full` would add ACLs, which Cloister's objects and buckets do not have (IAM
/// decides access), so both projections give the same resource.
const STANDARD: &[&str] = &[
    "alt",
    "fields",
    "prettyPrint",
    "projection",
    "quotaUser",
    "userIp",
    "userProject",
];

/// A storage method's query parameters: `T`'s fields plus the standard ones.
pub struct StorageQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for StorageQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or_default()).map(StorageQuery)
    }
}

/// Checks the standard parameters, then deserializes the method's own into `T`.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let mut own = form_urlencoded::Serializer::new(String::new());
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        // No name, prefix or offset holds a NUL (PostgreSQL's text cannot).
        if value.contains('\0') {
            return Err(ApiError::InvalidArgument(format!(
                "The query parameter {key} contains a NUL character, which no object name holds"
            )));
        }
        if !STANDARD.contains(&key.as_ref()) {
            own.append_pair(&key, &value);
            continue;
        }
        let refuse = |accepted: &str| {
            Err(ApiError::InvalidArgument(format!(
                "Invalid value {value:?} for query parameter {key}: expected {accepted}"
            )))
        };
        match (key.as_ref(), value.as_ref()) {
            // `alt=media` is the download form of objects.get, whose own struct takes it; on
            // any other method it is refused there as a parameter the method does not take.
            ("alt", "media") => {
                own.append_pair(&key, &value);
            }
            ("alt", "json") => {}
            ("alt", _) => return refuse("json (or media, to download an object)"),
            ("prettyPrint", v) if parse_flag(v).is_some() => {}
            ("prettyPrint", _) => return refuse("true or false"),
            ("projection", "noAcl" | "full") => {}
            ("projection", _) => return refuse("noAcl or full"),
            _ => {}
        }
    }
    crate::query::parse(&own.finish()).map_err(|e| match e {
        ApiError::InvalidArgument(m) if m.contains("unknown field") => {
            ApiError::InvalidArgument(format!(
                "{m}. Cloister refuses the storage API's parameters it does not implement rather \
                 than ignore them; the standard parameters {} are accepted everywhere",
                STANDARD.join(", ")
            ))
        }
        other => other,
    })
}

/// For handlers that read repeated parameters themselves (`permissions=…&permissions=…`):
/// refuses any parameter that is neither standard nor one of `accepted`.
pub fn check_names(query: &str, accepted: &[&str]) -> Result<(), ApiError> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nothing {}
    let unknown = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| !accepted.contains(&k.as_ref()))
        .collect::<Vec<_>>();
    let rest = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(unknown)
        .finish();
    parse::<Nothing>(&rest).map(drop)
}

/// A boolean query parameter as clients write it: `true`/`false`, and apitools' (gcloud's)
/// `True`/`False`.
pub fn parse_flag(value: &str) -> Option<bool> {
    match value {
        "true" | "True" => Some(true),
        "false" | "False" => Some(false),
        _ => None,
    }
}

/// serde's `deserialize_with` for boolean query parameters (see [`parse_flag`]).
pub fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    let text = <String as serde::Deserialize>::deserialize(d)?;
    parse_flag(&text).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!("{text:?} is not a boolean: true or false"))
    })
}

/// A boolean query parameter that only one value of makes sense for in Cloister: `false`
/// (Google's default) is accepted, `true` refused with `why`.
pub fn only_false(name: &str, value: Option<bool>, why: &str) -> Result<(), ApiError> {
    if value == Some(true) {
        return Err(ApiError::InvalidArgument(format!(
            "{name}=true is not supported: {why}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_names, parse};

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase", deny_unknown_fields)]
    #[allow(dead_code)]
    struct Q {
        prefix: Option<String>,
        max_results: Option<u32>,
        alt: Option<String>,
        #[serde(default, deserialize_with = "super::flag")]
        versions: Option<bool>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct NoAlt {
        prefix: Option<String>,
    }

    #[test]
    fn standard_parameters_pass_and_others_are_refused_by_name() {
        for query in [
            "prefix=a&fields=items(name)&prettyPrint=false&userProject=p&projection=noAcl",
            "alt=json&quotaUser=u&userIp=1.2.3.4&projection=full",
        ] {
            assert!(parse::<Q>(query).is_ok(), "{query}");
        }
        let q: Q = parse("alt=media").unwrap();
        assert_eq!(q.alt.as_deref(), Some("media"));
        // gcloud (apitools) writes booleans as Python does.
        let q: Q = parse("versions=False&prettyPrint=True").unwrap();
        assert_eq!(q.versions, Some(false));
        assert_eq!(parse::<Q>("versions=true").unwrap().versions, Some(true));
        for (query, named) in [
            ("matchGlob=*.txt", "matchGlob"),
            ("prefix=a&softDeleted=true", "softDeleted"),
            ("prettyPrint=yes", "prettyPrint"),
            ("projection=everything", "projection"),
            ("alt=proto", "alt"),
            ("maxResults=x", "maxResults"),
            ("versions=yes", "versions"),
        ] {
            let e = parse::<Q>(query).unwrap_err().to_string();
            assert!(e.contains(named), "{query}: {e}");
        }
        let e = parse::<NoAlt>("alt=media").unwrap_err().to_string();
        assert!(e.contains("alt"), "{e}");
        assert!(check_names("permissions=a&permissions=b&fields=x", &["permissions"]).is_ok());
        let e = check_names("permissions=a&filter=x", &["permissions"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("filter"), "{e}");
    }
}
