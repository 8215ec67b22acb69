//! The embedded default metadata store: one SQLite database in WAL mode.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cloister_domain::{AuditEntry, Decision, Email, Policy, ProjectId, ProjectNumber};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};

use crate::metadata::{
    AuditFilter, BucketRecord, ChallengeRecord, ConsumeError, CredentialRecord, EMPTY_POLICY,
    FederationRecord, KmsCryptoKey, KmsKeyRing, KmsKeyVersion, MetadataStore, ObjectRecord,
    Preconditions, ProjectRecord, PutLimits, PutRefused, ReferenceValueRecord,
    ServiceAccountRecord, StoreError, UploadSession, UserRecord, federation_parent, new_etag,
    parse_policy, policy_json,
};

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran. Written by
/// hand because the migration crates track newer rusqlite releases than the 0.41 we can pin,
/// and this is all they would do for us.
const MIGRATIONS: &[&str] = &[
    // 1: foundation
    "CREATE TABLE users (
        email TEXT PRIMARY KEY,
        display_name TEXT NOT NULL,
        admin INTEGER NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE TABLE credentials (
        id TEXT PRIMARY KEY,
        user_email TEXT NOT NULL REFERENCES users(email),
        secret_sha256 BLOB NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE TABLE projects (
        id TEXT PRIMARY KEY,
        number INTEGER NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        create_time TEXT NOT NULL,
        creator TEXT NOT NULL
     ) STRICT;
     CREATE TABLE iam_policies (
        resource TEXT PRIMARY KEY,
        parent TEXT,
        policy TEXT NOT NULL,
        etag TEXT NOT NULL
     ) STRICT;
     CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        principal TEXT NOT NULL,
        permission TEXT NOT NULL,
        resource TEXT NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('allow', 'deny')),
        reason TEXT NOT NULL
     ) STRICT;
     CREATE INDEX audit_log_resource ON audit_log(resource);
     CREATE INDEX audit_log_principal ON audit_log(principal);
     CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
     CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;",
    // 2: workload identity federation
    "CREATE TABLE service_accounts (
        email TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        unique_id TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        description TEXT NOT NULL,
        disabled INTEGER NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE INDEX service_accounts_project ON service_accounts(project_id);
     CREATE TABLE federation (
        name TEXT PRIMARY KEY,
        parent TEXT NOT NULL,
        project_id TEXT NOT NULL REFERENCES projects(id),
        resource TEXT NOT NULL,
        etag TEXT NOT NULL
     ) STRICT;
     CREATE INDEX federation_parent ON federation(parent);",
    // 3: attestation verifier
    "CREATE TABLE challenges (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        nonce BLOB NOT NULL,
        create_time INTEGER NOT NULL,
        expire_time INTEGER NOT NULL,
        used INTEGER NOT NULL
     ) STRICT;
     CREATE TABLE reference_values (
        measurement TEXT PRIMARY KEY,
        swversion TEXT NOT NULL,
        dbgstat TEXT NOT NULL,
        support_attributes TEXT NOT NULL,
        description TEXT NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;",
    // 4: Cloud Storage
    "CREATE TABLE buckets (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        location TEXT NOT NULL,
        storage_class TEXT NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE INDEX buckets_project ON buckets(project_id);
     CREATE TABLE objects (
        bucket TEXT NOT NULL REFERENCES buckets(name),
        name TEXT NOT NULL,
        generation INTEGER NOT NULL,
        metageneration INTEGER NOT NULL,
        size INTEGER NOT NULL,
        md5 BLOB NOT NULL,
        crc32c INTEGER NOT NULL,
        content_type TEXT NOT NULL,
        create_time TEXT NOT NULL,
        update_time TEXT NOT NULL,
        blob_key TEXT NOT NULL,
        PRIMARY KEY (bucket, name)
     ) STRICT;",
    // 5: resumable uploads
    "CREATE TABLE upload_sessions (
        upload_id TEXT PRIMARY KEY,
        bucket TEXT NOT NULL REFERENCES buckets(name),
        name TEXT NOT NULL,
        content_type TEXT NOT NULL,
        if_generation_match INTEGER,
        if_generation_not_match INTEGER,
        received INTEGER NOT NULL,
        create_time INTEGER NOT NULL
     ) STRICT;",
    // 6: Cloud KMS
    "CREATE TABLE kms_key_rings (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE TABLE kms_crypto_keys (
        name TEXT PRIMARY KEY,
        key_ring TEXT NOT NULL REFERENCES kms_key_rings(name),
        purpose TEXT NOT NULL,
        primary_version INTEGER NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;
     CREATE TABLE kms_key_versions (
        key TEXT NOT NULL REFERENCES kms_crypto_keys(name),
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        wrapped_material BLOB NOT NULL,
        create_time TEXT NOT NULL,
        PRIMARY KEY (key, version)
     ) STRICT;",
    // 7: the project that owns each audited resource, so a project's owners see decisions on
    // resources named outside `projects/P/…` (buckets are `projects/_/buckets/B`).
    "ALTER TABLE audit_log ADD COLUMN project TEXT;
     CREATE INDEX audit_log_project ON audit_log(project);",
    // 8: Artifact Registry (see `registry.rs`)
    "CREATE TABLE registry_repositories (
        name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        location TEXT NOT NULL,
        repository_id TEXT NOT NULL,
        format TEXT NOT NULL,
        description TEXT NOT NULL,
        create_time TEXT NOT NULL,
        UNIQUE (project_id, repository_id)
     ) STRICT;
     CREATE TABLE registry_blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        blob_key TEXT NOT NULL
     ) STRICT;
     CREATE TABLE registry_blob_links (
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES registry_blobs(digest),
        PRIMARY KEY (repository, image, digest)
     ) STRICT;
     CREATE INDEX registry_blob_links_digest ON registry_blob_links(digest);
     CREATE TABLE registry_manifests (
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT NOT NULL,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        content BLOB NOT NULL,
        subject TEXT,
        artifact_type TEXT,
        create_time TEXT NOT NULL,
        PRIMARY KEY (repository, image, digest)
     ) STRICT;
     CREATE INDEX registry_manifests_subject ON registry_manifests(repository, image, subject);
     CREATE TABLE registry_tags (
        repository TEXT NOT NULL,
        image TEXT NOT NULL,
        tag TEXT NOT NULL,
        digest TEXT NOT NULL,
        PRIMARY KEY (repository, image, tag),
        FOREIGN KEY (repository, image, digest) REFERENCES registry_manifests(repository, image, digest)
     ) STRICT;
     CREATE TABLE registry_uploads (
        upload_id TEXT PRIMARY KEY,
        repository TEXT NOT NULL REFERENCES registry_repositories(name),
        image TEXT NOT NULL,
        received INTEGER NOT NULL,
        chunks INTEGER NOT NULL,
        single_chunk_sha256 TEXT,
        create_time INTEGER NOT NULL
     ) STRICT;",
    // 9: Compute Engine instances
    "CREATE TABLE instances (
        resource_name TEXT PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id),
        zone TEXT NOT NULL,
        name TEXT NOT NULL,
        id INTEGER NOT NULL UNIQUE,
        service_account TEXT NOT NULL,
        metadata TEXT NOT NULL,
        confidential_type TEXT NOT NULL,
        status TEXT NOT NULL,
        create_time TEXT NOT NULL
     ) STRICT;",
    // 10: server secrets shared by replicas (private material wrapped by the external KEK)
    "CREATE TABLE signing_keys (
        issuer TEXT NOT NULL,
        created INTEGER NOT NULL,
        wrapped BLOB NOT NULL,
        PRIMARY KEY (issuer, created)
     ) STRICT;
     CREATE TABLE secrets (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
     ) STRICT;",
    // 11: replicas' leases on the instances they run (a JSON array of instance ids)
    "CREATE TABLE replica_leases (
        replica TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL,
        instance_ids TEXT NOT NULL
     ) STRICT;",
    // 12: the orphaned-blob sweep asks which blobs objects still point at
    "CREATE INDEX objects_by_blob ON objects (blob_key);",
    // 13: who opened each resumable upload (re-authorized at every chunk and at the commit),
    // and a bucket's sessions found for cancelling when it is deleted
    "ALTER TABLE upload_sessions ADD COLUMN creator TEXT;
     CREATE INDEX upload_sessions_by_bucket ON upload_sessions (bucket);",
];

