//! `cloister server rotate-kek`: reseals the store's keys under a new key-encryption key, with
//! every server on the store stopped (a running one would keep sealing with the old KEK).

use std::path::Path;

use anyhow::{Context, Result, bail};
use cloister_store::{DataDir, Store, StoreError};

pub async fn rotate(
    data_dir: &Path,
    database_url: Option<&str>,
    current: Option<Vec<u8>>,
    new: &[u8],
) -> Result<()> {
    let resealed = match database_url {
        Some(url) => {
            let current = current.context(
                "with --database-url, pass the current key-encryption key with --kek-file or CLOISTER_KEK",
            )?;
            let store = Store::open_postgres(url, 1)
                .await
                .map_err(|e| stored(e).context("opening the database"))?;
            refuse_running_replicas(&store).await?;
            reseal(&store, &current, new).await?
        }
        None => {
            // The data directory's lock: refused while a server runs on it.
            let dir = DataDir::open(data_dir)?;
            let embedded = dir
                .root()
                .join("keys")
                .join(cloister_services::EMBEDDED_KEK_FILE);
            let current = match current {
                Some(kek) => kek,
                None if embedded.exists() => {
                    dir.secret(cloister_services::EMBEDDED_KEK_FILE, 32)?
                }
                None => bail!(
                    "no current key-encryption key: pass the one the server runs with (--kek-file or CLOISTER_KEK); {} has none of its own",
                    data_dir.display()
                ),
            };
            let store = Store::open_sqlite(&dir.metadata_db())
                .await
                .map_err(stored)?;
            let resealed = reseal(&store, &current, new).await?;
            if embedded.exists() {
                std::fs::remove_file(&embedded)
                    .with_context(|| format!("removing the old KEK {}", embedded.display()))?;
                println!(
                    "Removed the old key-encryption key {}. Start the server with --kek-file and the new one from now on.",
                    embedded.display()
                );
            }
            resealed
        }
    };
    println!(
        "Resealed {resealed} keys under the new key-encryption key. Start every server with it (--kek-file or CLOISTER_KEK); the old one no longer opens this store."
    );
    Ok(())
}

/// A store error with its causes, each once (`{:#}` would repeat the ones its message quotes).
fn stored(e: StoreError) -> anyhow::Error {
    anyhow::anyhow!(e.chain())
}

async fn reseal(store: &Store, current: &[u8], new: &[u8]) -> Result<usize> {
    cloister_services::secrets::rotate_kek(store, current, new)
        .await
        .map_err(|e| anyhow::anyhow!("rotating the key-encryption key: {e}"))
}

/// Replicas renew their lease every two seconds while they run: one that has not expired is a
/// replica still running (or one that crashed less than a lease ago).
async fn refuse_running_replicas(store: &Store) -> Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let running: Vec<String> = store
        .replica_leases()
        .await
        .map_err(stored)?
        .into_iter()
        .filter(|(_, expires_at)| *expires_at >= now)
        .map(|(replica, _)| replica)
        .collect();
    if !running.is_empty() {
        bail!(
            "{} replica(s) still run on this database ({}): stop every replica first (a crashed one's lease lapses within --replica-lease-secs), then rotate",
            running.len(),
            running.join(", ")
        );
    }
    Ok(())
}
