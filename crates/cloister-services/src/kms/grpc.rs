//! Cloud KMS over gRPC (`google.cloud.kms.v1.KeyManagementService`), the transport Google's
//! client libraries use by default. Served on the same listener as the REST API: the server
//! speaks HTTP/1.1 and HTTP/2 (cleartext with prior knowledge, or TLS with ALPN), and gRPC
//! requests are told apart by their path, `/google.cloud.kms.v1.KeyManagementService/METHOD`,
//! which no REST path begins with.
//!
//! Why the routing is written here by hand: the messages are Google's, generated with prost
//! (the `googleapis-tonic-google-cloud-kms-v1` crate), but no published crate has server stubs
//! for this service, and generating them would mean vendoring Google's protos (with their
//! imports) and a build script. What the stubs would add is one match from method name to
//! handler; tonic's `Grpc` with the prost codec does the framing, the decoding, and the
//! status trailers, as in generated code.
//!
//! Each handler authenticates the `authorization` metadata as the REST API does the header,
//! then calls the same operations (`service.rs`), so authorization, audit entries and errors
//! are the REST API's; errors become gRPC statuses with the same canonical codes and text.

use std::convert::Infallible;
use std::future::Future;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use cloister_domain::Principal;
use cloister_store::{KeyVersionState, KmsKeyRing, KmsKeyVersion};
use futures::future::BoxFuture;
use googleapis_tonic_google_cloud_kms_v1::google::cloud::kms::v1 as pb;
use pb::crypto_key::CryptoKeyPurpose;
use pb::crypto_key_version::{CryptoKeyVersionAlgorithm, CryptoKeyVersionState};
use time::OffsetDateTime;

use super::service::{self, KeyAndPrimary};
use crate::auth::caller::authenticate;
use crate::error::ApiError;
use crate::state::AppState;

/// The service's gRPC name: its methods are `/{SERVICE}/{Method}`.
pub const SERVICE: &str = "google.cloud.kms.v1.KeyManagementService";

/// The routes of the gRPC service, to merge beside the REST routes.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new().route_service(
        &format!("/{SERVICE}/{{method}}"),
        KeyManagementService { state },
    )
}

/// The gRPC service: a tower `Service` from HTTP requests to gRPC responses.
#[derive(Clone)]
pub struct KeyManagementService {
    state: AppState,
}

impl tower::Service<http::Request<Body>> for KeyManagementService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let state = self.state.clone();
        Box::pin(async move {
            let method = req
                .uri()
                .path()
                .rsplit_once('/')
                .map_or("", |(_, m)| m)
                .to_owned();
            Ok(match method.as_str() {
                "CreateKeyRing" => unary(state, req, create_key_ring).await,
                "GetKeyRing" => unary(state, req, get_key_ring).await,
                "ListKeyRings" => unary(state, req, list_key_rings).await,
                "CreateCryptoKey" => unary(state, req, create_crypto_key).await,
                "GetCryptoKey" => unary(state, req, get_crypto_key).await,
                "ListCryptoKeys" => unary(state, req, list_crypto_keys).await,
                "GetCryptoKeyVersion" => unary(state, req, get_crypto_key_version).await,
                "ListCryptoKeyVersions" => unary(state, req, list_crypto_key_versions).await,
                "DestroyCryptoKeyVersion" => unary(state, req, destroy_crypto_key_version).await,
                "Encrypt" => unary(state, req, encrypt).await,
                "Decrypt" => unary(state, req, decrypt).await,
                other => unimplemented(&format!("{SERVICE}/{other}")),
            })
        })
    }
}

/// UNIMPLEMENTED, as a gRPC server answers a method it does not have.
pub fn unimplemented(method: &str) -> http::Response<tonic::body::Body> {
    tonic::Status::unimplemented(format!("Cloister does not implement the method {method}."))
        .into_http()
}

/// Decodes the request with prost, runs `handler` for the authenticated caller, and encodes
/// its answer or its error (as a gRPC status).
async fn unary<Req, Resp, F, Fut>(
    state: AppState,
    req: http::Request<Body>,
    handler: F,
) -> http::Response<tonic::body::Body>
where
    Req: prost::Message + Default + Send + 'static,
    Resp: prost::Message + Send + 'static,
    F: Fn(AppState, Principal, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<Resp, Req>::default());
    grpc.unary(Unary { state, handler }, req).await
}

struct Unary<F> {
    state: AppState,
    handler: F,
}

impl<Req, Resp, F, Fut> tonic::server::UnaryService<Req> for Unary<F>
where
    Req: Send + 'static,
    F: Fn(AppState, Principal, Req) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, ApiError>> + Send + 'static,
{
    type Response = Resp;
    type Future = BoxFuture<'static, Result<tonic::Response<Resp>, tonic::Status>>;

    fn call(&mut self, request: tonic::Request<Req>) -> Self::Future {
        let (state, handler) = (self.state.clone(), self.handler.clone());
        Box::pin(async move {
            let authorization = request
                .metadata()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let answer = async {
                let caller = authenticate(&state, authorization.as_deref()).await?;
                handler(state, caller, request.into_inner()).await
            };
            answer
                .await
                .map(tonic::Response::new)
                .map_err(ApiError::into_grpc_status)
        })
    }
}

