//! Task resource usage: what agents report with `ReportTaskStats`, turned into the `AWS/ECS`
//! metrics CloudWatch serves and into the live view `wharf top` reads (`DescribeTaskStats`).
//!
//! Agents sample each running task about every second (cumulative CPU time, memory in use) and
//! send batches every few seconds. The tracker turns consecutive samples of a task into CPU
//! units used over that interval, and adds each interval into the second it ended in, per
//! service and per cluster. Seconds are published once every agent had time to report them
//! (`PUBLISH_LAG_SECONDS`), as high-resolution points:
//!
//! - `CPUUtilization` / `MemoryUtilization` with `ClusterName` + `ServiceName`: used ÷ reserved
//!   by the service's tasks, in percent (as ECS computes them; above 100 % when tasks use more
//!   CPU than they reserved, which ECS on EC2 allows).
//! - `CPUUtilization` / `MemoryUtilization` with `ClusterName`: used by all tasks ÷ registered
//!   on the cluster's ACTIVE container instances.
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

/// One task the tracker follows.
#[derive(Debug, Clone)]
struct TrackedTask {
    cluster: String,
    service: Option<String>,
    group: Option<String>,
    instance_arn: Option<String>,
    cpu_reserved: f64,
    memory_reserved: f64,
    /// The previous sample: (timestamp s, cumulative CPU ns).
    previous: Option<(f64, u64)>,
    latest: Option<TaskUsage>,
}

/// Usage added up over one second for one service, or one cluster (`service: None`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Usage {
    cpu_used: f64,
    cpu_reserved: f64,
    memory_used: f64,
    memory_reserved: f64,
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
    // Look up tasks seen for the first time outside the lock (a store read each).
    let unknown: Vec<String> = {
        let inner = tracker.lock();
        input
            .tasks
            .iter()
            .filter(|t| !inner.tasks.contains_key(&t.task_arn))
            .map(|t| t.task_arn.clone())
            .collect()
    };
    let mut found = Vec::new();
    for arn in unknown {
        let id = arn.rsplit('/').next().unwrap_or(&arn).to_string();
        if let Some((record, _)) = ctx
            .get_json::<TaskRecord>(&keys::task(&cluster, &id))
            .await?
        {
            found.push((arn, tracked(&cluster, &record)));
        }
    }
    let now = ctx.now();
    let mut inner = tracker.lock();
    for (arn, task) in found {
        inner.tasks.entry(arn).or_insert(task);
    }
    let published_through = inner.published_through;
    let Inner { tasks, pending, .. } = &mut *inner;
    for report in input.tasks {
        // Unknown tasks (not in the store) are ignored: nothing to attribute them to.
        let Some(task) = tasks.get_mut(&report.task_arn) else {
            continue;
        };
        for sample in report.samples {
            let memory_mib = sample.memory_bytes as f64 / (1024.0 * 1024.0);
            let Some((previous_time, previous_cpu)) = task.previous else {
                task.previous = Some((sample.timestamp, sample.cpu_total_nanos));
                continue;
            };
            if sample.timestamp <= previous_time {
                continue;
            }
            task.previous = Some((sample.timestamp, sample.cpu_total_nanos));
            // A counter that went backwards means the containers restarted: start over.
            let Some(cpu_nanos) = sample.cpu_total_nanos.checked_sub(previous_cpu) else {
                continue;
            };
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
            let second = sample.timestamp.floor() as i64;
            if second <= published_through || now - sample.timestamp > MAX_SAMPLE_AGE_SECONDS {
                continue;
            }
            let usage = Usage {
                cpu_used: cpu_units,
                cpu_reserved: task.cpu_reserved,
                memory_used: memory_mib,
                memory_reserved: task.memory_reserved,
            };
            let per_second = pending.entry(second).or_default();
            let mut targets = vec![(task.cluster.clone(), None)];
            if let Some(service) = &task.service {
                targets.push((task.cluster.clone(), Some(service.clone())));
            }
            for target in targets {
                let sum = per_second.entry(target).or_default();
                sum.cpu_used += usage.cpu_used;
                sum.cpu_reserved += usage.cpu_reserved;
                sum.memory_used += usage.memory_used;
                sum.memory_reserved += usage.memory_reserved;
            }
        }
    }
    Ok(json!({}))
}

fn tracked(cluster: &str, record: &TaskRecord) -> TrackedTask {
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
        if record.instance.status.as_deref() != Some("ACTIVE") {
            continue;
        }
        let amount = |resources: &Option<Vec<model::ecs::container_instance::Resource>>,
                      name: &str| {
            resources
                .iter()
                .flatten()
                .find(|r| r.name.as_deref() == Some(name))
                .and_then(|r| r.integer_value.or(r.long_value))
                .unwrap_or(0) as f64
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
    let (seconds, clusters_with_tasks) = {
        let mut inner = ctx.usage.lock();
        inner.tasks.retain(|_, t| {
            t.previous
                .is_none_or(|(time, _)| now - time <= FORGET_AFTER_SECONDS)
        });
        let later = inner.pending.split_off(&(through + 1));
        let ready = std::mem::replace(&mut inner.pending, later);
        inner.published_through = inner.published_through.max(through);
        let clusters: Vec<String> = {
            let mut names: Vec<String> = inner.tasks.values().map(|t| t.cluster.clone()).collect();
            names.sort();
            names.dedup();
            names
        };
        (ready, clusters)
    };
    let Some(metrics) = ctx.usage.metrics.get().cloned() else {
        return Ok(());
    };
    let mut capacities: HashMap<String, Capacity> = HashMap::new();
    let mut clusters: Vec<String> = seconds
        .values()
        .flat_map(|m| m.keys().map(|(c, _)| c.clone()))
        .chain(clusters_with_tasks)
        .collect();
    clusters.sort();
    clusters.dedup();
    for cluster in &clusters {
        capacities.insert(cluster.clone(), capacity(ctx, cluster).await?);
    }
    let mut samples = Vec::new();
    for (second, usages) in &seconds {
        let timestamp_ms = second * 1000;
        for ((cluster, service), usage) in usages {
            let mut dimensions = vec![("ClusterName".to_string(), cluster.clone())];
            let (cpu_base, memory_base) = match service {
                Some(service) => {
                    dimensions.push(("ServiceName".to_string(), service.clone()));
                    (usage.cpu_reserved, usage.memory_reserved)
                }
                None => {
                    let capacity = capacities.get(cluster).copied().unwrap_or_default();
                    (capacity.cpu_registered, capacity.memory_registered)
                }
            };
            if cpu_base > 0.0 {
                samples.push(percent(
                    "CPUUtilization",
                    &dimensions,
                    timestamp_ms,
                    usage.cpu_used / cpu_base,
                    Resolution::High,
                ));
            }
            if memory_base > 0.0 {
                samples.push(percent(
                    "MemoryUtilization",
                    &dimensions,
                    timestamp_ms,
                    usage.memory_used / memory_base,
                    Resolution::High,
                ));
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
