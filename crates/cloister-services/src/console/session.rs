//! Signing in to the console: a one-time code the CLI obtains with its credentials
//! (`cloister auth console-login`) becomes a session cookie; every page resolves the cookie to
//! the same user principal the API's bearer tokens name, and every state-changing form is
//! checked twice against cross-site requests: its `Origin` must be this server's, and it must
//! carry the session's CSRF token.

use axum::extract::FromRequestParts;
use axum::http::header::{COOKIE, ORIGIN};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cloister_domain::{Email, Principal};
use cloister_store::ConsoleSession;
use cookie::{Cookie, SameSite};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};

use super::pages::PageError;
use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const COOKIE_NAME: &str = "cloister_session";
/// A login code is good for this long, once.
pub const CODE_LIFETIME: Duration = Duration::minutes(5);
/// A session ends this long after sign-in, whatever its use (sign in again after): an
/// access token's life, so a stolen token cannot buy a longer stay through the console.
pub const SESSION_LIFETIME: Duration = Duration::hours(1);

/// 256 random bits, base64url: login codes, session ids and CSRF tokens.
pub fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// What the database keeps of a secret.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A signed-in user, from the session cookie. Pages that need one take this extractor; a
/// browser without a live session is sent to the sign-in page.
pub struct Session {
    pub principal: Principal,
    pub record: ConsoleSession,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let Some(id) = cookie_value(&parts.headers) else {
            return Err(PageError::SignIn);
        };
        let now = OffsetDateTime::now_utc();
        let Some(record) = state
            .store
            .get_console_session(&secret_hash(&id), now)
            .await
            .map_err(ApiError::from)?
        else {
            return Err(PageError::SignIn);
        };
        // A user deleted since sign-in loses the console at once, as a token would lose the
        // API.
        let email = Email::parse(&record.email).map_err(|_| PageError::SignIn)?;
        let exists = state
            .store
            .get_user(&email)
            .await
            .map_err(ApiError::from)?
            .is_some();
        if !exists {
            return Err(PageError::SignIn);
        }
        Ok(Session {
            principal: Principal::User(email),
            record,
        })
    }
}

fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE_NAME)
        .map(|c| c.value().to_owned())
}

/// The `Set-Cookie` of a new session (`value`), or of its removal (`None`): HttpOnly,
/// SameSite=Strict, Secure when the server's public URL is https, scoped to `/console`.
pub fn set_cookie(state: &AppState, value: Option<&str>) -> HeaderValue {
    let mut c = Cookie::build((COOKIE_NAME, value.unwrap_or("").to_owned()))
        .path("/console")
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(state.public_url.starts_with("https://"));
    c = match value {
        Some(_) => c.max_age(cookie::time::Duration::seconds(
            SESSION_LIFETIME.whole_seconds(),
        )),
        None => c.max_age(cookie::time::Duration::ZERO),
    };
    // The cookie's parts are base64url and fixed words: always a valid header value.
    HeaderValue::from_str(&c.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// A state-changing request must come from this server's own pages: browsers send `Origin`
/// on every POST, and another site's page cannot make it this server's.
pub fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), PageError> {
    let own = origin_of(&state.public_url);
    match headers.get(ORIGIN).and_then(|o| o.to_str().ok()) {
        Some(origin) if origin == own => Ok(()),
        Some(origin) => Err(PageError::Forbidden(format!(
            "This form was sent from {origin}, not from this console ({own}); nothing was changed."
        ))),
        None => Err(PageError::Forbidden(
            "This request has no Origin header, so it cannot be told apart from a cross-site one; nothing was changed. Use the console's own pages."
                .into(),
        )),
    }
}

/// The session's CSRF token must come back with the form.
pub fn check_csrf(session: &Session, sent: &str) -> Result<(), PageError> {
    let expected = session.record.csrf_token.as_bytes();
    if bool::from(expected.ct_eq(sent.as_bytes())) {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "This form's CSRF token is missing or not this session's; nothing was changed. Reload the page and try again."
                .into(),
        ))
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    let host = rest.split('/').next().unwrap_or_default();
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_and_authority() {
        for (url, origin) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
            (
                "https://cloister.example.com/",
                "https://cloister.example.com",
            ),
            ("https://h/prefix/path", "https://h"),
        ] {
            assert_eq!(origin_of(url), origin, "{url}");
        }
    }
}
