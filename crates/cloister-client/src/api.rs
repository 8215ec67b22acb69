//! A small HTTP client for Cloister's APIs: bearer authentication from a profile, JSON in and
//! out, and Google's error shape turned into [`ClientError::Api`].

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::Value;

use crate::profiles::{CachedToken, Profile, Profiles};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused: its HTTP status, Google's status name, and its message.
    #[error("{status}: {message}")]
    Api {
        http_status: u16,
        status: String,
        message: String,
    },
    #[error("could not reach {endpoint}: {detail}. Is `cloister server` running there?")]
    Transport { endpoint: String, detail: String },
    #[error("{0}")]
    Config(String),
    /// Writing a download failed; the source keeps the I/O error's kind, so a caller can tell
    /// a reader that went away (a closed pipe) from a full disk.
    #[error("writing the download: {0}")]
    Output(#[source] std::io::Error),
}

/// Refresh a cached token this long before it expires, so a request never carries one that
/// expires in flight.
const REFRESH_MARGIN_SECS: i64 = 300;

pub struct ApiClient {
    http: reqwest::Client,
    endpoint: String,
    token: Option<String>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: i64,
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl ApiClient {
    /// A client without credentials (for `/healthz` and the token endpoint).
    pub fn anonymous(endpoint: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token: None,
        }
    }

