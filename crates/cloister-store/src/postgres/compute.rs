//! [`ComputeStore`] on PostgreSQL.

use cloister_domain::ProjectId;
use postgres::Row;

use super::{PostgresStore, Work, json, project_id, rows, unique};
use crate::compute::{ComputeStore, InstanceRecord};
use crate::metadata::StoreError;

const COLUMNS: &str =
    "project_id, zone, name, id, service_account, metadata, confidential_type, status, create_time";

fn instance_row(r: &Row) -> Work<InstanceRecord> {
    Ok(InstanceRecord {
        project_id: project_id(r, 0)?,
        zone: r.try_get(1)?,
        name: r.try_get(2)?,
        id: r.try_get::<_, i64>(3)? as u64,
        service_account: r.try_get(4)?,
        metadata: json(r, 5, "instance metadata")?,
        confidential_type: r.try_get(6)?,
        status: r.try_get(7)?,
        create_time: r.try_get(8)?,
    })
}

impl ComputeStore for PostgresStore {
    fn create_instance(&self, i: &InstanceRecord) -> Result<(), StoreError> {
        let metadata =
            serde_json::to_string(&i.metadata).map_err(|e| StoreError::Database(e.to_string()))?;
        self.write_one(|c| {
            c.execute(
                &format!("INSERT INTO instances (resource_name, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
                &[
                    &i.resource_name(), &i.project_id.as_str(), &i.zone, &i.name, &(i.id as i64), &i.service_account,
                    &metadata, &i.confidential_type, &i.status, &i.create_time,
                ],
            )
            .map_err(|e| unique(e, || format!("instance {}", i.resource_name())))?;
            Ok(())
        })
    }

    fn get_instance(&self, resource_name: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM instances WHERE resource_name = $1"),
                &[&resource_name],
            )?
            .as_ref()
            .map(instance_row)
            .transpose()
        })
    }

    fn list_instances(
        &self,
        project: &ProjectId,
        zone: &str,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    &format!(
                        "SELECT {COLUMNS} FROM instances WHERE project_id = $1 AND ($2 = '-' OR zone = $2) ORDER BY name"
                    ),
                    &[&project.as_str(), &zone],
                )?,
                instance_row,
            )
        })
    }

    fn set_instance_status(&self, resource_name: &str, status: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "UPDATE instances SET status = $2 WHERE resource_name = $1",
                &[&resource_name, &status],
            )? == 1)
        })
    }

    fn delete_instance(&self, resource_name: &str) -> Result<bool, StoreError> {
        self.write_one(|c| {
            Ok(c.execute(
                "DELETE FROM instances WHERE resource_name = $1",
                &[&resource_name],
            )? == 1)
        })
    }

    fn renew_replica_lease(
        &self,
        replica: &str,
        expires_at: i64,
        instance_ids: &[u64],
    ) -> Result<bool, StoreError> {
        let ids: Vec<i64> = instance_ids.iter().map(|&id| id as i64).collect();
        // One statement: renew the lease, or else insert it; the count inserted tells which.
        self.write_one(|c| {
            let inserted = c.execute(
                "WITH renewed AS (
                    UPDATE replica_leases SET expires_at = $2, instance_ids = $3
                    WHERE replica = $1 RETURNING 1
                 )
                 INSERT INTO replica_leases (replica, expires_at, instance_ids)
                 SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM renewed)",
                &[&replica, &expires_at, &ids],
            )?;
            Ok(inserted == 0)
        })
    }

    fn expire_replica_leases(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.write(|tx| {
            let lapsed = tx.query(
                "DELETE FROM replica_leases WHERE expires_at < $1 RETURNING instance_ids",
                &[&now],
            )?;
            let mut marked = Vec::new();
            for lease in lapsed {
                let ids: Vec<i64> = lease.try_get(0)?;
                let names = tx.query(
                    "UPDATE instances SET status = 'TERMINATED'
                     WHERE id = ANY($1) AND status <> 'TERMINATED' RETURNING resource_name",
                    &[&ids],
                )?;
                for name in names {
                    marked.push(name.try_get(0)?);
                }
            }
            marked.sort();
            Ok(marked)
        })
    }

    fn replica_leases(&self) -> Result<Vec<(String, i64)>, StoreError> {
        self.read(|c| {
            rows(
                c.query(
                    "SELECT replica, expires_at FROM replica_leases ORDER BY replica COLLATE \"C\"",
                    &[],
                )?,
                |r| Ok((r.try_get(0)?, r.try_get(1)?)),
            )
        })
    }
}
