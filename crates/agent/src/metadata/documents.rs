//! The task metadata endpoint's documents in AWS's shapes (the ECS agent's v4 responses):
//! [`ContainerResponse`] for `${ECS_CONTAINER_METADATA_URI_V4}` and [`TaskResponse`] for
//! `…/task`. Member names, casing and omission rules follow the ECS agent exactly (including
//! its lower-case `Health` members), since SDK helpers, OpenTelemetry's
//! `awsecscontainermetrics` receiver and applications parse them by name.
//!
//! Pure: built from a [`TaskSnapshot`] (what the task's owner knows) and, per container, the
//! engine's [`ContainerDetails`] when they could be read.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use model::agent::TaskNetwork;
use model::ecs::task_definition::{parse_task_cpu, parse_task_memory, ContainerDefinition};
use serde::Serialize;

use super::registry::{ContainerSnapshot, TaskSnapshot};
use crate::labels;
use crate::logs::AWSLOGS_DRIVER;
use crate::runner::dependencies::ContainerPhase;
use crate::runner::TaskStatus;
use crate::runtime::{ContainerDetails, HealthState};

/// What the documents take from the agent rather than from the task.
#[derive(Debug, Clone, Copy)]
pub struct DocumentContext<'a> {
    /// The cluster as the agent registered with it (ECS reports its configured cluster).
    pub cluster: &'a str,
    pub availability_zone: &'a str,
}

/// `Limits`: CPU in units for a container, in vCPUs for a task; memory in MiB.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitsResponse {
    #[serde(
        rename = "CPU",
        skip_serializing_if = "Option::is_none",
        serialize_with = "go_number"
    )]
    pub cpu: Option<f64>,
    #[serde(rename = "Memory", skip_serializing_if = "Option::is_none")]
    pub memory: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PortResponse {
    #[serde(rename = "ContainerPort", skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i32>,
    #[serde(rename = "Protocol", skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(rename = "HostPort", skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i32>,
    #[serde(rename = "HostIp", skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<String>,
}

/// One network of a container; the awsvpc members only for awsvpc tasks.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct NetworkResponse {
    #[serde(rename = "AttachmentIndex", skip_serializing_if = "Option::is_none")]
    pub attachment_index: Option<i32>,
    #[serde(rename = "NetworkMode", skip_serializing_if = "Option::is_none")]
    pub network_mode: Option<String>,
    #[serde(rename = "IPv4Addresses", skip_serializing_if = "Vec::is_empty")]
    pub ipv4_addresses: Vec<String>,
    #[serde(rename = "MACAddress", skip_serializing_if = "Option::is_none")]
    pub mac_address: Option<String>,
    #[serde(
        rename = "IPv4SubnetCIDRBlock",
        skip_serializing_if = "Option::is_none"
    )]
    pub ipv4_subnet_cidr_block: Option<String>,
    #[serde(rename = "PrivateDNSName", skip_serializing_if = "Option::is_none")]
    pub private_dns_name: Option<String>,
    #[serde(
        rename = "SubnetGatewayIpv4Address",
        skip_serializing_if = "Option::is_none"
    )]
    pub subnet_gateway_ipv4_address: Option<String>,
}

/// `Health`, with the ECS agent's lower-case member names.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthResponse {
    pub status: String,
    #[serde(rename = "statusSince", skip_serializing_if = "Option::is_none")]
    pub status_since: Option<String>,
    #[serde(rename = "exitCode", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VolumeResponse {
    #[serde(rename = "DockerName", skip_serializing_if = "Option::is_none")]
    pub docker_name: Option<String>,
    #[serde(rename = "Source", skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(rename = "Destination")]
    pub destination: String,
}

