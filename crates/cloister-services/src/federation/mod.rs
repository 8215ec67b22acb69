//! Workload identity federation: pools and OIDC providers (`resources`), their compiled form
//! (`provider`), issuer keys (`jwks`) fetched under
//! the outbound rules (`fetch`), subject token verification and policy (`exchange`), the
//! STS endpoint (`sts`), and explanations (`explain`).

pub mod exchange;
pub mod explain;
pub mod fetch;
pub mod jwks;
pub mod provider;
pub mod resources;
pub mod sts;
