//! [`RegistryStore`] on PostgreSQL.

use cloister_domain::ProjectId;
use postgres::Row;

use super::{PostgresStore, Work, project_id, rows, unique};
use crate::metadata::{EMPTY_POLICY, StoreError, new_etag};
use crate::registry::{
    ImageRef, ImageVersion, ManifestRecord, ManifestRefs, RegistryBlob, RegistryStore,
    RegistryUpload, RepositoryRecord,
};

const REPOSITORY_COLUMNS: &str =
    "project_id, location, repository_id, format, description, create_time";
const MANIFEST_COLUMNS: &str = "digest, media_type, content, subject, artifact_type, create_time";
const UPLOAD_COLUMNS: &str =
    "upload_id, repository, image, received, chunks, single_chunk_sha256, create_time";

fn repository_row(r: &Row) -> Work<RepositoryRecord> {
    Ok(RepositoryRecord {
        project_id: project_id(r, 0)?,
        location: r.try_get(1)?,
        repository_id: r.try_get(2)?,
        format: r.try_get(3)?,
        description: r.try_get(4)?,
        create_time: r.try_get(5)?,
    })
}

fn manifest_row(r: &Row) -> Work<ManifestRecord> {
    Ok(ManifestRecord {
        digest: r.try_get(0)?,
        media_type: r.try_get(1)?,
        content: r.try_get(2)?,
        subject: r.try_get(3)?,
        artifact_type: r.try_get(4)?,
        create_time: r.try_get(5)?,
    })
}

fn upload_row(r: &Row) -> Work<RegistryUpload> {
    Ok(RegistryUpload {
        upload_id: r.try_get(0)?,
        image: ImageRef {
            repository: r.try_get(1)?,
            image: r.try_get(2)?,
        },
        received: r.try_get::<_, i64>(3)? as u64,
        chunks: r.try_get::<_, i64>(4)? as u32,
        single_chunk_sha256: r.try_get(5)?,
        create_time: r.try_get(6)?,
    })
}

