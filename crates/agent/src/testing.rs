//! Helpers for tests of this crate and of others that run the agent (feature `testing`): the
//! locally built busybox image (no registry is reachable from test machines), a report sink
//! that records, and a guard that removes every Docker container and volume a test labelled.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use model::agent::ReportTaskStateInput;
use tokio::sync::Notify;

use crate::labels;
use crate::reporter::ReportSink;

/// The image `scripts/test-images` builds: Debian's static busybox on `scratch`.
pub const TEST_IMAGE: &str = "wharf-test/busybox:latest";

/// Builds the test image once per process (the script itself is idempotent and fast when the
/// image exists). Panics with the script's message if Docker is unusable.
pub fn ensure_test_image() {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/test-images");
        let output = std::process::Command::new("bash")
            .arg(script)
            .output()
            .map_err(|e| format!("cannot run {script}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{script} failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(message) = result {
        panic!("{message}");
    }
}

/// A [`ReportSink`] that keeps every report, for assertions.
#[derive(Debug, Default)]
pub struct RecordingSink {
    reports: Mutex<Vec<ReportTaskStateInput>>,
    changed: Notify,
}

impl ReportSink for RecordingSink {
    fn submit(&self, report: ReportTaskStateInput) {
        self.lock().push(report);
        self.changed.notify_waiters();
    }
}

impl RecordingSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ReportTaskStateInput>> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every report so far, in order.
    pub fn all(&self) -> Vec<ReportTaskStateInput> {
        self.lock().clone()
    }

    /// The reports of one task, in order.
    pub fn of(&self, task_arn: &str) -> Vec<ReportTaskStateInput> {
        self.lock()
            .iter()
            .filter(|r| r.task_arn == task_arn)
            .cloned()
            .collect()
    }

    pub fn latest(&self, task_arn: &str) -> Option<ReportTaskStateInput> {
        self.of(task_arn).pop()
    }

    /// The distinct lastStatus values a task went through, in order.
    pub fn statuses(&self, task_arn: &str) -> Vec<String> {
        let mut statuses: Vec<String> = Vec::new();
        for report in self.of(task_arn) {
            if statuses.last() != Some(&report.last_status) {
                statuses.push(report.last_status);
            }
        }
        statuses
    }

    /// Waits until the latest report of `task_arn` satisfies `condition`, up to `timeout`;
    /// returns it, or panics with the reports seen.
    pub async fn wait_for(
        &self,
        task_arn: &str,
        timeout: Duration,
        condition: impl Fn(&ReportTaskStateInput) -> bool,
    ) -> ReportTaskStateInput {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(report) = self.latest(task_arn).filter(|r| condition(r)) {
                return report;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "no matching report for {task_arn} within {timeout:?}; reports: {:#?}",
                    self.of(task_arn)
                );
            }
        }
    }
}

/// Removes, when dropped (also when a test panics), every container and volume labelled with
/// this container instance ARN, through the docker CLI.
#[derive(Debug)]
pub struct DockerCleanup {
    pub container_instance_arn: String,
}

impl DockerCleanup {
    pub fn new(container_instance_arn: &str) -> Self {
        Self {
            container_instance_arn: container_instance_arn.to_string(),
        }
    }

    /// Removes now what carries the label.
    pub fn clean(&self) {
        let filter = format!(
            "label={}={}",
            labels::CONTAINER_INSTANCE_ARN,
            self.container_instance_arn
        );
        let list = |args: &[&str]| -> Vec<String> {
            std::process::Command::new("docker")
                .args(args)
                .output()
                .map(|o| {
                    String::from_utf8_lossy(&o.stdout)
                        .split_whitespace()
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let containers = list(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["rm", "-f", "-v"])
                .args(&containers)
                .output();
        }
        let volumes = list(&["volume", "ls", "-q", "--filter", &filter]);
        if !volumes.is_empty() {
            let _ = std::process::Command::new("docker")
                .args(["volume", "rm", "-f"])
                .args(&volumes)
                .output();
        }
    }
}

impl Drop for DockerCleanup {
    fn drop(&mut self) {
        self.clean();
    }
}
