//! Blobs in an object store through the `object_store` crate: S3 and anything that speaks it
//! (MinIO, Garage, Ceph), Google Cloud Storage, Azure Blob Storage, or a local directory, all
//! selected by URL (`s3://bucket/prefix`, `gs://…`, `az://…`, `file:///…`).
//!
//! Small blobs go up in one PUT; a blob that outgrows [`PART_SIZE`] switches to a multipart
//! upload, with parts in flight while later bytes arrive. Either way the object appears only
//! when complete (S3 publishes a multipart upload at its completion), and a failed stream
//! aborts the upload, so the invariant of [`crate::blob`] holds.

use std::io;
use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};

use crate::blob::{BlobError, BlobInfo, BlobKey, BlobStore, ByteStream};

/// Bytes per multipart part (S3 wants at least 5 MiB for all but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts uploading at once, per blob.
const PARTS_IN_FLIGHT: usize = 4;

pub struct ObjectBlobStore {
    store: Box<dyn ObjectStore>,
    prefix: Path,
}

impl ObjectBlobStore {
    /// Opens the store at `url`, configured by `options` (the builders' keys, case-insensitive:
    /// `AWS_ENDPOINT`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ALLOW_HTTP`, `GOOGLE_SERVICE_ACCOUNT`, `AZURE_STORAGE_ACCOUNT_NAME`, …; the server
    /// passes its environment).
    pub fn open<K: AsRef<str>, V: Into<String>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, BlobError> {
        let bad = |why: String| BlobError::Backend {
            key: url.to_owned(),
            detail: why,
        };
        let parsed = url::Url::parse(url).map_err(|e| {
            bad(format!(
                "not a URL ({e}); use s3://BUCKET/PREFIX, gs://…, az://… or file:///DIR"
            ))
        })?;
        let (store, prefix) =
            object_store::parse_url_opts(&parsed, options).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store, prefix })
    }

    fn path(&self, key: &BlobKey) -> Path {
        key.as_str()
            .split('/')
            .fold(self.prefix.clone(), |p, segment| p.join(segment))
    }

    fn error(key: &BlobKey, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound(key.as_str().to_owned()),
            other => BlobError::Backend {
                key: key.as_str().to_owned(),
                detail: other.to_string(),
            },
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobStore {
    async fn put(&self, key: &BlobKey, mut data: ByteStream) -> Result<BlobInfo, BlobError> {
        let path = self.path(key);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head: Vec<Bytes> = Vec::new();
        let mut buffered = 0usize;
        let source = |source| BlobError::Source {
            key: key.as_str().to_owned(),
            source,
        };
        // Buffer up to one part: most blobs end before it and go up in a single PUT.
        while buffered < PART_SIZE {
            match data.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(source)?;
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    buffered += chunk.len();
                    head.push(chunk);
                }
                None => {
                    self.store
                        .put(&path, PutPayload::from_iter(head))
                        .await
                        .map_err(|e| Self::error(key, e))?;
                    return Ok(BlobInfo {
                        size,
                        sha256: hasher.finalize().into(),
                    });
                }
            }
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| Self::error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        for chunk in head {
            writer.put(chunk);
        }
        let streamed: Result<(), BlobError> = async {
            while let Some(chunk) = data.next().await {
                let chunk = chunk.map_err(source)?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|e| Self::error(key, e))?;
                writer.put(chunk);
            }
            Ok(())
        }
        .await;
        match streamed {
            Ok(()) => {
                writer.finish().await.map_err(|e| Self::error(key, e))?;
                Ok(BlobInfo {
                    size,
                    sha256: hasher.finalize().into(),
                })
            }
            Err(e) => {
                // Nothing was published; abort so the parts do not linger in the bucket.
                if let Err(abort) = writer.abort().await {
                    tracing::warn!(key = key.as_str(), error = %abort, "aborting a failed multipart upload");
                }
                Err(e)
            }
        }
    }

    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<ByteStream, BlobError> {
        let path = self.path(key);
        let mut options = GetOptions::default();
        if let Some(r) = &range {
            // Checked against the size first, so a bad range is the same error on every store.
            let size = self
                .store
                .head(&path)
                .await
                .map_err(|e| Self::error(key, e))?
                .size;
            if r.start > r.end || r.end > size {
                return Err(BlobError::BadRange {
                    key: key.as_str().to_owned(),
                    start: r.start,
                    end: r.end,
                    size,
                });
            }
            if r.start == r.end {
                return Ok(Box::pin(futures::stream::empty()));
            }
            options.range = Some(GetRange::Bounded(r.clone()));
        }
        let result = self
            .store
            .get_opts(&path, options)
            .await
            .map_err(|e| Self::error(key, e))?;
        Ok(Box::pin(
            result.into_stream().map(|c| c.map_err(io::Error::other)),
        ))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::error(key, e)),
        }
    }

    async fn list(&self, prefix: &BlobKey) -> Result<Vec<(BlobKey, SystemTime)>, BlobError> {
        let mut listing = self.store.list(Some(&self.path(prefix)));
        let mut found = Vec::new();
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| Self::error(prefix, e))?;
            // The key is the location below this store's prefix; anything that is not a key
            // was not written by Cloister and is left alone.
            let key = meta.location.prefix_match(&self.prefix).and_then(|parts| {
                let key: Vec<String> = parts.map(|p| p.as_ref().to_owned()).collect();
                BlobKey::new(&key.join("/")).ok()
            });
            if let Some(key) = key {
                found.push((key, SystemTime::from(meta.last_modified)));
            }
        }
        Ok(found)
    }

    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        // Object stores delete idempotently; ask first to say whether it was there.
        let existed = self.size(key).await?.is_some();
        match self.store.delete(&self.path(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(existed),
            Err(e) => Err(Self::error(key, e)),
        }
    }
}
