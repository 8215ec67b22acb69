//! What a project holds, as its page lists it: service accounts, workload identity pools and
//! their providers, buckets, KMS key rings and keys, and registry repositories. Each section
//! is shown to whoever may list it, through the API's own permission: whether the user may is
//! asked first (recorded as nothing), then the listing is an access recorded as the API's is.

use std::future::Future;

use cloister_domain::{Permission, ProjectId};
use cloister_store::StoreError;
use serde_json::Value;

use super::session::Session;
use crate::error::ApiError;
use crate::kms::service as kms;
use crate::state::AppState;

pub struct AccountRow {
    pub email: String,
    pub display_name: String,
    pub disabled: bool,
}

pub struct ProviderRow {
    pub id: String,
    /// The console path of the provider's page (its playground).
    pub href: String,
    pub issuer: String,
    pub disabled: bool,
}

pub struct PoolRow {
    pub id: String,
    pub display_name: String,
    pub disabled: bool,
    /// `None` when the user may not list the pool's providers.
    pub providers: Option<Listing<ProviderRow>>,
}

pub struct BucketRow {
    pub name: String,
    pub location: String,
    pub storage_class: String,
}

pub struct KeyRow {
    pub id: String,
    pub purpose: &'static str,
    pub primary: String,
}

pub struct KeyRingRow {
    pub name: String,
    /// `None` when the user may not list the ring's keys.
    pub keys: Option<Listing<KeyRow>>,
}

pub struct RepositoryRow {
    pub id: String,
    pub location: String,
    pub format: String,
    pub description: String,
}

/// Rows a section shows; the command beside it lists the rest.
const SECTION_ROWS: usize = 100;
/// Pools and key rings each cost a listing of their own (providers, keys): fewer are shown.
const NESTED_ROWS: usize = 20;

/// A section's first rows, and how many more there are.
pub struct Listing<T> {
    pub rows: Vec<T>,
    pub more: usize,
}

fn listing<T>(mut rows: Vec<T>, cap: usize) -> Listing<T> {
    let more = rows.len().saturating_sub(cap);
    rows.truncate(cap);
    Listing { rows, more }
}

/// The sections of a project's page; `None`: the user may not list that kind.
pub struct ProjectResources {
    pub service_accounts: Option<Listing<AccountRow>>,
    pub pools: Option<Listing<PoolRow>>,
    pub buckets: Option<Listing<BucketRow>>,
    pub key_rings: Option<Listing<KeyRingRow>>,
    pub repositories: Option<Listing<RepositoryRow>>,
}

/// Whether the user may `permission` on `resource`; when they may, the access is recorded.
pub(super) async fn may(
    state: &AppState,
    session: &Session,
    permission: Permission,
    resource: &str,
) -> Result<bool, ApiError> {
    if !state
        .authorizer
        .holds(&session.principal, permission, resource)
        .await?
    {
        return Ok(false);
    }
    state
        .authorizer
        .check(&session.principal, permission, resource)
        .await?;
    Ok(true)
}

/// A flat section: the project's `records` when the user may `permission` on it, a row each.
/// `records` is awaited only then.
async fn section<R, T>(
    state: &AppState,
    session: &Session,
    permission: Permission,
    project: &ProjectId,
    records: impl Future<Output = Result<Vec<R>, StoreError>>,
    row: impl FnMut(R) -> T,
) -> Result<Option<Listing<T>>, ApiError> {
    if !may(state, session, permission, &project.resource_name()).await? {
        return Ok(None);
    }
    let rows = records.await?.into_iter().map(row).collect();
    Ok(Some(listing(rows, SECTION_ROWS)))
}

