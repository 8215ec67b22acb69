//! [`RegistryStore`] on SQLite.

use cloister_domain::ProjectId;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db, is_unique_violation};
use crate::metadata::StoreError;
use crate::metadata::new_etag;
use crate::registry::{
    ImageRef, ImageVersion, ManifestRecord, ManifestRefs, RegistryBlob, RegistryStore,
    RegistryUpload, RepositoryRecord,
};

const REPOSITORY_COLUMNS: &str =
    "project_id, location, repository_id, format, description, create_time";
const MANIFEST_COLUMNS: &str = "digest, media_type, content, subject, artifact_type, create_time";

fn repository_row(row: &Row) -> rusqlite::Result<RepositoryRecord> {
    let project: String = row.get(0)?;
    Ok(RepositoryRecord {
        project_id: ProjectId::parse(&project).map_err(|e| super::text_err(0, e))?,
        location: row.get(1)?,
        repository_id: row.get(2)?,
        format: row.get(3)?,
        description: row.get(4)?,
        create_time: row.get(5)?,
    })
}

fn manifest_row(row: &Row) -> rusqlite::Result<ManifestRecord> {
    Ok(ManifestRecord {
        digest: row.get(0)?,
        media_type: row.get(1)?,
        content: row.get(2)?,
        subject: row.get(3)?,
        artifact_type: row.get(4)?,
        create_time: row.get(5)?,
    })
}

fn blob_row(row: &Row) -> rusqlite::Result<RegistryBlob> {
    Ok(RegistryBlob {
        digest: row.get(0)?,
        size: row.get::<_, i64>(1)? as u64,
        blob_key: row.get(2)?,
    })
}

fn upload_row(row: &Row) -> rusqlite::Result<RegistryUpload> {
    Ok(RegistryUpload {
        upload_id: row.get(0)?,
        image: ImageRef {
            repository: row.get(1)?,
            image: row.get(2)?,
        },
        received: row.get::<_, i64>(3)? as u64,
        chunks: row.get::<_, i64>(4)? as u32,
        single_chunk_sha256: row.get(5)?,
        create_time: row.get(6)?,
    })
}

