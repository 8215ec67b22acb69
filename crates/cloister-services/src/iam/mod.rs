//! IAM: the authorizer every service calls, projects (Resource Manager), users (platform admin),
//! and the predefined roles.

pub mod authorizer;
pub mod policy_api;
pub mod projects;
pub mod roles;
pub mod service_accounts;
pub mod users;