/// One connection for writes and a few for reads: in WAL mode readers never wait for a
/// writer's disk sync, so reads can run on the async runtime without stalling it.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

const READERS: usize = 4;

mod compute;
mod keys;
mod registry;

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path).map_err(db)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db)?;
        // FULL: an acknowledged IAM change or audit entry survives power loss, not just a crash.
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", true).map_err(db)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        // Transactions take the write lock when they begin: a read-check-write that started
        // as a reader could not upgrade while another connection (a CLI beside the server)
        // writes, and SQLite would fail it at once instead of waiting.
        conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
        migrate(&mut conn)?;
        let readers = (0..READERS)
            .map(|_| {
                let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
                let r = Connection::open_with_flags(path, flags).map_err(db)?;
                r.busy_timeout(std::time::Duration::from_secs(5))
                    .map_err(db)?;
                r.set_prepared_statement_cache_capacity(64);
                Ok(Mutex::new(r))
            })
            .collect::<Result<_, StoreError>>()?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            conn: Mutex::new(conn),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite half-written (transactions roll
        // back), so a poisoned mutex is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

impl SqliteStore {
    /// Runs a read on a free reader connection (or waits for the next one in turn).
    fn read<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.readers.len() {
            if let Ok(mut conn) = self.readers[(start + i) % self.readers.len()].try_lock() {
                return f(&mut conn);
            }
        }
        let mut conn = self.readers[start % self.readers.len()]
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let applied: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(db)?;
    let applied = crate::metadata::pending_from(applied, MIGRATIONS.len())?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(applied) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db)?;
        tx.commit().map_err(db)?;
        tracing::info!(version = i + 1, "applied metadata schema migration");
    }
    Ok(())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

