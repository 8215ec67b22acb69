//! `cloister kms keyrings|keys|encrypt|decrypt`, as gcloud spells them. File flags take `-`
//! for standard input or output.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Args, Subcommand};
use serde_json::json;

use super::Context;
use super::files;
use super::format::{ListArgs, print_list, print_one};
use super::output;
use super::policy::{add_member, edit_policy, get_policy, remove_member};

#[derive(Debug, Args)]
pub struct At {
    /// The project [default: core/project].
    #[arg(long)]
    project: Option<String>,
    /// The key ring's location.
    #[arg(long, default_value = "global")]
    location: String,
}

/// A key named by flags, as `kms encrypt` and `decrypt` take it.
#[derive(Debug, Args)]
pub struct KeyRef {
    /// The crypto key: its id, or its full name projects/…/cryptoKeys/KEY.
    #[arg(long)]
    key: String,
    /// The key ring holding the key (not needed with a full key name).
    #[arg(long)]
    keyring: Option<String>,
    #[command(flatten)]
    at: At,
}

/// A key named as gcloud's `kms keys …` commands take it: KEY positionally (or `--key`).
#[derive(Debug, Args)]
pub struct KeyArg {
    /// The crypto key: its id, or its full name projects/…/cryptoKeys/KEY.
    #[arg(value_name = "KEY", required_unless_present = "key_flag")]
    key: Option<String>,
    /// The crypto key, as a flag (the form older Cloister scripts use).
    #[arg(
        long = "key",
        id = "key_flag",
        value_name = "KEY",
        conflicts_with = "key"
    )]
    key_flag: Option<String>,
    /// The key ring holding the key (not needed with a full key name).
    #[arg(long)]
    keyring: Option<String>,
    #[command(flatten)]
    at: At,
}

