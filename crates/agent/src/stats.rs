//! Resource usage of the tasks on this instance: the [`StatsSampler`] reads every running
//! container of this agent every `sample_interval` (one-shot engine stats, a few calls at a
//! time), sums them per task into [`TaskStatsSample`]s, keeps them in a bounded buffer, and
//! every `report_interval` sends what it gathered with `ReportTaskStats` through a
//! [`StatsSink`] (the server, [`ServerClient`]).
//!
//! It runs beside the task engine, never inside it: it finds containers by this instance's
//! label rather than asking the owners, so a slow engine or server slows only the statistics.
//! Samples are cumulative (CPU nanoseconds since start), so a lost batch costs resolution,
//! never correctness: the control plane derives rates from whatever consecutive samples it has.
//!
//! Delivery: a retryable failure (server unreachable, 5xx, throttling) keeps the samples for
//! the next report, oldest dropped beyond `max_samples_per_task`; a refusal (any other error,
//! for example `UnknownOperationException` from a server that does not know the operation yet)
//! drops the batch, logged once at debug level.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use model::agent::{
    ContainerStatsSample, ReportTaskStatsInput, TaskStatsReport, TaskStatsSample,
    STATS_REPORT_INTERVAL_SECONDS, STATS_SAMPLE_INTERVAL_SECONDS,
};
use store::clock::Clock;
use tokio_util::sync::CancellationToken;

use crate::client::{ClientError, ServerClient, Service};
use crate::labels;
use crate::runtime::{ContainerRuntime, ContainerStats, RuntimeError};

/// How long one engine call of a sampling round may take before its container is skipped.
const ENGINE_CALL_TIMEOUT: Duration = Duration::from_secs(5);
const REPORT_TIMEOUT: Duration = Duration::from_secs(15);

/// Where batches of samples go.
#[async_trait::async_trait]
pub trait StatsSink: Send + Sync + 'static {
    async fn report_task_stats(&self, input: &ReportTaskStatsInput) -> Result<(), ClientError>;
}

#[async_trait::async_trait]
impl StatsSink for ServerClient {
    async fn report_task_stats(&self, input: &ReportTaskStatsInput) -> Result<(), ClientError> {
        self.call::<_, serde_json::Value>(Service::Agent, "ReportTaskStats", input, REPORT_TIMEOUT)
            .await
            .map(|_| ())
    }
}

#[derive(Debug, Clone)]
pub struct StatsConfig {
    pub cluster: String,
    pub container_instance_arn: String,
    /// How often containers are read; zero turns sampling off.
    pub sample_interval: Duration,
    /// How often the gathered samples are sent.
    pub report_interval: Duration,
    /// Samples kept per task while the server cannot be reached (the oldest go first).
    pub max_samples_per_task: usize,
    /// Engine stats calls in flight at once.
    pub concurrency: usize,
}

impl StatsConfig {
    /// The agent protocol's intervals; two minutes of samples kept per task.
    pub fn new(cluster: &str, container_instance_arn: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            container_instance_arn: container_instance_arn.to_string(),
            sample_interval: Duration::from_secs(STATS_SAMPLE_INTERVAL_SECONDS),
            report_interval: Duration::from_secs(STATS_REPORT_INTERVAL_SECONDS),
            max_samples_per_task: 120,
            concurrency: 4,
        }
    }
}

/// What one report attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportOutcome {
    /// Nothing was buffered.
    Empty,
    /// Delivered this many samples.
    Sent(usize),
    /// Could not deliver; the samples are kept for the next attempt.
    Kept(usize),
    /// Refused by the server; the samples were dropped.
    Dropped(usize),
}

/// One container's reading in a sampling round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    Running(ContainerStats),
    /// Not running any more.
    Stopped,
    /// The engine failed to answer, or not in time.
    Failed,
}