pub async fn gather(
    state: &AppState,
    session: &Session,
    project: &ProjectId,
) -> Result<ProjectResources, ApiError> {
    let store = &state.store;
    let service_accounts = section(
        state,
        session,
        "iam.serviceAccounts.list",
        project,
        store.list_service_accounts(project),
        |a| AccountRow {
            email: a.email.as_str().to_owned(),
            display_name: a.display_name,
            disabled: a.disabled,
        },
    )
    .await?;
    let pools = pools(state, session, project).await?;
    let buckets = section(
        state,
        session,
        "storage.buckets.list",
        project,
        store.list_buckets(project),
        |b| BucketRow {
            name: b.name,
            location: b.location,
            storage_class: b.storage_class,
        },
    )
    .await?;
    let key_rings = key_rings(state, session, project).await?;
    let repositories = section(
        state,
        session,
        "artifactregistry.repositories.list",
        project,
        store.list_repositories(project),
        |r| RepositoryRow {
            id: r.repository_id,
            location: r.location,
            format: r.format,
            description: r.description,
        },
    )
    .await?;
    Ok(ProjectResources {
        service_accounts,
        pools,
        buckets,
        key_rings,
        repositories,
    })
}

fn text(v: &Value, pointer: &str) -> String {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn last_segment(name: &str) -> String {
    name.rsplit('/').next().unwrap_or(name).to_owned()
}

async fn pools(
    state: &AppState,
    session: &Session,
    project: &ProjectId,
) -> Result<Option<Listing<PoolRow>>, ApiError> {
    let resource = project.resource_name();
    if !may(state, session, "iam.workloadIdentityPools.list", &resource).await? {
        return Ok(None);
    }
    let Some(record) = state.store.get_project(project).await? else {
        return Ok(Some(listing(Vec::new(), 0)));
    };
    let parent = format!("projects/{}/locations/global", record.number);
    let may_list_providers = may(
        state,
        session,
        "iam.workloadIdentityPoolProviders.list",
        &resource,
    )
    .await?;
    let pools = listing(state.store.list_federation(&parent).await?, NESTED_ROWS);
    let mut rows = Vec::new();
    for pool in pools.rows {
        let providers = if may_list_providers {
            let providers = state.store.list_federation(&pool.name).await?;
            let providers = providers
                .into_iter()
                .map(|p| ProviderRow {
                    id: last_segment(&p.name),
                    href: format!("/console/{}", p.name),
                    issuer: text(&p.resource, "/oidc/issuerUri"),
                    disabled: p.resource["disabled"].as_bool().unwrap_or(false),
                })
                .collect();
            Some(listing(providers, SECTION_ROWS))
        } else {
            None
        };
        rows.push(PoolRow {
            id: last_segment(&pool.name),
            display_name: text(&pool.resource, "/displayName"),
            disabled: pool.resource["disabled"].as_bool().unwrap_or(false),
            providers,
        });
    }
    Ok(Some(Listing {
        rows,
        more: pools.more,
    }))
}

async fn key_rings(
    state: &AppState,
    session: &Session,
    project: &ProjectId,
) -> Result<Option<Listing<KeyRingRow>>, ApiError> {
    if !state
        .authorizer
        .holds(
            &session.principal,
            "cloudkms.keyRings.list",
            &project.resource_name(),
        )
        .await?
    {
        return Ok(None);
    }
    let rings = kms::list_project_key_rings(state, &session.principal, project).await?;
    let rings = listing(rings, NESTED_ROWS);
    let mut rows = Vec::new();
    for ring in rings.rows {
        let keys = if state
            .authorizer
            .holds(&session.principal, "cloudkms.cryptoKeys.list", &ring.name)
            .await?
        {
            let keys = kms::list_crypto_keys(state, &session.principal, &ring.name).await?;
            let keys = keys
                .into_iter()
                .map(|k| KeyRow {
                    id: last_segment(&k.key.name),
                    purpose: k.key.purpose.as_str(),
                    primary: match k.primary {
                        Some(v) => format!("{} ({})", v.version, v.state.as_str()),
                        None => "none".into(),
                    },
                })
                .collect();
            Some(listing(keys, SECTION_ROWS))
        } else {
            None
        };
        rows.push(KeyRingRow {
            name: ring.name,
            keys,
        });
    }
    Ok(Some(Listing {
        rows,
        more: rings.more,
    }))
}
