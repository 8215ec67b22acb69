//! `cloister iam workload-identity-pools create-cred-config`: the `external_account`
//! credential configuration google-auth (and every Google client library) reads, as gcloud's
//! command of the same name writes it, with its STS and IAM Credentials URLs aimed at this
//! Cloister. A workload hands it to `google.auth.load_credentials_from_file`,
//! `identity_pool.Credentials.from_info` or `GOOGLE_APPLICATION_CREDENTIALS`; the library then
//! exchanges the attestation token in the credential source file at `token_url` and
//! impersonates the service account at `service_account_impersonation_url`.

use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use cloister_client::ApiClient;
use serde_json::{Map, Value, json};

use super::Context;
use super::files;

/// The longest access token Cloister's generateAccessToken issues (Google's default cap,
/// without the organization policy that raises it).
const MAX_LIFETIME_SECS: u32 = 3600;
/// gcloud's lower bound for `--service-account-token-lifetime-seconds`.
const MIN_LIFETIME_SECS: u32 = 600;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum SourceType {
    /// The file holds the token itself (a JWT), as Confidential Space's token file does.
    Text,
    /// The file is JSON; the token is the field --credential-source-field-name names.
    Json,
}

#[derive(Debug, Args)]
pub struct CreateCredConfig {
    /// The provider's full name:
    /// projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER
    /// (with or without the leading //iam.googleapis.com/).
    audience: String,
    /// Where to write the configuration (`-` prints it).
    #[arg(long)]
    output_file: PathBuf,
    /// The file the subject token is read from, as the workload sees it (in Confidential
    /// Space: /run/container_launcher/attestation_verifier_claims_token).
    #[arg(long)]
    credential_source_file: PathBuf,
    /// The credential source file's format.
    #[arg(long, value_enum, ignore_case = true)]
    credential_source_type: Option<SourceType>,
    /// With --credential-source-type json: the field holding the token.
    #[arg(long)]
    credential_source_field_name: Option<String>,
    /// The service account to impersonate with the federated token (its
    /// roles/iam.workloadIdentityUser binding lets the pool's identities act as it).
    #[arg(long)]
    service_account: Option<String>,
    /// Lifetime of the service account's access tokens, 600 to 3600 seconds.
    #[arg(long, requires = "service_account")]
    service_account_token_lifetime_seconds: Option<u32>,
    /// The subject token's type.
    #[arg(long, default_value = "urn:ietf:params:oauth:token-type:jwt")]
    subject_token_type: String,
}

/// `projects/N/locations/L/workloadIdentityPools/P/providers/R`, from either spelling.
fn provider_name(audience: &str) -> Result<&str> {
    let name = audience
        .strip_prefix("//iam.googleapis.com/")
        .unwrap_or(audience);
    let parts: Vec<&str> = name.split('/').collect();
    let shaped = matches!(
        parts.as_slice(),
        ["projects", p, "locations", l, "workloadIdentityPools", pool, "providers", r]
            if [p, l, pool, r].iter().all(|s| !s.is_empty())
    );
    if !shaped {
        bail!(
            "AUDIENCE {audience:?} is not a provider's full name: projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER"
        );
    }
    Ok(name)
}

/// The configuration's JSON, for Cloister at `public_url`.
fn config(c: &CreateCredConfig, public_url: &str) -> Result<Value> {
    let audience = format!("//iam.googleapis.com/{}", provider_name(&c.audience)?);
    let mut source = Map::new();
    let file = c.credential_source_file.to_str().with_context(|| {
        format!(
            "--credential-source-file {} is not UTF-8",
            c.credential_source_file.display()
        )
    })?;
    source.insert("file".into(), json!(file));
    match (c.credential_source_type, &c.credential_source_field_name) {
        (None, None) => {}
        (Some(SourceType::Text), None) => {
            source.insert("format".into(), json!({"type": "text"}));
        }
        (Some(SourceType::Json), Some(field)) => {
            source.insert(
                "format".into(),
                json!({"type": "json", "subject_token_field_name": field}),
            );
        }
        (Some(SourceType::Json), None) => {
            bail!("--credential-source-type json needs --credential-source-field-name")
        }
        (_, Some(_)) => {
            bail!("--credential-source-field-name goes with --credential-source-type json")
        }
    }
    let mut out = json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": audience,
        "subject_token_type": c.subject_token_type,
        "token_url": format!("{public_url}/v1/token"),
        "credential_source": source,
    });
    if let Some(account) = &c.service_account {
        out["service_account_impersonation_url"] = json!(format!(
            "{public_url}/v1/projects/-/serviceAccounts/{account}:generateAccessToken"
        ));
        if let Some(secs) = c.service_account_token_lifetime_seconds {
            if !(MIN_LIFETIME_SECS..=MAX_LIFETIME_SECS).contains(&secs) {
                bail!(
                    "--service-account-token-lifetime-seconds {secs} is out of range: {MIN_LIFETIME_SECS} to {MAX_LIFETIME_SECS}"
                );
            }
            out["service_account_impersonation"] = json!({"token_lifetime_seconds": secs});
        }
    }
    Ok(out)
}