impl KeyArg {
    fn into_ref(self) -> KeyRef {
        KeyRef {
            key: self.key.or(self.key_flag).unwrap_or_default(),
            keyring: self.keyring,
            at: self.at,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum KmsCommand {
    /// Key rings: named groups of keys in a project and location.
    #[command(subcommand)]
    Keyrings(KeyringsCommand),
    /// Crypto keys, their versions (rotate) and their IAM policies.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypt a file (up to 64 KiB) with a key.
    Encrypt {
        #[command(flatten)]
        key: KeyRef,
        /// The data to encrypt (`-` reads stdin).
        #[arg(long)]
        plaintext_file: PathBuf,
        /// Where the ciphertext goes (`-` writes stdout).
        #[arg(long)]
        ciphertext_file: PathBuf,
        /// Additional authenticated data: decrypting needs the same bytes (`-` reads stdin).
        #[arg(long)]
        additional_authenticated_data_file: Option<PathBuf>,
    },
    /// Encrypt a file of any size: a fresh data key, wrapped by KEY, seals a chunked AEAD stream.
    EncryptFile {
        #[command(flatten)]
        key: KeyRef,
        /// The file to encrypt (`-` reads stdin).
        input: PathBuf,
        /// The encrypted file to write (`-` writes stdout).
        output: PathBuf,
    },
    /// Decrypt a file made by `encrypt-file` (the key named in its header must let you decrypt).
    DecryptFile {
        /// The encrypted file (`-` reads stdin).
        input: PathBuf,
        /// Where the plaintext goes, only once all of it is authentic (`-` writes stdout).
        output: PathBuf,
    },
    /// Decrypt a file made by `encrypt`.
    Decrypt {
        #[command(flatten)]
        key: KeyRef,
        /// The ciphertext (`-` reads stdin).
        #[arg(long)]
        ciphertext_file: PathBuf,
        /// Where the plaintext goes (`-` writes stdout).
        #[arg(long)]
        plaintext_file: PathBuf,
        /// The additional authenticated data given at encryption (`-` reads stdin).
        #[arg(long)]
        additional_authenticated_data_file: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeyringsCommand {
    /// Create a key ring.
    Create {
        /// The key ring's id.
        keyring: String,
        #[command(flatten)]
        at: At,
    },
    /// Show a key ring.
    Describe {
        /// The key ring's id.
        keyring: String,
        #[command(flatten)]
        at: At,
    },
    /// Key rings in a project and location.
    List {
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        list: ListArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key with its first version.
    Create {
        /// The key's id.
        key: String,
        /// The key ring to create it in.
        #[arg(long)]
        keyring: String,
        /// encryption (ENCRYPT_DECRYPT) is the purpose Cloister supports.
        #[arg(long, default_value = "encryption")]
        purpose: String,
        #[command(flatten)]
        at: At,
    },
    /// Show a key, with its primary version.
    Describe {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Keys of a key ring.
    List {
        /// The key ring to list.
        #[arg(long)]
        keyring: String,
        #[command(flatten)]
        at: At,
        #[command(flatten)]
        list: ListArgs,
    },
    /// The key's versions: list, describe, destroy.
    #[command(subcommand)]
    Versions(VersionsCommand),
    /// Make a new primary version; older versions still decrypt.
    Rotate {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Show who may do what with the key.
    GetIamPolicy {
        #[command(flatten)]
        key: KeyArg,
    },
    /// Grant ROLE on the key to MEMBER (read-modify-write with the policy's etag).
    AddIamPolicyBinding {
        #[command(flatten)]
        key: KeyArg,
        /// Who: user:EMAIL, serviceAccount:EMAIL, principalSet://…
        #[arg(long)]
        member: String,
        /// A predefined role, e.g. roles/cloudkms.cryptoKeyDecrypter.
        #[arg(long)]
        role: String,
    },
    /// Remove MEMBER from ROLE on the key.
    RemoveIamPolicyBinding {
        #[command(flatten)]
        key: KeyArg,
        /// Who to remove.
        #[arg(long)]
        member: String,
        /// The role to remove them from.
        #[arg(long)]
        role: String,
    },
}

/// `kms keys versions …`, as gcloud spells them (`destroy 1 --key K --keyring R --location L`).
#[derive(Debug, Subcommand)]
pub enum VersionsCommand {
    /// The key's versions, oldest first, with their states.
    List {
        #[command(flatten)]
        key: KeyRef,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Show a version.
    Describe {
        /// The version's number (or its full name projects/…/cryptoKeyVersions/N).
        version: String,
        #[command(flatten)]
        key: KeyRef,
    },
    /// Destroy a version: its key material is erased at once, and what it encrypted can never
    /// be decrypted again. (Google schedules destruction and allows a restore for 30 days by
    /// default; Cloister destroys immediately.)
    Destroy {
        /// The version's number (or its full name projects/…/cryptoKeyVersions/N).
        version: String,
        #[command(flatten)]
        key: KeyRef,
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
    if k.key.starts_with("projects/") {
        return Ok(format!("/v1/{}", k.key));
    }
    let Some(keyring) = &k.keyring else {
        bail!(
            "--keyring is needed to find key {:?} (or name the key in full: projects/P/locations/L/keyRings/R/cryptoKeys/{})",
            k.key,
            k.key
        );
    };
    Ok(format!(
        "{}/{keyring}/cryptoKeys/{}",
        rings(ctx, &k.at)?,
        k.key
    ))
}

/// The API path of version `version` (a number, or a full name) of the key `k` names.
fn version_path(ctx: &Context, k: &KeyRef, version: &str) -> Result<String> {
    if version.starts_with("projects/") {
        return Ok(format!("/v1/{version}"));
    }
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) {
        bail!(
            "the key version {version:?} is not a version number (1, 2, …) or a full name projects/…/cryptoKeyVersions/N"
        );
    }
    Ok(format!("{}/cryptoKeyVersions/{version}", key_path(ctx, k)?))
}

async fn versions(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    c: VersionsCommand,
) -> Result<()> {
    match c {
        VersionsCommand::List { key, list } => {
            let r = client
                .get(&format!("{}/cryptoKeyVersions", key_path(ctx, &key)?))
                .await?;
            print_list(
                &ctx.format,
                &list,
                r["cryptoKeyVersions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
                &[("NAME", "name"), ("STATE", "state")],
            )
        }
        VersionsCommand::Describe { version, key } => print_one(
            &ctx.format,
            &client.get(&version_path(ctx, &key, &version)?).await?,
        ),
        VersionsCommand::Destroy { version, key } => {
            let path = version_path(ctx, &key, &version)?;
            let r = client.post(&format!("{path}:destroy"), &json!({})).await?;
            eprintln!("Destroyed key version [{version}].");
            print_one(&ctx.format, &r)
        }
    }
}

/// `KEY:encrypt` or `KEY:decrypt` of a whole (small) file: `[method, input field, output field]`.
async fn crypt(
    client: &cloister_client::ApiClient,
    key: &str,
    [method, input_field, output_field]: [&str; 3],
    input: &Path,
    output: &Path,
    aad: &[u8],
) -> Result<()> {
    let data = files::read(input).with_context(|| format!("reading {}", input.display()))?;
    let body = json!({ input_field: STANDARD.encode(data), "additionalAuthenticatedData": STANDARD.encode(aad) });
    let r = client.post(&format!("{key}:{method}"), &body).await?;
    let out = STANDARD.decode(r[output_field].as_str().unwrap_or_default())?;
    files::write(output, &out).with_context(|| format!("writing {}", output.display()))
}

fn read_aad(path: &Option<PathBuf>) -> Result<Vec<u8>> {
    match path {
        Some(p) => files::read(p).with_context(|| format!("reading {}", p.display())),
        None => Ok(Vec::new()),
    }
}

pub async fn run(ctx: &mut Context, c: KmsCommand) -> Result<()> {
    let client = ctx.client().await?;
    match c {
        KmsCommand::Keyrings(c) => keyrings(ctx, &client, c).await,
        KmsCommand::Keys(c) => keys(ctx, &client, c).await,
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
        KmsCommand::EncryptFile { key, input, output } => {
            let path = key_path(ctx, &key)?;
            encrypt_file(&client, &path, input, output).await
        }
        KmsCommand::DecryptFile { input, output } => decrypt_file(&client, input, output).await,
    }
}

async fn keyrings(
    ctx: &Context,
    client: &cloister_client::ApiClient,
    c: KeyringsCommand,
) -> Result<()> {
    match c {
        KeyringsCommand::Create { keyring, at } => {
            let r = client
                .post(
                    &format!("{}?keyRingId={keyring}", rings(ctx, &at)?),
                    &json!({}),
                )
                .await?;
            eprintln!("Created key ring [{keyring}].");
            print_one(&ctx.format, &r)
        }
        KeyringsCommand::Describe { keyring, at } => print_one(
            &ctx.format,
            &client
                .get(&format!("{}/{keyring}", rings(ctx, &at)?))
                .await?,
        ),
        KeyringsCommand::List { at, list } => {
            let r = client.get(&rings(ctx, &at)?).await?;
            print_list(
                &ctx.format,
                &list,
                r["keyRings"].as_array().cloned().unwrap_or_default(),
                &[("NAME", "name")],
            )
        }
    }
}

async fn keys(ctx: &Context, client: &cloister_client::ApiClient, c: KeysCommand) -> Result<()> {
    match c {
        KeysCommand::Create {
            key,
            keyring,
            purpose,
            at,
        } => {
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
        KeysCommand::Describe { key } => print_one(
            &ctx.format,
            &client.get(&key_path(ctx, &key.into_ref())?).await?,
        ),
        KeysCommand::List { keyring, at, list } => {
            let r = client
                .get(&format!("{}/{keyring}/cryptoKeys", rings(ctx, &at)?))
                .await?;
            print_list(
                &ctx.format,
                &list,
                r["cryptoKeys"].as_array().cloned().unwrap_or_default(),
                &[
                    ("NAME", "name"),
                    ("PURPOSE", "purpose"),
                    ("ALGORITHM", "versionTemplate.algorithm"),
                    ("PROTECTION_LEVEL", "versionTemplate.protectionLevel"),
                    ("PRIMARY_ID", "primary.name.segment(9)"),
                    ("PRIMARY_STATE", "primary.state"),
                ],
            )
        }
        KeysCommand::Versions(c) => versions(ctx, client, c).await,
        KeysCommand::Rotate { key } => print_one(
            &ctx.format,
            &client
                .post(
                    &format!("{}:rotate", key_path(ctx, &key.into_ref())?),
                    &json!({}),
                )
                .await?,
        ),
        KeysCommand::GetIamPolicy { key } => print_one(
            &ctx.format,
            &get_policy(client, &key_path(ctx, &key.into_ref())?).await?,
        ),
        KeysCommand::AddIamPolicyBinding { key, member, role } => print_one(
            &ctx.format,
            &edit_policy(client, &key_path(ctx, &key.into_ref())?, |p| {
                add_member(p, &role, &member)
            })
            .await?,
        ),
        KeysCommand::RemoveIamPolicyBinding { key, member, role } => print_one(
            &ctx.format,
            &edit_policy(client, &key_path(ctx, &key.into_ref())?, |p| {
                remove_member(p, &role, &member)
            })
            .await?,
        ),
    }
}

async fn encrypt_file(
    client: &cloister_client::ApiClient,
    path: &str,
    input: PathBuf,
    output: PathBuf,
) -> Result<()> {
    let data_key = cloister_envelope::data_key();
    let body = json!({"plaintext": STANDARD.encode(data_key), "additionalAuthenticatedData": STANDARD.encode(cloister_envelope::WRAP_AAD)});
    let wrapped = client.post(&format!("{path}:encrypt"), &body).await?;
    let wrapped = STANDARD.decode(wrapped["ciphertext"].as_str().unwrap_or_default())?;
    let kms_key = path.trim_start_matches("/v1/").to_owned();
    let n = tokio::task::spawn_blocking(move || -> Result<u64> {
        let reader = std::io::BufReader::new(
            files::reader(&input).with_context(|| format!("reading {}", input.display()))?,
        );
        let writer: Box<dyn std::io::Write> = if files::is_stdio(&output) {
            Box::new(std::io::stdout().lock())
        } else {
            Box::new(
                std::fs::File::create(&output)
                    .with_context(|| format!("creating {}", output.display()))?,
            )
        };
        let mut writer = std::io::BufWriter::new(writer);
        let n = cloister_envelope::encrypt(&data_key, &kms_key, &wrapped, reader, &mut writer)?;
        writer.flush()?;
        Ok(n)
    })
    .await??;
    eprintln!("Encrypted {n} bytes.");
    Ok(())
}

async fn decrypt_file(
    client: &cloister_client::ApiClient,
    input: PathBuf,
    output: PathBuf,
) -> Result<()> {
    let mut reader = std::io::BufReader::new(
        files::reader(&input).with_context(|| format!("reading {}", input.display()))?,
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
    // Into a temporary file first: a tampered file leaves no plaintext behind, on disk or on
    // standard output.
    let stdout_buffer = if files::is_stdio(&output) {
        Some(tempfile::NamedTempFile::new()?)
    } else {
        None
    };
    let tmp = match &stdout_buffer {
        Some(t) => t.path().to_owned(),
        None => PathBuf::from(format!("{}.cloister-partial", output.display())),
    };
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
    let n = match result {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some(mut plaintext) = stdout_buffer {
        std::io::copy(plaintext.as_file_mut(), &mut std::io::stdout().lock())?;
        output::bytes(&[])?;
    } else {
        std::fs::rename(&tmp, &output)?;
    }
    eprintln!("Decrypted {n} bytes.");
    Ok(())
}
