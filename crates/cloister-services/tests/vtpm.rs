//! vTPM evidence end to end: a real software TPM (swtpm) measures the launcher and the
//! container, the platform's identity CA certifies its attestation key, the verifier checks
//! the quote and issues a token that passes the codelab's condition verbatim.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_eventlog::{COS_EVENT_PCR, Event, EventType, HashAlg};
use cloister_tpm::attester::VtpmAttester;
use cloister_tpm::identity::IdentityCa;
use cloister_tpm::swtpm::Swtpm;
use serde_json::{Value, json};
use support::message;
use support::secundus::{DIGEST, REFERENCE, Secundus, WORKLOAD_SA, verify_token};
use support::vtpm::{Instance, nonce, request, trust_launcher};

#[tokio::test]
async fn vtpm_evidence_yields_claims_from_the_quote_certificate_and_reference_values() {
    let s = Secundus::setup().await;
    trust_launcher(&s).await;
    let mut vm = Instance::create(&s).await;
    let (challenge, tpm_nonce) = s.challenge().await;
    let log = vm.log.clone();
    let (st, b) = s
        .verify(
            &s.sa_token,
            &challenge,
            request(&s, vm.evidence(&nonce(&tpm_nonce), &log)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let token = b["oidcClaimsToken"].as_str().unwrap().to_owned();
    let claims = verify_token(&s.api, &token).await;
    assert_eq!(claims["hwmodel"], "VTPM");
    // No firmware signature is checked on a vTPM boot: secure boot is not claimed.
    assert_eq!(claims["secboot"], false);
    assert_eq!(claims["dbgstat"], "disabled-since-boot");
    assert_eq!(claims["swversion"], json!(["250101"]));
    assert_eq!(
        claims["submods"]["confidential_space"]["support_attributes"],
        json!(["LATEST", "STABLE", "USABLE"])
    );
    let gce = &claims["submods"]["gce"];
    assert_eq!(gce["project_id"], "secundus-bank");
    assert_eq!(
        gce["project_number"],
        vm.identity.project_number.to_string()
    );
    assert_eq!(gce["zone"], "us-west1-b");
    assert_eq!(gce["instance_name"], "workload-vm");
    assert_eq!(gce["instance_id"], "4711");
    assert_eq!(
        claims["sub"],
        "https://www.googleapis.com/compute/v1/projects/secundus-bank/zones/us-west1-b/instances/workload-vm"
    );
    assert_eq!(claims["submods"]["container"]["image_digest"], DIGEST);
    assert_eq!(claims["google_service_accounts"], json!([WORKLOAD_SA]));

    // The codelab's condition, verbatim, accepts it at STS.
    let pools = "/v1/projects/secundus-bank/locations/global/workloadIdentityPools";
    s.api
        .call(
            &s.owner,
            "POST",
            &format!("{pools}?workloadIdentityPoolId=pool-1"),
            Some(json!({})),
        )
        .await;
    let condition = format!(
        "assertion.swname == 'CONFIDENTIAL_SPACE' &&\n'STABLE' in assertion.submods.confidential_space.support_attributes &&\nassertion.submods.container.image_digest == '{DIGEST}' &&\n assertion.submods.container.image_reference == '{REFERENCE}' &&\n'{WORKLOAD_SA}' in assertion.google_service_accounts"
    );
    let body = json!({"attributeMapping": {"google.subject": "assertion.sub"}, "attributeCondition": condition,
        "oidc": {"issuerUri": "http://cloister.test", "allowedAudiences": ["https://sts.googleapis.com"]}});
    let (st, b) = s
        .api
        .call(
            &s.owner,
            "POST",
            &format!("{pools}/pool-1/providers?workloadIdentityPoolProviderId=codelab"),
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let form = serde_urlencoded::to_string([
        ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
        ("audience", &format!("//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/pool-1/providers/codelab", vm.identity.project_number)),
        ("subject_token", &token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ])
    .unwrap();
    let req = Request::post("/v1/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .unwrap();
    let (st, b) = s.api.send(req).await;
    assert_eq!(st, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_unknown_launcher_gets_no_support_attributes() {
    let s = Secundus::setup().await;
    let mut vm = Instance::create(&s).await;
    let (challenge, tpm_nonce) = s.challenge().await;
    let log = vm.log.clone();
    let (st, b) = s
        .verify(
            &s.sa_token,
            &challenge,
            request(&s, vm.evidence(&nonce(&tpm_nonce), &log)),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{b}");
    let claims = verify_token(&s.api, b["oidcClaimsToken"].as_str().unwrap()).await;
    assert_eq!(
        claims["submods"]["confidential_space"]["support_attributes"],
        json!([])
    );
    assert_eq!(claims["dbgstat"], "enabled");
    assert_eq!(claims["swversion"], json!([]));
}

#[tokio::test]
async fn forged_or_mismatched_vtpm_evidence_is_refused() {
    let s = Secundus::setup().await;
    trust_launcher(&s).await;
    let mut vm = Instance::create(&s).await;
    let log = vm.log.clone();
    let refuse = async |tpm: Value, why: &str| {
        let (challenge, _) = s.challenge().await;
        let (st, b) = s.verify(&s.sa_token, &challenge, request(&s, tpm)).await;
        assert_eq!(st, StatusCode::BAD_REQUEST, "{why}: {b}");
        assert!(message(&b).contains(why), "{why}: {b}");
    };
    // A quote over another nonce (a replay of old evidence).
    refuse(vm.evidence(&[9u8; 32], &log), "not the challenge nonce").await;

    // An event log with an event that was never extended into the PCR.
    let (challenge, tpm_nonce) = s.challenge().await;
    let mut padded = log.clone();
    padded.records.pop();
    padded.append(
        COS_EVENT_PCR,
        &[HashAlg::Sha256],
        &Event::new(EventType::EnvVar, "DEBUG=1"),
    );
    padded.append(
        COS_EVENT_PCR,
        &[HashAlg::Sha256],
        &Event::new(EventType::LaunchSeparator, Vec::new()),
    );
    let (st, b) = s
        .verify(
            &s.sa_token,
            &challenge,
            request(&s, vm.evidence(&nonce(&tpm_nonce), &padded)),
        )
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        message(&b).contains("does not replay to the quoted PCR 13"),
        "{b}"
    );

    // An AK certificate from a CA that is not the platform's.
    let (challenge, tpm_nonce) = s.challenge().await;
    let rogue = IdentityCa::generate(time::OffsetDateTime::now_utc()).unwrap();
    let forged = rogue
        .certify_ak(
            &vm.attester.ak_public_key().unwrap(),
            &vm.identity,
            time::OffsetDateTime::now_utc(),
        )
        .unwrap();
    let mut evidence = vm.evidence(&nonce(&tpm_nonce), &log);
    evidence["akCert"] = json!(STANDARD.encode(forged));
    let (st, b) = s
        .verify(&s.sa_token, &challenge, request(&s, evidence))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(
        message(&b).contains("not issued by this platform's instance identity CA"),
        "{b}"
    );

    // A genuine certificate for another key: the quote's signature does not match it.
    let (challenge, tpm_nonce) = s.challenge().await;
    let other_dir = tempfile::tempdir().unwrap();
    let other_tpm = Swtpm::start(other_dir.path()).unwrap();
    let other_ak = VtpmAttester::open(&other_tpm.tcti())
        .unwrap()
        .ak_public_key()
        .unwrap();
    let body = json!({"attestationKey": STANDARD.encode(other_ak), "instance": vm.identity});
    let (_, b) = s
        .api
        .call(
            &s.api.admin,
            "POST",
            "/cloister/v1/identityCa:certifyAttestationKey",
            Some(body),
        )
        .await;
    let mut evidence = vm.evidence(&nonce(&tpm_nonce), &log);
    evidence["akCert"] = b["certificate"].clone();
    let (st, b) = s
        .verify(&s.sa_token, &challenge, request(&s, evidence))
        .await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("signature does not verify"), "{b}");

    // Only platform admins certify attestation keys.
    let body = json!({"attestationKey": STANDARD.encode(vm.attester.ak_public_key().unwrap()), "instance": vm.identity});
    let (st, _) = s
        .api
        .call(
            &s.owner,
            "POST",
            "/cloister/v1/identityCa:certifyAttestationKey",
            Some(body),
        )
        .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    vm.measure(&Event::new(EventType::Arg, "unused"));
}
