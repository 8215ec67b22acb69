//! A provider's settings in Google's JSON shape, validated and compiled once, and a cache of
//! compiled providers keyed by (name, etag) so an update on any replica takes effect at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use cloister_condition::{AttributeMapping, Condition};
use cloister_domain::ProjectId;
use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

pub const MAX_AUDIENCES: usize = 10;
/// The longest issuer URL a provider may name (it is fetched, cached and repeated in errors).
pub const MAX_ISSUER_BYTES: usize = 2048;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OidcSettings {
    #[serde(default)]
    pub issuer_uri: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_audiences: Vec<String>,
    /// Inline JWKS (JSON text), used instead of fetching the issuer's keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_json: Option<String>,
}

/// The provider resource as the API reads and writes it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSettings {
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub disabled: bool,
    #[serde(default)]
    pub attribute_mapping: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attribute_condition: Option<String>,
    #[serde(default)]
    pub oidc: Option<OidcSettings>,
}

/// Everything an exchange needs about a provider, compiled.
#[derive(Debug)]
pub struct CompiledProvider {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER`.
    pub name: String,
    pub project_id: ProjectId,
    pub pool_project_number: u64,
    pub pool_id: String,
    pub disabled: bool,
    pub issuer: String,
    pub allowed_audiences: Vec<String>,
    pub jwks: Option<JwkSet>,
    pub mapping: AttributeMapping,
    pub condition: Option<Condition>,
}

impl CompiledProvider {
    /// What the judge is asked about verified `claims`: this provider's expressions as saved.
    pub fn question(&self, claims: &serde_json::Value) -> cloister_condition::Question {
        cloister_condition::Question {
            mapping: self.mapping.sources().clone(),
            condition: self.condition.as_ref().map(|c| c.source().to_owned()),
            claims: claims.clone(),
        }
    }

    /// The resource name audit entries use: under the project *id*, so a project owner's
    /// audit query (`resource=projects/ID`) finds the exchanges.
    pub fn audit_resource(&self) -> String {
        let tail = self
            .name
            .split_once("/locations/")
            .map(|(_, t)| t)
            .unwrap_or(&self.name);
        format!("projects/{}/locations/{tail}", self.project_id)
    }

    /// The provider's id within its pool (the last segment of its name).
    pub fn provider_id(&self) -> &str {
        self.name.rsplit('/').next().unwrap_or_default()
    }

    /// The audiences a token may carry: the configured ones, or by default the provider's own
    /// URL, as Google does.
    pub fn accepts_audience(&self, aud: &str) -> bool {
        if self.allowed_audiences.is_empty() {
            aud == format!("https://iam.googleapis.com/{}", self.name)
                || aud == format!("//iam.googleapis.com/{}", self.name)
        } else {
            self.allowed_audiences.iter().any(|a| a == aud)
        }
    }
}

/// Validates settings for create/update: a refused provider is never stored.
pub fn validate(
    settings: &ProviderSettings,
) -> Result<(AttributeMapping, Option<Condition>, Option<JwkSet>), ApiError> {
    let bad = ApiError::InvalidArgument;
    let oidc = settings
        .oidc
        .as_ref()
        .ok_or_else(|| bad("oidc.issuerUri is required (an OIDC provider)".into()))?;
    let issuer = oidc.issuer_uri.as_str();
    if issuer.len() > MAX_ISSUER_BYTES {
        return Err(bad(format!(
            "oidc.issuerUri is {} bytes; at most {MAX_ISSUER_BYTES} are allowed",
            issuer.len()
        )));
    }
    let parsed = url::Url::parse(issuer).ok();
    if !(issuer.starts_with("https://") || issuer.starts_with("http://"))
        || issuer.len() < 10
        || parsed.is_none_or(|u| u.host_str().is_none_or(str::is_empty))
    {
        return Err(bad(format!(
            "oidc.issuerUri {issuer:?} must be an http(s) URL, e.g. https://issuer.example.com"
        )));
    }
    if oidc.allowed_audiences.len() > MAX_AUDIENCES
        || oidc.allowed_audiences.iter().any(String::is_empty)
    {
        return Err(bad(format!(
            "oidc.allowedAudiences takes 1 to {MAX_AUDIENCES} non-empty audiences"
        )));
    }
    let jwks = match &oidc.jwks_json {
        None => None,
        Some(text) => Some(parse_jwks(text)?),
    };
    let mapping =
        AttributeMapping::compile(&settings.attribute_mapping).map_err(|e| bad(e.to_string()))?;
    let condition = match settings.attribute_condition.as_deref() {
        None | Some("") => None,
        Some(c) => Some(Condition::compile(c).map_err(|e| bad(e.to_string()))?),
    };
    Ok((mapping, condition, jwks))
}

/// An inline JWKS: RSA and EC P-256 public keys only.
pub fn parse_jwks(text: &str) -> Result<JwkSet, ApiError> {
    let set: JwkSet = serde_json::from_str(text)
        .map_err(|e| ApiError::InvalidArgument(format!("oidc.jwksJson is not a JWK set: {e}")))?;
    if set.keys.is_empty() {
        return Err(ApiError::InvalidArgument(
            "oidc.jwksJson has no keys".into(),
        ));
    }
    for key in &set.keys {
        if !matches!(
            key.algorithm,
            AlgorithmParameters::RSA(_) | AlgorithmParameters::EllipticCurve(_)
        ) {
            return Err(ApiError::InvalidArgument(
                "oidc.jwksJson may hold only RSA and EC keys".into(),
            ));
        }
    }
    Ok(set)
}

#[derive(Default)]
pub struct ProviderCache {
    compiled: Mutex<HashMap<String, (String, Arc<CompiledProvider>)>>,
}

impl ProviderCache {
    /// The compiled provider `name` (with its pool's disabled state folded in), or `None` when
    /// the provider or its pool does not exist.
    pub async fn get(
        &self,
        state: &AppState,
        name: &str,
    ) -> Result<Option<Arc<CompiledProvider>>, ApiError> {
        let pool_name = name
            .rsplit_once("/providers/")
            .map(|(p, _)| p.to_owned())
            .unwrap_or_default();
        let provider = state.store.get_federation(name).await?;
        let pool = state.store.get_federation(&pool_name).await?;
        let (Some(provider), Some(pool)) = (provider, pool) else {
            return Ok(None);
        };
        let etag = format!("{}/{}", provider.etag, pool.etag);
        if let Some((cached_etag, compiled)) = self.lock().get(name)
            && *cached_etag == etag
        {
            return Ok(Some(Arc::clone(compiled)));
        }
        let settings: ProviderSettings = serde_json::from_value(provider.resource.clone())
            .map_err(|e| {
                ApiError::Internal(format!("stored provider {name} does not parse: {e}"))
            })?;
        let (mapping, condition, jwks) = validate(&settings)?;
        let (pool_project_number, pool_id) = parse_pool_name(name).ok_or_else(|| {
            ApiError::Internal(format!("stored provider name {name} is malformed"))
        })?;
        let compiled = Arc::new(CompiledProvider {
            name: name.to_owned(),
            project_id: provider.project_id,
            pool_project_number,
            pool_id,
            disabled: settings.disabled || pool.resource["disabled"].as_bool().unwrap_or(false),
            issuer: settings.oidc.map(|o| o.issuer_uri).unwrap_or_default(),
            allowed_audiences: provider.resource["oidc"]["allowedAudiences"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            jwks,
            mapping,
            condition,
        });
        self.lock()
            .insert(name.to_owned(), (etag, Arc::clone(&compiled)));
        Ok(Some(compiled))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<CompiledProvider>)>> {
        self.compiled.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `projects/NUMBER/locations/global/workloadIdentityPools/POOL/…` → (NUMBER, POOL).
pub fn parse_pool_name(name: &str) -> Option<(u64, String)> {
    let mut parts = name.split('/');
    let (p, number, l, _, w, pool) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    (p == "projects" && l == "locations" && w == "workloadIdentityPools").then_some(())?;
    Some((number.parse().ok()?, pool.to_owned()))
}
