//! Cloister's domain vocabulary, shared by every layer above it.
//!
//! Invariant: this crate is pure data and logic. It does no I/O, knows nothing of HTTP, SQL or
//! the CLI, and depends on no other Cloister crate.

pub mod audit;
pub mod credential;
pub mod ids;
pub mod member;
pub mod policy;
pub mod principal;
pub mod role;

pub use audit::{
    AttestationDetails, AuditDetails, AuditEntry, ClauseOutcome, ClauseVerdict, ComparedValue,
    Decision, ExchangeDetails,
};
pub use credential::{CREDENTIAL_TYPE, CredentialFile};
pub use ids::{
    Email, IdError, ProjectId, ProjectNumber, service_account_email, service_account_project,
};
pub use member::{Member, MemberError, PoolRef, PrincipalSetKind};
pub use policy::{Binding, Policy, PolicyError};
pub use principal::Principal;
pub use role::{Permission, Role, RoleError};