fn email_col(row: &Row, i: usize) -> rusqlite::Result<Email> {
    let s: String = row.get(i)?;
    Email::parse(&s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn user_row(row: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        email: email_col(row, 0)?,
        display_name: row.get(1)?,
        admin: row.get(2)?,
        create_time: row.get(3)?,
    })
}

fn project_row(row: &Row) -> rusqlite::Result<ProjectRecord> {
    let id: String = row.get(0)?;
    let number: i64 = row.get(1)?;
    Ok(ProjectRecord {
        id: ProjectId::parse(&id).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?,
        number: ProjectNumber(number as u64),
        display_name: row.get(2)?,
        create_time: row.get(3)?,
        creator: row.get(4)?,
    })
}

fn audit_row(row: &Row) -> rusqlite::Result<AuditEntry> {
    let decision: String = row.get(5)?;
    Ok(AuditEntry {
        id: row.get(0)?,
        time: row.get(1)?,
        principal: row.get(2)?,
        permission: row.get(3)?,
        resource: row.get(4)?,
        decision: Decision::parse(&decision).unwrap_or(Decision::Deny),
        reason: row.get(6)?,
        project: row.get(7)?,
    })
}

fn text_err(i: usize, e: impl std::error::Error + Send + Sync + 'static) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
}

const SERVICE_ACCOUNT_COLUMNS: &str =
    "email, project_id, unique_id, display_name, description, disabled, create_time";

fn service_account_row(row: &Row) -> rusqlite::Result<ServiceAccountRecord> {
    let project: String = row.get(1)?;
    Ok(ServiceAccountRecord {
        email: email_col(row, 0)?,
        project_id: ProjectId::parse(&project).map_err(|e| text_err(1, e))?,
        unique_id: row.get(2)?,
        display_name: row.get(3)?,
        description: row.get(4)?,
        disabled: row.get(5)?,
        create_time: row.get(6)?,
    })
}

fn federation_row(row: &Row) -> rusqlite::Result<FederationRecord> {
    let project: String = row.get(1)?;
    let resource: String = row.get(2)?;
    Ok(FederationRecord {
        name: row.get(0)?,
        project_id: ProjectId::parse(&project).map_err(|e| text_err(1, e))?,
        resource: serde_json::from_str(&resource).map_err(|e| text_err(2, e))?,
        etag: row.get(3)?,
    })
}

fn reference_value_row(row: &Row) -> rusqlite::Result<ReferenceValueRecord> {
    let attrs: String = row.get(3)?;
    Ok(ReferenceValueRecord {
        measurement: row.get(0)?,
        swversion: row.get(1)?,
        dbgstat: row.get(2)?,
        support_attributes: serde_json::from_str(&attrs).map_err(|e| text_err(3, e))?,
        description: row.get(4)?,
        create_time: row.get(5)?,
    })
}

const BUCKET_COLUMNS: &str = "name, project_id, location, storage_class, create_time";
const UPLOAD_COLUMNS: &str = "upload_id, bucket, name, content_type, if_generation_match, if_generation_not_match, received, create_time, creator";

fn upload_row(r: &rusqlite::Row) -> rusqlite::Result<UploadSession> {
    Ok(UploadSession {
        upload_id: r.get(0)?,
        bucket: r.get(1)?,
        name: r.get(2)?,
        content_type: r.get(3)?,
        preconditions: Preconditions {
            if_generation_match: r.get(4)?,
            if_generation_not_match: r.get(5)?,
        },
        received: r.get::<_, i64>(6)? as u64,
        create_time: r.get(7)?,
        creator: r
            .get::<_, Option<String>>(8)?
            .map(|c| serde_json::from_str(&c).map_err(|e| text_err(8, e)))
            .transpose()?,
    })
}

const OBJECT_COLUMNS: &str = "bucket, name, generation, metageneration, size, md5, crc32c, content_type, create_time, update_time, blob_key";

fn bucket_row(row: &Row) -> rusqlite::Result<BucketRecord> {
    let project: String = row.get(1)?;
    Ok(BucketRecord {
        name: row.get(0)?,
        project_id: ProjectId::parse(&project).map_err(|e| text_err(1, e))?,
        location: row.get(2)?,
        storage_class: row.get(3)?,
        create_time: row.get(4)?,
    })
}

fn object_row(row: &Row) -> rusqlite::Result<ObjectRecord> {
    let md5: Vec<u8> = row.get(5)?;
    let size: i64 = row.get(4)?;
    let crc: i64 = row.get(6)?;
    Ok(ObjectRecord {
        bucket: row.get(0)?,
        name: row.get(1)?,
        generation: row.get(2)?,
        metageneration: row.get(3)?,
        size: size as u64,
        md5: md5.try_into().unwrap_or([0; 16]),
        crc32c: crc as u32,
        content_type: row.get(7)?,
        create_time: row.get(8)?,
        update_time: row.get(9)?,
        blob_key: row.get(10)?,
    })
}

