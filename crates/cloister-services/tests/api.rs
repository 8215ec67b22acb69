//! Foundation APIs: projects, users, policies, tokens, refusals.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use support::{Api, message};

#[tokio::test]
async fn healthz_answers() {
    let api = Api::start().await;
    let (s, b) = api
        .send(Request::get("/healthz").body(Body::empty()).unwrap())
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({"status": "ok"})));
}

#[tokio::test]
async fn bad_project_ids_are_refused_with_the_rule() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    for bad in [
        "Bad_Id",
        "short",
        "../../etc",
        "-starts-with-hyphen",
        "a-very-long-project-id-over-thirty",
    ] {
        let (s, b) = api
            .call(
                &alice,
                "POST",
                "/v1/projects",
                Some(json!({"projectId": bad})),
            )
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert_eq!(b["error"]["status"], "INVALID_ARGUMENT");
        assert!(message(&b).contains("invalid project id"), "{b}");
    }
    let (_, list) = api.call(&alice, "GET", "/v1/projects", None).await;
    assert_eq!(list["projects"], json!([]), "nothing was created");
}

#[tokio::test]
async fn duplicate_projects_are_refused() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    let (s, op) = api
        .call(
            &alice,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "alpha-proj"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(op["done"], true);
    let number = op["response"]["projectNumber"].as_str().unwrap();
    assert_eq!(number.len(), 12, "project numbers have 12 digits: {number}");
    let (s, b) = api
        .call(
            &bob,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "alpha-proj"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(message(&b).contains("already exists"));
}

#[tokio::test]
async fn a_user_creates_projects_up_to_their_quota_and_a_deleted_one_frees_its_place() {
    // Per-project quotas (storage, instances) bound a user only if their projects are bounded.
    let api = Api::start_with(|c| c.user_project_quota = Some(2)).await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project_with_owner(&api, &alice, "alpha-one").await;
    project_with_owner(&api, &alice, "alpha-two").await;
    let create = |token: &str, id: &str| {
        let token = token.to_owned();
        let body = json!({"projectId": id});
        let api = &api;
        async move { api.call(&token, "POST", "/v1/projects", Some(body)).await }
    };
    let (s, b) = create(&alice, "alpha-three").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["status"], "FAILED_PRECONDITION", "{b}");
    assert!(
        message(&b).contains("user:alice@example.com has already created 2 projects"),
        "{b}"
    );
    let (_, list) = api.call(&alice, "GET", "/v1/projects", None).await;
    assert_eq!(
        list["projects"].as_array().unwrap().len(),
        2,
        "nothing was created"
    );
    // Bob's quota is his own; a deleted project frees its place.
    project_with_owner(&api, &bob, "beta-one").await;
    let (s, b) = api
        .call(&alice, "DELETE", "/v1/projects/alpha-one", None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(create(&alice, "alpha-three").await.0, StatusCode::OK);
}

async fn project_with_owner(api: &Api, token: &str, id: &str) {
    let (s, b) = api
        .call(
            token,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": id})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

async fn set_policy(api: &Api, token: &str, id: &str, policy: Value) -> (StatusCode, Value) {
    api.call(
        token,
        "POST",
        &format!("/v1/projects/{id}:setIamPolicy"),
        Some(json!({"policy": policy})),
    )
    .await
}

#[tokio::test]
async fn unknown_roles_malformed_members_and_unknown_users_are_refused_and_change_nothing() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    project_with_owner(&api, &alice, "alpha-proj").await;
    let (_, before) = api
        .call(&alice, "POST", "/v1/projects/alpha-proj:getIamPolicy", None)
        .await;
    let owner = json!({"role": "roles/owner", "members": ["user:alice@example.com"]});
    let cases = [
        (
            json!({"bindings": [owner, {"role": "roles/superuser", "members": ["user:alice@example.com"]}]}),
            "roles/superuser",
        ),
        (
            json!({"bindings": [owner, {"role": "roles/viewer", "members": ["bob@example.com"]}]}),
            "invalid member",
        ),
        (
            json!({"bindings": [owner, {"role": "roles/viewer", "members": ["principalSet://iam.googleapis.com/projects/primus/locations/global/workloadIdentityPools/p/*"]}]}),
            "not a project number",
        ),
        (
            json!({"bindings": [owner, {"role": "roles/viewer", "members": ["user:ghost@example.com"]}]}),
            "ghost@example.com does not exist",
        ),
        (
            json!({"bindings": [{"role": "roles/viewer", "members": ["user:alice@example.com"]}]}),
            "without an owner",
        ),
        (
            json!({"bindings": [owner, {"role": "roles/viewer", "members": []}]}),
            "no members",
        ),
    ];
    for (policy, why) in cases {
        let (s, b) = set_policy(&api, &alice, "alpha-proj", policy).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{why}: {b}");
        assert!(message(&b).contains(why), "{why}: {b}");
    }
    let (_, after) = api
        .call(&alice, "POST", "/v1/projects/alpha-proj:getIamPolicy", None)
        .await;
    assert_eq!(
        before, after,
        "refused changes leave the policy and its etag untouched"
    );
}

#[tokio::test]
async fn a_stale_etag_is_aborted() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    api.user("bob@example.com").await;
    project_with_owner(&api, &alice, "alpha-proj").await;
    let (_, mut policy) = api
        .call(&alice, "POST", "/v1/projects/alpha-proj:getIamPolicy", None)
        .await;
    let (s, _) = set_policy(&api, &alice, "alpha-proj", policy.clone()).await;
    assert_eq!(s, StatusCode::OK);
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/viewer", "members": ["user:bob@example.com"]}));
    let (s, b) = set_policy(&api, &alice, "alpha-proj", policy).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert_eq!(b["error"]["status"], "ABORTED");
    assert!(message(&b).contains("Read it again and retry"));
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_with_a_useful_message() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let huge = json!({"projectId": "alpha-proj", "name": "x".repeat(2 * 1024 * 1024)});
    let (s, b) = api.call(&alice, "POST", "/v1/projects", Some(huge)).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    assert!(message(&b).contains("larger than this API accepts"), "{b}");
    // Google's reason for a 413, and a status that says what happened (not INVALID_ARGUMENT).
    assert_eq!(b["error"]["errors"][0]["reason"], "uploadTooLarge", "{b}");
    assert_eq!(b["error"]["status"], "PAYLOAD_TOO_LARGE", "{b}");
    let req = Request::post("/v1/projects")
        .header("authorization", format!("Bearer {alice}"))
        .body(Body::from("{\"projectId\": "))
        .unwrap();
    let (s, b) = api.send(req).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        message(&b).contains("Invalid JSON payload") && message(&b).contains("line 1"),
        "{b}"
    );
    let (s, b) = api
        .call(
            &alice,
            "POST",
            "/v1/projects",
            Some(json!({"name": "no id"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("projectId"), "{b}");
    let (_, list) = api.call(&alice, "GET", "/v1/projects", None).await;
    assert_eq!(list["projects"], json!([]));
}

#[tokio::test]
async fn missing_garbage_and_tampered_tokens_get_401() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let (s, b) = api
        .send(Request::get("/v1/projects").body(Body::empty()).unwrap())
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(
        message(&b).contains("missing required authentication credential"),
        "{b}"
    );
    let (s, b) = api.call("garbage", "GET", "/v1/projects", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&b).contains("the access token is malformed"), "{b}");
    // Swap the payload of alice's token for the admin's: the signature no longer matches.
    let a: Vec<&str> = alice.split('.').collect();
    let admin: Vec<&str> = api.admin.split('.').collect();
    let tampered = format!("{}.{}.{}", a[0], admin[1], a[2]);
    let (s, b) = api.call(&tampered, "GET", "/cloister/v1/users", None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(message(&b).contains("signature does not verify"), "{b}");
}

#[tokio::test]
async fn wrong_credentials_get_invalid_client_and_an_audit_entry() {
    let api = Api::start().await;
    let req = Request::post("/oauth2/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(
            "grant_type=client_credentials&client_id=cred-nope&client_secret=guess",
        ))
        .unwrap();
    let (s, b) = api.send(req).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(b["error"], "invalid_client");
    let (_, log) = api
        .call(
            &api.admin,
            "GET",
            "/cloister/v1/auditLogs?decision=deny",
            None,
        )
        .await;
    let entries = log["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["principal"] == "credential:cred-nope"),
        "{log}"
    );
}

#[tokio::test]
async fn only_platform_admins_manage_users() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let (s, b) = api
        .call(
            &alice,
            "POST",
            "/cloister/v1/users",
            Some(json!({"email": "eve@example.com"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = api
        .call(
            &alice,
            "POST",
            "/cloister/v1/users/alice@example.com/credentials",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, users) = api
        .call(&api.admin, "GET", "/cloister/v1/users", None)
        .await;
    assert_eq!(
        users["users"].as_array().unwrap().len(),
        2,
        "eve was not created"
    );
    let (s, b) = api
        .call(
            &api.admin,
            "POST",
            "/cloister/v1/users",
            Some(json!({"email": "not-an-email"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("invalid email"), "{b}");
}

#[tokio::test]
async fn test_iam_permissions_reports_exactly_what_is_held() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project_with_owner(&api, &alice, "alpha-proj").await;
    let (_, mut policy) = api
        .call(&alice, "POST", "/v1/projects/alpha-proj:getIamPolicy", None)
        .await;
    policy["bindings"]
        .as_array_mut()
        .unwrap()
        .push(json!({"role": "roles/viewer", "members": ["user:bob@example.com"]}));
    assert_eq!(
        set_policy(&api, &alice, "alpha-proj", policy).await.0,
        StatusCode::OK
    );
    let ask = json!({"permissions": ["resourcemanager.projects.get", "resourcemanager.projects.setIamPolicy"]});
    let (_, b) = api
        .call(
            &bob,
            "POST",
            "/v1/projects/alpha-proj:testIamPermissions",
            Some(ask.clone()),
        )
        .await;
    assert_eq!(b, json!({"permissions": ["resourcemanager.projects.get"]}));
    let (_, a) = api
        .call(
            &alice,
            "POST",
            "/v1/projects/alpha-proj:testIamPermissions",
            Some(ask),
        )
        .await;
    assert_eq!(a["permissions"].as_array().unwrap().len(), 2);
    let bad = json!({"permissions": ["storage.objects.steal"]});
    let (s, b) = api
        .call(
            &bob,
            "POST",
            "/v1/projects/alpha-proj:testIamPermissions",
            Some(bad),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(message(&b).contains("storage.objects.steal"));
}

#[tokio::test]
async fn unknown_paths_get_googles_404_shape() {
    let api = Api::start().await;
    let (s, b) = api.call(&api.admin, "GET", "/v1/nothing", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(b["error"]["code"], 404);
    let (s, _) = api
        .call(&api.admin, "POST", "/v1/projects/alpha-proj:steal", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_project_is_deleted_by_its_owner_only_once_empty_and_its_id_is_never_reused() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project_with_owner(&api, &alice, "alpha-proj").await;
    let policy = json!({"bindings": [
        {"role": "roles/owner", "members": ["user:alice@example.com"]},
        {"role": "roles/editor", "members": ["user:bob@example.com"]},
    ]});
    assert_eq!(
        set_policy(&api, &alice, "alpha-proj", policy).await.0,
        StatusCode::OK
    );
    let (s, b) = api
        .call(
            &alice,
            "POST",
            "/v1/projects/alpha-proj/serviceAccounts",
            Some(json!({"accountId": "model-sa"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = api
        .call(
            &alice,
            "POST",
            "/storage/v1/b?project=alpha-proj",
            Some(json!({"name": "alpha-models"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");

    // An editor may change resources but not delete the project, as in Google.
    let (s, b) = api
        .call(&bob, "DELETE", "/v1/projects/alpha-proj", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(
        message(&b).contains("resourcemanager.projects.delete"),
        "{b}"
    );
    // The owner is refused while it holds anything, and told what.
    let (s, b) = api
        .call(&alice, "DELETE", "/v1/projects/alpha-proj", None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(b["error"]["status"], "FAILED_PRECONDITION");
    assert!(
        message(&b).starts_with(
            "project alpha-proj still holds buckets alpha-models; service accounts model-sa@alpha-proj.iam.gserviceaccount.com"
        ),
        "{b}"
    );
    let (s, _) = api
        .call(&alice, "GET", "/v1/projects/alpha-proj", None)
        .await;
    assert_eq!(s, StatusCode::OK, "nothing was deleted");

    for path in [
        "/storage/v1/b/alpha-models",
        "/v1/projects/alpha-proj/serviceAccounts/model-sa@alpha-proj.iam.gserviceaccount.com",
    ] {
        let (s, b) = api.call(&alice, "DELETE", path, None).await;
        assert!(s.is_success(), "{path}: {s} {b}");
    }
    let (s, b) = api
        .call(&alice, "DELETE", "/v1/projects/alpha-proj", None)
        .await;
    assert_eq!((s, b), (StatusCode::OK, json!({})));
    let (_, list) = api.call(&alice, "GET", "/v1/projects", None).await;
    assert_eq!(list["projects"], json!([]));
    // Gone with its policy: no one has access to it any more.
    let (s, _) = api
        .call(&alice, "GET", "/v1/projects/alpha-proj", None)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Its id is never another project's (grants elsewhere may still name it).
    let (s, b) = api
        .call(
            &bob,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": "alpha-proj"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(message(&b).contains("never reused"), "{b}");
}
