//! Artifact Registry: Docker repositories, and the OCI content inside them.
//!
//! An OCI repository name is `PROJECT/REPOSITORY/IMAGE` (the image may have slashes); the
//! first two parts pick a [`RepositoryRecord`], the rest is the image. Blobs are stored once
//! per digest (deduplicated across repositories) and *linked* into each image that may read
//! them, so a blob pushed to one repository is not readable through another without a mount.

use cloister_domain::ProjectId;
use time::OffsetDateTime;

use crate::db::{Query, Row, constraint, int, query, rfc3339};
use crate::error::StoreError;
use crate::identity::{delete_policy, insert_empty_policy};
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepositoryRecord {
    pub project_id: ProjectId,
    pub location: String,
    pub repository_id: String,
    /// `DOCKER` (the only format Cloister serves).
    pub format: String,
    pub description: String,
    pub create_time: OffsetDateTime,
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
    pub create_time: OffsetDateTime,
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
    /// Kept to the second.
    pub create_time: OffsetDateTime,
}

/// An image and its manifests with their tags (for `docker images list`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageVersion {
    pub image: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub create_time: OffsetDateTime,
}

const REPOSITORY_COLUMNS: &str =
    "project_id, location, repository_id, format, description, create_time";
const MANIFEST_COLUMNS: &str = "digest, media_type, content, subject, artifact_type, create_time";
const UPLOAD_COLUMNS: &str =
    "upload_id, repository, image, received, chunks, single_chunk_sha256, create_time";

fn repository_row(r: &Row) -> Result<RepositoryRecord, StoreError> {
    Ok(RepositoryRecord {
        project_id: r.project_id(0)?,
        location: r.text(1)?,
        repository_id: r.text(2)?,
        format: r.text(3)?,
        description: r.text(4)?,
        create_time: r.time(5)?,
    })
}

fn manifest_row(r: &Row) -> Result<ManifestRecord, StoreError> {
    Ok(ManifestRecord {
        digest: r.text(0)?,
        media_type: r.text(1)?,
        content: r.get(2)?,
        subject: r.get(3)?,
        artifact_type: r.get(4)?,
        create_time: r.time(5)?,
    })
}

fn upload_row(r: &Row) -> Result<RegistryUpload, StoreError> {
    Ok(RegistryUpload {
        upload_id: r.text(0)?,
        image: ImageRef {
            repository: r.text(1)?,
            image: r.text(2)?,
        },
        received: r.u64(3)?,
        chunks: r.u32(4)?,
        single_chunk_sha256: r.get(5)?,
        create_time: r.unix_time(6)?,
    })
}

/// `sql` (`… WHERE repository = $1 AND image = $2 AND … = $3`) about `digest` in `image`.
fn in_image(sql: &'static str, image: &ImageRef, digest: &str) -> Query {
    query(sql)
        .bind(&image.repository)
        .bind(&image.image)
        .bind(digest)
}

/// A blob refused because its project would pass its storage quota; `used` is what the
/// project stores now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverQuota {
    pub used: u64,
    pub quota: u64,
}

/// The blob `digest` if `image` links it.
fn linked_blob_query(image: &ImageRef, digest: &str) -> Query {
    in_image(
        "SELECT b.digest, b.size, b.blob_key FROM registry_blobs b
         JOIN registry_blob_links l ON l.digest = b.digest
         WHERE l.repository = $1 AND l.image = $2 AND l.digest = $3",
        image,
        digest,
    )
}

fn blob_of(r: &Row) -> Result<RegistryBlob, StoreError> {
    Ok(RegistryBlob {
        digest: r.text(0)?,
        size: r.u64(1)?,
        blob_key: r.text(2)?,
    })
}

/// Whether linking `digest` (of `size` bytes) into `image` keeps its project within `quota`:
/// a digest the project links already adds nothing.
async fn fits_project(
    tx: &crate::db::Tx,
    image: &ImageRef,
    digest: &str,
    size: u64,
    quota: u64,
) -> Result<Result<(), OverQuota>, StoreError> {
    let project = tx
        .fetch_one(
            query("SELECT project_id FROM registry_repositories WHERE name = $1")
                .bind(&image.repository),
        )
        .await?
        .text(0)?;
    let held = query(
        "SELECT COUNT(*) FROM registry_blob_links l
         JOIN registry_repositories r ON r.name = l.repository
         WHERE r.project_id = $1 AND l.digest = $2",
    )
    .bind(&project)
    .bind(digest);
    if tx.fetch_one(held).await?.int(0)? > 0 {
        return Ok(Ok(()));
    }
    let used = tx
        .fetch_one(crate::storage::project_bytes(&project))
        .await?
        .u64(0)?;
    Ok(if used.saturating_add(size) > quota {
        Err(OverQuota { used, quota })
    } else {
        Ok(())
    })
}

