//! `cloister verifier reference-values add|list|delete` and `signing-keys list|rotate`
//! (platform admins).

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{ListArgs, print_list, print_one};

#[derive(Debug, Subcommand)]
pub enum VerifierCommand {
    /// Trusted launcher builds and what tokens say about them.
    #[command(subcommand)]
    ReferenceValues(ReferenceValuesCommand),
    /// The attestation token signing keys.
    #[command(subcommand)]
    SigningKeys(SigningKeysCommand),
}

#[derive(Debug, Subcommand)]
pub enum SigningKeysCommand {
    /// Key ids in the JWKS, oldest first (the last one signs).
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Start signing with a new key; old keys stay published until their tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ReferenceValuesCommand {
    /// Trust a launcher build: its measurement and what tokens say about it.
    Add {
        /// Hex digest of the launcher measurement.
        measurement: String,
        /// The launcher's software version, as tokens report it.
        #[arg(long)]
        swversion: String,
        /// disabled-since-boot or enabled.
        #[arg(long, default_value = "disabled-since-boot")]
        dbgstat: String,
        /// Comma-separated: LATEST, STABLE, USABLE, EXPERIMENTAL.
        #[arg(long, value_delimiter = ',')]
        support_attributes: Vec<String>,
        /// What the build is.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Show one trusted build.
    Describe {
        /// Hex digest of the launcher measurement.
        measurement: String,
    },
    /// Every trusted build.
    List {
        #[command(flatten)]
        list: ListArgs,
    },
    /// Stop trusting a build.
    Delete {
        /// Hex digest of the launcher measurement.
        measurement: String,
    },
}

pub async fn run(ctx: &mut Context, c: VerifierCommand) -> Result<()> {
    let client = ctx.client().await?;
    let path = "/cloister/v1/verifier/referenceValues";
    let c = match c {
        VerifierCommand::ReferenceValues(c) => c,
        VerifierCommand::SigningKeys(SigningKeysCommand::List { list }) => {
            let resp = client.get("/cloister/v1/verifier/signingKeys").await?;
            let keys = resp["keys"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|kid| json!({ "kid": kid }))
                .collect();
            return print_list(&ctx.format, &list, keys, &[("KID", "kid")]);
        }
        VerifierCommand::SigningKeys(SigningKeysCommand::Rotate) => {
            let resp = client
                .post("/cloister/v1/verifier/signingKeys:rotate", &json!({}))
                .await?;
            eprintln!(
                "Attestation tokens are now signed with key [{}].",
                resp["kid"].as_str().unwrap_or_default()
            );
            return print_one(&ctx.format, &resp);
        }
    };
    match c {
        ReferenceValuesCommand::Add {
            measurement,
            swversion,
            dbgstat,
            support_attributes,
            description,
        } => {
            let body = json!({"measurement": measurement, "swversion": swversion, "dbgstat": dbgstat,
                "supportAttributes": support_attributes, "description": description});
            print_one(&ctx.format, &client.post(path, &body).await?)
        }
        ReferenceValuesCommand::Describe { measurement } => {
            let resp = client.get(path).await?;
            let found = resp["referenceValues"]
                .as_array()
                .and_then(|v| {
                    v.iter()
                        .find(|v| v["measurement"] == measurement.to_ascii_lowercase().as_str())
                })
                .cloned();
            let value = found.ok_or_else(|| cloister_client::ClientError::Api {
                http_status: 404,
                status: "NOT_FOUND".into(),
                message: format!(
                    "no reference value for measurement {measurement}; `cloister verifier reference-values list` shows them"
                ),
            })?;
            print_one(&ctx.format, &value)
        }
        ReferenceValuesCommand::List { list } => {
            let resp = client.get(path).await?;
            let items = resp["referenceValues"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            print_list(
                &ctx.format,
                &list,
                items,
                &[
                    ("MEASUREMENT", "measurement"),
                    ("SWVERSION", "swversion"),
                    ("SUPPORT", "supportAttributes"),
                ],
            )
        }
        ReferenceValuesCommand::Delete { measurement } => {
            client.delete(&format!("{path}/{measurement}")).await?;
            eprintln!("Deleted reference value [{measurement}].");
            Ok(())
        }
    }
}
