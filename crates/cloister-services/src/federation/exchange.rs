//! The heart of federation: verify a subject token against a provider, map its claims, and
//! apply the attribute condition. Used by STS and by `explain`.

use axum::http::StatusCode;
use cloister_condition::{ClauseOutcome, ClauseReport, Judgement};
use cloister_domain::{ClauseVerdict, ComparedValue, Principal};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::judge::{Judge, JudgeError};
use super::jwks;
use super::provider::CompiledProvider;
use crate::error::ApiError;
use crate::jwt::{self, Malformed};
use crate::state::AppState;
use crate::time_util;

pub const MAX_SUBJECT_TOKEN_BYTES: usize = 16 * 1024;
/// The clock skew tolerated between the issuer and Cloister.
pub const CLOCK_SKEW_SECS: u64 = 60;
/// Google's exact answer when the attribute condition refuses a credential.
pub const CONDITION_REJECTED: &str = "The given credential is rejected by the attribute condition.";
const INVALID_TARGET: &str = "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.";

#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{INVALID_TARGET}")]
    InvalidTarget,
    #[error("{0}")]
    InvalidGrant(String),
    /// The condition said no (or failed); `reason` and `clauses` are for the audit log, never
    /// the client.
    #[error("{CONDITION_REJECTED}")]
    Rejected {
        reason: String,
        clauses: Vec<ClauseVerdict>,
    },
    /// Retry later: every condition worker is busy.
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] ApiError),
}

impl ExchangeError {
    /// The HTTP status and OAuth error code (RFC 6749 §5.2, as Google's STS uses them).
    pub fn oauth(&self) -> (StatusCode, &'static str) {
        match self {
            ExchangeError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            ExchangeError::InvalidTarget => (StatusCode::BAD_REQUEST, "invalid_target"),
            ExchangeError::InvalidGrant(_) => (StatusCode::BAD_REQUEST, "invalid_grant"),
            ExchangeError::Rejected { .. } => (StatusCode::BAD_REQUEST, "unauthorized_client"),
            ExchangeError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "temporarily_unavailable")
            }
            ExchangeError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
        }
    }
}

fn grant(msg: String) -> ExchangeError {
    ExchangeError::InvalidGrant(msg)
}

fn unaccepted_algorithm(alg: &str) -> ExchangeError {
    grant(format!(
        "The subject token's algorithm {alg:?} is not accepted: use RS256 or ES256."
    ))
}

/// Verifies signature, algorithm, issuer, audience and time claims; returns the claims.
/// Surrounding whitespace is not part of the token (a token file ends in a newline).
pub async fn verify_subject_token(
    state: &AppState,
    provider: &CompiledProvider,
    token: &str,
) -> Result<Value, ExchangeError> {
    let token = jwt::trim(token);
    if token.len() > MAX_SUBJECT_TOKEN_BYTES {
        return Err(ExchangeError::InvalidRequest(format!(
            "The subject token is {} bytes; at most {MAX_SUBJECT_TOKEN_BYTES} are accepted.",
            token.len()
        )));
    }
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| match jwt::malformed(token, &e) {
            Some(Malformed::Algorithm(alg)) => unaccepted_algorithm(&alg),
            Some(m) => grant(format!("The subject token is malformed: {m}.")),
            None => grant("The subject token is malformed: it is not a well-formed JWT.".into()),
        })?;
    // Asymmetric algorithms only: an HMAC "signed" with the issuer's public key proves nothing.
    if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
        let alg = jwt::header_alg(token).unwrap_or_default();
        return Err(unaccepted_algorithm(&alg));
    }
    let kid = header.kid.as_deref();
    // This Cloister's own verifier is read in process, never over HTTP to ourselves; and its
    // tokens verify with its own keys only, never with keys a provider gives inline (a
    // tenant's own keys would mint "this server's" tokens).
    let local = (provider.issuer.trim_end_matches('/') == state.public_url)
        .then(|| state.attestation_keys.jwk_set());
    let jwk = match local.as_ref().or(provider.jwks.as_ref()) {
        Some(set) => jwks::select(set, &provider.issuer, kid),
        None => state.jwks.key(&provider.issuer, kid).await,
    }
    .map_err(|e| grant(format!("The subject token cannot be verified: {e}.")))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| {
        tracing::info!(issuer = %provider.issuer, error = %e, "an issuer's key is unusable");
        grant(format!(
            "The issuer's key {} is unusable: it is not an RSA or P-256 public key.",
            kid.unwrap_or("(without a kid)")
        ))
    })?;

    let mut validation = Validation::new(header.alg);
    validation.leeway = CLOCK_SKEW_SECS;
    validation.validate_nbf = true;
    validation.set_issuer(&[&provider.issuer]);
    let audiences: Vec<String> = if provider.allowed_audiences.is_empty() {
        vec![
            format!("https://iam.googleapis.com/{}", provider.name),
            format!("//iam.googleapis.com/{}", provider.name),
        ]
    } else {
        provider.allowed_audiences.clone()
    };
    validation.set_audience(&audiences);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]); // and `iat`, below

    let unverified = || {
        jsonwebtoken::dangerous::insecure_decode::<Value>(token)
            .map(|d| d.claims)
            .unwrap_or_default()
    };
    let claims = jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map_err(|e| match e.kind() {
            ErrorKind::InvalidSignature => grant("The subject token's signature does not verify: the token was altered or not signed by the issuer.".into()),
            ErrorKind::ExpiredSignature => grant(format!(
                "The subject token expired at {}.",
                time_util::unix_to_rfc3339_seconds(unverified()["exp"].as_i64().unwrap_or_default())
            )),
            ErrorKind::ImmatureSignature => grant(format!(
                "The subject token is not valid before {}.",
                time_util::unix_to_rfc3339_seconds(unverified()["nbf"].as_i64().unwrap_or_default())
            )),
            ErrorKind::InvalidIssuer => grant(format!(
                "The issuer in the subject token ({}) does not match the provider's issuer {}.",
                unverified()["iss"], provider.issuer
            )),
            ErrorKind::InvalidAudience => grant(format!(
                "The audience in the subject token ({}) is not one the provider allows ({}).",
                unverified()["aud"],
                audiences.join(", ")
            )),
            ErrorKind::MissingRequiredClaim(c) => grant(format!("The subject token has no {c} claim.")),
            ErrorKind::InvalidAlgorithm => grant("The subject token's algorithm does not match the issuer's key.".into()),
            _ => grant(format!("The subject token is malformed: {}.", jwt::reason(token, &e))),
        })?
        .claims;
    // The JWT library does not enforce `iat` even when asked to; Google requires it.
    let Some(iat) = claims.get("iat").and_then(Value::as_f64) else {
        return Err(grant(
            "The subject token has no iat claim (its issue time, in seconds since the epoch)."
                .into(),
        ));
    };
    if iat > (time_util::now_unix() as u64 + CLOCK_SKEW_SECS) as f64 {
        return Err(grant(format!(
            "The subject token was issued in the future ({}).",
            time_util::unix_to_rfc3339_seconds(iat as i64)
        )));
    }
    Ok(claims)
}

