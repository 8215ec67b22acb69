//! A JSON body extractor whose refusals are Google-shaped errors that say what was wrong and
//! where, instead of axum's plain-text rejections. Like Google's APIs it does not insist on a
//! Content-Type, and an empty body reads as `{}`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        let body: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(body)
            .map(ApiJson)
            .map_err(|e| ApiError::InvalidArgument(format!("Invalid JSON payload: {e}")))
    }
}

pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(
            "The request body is larger than this API accepts (the server's --max-body-bytes, 1 MiB by default); send a smaller request"
                .into(),
        )
    } else {
        ApiError::InvalidArgument(format!(
            "Could not read the request body: {}",
            rejection.body_text()
        ))
    }
}