    /// A client authenticated as `profile`'s credential, reusing its cached token while fresh.
    pub async fn for_profile(profiles: &Profiles, profile: &Profile) -> Result<Self, ClientError> {
        let token = access_token(profiles, profile).await?;
        Ok(Self {
            token: Some(token),
            ..Self::anonymous(&profile.endpoint)
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::GET, path, &[], None).await
    }

    pub async fn get_query(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Value, ClientError> {
        self.send(Method::GET, path, query, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::POST, path, &[], Some(body)).await
    }

    pub async fn patch_query(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.send(Method::PATCH, path, query, Some(body)).await
    }

    pub async fn post_query(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &Value,
    ) -> Result<Value, ClientError> {
        self.send(Method::POST, path, query, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.send(Method::PUT, path, &[], Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.send(Method::DELETE, path, &[], None).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.endpoint))
            .query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(value)
        } else {
            Err(api_error(status, &value))
        }
    }

    /// Streams `file` as the body of a POST (a media upload); the file is never held whole.
    pub async fn upload_file(
        &self,
        path: &str,
        query: &[(&str, String)],
        file: &std::path::Path,
        content_type: &str,
        progress: &Progress,
    ) -> Result<Value, ClientError> {
        let (handle, len) = open_file(file).await?;
        let body = reqwest::Body::wrap_stream(counted(handle, u64::MAX, progress.clone()));
        let mut req = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .query(query)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        json_result(resp).await
    }

    /// Uploads `file` with the resumable protocol: a session (POST `path` with
    /// `uploadType=resumable`), then chunks of `chunk_size` bytes. When a chunk fails in
    /// transit, asks the server how much it holds and continues from there, so a large upload
    /// survives a dropped connection or a server restart without starting over.
    pub async fn upload_file_resumable(
        &self,
        path: &str,
        query: &[(&str, String)],
        file: &std::path::Path,
        content_type: &str,
        chunk_size: u64,
        progress: &Progress,
    ) -> Result<Value, ClientError> {
        use tokio::io::AsyncSeekExt;
        const ATTEMPTS: u32 = 5;
        let (_, total) = open_file(file).await?;
        let mut query = query.to_vec();
        query.push(("uploadType", "resumable".to_owned()));
        let mut req = self
            .http
            .post(format!("{}{path}", self.endpoint))
            .query(&query)
            .header("x-upload-content-type", content_type)
            .header("x-upload-content-length", total)
            .json(&serde_json::json!({"contentType": content_type}));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let location = match resp.headers().get(reqwest::header::LOCATION) {
            Some(l) if resp.status().is_success() => l
                .to_str()
                .map_err(|_| ClientError::Config("the session URI is not text".into()))?
                .to_owned(),
            _ => return json_result(resp).await,
        };
        // The session URI names the server's public URL; this client reaches the same server
        // at its configured endpoint (which differs behind a proxy or in tests), so only the
        // path and query are kept.
        let session = match location.split_once("://") {
            Some((_, rest)) => format!(
                "{}{}",
                self.endpoint,
                rest.find('/').map_or("", |i| &rest[i..])
            ),
            None => format!("{}{location}", self.endpoint),
        };
        let chunk_size = chunk_size.max(256 * 1024);
        let mut offset = 0u64;
        let mut failures = 0;
        loop {
            progress.set(offset);
            let end = (offset + chunk_size).min(total);
            let sent = async {
                let (mut handle, _) = open_file(file).await?;
                handle
                    .seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| ClientError::Config(format!("reading {}: {e}", file.display())))?;
                let range = if total == 0 {
                    "bytes */0".to_owned()
                } else {
                    format!("bytes {offset}-{}/{total}", end - 1)
                };
                let body = reqwest::Body::wrap_stream(counted(
                    handle,
                    end - offset,
                    progress.offset_by(offset),
                ));
                self.http
                    .put(&session)
                    .header(reqwest::header::CONTENT_RANGE, range)
                    .header(reqwest::header::CONTENT_LENGTH, end - offset)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.transport(e))
            }
            .await;
            let resp = match sent {
                Ok(resp) => resp,
                Err(e @ ClientError::Transport { .. }) if failures < ATTEMPTS => {
                    failures += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 << failures)).await;
                    match self.upload_status(&session, total).await {
                        Ok(Some(held)) => offset = held,
                        Ok(None) => return Err(e),
                        Err(_) => {}
                    }
                    continue;
                }
                Err(e) => return Err(e),
            };
            if resp.status().as_u16() == 308 {
                offset = held_bytes(resp.headers());
                continue;
            }
            progress.set(total);
            return json_result(resp).await;
        }
    }

    /// How many bytes a resumable session holds; `None` once it is finished or gone.
    async fn upload_status(&self, session: &str, total: u64) -> Result<Option<u64>, ClientError> {
        let resp = self
            .http
            .put(session)
            .header(reqwest::header::CONTENT_RANGE, format!("bytes */{total}"))
            .header(reqwest::header::CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        Ok((resp.status().as_u16() == 308).then(|| held_bytes(resp.headers())))
    }

    /// The digest of the manifest at `/v2/NAME/manifests/REFERENCE` (a HEAD, as `docker`
    /// resolves a tag), accepting every manifest type.
    pub async fn manifest_digest(&self, path: &str) -> Result<String, ClientError> {
        const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";
        let mut req = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .header(reqwest::header::ACCEPT, ACCEPT);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        match digest {
            Some(d) if resp.status().is_success() => Ok(d),
            _ => json_result(resp).await.and_then(|_| {
                Err(ClientError::Config(format!(
                    "the registry answered {path} without a Docker-Content-Digest"
                )))
            }),
        }
    }

    /// Pushes `file` as the blob `digest` of the OCI repository `name` (a monolithic upload:
    /// POST for a session, then PUT with the bytes), unless the registry already has it.
    pub async fn push_blob(
        &self,
        name: &str,
        file: &std::path::Path,
        digest: &str,
    ) -> Result<(), ClientError> {
        let blob = format!("{}/v2/{name}/blobs/{digest}", self.endpoint);
        let head = self
            .authed(self.http.head(&blob))
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if head.status().is_success() {
            return Ok(());
        }
        let start = self
            .authed(
                self.http
                    .post(format!("{}/v2/{name}/blobs/uploads/", self.endpoint)),
            )
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let location = match start.headers().get(reqwest::header::LOCATION) {
            Some(l) if start.status().is_success() => l.to_str().unwrap_or_default().to_owned(),
            _ => return json_result(start).await.map(|_| ()),
        };
        let (handle, len) = open_file(file).await?;
        let body = reqwest::Body::wrap_stream(counted(handle, u64::MAX, Progress::default()));
        let url = format!(
            "{}{location}",
            if location.starts_with('/') {
                self.endpoint.as_str()
            } else {
                ""
            }
        );
        let resp = self
            .authed(self.http.put(url).query(&[("digest", digest)]))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        json_result(resp).await.map(|_| ())
    }

    /// Pushes a manifest under `reference` (a tag or digest); returns its digest.
    pub async fn push_manifest(
        &self,
        name: &str,
        reference: &str,
        media_type: &str,
        manifest: Vec<u8>,
    ) -> Result<String, ClientError> {
        let resp = self
            .authed(
                self.http
                    .put(format!("{}/v2/{name}/manifests/{reference}", self.endpoint)),
            )
            .header(reqwest::header::CONTENT_TYPE, media_type)
            .body(manifest)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        json_result(resp).await?;
        digest.ok_or_else(|| {
            ClientError::Config("the registry returned no Docker-Content-Digest".into())
        })
    }

    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => req.bearer_auth(token),
            None => req,
        }
    }

    /// Streams a GET's body into `out` (a download); returns the number of bytes written.
    pub async fn download(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
        progress: &Progress,
    ) -> Result<u64, ClientError> {
        use futures::StreamExt;
        use tokio::io::AsyncWriteExt;
        let mut req = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .query(query);
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status();
        if !status.is_success() {
            let value: Value = resp.json().await.unwrap_or(Value::Null);
            return Err(api_error(status, &value));
        }
        let mut written = 0u64;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.transport(e))?;
            out.write_all(&chunk).await.map_err(ClientError::Output)?;
            written += chunk.len() as u64;
            progress.set(written);
        }
        out.flush().await.map_err(ClientError::Output)?;
        Ok(written)
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.clone(),
            detail: e.to_string(),
        }
    }
}

