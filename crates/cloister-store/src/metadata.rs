//! The metadata store: what the control plane knows, as records and a trait.
//!
//! Methods are synchronous: the services call them from `spawn_blocking`, which suits both the
//! embedded SQLite store and a pooled PostgreSQL client later.

use cloister_domain::{AuditEntry, Decision, Email, Policy, Principal, ProjectId, ProjectNumber};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0} was not found")]
    NotFound(String),
    /// Another writer changed the record since the caller read it.
    #[error(
        "the etag {given:?} is stale: {resource} changed since it was read; read it again and retry"
    )]
    StaleEtag { resource: String, given: String },
    #[error("metadata database error: {0}")]
    Database(String),
    /// A value could not be resealed for a new key-encryption key; nothing was changed.
    #[error("{place}: {detail}; nothing was changed")]
    Reseal { place: String, detail: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub email: Email,
    pub display_name: String,
    /// Platform admins manage users and platform settings; they get no implicit project access.
    pub admin: bool,
    pub create_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: String,
    pub user: Email,
    /// SHA-256 of the secret; the secret itself is never stored.
    pub secret_sha256: [u8; 32],
    pub create_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: ProjectId,
    pub number: ProjectNumber,
    pub display_name: String,
    pub create_time: String,
    pub creator: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRecord {
    pub email: Email,
    pub project_id: ProjectId,
    /// Google's 21-digit numeric id, stable for the account's life.
    pub unique_id: String,
    pub display_name: String,
    pub description: String,
    pub disabled: bool,
    pub create_time: String,
}

impl ServiceAccountRecord {
    /// The IAM resource name: `projects/PROJECT/serviceAccounts/EMAIL`.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/serviceAccounts/{}",
            self.project_id, self.email
        )
    }
}

