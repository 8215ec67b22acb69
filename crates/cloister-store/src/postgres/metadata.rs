//! [`MetadataStore`] on PostgreSQL: the same statements as on SQLite, in PostgreSQL's
//! dialect; read-check-write methods run in [`PostgresStore::write`]'s serializable
//! transactions.

use cloister_domain::{AuditEntry, Decision, Email, Policy, ProjectId, ProjectNumber};
use postgres::Row;

use super::{PostgresStore, Tx, Work, audit_row, corrupt, email, json, project_id, rows, unique};
use crate::metadata::{
    AuditFilter, BucketRecord, ChallengeRecord, ConsumeError, CredentialRecord, EMPTY_POLICY,
    FederationRecord, KmsCryptoKey, KmsKeyRing, KmsKeyVersion, MetadataStore, ObjectRecord,
    Preconditions, ProjectRecord, PutLimits, PutRefused, ReferenceValueRecord,
    ServiceAccountRecord, StoreError, UploadSession, UserRecord, federation_parent, new_etag,
    parse_policy, policy_json,
};

const USER_COLUMNS: &str = "email, display_name, admin, create_time";
const PROJECT_COLUMNS: &str = "id, number, display_name, create_time, creator";
const SERVICE_ACCOUNT_COLUMNS: &str =
    "email, project_id, unique_id, display_name, description, disabled, create_time";
const REFERENCE_VALUE_COLUMNS: &str =
    "measurement, swversion, dbgstat, support_attributes, description, create_time";
const BUCKET_COLUMNS: &str = "name, project_id, location, storage_class, create_time";
const OBJECT_COLUMNS: &str = "bucket, name, generation, metageneration, size, md5, crc32c, content_type, create_time, update_time, blob_key";
const UPLOAD_COLUMNS: &str = "upload_id, bucket, name, content_type, if_generation_match, if_generation_not_match, received, create_time, creator";
const KEY_VERSION_COLUMNS: &str = "key, version, state, wrapped_material, create_time";

fn user_row(r: &Row) -> Work<UserRecord> {
    Ok(UserRecord {
        email: email(r, 0)?,
        display_name: r.try_get(1)?,
        admin: r.try_get(2)?,
        create_time: r.try_get(3)?,
    })
}

fn project_row(r: &Row) -> Work<ProjectRecord> {
    Ok(ProjectRecord {
        id: project_id(r, 0)?,
        number: ProjectNumber(r.try_get::<_, i64>(1)? as u64),
        display_name: r.try_get(2)?,
        create_time: r.try_get(3)?,
        creator: r.try_get(4)?,
    })
}

fn service_account_row(r: &Row) -> Work<ServiceAccountRecord> {
    Ok(ServiceAccountRecord {
        email: email(r, 0)?,
        project_id: project_id(r, 1)?,
        unique_id: r.try_get(2)?,
        display_name: r.try_get(3)?,
        description: r.try_get(4)?,
        disabled: r.try_get(5)?,
        create_time: r.try_get(6)?,
    })
}

fn federation_row(r: &Row) -> Work<FederationRecord> {
    Ok(FederationRecord {
        name: r.try_get(0)?,
        project_id: project_id(r, 1)?,
        resource: json(r, 2, "federation resource")?,
        etag: r.try_get(3)?,
    })
}

fn reference_value_row(r: &Row) -> Work<ReferenceValueRecord> {
    Ok(ReferenceValueRecord {
        measurement: r.try_get(0)?,
        swversion: r.try_get(1)?,
        dbgstat: r.try_get(2)?,
        support_attributes: json(r, 3, "support attributes")?,
        description: r.try_get(4)?,
        create_time: r.try_get(5)?,
    })
}

fn bucket_row(r: &Row) -> Work<BucketRecord> {
    Ok(BucketRecord {
        name: r.try_get(0)?,
        project_id: project_id(r, 1)?,
        location: r.try_get(2)?,
        storage_class: r.try_get(3)?,
        create_time: r.try_get(4)?,
    })
}

