//! Cloud Storage: buckets, the live generation of each object, and resumable upload sessions.

use std::collections::BTreeMap;

use cloister_domain::{Principal, ProjectId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::db::{Row, Tx, constraint, int, placeholders, query, rfc3339};
use crate::error::StoreError;
use crate::identity::{delete_policy, insert_empty_policy};
use crate::store::Store;

/// A Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub name: String,
    pub project_id: ProjectId,
    pub location: String,
    pub storage_class: String,
    pub create_time: OffsetDateTime,
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
    pub create_time: OffsetDateTime,
    pub update_time: OffsetDateTime,
    /// The blob holding the bytes.
    pub blob_key: String,
    /// What the client set besides the content type (custom metadata, cache and content headers).
    pub attributes: ObjectAttributes,
    /// For a composite object, how many non-composite objects it was composed of.
    pub component_count: Option<u32>,
}

/// An object's writable metadata besides its content type, as the JSON API names it. Kept as
/// one JSON column: nothing queries these fields, they are only carried from write to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ObjectAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_control: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_disposition: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_language: Option<String>,
    /// Custom metadata (`metadata` in the JSON API): the client's own key/value pairs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

impl ObjectAttributes {
    fn to_json(&self) -> Result<String, StoreError> {
        serde_json::to_string(self)
            .map_err(|e| StoreError::Unusable(format!("an object's attributes: {e}")))
    }

    fn from_json(text: &str) -> Result<Self, StoreError> {
        serde_json::from_str(text).map_err(|e| StoreError::corrupt("object attributes", e))
    }
}

/// Conditions on the live generation (`0` = the object must not exist) and its metageneration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub if_generation_match: Option<i64>,
    pub if_generation_not_match: Option<i64>,
    pub if_metageneration_match: Option<i64>,
    pub if_metageneration_not_match: Option<i64>,
}

