//! [`ComputeStore`] on SQLite.

use cloister_domain::ProjectId;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, db, is_unique_violation, text_err};
use crate::compute::{ComputeStore, InstanceRecord};
use crate::metadata::StoreError;

const COLUMNS: &str =
    "project_id, zone, name, id, service_account, metadata, confidential_type, status, create_time";

fn instance_row(row: &Row) -> rusqlite::Result<InstanceRecord> {
    let project: String = row.get(0)?;
    let metadata: String = row.get(5)?;
    Ok(InstanceRecord {
        project_id: ProjectId::parse(&project).map_err(|e| text_err(0, e))?,
        zone: row.get(1)?,
        name: row.get(2)?,
        id: row.get::<_, i64>(3)? as u64,
        service_account: row.get(4)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| text_err(5, e))?,
        confidential_type: row.get(6)?,
        status: row.get(7)?,
        create_time: row.get(8)?,
    })
}

impl ComputeStore for SqliteStore {
    fn create_instance(&self, i: &InstanceRecord) -> Result<(), StoreError> {
        let metadata =
            serde_json::to_string(&i.metadata).map_err(|e| StoreError::Database(e.to_string()))?;
        self.with(|c| {
            c.execute(
                &format!("INSERT INTO instances (resource_name, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![i.resource_name(), i.project_id.as_str(), i.zone, i.name, i.id as i64, i.service_account, metadata, i.confidential_type, i.status, i.create_time],
            )
            .map(|_| ())
            .map_err(|e| if is_unique_violation(&e) { StoreError::AlreadyExists(format!("instance {}", i.resource_name())) } else { db(e) })
        })
    }

    fn get_instance(&self, resource_name: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM instances WHERE resource_name = ?1"
            ))
            .map_err(db)?
            .query_row([resource_name], instance_row)
            .optional()
            .map_err(db)
        })
    }

    fn list_instances(
        &self,
        project: &ProjectId,
        zone: &str,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM instances WHERE project_id = ?1 AND (?2 = '-' OR zone = ?2) ORDER BY name"
            ))
            .map_err(db)?
            .query_map([project.as_str(), zone], instance_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)
        })
    }

    fn set_instance_status(&self, resource_name: &str, status: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE instances SET status = ?2 WHERE resource_name = ?1",
                [resource_name, status],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
    }

    fn delete_instance(&self, resource_name: &str) -> Result<bool, StoreError> {
        self.with(|c| {
            c.execute(
                "DELETE FROM instances WHERE resource_name = ?1",
                [resource_name],
            )
            .map(|n| n == 1)
            .map_err(db)
        })
    }

    fn renew_replica_lease(
        &self,
        replica: &str,
        expires_at: i64,
        instance_ids: &[u64],
    ) -> Result<bool, StoreError> {
        let ids =
            serde_json::to_string(instance_ids).map_err(|e| StoreError::Database(e.to_string()))?;
        // One writer connection: the update and the insert cannot interleave with another's.
        self.with(|c| {
            let renewed = c
                .execute(
                    "UPDATE replica_leases SET expires_at = ?2, instance_ids = ?3 WHERE replica = ?1",
                    params![replica, expires_at, ids],
                )
                .map_err(db)?;
            if renewed == 1 {
                return Ok(true);
            }
            c.execute(
                "INSERT INTO replica_leases (replica, expires_at, instance_ids) VALUES (?1, ?2, ?3)",
                params![replica, expires_at, ids],
            )
            .map_err(db)?;
            Ok(false)
        })
    }

    fn expire_replica_leases(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.with(|c| {
            let tx = c.transaction().map_err(db)?;
            let lapsed: Vec<(String, String)> = tx
                .prepare_cached(
                    "SELECT replica, instance_ids FROM replica_leases WHERE expires_at < ?1",
                )
                .map_err(db)?
                .query_map([now], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let mut marked = Vec::new();
            for (replica, ids) in lapsed {
                let ids: Vec<u64> = serde_json::from_str(&ids).map_err(|e| {
                    StoreError::Database(format!("stored lease of {replica} does not parse: {e}"))
                })?;
                for id in ids {
                    let name: Option<String> = tx
                        .query_row(
                            "UPDATE instances SET status = 'TERMINATED'
                             WHERE id = ?1 AND status <> 'TERMINATED' RETURNING resource_name",
                            [id as i64],
                            |r| r.get(0),
                        )
                        .optional()
                        .map_err(db)?;
                    marked.extend(name);
                }
                tx.execute("DELETE FROM replica_leases WHERE replica = ?1", [&replica])
                    .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            marked.sort();
            Ok(marked)
        })
    }

    fn replica_leases(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            c.prepare_cached("SELECT replica, expires_at FROM replica_leases ORDER BY replica")
                .map_err(db)?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)
        })
    }
}
