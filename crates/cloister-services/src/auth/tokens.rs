//! Access tokens: HS256 JWTs signed with a key from the data directory, valid one hour.
//!
//! HMAC suits these tokens: only Cloister servers verify them, and every replica that shares
//! the key verifies without shared session state. (Tokens that outside parties verify, such
//! as attestation tokens, are RS256 with a published JWKS.)

use std::collections::BTreeMap;

use cloister_domain::{Email, Principal};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};

use crate::jwt::{self, Malformed};
use crate::time_util;

/// Google's access token lifetime.
pub const ACCESS_TOKEN_LIFETIME_SECS: i64 = 3600;
const AUDIENCE: &str = "cloister-api";
/// Registry tokens (Docker token auth) carry this audience, so they are never API tokens.
const REGISTRY_AUDIENCE: &str = "cloister-registry";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error(
        "the access token expired at {0}; get a fresh one (`cloister auth print-access-token` refreshes it)"
    )]
    Expired(String),
    #[error(
        "the access token's signature does not verify: it was altered, or it was not issued by this Cloister"
    )]
    BadSignature,
    #[error("the token's algorithm {0:?} is not accepted: Cloister access tokens are HS256")]
    Algorithm(String),
    #[error("the access token is malformed: {0}")]
    Malformed(Malformed),
    #[error("the bearer token is not a Cloister access token: {0}")]
    NotOurs(&'static str),
}

/// A verified access token: whom it names, and for a federated principal the provider it was
/// exchanged through (checked on every use, so deleting or disabling it ends its tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    /// The provider's id within the principal's pool (federated principals only).
    pub provider: Option<String>,
    /// Registry tokens only: the granted scopes.
    pub scopes: Vec<String>,
}

impl Verified {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER` for a
    /// federated principal.
    pub fn provider_name(&self) -> Option<String> {
        match (&self.principal, &self.provider) {
            (
                Principal::Federated {
                    pool_project_number,
                    pool_id,
                    ..
                },
                Some(provider),
            ) => Some(format!(
                "projects/{pool_project_number}/locations/global/workloadIdentityPools/{pool_id}/providers/{provider}"
            )),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    /// The principal as a member string: `user:…`, `serviceAccount:…`, `principal://…`.
    sub: String,
    iat: i64,
    exp: i64,
    /// For a federated principal (from STS): its pool and mapped attributes, so that
    /// `principalSet://…/attribute.NAME/VALUE` bindings can match without a lookup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    fed: Option<Federated>,
    /// Registry tokens only: the granted scopes (`repository:NAME:pull,push`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    access: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Federated {
    project_number: u64,
    pool: String,
    /// The provider (id within the pool) that exchanged the subject token.
    #[serde(default)]
    provider: String,
    subject: String,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    #[serde(default)]
    groups: Vec<String>,
}

pub struct AccessTokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    issuer: String,
}

impl AccessTokens {
    pub fn new(key: &[u8], issuer: &str) -> Self {
        Self {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            issuer: issuer.to_owned(),
        }
    }

    /// Issues a token for `principal`, valid from `iat` for `lifetime` seconds. Returns it with
    /// its expiry.
    pub fn issue_with(&self, principal: &Principal, iat: i64, lifetime: i64) -> (String, i64) {
        self.sign(principal, None, AUDIENCE, iat, lifetime, Vec::new())
    }

    /// A federated token for `principal`, exchanged through `provider` (its id in the pool).
    pub fn issue_federated(&self, principal: &Principal, provider: &str) -> (String, i64) {
        let now = time_util::now_unix();
        let lifetime = ACCESS_TOKEN_LIFETIME_SECS;
        self.sign(
            principal,
            Some(provider),
            AUDIENCE,
            now,
            lifetime,
            Vec::new(),
        )
    }

    /// A registry token: `principal` (exchanged through `provider`, if federated) limited to
    /// the `access` scopes it was granted.
    pub fn issue_registry(
        &self,
        principal: &Principal,
        provider: Option<&str>,
        access: Vec<String>,
    ) -> (String, i64) {
        let now = time_util::now_unix();
        let lifetime = ACCESS_TOKEN_LIFETIME_SECS;
        self.sign(
            principal,
            provider,
            REGISTRY_AUDIENCE,
            now,
            lifetime,
            access,
        )
    }

