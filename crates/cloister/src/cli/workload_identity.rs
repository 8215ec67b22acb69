//! `cloister iam workload-identity-pools …` and `… providers create-oidc|update-oidc|describe|
//! list|delete|explain`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::Context;
use super::files;
use super::format::{ListArgs, print_list, print_one};
use super::output::outln;

#[derive(Debug, Args)]
pub struct Location {
    /// The project [default: core/project].
    #[arg(long)]
    project: Option<String>,
    /// Pools live in "global".
    #[arg(long, default_value = "global")]
    location: String,
}

#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// Create a pool that external identities (attested workloads) federate into.
    Create {
        /// The pool's id (4 to 32 of a-z, 0-9 and '-').
        pool: String,
        #[command(flatten)]
        at: Location,
        /// A human-readable name.
        #[arg(long)]
        display_name: Option<String>,
        /// What the pool is for.
        #[arg(long)]
        description: Option<String>,
        /// Create it disabled: no token is exchanged through it.
        #[arg(long)]
        disabled: bool,
    },
    /// Show a pool.
    Describe {
        /// The pool's id.
        pool: String,
        #[command(flatten)]
        at: Location,
    },
    /// Pools of a project.
    List {
        #[command(flatten)]
        at: Location,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete a pool.
    Delete {
        /// The pool's id.
        pool: String,
        #[command(flatten)]
        at: Location,
    },
    /// OIDC providers of a pool.
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// Write an external_account credential configuration for a provider (the file
    /// google-auth reads), aimed at this Cloister's STS and IAM Credentials, like gcloud's.
    CreateCredConfig(super::cred_config::CreateCredConfig),
}