/// One sample per task from its containers' readings (task ARN, container name, reading).
/// A task with a running container that could not be read gets no sample this round: its
/// CPU total is cumulative, and a sum without that container would drop (the server takes
/// that for a restart and starts over from the lower value) and then jump by the container's
/// whole lifetime of CPU the next round, a spike of thousands of percent. A missing sample
/// only leaves a gap, which the server bridges with the samples on either side.
fn task_samples(
    timestamp: f64,
    readings: impl IntoIterator<Item = (String, String, Reading)>,
) -> BTreeMap<String, TaskStatsSample> {
    let mut per_task: BTreeMap<String, Option<Vec<ContainerStatsSample>>> = BTreeMap::new();
    for (task_arn, name, reading) in readings {
        match reading {
            Reading::Running(stats) => {
                if let Some(containers) =
                    per_task.entry(task_arn).or_insert_with(|| Some(Vec::new()))
                {
                    containers.push(ContainerStatsSample {
                        name,
                        cpu_total_nanos: stats.cpu_total_nanos,
                        memory_bytes: stats.memory_bytes,
                        memory_limit_bytes: stats.memory_limit_bytes,
                    });
                }
            }
            Reading::Stopped => {}
            Reading::Failed => {
                per_task.insert(task_arn, None);
            }
        }
    }
    per_task
        .into_iter()
        .filter_map(|(task_arn, containers)| {
            let mut containers = containers?;
            containers.sort_by(|a, b| a.name.cmp(&b.name));
            let sample = TaskStatsSample {
                timestamp,
                cpu_total_nanos: containers.iter().map(|c| c.cpu_total_nanos).sum(),
                memory_bytes: containers.iter().map(|c| c.memory_bytes).sum(),
                containers,
            };
            Some((task_arn, sample))
        })
        .collect()
}

/// Samples and reports the resource usage of this instance's tasks. Run
/// [`StatsSampler::run`] as an owned task.
pub struct StatsSampler {
    config: StatsConfig,
    runtime: Arc<dyn ContainerRuntime>,
    clock: Arc<dyn Clock>,
    sink: Arc<dyn StatsSink>,
    /// Task ARN → samples not yet delivered, oldest first.
    buffer: Mutex<BTreeMap<String, VecDeque<TaskStatsSample>>>,
    refusal_logged: AtomicBool,
}

impl std::fmt::Debug for StatsSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatsSampler")
            .field("config", &self.config)
            .field("buffered", &self.buffered())
            .finish_non_exhaustive()
    }
}