    fn sign(
        &self,
        principal: &Principal,
        provider: Option<&str>,
        aud: &str,
        iat: i64,
        lifetime: i64,
        access: Vec<String>,
    ) -> (String, i64) {
        let exp = iat + lifetime;
        let fed = match principal {
            Principal::Federated {
                pool_project_number,
                pool_id,
                subject,
                attributes,
                groups,
            } => Some(Federated {
                project_number: *pool_project_number,
                pool: pool_id.clone(),
                provider: provider.unwrap_or_default().to_owned(),
                subject: subject.clone(),
                attributes: attributes.clone(),
                groups: groups.clone(),
            }),
            _ => None,
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: aud.into(),
            sub: principal.to_string(),
            iat,
            exp,
            fed,
            access,
        };
        // Encoding HS256 over serializable claims cannot fail.
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default();
        (token, exp)
    }

    /// Issues a one-hour token valid from `iat`.
    pub fn issue_at(&self, principal: &Principal, iat: i64) -> (String, i64) {
        self.issue_with(principal, iat, ACCESS_TOKEN_LIFETIME_SECS)
    }

    pub fn issue(&self, principal: &Principal) -> (String, i64) {
        self.issue_at(principal, time_util::now_unix())
    }

    /// Verifies signature, algorithm, issuer, audience and expiry (no leeway: a token is valid
    /// for exactly its hour); returns whom it names.
    pub fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        self.decode(token, AUDIENCE)
    }

    /// Verifies a registry token; its scopes are in the result.
    pub fn verify_registry(&self, token: &str) -> Result<Verified, TokenError> {
        self.decode(token, REGISTRY_AUDIENCE)
    }

    fn decode(&self, token: &str, aud: &str) -> Result<Verified, TokenError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[aud]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|e| refusal(token, &e))?;
        verified(data.claims)
    }
}

/// Why an access token is refused, in plain words (the library's details go to the log).
fn refusal(token: &str, e: &jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::ExpiredSignature => {
            let exp = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
                .map(|d| time_util::unix_to_rfc3339(d.claims.exp))
                .unwrap_or_else(|_| "an earlier time".into());
            TokenError::Expired(exp)
        }
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidIssuer => TokenError::NotOurs("it was issued by another server"),
        ErrorKind::InvalidAudience => TokenError::NotOurs("it is not meant for this API"),
        ErrorKind::InvalidAlgorithm => {
            TokenError::Algorithm(jwt::header_alg(token).unwrap_or_else(|| "unknown".into()))
        }
        ErrorKind::MissingRequiredClaim(_) => TokenError::NotOurs("it lacks claims ours carry"),
        _ => match jwt::malformed(token, e) {
            Some(Malformed::Algorithm(alg)) => TokenError::Algorithm(alg),
            Some(m) => TokenError::Malformed(m),
            None => {
                tracing::info!(error = ?e, "an access token does not decode");
                TokenError::Malformed(Malformed::Other)
            }
        },
    }
}

fn verified(claims: Claims) -> Result<Verified, TokenError> {
    let scopes = claims.access.clone();
    let provider = claims.fed.as_ref().map(|f| f.provider.clone());
    if provider.as_deref() == Some("") {
        // Issued before tokens named their provider: its provider cannot be checked.
        return Err(TokenError::NotOurs(
            "it is a federated token without its provider; exchange the subject token again",
        ));
    }
    let principal = principal_from_claims(claims)
        .ok_or(TokenError::NotOurs("it names an unknown kind of principal"))?;
    Ok(Verified {
        principal,
        provider,
        scopes,
    })
}

