//! The agent protocol: what a `wharf agent` and the control plane say to each other, beyond
//! the ECS operations the agent also uses (`RegisterContainerInstance`, `CreateCluster`).
//!
//! It is served on the same endpoint as every AWS service, as JSON 1.1 under the SigV4 signing
//! name `wharf` and the target prefix `WharfAgent_20261121`:
//!
//! - `Heartbeat`: keeps the agent's session alive; the instance shows `agentConnected: true`
//!   while heartbeats arrive within `SESSION_TTL_SECONDS`.
//! - `PollTasks`: a long poll. Answers at once when the instance's tasks changed after
//!   `sinceRevision` (or when `sinceRevision` is 0 or too old to compare), else waits for a
//!   change up to `waitSeconds`; the answer is always the full set of tasks the agent must
//!   care about, so every answer is also a resync.
//! - `ReportTaskState`: observed state of one task and its containers. The control plane only
//!   moves statuses forward and ignores stale reports.

use crate::ecs::task::{NetworkBinding, Task};
use crate::ecs::task_definition::TaskDefinition;

pub const SIGNING_NAME: &str = "wharf";
pub const TARGET_PREFIX: &str = "WharfAgent_20261121";

/// How long a session lives without a heartbeat.
pub const SESSION_TTL_SECONDS: i64 = 30;
/// How often agents heartbeat.
pub const HEARTBEAT_INTERVAL_SECONDS: u64 = 10;
/// The longest a PollTasks call waits.
pub const MAX_POLL_WAIT_SECONDS: u64 = 25;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatInput {
    pub cluster: String,
    pub container_instance_arn: String,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollTasksInput {
    pub cluster: String,
    pub container_instance_arn: String,
    /// The `revision` of the previous answer (0 on the first poll).
    pub since_revision: i64,
    pub wait_seconds: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PollTasksOutput {
    /// The store revision this answer reflects; pass it back as `sinceRevision`.
    pub revision: i64,
    /// Every task on the instance that is not yet STOPPED on both sides (desired RUNNING, or
    /// desired STOPPED with lastStatus not STOPPED yet).
    pub tasks: Vec<AgentTask>,
}

/// A task with the definition it runs, overrides already part of `task.overrides`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentTask {
    pub task: Task,
    pub task_definition: TaskDefinition,
    /// For `awsvpc` tasks: the task's ENI and what its network must enforce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<TaskNetwork>,
}

/// An awsvpc task's network, as the agent must build it: a namespace (the pause container) on
/// the subnet's host network with the ENI's address, and the security groups' ingress rules.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskNetwork {
    pub network_interface_id: String,
    pub subnet_id: String,
    /// e.g. `172.31.0.0/20`; the agent backs the subnet with a host network of this range.
    pub subnet_cidr: String,
    /// The subnet's gateway (its first host address), the host's side of the network.
    pub gateway_ipv4_address: String,
    pub private_ipv4_address: String,
    pub mac_address: String,
    /// Every security group of the ENI with its rules; ingress is enforced, egress is open
    /// unless a group restricts it.
    pub security_groups: Vec<crate::ec2::SecurityGroup>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReportTaskStateInput {
    pub cluster: String,
    pub task_arn: String,
    /// The task's observed lastStatus.
    pub last_status: String,
    pub containers: Vec<ContainerStateReport>,
    pub pull_started_at: Option<f64>,
    pub pull_stopped_at: Option<f64>,
    pub started_at: Option<f64>,
    pub execution_stopped_at: Option<f64>,
    /// Set by the agent when the task stopped on its own (TaskFailedToStart,
    /// EssentialContainerExited).
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    /// HEALTHY, UNHEALTHY or UNKNOWN, from the essential containers' health checks.
    pub health_status: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStateReport {
    pub name: String,
    pub last_status: String,
    pub runtime_id: Option<String>,
    pub image_digest: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub network_bindings: Option<Vec<NetworkBinding>>,
    pub health_status: Option<String>,
}

/// How often an agent samples its tasks' resource usage.
pub const STATS_SAMPLE_INTERVAL_SECONDS: u64 = 1;
/// How often an agent sends the samples it gathered.
pub const STATS_REPORT_INTERVAL_SECONDS: u64 = 5;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReportTaskStatsInput {
    pub cluster: String,
    pub container_instance_arn: String,
    /// One entry per running task that has samples.
    pub tasks: Vec<TaskStatsReport>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatsReport {
    pub task_arn: String,
    /// Oldest first.
    pub samples: Vec<TaskStatsSample>,
}

/// One sample of a task: the sum over its running containers.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatsSample {
    /// When it was taken, seconds since the epoch (fractional).
    pub timestamp: f64,
    /// CPU time used since the containers started, in nanoseconds (cumulative: the control
    /// plane derives the rate from consecutive samples).
    pub cpu_total_nanos: u64,
    /// Memory in use now, in bytes (Docker's usage minus page cache, as `docker stats` shows).
    pub memory_bytes: u64,
    pub containers: Vec<ContainerStatsSample>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerStatsSample {
    pub name: String,
    pub cpu_total_nanos: u64,
    pub memory_bytes: u64,
    /// The container's memory limit in bytes, 0 when unlimited.
    pub memory_limit_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTaskStatsInput {
    /// Cluster name or ARN; default `default`.
    pub cluster: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DescribeTaskStatsOutput {
    pub tasks: Vec<TaskUsage>,
}

/// The latest usage of one running task.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskUsage {
    pub task_arn: String,
    /// The task's `group` (`service:web`, `family:x`).
    pub group: Option<String>,
    pub container_instance_arn: Option<String>,
    /// When the latest sample was taken, seconds since the epoch.
    pub timestamp: f64,
    /// CPU used over the last sample interval, in CPU units (1024 = one core).
    pub cpu_units_used: f64,
    /// CPU reserved by the task (task `cpu`, else the sum of its containers'), 0 if none.
    pub cpu_units_reserved: f64,
    pub memory_mib_used: f64,
    /// Memory reserved by the task (task `memory`, else the sum of its containers'
    /// `memoryReservation`/`memory`), 0 if none.
    pub memory_mib_reserved: f64,
}
