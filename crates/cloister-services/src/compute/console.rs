//! The serial console across replicas. An instance's console is a file on the replica that
//! runs it; with a shared database the replica also copies it into the shared blob store
//! whenever it grows, so `getSerialPortOutput` through any replica shows it.

use std::collections::HashMap;

use cloister_store::{BlobKey, InstanceRecord};
use futures::StreamExt;

use crate::state::AppState;

fn key(instance: &InstanceRecord) -> Option<BlobKey> {
    BlobKey::new(&format!("instances/{}/serial.log", instance.id)).ok()
}

/// Copies the consoles of the instances this replica runs that grew since `published` (the
/// sizes last copied, by instance id).
pub async fn publish(state: &AppState, published: &mut HashMap<u64, u64>) {
    for instance in state.compute.running() {
        // Its size first: most ticks, no console grew, and nothing is read.
        let Some(size) = state.compute.console_size(&instance) else {
            continue;
        };
        if published.get(&instance.id) == Some(&size) {
            continue;
        }
        let Some(bytes) = state.compute.console(&instance) else {
            continue;
        };
        let Some(key) = key(&instance) else { continue };
        let len = bytes.len() as u64;
        let stream: cloister_store::ByteStream = Box::pin(futures::stream::once(async move {
            Ok(bytes::Bytes::from(bytes))
        }));
        match state.blobs.put(&key, stream).await {
            Ok(_) => {
                published.insert(instance.id, len);
            }
            Err(e) => {
                tracing::warn!(error = %e, instance = %instance.resource_name(), "copying a serial console")
            }
        }
    }
}

/// The most one read returns, as Compute Engine's `getSerialPortOutput` (1 MB): a caller
/// pages on with `next`.
pub const MAX_READ_BYTES: usize = 1 << 20;

/// At most [`MAX_READ_BYTES`] of the console from byte `start`, and the offset after them:
/// this replica's own file when it runs the instance, else the last copy its replica
/// published (empty when there is none).
pub async fn read(state: &AppState, instance: &InstanceRecord, start: u64) -> (String, u64) {
    let bytes = console(state, instance).await;
    let from = usize::try_from(start)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    let to = from.saturating_add(MAX_READ_BYTES).min(bytes.len());
    (
        String::from_utf8_lossy(&bytes[from..to]).into_owned(),
        to as u64,
    )
}

/// The last `max` bytes of the console, and the offset after them (where to read on from).
pub async fn tail(state: &AppState, instance: &InstanceRecord, max: usize) -> (String, u64) {
    let bytes = console(state, instance).await;
    let from = bytes.len().saturating_sub(max);
    (
        String::from_utf8_lossy(&bytes[from..]).into_owned(),
        bytes.len() as u64,
    )
}

/// This replica's own file when it runs the instance, else the last copy its replica
/// published (empty when there is none); bounded by `serial.rs`.
async fn console(state: &AppState, instance: &InstanceRecord) -> Vec<u8> {
    match state.compute.console(instance) {
        Some(bytes) => bytes,
        None => published(state, instance).await,
    }
}

async fn published(state: &AppState, instance: &InstanceRecord) -> Vec<u8> {
    let Some(key) = key(instance) else {
        return Vec::new();
    };
    let Ok(mut stream) = state.blobs.get(&key, None).await else {
        return Vec::new();
    };
    let mut bytes = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// Forgets a deleted instance's console: the published copy, and what this replica kept.
pub async fn remove(state: &AppState, instance: &InstanceRecord) {
    state.compute.forget(instance);
    if let Some(key) = key(instance) {
        let _ = state.blobs.delete(&key).await;
    }
}
