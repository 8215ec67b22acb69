//! Workload identity federation end to end in process: service accounts, pools and providers,
//! STS with the codelab's condition, impersonation, explain — and every refusal.

mod support;

#[path = "federation/hostile.rs"]
mod hostile;
#[path = "federation/ssrf.rs"]
mod ssrf;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Api, message};

const ISSUER: &str = "https://issuer.test";
const STS_AUDIENCE: &str = "https://sts.googleapis.com";
const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
const REFERENCE: &str = "127.0.0.1:8080/primus-bank/primus-workloads/workload-container:latest";
const WORKLOAD_SA: &str = "workload-sa@secundus-bank.iam.gserviceaccount.com";
const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";
const CONDITION_TEXT: &str = "The given credential is rejected by the attribute condition.";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        support::crate_dir().display()
    ))
    .unwrap()
}

fn codelab_condition() -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' &&
'STABLE' in assertion.submods.confidential_space.support_attributes &&
assertion.submods.container.image_digest == '{DIGEST}' &&
 assertion.submods.container.image_reference == '{REFERENCE}' &&
'{WORKLOAD_SA}' in assertion.google_service_accounts"
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims() -> Value {
    json!({
        "iss": ISSUER, "aud": STS_AUDIENCE,
        "sub": "https://www.googleapis.com/compute/v1/projects/secundus-bank/zones/us-west1-b/instances/workload-vm",
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "swname": "CONFIDENTIAL_SPACE", "hwmodel": "VTPM",
        "google_service_accounts": [WORKLOAD_SA],
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
            "container": {"image_reference": REFERENCE, "image_digest": DIGEST, "restart_policy": "Never"},
            "gce": {"project_id": "secundus-bank", "zone": "us-west1-b"}
        }
    })
}

type Mutation = Box<dyn Fn(&mut Value)>;

fn sign(claims: &Value, alg: Algorithm, kid: &str, pem: &str) -> String {
    let key = match alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(&fixture(pem)).unwrap(),
        _ => EncodingKey::from_rsa_pem(&fixture(pem)).unwrap(),
    };
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

