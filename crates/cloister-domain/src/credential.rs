//! The credential file a user receives: like a Google service-account key file, it is all a
//! client needs to obtain access tokens. Shared by the server (which issues it) and the CLI
//! (which reads it).

use serde::{Deserialize, Serialize};

/// The `type` of a Cloister user credential file.
pub const CREDENTIAL_TYPE: &str = "cloister_user_credential";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CredentialFile {
    #[serde(rename = "type")]
    pub kind: String,
    pub client_email: String,
    pub client_id: String,
    pub client_secret: String,
    pub token_uri: String,
}
