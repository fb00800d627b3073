//! Helpers for tests of this crate and of others that run the agent (feature `testing`): the
//! locally built busybox image (no registry is reachable from test machines), sinks that
//! record (task state reports, task statistics, CloudWatch Logs calls) and can be told to
//! fail, and a guard that removes every Docker container and volume a test labelled.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use model::agent::{ReportTaskStateInput, ReportTaskStatsInput};
use tokio::sync::Notify;

use crate::client::ClientError;
use crate::labels;
use crate::logs::batch::{
    EVENT_OVERHEAD_BYTES, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_BATCH_SPAN_MILLIS, MAX_EVENT_BYTES,
};
use crate::logs::{LogEvent, LogSink};
use crate::reporter::ReportSink;
use crate::stats::StatsSink;

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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// The error a failing sink answers: a 503 (retryable) or an `UnknownOperationException`
/// (a refusal), as the server gives them.
pub fn sink_error(operation: &str, retryable: bool) -> ClientError {
    if retryable {
        ClientError::Api {
            operation: operation.to_string(),
            status: 503,
            code: "ServiceUnavailableException".to_string(),
            message: "try again".to_string(),
        }
    } else {
        ClientError::Api {
            operation: operation.to_string(),
            status: 400,
            code: "UnknownOperationException".to_string(),
            message: operation.to_string(),
        }
    }
}

/// A [`StatsSink`] that keeps every delivered batch.
#[derive(Debug, Default)]
pub struct RecordingStatsSink {
    batches: Mutex<Vec<ReportTaskStatsInput>>,
    failures: Mutex<VecDeque<ClientError>>,
}

#[async_trait::async_trait]
impl StatsSink for RecordingStatsSink {
    async fn report_task_stats(&self, input: &ReportTaskStatsInput) -> Result<(), ClientError> {
        if let Some(error) = lock(&self.failures).pop_front() {
            return Err(error);
        }
        lock(&self.batches).push(input.clone());
        Ok(())
    }
}

impl RecordingStatsSink {
    /// The next `count` reports fail, retryably or not.
    pub fn fail_next(&self, count: usize, retryable: bool) {
        let mut failures = lock(&self.failures);
        for _ in 0..count {
            failures.push_back(sink_error("ReportTaskStats", retryable));
        }
    }

    /// Every delivered batch, in order.
    pub fn batches(&self) -> Vec<ReportTaskStatsInput> {
        lock(&self.batches).clone()
    }
}

#[derive(Debug, Default)]
struct LogsState {
    groups: BTreeSet<String>,
    streams: BTreeMap<(String, String), Vec<LogEvent>>,
    batch_sizes: Vec<usize>,
    put_failures: VecDeque<ClientError>,
    /// Accepted PutLogEvents calls whose answer is lost: `true` never answers, `false` times
    /// out.
    lost_answers: VecDeque<bool>,
    violations: Vec<String>,
}

/// A [`LogSink`] behaving like CloudWatch Logs in memory: streams need their group, events
/// need their stream, and every PutLogEvents is checked against the service's limits (a batch
/// breaking one is refused with `InvalidParameterException` and recorded as a violation).
#[derive(Debug, Default)]
pub struct RecordingLogSink {
    state: Mutex<LogsState>,
    changed: Notify,
}

fn not_found(operation: &str, message: &str) -> ClientError {
    ClientError::Api {
        operation: operation.to_string(),
        status: 400,
        code: "ResourceNotFoundException".to_string(),
        message: message.to_string(),
    }
}

/// What CloudWatch Logs would refuse in this batch, if anything.
fn violation(events: &[LogEvent]) -> Option<String> {
    if events.is_empty() || events.len() > MAX_BATCH_EVENTS {
        return Some(format!("{} events in one batch", events.len()));
    }
    let bytes: usize = events
        .iter()
        .map(|e| e.message.len() + EVENT_OVERHEAD_BYTES)
        .sum();
    if bytes > MAX_BATCH_BYTES {
        return Some(format!("{bytes} bytes in one batch"));
    }
    if let Some(event) = events
        .iter()
        .find(|e| e.message.is_empty() || e.message.len() > MAX_EVENT_BYTES)
    {
        return Some(format!("an event of {} bytes", event.message.len()));
    }
    if events.windows(2).any(|w| w[0].timestamp > w[1].timestamp) {
        return Some("events out of chronological order".to_string());
    }
    let span = events[events.len() - 1].timestamp - events[0].timestamp;
    if span >= MAX_BATCH_SPAN_MILLIS {
        return Some(format!("a batch spanning {span} ms"));
    }
    None
}

#[async_trait::async_trait]
impl LogSink for RecordingLogSink {
    async fn create_log_group(&self, group: &str) -> Result<(), ClientError> {
        lock(&self.state).groups.insert(group.to_string());
        Ok(())
    }

