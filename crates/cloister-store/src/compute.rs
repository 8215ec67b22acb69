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
}
