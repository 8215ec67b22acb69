//! Authentication: user API credentials, the server's short-lived access tokens, and the
//! extractor that turns a request's bearer token into a [`cloister_domain::Principal`].

pub mod caller;
pub mod credentials;
pub mod router;
pub mod tokens;

pub use caller::{AdminCaller, Caller};
