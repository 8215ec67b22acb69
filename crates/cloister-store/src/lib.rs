//! Cloister's persistence layer.
//!
//! Two traits with one job each, so PostgreSQL and S3 can replace the embedded defaults
//! without touching the services:
//! - [`MetadataStore`]: users, credentials, projects, IAM policies, the audit log, and (as its
//!   supertrait [`RegistryStore`]) Artifact Registry's repositories, manifests and tags
//!   ([`SqliteStore`] is the embedded default; [`PostgresStore`] serves replicas that share
//!   one database);
//! - [`BlobStore`]: large immutable byte streams ([`FsBlobStore`] is the embedded default;
//!   [`ObjectBlobStore`] puts them in S3, GCS, Azure or anything `object_store` reaches).
//!
//! [`DataDir`] owns the on-disk layout of the embedded default and the single-server lock.
//!
//! Invariant: this crate knows nothing of HTTP or the CLI; it depends only on
//! `cloister-domain` among Cloister's crates.

pub mod blob;
pub mod compute;
pub mod data_dir;
pub mod keys;
pub mod metadata;
pub mod object_blob;
mod postgres;
pub mod registry;
mod sqlite;

pub use blob::{BlobError, BlobInfo, BlobKey, BlobStore, ByteStream, FsBlobStore};
pub use compute::{ComputeStore, InstanceRecord};
pub use data_dir::{DataDir, DataDirError};
pub use keys::{KeyStore, Reseal, SealedPlace, StoredSigningKey};
pub use metadata::{
    AuditFilter, BucketRecord, ChallengeRecord, ConsumeError, CredentialRecord, FederationRecord,
    KmsCryptoKey, KmsKeyRing, KmsKeyVersion, MetadataStore, ObjectRecord, Preconditions,
    ProjectRecord, PutLimits, PutRefused, ReferenceValueRecord, ServiceAccountRecord, StoreError,
    UploadSession, UserRecord,
};
pub use object_blob::ObjectBlobStore;
pub use postgres::{DEFAULT_CONNECTIONS as DEFAULT_DATABASE_CONNECTIONS, PostgresStore};
pub use registry::{
    ImageRef, ImageVersion, ManifestRecord, ManifestRefs, RegistryBlob, RegistryStore,
    RegistryUpload, RepositoryRecord,
};
pub use sqlite::SqliteStore;
