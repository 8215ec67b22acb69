//! The Cloud Storage surface Google's clients and gcloud use beyond uploads and downloads:
//! `matchGlob` and the other listing parameters, objects.patch/update and their metageneration,
//! objects.compose, `fields`, gcloud's quoted multipart boundary, millisecond timestamps — and
//! the refusals: a parameter a method does not implement, a stale metageneration, a missing
//! source, too many sources, a method a path does not have, each in Google's error shape.
//! (`CLOISTER_TEST_DATABASE=postgres` runs them on PostgreSQL.)

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use support::message;
use support::storage_world::World;

const OBJECTS: &str = "/storage/v1/b/primus-models/o";

fn google_error(b: &Value, code: u16, reason: &str) {
    assert_eq!(b["error"]["code"], code, "{b}");
    assert!(b["error"]["status"].is_string(), "{b}");
    assert_eq!(b["error"]["errors"][0]["reason"], reason, "{b}");
    assert!(!message(b).is_empty(), "{b}");
}

async fn put(w: &World, name: &str, bytes: &[u8]) -> Value {
    let (s, b) = w.upload(&w.owner, name, bytes, "").await;
    assert_eq!(s, StatusCode::OK, "{name}: {b}");
    b
}

async fn names(w: &World, query: &str) -> (Vec<String>, Vec<String>) {
    let (s, b) = w
        .api
        .call(&w.owner, "GET", &format!("{OBJECTS}?{query}"), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{query}: {b}");
    let list = |key: &str, item: fn(&Value) -> Option<&str>| {
        b[key]
            .as_array()
            .map(|a| a.iter().filter_map(item).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    (
        list("items", |v| v["name"].as_str()),
        list("prefixes", Value::as_str),
    )
}

#[tokio::test]
async fn list_filters_by_match_glob_offsets_and_trailing_delimiters() {
    let w = World::new().await;
    for name in [
        "a.txt",
        "b.txt",
        "a.csv",
        "dir/",
        "dir/a.txt",
        "dir/sub/a.txt",
        "dir/sub/b.jpg",
        "x/y",
    ] {
        put(&w, name, b"1").await;
    }
    for (query, items, prefixes) in [
        ("matchGlob=*.txt", vec!["a.txt", "b.txt"], vec![]),
        (
            "matchGlob=**/*.txt",
            vec!["a.txt", "b.txt", "dir/a.txt", "dir/sub/a.txt"],
            vec![],
        ),
        (
            "matchGlob=dir/**",
            vec!["dir/", "dir/a.txt", "dir/sub/a.txt", "dir/sub/b.jpg"],
            vec![],
        ),
        (
            "matchGlob=%3F.%7Btxt,csv%7D",
            vec!["a.csv", "a.txt", "b.txt"],
            vec![],
        ),
        ("matchGlob=%5B%21a%5D.txt", vec!["b.txt"], vec![]),
        ("prefix=dir/&matchGlob=**.jpg", vec![], vec![]),
        ("prefix=dir/&matchGlob=dir/**.jpg", vec![], vec![]),
        (
            "prefix=dir/&matchGlob=dir/**/*.jpg",
            vec!["dir/sub/b.jpg"],
            vec![],
        ),
        // With a delimiter, matching names below a prefix show as that prefix.
        (
            "delimiter=/&matchGlob=**/a.txt",
            vec!["a.txt"],
            vec!["dir/"],
        ),
        (
            "startOffset=a.txt&endOffset=dir/a",
            vec!["a.txt", "b.txt", "dir/"],
            vec![],
        ),
        (
            "startOffset=dir/s",
            vec!["dir/sub/a.txt", "dir/sub/b.jpg", "x/y"],
            vec![],
        ),
        // An object named like the prefix it falls under is listed as an item too.
        (
            "delimiter=/&includeTrailingDelimiter=true",
            vec!["a.csv", "a.txt", "b.txt", "dir/"],
            vec!["dir/", "x/"],
        ),
        (
            "delimiter=/&includeFoldersAsPrefixes=true",
            vec!["a.csv", "a.txt", "b.txt"],
            vec!["dir/", "x/"],
        ),
        // gcloud's `rm -r` listing: no noncurrent generations, so the live ones.
        (
            "prefix=dir/&versions=True&includeFoldersAsPrefixes=True&maxResults=1000",
            vec!["dir/", "dir/a.txt", "dir/sub/a.txt", "dir/sub/b.jpg"],
            vec![],
        ),
        (
            "versions=false&projection=noAcl&prettyPrint=false&alt=json&userProject=p",
            vec![
                "a.csv",
                "a.txt",
                "b.txt",
                "dir/",
                "dir/a.txt",
                "dir/sub/a.txt",
                "dir/sub/b.jpg",
                "x/y",
            ],
            vec![],
        ),
    ] {
        let (got_items, got_prefixes) = names(&w, query).await;
        assert_eq!(
            (got_items, got_prefixes),
            (
                items.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
                prefixes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ),
            "{query}"
        );
    }
    // Pages of a filtered listing still cover every match once.
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let (s, b) = w
            .api
            .call(
                &w.owner,
                "GET",
                &format!("{OBJECTS}?matchGlob=**.txt&maxResults=1&pageToken={token}"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        seen.extend(
            b["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["name"].clone()),
        );
        match b["nextPageToken"].as_str() {
            Some(t) => token = t.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, vec![json!("a.txt"), json!("b.txt")]);
}

/// One row per refusal: the method, the path and query, and the parameter the 400 must name.
#[tokio::test]
async fn parameters_a_method_does_not_implement_are_refused_by_name() {
    let w = World::new().await;
    put(&w, "m", b"model").await;
    for (method, path, named) in [
        ("GET", format!("{OBJECTS}?matchGlobs=*.txt"), "matchGlobs"),
        ("GET", format!("{OBJECTS}?versions=maybe"), "versions"),
        ("GET", format!("{OBJECTS}?softDeleted=true"), "softDeleted"),
        ("GET", format!("{OBJECTS}?filter=contexts"), "filter"),
        ("GET", format!("{OBJECTS}?matchGlob=%5Babc"), "matchGlob"),
        (
            "GET",
            format!("{OBJECTS}?projection=everything"),
            "projection",
        ),
        ("GET", format!("{OBJECTS}?prettyPrint=maybe"), "prettyPrint"),
        ("GET", format!("{OBJECTS}?fields=items(name"), "fields"),
        ("GET", format!("{OBJECTS}/m?alt=proto"), "alt"),
        (
            "GET",
            format!("{OBJECTS}/m?ifSourceGenerationMatch=1"),
            "ifSourceGenerationMatch",
        ),
        ("DELETE", format!("{OBJECTS}/m?force=true"), "force"),
        (
            "GET",
            "/storage/v1/b?project=primus-bank&returnPartialSuccess=true".into(),
            "returnPartialSuccess",
        ),
        ("GET", "/storage/v1/b/primus-models?bogus=1".into(), "bogus"),
        (
            "GET",
            "/storage/v1/b/primus-models/iam/testPermissions?permissions=a&x=1".into(),
            "x",
        ),
        (
            "POST",
            "/upload/storage/v1/b/primus-models/o?uploadType=media&name=n&predefinedAcl=publicRead"
                .into(),
            "predefinedAcl",
        ),
        (
            "POST",
            "/upload/storage/v1/b/primus-models/o?uploadType=media&name=n&kmsKeyName=k".into(),
            "kmsKeyName",
        ),
        (
            "PATCH",
            format!("{OBJECTS}/m?overrideUnlockedRetention=true"),
            "overrideUnlockedRetention",
        ),
        (
            "PATCH",
            format!("{OBJECTS}/m?predefinedAcl=private"),
            "predefinedAcl",
        ),
        (
            "POST",
            format!("{OBJECTS}/m/compose?kmsKeyName=k"),
            "kmsKeyName",
        ),
        (
            "POST",
            format!("{OBJECTS}/m/rewriteTo/b/primus-models/o/n?destinationKmsKeyName=k"),
            "destinationKmsKeyName",
        ),
        (
            "POST",
            format!("{OBJECTS}/m/rewriteTo/b/primus-models/o/n?rewriteToken=abc"),
            "rewriteToken",
        ),
    ] {
        let (s, b) = w.api.call(&w.owner, method, &path, Some(json!({}))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{method} {path}: {b}");
        google_error(&b, 400, "badRequest");
        assert!(message(&b).contains(named), "{method} {path}: {b}");
    }
    // Nothing a refused request named was done.
    let (_, b) = w
        .api
        .call(&w.owner, "GET", &format!("{OBJECTS}/m"), None)
        .await;
    assert_eq!(b["metageneration"], "1", "{b}");
    assert_eq!(
        w.api
            .call(&w.owner, "GET", &format!("{OBJECTS}/n"), None)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn unknown_paths_and_methods_are_google_errors() {
    let w = World::new().await;
    put(&w, "m", b"model").await;
    for (method, path, status, reason) in [
        ("POST", format!("{OBJECTS}/m"), 405, "methodNotAllowed"),
        ("PUT", OBJECTS.to_owned(), 405, "methodNotAllowed"),
        (
            "GET",
            format!("{OBJECTS}/m/compose"),
            405,
            "methodNotAllowed",
        ),
        (
            "PATCH",
            "/storage/v1/b/primus-models".into(),
            405,
            "methodNotAllowed",
        ),
        (
            "GET",
            "/storage/v1/b/primus-models/notifications".into(),
            404,
            "notFound",
        ),
        ("GET", "/storage/v1/nothing".into(), 404, "notFound"),
    ] {
        let (s, b) = w.api.call(&w.owner, method, &path, None).await;
        assert_eq!(s.as_u16(), status, "{method} {path}: {b}");
        google_error(&b, status, reason);
    }
}

#[tokio::test]
async fn patch_and_update_change_metadata_and_bump_the_metageneration() {
    let w = World::new().await;
    let created = put(&w, "model.onnx", b"weights").await;
    let path = format!("{OBJECTS}/model.onnx");
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "PATCH",
            &format!("{path}?projection=full&ifMetagenerationMatch=1"),
            Some(json!({
                "contentType": "application/onnx",
                "cacheControl": "no-store",
                "metadata": {"owner": "primus", "stage": "test"},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["metageneration"], "2");
    assert_eq!(
        b["generation"], created["generation"],
        "the bytes did not change"
    );
    assert_eq!(b["contentType"], "application/onnx");
    assert_eq!(b["cacheControl"], "no-store");
    assert_eq!(b["metadata"], json!({"owner": "primus", "stage": "test"}));
    assert_ne!(b["etag"], created["etag"]);
    // A patch merges: a null removes a key, what is not named stays.
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "PATCH",
            &path,
            Some(json!({"metadata": {"stage": null, "approved": "yes"}})),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["metadata"], json!({"owner": "primus", "approved": "yes"}));
    assert_eq!(b["contentType"], "application/onnx");
    assert_eq!(b["metageneration"], "3");
    // The stored headers come back on a download.
    let (_, body, headers) = w.download(&w.owner, "model.onnx", None).await;
    assert_eq!(body, b"weights");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["x-goog-meta-owner"], "primus");
    assert_eq!(headers["content-type"], "application/onnx");
    // An update replaces: what the body lacks is cleared. Echoed read-only fields are ignored.
    let mut whole = b.clone();
    whole["metadata"] = json!({"only": "this"});
    whole.as_object_mut().unwrap().remove("cacheControl");
    let (s, b) = w.api.call(&w.owner, "PUT", &path, Some(whole)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["metadata"], json!({"only": "this"}));
    assert!(b.get("cacheControl").is_none(), "{b}");
    assert_eq!(b["metageneration"], "4");
    // Refusals change nothing.
    for (query, body, status, reason) in [
        (
            "?ifMetagenerationMatch=1",
            json!({"contentType": "x/y"}),
            412,
            "conditionNotMet",
        ),
        (
            "?ifMetagenerationNotMatch=4",
            json!({"contentType": "x/y"}),
            412,
            "conditionNotMet",
        ),
        (
            "?ifGenerationMatch=1",
            json!({"contentType": "x/y"}),
            412,
            "conditionNotMet",
        ),
        (
            "?generation=1",
            json!({"contentType": "x/y"}),
            404,
            "notFound",
        ),
        (
            "",
            json!({"customTime": "2026-01-01T00:00:00Z"}),
            400,
            "badRequest",
        ),
        ("", json!({"storageClass": "ARCHIVE"}), 400, "badRequest"),
        (
            "",
            json!({"metadata": {"k": {"nested": 1}}}),
            400,
            "badRequest",
        ),
        (
            "",
            json!({"metadata": {"big": "v".repeat(9000)}}),
            400,
            "badRequest",
        ),
    ] {
        let (s, b) = w
            .api
            .call(
                &w.owner,
                "PATCH",
                &format!("{path}{query}"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(s.as_u16(), status, "{query} {body}: {b}");
        google_error(&b, status, reason);
    }
    let (_, b) = w.api.call(&w.owner, "GET", &path, None).await;
    assert_eq!(b["metageneration"], "4", "{b}");
    assert_eq!(b["contentType"], "application/onnx");
    // A missing object is 404; a reader may not patch.
    let (s, _) = w
        .api
        .call(
            &w.owner,
            "PATCH",
            &format!("{OBJECTS}/absent"),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    w.grant("user:secundus@example.com", "roles/storage.objectViewer")
        .await;
    let (s, b) = w
        .api
        .call(
            &w.reader,
            "PATCH",
            &path,
            Some(json!({"metadata": {"x": "1"}})),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("storage.objects.update"), "{b}");
    // Metageneration preconditions hold on get and delete too.
    let (s, _) = w
        .api
        .call(
            &w.owner,
            "DELETE",
            &format!("{path}?ifMetagenerationMatch=3"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::PRECONDITION_FAILED);
    let (s, _) = w
        .api
        .call(
            &w.owner,
            "DELETE",
            &format!("{path}?ifMetagenerationMatch=4"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn compose_joins_sources_with_a_crc32c_and_no_md5() {
    let w = World::new().await;
    let mut generations = Vec::new();
    for (name, bytes) in [
        ("p0", &b"hello "[..]),
        ("p1", b"confidential "),
        ("p2", b"space"),
    ] {
        generations.push(put(&w, name, bytes).await["generation"].clone());
    }
    // "NAME?QUERY": the destination and the compose call's query.
    let compose = |dest: &str| {
        let (name, query) = dest.split_once('?').unwrap_or((dest, ""));
        format!("{OBJECTS}/{name}/compose?{query}")
    };
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "POST",
            &compose("joined.txt"),
            Some(json!({
                "kind": "storage#composeRequest",
                "sourceObjects": [
                    {"name": "p0", "generation": generations[0]},
                    {"name": "p1", "objectPreconditions": {"ifGenerationMatch": generations[1]}},
                    {"name": "p2", "generation": null},
                ],
                "destination": {"contentType": "text/plain", "metadata": {"parts": "3"}},
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let whole = b"hello confidential space";
    assert_eq!(b["componentCount"], 3);
    assert_eq!(b["size"], whole.len().to_string());
    assert!(
        b.get("md5Hash").is_none(),
        "Google gives a composite no MD5: {b}"
    );
    let crc = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        crc32c::crc32c(whole).to_be_bytes(),
    );
    assert_eq!(b["crc32c"], crc);
    assert_eq!(b["contentType"], "text/plain");
    assert_eq!(b["metadata"]["parts"], "3");
    let (_, body, headers) = w.download(&w.owner, "joined.txt", None).await;
    assert_eq!(body, whole);
    assert_eq!(headers["x-goog-hash"], format!("crc32c={crc}"));
    // Composing a composite counts its components; deleteSourceObjects removes the sources.
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "POST",
            &compose("twice.txt?ifGenerationMatch=0"),
            Some(json!({
                "sourceObjects": [{"name": "joined.txt"}, {"name": "p0"}],
                "deleteSourceObjects": true,
            })),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["componentCount"], 4);
    assert_eq!(b["contentType"], "application/octet-stream");
    for gone in ["joined.txt", "p0"] {
        let (s, _) = w
            .api
            .call(&w.owner, "GET", &format!("{OBJECTS}/{gone}"), None)
            .await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{gone}");
    }
    // One row per refusal; none of them writes the destination.
    let many: Vec<Value> = (0..33).map(|_| json!({"name": "p1"})).collect();
    for (dest, body, status, reason, named) in [
        (
            "out",
            json!({"sourceObjects": [{"name": "p1"}, {"name": "missing"}]}),
            404,
            "notFound",
            "missing",
        ),
        (
            "out",
            json!({"sourceObjects": [{"name": "p1", "generation": "1"}]}),
            404,
            "notFound",
            "p1",
        ),
        (
            "out",
            json!({"sourceObjects": many}),
            400,
            "badRequest",
            "32",
        ),
        (
            "out",
            json!({"sourceObjects": []}),
            400,
            "badRequest",
            "sourceObjects",
        ),
        (
            "out",
            json!({"sourceObjects": [{"name": "p1", "objectPreconditions": {"ifGenerationMatch": 1}}]}),
            412,
            "conditionNotMet",
            "p1",
        ),
        (
            "twice.txt?ifGenerationMatch=0",
            json!({"sourceObjects": [{"name": "p1"}]}),
            412,
            "conditionNotMet",
            "twice.txt",
        ),
        (
            "out",
            json!({"sourceObjects": [{"name": "p1", "size": 3}]}),
            400,
            "badRequest",
            "size",
        ),
        (
            "out",
            json!({"sourceObjects": [{"name": "p1"}], "destination": {"kmsKeyName": "k"}}),
            400,
            "badRequest",
            "kmsKeyName",
        ),
        (
            "out",
            json!({"sourceObjects": [{"name": "p1", "generation": "x"}]}),
            400,
            "badRequest",
            "generation",
        ),
    ] {
        let (s, b) = w
            .api
            .call(&w.owner, "POST", &compose(dest), Some(body.clone()))
            .await;
        assert_eq!(s.as_u16(), status, "{body}: {b}");
        google_error(&b, status, reason);
        assert!(message(&b).contains(named), "{body}: {b}");
    }
    let (s, _) = w
        .api
        .call(&w.owner, "GET", &format!("{OBJECTS}/out"), None)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// Compose reads the sources and writes the destination: a reader may not compose, and an
/// object creator may not compose over an existing object (that deletes its old generation).
#[tokio::test]
async fn compose_is_authorized_like_google() {
    let w = World::new().await;
    put(&w, "p0", b"a").await;
    put(&w, "taken", b"b").await;
    let body = json!({"sourceObjects": [{"name": "p0"}]});
    w.grant("user:secundus@example.com", "roles/storage.objectViewer")
        .await;
    let (s, b) = w
        .api
        .call(
            &w.reader,
            "POST",
            &format!("{OBJECTS}/new/compose"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert!(message(&b).contains("storage.objects.create"), "{b}");
    w.revoke("user:secundus@example.com").await;
    w.grant("user:secundus@example.com", "roles/storage.objectCreator")
        .await;
    let (s, b) = w
        .api
        .call(
            &w.reader,
            "POST",
            &format!("{OBJECTS}/new/compose"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::FORBIDDEN,
        "objectCreator cannot read the sources: {b}"
    );
    assert!(message(&b).contains("storage.objects.get"), "{b}");
    w.revoke("user:secundus@example.com").await;
    w.grant("user:secundus@example.com", "roles/storage.objectUser")
        .await;
    let (s, b) = w
        .api
        .call(
            &w.reader,
            "POST",
            &format!("{OBJECTS}/new/compose"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn fields_timestamps_and_gclouds_quoted_boundary() {
    let w = World::new().await;
    // gcloud's multipart form, as captured from gcloud 528: the boundary in single quotes with
    // '=' in it, and lines ending in a bare LF.
    let boundary = "===============8754846025737762545==";
    let body = format!(
        "--{boundary}\nContent-Type: application/json\nMIME-Version: 1.0\n\n{{\"bucket\": \"primus-models\", \"contentType\": \"text/plain\", \"name\": \"g.txt\", \"metadata\": {{\"goog-reserved-file-mtime\": \"1700000000\"}}}}\n--{boundary}\nContent-Type: text/plain\nMIME-Version: 1.0\nContent-Transfer-Encoding: binary\n\nfrom gcloud\n--{boundary}--"
    );
    let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=multipart&alt=json&fields=name,size,metadata")
        .header("authorization", format!("Bearer {}", w.owner))
        .header("content-type", format!("multipart/related; boundary='{boundary}'"))
        .body(Body::from(body))
        .unwrap();
    let (s, b) = w.api.send(req).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        b,
        json!({"name": "g.txt", "size": "11", "metadata": {"goog-reserved-file-mtime": "1700000000"}}),
        "fields keeps only what was asked for"
    );
    let (_, body, _) = w.download(&w.owner, "g.txt", None).await;
    assert_eq!(body, b"from gcloud");
    // gcloud asks whether the bucket has a hierarchical namespace before copying.
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models/storageLayout?alt=json",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["hierarchicalNamespace"]["enabled"], false, "{b}");
    let (s, b) = w
        .api
        .call(
            &w.owner,
            "GET",
            &format!("{OBJECTS}?fields=items(name,updated),nextPageToken"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["items"][0].as_object().unwrap().len(), 2, "{b}");
    // Google's precision: milliseconds, then Z.
    let millis = |v: &Value| {
        let t = v.as_str().unwrap_or_default();
        t.len() == "2026-12-07T04:05:06.789Z".len() && t.ends_with('Z') && t.as_bytes()[19] == b'.'
    };
    assert!(millis(&b["items"][0]["updated"]), "{b}");
    let (_, o) = w
        .api
        .call(&w.owner, "GET", &format!("{OBJECTS}/g.txt"), None)
        .await;
    assert!(millis(&o["timeCreated"]) && millis(&o["updated"]), "{o}");
    let (_, bucket) = w
        .api
        .call(
            &w.owner,
            "GET",
            "/storage/v1/b/primus-models?fields=timeCreated,updated",
            None,
        )
        .await;
    assert!(
        millis(&bucket["timeCreated"]) && millis(&bucket["updated"]),
        "{bucket}"
    );
    assert_eq!(bucket.as_object().unwrap().len(), 2, "{bucket}");
}

/// Two patches made from the same read (both `ifMetagenerationMatch=N`) race: one lands, the
/// other is 412, round after round, and the metageneration counts only what landed.
#[tokio::test]
async fn concurrent_patches_with_one_metageneration_never_both_land() {
    let w = World::new().await;
    put(&w, "m", b"model").await;
    let path = format!("{OBJECTS}/m");
    for round in 1..=10 {
        let query = format!("{path}?ifMetagenerationMatch={round}");
        let patch = |who: &str| {
            let body = json!({"metadata": {"writer": who}});
            let query = query.clone();
            let api = &w.api;
            let owner = w.owner.clone();
            async move { api.call(&owner, "PATCH", &query, Some(body)).await }
        };
        let ((a, _), (b, _)) = tokio::join!(patch("a"), patch("b"));
        let mut statuses = [a.as_u16(), b.as_u16()];
        statuses.sort();
        assert_eq!(statuses, [200, 412], "round {round}");
    }
    let (_, b) = w.api.call(&w.owner, "GET", &path, None).await;
    assert_eq!(b["metageneration"], "11", "{b}");
}
