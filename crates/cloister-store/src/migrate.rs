//! Schema migrations, one SQL file each in `migrations/{sqlite,postgres}`, applied in order.
//! A file never changes once released; a change is a new file.
//!
//! The runner is ours rather than sqlx's `migrate!`: databases written by earlier Cloister
//! releases record how many migrations ran in `PRAGMA user_version` (SQLite) and
//! `cloister_schema` (PostgreSQL), which sqlx's migrator (its own table, checksums) does not
//! read, and this is all it would do for us. A database newer than this build is refused, so
//! an older build never writes a schema it does not know.

use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::error::StoreError;

/// SQLite's migrations: `PRAGMA user_version` counts those that ran.
pub(crate) const SQLITE: &[&str] = &[
    include_str!("../migrations/sqlite/0001_foundation.sql"),
    include_str!("../migrations/sqlite/0002_workload_identity_federation.sql"),
    include_str!("../migrations/sqlite/0003_attestation_verifier.sql"),
    include_str!("../migrations/sqlite/0004_cloud_storage.sql"),
    include_str!("../migrations/sqlite/0005_resumable_uploads.sql"),
    include_str!("../migrations/sqlite/0006_cloud_kms.sql"),
    include_str!("../migrations/sqlite/0007_audit_log_project.sql"),
    include_str!("../migrations/sqlite/0008_artifact_registry.sql"),
    include_str!("../migrations/sqlite/0009_instances.sql"),
    include_str!("../migrations/sqlite/0010_server_secrets.sql"),
    include_str!("../migrations/sqlite/0011_replica_leases.sql"),
    include_str!("../migrations/sqlite/0012_objects_by_blob.sql"),
    include_str!("../migrations/sqlite/0013_upload_creators.sql"),
    include_str!("../migrations/sqlite/0014_deleted_projects.sql"),
    include_str!("../migrations/sqlite/0015_object_attributes.sql"),
    include_str!("../migrations/sqlite/0016_console.sql"),
    include_str!("../migrations/sqlite/0017_audit_log_details.sql"),
    include_str!("../migrations/sqlite/0018_instance_placement.sql"),
    include_str!("../migrations/sqlite/0019_audit_log_subject.sql"),
    include_str!("../migrations/sqlite/0020_instances_by_project.sql"),
    include_str!("../migrations/sqlite/0021_projects_by_creator.sql"),
];

/// PostgreSQL's migrations (its first is SQLite's first ten in PostgreSQL's types):
/// `cloister_schema.version` counts those that ran. Text that is compared or ordered is
/// `COLLATE "C"`: byte order, as SQLite and Cloud Storage's listings use.
pub(crate) const POSTGRES: &[&str] = &[
    include_str!("../migrations/postgres/0001_schema.sql"),
    include_str!("../migrations/postgres/0002_replica_leases.sql"),
    include_str!("../migrations/postgres/0003_objects_by_blob.sql"),
    include_str!("../migrations/postgres/0004_upload_creators.sql"),
    include_str!("../migrations/postgres/0005_replica_lease_ids_as_json.sql"),
    include_str!("../migrations/postgres/0006_deleted_projects.sql"),
    include_str!("../migrations/postgres/0007_object_attributes.sql"),
    include_str!("../migrations/postgres/0008_console.sql"),
    include_str!("../migrations/postgres/0009_audit_log_details.sql"),
    include_str!("../migrations/postgres/0010_instance_placement.sql"),
    include_str!("../migrations/postgres/0011_audit_log_subject.sql"),
    include_str!("../migrations/postgres/0012_instances_by_project.sql"),
    include_str!("../migrations/postgres/0013_projects_by_creator.sql"),
];

/// Any number; it only has to be the same for every replica (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x636c_6f69_7374_6572; // "cloister"

fn failed(statement: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |source| StoreError::Database {
        statement: statement.to_owned(),
        source,
    }
}

/// How many of `known` migrations a database at schema version `applied` has run.
fn applied_of(applied: i64, known: usize) -> Result<usize, StoreError> {
    let applied = usize::try_from(applied).unwrap_or(usize::MAX);
    if applied > known {
        return Err(StoreError::Unusable(format!(
            "the database schema is version {applied}, newer than this cloister ({known}); \
             run a newer cloister or restore a backup"
        )));
    }
    Ok(applied)
}

/// Applies SQLite's pending migrations, each in its own transaction with its version.
pub(crate) async fn sqlite(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *conn)
        .await
        .map_err(failed("PRAGMA user_version"))?;
    for (i, sql) in SQLITE
        .iter()
        .enumerate()
        .skip(applied_of(version, SQLITE.len())?)
    {
        let mut tx = conn
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(failed("BEGIN"))?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(failed(sql))?;
        // A pragma takes no parameters; the number is ours.
        let set = format!("PRAGMA user_version = {}", i + 1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(set.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(failed(&set))?;
        tx.commit().await.map_err(failed("COMMIT"))?;
        tracing::info!(version = i + 1, "applied SQLite schema migration");
    }
    Ok(())
}

/// Applies PostgreSQL's pending migrations in one transaction, under an advisory lock so that
/// replicas starting together migrate once.
pub(crate) async fn postgres(conn: &mut PgConnection) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(failed("BEGIN"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(failed("SELECT pg_advisory_xact_lock"))?;
    const TABLE: &str = "CREATE TABLE IF NOT EXISTS cloister_schema (version BIGINT NOT NULL)";
    sqlx::raw_sql(TABLE)
        .execute(&mut *tx)
        .await
        .map_err(failed(TABLE))?;
    let version: Option<i64> = sqlx::query_scalar("SELECT version FROM cloister_schema")
        .fetch_optional(&mut *tx)
        .await
        .map_err(failed("SELECT version FROM cloister_schema"))?;
    if version.is_none() {
        sqlx::query("INSERT INTO cloister_schema (version) VALUES (0)")
            .execute(&mut *tx)
            .await
            .map_err(failed("INSERT INTO cloister_schema"))?;
    }
    let applied = applied_of(version.unwrap_or(0), POSTGRES.len())?;
    for (i, sql) in POSTGRES.iter().enumerate().skip(applied) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(*sql))
            .execute(&mut *tx)
            .await
            .map_err(failed(sql))?;
        sqlx::query("UPDATE cloister_schema SET version = $1")
            .bind(i64::try_from(i + 1).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await
            .map_err(failed("UPDATE cloister_schema"))?;
        tracing::info!(version = i + 1, "applied PostgreSQL schema migration");
    }
    tx.commit().await.map_err(failed("COMMIT"))
}
