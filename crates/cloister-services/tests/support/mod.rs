//! The control-plane API in process: real stores on a temp data dir, requests through the
//! same router the server runs.

#![allow(dead_code)]

#[path = "../../../cloister-store/tests/support/postgres.rs"]
pub mod postgres;
pub mod secundus;
pub mod storage_world;
pub mod vtpm;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Api {
    router: Router,
    pub dir: tempfile::TempDir,
    pub server: cloister_services::OpenedServer,
    pub admin: String,
    /// What this server was opened with (a replica reuses it with its own data directory).
    pub config: cloister_services::ServerConfig,
}

impl Api {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose configuration `configure` adjusts first.
    pub async fn start_with(configure: impl FnOnce(&mut cloister_services::ServerConfig)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path().join("data"));
        // CLOISTER_TEST_DATABASE=postgres runs the suite on PostgreSQL instead of SQLite.
        if std::env::var("CLOISTER_TEST_DATABASE").as_deref() == Ok("postgres") {
            config.database_url = Some(postgres::Postgres::database());
            config.kek = Some(rand::random::<[u8; 32]>().to_vec());
        }
        configure(&mut config);
        let opened = cloister_services::open(config.clone()).await.unwrap();
        let cred: Value = serde_json::from_slice(
            &std::fs::read(opened.bootstrap_credential.as_ref().unwrap()).unwrap(),
        )
        .unwrap();
        let router = opened.router.clone();
        let mut api = Api {
            router,
            dir,
            server: opened,
            admin: String::new(),
            config,
        };
        api.admin = api.login(&cred).await;
        api
    }

    /// Another replica of this server: the same configuration (database, blob store, KEK,
    /// public URL: replicas sit behind one load balancer), its own data directory and caches.
    /// Its admin token is the one this server issued.
    pub async fn replica(&self) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let config = cloister_services::ServerConfig {
            data_dir: dir.path().join("data"),
            ..self.config.clone()
        };
        let opened = cloister_services::open(config.clone()).await.unwrap();
        assert!(
            opened.bootstrap_credential.is_none(),
            "a replica finds the admin the first server created"
        );
        Api {
            router: opened.router.clone(),
            dir,
            server: opened,
            admin: self.admin.clone(),
            config,
        }
    }

    pub async fn login(&self, cred: &Value) -> String {
        let form = format!(
            "grant_type=client_credentials&client_id={}&client_secret={}",
            cred["client_id"].as_str().unwrap(),
            cred["client_secret"].as_str().unwrap()
        );
        let req = Request::post("/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let (status, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub fn router(&self) -> Router {
        self.router.clone()
    }

    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn call(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(
                body.map(|b| Body::from(b.to_string()))
                    .unwrap_or_else(Body::empty),
            )
            .unwrap();
        self.send(req).await
    }

    /// Creates a user and returns an access token for it.
    pub async fn user(&self, email: &str) -> String {
        let (s, b) = self
            .call(
                &self.admin,
                "POST",
                "/cloister/v1/users",
                Some(json!({"email": email})),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        let (s, cred) = self
            .call(
                &self.admin,
                "POST",
                &format!("/cloister/v1/users/{email}/credentials"),
                None,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{cred}");
        self.login(&cred).await
    }
}

/// The embedded default's configuration for tests, on `data_dir`.
pub fn config(data_dir: std::path::PathBuf) -> cloister_services::ServerConfig {
    cloister_services::ServerConfig {
        data_dir,
        public_url: "http://cloister.test".into(),
        max_body_bytes: 1024 * 1024,
        attestation_token_lifetime_secs: 3600,
        launcher: None,
        hardware_evidence_time: None,
        database_url: None,
        database_connections: cloister_services::DEFAULT_DATABASE_CONNECTIONS,
        blob_url: None,
        blob_options: Vec::new(),
        kek: None,
        replica_lease: cloister_services::DEFAULT_REPLICA_LEASE,
        storage_limits: Default::default(),
        oidc_fetch_allow: Vec::new(),
        // The tests exercise INSECURE evidence; `verifier.rs` proves a server refuses it by default.
        allow_insecure_evidence: true,
        guest_image: None,
        max_instances: None,
        project_instance_quota: None,
        user_project_quota: None,
        condition_worker: cloister_services::federation::judge::WorkerCommand {
            program: env!("CARGO_BIN_EXE_cloister-condition-worker").into(),
            args: Vec::new(),
        },
        instance_disk_gb: None,
    }
}

pub fn message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

/// A file of the recorded TEE evidence in `testdata/tee/` (`snp/test-report.bin`, …).
pub fn tee_fixture(path: &str) -> Vec<u8> {
    let found = crate_dir().join("../../testdata/tee").join(path);
    std::fs::read(&found).unwrap_or_else(|e| panic!("{}: {e}", found.display()))
}

/// This crate's directory, read when the test runs (cargo sets it for `cargo test`), not when
/// it was compiled: a test binary built in another checkout must still read this checkout's
/// files.
pub fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            panic!("CARGO_MANIFEST_DIR is not set: run the tests with `cargo test`, which sets it")
        })
}