impl Preconditions {
    /// Whether an object whose live (generation, metageneration) is `current` (None: absent)
    /// meets these. An absent object has no metageneration: it cannot match one, as in Google.
    pub fn hold(&self, current: Option<(i64, i64)>) -> bool {
        let generation = current.map_or(0, |c| c.0);
        let metageneration = current.map(|c| c.1);
        self.if_generation_match.is_none_or(|g| g == generation)
            && self.if_generation_not_match.is_none_or(|g| g != generation)
            && self
                .if_metageneration_match
                .is_none_or(|m| metageneration == Some(m))
            && self
                .if_metageneration_not_match
                .is_none_or(|m| metageneration != Some(m))
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
    /// The rest of the metadata the session was opened with, for the object it commits.
    pub attributes: ObjectAttributes,
    pub preconditions: Preconditions,
    /// Who opened the session: every chunk and the commit are authorized as them again. None
    /// only for sessions recorded before the creator was, which are refused.
    pub creator: Option<Principal>,
    /// Bytes received and durably stored so far.
    pub received: u64,
    /// Kept to the second.
    pub create_time: OffsetDateTime,
}

const BUCKET_COLUMNS: &str = "name, project_id, location, storage_class, create_time";
const OBJECT_COLUMNS: &str = "bucket, name, generation, metageneration, size, md5, crc32c, \
                              content_type, create_time, update_time, blob_key, attributes, \
                              component_count";
const UPLOAD_COLUMNS: &str = "upload_id, bucket, name, content_type, if_generation_match, \
                              if_generation_not_match, received, create_time, creator, \
                              attributes, if_metageneration_match, if_metageneration_not_match";

/// Blob keys per `IN (…)` list: well under both databases' limit on parameters.
const KEYS_PER_QUERY: usize = 500;

fn bucket_row(r: &Row) -> Result<BucketRecord, StoreError> {
    Ok(BucketRecord {
        name: r.text(0)?,
        project_id: r.project_id(1)?,
        location: r.text(2)?,
        storage_class: r.text(3)?,
        create_time: r.time(4)?,
    })
}

fn object_row(r: &Row) -> Result<ObjectRecord, StoreError> {
    let crc32c = r.int(6)?;
    let components: Option<i64> = r.get(12)?;
    Ok(ObjectRecord {
        bucket: r.text(0)?,
        name: r.text(1)?,
        generation: r.int(2)?,
        metageneration: r.int(3)?,
        size: r.u64(4)?,
        md5: r.array(5, "MD5")?,
        crc32c: u32::try_from(crc32c).map_err(|e| StoreError::corrupt("CRC32C", e))?,
        content_type: r.text(7)?,
        create_time: r.time(8)?,
        update_time: r.time(9)?,
        blob_key: r.text(10)?,
        attributes: ObjectAttributes::from_json(&r.text(11)?)?,
        component_count: components
            .map(|c| u32::try_from(c).map_err(|e| StoreError::corrupt("component count", e)))
            .transpose()?,
    })
}

fn upload_row(r: &Row) -> Result<UploadSession, StoreError> {
    let creator: Option<String> = r.get(8)?;
    Ok(UploadSession {
        upload_id: r.text(0)?,
        bucket: r.text(1)?,
        name: r.text(2)?,
        content_type: r.text(3)?,
        attributes: ObjectAttributes::from_json(&r.text(9)?)?,
        preconditions: Preconditions {
            if_generation_match: r.get(4)?,
            if_generation_not_match: r.get(5)?,
            if_metageneration_match: r.get(10)?,
            if_metageneration_not_match: r.get(11)?,
        },
        received: r.u64(6)?,
        create_time: r.unix_time(7)?,
        creator: creator
            .map(|c| serde_json::from_str(&c).map_err(|e| StoreError::corrupt("upload creator", e)))
            .transpose()?,
    })
}

/// The live generation's number, blob key, size and metageneration.
async fn current_generation(
    tx: &Tx,
    bucket: &str,
    name: &str,
) -> Result<Option<(i64, String, u64, i64)>, StoreError> {
    let q = query(
        "SELECT generation, blob_key, size, metageneration FROM objects WHERE bucket = $1 AND name = $2",
    );
    tx.fetch_optional(q.bind(bucket).bind(name))
        .await?
        .map(|r| Ok((r.int(0)?, r.text(1)?, r.u64(2)?, r.int(3)?)))
        .transpose()
}

/// What a project stores, in bytes (what its quota counts): its buckets' live objects and the
/// registry blobs its repositories link (each digest once).
pub(crate) fn project_bytes(project: &str) -> crate::db::Query {
    query(
        "SELECT CAST(
           (SELECT COALESCE(SUM(o.size), 0) FROM objects o
            JOIN buckets b ON b.name = o.bucket WHERE b.project_id = $1)
         + (SELECT COALESCE(SUM(rb.size), 0) FROM registry_blobs rb WHERE rb.digest IN
             (SELECT l.digest FROM registry_blob_links l
              JOIN registry_repositories r ON r.name = l.repository WHERE r.project_id = $1))
         AS BIGINT)",
    )
    .bind(project)
}

/// What a project's unfinished uploads hold, in bytes: resumable object uploads and registry
/// blob uploads. Their room is kept for them, so many at once cannot together pass the quota.
fn project_uploading_bytes(project: &str) -> crate::db::Query {
    query(
        "SELECT CAST(
           (SELECT COALESCE(SUM(u.received), 0) FROM upload_sessions u
            JOIN buckets b ON b.name = u.bucket WHERE b.project_id = $1)
         + (SELECT COALESCE(SUM(u.received), 0) FROM registry_uploads u
            JOIN registry_repositories r ON r.name = u.repository WHERE r.project_id = $1)
         AS BIGINT)",
    )
    .bind(project)
}

/// Whether an unfinished upload of `project` may take `more` bytes under `quota`: what the
/// project stores (less `replaced`, which the upload frees when it commits) and what its
/// unfinished uploads hold (this one's bytes so far among them), in the caller's transaction,
/// so uploads advancing at once cannot together pass it.
pub(crate) async fn upload_fits(
    tx: &crate::db::Tx,
    project: &str,
    replaced: u64,
    more: u64,
    quota: u64,
) -> Result<Result<(), crate::registry::OverQuota>, StoreError> {
    let stored = tx.fetch_one(project_bytes(project)).await?.u64(0)?;
    let uploading = tx
        .fetch_one(project_uploading_bytes(project))
        .await?
        .u64(0)?;
    let used = stored.saturating_sub(replaced).saturating_add(uploading);
    Ok(if used.saturating_add(more) > quota {
        Err(crate::registry::OverQuota {
            used: stored.saturating_add(uploading),
            quota,
        })
    } else {
        Ok(())
    })
}

/// What a project holds of its storage quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StorageUsage {
    /// Live objects and linked registry blobs.
    pub stored: u64,
    /// Unfinished uploads' bytes so far.
    pub uploading: u64,
}

