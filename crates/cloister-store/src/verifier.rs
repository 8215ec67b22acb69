//! The attestation verifier's state: single-use challenges, and the reference values of trusted
//! launcher builds.

use cloister_domain::ProjectId;
use time::OffsetDateTime;

use crate::db::{Row, query, rfc3339};
use crate::error::StoreError;
use crate::store::Store;

/// A verifier challenge: a random nonce, single use, short-lived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChallengeRecord {
    /// `projects/PROJECT/locations/LOCATION/challenges/ID`.
    pub name: String,
    pub project_id: ProjectId,
    pub nonce: Vec<u8>,
    /// Kept to the second.
    pub create_time: OffsetDateTime,
    /// Kept to the second.
    pub expire_time: OffsetDateTime,
}

/// Why a challenge could not be consumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsumeError {
    NotFound,
    AlreadyUsed,
    Expired { expire_time: OffsetDateTime },
}

/// A trusted launcher build: its measurement and what tokens say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferenceValueRecord {
    /// Hex digest of the launcher measurement.
    pub measurement: String,
    pub swversion: String,
    /// `disabled-since-boot` or `enabled`.
    pub dbgstat: String,
    /// Some of `LATEST`, `STABLE`, `USABLE`, `EXPERIMENTAL`.
    pub support_attributes: Vec<String>,
    pub description: String,
    pub create_time: OffsetDateTime,
}

const REFERENCE_VALUE_COLUMNS: &str =
    "measurement, swversion, dbgstat, support_attributes, description, create_time";

fn reference_value_row(r: &Row) -> Result<ReferenceValueRecord, StoreError> {
    Ok(ReferenceValueRecord {
        measurement: r.text(0)?,
        swversion: r.text(1)?,
        dbgstat: r.text(2)?,
        support_attributes: r.json(3, "support attributes")?,
        description: r.text(4)?,
        create_time: r.time(5)?,
    })
}

impl Store {
    pub async fn create_challenge(&self, c: &ChallengeRecord) -> Result<(), StoreError> {
        self.db
            .execute(
                query(
                    "INSERT INTO challenges (name, project_id, nonce, create_time, expire_time, used)
                     VALUES ($1, $2, $3, $4, $5, FALSE)",
                )
                .bind(&c.name)
                .bind(c.project_id.as_str())
                .bind(&c.nonce)
                .bind(c.create_time.unix_timestamp())
                .bind(c.expire_time.unix_timestamp()),
            )
            .await?;
        Ok(())
    }

    /// Marks the challenge used if it exists, is unused and has not expired at `now`; the
    /// database decides, so it holds across replicas.
    pub async fn consume_challenge(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Result<ChallengeRecord, ConsumeError>, StoreError> {
        self.db
            .transaction(|tx| async move {
                let q = query(
                    "SELECT name, project_id, nonce, create_time, expire_time, used
                     FROM challenges WHERE name = $1",
                );
                let Some(r) = tx.fetch_optional(q.bind(name)).await? else {
                    return Ok(Err(ConsumeError::NotFound));
                };
                let expire_time = r.unix_time(4)?;
                if r.get::<bool>(5)? {
                    return Ok(Err(ConsumeError::AlreadyUsed));
                }
                if expire_time <= now {
                    return Ok(Err(ConsumeError::Expired { expire_time }));
                }
                // The conditional update is what makes the challenge single use across replicas
                // (serializable isolation would catch the race too, by retrying the loser).
                let used = query("UPDATE challenges SET used = TRUE WHERE name = $1 AND NOT used");
                if tx.execute(used.bind(name)).await? != 1 {
                    return Ok(Err(ConsumeError::AlreadyUsed));
                }
                Ok(Ok(ChallengeRecord {
                    name: r.text(0)?,
                    project_id: r.project_id(1)?,
                    nonce: r.get(2)?,
                    create_time: r.unix_time(3)?,
                    expire_time,
                }))
            })
            .await
    }

    /// Adds or replaces the reference value for a measurement.
    pub async fn put_reference_value(&self, v: &ReferenceValueRecord) -> Result<(), StoreError> {
        let attrs = serde_json::to_string(&v.support_attributes)
            .map_err(|e| StoreError::Unusable(format!("support attributes: {e}")))?;
        self.db
            .execute(
                query(format!(
                    "INSERT INTO reference_values ({REFERENCE_VALUE_COLUMNS})
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (measurement) DO UPDATE SET swversion = EXCLUDED.swversion,
                        dbgstat = EXCLUDED.dbgstat, support_attributes = EXCLUDED.support_attributes,
                        description = EXCLUDED.description, create_time = EXCLUDED.create_time"
                ))
                .bind(&v.measurement)
                .bind(&v.swversion)
                .bind(&v.dbgstat)
                .bind(attrs)
                .bind(&v.description)
                .bind(rfc3339(v.create_time)),
            )
            .await?;
        Ok(())
    }

    pub async fn get_reference_value(
        &self,
        measurement: &str,
    ) -> Result<Option<ReferenceValueRecord>, StoreError> {
        let q = query(format!(
            "SELECT {REFERENCE_VALUE_COLUMNS} FROM reference_values WHERE measurement = $1"
        ));
        self.db.one(q.bind(measurement), reference_value_row).await
    }

    pub async fn list_reference_values(&self) -> Result<Vec<ReferenceValueRecord>, StoreError> {
        let q = query(format!(
            "SELECT {REFERENCE_VALUE_COLUMNS} FROM reference_values ORDER BY measurement"
        ));
        self.db.all(q, reference_value_row).await
    }

    pub async fn delete_reference_value(&self, measurement: &str) -> Result<bool, StoreError> {
        let q = query("DELETE FROM reference_values WHERE measurement = $1").bind(measurement);
        Ok(self.db.execute(q).await? == 1)
    }
}
