//! The Cloud Storage JSON API subset in process: buckets, uploads (media, multipart),
//! downloads with Range, listing, preconditions, checksums, and who may do what.

#[path = "../../cloister-store/tests/support/garage.rs"]
mod garage;
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use support::message;
use support::storage_world::World;

#[tokio::test]
async fn media_uploads_round_trip_with_checksums_and_ranges() {
    let w = World::new().await;
    let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let (s, o) = w.upload(&w.owner, "models%2Fmodel.onnx", &data, "").await;
    assert_eq!(s, StatusCode::OK, "{o}");
    assert_eq!(o["name"], "models/model.onnx");
    assert_eq!(o["size"], "100000");
    use md5::Digest;
    assert_eq!(o["md5Hash"], STANDARD.encode(md5::Md5::digest(&data)));
    assert_eq!(
        o["crc32c"],
        STANDARD.encode(crc32c::crc32c(&data).to_be_bytes())
    );
    let (s, body, headers) = w.download(&w.owner, "models%2Fmodel.onnx", None).await;
    assert_eq!((s, body.len()), (StatusCode::OK, data.len()));
    assert_eq!(body, data);
    assert_eq!(
        headers["x-goog-generation"],
        o["generation"].as_str().unwrap()
    );
    let (s, body, headers) = w
        .download(&w.owner, "models%2Fmodel.onnx", Some("bytes=10-19"))
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &data[10..20]);
    assert_eq!(headers["content-range"], "bytes 10-19/100000");
    let (s, _, _) = w
        .download(&w.owner, "models%2Fmodel.onnx", Some("bytes=200000-"))
        .await;
    assert_eq!(s, StatusCode::RANGE_NOT_SATISFIABLE);
}

#[tokio::test]
async fn multipart_uploads_check_the_checksum_the_client_sent() {
    let w = World::new().await;
    let multipart = |md5: &str| {
        format!(
            "--b\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n{{\"name\":\"config.json\",\"contentType\":\"application/json\",\"md5Hash\":\"{md5}\"}}\r\n--b\r\nContent-Type: application/json\r\n\r\n{{\"k\":1}}\r\n--b--\r\n"
        )
    };
    use md5::Digest;
    let good = STANDARD.encode(md5::Md5::digest(b"{\"k\":1}"));
    let send = |body: String| {
        Request::post("/upload/storage/v1/b/primus-models/o?uploadType=multipart")
            .header("authorization", format!("Bearer {}", w.owner))
            .header("content-type", "multipart/related; boundary=b")
            .body(Body::from(body))
            .unwrap()
    };
    let (s, b) = w
        .api
        .send(send(multipart(&STANDARD.encode([0u8; 16]))))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        message(&b).contains("checksum you specified does not match"),
        "{b}"
    );
    let (s, _) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o/config.json",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "nothing was stored");
    let (s, b) = w.api.send(send(multipart(&good))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["contentType"], "application/json");
    assert_eq!(b["size"], "7");
}