/// A workload identity pool or provider: its Google resource name, the project it belongs to,
/// and its Google JSON representation (the services own its shape).
#[derive(Debug, Clone, PartialEq)]
pub struct FederationRecord {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL[/providers/PROVIDER]`.
    pub name: String,
    pub project_id: ProjectId,
    pub resource: serde_json::Value,
    /// Changes on every update, so compiled forms can be cached by (name, etag).
    pub etag: String,
}

/// A verifier challenge: a random nonce, single use, short-lived (times in unix seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// `projects/PROJECT/locations/LOCATION/challenges/ID`.
    pub name: String,
    pub project_id: ProjectId,
    pub nonce: Vec<u8>,
    pub create_time: i64,
    pub expire_time: i64,
}

/// Why a challenge could not be consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeError {
    NotFound,
    AlreadyUsed,
    Expired { expire_time: i64 },
}

/// A trusted launcher build: its measurement and what tokens say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValueRecord {
    /// Hex digest of the launcher measurement.
    pub measurement: String,
    pub swversion: String,
    /// `disabled-since-boot` or `enabled`.
    pub dbgstat: String,
    /// Some of `LATEST`, `STABLE`, `USABLE`, `EXPERIMENTAL`.
    pub support_attributes: Vec<String>,
    pub description: String,
    pub create_time: String,
}

/// A Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: String,
    pub project_id: ProjectId,
    pub location: String,
    pub storage_class: String,
    pub create_time: String,
}

impl BucketRecord {
    /// The IAM resource name, as Google writes it: `projects/_/buckets/NAME`.
    pub fn resource_name(&self) -> String {
        format!("projects/_/buckets/{}", self.name)
    }
}

/// The live generation of an object: its metadata and where its bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRecord {
    pub bucket: String,
    pub name: String,
    pub generation: i64,
    pub metageneration: i64,
    pub size: u64,
    pub md5: [u8; 16],
    pub crc32c: u32,
    pub content_type: String,
    pub create_time: String,
    pub update_time: String,
    /// The blob holding the bytes.
    pub blob_key: String,
}

/// Conditions on the live generation (`0` = the object must not exist).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_generation_match: Option<i64>,
    pub if_generation_not_match: Option<i64>,
}

impl Preconditions {
    /// Whether an object whose live generation is `current` (None: absent) meets these.
    pub fn hold(&self, current: Option<i64>) -> bool {
        let generation = current.unwrap_or(0);
        self.if_generation_match.is_none_or(|g| g == generation)
            && self.if_generation_not_match.is_none_or(|g| g != generation)
    }
}

/// What an object write may do besides meeting its preconditions. Checked inside the write's
/// own transaction, so nothing that changes between the caller's checks and the write (an
/// object created meanwhile, another upload filling the project) slips through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PutLimits {
    /// Whether the writer may replace a live object (it holds `storage.objects.delete`);
    /// without it, an object that exists at commit time is left alone.
    pub may_replace: bool,
    /// The most bytes the bucket's project may hold once the write is done (None: no quota).
    pub project_quota: Option<u64>,
}

impl PutLimits {
    /// A writer that may replace objects, in a project without a quota.
    pub const NONE: PutLimits = PutLimits {
        may_replace: true,
        project_quota: None,
    };
}

/// Why `put_object` wrote nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutRefused {
    /// The generation preconditions do not hold; the live generation (None: absent).
    Precondition(Option<i64>),
    /// The object exists (at this generation) and the writer may not replace it.
    WouldReplace(i64),
    /// The project would hold more than its quota; `used` is what it holds now.
    OverQuota { used: u64, quota: u64 },
}

/// A resumable upload in progress. The upload id is the session's secret (as Google's session
/// URI is); the bytes received so far are in blobs `uploads/ID/OFFSET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadSession {
    pub upload_id: String,
    pub bucket: String,
    pub name: String,
    pub content_type: String,
    pub preconditions: Preconditions,
    /// Who opened the session: every chunk and the commit are authorized as them again. None
    /// only for sessions recorded before the creator was, which are refused.
    pub creator: Option<Principal>,
    /// Bytes received and durably stored so far.
    pub received: u64,
    pub create_time: i64,
}

/// A KMS key ring, crypto key or crypto key version (resource names as Google's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyRing {
    /// `projects/P/locations/L/keyRings/R`.
    pub name: String,
    pub project_id: ProjectId,
    pub create_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsCryptoKey {
    /// `…/keyRings/R/cryptoKeys/K`.
    pub name: String,
    pub key_ring: String,
    pub purpose: String,
    pub primary_version: u32,
    pub create_time: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsKeyVersion {
    pub key: String,
    pub version: u32,
    /// `ENABLED`, `DISABLED` or `DESTROYED`.
    pub state: String,
    /// The key material, encrypted under the server's key-encryption key.
    pub wrapped_material: Vec<u8>,
    pub create_time: String,
}

/// Filters for `list_audit`; `None` means "any".
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub principal: Option<String>,
    pub permission: Option<String>,
    /// Matches the resource itself and everything under it (`projects/p` matches
    /// `projects/p/serviceAccounts/…`).
    pub resource_prefix: Option<String>,
    pub decision: Option<Decision>,
    /// Only entries at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only entries with an id above this, for paging.
    pub after_id: Option<i64>,
    pub limit: usize,
}

/// The IAM policy a new resource starts with (bindings come from its parent).
pub(crate) const EMPTY_POLICY: &str = r#"{"version":1,"bindings":[]}"#;

/// A fresh etag: 16 hex digits, changing on every write.
pub(crate) fn new_etag() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The parent of a pool is its project's location; of a provider, its pool.
pub(crate) fn federation_parent(name: &str) -> String {
    match name.rfind("/providers/") {
        Some(i) => name[..i].to_owned(),
        None => name.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned(),
    }
}

/// A stored policy with the etag kept beside it.
pub(crate) fn parse_policy(resource: &str, json: &str, etag: String) -> Result<Policy, StoreError> {
    let mut policy: Policy = serde_json::from_str(json).map_err(|e| {
        StoreError::Database(format!("stored policy of {resource} does not parse: {e}"))
    })?;
    policy.etag = etag;
    Ok(policy)
}

/// How many of `known` migrations a database at schema version `applied` has run; a schema
/// newer than this build knows is refused (an older build must not write to it).
pub(crate) fn pending_from(applied: i64, known: usize) -> Result<usize, StoreError> {
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > known {
        return Err(StoreError::Database(format!(
            "the database schema is version {applied}, newer than this cloister ({known}); \
             run a newer cloister or restore a backup"
        )));
    }
    Ok(applied)
}

/// The JSON a policy is stored as (its etag lives in its own column).
pub(crate) fn policy_json(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(&Policy {
        etag: String::new(),
        ..policy.clone()
    })
    .map_err(|e| StoreError::Database(e.to_string()))
}

pub trait MetadataStore:
    crate::registry::RegistryStore
    + crate::compute::ComputeStore
    + crate::keys::KeyStore
    + Send
    + Sync
    + 'static
{
    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError>;
    fn get_user(&self, email: &Email) -> Result<Option<UserRecord>, StoreError>;
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    fn create_credential(&self, credential: &CredentialRecord) -> Result<(), StoreError>;
    fn get_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError>;

    /// Creates the project and its initial IAM policy atomically. A project number collision
    /// is reported as `AlreadyExists("project number …")` so the caller can draw another.
    fn create_project(&self, project: &ProjectRecord, policy: &Policy) -> Result<(), StoreError>;
    fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>, StoreError>;
    fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError>;

    /// Creates the account and its (empty) IAM policy, whose parent is the project.
    fn create_service_account(&self, account: &ServiceAccountRecord) -> Result<(), StoreError>;
    fn get_service_account(
        &self,
        email: &Email,
    ) -> Result<Option<ServiceAccountRecord>, StoreError>;
    fn list_service_accounts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<ServiceAccountRecord>, StoreError>;
    /// Deletes the account and its IAM policy; returns whether it existed.
    fn delete_service_account(&self, email: &Email) -> Result<bool, StoreError>;

    /// Creates a pool or provider. A provider's pool must exist.
    fn create_federation(&self, record: &FederationRecord) -> Result<(), StoreError>;
    fn get_federation(&self, name: &str) -> Result<Option<FederationRecord>, StoreError>;
    /// Pools of a project (`parent` = `projects/NUMBER/locations/global`) or providers of a
    /// pool (`parent` = the pool's name): the records directly under `parent`.
    fn list_federation(&self, parent: &str) -> Result<Vec<FederationRecord>, StoreError>;
    /// Replaces the resource if `expected_etag` still matches; returns the new etag.
    fn update_federation(
        &self,
        name: &str,
        resource: &serde_json::Value,
        expected_etag: &str,
    ) -> Result<String, StoreError>;
    /// Deletes a record and everything under it; returns whether it existed.
    fn delete_federation(&self, name: &str) -> Result<bool, StoreError>;

    fn create_challenge(&self, challenge: &ChallengeRecord) -> Result<(), StoreError>;
    /// Marks the challenge used if it exists, is unused and has not expired at `now`; the
    /// database decides, so it holds across replicas.
    fn consume_challenge(
        &self,
        name: &str,
        now: i64,
    ) -> Result<Result<ChallengeRecord, ConsumeError>, StoreError>;

    /// Adds or replaces the reference value for a measurement.
    fn put_reference_value(&self, value: &ReferenceValueRecord) -> Result<(), StoreError>;
    fn get_reference_value(
        &self,
        measurement: &str,
    ) -> Result<Option<ReferenceValueRecord>, StoreError>;
    fn list_reference_values(&self) -> Result<Vec<ReferenceValueRecord>, StoreError>;
    fn delete_reference_value(&self, measurement: &str) -> Result<bool, StoreError>;

    /// Creates the bucket and its IAM policy (parent: the project); names are global.
    fn create_bucket(&self, bucket: &BucketRecord) -> Result<(), StoreError>;
    fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError>;
    fn list_buckets(&self, project: &ProjectId) -> Result<Vec<BucketRecord>, StoreError>;
    /// Deletes an empty bucket and its policy, cancelling the resumable uploads still open on
    /// it (returned, for the caller to delete the chunks they received); None when there is no
    /// such bucket. `AlreadyExists` names the objects still in it.
    fn delete_bucket(&self, name: &str) -> Result<Option<Vec<UploadSession>>, StoreError>;

    /// Makes `object` the live generation if `pre` and `limits` hold for the current one,
    /// atomically. Returns the blob key of the generation it replaced (for the caller to
    /// delete), or why nothing was written. `NotFound` when the bucket is gone.
    fn put_object(
        &self,
        object: &ObjectRecord,
        pre: Preconditions,
        limits: PutLimits,
    ) -> Result<Result<Option<String>, PutRefused>, StoreError>;
    /// The bytes the live objects of `project`'s buckets hold (what its quota counts).
    fn project_storage_bytes(&self, project: &ProjectId) -> Result<u64, StoreError>;
    fn get_object(&self, bucket: &str, name: &str) -> Result<Option<ObjectRecord>, StoreError>;
    /// Objects whose names start with `prefix` and sort after `start_after`, in name order.
    fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, StoreError>;
    /// Those of `blob_keys` that an object points at (the rest are orphans: blobs whose upload
    /// finished but whose object was never recorded, or was replaced while a delete failed).
    fn object_blobs_in_use(&self, blob_keys: &[String]) -> Result<Vec<String>, StoreError>;
    /// Deletes the live generation if `pre` holds; returns its blob key, or
    /// `Err(current generation)` when the preconditions fail.
    fn delete_object(
        &self,
        bucket: &str,
        name: &str,
        pre: Preconditions,
    ) -> Result<Result<Option<String>, Option<i64>>, StoreError>;

    fn create_upload_session(&self, session: &UploadSession) -> Result<(), StoreError>;
    fn get_upload_session(&self, upload_id: &str) -> Result<Option<UploadSession>, StoreError>;
    /// Sessions created before `before` (unix seconds), for the expiry sweep.
    fn stale_upload_sessions(&self, before: i64) -> Result<Vec<UploadSession>, StoreError>;
    /// Moves `received` from `from` to `to`; false when another request moved it first.
    fn advance_upload_session(
        &self,
        upload_id: &str,
        from: u64,
        to: u64,
    ) -> Result<bool, StoreError>;
    fn delete_upload_session(&self, upload_id: &str) -> Result<bool, StoreError>;

    /// Creates a key ring and its IAM policy (parent: the project).
    fn create_key_ring(&self, ring: &KmsKeyRing) -> Result<(), StoreError>;
    fn get_key_ring(&self, name: &str) -> Result<Option<KmsKeyRing>, StoreError>;
    /// Key rings whose names start with `parent/` (`projects/P/locations/L`).
    fn list_key_rings(&self, parent: &str) -> Result<Vec<KmsKeyRing>, StoreError>;
    /// Creates a crypto key with its first version and IAM policy (parent: the key ring).
    fn create_crypto_key(
        &self,
        key: &KmsCryptoKey,
        first: &KmsKeyVersion,
    ) -> Result<(), StoreError>;
    fn get_crypto_key(&self, name: &str) -> Result<Option<KmsCryptoKey>, StoreError>;
    fn list_crypto_keys(&self, key_ring: &str) -> Result<Vec<KmsCryptoKey>, StoreError>;
    /// Adds the next version and makes it primary (rotation); returns its number.
    fn rotate_crypto_key(
        &self,
        key: &str,
        material: Vec<u8>,
        create_time: &str,
    ) -> Result<u32, StoreError>;
    fn get_key_version(&self, key: &str, version: u32)
    -> Result<Option<KmsKeyVersion>, StoreError>;
    fn list_key_versions(&self, key: &str) -> Result<Vec<KmsKeyVersion>, StoreError>;

    /// The policy attached to `resource` (empty when none) and its parent resource, whose
    /// bindings it inherits.
    fn get_policy(&self, resource: &str) -> Result<(Policy, Option<String>), StoreError>;
    /// Replaces `resource`'s policy if `policy.etag` matches the stored one (or is empty, which
    /// means "unconditionally", as in Google's API). Returns the stored policy with its new etag.
    fn set_policy(&self, resource: &str, policy: &Policy) -> Result<Policy, StoreError>;

    /// Appends decisions in one transaction (callers batch them to share one disk sync); the
    /// log refuses updates and deletes.
    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError>;
    fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError>;
}
