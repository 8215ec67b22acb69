//! The codelab's federation setup for the benchmarks: Primus's project, service account, pool,
//! and a provider with the codelab's condition, trusting a test issuer whose signed subject
//! token the STS exchanges.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::BenchServer;

pub const DIGEST: &str = "sha256:4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";
pub const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        // At run time, not compile time: a binary built in another checkout reads this one.
        std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR: run with `cargo bench`")
    ))
    .expect("fixture")
}

pub fn condition() -> String {
    format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' && 'STABLE' in assertion.submods.confidential_space.support_attributes && \
         assertion.submods.container.image_digest == '{DIGEST}' && \
         assertion.submods.container.image_reference == 'cloister.test/primus-bank/repo/workload:latest' && \
         'workload-sa@secundus-bank.iam.gserviceaccount.com' in assertion.google_service_accounts"
    )
}

pub fn claims() -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({
        "iss": "https://issuer.test", "aud": "https://sts.googleapis.com", "sub": "instance-1",
        "iat": now, "exp": now + 3600, "swname": "CONFIDENTIAL_SPACE",
        "google_service_accounts": ["workload-sa@secundus-bank.iam.gserviceaccount.com"],
        "submods": {
            "confidential_space": {"support_attributes": ["LATEST", "STABLE", "USABLE"]},
            "container": {"image_digest": DIGEST, "image_reference": "cloister.test/primus-bank/repo/workload:latest"}
        }
    })
}

/// Sets up Primus on `srv`; returns the provider's STS audience and a subject token it accepts.
pub async fn primus(srv: &BenchServer) -> (String, String) {
    // Setup: a user creates a project, Primus's SA, pool, provider and binding.
    let alice = srv.user("alice@example.com").await;
    let op = srv
        .post("/v1/projects", &alice, json!({"projectId": "primus-bank"}))
        .await;
    let number = op["response"]["projectNumber"]
        .as_str()
        .expect("number")
        .to_owned();
    srv.post(
        "/v1/projects/primus-bank/serviceAccounts",
        &alice,
        json!({"accountId": "primus-sa"}),
    )
    .await;
    let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
    srv.post(
        &format!("{pools}?workloadIdentityPoolId=primus-pool"),
        &alice,
        json!({}),
    )
    .await;
    let jwks = String::from_utf8(fixture("issuer-jwks.json")).expect("utf8");
    srv.post(
        &format!("{pools}/primus-pool/providers?workloadIdentityPoolProviderId=verifier"),
        &alice,
        json!({
            "attributeMapping": {"google.subject": "assertion.sub"},
            "attributeCondition": condition(),
            "oidc": {"issuerUri": "https://issuer.test", "allowedAudiences": ["https://sts.googleapis.com"], "jwksJson": jwks}
        }),
    )
    .await;
    let member = format!(
        "principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*"
    );
    let binding = json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [member]}]}});
    srv.post(
        &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:setIamPolicy"),
        &alice,
        binding,
    )
    .await;
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/verifier"
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("rsa-1".into());
    let key = EncodingKey::from_rsa_pem(&fixture("issuer-rsa.pem")).expect("key");
    let subject = jsonwebtoken::encode(&header, &claims(), &key).expect("sign");

    (audience, subject)
}

/// One STS exchange of `subject` for a federated access token.
pub async fn exchange(srv: &BenchServer, audience: &str, subject: &str) -> String {
    let sts: Value = srv
        .http
        .post(format!("{}/v1/token", srv.base))
        .form(&[
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
            ("subject_token", subject),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .send()
        .await
        .expect("sts")
        .json()
        .await
        .expect("sts json");
    sts["access_token"]
        .as_str()
        .expect("federated token")
        .to_owned()
}
