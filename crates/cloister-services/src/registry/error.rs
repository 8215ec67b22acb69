//! Registry errors in the distribution spec's shape: `{"errors":[{"code","message","detail"}]}`,
//! with the spec's status per code, and the Bearer challenge on 401 that tells Docker clients
//! where to get a token.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{message}")]
    Unauthorized {
        message: String,
        /// `Bearer realm=…,service=…,scope=…`
        challenge: String,
    },
    #[error("{0}")]
    Denied(String),
    #[error("{0}")]
    NameInvalid(String),
    #[error("{0}")]
    NameUnknown(String),
    #[error("{0}")]
    ManifestUnknown(String),
    #[error("{0}")]
    ManifestInvalid(String),
    #[error("{0}")]
    ManifestBlobUnknown(String),
    #[error("{0}")]
    TagInvalid(String),
    #[error("{0}")]
    BlobUnknown(String),
    #[error("{0}")]
    BlobUploadUnknown(String),
    #[error("{0}")]
    BlobUploadInvalid(String),
    #[error("{0}")]
    DigestInvalid(String),
    #[error("{0}")]
    SizeInvalid(String),
    #[error("{0}")]
    RangeInvalid(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    /// `n` on a paginated list is not a count (the code Docker's registry uses).
    #[error("{0}")]
    PaginationNumberInvalid(String),
    #[error("{0}")]
    Internal(String),
}

impl RegistryError {
    fn code(&self) -> (StatusCode, &'static str) {
        use RegistryError::*;
        match self {
            Unauthorized { .. } => (StatusCode::UNAUTHORIZED, "UNAUTHORIZED"),
            Denied(_) => (StatusCode::FORBIDDEN, "DENIED"),
            NameInvalid(_) => (StatusCode::BAD_REQUEST, "NAME_INVALID"),
            NameUnknown(_) => (StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
            ManifestUnknown(_) => (StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN"),
            ManifestInvalid(_) => (StatusCode::BAD_REQUEST, "MANIFEST_INVALID"),
            ManifestBlobUnknown(_) => (StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN"),
            TagInvalid(_) => (StatusCode::BAD_REQUEST, "TAG_INVALID"),
            BlobUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UNKNOWN"),
            BlobUploadUnknown(_) => (StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN"),
            BlobUploadInvalid(_) => (StatusCode::BAD_REQUEST, "BLOB_UPLOAD_INVALID"),
            DigestInvalid(_) => (StatusCode::BAD_REQUEST, "DIGEST_INVALID"),
            SizeInvalid(_) => (StatusCode::BAD_REQUEST, "SIZE_INVALID"),
            RangeInvalid(_) => (StatusCode::RANGE_NOT_SATISFIABLE, "RANGE_INVALID"),
            TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "SIZE_INVALID"),
            Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED"),
            PaginationNumberInvalid(_) => (StatusCode::BAD_REQUEST, "PAGINATION_NUMBER_INVALID"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN"),
        }
    }
}

impl From<ApiError> for RegistryError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::PermissionDenied { message, .. } => RegistryError::Denied(message),
            ApiError::NotFound(m) => RegistryError::NameUnknown(m),
            ApiError::Internal(m) => RegistryError::Internal(m),
            // The storage limits a push passes (`storage::limits`): the blob is too large,
            // or its project's quota is spent.
            ApiError::PayloadTooLarge(m) => RegistryError::TooLarge(m),
            ApiError::QuotaExceeded(m) => RegistryError::Denied(m),
            ApiError::Unauthenticated(m) => RegistryError::Unauthorized {
                message: m,
                challenge: String::new(),
            },
            other => RegistryError::Unsupported(other.to_string()),
        }
    }
}

impl From<cloister_store::StoreError> for RegistryError {
    fn from(e: cloister_store::StoreError) -> Self {
        ApiError::from(e).into()
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let (status, code) = self.code();
        let message = match &self {
            RegistryError::Internal(detail) => {
                tracing::error!(error = %detail, "internal registry error");
                "Internal error. The server log has the details.".to_owned()
            }
            other => other.to_string(),
        };
        let mut response = (
            status,
            Json(json!({"errors": [{"code": code, "message": message, "detail": null}]})),
        )
            .into_response();
        if let RegistryError::Unauthorized { challenge, .. } = &self
            && let Ok(v) = HeaderValue::from_str(challenge)
            && !challenge.is_empty()
        {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        response
    }
}
