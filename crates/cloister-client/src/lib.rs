//! The client side of Cloister: named CLI profiles (like gcloud configurations) and an HTTP
//! client that authenticates with a profile's credential and speaks Google's error shape.
//!
//! Invariant: this crate never links the server; it knows Cloister only through its HTTP API.

pub mod api;
pub mod profiles;

pub use api::{ApiClient, ClientError, Progress};
pub use profiles::{CredentialFile, Profile, Profiles};