fn object_row(r: &Row) -> Work<ObjectRecord> {
    let md5: Vec<u8> = r.try_get(5)?;
    Ok(ObjectRecord {
        bucket: r.try_get(0)?,
        name: r.try_get(1)?,
        generation: r.try_get(2)?,
        metageneration: r.try_get(3)?,
        size: r.try_get::<_, i64>(4)? as u64,
        md5: md5.try_into().map_err(|_| corrupt("MD5", "not 16 bytes"))?,
        crc32c: r.try_get::<_, i64>(6)? as u32,
        content_type: r.try_get(7)?,
        create_time: r.try_get(8)?,
        update_time: r.try_get(9)?,
        blob_key: r.try_get(10)?,
    })
}

fn upload_row(r: &Row) -> Work<UploadSession> {
    Ok(UploadSession {
        upload_id: r.try_get(0)?,
        bucket: r.try_get(1)?,
        name: r.try_get(2)?,
        content_type: r.try_get(3)?,
        preconditions: Preconditions {
            if_generation_match: r.try_get(4)?,
            if_generation_not_match: r.try_get(5)?,
        },
        received: r.try_get::<_, i64>(6)? as u64,
        create_time: r.try_get(7)?,
        creator: r
            .try_get::<_, Option<String>>(8)?
            .map(|c| serde_json::from_str(&c).map_err(|e| corrupt("upload creator", e)))
            .transpose()?,
    })
}

fn key_ring_row(r: &Row) -> Work<KmsKeyRing> {
    Ok(KmsKeyRing {
        name: r.try_get(0)?,
        project_id: project_id(r, 1)?,
        create_time: r.try_get(2)?,
    })
}

fn crypto_key_row(r: &Row) -> Work<KmsCryptoKey> {
    Ok(KmsCryptoKey {
        name: r.try_get(0)?,
        key_ring: r.try_get(1)?,
        purpose: r.try_get(2)?,
        primary_version: r.try_get::<_, i64>(3)? as u32,
        create_time: r.try_get(4)?,
    })
}

fn key_version_row(r: &Row) -> Work<KmsKeyVersion> {
    Ok(KmsKeyVersion {
        key: r.try_get(0)?,
        version: r.try_get::<_, i64>(1)? as u32,
        state: r.try_get(2)?,
        wrapped_material: r.try_get(3)?,
        create_time: r.try_get(4)?,
    })
}

/// Gives a new resource its empty policy under `parent` (replacing a leftover of a deleted
/// namesake, as SQLite's `INSERT OR REPLACE` does).
fn insert_empty_policy(tx: &mut Tx, resource: &str, parent: &str) -> Work<()> {
    tx.execute(
        "INSERT INTO iam_policies (resource, parent, policy, etag) VALUES ($1, $2, $3, $4)
         ON CONFLICT (resource) DO UPDATE SET parent = EXCLUDED.parent, policy = EXCLUDED.policy, etag = EXCLUDED.etag",
        &[&resource, &parent, &EMPTY_POLICY, &new_etag()],
    )?;
    Ok(())
}

/// The live generation's number, blob key and size.
fn current_generation(tx: &mut Tx, bucket: &str, name: &str) -> Work<Option<(i64, String, u64)>> {
    tx.query_opt(
        "SELECT generation, blob_key, size FROM objects WHERE bucket = $1 AND name = $2",
        &[&bucket, &name],
    )?
    .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as u64)))
    .transpose()
}

/// What a project's live objects hold, in bytes (what its quota counts).
fn project_bytes<C: postgres::GenericClient>(
    c: &mut super::Cached<'_, C>,
    project: &str,
) -> Work<u64> {
    let sum: i64 = c
        .query_one(
            "SELECT COALESCE(SUM(o.size), 0)::BIGINT FROM objects o JOIN buckets b ON b.name = o.bucket WHERE b.project_id = $1",
            &[&project],
        )?
        .try_get(0)?;
    Ok(sum as u64)
}

fn creator_json(u: &UploadSession) -> Work<Option<String>> {
    u.creator
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Database(format!("the session's creator: {e}")).into())
}

