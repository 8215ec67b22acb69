//! Writing the audit log with group commit: decisions from concurrent requests are appended
//! in one transaction, so many requests share one disk sync. Each request still waits until
//! its entry is durable before it answers.

use std::sync::Arc;

use cloister_domain::AuditEntry;
use cloister_store::MetadataStore;
use tokio::sync::{mpsc, oneshot};

/// Most entries written in one transaction.
const MAX_BATCH: usize = 1024;

type Pending = (AuditEntry, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::UnboundedSender<Pending>,
}

impl AuditLog {
    /// Starts the writer thread; it ends when the last `AuditLog` clone is dropped.
    pub fn start(store: Arc<dyn MetadataStore>) -> Self {
        let (tx, mut rx) = mpsc::unbounded_channel::<Pending>();
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || {
                while let Some(first) = rx.blocking_recv() {
                    let mut batch = vec![first];
                    while batch.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(next) => batch.push(next),
                            Err(_) => break,
                        }
                    }
                    let (entries, waiters): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
                    let result = store.append_audit(&entries).map_err(|e| e.to_string());
                    for waiter in waiters {
                        let _ = waiter.send(result.clone());
                    }
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::error!(error = %e, "cannot start the audit writer"));
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