impl StorageUsage {
    pub fn total(&self) -> u64 {
        self.stored.saturating_add(self.uploading)
    }
}

impl Store {
    /// Creates the bucket and its IAM policy (parent: the project); names are global.
    pub async fn create_bucket(&self, b: &BucketRecord) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(
                    query(format!(
                        "INSERT INTO buckets ({BUCKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                    ))
                    .bind(&b.name)
                    .bind(b.project_id.as_str())
                    .bind(&b.location)
                    .bind(&b.storage_class)
                    .bind(rfc3339(b.create_time)),
                )
                .await
                .map_err(|e| constraint(e, || format!("bucket {}", b.name)))?;
                insert_empty_policy(&tx, &b.resource_name(), &b.project_id.resource_name()).await
            })
            .await
    }

    pub async fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        let q = query(format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1"
        ));
        self.db
            .fetch_optional(q.bind(name))
            .await?
            .as_ref()
            .map(bucket_row)
            .transpose()
    }

    pub async fn list_buckets(&self, project: &ProjectId) -> Result<Vec<BucketRecord>, StoreError> {
        let q = query(format!(
            "SELECT {BUCKET_COLUMNS} FROM buckets WHERE project_id = $1 ORDER BY name"
        ));
        let rows = self.db.fetch_all(q.bind(project.as_str())).await?;
        rows.iter().map(bucket_row).collect()
    }

    /// Deletes an empty bucket and its policy, cancelling the resumable uploads still open on
    /// it (returned, for the caller to delete the chunks they received); None when there is no
    /// such bucket. `NotEmpty` names the objects still in it.
    pub async fn delete_bucket(
        &self,
        name: &str,
    ) -> Result<Option<Vec<UploadSession>>, StoreError> {
        self.db
            .transaction(|tx| async move {
                let count = query("SELECT COUNT(*) FROM objects WHERE bucket = $1").bind(name);
                let objects = tx.fetch_one(count).await?.int(0)?;
                if objects > 0 {
                    return Err(StoreError::NotEmpty(format!(
                        "bucket {name} holds {objects} objects"
                    )));
                }
                let cancel = query(format!(
                    "DELETE FROM upload_sessions WHERE bucket = $1 RETURNING {UPLOAD_COLUMNS}"
                ));
                let cancelled = tx.fetch_all(cancel.bind(name)).await?;
                let cancelled = cancelled.iter().map(upload_row).collect::<Result<_, _>>()?;
                let deleted = query("DELETE FROM buckets WHERE name = $1").bind(name);
                let n = tx.execute(deleted).await?;
                delete_policy(&tx, &format!("projects/_/buckets/{name}")).await?;
                Ok((n == 1).then_some(cancelled))
            })
            .await
    }

    /// Makes `object` the live generation if `pre` and `limits` hold for the current one,
    /// atomically. Returns the blob key of the generation it replaced (for the caller to
    /// delete), or why nothing was written. `NotFound` when the bucket is gone.
    pub async fn put_object(
        &self,
        o: &ObjectRecord,
        pre: Preconditions,
        limits: PutLimits,
    ) -> Result<Result<Option<String>, PutRefused>, StoreError> {
        let size = int(o.size)?;
        let attributes = o.attributes.to_json()?;
        let components = o.component_count.map(i64::from);
        let attributes = &attributes;
        self.db
            .transaction(|tx| async move {
                let bucket = query("SELECT project_id FROM buckets WHERE name = $1").bind(&o.bucket);
                let project = tx
                    .fetch_optional(bucket)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("bucket {}", o.bucket)))?
                    .text(0)?;
                let current = current_generation(&tx, &o.bucket, &o.name).await?;
                let live = current.as_ref().map(|c| c.0);
                if !pre.hold(current.as_ref().map(|c| (c.0, c.3))) {
                    return Ok(Err(PutRefused::Precondition(live)));
                }
                if let (false, Some(live)) = (limits.may_replace, live) {
                    return Ok(Err(PutRefused::WouldReplace(live)));
                }
                if let Some(quota) = limits.project_quota {
                    let used = tx.fetch_one(project_bytes(&project)).await?.u64(0)?;
                    let replaced = current.as_ref().map_or(0, |c| c.2);
                    if used.saturating_sub(replaced).saturating_add(o.size) > quota {
                        return Ok(Err(PutRefused::OverQuota { used, quota }));
                    }
                }
                tx.execute(
                    query(format!(
                        "INSERT INTO objects ({OBJECT_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
                         ON CONFLICT (bucket, name) DO UPDATE SET generation = EXCLUDED.generation,
                            metageneration = EXCLUDED.metageneration, size = EXCLUDED.size,
                            md5 = EXCLUDED.md5, crc32c = EXCLUDED.crc32c,
                            content_type = EXCLUDED.content_type, create_time = EXCLUDED.create_time,
                            update_time = EXCLUDED.update_time, blob_key = EXCLUDED.blob_key,
                            attributes = EXCLUDED.attributes,
                            component_count = EXCLUDED.component_count"
                    ))
                    .bind(&o.bucket)
                    .bind(&o.name)
                    .bind(o.generation)
                    .bind(o.metageneration)
                    .bind(size)
                    .bind(o.md5.as_slice())
                    .bind(i64::from(o.crc32c))
                    .bind(&o.content_type)
                    .bind(rfc3339(o.create_time))
                    .bind(rfc3339(o.update_time))
                    .bind(&o.blob_key)
                    .bind(attributes)
                    .bind(components),
                )
                .await?;
                Ok(Ok(current.map(|c| c.1)))
            })
            .await
    }

    /// Replaces the metadata of the live object `o.bucket`/`o.name` (content type, attributes,
    /// metageneration, update time) with `o`'s, only if its generation is still `o.generation`
    /// and its metageneration still `metageneration`: a compare-and-swap in one statement, so
    /// of two concurrent changes computed from one read only one lands. False when it did not.
    pub async fn update_object_metadata(
        &self,
        o: &ObjectRecord,
        metageneration: i64,
    ) -> Result<bool, StoreError> {
        let q = query(
            "UPDATE objects SET content_type = $5, attributes = $6, metageneration = $7,
                update_time = $8
             WHERE bucket = $1 AND name = $2 AND generation = $3 AND metageneration = $4",
        )
        .bind(&o.bucket)
        .bind(&o.name)
        .bind(o.generation)
        .bind(metageneration)
        .bind(&o.content_type)
        .bind(o.attributes.to_json()?)
        .bind(o.metageneration)
        .bind(rfc3339(o.update_time));
        Ok(self.db.execute(q).await? == 1)
    }

    /// What `project` stores and what its unfinished uploads hold (what its quota counts).
    pub async fn project_storage_usage(
        &self,
        project: &ProjectId,
    ) -> Result<StorageUsage, StoreError> {
        Ok(StorageUsage {
            stored: self
                .db
                .fetch_one(project_bytes(project.as_str()))
                .await?
                .u64(0)?,
            uploading: self
                .db
                .fetch_one(project_uploading_bytes(project.as_str()))
                .await?
                .u64(0)?,
        })
    }

    pub async fn get_object(
        &self,
        bucket: &str,
        name: &str,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let q = query(format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND name = $2"
        ));
        self.db
            .fetch_optional(q.bind(bucket).bind(name))
            .await?
            .as_ref()
            .map(object_row)
            .transpose()
    }

    /// Objects whose names start with `prefix` and sort after `start_after`, in name (byte)
    /// order.
    pub async fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        // `name >= prefix` lets the primary key's order skip what sorts before the prefix.
        let q = query(format!(
            "SELECT {OBJECT_COLUMNS} FROM objects
             WHERE bucket = $1 AND name >= $2 AND substr(name, 1, length($2)) = $2 AND name > $3
             ORDER BY name LIMIT $4"
        ))
        .bind(bucket)
        .bind(prefix)
        .bind(start_after)
        .bind(int(limit as u64)?);
        self.db.fetch_all(q).await?.iter().map(object_row).collect()
    }

    /// Those of `blob_keys` that an object points at (the rest are orphans: blobs whose upload
    /// finished but whose object was never recorded, or was replaced while a delete failed).
    pub async fn object_blobs_in_use(
        &self,
        blob_keys: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut in_use = Vec::new();
        for keys in blob_keys.chunks(KEYS_PER_QUERY) {
            let mut q = query(format!(
                "SELECT DISTINCT blob_key FROM objects WHERE blob_key IN ({})",
                placeholders(1, keys.len())
            ));
            for key in keys {
                q = q.bind(key);
            }
            for r in self.db.fetch_all(q).await? {
                in_use.push(r.text(0)?);
            }
        }
        Ok(in_use)
    }

    /// Deletes the live generation if `pre` holds; returns its blob key, or
    /// `Err(current generation)` when the preconditions fail.
    pub async fn delete_object(
        &self,
        bucket: &str,
        name: &str,
        pre: Preconditions,
    ) -> Result<Result<Option<String>, Option<i64>>, StoreError> {
        self.db
            .transaction(|tx| async move {
                let current = current_generation(&tx, bucket, name).await?;
                let live = current.as_ref().map(|c| c.0);
                if live.is_some() && !pre.hold(current.as_ref().map(|c| (c.0, c.3))) {
                    return Ok(Err(live));
                }
                let delete = query("DELETE FROM objects WHERE bucket = $1 AND name = $2");
                tx.execute(delete.bind(bucket).bind(name)).await?;
                Ok(Ok(current.map(|c| c.1)))
            })
            .await
    }

    pub async fn create_upload_session(&self, u: &UploadSession) -> Result<(), StoreError> {
        let creator = u
            .creator
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|e| StoreError::Unusable(format!("the session's creator: {e}")))?;
        let attributes = u.attributes.to_json()?;
        self.db
            .execute(
                query(format!(
                    "INSERT INTO upload_sessions ({UPLOAD_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
                ))
                .bind(&u.upload_id)
                .bind(&u.bucket)
                .bind(&u.name)
                .bind(&u.content_type)
                .bind(u.preconditions.if_generation_match)
                .bind(u.preconditions.if_generation_not_match)
                .bind(int(u.received)?)
                .bind(u.create_time.unix_timestamp())
                .bind(creator)
                .bind(attributes)
                .bind(u.preconditions.if_metageneration_match)
                .bind(u.preconditions.if_metageneration_not_match),
            )
            .await?;
        Ok(())
    }

    pub async fn get_upload_session(
        &self,
        upload_id: &str,
    ) -> Result<Option<UploadSession>, StoreError> {
        let q = query(format!(
            "SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE upload_id = $1"
        ));
        self.db
            .fetch_optional(q.bind(upload_id))
            .await?
            .as_ref()
            .map(upload_row)
            .transpose()
    }

    /// Sessions created before `before`, for the expiry sweep.
    pub async fn stale_upload_sessions(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<UploadSession>, StoreError> {
        let q = query(format!(
            "SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE create_time < $1"
        ));
        let rows = self.db.fetch_all(q.bind(before.unix_timestamp())).await?;
        rows.iter().map(upload_row).collect()
    }

    /// Moves `received` from `from` to `to`; false when another request moved it first.
    /// Records a session's chunk `from..to`: false when another request advanced it first.
    /// With a `quota`, refused (nothing written) when the project's objects and unfinished
    /// uploads would pass it, counting the object the session would replace as free.
    pub async fn advance_upload_session(
        &self,
        upload_id: &str,
        from: u64,
        to: u64,
        quota: Option<u64>,
    ) -> Result<Result<bool, crate::registry::OverQuota>, StoreError> {
        let more = to.saturating_sub(from);
        self.db
            .transaction(|tx| async move {
                if let Some(quota) = quota {
                    let session = query(
                        "SELECT b.project_id, COALESCE(
                            (SELECT o.size FROM objects o
                             WHERE o.bucket = u.bucket AND o.name = u.name), 0)
                         FROM upload_sessions u JOIN buckets b ON b.name = u.bucket
                         WHERE u.upload_id = $1",
                    )
                    .bind(upload_id);
                    let Some(row) = tx.fetch_optional(session).await? else {
                        return Ok(Ok(false));
                    };
                    let (project, replaced) = (row.text(0)?, row.u64(1)?);
                    if let Err(over) = upload_fits(&tx, &project, replaced, more, quota).await? {
                        return Ok(Err(over));
                    }
                }
                let q = query(
                    "UPDATE upload_sessions SET received = $3 WHERE upload_id = $1 AND received = $2",
                )
                .bind(upload_id)
                .bind(int(from)?)
                .bind(int(to)?);
                Ok(Ok(tx.execute(q).await? == 1))
            })
            .await
    }

    pub async fn delete_upload_session(&self, upload_id: &str) -> Result<bool, StoreError> {
        let q = query("DELETE FROM upload_sessions WHERE upload_id = $1").bind(upload_id);
        Ok(self.db.execute(q).await? == 1)
    }
}
