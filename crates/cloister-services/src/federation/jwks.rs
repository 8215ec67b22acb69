//! Issuer keys for subject token verification: inline JWKS from the provider, or the issuer's
//! published JWKS found through OIDC discovery, cached with an expiry and refetched when a
//! token names a key id the cache does not have (key rotation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;

/// How long fetched keys are trusted without asking the issuer again.
const CACHE_FOR: Duration = Duration::from_secs(300);
/// The least time between two fetches for one issuer, so tokens with random key ids cannot
/// make Cloister hammer an issuer.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("the token names key id {kid:?}, which the issuer {issuer} does not publish")]
    UnknownKid { issuer: String, kid: String },
    #[error("the token has no key id (kid) and the issuer {issuer} publishes {count} keys")]
    NoKid { issuer: String, count: usize },
    #[error("could not fetch the keys of issuer {issuer}: {detail}")]
    Fetch { issuer: String, detail: String },
}

struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

pub struct JwksCache {
    http: reqwest::Client,
    issuers: Mutex<HashMap<String, Cached>>,
}

impl Default for JwksCache {
    fn default() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .unwrap_or_default();
        Self {
            http,
            issuers: Mutex::new(HashMap::new()),
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The key for `kid` in `set`; without a kid, the set's only key.
pub fn select(set: &JwkSet, issuer: &str, kid: Option<&str>) -> Result<Jwk, JwksError> {
    match kid {
        Some(kid) => set.find(kid).cloned().ok_or_else(|| JwksError::UnknownKid {
            issuer: issuer.into(),
            kid: kid.into(),
        }),
        None if set.keys.len() == 1 => Ok(set.keys[0].clone()),
        None => Err(JwksError::NoKid {
            issuer: issuer.into(),
            count: set.keys.len(),
        }),
    }
}

impl JwksCache {
    /// The issuer's key for `kid`, from the cache while fresh, else fetched.
    pub async fn key(&self, issuer: &str, kid: Option<&str>) -> Result<Jwk, JwksError> {
        let cached = {
            let issuers = self.lock();
            issuers
                .get(issuer)
                .map(|c| (select(&c.keys, issuer, kid), c.fetched.elapsed()))
        };
        match cached {
            Some((Ok(key), age)) if age < CACHE_FOR => return Ok(key),
            Some((Err(e), age)) if age < REFETCH_AFTER => return Err(e),
            _ => {}
        }
        let keys = self.fetch(issuer).await?;
        let found = select(&keys, issuer, kid);
        self.lock().insert(
            issuer.to_owned(),
            Cached {
                keys,
                fetched: Instant::now(),
            },
        );
        found
    }

    async fn fetch(&self, issuer: &str) -> Result<JwkSet, JwksError> {
        let fail = |detail: String| JwksError::Fetch {
            issuer: issuer.to_owned(),
            detail,
        };
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let discovery: Discovery = serde_json::from_slice(
            &self.get(&discovery_url).await.map_err(fail)?,
        )
        .map_err(|e| {
            fail(format!(
                "{discovery_url} is not an OIDC discovery document: {e}"
            ))
        })?;
        let body = self.get(&discovery.jwks_uri).await.map_err(fail)?;
        serde_json::from_slice(&body)
            .map_err(|e| fail(format!("{} is not a JWK set: {e}", discovery.jwks_uri)))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("GET {url} answered {}", resp.status()));
        }
        let body = resp.bytes().await.map_err(|e| format!("GET {url}: {e}"))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(format!(
                "GET {url}: the document is larger than {MAX_DOCUMENT_BYTES} bytes"
            ));
        }
        Ok(body.to_vec())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.issuers.lock().unwrap_or_else(|p| p.into_inner())
    }
}
