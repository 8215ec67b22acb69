//! `cloister attest decode-token FILE`: verify an attestation token against its issuer's
//! published keys (OIDC discovery) and print its claims.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use cloister_client::ApiClient;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::Context;
use super::files;
use super::format::print_one;
use super::output::outln;

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
    /// Verify recorded TEE evidence offline and print the verdict and claims as JSON
    /// (exit 0 verified, 1 refused, 2 unusable input).
    VerifyEvidence(VerifyEvidenceArgs),
    /// Verify a token's signature with its issuer's JWKS and print its claims.
    DecodeToken {
        /// A file holding the token (`-` for standard input).
        file: PathBuf,
        /// The issuer to trust [default: the profile's endpoint].
        #[arg(long)]
        issuer: Option<String>,
        /// Check the audience too.
        #[arg(long)]
        audience: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvidenceKind {
    SevSnp,
    Tdx,
    Sgx,
    Tpm,
}

#[derive(Debug, clap::Args)]
pub struct VerifyEvidenceArgs {
    /// The kind of evidence in the files.
    #[arg(long, value_enum)]
    kind: EvidenceKind,
    /// sev-snp: the report (1184 bytes, raw or hex) and its VCEK or VLEK (DER).
    files: Vec<PathBuf>,
    /// Verify as of this time (RFC 3339) instead of now.
    #[arg(long)]
    now: Option<String>,
    /// Verification collateral (TDX/SGX): dcap-qvl's QuoteCollateralV3 JSON, or a directory
    /// caching it per platform as `{FMSPC}.json`.
    #[arg(long)]
    collateral: Option<PathBuf>,
    /// sev-snp without a VCEK file: look it up in this directory, under the chip id and
    /// reported TCB (`CHIPID-TCB.der`; a missing one is named in the error).
    #[arg(long)]
    vcek_cache: Option<PathBuf>,
}

/// The report bytes: raw, or hex text as AMD's tools print it.
fn report_bytes(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() == cloister_snp::report::REPORT_LEN {
        return bytes;
    }
    let text: String = String::from_utf8_lossy(&bytes).split_whitespace().collect();
    hex::decode(text).unwrap_or(bytes)
}

pub fn verify_evidence(args: VerifyEvidenceArgs) -> std::process::ExitCode {
    use std::process::ExitCode;
    let unusable = |m: String| {
        let _ = outln!(
            "{}",
            serde_json::json!({"verdict": "unusable", "reason": m})
        );
        ExitCode::from(2)
    };
    let now = match &args.now {
        None => time::OffsetDateTime::now_utc(),
        Some(t) => {
            match time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339) {
                Ok(t) => t,
                Err(e) => return unusable(format!("--now {t:?} is not an RFC 3339 time: {e}")),
            }
        }
    };
    match args.kind {
        EvidenceKind::SevSnp => {}
        EvidenceKind::Tdx | EvidenceKind::Sgx => return verify_dcap(&args, now),
        EvidenceKind::Tpm => {
            return unusable("tpm evidence is verified by verifyAttestation (it needs the platform's identity CA), not offline".into());
        }
    }
    let (report, cert) = match (args.files.as_slice(), &args.vcek_cache) {
        ([report, cert], _) => match (std::fs::read(report), std::fs::read(cert)) {
            (Ok(r), Ok(c)) => (report_bytes(r), c),
            (Err(e), _) | (_, Err(e)) => return unusable(format!("reading the evidence: {e}")),
        },
        ([report], Some(cache)) => {
            let report = match std::fs::read(report) {
                Ok(r) => report_bytes(r),
                Err(e) => return unusable(format!("reading the report: {e}")),
            };
            let name = match cloister_snp::vcek_cache_name(&report) {
                Ok(n) => n,
                Err(e) => return unusable(e.to_string()),
            };
            match std::fs::read(cache.join(&name)) {
                Ok(c) => (report, c),
                Err(_) => {
                    return unusable(format!(
                        "no VCEK for this chip and TCB in {}: put it there as {name} (from AMD's KDS, fetched ahead of time)",
                        cache.display()
                    ));
                }
            }
        }
        _ => {
            return unusable(
                "sev-snp takes the report and its VCEK or VLEK, or the report and --vcek-cache DIR"
                    .into(),
            );
        }
    };
    let verdict = cloister_snp::verify(&report, &cert, now)
        .and_then(|v| cloister_snp::Policy::default().check(&v).map(|()| v));
    match verdict {
        Ok(v) => {
            let claims = serde_json::json!({
                "hwmodel": "GCP_AMD_SEV_SNP",
                "dbgstat": if v.debug { "enabled" } else { "disabled-since-boot" },
                "snp": v,
            });
            let _ = outln!(
                "{}",
                serde_json::json!({"verdict": "verified", "claims": claims})
            );
            ExitCode::SUCCESS
        }
        Err(cloister_snp::SnpError::Refused(reason)) => {
            let _ = outln!(
                "{}",
                serde_json::json!({"verdict": "refused", "reason": reason})
            );
            ExitCode::from(1)
        }
        Err(cloister_snp::SnpError::Malformed(reason)) => unusable(reason),
    }
}