impl StatsSampler {
    pub fn new(
        config: StatsConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        sink: Arc<dyn StatsSink>,
    ) -> Arc<Self> {
        Arc::new(Self {
            config,
            runtime,
            clock,
            sink,
            buffer: Mutex::new(BTreeMap::new()),
            refusal_logged: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, VecDeque<TaskStatsSample>>> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many samples wait for delivery, over all tasks.
    pub fn buffered(&self) -> usize {
        self.lock().values().map(VecDeque::len).sum()
    }

    /// Samples and reports until cancelled. Sampling and reporting are separate loops, so a
    /// slow server never delays a sample.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        if self.config.sample_interval.is_zero() || self.config.report_interval.is_zero() {
            tracing::info!("task statistics are turned off");
            cancel.cancelled().await;
            return;
        }
        let sampling = {
            let sampler = self.clone();
            let cancel = cancel.clone();
            async move {
                let mut ticks = tokio::time::interval(sampler.config.sample_interval);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = ticks.tick() => {}
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sampler.sample_once() => {}
                    }
                }
            }
        };
        let reporting = {
            let sampler = self.clone();
            async move {
                let period = sampler.config.report_interval;
                let mut ticks =
                    tokio::time::interval_at(tokio::time::Instant::now() + period, period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = ticks.tick() => {}
                    }
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = sampler.report_once() => {}
                    }
                }
            }
        };
        tokio::join!(sampling, reporting);
    }

    /// Reads every running container of this instance once and buffers one sample per task.
    /// Returns how many tasks were sampled. A task with a container whose reading fails or
    /// times out is left out of this round (see [`task_samples`]).
    pub async fn sample_once(&self) -> usize {
        let timestamp = self.clock.now_seconds_f64();
        let wanted = [(
            labels::CONTAINER_INSTANCE_ARN.to_string(),
            self.config.container_instance_arn.clone(),
        )];
        let listed =
            match tokio::time::timeout(ENGINE_CALL_TIMEOUT, self.runtime.list_containers(&wanted))
                .await
            {
                Ok(Ok(listed)) => listed,
                Ok(Err(error)) => {
                    tracing::debug!(error = %error, "cannot list containers for statistics");
                    return 0;
                }
                Err(_) => {
                    tracing::debug!("listing containers for statistics timed out");
                    return 0;
                }
            };
        let targets: Vec<(String, String, String)> = listed
            .into_iter()
            .filter(|c| c.running)
            // A task's pause container only holds its namespace: not part of its usage.
            .filter(|c| !c.labels.contains_key(labels::PAUSE))
            .filter_map(|c| {
                let task_arn = c.labels.get(labels::TASK_ARN)?.clone();
                let name = c.labels.get(labels::CONTAINER_NAME)?.clone();
                Some((task_arn, name, c.id))
            })
            .collect();
        let runtime = &self.runtime;
        let readings: Vec<_> = futures_util::stream::iter(targets)
            .map(|(task_arn, name, id)| async move {
                let reading = tokio::time::timeout(ENGINE_CALL_TIMEOUT, runtime.stats(&id)).await;
                (task_arn, name, id, reading)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let readings = readings.into_iter().map(|(task_arn, name, id, reading)| {
            let reading = match reading {
                Ok(Ok(Some(stats))) => Reading::Running(stats),
                // Stopped (or removed) since the listing: its usage leaves the task's for good,
                // which the server sees as a drop once, not as a spike later.
                Ok(Ok(None)) | Ok(Err(RuntimeError::NoSuchContainer { .. })) => Reading::Stopped,
                Ok(Err(error)) => {
                    tracing::debug!(container_id = %id, error = %error, "cannot read container statistics");
                    Reading::Failed
                }
                Err(_) => {
                    tracing::debug!(container_id = %id, "reading container statistics timed out");
                    Reading::Failed
                }
            };
            (task_arn, name, reading)
        });
        let per_task = task_samples(timestamp, readings);
        let sampled = per_task.len();
        let mut buffer = self.lock();
        for (task_arn, sample) in per_task {
            let samples = buffer.entry(task_arn).or_default();
            samples.push_back(sample);
            while samples.len() > self.config.max_samples_per_task {
                samples.pop_front();
            }
        }
        sampled
    }

    /// Sends everything buffered as one `ReportTaskStats`.
    pub async fn report_once(&self) -> ReportOutcome {
        let taken: BTreeMap<String, VecDeque<TaskStatsSample>> = std::mem::take(&mut *self.lock());
        let count: usize = taken.values().map(VecDeque::len).sum();
        if count == 0 {
            return ReportOutcome::Empty;
        }
        let input = ReportTaskStatsInput {
            cluster: self.config.cluster.clone(),
            container_instance_arn: self.config.container_instance_arn.clone(),
            tasks: taken
                .iter()
                .map(|(task_arn, samples)| TaskStatsReport {
                    task_arn: task_arn.clone(),
                    samples: samples.iter().cloned().collect(),
                })
                .collect(),
        };
        match self.sink.report_task_stats(&input).await {
            Ok(()) => ReportOutcome::Sent(count),
            Err(error) if error.is_retryable() => {
                tracing::debug!(error = %error, samples = count, "task statistics not delivered, keeping them");
                let mut buffer = self.lock();
                for (task_arn, mut older) in taken {
                    let newer = buffer.remove(&task_arn).unwrap_or_default();
                    older.extend(newer);
                    while older.len() > self.config.max_samples_per_task {
                        older.pop_front();
                    }
                    buffer.insert(task_arn, older);
                }
                ReportOutcome::Kept(count)
            }
            Err(error) => {
                // A server without ReportTaskStats (or one refusing this agent) would refuse
                // every batch the same way: say it once, not every few seconds.
                if !self.refusal_logged.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %error, "task statistics refused by the server; dropping refused batches");
                }
                ReportOutcome::Dropped(count)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;
    use crate::runtime::{ContainerSpec, ContainerStats};
    use crate::testing::RecordingStatsSink;
    use store::clock::ManualClock;

    const ARN: &str = "arn:aws:ecs:us-east-1:000000000000:container-instance/default/i1";

    async fn running(fake: &FakeRuntime, task: &str, name: &str, instance: &str) -> String {
        fake.add_image("img:1");
        let id = fake
            .create_container(&ContainerSpec {
                name: format!("{task}-{name}"),
                image: "img:1".into(),
                labels: BTreeMap::from([
                    (labels::TASK_ARN.to_string(), task.to_string()),
                    (labels::CONTAINER_NAME.to_string(), name.to_string()),
                    (
                        labels::CONTAINER_INSTANCE_ARN.to_string(),
                        instance.to_string(),
                    ),
                ]),
                ..Default::default()
            })
            .await
            .expect("creates");
        fake.start_container(&id).await.expect("starts");
        id
    }

    fn stats(cpu: u64, memory: u64) -> ContainerStats {
        ContainerStats {
            cpu_total_nanos: cpu,
            memory_bytes: memory,
            memory_limit_bytes: 1 << 30,
        }
    }

    fn sampler(
        fake: &FakeRuntime,
        sink: &Arc<RecordingStatsSink>,
        clock: &Arc<ManualClock>,
    ) -> Arc<StatsSampler> {
        let config = StatsConfig {
            max_samples_per_task: 3,
            ..StatsConfig::new("default", ARN)
        };
        StatsSampler::new(config, Arc::new(fake.clone()), clock.clone(), sink.clone())
    }

    #[tokio::test]
    async fn samples_sum_the_running_containers_of_each_task() {
        let fake = FakeRuntime::new();
        let web = running(&fake, "task-web", "web", ARN).await;
        let sidecar = running(&fake, "task-web", "sidecar", ARN).await;
        let db = running(&fake, "task-db", "db", ARN).await;
        let stopped = running(&fake, "task-db", "init", ARN).await;
        let foreign = running(&fake, "task-other", "x", "someone-else").await;
        fake.set_stats(&web, stats(1_000, 10));
        fake.set_stats(&sidecar, stats(2_000, 20));
        fake.set_stats(&db, stats(5_000, 50));
        fake.set_stats(&foreign, stats(9, 9));
        fake.exit(&stopped, 0);
        let sink = Arc::new(RecordingStatsSink::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let sampler = sampler(&fake, &sink, &clock);

        assert_eq!(sampler.sample_once().await, 2);
        clock.advance(Duration::from_secs(1));
        fake.set_stats(&web, stats(1_500, 12));
        assert_eq!(sampler.sample_once().await, 2);
        assert_eq!(sampler.buffered(), 4);
        assert_eq!(sampler.report_once().await, ReportOutcome::Sent(4));
        assert_eq!(sampler.buffered(), 0);

        let batches = sink.batches();
        assert_eq!(batches.len(), 1);
        let batch = &batches[0];
        assert_eq!(batch.cluster, "default");
        assert_eq!(batch.container_instance_arn, ARN);
        let tasks: Vec<&str> = batch.tasks.iter().map(|t| t.task_arn.as_str()).collect();
        assert_eq!(tasks, vec!["task-db", "task-web"]);
        let web_samples = &batch.tasks[1].samples;
        assert_eq!(web_samples.len(), 2);
        assert_eq!(web_samples[0].timestamp, 1_700_000_000.0);
        assert_eq!(web_samples[1].timestamp, 1_700_000_001.0);
        assert_eq!(
            (web_samples[0].cpu_total_nanos, web_samples[0].memory_bytes),
            (3_000, 30)
        );
        assert_eq!(web_samples[1].cpu_total_nanos, 3_500);
        let names: Vec<&str> = web_samples[0]
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, vec!["sidecar", "web"]);
        // The exited container is not part of its task's sample.
        assert_eq!(batch.tasks[0].samples[0].containers.len(), 1);
        assert_eq!(sampler.report_once().await, ReportOutcome::Empty);
    }

    #[test]
    fn a_task_with_an_unreadable_container_gets_no_sample_that_round() {
        let reading = |task: &str, name: &str, reading: Reading| {
            (task.to_string(), name.to_string(), reading)
        };
        let round = |web: Reading| {
            task_samples(
                1.0,
                [
                    reading("task-web", "web", web),
                    reading("task-web", "sidecar", Reading::Running(stats(2_000, 20))),
                    reading("task-db", "db", Reading::Running(stats(5_000, 50))),
                    reading("task-db", "init", Reading::Stopped),
                ],
            )
        };
        let cpu = |samples: &BTreeMap<String, TaskStatsSample>, task: &str| {
            samples.get(task).map(|s| s.cpu_total_nanos)
        };
        let before = round(Reading::Running(stats(700_000_000_000, 10)));
        assert_eq!(cpu(&before, "task-web"), Some(700_000_002_000));
        // Leaving the failed container out would make the task's CPU drop by its whole
        // lifetime and jump back the next round; the task skips the round instead.
        let failed = round(Reading::Failed);
        assert_eq!(cpu(&failed, "task-web"), None);
        assert_eq!(
            cpu(&failed, "task-db"),
            Some(5_000),
            "other tasks are sampled"
        );
        let after = round(Reading::Running(stats(700_001_000_000, 10)));
        assert_eq!(cpu(&after, "task-web"), Some(700_001_002_000));
        // Each container keeps its own values; a stopped one is simply not part of the task.
        let web = &after["task-web"];
        let names: Vec<(&str, u64)> = web
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.cpu_total_nanos))
            .collect();
        assert_eq!(names, vec![("sidecar", 2_000), ("web", 700_001_000_000)]);
        assert_eq!(web.memory_bytes, 30);
        assert_eq!(after["task-db"].containers.len(), 1);
        // The failure may come before the task's other readings.
        let first = task_samples(
            1.0,
            [
                reading("task-web", "web", Reading::Failed),
                reading("task-web", "sidecar", Reading::Running(stats(2_000, 20))),
            ],
        );
        assert!(first.is_empty());
    }

    #[tokio::test]
    async fn retryable_failures_keep_a_bounded_buffer_and_refusals_drop() {
        let fake = FakeRuntime::new();
        let web = running(&fake, "task-web", "web", ARN).await;
        let sink = Arc::new(RecordingStatsSink::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let sampler = sampler(&fake, &sink, &clock);

        for cpu in 1..=2 {
            fake.set_stats(&web, stats(cpu, 1));
            sampler.sample_once().await;
        }
        sink.fail_next(1, true);
        assert_eq!(sampler.report_once().await, ReportOutcome::Kept(2));
        // Two more: four in all, bounded to the newest three.
        for cpu in 3..=4 {
            fake.set_stats(&web, stats(cpu, 1));
            sampler.sample_once().await;
        }
        assert_eq!(sampler.buffered(), 3);
        assert_eq!(sampler.report_once().await, ReportOutcome::Sent(3));
        let cpus: Vec<u64> = sink.batches()[0].tasks[0]
            .samples
            .iter()
            .map(|s| s.cpu_total_nanos)
            .collect();
        assert_eq!(cpus, vec![2, 3, 4], "oldest first, the oldest dropped");

        sampler.sample_once().await;
        sink.fail_next(2, false);
        assert_eq!(sampler.report_once().await, ReportOutcome::Dropped(1));
        assert_eq!(sampler.buffered(), 0);
        sampler.sample_once().await;
        assert_eq!(sampler.report_once().await, ReportOutcome::Dropped(1));
        assert_eq!(sink.batches().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn the_loops_sample_every_interval_and_report_every_report_interval() {
        let fake = FakeRuntime::new();
        let web = running(&fake, "task-web", "web", ARN).await;
        fake.set_stats(&web, stats(7, 7));
        let sink = Arc::new(RecordingStatsSink::default());
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let config = StatsConfig::new("default", ARN);
        let sampler = StatsSampler::new(config, Arc::new(fake.clone()), clock, sink.clone());
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(sampler.clone().run(cancel.clone()));
        // Samples at 0, 1, 2, 3, 4 s; the report at 5 s carries them (the sample at 5 s may
        // come before or after it).
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        let batches = sink.batches();
        assert_eq!(batches.len(), 1);
        let samples = batches[0].tasks[0].samples.len();
        assert!((5..=6).contains(&samples), "{samples} samples");
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(sink.batches().len(), 2);
        cancel.cancel();
        handle.await.expect("ends on cancel");
    }
}
