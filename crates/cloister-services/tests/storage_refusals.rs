//! What a hostile tenant tried against Cloud Storage, each refused: replacing an object without
//! `storage.objects.delete` by getting past the check made when the upload started, a session
//! outliving its creator's access or committed twice, a bucket's deletion blocked by someone
//! else's session, numbers that overflow, unsatisfiable ranges, oversized objects, full quotas.

mod support;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use futures::StreamExt;
use serde_json::Value;
use support::message;
use support::storage_world::World;

const CREATOR: &str = "user:secundus@example.com";

fn google_error(b: &Value, code: u16, status: &str, reason: &str) {
    assert_eq!(b["error"]["code"], code, "{b}");
    assert_eq!(b["error"]["status"], status, "{b}");
    assert_eq!(b["error"]["errors"][0]["reason"], reason, "{b}");
}

/// Files under the server's data directory whose path contains `part`.
fn files_with(w: &World, part: &str) -> Vec<std::path::PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut all = Vec::new();
    walk(w.api.dir.path(), &mut all);
    all.retain(|p| p.to_string_lossy().contains(part));
    all
}

#[tokio::test]
async fn a_creator_cannot_replace_an_object_that_appeared_while_their_session_was_open() {
    let w = World::new().await;
    w.grant(CREATOR, "roles/storage.objectCreator").await;
    let (s, session) = w.open_session(&w.reader, "model").await;
    assert_eq!(s, StatusCode::OK, "the name is free when the session opens");
    assert_eq!(
        w.upload(&w.owner, "model", b"owner's", "").await.0,
        StatusCode::OK
    );
    let (s, b) = w
        .put_chunk(&session, "bytes 0-5/6", b"hijack".to_vec())
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("storage.objects.delete"), "{b}");
    let (_, body, _) = w.download(&w.owner, "model", None).await;
    assert_eq!(body, b"owner's");
}

#[tokio::test]
async fn a_creator_cannot_replace_an_object_that_appeared_during_their_media_upload() {
    let w = World::new().await;
    w.grant(CREATOR, "roles/storage.objectCreator").await;
    // The body arrives in two parts; the first is read only once the upload's checks passed.
    let (mut tx, rx) = futures::channel::mpsc::channel::<Result<Bytes, std::io::Error>>(1);
    let (reading, read) = tokio::sync::oneshot::channel();
    let mut reading = Some(reading);
    let body = rx.inspect(move |_| {
        if let Some(r) = reading.take() {
            let _ = r.send(());
        }
    });
    let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=media&name=model")
        .header("authorization", format!("Bearer {}", w.reader))
        .body(Body::from_stream(body))
        .unwrap();
    let router = w.api.router();
    let upload = tokio::spawn(async move {
        let resp = tower::ServiceExt::oneshot(router, req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
        )
    });
    futures::SinkExt::send(&mut tx, Ok(Bytes::from_static(b"hij")))
        .await
        .unwrap();
    read.await.unwrap();
    assert_eq!(
        w.upload(&w.owner, "model", b"owner's", "").await.0,
        StatusCode::OK
    );
    futures::SinkExt::send(&mut tx, Ok(Bytes::from_static(b"ack")))
        .await
        .unwrap();
    drop(tx);
    let (s, b) = upload.await.unwrap();
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("storage.objects.delete"), "{b}");
    let (_, body, _) = w.download(&w.owner, "model", None).await;
    assert_eq!(body, b"owner's");
    assert_eq!(
        files_with(&w, "/objects/").len(),
        1,
        "the refused upload's bytes are gone"
    );
}