/// `${ECS_CONTAINER_METADATA_URI_V4}`, and each of a task document's `Containers`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerResponse {
    #[serde(rename = "DockerId")]
    pub docker_id: String,
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "DockerName")]
    pub docker_name: String,
    #[serde(rename = "Image")]
    pub image: String,
    #[serde(rename = "ImageID")]
    pub image_id: String,
    #[serde(rename = "Ports", skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortResponse>,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "DesiredStatus")]
    pub desired_status: String,
    #[serde(rename = "KnownStatus")]
    pub known_status: String,
    #[serde(rename = "ExitCode", skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i64>,
    #[serde(rename = "Limits")]
    pub limits: LimitsResponse,
    #[serde(rename = "CreatedAt", skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
    #[serde(rename = "StartedAt", skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(rename = "FinishedAt", skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(rename = "Type")]
    pub container_type: String,
    #[serde(rename = "Networks", skip_serializing_if = "Vec::is_empty")]
    pub networks: Vec<NetworkResponse>,
    #[serde(rename = "Health", skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthResponse>,
    #[serde(rename = "Volumes", skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeResponse>,
    #[serde(rename = "LogDriver", skip_serializing_if = "Option::is_none")]
    pub log_driver: Option<String>,
    #[serde(rename = "LogOptions", skip_serializing_if = "BTreeMap::is_empty")]
    pub log_options: BTreeMap<String, String>,
    #[serde(rename = "ContainerARN", skip_serializing_if = "Option::is_none")]
    pub container_arn: Option<String>,
    /// Only with a restart policy, which this agent does not run: always omitted.
    #[serde(rename = "RestartCount", skip_serializing_if = "Option::is_none")]
    pub restart_count: Option<i64>,
}

/// `${ECS_CONTAINER_METADATA_URI_V4}/task`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskResponse {
    #[serde(rename = "Cluster")]
    pub cluster: String,
    #[serde(rename = "TaskARN")]
    pub task_arn: String,
    #[serde(rename = "Family")]
    pub family: String,
    /// A string, as ECS serves it.
    #[serde(rename = "Revision")]
    pub revision: String,
    #[serde(rename = "DesiredStatus", skip_serializing_if = "Option::is_none")]
    pub desired_status: Option<String>,
    #[serde(rename = "KnownStatus")]
    pub known_status: String,
    #[serde(rename = "Limits", skip_serializing_if = "Option::is_none")]
    pub limits: Option<LimitsResponse>,
    #[serde(rename = "PullStartedAt", skip_serializing_if = "Option::is_none")]
    pub pull_started_at: Option<String>,
    #[serde(rename = "PullStoppedAt", skip_serializing_if = "Option::is_none")]
    pub pull_stopped_at: Option<String>,
    #[serde(rename = "ExecutionStoppedAt", skip_serializing_if = "Option::is_none")]
    pub execution_stopped_at: Option<String>,
    #[serde(rename = "AvailabilityZone", skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    #[serde(rename = "LaunchType", skip_serializing_if = "Option::is_none")]
    pub launch_type: Option<String>,
    #[serde(rename = "ServiceName", skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(rename = "Containers", skip_serializing_if = "Vec::is_empty")]
    pub containers: Vec<ContainerResponse>,
}

/// A number as Go's JSON writes a float64: whole values without a fraction (`10`, not
/// `10.0`), so readers that expect an integer for container CPU units keep working.
fn go_number<S: serde::Serializer>(value: &Option<f64>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(v) if v.fract() == 0.0 && v.abs() < 9.0e15 => serializer.serialize_i64(*v as i64),
        Some(v) => serializer.serialize_f64(*v),
        None => serializer.serialize_none(),
    }
}

