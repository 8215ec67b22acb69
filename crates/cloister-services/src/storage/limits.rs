//! How much one object and one project may hold. An upload stops being read as soon as it
//! passes a limit, and nothing is stored; the project's quota is checked once more in the
//! commit's own transaction, so concurrent uploads cannot together pass it.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cloister_store::{BlobError, BucketRecord};
use futures::Stream;

use crate::error::ApiError;
use crate::state::AppState;

/// Google's largest object: 5 TiB.
pub const DEFAULT_MAX_OBJECT_BYTES: u64 = 5 << 40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// The largest object, in bytes.
    pub max_object_bytes: u64,
    /// The most bytes the live objects of one project may hold; None: no quota.
    pub project_quota_bytes: Option<u64>,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            max_object_bytes: DEFAULT_MAX_OBJECT_BYTES,
            project_quota_bytes: None,
        }
    }
}

/// The limit an upload passed. Travels inside the blob store's I/O error, so the request is
/// answered with the limit rather than "the upload was interrupted".
#[derive(Debug, Clone, thiserror::Error)]
pub enum Exceeded {
    #[error(
        "The object is larger than the maximum object size of {limit} bytes; nothing was stored"
    )]
    ObjectSize { limit: u64 },
    #[error(
        "Project {project} would hold more than its storage quota of {quota} bytes (its objects, registry blobs and unfinished uploads hold {used}); nothing was stored: delete objects or images, or ask the operator for a larger quota"
    )]
    Quota {
        project: String,
        used: u64,
        quota: u64,
    },
}

impl From<Exceeded> for ApiError {
    fn from(e: Exceeded) -> Self {
        match e {
            Exceeded::ObjectSize { .. } => ApiError::PayloadTooLarge(e.to_string()),
            Exceeded::Quota { .. } => ApiError::QuotaExceeded(e.to_string()),
        }
    }
}

/// The limit an I/O error carries, if a [`limited`] stream raised it.
pub fn exceeded(e: &std::io::Error) -> Option<Exceeded> {
    e.get_ref()?.downcast_ref::<Exceeded>().cloned()
}

/// A failed blob write as the client should see it: the limit it passed, its own stream
/// breaking off (400), or the server's storage failing (500).
pub fn write_failed(e: BlobError) -> ApiError {
    match e {
        BlobError::Source { source, .. } => match exceeded(&source) {
            Some(limit) => limit.into(),
            None => ApiError::InvalidArgument(format!("the upload was interrupted: {source}")),
        },
        other => ApiError::Internal(other.to_string()),
    }
}

/// How many bytes an object `name` in `bucket` may have: the object limit, and what the
/// project's quota leaves (counting the bytes of the generation it would replace as free).
/// `own`: what this upload already holds, if it is a resumable session.
pub async fn budget(
    state: &AppState,
    bucket: &BucketRecord,
    name: &str,
    own: u64,
) -> Result<Budget, ApiError> {
    if state.storage_limits.project_quota_bytes.is_none() {
        return project_budget(state, &bucket.project_id, 0, own).await;
    }
    let replaced = state
        .store
        .get_object(&bucket.name, name)
        .await?
        .map_or(0, |o| o.size);
    project_budget(state, &bucket.project_id, replaced, own).await
}

/// How many bytes one upload into `project` may have: the object limit, and what the quota
/// leaves once the project's stored bytes (less `replaced`, which the upload frees) and its
/// other unfinished uploads (all of them less `own`, this upload's) are counted. The room of
/// unfinished uploads is kept for them: many at once cannot together pass the quota.
pub async fn project_budget(
    state: &AppState,
    project: &cloister_domain::ProjectId,
    replaced: u64,
    own: u64,
) -> Result<Budget, ApiError> {
    let limits = state.storage_limits;
    let object = Exceeded::ObjectSize {
        limit: limits.max_object_bytes,
    };
    let Some(quota) = limits.project_quota_bytes else {
        return Ok(Budget {
            bytes: limits.max_object_bytes,
            exceeded: object,
        });
    };
    let usage = state.store.project_storage_usage(project).await?;
    let used = usage
        .stored
        .saturating_sub(replaced)
        .saturating_add(usage.uploading.saturating_sub(own));
    let room = quota.saturating_sub(used);
    Ok(if room < limits.max_object_bytes {
        Budget {
            bytes: room,
            exceeded: Exceeded::Quota {
                project: project.as_str().to_owned(),
                used: usage.total(),
                quota,
            },
        }
    } else {
        Budget {
            bytes: limits.max_object_bytes,
            exceeded: object,
        }
    })
}

