//! Tasks: the `Task` wire shape (stored as is, desired and observed state side by side),
//! containers, network bindings, overrides and RunTask `failures[]`.
//!
//! ```text
//! lastStatus:   PROVISIONING → PENDING → ACTIVATING → RUNNING → DEACTIVATING → STOPPING
//!                 → DEPROVISIONING → STOPPED            (only ever moves forward)
//! desiredStatus: RUNNING → STOPPED                       (written by the control plane only)
//! ```

use super::attribute::Attribute;
use super::tag::Tag;
use super::KeyValuePair;

/// The task lifecycle in order; a status may only be replaced by a later one.
pub const TASK_STATUSES: [&str; 8] = [
    "PROVISIONING",
    "PENDING",
    "ACTIVATING",
    "RUNNING",
    "DEACTIVATING",
    "STOPPING",
    "DEPROVISIONING",
    "STOPPED",
];

/// Position of a task status in the lifecycle (unknown statuses sort first).
pub fn task_status_rank(status: &str) -> usize {
    TASK_STATUSES
        .iter()
        .position(|s| *s == status)
        .map(|p| p + 1)
        .unwrap_or(0)
}

/// Container statuses in order.
pub const CONTAINER_STATUSES: [&str; 3] = ["PENDING", "RUNNING", "STOPPED"];

pub fn container_status_rank(status: &str) -> usize {
    CONTAINER_STATUSES
        .iter()
        .position(|s| *s == status)
        .map(|p| p + 1)
        .unwrap_or(0)
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    pub attachments: Option<Vec<serde_json::Value>>,
    pub attributes: Option<Vec<Attribute>>,
    pub availability_zone: Option<String>,
    pub capacity_provider_name: Option<String>,
    pub cluster_arn: Option<String>,
    pub connectivity: Option<String>,
    pub connectivity_at: Option<f64>,
    pub container_instance_arn: Option<String>,
    pub containers: Option<Vec<Container>>,
    pub cpu: Option<String>,
    pub created_at: Option<f64>,
    pub desired_status: Option<String>,
    pub enable_execute_command: Option<bool>,
    pub execution_stopped_at: Option<f64>,
    pub group: Option<String>,
    pub health_status: Option<String>,
    pub inference_accelerators: Option<Vec<serde_json::Value>>,
    pub last_status: Option<String>,
    pub launch_type: Option<String>,
    pub memory: Option<String>,
    pub overrides: Option<TaskOverride>,
    pub platform_version: Option<String>,
    pub platform_family: Option<String>,
    pub pull_started_at: Option<f64>,
    pub pull_stopped_at: Option<f64>,
    pub started_at: Option<f64>,
    pub started_by: Option<String>,
    pub stop_code: Option<String>,
    pub stopped_at: Option<f64>,
    pub stopped_reason: Option<String>,
    pub stopping_at: Option<f64>,
    pub tags: Option<Vec<Tag>>,
    pub task_arn: Option<String>,
    pub task_definition_arn: Option<String>,
    pub version: Option<i64>,
    pub ephemeral_storage: Option<serde_json::Value>,
    pub fargate_ephemeral_storage: Option<serde_json::Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    pub container_arn: Option<String>,
    pub task_arn: Option<String>,
    pub name: Option<String>,
    pub image: Option<String>,
    pub image_digest: Option<String>,
    pub runtime_id: Option<String>,
    pub last_status: Option<String>,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub network_bindings: Option<Vec<NetworkBinding>>,
    pub network_interfaces: Option<Vec<serde_json::Value>>,
    /// HEALTHY, UNHEALTHY or UNKNOWN.
    pub health_status: Option<String>,
    pub managed_agents: Option<Vec<serde_json::Value>>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub memory_reservation: Option<String>,
    pub gpu_ids: Option<Vec<String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkBinding {
    pub bind_ip: Option<String>,
    pub container_port: Option<i32>,
    pub host_port: Option<i32>,
    /// tcp or udp.
    pub protocol: Option<String>,
    pub container_port_range: Option<String>,
    pub host_port_range: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskOverride {
    pub container_overrides: Option<Vec<ContainerOverride>>,
    pub cpu: Option<String>,
    pub inference_accelerator_overrides: Option<Vec<serde_json::Value>>,
    pub execution_role_arn: Option<String>,
    pub memory: Option<String>,
    pub task_role_arn: Option<String>,
    pub ephemeral_storage: Option<serde_json::Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerOverride {
    pub name: Option<String>,
    pub command: Option<Vec<String>>,
    pub environment: Option<Vec<KeyValuePair>>,
    pub environment_files: Option<Vec<serde_json::Value>>,
    pub cpu: Option<i32>,
    pub memory: Option<i32>,
    pub memory_reservation: Option<i32>,
    pub resource_requirements: Option<Vec<serde_json::Value>>,
}

/// One entry of `failures[]` (RunTask, DescribeTasks, DescribeClusters, …).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub arn: Option<String>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}
