//! The blob store: large immutable byte streams (object data, image layers) addressed by key.
//!
//! Invariant: a blob is visible only once completely written; a failed or interrupted write
//! leaves nothing under its key.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use rand::RngCore;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

const READ_CHUNK: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "invalid blob key {0:?}: keys are 1-512 characters of [a-z0-9._-] in '/'-separated \
         segments, none empty, '.' or '..'"
    )]
    InvalidKey(String),
    #[error("blob {0} was not found")]
    NotFound(String),
    #[error("range {start}..{end} is outside blob {key} of {size} bytes")]
    BadRange {
        key: String,
        start: u64,
        end: u64,
        size: u64,
    },
    #[error("blob store I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("blob store error on {key}: {detail}")]
    Backend { key: String, detail: String },
    #[error("the data stream failed while writing {key}: {source}; nothing was stored")]
    Source { key: String, source: io::Error },
}

/// A validated blob key such as `objects/ab/cdef…`: it can never escape the store's root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BlobKey(String);

impl BlobKey {
    pub fn new(key: &str) -> Result<Self, BlobError> {
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
        let valid = !key.is_empty()
            && key.len() <= 512
            && key
                .split('/')
                .all(|s| !s.is_empty() && s != "." && s != ".." && s.chars().all(ok_char));
        if valid {
            Ok(Self(key.to_owned()))
        } else {
            Err(BlobError::InvalidKey(key.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    pub size: u64,
    pub sha256: [u8; 32],
}

#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Streams `data` under `key`, replacing any previous blob there; the new blob becomes
    /// visible only after every byte is durably written.
    async fn put(&self, key: &BlobKey, data: ByteStream) -> Result<BlobInfo, BlobError>;
    /// Streams the blob, or `range` of it.
    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<ByteStream, BlobError>;
    /// The blob's size, or `None` when absent.
    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError>;
    /// Deletes the blob; returns whether it existed.
    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError>;
    /// Every complete blob whose key starts with the segments of `prefix` (`objects`), with
    /// when it was last written.
    async fn list(&self, prefix: &BlobKey) -> Result<Vec<(BlobKey, SystemTime)>, BlobError>;
}

/// Blobs as files under a root directory: `ROOT/data/KEY`, written via `ROOT/tmp/`.
pub struct FsBlobStore {
    root: PathBuf,
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_owned(),
        source,
    }
}

impl FsBlobStore {
    /// Opens the store, removing temp files that a crash left behind (no writer can be using
    /// them: the data directory lock admits one server).
    pub async fn open(root: &Path) -> Result<Self, BlobError> {
        let tmp = root.join("tmp");
        if tokio::fs::try_exists(&tmp).await.map_err(io_at(&tmp))? {
            let mut entries = tokio::fs::read_dir(&tmp).await.map_err(io_at(&tmp))?;
            let mut removed = 0;
            while let Some(e) = entries.next_entry().await.map_err(io_at(&tmp))? {
                tokio::fs::remove_file(e.path())
                    .await
                    .map_err(io_at(&e.path()))?;
                removed += 1;
            }
            if removed > 0 {
                tracing::info!(
                    removed,
                    "removed blob temp files left by an interrupted write"
                );
            }
        }
        for dir in [tmp, root.join("data")] {
            tokio::fs::create_dir_all(&dir).await.map_err(io_at(&dir))?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn path(&self, key: &BlobKey) -> PathBuf {
        self.root.join("data").join(key.as_str())
    }
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &BlobKey, mut data: ByteStream) -> Result<BlobInfo, BlobError> {
        let mut suffix = [0u8; 12];
        rand::rng().fill_bytes(&mut suffix);
        let tmp = self.root.join("tmp").join(hex::encode(suffix));
        // A writer thread hashes and writes while this task receives the next chunks, so disk
        // I/O, hashing and the network overlap instead of taking turns.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Option<Bytes>>(8);
        let writer_tmp = tmp.clone();
        let writer = tokio::task::spawn_blocking(move || -> Result<Option<BlobInfo>, BlobError> {
            use std::io::Write;
            let mut file = std::fs::File::create(&writer_tmp).map_err(io_at(&writer_tmp))?;
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(message) = rx.blocking_recv() {
                let Some(chunk) = message else {
                    file.sync_all().map_err(io_at(&writer_tmp))?;
                    return Ok(Some(BlobInfo {
                        size,
                        sha256: hasher.finalize().into(),
                    }));
                };
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk).map_err(io_at(&writer_tmp))?;
            }
            Ok(None) // the sender went away without finishing: the upload failed
        });
        let mut source_error = None;
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(chunk) => {
                    if tx.send(Some(chunk)).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(e) => {
                    source_error = Some(e);
                    break;
                }
            }
        }
        if source_error.is_none() {
            let _ = tx.send(None).await;
        }
        drop(tx);
        let written = writer.await.map_err(|e| BlobError::Io {
            path: tmp.clone(),
            source: io::Error::other(e),
        });
        let result = match (written, source_error) {
            (_, Some(source)) => Err(BlobError::Source {
                key: key.0.clone(),
                source,
            }),
            (Err(e), None) | (Ok(Err(e)), None) => Err(e),
            (Ok(Ok(None)), None) => Err(BlobError::Io {
                path: tmp.clone(),
                source: io::Error::other("the writer stopped early"),
            }),
            (Ok(Ok(Some(info))), None) => {
                let dest = self.path(key);
                async {
                    if let Some(parent) = dest.parent() {
                        tokio::fs::create_dir_all(parent)
                            .await
                            .map_err(io_at(parent))?;
                    }
                    tokio::fs::rename(&tmp, &dest).await.map_err(io_at(&dest))?;
                    Ok(info)
                }
                .await
            }
        };
        if result.is_err() {
            let _ = tokio::fs::remove_file(&tmp).await;
        }
        result
    }

    async fn list(&self, prefix: &BlobKey) -> Result<Vec<(BlobKey, SystemTime)>, BlobError> {
        let data = self.root.join("data");
        let top = self.path(prefix);
        tokio::task::spawn_blocking(move || {
            let mut found = Vec::new();
            let mut dirs = vec![top];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_at(&dir)(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(io_at(&dir))?;
                    let path = entry.path();
                    let meta = entry.metadata().map_err(io_at(&path))?;
                    if meta.is_dir() {
                        dirs.push(path);
                        continue;
                    }
                    // Only files this store wrote have keys as names; anything else is not a
                    // blob and is left alone.
                    let key = path
                        .strip_prefix(&data)
                        .ok()
                        .and_then(|p| p.to_str())
                        .and_then(|p| BlobKey::new(p).ok());
                    if let Some(key) = key {
                        found.push((key, meta.modified().map_err(io_at(&path))?));
                    }
                }
            }
            Ok(found)
        })
        .await
        .map_err(|e| BlobError::Io {
            path: self.root.clone(),
            source: io::Error::other(e),
        })?
    }

