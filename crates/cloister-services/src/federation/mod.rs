//! Workload identity federation: pools and OIDC providers (`resources`), their compiled form
//! (`provider`), issuer keys (`jwks`), subject token verification and policy (`exchange`), the
//! STS endpoint (`sts`), and explanations (`explain`).

pub mod exchange;
pub mod explain;
pub mod jwks;
pub mod provider;
pub mod resources;
pub mod sts;