fn timestamp(t: OffsetDateTime) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Below one billion, so it fits.
        nanos: i32::try_from(t.nanosecond()).unwrap_or_default(),
    })
}

fn key_ring(r: KmsKeyRing) -> pb::KeyRing {
    pb::KeyRing {
        create_time: timestamp(r.create_time),
        name: r.name,
    }
}

fn key_version(v: &KmsKeyVersion) -> pb::CryptoKeyVersion {
    let state = match v.state {
        KeyVersionState::Enabled => CryptoKeyVersionState::Enabled,
        KeyVersionState::Disabled => CryptoKeyVersionState::Disabled,
        KeyVersionState::Destroyed => CryptoKeyVersionState::Destroyed,
    };
    pb::CryptoKeyVersion {
        name: service::version_name(&v.key, v.version),
        state: state.into(),
        protection_level: pb::ProtectionLevel::Software.into(),
        algorithm: CryptoKeyVersionAlgorithm::GoogleSymmetricEncryption.into(),
        create_time: timestamp(v.create_time),
        generate_time: timestamp(v.create_time),
        ..Default::default()
    }
}

fn crypto_key(k: KeyAndPrimary) -> pb::CryptoKey {
    pb::CryptoKey {
        primary: k.primary.as_ref().map(key_version),
        // Cloister's one purpose (the store refuses any other).
        purpose: CryptoKeyPurpose::EncryptDecrypt.into(),
        create_time: timestamp(k.key.create_time),
        version_template: Some(pb::CryptoKeyVersionTemplate {
            protection_level: pb::ProtectionLevel::Software.into(),
            algorithm: CryptoKeyVersionAlgorithm::GoogleSymmetricEncryption.into(),
        }),
        name: k.key.name,
        ..Default::default()
    }
}

/// One page of `items` from `page_token` (the offset a previous page gave), and the token of
/// the next page, empty after the last. `page_size` 0 means all.
fn page<T>(items: Vec<T>, page_size: i32, page_token: &str) -> Result<(Vec<T>, String), ApiError> {
    let start = if page_token.is_empty() {
        0
    } else {
        page_token
            .parse::<usize>()
            .ok()
            .filter(|s| *s <= items.len())
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!("page_token {page_token:?} is not valid"))
            })?
    };
    let size = match usize::try_from(page_size) {
        Ok(0) => items.len(),
        Ok(n) => n,
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "page_size {page_size} is negative"
            )));
        }
    };
    let end = start.saturating_add(size).min(items.len());
    let next = if end < items.len() {
        end.to_string()
    } else {
        String::new()
    };
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

/// Refuses what Cloister does not do instead of ignoring it.
fn unsupported(field: &str, value: &str) -> Result<(), ApiError> {
    if value.is_empty() {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "{field} is not supported by Cloister; leave it empty"
        )))
    }
}

