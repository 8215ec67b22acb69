//! The workload's Google-protocol calls: STS token exchange with the attestation token,
//! impersonation of Primus's service account, Cloud Storage, Cloud KMS. Endpoints come from
//! `CLOISTER_API_ENDPOINT` and the metadata server from `GCE_METADATA_HOST`, both set by the
//! launcher.

use serde_json::{Value, json};

pub const TOKEN_FILE: &str = "/run/container_launcher/attestation_verifier_claims_token";

pub struct Cloud {
    pub api: String,
    pub metadata_host: String,
    http: reqwest::blocking::Client,
}

/// The upstream's own words: OAuth's `error_description`, or Google's `error.message`.
fn upstream_error(status: reqwest::StatusCode, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    v["error_description"]
        .as_str()
        .or_else(|| v["error"]["message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}: {body}"))
}

fn check(resp: reqwest::blocking::Response) -> Result<reqwest::blocking::Response, String> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    Err(upstream_error(status, &resp.text().unwrap_or_default()))
}

pub fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

impl Cloud {
    pub fn from_env() -> Result<Self, String> {
        let var = |k: &str| {
            std::env::var(k).map_err(|_| format!("{k} is not set (the launcher sets it)"))
        };
        Ok(Cloud {
            api: var("CLOISTER_API_ENDPOINT")?
                .trim_end_matches('/')
                .to_owned(),
            metadata_host: var("GCE_METADATA_HOST")?,
            http: reqwest::blocking::Client::builder().build().map_err(|e| {
                format!("cannot build the HTTP client (does the image carry /etc/ssl/certs?): {e}")
            })?,
        })
    }

    /// The instance service account's own token (for Secundus's buckets).
    pub fn instance_token(&self) -> Result<String, String> {
        let resp = self
            .http
            .get(format!(
                "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                self.metadata_host
            ))
            .header("Metadata-Flavor", "Google")
            .send()
            .map_err(|e| e.to_string())?;
        let v: Value = check(resp)?.json().map_err(|e| e.to_string())?;
        v["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "no access_token".into())
    }

    /// Exchanges the attestation token at STS for the provider `audience`, then impersonates
    /// `service_account` (what Google's client libraries do with an external account config).
    pub fn primus_token(&self, audience: &str, service_account: &str) -> Result<String, String> {
        let subject = std::fs::read_to_string(TOKEN_FILE)
            .map_err(|e| format!("reading {TOKEN_FILE}: {e}"))?;
        let resp = self
            .http
            .post(format!("{}/v1/token", self.api))
            .form(&[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("audience", audience),
                ("scope", "https://www.googleapis.com/auth/cloud-platform"),
                (
                    "requested_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
                ("subject_token", subject.trim()),
            ])
            .send()
            .map_err(|e| e.to_string())?;
        let v: Value = check(resp)?.json().map_err(|e| e.to_string())?;
        let federated = v["access_token"]
            .as_str()
            .ok_or("STS returned no access_token")?;
        let resp = self
            .http
            .post(format!(
                "{}/v1/projects/-/serviceAccounts/{service_account}:generateAccessToken",
                self.api
            ))
            .bearer_auth(federated)
            .json(&json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"]}))
            .send()
            .map_err(|e| e.to_string())?;
        let v: Value = check(resp)?.json().map_err(|e| e.to_string())?;
        v["accessToken"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| "generateAccessToken returned no accessToken".into())
    }

    pub fn download(&self, token: &str, bucket: &str, object: &str) -> Result<Vec<u8>, String> {
        let resp = self
            .http
            .get(format!(
                "{}/storage/v1/b/{bucket}/o/{}?alt=media",
                self.api,
                encode(object)
            ))
            .bearer_auth(token)
            .send()
            .map_err(|e| e.to_string())?;
        Ok(check(resp)?.bytes().map_err(|e| e.to_string())?.to_vec())
    }

    /// Every object name in the bucket (all pages).
    pub fn list(&self, token: &str, bucket: &str) -> Result<Vec<String>, String> {
        let mut names = Vec::new();
        let mut page: Option<String> = None;
        loop {
            let mut req = self
                .http
                .get(format!("{}/storage/v1/b/{bucket}/o", self.api))
                .bearer_auth(token);
            if let Some(p) = &page {
                req = req.query(&[("pageToken", p)]);
            }
            let v: Value = check(req.send().map_err(|e| e.to_string())?)?
                .json()
                .map_err(|e| e.to_string())?;
            names.extend(
                v["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|o| o["name"].as_str().map(str::to_owned)),
            );
            match v["nextPageToken"].as_str() {
                Some(p) => page = Some(p.to_owned()),
                None => return Ok(names),
            }
        }
    }

    pub fn upload(
        &self,
        token: &str,
        bucket: &str,
        name: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<(), String> {
        let resp = self
            .http
            .post(format!("{}/upload/storage/v1/b/{bucket}/o", self.api))
            .query(&[("uploadType", "media"), ("name", name)])
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .map_err(|e| e.to_string())?;
        check(resp).map(|_| ())
    }

    /// Unwraps an envelope's data key with Cloud KMS `:decrypt`.
    pub fn kms_decrypt(
        &self,
        token: &str,
        key: &str,
        ciphertext_b64: &str,
    ) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        let resp = self
            .http
            .post(format!("{}/v1/{key}:decrypt", self.api))
            .bearer_auth(token)
            .json(&json!({
                "ciphertext": ciphertext_b64,
                "additionalAuthenticatedData": base64::engine::general_purpose::STANDARD.encode(cloister_envelope::WRAP_AAD),
            }))
            .send()
            .map_err(|e| e.to_string())?;
        let v: Value = check(resp)?.json().map_err(|e| e.to_string())?;
        base64::engine::general_purpose::STANDARD
            .decode(v["plaintext"].as_str().unwrap_or_default())
            .map_err(|e| format!("KMS returned bad plaintext: {e}"))
    }
}
