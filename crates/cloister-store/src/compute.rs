//! Compute Engine instances (what the driver runs), and replicas' leases on the instances they
//! run.

use std::collections::BTreeMap;

use cloister_domain::ProjectId;
use time::OffsetDateTime;

use crate::db::{Row, constraint, query, rfc3339};
use crate::error::StoreError;
use crate::store::Store;

/// An instance's lifecycle state, in Compute Engine's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceStatus {
    Provisioning,
    Running,
    /// Held for debugging (the workload's restart policy said so).
    Suspended,
    Terminated,
}

/// What protects an instance: a vTPM only, a confidential VM's hardware, or nothing (tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfidentialType {
    Insecure,
    Vtpm,
    SevSnp,
    Tdx,
}

google_enum!(InstanceStatus {
    Provisioning = "PROVISIONING",
    Running = "RUNNING",
    Suspended = "SUSPENDED",
    Terminated = "TERMINATED",
});
google_enum!(ConfidentialType {
    Insecure = "INSECURE",
    Vtpm = "VTPM",
    SevSnp = "SEV_SNP",
    Tdx = "TDX",
});

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRecord {
    pub project_id: ProjectId,
    pub zone: String,
    pub name: String,
    /// Google's numeric instance id (in `gce.instance_id` claims).
    pub id: u64,
    pub service_account: String,
    /// `metadata.items` (the `tee-*` keys).
    pub metadata: BTreeMap<String, String>,
    pub confidential_type: ConfidentialType,
    pub status: InstanceStatus,
    pub create_time: OffsetDateTime,
}

impl InstanceRecord {
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/zones/{}/instances/{}",
            self.project_id.as_str(),
            self.zone,
            self.name
        )
    }
}

/// An instance id as the database keeps it. Ids are 64-bit unsigned (Google's are); a signed
/// BIGINT holds every one by its bits, so the cast both ways is exact, not a truncation.
fn id_column(id: u64) -> i64 {
    id as i64
}

const COLUMNS: &str =
    "project_id, zone, name, id, service_account, metadata, confidential_type, status, create_time";

fn instance_row(r: &Row) -> Result<InstanceRecord, StoreError> {
    let (kind, status) = (r.text(6)?, r.text(7)?);
    Ok(InstanceRecord {
        project_id: r.project_id(0)?,
        zone: r.text(1)?,
        name: r.text(2)?,
        id: r.int(3)? as u64, // see id_column
        service_account: r.text(4)?,
        metadata: r.json(5, "instance metadata")?,
        confidential_type: ConfidentialType::parse(&kind)
            .ok_or_else(|| StoreError::corrupt("confidential type", &kind))?,
        status: InstanceStatus::parse(&status)
            .ok_or_else(|| StoreError::corrupt("instance status", &status))?,
        create_time: r.time(8)?,
    })
}

