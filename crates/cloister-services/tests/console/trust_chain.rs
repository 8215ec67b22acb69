//! An instance's trust chain and the audit log pages: Primus's provider refuses a workload of
//! Secundus's instance, then accepts it, and it impersonates primus-sa. Each viewer sees the
//! part of the chain in logs they may read, the failing clause and its fix; a forged token
//! files nothing under the instance; others are refused without a leak.

use axum::http::StatusCode;
use cloister_domain::{AttestationDetails, AuditDetails, Decision};
use cloister_store::{AuditFilter, ConfidentialType, InstanceRecord, InstanceStatus};
use serde_json::{Value, json};

use super::support::Api;
use super::{get, project, sign_in};

const ISSUER: &str = "http://cloister.test";
const STS: &str = "https://sts.googleapis.com";
const INSTANCE: &str = "https://www.googleapis.com/compute/v1/projects/secundus-bank/zones/us-west1-b/instances/workload-vm";
const CHAIN: &str = "/console/projects/secundus-bank/zones/us-west1-b/instances/workload-vm/trust";
const GOOD: &str = "sha256:aaaa";
/// What the refused workload presented: markup, to prove it stays text.
const BAD: &str = "sha256:<script>alert(1)</script>";
const PRIMUS_SA: &str = "primus-sa@primus-bank.iam.gserviceaccount.com";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// An attestation token's claims for the instance, as the verifier issues them.
fn claims(digest: &str) -> Value {
    json!({
        "iss": ISSUER, "aud": STS, "sub": INSTANCE,
        "iat": now(), "nbf": now(), "exp": now() + 3600,
        "swname": "CONFIDENTIAL_SPACE", "hwmodel": "GCP_AMD_SEV", "dbgstat": "disabled-since-boot",
        "submods": {"container": {"image_digest": digest, "image_reference": "cloister.test/p/r/w:latest"},
                    "confidential_space": {"support_attributes": ["STABLE"]}},
    })
}

async fn ok(api: &Api, token: &str, method: &str, path: &str, body: Option<Value>) -> Value {
    let (s, b) = api.call(token, method, path, body).await;
    assert_eq!(s, StatusCode::OK, "{method} {path}: {b}");
    b
}

