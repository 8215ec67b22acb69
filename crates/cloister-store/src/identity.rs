//! Identity and IAM: users and their credentials, projects, service accounts, and the IAM
//! policy of every resource (with its parent, whose bindings it inherits).

use std::collections::BTreeMap;

use cloister_domain::{Email, Policy, ProjectId, ProjectNumber};
use time::OffsetDateTime;

use crate::db::{Row, Tx, constraint, int, query, rfc3339};
use crate::error::StoreError;
use crate::store::Store;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub email: Email,
    pub display_name: String,
    /// Platform admins manage users and platform settings; they get no implicit project access.
    pub admin: bool,
    pub create_time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    pub id: String,
    pub user: Email,
    /// SHA-256 of the secret; the secret itself is never stored.
    pub secret_sha256: [u8; 32],
    pub create_time: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectRecord {
    pub id: ProjectId,
    pub number: ProjectNumber,
    pub display_name: String,
    pub create_time: OffsetDateTime,
    pub creator: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountRecord {
    pub email: Email,
    pub project_id: ProjectId,
    /// Google's 21-digit numeric id, stable for the account's life.
    pub unique_id: String,
    pub display_name: String,
    pub description: String,
    pub disabled: bool,
    pub create_time: OffsetDateTime,
}

impl ServiceAccountRecord {
    /// The IAM resource name: `projects/PROJECT/serviceAccounts/EMAIL`.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/serviceAccounts/{}",
            self.project_id, self.email
        )
    }
}

const USER_COLUMNS: &str = "email, display_name, admin, create_time";
const PROJECT_COLUMNS: &str = "id, number, display_name, create_time, creator";
const SERVICE_ACCOUNT_COLUMNS: &str =
    "email, project_id, unique_id, display_name, description, disabled, create_time";

fn user_row(r: &Row) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        email: r.email(0)?,
        display_name: r.text(1)?,
        admin: r.get(2)?,
        create_time: r.time(3)?,
    })
}

fn project_row(r: &Row) -> Result<ProjectRecord, StoreError> {
    Ok(ProjectRecord {
        id: r.project_id(0)?,
        number: ProjectNumber(r.u64(1)?),
        display_name: r.text(2)?,
        create_time: r.time(3)?,
        creator: r.text(4)?,
    })
}

fn service_account_row(r: &Row) -> Result<ServiceAccountRecord, StoreError> {
    Ok(ServiceAccountRecord {
        email: r.email(0)?,
        project_id: r.project_id(1)?,
        unique_id: r.text(2)?,
        display_name: r.text(3)?,
        description: r.text(4)?,
        disabled: r.get(5)?,
        create_time: r.time(6)?,
    })
}

/// How `create_project` says an id belonged to a deleted project (`AlreadyExists`'s text).
pub const DELETED_PROJECT: &str = "the id of deleted project";

/// Every resource a project holds that must be deleted before it, as (kind, name). Not
/// ordered here: the name columns' collations differ on PostgreSQL, so Rust sorts them.
const REMAINING_RESOURCES: &str = "
    SELECT 'buckets', name FROM buckets WHERE project_id = $1
    UNION ALL SELECT 'instances', resource_name FROM instances WHERE project_id = $1
    UNION ALL SELECT 'key rings', name FROM kms_key_rings WHERE project_id = $1
    UNION ALL SELECT 'repositories', name FROM registry_repositories WHERE project_id = $1
    UNION ALL SELECT 'service accounts', email FROM service_accounts WHERE project_id = $1
    UNION ALL SELECT 'workload identity pools', name FROM federation
        WHERE project_id = $1 AND name NOT LIKE '%/providers/%'";