/// RFC 3339 in UTC with as many fractional digits as needed, like the ECS agent's
/// (`2020-10-02T00:15:07.620912337Z`).
pub fn timestamp(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

fn timestamp_from_seconds(seconds: f64) -> Option<String> {
    if !seconds.is_finite() || seconds <= 0.0 {
        return None;
    }
    // An f64 of epoch seconds is good to about a microsecond: finer digits would be noise.
    let whole = seconds.floor();
    let micros = ((seconds - whole) * 1e6).round().min(999_999.0) as u32;
    let nanos = micros * 1_000;
    DateTime::from_timestamp(whole as i64, nanos).map(timestamp)
}

/// The ECS agent's task statuses (`NONE`, `CREATED`, `RUNNING`, `STOPPED`): its known status
/// stays RUNNING until every container is stopped.
pub fn task_known_status(status: TaskStatus) -> &'static str {
    match status {
        TaskStatus::Provisioning | TaskStatus::Pending => "NONE",
        TaskStatus::Activating => "CREATED",
        TaskStatus::Running
        | TaskStatus::Deactivating
        | TaskStatus::Stopping
        | TaskStatus::Deprovisioning => "RUNNING",
        TaskStatus::Stopped => "STOPPED",
    }
}

/// The ECS agent's container statuses. The engine's word wins over a snapshot a moment old:
/// a container asking about itself right after it started is RUNNING.
fn container_known_status(
    container: &ContainerSnapshot,
    details: Option<&ContainerDetails>,
) -> &'static str {
    let running = details.is_some_and(|d| d.running);
    match container.phase {
        ContainerPhase::Stopped => "STOPPED",
        ContainerPhase::Running => "RUNNING",
        ContainerPhase::Pending if running => "RUNNING",
        ContainerPhase::Pending if container.runtime_id.is_some() => "CREATED",
        ContainerPhase::Pending => "NONE",
    }
}

fn definition<'a>(task: &'a TaskSnapshot, name: &str) -> Option<&'a ContainerDefinition> {
    task.task
        .task_definition
        .container_definitions
        .iter()
        .flatten()
        .find(|d| d.name.as_deref() == Some(name))
}

/// The container's cpu units and memory (MiB), overrides applied.
fn container_limits(task: &TaskSnapshot, name: &str) -> LimitsResponse {
    let definition = definition(task, name);
    let overrides = task
        .task
        .task
        .overrides
        .as_ref()
        .and_then(|o| o.container_overrides.as_ref())
        .and_then(|o| o.iter().find(|o| o.name.as_deref() == Some(name)));
    let cpu = overrides
        .and_then(|o| o.cpu)
        .or(definition.and_then(|d| d.cpu))
        .unwrap_or(0);
    let memory = overrides
        .and_then(|o| o.memory)
        .or(definition.and_then(|d| d.memory))
        .unwrap_or(0);
    LimitsResponse {
        cpu: Some(f64::from(cpu)),
        memory: Some(i64::from(memory)),
    }
}

/// Task-level limits, when the task has any: CPU in vCPUs, memory in MiB.
fn task_limits(task: &TaskSnapshot) -> Option<LimitsResponse> {
    let definition = &task.task.task_definition;
    let cpu = task
        .task
        .task
        .cpu
        .as_deref()
        .or(definition.cpu.as_deref())
        .and_then(parse_task_cpu);
    let memory = task
        .task
        .task
        .memory
        .as_deref()
        .or(definition.memory.as_deref())
        .and_then(parse_task_memory);
    (cpu.is_some() || memory.is_some()).then(|| LimitsResponse {
        cpu: cpu.map(|units| units as f64 / 1024.0),
        memory,
    })
}

/// The region of an ARN (`arn:aws:ecs:<region>:…`).
fn region_of(arn: &str) -> Option<&str> {
    arn.split(':').nth(3).filter(|r| !r.is_empty())
}

/// EC2's private DNS name of an address (`ip-10-0-1-5.ec2.internal` in us-east-1,
/// `ip-10-0-1-5.<region>.compute.internal` elsewhere).
fn private_dns_name(address: &str, region: Option<&str>) -> String {
    let host = format!("ip-{}", address.replace('.', "-"));
    match region {
        Some("us-east-1") | None => format!("{host}.ec2.internal"),
        Some(region) => format!("{host}.{region}.compute.internal"),
    }
}