async fn sts(api: &Api, number: &str, subject_token: &str) -> (StatusCode, Value) {
    let audience = format!(
        "//iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier"
    );
    let form = serde_urlencoded::to_string([
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", &audience),
        ("subject_token", subject_token),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
    ])
    .unwrap();
    let req = axum::http::Request::post("/v1/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(axum::body::Body::from(form))
        .unwrap();
    api.send(req).await
}

/// Primus's pool and provider (trusting this server's attestation tokens, accepting only the
/// GOOD digest) and primus-sa its workloads may impersonate; returns Primus's project number.
async fn primus(api: &Api, alice: &str) -> String {
    let number = ok(api, alice, "GET", "/v1/projects/primus-bank", None).await["projectNumber"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(
        api,
        alice,
        "POST",
        "/v1/projects/primus-bank/serviceAccounts",
        Some(json!({"accountId": "primus-sa"})),
    )
    .await;
    let pools = "/v1/projects/primus-bank/locations/global/workloadIdentityPools";
    ok(
        api,
        alice,
        "POST",
        &format!("{pools}?workloadIdentityPoolId=primus-pool"),
        Some(json!({})),
    )
    .await;
    let provider = json!({
        "attributeMapping": {"google.subject": "assertion.sub"},
        "attributeCondition": format!("assertion.swname == 'CONFIDENTIAL_SPACE' && assertion.submods.container.image_digest == '{GOOD}'"),
        "oidc": {"issuerUri": ISSUER, "allowedAudiences": [STS]},
    });
    ok(
        api,
        alice,
        "POST",
        &format!(
            "{pools}/primus-pool/providers?workloadIdentityPoolProviderId=attestation-verifier"
        ),
        Some(provider),
    )
    .await;
    let sa = format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}");
    let policy = json!({"policy": {"bindings": [{"role": "roles/iam.workloadIdentityUser", "members": [
        format!("principalSet://iam.googleapis.com/projects/{number}/locations/global/workloadIdentityPools/primus-pool/*")]}]}});
    ok(
        api,
        alice,
        "POST",
        &format!("{sa}:setIamPolicy"),
        Some(policy),
    )
    .await;
    number
}

#[tokio::test]
async fn a_trust_chain_shows_each_viewer_the_verdicts_in_the_logs_they_may_read() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await; // Primus: owns the pool
    let bob = api.user("bob@example.com").await; // Secundus: runs the instance
    let carol = api.user("carol@example.com").await; // neither
    project(&api, &alice, "primus-bank", "Primus").await;
    project(&api, &bob, "secundus-bank", "Secundus").await;
    let number = primus(&api, &alice).await;
    let state = &api.server.state;
    state
        .store
        .create_instance(
            &InstanceRecord {
                project_id: cloister_domain::ProjectId::parse("secundus-bank").unwrap(),
                zone: "us-west1-b".into(),
                name: "workload-vm".into(),
                id: 7,
                service_account: "workload-sa@secundus-bank.iam.gserviceaccount.com".into(),
                metadata: [(
                    "tee-image-reference".to_owned(),
                    "cloister.test/p/r/w:latest".to_owned(),
                )]
                .into(),
                confidential_type: ConfidentialType::SevSnp,
                status: InstanceStatus::Terminated,
                create_time: time::OffsetDateTime::now_utc() - time::Duration::minutes(1),
            },
            None,
        )
        .await
        .unwrap();
    // The verifier's record of the token it issued (its recording is tested with the verifier).
    state
        .authorizer
        .record_detailed(
            "serviceAccount:workload-sa@secundus-bank.iam.gserviceaccount.com".into(),
            "confidentialcomputing.attestationTokens.issue",
            "projects/secundus-bank/locations/us-west1/challenges/c1",
            Decision::Allow,
            "GCP_AMD_SEV evidence".into(),
            Some(AuditDetails::AttestationToken(AttestationDetails {
                claims: claims(BAD),
            })),
        )
        .await;

    // Refused (the digest), then accepted; the accepted identity impersonates primus-sa.
    let (s, b) = sts(&api, &number, &state.attestation_keys.sign(&claims(BAD))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, b) = sts(&api, &number, &state.attestation_keys.sign(&claims(GOOD))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let federated = b["access_token"].as_str().unwrap();
    ok(
        &api,
        federated,
        "POST",
        &format!("/v1/projects/-/serviceAccounts/{PRIMUS_SA}:generateAccessToken"),
        Some(json!({"scope": ["x"]})),
    )
    .await;
    // A forged token naming the instance (its signature is not this server's) is refused and
    // linked to nothing.
    let forged = {
        let t = state.attestation_keys.sign(&claims(GOOD));
        let (head, _) = t.rsplit_once('.').unwrap();
        format!("{head}.AAAA")
    };
    let (s, _) = sts(&api, &number, &forged).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let linked = state
        .store
        .list_audit(&AuditFilter {
            subject: Some(INSTANCE.into()),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        linked.len(),
        3,
        "the issued token and two verified exchanges: {linked:#?}"
    );

    // Primus sees its provider's verdicts, the failing clause, the fix and what followed; not
    // Secundus's instance record or token issuance.
    let (alice_s, _) = sign_in(&api, &alice).await;
    let page = get(&api, CHAIN, Some(&alice_s)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    for text in [
        "REFUSED",
        "ACCEPTED",
        "Refused by the clause",
        "assertion.submods.container.image_digest == &#39;sha256:aaaa&#39;",
        "update-oidc attestation-verifier",
        "--workload-identity-pool primus-pool --location global --project primus-bank",
        "iam.serviceAccounts.getAccessToken",
        "serviceAccount:primus-sa@primus-bank.iam.gserviceaccount.com",
        "You may not read this instance's record",
        "No attestation token issued to this instance is in a log you may read",
    ] {
        assert!(body.contains(text), "{text}: {body}");
    }
    assert_eq!(body.matches("id=\"exchange-").count(), 2, "{body}");
    assert!(!body.contains("<script>alert"), "{body}");
    assert!(body.contains("&#60;script&#62;alert(1)"), "{body}");
    // Asking whether Primus may read the instance left no refusal in the log.
    let needless = state
        .store
        .list_audit(&AuditFilter {
            principal: Some("user:alice@example.com".into()),
            permission: Some("compute.instances.get".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(needless.is_empty(), "{needless:#?}");

    // Secundus sees its instance and the token it was issued, none of Primus's decisions.
    let (bob_s, _) = sign_in(&api, &bob).await;
    let page = get(&api, CHAIN, Some(&bob_s)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "TERMINATED",
        "SEV_SNP",
        "GCP_AMD_SEV",
        "ISSUED",
        "No exchange of this instance",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }
    for hidden in ["attestation-verifier", "sha256:aaaa", "primus-sa"] {
        assert!(!page.body.contains(hidden), "{hidden}: {}", page.body);
    }

    // Carol, and anyone asking about an instance that does not exist: one refusal, no leak.
    let (carol_s, _) = sign_in(&api, &carol).await;
    for (session, path) in [
        (&carol_s, CHAIN.to_owned()),
        (&alice_s, CHAIN.replace("workload-vm", "no-such-vm")),
    ] {
        let page = get(&api, &path, Some(session)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(page.body.contains("compute.instances.get"), "{}", page.body);
        for hidden in ["attestation-verifier", "sha256:", "REFUSED"] {
            assert!(!page.body.contains(hidden), "{hidden}: {}", page.body);
        }
    }
    let bad = get(
        &api,
        "/console/projects/secundus-bank/zones/%3Cb%3E/instances/x/trust",
        Some(&alice_s),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.body.contains("<b>"), "{}", bad.body);

    // The audit log: Primus's denials, each opening its explanation and the chain.
    let log = get(
        &api,
        "/console/audit?project=primus-bank&decision=deny",
        Some(&alice_s),
    )
    .await;
    assert_eq!(log.status, StatusCode::OK, "{}", log.body);
    assert!(
        log.body.contains(&format!("href=\"{CHAIN}\"")),
        "{}",
        log.body
    );
    let id = log
        .body
        .split("class=\"badge fail\" href=\"/console/audit/")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let entry = get(&api, &format!("/console/audit/{id}"), Some(&alice_s)).await;
    assert_eq!(entry.status, StatusCode::OK, "{}", entry.body);
    assert!(
        entry.body.contains("Refused by the clause"),
        "{}",
        entry.body
    );
    assert!(
        entry
            .body
            .contains(&format!("cloister audit describe {id}")),
        "{}",
        entry.body
    );
    let json = get(
        &api,
        "/console/audit/export/audit.json?project=primus-bank&decision=deny",
        Some(&alice_s),
    )
    .await;
    assert_eq!(json.status, StatusCode::OK);
    assert!(
        json.headers["content-disposition"]
            .to_str()
            .unwrap()
            .contains("attachment")
    );
    let exported: Value = serde_json::from_str(&json.body).unwrap();
    let entries = exported["entries"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["decision"] == "deny"),
        "{exported}"
    );
    assert!(
        entries.iter().any(|e| e["subject"] == INSTANCE),
        "{exported}"
    );
    assert!(!json.body.contains(".AAAA"), "never the token");
    let csv = get(
        &api,
        "/console/audit/export/audit.csv?project=primus-bank&decision=deny",
        Some(&alice_s),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(
        csv.body.starts_with("id,time,decision,principal,"),
        "{}",
        csv.body
    );
    assert_eq!(csv.body.lines().count(), entries.len() + 1, "{}", csv.body);
    // No project chosen: a form, not a refusal; Secundus's log, an entry of it, its export:
    // refused to Primus; Carol may open none of Primus's.
    let none = get(&api, "/console/audit", Some(&alice_s)).await;
    assert!(none.body.contains("Choose a project"), "{}", none.body);
    for (session, path) in [
        (&alice_s, "/console/audit?project=secundus-bank".to_owned()),
        (
            &alice_s,
            "/console/audit/export/audit.csv?project=secundus-bank".to_owned(),
        ),
        (&alice_s, format!("/console/audit/{}", linked[0].id)),
        (&carol_s, format!("/console/audit/{id}")),
        (&carol_s, "/console/audit?project=primus-bank".to_owned()),
        (
            &carol_s,
            "/console/audit/export/audit.json?project=primus-bank".to_owned(),
        ),
    ] {
        let page = get(&api, &path, Some(session)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(
            page.body.contains("logging.privateLogEntries.list"),
            "{path}: {}",
            page.body
        );
        assert!(!page.body.contains("sha256:"), "{path}: {}", page.body);
    }
}

fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

fn form(fields: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(fields).unwrap()
}

#[tokio::test]
async fn the_playground_judges_an_edited_condition_and_saves_only_from_the_owners_form() {
    use super::{ORIGIN, post_form};
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project(&api, &alice, "primus-bank", "Primus").await;
    let number = primus(&api, &alice).await;
    let state = &api.server.state;
    let good = state.attestation_keys.sign(&claims(GOOD));
    assert_eq!(sts(&api, &number, &good).await.0, StatusCode::OK);
    assert_eq!(
        sts(&api, &number, &state.attestation_keys.sign(&claims(BAD)))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    let page_path = "/console/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier";
    let api_path = "/v1/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool/providers/attestation-verifier";
    let saved = ok(&api, &alice, "GET", api_path, None).await["attributeCondition"]
        .as_str()
        .unwrap()
        .to_owned();

    let (session, _) = sign_in(&api, &alice).await;
    let page = get(&api, page_path, Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        page.body.matches("name=\"exchange\"").count(),
        2,
        "both exchanges recorded their claims: {}",
        page.body
    );
    let csrf = csrf_of(&page.body);
    let etag = page
        .body
        .split("name=\"etag\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let evaluate = |fields: Vec<(&'static str, String)>| {
        let api = &api;
        let session = session.clone();
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            post_form(
                api,
                &format!("{page_path}/evaluate"),
                &form(&fields),
                Some(&session),
                Some(ORIGIN),
            )
            .await
        }
    };
    let result = |body: &str| {
        body.split("id=\"result\">")
            .nth(1)
            .and_then(|r| r.split('<').next())
            .unwrap_or("none")
            .to_owned()
    };

    // The saved condition accepts the verified token; narrowed to another digest, PASS turns FAIL.
    let accepted = evaluate(vec![
        ("csrf", csrf.clone()),
        ("condition", saved.clone()),
        ("token", good.clone()),
    ])
    .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert_eq!(result(&accepted.body), "ACCEPTED", "{}", accepted.body);
    assert!(
        accepted.body.contains("Verified claims"),
        "{}",
        accepted.body
    );
    let narrowed = saved.replace(GOOD, "sha256:bbbb");
    let refused = evaluate(vec![
        ("csrf", csrf.clone()),
        ("condition", narrowed.clone()),
        ("token", good.clone()),
    ])
    .await;
    assert_eq!(result(&refused.body), "REJECTED", "{}", refused.body);
    assert!(refused.body.contains(">FAIL<"), "{}", refused.body);
    // A recorded exchange's claims stand in for the token.
    let id = page
        .body
        .split("name=\"exchange\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let recorded = evaluate(vec![
        ("csrf", csrf.clone()),
        ("condition", saved.clone()),
        ("exchange", id.clone()),
    ])
    .await;
    assert!(
        recorded
            .body
            .contains(&format!("claims recorded by exchange {id}")),
        "{}",
        recorded.body
    );
    // A token whose signature fails is judged as unverified, never accepted.
    let (head, _) = good.rsplit_once('.').unwrap();
    let forged = evaluate(vec![
        ("csrf", csrf.clone()),
        ("condition", saved.clone()),
        ("token", format!("{head}.AAAA")),
    ])
    .await;
    assert_eq!(result(&forged.body), "REJECTED", "{}", forged.body);
    assert!(forged.body.contains("Unverified:"), "{}", forged.body);
    // Markup in a condition stays text; a condition that does not compile says so.
    let xss = evaluate(vec![
        ("csrf", csrf.clone()),
        (
            "condition",
            "assertion.swname == '<script>alert(1)</script>'".into(),
        ),
        ("token", good.clone()),
    ])
    .await;
    assert!(!xss.body.contains("<script>alert"), "{}", xss.body);
    assert!(
        xss.body.contains("&#60;script&#62;alert(1)"),
        "{}",
        xss.body
    );
    let broken = evaluate(vec![
        ("csrf", csrf.clone()),
        ("condition", "assertion. ==".into()),
        ("token", good.clone()),
    ])
    .await;
    assert_eq!(broken.status, StatusCode::OK);
    assert!(broken.body.contains("does not compile"), "{}", broken.body);

    // Saving: refused without this session's token or from another origin; Bob may not.
    let save = format!("{page_path}/save");
    let (bob_session, _) = sign_in(&api, &bob).await;
    let bob_page = get(&api, page_path, Some(&bob_session)).await;
    assert_eq!(bob_page.status, StatusCode::FORBIDDEN);
    assert!(
        bob_page
            .body
            .contains("iam.workloadIdentityPoolProviders.get"),
        "{}",
        bob_page.body
    );
    assert!(!bob_page.body.contains(GOOD), "{}", bob_page.body);
    let bob_csrf = csrf_of(&get(&api, "/console/", Some(&bob_session)).await.body);
    for (who, token, origin, status) in [
        (&session, "", ORIGIN, StatusCode::FORBIDDEN),
        (&session, "not-the-token", ORIGIN, StatusCode::FORBIDDEN),
        (
            &session,
            csrf.as_str(),
            "https://evil.example",
            StatusCode::FORBIDDEN,
        ),
        (
            &bob_session,
            bob_csrf.as_str(),
            ORIGIN,
            StatusCode::FORBIDDEN,
        ),
        (&session, csrf.as_str(), ORIGIN, StatusCode::CONFLICT),
    ] {
        let stale = if status == StatusCode::CONFLICT {
            "stale"
        } else {
            etag.as_str()
        };
        let body = form(&[("csrf", token), ("condition", "true"), ("etag", stale)]);
        let page = post_form(&api, &save, &body, Some(who), Some(origin)).await;
        assert_eq!(page.status, status, "{token} from {origin}: {}", page.body);
    }
    let now = ok(&api, &alice, "GET", api_path, None).await;
    assert_eq!(now["attributeCondition"], saved.as_str(), "nothing changed");
    let body = form(&[("csrf", &csrf), ("condition", &narrowed), ("etag", &etag)]);
    let done = post_form(&api, &save, &body, Some(&session), Some(ORIGIN)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let now = ok(&api, &alice, "GET", api_path, None).await;
    assert_eq!(now["attributeCondition"], narrowed.as_str());
    assert_eq!(
        sts(&api, &number, &good).await.0,
        StatusCode::BAD_REQUEST,
        "the saved condition is in force"
    );
}