fn link(image: &ImageRef, digest: &str) -> Query {
    in_image(
        "INSERT INTO registry_blob_links (repository, image, digest) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        image,
        digest,
    )
}

impl Store {
    /// Creates the repository and its (empty) IAM policy under its project.
    pub async fn create_repository(&self, r: &RepositoryRecord) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(
                    query(format!(
                        "INSERT INTO registry_repositories (name, {REPOSITORY_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ))
                    .bind(r.name())
                    .bind(r.project_id.as_str())
                    .bind(&r.location)
                    .bind(&r.repository_id)
                    .bind(&r.format)
                    .bind(&r.description)
                    .bind(rfc3339(r.create_time)),
                )
                .await
                .map_err(|e| {
                    constraint(e, || {
                        format!("repository {} in project {}", r.repository_id, r.project_id)
                    })
                })?;
                insert_empty_policy(&tx, &r.name(), &r.project_id.resource_name()).await
            })
            .await
    }

    pub async fn get_repository(
        &self,
        project: &ProjectId,
        repository_id: &str,
    ) -> Result<Option<RepositoryRecord>, StoreError> {
        let q = query(format!(
            "SELECT {REPOSITORY_COLUMNS} FROM registry_repositories
             WHERE project_id = $1 AND repository_id = $2"
        ));
        self.db
            .one(q.bind(project.as_str()).bind(repository_id), repository_row)
            .await
    }

    pub async fn list_repositories(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<RepositoryRecord>, StoreError> {
        let q = query(format!(
            "SELECT {REPOSITORY_COLUMNS} FROM registry_repositories WHERE project_id = $1
             ORDER BY repository_id"
        ));
        self.db.all(q.bind(project.as_str()), repository_row).await
    }

    /// Deletes the repository, its manifests, tags, links and policy. Blobs shared with other
    /// repositories stay; the caller deletes the blob keys returned (no longer linked anywhere).
    pub async fn delete_repository(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.db
            .transaction(|tx| async move {
                for table in [
                    "registry_tags",
                    "registry_manifests",
                    "registry_blob_links",
                    "registry_uploads",
                ] {
                    let q = query(format!("DELETE FROM {table} WHERE repository = $1"));
                    tx.execute(q.bind(name)).await?;
                }
                // Blobs no image links any more are garbage now.
                let orphans = tx
                    .fetch_all(query(
                        "DELETE FROM registry_blobs
                         WHERE digest NOT IN (SELECT digest FROM registry_blob_links)
                         RETURNING blob_key",
                    ))
                    .await?;
                let deleted = query("DELETE FROM registry_repositories WHERE name = $1");
                if tx.execute(deleted.bind(name)).await? == 0 {
                    return Err(StoreError::NotFound(format!("repository {name}")));
                }
                delete_policy(&tx, name).await?;
                orphans.iter().map(|r| r.text(0)).collect()
            })
            .await
    }

    /// The blob if it is linked into `image`.
    pub async fn linked_blob(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError> {
        self.db.one(linked_blob_query(image, digest), blob_of).await
    }

    /// Records a verified blob and links it into `image`. When the digest is already stored,
    /// the existing copy is kept and `Some(new key)` is returned for the caller to delete.
    /// With a `quota`, refused (nothing written) when the blob is new to the project and would
    /// take it past the quota: checked in the transaction, so concurrent pushes cannot.
    pub async fn put_blob(
        &self,
        image: &ImageRef,
        b: &RegistryBlob,
        quota: Option<u64>,
    ) -> Result<Result<Option<String>, OverQuota>, StoreError> {
        let size = int(b.size)?;
        self.db
            .transaction(|tx| async move {
                if let Some(quota) = quota
                    && let Err(over) = fits_project(&tx, image, &b.digest, b.size, quota).await?
                {
                    return Ok(Err(over));
                }
                let inserted = tx
                    .execute(
                        query(
                            "INSERT INTO registry_blobs (digest, size, blob_key) VALUES ($1, $2, $3)
                             ON CONFLICT DO NOTHING",
                        )
                        .bind(&b.digest)
                        .bind(size)
                        .bind(&b.blob_key),
                    )
                    .await?;
                tx.execute(link(image, &b.digest)).await?;
                Ok(Ok((inserted == 0).then(|| b.blob_key.clone())))
            })
            .await
    }

    /// Links an existing blob from `from` into `image` (a cross-repository mount).
    /// With a `quota`, refused when the blob is new to `image`'s project and would take it
    /// past the quota: a mount adds no bytes to the disk, but the project then holds them
    /// (and keeps them once the source is deleted).
    pub async fn mount_blob(
        &self,
        image: &ImageRef,
        from: &ImageRef,
        digest: &str,
        quota: Option<u64>,
    ) -> Result<Result<Option<RegistryBlob>, OverQuota>, StoreError> {
        self.db
            .transaction(|tx| async move {
                let linked = tx.fetch_optional(linked_blob_query(from, digest)).await?;
                let Some(blob) = linked.map(|r| blob_of(&r)).transpose()? else {
                    return Ok(Ok(None));
                };
                if let Some(quota) = quota
                    && let Err(over) = fits_project(&tx, image, digest, blob.size, quota).await?
                {
                    return Ok(Err(over));
                }
                tx.execute(link(image, digest)).await?;
                Ok(Ok(Some(blob)))
            })
            .await
    }

    /// Stores a manifest (and moves `tag` to it) if everything it refers to is in the image;
    /// otherwise stores nothing and returns the first missing digest.
    pub async fn put_manifest(
        &self,
        image: &ImageRef,
        m: &ManifestRecord,
        refs: &ManifestRefs,
        tag: Option<&str>,
    ) -> Result<Result<(), String>, StoreError> {
        const LINKED: &str = "SELECT 1 FROM registry_blob_links
                              WHERE repository = $1 AND image = $2 AND digest = $3";
        const PRESENT: &str = "SELECT 1 FROM registry_manifests
                               WHERE repository = $1 AND image = $2 AND digest = $3";
        self.db
            .transaction(|tx| async move {
                let needed = refs.blobs.iter().map(|d| (LINKED, d));
                for (sql, digest) in needed.chain(refs.manifests.iter().map(|d| (PRESENT, d))) {
                    if tx.fetch_optional(in_image(sql, image, digest)).await?.is_none() {
                        return Ok(Err(digest.clone()));
                    }
                }
                tx.execute(
                    query(format!(
                        "INSERT INTO registry_manifests (repository, image, {MANIFEST_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT DO NOTHING"
                    ))
                    .bind(&image.repository)
                    .bind(&image.image)
                    .bind(&m.digest)
                    .bind(&m.media_type)
                    .bind(&m.content)
                    .bind(m.subject.as_ref())
                    .bind(m.artifact_type.as_ref())
                    .bind(rfc3339(m.create_time)),
                )
                .await?;
                if let Some(tag) = tag {
                    tx.execute(
                        query(
                            "INSERT INTO registry_tags (repository, image, tag, digest)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (repository, image, tag) DO UPDATE SET digest = EXCLUDED.digest",
                        )
                        .bind(&image.repository)
                        .bind(&image.image)
                        .bind(tag)
                        .bind(&m.digest),
                    )
                    .await?;
                }
                Ok(Ok(()))
            })
            .await
    }

    pub async fn get_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        const SQL: &str = "SELECT digest, media_type, content, subject, artifact_type, create_time
                           FROM registry_manifests
                           WHERE repository = $1 AND image = $2 AND digest = $3";
        self.db
            .one(in_image(SQL, image, digest), manifest_row)
            .await
    }

    pub async fn resolve_tag(
        &self,
        image: &ImageRef,
        tag: &str,
    ) -> Result<Option<String>, StoreError> {
        const SQL: &str =
            "SELECT digest FROM registry_tags WHERE repository = $1 AND image = $2 AND tag = $3";
        self.db.one(in_image(SQL, image, tag), |r| r.text(0)).await
    }

    /// Tags in lexical order after `last`, at most `limit`.
    pub async fn list_tags(
        &self,
        image: &ImageRef,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT tag FROM registry_tags WHERE repository = $1 AND image = $2
                           AND tag > $3 ORDER BY tag LIMIT $4";
        let q = in_image(SQL, image, last.unwrap_or("")).bind(int(limit as u64)?);
        self.db.all(q, |r| r.text(0)).await
    }

    /// Deletes a manifest and the tags pointing at it.
    pub async fn delete_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<bool, StoreError> {
        self.db
            .transaction(|tx| async move {
                const TAGS: &str = "DELETE FROM registry_tags
                                    WHERE repository = $1 AND image = $2 AND digest = $3";
                const MANIFEST: &str = "DELETE FROM registry_manifests
                                        WHERE repository = $1 AND image = $2 AND digest = $3";
                tx.execute(in_image(TAGS, image, digest)).await?;
                Ok(tx.execute(in_image(MANIFEST, image, digest)).await? == 1)
            })
            .await
    }

    pub async fn delete_tag(&self, image: &ImageRef, tag: &str) -> Result<bool, StoreError> {
        const SQL: &str =
            "DELETE FROM registry_tags WHERE repository = $1 AND image = $2 AND tag = $3";
        Ok(self.db.execute(in_image(SQL, image, tag)).await? == 1)
    }

    /// Manifests in `image` whose subject is `digest`.
    pub async fn list_referrers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        const SQL: &str = "SELECT digest, media_type, content, subject, artifact_type, create_time
                           FROM registry_manifests
                           WHERE repository = $1 AND image = $2 AND subject = $3 ORDER BY digest";
        self.db
            .all(in_image(SQL, image, digest), manifest_row)
            .await
    }

    pub async fn list_image_versions(
        &self,
        repository: &str,
    ) -> Result<Vec<ImageVersion>, StoreError> {
        let q = query(
            "SELECT m.image, m.digest, m.media_type, CAST(length(m.content) AS BIGINT), m.create_time,
                    COALESCE((SELECT string_agg(t.tag, ',' ORDER BY t.tag) FROM registry_tags t
                              WHERE t.repository = m.repository AND t.image = m.image
                                AND t.digest = m.digest), '')
             FROM registry_manifests m WHERE m.repository = $1
             ORDER BY m.image, m.create_time, m.digest",
        );
        self.db
            .all(q.bind(repository), |r| {
                let tags = r.text(5)?;
                Ok(ImageVersion {
                    image: r.text(0)?,
                    digest: r.text(1)?,
                    media_type: r.text(2)?,
                    size: r.u64(3)?,
                    create_time: r.time(4)?,
                    tags: tags
                        .split(',')
                        .filter(|t| !t.is_empty())
                        .map(str::to_owned)
                        .collect(),
                })
            })
            .await
    }

    pub async fn create_registry_upload(&self, u: &RegistryUpload) -> Result<(), StoreError> {
        let q = query(format!(
            "INSERT INTO registry_uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&u.upload_id)
        .bind(&u.image.repository)
        .bind(&u.image.image)
        .bind(int(u.received)?)
        .bind(u.chunks)
        .bind(u.single_chunk_sha256.as_ref())
        .bind(u.create_time.unix_timestamp());
        self.db.execute(q).await?;
        Ok(())
    }

    pub async fn get_registry_upload(
        &self,
        upload_id: &str,
    ) -> Result<Option<RegistryUpload>, StoreError> {
        let q = query(format!(
            "SELECT {UPLOAD_COLUMNS} FROM registry_uploads WHERE upload_id = $1"
        ));
        self.db.one(q.bind(upload_id), upload_row).await
    }

    /// Records one more chunk if the upload still holds `expected` bytes (so two writers
    /// racing on one upload cannot both append at the same offset).
    /// Records a chunk of `chunk_size` bytes after the `expected` the upload holds: false when
    /// another request appended first. With a `quota`, refused (nothing written) when the
    /// project's stored bytes and unfinished uploads would pass it.
    pub async fn advance_registry_upload(
        &self,
        upload_id: &str,
        expected: u64,
        chunk_size: u64,
        chunk_sha256: &str,
        quota: Option<u64>,
    ) -> Result<Result<bool, OverQuota>, StoreError> {
        self.db
            .transaction(|tx| async move {
                if let Some(quota) = quota {
                    let upload = query(
                        "SELECT r.project_id FROM registry_uploads u
                         JOIN registry_repositories r ON r.name = u.repository
                         WHERE u.upload_id = $1",
                    )
                    .bind(upload_id);
                    let Some(row) = tx.fetch_optional(upload).await? else {
                        return Ok(Ok(false));
                    };
                    let project = row.text(0)?;
                    let fits =
                        crate::storage::upload_fits(&tx, &project, 0, chunk_size, quota).await?;
                    if let Err(over) = fits {
                        return Ok(Err(over));
                    }
                }
                let q = query(
                    "UPDATE registry_uploads SET received = received + $3, chunks = chunks + 1,
                            single_chunk_sha256 = CASE WHEN chunks = 0 THEN $4 ELSE NULL END
                     WHERE upload_id = $1 AND received = $2",
                )
                .bind(upload_id)
                .bind(int(expected)?)
                .bind(int(chunk_size)?)
                .bind(chunk_sha256);
                Ok(Ok(tx.execute(q).await? == 1))
            })
            .await
    }

    pub async fn delete_registry_upload(&self, upload_id: &str) -> Result<bool, StoreError> {
        let q = query("DELETE FROM registry_uploads WHERE upload_id = $1").bind(upload_id);
        Ok(self.db.execute(q).await? == 1)
    }

    /// Uploads started before `before`: abandoned, to be swept.
    pub async fn stale_registry_uploads(
        &self,
        before: OffsetDateTime,
    ) -> Result<Vec<RegistryUpload>, StoreError> {
        let q = query(format!(
            "SELECT {UPLOAD_COLUMNS} FROM registry_uploads WHERE create_time < $1"
        ));
        self.db
            .all(q.bind(before.unix_timestamp()), upload_row)
            .await
    }
}