fn rsa(claims: &Value) -> String {
    sign(claims, Algorithm::RS256, "rsa-1", "issuer-rsa.pem")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Primus {
    api: Api,
    alice: String,
    number: String,
    audience: String,
}

impl Primus {
    /// Primus's project, its service account, a pool and a provider with the codelab's
    /// condition, and the pool's principals bound as workloadIdentityUser on primus-sa.
    async fn setup() -> Primus {
        Self::setup_with(|_| {}).await
    }

    /// The same on a server whose configuration `configure` adjusts first.
    async fn setup_with(configure: impl FnOnce(&mut cloister_services::ServerConfig)) -> Primus {
        let api = Api::start_with(configure).await;
        let alice = api.user("alice@example.com").await;
        let (s, op) = api
            .call(
                &alice,
                "POST",
                "/v1/projects",
                Some(json!({"projectId": "primus-bank"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{op}");
        let number = op["response"]["projectNumber"].as_str().unwrap().to_owned();
        let (s, b) = api
            .call(
                &alice,
                "POST",
                "/v1/projects/primus-bank/serviceAccounts",
                Some(json!({"accountId": "primus-sa"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["email"], PRIMUS_SA);
        let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
        let (s, b) = api
            .call(
                &alice,
                "POST",
                &format!("{pools}?workloadIdentityPoolId=primus-pool"),
                Some(json!({})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let provider = provider_body(&codelab_condition());
        let (s, b) = api
            .call(&alice, "POST", &format!("{pools}/primus-pool/providers?workloadIdentityPoolProviderId=attestation-verifier"), Some(provider))
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let audience = format!(
            "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"
        );
        let primus = Primus {
            api,
            alice,
            number,
            audience,
        };
        primus.bind_on_primus_sa(&format!(
            "principalSet://iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/primus-pool/*",
            primus.number
        ))
        .await;
        primus
    }

    async fn bind_on_primus_sa(&self, member: &str) {
        let path = format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}");
        let (_, policy) = self
            .api
            .call(&self.alice, "POST", &format!("{path}:getIamPolicy"), None)
            .await;
        let mut bindings = policy["bindings"].as_array().cloned().unwrap_or_default();
        bindings.push(json!({"role": "roles/iam.workloadIdentityUser", "members": [member]}));
        let body = json!({"policy": {"bindings": bindings, "etag": policy["etag"]}});
        let (s, b) = self
            .api
            .call(
                &self.alice,
                "POST",
                &format!("{path}:setIamPolicy"),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    fn provider_path(&self) -> String {
        "/v1/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier".into()
    }

    async fn sts(&self, subject_token: &str) -> (StatusCode, Value) {
        self.sts_for(&self.audience, subject_token).await
    }

    /// An exchange at another provider of the pool (its STS audience).
    async fn sts_for(&self, audience: &str, subject_token: &str) -> (StatusCode, Value) {
        let form = serde_urlencoded::to_string([
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", "https://www.googleapis.com/auth/cloud-platform"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject_token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .unwrap();
        let req = Request::post("/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        self.api.send(req).await
    }

    /// The refusals the project's audit log holds, oldest first, as the owner reads them.
    async fn denials(&self) -> Vec<Value> {
        let path = "/cloister/v1/auditLogs?resource=projects/primus-bank&decision=deny";
        let (_, log) = self.api.call(&self.alice, "GET", path, None).await;
        log["entries"].as_array().cloned().unwrap_or_default()
    }

    /// The owner's `:explain` of a subject token at the provider.
    async fn explain(&self, subject_token: &str) -> (StatusCode, Value) {
        let path = format!("{}:explain", self.provider_path());
        let body = json!({"subjectToken": subject_token});
        self.api.call(&self.alice, "POST", &path, Some(body)).await
    }

    async fn impersonate(&self, federated: &str) -> (StatusCode, Value) {
        let body = json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"});
        self.api
            .call(
                federated,
                "POST",
                &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"),
                Some(body),
            )
            .await
    }
}

fn provider_body(condition: &str) -> Value {
    json!({
        "attributeMapping": {"google.subject": "assertion.sub", "attribute.image_digest": "assertion.submods.container.image_digest"},
        "attributeCondition": condition,
        "oidc": {
            "issuerUri": ISSUER,
            "allowedAudiences": [STS_AUDIENCE],
            "jwksJson": String::from_utf8(fixture("issuer-jwks.json")).unwrap(),
        }
    })
}

fn assert_oauth_error(resp: &(StatusCode, Value), code: &str, description: &str) {
    assert_eq!(resp.0, StatusCode::BAD_REQUEST, "{}", resp.1);
    assert_eq!(resp.1["error"], code, "{}", resp.1);
    let got = resp.1["error_description"].as_str().unwrap_or_default();
    assert!(
        got.contains(description),
        "expected {description:?} in {got:?}"
    );
}

#[tokio::test]
async fn the_codelab_condition_accepts_the_authorized_workload_and_it_impersonates_primus_sa() {
    let p = Primus::setup().await;
    let (s, b) = p.sts(&rsa(&claims())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["token_type"], "Bearer");
    assert_eq!(
        b["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    let federated = b["access_token"].as_str().unwrap();
    let (s, b) = p.impersonate(federated).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let expire = b["expireTime"].as_str().unwrap();
    assert!(expire.ends_with('Z') && !expire.contains('.'), "{expire}");
    // The service account's token works on other APIs as that account.
    let sa_token = b["accessToken"].as_str().unwrap();
    let (s, _) = p
        .api
        .call(sa_token, "GET", "/v1/projects/primus-bank", None)
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "primus-sa has no role on the project yet"
    );
    let (_, mut policy) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank:getIamPolicy",
            None,
        )
        .await;
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/viewer", "members": [format!("serviceAccount:{PRIMUS_SA}")]}));
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank:setIamPolicy",
            Some(json!({"policy": policy})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = p
        .api
        .call(sa_token, "GET", "/v1/projects/primus-bank", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // ES256 tokens from the same issuer are accepted too.
    let (s, b) = p
        .sts(&sign(
            &claims(),
            Algorithm::ES256,
            "ec-1",
            "issuer-ec.pk8.pem",
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn each_single_claim_mutation_is_refused_with_googles_exact_text() {
    let p = Primus::setup().await;
    let mutations: Vec<(&str, Mutation)> = vec![
        (
            "wrong digest",
            Box::new(|c| c["submods"]["container"]["image_digest"] = json!("sha256:0000")),
        ),
        (
            "wrong reference",
            Box::new(|c| {
                c["submods"]["container"]["image_reference"] = json!("evil.example/x:latest")
            }),
        ),
        (
            "missing STABLE",
            Box::new(|c| {
                c["submods"]["confidential_space"]["support_attributes"] = json!(["USABLE"])
            }),
        ),
        (
            "missing SA",
            Box::new(|c| c["google_service_accounts"] = json!([])),
        ),
        (
            "missing submods",
            Box::new(|c| {
                c.as_object_mut().unwrap().remove("submods");
            }),
        ),
    ];
    for (name, mutate) in mutations {
        let mut c = claims();
        mutate(&mut c);
        let resp = p.sts(&rsa(&c)).await;
        assert_eq!(
            resp.1,
            json!({"error": "unauthorized_client", "error_description": CONDITION_TEXT}),
            "{name}"
        );
        assert_eq!(resp.0, StatusCode::BAD_REQUEST, "{name}");
    }
    // Each denial is in the audit log with the failing clause.
    let entries = p.denials().await;
    assert_eq!(entries.len(), 5, "{entries:?}");
    // Each refusal names its failing clause, and keeps every clause's outcome as data.
    let outcome = |e: &Value, clause: &str| {
        e["details"]["clauses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["clause"].as_str().unwrap().contains(clause))
            .map(|c| c["outcome"].clone())
    };
    assert!(
        entries[0]["reason"]
            .as_str()
            .unwrap()
            .contains("image_digest")
    );
    assert_eq!(outcome(&entries[0], "image_digest"), Some(json!("FAIL")));
    assert_eq!(
        outcome(&entries[4], "support_attributes"),
        Some(json!("ERROR")),
        "missing submods is an evaluation error: {}",
        entries[4]
    );
}

#[tokio::test]
async fn forged_and_invalid_subject_tokens_are_refused() {
    let p = Primus::setup().await;
    let good = rsa(&claims());
    let parts: Vec<&str> = good.split('.').collect();
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = claims();
        f(&mut c);
        rsa(&c)
    };
    // alg: none, with the genuine claims.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT","kid":"rsa-1"}"#),
        parts[1]
    );
    assert_oauth_error(
        &p.sts(&none).await,
        "invalid_grant",
        "algorithm \"none\" is not accepted",
    );
    // HS256 "signed" with the issuer's RSA public key as the HMAC secret.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let hs = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&fixture("issuer-rsa.pub.pem")),
    )
    .unwrap();
    assert_oauth_error(&p.sts(&hs).await, "invalid_grant", "use RS256 or ES256");
    assert_oauth_error(
        &p.sts(&with(&|c| c["exp"] = json!(now() - 120))).await,
        "invalid_grant",
        "expired",
    );
    assert_oauth_error(
        &p.sts(&with(&|c| c["nbf"] = json!(now() + 600))).await,
        "invalid_grant",
        "not valid before",
    );
    assert_oauth_error(
        &p.sts(&with(&|c| c["iat"] = json!(now() + 600))).await,
        "invalid_grant",
        "issued in the future",
    );
    assert_oauth_error(
        &p.sts(&with(&|c| c["iss"] = json!("https://evil.test")))
            .await,
        "invalid_grant",
        "does not match the provider's issuer",
    );
    assert_oauth_error(
        &p.sts(&with(&|c| c["aud"] = json!("https://elsewhere.test")))
            .await,
        "invalid_grant",
        "not one the provider allows",
    );
    let unknown_kid = sign(&claims(), Algorithm::RS256, "rsa-2", "other-rsa.pem");
    assert_oauth_error(
        &p.sts(&unknown_kid).await,
        "invalid_grant",
        "key id \"rsa-2\"",
    );
    // A token signed by another key but claiming the issuer's kid.
    let wrong_key = sign(&claims(), Algorithm::RS256, "rsa-1", "other-rsa.pem");
    assert_oauth_error(
        &p.sts(&wrong_key).await,
        "invalid_grant",
        "signature does not verify",
    );
    // The genuine signature over an altered payload.
    let mut altered = claims();
    altered["submods"]["container"]["image_digest"] = json!("sha256:evil");
    let altered = format!(
        "{}.{}.{}",
        parts[0],
        b64(altered.to_string().as_bytes()),
        parts[2]
    );
    assert_oauth_error(
        &p.sts(&altered).await,
        "invalid_grant",
        "signature does not verify",
    );
    let oversized = with(&|c| c["padding"] = json!("x".repeat(20_000)));
    assert_oauth_error(&p.sts(&oversized).await, "invalid_request", "at most 16384");
    assert_oauth_error(
        &p.sts("not.a.jwt").await,
        "invalid_grant",
        "The subject token is malformed",
    );
}

#[tokio::test]
async fn malformed_requests_and_unknown_or_disabled_providers_are_refused() {
    let p = Primus::setup().await;
    let req = Request::post("/v1/token")
        .header("content-type", "application/json")
        .body(Body::from("{not json"))
        .unwrap();
    assert_oauth_error(
        &p.api.send(req).await,
        "invalid_request",
        "not a valid token exchange request",
    );
    let form = |pairs: &[(&str, &str)]| {
        Request::post("/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(serde_urlencoded::to_string(pairs).unwrap()))
            .unwrap()
    };
    let resp = p
        .api
        .send(form(&[("grant_type", "client_credentials")]))
        .await;
    assert_oauth_error(&resp, "invalid_request", "grant_type");
    let token = rsa(&claims());
    let exchange = "urn:ietf:params:oauth:grant-type:token-exchange";
    let jwt = "urn:ietf:params:oauth:token-type:jwt";
    let resp = p
        .api
        .send(form(&[
            ("grant_type", exchange),
            ("audience", "//iam.googleapis.com/projects/1/nope"),
            ("subject_token", &token),
            ("subject_token_type", jwt),
        ]))
        .await;
    assert_oauth_error(
        &resp,
        "invalid_target",
        "pool or provider is disabled or deleted",
    );
    let resp = p
        .api
        .send(form(&[
            ("grant_type", exchange),
            ("audience", &p.audience),
            ("subject_token", &token),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ]))
        .await;
    assert_oauth_error(&resp, "invalid_request", "subject_token_type");
    // JSON bodies work like forms.
    let body = json!({"grantType": exchange, "audience": p.audience, "subjectToken": token, "subjectTokenType": jwt, "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token"});
    let req = Request::post("/v1/token")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    assert_eq!(p.api.send(req).await.0, StatusCode::OK);
    // Disabling the provider refuses the same token.
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "PATCH",
            &format!("{}?updateMask=disabled", p.provider_path()),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_oauth_error(&p.sts(&token).await, "invalid_target", "disabled");
}

#[tokio::test]
async fn impersonation_without_the_binding_is_refused_and_audited() {
    let p = Primus::setup().await;
    // A second pool whose principals are not bound on primus-sa.
    let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
    p.api
        .call(
            &p.alice,
            "POST",
            &format!("{pools}?workloadIdentityPoolId=other-pool"),
            Some(json!({})),
        )
        .await;
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "POST",
            &format!("{pools}/other-pool/providers?workloadIdentityPoolProviderId=other"),
            Some(provider_body("true")),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let mut other = Primus {
        audience: p.audience.replace(
            "primus-pool/providers/attestation-verifier",
            "other-pool/providers/other",
        ),
        ..p
    };
    let (s, b) = other.sts(&rsa(&claims())).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = other.impersonate(b["access_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        message(&b).contains("iam.serviceAccounts.getAccessToken"),
        "{b}"
    );
    let (_, log) = other.api.call(&other.alice, "GET", "/cloister/v1/auditLogs?decision=deny&permission=iam.serviceAccounts.getAccessToken&resource=projects/primus-bank", None).await;
    let entry = &log["entries"][0];
    assert!(
        entry["principal"]
            .as_str()
            .unwrap()
            .contains("workloadIdentityPools/other-pool/subject/"),
        "{log}"
    );
    assert!(
        entry["reason"]
            .as_str()
            .unwrap()
            .contains("no role granting"),
        "{log}"
    );
    // A principalSet bound by attribute admits tokens carrying that attribute value.
    let number = other.number.clone();
    other.bind_on_primus_sa(&format!(
        "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/other-pool/attribute.image_digest/{DIGEST}"
    ))
    .await;
    let (_, b) = other.sts(&rsa(&claims())).await;
    let (s, b) = other.impersonate(b["access_token"].as_str().unwrap()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    other.audience.clear();
}

#[tokio::test]
async fn providers_with_bad_settings_are_refused_and_nothing_is_stored() {
    let p = Primus::setup().await;
    let providers =
        "/v1/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool/providers";
    let cases = [
        (
            provider_body("assertion.swname == 'X' &&\n  assertion.sub =="),
            "does not compile",
            "line 2",
        ),
        (
            json!({"attributeMapping": {"attribute.x": "assertion.x"}, "oidc": {"issuerUri": ISSUER}}),
            "must map google.subject",
            "",
        ),
        (
            json!({"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": "ftp://x"}}),
            "issuerUri",
            "",
        ),
        (
            json!({"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": ISSUER, "jwksJson": "{}"}}),
            "jwksJson",
            "",
        ),
        // Every write of an issuer fetches and caches it: each one was kept for good.
        (
            json!({"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": format!("https://x.test/{}", "a".repeat(100_000))}}),
            "at most 2048 are allowed",
            "",
        ),
        (
            json!({"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": "https://exa mple.com/"}}),
            "must be an http(s) URL",
            "",
        ),
        // This server's own tokens with a tenant's keys would be forgeries anyone could make.
        (
            json!({"attributeMapping": {"google.subject": "assertion.sub"}, "oidc": {"issuerUri": "http://cloister.test/", "jwksJson": String::from_utf8(fixture("issuer-jwks.json")).unwrap()}}),
            "cannot be given for this server's own issuer",
            "",
        ),
    ];
    for (i, (body, why, position)) in cases.into_iter().enumerate() {
        let (s, b) = p
            .api
            .call(
                &p.alice,
                "POST",
                &format!("{providers}?workloadIdentityPoolProviderId=bad-{i}00"),
                Some(body),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{why}: {b}");
        assert!(
            message(&b).contains(why) && message(&b).contains(position),
            "{why}: {b}"
        );
    }
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "POST",
            &format!("{providers}?workloadIdentityPoolProviderId=gcp-reserved"),
            Some(provider_body("true")),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (_, list) = p.api.call(&p.alice, "GET", providers, None).await;
    assert_eq!(
        list["workloadIdentityPoolProviders"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "{list}"
    );
    // Updating with a broken condition leaves the working one in place.
    let (s, _) = p
        .api
        .call(
            &p.alice,
            "PATCH",
            &format!("{}?updateMask=attributeCondition", p.provider_path()),
            Some(json!({"attributeCondition": "(("})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(p.sts(&rsa(&claims())).await.0, StatusCode::OK);
}

#[tokio::test]
async fn federation_apis_are_default_deny() {
    let p = Primus::setup().await;
    let bob = p.api.user("bob@example.com").await;
    let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
    let attempts = [
        (
            "POST",
            format!("{pools}?workloadIdentityPoolId=bob-pool"),
            Some(json!({})),
        ),
        ("GET", pools.to_owned(), None),
        ("GET", p.provider_path(), None),
        (
            "PATCH",
            format!("{}?updateMask=attributeCondition", p.provider_path()),
            Some(json!({"attributeCondition": "true"})),
        ),
        ("DELETE", p.provider_path(), None),
        (
            "POST",
            "/v1/projects/primus-bank/serviceAccounts".to_owned(),
            Some(json!({"accountId": "bob-sa-1"})),
        ),
        (
            "GET",
            format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}"),
            None,
        ),
        (
            "POST",
            format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:setIamPolicy"),
            Some(json!({"policy": {"bindings": []}})),
        ),
        (
            "POST",
            format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"),
            Some(json!({"scope": ["x"]})),
        ),
        (
            "POST",
            format!("{}:explain", p.provider_path()),
            Some(json!({"subjectToken": rsa(&claims())})),
        ),
    ];
    for (method, path, body) in attempts {
        let (s, b) = p.api.call(&bob, method, &path, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}: {b}");
    }
    // Nothing changed: the provider still accepts the authorized workload.
    assert_eq!(p.sts(&rsa(&claims())).await.0, StatusCode::OK);
}

#[tokio::test]
async fn explain_names_each_clause_with_its_outcome_and_values() {
    let p = Primus::setup().await;
    let mut c = claims();
    c["submods"]["container"]["image_digest"] = json!("sha256:0000");
    let (s, b) = p.explain(&rsa(&c)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["result"], "REJECTED");
    assert_eq!(b["tokenVerification"]["outcome"], "PASS");
    let clauses = b["clauses"].as_array().unwrap();
    assert_eq!(clauses.len(), 5);
    let outcomes: Vec<&str> = clauses
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["PASS", "PASS", "FAIL", "PASS", "PASS"]);
    assert_eq!(clauses[2]["compared"][0][1], "sha256:0000");
    let (_, b) = p.explain(&rsa(&claims())).await;
    assert_eq!(b["result"], "ACCEPTED", "{b}");
}

#[tokio::test]
async fn service_accounts_are_created_listed_and_deleted_with_validation() {
    let p = Primus::setup().await;
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank/serviceAccounts",
            Some(json!({"accountId": "x"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("service account id"), "{b}");
    let (s, _) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank/serviceAccounts",
            Some(json!({"accountId": "primus-sa"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (_, list) = p
        .api
        .call(
            &p.alice,
            "GET",
            "/v1/projects/primus-bank/serviceAccounts",
            None,
        )
        .await;
    assert_eq!(list["accounts"].as_array().unwrap().len(), 1);
    let (s, _) = p
        .api
        .call(
            &p.alice,
            "DELETE",
            &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = p
        .api
        .call(
            &p.alice,
            "GET",
            &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A binding to a service account that does not exist is refused.
    let (_, policy) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank:getIamPolicy",
            None,
        )
        .await;
    let mut bindings = policy["bindings"].as_array().unwrap().clone();
    bindings
        .push(json!({"role": "roles/viewer", "members": [format!("serviceAccount:{PRIMUS_SA}")]}));
    let (s, b) = p
        .api
        .call(
            &p.alice,
            "POST",
            "/v1/projects/primus-bank:setIamPolicy",
            Some(json!({"policy": {"bindings": bindings}})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("does not exist"), "{b}");
}

#[tokio::test]
async fn id_tokens_verify_against_the_published_jwks_and_need_get_open_id_token() {
    let p = Primus::setup().await;
    let bob = p.api.user("bob@example.com").await;
    let path = format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateIdToken");
    let body = json!({"audience": "https://verifier.test", "includeEmail": true});
    let (s, b) = p.api.call(&bob, "POST", &path, Some(body.clone())).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("iam.serviceAccounts.getOpenIdToken"));
    // Alice owns the project, which includes getOpenIdToken on its accounts.
    let (s, b) = p.api.call(&p.alice, "POST", &path, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let token = b["token"].as_str().unwrap();
    let (_, discovery) = p
        .api
        .send(
            Request::get("/accounts/.well-known/openid-configuration")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(discovery["issuer"], "http://cloister.test/accounts");
    assert_eq!(discovery["jwks_uri"], "http://cloister.test/accounts/jwks");
    let (_, jwks) = p
        .api
        .send(Request::get("/accounts/jwks").body(Body::empty()).unwrap())
        .await;
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks).unwrap();
    let kid = jsonwebtoken::decode_header(token).unwrap().kid.unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(Algorithm::RS256);
    v.set_audience(&["https://verifier.test"]);
    v.set_issuer(&["http://cloister.test/accounts"]);
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .unwrap()
        .claims;
    assert_eq!(claims["email"], PRIMUS_SA);
    assert_eq!(claims["email_verified"], true);
    assert_eq!(claims["sub"].as_str().unwrap().len(), 21);
}
