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

/// Where an instance runs, among the replicas sharing the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Recorded to run; no replica has claimed it yet.
    Waiting,
    /// A replica claimed it and runs it (or ran it, until it ended by itself).
    Placed,
    /// No replica runs it any more: its replica died, or it never started.
    Released,
}

google_enum!(Placement {
    Waiting = "WAITING",
    Placed = "PLACED",
    Released = "RELEASED",
});

/// An instance's placement: its state, the replica it is placed on, and why it waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePlacement {
    pub placement: Placement,
    pub replica: Option<String>,
    /// Compute Engine's `statusMessage`: why a waiting instance is not running yet.
    pub status_message: Option<String>,
}

/// What a replica offers when it claims an instance to run.
#[derive(Debug, Clone, Copy)]
pub struct ReplicaOffer<'a> {
    pub replica: &'a str,
    /// The confidential types its driver and host can run.
    pub types: &'a [ConfidentialType],
    /// How many instances it runs at once, at most.
    pub max_instances: u32,
}

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

/// Every confidential type, as `IN (…)` lists them: an offer's types, the rest empty (no
/// instance has an empty type), so the claim is one statement for any offer.
const TYPES: [ConfidentialType; 4] = [
    ConfidentialType::Insecure,
    ConfidentialType::Vtpm,
    ConfidentialType::SevSnp,
    ConfidentialType::Tdx,
];

