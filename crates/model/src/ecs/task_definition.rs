//! Task definitions: the `TaskDefinition` and `ContainerDefinition` wire shapes of the botocore
//! model (`ecs/2014-11-13`) with every nested shape, the `RegisterTaskDefinition` input, and
//! the rules ECS applies when a definition is registered.
//!
//! Every member is an `Option` unless botocore marks it required, and unset members are not
//! serialized, so a definition goes out exactly as it came in plus what ECS itself fills in
//! (see [`register`]). Enumerated members are kept as strings so that a value ECS does not
//! know reaches validation, which reports it with ECS's message, instead of failing to parse.
//!
//! The pieces:
//! - [`validate`]: every check RegisterTaskDefinition makes, as a pure function returning all
//!   problems (ECS reports the first);
//! - [`register`]: the stored/returned definition built from a validated input: ECS's defaults
//!   (`essential: true`, `cpu: 0`, empty lists, `hostPort` in awsvpc/host mode, `protocol:
//!   tcp`), task cpu/memory normalized from `1 vCPU` / `1 GB` forms, `compatibilities` and
//!   `requiresAttributes` computed;
//! - [`reference`]: parsing `family`, `family:revision` and task definition ARNs.

use std::collections::BTreeMap;

use super::attribute::Attribute;
use super::tag::Tag;
use super::KeyValuePair;

pub mod reference;
pub mod register;
pub mod validate;

#[cfg(test)]
mod tests;

pub use reference::{parse_reference, TaskDefinitionReference};
pub use register::{build, fargate_size_is_valid, parse_task_cpu, parse_task_memory};
pub use validate::validate;

/// `ACTIVE`: registered and usable.
pub const STATUS_ACTIVE: &str = "ACTIVE";
/// `INACTIVE`: deregistered; existing tasks and services keep using it.
pub const STATUS_INACTIVE: &str = "INACTIVE";
/// `DELETE_IN_PROGRESS`: deleted, kept until nothing references it.
pub const STATUS_DELETE_IN_PROGRESS: &str = "DELETE_IN_PROGRESS";

/// A registered task definition revision, as DescribeTaskDefinition returns it.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinition {
    pub task_definition_arn: Option<String>,
    pub container_definitions: Option<Vec<ContainerDefinition>>,
    pub family: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    /// bridge, host, awsvpc or none.
    pub network_mode: Option<String>,
    pub revision: Option<i32>,
    pub volumes: Option<Vec<Volume>>,
    /// ACTIVE, INACTIVE or DELETE_IN_PROGRESS.
    pub status: Option<String>,
    pub requires_attributes: Option<Vec<Attribute>>,
    pub placement_constraints: Option<Vec<TaskDefinitionPlacementConstraint>>,
    /// EC2, FARGATE, EXTERNAL or MANAGED_INSTANCES.
    pub compatibilities: Option<Vec<String>>,
    pub runtime_platform: Option<RuntimePlatform>,
    pub requires_compatibilities: Option<Vec<String>>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    /// host or task.
    pub pid_mode: Option<String>,
    /// host, task or none.
    pub ipc_mode: Option<String>,
    pub proxy_configuration: Option<ProxyConfiguration>,
    /// Seconds since the epoch, as the JSON protocol writes timestamps.
    pub registered_at: Option<f64>,
    pub deregistered_at: Option<f64>,
    pub delete_requested_at: Option<f64>,
    pub registered_by: Option<String>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub enable_fault_injection: Option<bool>,
    pub trusted_execution_configuration: Option<TrustedExecutionConfiguration>,
}

/// The `RegisterTaskDefinition` request. `family` and `containerDefinitions` are required by
/// the model but optional here so that their absence is reported with ECS's own messages.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegisterTaskDefinitionInput {
    pub family: Option<String>,
    pub task_role_arn: Option<String>,
    pub execution_role_arn: Option<String>,
    pub network_mode: Option<String>,
    pub container_definitions: Option<Vec<ContainerDefinition>>,
    pub volumes: Option<Vec<Volume>>,
    pub placement_constraints: Option<Vec<TaskDefinitionPlacementConstraint>>,
    pub requires_compatibilities: Option<Vec<String>>,
    pub cpu: Option<String>,
    pub memory: Option<String>,
    pub tags: Option<Vec<Tag>>,
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    pub proxy_configuration: Option<ProxyConfiguration>,
    pub inference_accelerators: Option<Vec<InferenceAccelerator>>,
    pub ephemeral_storage: Option<EphemeralStorage>,
    pub runtime_platform: Option<RuntimePlatform>,
    pub enable_fault_injection: Option<bool>,
    pub trusted_execution_configuration: Option<TrustedExecutionConfiguration>,
}

