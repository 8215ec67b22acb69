//! `POST /v1/projects/{p}/locations/{l}/challenges` and
//! `POST /v1/projects/{p}/locations/{l}/challenges/{id}:verifyAttestation`.

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cloister_domain::{AttestationDetails, AuditDetails, Decision, Email, Principal, ProjectId};
use cloister_store::{ChallengeRecord, ConsumeError};
use jsonwebtoken::{Algorithm, Validation};
use rand::RngCore;
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::claims::token_claims;
use super::evidence;
use super::token_types::{TokenOptions, TokenType, aws_principal_tags};
use super::{CHALLENGE_LIFETIME_SECS, DEFAULT_AUDIENCE};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::json::ApiJson;
use crate::jwt;
use crate::state::AppState;
use crate::time_util;

/// The audit "permission" of an issued attestation token.
pub const ISSUE_ACTION: &str = "confidentialcomputing.attestationTokens.issue";

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/projects/{project}/locations/{location}/challenges",
            post(create),
        )
        .route(
            "/v1/projects/{project}/locations/{location}/challenges/{challenge}",
            post(verify),
        )
}

fn parse_location(project: &str, location: &str) -> Result<ProjectId, ApiError> {
    let project =
        ProjectId::parse(project).map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    let ok = !location.is_empty()
        && location.len() <= 32
        && location
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(ApiError::InvalidArgument(format!(
            "location {location:?} is not a location such as us-central1"
        )));
    }
    Ok(project)
}

async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path((project, location)): Path<(String, String)>,
    ApiJson(_): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let project = parse_location(&project, &location)?;
    state
        .authorizer
        .check(
            &caller,
            "confidentialcomputing.challenges.create",
            &project.resource_name(),
        )
        .await?;
    if state.store.get_project(&project).await?.is_none() {
        return Err(ApiError::NotFound(format!(
            "Project {project} was not found"
        )));
    }
    let mut nonce = vec![0u8; 32];
    rand::rng().fill_bytes(&mut nonce);
    let now = OffsetDateTime::now_utc();
    let record = ChallengeRecord {
        name: format!(
            "projects/{project}/locations/{location}/challenges/{}",
            uuid::Uuid::new_v4()
        ),
        project_id: project,
        nonce,
        create_time: now,
        expire_time: now + time::Duration::seconds(CHALLENGE_LIFETIME_SECS),
    };
    state.store.create_challenge(&record).await?;
    Ok(Json(json!({
        "name": record.name,
        "createTime": time_util::rfc3339_seconds(record.create_time),
        "expireTime": time_util::rfc3339_seconds(record.expire_time),
        "used": false,
        "tpmNonce": STANDARD.encode(&record.nonce),
    })))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct VerifyRequest {
    #[serde(default)]
    gcp_credentials: GcpCredentials,
    #[serde(default, alias = "token_options")]
    token_options: TokenOptions,
    #[serde(default)]
    insecure_attestation: Option<evidence::InsecureAttestation>,
    #[serde(default)]
    tpm_attestation: Option<evidence::TpmAttestation>,
    #[serde(default)]
    sev_snp_attestation: Option<super::snp::SevSnpAttestation>,
    #[serde(default)]
    td_ccel: Option<super::tdx::TdxCcelAttestation>,
    /// Container image signatures the launcher found (judged here, never trusted).
    #[serde(default)]
    confidential_space_info: super::signatures::ConfidentialSpaceInfo,
}

