//! Stateless replicas: two servers on one PostgreSQL database and one S3 bucket (real servers:
//! PostgreSQL from Debian's package, Garage), each with its own data directory and caches,
//! serve as one: tokens, keys, challenges, objects, upload sessions and preconditions hold
//! across them.

#[path = "../../cloister-store/tests/support/garage.rs"]
mod garage;
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use support::secundus::{Secundus, event_log, verify_token};
use support::{Api, message};

/// Two replicas sharing a fresh database, the Garage bucket and one KEK.
async fn replicas(garage: &garage::Garage) -> (Api, Api) {
    let database = support::postgres::Postgres::database();
    let a = Api::start_with(|c| {
        c.database_url = Some(database);
        c.blob_url = Some(format!("s3://{}/replicas", garage.bucket));
        c.blob_options = garage.options();
        c.kek = Some(rand::random::<[u8; 32]>().to_vec());
    })
    .await;
    let b = a.replica().await;
    (a, b)
}

#[tokio::test]
async fn tokens_keys_and_challenges_hold_across_replicas() {
    let garage = garage::Garage::start();
    let (a, _) = replicas(&garage).await;
    let s = Secundus::setup_on(a).await;
    let b = s.api.replica().await;

    // Access tokens from one replica work on the other (one HMAC key, in the database).
    let (status, users) = b
        .call(&s.api.admin, "GET", "/cloister/v1/users", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{users}");

    // A challenge issued by A is verified by B, with an ID token A signed, exactly once.
    let (challenge, _) = s.challenge().await;
    let request = s.request(event_log(false), &["replica-nonce-1"]);
    let path = format!("/v1/{challenge}:verifyAttestation");
    let (status, token) = b
        .call(&s.sa_token, "POST", &path, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::OK, "{token}");
    // B signed the attestation token with a key A publishes (keys live in the database).
    let claims = verify_token(&s.api, token["oidcClaimsToken"].as_str().unwrap()).await;
    assert_eq!(claims["eat_nonce"], "replica-nonce-1");
    let (status, again) = s
        .api
        .call(&s.sa_token, "POST", &path, Some(request.clone()))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message(&again).contains("already used"), "{again}");

    // Raced on both replicas at once, a challenge still yields one token.
    for _ in 0..3 {
        let (challenge, _) = s.challenge().await;
        let raced = format!("/v1/{challenge}:verifyAttestation");
        let (first, second) = tokio::join!(
            s.api
                .call(&s.sa_token, "POST", &raced, Some(request.clone())),
            b.call(&s.sa_token, "POST", &raced, Some(request.clone())),
        );
        let statuses = [first.0, second.0];
        assert!(
            statuses.contains(&StatusCode::OK) && statuses.contains(&StatusCode::BAD_REQUEST),
            "{statuses:?}: {} / {}",
            first.1,
            second.1
        );
    }
}

async fn bucket(api: &Api) -> String {
    let owner = api.user("primus@example.com").await;
    for (path, body) in [
        ("/v1/projects", json!({"projectId": "primus-bank"})),
        (
            "/storage/v1/b?project=primus-bank",
            json!({"name": "primus-models"}),
        ),
    ] {
        let (s, b) = api.call(&owner, "POST", path, Some(body)).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    owner
}

fn upload(token: &str, name: &str, bytes: Vec<u8>, query: &str) -> Request<Body> {
    Request::post(format!(
        "/upload/storage/v1/b/primus-models/o?uploadType=media&name={name}{query}"
    ))
    .header("authorization", format!("Bearer {token}"))
    .header("content-type", "application/octet-stream")
    .body(Body::from(bytes))
    .unwrap()
}

async fn download(api: &Api, token: &str, name: &str) -> (StatusCode, Vec<u8>) {
    let req = Request::get(format!(
        "/download/storage/v1/b/primus-models/o/{name}?alt=media"
    ))
    .header("authorization", format!("Bearer {token}"))
    .body(Body::empty())
    .unwrap();
    let resp = tower::ServiceExt::oneshot(api.router(), req).await.unwrap();
    let status = resp.status();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, body.to_vec())
}

