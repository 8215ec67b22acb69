//! `cloister verifier reference-values add|list|delete` and `signing-keys list|rotate`
//! (platform admins).

use anyhow::Result;
use clap::Subcommand;
use serde_json::json;

use super::Context;
use super::format::{print_list, print_one};

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
    List,
    /// Start signing with a new key; old keys stay published until their tokens expire.
    Rotate,
}

#[derive(Debug, Subcommand)]
pub enum ReferenceValuesCommand {
    Add {
        /// Hex digest of the launcher measurement.
        measurement: String,
        #[arg(long)]
        swversion: String,
        /// disabled-since-boot or enabled.
        #[arg(long, default_value = "disabled-since-boot")]
        dbgstat: String,
        /// Comma-separated: LATEST, STABLE, USABLE, EXPERIMENTAL.
        #[arg(long, value_delimiter = ',')]
        support_attributes: Vec<String>,
        #[arg(long, default_value = "")]
        description: String,
    },
    List,
    Delete {
        measurement: String,
    },
}

pub async fn run(ctx: &mut Context, c: VerifierCommand) -> Result<()> {
    let client = ctx.client().await?;
    let path = "/cloister/v1/verifier/referenceValues";
    let c = match c {
        VerifierCommand::ReferenceValues(c) => c,
        VerifierCommand::SigningKeys(SigningKeysCommand::List) => {
            return print_one(
                &ctx.format,
                &client.get("/cloister/v1/verifier/signingKeys").await?,
            );
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
        ReferenceValuesCommand::List => {
            let resp = client.get(path).await?;
            let items = resp["referenceValues"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            print_list(
                &ctx.format,
                &items,
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