/// The one kind of evidence a request carries.
enum Evidence<'a> {
    Insecure(&'a evidence::InsecureAttestation),
    Vtpm(&'a evidence::TpmAttestation),
    SevSnp(&'a super::snp::SevSnpAttestation),
    Tdx(&'a super::tdx::TdxCcelAttestation),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct GcpCredentials {
    #[serde(default)]
    service_account_id_tokens: Vec<String>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::InvalidArgument(msg.into())
}

/// Verifies a service account ID token issued by this Cloister (in process: the issuer is
/// ours) for the verifier's audience; returns its email.
async fn verify_id_token(state: &AppState, token: &str) -> Result<Email, ApiError> {
    let refuse = |why: String| {
        ApiError::InvalidArgument(format!("gcpCredentials.serviceAccountIdTokens: {why}"))
    };
    let token = jwt::trim(token);
    let header = jsonwebtoken::decode_header(token).map_err(|e| refuse(jwt::reason(token, &e)))?;
    if header.alg != Algorithm::RS256 {
        return Err(refuse("ID tokens are RS256".into()));
    }
    let kid = header
        .kid
        .ok_or_else(|| refuse("the ID token has no kid".into()))?;
    let key = state.account_keys.decoding_key(&kid).await.ok_or_else(|| {
        refuse(format!(
            "key {kid:?} is not one of this Cloister's service-account keys"
        ))
    })?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[state.account_keys.issuer()]);
    v.set_audience(&[&state.public_url]);
    v.leeway = 60;
    let claims = jsonwebtoken::decode::<Value>(token, &key, &v)
        .map_err(|e| {
            refuse(format!(
                "the ID token does not verify: {}; request one for audience {}",
                jwt::reason(token, &e),
                state.public_url
            ))
        })?
        .claims;
    let email = claims["email"].as_str().ok_or_else(|| {
        refuse("the ID token has no email claim; request it with includeEmail".into())
    })?;
    Email::parse(email).map_err(|e| refuse(e.to_string()))
}

async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    path: Path<(String, String, String)>,
    body: ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let result = verify_attestation(&state, caller, path, body).await;
    if let Err(e) = &result {
        state.metrics.attestation_failure(failure_reason(e));
    }
    result
}

/// A coarse, bounded reason for the metrics (the message itself goes to the caller and log).
fn failure_reason(e: &ApiError) -> &'static str {
    let m = e.to_string();
    match e {
        ApiError::PermissionDenied { .. } => "permission",
        ApiError::NotFound(_) => "challenge_not_found",
        _ if m.contains("Challenge") => "challenge",
        _ if m.contains("serviceAccountIdTokens") => "identity_token",
        _ if m.contains("tokenOptions") => "token_options",
        _ => "evidence",
    }
}