    async fn create_log_stream(&self, group: &str, stream: &str) -> Result<(), ClientError> {
        let mut state = lock(&self.state);
        if !state.groups.contains(group) {
            return Err(not_found(
                "CreateLogStream",
                "The specified log group does not exist.",
            ));
        }
        state
            .streams
            .entry((group.to_string(), stream.to_string()))
            .or_default();
        Ok(())
    }

    async fn put_log_events(
        &self,
        group: &str,
        stream: &str,
        events: &[LogEvent],
    ) -> Result<(), ClientError> {
        let lost = {
            let mut state = lock(&self.state);
            if let Some(error) = state.put_failures.pop_front() {
                return Err(error);
            }
            if let Some(problem) = violation(events) {
                state.violations.push(problem.clone());
                return Err(ClientError::Api {
                    operation: "PutLogEvents".to_string(),
                    status: 400,
                    code: "InvalidParameterException".to_string(),
                    message: problem,
                });
            }
            let Some(stored) = state
                .streams
                .get_mut(&(group.to_string(), stream.to_string()))
            else {
                return Err(not_found(
                    "PutLogEvents",
                    "The specified log stream does not exist.",
                ));
            };
            stored.extend_from_slice(events);
            state.batch_sizes.push(events.len());
            state.lost_answers.pop_front()
        };
        self.changed.notify_waiters();
        match lost {
            None => Ok(()),
            Some(true) => std::future::pending().await,
            Some(false) => Err(ClientError::Timeout {
                operation: "PutLogEvents".to_string(),
                seconds: 30,
            }),
        }
    }

    async fn newest_log_events(
        &self,
        group: &str,
        stream: &str,
        limit: usize,
    ) -> Result<Vec<LogEvent>, ClientError> {
        let state = lock(&self.state);
        let Some(stored) = state.streams.get(&(group.to_string(), stream.to_string())) else {
            return Err(not_found(
                "GetLogEvents",
                "The specified log stream does not exist.",
            ));
        };
        // The service orders a stream by timestamp, and by arrival within a millisecond.
        let mut events = stored.clone();
        events.sort_by_key(|e| e.timestamp);
        Ok(events.split_off(events.len().saturating_sub(limit)))
    }
}

impl RecordingLogSink {
    /// Makes a group exist (as if created beforehand).
    pub fn add_group(&self, group: &str) {
        lock(&self.state).groups.insert(group.to_string());
    }

    /// The next `count` PutLogEvents calls fail, retryably or not.
    pub fn fail_next_puts(&self, count: usize, retryable: bool) {
        let mut state = lock(&self.state);
        for _ in 0..count {
            state
                .put_failures
                .push_back(sink_error("PutLogEvents", retryable));
        }
    }

    /// The next `count` PutLogEvents calls store their events and then lose the answer: they
    /// never answer (`hang`: the agent stops during the call) or time out.
    pub fn lose_next_answers(&self, count: usize, hang: bool) {
        let mut state = lock(&self.state);
        state.lost_answers.extend(std::iter::repeat_n(hang, count));
    }

    /// Forgets the failures still queued.
    pub fn clear_failures(&self) {
        lock(&self.state).put_failures.clear();
    }

    /// Deletes every stream (and what it held), as `DeleteLogStream` would.
    pub fn delete_streams(&self) {
        lock(&self.state).streams.clear();
    }

    pub fn groups(&self) -> Vec<String> {
        lock(&self.state).groups.iter().cloned().collect()
    }

    /// Every (group, stream) that exists.
    pub fn streams(&self) -> Vec<(String, String)> {
        lock(&self.state).streams.keys().cloned().collect()
    }

    pub fn events(&self, group: &str, stream: &str) -> Vec<LogEvent> {
        lock(&self.state)
            .streams
            .get(&(group.to_string(), stream.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    pub fn messages(&self, group: &str, stream: &str) -> Vec<String> {
        self.events(group, stream)
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    /// How many events each accepted PutLogEvents carried, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        lock(&self.state).batch_sizes.clone()
    }

    /// Batches that broke a CloudWatch Logs limit.
    pub fn violations(&self) -> Vec<String> {
        lock(&self.state).violations.clone()
    }

    /// Waits until the stream holds at least `count` events, up to `timeout`; returns its
    /// messages, or panics with what it holds.
    pub async fn wait_for_messages(
        &self,
        group: &str,
        stream: &str,
        count: usize,
        timeout: Duration,
    ) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            let messages = self.messages(group, stream);
            if messages.len() >= count {
                return messages;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                // The last few, shortened: messages can be long.
                let tail: Vec<String> = messages
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|m| m.chars().take(80).collect())
                    .collect();
                panic!(
                    "{group}/{stream} holds {} of {count} events within {timeout:?}, ending with {tail:?}; streams: {:?}",
                    messages.len(),
                    self.streams()
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