/// Provider settings; on update only the flags given change.
#[derive(Debug, Args)]
pub struct ProviderFlags {
    /// The OIDC issuer whose tokens the provider accepts (the attestation verifier's URL).
    #[arg(long)]
    issuer_uri: Option<String>,
    /// Comma-separated audiences a subject token may carry.
    #[arg(long, value_delimiter = ',')]
    allowed_audiences: Option<Vec<String>>,
    /// KEY=EXPR pairs, comma-separated (gcloud's `^DELIM^` prefix picks another delimiter),
    /// e.g. google.subject=assertion.sub.
    #[arg(long)]
    attribute_mapping: Option<String>,
    /// A CEL expression that must hold for a token to be accepted.
    #[arg(long)]
    attribute_condition: Option<String>,
    /// A JWK set file used instead of fetching the issuer's keys (`-` reads stdin).
    #[arg(long)]
    jwk_json_path: Option<PathBuf>,
    /// A human-readable name.
    #[arg(long)]
    display_name: Option<String>,
    /// What the provider is for.
    #[arg(long)]
    description: Option<String>,
    /// true: refuse every token through this provider; false: accept again.
    #[arg(long)]
    disabled: Option<bool>,
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Create an OIDC provider: which issuer's tokens, mapped how, under what condition.
    CreateOidc {
        /// The provider's id.
        provider: String,
        /// The pool it belongs to.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
        #[command(flatten)]
        settings: ProviderFlags,
    },
    /// Change the settings given as flags; the others stay.
    UpdateOidc {
        /// The provider's id.
        provider: String,
        /// The pool it belongs to.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
        #[command(flatten)]
        settings: ProviderFlags,
    },
    /// Show a provider.
    Describe {
        /// The provider's id.
        provider: String,
        /// The pool it belongs to.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
    },
    /// Providers of a pool.
    List {
        /// The pool to list.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Delete a provider.
    Delete {
        /// The provider's id.
        provider: String,
        /// The pool it belongs to.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
    },
    /// Why a token is or is not accepted: each clause of the condition with PASS/FAIL/error.
    Explain {
        /// The provider's id.
        provider: String,
        /// The pool it belongs to.
        #[arg(long)]
        workload_identity_pool: String,
        #[command(flatten)]
        at: Location,
        /// A file holding the subject token, a JWT (`-` reads stdin).
        #[arg(long)]
        token: PathBuf,
    },
}

/// Parses gcloud's dict flag syntax: `k=v,k2=v2`, or `^;^k=v;k2=v2` with another delimiter.
pub fn parse_mapping(text: &str) -> Result<BTreeMap<String, String>> {
    let (delimiter, body) = match text.strip_prefix('^').and_then(|r| r.split_once('^')) {
        Some((d, rest)) if !d.is_empty() => (d.to_owned(), rest),
        _ => (",".to_owned(), text),
    };
    let mut out = BTreeMap::new();
    for item in body
        .split(delimiter.as_str())
        .filter(|i| !i.trim().is_empty())
    {
        let Some((k, v)) = item.split_once('=') else {
            bail!("--attribute-mapping item {item:?} is not KEY=EXPRESSION");
        };
        out.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    Ok(out)
}

impl ProviderFlags {
    /// The provider resource fields these flags set, and their update mask.
    fn to_body(&self) -> Result<(Value, Vec<&'static str>)> {
        let mut body = Map::new();
        let mut oidc = Map::new();
        let mut mask = Vec::new();
        if let Some(v) = &self.issuer_uri {
            oidc.insert("issuerUri".into(), json!(v));
            mask.push("oidc.issuerUri");
        }
        if let Some(v) = &self.allowed_audiences {
            oidc.insert("allowedAudiences".into(), json!(v));
            mask.push("oidc.allowedAudiences");
        }
        if let Some(path) = &self.jwk_json_path {
            let text = files::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            oidc.insert("jwksJson".into(), json!(text));
            mask.push("oidc.jwksJson");
        }
        if let Some(v) = &self.attribute_mapping {
            body.insert("attributeMapping".into(), json!(parse_mapping(v)?));
            mask.push("attributeMapping");
        }
        if let Some(v) = &self.attribute_condition {
            body.insert("attributeCondition".into(), json!(v));
            mask.push("attributeCondition");
        }
        for (key, value) in [
            ("displayName", &self.display_name),
            ("description", &self.description),
        ] {
            if let Some(v) = value {
                body.insert(key.into(), json!(v));
                mask.push(if key == "displayName" {
                    "displayName"
                } else {
                    "description"
                });
            }
        }
        if let Some(v) = self.disabled {
            body.insert("disabled".into(), json!(v));
            mask.push("disabled");
        }
        if !oidc.is_empty() {
            body.insert("oidc".into(), Value::Object(oidc));
        }
        Ok((Value::Object(body), mask))
    }
}

fn pools_path(ctx: &Context, at: Location) -> Result<String> {
    Ok(format!(
        "/v1/projects/{}/locations/{}/workloadIdentityPools",
        ctx.project(at.project)?,
        at.location
    ))
}

pub async fn run(ctx: &mut Context, c: PoolsCommand) -> Result<()> {
    // Each command that calls the API signs in; create-cred-config needs no credential.
    let client = || ctx.client();
    match c {
        PoolsCommand::Create {
            pool,
            at,
            display_name,
            description,
            disabled,
        } => {
            let body = json!({"displayName": display_name.unwrap_or_default(), "description": description.unwrap_or_default(), "disabled": disabled});
            let op = client()
                .await?
                .post(
                    &format!("{}?workloadIdentityPoolId={pool}", pools_path(ctx, at)?),
                    &body,
                )
                .await?;
            eprintln!("Created workload identity pool [{pool}].");
            print_one(&ctx.format, &op["response"])
        }
        PoolsCommand::Describe { pool, at } => print_one(
            &ctx.format,
            &client()
                .await?
                .get(&format!("{}/{pool}", pools_path(ctx, at)?))
                .await?,
        ),
        PoolsCommand::List { at, list } => {
            let resp = client().await?.get(&pools_path(ctx, at)?).await?;
            let items = resp["workloadIdentityPools"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("NAME", "name"),
                    ("DISPLAY_NAME", "displayName"),
                    ("DISABLED", "disabled"),
                ],
            )
        }
        PoolsCommand::Delete { pool, at } => {
            client()
                .await?
                .delete(&format!("{}/{pool}", pools_path(ctx, at)?))
                .await?;
            eprintln!("Deleted workload identity pool [{pool}].");
            Ok(())
        }
        PoolsCommand::Providers(p) => providers(ctx, &client().await?, p).await,
        PoolsCommand::CreateCredConfig(args) => super::cred_config::run(ctx, args).await,
    }
}

async fn providers(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    c: ProvidersCommand,
) -> Result<()> {
    let base = |pool: &str, at: Location| -> Result<String> {
        Ok(format!("{}/{pool}/providers", pools_path(ctx, at)?))
    };
    match c {
        ProvidersCommand::CreateOidc {
            provider,
            workload_identity_pool,
            at,
            settings,
        } => {
            let (body, _) = settings.to_body()?;
            let path = format!(
                "{}?workloadIdentityPoolProviderId={provider}",
                base(&workload_identity_pool, at)?
            );
            let op = client.post(&path, &body).await?;
            eprintln!("Created workload identity pool provider [{provider}].");
            print_warnings(&op);
            print_one(&ctx.format, &op["response"])
        }
        ProvidersCommand::UpdateOidc {
            provider,
            workload_identity_pool,
            at,
            settings,
        } => {
            let (body, mask) = settings.to_body()?;
            if mask.is_empty() {
                bail!(
                    "nothing to update: pass at least one setting flag (e.g. --attribute-condition)"
                );
            }
            let path = format!("{}/{provider}", base(&workload_identity_pool, at)?);
            let op = client
                .patch_query(&path, &[("updateMask", mask.join(","))], &body)
                .await?;
            eprintln!("Updated workload identity pool provider [{provider}].");
            print_warnings(&op);
            print_one(&ctx.format, &op["response"])
        }
        ProvidersCommand::Describe {
            provider,
            workload_identity_pool,
            at,
        } => print_one(
            &ctx.format,
            &client
                .get(&format!(
                    "{}/{provider}",
                    base(&workload_identity_pool, at)?
                ))
                .await?,
        ),
        ProvidersCommand::List {
            workload_identity_pool,
            at,
            list,
        } => {
            let resp = client.get(&base(&workload_identity_pool, at)?).await?;
            let items = resp["workloadIdentityPoolProviders"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("NAME", "name"),
                    ("ISSUER", "oidc.issuerUri"),
                    ("DISABLED", "disabled"),
                ],
            )
        }
        ProvidersCommand::Delete {
            provider,
            workload_identity_pool,
            at,
        } => {
            client
                .delete(&format!(
                    "{}/{provider}",
                    base(&workload_identity_pool, at)?
                ))
                .await?;
            eprintln!("Deleted workload identity pool provider [{provider}].");
            Ok(())
        }
        ProvidersCommand::Explain {
            provider,
            workload_identity_pool,
            at,
            token,
        } => {
            let jwt = files::read_to_string(&token)
                .with_context(|| format!("reading token file {}", token.display()))?;
            let path = format!("{}/{provider}:explain", base(&workload_identity_pool, at)?);
            let report = client
                .post(&path, &json!({"subjectToken": jwt.trim()}))
                .await?;
            if ctx.format.kind == super::format::Kind::Default {
                print_explanation(&report)?;
            } else {
                print_one(&ctx.format, &report)?;
            }
            // Scripts (and CI) branch on the exit code, as on `attest verify-evidence`'s.
            match report["result"].as_str() {
                Some("ACCEPTED") => Ok(()),
                _ => anyhow::bail!(
                    "provider {provider} rejects this token (result {}): see the clauses above",
                    report["result"]
                ),
            }
        }
    }
}