impl RegistryStore for PostgresStore {
    fn create_repository(&self, r: &RepositoryRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO registry_repositories (name, {REPOSITORY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[&r.name(), &r.project_id.as_str(), &r.location, &r.repository_id, &r.format, &r.description, &r.create_time],
            )
            .map_err(|e| unique(e, || format!("repository {} in project {}", r.repository_id, r.project_id.as_str())))?;
            tx.execute(
                "INSERT INTO iam_policies (resource, parent, policy, etag) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (resource) DO UPDATE SET parent = EXCLUDED.parent, policy = EXCLUDED.policy, etag = EXCLUDED.etag",
                &[&r.name(), &r.project_id.resource_name(), &EMPTY_POLICY, &new_etag()],
            )?;
            Ok(())
        })
    }

    fn get_repository(
        &self,
        project: &ProjectId,
        repository_id: &str,
    ) -> Result<Option<RepositoryRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {REPOSITORY_COLUMNS} FROM registry_repositories WHERE project_id = $1 AND repository_id = $2"),
                &[&project.as_str(), &repository_id],
            )?
            .as_ref()
            .map(repository_row)
            .transpose()
        })
    }

    fn list_repositories(&self, project: &ProjectId) -> Result<Vec<RepositoryRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!("SELECT {REPOSITORY_COLUMNS} FROM registry_repositories WHERE project_id = $1 ORDER BY repository_id"),
                    &[&project.as_str()],
                )?,
                repository_row,
            )
        })
    }

    fn delete_repository(&self, name: &str) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            for table in ["registry_tags", "registry_manifests", "registry_blob_links", "registry_uploads"] {
                tx.execute(&format!("DELETE FROM {table} WHERE repository = $1"), &[&name])?;
            }
            // Blobs no image links any more are garbage now.
            let orphans = tx.query(
                "DELETE FROM registry_blobs WHERE digest NOT IN (SELECT digest FROM registry_blob_links) RETURNING blob_key",
                &[],
            )?;
            if tx.execute("DELETE FROM registry_repositories WHERE name = $1", &[&name])? == 0 {
                return Err(StoreError::NotFound(format!("repository {name}")).into());
            }
            tx.execute("DELETE FROM iam_policies WHERE resource = $1", &[&name])?;
            rows(orphans, |r| Ok(r.try_get(0)?))
        })
    }

    fn linked_blob(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<RegistryBlob>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT b.digest, b.size, b.blob_key FROM registry_blobs b JOIN registry_blob_links l ON l.digest = b.digest
                 WHERE l.repository = $1 AND l.image = $2 AND l.digest = $3",
                &[&image.repository, &image.image, &digest],
            )?
            .map(|r| {
                Ok(RegistryBlob { digest: r.try_get(0)?, size: r.try_get::<_, i64>(1)? as u64, blob_key: r.try_get(2)? })
            })
            .transpose()
        })
    }

    fn put_blob(&self, image: &ImageRef, b: &RegistryBlob) -> Result<Option<String>, StoreError> {
        self.write(|tx| {
            let inserted = tx.execute(
                "INSERT INTO registry_blobs (digest, size, blob_key) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&b.digest, &(b.size as i64), &b.blob_key],
            )?;
            tx.execute(
                "INSERT INTO registry_blob_links (repository, image, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&image.repository, &image.image, &b.digest],
            )?;
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
        self.write_one(|c| {
            c.execute(
                "INSERT INTO registry_blob_links (repository, image, digest) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&image.repository, &image.image, &digest],
            )?;
            Ok(())
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
        self.write(|tx| {
            let args = |d| [&image.repository as &(dyn postgres::types::ToSql + Sync), &image.image, d];
            for digest in &refs.blobs {
                let linked = tx.query_opt(
                    "SELECT 1 FROM registry_blob_links WHERE repository = $1 AND image = $2 AND digest = $3",
                    &args(digest),
                )?;
                if linked.is_none() {
                    return Ok(Err(digest.clone()));
                }
            }
            for digest in &refs.manifests {
                let present = tx.query_opt(
                    "SELECT 1 FROM registry_manifests WHERE repository = $1 AND image = $2 AND digest = $3",
                    &args(digest),
                )?;
                if present.is_none() {
                    return Ok(Err(digest.clone()));
                }
            }
            tx.execute(
                &format!(
                    "INSERT INTO registry_manifests (repository, image, {MANIFEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                     ON CONFLICT DO NOTHING"
                ),
                &[&image.repository, &image.image, &m.digest, &m.media_type, &m.content, &m.subject, &m.artifact_type, &m.create_time],
            )?;
            if let Some(tag) = tag {
                tx.execute(
                    "INSERT INTO registry_tags (repository, image, tag, digest) VALUES ($1, $2, $3, $4)
                     ON CONFLICT (repository, image, tag) DO UPDATE SET digest = EXCLUDED.digest",
                    &[&image.repository, &image.image, &tag, &m.digest],
                )?;
            }
            Ok(Ok(()))
        })
    }

    fn get_manifest(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Option<ManifestRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 AND image = $2 AND digest = $3"),
                &[&image.repository, &image.image, &digest],
            )?
            .as_ref()
            .map(manifest_row)
            .transpose()
        })
    }

    fn resolve_tag(&self, image: &ImageRef, tag: &str) -> Result<Option<String>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT digest FROM registry_tags WHERE repository = $1 AND image = $2 AND tag = $3",
                &[&image.repository, &image.image, &tag],
            )?
            .map(|r| Ok(r.try_get(0)?))
            .transpose()
        })
    }

    fn list_tags(
        &self,
        image: &ImageRef,
        last: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT tag FROM registry_tags WHERE repository = $1 AND image = $2 AND tag > $3 ORDER BY tag LIMIT $4",
                    &[&image.repository, &image.image, &last.unwrap_or(""), &(limit as i64)],
                )?,
                |r| Ok(r.try_get(0)?),
            )
        })
    }

    fn delete_manifest(&self, image: &ImageRef, digest: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            let args: [&(dyn postgres::types::ToSql + Sync); 3] = [&image.repository, &image.image, &digest];
            tx.execute("DELETE FROM registry_tags WHERE repository = $1 AND image = $2 AND digest = $3", &args)?;
            Ok(tx.execute("DELETE FROM registry_manifests WHERE repository = $1 AND image = $2 AND digest = $3", &args)? == 1)
        })
    }

    fn delete_tag(&self, image: &ImageRef, tag: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM registry_tags WHERE repository = $1 AND image = $2 AND tag = $3",
                &[&image.repository, &image.image, &tag],
            )? == 1)
        })
    }

    fn list_referrers(
        &self,
        image: &ImageRef,
        digest: &str,
    ) -> Result<Vec<ManifestRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {MANIFEST_COLUMNS} FROM registry_manifests WHERE repository = $1 AND image = $2 AND subject = $3 ORDER BY digest"
                    ),
                    &[&image.repository, &image.image, &digest],
                )?,
                manifest_row,
            )
        })
    }

    fn list_image_versions(&self, repository: &str) -> Result<Vec<ImageVersion>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT m.image, m.digest, m.media_type, octet_length(m.content)::BIGINT, m.create_time,
                            COALESCE((SELECT string_agg(t.tag, ',' ORDER BY t.tag) FROM registry_tags t
                                      WHERE t.repository = m.repository AND t.image = m.image AND t.digest = m.digest), '')
                     FROM registry_manifests m WHERE m.repository = $1 ORDER BY m.image, m.create_time, m.digest",
                    &[&repository],
                )?,
                |r| {
                    let tags: String = r.try_get(5)?;
                    Ok(ImageVersion {
                        image: r.try_get(0)?,
                        digest: r.try_get(1)?,
                        media_type: r.try_get(2)?,
                        size: r.try_get::<_, i64>(3)? as u64,
                        create_time: r.try_get(4)?,
                        tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_owned).collect(),
                    })
                },
            )
        })
    }

    fn create_registry_upload(&self, u: &RegistryUpload) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                &format!("INSERT INTO registry_uploads ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[
                    &u.upload_id, &u.image.repository, &u.image.image, &(u.received as i64), &i64::from(u.chunks),
                    &u.single_chunk_sha256, &u.create_time,
                ],
            )?;
            Ok(())
        })
    }

    fn get_registry_upload(&self, upload_id: &str) -> Result<Option<RegistryUpload>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {UPLOAD_COLUMNS} FROM registry_uploads WHERE upload_id = $1"),
                &[&upload_id],
            )?
            .as_ref()
            .map(upload_row)
            .transpose()
        })
    }

    fn advance_registry_upload(
        &self,
        upload_id: &str,
        expected: u64,
        chunk_size: u64,
        chunk_sha256: &str,
    ) -> Result<bool, StoreError> {
        // One conditional statement: atomic on its own, whichever replica runs it.
        self.write_one(|c| {
            Ok(c.execute(
                "UPDATE registry_uploads SET received = received + $3, chunks = chunks + 1,
                        single_chunk_sha256 = CASE WHEN chunks = 0 THEN $4 ELSE NULL END
                 WHERE upload_id = $1 AND received = $2",
                &[
                    &upload_id,
                    &(expected as i64),
                    &(chunk_size as i64),
                    &chunk_sha256,
                ],
            )? == 1)
        })
    }

    fn delete_registry_upload(&self, upload_id: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM registry_uploads WHERE upload_id = $1",
                &[&upload_id],
            )? == 1)
        })
    }

    fn stale_registry_uploads(&self, before: i64) -> Result<Vec<RegistryUpload>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {UPLOAD_COLUMNS} FROM registry_uploads WHERE create_time < $1"
                    ),
                    &[&before],
                )?,
                upload_row,
            )
        })
    }
}