/// An awsvpc task's one network, as ECS describes the ENI.
fn awsvpc_network(network: &TaskNetwork, task_arn: &str) -> NetworkResponse {
    let prefix = network
        .subnet_cidr
        .split_once('/')
        .map(|(_, prefix)| prefix);
    let non_empty = |text: &str| (!text.is_empty()).then(|| text.to_string());
    NetworkResponse {
        attachment_index: Some(0),
        network_mode: Some("awsvpc".to_string()),
        ipv4_addresses: non_empty(&network.private_ipv4_address)
            .into_iter()
            .collect(),
        mac_address: non_empty(&network.mac_address),
        ipv4_subnet_cidr_block: non_empty(&network.subnet_cidr),
        private_dns_name: non_empty(&network.private_ipv4_address)
            .map(|address| private_dns_name(&address, region_of(task_arn))),
        // ECS writes the gateway with the subnet's prefix length.
        subnet_gateway_ipv4_address: non_empty(&network.gateway_ipv4_address).map(|gateway| {
            match prefix {
                Some(prefix) => format!("{gateway}/{prefix}"),
                None => gateway,
            }
        }),
    }
}

fn networks(task: &TaskSnapshot, details: Option<&ContainerDetails>) -> Vec<NetworkResponse> {
    if let Some(network) = &task.task.network {
        return vec![awsvpc_network(network, task.task_arn())];
    }
    let mode = task
        .task
        .task_definition
        .network_mode
        .clone()
        .unwrap_or_else(|| "bridge".to_string());
    if mode == "host" || mode == "none" {
        return vec![NetworkResponse {
            network_mode: Some(mode),
            ..Default::default()
        }];
    }
    match details {
        Some(details) if !details.networks.is_empty() => details
            .networks
            .iter()
            .map(|network| NetworkResponse {
                network_mode: Some(network.name.clone()),
                ipv4_addresses: network.ipv4_address.iter().cloned().collect(),
                ..Default::default()
            })
            .collect(),
        _ => vec![NetworkResponse {
            network_mode: Some(mode),
            ..Default::default()
        }],
    }
}

fn health(container: &ContainerSnapshot, details: Option<&ContainerDetails>) -> HealthResponse {
    let detail = details.and_then(|d| d.health.as_ref());
    let status = detail.map(|h| h.status).or(container.health);
    HealthResponse {
        status: match status {
            Some(HealthState::Healthy) => "HEALTHY",
            Some(HealthState::Unhealthy) => "UNHEALTHY",
            Some(HealthState::Starting) | None => "UNKNOWN",
        }
        .to_string(),
        status_since: detail.and_then(|h| h.since).map(timestamp),
        // The ECS agent omits a zero exit code.
        exit_code: detail.and_then(|h| h.exit_code).filter(|code| *code != 0),
        output: detail
            .and_then(|h| h.output.clone())
            .filter(|o| !o.is_empty()),
    }
}

/// The log driver as the task definition names it (awslogs, which the agent ships itself from
/// json-file, reads as awslogs); none without a `logConfiguration`, as with ECS.
fn log_configuration(
    definition: Option<&ContainerDefinition>,
    details: Option<&ContainerDetails>,
) -> (Option<String>, BTreeMap<String, String>) {
    if let Some(log) = definition.and_then(|d| d.log_configuration.as_ref()) {
        let mut options = log.options.clone().unwrap_or_default();
        if log.log_driver == AWSLOGS_DRIVER && !options.contains_key("awslogs-stream") {
            // ECS shows the stream the agent computed from the prefix.
            if let Some(stream) = details.and_then(|d| d.labels.get(labels::AWSLOGS_STREAM)) {
                options.insert("awslogs-stream".to_string(), stream.clone());
            }
        }
        return (Some(log.log_driver.clone()), options);
    }
    (None, BTreeMap::new())
}

