//! Where task owners send what they observe. Owners never wait on the network: they hand a
//! report to a [`ReportSink`] and go on. [`ServerReporter`] delivers them with
//! `ReportTaskState`, keeping only the latest report per task (reports are idempotent and the
//! server keeps statuses moving forward, so an older one is worth nothing once a newer one
//! exists) and retrying with backoff while the server is unreachable.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use model::agent::ReportTaskStateInput;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::client::{ServerClient, Service};

/// Takes reports without blocking.
pub trait ReportSink: Send + Sync + 'static {
    fn submit(&self, report: ReportTaskStateInput);
}

const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// Delivers reports to the server; run [`ServerReporter::run`] as an owned task.
#[derive(Debug, Default)]
pub struct ServerReporter {
    /// Task ARN → the latest undelivered report.
    pending: Mutex<BTreeMap<String, ReportTaskStateInput>>,
    wake: Notify,
}

impl ReportSink for ServerReporter {
    fn submit(&self, report: ReportTaskStateInput) {
        self.lock().insert(report.task_arn.clone(), report);
        self.wake.notify_one();
    }
}

impl ServerReporter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ReportTaskStateInput>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many reports wait for delivery.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    /// Delivers reports until cancelled.
    pub async fn run(self: Arc<Self>, client: ServerClient, cancel: CancellationToken) {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(15));
        loop {
            let batch: Vec<ReportTaskStateInput> = self.lock().values().cloned().collect();
            let mut failed = false;
            for report in batch {
                let sent = tokio::select! {
                    _ = cancel.cancelled() => return,
                    sent = client.call::<_, serde_json::Value>(
                        Service::Agent,
                        "ReportTaskState",
                        &report,
                        REPORT_TIMEOUT,
                    ) => sent,
                };
                let delivered = match sent {
                    Ok(_) => true,
                    Err(error) if error.is_retryable() => {
                        tracing::warn!(task_arn = %report.task_arn, error = %error, "task state report failed, will retry");
                        failed = true;
                        false
                    }
                    Err(error) => {
                        // The server refused it (unknown task, bad request): resending the
                        // same report cannot help; a newer one will be sent if it comes.
                        tracing::warn!(task_arn = %report.task_arn, error = %error, "task state report refused, dropping it");
                        true
                    }
                };
                if delivered {
                    let mut pending = self.lock();
                    // Remove it only if no newer report replaced it meanwhile.
                    if pending.get(&report.task_arn) == Some(&report) {
                        pending.remove(&report.task_arn);
                    }
                }
                if failed {
                    break;
                }
            }
            if failed {
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                continue;
            }
            backoff.reset();
            if self.pending() > 0 {
                continue;
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.wake.notified() => {}
            }
        }
    }
}
