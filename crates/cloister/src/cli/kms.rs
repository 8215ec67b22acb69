//! `cloister kms keyrings|keys|encrypt|decrypt`, as gcloud spells them.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Context;
use super::format::{print_list, print_one};
use super::policy::{add_member, edit_policy, get_policy, remove_member};

#[derive(Debug, Args)]
pub struct At {
    #[arg(long)]
    project: Option<String>,
    #[arg(long, default_value = "global")]
    location: String,
}

#[derive(Debug, Args)]
pub struct KeyRef {
    /// The crypto key.
    #[arg(long)]
    key: String,
    #[arg(long)]
    keyring: String,
    #[command(flatten)]
    at: At,
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    #[command(subcommand)]
    Keyrings(KeyringsCommand),
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypt a file (up to 64 KiB) with a key.
    Encrypt {
        #[command(flatten)]
        key: KeyRef,
        #[arg(long)]
        plaintext_file: PathBuf,
        #[arg(long)]
        ciphertext_file: PathBuf,
        #[arg(long)]
        additional_authenticated_data_file: Option<PathBuf>,
    },
    /// Encrypt a file of any size: a fresh data key, wrapped by KEY, seals a chunked AEAD stream.
    EncryptFile {
        #[command(flatten)]
        key: KeyRef,
        input: PathBuf,
        output: PathBuf,
    },
    /// Decrypt a file made by `encrypt-file` (the key named in its header must let you decrypt).
    DecryptFile { input: PathBuf, output: PathBuf },
    /// Decrypt a file made by `encrypt`.
    Decrypt {
        #[command(flatten)]
        key: KeyRef,
        #[arg(long)]
        ciphertext_file: PathBuf,
        #[arg(long)]
        plaintext_file: PathBuf,
        #[arg(long)]
        additional_authenticated_data_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyringsCommand {
    Create {
        keyring: String,
        #[command(flatten)]
        at: At,
    },
    List {
        #[command(flatten)]
        at: At,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    Create {
        key: String,
        #[arg(long)]
        keyring: String,
        /// encryption (ENCRYPT_DECRYPT) is the purpose Cloister supports.
        #[arg(long, default_value = "encryption")]
        purpose: String,
        #[command(flatten)]
        at: At,
    },
    List {
        #[arg(long)]
        keyring: String,
        #[command(flatten)]
        at: At,
    },
    /// Make a new primary version; older versions still decrypt.
    Rotate {
        #[command(flatten)]
        key: KeyRef,
    },
    GetIamPolicy {
        #[command(flatten)]
        key: KeyRef,
    },
    AddIamPolicyBinding {
        #[command(flatten)]
        key: KeyRef,
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
    RemoveIamPolicyBinding {
        #[command(flatten)]
        key: KeyRef,
        #[arg(long)]
        member: String,
        #[arg(long)]
        role: String,
    },
}

fn rings(ctx: &Context, at: &At) -> Result<String> {
    Ok(format!(
        "/v1/projects/{}/locations/{}/keyRings",
        ctx.project(at.project.clone())?,
        at.location
    ))
}

fn key_path(ctx: &Context, k: &KeyRef) -> Result<String> {
    Ok(format!(
        "{}/{}/cryptoKeys/{}",
        rings(ctx, &k.at)?,
        k.keyring,
        k.key
    ))
}

/// `KEY:encrypt` or `KEY:decrypt` of a whole (small) file: `[method, input field, output field]`.
async fn crypt(
    client: &cloister_client::ApiClient,
    key: &str,
    [method, input_field, output_field]: [&str; 3],
    input: &std::path::Path,
    output: &std::path::Path,
    aad: &[u8],
) -> Result<()> {
    let data = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let body = json!({ input_field: STANDARD.encode(data), "additionalAuthenticatedData": STANDARD.encode(aad) });
    let r = client.post(&format!("{key}:{method}"), &body).await?;
    let out = STANDARD.decode(r[output_field].as_str().unwrap_or_default())?;
    std::fs::write(output, out).with_context(|| format!("writing {}", output.display()))
}

fn read_aad(path: &Option<PathBuf>) -> Result<Vec<u8>> {
    match path {
        Some(p) => std::fs::read(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(Vec::new()),
    }
}

pub async fn run(ctx: &mut Context, c: KmsCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        KmsCommand::Keyrings(KeyringsCommand::Create { keyring, at }) => {
            let r = client
                .post(
                    &format!("{}?keyRingId={keyring}", rings(ctx, &at)?),
                    &json!({}),
                )
                .await?;
            eprintln!("Created key ring [{keyring}].");
            print_one(&ctx.format, &r)
        }
        KmsCommand::Keyrings(KeyringsCommand::List { at }) => {
            let r = client.get(&rings(ctx, &at)?).await?;
            print_list(
                &ctx.format,
                r["keyRings"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &[("NAME", "name")],
            )
        }
        KmsCommand::Keys(KeysCommand::Create {
            key,
            keyring,
            purpose,
            at,
        }) => {
            let purpose = if purpose == "encryption" {
                "ENCRYPT_DECRYPT".to_owned()
            } else {
                purpose
            };
            let path = format!(
                "{}/{keyring}/cryptoKeys?cryptoKeyId={key}",
                rings(ctx, &at)?
            );
            let k = client.post(&path, &json!({"purpose": purpose})).await?;
            eprintln!("Created key [{key}].");
            print_one(&ctx.format, &k)
        }
        KmsCommand::Keys(KeysCommand::List { keyring, at }) => {
            let r = client
                .get(&format!("{}/{keyring}/cryptoKeys", rings(ctx, &at)?))
                .await?;
            print_list(
                &ctx.format,
                r["cryptoKeys"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &[
                    ("NAME", "name"),
                    ("PURPOSE", "purpose"),
                    ("PRIMARY", "primary.name"),
                ],
            )
        }
        KmsCommand::Keys(KeysCommand::Rotate { key }) => print_one(
            &ctx.format,
            &client
                .post(&format!("{}:rotate", key_path(ctx, &key)?), &json!({}))
                .await?,
        ),
        KmsCommand::Keys(KeysCommand::GetIamPolicy { key }) => print_one(
            &ctx.format,
            &get_policy(&client, &key_path(ctx, &key)?).await?,
        ),
        KmsCommand::Keys(KeysCommand::AddIamPolicyBinding { key, member, role }) => print_one(
            &ctx.format,
            &edit_policy(&client, &key_path(ctx, &key)?, |p| {
                add_member(p, &role, &member)
            })
            .await?,
        ),
        KmsCommand::Keys(KeysCommand::RemoveIamPolicyBinding { key, member, role }) => print_one(
            &ctx.format,
            &edit_policy(&client, &key_path(ctx, &key)?, |p| {
                remove_member(p, &role, &member)
            })
            .await?,
        ),
        KmsCommand::Encrypt {
            key,
            plaintext_file,
            ciphertext_file,
            additional_authenticated_data_file,
        } => {
            let path = key_path(ctx, &key)?;
            let aad = read_aad(&additional_authenticated_data_file)?;
            crypt(
                &client,
                &path,
                ["encrypt", "plaintext", "ciphertext"],
                &plaintext_file,
                &ciphertext_file,
                &aad,
            )
            .await
        }
        KmsCommand::EncryptFile { key, input, output } => {
            let path = key_path(ctx, &key)?;
            let data_key = cloister_envelope::data_key();
            let body = json!({"plaintext": STANDARD.encode(data_key), "additionalAuthenticatedData": STANDARD.encode(cloister_envelope::WRAP_AAD)});
            let wrapped = client.post(&format!("{path}:encrypt"), &body).await?;
            let wrapped = STANDARD.decode(wrapped["ciphertext"].as_str().unwrap_or_default())?;
            let kms_key = path.trim_start_matches("/v1/").to_owned();
            let n = tokio::task::spawn_blocking(move || -> Result<u64> {
                let reader = std::io::BufReader::new(
                    std::fs::File::open(&input)
                        .with_context(|| format!("reading {}", input.display()))?,
                );
                let writer = std::io::BufWriter::new(
                    std::fs::File::create(&output)
                        .with_context(|| format!("creating {}", output.display()))?,
                );
                Ok(cloister_envelope::encrypt(
                    &data_key, &kms_key, &wrapped, reader, writer,
                )?)
            })
            .await??;
            eprintln!("Encrypted {n} bytes.");
            Ok(())
        }
        KmsCommand::DecryptFile { input, output } => {
            let mut reader = std::io::BufReader::new(
                std::fs::File::open(&input)
                    .with_context(|| format!("reading {}", input.display()))?,
            );
            let (header, header_bytes) = cloister_envelope::read_header(&mut reader)?;
            let body = json!({"ciphertext": header.wrapped_key, "additionalAuthenticatedData": STANDARD.encode(cloister_envelope::WRAP_AAD)});
            let unwrapped = client
                .post(&format!("/v1/{}:decrypt", header.kms_key), &body)
                .await?;
            let data_key: [u8; 32] = STANDARD
                .decode(unwrapped["plaintext"].as_str().unwrap_or_default())?
                .try_into()
                .map_err(|_| anyhow::anyhow!("the unwrapped data key is not 32 bytes"))?;
            // Into a temporary file: a tampered file leaves no plaintext behind.
            let tmp = PathBuf::from(format!("{}.cloister-partial", output.display()));
            let tmp_for_task = tmp.clone();
            let result = tokio::task::spawn_blocking(move || -> Result<u64> {
                let writer = std::io::BufWriter::new(std::fs::File::create(&tmp_for_task)?);
                Ok(cloister_envelope::decrypt(
                    &data_key,
                    &header,
                    &header_bytes,
                    reader,
                    writer,
                )?)
            })
            .await?;
            match result {
                Ok(n) => {
                    std::fs::rename(&tmp, &output)?;
                    eprintln!("Decrypted {n} bytes.");
                    Ok(())
                }
                Err(e) => {
                    let _ = std::fs::remove_file(&tmp);
                    Err(e)
                }
            }
        }
        KmsCommand::Decrypt {
            key,
            ciphertext_file,
            plaintext_file,
            additional_authenticated_data_file,
        } => {
            let path = key_path(ctx, &key)?;
            let aad = read_aad(&additional_authenticated_data_file)?;
            crypt(
                &client,
                &path,
                ["decrypt", "ciphertext", "plaintext"],
                &ciphertext_file,
                &plaintext_file,
                &aad,
            )
            .await
        }
    }
}
