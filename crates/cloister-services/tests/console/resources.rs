//! A project's resources in the console: each section of its page follows the user's
//! permissions; a bucket's objects are listed, downloaded only as attachments (a tenant's HTML
//! never renders in the console's origin) and uploaded through a form that is refused, before
//! a byte is stored, without the session's CSRF token, from another origin, or without
//! `storage.objects.create`; a repository lists its images' tags and digests.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::support::Api;
use super::{ORIGIN, get, project, send, sign_in};

async fn ok(api: &Api, token: &str, method: &str, path: &str, body: Option<Value>) {
    let (s, b) = api.call(token, method, path, body).await;
    assert_eq!(s, StatusCode::OK, "{method} {path}: {b}");
}

async fn grant(api: &Api, owner: &str, member: &str, role: &str) {
    let path = "/v1/projects/primus-bank";
    let (_, mut policy) = api
        .call(owner, "POST", &format!("{path}:getIamPolicy"), None)
        .await;
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": role, "members": [member]}));
    ok(
        api,
        owner,
        "POST",
        &format!("{path}:setIamPolicy"),
        Some(json!({"policy": policy})),
    )
    .await;
}

/// The session's CSRF token, from a page's form.
fn csrf(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned()
}

/// The console's upload form as a browser sends it: fields in `fields`' order.
async fn upload(api: &Api, cookie: &str, origin: Option<&str>, fields: &[(&str, &str)]) -> u16 {
    let boundary = "cloister-test-boundary";
    let mut body = String::new();
    for (name, value) in fields {
        let file = if *name == "file" {
            "; filename=\"weights.bin\"\r\nContent-Type: text/html"
        } else {
            ""
        };
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{file}\r\n\r\n{value}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    let mut req = Request::post("/console/buckets/primus-models/upload")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .header("cookie", format!("cloister_session={cookie}"));
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    let page = send(api, req.body(Body::from(body)).unwrap()).await;
    if page.status == StatusCode::SEE_OTHER {
        assert_eq!(page.headers["location"], "/console/buckets/primus-models");
    }
    page.status.as_u16()
}

async fn object(api: &Api, token: &str, name: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(format!("/storage/v1/b/primus-models/o/{name}?alt=media"))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = tower::ServiceExt::oneshot(api.router(), req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, bytes.to_vec())
}

#[tokio::test]
async fn a_bucket_is_browsed_downloaded_as_files_and_uploaded_to_with_the_apis_checks() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project(&api, &alice, "primus-bank", "Primus").await;
    ok(
        &api,
        &alice,
        "POST",
        "/storage/v1/b?project=primus-bank",
        Some(json!({"name": "primus-models"})),
    )
    .await;
    // A tenant's HTML, with a name that is markup too.
    let page_html = "<script>alert(document.cookie)</script>";
    let put = Request::post(
        "/upload/storage/v1/b/primus-models/o?uploadType=media&name=%3Cb%3Epage.html",
    )
    .header("authorization", format!("Bearer {alice}"))
    .header("content-type", "text/html")
    .body(Body::from(page_html))
    .unwrap();
    let (s, b) = api.send(put).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (session, _) = sign_in(&api, &alice).await;

    let project_page = get(&api, "/console/projects/primus-bank", Some(&session)).await;
    assert!(
        project_page
            .body
            .contains("href=\"/console/buckets/primus-models\""),
        "{}",
        project_page.body
    );
    let bucket = get(&api, "/console/buckets/primus-models", Some(&session)).await;
    assert_eq!(bucket.status, StatusCode::OK, "{}", bucket.body);
    assert!(
        bucket
            .body
            .contains("/console/buckets/primus-models/download?name=%3Cb%3Epage.html")
            && bucket.body.contains("&#60;b&#62;page.html")
            && !bucket.body.contains("<b>"),
        "{}",
        bucket.body
    );
    let download = get(
        &api,
        "/console/buckets/primus-models/download?name=%3Cb%3Epage.html",
        Some(&session),
    )
    .await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.body, page_html);
    assert_eq!(download.headers["content-type"], "application/octet-stream");
    assert_eq!(
        download.headers["content-disposition"],
        "attachment; filename*=UTF-8''%3Cb%3Epage.html"
    );
    assert_eq!(download.headers["x-content-type-options"], "nosniff");

    // Bob, by URL: the API's refusals, and nothing read or written.
    let (bob_session, _) = sign_in(&api, &bob).await;
    for path in [
        "/console/buckets/primus-models",
        "/console/buckets/primus-models/download?name=%3Cb%3Epage.html",
        "/console/projects/primus-bank",
    ] {
        let page = get(&api, path, Some(&bob_session)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.body);
        assert!(!page.body.contains(page_html), "{}", page.body);
    }
    let bob_csrf = csrf(&get(&api, "/console/", Some(&bob_session)).await.body);

    let token = csrf(&bucket.body);
    let weights = "model weights";
    let refused = [
        // No Origin, another origin, no token, a wrong token, the token after the file.
        (
            None,
            vec![("csrf", token.as_str()), ("file", weights)],
            &session,
        ),
        (
            Some("https://evil.example"),
            vec![("csrf", token.as_str()), ("file", weights)],
            &session,
        ),
        (Some(ORIGIN), vec![("file", weights)], &session),
        (
            Some(ORIGIN),
            vec![("csrf", "guess"), ("file", weights)],
            &session,
        ),
        (
            Some(ORIGIN),
            vec![("file", weights), ("csrf", token.as_str())],
            &session,
        ),
        // Bob's own session and token: no storage.objects.create on the bucket.
        (
            Some(ORIGIN),
            vec![("csrf", bob_csrf.as_str()), ("file", weights)],
            &bob_session,
        ),
    ];
    for (origin, fields, who) in refused {
        let status = upload(&api, who, origin, &fields).await;
        assert_eq!(status, 403, "{origin:?} {fields:?}");
        let (s, _) = object(&api, &alice, "weights.bin").await;
        assert_eq!(s, StatusCode::NOT_FOUND, "nothing stored: {fields:?}");
    }
    let status = upload(
        &api,
        &session,
        Some(ORIGIN),
        &[("csrf", &token), ("name", ""), ("file", weights)],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(
        object(&api, &alice, "weights.bin").await,
        (StatusCode::OK, weights.as_bytes().to_vec())
    );
    // A name chosen in the form; a bad one is the API's refusal, not a 500.
    let status = upload(
        &api,
        &session,
        Some(ORIGIN),
        &[("csrf", &token), ("name", "models/v2.bin"), ("file", "v2")],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(object(&api, &alice, "models%2Fv2.bin").await.1, b"v2");
    let status = upload(
        &api,
        &session,
        Some(ORIGIN),
        &[("csrf", &token), ("name", ".."), ("file", "x")],
    )
    .await;
    assert_eq!(status, 400);
    let listed = get(
        &api,
        "/console/buckets/primus-models?prefix=models%2F",
        Some(&session),
    )
    .await;
    assert!(
        listed.body.contains("models/v2.bin") && !listed.body.contains("weights.bin"),
        "{}",
        listed.body
    );
}

#[tokio::test]
async fn a_projects_sections_follow_each_users_permissions() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let carol = api.user("carol@example.com").await;
    project(&api, &alice, "primus-bank", "Primus").await;
    let v1 = "/v1/projects/primus-bank";
    ok(
        &api,
        &alice,
        "POST",
        &format!("{v1}/serviceAccounts"),
        Some(
            json!({"accountId": "primus-sa", "serviceAccount": {"displayName": "<i>Workload</i>"}}),
        ),
    )
    .await;
    let pools = format!("{v1}/locations/global/workloadIdentityPools");
    ok(
        &api,
        &alice,
        "POST",
        &format!("{pools}?workloadIdentityPoolId=primus-pool"),
        Some(json!({})),
    )
    .await;
    ok(
        &api,
        &alice,
        "POST",
        &format!(
            "{pools}/primus-pool/providers?workloadIdentityPoolProviderId=attestation-verifier"
        ),
        Some(
            json!({"attributeMapping": {"google.subject": "assertion.sub"},
            "oidc": {"issuerUri": ORIGIN}}),
        ),
    )
    .await;
    ok(
        &api,
        &alice,
        "POST",
        &format!("{v1}/locations/global/keyRings?keyRingId=primus-ring"),
        Some(json!({})),
    )
    .await;
    ok(
        &api,
        &alice,
        "POST",
        &format!("{v1}/locations/global/keyRings/primus-ring/cryptoKeys?cryptoKeyId=model-key"),
        Some(json!({"purpose": "ENCRYPT_DECRYPT"})),
    )
    .await;
    ok(
        &api,
        &alice,
        "POST",
        &format!("{v1}/locations/us/repositories?repositoryId=workloads"),
        Some(json!({"format": "DOCKER"})),
    )
    .await;
    grant(
        &api,
        &alice,
        "user:bob@example.com",
        "roles/resourcemanager.projectIamAdmin",
    )
    .await;
    grant(&api, &alice, "user:carol@example.com", "roles/viewer").await;

    // What each section shows when listed, and a word of it that only a listing shows.
    let sections = [
        (
            "id=\"service-accounts\"",
            "primus-sa@primus-bank.iam.gserviceaccount.com",
        ),
        (
            "id=\"pools\"",
            "/providers/attestation-verifier\">attestation-verifier</a>",
        ),
        ("id=\"buckets\"", "No buckets."),
        ("id=\"kms\"", "model-key"),
        (
            "id=\"repositories\"",
            "/locations/us/repositories/workloads\">workloads</a>",
        ),
        ("id=\"instances\"", "No instances."),
    ];
    // Alice owns it and Carol views it: every section. Bob administers only its IAM policy.
    for (token, listed) in [(&alice, true), (&carol, true), (&bob, false)] {
        let (session, _) = sign_in(&api, token).await;
        let page = get(&api, "/console/projects/primus-bank", Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.body.contains("roles/viewer"), "the policy is shown");
        for (heading, item) in sections {
            assert_eq!(
                page.body.contains(heading),
                listed,
                "{heading}: {}",
                page.body
            );
            assert_eq!(page.body.contains(item), listed, "{item}");
        }
        assert!(page.body.contains("&#60;i&#62;Workload") == listed && !page.body.contains("<i>"));
    }
    let (session, _) = sign_in(&api, &carol).await;
    let repo = get(
        &api,
        "/console/projects/primus-bank/locations/us/repositories/workloads",
        Some(&session),
    )
    .await;
    assert_eq!(repo.status, StatusCode::OK, "{}", repo.body);
    assert!(repo.body.contains("No images."), "{}", repo.body);
    let (session, _) = sign_in(&api, &bob).await;
    let repo = get(
        &api,
        "/console/projects/primus-bank/locations/us/repositories/workloads",
        Some(&session),
    )
    .await;
    assert_eq!(repo.status, StatusCode::FORBIDDEN, "{}", repo.body);
}