impl Store {
    /// Records an instance to run: WAITING until a replica claims it ([`Store::claim_instance`]).
    /// Creates an instance, waiting to be placed. With a `quota`, the project's instances are
    /// counted in the same transaction, so creates racing on several replicas cannot pass it
    /// together (PostgreSQL's serializable transaction retries the one that lost).
    pub async fn create_instance(
        &self,
        i: &InstanceRecord,
        quota: Option<u32>,
    ) -> Result<(), StoreError> {
        let metadata = serde_json::to_string(&i.metadata)
            .map_err(|e| StoreError::Unusable(format!("instance metadata: {e}")))?;
        self.db
            .transaction(|tx| {
                let metadata = metadata.clone();
                async move {
                    if let Some(limit) = quota {
                        const COUNT: &str =
                            "SELECT CAST(COUNT(*) AS BIGINT) FROM instances WHERE project_id = $1";
                        let held = tx
                            .fetch_one(query(COUNT).bind(i.project_id.as_str()))
                            .await?
                            .u64(0)?;
                        if held >= u64::from(limit) {
                            return Err(StoreError::QuotaExceeded {
                                kind: "instances",
                                scope: format!("project {}", i.project_id),
                                limit: u64::from(limit),
                            });
                        }
                    }
                    let q = query(format!(
                        "INSERT INTO instances (resource_name, {COLUMNS}, placement)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
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
                    .bind(rfc3339(i.create_time))
                    .bind(Placement::Waiting.as_str());
                    tx.execute(q)
                        .await
                        .map_err(|e| constraint(e, || format!("instance {}", i.resource_name())))?;
                    Ok(())
                }
            })
            .await
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

    /// Claims a waiting instance for `offer`'s replica: the oldest one of a type it offers
    /// (only `only`, when given), while it runs fewer than its maximum. Atomic across
    /// replicas: each instance is claimed by one replica, once. The replica's own claims must
    /// not race each other (it serializes them), or two could both fit under its maximum.
    pub async fn claim_instance(
        &self,
        offer: ReplicaOffer<'_>,
        only: Option<&str>,
    ) -> Result<Option<InstanceRecord>, StoreError> {
        let types: Vec<&str> = TYPES
            .iter()
            .map(|t| {
                if offer.types.contains(t) {
                    t.as_str()
                } else {
                    ""
                }
            })
            .collect();
        let only = only.unwrap_or("");
        self.db
            .transaction(|tx| {
                let types = types.clone();
                async move {
                    let running = query(
                        "SELECT COUNT(*) FROM instances
                         WHERE replica = $1 AND placement = $2 AND status IN ($3, $4)",
                    )
                    .bind(offer.replica)
                    .bind(Placement::Placed.as_str())
                    .bind(InstanceStatus::Provisioning.as_str())
                    .bind(InstanceStatus::Running.as_str());
                    if tx.fetch_one(running).await?.int(0)? >= i64::from(offer.max_instances) {
                        return Ok(None);
                    }
                    let mut pick = query(format!(
                        "SELECT resource_name FROM instances
                         WHERE placement = $1 AND status = $2 AND confidential_type IN ($3, $4, $5, $6)
                           AND ($7 = '' OR resource_name = $7)
                         ORDER BY create_time, resource_name LIMIT 1{}",
                        tx.skip_locked().await?
                    ))
                    .bind(Placement::Waiting.as_str())
                    .bind(InstanceStatus::Provisioning.as_str());
                    for t in types {
                        pick = pick.bind(t);
                    }
                    let Some(picked) = tx.fetch_optional(pick.bind(only)).await? else {
                        return Ok(None);
                    };
                    // Conditional again: on PostgreSQL the row is locked, and this is what keeps a
                    // claim single should the lock ever be missing.
                    let claim = query(format!(
                        "UPDATE instances SET placement = $3, replica = $4, status_message = NULL
                         WHERE resource_name = $1 AND placement = $2 RETURNING {COLUMNS}"
                    ))
                    .bind(picked.text(0)?)
                    .bind(Placement::Waiting.as_str())
                    .bind(Placement::Placed.as_str())
                    .bind(offer.replica);
                    tx.fetch_optional(claim)
                        .await?
                        .as_ref()
                        .map(instance_row)
                        .transpose()
                }
            })
            .await
    }

    /// Says why a waiting instance waits; none once it is placed (a claim clears it).
    pub async fn set_waiting_message(
        &self,
        resource_name: &str,
        message: &str,
    ) -> Result<bool, StoreError> {
        let q = query(
            "UPDATE instances SET status_message = $3 WHERE resource_name = $1 AND placement = $2",
        )
        .bind(resource_name)
        .bind(Placement::Waiting.as_str())
        .bind(message);
        Ok(self.db.execute(q).await? == 1)
    }

    /// Ends an instance that no replica runs any more: TERMINATED and RELEASED, with why.
    pub async fn release_instance(
        &self,
        resource_name: &str,
        message: Option<&str>,
    ) -> Result<bool, StoreError> {
        let q = query(
            "UPDATE instances SET status = $2, placement = $3, replica = NULL, status_message = $4
             WHERE resource_name = $1",
        )
        .bind(resource_name)
        .bind(InstanceStatus::Terminated.as_str())
        .bind(Placement::Released.as_str())
        .bind(message.map(str::to_owned));
        Ok(self.db.execute(q).await? == 1)
    }

    /// Records a TERMINATED instance to run again: WAITING, placed anew like a new one.
    /// Returns false when it is gone or not TERMINATED (already running or waiting).
    pub async fn restart_instance(&self, resource_name: &str) -> Result<bool, StoreError> {
        let q = query(
            "UPDATE instances SET status = $3, placement = $4, replica = NULL,
               status_message = NULL
             WHERE resource_name = $1 AND status = $2",
        )
        .bind(resource_name)
        .bind(InstanceStatus::Terminated.as_str())
        .bind(InstanceStatus::Provisioning.as_str())
        .bind(Placement::Waiting.as_str());
        Ok(self.db.execute(q).await? == 1)
    }

    /// Sets the status of an instance placed on `replica`, only while it is: a replica whose
    /// instance was stopped and placed again elsewhere does not overwrite the new run's.
    pub async fn set_placed_instance_status(
        &self,
        resource_name: &str,
        replica: &str,
        status: InstanceStatus,
    ) -> Result<bool, StoreError> {
        let q = query("UPDATE instances SET status = $3 WHERE resource_name = $1 AND replica = $2")
            .bind(resource_name)
            .bind(replica)
            .bind(status.as_str());
        Ok(self.db.execute(q).await? == 1)
    }

    pub async fn instance_placement(
        &self,
        resource_name: &str,
    ) -> Result<Option<InstancePlacement>, StoreError> {
        let q = query(
            "SELECT placement, replica, status_message FROM instances WHERE resource_name = $1",
        );
        self.db
            .one(q.bind(resource_name), |r| {
                let placement = r.text(0)?;
                Ok(InstancePlacement {
                    placement: Placement::parse(&placement)
                        .ok_or_else(|| StoreError::corrupt("instance placement", &placement))?,
                    replica: r.get(1)?,
                    status_message: r.get(2)?,
                })
            })
            .await
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
        offers: &[ConfidentialType],
    ) -> Result<bool, StoreError> {
        let ids = serde_json::to_string(instance_ids)
            .map_err(|e| StoreError::Unusable(format!("instance ids: {e}")))?;
        let offers: Vec<&str> = offers.iter().map(|t| t.as_str()).collect();
        let offers = serde_json::to_string(&offers)
            .map_err(|e| StoreError::Unusable(format!("offered types: {e}")))?;
        let expires_at = expires_at.unix_timestamp();
        self.db
            .transaction(|tx| {
                let (ids, offers) = (ids.clone(), offers.clone());
                async move {
                    let renew = query(
                        "UPDATE replica_leases SET expires_at = $2, instance_ids = $3, offers = $4
                         WHERE replica = $1",
                    );
                    let renew = renew
                        .bind(replica)
                        .bind(expires_at)
                        .bind(ids.clone())
                        .bind(offers.clone());
                    if tx.execute(renew).await? == 1 {
                        return Ok(true);
                    }
                    let insert = query(
                        "INSERT INTO replica_leases (replica, expires_at, instance_ids, offers)
                         VALUES ($1, $2, $3, $4)",
                    );
                    let insert = insert.bind(replica).bind(expires_at).bind(ids).bind(offers);
                    tx.execute(insert).await?;
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
                    "DELETE FROM replica_leases WHERE expires_at < $1
                     RETURNING replica, instance_ids",
                );
                let mut marked = Vec::new();
                for lease in tx.fetch_all(lapsed.bind(now)).await? {
                    let replica = lease.text(0)?;
                    let ids: Vec<u64> = lease.json(1, "lease instance ids")?;
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
                    // And those placed on it that its lease did not name yet (it died between
                    // a claim and the renewal): nothing stays placed on a replica that is gone.
                    let terminate = query(
                        "UPDATE instances SET status = $2, placement = $3, replica = NULL
                         WHERE replica = $1 AND status <> $2 RETURNING resource_name",
                    )
                    .bind(&replica)
                    .bind(InstanceStatus::Terminated.as_str())
                    .bind(Placement::Released.as_str());
                    for name in tx.fetch_all(terminate).await? {
                        marked.push(name.text(0)?);
                    }
                    let release = query(
                        "UPDATE instances SET placement = $2, replica = NULL WHERE replica = $1",
                    )
                    .bind(&replica)
                    .bind(Placement::Released.as_str());
                    tx.execute(release).await?;
                }
                marked.sort();
                marked.dedup();
                Ok(marked)
            })
            .await
    }

    /// Whether a replica whose lease is good at `now` offers to run instances of `kind`.
    pub async fn replica_offers(
        &self,
        kind: ConfidentialType,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let q = query("SELECT offers FROM replica_leases WHERE expires_at >= $1")
            .bind(now.unix_timestamp());
        for lease in self.db.fetch_all(q).await? {
            let offers: Vec<String> = lease.json(0, "offered types")?;
            if offers.iter().any(|t| t == kind.as_str()) {
                return Ok(true);
            }
        }
        Ok(false)
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