/// What a project's live objects hold, in bytes (what its quota counts).
fn project_bytes(c: &Connection, project: &str) -> Result<u64, StoreError> {
    c.prepare_cached(
        "SELECT COALESCE(SUM(o.size), 0) FROM objects o JOIN buckets b ON b.name = o.bucket WHERE b.project_id = ?1",
    )
    .map_err(db)?
    .query_row([project], |r| r.get::<_, i64>(0))
    .map(|n| n as u64)
    .map_err(db)
}

fn creator_json(u: &UploadSession) -> Result<Option<String>, StoreError> {
    u.creator
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::Database(format!("the session's creator: {e}")))
}

/// The live generation's number, blob key and size.
fn current_generation(
    tx: &rusqlite::Transaction,
    bucket: &str,
    name: &str,
) -> Result<Option<(i64, String, u64)>, StoreError> {
    tx.query_row(
        "SELECT generation, blob_key, size FROM objects WHERE bucket = ?1 AND name = ?2",
        [bucket, name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64)),
    )
    .optional()
    .map_err(db)
}

fn key_ring_row(row: &Row) -> rusqlite::Result<KmsKeyRing> {
    let project: String = row.get(1)?;
    Ok(KmsKeyRing {
        name: row.get(0)?,
        project_id: ProjectId::parse(&project).map_err(|e| text_err(1, e))?,
        create_time: row.get(2)?,
    })
}

fn crypto_key_row(row: &Row) -> rusqlite::Result<KmsCryptoKey> {
    Ok(KmsCryptoKey {
        name: row.get(0)?,
        key_ring: row.get(1)?,
        purpose: row.get(2)?,
        primary_version: row.get(3)?,
        create_time: row.get(4)?,
    })
}

fn key_version_row(row: &Row) -> rusqlite::Result<KmsKeyVersion> {
    Ok(KmsKeyVersion {
        key: row.get(0)?,
        version: row.get(1)?,
        state: row.get(2)?,
        wrapped_material: row.get(3)?,
        create_time: row.get(4)?,
    })
}

