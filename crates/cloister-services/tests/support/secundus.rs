//! A Secundus world for verifier tests: a project with the instance service account
//! (holding roles/confidentialcomputing.workloadUser) and a second account without it.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventLog, EventType, HashAlg};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

use super::Api;

pub const WORKLOAD_SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";
pub const OTHER_SA: &str = "other-sa@secundus-bank.iam.gserviceaccount.com";
pub const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
pub const REFERENCE: &str = "cloister.test/primus-bank/primus-workloads/workload-container:latest";

pub fn event_log(extra_after_separator: bool) -> String {
    let banks = [HashAlg::Sha256];
    let mut log = EventLog::default();
    for e in [
        Event::new(EventType::ImageRef, REFERENCE),
        Event::new(EventType::ImageDigest, DIGEST),
        Event::new(EventType::RestartPolicy, "Never"),
        Event::new(EventType::ImageId, "sha256:1111"),
        Event::new(EventType::Arg, "/workload"),
        Event::new(EventType::EnvVar, "GCE_METADATA_HOST=127.0.0.1:8081"),
        Event::new(EventType::LaunchSeparator, Vec::new()),
    ] {
        log.append(COS_EVENT_PCR, &banks, &e);
    }
    if extra_after_separator {
        log.append(
            COS_EVENT_PCR,
            &banks,
            &Event::new(EventType::EnvVar, "SNEAKY=1"),
        );
    }
    STANDARD.encode(log.encode())
}

pub struct Secundus {
    pub api: Api,
    pub owner: String,
    /// The instance service account's access token and ID token.
    pub sa_token: String,
    pub sa_id_token: String,
}

impl Secundus {
    pub async fn setup() -> Secundus {
        Self::setup_at(None).await
    }

    /// Secundus's world on a server judging hardware evidence as of `evidence_time`.
    pub async fn setup_at(evidence_time: Option<time::OffsetDateTime>) -> Secundus {
        Self::setup_on(Api::start_with(|c| c.hardware_evidence_time = evidence_time).await).await
    }

    /// Secundus's project, accounts and grants on `api`.
    pub async fn setup_on(api: Api) -> Secundus {
        let owner = api.user("secundus@example.com").await;
        let (s, b) = api
            .call(
                &owner,
                "POST",
                "/v1/projects",
                Some(json!({"projectId": "secundus-bank"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for id in ["workload-sa", "other-sa"] {
            let (s, b) = api
                .call(
                    &owner,
                    "POST",
                    "/v1/projects/secundus-bank/serviceAccounts",
                    Some(json!({"accountId": id})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let (_, mut policy) = api
            .call(
                &owner,
                "POST",
                "/v1/projects/secundus-bank:getIamPolicy",
                None,
            )
            .await;
        policy["bindings"].as_array_mut().unwrap().push(json!({
            "role": "roles/confidentialcomputing.workloadUser",
            "members": [format!("serviceAccount:{WORKLOAD_SA}")]
        }));
        let (s, b) = api
            .call(
                &owner,
                "POST",
                "/v1/projects/secundus-bank:setIamPolicy",
                Some(json!({"policy": policy})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (sa_token, sa_id_token) = tokens(&api, &owner, WORKLOAD_SA).await;
        Secundus {
            api,
            owner,
            sa_token,
            sa_id_token,
        }
    }

    pub async fn challenge(&self) -> (String, String) {
        let (s, b) = self
            .api
            .call(
                &self.sa_token,
                "POST",
                "/v1/projects/secundus-bank/locations/us-west1/challenges",
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(
            STANDARD
                .decode(b["tpmNonce"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        (
            b["name"].as_str().unwrap().to_owned(),
            b["tpmNonce"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn verify(&self, caller: &str, challenge: &str, body: Value) -> (StatusCode, Value) {
        self.api
            .call(
                caller,
                "POST",
                &format!("/v1/{challenge}:verifyAttestation"),
                Some(body),
            )
            .await
    }

    pub fn request(&self, log: String, nonces: &[&str]) -> Value {
        json!({
            "gcpCredentials": {"serviceAccountIdTokens": [self.sa_id_token]},
            "insecureAttestation": {"canonicalEventLog": log},
            "tokenOptions": {"audience": "https://sts.googleapis.com", "nonce": nonces, "tokenType": "TOKEN_TYPE_OIDC"},
        })
    }
}

/// An access token and an ID token (audience: the verifier) for `sa`, made by its owner.
pub async fn tokens(api: &Api, owner: &str, sa: &str) -> (String, String) {
    let base = format!("/v1/projects/-/serviceAccounts/{sa}");
    let (s, b) = api
        .call(
            owner,
            "POST",
            &format!("{base}:generateAccessToken"),
            Some(json!({"scope": ["x"]})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let access = b["accessToken"].as_str().unwrap().to_owned();
    let (s, b) = api
        .call(
            owner,
            "POST",
            &format!("{base}:generateIdToken"),
            Some(json!({"audience": "http://cloister.test", "includeEmail": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (access, b["token"].as_str().unwrap().to_owned())
}

pub async fn verify_token(api: &Api, token: &str) -> Value {
    let (_, discovery) = api
        .send(
            Request::get("/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(discovery["issuer"], "http://cloister.test");
    assert_eq!(discovery["jwks_uri"], "http://cloister.test/jwks");
    let (_, jwks) = api
        .send(Request::get("/jwks").body(Body::empty()).unwrap())
        .await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    let key = DecodingKey::from_jwk(jwks.find(&header.kid.unwrap()).unwrap()).unwrap();
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&["https://sts.googleapis.com"]);
    v.set_issuer(&["http://cloister.test"]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims
}
