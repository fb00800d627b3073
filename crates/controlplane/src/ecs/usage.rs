//! Task resource usage: what agents report with `ReportTaskStats`, turned into the `AWS/ECS`
//! metrics CloudWatch serves and into the live view `wharf top` reads (`DescribeTaskStats`).
//!
//! Agents sample each running task about every second (cumulative CPU time, memory in use) and
//! send batches every few seconds. The tracker turns consecutive samples of a task into CPU
//! units used over that interval (per container, so a container missing from one sample cannot
//! fake a burst), and spreads each interval over the seconds it covers, weighted by overlap, per
//! service and per cluster: agents' ticks are not aligned to seconds, and crediting a whole
//! interval to one second would double some seconds and empty others. Seconds are published
//! once every agent had time to report them (`PUBLISH_LAG_SECONDS`), as high-resolution points:
//!
//! - `CPUUtilization` / `MemoryUtilization` with `ClusterName` + `ServiceName`: used ÷ reserved
//!   by the service's tasks, in percent (as ECS computes them; above 100 % when tasks use more
//!   CPU than they reserved, which ECS on EC2 allows). Each second is a statistic set whose
//!   Average is that ratio and whose Minimum/Maximum are the least and most utilized task, as
//!   ECS documents them; SampleCount is the number of tasks.
//! - `CPUUtilization` / `MemoryUtilization` with `ClusterName`: used by all tasks ÷ registered
//!   on the cluster's ACTIVE and DRAINING container instances.
//! - `CPUReservation` / `MemoryReservation` with `ClusterName`, once a minute: reserved by
//!   tasks ÷ registered, from the instance records.
//!
//! All of this lives in memory: a server restart loses at most the seconds not yet published,
//! which are derived data (the agents' samples), never something a client was told is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use metricstore::{MetricKey, MetricStore, Point, Resolution, Sample};
use model::agent::{
    DescribeTaskStatsInput, DescribeTaskStatsOutput, ReportTaskStatsInput, TaskUsage,
    STATS_REPORT_INTERVAL_SECONDS,
};
use serde_json::{json, Value};
use tracing::warn;

use super::cluster_state::InstanceRecord;
use super::clusters::cluster_name;
use super::tasks::TaskRecord;
use super::{keys, EcsContext, EcsError};

/// The namespace ECS publishes in.
pub const NAMESPACE: &str = "AWS/ECS";
/// A second is published this long after it ended, so every agent's batch for it has arrived.
const PUBLISH_LAG_SECONDS: i64 = STATS_REPORT_INTERVAL_SECONDS as i64 + 5;
/// Tasks without a sample for this long are forgotten (they stopped, or their agent is gone).
const FORGET_AFTER_SECONDS: f64 = 60.0;
/// `DescribeTaskStats` shows tasks sampled within this long.
const LIVE_SECONDS: f64 = 30.0;
/// Samples older than this are not added to any second (their second was published already,
/// or they are from a clock far off).
const MAX_SAMPLE_AGE_SECONDS: f64 = 3600.0;
/// Samples further in the future than this come from a clock that is off; they are ignored
/// rather than published with future timestamps (and kept in memory until then).
const MAX_SAMPLE_SKEW_SECONDS: f64 = 5.0;
/// How long an ARN that is not in the store is remembered as unknown, so an agent reporting a
/// task the store forgot does not cost a store read per report.
const UNKNOWN_TASK_SECONDS: f64 = 60.0;

/// One task the tracker follows.
#[derive(Debug, Clone)]
struct TrackedTask {
    cluster: String,
    service: Option<String>,
    group: Option<String>,
    instance_arn: Option<String>,
    cpu_reserved: f64,
    memory_reserved: f64,
    /// The previous sample: its timestamp (s) and each container's cumulative CPU ns (a
    /// container named `""` stands for the task's sum when the agent sent no containers).
    previous: Option<(f64, HashMap<String, u64>)>,
    latest: Option<TaskUsage>,
    /// When a report last mentioned the task (server time).
    last_seen: f64,
}

