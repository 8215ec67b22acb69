//! Writing the audit log with group commit: decisions from concurrent requests are appended
//! in one transaction, so many requests share one disk sync. Each request still waits until
//! its entry is durable before it answers.

use std::sync::Arc;

use cloister_domain::AuditEntry;
use cloister_store::Store;
use tokio::sync::{mpsc, oneshot};

/// Most entries written in one transaction.
const MAX_BATCH: usize = 1024;

type Pending = (AuditEntry, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Pending>,
}

impl AuditLog {
    /// Starts the writer task (so call it inside the runtime); it ends when the last
    /// `AuditLog` clone is dropped.
    pub fn start(store: Arc<Store>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        tokio::spawn(async move {
            // While one batch is being written, the entries that arrive meanwhile queue up in
            // the channel and go out together in the next: one transaction (and disk sync)
            // per batch, however many requests wait on it.
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (entries, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                let result = store.append_audit(&entries).await.map_err(|e| e.chain());
                for waiter in waiters {
                    let _ = waiter.send(result.clone());
                }
            }
        });
        Self { tx }
    }

    /// Appends `entry` and waits until it is durable. A failure is logged, not returned: the
    /// decision stands, and the operator sees the broken log in the server's log.
    pub async fn record(&self, entry: AuditEntry) {
        let (done, wait) = oneshot::channel();
        if self.tx.send((entry, done)).is_err() {
            tracing::error!("the audit writer has stopped; a decision was not recorded");
            return;
        }
        match wait.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "could not append to the audit log"),
            Err(_) => tracing::error!("the audit writer stopped before recording a decision"),
        }
    }
}