#[tokio::test]
async fn objects_uploads_and_preconditions_hold_across_replicas() {
    let garage = garage::Garage::start();
    let (a, b) = replicas(&garage).await;
    let owner = bucket(&a).await;

    // Written through A, read through B.
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect();
    let (s, o) = a
        .send(upload(&owner, "weights.bin", data.clone(), ""))
        .await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(
        download(&b, &owner, "weights.bin").await,
        (StatusCode::OK, data.clone())
    );

    // A resumable upload started on A, continued and finished on B.
    let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=resumable")
        .header("authorization", format!("Bearer {owner}"))
        .body(Body::from(json!({"name": "resumed.bin"}).to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(a.router(), req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let session = resp.headers()["location"]
        .to_str()
        .unwrap()
        .strip_prefix("http://cloister.test")
        .unwrap()
        .to_owned();
    let chunk = |api: &Api, range: &str, bytes: &[u8]| {
        let req = Request::put(session.clone())
            .header("content-range", range)
            .body(Body::from(bytes.to_vec()))
            .unwrap();
        tower::ServiceExt::oneshot(api.router(), req)
    };
    let first = chunk(&a, "bytes 0-1048575/*", &data[..1 << 20])
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::PERMANENT_REDIRECT);
    let last = chunk(&b, "bytes 1048576-1999999/2000000", &data[1 << 20..])
        .await
        .unwrap();
    assert_eq!(last.status(), StatusCode::OK);
    assert_eq!(
        download(&a, &owner, "resumed.bin").await,
        (StatusCode::OK, data)
    );

    // Writers racing with ifGenerationMatch=0 through both replicas: exactly one wins.
    for round in 0..3 {
        let name = format!("race-{round}.bin");
        let writes = (0..8).map(|i| {
            let api = if i % 2 == 0 { &a } else { &b };
            api.send(upload(
                &owner,
                &name,
                vec![i as u8; 1000],
                "&ifGenerationMatch=0",
            ))
        });
        let results = futures::future::join_all(writes).await;
        let won: Vec<_> = results
            .iter()
            .filter(|(s, _)| *s == StatusCode::OK)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: {results:?}");
        assert!(
            results
                .iter()
                .all(|(s, _)| *s == StatusCode::OK || *s == StatusCode::PRECONDITION_FAILED),
            "{results:?}"
        );
        let winner = won[0].1["generation"].as_str().unwrap().to_owned();
        let (_, meta) = b
            .call(
                &owner,
                "GET",
                &format!("/storage/v1/b/primus-models/o/{name}"),
                None,
            )
            .await;
        assert_eq!(
            meta["generation"],
            winner.as_str(),
            "the winner's write is the live one"
        );
    }
}

#[tokio::test]
async fn a_shared_database_needs_the_kek_from_outside() {
    let database = support::postgres::Postgres::database();
    let dir = tempfile::tempdir().unwrap();
    let config = cloister_services::ServerConfig {
        database_url: Some(database.clone()),
        ..support::config(dir.path().join("data"))
    };
    let Err(e) = cloister_services::open(config.clone()).await else {
        panic!("a shared database opened with a KEK in the data directory");
    };
    assert!(e.to_string().contains("--kek-file"), "{e}");
    // A replica with another KEK than the one the database was sealed with is refused.
    let first = cloister_services::open(cloister_services::ServerConfig {
        kek: Some(vec![1; 32]),
        ..config.clone()
    })
    .await;
    assert!(first.is_ok());
    drop(first);
    let other = tempfile::tempdir().unwrap();
    let Err(e) = cloister_services::open(cloister_services::ServerConfig {
        data_dir: other.path().join("data"),
        kek: Some(vec![2; 32]),
        ..config
    })
    .await
    else {
        panic!("a replica with another KEK started");
    };
    assert!(e.to_string().contains("key-encryption key"), "{e}");
    // A database URL that does not parse, or a server that is not there, is named.
    for (url, expected) in [
        ("postgres://u@127.0.0.1:notaport/db", "does not parse"),
        ("postgres://u:secret@127.0.0.1:1/db", "could not connect"),
    ] {
        let Err(e) = cloister_services::open(cloister_services::ServerConfig {
            database_url: Some(url.into()),
            kek: Some(vec![1; 32]),
            ..support::config(tempfile::tempdir().unwrap().path().join("data"))
        })
        .await
        else {
            panic!("{url} opened");
        };
        let e = e.to_string();
        assert!(e.contains(expected), "{e}");
        assert!(!e.contains("secret"), "the password is not shown: {e}");
    }
}