/// The most bytes an upload may bring, and which limit it passes beyond them.
#[derive(Debug, Clone)]
pub struct Budget {
    pub bytes: u64,
    pub exceeded: Exceeded,
}

impl Budget {
    /// Refuses when an upload that already holds `have` bytes announces `more`.
    pub fn admit(&self, have: u64, more: u64) -> Result<(), ApiError> {
        match have.checked_add(more) {
            Some(total) if total <= self.bytes => Ok(()),
            _ => Err(self.exceeded.clone().into()),
        }
    }
}

/// Passes `inner` through until it has brought more than `budget.bytes - have` bytes; then
/// ends with an error carrying the limit, so the reader stops and stores nothing.
pub fn limited<S>(inner: S, budget: Budget, have: u64) -> Limited<S> {
    Limited {
        inner,
        room: budget.bytes.checked_sub(have),
        exceeded: Some(budget.exceeded),
    }
}

pub struct Limited<S> {
    inner: S,
    /// None once the limit is passed.
    room: Option<u64>,
    exceeded: Option<Exceeded>,
}

impl<S> Stream for Limited<S>
where
    S: Stream<Item = std::io::Result<Bytes>> + Unpin,
{
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let Some(room) = self.room else {
            return Poll::Ready(self.exceeded.take().map(|e| Err(std::io::Error::other(e))));
        };
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => {
                match u64::try_from(chunk.len())
                    .ok()
                    .and_then(|n| room.checked_sub(n))
                {
                    Some(left) => {
                        self.room = Some(left);
                        Poll::Ready(Some(Ok(chunk)))
                    }
                    None => {
                        self.room = None;
                        let e = self.exceeded.take();
                        Poll::Ready(e.map(|e| Err(std::io::Error::other(e))))
                    }
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{StreamExt, TryStreamExt};

    fn budget(bytes: u64) -> Budget {
        Budget {
            bytes,
            exceeded: Exceeded::ObjectSize { limit: bytes },
        }
    }

    async fn drain(chunks: &[&'static [u8]], limit: u64, have: u64) -> Result<usize, String> {
        let stream = futures::stream::iter(
            chunks
                .iter()
                .map(|c| Ok::<_, std::io::Error>(Bytes::from_static(c))),
        );
        let got: Vec<Bytes> = limited(stream.boxed(), budget(limit), have)
            .try_collect()
            .await
            .map_err(|e| exceeded(&e).map(|x| x.to_string()).unwrap_or_default())?;
        Ok(got.iter().map(Bytes::len).sum())
    }

    #[tokio::test]
    async fn a_stream_past_its_limit_ends_in_the_limit() {
        for (chunks, limit, have, ok) in [
            (&[&b"abc"[..], b"de"][..], 5, 0, true),
            (&[&b"abc"[..], b"def"][..], 5, 0, false),
            (&[&b"abc"[..]][..], 5, 3, false),
            (&[&b""[..]][..], 0, 0, true),
            (&[&b"a"[..]][..], 0, 0, false),
            (&[&b"a"[..]][..], 1, 2, false), // already past: no byte admitted
            (&[&b"a"[..]][..], u64::MAX, u64::MAX - 1, true),
        ] {
            let got = drain(chunks, limit, have).await;
            assert_eq!(
                got.is_ok(),
                ok,
                "{chunks:?} limit {limit} have {have}: {got:?}"
            );
            if let Err(why) = got {
                assert!(why.contains("maximum object size"), "{why}");
            }
        }
    }

    #[test]
    fn announced_sizes_are_admitted_without_overflow() {
        let b = budget(10);
        assert!(b.admit(4, 6).is_ok());
        assert!(b.admit(4, 7).is_err());
        assert!(b.admit(u64::MAX, 1).is_err());
        assert!(b.admit(0, u64::MAX).is_err());
    }
}