async fn verify_attestation(
    state: &AppState,
    Caller(caller): Caller,
    Path((project, location, challenge)): Path<(String, String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let state = state.clone();
    let Some((id, "verifyAttestation")) = challenge.split_once(':') else {
        return Err(ApiError::NotFound(format!(
            "POST …/challenges/{challenge} is not a method; use :verifyAttestation"
        )));
    };
    let project = parse_location(&project, &location)?;
    let name = format!("projects/{project}/locations/{location}/challenges/{id}");
    let Principal::ServiceAccount(caller_email) = &caller else {
        return Err(ApiError::PermissionDenied {
            message: format!(
                "verifyAttestation is called by the instance's service account, not {caller}"
            ),
            permission: "confidentialcomputing.challenges.verify".into(),
            resource: project.resource_name(),
        });
    };
    state
        .authorizer
        .check(
            &caller,
            "confidentialcomputing.challenges.verify",
            &project.resource_name(),
        )
        .await?;
    let req: VerifyRequest = serde_json::from_value(body)
        .map_err(|e| bad(format!("Invalid verifyAttestation request: {e}")))?;
    let requested = req.token_options.check()?;
    req.confidential_space_info.check()?;

    // The ID tokens name the accounts the token will vouch for: the first is the caller's own;
    // any others are accounts the workload impersonates (`tee-impersonate-service-accounts`),
    // whose ID tokens only a principal IAM let call generateIdToken on them could hold.
    if req.gcp_credentials.service_account_id_tokens.is_empty() {
        return Err(bad(
            "gcpCredentials.serviceAccountIdTokens must hold the instance service account's ID token",
        ));
    }
    let mut accounts = Vec::new();
    for (i, token) in req
        .gcp_credentials
        .service_account_id_tokens
        .iter()
        .enumerate()
    {
        let email = verify_id_token(&state, token).await?;
        if i == 0 && email != *caller_email {
            return Err(ApiError::PermissionDenied {
                message: format!(
                    "the ID token is for {email}, but the caller is {caller_email}; send the caller's own ID token"
                ),
                permission: "confidentialcomputing.challenges.verify".into(),
                resource: project.resource_name(),
            });
        }
        // An impersonated account: a leaked ID token is not enough, the caller itself must be
        // allowed to mint that account's ID tokens.
        if i > 0 && email != *caller_email {
            let (_, resource) = crate::iam::service_accounts::resource_of(email.as_str())?;
            state
                .authorizer
                .check(&caller, "iam.serviceAccounts.getOpenIdToken", &resource)
                .await?;
        }
        if !accounts.contains(&email.to_string()) {
            accounts.push(email.to_string());
        }
    }

    // Which evidence was sent, decided before the challenge is spent on a malformed request.
    let sent = match (
        &req.insecure_attestation,
        &req.tpm_attestation,
        &req.sev_snp_attestation,
        &req.td_ccel,
    ) {
        (Some(e), None, None, None) => Evidence::Insecure(e),
        (None, Some(e), None, None) => Evidence::Vtpm(e),
        (None, None, Some(e), None) => Evidence::SevSnp(e),
        (None, None, None, Some(e)) => Evidence::Tdx(e),
        _ => {
            return Err(bad(
                "send exactly one kind of evidence: insecureAttestation, tpmAttestation, sevSnpAttestation or tdCcel",
            ));
        }
    };
    if matches!(sent, Evidence::Insecure(_)) && !state.allow_insecure_evidence {
        return Err(ApiError::FailedPrecondition(
            "insecureAttestation is refused by this server: nothing vouches for its event log, so any caller could claim any image. Send tpmAttestation, sevSnpAttestation or tdCcel evidence (an instance with confidentialInstanceType VTPM, SEV_SNP or TDX); on a development machine only, start the server with --allow-insecure-evidence".into(),
        ));
    }
    // Consume the challenge before judging the evidence: a nonce is spent even on failure.
    let now = OffsetDateTime::now_utc();
    let consumed = state.store.consume_challenge(&name, now).await?;
    let challenge = match consumed {
        Ok(c) => c,
        Err(ConsumeError::NotFound) => {
            return Err(ApiError::NotFound(format!(
                "Challenge {name} was not found"
            )));
        }
        Err(ConsumeError::AlreadyUsed) => {
            return Err(bad(format!(
                "Challenge {name} was already used; request a new challenge for each attestation"
            )));
        }
        Err(ConsumeError::Expired { expire_time }) => {
            return Err(bad(format!(
                "Challenge {name} expired at {}; request a new challenge",
                time_util::rfc3339_seconds(expire_time)
            )));
        }
    };
    let mut verified = match sent {
        Evidence::Insecure(e) => evidence::insecure(e, &challenge, accounts)?,
        Evidence::Vtpm(e) => evidence::vtpm(&state, e, &challenge, accounts).await?,
        Evidence::SevSnp(e) => super::snp::verify(&state, e, &challenge, accounts).await?,
        Evidence::Tdx(e) => super::tdx::verify(&state, e, &challenge, accounts).await?,
    };
    let (mut image_signatures, mut left_out) = req
        .confidential_space_info
        .judge(&verified.container.image_digest);
    // A signature vouches for a digest; it says nothing of an image nobody measured.
    if !verified.measured && !image_signatures.is_empty() {
        left_out.push(format!(
            "{} container image signature(s) left out: INSECURE evidence measures no image, so no signature can vouch for it",
            image_signatures.len()
        ));
        image_signatures.clear();
    }
    verified.image_signatures = image_signatures;
    let audience = req
        .token_options
        .audience
        .as_deref()
        .unwrap_or(DEFAULT_AUDIENCE);
    let mut claims = token_claims(
        &verified,
        &state.public_url,
        audience,
        &req.token_options.nonce,
        now.unix_timestamp(),
        state.attestation_token_lifetime_secs,
    );
    let token = match requested.token_type {
        TokenType::Oidc => state.attestation_keys.sign(&claims),
        TokenType::AwsPrincipalTags => {
            claims["https://aws.amazon.com/tags"] =
                aws_principal_tags(&claims, &requested.allowed_key_ids);
            state.attestation_keys.sign(&claims)
        }
        // No `kid`: a PKI token is verified through its chain, not the JWKS.
        TokenType::Pki => state
            .attestation_keys
            .sign_with(&claims, |kid, spki| {
                let lifetime = time::Duration::seconds(state.attestation_token_lifetime_secs);
                let chain = state.attestation_pki.chain(kid, spki, now, lifetime)?;
                let x5c: Vec<String> = chain.iter().map(|c| STANDARD.encode(c)).collect();
                Ok::<_, super::pki::PkiError>(json!({"alg": "RS256", "typ": "JWT", "x5c": x5c}))
            })
            .map_err(|e| ApiError::Internal(e.to_string()))?,
    };
    state.metrics.token("attestation");
    // The claims as issued (never the signed token): the instance's trust chain shows them.
    let details = AuditDetails::AttestationToken(AttestationDetails { claims });
    state
        .authorizer
        .record_detailed(
            caller.to_string(),
            ISSUE_ACTION,
            &name,
            Decision::Allow,
            format!(
                "{} evidence; image {}{}",
                verified.hwmodel,
                verified.container.image_digest,
                signatures_note(verified.image_signatures.len(), &left_out)
            ),
            Some(details),
        )
        .await;
    let mut answer = json!({ "oidcClaimsToken": token });
    // Google's `partialErrors`: what was left out of the token, and why.
    if !left_out.is_empty() {
        answer["partialErrors"] = left_out
            .iter()
            .map(|why| json!({"code": 3, "message": why}))
            .collect();
    }
    Ok(Json(answer))
}

/// The audit detail about signatures: how many count, and why the others do not.
fn signatures_note(valid: usize, left_out: &[String]) -> String {
    if valid == 0 && left_out.is_empty() {
        return String::new();
    }
    let mut note = format!("; {valid} image signature(s) verified");
    if !left_out.is_empty() {
        note.push_str(&format!("; left out: {}", left_out.join("; ")));
    }
    note
}