/// Usage added up over one second for one service, or one cluster (`service: None`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    cpu_used: f64,
    cpu_reserved: f64,
    memory_used: f64,
    memory_reserved: f64,
    /// The tasks that contributed to the second.
    tasks: f64,
    /// The least and most utilized task (percent of its reservation), when it reserved any.
    cpu_min: Option<f64>,
    cpu_max: Option<f64>,
    memory_min: Option<f64>,
    memory_max: Option<f64>,
}

fn widen(range: (&mut Option<f64>, &mut Option<f64>), value: f64) {
    let (min, max) = range;
    *min = Some(min.map_or(value, |m| m.min(value)));
    *max = Some(max.map_or(value, |m| m.max(value)));
}

#[derive(Debug, Default)]
struct Inner {
    tasks: HashMap<String, TrackedTask>,
    /// second → (cluster, service) → usage.
    pending: BTreeMap<i64, HashMap<(String, Option<String>), Usage>>,
    /// Every second up to and including this one was published.
    published_through: i64,
    /// The minute of the last reservation metrics per cluster.
    reservation_minute: HashMap<String, i64>,
    /// ARNs not found in the store, until when they are not looked up again.
    unknown: HashMap<String, f64>,
}

/// The tracker; one per server, shared by the agent service and the publishing controller.
#[derive(Debug, Default)]
pub struct UsageTracker {
    inner: Mutex<Inner>,
    metrics: OnceLock<Arc<MetricStore>>,
}