/// TDX or SGX: one quote file and `--collateral` (dcap-qvl's QuoteCollateralV3 JSON, or a
/// cache directory holding it as `{FMSPC}.json`).
fn verify_dcap(args: &VerifyEvidenceArgs, now: time::OffsetDateTime) -> std::process::ExitCode {
    use std::process::ExitCode;
    let print = |v: serde_json::Value| {
        // The exit code carries the verdict; a closed stdout loses only the detail.
        let _ = outln!("{v}");
    };
    let ([quote], Some(collateral)) = (args.files.as_slice(), &args.collateral) else {
        print(
            serde_json::json!({"verdict": "unusable", "reason": "tdx/sgx take one quote file and --collateral FILE"}),
        );
        return ExitCode::from(2);
    };
    let quote = match std::fs::read(quote) {
        Ok(q) => q,
        Err(e) => {
            print(
                serde_json::json!({"verdict": "unusable", "reason": format!("reading {}: {e}", quote.display())}),
            );
            return ExitCode::from(2);
        }
    };
    let collateral = if collateral.is_dir() {
        match cloister_tdx::fmspc(&quote) {
            Ok(fmspc) => collateral.join(cloister_tdx::collateral_cache_name(&fmspc)),
            Err(e) => {
                print(serde_json::json!({"verdict": "unusable", "reason": e.to_string()}));
                return ExitCode::from(2);
            }
        }
    } else {
        collateral.clone()
    };
    let collateral = match std::fs::read(&collateral) {
        Ok(c) => c,
        Err(e) => {
            print(
                serde_json::json!({"verdict": "unusable", "reason": format!("reading the collateral {}: {e}", collateral.display())}),
            );
            return ExitCode::from(2);
        }
    };
    match cloister_tdx::verify(&quote, &collateral, now.unix_timestamp().max(0) as u64) {
        Ok(v) => {
            let hwmodel = if v.tee == "TDX" {
                "GCP_INTEL_TDX"
            } else {
                "INTEL_SGX"
            };
            print(
                serde_json::json!({"verdict": "verified", "claims": {"hwmodel": hwmodel, "dbgstat": "disabled-since-boot", "dcap": v}}),
            );
            ExitCode::SUCCESS
        }
        Err(cloister_tdx::TdxError::Refused(reason)) => {
            print(serde_json::json!({"verdict": "refused", "reason": reason}));
            ExitCode::from(1)
        }
        Err(cloister_tdx::TdxError::Malformed(reason)) => {
            print(serde_json::json!({"verdict": "unusable", "reason": reason}));
            ExitCode::from(2)
        }
    }
}

pub async fn run(ctx: &mut Context, c: AttestCommand) -> Result<()> {
    let AttestCommand::DecodeToken {
        file,
        issuer,
        audience,
    } = c
    else {
        unreachable!("verify-evidence is handled before a profile is needed")
    };
    let token =
        files::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let token = token.trim();
    let issuer = match issuer {
        Some(i) => i,
        None => ctx.profile()?.endpoint,
    };
    let anonymous = ApiClient::anonymous(&issuer);
    let discovery = anonymous.get("/.well-known/openid-configuration").await?;
    let Some(jwks_uri) = discovery["jwks_uri"].as_str() else {
        bail!("{issuer}/.well-known/openid-configuration names no jwks_uri");
    };
    let jwks_path = jwks_uri
        .strip_prefix(discovery["issuer"].as_str().unwrap_or(&issuer))
        .unwrap_or("/jwks");
    let jwks: jsonwebtoken::jwk::JwkSet = serde_json::from_value(anonymous.get(jwks_path).await?)
        .context("the issuer's JWKS does not parse")?;
    let header = jsonwebtoken::decode_header(token).context("the file does not hold a JWT")?;
    if header.alg != Algorithm::RS256 {
        bail!(
            "the token is signed with {:?}; attestation tokens are RS256",
            header.alg
        );
    }
    let kid = header.kid.context("the token has no kid")?;
    let jwk = jwks
        .find(&kid)
        .with_context(|| format!("the issuer does not publish key {kid:?}"))?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[discovery["issuer"].as_str().unwrap_or(&issuer)]);
    match &audience {
        Some(a) => validation.set_audience(&[a]),
        None => validation.validate_aud = false,
    }
    let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk)?, &validation)
        .context("the token does not verify")?
        .claims;
    eprintln!("Verified: signed by {issuer} with key {kid}.");
    print_one(&ctx.format, &claims)
}
