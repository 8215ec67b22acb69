//! The OCI distribution API and its authorization, in process: pushes and pulls byte-exact,
//! and every refusal (anonymous, no role, reader pushing, wrong digest, dangling manifest,
//! oversized manifest, bad names) stores nothing and answers the registry's error JSON.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::Engine;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::Api;
use tower::ServiceExt;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
    fn code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

struct Registry {
    api: Api,
    owner: String,
    reader: String,
    stranger: String,
}

impl Registry {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut cloister_services::ServerConfig)) -> Self {
        let api = Api::start_with(configure).await;
        let owner = api.user("alice@example.com").await;
        let reader = api.user("bob@example.com").await;
        let stranger = api.user("eve@example.com").await;
        let (s, b) = api
            .call(
                &owner,
                "POST",
                "/v1/projects",
                Some(json!({"projectId": "primus-bank"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for repo in ["models", "mirror"] {
            let (s, b) = api
                .call(
                    &owner,
                    "POST",
                    &format!(
                        "/v1/projects/primus-bank/locations/us/repositories?repositoryId={repo}"
                    ),
                    Some(json!({"format": "DOCKER"})),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{b}");
        }
        let path = "/v1/projects/primus-bank/locations/us/repositories/models";
        let (_, policy) = api
            .call(
                &owner,
                "POST",
                &format!("{path}:getIamPolicy"),
                Some(json!({})),
            )
            .await;
        let mut policy = policy;
        policy["bindings"] =
            json!([{"role": "roles/artifactregistry.reader", "members": ["user:bob@example.com"]}]);
        let (s, b) = api
            .call(
                &owner,
                "POST",
                &format!("{path}:setIamPolicy"),
                Some(json!({"policy": policy})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        Registry {
            api,
            owner,
            reader,
            stranger,
        }
    }

    async fn send(
        &self,
        token: Option<&str>,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .api
            .router()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        Reply {
            status: parts.status,
            headers: parts.headers,
            body: axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap()
                .to_vec(),
        }
    }

    /// Starts a blob upload in `name` (`POST …/blobs/uploads/`).
    async fn start_upload(&self, token: &str, name: &str) -> Reply {
        self.send(
            Some(token),
            "POST",
            &format!("/v2/{name}/blobs/uploads/"),
            &[],
            vec![],
        )
        .await
    }

    /// A monolithic blob upload (POST then PUT with the bytes).
    async fn push_blob(&self, token: &str, name: &str, bytes: &[u8]) -> Reply {
        let start = self.start_upload(token, name).await;
        if start.status != StatusCode::ACCEPTED {
            return start;
        }
        let location = format!("{}?digest={}", start.header("location"), digest(bytes));
        self.send(Some(token), "PUT", &location, &[], bytes.to_vec())
            .await
    }

    async fn push_manifest(
        &self,
        token: &str,
        name: &str,
        reference: &str,
        manifest: &[u8],
    ) -> Reply {
        self.send(
            Some(token),
            "PUT",
            &format!("/v2/{name}/manifests/{reference}"),
            &[("content-type", OCI_MANIFEST)],
            manifest.to_vec(),
        )
        .await
    }
}

fn manifest(config: &[u8], layers: &[&[u8]], subject: Option<&str>) -> Vec<u8> {
    let mut m = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest(config), "size": config.len()},
        "layers": layers.iter().map(|l| json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest(l), "size": l.len()})).collect::<Vec<_>>(),
    });
    if let Some(s) = subject {
        m["subject"] = json!({"mediaType": OCI_MANIFEST, "digest": s, "size": 1});
        m["artifactType"] = json!("application/vnd.cloister.signature");
    }
    serde_json::to_vec(&m).unwrap()
}

const NAME: &str = "primus-bank/models/ml/inference";

#[tokio::test]
async fn an_image_round_trips_byte_exact_with_tags_ranges_and_referrers() {
    let r = Registry::start().await;
    let (config, layer) = (
        br#"{"architecture":"amd64","os":"linux"}"#.to_vec(),
        vec![7u8; 100_000],
    );
    assert_eq!(
        r.push_blob(&r.owner, NAME, &config).await.status,
        StatusCode::CREATED
    );

    // A chunked upload: two PATCHes with Content-Range, then the PUT.
    let start = r.start_upload(&r.owner, NAME).await;
    assert_eq!(
        (start.status, start.header("range")),
        (StatusCode::ACCEPTED, "0-0")
    );
    let loc = start.header("location").to_owned();
    let first = r
        .send(
            Some(&r.owner),
            "PATCH",
            &loc,
            &[("content-range", "0-59999")],
            layer[..60_000].to_vec(),
        )
        .await;
    assert_eq!(
        (first.status, first.header("range")),
        (StatusCode::ACCEPTED, "0-59999")
    );
    let skipped = r
        .send(
            Some(&r.owner),
            "PATCH",
            &loc,
            &[("content-range", "70000-99999")],
            layer[70_000..].to_vec(),
        )
        .await;
    assert_eq!(
        (skipped.status, skipped.code().as_str()),
        (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID")
    );
    let status = r.send(Some(&r.owner), "GET", &loc, &[], vec![]).await;
    assert_eq!(
        (status.status, status.header("range")),
        (StatusCode::NO_CONTENT, "0-59999")
    );
    let rest = r
        .send(
            Some(&r.owner),
            "PATCH",
            &loc,
            &[("content-range", "60000-99999")],
            layer[60_000..].to_vec(),
        )
        .await;
    assert_eq!(rest.status, StatusCode::ACCEPTED);
    let done = r
        .send(
            Some(&r.owner),
            "PUT",
            &format!("{loc}?digest={}", digest(&layer)),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (done.status, done.header("docker-content-digest")),
        (StatusCode::CREATED, digest(&layer).as_str())
    );

    let m = manifest(&config, &[&layer], None);
    let put = r.push_manifest(&r.owner, NAME, "v1", &m).await;
    assert_eq!(put.status, StatusCode::CREATED, "{:?}", put.json());
    assert_eq!(put.header("docker-content-digest"), digest(&m));
    for tag in ["v2", "v3", "latest"] {
        assert_eq!(
            r.push_manifest(&r.owner, NAME, tag, &m).await.status,
            StatusCode::CREATED
        );
    }

    // The reader pulls exactly the pushed bytes, by tag and by digest.
    for reference in ["v1".to_owned(), digest(&m)] {
        let got = r
            .send(
                Some(&r.reader),
                "GET",
                &format!("/v2/{NAME}/manifests/{reference}"),
                &[("accept", OCI_MANIFEST)],
                vec![],
            )
            .await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, m);
        assert_eq!(got.header("content-type"), OCI_MANIFEST);
        assert_eq!(got.header("docker-content-digest"), digest(&m));
    }
    let blob = r
        .send(
            Some(&r.reader),
            "GET",
            &format!("/v2/{NAME}/blobs/{}", digest(&layer)),
            &[],
            vec![],
        )
        .await;
    assert_eq!((blob.status, blob.body == layer), (StatusCode::OK, true));
    let part = r
        .send(
            Some(&r.reader),
            "GET",
            &format!("/v2/{NAME}/blobs/{}", digest(&layer)),
            &[("range", "bytes=10-19")],
            vec![],
        )
        .await;
    assert_eq!(
        (part.status, part.body.len()),
        (StatusCode::PARTIAL_CONTENT, 10)
    );

    // Tags page in order, with a Link to the next page.
    let page = r
        .send(
            Some(&r.reader),
            "GET",
            &format!("/v2/{NAME}/tags/list?n=2"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(page.json()["tags"], json!(["latest", "v1"]));
    assert!(
        page.header("link").contains("last=v1&n=2"),
        "{}",
        page.header("link")
    );
    let next = r
        .send(
            Some(&r.reader),
            "GET",
            &format!("/v2/{NAME}/tags/list?n=2&last=v1"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(next.json()["tags"], json!(["v2", "v3"]));

    // A signature that refers to the image is listed by the referrers API.
    let sig_config = b"{}".to_vec();
    assert_eq!(
        r.push_blob(&r.owner, NAME, &sig_config).await.status,
        StatusCode::CREATED
    );
    let sig = manifest(&sig_config, &[], Some(&digest(&m)));
    let put = r.push_manifest(&r.owner, NAME, &digest(&sig), &sig).await;
    assert_eq!(
        (put.status, put.header("oci-subject")),
        (StatusCode::CREATED, digest(&m).as_str())
    );
    let refs = r
        .send(
            Some(&r.reader),
            "GET",
            &format!(
                "/v2/{NAME}/referrers/{}?artifactType=application/vnd.cloister.signature",
                digest(&m)
            ),
            &[],
            vec![],
        )
        .await;
    assert_eq!(refs.json()["manifests"][0]["digest"], json!(digest(&sig)));
    assert_eq!(refs.header("oci-filters-applied"), "artifactType");

    // A blob is mounted into another repository only for a caller who can read the source.
    let mount = format!(
        "/v2/primus-bank/mirror/inference/blobs/uploads/?mount={}&from={NAME}",
        digest(&layer)
    );
    let mounted = r.send(Some(&r.owner), "POST", &mount, &[], vec![]).await;
    assert_eq!(mounted.status, StatusCode::CREATED);
    let there = r
        .send(
            Some(&r.owner),
            "HEAD",
            &format!("/v2/primus-bank/mirror/inference/blobs/{}", digest(&layer)),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (there.status, there.header("content-length")),
        (StatusCode::OK, "100000")
    );

    // Deleting a tag leaves the manifest; deleting the manifest removes its tags.
    assert_eq!(
        r.send(
            Some(&r.owner),
            "DELETE",
            &format!("/v2/{NAME}/manifests/v3"),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        r.send(
            Some(&r.owner),
            "DELETE",
            &format!("/v2/{NAME}/manifests/{}", digest(&m)),
            &[],
            vec![]
        )
        .await
        .status,
        StatusCode::ACCEPTED
    );
    let gone = r
        .send(
            Some(&r.owner),
            "GET",
            &format!("/v2/{NAME}/manifests/v1"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (gone.status, gone.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
}

#[tokio::test]
async fn docker_token_auth_gives_scoped_tokens_and_iam_decides_every_request() {
    let r = Registry::start().await;
    // Anonymous: the challenge says where to get a token and for what.
    let ping = r.send(None, "GET", "/v2/", &[], vec![]).await;
    assert_eq!(ping.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        ping.header("www-authenticate"),
        "Bearer realm=\"http://cloister.test/v2/token\",service=\"cloister.test\""
    );
    let anon = r
        .send(
            None,
            "GET",
            &format!("/v2/{NAME}/manifests/v1"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (anon.status, anon.code().as_str()),
        (StatusCode::UNAUTHORIZED, "UNAUTHORIZED")
    );
    assert!(
        anon.header("www-authenticate")
            .contains(&format!("scope=\"repository:{NAME}:pull\""))
    );

    // Basic auth as Artifact Registry takes it: oauth2accesstoken + an access token.
    let basic = |token: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("oauth2accesstoken:{token}"))
        )
    };
    let scope = format!("/v2/token?service=cloister.test&scope=repository:{NAME}:pull,push");
    let reader_token = r
        .send(
            None,
            "GET",
            &scope,
            &[("authorization", &basic(&r.reader))],
            vec![],
        )
        .await;
    assert_eq!(reader_token.status, StatusCode::OK);
    let reader_registry_token = reader_token.json()["token"].as_str().unwrap().to_owned();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(reader_registry_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        claims["access"],
        json!([format!("repository:{NAME}:pull")]),
        "the reader is granted pull only"
    );
    let wrong_user = r
        .send(
            None,
            "GET",
            &scope,
            &[(
                "authorization",
                &format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:secret")
                ),
            )],
            vec![],
        )
        .await;
    assert_eq!(wrong_user.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong_user.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("oauth2accesstoken")
    );

    // The registry token pulls (nothing there yet: 404, not 401) but cannot push.
    let pull = r
        .send(
            Some(&reader_registry_token),
            "GET",
            &format!("/v2/{NAME}/manifests/v1"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (pull.status, pull.code().as_str()),
        (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN")
    );
    let push = r.push_blob(&reader_registry_token, NAME, b"x").await;
    assert_eq!(
        (push.status, push.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    assert!(
        push.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("uploadArtifacts")
    );
    // The same with the reader's plain access token.
    assert_eq!(
        r.push_blob(&r.reader, NAME, b"x").await.status,
        StatusCode::FORBIDDEN
    );

    // A stranger can neither pull nor learn more; the decision is in the audit log.
    let denied = r
        .send(
            Some(&r.stranger),
            "GET",
            &format!("/v2/{NAME}/tags/list"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (denied.status, denied.code().as_str()),
        (StatusCode::FORBIDDEN, "DENIED")
    );
    let (_, log) = r
        .api
        .call(&r.owner, "GET", "/cloister/v1/auditLogs?resource=projects/primus-bank&decision=deny&principal=user:eve@example.com", None)
        .await;
    assert_eq!(
        log["entries"][0]["permission"],
        "artifactregistry.repositories.downloadArtifacts"
    );

    // An API token is never a registry token, and a registry token is never an API token.
    let (s, _) = r
        .api
        .call(
            &reader_registry_token,
            "GET",
            "/v1/projects/primus-bank",
            None,
        )
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn bad_uploads_and_manifests_are_refused_and_store_nothing() {
    let r = Registry::start().await;
    let config = b"{}".to_vec();
    // Wrong digest on a monolithic upload: refused, and the blob is not there.
    let start = r.start_upload(&r.owner, NAME).await;
    let claimed = digest(b"something else");
    let bad = r
        .send(
            Some(&r.owner),
            "PUT",
            &format!("{}?digest={claimed}", start.header("location")),
            &[],
            config.clone(),
        )
        .await;
    assert_eq!(
        (bad.status, bad.code().as_str()),
        (StatusCode::BAD_REQUEST, "DIGEST_INVALID")
    );
    assert!(
        bad.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("nothing was stored")
    );
    for d in [&claimed, &digest(&config)] {
        let head = r
            .send(
                Some(&r.owner),
                "HEAD",
                &format!("/v2/{NAME}/blobs/{d}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(head.status, StatusCode::NOT_FOUND);
    }
    let direct = r
        .send(
            Some(&r.owner),
            "POST",
            &format!("/v2/{NAME}/blobs/uploads/?digest={claimed}"),
            &[],
            config.clone(),
        )
        .await;
    assert_eq!(direct.code(), "DIGEST_INVALID");
    let sha512 = r
        .send(
            Some(&r.owner),
            "POST",
            &format!(
                "/v2/{NAME}/blobs/uploads/?digest=sha512:{}",
                "a".repeat(128)
            ),
            &[],
            config.clone(),
        )
        .await;
    assert_eq!(sha512.code(), "DIGEST_INVALID");

    // A manifest whose blobs were never pushed: refused, the tag does not appear.
    let dangling = manifest(&config, &[b"layer"], None);
    let put = r.push_manifest(&r.owner, NAME, "v1", &dangling).await;
    assert_eq!(
        (put.status, put.code().as_str()),
        (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN")
    );
    let tags = r
        .send(
            Some(&r.owner),
            "GET",
            &format!("/v2/{NAME}/tags/list"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(tags.json()["tags"], json!([]));

    // Malformed, mislabelled, oversized, wrongly addressed manifests.
    let not_json = r.push_manifest(&r.owner, NAME, "v1", b"{not json").await;
    assert_eq!(not_json.code(), "MANIFEST_INVALID");
    let index_as_manifest = r
        .send(
            Some(&r.owner),
            "PUT",
            &format!("/v2/{NAME}/manifests/v1"),
            &[("content-type", "application/vnd.oci.image.index.v1+json")],
            manifest(&config, &[], None),
        )
        .await;
    assert_eq!(index_as_manifest.code(), "MANIFEST_INVALID");
    let huge = vec![b' '; 5 * 1024 * 1024];
    let too_big = r.push_manifest(&r.owner, NAME, "v1", &huge).await;
    assert_eq!(too_big.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        r.push_blob(&r.owner, NAME, &config).await.status,
        StatusCode::CREATED
    );
    let good = manifest(&config, &[], None);
    let misaddressed = r
        .push_manifest(&r.owner, NAME, &digest(b"other"), &good)
        .await;
    assert_eq!(misaddressed.code(), "DIGEST_INVALID");

    // Names: traversal, uppercase, too few parts, unknown repository, bad tags.
    for path in [
        "/v2/primus-bank/models/%2e%2e/manifests/v1",
        "/v2/primus-bank/models/..%2fetc/manifests/v1",
        "/v2/primus-bank/Models/x/manifests/v1",
        "/v2/primus-bank/models/manifests/v1",
    ] {
        let got = r.send(Some(&r.owner), "GET", path, &[], vec![]).await;
        assert_eq!(
            (got.status, got.code().as_str()),
            (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            "{path}"
        );
    }
    let unknown = r
        .send(
            Some(&r.owner),
            "GET",
            "/v2/primus-bank/nope/x/manifests/v1",
            &[],
            vec![],
        )
        .await;
    assert_eq!(unknown.code(), "NAME_UNKNOWN");
    assert!(
        unknown.json()["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("cloister artifacts repositories create")
    );
    let bad_tag = r.push_manifest(&r.owner, NAME, "-v1", &good).await;
    assert_eq!(bad_tag.code(), "TAG_INVALID");
    // An upload session belongs to its repository.
    let start = r.start_upload(&r.owner, NAME).await;
    let id = start.header("docker-upload-uuid").to_owned();
    let elsewhere = r
        .send(
            Some(&r.owner),
            "PATCH",
            &format!("/v2/primus-bank/mirror/x/blobs/uploads/{id}"),
            &[],
            b"x".to_vec(),
        )
        .await;
    assert_eq!(elsewhere.code(), "BLOB_UPLOAD_UNKNOWN");
}

#[tokio::test]
async fn abandoned_uploads_are_swept_with_their_chunks() {
    let r = Registry::start().await;
    let start = r.start_upload(&r.owner, NAME).await;
    let loc = start.header("location").to_owned();
    let patch = r
        .send(Some(&r.owner), "PATCH", &loc, &[], vec![1u8; 1000])
        .await;
    assert_eq!(patch.status, StatusCode::ACCEPTED);
    let chunks = r.api.dir.path().join("data/blobs/data/registry-uploads");
    let count = || std::fs::read_dir(&chunks).map(|d| d.count()).unwrap_or(0);
    assert_eq!(count(), 1, "the chunk is stored under its upload");
    // Young uploads stay; with a negative age every upload counts as abandoned.
    let state = &r.api.server.state;
    assert_eq!(
        cloister_services::registry::blobs::sweep_abandoned(state, 3600)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        cloister_services::registry::blobs::sweep_abandoned(state, -1)
            .await
            .unwrap(),
        1
    );
    let status = r.send(Some(&r.owner), "GET", &loc, &[], vec![]).await;
    assert_eq!(status.code(), "BLOB_UPLOAD_UNKNOWN");
    let leftover: usize = std::fs::read_dir(&chunks)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| std::fs::read_dir(e.path()).map(|x| x.count()).unwrap_or(0))
                .sum()
        })
        .unwrap_or(0);
    assert_eq!(leftover, 0, "its chunks are gone");
}

#[tokio::test]
async fn a_registry_token_never_mints_another() {
    let r = Registry::start().await;
    let pull_only = r
        .send(
            Some(&r.reader),
            "GET",
            &format!("/v2/token?service=cloister.test&scope=repository:{NAME}:pull"),
            &[],
            vec![],
        )
        .await;
    assert_eq!(pull_only.status, StatusCode::OK);
    let pull_only = pull_only.json()["token"].as_str().unwrap().to_owned();
    // Asking for more, on this repository and another, or just a renewal: all refused.
    for scope in [
        format!("scope=repository:{NAME}:pull,push,delete&scope=primus-bank/mirror/x:push"),
        format!("scope=repository:{NAME}:pull"),
        String::new(),
    ] {
        let minted = r
            .send(
                Some(&pull_only),
                "GET",
                &format!("/v2/token?service=cloister.test&{scope}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(
            (minted.status, minted.code().as_str()),
            (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            "{scope}"
        );
        assert!(
            minted
                .header("www-authenticate")
                .starts_with("Bearer realm=")
        );
        assert!(minted.json()["token"].is_null());
    }
}

#[tokio::test]
async fn a_stranger_cannot_tell_a_missing_repository_from_an_existing_one() {
    let r = Registry::start().await;
    let ask = |name: String, method: &'static str, path: &'static str| {
        let r = &r;
        async move {
            r.send(
                Some(&r.stranger),
                method,
                &format!("/v2/{name}/{path}"),
                &[],
                vec![],
            )
            .await
        }
    };
    for (method, path) in [
        ("GET", "tags/list"),
        ("GET", "manifests/v1"),
        ("HEAD", "manifests/v1"),
        ("POST", "blobs/uploads/"),
    ] {
        let existing = ask(NAME.into(), method, path).await;
        let missing = ask("primus-bank/no-such-repo/ml/inference".into(), method, path).await;
        assert_eq!(existing.status, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(missing.status, existing.status, "{method} {path}");
        let text =
            |reply: &Reply| String::from_utf8_lossy(&reply.body).replace("no-such-repo", "models");
        assert_eq!(text(&missing), text(&existing), "{method} {path}");
        if method != "HEAD" {
            assert_eq!(existing.code(), "DENIED");
        }
    }
    // The repository's policy methods answer a stranger alike too.
    let repositories = "/v1/projects/primus-bank/locations/us/repositories";
    for (method, body) in [
        ("getIamPolicy", None),
        ("setIamPolicy", Some(json!({"policy": {"bindings": []}}))),
        ("setIamPolicy", Some(json!({"not": "a policy"}))),
        (
            "testIamPermissions",
            Some(json!({"permissions": ["artifactregistry.repositories.get"]})),
        ),
    ] {
        let ask = |repo: &str, who: &str| {
            let path = format!("{repositories}/{repo}:{method}");
            let (api, who, body) = (&r.api, who.to_owned(), body.clone());
            async move { api.call(&who, "POST", &path, body).await }
        };
        let (s, existing) = ask("models", &r.stranger).await;
        let (t, missing) = ask("no-such-repo", &r.stranger).await;
        let missing = missing.to_string().replace("no-such-repo", "models");
        assert_eq!((s, existing.to_string()), (t, missing), "{method}");
        if body.as_ref().is_none_or(|b| b.get("not").is_none()) {
            let (s, b) = ask("no-such-repo", &r.owner).await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{method}: {b}");
        }
    }
    // The owner, who may see the project, is told the repository is missing.
    let owner = r
        .send(
            Some(&r.owner),
            "GET",
            "/v2/primus-bank/no-such-repo/ml/inference/tags/list",
            &[],
            vec![],
        )
        .await;
    assert_eq!(
        (owner.status, owner.code().as_str()),
        (StatusCode::NOT_FOUND, "NAME_UNKNOWN")
    );
}

#[tokio::test]
async fn chunk_ranges_and_page_sizes_that_cannot_be_are_400_in_the_registry_shape() {
    let r = Registry::start().await;
    let max = u64::MAX;
    for (range, status, code) in [
        (
            format!("0-{max}"),
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
        ),
        ("5-4".into(), StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        (
            "0-18446744073709551616".into(),
            StatusCode::BAD_REQUEST,
            "BLOB_UPLOAD_INVALID",
        ),
        ("x-y".into(), StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
        // Out of order (the upload holds 0 bytes): the spec's 416.
        (
            "10-19".into(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
        ),
        (
            format!("{max}-{max}"),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
        ),
        // A chunk whose body is not what it announced.
        (
            "0-0".into(),
            StatusCode::RANGE_NOT_SATISFIABLE,
            "RANGE_INVALID",
        ),
    ] {
        let start = r.start_upload(&r.owner, NAME).await;
        let patch = r
            .send(
                Some(&r.owner),
                "PATCH",
                start.header("location"),
                &[("content-range", &range)],
                b"ten bytes!".to_vec(),
            )
            .await;
        assert_eq!(
            (patch.status, patch.code().as_str()),
            (status, code),
            "{range}"
        );
    }
    for n in ["-1", "x", "18446744073709551616"] {
        let tags = r
            .send(
                Some(&r.owner),
                "GET",
                &format!("/v2/{NAME}/tags/list?n={n}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(
            (tags.status, tags.code().as_str()),
            (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            "n={n}"
        );
    }
}

/// A project's storage quota holds for what it pushes as for its objects: a blob that would
/// pass it is refused and nothing is kept, an upload in progress keeps its room (so many at
/// once cannot together pass it), a digest the project holds is not counted twice, and the
/// objects it stores count with its blobs.
#[tokio::test]
async fn pushes_count_against_the_projects_storage_quota() {
    let r = Registry::start_with(|c| c.storage_limits.project_quota_bytes = Some(100)).await;
    let denied = |reply: &Reply| {
        assert_eq!(
            (reply.status, reply.code().as_str()),
            (StatusCode::FORBIDDEN, "DENIED"),
            "{:?}",
            reply.json()
        );
        assert!(
            reply.json()["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("storage quota of 100 bytes"),
            "{:?}",
            reply.json()
        );
    };
    assert_eq!(
        r.push_blob(&r.owner, NAME, &[1; 40]).await.status,
        StatusCode::CREATED
    );
    let other = "primus-bank/mirror/other";
    assert_eq!(
        r.push_blob(&r.owner, other, &[1; 40]).await.status,
        StatusCode::CREATED,
        "the project holds that digest already"
    );
    // An upload holding 30 bytes keeps its room.
    let start = r.start_upload(&r.owner, NAME).await;
    let loc = start.header("location").to_owned();
    let chunk = async |range: &'static str, bytes: Vec<u8>| {
        r.send(
            Some(&r.owner),
            "PATCH",
            &loc,
            &[("content-range", range)],
            bytes,
        )
        .await
    };
    assert_eq!(
        chunk("0-29", vec![2; 30]).await.status,
        StatusCode::ACCEPTED
    );
    // 40 stored once (not twice) + 30 uploading + 20 fits 100; 20 more does not.
    assert_eq!(
        r.push_blob(&r.owner, NAME, &[3; 20]).await.status,
        StatusCode::CREATED
    );
    denied(&r.push_blob(&r.owner, NAME, &[4; 20]).await);
    // Its own next chunk is judged with what it holds: 60 + 30 + 20 passes 100.
    denied(&chunk("30-49", vec![2; 20]).await);
    // Announced or not: a chunk without Content-Range stops when it passes.
    let unannounced = r
        .send(Some(&r.owner), "PATCH", &loc, &[], vec![2; 20])
        .await;
    denied(&unannounced);
    let done = r
        .send(
            Some(&r.owner),
            "PUT",
            &format!("{loc}?digest={}", digest(&[2; 30])),
            &[],
            vec![],
        )
        .await;
    assert_eq!(done.status, StatusCode::CREATED, "{:?}", done.json());
    for d in [digest(&[4; 20]), digest(&[2; 50])] {
        let head = r
            .send(
                Some(&r.owner),
                "HEAD",
                &format!("/v2/{NAME}/blobs/{d}"),
                &[],
                vec![],
            )
            .await;
        assert_eq!(
            head.status,
            StatusCode::NOT_FOUND,
            "nothing refused was kept"
        );
    }
    // 90 bytes of blobs: an object of 11 bytes in the same project does not fit.
    let (s, _) = r
        .api
        .call(
            &r.owner,
            "POST",
            "/storage/v1/b?project=primus-bank",
            Some(json!({"name": "primus-models"})),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let upload = Request::builder()
        .method("POST")
        .uri("/upload/storage/v1/b/primus-models/o?uploadType=media&name=m")
        .header("authorization", format!("Bearer {}", r.owner))
        .body(Body::from(vec![0u8; 11]))
        .unwrap();
    let resp = r.api.router().oneshot(upload).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}
