//! `cloister attest decode-token FILE`: verify an attestation token against its issuer's
//! published keys (OIDC discovery) and print its claims.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::Subcommand;
use cloister_client::ApiClient;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::Context;
use super::format::print_one;

#[derive(Debug, Subcommand)]
pub enum AttestCommand {
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

pub async fn run(ctx: &mut Context, c: AttestCommand) -> Result<()> {
    let AttestCommand::DecodeToken {
        file,
        issuer,
        audience,
    } = c;
    let token = if file.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?
    };
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
