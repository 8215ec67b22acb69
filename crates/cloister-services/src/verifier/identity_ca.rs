//! The instance identity CA's API: its certificate (public, for anyone checking AK
//! certificates) and certifying an instance's attestation key (platform admins; the local
//! compute driver does the same in process when it creates an instance).

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::Decision;
use cloister_tpm::identity::InstanceIdentity;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::AdminCaller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/cloister/v1/identityCa", get(certificate))
        .route(
            "/cloister/v1/identityCa:certifyAttestationKey",
            post(certify),
        )
}

async fn certificate(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "certificate": STANDARD.encode(state.identity_ca.cert_der()) }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CertifyRequest {
    /// The AK's SubjectPublicKeyInfo, DER, base64.
    attestation_key: String,
    instance: InstanceIdentity,
}

async fn certify(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ApiJson(req): ApiJson<CertifyRequest>,
) -> Result<Json<Value>, ApiError> {
    let key = STANDARD
        .decode(req.attestation_key.as_bytes())
        .map_err(|e| ApiError::InvalidArgument(format!("attestationKey is not base64: {e}")))?;
    let cert = state
        .identity_ca
        .certify_ak(&key, &req.instance, time::OffsetDateTime::now_utc())
        .map_err(|e| {
            ApiError::InvalidArgument(format!("cannot certify this attestation key: {e}"))
        })?;
    let resource = format!(
        "projects/{}/zones/{}/instances/{}",
        req.instance.project_id, req.instance.zone, req.instance.instance_name
    );
    state
        .authorizer
        .record(
            admin.to_string(),
            "cloister.identityCa.certify",
            &resource,
            Decision::Allow,
            "platform admin".into(),
        )
        .await;
    Ok(Json(json!({ "certificate": STANDARD.encode(cert) })))
}
