//! Compute Engine instances (what the local driver runs).

use std::collections::BTreeMap;

use cloister_domain::ProjectId;

use crate::metadata::StoreError;

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
    /// `VTPM`, `INSECURE`, `SEV_SNP` or `TDX`.
    pub confidential_type: String,
    /// PROVISIONING, RUNNING, TERMINATED, SUSPENDED (held for debugging).
    pub status: String,
    pub create_time: String,
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

pub trait ComputeStore: Send + Sync {
    fn create_instance(&self, instance: &InstanceRecord) -> Result<(), StoreError>;
    fn get_instance(&self, resource_name: &str) -> Result<Option<InstanceRecord>, StoreError>;
    fn list_instances(
        &self,
        project: &ProjectId,
        zone: &str,
    ) -> Result<Vec<InstanceRecord>, StoreError>;
    /// Returns false when the instance is gone.
    fn set_instance_status(&self, resource_name: &str, status: &str) -> Result<bool, StoreError>;
    fn delete_instance(&self, resource_name: &str) -> Result<bool, StoreError>;

    /// Renews `replica`'s lease on the instances it runs (their ids) until `expires_at` (Unix
    /// seconds). Returns false when the replica held no lease: its first renewal, or another
    /// replica took over the lease after it lapsed and marked those instances TERMINATED.
    fn renew_replica_lease(
        &self,
        replica: &str,
        expires_at: i64,
        instance_ids: &[u64],
    ) -> Result<bool, StoreError>;
    /// Takes over the leases that lapsed before `now` (Unix seconds): their replicas stopped
    /// renewing, so the instances they ran died with them. Marks those instances TERMINATED,
    /// removes the leases, and returns the resource names it marked, sorted. Atomic: when
    /// replicas take over at once, each instance is reported by one of them.
    fn expire_replica_leases(&self, now: i64) -> Result<Vec<String>, StoreError>;
    /// Every replica's lease, as (replica, expires at in Unix seconds), by replica: the
    /// replicas running now are those whose lease has not expired.
    fn replica_leases(&self) -> Result<Vec<(String, i64)>, StoreError>;
}