/// Reports how many bytes of a transfer are done (the CLI draws a progress bar from it).
#[derive(Clone, Default)]
pub struct Progress {
    report: Option<std::sync::Arc<dyn Fn(u64) + Send + Sync>>,
    base: u64,
}

impl Progress {
    pub fn new(report: impl Fn(u64) + Send + Sync + 'static) -> Self {
        Self {
            report: Some(std::sync::Arc::new(report)),
            base: 0,
        }
    }

    fn set(&self, done: u64) {
        if let Some(r) = &self.report {
            r(self.base + done);
        }
    }

    fn offset_by(&self, base: u64) -> Self {
        Self {
            report: self.report.clone(),
            base: self.base + base,
        }
    }
}

async fn open_file(file: &std::path::Path) -> Result<(tokio::fs::File, u64), ClientError> {
    let handle = tokio::fs::File::open(file)
        .await
        .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", file.display())))?;
    let len = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
    Ok((handle, len))
}

/// Up to `limit` bytes of `file` as a stream, reporting progress as they are read.
fn counted(
    file: tokio::fs::File,
    limit: u64,
    progress: Progress,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + 'static {
    use futures::TryStreamExt;
    use tokio::io::AsyncReadExt;
    let mut done = 0u64;
    tokio_util::io::ReaderStream::with_capacity(file.take(limit), 256 * 1024).inspect_ok(
        move |chunk| {
            done += chunk.len() as u64;
            progress.set(done);
        },
    )
}

/// The end of `Range: bytes=0-N` in a 308 answer, as the next offset (0 when absent).
fn held_bytes(headers: &reqwest::header::HeaderMap) -> u64 {
    headers
        .get(reqwest::header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit('-').next())
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n + 1)
}

async fn json_result(resp: reqwest::Response) -> Result<Value, ClientError> {
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        Ok(value)
    } else {
        Err(api_error(status, &value))
    }
}

/// Reads Google's `{"error":{"code","message","status"}}` or OAuth's `{"error","error_description"}`.
fn api_error(status: StatusCode, body: &Value) -> ClientError {
    let err = &body["error"];
    let (name, message) = if err.is_object() {
        (
            err["status"].as_str().unwrap_or("ERROR").to_owned(),
            err["message"].as_str().unwrap_or("").to_owned(),
        )
    } else if let Some(first) = body["errors"].get(0) {
        // The OCI distribution API's `{"errors":[{"code","message"}]}`.
        (
            first["code"].as_str().unwrap_or("ERROR").to_owned(),
            first["message"].as_str().unwrap_or("").to_owned(),
        )
    } else if let Some(code) = err.as_str() {
        (
            code.to_owned(),
            body["error_description"].as_str().unwrap_or("").to_owned(),
        )
    } else {
        (
            "ERROR".to_owned(),
            body.as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| body.to_string()),
        )
    };
    ClientError::Api {
        http_status: status.as_u16(),
        status: name,
        message,
    }
}

/// The profile's access token: the cached one while it has more than a few minutes left,
/// otherwise a new one from the server's token endpoint (then cached, mode 0600).
pub async fn access_token(profiles: &Profiles, profile: &Profile) -> Result<String, ClientError> {
    if let Some(cached) = profiles.cached_token(&profile.name)
        && cached.expires_at - now_unix() > REFRESH_MARGIN_SECS
    {
        return Ok(cached.access_token);
    }
    let cred = profiles.credential(&profile.name)?;
    let client = ApiClient::anonymous(&profile.endpoint);
    let resp = client
        .http
        .post(format!("{}/oauth2/token", client.endpoint))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", cred.client_id.as_str()),
            ("client_secret", cred.client_secret.as_str()),
        ])
        .send()
        .await
        .map_err(|e| client.transport(e))?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| client.transport(e))?;
    if !status.is_success() {
        return Err(api_error(status, &body));
    }
    let token: TokenResponse = serde_json::from_value(body).map_err(|e| {
        ClientError::Config(format!(
            "the token endpoint answered an unexpected shape: {e}"
        ))
    })?;
    let cached = CachedToken {
        access_token: token.access_token,
        expires_at: now_unix() + token.expires_in,
    };
    profiles.cache_token(&profile.name, &cached)?;
    Ok(cached.access_token)
}
