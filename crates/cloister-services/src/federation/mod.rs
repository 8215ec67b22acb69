//! Workload identity federation: pools and OIDC providers (`resources`), their compiled form
//! (`provider`), issuer keys (`jwks`) fetched under
//! the outbound rules (`fetch`), subject token verification and policy (`exchange`), the
//! STS endpoint (`sts`), and explanations (`explain`). A token's mapping and condition are
//! judged in a worker process with limits (`judge`): they are a tenant's CEL.

pub mod exchange;
pub mod explain;
pub mod fetch;
pub mod judge;
pub mod jwks;
pub mod provider;
pub mod resources;
pub mod sts;