pub async fn run(ctx: &Context, c: CreateCredConfig) -> Result<()> {
    // The URLs a workload must reach are the server's public URL (its issuer), which is what
    // an instance's sandbox forwards; the profile's endpoint may be another address of it.
    let endpoint = ctx.profile()?.endpoint;
    let discovery = ApiClient::anonymous(&endpoint)
        .get("/.well-known/openid-configuration")
        .await
        .with_context(|| format!("asking {endpoint} for its public URL"))?;
    let Some(public_url) = discovery["issuer"].as_str() else {
        bail!("{endpoint}'s discovery document names no issuer");
    };
    let body = config(&c, public_url.trim_end_matches('/'))?;
    let mut text = serde_json::to_string_pretty(&body)?;
    text.push('\n');
    files::write(&c.output_file, text.as_bytes())
        .with_context(|| format!("writing {}", c.output_file.display()))?;
    if !files::is_stdio(&c.output_file) {
        eprintln!(
            "Created credential configuration file [{}].",
            c.output_file.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> CreateCredConfig {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            c: CreateCredConfig,
        }
        let mut argv = vec![
            "p",
            "projects/123/locations/global/workloadIdentityPools/pool/providers/prov",
            "--output-file",
            "out.json",
            "--credential-source-file",
            "/run/container_launcher/attestation_verifier_claims_token",
        ];
        argv.extend(extra);
        <P as clap::Parser>::try_parse_from(argv).unwrap().c
    }

    #[test]
    fn the_configuration_is_gclouds_aimed_at_cloister() {
        let c = args(&[
            "--service-account",
            "sa@p.iam.gserviceaccount.com",
            "--service-account-token-lifetime-seconds",
            "900",
        ]);
        let v = config(&c, "https://cloister.test").unwrap();
        assert_eq!(
            v,
            json!({
                "universe_domain": "googleapis.com",
                "type": "external_account",
                "audience": "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/pool/providers/prov",
                "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
                "token_url": "https://cloister.test/v1/token",
                "credential_source": {"file": "/run/container_launcher/attestation_verifier_claims_token"},
                "service_account_impersonation_url": "https://cloister.test/v1/projects/-/serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken",
                "service_account_impersonation": {"token_lifetime_seconds": 900},
            })
        );
        let json_source = config(
            &args(&[
                "--credential-source-type",
                "JSON",
                "--credential-source-field-name",
                "id_token",
            ]),
            "https://c",
        )
        .unwrap();
        assert_eq!(
            json_source["credential_source"]["format"],
            json!({"type": "json", "subject_token_field_name": "id_token"})
        );
        assert!(
            json_source
                .get("service_account_impersonation_url")
                .is_none()
        );
    }

    #[test]
    fn mistakes_are_refused_before_anything_is_written() {
        for (extra, why) in [
            (&["--credential-source-type", "json"][..], "field-name"),
            (&["--credential-source-field-name", "x"][..], "json"),
            (
                &[
                    "--service-account",
                    "s@p.iam.gserviceaccount.com",
                    "--service-account-token-lifetime-seconds",
                    "7200",
                ][..],
                "600 to 3600",
            ),
        ] {
            let err = config(&args(extra), "https://c").unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let mut c = args(&[]);
        c.audience = "projects/123/locations/global/workloadIdentityPools/pool".into();
        assert!(config(&c, "https://c").is_err());
        c.audience =
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/r"
                .into();
        assert_eq!(
            config(&c, "https://c").unwrap()["audience"],
            "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/r"
        );
    }
}