impl UsageTracker {
    /// Where published metrics go; until attached, `publish` only drops old seconds.
    pub fn attach_metrics(&self, metrics: Arc<MetricStore>) {
        let _ = self.metrics.set(metrics);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// `ReportTaskStats`: add an agent's samples.
pub async fn report_task_stats(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: ReportTaskStatsInput = ctx.parse(input)?;
    let cluster = cluster_name(Some(&input.cluster))?;
    let tracker = &ctx.usage;
    let now = ctx.now();
    // Look up tasks seen for the first time outside the lock (a store read each).
    let unknown: Vec<String> = {
        let inner = tracker.lock();
        input
            .tasks
            .iter()
            .filter(|t| !inner.tasks.contains_key(&t.task_arn))
            .filter(|t| {
                inner
                    .unknown
                    .get(&t.task_arn)
                    .is_none_or(|until| now >= *until)
            })
            .map(|t| t.task_arn.clone())
            .collect()
    };
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for arn in unknown {
        let id = arn.rsplit('/').next().unwrap_or(&arn).to_string();
        match ctx
            .get_json::<TaskRecord>(&keys::task(&cluster, &id))
            .await?
        {
            Some((record, _)) => found.push((arn, tracked(&cluster, &record, now))),
            None => missing.push(arn),
        }
    }
    let mut inner = tracker.lock();
    for (arn, task) in found {
        inner.tasks.entry(arn).or_insert(task);
    }
    for arn in missing {
        inner.unknown.insert(arn, now + UNKNOWN_TASK_SECONDS);
    }
    let published_through = inner.published_through;
    let Inner { tasks, pending, .. } = &mut *inner;
    for report in input.tasks {
        // Unknown tasks (not in the store) are ignored: nothing to attribute them to.
        let Some(task) = tasks.get_mut(&report.task_arn) else {
            continue;
        };
        task.last_seen = now;
        for sample in report.samples {
            if !sample.timestamp.is_finite() || sample.timestamp - now > MAX_SAMPLE_SKEW_SECONDS {
                continue;
            }
            let memory_mib = sample.memory_bytes as f64 / (1024.0 * 1024.0);
            let counters: HashMap<String, u64> = if sample.containers.is_empty() {
                HashMap::from([(String::new(), sample.cpu_total_nanos)])
            } else {
                sample
                    .containers
                    .iter()
                    .map(|c| (c.name.clone(), c.cpu_total_nanos))
                    .collect()
            };
            let previous = task.previous.replace((sample.timestamp, counters.clone()));
            let Some((previous_time, previous_counters)) = previous else {
                continue;
            };
            if sample.timestamp <= previous_time {
                task.previous = Some((previous_time, previous_counters));
                continue;
            }
            // CPU used per container over the interval; a container missing from either
            // sample, or whose counter went backwards (it restarted), adds nothing rather than
            // its whole lifetime.
            let cpu_nanos: u64 = counters
                .iter()
                .filter_map(|(name, now_cpu)| {
                    previous_counters
                        .get(name)
                        .and_then(|before| now_cpu.checked_sub(*before))
                })
                .sum();
            let elapsed = sample.timestamp - previous_time;
            let cpu_units = cpu_nanos as f64 / (elapsed * 1e9) * 1024.0;
            task.latest = Some(TaskUsage {
                task_arn: report.task_arn.clone(),
                group: task.group.clone(),
                container_instance_arn: task.instance_arn.clone(),
                timestamp: sample.timestamp,
                cpu_units_used: cpu_units,
                cpu_units_reserved: task.cpu_reserved,
                memory_mib_used: memory_mib,
                memory_mib_reserved: task.memory_reserved,
            });
            if now - sample.timestamp > MAX_SAMPLE_AGE_SECONDS {
                continue;
            }
            let mut targets = vec![(task.cluster.clone(), None)];
            if let Some(service) = &task.service {
                targets.push((task.cluster.clone(), Some(service.clone())));
            }
            // Spread the interval over the seconds it covers, weighted by overlap.
            let mut second = previous_time.floor() as i64;
            while (second as f64) < sample.timestamp {
                let overlap =
                    sample.timestamp.min((second + 1) as f64) - previous_time.max(second as f64);
                if overlap > 0.0 && second > published_through {
                    let per_second = pending.entry(second).or_default();
                    for target in &targets {
                        let sum = per_second.entry(target.clone()).or_default();
                        sum.cpu_used += cpu_units * overlap;
                        sum.cpu_reserved += task.cpu_reserved * overlap;
                        sum.memory_used += memory_mib * overlap;
                        sum.memory_reserved += task.memory_reserved * overlap;
                        sum.tasks += overlap;
                        if task.cpu_reserved > 0.0 {
                            widen(
                                (&mut sum.cpu_min, &mut sum.cpu_max),
                                cpu_units / task.cpu_reserved * 100.0,
                            );
                        }
                        if task.memory_reserved > 0.0 {
                            widen(
                                (&mut sum.memory_min, &mut sum.memory_max),
                                memory_mib / task.memory_reserved * 100.0,
                            );
                        }
                    }
                }
                second += 1;
            }
        }
    }
    Ok(json!({}))
}

fn tracked(cluster: &str, record: &TaskRecord, now: f64) -> TrackedTask {
    let group = record.task.group.clone();
    let service = group
        .as_deref()
        .and_then(|g| g.strip_prefix("service:"))
        .map(str::to_string);
    TrackedTask {
        cluster: cluster.to_string(),
        service,
        group,
        instance_arn: record.task.container_instance_arn.clone(),
        cpu_reserved: record.wharf_needs.cpu as f64,
        memory_reserved: record.wharf_needs.memory as f64,
        previous: None,
        latest: None,
        last_seen: now,
    }
}

/// `DescribeTaskStats`: the latest usage of the cluster's live tasks, by task ARN.
pub async fn describe_task_stats(ctx: &EcsContext, input: Value) -> Result<Value, EcsError> {
    let input: DescribeTaskStatsInput = ctx.parse(input)?;
    let cluster = cluster_name(input.cluster.as_deref())?;
    let now = ctx.now();
    let inner = ctx.usage.lock();
    let mut tasks: Vec<TaskUsage> = inner
        .tasks
        .values()
        .filter(|t| t.cluster == cluster)
        .filter_map(|t| t.latest.clone())
        .filter(|u| now - u.timestamp <= LIVE_SECONDS)
        .collect();
    tasks.sort_by(|a, b| a.task_arn.cmp(&b.task_arn));
    Ok(serde_json::to_value(DescribeTaskStatsOutput { tasks }).unwrap_or_default())
}

/// Cluster capacity from its ACTIVE container instances' records.
#[derive(Debug, Clone, Copy, Default)]
struct Capacity {
    cpu_registered: f64,
    cpu_reserved: f64,
    memory_registered: f64,
    memory_reserved: f64,
}

async fn capacity(ctx: &EcsContext, cluster: &str) -> Result<Capacity, EcsError> {
    let instances: Vec<(String, InstanceRecord)> = ctx
        .range_json(&keys::container_instance_cluster_prefix(cluster))
        .await?;
    let mut capacity = Capacity::default();
    for (_, record) in instances {
        // ECS counts DRAINING instances too: their tasks still run and use them.
        if !matches!(
            record.instance.status.as_deref(),
            Some("ACTIVE" | "DRAINING")
        ) {
            continue;
        }
        let amount = |resources: &Option<Vec<model::ecs::container_instance::Resource>>,
                      name: &str| {
            model::ecs::container_instance::integer_resource(
                resources.as_deref().unwrap_or_default(),
                name,
            ) as f64
        };
        let registered_cpu = amount(&record.instance.registered_resources, "CPU");
        let registered_memory = amount(&record.instance.registered_resources, "MEMORY");
        capacity.cpu_registered += registered_cpu;
        capacity.memory_registered += registered_memory;
        capacity.cpu_reserved +=
            registered_cpu - amount(&record.instance.remaining_resources, "CPU");
        capacity.memory_reserved +=
            registered_memory - amount(&record.instance.remaining_resources, "MEMORY");
    }
    Ok(capacity)
}

/// Publish every second that is old enough, the once-a-minute reservation metrics, and forget
/// tasks that stopped reporting. Called about every second by the usage controller.
pub async fn publish(ctx: &EcsContext) -> Result<(), EcsError> {
    let now_ms = ctx.clock.now_millis();
    let now = now_ms as f64 / 1000.0;
    let through = now_ms.div_euclid(1000) - PUBLISH_LAG_SECONDS;
    // Which clusters need their capacity: read it before taking any second out of `pending`,
    // so a failed store read loses nothing (the next tick publishes the same seconds).
    let clusters: Vec<String> = {
        let mut inner = ctx.usage.lock();
        inner
            .tasks
            .retain(|_, t| now - t.last_seen <= FORGET_AFTER_SECONDS);
        inner.unknown.retain(|_, until| now < *until);
        let mut names: Vec<String> = inner
            .pending
            .range(..=through)
            .flat_map(|(_, m)| m.keys().map(|(c, _)| c.clone()))
            .chain(inner.tasks.values().map(|t| t.cluster.clone()))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let Some(metrics) = ctx.usage.metrics.get().cloned() else {
        let mut inner = ctx.usage.lock();
        inner.pending = inner.pending.split_off(&(through + 1));
        inner.published_through = inner.published_through.max(through);
        return Ok(());
    };
    let mut capacities: HashMap<String, Capacity> = HashMap::new();
    for cluster in &clusters {
        capacities.insert(cluster.clone(), capacity(ctx, cluster).await?);
    }
    let seconds = {
        let mut inner = ctx.usage.lock();
        let later = inner.pending.split_off(&(through + 1));
        inner.published_through = inner.published_through.max(through);
        std::mem::replace(&mut inner.pending, later)
    };
    let mut samples = Vec::new();
    for (second, usages) in &seconds {
        let timestamp_ms = second * 1000;
        for ((cluster, service), usage) in usages {
            let mut dimensions = vec![("ClusterName".to_string(), cluster.clone())];
            match service {
                Some(service) => {
                    dimensions.push(("ServiceName".to_string(), service.clone()));
                    // Average = the service's used ÷ reserved; Minimum/Maximum = its least
                    // and most utilized task; SampleCount = its tasks.
                    let count = usage.tasks.round().max(1.0);
                    if let (true, Some(min), Some(max)) =
                        (usage.cpu_reserved > 0.0, usage.cpu_min, usage.cpu_max)
                    {
                        let average = usage.cpu_used / usage.cpu_reserved * 100.0;
                        samples.push(statistic_set(
                            "CPUUtilization",
                            &dimensions,
                            timestamp_ms,
                            (count, average, min, max),
                        ));
                    }
                    if let (true, Some(min), Some(max)) = (
                        usage.memory_reserved > 0.0,
                        usage.memory_min,
                        usage.memory_max,
                    ) {
                        let average = usage.memory_used / usage.memory_reserved * 100.0;
                        samples.push(statistic_set(
                            "MemoryUtilization",
                            &dimensions,
                            timestamp_ms,
                            (count, average, min, max),
                        ));
                    }
                }
                None => {
                    let capacity = capacities.get(cluster).copied().unwrap_or_default();
                    if capacity.cpu_registered > 0.0 {
                        samples.push(percent(
                            "CPUUtilization",
                            &dimensions,
                            timestamp_ms,
                            usage.cpu_used / capacity.cpu_registered,
                            Resolution::High,
                        ));
                    }
                    if capacity.memory_registered > 0.0 {
                        samples.push(percent(
                            "MemoryUtilization",
                            &dimensions,
                            timestamp_ms,
                            usage.memory_used / capacity.memory_registered,
                            Resolution::High,
                        ));
                    }
                }
            }
        }
    }
    // Reservation, once a minute per cluster with reporting tasks.
    let minute = now_ms.div_euclid(60_000);
    {
        let mut inner = ctx.usage.lock();
        for cluster in &clusters {
            if inner.reservation_minute.get(cluster) == Some(&minute) {
                continue;
            }
            inner.reservation_minute.insert(cluster.clone(), minute);
            let capacity = capacities.get(cluster).copied().unwrap_or_default();
            let dimensions = vec![("ClusterName".to_string(), cluster.clone())];
            if capacity.cpu_registered > 0.0 {
                samples.push(percent(
                    "CPUReservation",
                    &dimensions,
                    minute * 60_000,
                    capacity.cpu_reserved / capacity.cpu_registered,
                    Resolution::Standard,
                ));
            }
            if capacity.memory_registered > 0.0 {
                samples.push(percent(
                    "MemoryReservation",
                    &dimensions,
                    minute * 60_000,
                    capacity.memory_reserved / capacity.memory_registered,
                    Resolution::Standard,
                ));
            }
        }
    }
    if samples.is_empty() {
        return Ok(());
    }
    let stored = tokio::task::spawn_blocking(move || metrics.put(samples)).await;
    match stored {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => {
            warn!(%error, "cannot store ECS usage metrics");
            Ok(())
        }
        Err(error) => {
            warn!(%error, "the metric writer panicked");
            Ok(())
        }
    }
}

/// A high-resolution statistic set: `count` samples averaging `average`, within `min..=max`.
fn statistic_set(
    name: &str,
    dimensions: &[(String, String)],
    timestamp_ms: i64,
    (count, average, min, max): (f64, f64, f64, f64),
) -> Sample {
    // The aggregate ratio can fall outside the per-task extremes only by rounding.
    let min = min.min(average);
    let max = max.max(average);
    Sample {
        key: MetricKey::new(NAMESPACE, name, dimensions.to_vec()),
        point: Point {
            timestamp_ms,
            count,
            sum: average * count,
            min,
            max,
        },
        unit: "Percent".to_string(),
        resolution: Resolution::High,
    }
}

fn percent(
    name: &str,
    dimensions: &[(String, String)],
    timestamp_ms: i64,
    fraction: f64,
    resolution: Resolution,
) -> Sample {
    Sample {
        key: MetricKey::new(NAMESPACE, name, dimensions.to_vec()),
        point: Point::value(timestamp_ms, fraction * 100.0),
        unit: "Percent".to_string(),
        resolution,
    }
}