/// A human-readable explanation: one line per step and per clause.
/// The server's warnings about a provider it stored (e.g. an issuer whose keys it cannot
/// fetch), on stderr like gcloud's.
fn print_warnings(op: &Value) {
    for warning in op["warnings"].as_array().into_iter().flatten() {
        eprintln!("WARNING: {}", warning.as_str().unwrap_or_default());
    }
}

fn print_explanation(r: &Value) -> std::io::Result<()> {
    let s = |v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    };
    outln!("provider: {}", s(&r["provider"]))?;
    outln!("result:   {}", s(&r["result"]))?;
    let verification = &r["tokenVerification"];
    outln!(
        "token verification: {} {}",
        s(&verification["outcome"]),
        verification["detail"].as_str().unwrap_or("")
    )?;
    let mapping = &r["attributeMapping"];
    outln!(
        "attribute mapping:  {} {}",
        s(&mapping["outcome"]),
        mapping["detail"].as_str().unwrap_or("")
    )?;
    if mapping["outcome"] == "PASS" {
        outln!("  google.subject = {}", s(&mapping["google.subject"]))?;
    }
    if r["providerDisabled"] == true {
        outln!("the provider is disabled")?;
    }
    for clause in r["clauses"].as_array().into_iter().flatten() {
        let detail = clause["detail"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        outln!(
            "{:<5} {}{detail}",
            s(&clause["outcome"]),
            s(&clause["clause"])
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        )?;
        for pair in clause["compared"].as_array().into_iter().flatten() {
            outln!("        {} = {}", s(&pair[0]), pair[1])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mappings_parse_with_gclouds_delimiters() {
        let m = parse_mapping("google.subject=assertion.sub,attribute.x=assertion.y").unwrap();
        assert_eq!(m["google.subject"], "assertion.sub");
        assert_eq!(m["attribute.x"], "assertion.y");
        let m = parse_mapping("^;^google.subject=assertion.sub;attribute.z=assertion.a.join(',')")
            .unwrap();
        assert_eq!(m["attribute.z"], "assertion.a.join(',')");
        assert_eq!(
            parse_mapping("google.subject='assertion.sub'").unwrap()["google.subject"],
            "'assertion.sub'"
        );
        assert!(parse_mapping("nonsense").is_err());
    }
}
