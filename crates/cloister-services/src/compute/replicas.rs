//! Instances across replicas sharing a database. Each replica runs its own instances (the
//! local driver), so any replica may be asked about an instance another one runs. Every two
//! seconds a replica:
//! - copies its instances' grown consoles to the shared blob store (`console.rs`);
//! - renews its lease on them. A replica that stops renewing (its machine crashed, or it lost
//!   the database for longer than the lease) took its instances' processes with it, so another
//!   replica takes the lease over and marks them TERMINATED, as Compute Engine does with the
//!   instances of a host that failed;
//! - stops the instances whose record another replica deleted, or that the record no longer
//!   places on this replica (its lease was taken over, which released them): the record is the
//!   truth, so a replica cut off too long fences itself rather than run instances the others
//!   call ended.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use time::OffsetDateTime;

use super::console;
use crate::error::ApiError;
use crate::state::AppState;

const SYNC_INTERVAL: Duration = Duration::from_secs(2);

/// This replica's lease on the instances it runs.
pub struct ReplicaLease {
    /// Random per process: a restarted replica's old lease lapses like a crashed one's (its
    /// startup has already marked those instances TERMINATED).
    replica: String,
    duration: Duration,
    renewed: AtomicBool,
}

impl ReplicaLease {
    /// A lease that outlives its last renewal by `duration` (longer than the two seconds
    /// between renewals, with room for a slow tick).
    pub fn new(duration: Duration) -> Self {
        ReplicaLease {
            replica: hex::encode(rand::random::<[u8; 8]>()),
            duration,
            renewed: AtomicBool::new(false),
        }
    }

    pub fn replica(&self) -> &str {
        &self.replica
    }

    /// Renews the lease on every instance the driver runs now: called on each sync and when
    /// an instance starts, so a crash right after a start still ends it.
    pub async fn renew(&self, state: &AppState) -> Result<(), ApiError> {
        let ids: Vec<u64> = state.compute.running().iter().map(|i| i.id).collect();
        // Saturating: an absurdly long lease configured is one that never lapses, not a panic.
        let duration = time::Duration::try_from(self.duration).unwrap_or(time::Duration::MAX);
        let expires_at = OffsetDateTime::now_utc().saturating_add(duration);
        let offers = super::placement::Placer::offers(state);
        let held = state
            .store
            .renew_replica_lease(&self.replica, expires_at, &ids, &offers)
            .await?;
        if !held && self.renewed.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                "this replica's lease lapsed and was taken over: its instances were released"
            );
        }
        Ok(())
    }

    /// Gives the lease up once this replica's instances are all stopped: expired and empty.
    pub async fn release(&self, state: &AppState) -> Result<(), ApiError> {
        state
            .store
            .renew_replica_lease(&self.replica, OffsetDateTime::UNIX_EPOCH, &[], &[])
            .await?;
        Ok(())
    }
}

/// Starts the sync loop of a replica that shares its database.
pub fn spawn_sync(state: &AppState) {
    let state = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SYNC_INTERVAL);
        let mut published = HashMap::new();
        loop {
            tick.tick().await;
            sync(&state, &mut published).await;
        }
    });
}

async fn sync(state: &AppState, published: &mut HashMap<u64, u64>) {
    console::publish(state, published).await;
    if let Some(lease) = state.compute.lease()
        && let Err(e) = lease.renew(state).await
    {
        tracing::warn!(error = %e, "renewing this replica's lease on its instances");
    }
    for instance in state.compute.running() {
        let name = instance.resource_name();
        let placed = match state.store.instance_placement(&name).await {
            Ok(placed) => placed,
            Err(_) => continue,
        };
        match placed {
            None => {
                tracing::info!(
                    instance = %name,
                    "the instance was deleted through another replica: stopping it"
                );
                state.compute.stop(&instance).await;
                console::remove(state, &instance).await;
                published.remove(&instance.id);
            }
            Some(p) if p.replica.as_deref() != Some(state.placer.replica()) => {
                tracing::warn!(
                    instance = %name,
                    "the record no longer places the instance on this replica (its lease lapsed and another replica released it): stopping it"
                );
                // Its last console copy stays, for the record that remains.
                state.compute.stop(&instance).await;
                published.remove(&instance.id);
            }
            Some(_) => {}
        }
    }
    match state
        .store
        .expire_replica_leases(OffsetDateTime::now_utc())
        .await
    {
        Ok(ended) => {
            for instance in ended {
                tracing::warn!(
                    %instance,
                    "the replica running the instance stopped renewing its lease: marked TERMINATED"
                );
            }
        }
        Err(e) => tracing::warn!(error = %e.chain(), "taking over lapsed replica leases"),
    }
}
