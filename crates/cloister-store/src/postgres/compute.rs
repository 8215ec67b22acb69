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
}
