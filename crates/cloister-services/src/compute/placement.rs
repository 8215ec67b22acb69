//! Placement: which replica runs an instance. An instance is recorded WAITING; a replica that
//! can run its confidential type (its driver and host passed `check_type`) and runs fewer than
//! its `--max-instances` claims it through the database (`Store::claim_instance`: one replica
//! per instance, once) and starts it. The replica that received the create tries first, so a
//! create it can run starts at once, as before; otherwise every replica sharing the database
//! looks for waiting instances each second, and each replica again as soon as one of its own
//! instances ends. An instance that no replica can take now waits, PROVISIONING, with Compute
//! Engine's "not enough resources" as its status message.
//!
//! The capacity is a count of instances, not vCPUs or memory: Cloister has no machine types
//! (every instance is `cloister-local`), so a count is what an operator can size a host by.

use std::time::Duration;

use cloister_store::{ConfidentialType, InstanceRecord, ReplicaOffer};

use crate::error::ApiError;
use crate::state::AppState;

/// How often a replica sharing the database looks for instances waiting for one.
const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Instances a replica runs at once by default, by driver. VMs: as many 1.5 GiB guests as the
/// host's memory holds with a quarter left to the host. Processes (runc containers, sized by
/// the workload and not by Cloister): a bound well above a laptop's use, below where one
/// host's process and namespace count becomes the problem.
pub const DEFAULT_MAX_PROCESS_INSTANCES: u32 = 64;

pub fn default_max_vm_instances() -> u32 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0);
    let guest_kib = u64::from(super::vm::MEMORY_MIB) * 1024;
    u32::try_from((total_kib / 4 * 3) / guest_kib)
        .unwrap_or(u32::MAX)
        .max(1)
}

/// This replica's side of placement.
pub struct Placer {
    replica: String,
    max_instances: u32,
    /// With a shared database: other replicas create instances this one may run.
    poll: bool,
    /// This replica's claims, one at a time, so two cannot both fit under its maximum.
    claiming: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl Placer {
    /// `replica` names this replica in the database (its lease's name, with a shared one).
    pub fn new(replica: String, max_instances: u32, poll: bool) -> Self {
        Placer {
            replica,
            max_instances,
            poll,
            claiming: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// The confidential types this replica can run.
    pub fn offers(state: &AppState) -> Vec<ConfidentialType> {
        [
            ConfidentialType::Insecure,
            ConfidentialType::Vtpm,
            ConfidentialType::SevSnp,
            ConfidentialType::Tdx,
        ]
        .into_iter()
        .filter(|t| state.compute.check_type(*t).is_ok())
        .collect()
    }

    /// Looks again for waiting instances (one of this replica's instances ended).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Claims `only` (or, without it, the oldest waiting instance this replica can run).
    async fn claim(
        &self,
        state: &AppState,
        only: Option<&str>,
    ) -> Result<Option<InstanceRecord>, ApiError> {
        let types = Self::offers(state);
        let _one_at_a_time = self.claiming.lock().await;
        // The database counts the instances placed here; this, the processes still running
        // here (an instance deleted elsewhere runs until the sync stops it).
        if u32::try_from(state.compute.live()).unwrap_or(u32::MAX) >= self.max_instances {
            return Ok(None);
        }
        let offer = ReplicaOffer {
            replica: &self.replica,
            types: &types,
            max_instances: self.max_instances,
        };
        Ok(state.store.claim_instance(offer, only).await?)
    }

    /// The create's own try: claims the new instance and starts it here when this replica can
    /// run it now. Returns false when it cannot (the instance waits for a replica that can);
    /// an error when it claimed the instance but could not start it.
    pub async fn place_here(
        &self,
        state: &AppState,
        instance: &InstanceRecord,
    ) -> Result<bool, ApiError> {
        let Some(claimed) = self.claim(state, Some(&instance.resource_name())).await? else {
            return Ok(false);
        };
        start(state, &claimed).await?;
        Ok(true)
    }

    /// Claims and starts waiting instances until none is left that this replica can run.
    async fn place_waiting(&self, state: &AppState) {
        loop {
            let claimed = match self.claim(state, None).await {
                Ok(Some(claimed)) => claimed,
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "looking for instances waiting for a replica");
                    return;
                }
            };
            let name = claimed.resource_name();
            tracing::info!(instance = %name, replica = %self.replica, "placed a waiting instance here");
            if let Err(e) = start(state, &claimed).await {
                tracing::error!(instance = %name, error = %e, "could not start a placed instance");
                let why = format!("This replica claimed the instance but could not start it: {e}");
                if let Err(e) = state.store.release_instance(&name, Some(&why)).await {
                    tracing::error!(instance = %name, error = %e.chain(), "recording a failed start");
                }
            }
        }
    }
}

/// Starts a claimed instance with this replica's driver; stops what started when it fails.
async fn start(state: &AppState, instance: &InstanceRecord) -> Result<(), ApiError> {
    // Stopped through another replica and started again here before this replica's sync
    // stopped the previous run: that run ends first.
    let name = instance.resource_name();
    if state
        .compute
        .running()
        .iter()
        .any(|i| i.resource_name() == name)
    {
        state.compute.stop(instance).await;
    }
    let number = state
        .store
        .get_project(&instance.project_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("Project {} was not found", instance.project_id))
        })?
        .number
        .0;
    let started = state.compute.start(state, instance, number).await;
    if started.is_err() {
        state.compute.stop(instance).await;
    }
    started
}

/// Compute Engine's words for a zone that cannot run an instance now, and what Cloister does.
pub fn waiting_message(instance: &InstanceRecord) -> String {
    format!(
        "The zone 'projects/{}/zones/{}' does not have enough resources available to fulfill the request. The instance stays PROVISIONING until a replica that runs {} instances has room for it (each runs at most its --max-instances).",
        instance.project_id.as_str(),
        instance.zone,
        instance.confidential_type.as_str(),
    )
}

/// Starts this replica's placement loop: waiting instances are looked for at once, when one of
/// this replica's instances ends, and (with a shared database) every second.
pub fn spawn(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let placer = &state.placer;
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        loop {
            placer.place_waiting(&state).await;
            if placer.poll {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = placer.wake.notified() => {}
                }
            } else {
                placer.wake.notified().await;
            }
        }
    });
}