    async fn get(&self, key: &BlobKey, range: Option<Range<u64>>) -> Result<ByteStream, BlobError> {
        let path = self.path(key);
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(key.0.clone()));
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let size = file.metadata().await.map_err(io_at(&path))?.len();
        let range = range.unwrap_or(0..size);
        if range.start > range.end || range.end > size {
            return Err(BlobError::BadRange {
                key: key.0.clone(),
                start: range.start,
                end: range.end,
                size,
            });
        }
        file.seek(io::SeekFrom::Start(range.start))
            .await
            .map_err(io_at(&path))?;
        let remaining = range.end - range.start;
        let stream =
            futures::stream::try_unfold((file, remaining), |(mut file, remaining)| async move {
                if remaining == 0 {
                    return Ok(None);
                }
                let want = remaining.min(READ_CHUNK as u64) as usize;
                let mut buf = vec![0u8; want];
                file.read_exact(&mut buf).await?;
                Ok(Some((Bytes::from(buf), (file, remaining - want as u64))))
            });
        Ok(Box::pin(stream))
    }

    async fn size(&self, key: &BlobKey) -> Result<Option<u64>, BlobError> {
        let path = self.path(key);
        match tokio::fs::metadata(&path).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    async fn delete(&self, key: &BlobKey) -> Result<bool, BlobError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_at(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(chunks: Vec<io::Result<&'static [u8]>>) -> ByteStream {
        Box::pin(futures::stream::iter(
            chunks.into_iter().map(|c| c.map(Bytes::from_static)),
        ))
    }

    // Round trips, ranges and refusals common to every store: tests/blob_conformance.rs.

    #[tokio::test]
    async fn a_failed_write_leaves_neither_blob_nor_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(dir.path()).await.unwrap();
        let key = BlobKey::new("objects/x").unwrap();
        let broken = stream(vec![
            Ok(b"partial"),
            Err(io::Error::other("client went away")),
        ]);
        let err = store.put(&key, broken).await.unwrap_err().to_string();
        assert!(err.contains("nothing was stored"), "{err}");
        assert_eq!(store.size(&key).await.unwrap(), None);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[tokio::test]
    async fn temp_files_from_a_crash_are_removed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/leftover"), b"half").unwrap();
        FsBlobStore::open(dir.path()).await.unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }

    #[test]
    fn keys_cannot_escape_the_store() {
        for bad in [
            "",
            "../etc/passwd",
            "a/../../b",
            "/abs",
            "a//b",
            "A",
            "a/./b",
            "a\\b",
        ] {
            assert!(BlobKey::new(bad).is_err(), "{bad:?}");
        }
        assert!(BlobKey::new("layers/sha256/0a1b").is_ok());
    }
}
