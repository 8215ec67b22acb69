//! API errors and their mapping to HTTP status and Google's JSON error shape:
//! `{"error":{"code":403,"message":"…","status":"PERMISSION_DENIED","errors":[…],"details":[…]}}`.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cloister_store::StoreError;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{message}")]
    PermissionDenied {
        message: String,
        permission: String,
        resource: String,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// A concurrent change won (stale etag); the caller should re-read and retry.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    /// An allocation (a project's storage quota) is used up: retrying will not help until
    /// something is deleted or the quota raised.
    #[error("{0}")]
    QuotaExceeded(String),
    /// A download `Range` that selects no byte of the object.
    #[error("The requested range cannot be satisfied.")]
    RangeNotSatisfiable,
    /// A request precondition (`ifGenerationMatch`, …) does not hold.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The system is not in a state to do this (a host that cannot provide what was asked).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The server cannot take this now (its condition workers are all busy); a retry later
    /// may succeed.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> (StatusCode, &'static str, &'static str) {
        match self {
            ApiError::InvalidArgument(_) => {
                (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", "badRequest")
            }
            ApiError::Unauthenticated(_) => {
                (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "required")
            }
            ApiError::PermissionDenied { .. } => {
                (StatusCode::FORBIDDEN, "PERMISSION_DENIED", "forbidden")
            }
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", "notFound"),
            ApiError::AlreadyExists(_) => (StatusCode::CONFLICT, "ALREADY_EXISTS", "conflict"),
            ApiError::Aborted(_) => (StatusCode::CONFLICT, "ABORTED", "conflict"),
            ApiError::FailedPrecondition(_) => (
                StatusCode::BAD_REQUEST,
                "FAILED_PRECONDITION",
                "failedPrecondition",
            ),
            ApiError::PreconditionFailed(_) => (
                StatusCode::PRECONDITION_FAILED,
                "FAILED_PRECONDITION",
                "conditionNotMet",
            ),
            // Google's JSON API gives 413 only the reason `uploadTooLarge`; no RPC code fits
            // (the request is well formed), so the status names what happened.
            ApiError::PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "uploadTooLarge",
            ),
            // Cloud Storage answers a used-up allocation with 403 `quotaExceeded`, not 429:
            // clients retry 429 with backoff, which cannot help here.
            ApiError::QuotaExceeded(_) => {
                (StatusCode::FORBIDDEN, "RESOURCE_EXHAUSTED", "quotaExceeded")
            }
            ApiError::RangeNotSatisfiable => (
                StatusCode::RANGE_NOT_SATISFIABLE,
                "OUT_OF_RANGE",
                "requestedRangeNotSatisfiable",
            ),
            ApiError::Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "backendError",
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "backendError",
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::AlreadyExists(what) => {
                ApiError::AlreadyExists(format!("{what} already exists"))
            }
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} was not found")),
            e @ StoreError::StaleEtag { .. } => ApiError::Aborted(e.to_string()),
            // Google answers a container that still holds things (a non-empty bucket) with
            // 409, as a conflict with what exists; the services word it for their resource.
            e @ StoreError::NotEmpty(_) => ApiError::AlreadyExists(e.to_string()),
            e @ StoreError::Reseal { .. } => ApiError::FailedPrecondition(e.to_string()),
            // Compute Engine's words for its quotas, then what to do.
            StoreError::QuotaExceeded { kind, scope, limit } => ApiError::QuotaExceeded(format!(
                "Quota '{}' exceeded.  Limit: {limit}.0 in {scope}. Delete some {kind}, or ask \
                 the operator for a larger quota.",
                kind.to_ascii_uppercase()
            )),
            // The chain (causes included) goes to the log; the client sees a generic message.
            e @ (StoreError::Database { .. }
            | StoreError::Unavailable { .. }
            | StoreError::Corrupt { .. }
            | StoreError::Unusable(_)) => ApiError::Internal(e.chain()),
        }
    }
}

impl From<cloister_domain::PolicyError> for ApiError {
    fn from(e: cloister_domain::PolicyError) -> Self {
        ApiError::InvalidArgument(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, status_name, reason) = self.status();
        let message = self.client_message();
        let mut error = json!({
            "code": status.as_u16(),
            "message": message,
            "status": status_name,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
        });
        if let ApiError::PermissionDenied {
            permission,
            resource,
            ..
        } = &self
        {
            error["details"] = json!([{
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission, "resource": resource},
            }]);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"cloister\""),
            );
        }
        response
    }
}

impl ApiError {
    /// The message a client sees: an internal error's detail (which may name files or SQL)
    /// goes to the log instead.
    pub fn client_message(&self) -> String {
        match self {
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error");
                "Internal error. The server log has the details.".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// This error as Google's gRPC APIs answer it: the canonical code the JSON error names in
    /// `status`, the same message, and for a permission refusal the same `ErrorInfo` detail
    /// (in `grpc-status-details-bin`, a `google.rpc.Status`, where Google's clients read it).
    pub fn into_grpc_status(self) -> tonic::Status {
        use googleapis_tonic_google_rpc::google::rpc;
        use prost::Message as _;
        use tonic::Code;
        let code = match self.status().1 {
            "INVALID_ARGUMENT" => Code::InvalidArgument,
            "UNAUTHENTICATED" => Code::Unauthenticated,
            "PERMISSION_DENIED" => Code::PermissionDenied,
            "NOT_FOUND" => Code::NotFound,
            "ALREADY_EXISTS" => Code::AlreadyExists,
            "ABORTED" => Code::Aborted,
            "FAILED_PRECONDITION" => Code::FailedPrecondition,
            "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
            "OUT_OF_RANGE" => Code::OutOfRange,
            "UNAVAILABLE" => Code::Unavailable,
            // PAYLOAD_TOO_LARGE is REST's alone; gRPC says a message is too large this way.
            "PAYLOAD_TOO_LARGE" => Code::ResourceExhausted,
            _ => Code::Internal,
        };
        let message = self.client_message();
        let ApiError::PermissionDenied {
            permission,
            resource,
            ..
        } = &self
        else {
            return tonic::Status::new(code, message);
        };
        let info = rpc::ErrorInfo {
            reason: "IAM_PERMISSION_DENIED".into(),
            domain: "iam.googleapis.com".into(),
            metadata: [
                ("permission".to_owned(), permission.clone()),
                ("resource".to_owned(), resource.clone()),
            ]
            .into(),
        };
        let details = rpc::Status {
            code: code as i32,
            message: message.clone(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        tonic::Status::with_details(code, message, details.encode_to_vec().into())
    }
}
