//! The instance's metadata server, as GCE serves it (`GCE_METADATA_HOST`).

use std::collections::BTreeMap;

use crate::LaunchError;

#[derive(Clone)]
pub struct Metadata {
    base: String,
    http: reqwest::Client,
}

impl Metadata {
    pub fn new(host: &str) -> Self {
        Metadata {
            base: format!("http://{host}/computeMetadata/v1"),
            http: reqwest::Client::new(),
        }
    }

    pub async fn get(&self, path: &str) -> Result<String, LaunchError> {
        let url = format!("{}/{path}", self.base);
        let fail = |e: String| LaunchError::Metadata(format!("{url}: {e}"));
        let resp = self
            .http
            .get(&url)
            .header("Metadata-Flavor", "Google")
            .send()
            .await
            .map_err(|e| fail(e.to_string()))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| fail(e.to_string()))?;
        if !status.is_success() {
            return Err(fail(format!("{status}: {text}")));
        }
        Ok(text)
    }

    pub async fn attributes(&self) -> Result<BTreeMap<String, String>, LaunchError> {
        let text = self.get("instance/attributes/?recursive=true").await?;
        serde_json::from_str(&text).map_err(|e| {
            LaunchError::Metadata(format!("instance attributes are not a JSON object: {e}"))
        })
    }

    /// The instance service account's access token.
    pub async fn access_token(&self) -> Result<String, LaunchError> {
        let text = self.get("instance/service-accounts/default/token").await?;
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| LaunchError::Metadata(format!("the token answer is not JSON: {e}")))?;
        v["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LaunchError::Metadata("the token answer has no access_token".into()))
    }

    pub async fn id_token(&self, audience: &str) -> Result<String, LaunchError> {
        let q: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("audience", audience)
            .append_pair("format", "full")
            .finish();
        self.get(&format!("instance/service-accounts/default/identity?{q}"))
            .await
    }
}
