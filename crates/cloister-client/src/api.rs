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
    ) -> Result<Value, ClientError> {
        let handle = tokio::fs::File::open(file)
            .await
            .map_err(|e| ClientError::Config(format!("cannot read {}: {e}", file.display())))?;
        let len = handle.metadata().await.map(|m| m.len()).unwrap_or(0);
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(handle));
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
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            Err(api_error(status, &value))
        }
    }

    /// Streams a GET's body into `out` (a download); returns the number of bytes written.
    pub async fn download(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut (impl tokio::io::AsyncWrite + Unpin),
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
            out.write_all(&chunk)
                .await
                .map_err(|e| ClientError::Config(format!("writing the download: {e}")))?;
            written += chunk.len() as u64;
        }
        out.flush()
            .await
            .map_err(|e| ClientError::Config(format!("writing the download: {e}")))?;
        Ok(written)
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        ClientError::Transport {
            endpoint: self.endpoint.clone(),
            detail: e.to_string(),
        }
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
