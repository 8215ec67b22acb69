//! A project `primus-bank` with a bucket `primus-models` owned by one user, and a second user
//! with no role yet: what the Cloud Storage tests start from.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};

use super::Api;

pub struct World {
    pub api: Api,
    pub owner: String,
    pub reader: String,
}

impl World {
    pub async fn new() -> World {
        World::with(|_| {}).await
    }

    pub async fn with(configure: impl FnOnce(&mut cloister_services::ServerConfig)) -> World {
        let api = Api::start_with(configure).await;
        let owner = api.user("primus@example.com").await;
        let reader = api.user("secundus@example.com").await;
        let (s, b) = api
            .call(
                &owner,
                "POST",
                "/v1/projects",
                Some(json!({"projectId": "primus-bank"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, b) = api
            .call(
                &owner,
                "POST",
                "/storage/v1/b?project=primus-bank",
                Some(json!({"name": "primus-models"})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        World { api, owner, reader }
    }

    pub async fn upload(
        &self,
        token: &str,
        name: &str,
        bytes: &[u8],
        query: &str,
    ) -> (StatusCode, Value) {
        let req = Request::post(format!(
            "/upload/storage/v1/b/primus-models/o?uploadType=media&name={name}{query}"
        ))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/octet-stream")
        .body(Body::from(bytes.to_vec()))
        .unwrap();
        self.api.send(req).await
    }

    pub async fn download(
        &self,
        token: &str,
        name: &str,
        range: Option<&str>,
    ) -> (StatusCode, Vec<u8>, axum::http::HeaderMap) {
        let mut req = Request::get(format!(
            "/download/storage/v1/b/primus-models/o/{name}?alt=media"
        ))
        .header("authorization", format!("Bearer {token}"));
        if let Some(r) = range {
            req = req.header("range", r);
        }
        let resp = tower::ServiceExt::oneshot(self.api.router(), req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (status, headers) = (resp.status(), resp.headers().clone());
        (
            status,
            axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap()
                .to_vec(),
            headers,
        )
    }

    pub async fn grant(&self, member: &str, role: &str) {
        let (_, mut policy) = self
            .api
            .call(&self.owner, "GET", "/storage/v1/b/primus-models/iam", None)
            .await;
        policy["bindings"]
            .as_array_mut()
            .unwrap()
            .push(json!({"role": role, "members": [member]}));
        let (s, b) = self
            .api
            .call(
                &self.owner,
                "PUT",
                "/storage/v1/b/primus-models/iam",
                Some(policy),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    /// Removes every role `member` holds on the bucket.
    pub async fn revoke(&self, member: &str) {
        let (_, mut policy) = self
            .api
            .call(&self.owner, "GET", "/storage/v1/b/primus-models/iam", None)
            .await;
        let bindings = policy["bindings"].as_array_mut().unwrap();
        for binding in bindings.iter_mut() {
            binding["members"]
                .as_array_mut()
                .unwrap()
                .retain(|m| m != member);
        }
        bindings.retain(|b| !b["members"].as_array().unwrap().is_empty());
        let (s, b) = self
            .api
            .call(
                &self.owner,
                "PUT",
                "/storage/v1/b/primus-models/iam",
                Some(policy),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }

    /// Opens a resumable upload of `name` as `token`; the session's path.
    pub async fn open_session(&self, token: &str, name: &str) -> (StatusCode, String) {
        let req = Request::post("/upload/storage/v1/b/primus-models/o?uploadType=resumable")
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(json!({ "name": name }).to_string()))
            .unwrap();
        let resp = tower::ServiceExt::oneshot(self.api.router(), req)
            .await
            .unwrap();
        let location = resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| l.strip_prefix("http://cloister.test"))
            .unwrap_or_default()
            .to_owned();
        (resp.status(), location)
    }

    /// A PUT on a session: a chunk, or a status query (`bytes */…`).
    pub async fn put_chunk(
        &self,
        session: &str,
        range: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let req = Request::put(session)
            .header("content-range", range)
            .body(Body::from(body))
            .unwrap();
        self.api.send(req).await
    }
}
