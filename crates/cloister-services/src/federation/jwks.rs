//! Issuer keys for subject token verification: inline JWKS from the provider, or the issuer's
//! published JWKS found through OIDC discovery, cached with an expiry and refetched when a
//! token names a key id the cache does not have (key rotation).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{Jwk, JwkSet};
use serde::Deserialize;

use super::fetch::{FetchError, FetchPolicy};

/// How long fetched keys are trusted without asking the issuer again.
const CACHE_FOR: Duration = Duration::from_secs(300);
/// The least time between two fetches for one issuer, so tokens with random key ids cannot
/// make Cloister hammer an issuer.
const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// The most issuers whose keys (or last failure) are kept; past it the oldest entry goes.
/// Any user's provider names an issuer, and each write probes it.
const MAX_ISSUERS: usize = 1024;

#[derive(Debug, Clone, thiserror::Error)]
pub enum JwksError {
    #[error("the token names key id {kid:?}, which the issuer {issuer} does not publish")]
    UnknownKid { issuer: String, kid: String },
    #[error("the token has no key id (kid) and the issuer {issuer} publishes {count} keys")]
    NoKid { issuer: String, count: usize },
    #[error("could not fetch the keys of issuer {issuer}: {source}")]
    Fetch {
        issuer: String,
        #[source]
        source: FetchError,
    },
    /// The issuer answered, but not with what OIDC discovery promises (what it sent is not
    /// repeated: it could be any internal page).
    #[error("could not fetch the keys of issuer {issuer}: {url} is not {expected}")]
    NotKeys {
        issuer: String,
        url: String,
        expected: &'static str,
    },
}

struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

pub struct JwksCache {
    policy: FetchPolicy,
    issuers: Mutex<HashMap<String, Cached>>,
    /// The last failed fetch per issuer, answered again until `refetch_after` has passed, so
    /// anonymous exchanges cannot turn Cloister into a stream of requests at a host.
    failures: Mutex<HashMap<String, (JwksError, Instant)>>,
    refetch_after: Duration,
}