fn principal_from_claims(claims: Claims) -> Option<Principal> {
    if let Some(fed) = claims.fed {
        let principal = Principal::Federated {
            pool_project_number: fed.project_number,
            pool_id: fed.pool,
            subject: fed.subject,
            attributes: fed.attributes,
            groups: fed.groups,
        };
        // The subject names the same identity the federation claims describe.
        return (principal.to_string() == claims.sub).then_some(principal);
    }
    let sub = claims.sub;
    if let Some(email) = sub.strip_prefix("user:") {
        return Email::parse(email).ok().map(Principal::User);
    }
    if let Some(email) = sub.strip_prefix("serviceAccount:") {
        return Email::parse(email).ok().map(Principal::ServiceAccount);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Principal {
        Principal::User(Email::parse("alice@example.com").unwrap())
    }

    #[test]
    fn a_fresh_token_verifies_as_its_principal() {
        let t = AccessTokens::new(&[1; 32], "http://cloister.test");
        let (token, exp) = t.issue(&alice());
        assert_eq!(exp - time_util::now_unix(), ACCESS_TOKEN_LIFETIME_SECS);
        assert_eq!(t.verify(&token).unwrap().principal, alice());
        // Another replica sharing the key verifies it too.
        let replica = AccessTokens::new(&[1; 32], "http://cloister.test");
        assert_eq!(replica.verify(&token).unwrap().principal, alice());
    }

    #[test]
    fn federated_principals_round_trip_with_their_attributes() {
        let t = AccessTokens::new(&[1; 32], "http://cloister.test");
        let p = Principal::Federated {
            pool_project_number: 123456789012,
            pool_id: "primus-pool".into(),
            subject: "https://www.googleapis.com/compute/v1/projects/p/zones/z/instances/i".into(),
            attributes: BTreeMap::from([("image_digest".into(), "sha256:1".into())]),
            groups: vec![],
        };
        let (token, _) = t.issue_federated(&p, "verifier");
        let verified = t.verify(&token).unwrap();
        assert_eq!(verified.principal, p);
        assert_eq!(
            verified.provider_name().as_deref(),
            Some(
                "projects/123456789012/locations/global/workloadIdentityPools/primus-pool/providers/verifier"
            )
        );
        // A federated token that does not name its provider cannot be checked: refused.
        let (old, _) = t.issue(&p);
        assert!(matches!(t.verify(&old), Err(TokenError::NotOurs(_))));
    }

    #[test]
    fn registry_tokens_and_api_tokens_are_not_interchangeable() {
        let t = AccessTokens::new(&[1; 32], "http://cloister.test");
        let scope = vec!["repository:p/r/i:pull".to_owned()];
        let (registry, _) = t.issue_registry(&alice(), None, scope.clone());
        let verified = t.verify_registry(&registry).unwrap();
        assert_eq!((verified.principal, verified.scopes), (alice(), scope));
        assert!(matches!(t.verify(&registry), Err(TokenError::NotOurs(_))));
        let (api, _) = t.issue(&alice());
        assert!(t.verify_registry(&api).is_err());
    }

    #[test]
    fn expired_tampered_foreign_and_garbage_tokens_are_refused() {
        let t = AccessTokens::new(&[1; 32], "http://cloister.test");
        let (old, _) = t.issue_at(
            &alice(),
            time_util::now_unix() - ACCESS_TOKEN_LIFETIME_SECS - 1,
        );
        assert!(matches!(t.verify(&old), Err(TokenError::Expired(_))));

        let (token, _) = t.issue(&alice());
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let forged = jsonwebtoken::dangerous::insecure_decode::<Claims>(&token)
            .unwrap()
            .claims;
        let forged = Claims {
            sub: "user:mallory@example.com".into(),
            ..forged
        };
        use base64::Engine;
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(t.verify(&parts.join(".")), Err(TokenError::BadSignature));

        let other_key = AccessTokens::new(&[2; 32], "http://cloister.test");
        assert_eq!(other_key.verify(&token), Err(TokenError::BadSignature));
        assert_eq!(
            t.verify("not-a-jwt"),
            Err(TokenError::Malformed(Malformed::NotThreeParts))
        );

        // alg=none with the same claims is refused.
        let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"alg":"none","typ":"JWT"}"#);
        let none = format!("{header}.{}.", token.split('.').nth(1).unwrap());
        assert_eq!(t.verify(&none), Err(TokenError::Algorithm("none".into())));
    }
}
