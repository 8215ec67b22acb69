//! The console's sign-in and pages through the server's router: one-time codes, the session
//! cookie's flags, cross-site forms refused (Origin and CSRF token), the security headers,
//! and pages that show a user only what the API would.

#[path = "console/resources.rs"]
mod resources;
mod support;
#[path = "console/trust_chain.rs"]
mod trust_chain;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use serde_json::json;
use support::Api;
use tower::ServiceExt;

const ORIGIN: &str = "http://cloister.test";

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(api: &Api, req: Request<Body>) -> Page {
    let resp = api.router().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    Page {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(api: &Api, path: &str, cookie: Option<&str>) -> Page {
    let mut req = Request::get(path);
    if let Some(c) = cookie {
        req = req.header("cookie", format!("cloister_session={c}"));
    }
    send(api, req.body(Body::empty()).unwrap()).await
}

async fn post_form(
    api: &Api,
    path: &str,
    form: &str,
    cookie: Option<&str>,
    origin: Option<&str>,
) -> Page {
    let mut req = Request::post(path).header("content-type", "application/x-www-form-urlencoded");
    if let Some(c) = cookie {
        req = req.header("cookie", format!("cloister_session={c}"));
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    send(api, req.body(Body::from(form.to_owned())).unwrap()).await
}

async fn login_code(api: &Api, token: &str) -> String {
    let (status, body) = api
        .call(token, "POST", "/console/v1/loginCodes", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let url = body["url"].as_str().unwrap();
    let code = body["code"].as_str().unwrap().to_owned();
    assert_eq!(url, format!("{ORIGIN}/console/login?code={code}"));
    code
}

/// Signs in with a fresh code; returns the session cookie's value and its Set-Cookie line.
async fn sign_in(api: &Api, token: &str) -> (String, String) {
    let code = login_code(api, token).await;
    let page = post_form(
        api,
        "/console/login",
        &format!("code={code}"),
        None,
        Some(ORIGIN),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert_eq!(page.headers["location"], "/console/");
    let set = page.headers["set-cookie"].to_str().unwrap().to_owned();
    let value = set
        .strip_prefix("cloister_session=")
        .and_then(|v| v.split(';').next())
        .unwrap()
        .to_owned();
    (value, set)
}

async fn project(api: &Api, token: &str, id: &str, display_name: &str) {
    let (s, b) = api
        .call(
            token,
            "POST",
            "/v1/projects",
            Some(json!({"projectId": id, "name": display_name})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn a_one_time_code_signs_in_once_with_a_strict_http_only_cookie() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let code = login_code(&api, &alice).await;

    // The link shows the form; following it signs no one in.
    let form = get(&api, &format!("/console/login?code={code}"), None).await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains(&format!("value=\"{code}\"")),
        "{}",
        form.body
    );
    assert!(form.headers.get("set-cookie").is_none());
    // It names the account the code signs in, so a link carrying someone else's code (a
    // login CSRF) is seen for what it is before the button is pressed.
    assert!(
        form.body
            .contains("This code signs you in as <strong>alice@example.com</strong>"),
        "{}",
        form.body
    );

    let page = post_form(
        &api,
        "/console/login",
        &format!("code={code}"),
        None,
        Some(ORIGIN),
    )
    .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let set = page.headers["set-cookie"].to_str().unwrap();
    for flag in [
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
        "Max-Age=3600",
    ] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "http public URL: {set}");

    let again = post_form(
        &api,
        "/console/login",
        &format!("code={code}"),
        None,
        Some(ORIGIN),
    )
    .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    assert!(
        again.body.contains("unknown, used or expired"),
        "{}",
        again.body
    );
    assert!(again.headers.get("set-cookie").is_none());
    let wrong = post_form(&api, "/console/login", "code=guess", None, Some(ORIGIN)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);

    // An https server's cookie is Secure.
    let tls = Api::start_with(|c| c.public_url = "https://cloister.test".into()).await;
    let bob = tls.user("bob@example.com").await;
    let code = login_code_at(&tls, &bob, "https://cloister.test").await;
    let page = post_form(
        &tls,
        "/console/login",
        &format!("code={code}"),
        None,
        Some("https://cloister.test"),
    )
    .await;
    assert!(
        page.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Secure")
    );
}

async fn login_code_at(api: &Api, token: &str, origin: &str) -> String {
    let (_, body) = api
        .call(token, "POST", "/console/v1/loginCodes", None)
        .await;
    assert!(body["url"].as_str().unwrap().starts_with(origin), "{body}");
    body["code"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn cross_site_forms_change_nothing() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;

    // Login CSRF: another site's form, or one with no Origin, signs no one in.
    for origin in [Some("https://evil.example"), None] {
        let code = login_code(&api, &alice).await;
        let page = post_form(
            &api,
            "/console/login",
            &format!("code={code}"),
            None,
            origin,
        )
        .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{origin:?}");
        assert!(page.headers.get("set-cookie").is_none());
    }

    let (session, _) = sign_in(&api, &alice).await;
    let home = get(&api, "/console/", Some(&session)).await;
    assert_eq!(home.status, StatusCode::OK);
    let csrf = home
        .body
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    // Sign-out needs both this session's token and this server's Origin.
    let refused: [(&str, Option<&str>); 3] = [
        ("csrf=", Some(ORIGIN)),
        ("csrf=not-the-token", Some(ORIGIN)),
        (&format!("csrf={csrf}"), Some("https://evil.example")),
    ];
    for (form, origin) in refused {
        let page = post_form(&api, "/console/logout", form, Some(&session), origin).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{form} from {origin:?}");
        assert_eq!(
            get(&api, "/console/", Some(&session)).await.status,
            StatusCode::OK
        );
    }
    let out = post_form(
        &api,
        "/console/logout",
        &format!("csrf={csrf}"),
        Some(&session),
        Some(ORIGIN),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(
        out.headers["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let after = get(&api, "/console/", Some(&session)).await;
    assert_eq!(after.status, StatusCode::SEE_OTHER);
    assert_eq!(after.headers["location"], "/console/login");
}

#[tokio::test]
async fn pages_show_a_user_only_what_the_api_would_and_names_stay_text() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project(&api, &alice, "primus-bank", "<script>alert(1)</script>").await;
    project(&api, &bob, "secundus-bank", "Secundus").await;
    let (session, _) = sign_in(&api, &alice).await;

    let home = get(&api, "/console/", Some(&session)).await;
    assert!(
        home.body.contains("/console/projects/primus-bank"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("secundus-bank"), "{}", home.body);
    assert!(
        home.body
            .contains("&#60;script&#62;alert(1)&#60;/script&#62;"),
        "{}",
        home.body
    );
    assert!(!home.body.contains("<script>"), "{}", home.body);
    let csp = home.headers["content-security-policy"].to_str().unwrap();
    // Scripts only from this server's own files: none inline, none evaluated.
    assert!(
        csp.starts_with("default-src 'none'")
            && csp.contains("script-src 'self';")
            && !csp.contains("unsafe"),
        "{csp}"
    );
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(home.headers[name], value, "{name}");
    }

    let own = get(&api, "/console/projects/primus-bank", Some(&session)).await;
    assert_eq!(own.status, StatusCode::OK);
    assert!(own.body.contains("roles/owner") && own.body.contains("user:alice@example.com"));
    // Another project's page by URL: the authorizer's refusal, the same for a missing one.
    for other in ["secundus-bank", "no-such-project"] {
        let page = get(&api, &format!("/console/projects/{other}"), Some(&session)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{other}");
        assert!(
            page.body
                .contains("Permission &#39;resourcemanager.projects.get&#39; denied"),
            "{}",
            page.body
        );
    }
    let bad = get(&api, "/console/projects/%3Cb%3E", Some(&session)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(!bad.body.contains("<b>"), "{}", bad.body);

    // No session, or a made-up one: the sign-in page.
    for cookie in [None, Some("made-up")] {
        let page = get(&api, "/console/", cookie).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER);
        assert_eq!(page.headers["location"], "/console/login");
    }
    let root = get(&api, "/", None).await;
    assert_eq!(root.headers["location"], "/console/");
    let css = get(
        &api,
        &format!("/console/static/{}/console.css", env!("CARGO_PKG_VERSION")),
        None,
    )
    .await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.body.contains("prefers-color-scheme: dark"));
}

#[tokio::test]
async fn an_instance_page_shows_its_state_and_console_to_whoever_may_read_them() {
    use cloister_store::{ConfidentialType, InstanceRecord, InstanceStatus};
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project(&api, &alice, "secundus-bank", "Secundus").await;
    let instance = InstanceRecord {
        project_id: cloister_domain::ProjectId::parse("secundus-bank").unwrap(),
        zone: "us-west1-b".into(),
        name: "workload-vm".into(),
        id: 7,
        service_account: "workload-sa@secundus-bank.iam.gserviceaccount.com".into(),
        metadata: [(
            "tee-image-reference".to_owned(),
            "h/p/r/i:<b>latest</b>".to_owned(),
        )]
        .into(),
        confidential_type: ConfidentialType::Vtpm,
        status: InstanceStatus::Terminated,
        create_time: time::OffsetDateTime::now_utc(),
    };
    api.server
        .state
        .store
        .create_instance(&instance, None)
        .await
        .unwrap();
    let path = "/console/projects/secundus-bank/zones/us-west1-b/instances/workload-vm";

    let (session, _) = sign_in(&api, &alice).await;
    let project_page = get(&api, "/console/projects/secundus-bank", Some(&session)).await;
    assert!(project_page.body.contains(path), "{}", project_page.body);
    let page = get(&api, path, Some(&session)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    for text in [
        "TERMINATED",
        "VTPM",
        "workload-sa@secundus-bank",
        "&#60;b&#62;latest",
    ] {
        assert!(page.body.contains(text), "{text}: {}", page.body);
    }
    assert!(page.body.contains("Serial console output"), "{}", page.body);
    // A finished instance does not reload itself.
    assert!(
        !page.body.contains("http-equiv=\"refresh\""),
        "{}",
        page.body
    );

    // Bob, with no role on the project, is refused by URL.
    let (bob_session, _) = sign_in(&api, &bob).await;
    let refused = get(&api, path, Some(&bob_session)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.body.contains("compute.instances.get"),
        "{}",
        refused.body
    );
    assert!(!refused.body.contains("workload-sa"), "{}", refused.body);

    // A running instance's page follows its console with our own script (and, without
    // script, reloads itself); the script reads only the bytes after those shown.
    let running = InstanceRecord {
        name: "running-vm".into(),
        id: 8,
        status: InstanceStatus::Running,
        ..instance
    };
    api.server
        .state
        .store
        .create_instance(&running, None)
        .await
        .unwrap();
    let path = "/console/projects/secundus-bank/zones/us-west1-b/instances/running-vm";
    let page = get(&api, path, Some(&session)).await;
    let script = format!("/console/static/{}/console.js", env!("CARGO_PKG_VERSION"));
    for text in [
        format!("<script src=\"{script}\" defer></script>"),
        "<noscript><meta http-equiv=\"refresh\" content=\"3\"></noscript>".to_owned(),
        format!("data-follow=\"{path}/serial\" data-next=\"0\""),
    ] {
        assert!(page.body.contains(&text), "{text}: {}", page.body);
    }
    let js = get(&api, &script, None).await;
    assert_eq!(js.headers["content-type"], "text/javascript; charset=utf-8");
    assert!(js.body.contains("createTextNode") && !js.body.contains("innerHTML"));
    let serial = get(&api, &format!("{path}/serial?start=5"), Some(&session)).await;
    assert_eq!(serial.status, StatusCode::OK, "{}", serial.body);
    let out: serde_json::Value = serde_json::from_str(&serial.body).unwrap();
    assert_eq!(
        out,
        json!({"contents": "", "next": 0, "running": true, "status": "RUNNING"})
    );
    let refused = get(&api, &format!("{path}/serial"), Some(&bob_session)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused
            .body
            .contains("compute.instances.getSerialPortOutput"),
        "{}",
        refused.body
    );
}

#[tokio::test]
async fn a_binding_changes_only_from_the_owners_form_at_the_policy_version_shown() {
    let api = Api::start().await;
    let alice = api.user("alice@example.com").await;
    let bob = api.user("bob@example.com").await;
    project(&api, &alice, "primus-bank", "Primus").await;
    let (session, _) = sign_in(&api, &alice).await;
    let field = |body: &str, name: &str| {
        body.split(&format!("name=\"{name}\" value=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned()
    };
    let page = get(&api, "/console/projects/primus-bank", Some(&session)).await;
    let (csrf, etag) = (field(&page.body, "csrf"), field(&page.body, "etag"));
    assert!(!etag.is_empty(), "{}", page.body);
    let path = "/console/projects/primus-bank/iam";
    let change = |csrf: &str, etag: &str, change: &str, role: &str, member: &str| {
        serde_urlencoded::to_string([
            ("csrf", csrf),
            ("etag", etag),
            ("change", change),
            ("role", role),
            ("member", member),
        ])
        .unwrap()
    };
    let members = || async {
        let (_, p) = api
            .call(
                &alice,
                "POST",
                "/v1/projects/primus-bank:getIamPolicy",
                None,
            )
            .await;
        p["bindings"].to_string()
    };
    let add_bob = change(&csrf, &etag, "add", "roles/viewer", "user:bob@example.com");

    // Refused: no token, another origin, and Bob (no setIamPolicy) with his own session's.
    let (bob_session, _) = sign_in(&api, &bob).await;
    let bob_csrf = field(
        &get(&api, "/console/", Some(&bob_session)).await.body,
        "csrf",
    );
    let bobs = change(
        &bob_csrf,
        &etag,
        "add",
        "roles/owner",
        "user:bob@example.com",
    );
    // Bob removing a binding Alice holds and one nobody holds: the same refusal, so the
    // answer tells a stranger nothing of who holds what.
    let probe = |member: &str| change(&bob_csrf, &etag, "remove", "roles/owner", member);
    let mut stranger_pages = Vec::new();
    for (body, who, origin) in [
        (
            change("", &etag, "add", "roles/viewer", "user:bob@example.com"),
            &session,
            ORIGIN,
        ),
        (add_bob.clone(), &session, "https://evil.example"),
        (bobs, &bob_session, ORIGIN),
        (probe("user:alice@example.com"), &bob_session, ORIGIN),
        (probe("user:nobody@example.com"), &bob_session, ORIGIN),
    ] {
        let page = post_form(&api, path, &body, Some(who), Some(origin)).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{body}: {}", page.body);
        if body.contains("change=remove") {
            stranger_pages.push(page.body);
        }
    }
    assert_eq!(stranger_pages[0], stranger_pages[1]);
    assert!(!members().await.contains("bob@"), "nothing changed");

    let done = post_form(&api, path, &add_bob, Some(&session), Some(ORIGIN)).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(members().await.contains("user:bob@example.com"));
    // The version the page showed is gone: a second change from it is refused.
    let stale = change(
        &csrf,
        &etag,
        "remove",
        "roles/viewer",
        "user:bob@example.com",
    );
    let page = post_form(&api, path, &stale, Some(&session), Some(ORIGIN)).await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    let page = get(&api, "/console/projects/primus-bank", Some(&session)).await;
    let etag = field(&page.body, "etag");
    let cases = [
        (
            "remove",
            "roles/owner",
            "user:alice@example.com",
            StatusCode::BAD_REQUEST,
        ), // the last owner
        (
            "add",
            "roles/viewer",
            "user:<script>x</script>",
            StatusCode::BAD_REQUEST,
        ),
        (
            "remove",
            "roles/editor",
            "user:bob@example.com",
            StatusCode::BAD_REQUEST,
        ), // no such binding
        (
            "remove",
            "roles/viewer",
            "user:bob@example.com",
            StatusCode::SEE_OTHER,
        ),
    ];
    for (what, role, member, status) in cases {
        let body = change(&csrf, &etag, what, role, member);
        let page = post_form(&api, path, &body, Some(&session), Some(ORIGIN)).await;
        assert_eq!(page.status, status, "{role} {member}: {}", page.body);
        assert!(!page.body.contains("<script>"), "{}", page.body);
    }
    assert!(!members().await.contains("bob@"));
}