#[tokio::test]
async fn a_session_stops_when_its_creator_loses_access() {
    let w = World::new().await;
    w.grant(CREATOR, "roles/storage.objectCreator").await;
    let (_, session) = w.open_session(&w.reader, "notes").await;
    let (s, _) = w.put_chunk(&session, "bytes 0-3/*", b"abcd".to_vec()).await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    w.revoke(CREATOR).await;
    for (range, body) in [
        ("bytes 4-7/*", b"efgh".to_vec()),
        ("bytes 4-7/8", b"efgh".to_vec()),
        ("bytes */4", vec![]),
        ("bytes */*", vec![]),
    ] {
        let (s, b) = w.put_chunk(&session, range, body).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{range}: {b}");
        assert!(message(&b).contains("storage.objects.create"), "{b}");
    }
    let (s, _, _) = w.download(&w.owner, "notes", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_final_requests_commit_a_session_once() {
    let w = World::new().await;
    let (_, session) = w.open_session(&w.owner, "once").await;
    let (s, _) = w
        .put_chunk(&session, "bytes 0-9/*", b"0123456789".to_vec())
        .await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    let finals = (0..8).map(|_| w.put_chunk(&session, "bytes */10", vec![]));
    let results = futures::future::join_all(finals).await;
    let committed: Vec<_> = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::OK)
        .collect();
    assert_eq!(committed.len(), 1, "{results:?}");
    for (s, b) in &results {
        assert!(
            [StatusCode::OK, StatusCode::CONFLICT, StatusCode::NOT_FOUND].contains(s),
            "{s}: {b}"
        );
    }
    let (_, live) = w
        .api
        .call(&w.owner, "GET", "/storage/v1/b/primus-models/o/once", None)
        .await;
    assert_eq!(live["generation"], committed[0].1["generation"]);
}

#[tokio::test]
async fn deleting_a_bucket_cancels_someone_elses_upload_session() {
    let w = World::new().await;
    w.grant(CREATOR, "roles/storage.objectCreator").await;
    let (_, session) = w.open_session(&w.reader, "left-behind").await;
    let (s, _) = w.put_chunk(&session, "bytes 0-3/*", b"abcd".to_vec()).await;
    assert_eq!(s, StatusCode::PERMANENT_REDIRECT);
    assert_eq!(files_with(&w, "uploads").len(), 1);
    w.revoke(CREATOR).await;
    let (s, b) = w
        .api
        .call(&w.owner, "DELETE", "/storage/v1/b/primus-models", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{b}");
    assert!(files_with(&w, "uploads").is_empty(), "the chunks went too");
    let (s, _) = w.put_chunk(&session, "bytes */*", vec![]).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn content_ranges_that_cannot_be_are_400_not_a_panic() {
    let w = World::new().await;
    let max = u64::MAX;
    for range in [
        format!("bytes 0-{max}/*"),
        format!("bytes 0-{max}/{max}"),
        "bytes 0-18446744073709551616/*".into(),
        "bytes 9-1/*".into(),
        "bytes 0-99/50".into(),
        "bytes 5-9/*".into(), // past the 0 bytes received
        format!("bytes {max}-{max}/*"),
        "bytes 0-0/0".into(),
        "bytes */18446744073709551616".into(),
        "bytes -1-3/*".into(),
        "chunks 0-3/4".into(),
    ] {
        let (_, session) = w.open_session(&w.owner, "x").await;
        let (s, b) = w.put_chunk(&session, &range, b"abcd".to_vec()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{range}: {b}");
        google_error(&b, 400, "INVALID_ARGUMENT", "badRequest");
    }
    // A chunk that says what it carries is taken.
    let (_, session) = w.open_session(&w.owner, "x").await;
    let (s, b) = w.put_chunk(&session, "bytes 0-0/1", b"a".to_vec()).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn an_unsatisfiable_download_range_is_416() {
    let w = World::new().await;
    assert_eq!(
        w.upload(&w.owner, "ten", b"0123456789", "").await.0,
        StatusCode::OK
    );
    let max = u64::MAX;
    for range in [
        "bytes=10-".to_owned(),
        "bytes=-0".into(),
        format!("bytes={max}-"),
        format!("bytes={max}-{max}"),
        "bytes=7-3".into(),
    ] {
        let (s, body, _) = w.download(&w.owner, "ten", Some(&range)).await;
        let b: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE, "{range}: {b}");
        google_error(&b, 416, "OUT_OF_RANGE", "requestedRangeNotSatisfiable");
        assert_eq!(message(&b), "The requested range cannot be satisfied.");
    }
    for (range, expected) in [
        (format!("bytes=0-{max}"), &b"0123456789"[..]),
        ("bytes=0-99999999999999999999999".into(), b"0123456789"),
        (format!("bytes=-{max}"), b"0123456789"),
        ("bytes=9-9".into(), b"9"),
    ] {
        let (s, body, _) = w.download(&w.owner, "ten", Some(&range)).await;
        assert_eq!(
            (s, body.as_slice()),
            (StatusCode::PARTIAL_CONTENT, expected),
            "{range}"
        );
    }
}

#[tokio::test]
async fn query_strings_that_do_not_parse_are_google_errors_naming_the_parameter() {
    let w = World::new().await;
    for (method, path, parameter) in [
        (
            "GET",
            "/storage/v1/b/primus-models/o?maxResults=abc",
            "maxResults",
        ),
        (
            "GET",
            "/storage/v1/b/primus-models/o?maxResults=-1",
            "maxResults",
        ),
        (
            "GET",
            "/storage/v1/b/primus-models/o/x?generation=zz",
            "generation",
        ),
        (
            "DELETE",
            "/storage/v1/b/primus-models/o/x?ifGenerationMatch=1e3",
            "ifGenerationMatch",
        ),
        (
            "POST",
            "/upload/storage/v1/b/primus-models/o?uploadType=media&name=x&ifGenerationMatch=18446744073709551616",
            "ifGenerationMatch",
        ),
    ] {
        let (s, b) = w.api.call(&w.owner, method, path, None).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{path}: {b}");
        google_error(&b, 400, "INVALID_ARGUMENT", "badRequest");
        assert!(message(&b).contains(parameter), "{path}: {b}");
    }
}

#[tokio::test]
async fn objects_past_the_size_limit_are_refused_while_streaming_and_store_nothing() {
    let w = World::with(|c| c.storage_limits.max_object_bytes = 10).await;
    let (s, b) = w.upload(&w.owner, "big", &[7; 11], "").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    google_error(&b, 413, "PAYLOAD_TOO_LARGE", "uploadTooLarge");
    assert!(message(&b).contains("10 bytes"), "{b}");
    let (s, b) = w.upload(&w.owner, "fits", &[7; 10], "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Resumable: an announced size, a chunk's range, or a body longer than its range.
    let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=resumable&name=big")
        .header("authorization", format!("Bearer {}", w.owner))
        .header("x-upload-content-length", "11")
        .body(Body::empty())
        .unwrap();
    let (s, b) = w.api.send(req).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    for (range, body) in [("bytes 0-10/*", vec![1; 11]), ("bytes 0-3/*", vec![1; 11])] {
        let (_, session) = w.open_session(&w.owner, "big").await;
        let (s, b) = w.put_chunk(&session, range, body).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{range}: {b}");
    }
    let (_, session) = w.open_session(&w.owner, "big").await;
    assert_eq!(
        w.put_chunk(&session, "bytes 0-5/*", vec![1; 6]).await.0,
        StatusCode::PERMANENT_REDIRECT
    );
    let (s, b) = w.put_chunk(&session, "bytes 6-10/11", vec![1; 5]).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    let (s, _, _) = w.download(&w.owner, "big", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let blobs = files_with(&w, "/objects/");
    assert_eq!(blobs.len(), 1, "only the object that fits: {blobs:?}");
}

#[tokio::test]
async fn a_full_project_quota_refuses_new_bytes_but_not_replacements_that_fit() {
    let w = World::with(|c| c.storage_limits.project_quota_bytes = Some(25)).await;
    for name in ["a", "b"] {
        assert_eq!(
            w.upload(&w.owner, name, &[1; 10], "").await.0,
            StatusCode::OK
        );
    }
    let (s, b) = w.upload(&w.owner, "c", &[1; 10], "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    google_error(&b, 403, "RESOURCE_EXHAUSTED", "quotaExceeded");
    assert!(message(&b).contains("quota of 25 bytes"), "{b}");
    // Replacing counts the bytes it frees.
    assert_eq!(w.upload(&w.owner, "a", &[1; 5], "").await.0, StatusCode::OK);
    assert_eq!(
        w.upload(&w.owner, "c", &[1; 10], "").await.0,
        StatusCode::OK
    );
    let (s, b) = w.upload(&w.owner, "d", &[1; 1], "").await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _, _) = w.download(&w.owner, "d", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Unfinished resumable uploads keep their room: two sessions cannot each fill most of the
/// quota, and a session's own bytes are not held against it.
#[tokio::test]
async fn open_sessions_hold_their_room_in_the_quota() {
    let w = World::with(|c| c.storage_limits.project_quota_bytes = Some(25)).await;
    let (_, first) = w.open_session(&w.owner, "first").await;
    assert_eq!(
        w.put_chunk(&first, "bytes 0-14/*", vec![1; 15]).await.0,
        StatusCode::PERMANENT_REDIRECT
    );
    let (_, second) = w.open_session(&w.owner, "second").await;
    let (s, b) = w.put_chunk(&second, "bytes 0-14/*", vec![1; 15]).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    google_error(&b, 403, "RESOURCE_EXHAUSTED", "quotaExceeded");
    // The first goes on to the quota's end.
    let (s, b) = w.put_chunk(&first, "bytes 15-24/25", vec![1; 10]).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}