#[tokio::test]
async fn generation_preconditions_decide_concurrent_writers() {
    let w = World::new().await;
    let (s, first) = w
        .upload(&w.owner, "result", b"one", "&ifGenerationMatch=0")
        .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let (s, b) = w
        .upload(&w.owner, "result", b"two", "&ifGenerationMatch=0")
        .await;
    assert_eq!(
        s,
        StatusCode::PRECONDITION_FAILED,
        "create-only refuses an existing object: {b}"
    );
    let generation = first["generation"].as_str().unwrap();
    let (s, second) = w
        .upload(
            &w.owner,
            "result",
            b"two",
            &format!("&ifGenerationMatch={generation}"),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{second}");
    let (s, _) = w
        .upload(
            &w.owner,
            "result",
            b"three",
            &format!("&ifGenerationMatch={generation}"),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::PRECONDITION_FAILED,
        "the old generation no longer matches"
    );
    let (_, body, _) = w.download(&w.owner, "result", None).await;
    assert_eq!(body, b"two");
}

#[tokio::test]
async fn listing_uses_prefix_delimiter_and_pages() {
    let w = World::new().await;
    for name in [
        "a.jpg",
        "b.png",
        "dir%2Fc.jpg",
        "dir%2Fsub%2Fd.jpg",
        "e.txt",
    ] {
        assert_eq!(w.upload(&w.owner, name, b"x", "").await.0, StatusCode::OK);
    }
    let (_, all) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o?delimiter=/",
            None,
        )
        .await;
    let names: Vec<&str> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a.jpg", "b.png", "e.txt"]);
    assert_eq!(all["prefixes"], json!(["dir/"]));
    let (_, page) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o?maxResults=2",
            None,
        )
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let token = page["nextPageToken"].as_str().unwrap();
    let (_, rest) = w
        .api
        .call(
            &w.owner,
            "GET",
            &format!("/storage/v1/b/primus-models/o?maxResults=10&pageToken={token}"),
            None,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 3);
    assert!(rest["nextPageToken"].is_null());
    let (_, under) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o?prefix=dir/",
            None,
        )
        .await;
    assert_eq!(under["items"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn roles_decide_who_reads_writes_and_deletes_and_denials_are_audited() {
    let w = World::new().await;
    assert_eq!(
        w.upload(&w.owner, "model", b"secret weights", "").await.0,
        StatusCode::OK
    );
    let (s, _, _) = w.download(&w.reader, "model", None).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (_, log) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/cloister/v1/auditLogs?resource=projects/primus-bank&decision=deny",
            None,
        )
        .await;
    // The bucket is named `projects/_/buckets/B`, yet its project's owner sees the refusal.
    let entry = &log["entries"][0];
    assert_eq!(entry["permission"], "storage.objects.get");
    assert_eq!(entry["resource"], "projects/_/buckets/primus-models");
    assert_eq!(entry["project"], "projects/primus-bank");
    assert_eq!(entry["principal"], "user:secundus@example.com");
    let (_, log) = w
        .api
        .call(
            &w.api.admin,
            "GET",
            "/cloister/v1/auditLogs?resource=projects/_/buckets/primus-models&decision=deny",
            None,
        )
        .await;
    assert_eq!(log["entries"][0]["permission"], "storage.objects.get");

    w.grant("user:secundus@example.com", "roles/storage.objectViewer")
        .await;
    let (s, body, _) = w.download(&w.reader, "model", None).await;
    assert_eq!(
        (s, body.as_slice()),
        (StatusCode::OK, &b"secret weights"[..])
    );
    assert_eq!(
        w.upload(&w.reader, "mine", b"x", "").await.0,
        StatusCode::FORBIDDEN,
        "objectViewer cannot write"
    );
    let (s, _) = w
        .api
        .call(
            &w.reader,
            "DELETE",
            "/storage/v1/b/primus-models/o/model",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    w.grant("user:secundus@example.com", "roles/storage.objectCreator")
        .await;
    assert_eq!(
        w.upload(&w.reader, "mine", b"x", "").await.0,
        StatusCode::OK
    );
    assert_eq!(
        w.upload(&w.reader, "model", b"overwrite", "").await.0,
        StatusCode::FORBIDDEN,
        "objectCreator cannot overwrite"
    );

    w.grant("user:secundus@example.com", "roles/storage.objectUser")
        .await;
    assert_eq!(
        w.upload(&w.reader, "model", b"overwrite", "").await.0,
        StatusCode::OK
    );
    let (s, _) = w
        .api
        .call(
            &w.reader,
            "DELETE",
            "/storage/v1/b/primus-models/o/model",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _, _) = w.download(&w.owner, "model", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn buckets_are_global_validated_and_deleted_only_when_empty() {
    let w = World::new().await;
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "POST",
            "/storage/v1/b?project=primus-bank",
            Some(json!({"name": "primus-models"})),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "POST",
            "/storage/v1/b?project=primus-bank",
            Some(json!({"name": "Bad..Name"})),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = w
        .api
        .call(
            &w.reader,
            "POST",
            "/storage/v1/b?project=primus-bank",
            Some(json!({"name": "secundus-b"})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(w.upload(&w.owner, "x", b"1", "").await.0, StatusCode::OK);
    let (s, b) = w
        .api
        .call(&w.owner, "DELETE", "/storage/v1/b/primus-models", None)
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert!(message(&b).contains("not empty"), "{b}");
    w.api
        .call(&w.owner, "DELETE", "/storage/v1/b/primus-models/o/x", None)
        .await;
    let (s, _) = w
        .api
        .call(&w.owner, "DELETE", "/storage/v1/b/primus-models", None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = w
        .api
        .call(&w.owner, "GET", "/storage/v1/b/primus-models", None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn resumable_uploads_survive_interruption_and_resume_where_they_stopped() {
    let w = World::new().await;
    let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=resumable")
        .header("authorization", format!("Bearer {}", w.owner))
        .header("x-upload-content-type", "application/octet-stream")
        .body(Body::from(json!({"name": "big.bin"}).to_string()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(w.api.router(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let session = location
        .strip_prefix("http://cloister.test")
        .unwrap()
        .to_owned();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 199) as u8).collect();
    let put = |range: String, body: Vec<u8>| {
        Request::put(session.clone())
            .header("content-range", range)
            .body(Body::from(body))
            .unwrap()
    };
    let send = |req| async {
        tower::ServiceExt::oneshot(w.api.router(), req)
            .await
            .unwrap()
    };
    let r = send(put("bytes 0-99999/*".into(), data[..100_000].to_vec())).await;
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()["range"], "bytes=0-99999");
    // The client lost track: it asks how far the upload got, and a wrong offset is refused.
    let r = send(put("bytes */300000".into(), vec![])).await;
    assert_eq!(r.headers()["range"], "bytes=0-99999");
    let r = send(put("bytes 0-99999/300000".into(), data[..100_000].to_vec())).await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let (s, _) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o/big.bin",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "not visible until complete");
    let r = send(put(
        "bytes 100000-299999/300000".into(),
        data[100_000..].to_vec(),
    ))
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let (_, body, _) = w.download(&w.owner, "big.bin", None).await;
    assert_eq!(body, data);
    // The finished session is gone; a cancelled one too.
    let r = send(put("bytes */300000".into(), vec![])).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_resumable_session_expires_after_a_week_and_is_swept_with_its_bytes() {
    use cloister_services::storage::resumable::{SESSION_LIFETIME_SECS, sweep_expired};
    use cloister_store::{BlobKey, UploadSession};
    let w = World::new().await;
    let state = &w.api.server.state;
    let now = time::OffsetDateTime::now_utc();
    // A session made eight days ago that received six bytes, and one made now.
    let stale = "0123456789abcdef0123456789abcdef";
    let session = |upload_id: &str, create_time| UploadSession {
        upload_id: upload_id.into(),
        bucket: "primus-models".into(),
        name: format!("{upload_id}.bin"),
        content_type: "application/octet-stream".into(),
        attributes: Default::default(),
        preconditions: Default::default(),
        // The bucket's owner opened both, and is authorized again at every chunk.
        creator: Some(cloister_domain::Principal::User(
            cloister_domain::Email::parse("primus@example.com").unwrap(),
        )),
        received: 0,
        create_time,
    };
    state
        .store
        .create_upload_session(&UploadSession {
            received: 6,
            ..session(stale, now - time::Duration::days(8))
        })
        .await
        .unwrap();
    let chunk = BlobKey::new(&format!("uploads/{stale}/{:020}", 0)).unwrap();
    let bytes = futures::stream::iter([Ok(bytes::Bytes::from_static(b"stale!"))]);
    state.blobs.put(&chunk, Box::pin(bytes)).await.unwrap();
    let fresh = "fedcba9876543210fedcba9876543210";
    state
        .store
        .create_upload_session(&session(fresh, now))
        .await
        .unwrap();

    let put = |id: &str, range: &str, body: &'static [u8]| {
        let req = Request::put(format!(
            "/upload/storage/v1/b/primus-models/o?uploadType=resumable&upload_id={id}"
        ))
        .header("content-range", range)
        .body(Body::from(body))
        .unwrap();
        tower::ServiceExt::oneshot(w.api.router(), req)
    };
    // The expired session is refused, saying why; it takes no more bytes.
    let r = put(stale, "bytes 6-9/10", b"more").await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("expired"));

    let swept = sweep_expired(state, now - time::Duration::seconds(SESSION_LIFETIME_SECS))
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert_eq!(state.blobs.size(&chunk).await.unwrap(), None);
    assert!(
        state
            .store
            .get_upload_session(stale)
            .await
            .unwrap()
            .is_none()
    );
    // The week-young session is untouched and finishes.
    let r = put(fresh, "bytes 0-4/5", b"fresh").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, body, _) = w.download(&w.owner, &format!("{fresh}.bin"), None).await;
    assert_eq!(body, b"fresh");
}

/// With `blob_url` set, object bytes live in the S3 bucket (a real Garage server), not the
/// data directory, and every path through the API behaves the same: media and resumable
/// uploads, whole and ranged downloads.
#[tokio::test]
async fn objects_live_in_an_s3_bucket_when_configured() {
    let garage = garage::Garage::start();
    let w = World::with(|c| {
        c.blob_url = Some(format!("s3://{}/cloister", garage.bucket));
        c.blob_options = garage.options();
    })
    .await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let (s, o) = w.upload(&w.owner, "weights.bin", &data, "").await;
    assert_eq!(s, StatusCode::OK, "{o}");
    let (s, body, _) = w.download(&w.owner, "weights.bin", None).await;
    assert_eq!((s, body == data), (StatusCode::OK, true));
    let (s, body, _) = w
        .download(&w.owner, "weights.bin", Some("bytes=1000-1999"))
        .await;
    assert_eq!(s, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body, &data[1000..2000]);
    // Nothing went to the local blob directory; the bucket holds the bytes.
    let local = w.api.dir.path().join("data/blobs/data");
    let local_files = walk(&local);
    assert!(local_files.is_empty(), "{local_files:?}");
    let (_, o) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/o/weights.bin",
            None,
        )
        .await;
    assert_eq!(o["size"], "3000000");
    let url = url::Url::parse(&format!("s3://{}/cloister", garage.bucket)).unwrap();
    let (bucket, prefix) = object_store::parse_url_opts(&url, garage.options()).unwrap();
    let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(bucket.list(Some(&prefix))).await;
    let sizes: Vec<u64> = listed.into_iter().map(|m| m.unwrap().size).collect();
    assert_eq!(
        sizes,
        [3_000_000],
        "one blob in the bucket, the object's bytes"
    );
    // The orphan sweep reads the bucket's keys back right: it takes an orphan, never the
    // object's blob.
    let state = &w.api.server.state;
    let orphan = cloister_store::BlobKey::new("objects/ffffffffffffffffffffffffffffffff").unwrap();
    let bytes = futures::stream::iter([Ok(bytes::Bytes::from_static(b"orphan"))]);
    state.blobs.put(&orphan, Box::pin(bytes)).await.unwrap();
    let swept =
        cloister_services::storage::orphans::sweep_orphaned_blobs(state, std::time::Duration::ZERO);
    assert_eq!(swept.await.unwrap(), 1);
    let (s, body, _) = w.download(&w.owner, "weights.bin", None).await;
    assert_eq!((s, body == data), (StatusCode::OK, true));
}

#[tokio::test]
async fn blobs_no_object_points_at_are_swept_once_old_and_nothing_else_is() {
    use cloister_services::storage::orphans::{ORPHAN_MIN_AGE, sweep_orphaned_blobs};
    use cloister_store::BlobKey;
    let w = World::new().await;
    for version in [&b"v1"[..], b"v2"] {
        let (s, o) = w.upload(&w.owner, "kept.bin", version, "").await;
        assert_eq!(s, StatusCode::OK, "{o}");
    }
    // What a server that died between storing a blob and recording its object leaves, and a
    // blob of another kind (registry layers are not objects' to judge).
    let state = &w.api.server.state;
    let put = |key: &'static str| async move {
        let key = BlobKey::new(key).unwrap();
        let bytes = futures::stream::iter([Ok(bytes::Bytes::from_static(b"orphan"))]);
        state.blobs.put(&key, Box::pin(bytes)).await.unwrap();
        key
    };
    let orphan = put("objects/00000000000000000000000000000000").await;
    let layer = put("layers/sha256/not-an-object").await;

    // Young, it may still be about to be recorded: kept.
    assert_eq!(
        sweep_orphaned_blobs(state, ORPHAN_MIN_AGE).await.unwrap(),
        0
    );
    assert!(state.blobs.size(&orphan).await.unwrap().is_some());
    // Old enough: swept, and only it.
    assert_eq!(
        sweep_orphaned_blobs(state, std::time::Duration::ZERO)
            .await
            .unwrap(),
        1
    );
    assert_eq!(state.blobs.size(&orphan).await.unwrap(), None);
    assert!(state.blobs.size(&layer).await.unwrap().is_some());
    let (s, body, _) = w.download(&w.owner, "kept.bin", None).await;
    assert_eq!((s, body.as_slice()), (StatusCode::OK, &b"v2"[..]));
    assert_eq!(
        sweep_orphaned_blobs(state, std::time::Duration::ZERO)
            .await
            .unwrap(),
        0,
        "a live object's blob is never an orphan"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