impl RegistryStore for SqliteStore {
    fn create_repository(&self, r: &RepositoryRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                &format!("INSERT INTO registry_repositories (name, {REPOSITORY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![r.name(), r.project_id.as_str(), r.location, r.repository_id, r.format, r.description, r.create_time],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(format!("repository {} in project {}", r.repository_id, r.project_id.as_str())) } else { db(e) })?;
            tx.execute(
                "INSERT OR REPLACE INTO iam_policies (resource, parent, policy, etag) VALUES (?1, ?2, ?3, ?4)",
                params![r.name(), r.project_id.resource_name(), crate::metadata::EMPTY_POLICY, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_repository(
        &self,
        project: &ProjectId,
        repository_id: &str,
    ) -> Result<Option<RepositoryRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {REPOSITORY_COLUMNS} FROM registry_repositories WHERE project_id = ?1 AND repository_id = ?2"
            ))
            .map_err(db)?
            .query_row([project.as_str(), repository_id], repository_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_repositories(&self, project: &ProjectId) -> Result<Vec<RepositoryRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {REPOSITORY_COLUMNS} FROM registry_repositories WHERE project_id = ?1 ORDER BY repository_id"
            ))
            .map_err(db)?
            .query_map([project.as_str()], repository_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn delete_repository(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            for table in ["registry_tags", "registry_manifests", "registry_blob_links", "registry_uploads"] {
                tx.execute(&format!("DELETE FROM {table} WHERE repository = ?1"), [name])
                    .map_err(db)?;
            }
            // Blobs no image links any more are garbage now.
            let orphans: Vec<(String, String)> = tx
                .prepare("SELECT digest, blob_key FROM registry_blobs WHERE digest NOT IN (SELECT digest FROM registry_blob_links)")
                .map_err(db)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            for (digest, _) in &orphans {
                tx.execute("DELETE FROM registry_blobs WHERE digest = ?1", [digest]).map_err(db)?;
            }
            let n = tx
                .execute("DELETE FROM registry_repositories WHERE name = ?1", [name])
                .map_err(db)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!("repository {name}")));
            }
            tx.execute("DELETE FROM iam_policies WHERE resource = ?1", [name])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(orphans.into_iter().map(|(_, key)| key).collect())
        })
    }

    fn linked_blob(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT b.digest, b.size, b.blob_key FROM registry_blobs b JOIN registry_blob_links l ON l.digest = b.digest
                 WHERE l.repository = ?1 AND l.image = ?2 AND l.digest = ?3",
            )
            .map_err(db)?
            .query_row([&image.repository, &image.image, digest], blob_row)
            .optional()
            .map_err(db)
        })
    }

    fn put_blob(&self, image: &ImageRef, b: &RegistryBlob) -> Result<Option<String>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO registry_blobs (digest, size, blob_key) VALUES (?1, ?2, ?3)",
                    params![b.digest, b.size as i64, b.blob_key],
                )
                .map_err(db)?;
            tx.execute(
                "INSERT OR IGNORE INTO registry_blob_links (repository, image, digest) VALUES (?1, ?2, ?3)",
                params![image.repository, image.image, b.digest],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok((inserted == 0).then(|| b.blob_key.clone()))
        })
    }

    fn mount_blob(
        &self,
        image: &ImageRef,
        from: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError> {
        let Some(blob) = self.linked_blob(from, digest)? else {
            return Ok(None);
        };
        self.with(|c| {
            c.execute(
                "INSERT OR IGNORE INTO registry_blob_links (repository, image, digest) VALUES (?1, ?2, ?3)",
                params![image.repository, image.image, digest],
            )
            .map_err(db)
        })?;
        Ok(Some(blob))
    }

    fn put_manifest(
        &self,
        image: &ImageRef,
        m: &ManifestRecord,
        refs: &ManifestRefs,
        tag: Option<&str>,
    ) -> Result<Result<(), String>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            for digest in &refs.blobs {
                let linked: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM registry_blob_links WHERE repository = ?1 AND image = ?2 AND digest = ?3",
                        [&image.repository, &image.image, digest],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if linked.is_none() {
                    return Ok(Err(digest.clone()));
                }
            }
            for digest in &refs.manifests {
                let present: Option<i64> = tx
                    .query_row(
                        "SELECT 1 FROM registry_manifests WHERE repository = ?1 AND image = ?2 AND digest = ?3",
                        [&image.repository, &image.image, digest],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(db)?;
                if present.is_none() {
                    return Ok(Err(digest.clone()));
                }
            }
            tx.execute(
                &format!("INSERT OR IGNORE INTO registry_manifests (repository, image, {MANIFEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
                params![image.repository, image.image, m.digest, m.media_type, m.content, m.subject, m.artifact_type, m.create_time],
            )
            .map_err(db)?;
            if let Some(tag) = tag {
                tx.execute(
                    "INSERT OR REPLACE INTO registry_tags (repository, image, tag, digest) VALUES (?1, ?2, ?3, ?4)",
                    params![image.repository, image.image, tag, m.digest],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(Ok(()))
        })
    }

    fn get_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = ?1 AND image = ?2 AND digest = ?3"
            ))
            .map_err(db)?
            .query_row([&image.repository, &image.image, digest], manifest_row)
            .optional()
            .map_err(db)
        })
    }

    fn resolve_tag(&self, image: &ImageRef, tag: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT digest FROM registry_tags WHERE repository = ?1 AND image = ?2 AND tag = ?3",
            )
            .map_err(db)?
            .query_row([&image.repository, &image.image, tag], |r| r.get(0))
            .optional()
            .map_err(db)
        })
    }

    fn list_tags(
        &self,
        image: &ImageRef,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT tag FROM registry_tags WHERE repository = ?1 AND image = ?2 AND tag > ?3 ORDER BY tag LIMIT ?4",
            )
            .map_err(db)?
            .query_map(
                params![image.repository, image.image, last.unwrap_or(""), limit as i64],
                |r| r.get(0),
            )
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn delete_manifest(&self, image: &ImageRef, digest: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                "DELETE FROM registry_tags WHERE repository = ?1 AND image = ?2 AND digest = ?3",
                [&image.repository, &image.image, digest],
            )
            .map_err(db)?;
            let n = tx
                .execute(
                    "DELETE FROM registry_manifests WHERE repository = ?1 AND image = ?2 AND digest = ?3",
                    [&image.repository, &image.image, digest],
                )
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n == 1)
        })
    }

    fn delete_tag(&self, image: &ImageRef, tag: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM registry_tags WHERE repository = ?1 AND image = ?2 AND tag = ?3",
                [&image.repository, &image.image, tag],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
    }

    fn list_referrers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = ?1 AND image = ?2 AND subject = ?3 ORDER BY digest"
            ))
            .map_err(db)?
            .query_map([&image.repository, &image.image, digest], manifest_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn list_image_versions(&self, repository: &str) -> Result<Vec<ImageVersion>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT m.image, m.digest, m.media_type, length(m.content), m.create_time,
                        COALESCE((SELECT group_concat(tag, ',') FROM (SELECT tag FROM registry_tags t
                                  WHERE t.repository = m.repository AND t.image = m.image AND t.digest = m.digest ORDER BY tag)), '')
                 FROM registry_manifests m WHERE m.repository = ?1 ORDER BY m.image, m.create_time, m.digest",
            )
            .map_err(db)?
            .query_map([repository], |r| {
                let tags: String = r.get(5)?;
                Ok(ImageVersion {
                    image: r.get(0)?,
                    digest: r.get(1)?,
                    media_type: r.get(2)?,
                    size: r.get::<_, i64>(3)? as u64,
                    create_time: r.get(4)?,
                    tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
                })
            })
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn create_registry_upload(&self, u: &RegistryUpload) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO registry_uploads (upload_id, repository, image, received, chunks, single_chunk_sha256, create_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![u.upload_id, u.image.repository, u.image.image, u.received as i64, u.chunks as i64, u.single_chunk_sha256, u.create_time],
            )
            .map(|_| ())
            .map_err(db)
        })
    }

    fn get_registry_upload(&self, upload_id: &str) -> Result<Option<RegistryUpload>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT upload_id, repository, image, received, chunks, single_chunk_sha256, create_time FROM registry_uploads WHERE upload_id = ?1",
            )
            .map_err(db)?
            .query_row([upload_id], upload_row)
            .optional()
            .map_err(db)
        })
    }

    fn advance_registry_upload(
        &self,
        upload_id: &str,
        expected: u64,
        chunk_size: u64,
        chunk_sha256: &str,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE registry_uploads SET received = received + ?3, chunks = chunks + 1,
                        single_chunk_sha256 = CASE WHEN chunks = 0 THEN ?4 ELSE NULL END
                 WHERE upload_id = ?1 AND received = ?2",
                params![upload_id, expected as i64, chunk_size as i64, chunk_sha256],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
    }

    fn stale_registry_uploads(&self, before: i64) -> Result<Vec<RegistryUpload>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT upload_id, repository, image, received, chunks, single_chunk_sha256, create_time FROM registry_uploads WHERE create_time < ?1",
            )
            .map_err(db)?
            .query_map([before], upload_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn delete_registry_upload(&self, upload_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM registry_uploads WHERE upload_id = ?1",
                [upload_id],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
    }
}
