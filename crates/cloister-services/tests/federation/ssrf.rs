//! Providers whose issuer points inside the network (issue 18, item 5): discovery and key
//! fetches go only to https on public addresses unless the admin allow-lists a host, never
//! follow a redirect off the issuer's origin, and never repeat what the target answered.
//! Real HTTP servers on loopback stand for the internal service and for the issuers.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::Request as AxumRequest;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

use super::*;

const SECRET: &str = "SECRET-INTERNAL-DATA";
const DISCOVERY: &str = "/.well-known/openid-configuration";

/// Serves `router` on loopback; returns its base URL and a count of requests it got.
async fn serve(router: axum::Router) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let router = router.layer(middleware::from_fn(move |req: AxumRequest, next: Next| {
        counter.fetch_add(1, Ordering::SeqCst);
        next.run(req)
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (base, hits)
}

/// An internal service: answers anything with a secret.
async fn internal_service() -> (String, Arc<AtomicUsize>) {
    serve(axum::Router::new().fallback(|| async { SECRET })).await
}

/// Creates a provider trusting `issuer` (keys fetched, none inline) in Primus's pool; returns
/// the operation and the STS audience.
async fn provider(p: &Primus, id: &str, issuer: &str) -> (Value, String) {
    let body = json!({
        "attributeMapping": {"google.subject": "assertion.sub"},
        "oidc": {"issuerUri": issuer, "allowedAudiences": [STS_AUDIENCE]},
    });
    let path = format!(
        "/v1/projects/primus-bank/locations/global/workloadIdentityPools/primus-pool/providers?workloadIdentityPoolProviderId={id}"
    );
    let (s, op) = p.api.call(&p.alice, "POST", &path, Some(body)).await;
    assert_eq!(s, StatusCode::OK, "{issuer}: {op}");
    let audience = format!(
        "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/primus-pool/providers/{id}",
        p.number
    );
    (op, audience)
}

async fn exchange(p: &Primus, audience: &str, issuer: &str) -> (StatusCode, Value) {
    let mut c = claims();
    c["iss"] = json!(issuer);
    p.sts_for(audience, &rsa(&c)).await
}

fn warning(op: &Value) -> String {
    op["warnings"][0].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn internal_addresses_and_plain_http_are_never_fetched() {
    let p = Primus::setup().await;
    let (internal, hits) = internal_service().await;
    let port = internal.rsplit(':').next().unwrap().to_owned();
    let issuers = [
        (internal.clone(), "plain http"),
        (format!("https://127.0.0.1:{port}"), "non-public address"),
        (format!("http://localhost:{port}"), "plain http"),
        (format!("https://localhost:{port}"), "non-public address"),
        ("https://169.254.169.254".to_owned(), "non-public address"),
        (format!("https://[::1]:{port}"), "non-public address"),
        (format!("https://0.0.0.0:{port}"), "non-public address"),
        ("https://10.0.0.1".to_owned(), "non-public address"),
        (
            format!("https://[::ffff:127.0.0.1]:{port}"),
            "non-public address",
        ),
    ];
    for (i, (issuer, why)) in issuers.iter().enumerate() {
        // Stored (Google stores any issuer), with a warning saying why it will not work.
        let (op, audience) = provider(&p, &format!("internal-{i}"), issuer).await;
        let w = warning(&op);
        assert!(
            w.contains("is not fetched") && w.contains(why),
            "{issuer}: {w}"
        );
        assert!(w.contains(issuer.as_str()), "{issuer}: {w}");

        let resp = exchange(&p, &audience, issuer).await;
        assert_oauth_error(&resp, "invalid_grant", "is not fetched");
        assert!(!resp.1.to_string().contains(SECRET), "{}", resp.1);
    }
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the internal service was reached"
    );

    // This Cloister as issuer: its keys are read in process, nothing to warn about.
    let (op, _) = provider(&p, "ourselves", "http://cloister.test").await;
    assert!(op.get("warnings").is_none(), "{op}");
}

#[tokio::test]
async fn allow_listed_issuers_work_but_cannot_lead_fetches_elsewhere() {
    let (internal, internal_hits) = internal_service().await;
    let jwks = String::from_utf8(fixture("issuer-jwks.json")).unwrap();
    let internal_discovery = format!("{internal}{DISCOVERY}");
    let internal_keys = format!("{internal}/keys");
    // The issuer's base URL is only known once it listens: discovery documents take it from
    // the request's Host.
    let doc = |host: &str, issuer: &str| json!({"issuer": format!("http://{host}/{issuer}"), "jwks_uri": format!("http://{host}/good/keys")});
    let host = |headers: &axum::http::HeaderMap| headers["host"].to_str().unwrap().to_owned();
    let issuer_app = axum::Router::new()
        .route(
            "/good/.well-known/openid-configuration",
            get(move |h: axum::http::HeaderMap| async move { axum::Json(doc(&host(&h), "good")) }),
        )
        .route("/good/keys", get(move || async move { jwks }))
        .route(
            "/same/.well-known/openid-configuration",
            get(|| async { Redirect::temporary("/good/.well-known/openid-configuration") }),
        )
        .route(
            "/off/.well-known/openid-configuration",
            get(move || async move { Redirect::temporary(&internal_discovery) }),
        )
        .route(
            "/foreign/.well-known/openid-configuration",
            get(move || async move { axum::Json(json!({"jwks_uri": internal_keys})) }),
        )
        .route(
            "/secret/.well-known/openid-configuration",
            get(|| async { SECRET }),
        )
        .route(
            "/status/.well-known/openid-configuration",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, SECRET).into_response() }),
        )
        .route(
            "/big/.well-known/openid-configuration",
            get(|| async { format!("{{\"jwks_uri\": \"{}\"}}", "x".repeat(300 * 1024)) }),
        );
    let (issuer, _) = serve(issuer_app).await;
    // A port nothing listens on, and one that accepts but never answers.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging = format!("http://{}", silent.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = silent.accept().await {
            held.push(conn);
        }
    });
    let allow: Vec<cloister_services::AllowedHost> = [&issuer, &closed, &hanging]
        .iter()
        .map(|u| u.trim_start_matches("http://").parse().unwrap())
        .collect();
    let p = Primus::setup_with(|c| c.oidc_fetch_allow = allow).await;

    for ok in ["good", "same"] {
        let url = format!("{issuer}/{ok}");
        let (op, audience) = provider(&p, &format!("issuer-{ok}"), &url).await;
        assert!(op.get("warnings").is_none(), "{url}: {op}");
        let (s, b) = exchange(&p, &audience, &url).await;
        assert_eq!(s, StatusCode::OK, "{url}: {b}");
    }

    // Every way a target can fail reads the same, but for its URL: no port scans.
    let unreachable = [
        format!("{issuer}/off"),
        format!("{issuer}/status"),
        format!("{issuer}/big"),
        closed.clone(),
        hanging.clone(),
    ];
    let mut messages = Vec::new();
    for (i, url) in unreachable.iter().enumerate() {
        let (op, audience) = provider(&p, &format!("unreachable-{i}"), url).await;
        let w = warning(&op);
        assert!(w.contains("did not answer with a document"), "{url}: {w}");
        let resp = exchange(&p, &audience, url).await;
        assert_oauth_error(&resp, "invalid_grant", "did not answer with a document");
        assert!(!resp.1.to_string().contains(SECRET), "{}", resp.1);
        let d = resp.1["error_description"].as_str().unwrap().to_owned();
        messages.push(
            d.replace(&format!("{url}{DISCOVERY}"), "URL")
                .replace(url, "ISSUER"),
        );
    }
    assert!(messages.windows(2).all(|w| w[0] == w[1]), "{messages:#?}");

    // A discovery document may not send the keys fetch inside either.
    let url = format!("{issuer}/foreign");
    let (op, audience) = provider(&p, "foreign-keys", &url).await;
    assert!(
        warning(&op).contains(&format!("{internal}/keys is not fetched")),
        "{op}"
    );
    assert_oauth_error(
        &exchange(&p, &audience, &url).await,
        "invalid_grant",
        "is not fetched",
    );

    // A document that is not one is named, not repeated.
    let url = format!("{issuer}/secret");
    let (op, audience) = provider(&p, "secret-doc", &url).await;
    assert!(
        warning(&op).contains("is not an OIDC discovery document"),
        "{op}"
    );
    let resp = exchange(&p, &audience, &url).await;
    assert_oauth_error(&resp, "invalid_grant", "is not an OIDC discovery document");
    assert!(!resp.1.to_string().contains(SECRET) && !op.to_string().contains(SECRET));

    assert_eq!(
        internal_hits.load(Ordering::SeqCst),
        0,
        "the internal service was reached"
    );
}
