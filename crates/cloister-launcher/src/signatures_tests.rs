//! Discovery against a registry that misbehaves on purpose: it fails before it answers, lies
//! about a payload's bytes, or floods the launcher with signatures. Cloister's own registry
//! never does any of that (it checks every blob's digest on upload), so this one is served
//! here; the launcher must keep what holds and skip, never fail on, the rest.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::*;

const DIGEST_HEX: &str = "4b1f8ac8e3c7a2f1c9d1e0b5f7a6d3c2b1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6";

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Default)]
struct Hostile {
    /// Payload bytes by digest.
    blobs: HashMap<String, Vec<u8>>,
    /// Each repository's layers: (payload digest, payload size).
    layers: HashMap<&'static str, Vec<(String, usize)>>,
    /// How often the `flaky` repository's manifest was asked for.
    flaky_asks: AtomicU32,
    /// How many payloads of the `many` repository were asked for.
    many_payload_asks: AtomicU32,
}

impl Hostile {
    fn with_payloads(mut self, repo: &'static str, payloads: Vec<Vec<u8>>) -> Self {
        let layers = payloads
            .into_iter()
            .map(|p| {
                let (digest, size) = (sha256(&p), p.len());
                self.blobs.insert(digest.clone(), p);
                (digest, size)
            })
            .collect();
        self.layers.insert(repo, layers);
        self
    }

    fn manifest(&self, repo: &str) -> serde_json::Value {
        let layers: Vec<_> = self.layers[repo]
            .iter()
            .map(|(digest, size)| {
                let mut annotations = serde_json::Map::new();
                annotations.insert(
                    SIGNATURE_ANNOTATION.into(),
                    json!(STANDARD.encode(b"signature")),
                );
                json!({
                    "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
                    "digest": digest, "size": size, "annotations": annotations,
                })
            })
            .collect();
        json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256(b"{}"), "size": 2},
            "layers": layers,
        })
    }
}

async fn serve(State(h): State<Arc<Hostile>>, uri: Uri) -> Response {
    let path = uri.path();
    if path == "/v2/" {
        return "{}".into_response();
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if let Some((repo, _)) = rest.split_once("/manifests/") {
        let repo = repo.trim_end_matches("/sig");
        if repo == "flaky" && h.flaky_asks.fetch_add(1, Ordering::SeqCst) < 2 {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        if !h.layers.contains_key(repo) {
            return StatusCode::NOT_FOUND.into_response();
        }
        let body = h.manifest(repo).to_string();
        let media = "application/vnd.oci.image.manifest.v1+json";
        return ([(header::CONTENT_TYPE, media)], body).into_response();
    }
    if let Some((repo, digest)) = rest.split_once("/blobs/") {
        if repo.starts_with("many") {
            h.many_payload_asks.fetch_add(1, Ordering::SeqCst);
        }
        return match h.blobs.get(digest) {
            // The lie: other bytes than the digest the manifest names.
            Some(_) if repo.starts_with("tampered") => b"other bytes".to_vec().into_response(),
            Some(bytes) => bytes.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        };
    }
    StatusCode::NOT_FOUND.into_response()
}

#[tokio::test]
async fn a_failing_lying_or_flooding_registry_costs_only_its_own_signatures() {
    let payload = |i: usize| format!("{{\"critical\":{{\"n\":{i}}}}}").into_bytes();
    let hostile = Hostile::default()
        .with_payloads("flaky", vec![payload(0)])
        .with_payloads("tampered", vec![payload(1)])
        .with_payloads("many", (2..2 + MAX_SIGNATURES + 1).map(payload).collect());
    let hostile = Arc::new(hostile);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let app = Router::new()
        .fallback(serve)
        .with_state(Arc::clone(&hostile));
    tokio::spawn(async move { axum::serve(listener, app).await });
    // A closed port: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let discovery = |repos: &[&str]| Discovery {
        repos: repos.iter().map(|r| r.to_string()).collect(),
        cloister_host: String::new(),
        insecure_hosts: vec![host.clone(), closed.clone()],
    };
    let digest = format!("sha256:{DIGEST_HEX}");
    let payloads = |found: &[Value]| -> Vec<Vec<u8>> {
        found
            .iter()
            .map(|s| STANDARD.decode(s["payload"].as_str().unwrap()).unwrap())
            .collect()
    };

    // Each repository alone: what it yields.
    let cases = [
        // Two failures, then an answer: the third attempt gets it.
        (format!("{host}/flaky/sig"), vec![payload(0)]),
        // A payload whose bytes are not its digest's: the repository is skipped.
        (format!("{host}/tampered/sig"), vec![]),
        // Nothing listening, and no such repository: skipped after the retries.
        (format!("{closed}/nothing/here"), vec![]),
        (format!("{host}/missing/sig"), vec![]),
    ];
    for (repo, want) in cases {
        let found = discovery(&[&repo]).find(&digest, "").await;
        assert_eq!(payloads(&found), want, "{repo}");
    }
    assert_eq!(hostile.flaky_asks.load(Ordering::SeqCst), 3);

    // All at once: the bad ones cost nothing but their own; the flood is cut at the
    // verifier's limit, keeping what came first, and what is past it is never fetched.
    let all = [
        format!("{closed}/nothing/here"),
        format!("{host}/tampered/sig"),
        format!("{host}/flaky/sig"),
        format!("{host}/many/sig"),
    ];
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    let found = payloads(&discovery(&all).find(&digest, "").await);
    assert_eq!(found.len(), MAX_SIGNATURES);
    assert_eq!(found[0], payload(0), "the flaky repository's, first");
    assert_eq!(
        hostile.many_payload_asks.load(Ordering::SeqCst) as usize,
        MAX_SIGNATURES - 1
    );
    assert_eq!(
        found[1..],
        (2..2 + MAX_SIGNATURES - 1).map(payload).collect::<Vec<_>>()[..]
    );
}
