//! Artifact Registry records: Docker repositories, and the OCI content inside them.
//!
//! An OCI repository name is `PROJECT/REPOSITORY/IMAGE` (the image may have slashes); the
//! first two parts pick a [`RepositoryRecord`], the rest is the image. Blobs are stored once
//! per digest (deduplicated across repositories) and *linked* into each image that may read
//! them, so a blob pushed to one repository is not readable through another without a mount.

use cloister_domain::ProjectId;

use crate::metadata::StoreError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRecord {
    pub project_id: ProjectId,
    pub location: String,
    pub repository_id: String,
    /// `DOCKER` (the only format Cloister serves).
    pub format: String,
    pub description: String,
    pub create_time: String,
}

impl RepositoryRecord {
    /// `projects/P/locations/L/repositories/R`, the IAM resource name.
    pub fn name(&self) -> String {
        format!(
            "projects/{}/locations/{}/repositories/{}",
            self.project_id.as_str(),
            self.location,
            self.repository_id
        )
    }
}

/// Where an image lives: its repository's resource name and the image path inside it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub image: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryBlob {
    /// `sha256:…`
    pub digest: String,
    pub size: u64,
    pub blob_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRecord {
    pub digest: String,
    pub media_type: String,
    /// The manifest's exact bytes: a digest-pinned pull returns these.
    pub content: Vec<u8>,
    /// The manifest this one refers to (`subject`), for the referrers API.
    pub subject: Option<String>,
    pub artifact_type: Option<String>,
    pub create_time: String,
}

/// What a manifest needs to exist in its image before it may be stored.
#[derive(Debug, Clone, Default)]
pub struct ManifestRefs {
    pub blobs: Vec<String>,
    pub manifests: Vec<String>,
}

/// A blob upload in progress: chunks are blobs `registry-uploads/ID/N`, joined (and the
/// digest checked) when the client finishes the upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryUpload {
    pub upload_id: String,
    pub image: ImageRef,
    pub received: u64,
    pub chunks: u32,
    /// SHA-256 of the only chunk, while there is one: a single-PATCH upload (what skopeo and
    /// podman send) is then adopted as the blob without reading it again.
    pub single_chunk_sha256: Option<String>,
    pub create_time: i64,
}

/// An image and its manifests with their tags (for `docker images list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVersion {
    pub image: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub create_time: String,
}

pub trait RegistryStore: Send + Sync {
    /// Creates the repository and its (empty) IAM policy under its project.
    fn create_repository(&self, repo: &RepositoryRecord) -> Result<(), StoreError>;
    fn get_repository(
        &self,
        project: &ProjectId,
        repository_id: &str,
    ) -> Result<Option<RepositoryRecord>, StoreError>;
    fn list_repositories(&self, project: &ProjectId) -> Result<Vec<RepositoryRecord>, StoreError>;
    /// Deletes the repository, its manifests, tags, links and policy. Blobs shared with other
    /// repositories stay; the caller deletes the blob keys returned (no longer linked anywhere).
    fn delete_repository(&self, name: &str) -> Result<Vec<String>, StoreError>;

    /// The blob if it is linked into `image`.
    fn linked_blob(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError>;
    /// Records a verified blob and links it into `image`. When the digest is already stored,
    /// the existing copy is kept and `Some(new key)` is returned for the caller to delete.
    fn put_blob(&self, image: &ImageRef, blob: &RegistryBlob)
    -> Result<Option<String>, StoreError>;
    /// Links an existing blob from `from` into `image` (a cross-repository mount).
    fn mount_blob(
        &self,
        image: &ImageRef,
        from: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError>;

    /// Stores a manifest (and moves `tag` to it) if everything it refers to is in the image;
    /// otherwise stores nothing and returns the first missing digest.
    fn put_manifest(
        &self,
        image: &ImageRef,
        manifest: &ManifestRecord,
        refs: &ManifestRefs,
        tag: Option<&str>,
    ) -> Result<Result<(), String>, StoreError>;
    fn get_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<ManifestRecord>, StoreError>;
    fn resolve_tag(&self, image: &ImageRef, tag: &str) -> Result<Option<String>, StoreError>;
    /// Tags in lexical order after `last`, at most `limit`.
    fn list_tags(
        &self,
        image: &ImageRef,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError>;
    /// Deletes a manifest and the tags pointing at it.
    fn delete_manifest(&self, image: &ImageRef, digest: &str) -> Result<bool, StoreError>;
    fn delete_tag(&self, image: &ImageRef, tag: &str) -> Result<bool, StoreError>;
    /// Manifests in `image` whose subject is `digest`.
    fn list_referrers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<ManifestRecord>, StoreError>;
    fn list_image_versions(&self, repository: &str) -> Result<Vec<ImageVersion>, StoreError>;

    fn create_registry_upload(&self, upload: &RegistryUpload) -> Result<(), StoreError>;
    fn get_registry_upload(&self, upload_id: &str) -> Result<Option<RegistryUpload>, StoreError>;
    /// Records one more chunk if the upload still holds `expected` bytes (so two writers
    /// racing on one upload cannot both append at the same offset).
    fn advance_registry_upload(
        &self,
        upload_id: &str,
        expected: u64,
        chunk_size: u64,
        chunk_sha256: &str,
    ) -> Result<bool, StoreError>;
    fn delete_registry_upload(&self, upload_id: &str) -> Result<bool, StoreError>;
    /// Uploads started before `before` (unix seconds): abandoned, to be swept.
    fn stale_registry_uploads(&self, before: i64) -> Result<Vec<RegistryUpload>, StoreError>;
}
