//! A query-string extractor whose refusals are Google-shaped errors naming the parameter
//! (400 INVALID_ARGUMENT), instead of axum's plain-text rejections.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parse(parts.uri.query().unwrap_or_default()).map(ApiQuery)
    }
}

/// Parses a query string into `T`; a refusal names the parameter and what was wrong with it.
pub fn parse<T: DeserializeOwned>(query: &str) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.as_bytes());
    serde_path_to_error::deserialize(serde_urlencoded::Deserializer::new(pairs)).map_err(|e| {
        let parameter = e.path().to_string();
        ApiError::InvalidArgument(if parameter == "." {
            format!("Invalid query string: {}", e.inner())
        } else {
            format!(
                "Invalid value for query parameter {parameter}: {}",
                e.inner()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[derive(Debug, serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    #[allow(dead_code)]
    struct Q {
        if_generation_match: Option<i64>,
        max_results: Option<u32>,
    }

    #[test]
    fn a_refusal_names_the_parameter() {
        for (query, parameter) in [
            ("ifGenerationMatch=abc", "ifGenerationMatch"),
            (
                "ifGenerationMatch=99999999999999999999",
                "ifGenerationMatch",
            ),
            ("maxResults=-1", "maxResults"),
        ] {
            let e = parse::<Q>(query).unwrap_err().to_string();
            assert!(e.contains(parameter), "{query}: {e}");
        }
        assert!(parse::<Q>("ifGenerationMatch=0&maxResults=5").is_ok());
    }
}