impl MetadataStore for SqliteStore {
    fn create_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO users (email, display_name, admin, create_time) VALUES (?1, ?2, ?3, ?4)",
                params![user.email.as_str(), user.display_name, user.admin, user.create_time],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("user {}", user.email))
                } else {
                    db(e)
                }
            })?;
            Ok(())
        })
    }

    fn get_user(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT email, display_name, admin, create_time FROM users WHERE email = ?1",
            )
            .map_err(db)?
            .query_row([email.as_str()], user_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT email, display_name, admin, create_time FROM users ORDER BY email",
                )
                .map_err(db)?;
            let rows = stmt.query_map([], user_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn create_credential(&self, cred: &CredentialRecord) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO credentials (id, user_email, secret_sha256, create_time) VALUES (?1, ?2, ?3, ?4)",
                params![cred.id, cred.user.as_str(), cred.secret_sha256.as_slice(), cred.create_time],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("credential {}", cred.id))
                } else {
                    db(e)
                }
            })?;
            Ok(())
        })
    }

    fn get_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, user_email, secret_sha256, create_time FROM credentials WHERE id = ?1",
            )
            .map_err(db)?
            .query_row([id], |row| {
                let hash: Vec<u8> = row.get(2)?;
                Ok(CredentialRecord {
                    id: row.get(0)?,
                    user: email_col(row, 1)?,
                    secret_sha256: hash.try_into().unwrap_or([0; 32]),
                    create_time: row.get(3)?,
                })
            })
            .optional()
            .map_err(db)
        })
    }

    fn create_project(&self, p: &ProjectRecord, policy: &Policy) -> Result<(), StoreError> {
        let policy_json = policy_json(policy)?;
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let exists: bool = tx
                .query_row("SELECT 1 FROM projects WHERE id = ?1", [p.id.as_str()], |_| Ok(true))
                .optional()
                .map_err(db)?
                .unwrap_or(false);
            if exists {
                return Err(StoreError::AlreadyExists(format!("project {}", p.id)));
            }
            tx.execute(
                "INSERT INTO projects (id, number, display_name, create_time, creator) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![p.id.as_str(), p.number.0 as i64, p.display_name, p.create_time, p.creator],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("project number {}", p.number))
                } else {
                    db(e)
                }
            })?;
            tx.execute(
                "INSERT INTO iam_policies (resource, parent, policy, etag) VALUES (?1, NULL, ?2, ?3)",
                params![p.id.resource_name(), policy_json, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT id, number, display_name, create_time, creator FROM projects WHERE id = ?1",
            )
            .map_err(db)?
            .query_row([id.as_str()], project_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT id, number, display_name, create_time, creator FROM projects ORDER BY id")
                .map_err(db)?;
            let rows = stmt.query_map([], project_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn create_service_account(&self, a: &ServiceAccountRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                &format!("INSERT INTO service_accounts ({SERVICE_ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
                params![a.email.as_str(), a.project_id.as_str(), a.unique_id, a.display_name, a.description, a.disabled, a.create_time],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists(format!("service account {}", a.email))
                } else {
                    db(e)
                }
            })?;
            tx.execute(
                "INSERT OR REPLACE INTO iam_policies (resource, parent, policy, etag) VALUES (?1, ?2, ?3, ?4)",
                params![a.resource_name(), a.project_id.resource_name(), EMPTY_POLICY, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_service_account(
        &self,
        email: &Email,
    ) -> Result<Option<ServiceAccountRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE email = ?1"
            ))
            .map_err(db)?
            .query_row([email.as_str()], service_account_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_service_accounts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<ServiceAccountRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE project_id = ?1 ORDER BY email"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([project.as_str()], service_account_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn delete_service_account(&self, email: &Email) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let project: Option<String> = tx
                .query_row(
                    "SELECT project_id FROM service_accounts WHERE email = ?1",
                    [email.as_str()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let Some(project) = project else {
                return Ok(false);
            };
            tx.execute(
                "DELETE FROM service_accounts WHERE email = ?1",
                [email.as_str()],
            )
            .map_err(db)?;
            tx.execute(
                "DELETE FROM iam_policies WHERE resource = ?1",
                [format!("projects/{project}/serviceAccounts/{email}")],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(true)
        })
    }

    fn create_federation(&self, r: &FederationRecord) -> Result<(), StoreError> {
        let parent = federation_parent(&r.name);
        let json = r.resource.to_string();
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            if parent.contains("/workloadIdentityPools/") {
                let pool: Option<i64> = tx
                    .query_row("SELECT 1 FROM federation WHERE name = ?1", [&parent], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                if pool.is_none() {
                    return Err(StoreError::NotFound(format!("workload identity pool {parent}")));
                }
            }
            tx.execute(
                "INSERT INTO federation (name, parent, project_id, resource, etag) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![r.name, parent, r.project_id.as_str(), json, r.etag],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(r.name.clone()) } else { db(e) })?;
            tx.commit().map_err(db)
        })
    }

    fn get_federation(&self, name: &str) -> Result<Option<FederationRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, project_id, resource, etag FROM federation WHERE name = ?1",
            )
            .map_err(db)?
            .query_row([name], federation_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_federation(&self, parent: &str) -> Result<Vec<FederationRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name, project_id, resource, etag FROM federation WHERE parent = ?1 ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([parent], federation_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
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
        self.with(|c| {
            let changed = c
                .execute(
                    "UPDATE federation SET resource = ?2, etag = ?3 WHERE name = ?1 AND etag = ?4",
                    params![name, json, etag, expected_etag],
                )
                .map_err(db)?;
            if changed == 1 {
                return Ok(etag.clone());
            }
            let exists: Option<i64> = c
                .query_row("SELECT 1 FROM federation WHERE name = ?1", [name], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(db)?;
            match exists {
                Some(_) => Err(StoreError::StaleEtag {
                    resource: name.to_owned(),
                    given: expected_etag.to_owned(),
                }),
                None => Err(StoreError::NotFound(name.to_owned())),
            }
        })
    }

    fn delete_federation(&self, name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute("DELETE FROM federation WHERE parent = ?1", [name])
                .map_err(db)?;
            let n = tx
                .execute("DELETE FROM federation WHERE name = ?1", [name])
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(n == 1)
        })
    }

    fn create_challenge(&self, c: &ChallengeRecord) -> Result<(), StoreError> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO challenges (name, project_id, nonce, create_time, expire_time, used) VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                params![c.name, c.project_id.as_str(), c.nonce, c.create_time, c.expire_time],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn consume_challenge(
        &self,
        name: &str,
        now: i64,
    ) -> Result<Result<ChallengeRecord, ConsumeError>, StoreError> {
        self.with(|conn| {
            let tx = conn.transaction().map_err(db)?;
            let row = tx
                .query_row(
                    "SELECT name, project_id, nonce, create_time, expire_time, used FROM challenges WHERE name = ?1",
                    [name],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, i64>(4)?,
                            r.get::<_, bool>(5)?,
                        ))
                    },
                )
                .optional()
                .map_err(db)?;
            let Some((name, project, nonce, create_time, expire_time, used)) = row else {
                return Ok(Err(ConsumeError::NotFound));
            };
            if used {
                return Ok(Err(ConsumeError::AlreadyUsed));
            }
            if expire_time <= now {
                return Ok(Err(ConsumeError::Expired { expire_time }));
            }
            // The conditional update is what makes the challenge single use across replicas
            // sharing the database: only one transaction can flip `used`.
            let changed = tx.execute("UPDATE challenges SET used = 1 WHERE name = ?1 AND used = 0", [&name]).map_err(db)?;
            tx.commit().map_err(db)?;
            if changed != 1 {
                return Ok(Err(ConsumeError::AlreadyUsed));
            }
            let project_id = ProjectId::parse(&project).map_err(|e| StoreError::Database(e.to_string()))?;
            Ok(Ok(ChallengeRecord { name, project_id, nonce, create_time, expire_time }))
        })
    }

    fn put_reference_value(&self, v: &ReferenceValueRecord) -> Result<(), StoreError> {
        let attrs = serde_json::to_string(&v.support_attributes)
            .map_err(|e| StoreError::Database(e.to_string()))?;
        self.with(|conn| {
            conn.execute(
                "INSERT OR REPLACE INTO reference_values (measurement, swversion, dbgstat, support_attributes, description, create_time) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![v.measurement, v.swversion, v.dbgstat, attrs, v.description, v.create_time],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn get_reference_value(
        &self,
        measurement: &str,
    ) -> Result<Option<ReferenceValueRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT measurement, swversion, dbgstat, support_attributes, description, create_time FROM reference_values WHERE measurement = ?1")
                .map_err(db)?
                .query_row([measurement], reference_value_row)
                .optional()
                .map_err(db)
        })
    }

    fn list_reference_values(&self) -> Result<Vec<ReferenceValueRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT measurement, swversion, dbgstat, support_attributes, description, create_time FROM reference_values ORDER BY measurement")
                .map_err(db)?;
            let rows = stmt.query_map([], reference_value_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn delete_reference_value(&self, measurement: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM reference_values WHERE measurement = ?1",
                [measurement],
            )
            .map_err(db)?
                == 1)
        })
    }

    fn create_bucket(&self, b: &BucketRecord) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                &format!("INSERT INTO buckets ({BUCKET_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![b.name, b.project_id.as_str(), b.location, b.storage_class, b.create_time],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(format!("bucket {}", b.name)) } else { db(e) })?;
            tx.execute(
                "INSERT OR REPLACE INTO iam_policies (resource, parent, policy, etag) VALUES (?1, ?2, ?3, ?4)",
                params![b.resource_name(), b.project_id.resource_name(), EMPTY_POLICY, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_bucket(&self, name: &str) -> Result<Option<BucketRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {BUCKET_COLUMNS} FROM buckets WHERE name = ?1"
            ))
            .map_err(db)?
            .query_row([name], bucket_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_buckets(&self, project: &ProjectId) -> Result<Vec<BucketRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {BUCKET_COLUMNS} FROM buckets WHERE project_id = ?1 ORDER BY name"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([project.as_str()], bucket_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn delete_bucket(&self, name: &str) -> Result<Option<Vec<UploadSession>>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let objects: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM objects WHERE bucket = ?1",
                    [name],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if objects > 0 {
                return Err(StoreError::AlreadyExists(format!(
                    "{objects} objects in bucket {name}"
                )));
            }
            let cancelled = {
                let mut stmt = tx
                    .prepare_cached(&format!(
                        "DELETE FROM upload_sessions WHERE bucket = ?1 RETURNING {UPLOAD_COLUMNS}"
                    ))
                    .map_err(db)?;
                let rows = stmt.query_map([name], upload_row).map_err(db)?;
                rows.collect::<Result<Vec<_>, _>>().map_err(db)?
            };
            let n = tx
                .execute("DELETE FROM buckets WHERE name = ?1", [name])
                .map_err(db)?;
            tx.execute(
                "DELETE FROM iam_policies WHERE resource = ?1",
                [format!("projects/_/buckets/{name}")],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok((n == 1).then_some(cancelled))
        })
    }

    fn put_object(
        &self,
        o: &ObjectRecord,
        pre: Preconditions,
        limits: PutLimits,
    ) -> Result<Result<Option<String>, PutRefused>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let project: String = tx
                .query_row(
                    "SELECT project_id FROM buckets WHERE name = ?1",
                    [&o.bucket],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?
                .ok_or_else(|| StoreError::NotFound(format!("bucket {}", o.bucket)))?;
            let current = current_generation(&tx, &o.bucket, &o.name)?;
            if !pre.hold(current.as_ref().map(|c| c.0)) {
                return Ok(Err(PutRefused::Precondition(current.map(|c| c.0))));
            }
            if let (false, Some(live)) = (limits.may_replace, &current) {
                return Ok(Err(PutRefused::WouldReplace(live.0)));
            }
            if let Some(quota) = limits.project_quota {
                let used = project_bytes(&tx, &project)?;
                let replaced = current.as_ref().map_or(0, |c| c.2);
                if used.saturating_sub(replaced).saturating_add(o.size) > quota {
                    return Ok(Err(PutRefused::OverQuota { used, quota }));
                }
            }
            tx.execute(
                &format!("INSERT OR REPLACE INTO objects ({OBJECT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"),
                params![
                    o.bucket, o.name, o.generation, o.metageneration, o.size as i64, o.md5.as_slice(), o.crc32c as i64,
                    o.content_type, o.create_time, o.update_time, o.blob_key
                ],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Ok(current.map(|c| c.1)))
        })
    }

    fn project_storage_bytes(&self, project: &ProjectId) -> Result<u64, StoreError> {
        self.read(|c| project_bytes(c, project.as_str()))
    }

    fn get_object(&self, bucket: &str, name: &str) -> Result<Option<ObjectRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND name = ?2"
            ))
            .map_err(db)?
            .query_row([bucket, name], object_row)
            .optional()
            .map_err(db)
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
            // Names compare as bytes (BINARY collation), the order Cloud Storage lists in.
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE bucket = ?1 AND substr(name, 1, length(?2)) = ?2 AND name > ?3 ORDER BY name LIMIT ?4"
                ))
                .map_err(db)?;
            let rows = stmt.query_map(params![bucket, prefix, start_after, limit as i64], object_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn object_blobs_in_use(&self, blob_keys: &[String]) -> Result<Vec<String>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM objects WHERE blob_key = ?1)")
                .map_err(db)?;
            let mut used = Vec::new();
            for key in blob_keys {
                if stmt.query_row([key], |r| r.get::<_, bool>(0)).map_err(db)? {
                    used.push(key.clone());
                }
            }
            Ok(used)
        })
    }

    fn delete_object(
        &self,
        bucket: &str,
        name: &str,
        pre: Preconditions,
    ) -> Result<Result<Option<String>, Option<i64>>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let current = current_generation(&tx, bucket, name)?;
            if current.is_some() && !pre.hold(current.as_ref().map(|c| c.0)) {
                return Ok(Err(current.map(|c| c.0)));
            }
            tx.execute(
                "DELETE FROM objects WHERE bucket = ?1 AND name = ?2",
                [bucket, name],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(Ok(current.map(|c| c.1)))
        })
    }

    fn create_upload_session(&self, u: &UploadSession) -> Result<(), StoreError> {
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO upload_sessions ({UPLOAD_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![u.upload_id, u.bucket, u.name, u.content_type, u.preconditions.if_generation_match, u.preconditions.if_generation_not_match, u.received as i64, u.create_time, creator_json(u)?],
            )
            .map_err(db)?;
            Ok(())
        })
    }

    fn get_upload_session(&self, upload_id: &str) -> Result<Option<UploadSession>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE upload_id = ?1"
            ))
            .map_err(db)?
            .query_row([upload_id], upload_row)
            .optional()
            .map_err(db)
        })
    }

    fn stale_upload_sessions(&self, before: i64) -> Result<Vec<UploadSession>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {UPLOAD_COLUMNS} FROM upload_sessions WHERE create_time < ?1"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([before], upload_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn advance_upload_session(
        &self,
        upload_id: &str,
        from: u64,
        to: u64,
    ) -> Result<bool, StoreError> {
        self.with(|c| {
            let n = c
                .execute("UPDATE upload_sessions SET received = ?3 WHERE upload_id = ?1 AND received = ?2", params![upload_id, from as i64, to as i64])
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    fn delete_upload_session(&self, upload_id: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            Ok(c.execute(
                "DELETE FROM upload_sessions WHERE upload_id = ?1",
                [upload_id],
            )
            .map_err(db)?
                == 1)
        })
    }

    fn create_key_ring(&self, r: &KmsKeyRing) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute("INSERT INTO kms_key_rings (name, project_id, create_time) VALUES (?1, ?2, ?3)", params![r.name, r.project_id.as_str(), r.create_time])
                .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(format!("key ring {}", r.name)) } else { db(e) })?;
            tx.execute(
                "INSERT OR REPLACE INTO iam_policies (resource, parent, policy, etag) VALUES (?1, ?2, ?3, ?4)",
                params![r.name, r.project_id.resource_name(), EMPTY_POLICY, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_key_ring(&self, name: &str) -> Result<Option<KmsKeyRing>, StoreError> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, project_id, create_time FROM kms_key_rings WHERE name = ?1",
            )
            .map_err(db)?
            .query_row([name], key_ring_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_key_rings(&self, parent: &str) -> Result<Vec<KmsKeyRing>, StoreError> {
        let prefix = format!("{parent}/keyRings/");
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name, project_id, create_time FROM kms_key_rings WHERE substr(name, 1, length(?1)) = ?1 ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([&prefix], key_ring_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn create_crypto_key(&self, k: &KmsCryptoKey, first: &KmsKeyVersion) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            tx.execute(
                "INSERT INTO kms_crypto_keys (name, key_ring, purpose, primary_version, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.name, k.key_ring, k.purpose, k.primary_version, k.create_time],
            )
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(format!("crypto key {}", k.name)) } else { db(e) })?;
            tx.execute(
                "INSERT INTO kms_key_versions (key, version, state, wrapped_material, create_time) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![k.name, first.version, first.state, first.wrapped_material, first.create_time],
            )
            .map_err(db)?;
            tx.execute(
                "INSERT OR REPLACE INTO iam_policies (resource, parent, policy, etag) VALUES (?1, ?2, ?3, ?4)",
                params![k.name, k.key_ring, EMPTY_POLICY, new_etag()],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })
    }

    fn get_crypto_key(&self, name: &str) -> Result<Option<KmsCryptoKey>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT name, key_ring, purpose, primary_version, create_time FROM kms_crypto_keys WHERE name = ?1")
                .map_err(db)?
                .query_row([name], crypto_key_row)
                .optional()
                .map_err(db)
        })
    }

    fn list_crypto_keys(&self, key_ring: &str) -> Result<Vec<KmsCryptoKey>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT name, key_ring, purpose, primary_version, create_time FROM kms_crypto_keys WHERE key_ring = ?1 ORDER BY name")
                .map_err(db)?;
            let rows = stmt.query_map([key_ring], crypto_key_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn rotate_crypto_key(
        &self,
        key: &str,
        material: Vec<u8>,
        create_time: &str,
    ) -> Result<u32, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let next: u32 = tx
                .query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM kms_key_versions WHERE key = ?1", [key], |r| r.get(0))
                .map_err(db)?;
            let n = tx.execute("UPDATE kms_crypto_keys SET primary_version = ?2 WHERE name = ?1", params![key, next]).map_err(db)?;
            if n != 1 {
                return Err(StoreError::NotFound(format!("crypto key {key}")));
            }
            tx.execute(
                "INSERT INTO kms_key_versions (key, version, state, wrapped_material, create_time) VALUES (?1, ?2, 'ENABLED', ?3, ?4)",
                params![key, next, material, create_time],
            )
            .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(next)
        })
    }

    fn get_key_version(
        &self,
        key: &str,
        version: u32,
    ) -> Result<Option<KmsKeyVersion>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT key, version, state, wrapped_material, create_time FROM kms_key_versions WHERE key = ?1 AND version = ?2")
                .map_err(db)?
                .query_row(params![key, version], key_version_row)
                .optional()
                .map_err(db)
        })
    }

    fn list_key_versions(&self, key: &str) -> Result<Vec<KmsKeyVersion>, StoreError> {
        self.read(|c| {
            let mut stmt = c
                .prepare_cached("SELECT key, version, state, wrapped_material, create_time FROM kms_key_versions WHERE key = ?1 ORDER BY version")
                .map_err(db)?;
            let rows = stmt.query_map([key], key_version_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }

    fn get_policy(&self, resource: &str) -> Result<(Policy, Option<String>), StoreError> {
        let row = self.read(|c| {
            c.prepare_cached("SELECT policy, etag, parent FROM iam_policies WHERE resource = ?1")
                .map_err(db)?
                .query_row([resource], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                    ))
                })
                .optional()
                .map_err(db)
        })?;
        match row {
            Some((json, etag, parent)) => Ok((parse_policy(resource, &json, etag)?, parent)),
            None => Ok((Policy::default(), None)),
        }
    }

    fn set_policy(&self, resource: &str, policy: &Policy) -> Result<Policy, StoreError> {
        let json = policy_json(policy)?;
        let etag = new_etag();
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let current: Option<String> = tx
                .query_row(
                    "SELECT etag FROM iam_policies WHERE resource = ?1",
                    [resource],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db)?;
            let Some(current) = current else {
                return Err(StoreError::NotFound(resource.to_owned()));
            };
            if !policy.etag.is_empty() && policy.etag != current {
                return Err(StoreError::StaleEtag {
                    resource: resource.to_owned(),
                    given: policy.etag.clone(),
                });
            }
            tx.execute(
                "UPDATE iam_policies SET policy = ?2, etag = ?3 WHERE resource = ?1",
                params![resource, json, etag],
            )
            .map_err(db)?;
            tx.commit().map_err(db)
        })?;
        Ok(Policy {
            etag,
            ..policy.clone()
        })
    }

    fn append_audit(&self, entries: &[AuditEntry]) -> Result<(), StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            {
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO audit_log (time, principal, permission, resource, decision, reason, project) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )
                    .map_err(db)?;
                for e in entries {
                    stmt.execute(params![e.time, e.principal, e.permission, e.resource, e.decision.as_str(), e.reason, e.project])
                        .map_err(db)?;
                }
            }
            tx.commit().map_err(db)
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
        self.read(|c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, time, principal, permission, resource, decision, reason, project FROM audit_log
                     WHERE (?1 IS NULL OR principal = ?1)
                       AND (?2 IS NULL OR permission = ?2)
                       AND (?3 IS NULL OR resource = ?3 OR resource LIKE ?4 ESCAPE '\\' OR project = ?3)
                       AND (?5 IS NULL OR decision = ?5)
                       AND (?6 IS NULL OR time >= ?6)
                       AND id > ?7
                     ORDER BY id LIMIT ?8",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![
                        f.principal,
                        f.permission,
                        prefix.as_ref().map(|p| &p.0),
                        prefix.as_ref().map(|p| &p.1),
                        f.decision.map(Decision::as_str),
                        f.since,
                        f.after_id.unwrap_or(0),
                        f.limit as i64,
                    ],
                    audit_row,
                )
                .map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        })
    }
}
