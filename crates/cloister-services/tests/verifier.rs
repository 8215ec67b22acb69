//! The attestation verifier with INSECURE evidence: challenges, verifyAttestation, tokens with
//! Confidential Space's claims, and every refusal.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};
use support::message;
use support::secundus::{
    DIGEST, OTHER_SA, REFERENCE, Secundus, WORKLOAD_SA, event_log, tokens, verify_token,
};

#[tokio::test]
async fn insecure_evidence_yields_a_token_whose_claims_come_from_the_event_log() {
    let s = Secundus::setup().await;
    let (challenge, _) = s.challenge().await;
    let nonces = ["nonce-0001", "a-second-nonce-of-more-bytes"];
    let (status, b) = s
        .verify(
            &s.sa_token,
            &challenge,
            s.request(event_log(false), &nonces),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    let claims = verify_token(&s.api, b["oidcClaimsToken"].as_str().unwrap()).await;
    assert_eq!(claims["hwmodel"], "INSECURE");
    assert_eq!(claims["dbgstat"], "enabled");
    assert_eq!(claims["secboot"], false);
    // The caller's own word about its image: never Confidential Space.
    assert_eq!(claims["swname"], "INSECURE");
    assert_eq!(
        claims["submods"]["confidential_space"]["support_attributes"],
        json!([])
    );
    assert_eq!(claims["google_service_accounts"], json!([WORKLOAD_SA]));
    assert_eq!(claims["eat_nonce"], json!(nonces));
    let container = &claims["submods"]["container"];
    assert_eq!(container["image_digest"], DIGEST);
    assert_eq!(container["image_reference"], REFERENCE);
    assert_eq!(container["restart_policy"], "Never");
    assert_eq!(container["args"], json!(["/workload"]));
    assert_eq!(container["env"]["GCE_METADATA_HOST"], "127.0.0.1:8081");
    assert!(
        claims["submods"]["gce"].is_null(),
        "INSECURE evidence proves no instance identity"
    );
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    // The audit entry keeps the claims as issued (never the token) and names the workload by
    // the token's subject, so the instance's trust chain finds it.
    let (_, log) = s
        .api
        .call(
            &s.owner,
            "GET",
            "/cloister/v1/auditLogs?resource=projects/secundus-bank&permission=confidentialcomputing.attestationTokens.issue",
            None,
        )
        .await;
    let entry = &log["entries"][0];
    assert_eq!(entry["subject"], claims["sub"], "{log}");
    assert_eq!(entry["details"]["kind"], "attestationToken", "{log}");
    assert_eq!(entry["details"]["claims"], claims, "{log}");
}

#[tokio::test]
async fn a_challenge_is_single_use_and_expires() {
    let s = Secundus::setup().await;
    let (challenge, _) = s.challenge().await;
    let (status, _) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, b) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("already used"), "{b}");
    // A challenge past its expiry, written straight into the database.
    let store = &s.api.server.state.store;
    let name = "projects/secundus-bank/locations/us-west1/challenges/expired-1";
    store
        .create_challenge(&cloister_store::ChallengeRecord {
            name: name.into(),
            project_id: cloister_domain::ProjectId::parse("secundus-bank").unwrap(),
            nonce: vec![0; 32],
            create_time: time::OffsetDateTime::from_unix_timestamp(1).unwrap(),
            expire_time: time::OffsetDateTime::from_unix_timestamp(2).unwrap(),
        })
        .await
        .unwrap();
    let (status, b) = s
        .verify(&s.sa_token, name, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message(&b).contains("expired at 1970-01-01T00:00:02Z"),
        "{b}"
    );
    let (status, _) = s
        .verify(
            &s.sa_token,
            "projects/secundus-bank/locations/us-west1/challenges/nope",
            s.request(event_log(false), &[]),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_evidence_and_bad_token_options_are_refused() {
    let s = Secundus::setup().await;
    let cases: Vec<(Value, &str)> = vec![
        (
            s.request(event_log(true), &[]),
            "after the launch separator",
        ),
        (s.request("not base64!".into(), &[]), "not base64"),
        (
            s.request(STANDARD.encode([0u8, 0, 0, 0, 8, 1]), &[]),
            "truncated",
        ),
        (
            s.request(event_log(false), &["a", "b", "c", "d", "e", "f", "g"]),
            "at most 6",
        ),
        (s.request(event_log(false), &["short"]), "8 to 88 bytes"),
        (
            s.request(event_log(false), &[&"x".repeat(89)]),
            "8 to 88 bytes",
        ),
        (
            {
                let mut r = s.request(event_log(false), &[]);
                r["tokenOptions"]["tokenType"] = json!("TOKEN_TYPE_LIMITED_AWS");
                r
            },
            "not supported",
        ),
        (
            {
                let mut r = s.request(event_log(false), &[]);
                r["sevSnpAttestation"] =
                    json!({"report": "AAAA", "vcekCert": "AAAA", "canonicalEventLog": "AAAA"});
                r
            },
            "exactly one kind of evidence",
        ),
        (
            {
                let mut r = s.request(event_log(false), &[]);
                r.as_object_mut().unwrap().remove("insecureAttestation");
                r["tdCcel"] = json!({"ccelAcpiTable": "AAAA"});
                r
            },
            "missing field `tdQuote`",
        ),
    ];
    for (body, why) in cases {
        let (challenge, _) = s.challenge().await;
        let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{why}: {b}");
        assert!(message(&b).contains(why), "{why}: {b}");
    }
}

#[tokio::test]
async fn only_the_instance_account_with_workload_user_gets_a_token() {
    let s = Secundus::setup().await;
    let (other_token, other_id_token) = tokens(&s.api, &s.owner, OTHER_SA).await;
    // Another account's ID token with the workload account's credentials.
    let (challenge, _) = s.challenge().await;
    let mut body = s.request(event_log(false), &[]);
    body["gcpCredentials"]["serviceAccountIdTokens"] = json!([other_id_token]);
    let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("ID token is for other-sa"), "{b}");
    // An account without roles/confidentialcomputing.workloadUser.
    let (status, b) = s
        .verify(&other_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    assert!(
        message(&b).contains("confidentialcomputing.challenges.verify"),
        "{b}"
    );
    // A user, not a service account.
    let (status, _) = s
        .verify(&s.owner, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A forged ID token (signed by a key this Cloister never had).
    let mut body = s.request(event_log(false), &[]);
    let forged = {
        let parts: Vec<&str> = s.sa_id_token.split('.').collect();
        format!("{}.{}.{}", parts[0], parts[1], "AAAA")
    };
    body["gcpCredentials"]["serviceAccountIdTokens"] = json!([forged]);
    let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert!(message(&b).contains("does not verify"), "{b}");
    // None of the refusals spent the challenge.
    let (status, b) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_insecure_token_passes_only_a_condition_that_names_insecure_evidence() {
    let s = Secundus::setup().await;
    let (challenge, _) = s.challenge().await;
    let (_, b) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    let token = b["oidcClaimsToken"].as_str().unwrap().to_owned();
    let pools = "/v1/projects/secundus-bank/locations/global/workloadIdentityPools";
    s.api
        .call(
            &s.owner,
            "POST",
            &format!("{pools}?workloadIdentityPoolId=pool-1"),
            Some(json!({})),
        )
        .await;
    let digest_and_account = format!(
        "assertion.submods.container.image_digest == '{DIGEST}' && '{WORKLOAD_SA}' in assertion.google_service_accounts"
    );
    for (provider, condition) in [
        // Google's documented form, without STABLE: an event log the caller wrote itself
        // (any digest it likes) must not pass it.
        (
            "google",
            format!("assertion.swname == 'CONFIDENTIAL_SPACE' && {digest_and_account}"),
        ),
        // A development pool that accepts INSECURE evidence says so.
        (
            "development",
            format!("assertion.swname == 'INSECURE' && {digest_and_account}"),
        ),
    ] {
        let body = json!({
            "attributeMapping": {"google.subject": "assertion.sub"},
            "attributeCondition": condition,
            // The issuer is this Cloister itself: its keys are read in process.
            "oidc": {"issuerUri": "http://cloister.test", "allowedAudiences": ["https://sts.googleapis.com"]},
        });
        let (st, b) = s
            .api
            .call(
                &s.owner,
                "POST",
                &format!("{pools}/pool-1/providers?workloadIdentityPoolProviderId={provider}"),
                Some(body),
            )
            .await;
        assert_eq!(st, StatusCode::OK, "{b}");
    }
    let (_, project) = s
        .api
        .call(&s.owner, "GET", "/v1/projects/secundus-bank", None)
        .await;
    let number = project["projectNumber"].as_str().unwrap();
    let sts = |provider: &str| {
        let form = serde_urlencoded::to_string([
            ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
            ("audience", &format!("//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/pool-1/providers/{provider}")),
            ("subject_token", &token),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .unwrap();
        Request::post("/v1/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap()
    };
    let (st, b) = s.api.send(sts("development")).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (st, b) = s.api.send(sts("google")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["error_description"],
        "The given credential is rejected by the attribute condition."
    );
}

#[tokio::test]
async fn reference_values_are_admin_only_and_validated() {
    let s = Secundus::setup().await;
    let path = "/cloister/v1/verifier/referenceValues";
    let good = json!({"measurement": "ab".repeat(32), "swversion": "250101", "supportAttributes": ["STABLE", "USABLE"]});
    let (st, _) = s.api.call(&s.owner, "POST", path, Some(good.clone())).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, b) = s.api.call(&s.api.admin, "POST", path, Some(good)).await;
    assert_eq!(st, StatusCode::OK, "{b}");
    assert_eq!(b["dbgstat"], "disabled-since-boot");
    for (bad, why) in [
        (
            json!({"measurement": "xyz", "swversion": "1"}),
            "hex digest",
        ),
        (
            json!({"measurement": "ab".repeat(32), "swversion": "1", "supportAttributes": ["GOLD"]}),
            "GOLD",
        ),
        (
            json!({"measurement": "ab".repeat(32), "swversion": "1", "dbgstat": "maybe"}),
            "dbgstat",
        ),
        (
            json!({"measurement": "ab".repeat(32), "swversion": "0.1.0"}),
            "must be a number",
        ),
    ] {
        let (st, b) = s.api.call(&s.api.admin, "POST", path, Some(bad)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
        assert!(message(&b).contains(why), "{b}");
    }
    let (_, list) = s.api.call(&s.api.admin, "GET", path, None).await;
    assert_eq!(list["referenceValues"].as_array().unwrap().len(), 1);
    let (st, _) = s
        .api
        .call(
            &s.api.admin,
            "DELETE",
            &format!("{path}/{}", "ab".repeat(32)),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}

fn snp_fixture(path: &str) -> String {
    STANDARD.encode(support::tee_fixture(path))
}

/// Real SNP reports from AMD hardware pass the chain and signature checks, and are then refused
/// because their REPORT_DATA binds another attestation (no recorded report can bind a fresh
/// challenge; that is the point of the binding). Forged certificates never get that far.
#[tokio::test]
async fn sev_snp_evidence_is_checked_against_amd_roots_and_bound_to_the_challenge() {
    let s = Secundus::setup().await;
    let cases = [
        (
            "snp/test-vcek.der",
            "REPORT_DATA does not bind this challenge",
        ),
        (
            "snp/test-vcek-invalid-new.der",
            "not signed by AMD's pinned ASK",
        ),
    ];
    for (vcek, why) in cases {
        let (challenge, _) = s.challenge().await;
        let body = json!({
            "gcpCredentials": {"serviceAccountIdTokens": [s.sa_id_token]},
            "sevSnpAttestation": {
                "report": snp_fixture("snp/test-report.bin"),
                "vcekCert": snp_fixture(vcek),
                "canonicalEventLog": event_log(false),
            },
            "tokenOptions": {"audience": "https://sts.googleapis.com"},
        });
        let (status, b) = s.verify(&s.sa_token, &challenge, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        assert!(message(&b).contains(why), "{vcek}: {b}");
    }

    // Without vcekCert the server's VCEK cache must have it, keyed by chip id and TCB.
    let without_vcek = json!({
        "gcpCredentials": {"serviceAccountIdTokens": [s.sa_id_token]},
        "sevSnpAttestation": {
            "report": snp_fixture("snp/test-report.bin"),
            "canonicalEventLog": event_log(false),
        },
    });
    let (challenge, _) = s.challenge().await;
    let (status, b) = s
        .verify(&s.sa_token, &challenge, without_vcek.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    let report = support::tee_fixture("snp/test-report.bin");
    let name = cloister_snp::vcek_cache_name(&report).unwrap();
    assert!(message(&b).contains(&name), "the error names the file: {b}");
    let cache = s.api.dir.path().join("data/tee/vcek");
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join(&name), support::tee_fixture("snp/test-vcek.der")).unwrap();
    let (challenge, _) = s.challenge().await;
    let (status, b) = s
        .verify(&s.sa_token, &challenge, without_vcek.clone())
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        message(&b).contains("REPORT_DATA does not bind this challenge"),
        "the cached VCEK verified the report: {b}"
    );
    // An AK certificate the platform's identity CA did not issue names no instance; nor does
    // one without the AK's quote, which shows the guest holds the AK.
    let quote = json!({"hashAlgo": 11, "pcrValues": {}, "rawQuote": "", "rawSignature": ""});
    let cases = [
        (Some(quote), "sevSnpAttestation.akCert"),
        (None, "sevSnpAttestation.akQuote: is required"),
    ];
    for (quote, why) in cases {
        let mut foreign = without_vcek.clone();
        foreign["sevSnpAttestation"]["akCert"] = json!(STANDARD.encode(b"not a certificate"));
        if let Some(q) = quote {
            foreign["sevSnpAttestation"]["akQuote"] = q;
        }
        let (challenge, _) = s.challenge().await;
        let (status, b) = s.verify(&s.sa_token, &challenge, foreign).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{b}");
        assert!(message(&b).contains(why), "{why}: {b}");
    }
}

/// An impersonated account's ID token counts only when the caller may mint such tokens itself:
/// a leaked ID token of another account is refused.
#[tokio::test]
async fn impersonated_accounts_need_the_callers_own_permission() {
    let s = Secundus::setup().await;
    let (_, other_id_token) = tokens(&s.api, &s.owner, OTHER_SA).await;
    let body = || {
        let mut r = s.request(event_log(false), &[]);
        r["gcpCredentials"]["serviceAccountIdTokens"] = json!([s.sa_id_token, other_id_token]);
        r
    };
    let (challenge, _) = s.challenge().await;
    let (status, b) = s.verify(&s.sa_token, &challenge, body()).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{b}");
    assert!(
        message(&b).contains("iam.serviceAccounts.getOpenIdToken"),
        "{b}"
    );

    let (_, mut policy) = s
        .api
        .call(
            &s.owner,
            "POST",
            &format!("/v1/projects/-/serviceAccounts/{OTHER_SA}:getIamPolicy"),
            None,
        )
        .await;
    policy["bindings"] = json!([{"role": "roles/iam.serviceAccountTokenCreator", "members": [format!("serviceAccount:{WORKLOAD_SA}")]}]);
    let (st, b) = s
        .api
        .call(
            &s.owner,
            "POST",
            &format!("/v1/projects/-/serviceAccounts/{OTHER_SA}:setIamPolicy"),
            Some(json!({"policy": policy})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let (challenge, _) = s.challenge().await;
    let (status, b) = s.verify(&s.sa_token, &challenge, body()).await;
    assert_eq!(status, StatusCode::OK, "{b}");
}

/// A hostile workload (any caller allowed to verify) could write an event log naming the
/// owner's approved image: a server refuses INSECURE evidence, and INSECURE instances, unless
/// started with --allow-insecure-evidence.
#[tokio::test]
async fn a_server_refuses_insecure_evidence_and_instances_unless_told_to_accept_them() {
    let s =
        Secundus::setup_on(support::Api::start_with(|c| c.allow_insecure_evidence = false).await)
            .await;
    let (challenge, _) = s.challenge().await;
    let (st, b) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["status"], "FAILED_PRECONDITION", "{b}");
    assert!(message(&b).contains("--allow-insecure-evidence"), "{b}");
    // Refused before the challenge is spent: the caller may still answer it with evidence.
    let (st, b) = s
        .verify(&s.sa_token, &challenge, s.request(event_log(false), &[]))
        .await;
    assert!(!message(&b).contains("already used"), "{st} {b}");

    let (st, b) = s
        .api
        .call(
            &s.owner,
            "POST",
            "/compute/v1/projects/secundus-bank/zones/us-west1-b/instances",
            Some(json!({
                "name": "insecure",
                "confidentialInstanceConfig": {"confidentialInstanceType": "INSECURE"},
                "serviceAccounts": [{"email": WORKLOAD_SA}],
            })),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{b}");
    assert!(message(&b).contains("INSECURE is refused"), "{b}");
}
