//! State shared by every service: the stores and the server's token keys.

use std::sync::Arc;

use cloister_store::{BlobStore, Store};

use crate::auth::tokens::AccessTokens;
use crate::federation::jwks::JwksCache;
use crate::federation::provider::ProviderCache;
use crate::iam::authorizer::Authorizer;
use crate::signing::SigningKeys;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub tokens: Arc<AccessTokens>,
    pub authorizer: Authorizer,
    /// Compiled providers, keyed by (name, etag).
    pub providers: Arc<ProviderCache>,
    /// The keys of service-account ID tokens (issuer `PUBLIC_URL/accounts`).
    pub account_keys: Arc<SigningKeys>,
    /// The key-encryption key that wraps KMS key material at rest.
    pub kek: Arc<Vec<u8>>,
    /// The keys of attestation tokens (issuer `PUBLIC_URL`).
    pub attestation_keys: Arc<SigningKeys>,
    /// The platform CA that certifies instances' attestation keys.
    pub identity_ca: Arc<cloister_tpm::identity::IdentityCa>,
    /// The root CA (and this server's intermediate) of `PKI` attestation tokens.
    pub attestation_pki: Arc<crate::verifier::pki::AttestationPki>,
    /// Issuers' published keys.
    pub jwks: Arc<JwksCache>,
    /// The server's public base URL, without a trailing slash (the token issuer).
    pub public_url: String,
    /// Lifetime of attestation tokens, in seconds.
    pub attestation_token_lifetime_secs: i64,
    /// Whether INSECURE evidence is accepted (development machines only).
    pub allow_insecure_evidence: bool,
    /// How many instances one project may hold; none = no quota.
    pub project_instance_quota: Option<u32>,
    /// How many projects one user may have created and not deleted; none = no quota.
    pub user_project_quota: Option<u32>,
    /// Judges tokens with providers' mappings and conditions (tenants' CEL) under limits.
    pub judge: Arc<crate::federation::judge::Judge>,
    /// Prometheus counters (`GET /metrics`).
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Runs instances (the local driver).
    pub compute: Arc<crate::compute::driver::LocalDriver>,
    /// Which waiting instances this replica claims and starts.
    pub placer: Arc<crate::compute::placement::Placer>,
    /// Where TDX collateral is cached, as `{FMSPC}.json` (Intel PCS collateral in dcap-qvl's
    /// QuoteCollateralV3 JSON), for quotes sent without their own.
    pub tdx_collateral_dir: std::path::PathBuf,
    /// Where VCEKs are cached, as `{chip id}-{reported TCB}.der`, for SNP reports sent without
    /// theirs (hosts that do not supply certificates, such as Google Cloud's).
    pub vcek_cache_dir: std::path::PathBuf,
    /// Verify hardware evidence (SNP certificates, TDX collateral) as of this time instead of
    /// the clock: only for replaying recorded evidence in tests.
    pub hardware_evidence_time: Option<time::OffsetDateTime>,
    /// The largest object and each project's storage quota.
    pub storage_limits: crate::storage::limits::StorageLimits,
}

impl AppState {
    /// The time hardware evidence is judged at.
    pub fn hardware_evidence_time(&self) -> time::OffsetDateTime {
        self.hardware_evidence_time
            .unwrap_or_else(time::OffsetDateTime::now_utc)
    }
}