/// Maps the claims and applies the condition (in the judge's worker); returns the federated
/// principal and each clause's verdict (all PASS), which the audit log keeps as it keeps a
/// refusal's.
pub async fn authorize(
    judge: &Judge,
    provider: &CompiledProvider,
    claims: &Value,
) -> Result<(Principal, Vec<ClauseVerdict>), ExchangeError> {
    let (mapped, verdict, clauses) = match judge.judge(&provider.question(claims)).await {
        Ok(Judgement::Unmapped(e)) => {
            return Err(grant(format!("The attribute mapping failed: {e}.")));
        }
        Ok(Judgement::Mapped {
            attributes,
            verdict,
            clauses,
        }) => (attributes, verdict, clauses),
        Err(e @ (JudgeError::OverLimits(_) | JudgeError::Expression(_))) => {
            return Err(grant(format!(
                "The provider could not judge the token: {e}."
            )));
        }
        Err(e @ JudgeError::Busy) => return Err(ExchangeError::Unavailable(e.to_string())),
        Err(e @ JudgeError::Worker { .. }) => {
            return Err(ApiError::Internal(format!("{e}: {}", e.chain_tail())).into());
        }
    };
    let clauses: Vec<ClauseVerdict> = clauses.into_iter().map(verdict_of).collect();
    if verdict != Ok(true) {
        let failed: Vec<&str> = clauses
            .iter()
            .filter(|c| c.outcome != cloister_domain::ClauseOutcome::Pass)
            .map(|c| c.clause.as_str())
            .collect();
        let reason = match verdict {
            Err(e) => format!("{e}; failing clauses: {}", failed.join("; ")),
            _ => format!(
                "attribute condition is false; failing clauses: {}",
                failed.join("; ")
            ),
        };
        return Err(ExchangeError::Rejected { reason, clauses });
    }
    let principal = Principal::Federated {
        pool_project_number: provider.pool_project_number,
        pool_id: provider.pool_id.clone(),
        subject: mapped.subject,
        attributes: mapped.attributes,
        groups: mapped.groups,
    };
    Ok((principal, clauses))
}

/// A clause's report as the audit log keeps it.
pub fn verdict_of(report: ClauseReport) -> ClauseVerdict {
    use cloister_domain::ClauseOutcome as Outcome;
    let (outcome, detail) = match report.outcome {
        ClauseOutcome::Pass => (Outcome::Pass, None),
        ClauseOutcome::Fail => (Outcome::Fail, None),
        ClauseOutcome::Error(e) => (Outcome::Error, Some(e)),
    };
    ClauseVerdict {
        clause: report.clause,
        outcome,
        detail,
        compared: report
            .compared
            .into_iter()
            .map(|(expression, value)| ComparedValue { expression, value })
            .collect(),
    }
}