impl Store {
    pub async fn create_instance(&self, i: &InstanceRecord) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&i.metadata)
            .map_err(|e| StoreError::Unusable(format!("instance metadata: {e}")))?;
        let q = query(format!(
            "INSERT INTO instances (resource_name, {COLUMNS})
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(i.resource_name())
        .bind(i.project_id.as_str())
        .bind(&i.zone)
        .bind(&i.name)
        .bind(id_column(i.id))
        .bind(&i.service_account)
        .bind(metadata)
        .bind(i.confidential_type.as_str())
        .bind(i.status.as_str())
        .bind(rfc3339(i.create_time));
        self.db
            .execute(q)
            .await
            .map_err(|e| constraint(e, || format!("instance {}", i.resource_name())))?;
        Ok(())
    }

    pub async fn get_instance(
        &self,
        resource_name: &str,
    ) -> Result<Option<InstanceRecord>, StoreError> {
        let q = query(format!(
            "SELECT {COLUMNS} FROM instances WHERE resource_name = $1"
        ));
        self.db.one(q.bind(resource_name), instance_row).await
    }

    /// A project's instances in `zone` (`-`: every zone), by name.
    pub async fn list_instances(
        &self,
        project: &ProjectId,
        zone: &str,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        let q = query(format!(
            "SELECT {COLUMNS} FROM instances WHERE project_id = $1 AND ($2 = '-' OR zone = $2)
             ORDER BY name"
        ));
        self.db
            .all(q.bind(project.as_str()).bind(zone), instance_row)
            .await
    }

    /// Returns false when the instance is gone.
    pub async fn set_instance_status(
        &self,
        resource_name: &str,
        status: InstanceStatus,
    ) -> Result<bool, StoreError> {
        let q = query("UPDATE instances SET status = $2 WHERE resource_name = $1")
            .bind(resource_name)
            .bind(status.as_str());
        Ok(self.db.execute(q).await? == 1)
    }

    pub async fn delete_instance(&self, resource_name: &str) -> Result<bool, StoreError> {
        let q = query("DELETE FROM instances WHERE resource_name = $1").bind(resource_name);
        Ok(self.db.execute(q).await? == 1)
    }

    /// Renews `replica`'s lease on the instances it runs (their ids) until `expires_at`.
    /// Returns false when the replica held no lease: its first renewal, or another replica
    /// took over the lease after it lapsed and marked those instances TERMINATED.
    pub async fn renew_replica_lease(
        &self,
        replica: &str,
        expires_at: OffsetDateTime,
        instance_ids: &[u64],
    ) -> Result<bool, StoreError> {
        let ids = serde_json::to_string(instance_ids)
            .map_err(|e| StoreError::Unusable(format!("instance ids: {e}")))?;
        let expires_at = expires_at.unix_timestamp();
        self.db
            .transaction(|tx| {
                let ids = ids.clone();
                async move {
                    let renew = query(
                        "UPDATE replica_leases SET expires_at = $2, instance_ids = $3
                         WHERE replica = $1",
                    );
                    let renew = renew.bind(replica).bind(expires_at).bind(ids.clone());
                    if tx.execute(renew).await? == 1 {
                        return Ok(true);
                    }
                    let insert = query(
                        "INSERT INTO replica_leases (replica, expires_at, instance_ids)
                         VALUES ($1, $2, $3)",
                    );
                    tx.execute(insert.bind(replica).bind(expires_at).bind(ids))
                        .await?;
                    Ok(false)
                }
            })
            .await
    }

    /// Takes over the leases that lapsed before `now`: their replicas stopped renewing, so the
    /// instances they ran died with them. Marks those instances TERMINATED, removes the
    /// leases, and returns the resource names it marked, sorted. Atomic: when replicas take
    /// over at once, each instance is reported by one of them.
    pub async fn expire_replica_leases(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, StoreError> {
        let now = now.unix_timestamp();
        self.db
            .transaction(|tx| async move {
                let lapsed = query(
                    "DELETE FROM replica_leases WHERE expires_at < $1 RETURNING instance_ids",
                );
                let mut marked = Vec::new();
                for lease in tx.fetch_all(lapsed.bind(now)).await? {
                    let ids: Vec<u64> = lease.json(0, "lease instance ids")?;
                    for id in ids {
                        let terminate = query(
                            "UPDATE instances SET status = $2
                             WHERE id = $1 AND status <> $2 RETURNING resource_name",
                        )
                        .bind(id_column(id))
                        .bind(InstanceStatus::Terminated.as_str());
                        for name in tx.fetch_all(terminate).await? {
                            marked.push(name.text(0)?);
                        }
                    }
                }
                marked.sort();
                Ok(marked)
            })
            .await
    }

    /// Every replica's lease, as (replica, expires at), by replica: the replicas running now
    /// are those whose lease has not expired.
    pub async fn replica_leases(&self) -> Result<Vec<(String, OffsetDateTime)>, StoreError> {
        let q = query("SELECT replica, expires_at FROM replica_leases");
        let mut leases = self
            .db
            .fetch_all(q)
            .await?
            .iter()
            .map(|r| Ok((r.text(0)?, r.unix_time(1)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        // Sorted here, by bytes: the databases' collations of the column differ.
        leases.sort();
        Ok(leases)
    }
}