/// One container's document. `details` is `None` when the engine could not be asked (the
/// document then holds what the owner knows).
pub fn container_response(
    task: &TaskSnapshot,
    container: &ContainerSnapshot,
    details: Option<&ContainerDetails>,
) -> ContainerResponse {
    let definition = definition(task, &container.name);
    let (log_driver, log_options) = log_configuration(definition, details);
    let container_arn = task
        .task
        .task
        .containers
        .iter()
        .flatten()
        .find(|c| c.name.as_deref() == Some(container.name.as_str()))
        .and_then(|c| c.container_arn.clone());
    ContainerResponse {
        docker_id: container
            .runtime_id
            .clone()
            .or_else(|| details.map(|d| d.id.clone()))
            .unwrap_or_default(),
        name: container.name.clone(),
        docker_name: details.map(|d| d.name.clone()).unwrap_or_default(),
        image: definition
            .and_then(|d| d.image.clone())
            .or_else(|| details.map(|d| d.image.clone()))
            .unwrap_or_default(),
        image_id: details.and_then(|d| d.image_id.clone()).unwrap_or_default(),
        ports: container
            .bindings
            .iter()
            .map(|binding| PortResponse {
                container_port: binding.container_port,
                protocol: binding.protocol.clone(),
                host_port: binding.host_port,
                host_ip: binding.bind_ip.clone(),
            })
            .collect(),
        // The agent's own bookkeeping labels are not part of what ECS shows.
        labels: details
            .map(|d| {
                d.labels
                    .iter()
                    .filter(|(name, _)| !name.starts_with("wharf."))
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect()
            })
            .unwrap_or_default(),
        desired_status: task
            .task
            .task
            .desired_status
            .clone()
            .unwrap_or_else(|| "RUNNING".to_string()),
        known_status: container_known_status(container, details).to_string(),
        exit_code: (container.phase == ContainerPhase::Stopped)
            .then_some(container.exit_code)
            .flatten(),
        limits: container_limits(task, &container.name),
        created_at: details.and_then(|d| d.created_at).map(timestamp),
        started_at: details.and_then(|d| d.started_at).map(timestamp),
        finished_at: details.and_then(|d| d.finished_at).map(timestamp),
        container_type: "NORMAL".to_string(),
        networks: networks(task, details),
        health: container
            .has_health_check
            .then(|| health(container, details)),
        volumes: details
            .map(|d| {
                d.mounts
                    .iter()
                    .map(|mount| VolumeResponse {
                        docker_name: mount.name.clone(),
                        source: mount.source.clone(),
                        destination: mount.destination.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        log_driver,
        log_options,
        container_arn,
        restart_count: None,
    }
}

/// The task's document around its containers' documents.
pub fn task_response(
    context: &DocumentContext<'_>,
    task: &TaskSnapshot,
    containers: Vec<ContainerResponse>,
) -> TaskResponse {
    let definition = &task.task.task_definition;
    let ecs = &task.task.task;
    TaskResponse {
        cluster: context.cluster.to_string(),
        task_arn: task.task_arn().to_string(),
        family: definition.family.clone().unwrap_or_default(),
        revision: definition.revision.unwrap_or(0).to_string(),
        desired_status: ecs.desired_status.clone(),
        known_status: task_known_status(task.status).to_string(),
        limits: task_limits(task),
        pull_started_at: task
            .pull_started_at
            .or(ecs.pull_started_at)
            .and_then(timestamp_from_seconds),
        pull_stopped_at: task
            .pull_stopped_at
            .or(ecs.pull_stopped_at)
            .and_then(timestamp_from_seconds),
        execution_stopped_at: task.execution_stopped_at.and_then(timestamp_from_seconds),
        availability_zone: ecs
            .availability_zone
            .clone()
            .or_else(|| Some(context.availability_zone.to_string()))
            .filter(|zone| !zone.is_empty()),
        launch_type: Some(ecs.launch_type.clone().unwrap_or_else(|| "EC2".to_string())),
        service_name: ecs
            .group
            .as_deref()
            .and_then(|group| group.strip_prefix("service:"))
            .map(str::to_string),
        containers,
    }
}

#[cfg(test)]
mod tests;