impl MetadataStore for PostgresStore {
    fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                &format!("INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4)"),
                &[&u.email.as_str(), &u.display_name, &u.admin, &u.create_time],
            )
            .map_err(|e| unique(e, || format!("user {}", u.email)))?;
            Ok(())
        })
    }

    fn get_user(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"),
                &[&email.as_str()],
            )?
            .as_ref()
            .map(user_row)
            .transpose()
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"),
                    &[],
                )?,
                user_row,
            )
        })
    }

    fn create_credential(&self, cred: &CredentialRecord) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                "INSERT INTO credentials (id, user_email, secret_sha256, create_time) VALUES ($1, $2, $3, $4)",
                &[&cred.id, &cred.user.as_str(), &cred.secret_sha256.as_slice(), &cred.create_time],
            )
            .map_err(|e| unique(e, || format!("credential {}", cred.id)))?;
            Ok(())
        })
    }

    fn get_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.read(|c| {
            let Some(r) = c.query_opt(
                "SELECT id, user_email, secret_sha256, create_time FROM credentials WHERE id = $1",
                &[&id],
            )?
            else {
                return Ok(None);
            };
            let hash: Vec<u8> = r.try_get(2)?;
            Ok(Some(CredentialRecord {
                id: r.try_get(0)?,
                user: email(&r, 1)?,
                secret_sha256: hash
                    .try_into()
                    .map_err(|_| corrupt("secret hash", "not 32 bytes"))?,
                create_time: r.try_get(3)?,
            }))
        })
    }

    fn create_project(&self, p: &ProjectRecord, policy: &Policy) -> Result<(), StoreError> {
        let policy_json = policy_json(policy)?;
        self.write(|tx| {
            if tx.query_opt("SELECT 1 FROM projects WHERE id = $1", &[&p.id.as_str()])?.is_some() {
                return Err(StoreError::AlreadyExists(format!("project {}", p.id)).into());
            }
            tx.execute(
                &format!("INSERT INTO projects ({PROJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[&p.id.as_str(), &(p.number.0 as i64), &p.display_name, &p.create_time, &p.creator],
            )
            .map_err(|e| unique(e, || format!("project number {}", p.number)))?;
            tx.execute(
                "INSERT INTO iam_policies (resource, parent, policy, etag) VALUES ($1, NULL, $2, $3)",
                &[&p.id.resource_name(), &policy_json, &new_etag()],
            )?;
            Ok(())
        })
    }

    fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"),
                &[&id.as_str()],
            )?
            .as_ref()
            .map(project_row)
            .transpose()
        })
    }

    fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!("SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"),
                    &[],
                )?,
                project_row,
            )
        })
    }

    fn create_service_account(&self, a: &ServiceAccountRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO service_accounts ({SERVICE_ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
                &[&a.email.as_str(), &a.project_id.as_str(), &a.unique_id, &a.display_name, &a.description, &a.disabled, &a.create_time],
            )
            .map_err(|e| unique(e, || format!("service account {}", a.email)))?;
            insert_empty_policy(tx, &a.resource_name(), &a.project_id.resource_name())
        })
    }

    fn get_service_account(
        &self,
        email: &Email,
    ) -> Result<Option<ServiceAccountRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE email = $1"),
                &[&email.as_str()],
            )?
            .as_ref()
            .map(service_account_row)
            .transpose()
        })
    }

    fn list_service_accounts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<ServiceAccountRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!("SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE project_id = $1 ORDER BY email"),
                    &[&project.as_str()],
                )?,
                service_account_row,
            )
        })
    }

    fn delete_service_account(&self, email: &Email) -> Result<bool, StoreError> {
        self.write(|tx| {
            let Some(row) = tx.query_opt(
                "DELETE FROM service_accounts WHERE email = $1 RETURNING project_id",
                &[&email.as_str()],
            )?
            else {
                return Ok(false);
            };
            let project: String = row.try_get(0)?;
            tx.execute(
                "DELETE FROM iam_policies WHERE resource = $1",
                &[&format!("projects/{project}/serviceAccounts/{email}")],
            )?;
            Ok(true)
        })
    }

    fn create_federation(&self, r: &FederationRecord) -> Result<(), StoreError> {
        let parent = federation_parent(&r.name);
        let json = r.resource.to_string();
        self.write(|tx| {
            if parent.contains("/workloadIdentityPools/")
                && tx.query_opt("SELECT 1 FROM federation WHERE name = $1", &[&parent])?.is_none()
            {
                return Err(StoreError::NotFound(format!("workload identity pool {parent}")).into());
            }
            tx.execute(
                "INSERT INTO federation (name, parent, project_id, resource, etag) VALUES ($1, $2, $3, $4, $5)",
                &[&r.name, &parent, &r.project_id.as_str(), &json, &r.etag],
            )
            .map_err(|e| unique(e, || r.name.clone()))?;
            Ok(())
        })
    }

    fn get_federation(&self, name: &str) -> Result<Option<FederationRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT name, project_id, resource, etag FROM federation WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(federation_row)
            .transpose()
        })
    }

    fn list_federation(&self, parent: &str) -> Result<Vec<FederationRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT name, project_id, resource, etag FROM federation WHERE parent = $1 ORDER BY name",
                    &[&parent],
                )?,
                federation_row,
            )
        })
    }

    fn update_federation(
        &self,
        name: &str,
        resource: &serde_json::Value,
        expected_etag: &str,
    ) -> Result<String, StoreError> {
        let etag = new_etag();
        let json = resource.to_string();
        self.write(|tx| {
            let changed = tx.execute(
                "UPDATE federation SET resource = $2, etag = $3 WHERE name = $1 AND etag = $4",
                &[&name, &json, &etag, &expected_etag],
            )?;
            if changed == 1 {
                return Ok(etag.clone());
            }
            Err(
                match tx.query_opt("SELECT 1 FROM federation WHERE name = $1", &[&name])? {
                    Some(_) => StoreError::StaleEtag {
                        resource: name.to_owned(),
                        given: expected_etag.to_owned(),
                    },
                    None => StoreError::NotFound(name.to_owned()),
                }
                .into(),
            )
        })
    }

    fn delete_federation(&self, name: &str) -> Result<bool, StoreError> {
        self.write(|tx| {
            tx.execute("DELETE FROM federation WHERE parent = $1", &[&name])?;
            Ok(tx.execute("DELETE FROM federation WHERE name = $1", &[&name])? == 1)
        })
    }

    fn create_challenge(&self, ch: &ChallengeRecord) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                "INSERT INTO challenges (name, project_id, nonce, create_time, expire_time, used) VALUES ($1, $2, $3, $4, $5, FALSE)",
                &[&ch.name, &ch.project_id.as_str(), &ch.nonce, &ch.create_time, &ch.expire_time],
            )?;
            Ok(())
        })
    }

    fn consume_challenge(
        &self,
        name: &str,
        now: i64,
    ) -> Result<Result<ChallengeRecord, ConsumeError>, StoreError> {
        self.write(|tx| {
            let Some(r) = tx.query_opt(
                "SELECT name, project_id, nonce, create_time, expire_time, used FROM challenges WHERE name = $1",
                &[&name],
            )?
            else {
                return Ok(Err(ConsumeError::NotFound));
            };
            let expire_time: i64 = r.try_get(4)?;
            if r.try_get::<_, bool>(5)? {
                return Ok(Err(ConsumeError::AlreadyUsed));
            }
            if expire_time <= now {
                return Ok(Err(ConsumeError::Expired { expire_time }));
            }
            // The conditional update is what makes the challenge single use across replicas
            // (serializable isolation would catch the race too, by retrying the loser).
            if tx.execute("UPDATE challenges SET used = TRUE WHERE name = $1 AND NOT used", &[&name])? != 1 {
                return Ok(Err(ConsumeError::AlreadyUsed));
            }
            Ok(Ok(ChallengeRecord {
                name: r.try_get(0)?,
                project_id: project_id(&r, 1)?,
                nonce: r.try_get(2)?,
                create_time: r.try_get(3)?,
                expire_time,
            }))
        })
    }

    fn put_reference_value(&self, v: &ReferenceValueRecord) -> Result<(), StoreError> {
        let attrs = serde_json::to_string(&v.support_attributes)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        self.write(|tx| {
            tx.execute(
                &format!(
                    "INSERT INTO reference_values ({REFERENCE_VALUE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (measurement) DO UPDATE SET swversion = EXCLUDED.swversion, dbgstat = EXCLUDED.dbgstat,
                        support_attributes = EXCLUDED.support_attributes, description = EXCLUDED.description,
                        create_time = EXCLUDED.create_time"
                ),
                &[&v.measurement, &v.swversion, &v.dbgstat, &attrs, &v.description, &v.create_time],
            )?;
            Ok(())
        })
    }

    fn get_reference_value(
        &self,
        measurement: &str,
    ) -> Result<Option<ReferenceValueRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!(
                    "SELECT {REFERENCE_VALUE_COLUMNS} FROM reference_values WHERE measurement = $1"
                ),
                &[&measurement],
            )?
            .as_ref()
            .map(reference_value_row)
            .transpose()
        })
    }

    fn list_reference_values(&self) -> Result<Vec<ReferenceValueRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(&format!("SELECT {REFERENCE_VALUE_COLUMNS} FROM reference_values ORDER BY measurement"), &[])?,
                reference_value_row,
            )
        })
    }

    fn delete_reference_value(&self, measurement: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM reference_values WHERE measurement = $1",
                &[&measurement],
            )? == 1)
        })
    }

    fn create_bucket(&self, b: &BucketRecord) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                &format!("INSERT INTO buckets ({BUCKET_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[
                    &b.name,
                    &b.project_id.as_str(),
                    &b.location,
                    &b.storage_class,
                    &b.create_time,
                ],
            )
            .map_err(|e| unique(e, || format!("bucket {}", b.name)))?;
            insert_empty_policy(tx, &b.resource_name(), &b.project_id.resource_name())
        })
    }

    fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = $1"),
                &[&name],
            )?
            .as_ref()
            .map(bucket_row)
            .transpose()
        })
    }

    fn list_buckets(&self, project: &ProjectId) -> Result<Vec<BucketRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {BUCKET_COLUMNS} FROM buckets WHERE project_id = $1 ORDER BY name"
                    ),
                    &[&project.as_str()],
                )?,
                bucket_row,
            )
        })
    }

    fn delete_bucket(&self, name: &str) -> Result<Option<Vec<UploadSession>>, StoreError> {
        self.write(|tx| {
            let objects: i64 = tx
                .query_one("SELECT COUNT(*) FROM objects WHERE bucket = $1", &[&name])?
                .try_get(0)?;
            if objects > 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "{objects} objects in bucket {name}"
                ))
                .into());
            }
            let cancelled = rows(
                tx.query(
                    &format!(
                        "DELETE FROM upload_sessions WHERE bucket = $1 RETURNING {UPLOAD_COLUMNS}"
                    ),
                    &[&name],
                )?,
                upload_row,
            )?;
            let n = tx.execute("DELETE FROM buckets WHERE name = $1", &[&name])?;
            tx.execute(
                "DELETE FROM iam_policies WHERE resource = $1",
                &[&format!("projects/_/buckets/{name}")],
            )?;
            Ok((n == 1).then_some(cancelled))
        })
    }

    fn put_object(
        &self,
        o: &ObjectRecord,
        pre: Preconditions,
        limits: PutLimits,
    ) -> Result<Result<Option<String>, PutRefused>, StoreError> {
        self.write(|tx| {
            let project: String = tx
                .query_opt(
                    "SELECT project_id FROM buckets WHERE name = $1",
                    &[&o.bucket],
                )?
                .ok_or_else(|| StoreError::NotFound(format!("bucket {}", o.bucket)))?
                .try_get(0)?;
            let current = current_generation(tx, &o.bucket, &o.name)?;
            if !pre.hold(current.as_ref().map(|c| c.0)) {
                return Ok(Err(PutRefused::Precondition(current.map(|c| c.0))));
            }
            if let (false, Some(live)) = (limits.may_replace, &current) {
                return Ok(Err(PutRefused::WouldReplace(live.0)));
            }
            if let Some(quota) = limits.project_quota {
                let used = project_bytes(tx, &project)?;
                let replaced = current.as_ref().map_or(0, |c| c.2);
                if used.saturating_sub(replaced).saturating_add(o.size) > quota {
                    return Ok(Err(PutRefused::OverQuota { used, quota }));
                }
            }
            tx.execute(
                &format!(
                    "INSERT INTO objects ({OBJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
                     ON CONFLICT (bucket, name) DO UPDATE SET generation = EXCLUDED.generation,
                        metageneration = EXCLUDED.metageneration, size = EXCLUDED.size, md5 = EXCLUDED.md5,
                        crc32c = EXCLUDED.crc32c, content_type = EXCLUDED.content_type,
                        create_time = EXCLUDED.create_time, update_time = EXCLUDED.update_time,
                        blob_key = EXCLUDED.blob_key"
                ),
                &[
                    &o.bucket, &o.name, &o.generation, &o.metageneration, &(o.size as i64), &o.md5.as_slice(),
                    &i64::from(o.crc32c), &o.content_type, &o.create_time, &o.update_time, &o.blob_key,
                ],
            )?;
            Ok(Ok(current.map(|c| c.1)))
        })
    }

    fn project_storage_bytes(&self, project: &ProjectId) -> Result<u64, StoreError> {
        self.read(|c| project_bytes(c, project.as_str()))
    }

    fn get_object(&self, bucket: &str, name: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND name = $2"),
                &[&bucket, &name],
            )?
            .as_ref()
            .map(object_row)
            .transpose()
        })
    }

    fn list_objects(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: &str,
        limit: usize,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = $1 AND starts_with(name, $2) AND name > $3
                         ORDER BY name LIMIT $4"
                    ),
                    &[&bucket, &prefix, &start_after, &(limit as i64)],
                )?,
                object_row,
            )
        })
    }

    fn object_blobs_in_use(&self, blob_keys: &[String]) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let found = c.query(
                "SELECT DISTINCT blob_key FROM objects WHERE blob_key = ANY($1)",
                &[&blob_keys],
            )?;
            Ok(found.iter().map(|r| r.get(0)).collect())
        })
    }

    fn delete_object(
        &self,
        bucket: &str,
        name: &str,
        pre: Preconditions,
    ) -> Result<Result<Option<String>, Option<i64>>, StoreError> {
        self.write(|tx| {
            let current = current_generation(tx, bucket, name)?;
            if current.is_some() && !pre.hold(current.as_ref().map(|c| c.0)) {
                return Ok(Err(current.map(|c| c.0)));
            }
            tx.execute(
                "DELETE FROM objects WHERE bucket = $1 AND name = $2",
                &[&bucket, &name],
            )?;
            Ok(Ok(current.map(|c| c.1)))
        })
    }

    fn create_upload_session(&self, u: &UploadSession) -> Result<(), StoreError> {
        self.write_one(|c| {
            c.execute(
                &format!("INSERT INTO upload_sessions ({UPLOAD_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
                &[
                    &u.upload_id, &u.bucket, &u.name, &u.content_type, &u.preconditions.if_generation_match,
                    &u.preconditions.if_generation_not_match, &(u.received as i64), &u.create_time,
                    &creator_json(u)?,
                ],
            )?;
            Ok(())
        })
    }

    fn get_upload_session(&self, upload_id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE upload_id = $1"),
                &[&upload_id],
            )?
            .as_ref()
            .map(upload_row)
            .transpose()
        })
    }

    fn stale_upload_sessions(&self, before: i64) -> Result<Vec<UploadSession>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!("SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE create_time < $1"),
                    &[&before],
                )?,
                upload_row,
            )
        })
    }

    fn advance_upload_session(
        &self,
        upload_id: &str,
        from: u64,
        to: u64,
    ) -> Result<bool, StoreError> {
        // One conditional statement: atomic on its own, whichever replica runs it.
        self.write_one(|c| {
            Ok(c.execute(
                "UPDATE upload_sessions SET received = $3 WHERE upload_id = $1 AND received = $2",
                &[&upload_id, &(from as i64), &(to as i64)],
            )? == 1)
        })
    }

    fn delete_upload_session(&self, upload_id: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM upload_sessions WHERE upload_id = $1",
                &[&upload_id],
            )? == 1)
        })
    }

    fn create_key_ring(&self, r: &KmsKeyRing) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO kms_key_rings (name, project_id, create_time) VALUES ($1, $2, $3)",
                &[&r.name, &r.project_id.as_str(), &r.create_time],
            )
            .map_err(|e| unique(e, || format!("key ring {}", r.name)))?;
            insert_empty_policy(tx, &r.name, &r.project_id.resource_name())
        })
    }

    fn get_key_ring(&self, name: &str) -> Result<Option<KmsKeyRing>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT name, project_id, create_time FROM kms_key_rings WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(key_ring_row)
            .transpose()
        })
    }

    fn list_key_rings(&self, parent: &str) -> Result<Vec<KmsKeyRing>, StoreError> {
        let prefix = format!("{parent}/keyRings/");
        self.read(|c| {
            rows(
                c.query(
                    "SELECT name, project_id, create_time FROM kms_key_rings WHERE starts_with(name, $1) ORDER BY name",
                    &[&prefix],
                )?,
                key_ring_row,
            )
        })
    }

    fn create_crypto_key(&self, k: &KmsCryptoKey, first: &KmsKeyVersion) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO kms_crypto_keys (name, key_ring, purpose, primary_version, create_time) VALUES ($1, $2, $3, $4, $5)",
                &[&k.name, &k.key_ring, &k.purpose, &i64::from(k.primary_version), &k.create_time],
            )
            .map_err(|e| unique(e, || format!("crypto key {}", k.name)))?;
            tx.execute(
                &format!("INSERT INTO kms_key_versions ({KEY_VERSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[&k.name, &i64::from(first.version), &first.state, &first.wrapped_material, &first.create_time],
            )?;
            insert_empty_policy(tx, &k.name, &k.key_ring)
        })
    }

    fn get_crypto_key(&self, name: &str) -> Result<Option<KmsCryptoKey>, StoreError> {
        self.read(|c| {
            c.query_opt(
                "SELECT name, key_ring, purpose, primary_version, create_time FROM kms_crypto_keys WHERE name = $1",
                &[&name],
            )?
            .as_ref()
            .map(crypto_key_row)
            .transpose()
        })
    }

    fn list_crypto_keys(&self, key_ring: &str) -> Result<Vec<KmsCryptoKey>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT name, key_ring, purpose, primary_version, create_time FROM kms_crypto_keys WHERE key_ring = $1 ORDER BY name",
                    &[&key_ring],
                )?,
                crypto_key_row,
            )
        })
    }

    fn rotate_crypto_key(
        &self,
        key: &str,
        material: Vec<u8>,
        create_time: &str,
    ) -> Result<u32, StoreError> {
        self.write(|tx| {
            let next: i64 = tx
                .query_one("SELECT COALESCE(MAX(version), 0) + 1 FROM kms_key_versions WHERE key = $1", &[&key])?
                .try_get(0)?;
            if tx.execute("UPDATE kms_crypto_keys SET primary_version = $2 WHERE name = $1", &[&key, &next])? != 1 {
                return Err(StoreError::NotFound(format!("crypto key {key}")).into());
            }
            tx.execute(
                &format!("INSERT INTO kms_key_versions ({KEY_VERSION_COLUMNS}) VALUES ($1, $2, 'ENABLED', $3, $4)"),
                &[&key, &next, &material, &create_time],
            )?;
            u32::try_from(next).map_err(|e| corrupt("key version", e))
        })
    }

    fn get_key_version(
        &self,
        key: &str,
        version: u32,
    ) -> Result<Option<KmsKeyVersion>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {KEY_VERSION_COLUMNS} FROM kms_key_versions WHERE key = $1 AND version = $2"),
                &[&key, &i64::from(version)],
            )?
            .as_ref()
            .map(key_version_row)
            .transpose()
        })
    }

    fn list_key_versions(&self, key: &str) -> Result<Vec<KmsKeyVersion>, StoreError> {
        self.read(|c| {
            rows(
                c.query(&format!("SELECT {KEY_VERSION_COLUMNS} FROM kms_key_versions WHERE key = $1 ORDER BY version"), &[&key])?,
                key_version_row,
            )
        })
    }

    fn get_policy(&self, resource: &str) -> Result<(Policy, Option<String>), StoreError> {
        let row = self.read(|c| {
            c.query_opt(
                "SELECT policy, etag, parent FROM iam_policies WHERE resource = $1",
                &[&resource],
            )?
            .map(|r| {
                Ok((
                    r.try_get::<_, String>(0)?,
                    r.try_get::<_, String>(1)?,
                    r.try_get::<_, Option<String>>(2)?,
                ))
            })
            .transpose()
        })?;
        match row {
            Some((json, etag, parent)) => Ok((parse_policy(resource, &json, etag)?, parent)),
            None => Ok((Policy::default(), None)),
        }
    }

    fn set_policy(&self, resource: &str, policy: &Policy) -> Result<Policy, StoreError> {
        let json = policy_json(policy)?;
        let etag = new_etag();
        self.write(|tx| {
            let Some(current) = tx.query_opt(
                "SELECT etag FROM iam_policies WHERE resource = $1",
                &[&resource],
            )?
            else {
                return Err(StoreError::NotFound(resource.to_owned()).into());
            };
            let current: String = current.try_get(0)?;
            if !policy.etag.is_empty() && policy.etag != current {
                return Err(StoreError::StaleEtag {
                    resource: resource.to_owned(),
                    given: policy.etag.clone(),
                }
                .into());
            }
            tx.execute(
                "UPDATE iam_policies SET policy = $2, etag = $3 WHERE resource = $1",
                &[&resource, &json, &etag],
            )?;
            Ok(())
        })?;
        Ok(Policy {
            etag,
            ..policy.clone()
        })
    }

    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.write(|tx| {
            for e in entries {
                tx.execute(
                    "INSERT INTO audit_log (time, principal, permission, resource, decision, reason, project) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[&e.time, &e.principal, &e.permission, &e.resource, &e.decision.as_str(), &e.reason, &e.project],
                )?;
            }
            Ok(())
        })
    }

    fn list_audit(&self, f: &AuditFilter) -> Result<Vec<AuditEntry>, StoreError> {
        // Escape LIKE's wildcards so a resource prefix matches literally.
        let prefix = f.resource_prefix.as_ref().map(|p| {
            let escaped = p
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            (p.clone(), format!("{escaped}/%"))
        });
        let decision = f.decision.map(Decision::as_str);
        self.read(|c| {
            rows(
                c.query(
                    "SELECT id, time, principal, permission, resource, decision, reason, project FROM audit_log
                     WHERE ($1::TEXT IS NULL OR principal = $1)
                       AND ($2::TEXT IS NULL OR permission = $2)
                       AND ($3::TEXT IS NULL OR resource = $3 OR resource LIKE $4 ESCAPE '\\' OR project = $3)
                       AND ($5::TEXT IS NULL OR decision = $5)
                       AND ($6::TEXT IS NULL OR time >= $6)
                       AND id > $7
                     ORDER BY id LIMIT $8",
                    &[
                        &f.principal,
                        &f.permission,
                        &prefix.as_ref().map(|p| &p.0),
                        &prefix.as_ref().map(|p| &p.1),
                        &decision,
                        &f.since,
                        &f.after_id.unwrap_or(0),
                        &(f.limit as i64),
                    ],
                )?,
                audit_row,
            )
        })
    }
}