impl JwksCache {
    pub fn new(policy: FetchPolicy) -> Self {
        Self {
            policy,
            issuers: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            refetch_after: REFETCH_AFTER,
        }
    }
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

/// The most of a token's key id an error repeats: the token's author chooses it.
const MAX_KID_SHOWN: usize = 64;

/// The key for `kid` in `set`; without a kid, the set's only key.
pub fn select(set: &JwkSet, issuer: &str, kid: Option<&str>) -> Result<Jwk, JwksError> {
    match kid {
        Some(kid) => set.find(kid).cloned().ok_or_else(|| JwksError::UnknownKid {
            issuer: issuer.into(),
            kid: kid.chars().take(MAX_KID_SHOWN).collect(),
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
            let issuers = lock(&self.issuers);
            issuers
                .get(issuer)
                .map(|c| (select(&c.keys, issuer, kid), c.fetched.elapsed()))
        };
        match cached {
            Some((Ok(key), age)) if age < CACHE_FOR => return Ok(key),
            Some((Err(e), age)) if age < self.refetch_after => return Err(e),
            _ => {}
        }
        let failed = lock(&self.failures).get(issuer).cloned();
        if let Some((e, at)) = failed
            && at.elapsed() < self.refetch_after
        {
            return Err(e);
        }
        let keys = self.refresh(issuer).await?;
        select(&keys, issuer, kid)
    }

    /// Fetches the issuer's keys now: whether Cloister can reach them (for a warning when a
    /// provider is written).
    pub async fn probe(&self, issuer: &str) -> Result<(), JwksError> {
        self.refresh(issuer).await.map(|_| ())
    }

    /// Fetches and caches the issuer's keys, or records the failure.
    async fn refresh(&self, issuer: &str) -> Result<JwkSet, JwksError> {
        match self.fetch(issuer).await {
            Ok(keys) => {
                lock(&self.failures).remove(issuer);
                let cached = Cached {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                };
                insert_bounded(&mut lock(&self.issuers), issuer, cached, |c| c.fetched);
                Ok(keys)
            }
            Err(e) => {
                let failure = (e.clone(), Instant::now());
                insert_bounded(&mut lock(&self.failures), issuer, failure, |f| f.1);
                Err(e)
            }
        }
    }

    /// Discovery, then the `jwks_uri` it names; both under the fetch policy (the JWKS URL is
    /// the issuer's to choose, so it gets the same rules as the issuer itself).
    async fn fetch(&self, issuer: &str) -> Result<JwkSet, JwksError> {
        let fetch_failed = |source| JwksError::Fetch {
            issuer: issuer.to_owned(),
            source,
        };
        let not_keys = |url: &str, expected| {
            tracing::info!(%issuer, %url, expected, "issuer document does not parse");
            JwksError::NotKeys {
                issuer: issuer.to_owned(),
                url: url.to_owned(),
                expected,
            }
        };
        let discovery_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let body = self
            .policy
            .get(&discovery_url)
            .await
            .map_err(fetch_failed)?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|_| not_keys(&discovery_url, "an OIDC discovery document with a jwks_uri"))?;
        let body = self
            .policy
            .get(&discovery.jwks_uri)
            .await
            .map_err(fetch_failed)?;
        serde_json::from_slice(&body).map_err(|_| not_keys(&discovery.jwks_uri, "a JWK set"))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Inserts into a cache of at most [`MAX_ISSUERS`], first removing the entry `at` says is
/// oldest when a new issuer would pass it (a scan: the cache is small and writes are rare).
fn insert_bounded<V>(
    cache: &mut HashMap<String, V>,
    issuer: &str,
    value: V,
    at: impl Fn(&V) -> Instant,
) {
    if !cache.contains_key(issuer)
        && cache.len() >= MAX_ISSUERS
        && let Some(oldest) = cache
            .iter()
            .min_by_key(|(_, v)| at(v))
            .map(|(k, _)| k.clone())
    {
        cache.remove(&oldest);
    }
    cache.insert(issuer.to_owned(), value);
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Json;
    use axum::extract::State;
    use axum::routing::get;
    use serde_json::{Value, json};

    use super::*;

    fn key(kid: &str) -> Value {
        json!({"kty": "RSA", "kid": kid, "alg": "RS256", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB"})
    }

    type Published = (Arc<Mutex<Vec<Value>>>, Arc<AtomicUsize>);

    #[test]
    fn the_cache_keeps_at_most_its_bound_losing_the_oldest() {
        let start = Instant::now();
        let mut cache = HashMap::new();
        for i in 0..MAX_ISSUERS + 10 {
            let at = start + Duration::from_millis(i as u64);
            insert_bounded(&mut cache, &format!("https://i{i}.test"), at, |t| *t);
        }
        assert_eq!(cache.len(), MAX_ISSUERS);
        assert!(!cache.contains_key("https://i9.test"), "the oldest went");
        assert!(cache.contains_key("https://i10.test"));
        // An issuer already cached is replaced, not added beside the bound.
        insert_bounded(&mut cache, "https://i10.test", start, |t| *t);
        assert_eq!(cache.len(), MAX_ISSUERS);
    }

    #[test]
    fn an_unknown_key_id_is_repeated_only_in_part() {
        let set = JwkSet { keys: Vec::new() };
        let e = select(&set, "https://i.test", Some(&"k".repeat(12_000))).unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
    }

    /// A cache whose fetches may reach loopback issuers (as an admin's allow-list permits).
    fn local_cache() -> JwksCache {
        let allow = vec!["127.0.0.1".parse().unwrap()];
        JwksCache::new(FetchPolicy::new("http://cloister.test", allow))
    }

    /// A local OIDC issuer whose published keys can change; counts the JWKS fetches.
    async fn issuer(keys: Arc<Mutex<Vec<Value>>>, fetches: Arc<AtomicUsize>) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let discovery = json!({"issuer": base, "jwks_uri": format!("{base}/keys")});
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { Json(discovery) }),
            )
            .route(
                "/keys",
                get(|State((keys, fetches)): State<Published>| async move {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let keys = keys.lock().unwrap().clone();
                    Json(json!({ "keys": keys }))
                }),
            )
            .with_state((keys, fetches));
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        base
    }

    #[tokio::test]
    async fn keys_are_found_through_discovery_cached_and_refetched_on_an_unknown_kid() {
        let keys = Arc::new(Mutex::new(vec![key("k1")]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let base = issuer(Arc::clone(&keys), Arc::clone(&fetches)).await;
        let cache = JwksCache {
            refetch_after: Duration::ZERO,
            ..local_cache()
        };
        assert_eq!(
            cache
                .key(&base, Some("k1"))
                .await
                .unwrap()
                .common
                .key_id
                .as_deref(),
            Some("k1")
        );
        cache.key(&base, Some("k1")).await.unwrap();
        assert_eq!(
            fetches.load(Ordering::SeqCst),
            1,
            "a fresh cache is not refetched"
        );
        // The issuer rotates in k2: a token naming k2 makes the cache fetch again.
        keys.lock().unwrap().push(key("k2"));
        assert!(cache.key(&base, Some("k2")).await.is_ok());
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        let err = cache.key(&base, Some("k9")).await.unwrap_err().to_string();
        assert!(err.contains("\"k9\""), "{err}");
    }

    #[tokio::test]
    async fn unknown_kids_do_not_make_cloister_hammer_the_issuer() {
        let keys = Arc::new(Mutex::new(vec![key("k1")]));
        let fetches = Arc::new(AtomicUsize::new(0));
        let base = issuer(keys, Arc::clone(&fetches)).await;
        let cache = local_cache();
        cache.key(&base, Some("k1")).await.unwrap();
        for _ in 0..5 {
            assert!(matches!(
                cache.key(&base, Some("nope")).await,
                Err(JwksError::UnknownKid { .. })
            ));
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_a_clear_error() {
        let cache = local_cache();
        let err = cache
            .key("http://127.0.0.1:9", Some("k"))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("could not fetch the keys of issuer http://127.0.0.1:9"),
            "{err}"
        );
    }
}
