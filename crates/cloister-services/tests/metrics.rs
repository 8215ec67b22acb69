//! `GET /metrics`: Prometheus text with requests per route template and status, tokens issued,
//! and attestation failures by reason — counts only, no names.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use support::secundus::Secundus;
use tower::ServiceExt;

#[tokio::test]
async fn metrics_count_requests_tokens_and_attestation_failures() {
    let s = Secundus::setup().await;
    // A refused attestation: the challenge was used.
    let (challenge, _) = s.challenge().await;
    let body = s.request(support::secundus::event_log(false), &[]);
    assert_eq!(
        s.verify(&s.sa_token, &challenge, body.clone()).await.0,
        StatusCode::OK
    );
    assert_eq!(
        s.verify(&s.sa_token, &challenge, body).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, _) = s
        .api
        .call(&s.owner, "GET", "/v1/projects/no-such-project", None)
        .await;
    assert_ne!(status, StatusCode::OK);

    let resp = s
        .api
        .router()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let text = String::from_utf8(
        axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec(),
    )
    .unwrap();
    for want in [
        r#"cloister_http_requests_total{method="POST",route="/oauth2/token",status="200"}"#,
        r#"cloister_http_requests_total{method="GET",route="/v1/projects/{name}",status="403"} 1"#,
        r#"cloister_tokens_issued_total{kind="access"}"#,
        r#"cloister_tokens_issued_total{kind="attestation"} 1"#,
        r#"cloister_attestation_failures_total{reason="challenge"} 1"#,
        "cloister_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(want), "missing {want} in:\n{text}");
    }
    // Route templates, not raw paths: nothing of the request's own values.
    assert!(!text.contains("no-such-project"), "{text}");
}