/// `buckets b1, b2; service accounts sa@…`: at most five names a kind, then how many more.
fn remaining_text(by_kind: BTreeMap<String, Vec<String>>) -> String {
    by_kind
        .into_iter()
        .map(|(kind, mut names)| {
            names.sort();
            let more = names.len().saturating_sub(5);
            names.truncate(5);
            let mut text = format!("{kind} {}", names.join(", "));
            if more > 0 {
                text.push_str(&format!(" and {more} more"));
            }
            text
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The IAM policy a new resource starts with (bindings come from its parent).
const EMPTY_POLICY: &str = r#"{"version":1,"bindings":[]}"#;

/// A fresh etag: 16 hex digits, changing on every write.
pub(crate) fn new_etag() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// The JSON a policy is stored as (its etag lives in its own column).
fn policy_json(policy: &Policy) -> Result<String, StoreError> {
    serde_json::to_string(&Policy {
        etag: String::new(),
        ..policy.clone()
    })
    .map_err(|e| StoreError::Unusable(format!("the policy does not serialize: {e}")))
}

/// Gives a new resource its empty policy under `parent`, replacing a leftover of a deleted
/// namesake.
pub(crate) async fn insert_empty_policy(
    tx: &Tx,
    resource: &str,
    parent: &str,
) -> Result<(), StoreError> {
    tx.execute(
        query(
            "INSERT INTO iam_policies (resource, parent, policy, etag) VALUES ($1, $2, $3, $4)
             ON CONFLICT (resource) DO UPDATE SET parent = EXCLUDED.parent,
                policy = EXCLUDED.policy, etag = EXCLUDED.etag",
        )
        .bind(resource)
        .bind(parent)
        .bind(EMPTY_POLICY)
        .bind(new_etag()),
    )
    .await?;
    Ok(())
}

/// Deletes a resource's policy, with the resource.
pub(crate) async fn delete_policy(tx: &Tx, resource: &str) -> Result<(), StoreError> {
    tx.execute(query("DELETE FROM iam_policies WHERE resource = $1").bind(resource))
        .await?;
    Ok(())
}

impl Store {
    pub async fn create_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        self.db
            .execute(
                query(format!(
                    "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4)"
                ))
                .bind(u.email.as_str())
                .bind(&u.display_name)
                .bind(u.admin)
                .bind(rfc3339(u.create_time)),
            )
            .await
            .map_err(|e| constraint(e, || format!("user {}", u.email)))?;
        Ok(())
    }

    pub async fn get_user(&self, email: &Email) -> Result<Option<UserRecord>, StoreError> {
        let q = query(format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1"));
        self.db.one(q.bind(email.as_str()), user_row).await
    }

    pub async fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let q = query(format!("SELECT {USER_COLUMNS} FROM users ORDER BY email"));
        self.db.all(q, user_row).await
    }

    pub async fn create_credential(&self, c: &CredentialRecord) -> Result<(), StoreError> {
        self.db
            .execute(
                query(
                    "INSERT INTO credentials (id, user_email, secret_sha256, create_time)
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&c.id)
                .bind(c.user.as_str())
                .bind(c.secret_sha256.as_slice())
                .bind(rfc3339(c.create_time)),
            )
            .await
            .map_err(|e| constraint(e, || format!("credential {}", c.id)))?;
        Ok(())
    }

    pub async fn get_credential(&self, id: &str) -> Result<Option<CredentialRecord>, StoreError> {
        let q = query(
            "SELECT id, user_email, secret_sha256, create_time FROM credentials WHERE id = $1",
        );
        let Some(r) = self.db.fetch_optional(q.bind(id)).await? else {
            return Ok(None);
        };
        Ok(Some(CredentialRecord {
            id: r.text(0)?,
            user: r.email(1)?,
            secret_sha256: r.array(2, "secret hash")?,
            create_time: r.time(3)?,
        }))
    }

    /// Creates the project and its initial IAM policy atomically. A project number collision
    /// is reported as `AlreadyExists("project number …")` so the caller can draw another.
    /// With `creator_quota`, refused (`QuotaExceeded`) when its creator already has that many
    /// projects: counted in the same transaction, so creates at once cannot pass it together.
    pub async fn create_project(
        &self,
        p: &ProjectRecord,
        policy: &Policy,
        creator_quota: Option<u32>,
    ) -> Result<(), StoreError> {
        let policy = policy_json(policy)?;
        let number = int(p.number.0)?;
        self.db
            .transaction(|tx| {
                let policy = policy.clone();
                async move {
                    if let Some(limit) = creator_quota {
                        const COUNT: &str =
                            "SELECT CAST(COUNT(*) AS BIGINT) FROM projects WHERE creator = $1";
                        let held = tx.fetch_one(query(COUNT).bind(&p.creator)).await?.u64(0)?;
                        if held >= u64::from(limit) {
                            return Err(StoreError::QuotaExceeded {
                                kind: "projects",
                                scope: p.creator.clone(),
                                limit: u64::from(limit),
                            });
                        }
                    }
                    let exists = query("SELECT 1 FROM projects WHERE id = $1").bind(p.id.as_str());
                    if tx.fetch_optional(exists).await?.is_some() {
                        return Err(StoreError::AlreadyExists(format!("project {}", p.id)));
                    }
                    // A deleted project's id and number are never given out again (as in
                    // Google): grants elsewhere may still name them.
                    let deleted =
                        query("SELECT id FROM deleted_projects WHERE id = $1 OR number = $2")
                            .bind(p.id.as_str())
                            .bind(number);
                    if let Some(row) = tx.fetch_optional(deleted).await? {
                        return Err(StoreError::AlreadyExists(
                            if row.text(0)? == p.id.as_str() {
                                format!("{DELETED_PROJECT} {}", p.id)
                            } else {
                                format!("project number {}", p.number)
                            },
                        ));
                    }
                    tx.execute(
                        query(format!(
                            "INSERT INTO projects ({PROJECT_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
                        ))
                        .bind(p.id.as_str())
                        .bind(number)
                        .bind(&p.display_name)
                        .bind(rfc3339(p.create_time))
                        .bind(&p.creator),
                    )
                    .await
                    .map_err(|e| constraint(e, || format!("project number {}", p.number)))?;
                    tx.execute(
                        query(
                            "INSERT INTO iam_policies (resource, parent, policy, etag)
                             VALUES ($1, NULL, $2, $3)",
                        )
                        .bind(p.id.resource_name())
                        .bind(policy)
                        .bind(new_etag()),
                    )
                    .await?;
                    Ok(())
                }
            })
            .await
    }

    pub async fn get_project(&self, id: &ProjectId) -> Result<Option<ProjectRecord>, StoreError> {
        let q = query(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = $1"
        ));
        self.db.one(q.bind(id.as_str()), project_row).await
    }

    pub async fn list_projects(&self) -> Result<Vec<ProjectRecord>, StoreError> {
        let q = query(format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY id"
        ));
        self.db.all(q, project_row).await
    }

    /// Deletes an empty project: refused with [`StoreError::NotEmpty`], naming what remains,
    /// while it holds buckets, service accounts, workload identity pools, key rings,
    /// repositories or instances. Its policy (and any policy left under it) and its
    /// challenges go with it; its id and number are kept in `deleted_projects`, so no later
    /// project takes them. The audit log keeps its entries.
    pub async fn delete_project(&self, id: &ProjectId, deleter: &str) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                let number = query("SELECT number FROM projects WHERE id = $1").bind(id.as_str());
                let Some(number) = tx.fetch_optional(number).await? else {
                    return Err(StoreError::NotFound(format!("project {id}")));
                };
                let number = number.int(0)?;
                let remaining = tx
                    .fetch_all(query(REMAINING_RESOURCES).bind(id.as_str()))
                    .await?;
                let mut by_kind: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for row in &remaining {
                    by_kind.entry(row.text(0)?).or_default().push(row.text(1)?);
                }
                if !by_kind.is_empty() {
                    return Err(StoreError::NotEmpty(format!(
                        "project {id} still holds {}",
                        remaining_text(by_kind)
                    )));
                }
                let resource = id.resource_name();
                tx.execute(query("DELETE FROM challenges WHERE project_id = $1").bind(id.as_str()))
                    .await?;
                tx.execute(
                    query("DELETE FROM iam_policies WHERE resource = $1 OR parent = $1")
                        .bind(&resource),
                )
                .await?;
                tx.execute(query("DELETE FROM projects WHERE id = $1").bind(id.as_str()))
                    .await?;
                tx.execute(
                    query(
                        "INSERT INTO deleted_projects (id, number, delete_time, deleter)
                         VALUES ($1, $2, $3, $4)",
                    )
                    .bind(id.as_str())
                    .bind(number)
                    .bind(rfc3339(OffsetDateTime::now_utc()))
                    .bind(deleter),
                )
                .await?;
                Ok(())
            })
            .await
    }

    /// Creates the account and its (empty) IAM policy, whose parent is the project.
    pub async fn create_service_account(&self, a: &ServiceAccountRecord) -> Result<(), StoreError> {
        self.db
            .transaction(|tx| async move {
                tx.execute(
                    query(format!(
                        "INSERT INTO service_accounts ({SERVICE_ACCOUNT_COLUMNS})
                         VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    ))
                    .bind(a.email.as_str())
                    .bind(a.project_id.as_str())
                    .bind(&a.unique_id)
                    .bind(&a.display_name)
                    .bind(&a.description)
                    .bind(a.disabled)
                    .bind(rfc3339(a.create_time)),
                )
                .await
                .map_err(|e| constraint(e, || format!("service account {}", a.email)))?;
                insert_empty_policy(&tx, &a.resource_name(), &a.project_id.resource_name()).await
            })
            .await
    }

    pub async fn get_service_account(
        &self,
        email: &Email,
    ) -> Result<Option<ServiceAccountRecord>, StoreError> {
        let q = query(format!(
            "SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE email = $1"
        ));
        self.db
            .one(q.bind(email.as_str()), service_account_row)
            .await
    }

    pub async fn list_service_accounts(
        &self,
        project: &ProjectId,
    ) -> Result<Vec<ServiceAccountRecord>, StoreError> {
        let q = query(format!(
            "SELECT {SERVICE_ACCOUNT_COLUMNS} FROM service_accounts WHERE project_id = $1
             ORDER BY email"
        ));
        self.db
            .all(q.bind(project.as_str()), service_account_row)
            .await
    }

    /// Deletes the account and its IAM policy; returns whether it existed.
    pub async fn delete_service_account(&self, email: &Email) -> Result<bool, StoreError> {
        self.db
            .transaction(|tx| async move {
                let deleted =
                    query("DELETE FROM service_accounts WHERE email = $1 RETURNING project_id")
                        .bind(email.as_str());
                let Some(row) = tx.fetch_optional(deleted).await? else {
                    return Ok(false);
                };
                let project = row.text(0)?;
                delete_policy(&tx, &format!("projects/{project}/serviceAccounts/{email}")).await?;
                Ok(true)
            })
            .await
    }

    /// The policy attached to `resource` (empty when none) and its parent resource, whose
    /// bindings it inherits.
    pub async fn get_policy(&self, resource: &str) -> Result<(Policy, Option<String>), StoreError> {
        let q = query("SELECT policy, etag, parent FROM iam_policies WHERE resource = $1");
        let Some(r) = self.db.fetch_optional(q.bind(resource)).await? else {
            return Ok((Policy::default(), None));
        };
        let mut policy: Policy = r.json(0, &format!("policy of {resource}"))?;
        policy.etag = r.text(1)?;
        Ok((policy, r.get(2)?))
    }

    /// Replaces `resource`'s policy if `policy.etag` matches the stored one (or is empty, which
    /// means "unconditionally", as in Google's API). Returns the stored policy with its new
    /// etag.
    pub async fn set_policy(&self, resource: &str, policy: &Policy) -> Result<Policy, StoreError> {
        let json = policy_json(policy)?;
        let etag = new_etag();
        self.db
            .transaction(|tx| {
                let (json, etag) = (json.clone(), etag.clone());
                async move {
                    let current = query("SELECT etag FROM iam_policies WHERE resource = $1");
                    let Some(current) = tx.fetch_optional(current.bind(resource)).await? else {
                        return Err(StoreError::NotFound(resource.to_owned()));
                    };
                    if !policy.etag.is_empty() && policy.etag != current.text(0)? {
                        return Err(StoreError::StaleEtag {
                            resource: resource.to_owned(),
                            given: policy.etag.clone(),
                        });
                    }
                    tx.execute(
                        query("UPDATE iam_policies SET policy = $2, etag = $3 WHERE resource = $1")
                            .bind(resource)
                            .bind(json)
                            .bind(etag),
                    )
                    .await?;
                    Ok(())
                }
            })
            .await?;
        Ok(Policy {
            etag,
            ..policy.clone()
        })
    }
}
