//! Cloister's persistence layer.
//!
//! - [`Store`]: the metadata store — what the control plane knows, as records, one module per
//!   aggregate (identity and IAM, audit, federation, verifier, storage, KMS, registry, compute,
//!   keys). One implementation serves the embedded SQLite database and a PostgreSQL database
//!   shared by replicas: each statement is written once (`db.rs` holds the only differences).
//! - [`BlobStore`]: large immutable byte streams ([`FsBlobStore`] is the embedded default;
//!   [`ObjectBlobStore`] puts them in S3, GCS, Azure or anything `object_store` reaches).
//!
//! [`DataDir`] owns the on-disk layout of the embedded default and the single-server lock.
//!
//! Invariant: this crate knows nothing of HTTP or the CLI; it depends only on
//! `cloister-domain` among Cloister's crates.

/// `as_str` and `parse` in Google's spelling, for an enum kept as text.
macro_rules! google_enum {
    ($t:ty { $($v:ident = $s:literal),* $(,)? }) => {
        impl $t {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$v => $s),* }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)* _ => None }
            }
        }
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

mod audit;
pub mod blob;
mod compute;
mod console;
pub mod data_dir;
mod db;
mod error;
mod federation;
mod identity;
mod keys;
mod kms;
mod migrate;
pub mod object_blob;
mod registry;
mod storage;
mod store;
mod verifier;

pub use audit::AuditFilter;
pub use blob::{BlobError, BlobInfo, BlobKey, BlobStore, ByteStream, FsBlobStore};
pub use compute::{
    ConfidentialType, InstancePlacement, InstanceRecord, InstanceStatus, Placement, ReplicaOffer,
};
pub use console::ConsoleSession;
pub use data_dir::{DataDir, DataDirError};
pub use error::StoreError;
pub use federation::FederationRecord;
pub use identity::{
    CredentialRecord, DELETED_PROJECT, ProjectRecord, ServiceAccountRecord, UserRecord,
};
pub use keys::{Reseal, SealedPlace, StoredSigningKey};
pub use kms::{KeyPurpose, KeyVersionState, KmsCryptoKey, KmsKeyRing, KmsKeyVersion};
pub use object_blob::ObjectBlobStore;
pub use registry::{
    ImageRef, ImageVersion, ManifestRecord, ManifestRefs, OverQuota, RegistryBlob, RegistryUpload,
    RepositoryRecord,
};
pub use storage::{
    BucketRecord, ObjectAttributes, ObjectRecord, Preconditions, PutLimits, PutRefused,
    StorageUsage, UploadSession,
};
pub use store::{DEFAULT_CONNECTIONS as DEFAULT_DATABASE_CONNECTIONS, Store, redacted};
pub use verifier::{ChallengeRecord, ConsumeError, ReferenceValueRecord};