/// One container of a task.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDefinition {
    pub name: Option<String>,
    pub image: Option<String>,
    pub repository_credentials: Option<RepositoryCredentials>,
    pub cpu: Option<i32>,
    /// Hard limit in MiB.
    pub memory: Option<i32>,
    /// Soft limit in MiB.
    pub memory_reservation: Option<i32>,
    pub links: Option<Vec<String>>,
    pub port_mappings: Option<Vec<PortMapping>>,
    pub essential: Option<bool>,
    pub restart_policy: Option<ContainerRestartPolicy>,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub environment: Option<Vec<KeyValuePair>>,
    pub environment_files: Option<Vec<EnvironmentFile>>,
    pub mount_points: Option<Vec<MountPoint>>,
    pub volumes_from: Option<Vec<VolumeFrom>>,
    pub linux_parameters: Option<LinuxParameters>,
    pub secrets: Option<Vec<Secret>>,
    pub depends_on: Option<Vec<ContainerDependency>>,
    pub start_timeout: Option<i32>,
    pub stop_timeout: Option<i32>,
    /// enabled or disabled.
    pub version_consistency: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    pub working_directory: Option<String>,
    pub disable_networking: Option<bool>,
    pub privileged: Option<bool>,
    pub readonly_root_filesystem: Option<bool>,
    pub dns_servers: Option<Vec<String>>,
    pub dns_search_domains: Option<Vec<String>>,
    pub extra_hosts: Option<Vec<HostEntry>>,
    pub docker_security_options: Option<Vec<String>>,
    pub interactive: Option<bool>,
    pub pseudo_terminal: Option<bool>,
    pub docker_labels: Option<BTreeMap<String, String>>,
    pub ulimits: Option<Vec<Ulimit>>,
    pub log_configuration: Option<LogConfiguration>,
    pub health_check: Option<HealthCheck>,
    pub system_controls: Option<Vec<SystemControl>>,
    pub resource_requirements: Option<Vec<ResourceRequirement>>,
    pub firelens_configuration: Option<FirelensConfiguration>,
    pub credential_specs: Option<Vec<String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryCredentials {
    pub credentials_parameter: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    pub container_port: Option<i32>,
    pub host_port: Option<i32>,
    /// tcp or udp.
    pub protocol: Option<String>,
    pub name: Option<String>,
    /// http, http2 or grpc.
    pub app_protocol: Option<String>,
    /// `first-last`, e.g. `8000-8010`.
    pub container_port_range: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerRestartPolicy {
    pub enabled: bool,
    pub ignored_exit_codes: Option<Vec<i32>>,
    pub restart_attempt_period: Option<i32>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnvironmentFile {
    pub value: String,
    /// Only `s3`.
    pub r#type: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: Option<String>,
    pub container_path: Option<String>,
    pub read_only: Option<bool>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: Option<String>,
    pub read_only: Option<bool>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct LinuxParameters {
    pub capabilities: Option<KernelCapabilities>,
    pub devices: Option<Vec<Device>>,
    pub init_process_enabled: Option<bool>,
    pub shared_memory_size: Option<i32>,
    pub tmpfs: Option<Vec<Tmpfs>>,
    pub max_swap: Option<i32>,
    pub swappiness: Option<i32>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct KernelCapabilities {
    pub add: Option<Vec<String>>,
    pub drop: Option<Vec<String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub host_path: String,
    pub container_path: Option<String>,
    /// Each of read, write, mknod.
    pub permissions: Option<Vec<String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tmpfs {
    pub container_path: String,
    /// MiB.
    pub size: i32,
    pub mount_options: Option<Vec<String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerDependency {
    pub container_name: String,
    /// START, COMPLETE, SUCCESS or HEALTHY.
    pub condition: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostEntry {
    pub hostname: String,
    pub ip_address: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ulimit {
    /// core, cpu, data, fsize, locks, memlock, msgqueue, nice, nofile, nproc, rss, rtprio,
    /// rttime, sigpending or stack.
    pub name: String,
    pub soft_limit: i32,
    pub hard_limit: i32,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    /// json-file, syslog, journald, gelf, fluentd, awslogs, splunk or awsfirelens.
    pub log_driver: String,
    pub options: Option<BTreeMap<String, String>>,
    pub secret_options: Option<Vec<Secret>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthCheck {
    /// `["CMD", …]` or `["CMD-SHELL", "…"]`.
    pub command: Vec<String>,
    /// Seconds between checks, 5–300 (default 30).
    pub interval: Option<i32>,
    /// Seconds before a check counts as failed, 2–60 (default 5).
    pub timeout: Option<i32>,
    /// Consecutive failures before UNHEALTHY, 1–10 (default 3).
    pub retries: Option<i32>,
    /// Grace period in seconds, 0–300 (default off).
    pub start_period: Option<i32>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SystemControl {
    pub namespace: Option<String>,
    pub value: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceRequirement {
    pub value: Option<String>,
    /// GPU, InferenceAccelerator or NeuronDevice.
    pub r#type: String,
    pub sharing_strategy: Option<SharingStrategy>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct SharingStrategy {
    pub nvidia_mps: Option<NvidiaMpsAllocation>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NvidiaMpsAllocation {
    pub memory: i32,
    pub max_compute_percent: Option<i32>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FirelensConfiguration {
    /// fluentd or fluentbit.
    pub r#type: String,
    pub options: Option<BTreeMap<String, String>>,
}

/// A data volume the containers of a task may mount.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    pub name: Option<String>,
    pub host: Option<HostVolumeProperties>,
    pub docker_volume_configuration: Option<DockerVolumeConfiguration>,
    pub efs_volume_configuration: Option<EfsVolumeConfiguration>,
    pub s3files_volume_configuration: Option<S3FilesVolumeConfiguration>,
    pub fsx_windows_file_server_volume_configuration:
        Option<FSxWindowsFileServerVolumeConfiguration>,
    pub configured_at_launch: Option<bool>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct HostVolumeProperties {
    pub source_path: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct DockerVolumeConfiguration {
    /// task or shared.
    pub scope: Option<String>,
    pub autoprovision: Option<bool>,
    pub driver: Option<String>,
    pub driver_opts: Option<BTreeMap<String, String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EfsVolumeConfiguration {
    pub file_system_id: String,
    pub root_directory: Option<String>,
    /// ENABLED or DISABLED.
    pub transit_encryption: Option<String>,
    pub transit_encryption_port: Option<i32>,
    pub authorization_config: Option<EfsAuthorizationConfig>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct EfsAuthorizationConfig {
    pub access_point_id: Option<String>,
    /// ENABLED or DISABLED.
    pub iam: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3FilesVolumeConfiguration {
    pub file_system_arn: String,
    pub root_directory: Option<String>,
    pub transit_encryption_port: Option<i32>,
    pub access_point_arn: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FSxWindowsFileServerVolumeConfiguration {
    pub file_system_id: String,
    pub root_directory: String,
    pub authorization_config: FSxWindowsFileServerAuthorizationConfig,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FSxWindowsFileServerAuthorizationConfig {
    pub credentials_parameter: String,
    pub domain: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskDefinitionPlacementConstraint {
    /// Only `memberOf`.
    pub r#type: Option<String>,
    /// A cluster query language expression.
    pub expression: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RuntimePlatform {
    /// X86_64 or ARM64.
    pub cpu_architecture: Option<String>,
    /// LINUX or one of the WINDOWS_SERVER_* families.
    pub operating_system_family: Option<String>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InferenceAccelerator {
    pub device_name: String,
    pub device_type: String,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyConfiguration {
    /// Only `APPMESH`.
    pub r#type: Option<String>,
    pub container_name: String,
    pub properties: Option<Vec<KeyValuePair>>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EphemeralStorage {
    /// The wire name really is `sizeInGiB`, which `camelCase` would not produce.
    #[serde(rename = "sizeInGiB")]
    pub size_in_gib: i32,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TrustedExecutionConfiguration {
    /// SHARED, ISOLATED_SANDBOX or CONFIDENTIAL_SANDBOX.
    pub isolation_mode: String,
    pub attestation_policy: Option<String>,
}
