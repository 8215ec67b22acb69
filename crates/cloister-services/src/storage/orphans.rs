//! Blobs no object points at. An upload's blob is complete before its object is recorded (so
//! no object is ever visible half-written); a server that dies between the two, or a replaced
//! blob whose delete failed, leaves one behind. Swept once they are old enough that no upload
//! can still be about to record them.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use cloister_store::BlobKey;

use crate::error::ApiError;
use crate::state::AppState;

/// An upload records its object right after its blob is complete; a day leaves room for any
/// delay (and for object stores that date a multipart upload by its start).
pub const ORPHAN_MIN_AGE: Duration = Duration::from_secs(24 * 3600);

/// Keys asked about per query.
const BATCH: usize = 500;

/// Deletes every object blob written longer than `min_age` ago that no object points at;
/// returns how many.
pub async fn sweep_orphaned_blobs(state: &AppState, min_age: Duration) -> Result<usize, ApiError> {
    let internal = |e: cloister_store::BlobError| ApiError::Internal(e.to_string());
    let prefix = BlobKey::new(super::upload::OBJECT_BLOB_PREFIX).map_err(internal)?;
    let cutoff = SystemTime::now()
        .checked_sub(min_age)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let old: Vec<BlobKey> = state
        .blobs
        .list(&prefix)
        .await
        .map_err(internal)?
        .into_iter()
        .filter(|(_, written)| *written < cutoff)
        .map(|(key, _)| key)
        .collect();
    let mut removed = 0;
    for batch in old.chunks(BATCH) {
        let keys: Vec<String> = batch.iter().map(|k| k.as_str().to_owned()).collect();
        let in_use: HashSet<String> = state
            .store
            .object_blobs_in_use(&keys)
            .await?
            .into_iter()
            .collect();
        for key in batch.iter().filter(|k| !in_use.contains(k.as_str())) {
            if state.blobs.delete(key).await.map_err(internal)? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}
