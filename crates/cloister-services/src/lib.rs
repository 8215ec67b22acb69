//! Cloister's control-plane services, one module each, composed into one router by [`app`].
//!
//! Each service module has its router (HTTP shapes, Google's paths and JSON) apart from its
//! domain logic; persistence is `cloister-store` (its async `Store`, and the blob store).
//! Errors are `thiserror` types, mapped to Google's JSON error shape in [`error`].
//!
//! Invariant: services never call each other over HTTP; they share [`state::AppState`].

pub mod app;
pub mod audit;
mod audit_log;
pub mod auth;
pub mod compute;
mod console;
pub mod error;
pub mod federation;
mod health;
pub mod iam;
pub mod iamcredentials;
pub mod json;
pub mod jwt;
pub mod kms;
pub mod metrics;
mod oidc;
pub mod query;
pub mod registry;
pub mod secrets;
pub mod signing;
pub mod state;
pub mod storage;
pub mod time_util;
pub mod verifier;

pub use app::{
    BOOTSTRAP_ADMIN_EMAIL, DEFAULT_REPLICA_LEASE, EMBEDDED_KEK_FILE, OpenedServer, ServerConfig,
    StartupError, open,
};
pub use cloister_store::DEFAULT_DATABASE_CONNECTIONS;
pub use error::ApiError;
pub use federation::fetch::AllowedHost;
