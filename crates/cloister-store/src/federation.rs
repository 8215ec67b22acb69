//! Workload identity federation: pools and their providers, each stored as its Google JSON
//! resource with an etag.

use cloister_domain::ProjectId;

use crate::db::{Row, constraint, query};
use crate::error::StoreError;
use crate::identity::new_etag;
use crate::store::Store;

/// A workload identity pool or provider: its Google resource name, the project it belongs to,
/// and its Google JSON representation (the services own its shape).
#[derive(Debug, Clone, PartialEq)]
pub struct FederationRecord {
    /// `projects/NUMBER/locations/global/workloadIdentityPools/POOL[/providers/PROVIDER]`.
    pub name: String,
    pub project_id: ProjectId,
    pub resource: serde_json::Value,
    /// Changes on every update, so compiled forms can be cached by (name, etag).
    pub etag: String,
}

/// The parent of a pool is its project's location; of a provider, its pool.
fn parent_of(name: &str) -> String {
    match name.rfind("/providers/") {
        Some(i) => name[..i].to_owned(),
        None => name.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned(),
    }
}

const COLUMNS: &str = "name, project_id, resource, etag";

fn federation_row(r: &Row) -> Result<FederationRecord, StoreError> {
    Ok(FederationRecord {
        name: r.text(0)?,
        project_id: r.project_id(1)?,
        resource: r.json(2, "federation resource")?,
        etag: r.text(3)?,
    })
}

impl Store {
    /// Creates a pool or provider. A provider's pool must exist.
    pub async fn create_federation(&self, r: &FederationRecord) -> Result<(), StoreError> {
        let parent = parent_of(&r.name);
        let json = r.resource.to_string();
        self.db
            .transaction(|tx| {
                let (parent, json) = (parent.clone(), json.clone());
                async move {
                    let pool = query("SELECT 1 FROM federation WHERE name = $1").bind(&parent);
                    if parent.contains("/workloadIdentityPools/")
                        && tx.fetch_optional(pool).await?.is_none()
                    {
                        return Err(StoreError::NotFound(format!(
                            "workload identity pool {parent}"
                        )));
                    }
                    tx.execute(
                        query(format!(
                            "INSERT INTO federation (parent, {COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                        ))
                        .bind(parent)
                        .bind(&r.name)
                        .bind(r.project_id.as_str())
                        .bind(json)
                        .bind(&r.etag),
                    )
                    .await
                    .map_err(|e| constraint(e, || r.name.clone()))?;
                    Ok(())
                }
            })
            .await
    }

    pub async fn get_federation(&self, name: &str) -> Result<Option<FederationRecord>, StoreError> {
        let q = query(format!("SELECT {COLUMNS} FROM federation WHERE name = $1"));
        self.db.one(q.bind(name), federation_row).await
    }

    /// Pools of a project (`parent` = `projects/NUMBER/locations/global`) or providers of a
    /// pool (`parent` = the pool's name): the records directly under `parent`.
    pub async fn list_federation(&self, parent: &str) -> Result<Vec<FederationRecord>, StoreError> {
        let q = query(format!(
            "SELECT {COLUMNS} FROM federation WHERE parent = $1 ORDER BY name"
        ));
        self.db.all(q.bind(parent), federation_row).await
    }

    /// Replaces the resource if `expected_etag` still matches; returns the new etag.
    pub async fn update_federation(
        &self,
        name: &str,
        resource: &serde_json::Value,
        expected_etag: &str,
    ) -> Result<String, StoreError> {
        let etag = new_etag();
        let json = resource.to_string();
        self.db
            .transaction(|tx| {
                let (etag, json) = (etag.clone(), json.clone());
                async move {
                    let update = query(
                        "UPDATE federation SET resource = $2, etag = $3 WHERE name = $1 AND etag = $4",
                    )
                    .bind(name)
                    .bind(json)
                    .bind(&etag)
                    .bind(expected_etag);
                    if tx.execute(update).await? == 1 {
                        return Ok(etag);
                    }
                    let exists = query("SELECT 1 FROM federation WHERE name = $1").bind(name);
                    Err(match tx.fetch_optional(exists).await? {
                        Some(_) => StoreError::StaleEtag {
                            resource: name.to_owned(),
                            given: expected_etag.to_owned(),
                        },
                        None => StoreError::NotFound(name.to_owned()),
                    })
                }
            })
            .await
    }

    /// Deletes a record and everything under it; returns whether it existed.
    pub async fn delete_federation(&self, name: &str) -> Result<bool, StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(query("DELETE FROM federation WHERE parent = $1").bind(name))
                    .await?;
                let deleted = query("DELETE FROM federation WHERE name = $1").bind(name);
                Ok(tx.execute(deleted).await? == 1)
            })
            .await
    }
}