fn total(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

async fn create_key_ring(
    state: AppState,
    caller: Principal,
    req: pb::CreateKeyRingRequest,
) -> Result<pb::KeyRing, ApiError> {
    let ring = service::create_key_ring(&state, &caller, &req.parent, &req.key_ring_id).await?;
    Ok(key_ring(ring))
}

async fn get_key_ring(
    state: AppState,
    caller: Principal,
    req: pb::GetKeyRingRequest,
) -> Result<pb::KeyRing, ApiError> {
    let ring = service::key_ring(&state, &caller, &req.name, "cloudkms.keyRings.get").await?;
    Ok(key_ring(ring))
}

async fn list_key_rings(
    state: AppState,
    caller: Principal,
    req: pb::ListKeyRingsRequest,
) -> Result<pb::ListKeyRingsResponse, ApiError> {
    unsupported("filter", &req.filter)?;
    unsupported("order_by", &req.order_by)?;
    let rings = service::list_key_rings(&state, &caller, &req.parent).await?;
    let total_size = total(rings.len());
    let (rings, next_page_token) = page(rings, req.page_size, &req.page_token)?;
    Ok(pb::ListKeyRingsResponse {
        key_rings: rings.into_iter().map(key_ring).collect(),
        next_page_token,
        total_size,
    })
}

async fn create_crypto_key(
    state: AppState,
    caller: Principal,
    req: pb::CreateCryptoKeyRequest,
) -> Result<pb::CryptoKey, ApiError> {
    if req.skip_initial_version_creation {
        return Err(ApiError::InvalidArgument(
            "skip_initial_version_creation is not supported by Cloister: a key is created with its first version".into(),
        ));
    }
    let purpose = req.crypto_key.map_or(0, |k| k.purpose);
    let purpose = match CryptoKeyPurpose::try_from(purpose) {
        Ok(CryptoKeyPurpose::Unspecified) => None,
        Ok(p) => Some(p.as_str_name()),
        Err(_) => {
            return Err(ApiError::InvalidArgument(format!(
                "purpose {purpose} is not a CryptoKeyPurpose"
            )));
        }
    };
    let key = service::create_crypto_key(&state, &caller, &req.parent, &req.crypto_key_id, purpose)
        .await?;
    Ok(crypto_key(key))
}

async fn get_crypto_key(
    state: AppState,
    caller: Principal,
    req: pb::GetCryptoKeyRequest,
) -> Result<pb::CryptoKey, ApiError> {
    Ok(crypto_key(
        service::get_crypto_key(&state, &caller, &req.name).await?,
    ))
}

async fn list_crypto_keys(
    state: AppState,
    caller: Principal,
    req: pb::ListCryptoKeysRequest,
) -> Result<pb::ListCryptoKeysResponse, ApiError> {
    unsupported("filter", &req.filter)?;
    unsupported("order_by", &req.order_by)?;
    let keys = service::list_crypto_keys(&state, &caller, &req.parent).await?;
    let total_size = total(keys.len());
    let (keys, next_page_token) = page(keys, req.page_size, &req.page_token)?;
    Ok(pb::ListCryptoKeysResponse {
        crypto_keys: keys.into_iter().map(crypto_key).collect(),
        next_page_token,
        total_size,
    })
}

async fn get_crypto_key_version(
    state: AppState,
    caller: Principal,
    req: pb::GetCryptoKeyVersionRequest,
) -> Result<pb::CryptoKeyVersion, ApiError> {
    Ok(key_version(
        &service::get_key_version(&state, &caller, &req.name).await?,
    ))
}

async fn list_crypto_key_versions(
    state: AppState,
    caller: Principal,
    req: pb::ListCryptoKeyVersionsRequest,
) -> Result<pb::ListCryptoKeyVersionsResponse, ApiError> {
    unsupported("filter", &req.filter)?;
    unsupported("order_by", &req.order_by)?;
    let versions = service::list_key_versions(&state, &caller, &req.parent).await?;
    let total_size = total(versions.len());
    let (versions, next_page_token) = page(versions, req.page_size, &req.page_token)?;
    Ok(pb::ListCryptoKeyVersionsResponse {
        crypto_key_versions: versions.iter().map(key_version).collect(),
        next_page_token,
        total_size,
    })
}

async fn destroy_crypto_key_version(
    state: AppState,
    caller: Principal,
    req: pb::DestroyCryptoKeyVersionRequest,
) -> Result<pb::CryptoKeyVersion, ApiError> {
    Ok(key_version(
        &service::destroy_key_version(&state, &caller, &req.name).await?,
    ))
}

async fn encrypt(
    state: AppState,
    caller: Principal,
    req: pb::EncryptRequest,
) -> Result<pb::EncryptResponse, ApiError> {
    let r = service::encrypt(
        &state,
        &caller,
        service::EncryptRequest {
            name: req.name,
            plaintext: req.plaintext,
            additional_authenticated_data: req.additional_authenticated_data,
            plaintext_crc32c: req.plaintext_crc32c,
            additional_authenticated_data_crc32c: req.additional_authenticated_data_crc32c,
        },
    )
    .await?;
    Ok(pb::EncryptResponse {
        name: r.name,
        ciphertext: r.ciphertext,
        ciphertext_crc32c: Some(r.ciphertext_crc32c.into()),
        verified_plaintext_crc32c: r.verified_plaintext_crc32c,
        verified_additional_authenticated_data_crc32c: r
            .verified_additional_authenticated_data_crc32c,
        protection_level: pb::ProtectionLevel::Software.into(),
    })
}

async fn decrypt(
    state: AppState,
    caller: Principal,
    req: pb::DecryptRequest,
) -> Result<pb::DecryptResponse, ApiError> {
    let r = service::decrypt(
        &state,
        &caller,
        service::DecryptRequest {
            name: req.name,
            ciphertext: req.ciphertext,
            additional_authenticated_data: req.additional_authenticated_data,
            ciphertext_crc32c: req.ciphertext_crc32c,
            additional_authenticated_data_crc32c: req.additional_authenticated_data_crc32c,
        },
    )
    .await?;
    Ok(pb::DecryptResponse {
        plaintext: r.plaintext,
        plaintext_crc32c: Some(r.plaintext_crc32c.into()),
        used_primary: r.used_primary,
        protection_level: pb::ProtectionLevel::Software.into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_follow_their_tokens_to_the_end() {
        let items: Vec<u32> = (0..5).collect();
        assert_eq!(
            page(items.clone(), 0, "").unwrap(),
            (items.clone(), String::new())
        );
        let (first, next) = page(items.clone(), 2, "").unwrap();
        assert_eq!((first, next.as_str()), (vec![0, 1], "2"));
        let (second, next) = page(items.clone(), 2, &next).unwrap();
        assert_eq!((second, next.as_str()), (vec![2, 3], "4"));
        let (last, next) = page(items.clone(), 2, &next).unwrap();
        assert_eq!((last, next.as_str()), (vec![4], ""));
        for (size, token) in [(2, "six"), (2, "6"), (-1, "")] {
            assert!(matches!(
                page(items.clone(), size, token),
                Err(ApiError::InvalidArgument(_))
            ));
        }
    }
}
