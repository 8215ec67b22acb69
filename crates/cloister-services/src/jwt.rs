//! JWTs as requests carry them: surrounding whitespace trimmed (a token read from a file ends
//! in a newline; Google trims it too), and why one is refused in plain words — never the
//! JWT library's Debug text (`Base64(InvalidLastSymbol(2, 116))`, `unknown variant none`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::{Error, ErrorKind};
use serde_json::Value;

/// Algorithm names the JWT library knows; any other name in a header is refused by name.
const KNOWN_ALGORITHMS: [&str; 12] = [
    "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
    "ES384", "EdDSA",
];

/// `token` without surrounding ASCII whitespace.
pub fn trim(token: &str) -> &str {
    token.trim_matches(|c: char| c.is_ascii_whitespace())
}

/// The algorithm `token`'s header names, if its header reads at all.
pub fn header_alg(token: &str) -> Option<String> {
    let header = json_part(token.split('.').next()?, "header").ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// What is wrong with a token that does not even parse as a JWT.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("it is not a JWT: a JWT is three base64url parts separated by dots")]
    NotThreeParts,
    #[error("its {0} is not base64url")]
    NotBase64(&'static str),
    #[error("its {0} is not a JSON object")]
    NotJson(&'static str),
    #[error("its header names no algorithm (alg)")]
    NoAlgorithm,
    #[error("its algorithm {0:?} is not accepted")]
    Algorithm(String),
    #[error("its {0} claim has the wrong type")]
    ClaimType(String),
    #[error("it is not a well-formed JWT")]
    Other,
}

fn json_part(part: &str, name: &'static str) -> Result<Value, Malformed> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| Malformed::NotBase64(name))?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or(Malformed::NotJson(name))
}

/// The first thing wrong with `token`'s shape, found by reading it (not by interpreting the
/// library's error, whose variants say little: an unknown `alg` is a JSON error there).
pub fn shape(token: &str) -> Result<(), Malformed> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return Err(Malformed::NotThreeParts);
    };
    let header = json_part(header, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        None => return Err(Malformed::NoAlgorithm),
        Some(alg) if !KNOWN_ALGORITHMS.contains(&alg) => {
            return Err(Malformed::Algorithm(alg.to_owned()));
        }
        Some(_) => {}
    }
    json_part(claims, "claims part")?;
    URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| Malformed::NotBase64("signature"))?;
    Ok(())
}

/// Why decoding `token` failed with `e`, in plain words, for errors that are about the token
/// itself; `None` for the rest (signature, time and audience checks, keys), which callers
/// word in their own terms.
pub fn malformed(token: &str, e: &Error) -> Option<Malformed> {
    match e.kind() {
        ErrorKind::InvalidToken
        | ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidAlgorithmName => Some(shape(token).err().unwrap_or(Malformed::Other)),
        ErrorKind::InvalidClaimFormat(claim) => Some(Malformed::ClaimType(claim.clone())),
        _ => None,
    }
}

/// Plain words for any decoding failure of `token` (for callers without special wording).
pub fn reason(token: &str, e: &Error) -> String {
    if let Some(m) = malformed(token, e) {
        return m.to_string();
    }
    match e.kind() {
        ErrorKind::InvalidSignature => "its signature does not verify".into(),
        ErrorKind::ExpiredSignature => "it has expired".into(),
        ErrorKind::ImmatureSignature => "it is not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "its issuer (iss) is not the expected one".into(),
        ErrorKind::InvalidAudience => "its audience (aud) is not the expected one".into(),
        ErrorKind::InvalidSubject => "its subject (sub) is not the expected one".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("it has no {c} claim"),
        ErrorKind::InvalidAlgorithm => "its algorithm does not match the key".into(),
        _ => {
            tracing::info!(error = ?e, "a JWT could not be verified");
            "it cannot be verified".into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn shapes_are_named_in_plain_words() {
        let header = b64(r#"{"alg":"RS256"}"#);
        let claims = b64(r#"{"sub":"x"}"#);
        let cases = [
            ("garbage".to_owned(), Err(Malformed::NotThreeParts)),
            ("a.b.c.d".to_owned(), Err(Malformed::NotThreeParts)),
            (
                format!("{header}t.{claims}.sig"),
                Err(Malformed::NotBase64("header")),
            ),
            (
                format!("{}.{claims}.sig", b64("[1]")),
                Err(Malformed::NotJson("header")),
            ),
            (
                format!("{}.{claims}.", b64(r#"{"alg":"none"}"#)),
                Err(Malformed::Algorithm("none".into())),
            ),
            (
                format!("{}.{claims}.", b64(r#"{"typ":"JWT"}"#)),
                Err(Malformed::NoAlgorithm),
            ),
            (
                format!("{header}.{}.sig", b64("not json")),
                Err(Malformed::NotJson("claims part")),
            ),
            (
                format!("{header}.{claims}.s*g"),
                Err(Malformed::NotBase64("signature")),
            ),
            (format!("{header}.{claims}.sig"), Ok(())),
        ];
        for (token, want) in cases {
            assert_eq!(shape(&token), want, "{token}");
        }
    }

    #[test]
    fn only_ascii_whitespace_around_a_token_is_trimmed() {
        assert_eq!(trim(" \t a.b.c\r\n"), "a.b.c");
        assert_eq!(trim("a.b.c\u{a0}"), "a.b.c\u{a0}");
    }
}
