//! From an ECS task to engine terms: which features the agent can run ([`check_supported`]),
//! the names of a task's containers and volumes, and the [`ContainerSpec`] of each container
//! definition with the task's overrides applied ([`build_container_spec`]).
//!
//! Pure apart from the port allocation callback, so every mapping is unit-tested here.

use std::collections::BTreeMap;
use std::time::Duration;

use model::ecs::task::{ContainerOverride, Task};
use model::ecs::task_definition::{ContainerDefinition, TaskDefinition, Volume};

use super::ports::PortError;
use crate::labels;
use crate::logs::{LogDestination, AWSLOGS_DRIVER, LOCAL_DRIVER};
use crate::runtime::{
    ContainerSpec, HealthCheckSpec, MountSource, MountSpec, NetworkMode, PortBindingSpec, Protocol,
    UlimitSpec, VolumeSpec, VolumesFromSpec,
};

/// ECS's health check defaults (Docker's own timeout default is 30 s, ECS's is 5 s).
const HEALTH_INTERVAL: Duration = Duration::from_secs(30);
const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);
const HEALTH_RETRIES: u32 = 3;

/// Why a task or container cannot be turned into engine terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("{feature} is not supported by this agent yet")]
    Unsupported { feature: String },
    #[error(
        "container {container} mounts volume {volume}, which the task definition does not define"
    )]
    UnknownVolume { container: String, volume: String },
    #[error("container {container} takes volumes from {source_container}, which does not exist in the task")]
    UnknownSourceContainer {
        container: String,
        source_container: String,
    },
    #[error("container {container}: port mapping {detail} is invalid")]
    InvalidPortMapping { container: String, detail: String },
    #[error("container {container}: {message}")]
    LogConfiguration { container: String, message: String },
    #[error("container {container}: {parameter} is not supported in the awsvpc network mode")]
    NotWithAwsvpc {
        container: String,
        parameter: &'static str,
    },
    #[error("container {container}: {source}")]
    Ports {
        container: String,
        #[source]
        source: PortError,
    },
}

/// ECS's network mode in which each task has its own address (an ENI): see
/// [`crate::network`].
pub const AWSVPC: &str = "awsvpc";

/// Whether the task definition uses the awsvpc network mode.
pub fn is_awsvpc(definition: &TaskDefinition) -> bool {
    definition.network_mode.as_deref() == Some(AWSVPC)
}

/// The network mode of a task definition (`bridge` when unset, as on EC2). An awsvpc task's
/// containers join its pause container's namespace, which the owner creates: this refuses
/// `awsvpc` (check [`is_awsvpc`] first).
pub fn network_mode(definition: &TaskDefinition) -> Result<NetworkMode, SpecError> {
    match definition.network_mode.as_deref().unwrap_or("bridge") {
        "bridge" => Ok(NetworkMode::Bridge),
        "host" => Ok(NetworkMode::Host),
        "none" => Ok(NetworkMode::None),
        other => Err(SpecError::Unsupported {
            feature: format!("network mode {other}"),
        }),
    }
}

/// Refuses, with a clear reason, what the agent would otherwise silently run wrongly.
pub fn check_supported(definition: &TaskDefinition) -> Result<(), SpecError> {
    let unsupported = |feature: String| Err(SpecError::Unsupported { feature });
    let awsvpc = is_awsvpc(definition);
    if !awsvpc {
        network_mode(definition)?;
    }
    if definition.proxy_configuration.is_some() {
        return unsupported("proxyConfiguration".into());
    }
    for volume in definition.volumes.iter().flatten() {
        let name = volume.name.as_deref().unwrap_or("");
        if volume.efs_volume_configuration.is_some() {
            return unsupported(format!("EFS volume {name}"));
        }
        if volume
            .fsx_windows_file_server_volume_configuration
            .is_some()
        {
            return unsupported(format!("FSx volume {name}"));
        }
        if volume.s3files_volume_configuration.is_some() {
            return unsupported(format!("S3 Files volume {name}"));
        }
    }
    for container in definition.container_definitions.iter().flatten() {
        let name = container.name.as_deref().unwrap_or("");
        let feature = |what: &str| format!("{what} (container {name})");
        if container.secrets.as_ref().is_some_and(|s| !s.is_empty()) {
            return unsupported(feature("secrets"));
        }
        if container
            .environment_files
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            return unsupported(feature("environmentFiles"));
        }
        if container.repository_credentials.is_some() {
            return unsupported(feature("repositoryCredentials"));
        }
        if container.firelens_configuration.is_some() {
            return unsupported(feature("firelensConfiguration"));
        }
        if container.links.as_ref().is_some_and(|l| !l.is_empty()) {
            return unsupported(feature("links"));
        }
        if awsvpc {
            // The containers share the pause container's namespace, whose name and resolver
            // are the task's: the engine refuses these per container (as ECS does).
            let conflicting = [
                (container.hostname.is_some(), "hostname"),
                (
                    container
                        .dns_servers
                        .as_ref()
                        .is_some_and(|l| !l.is_empty()),
                    "dnsServers",
                ),
                (
                    container
                        .dns_search_domains
                        .as_ref()
                        .is_some_and(|l| !l.is_empty()),
                    "dnsSearchDomains",
                ),
                (
                    container
                        .extra_hosts
                        .as_ref()
                        .is_some_and(|l| !l.is_empty()),
                    "extraHosts",
                ),
            ];
            if let Some((_, parameter)) = conflicting.iter().find(|(present, _)| *present) {
                return Err(SpecError::NotWithAwsvpc {
                    container: name.to_string(),
                    parameter,
                });
            }
        }
        if container.restart_policy.as_ref().is_some_and(|p| p.enabled) {
            return unsupported(feature("restartPolicy"));
        }
        if container
            .linux_parameters
            .as_ref()
            .and_then(|p| p.devices.as_ref())
            .is_some_and(|d| !d.is_empty())
        {
            return unsupported(feature("linuxParameters.devices"));
        }
        for mapping in container.port_mappings.iter().flatten() {
            if mapping.container_port_range.is_some() {
                return unsupported(feature("containerPortRange"));
            }
        }
        if let Some(log) = &container.log_configuration {
            if log.log_driver == "awsfirelens" {
                return unsupported(feature("log driver awsfirelens"));
            }
            if log.secret_options.as_ref().is_some_and(|s| !s.is_empty()) {
                return unsupported(feature("logConfiguration.secretOptions"));
            }
            if log.log_driver == AWSLOGS_DRIVER {
                for option in ["awslogs-datetime-format", "awslogs-multiline-pattern"] {
                    if log.options.as_ref().is_some_and(|o| o.contains_key(option)) {
                        return unsupported(feature(&format!("awslogs option {option}")));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The task id: the last segment of its ARN.
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

/// Docker names allow `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect()
}

fn family_and_revision(definition: &TaskDefinition) -> (String, i32) {
    (
        definition.family.clone().unwrap_or_else(|| "task".into()),
        definition.revision.unwrap_or(0),
    )
}

/// The engine name of a container: `ecs-<family>-<revision>-<container>-<task id>`, like the
/// ECS agent's, and deterministic so that a create repeated after a crash collides instead of
/// duplicating the container.
pub fn container_engine_name(task: &Task, definition: &TaskDefinition, container: &str) -> String {
    let (family, revision) = family_and_revision(definition);
    let id = task_id(task.task_arn.as_deref().unwrap_or(""));
    sanitize(&format!("ecs-{family}-{revision}-{container}-{id}"))
}

/// The engine name of a task-scoped volume (created for the task, removed with it).
pub fn task_volume_name(task: &Task, definition: &TaskDefinition, volume: &str) -> String {
    let (family, revision) = family_and_revision(definition);
    let id = task_id(task.task_arn.as_deref().unwrap_or(""));
    sanitize(&format!("ecs-{family}-{revision}-{volume}-{id}"))
}

/// How a task definition volume is backed on this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumePlan {
    /// A host path (`host.sourcePath`): nothing to create.
    HostPath(String),
    /// A Docker volume created for this task and removed with it (`scope: task`, or a `host`
    /// volume without a path, which ECS also gives the task's lifetime).
    TaskScoped(VolumeSpec),
    /// A Docker volume shared by tasks, created when missing if `autoprovision` is set, and
    /// never removed by the agent.
    Shared {
        spec: VolumeSpec,
        autoprovision: bool,
    },
}

impl VolumePlan {
    pub fn mount_source(&self) -> MountSource {
        match self {
            VolumePlan::HostPath(path) => MountSource::HostPath(path.clone()),
            VolumePlan::TaskScoped(spec) | VolumePlan::Shared { spec, .. } => {
                MountSource::Volume(spec.name.clone())
            }
        }
    }
}

/// What the engine does for one task definition volume.
pub fn plan_volume(
    task: &Task,
    definition: &TaskDefinition,
    volume: &Volume,
    owner_labels: &BTreeMap<String, String>,
) -> VolumePlan {
    let name = volume.name.clone().unwrap_or_default();
    if let Some(path) = volume.host.as_ref().and_then(|h| h.source_path.clone()) {
        return VolumePlan::HostPath(path);
    }
    let config = volume
        .docker_volume_configuration
        .clone()
        .unwrap_or_default();
    let mut labels: BTreeMap<String, String> = config.labels.clone().unwrap_or_default();
    let spec = |engine_name: String, labels: BTreeMap<String, String>| VolumeSpec {
        name: engine_name,
        driver: config.driver.clone(),
        driver_opts: config.driver_opts.clone().unwrap_or_default(),
        labels,
    };
    if config.scope.as_deref() == Some("shared") {
        return VolumePlan::Shared {
            spec: spec(name, labels),
            autoprovision: config.autoprovision.unwrap_or(false),
        };
    }
    labels.extend(owner_labels.clone());
    VolumePlan::TaskScoped(spec(task_volume_name(task, definition, &name), labels))
}

/// Inputs to [`build_container_spec`] beyond the container definition itself.
#[derive(Debug)]
pub struct SpecContext<'a> {
    pub task: &'a Task,
    pub definition: &'a TaskDefinition,
    pub network_mode: &'a NetworkMode,
    /// Labels every container of this agent carries (instance, task, cluster, …).
    pub owner_labels: &'a BTreeMap<String, String>,
    /// Task definition volume name → how it is backed.
    pub volumes: &'a BTreeMap<String, VolumePlan>,
    /// Container name → engine id, for `volumesFrom`.
    pub created: &'a BTreeMap<String, String>,
    pub default_stop_timeout: Duration,
}

fn container_override<'a>(task: &'a Task, name: &str) -> Option<&'a ContainerOverride> {
    task.overrides
        .as_ref()?
        .container_overrides
        .as_ref()?
        .iter()
        .find(|o| o.name.as_deref() == Some(name))
}

/// The environment: the definition's, with the override's entries replacing same-named ones
/// and adding new ones, in order.
fn environment(
    definition: &ContainerDefinition,
    overrides: Option<&ContainerOverride>,
) -> Vec<String> {
    let mut entries: Vec<(String, String)> = Vec::new();
    let pairs = definition.environment.iter().flatten().chain(
        overrides
            .and_then(|o| o.environment.as_ref())
            .into_iter()
            .flatten(),
    );
    for pair in pairs {
        let Some(name) = pair.name.clone() else {
            continue;
        };
        let value = pair.value.clone().unwrap_or_default();
        match entries.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => entries.push((name, value)),
        }
    }
    entries
        .into_iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect()
}

const MIB: i64 = 1024 * 1024;

/// The stop timeout of a container: its `stopTimeout`, else the agent's default.
pub fn stop_timeout(container: &ContainerDefinition, default: Duration) -> Duration {
    container
        .stop_timeout
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// The spec of one container. `allocate_port` hands out a dynamic host port; every port it
/// returned is the caller's to release, whether or not this succeeds.
pub fn build_container_spec(
    context: &SpecContext<'_>,
    container: &ContainerDefinition,
    allocate_port: &mut dyn FnMut(Protocol) -> Result<u16, PortError>,
) -> Result<ContainerSpec, SpecError> {
    let name = container.name.clone().unwrap_or_default();
    let overrides = container_override(context.task, &name);
    let mut spec = ContainerSpec {
        name: container_engine_name(context.task, context.definition, &name),
        image: container.image.clone().unwrap_or_default(),
        entrypoint: container.entry_point.clone(),
        cmd: overrides
            .and_then(|o| o.command.clone())
            .or_else(|| container.command.clone()),
        env: environment(container, overrides),
        working_dir: container.working_directory.clone(),
        user: container.user.clone(),
        network_mode: context.network_mode.clone(),
        network_disabled: container.disable_networking.unwrap_or(false),
        readonly_rootfs: container.readonly_root_filesystem.unwrap_or(false),
        privileged: container.privileged.unwrap_or(false),
        hostname: container.hostname.clone(),
        dns_servers: container.dns_servers.clone().unwrap_or_default(),
        dns_search_domains: container.dns_search_domains.clone().unwrap_or_default(),
        security_opt: container
            .docker_security_options
            .clone()
            .unwrap_or_default(),
        tty: container.pseudo_terminal.unwrap_or(false),
        open_stdin: container.interactive.unwrap_or(false),
        stop_timeout: Some(stop_timeout(container, context.default_stop_timeout)),
        ..Default::default()
    };

    // Labels: the definition's, then ours on top so a task cannot forge ownership.
    let mut labels: BTreeMap<String, String> = container
        .docker_labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|(k, _)| !labels::is_reserved(k))
        .collect();
    labels.extend(context.owner_labels.clone());
    labels.insert(labels::CONTAINER_NAME.to_string(), name.clone());
    spec.labels = labels;

    // Resources. ECS passes cpu 0, 1 or none as 2 shares, the kernel's minimum, so that an
    // unset cpu does not become Docker's default of 1024.
    let cpu = overrides.and_then(|o| o.cpu).or(container.cpu).unwrap_or(0);
    spec.cpu_shares = Some(i64::from(cpu).max(2));
    let memory = overrides.and_then(|o| o.memory).or(container.memory);
    let reservation = overrides
        .and_then(|o| o.memory_reservation)
        .or(container.memory_reservation);
    spec.memory_limit_bytes = memory.map(|m| i64::from(m) * MIB);
    spec.memory_reservation_bytes = reservation.map(|m| i64::from(m) * MIB);

    spec.ulimits = container
        .ulimits
        .iter()
        .flatten()
        .map(|u| UlimitSpec {
            name: u.name.clone(),
            soft: i64::from(u.soft_limit),
            hard: i64::from(u.hard_limit),
        })
        .collect();

    if let Some(linux) = &container.linux_parameters {
        spec.init = linux.init_process_enabled.unwrap_or(false);
        if let Some(capabilities) = &linux.capabilities {
            spec.cap_add = capabilities.add.clone().unwrap_or_default();
            spec.cap_drop = capabilities.drop.clone().unwrap_or_default();
        }
        spec.shm_size_bytes = linux.shared_memory_size.map(|m| i64::from(m) * MIB);
        for tmpfs in linux.tmpfs.iter().flatten() {
            let mut options = vec![format!("size={}m", tmpfs.size)];
            options.extend(tmpfs.mount_options.clone().unwrap_or_default());
            spec.tmpfs
                .insert(tmpfs.container_path.clone(), options.join(","));
        }
        // maxSwap is swap on top of the memory limit; Docker's MemorySwap is the sum.
        if let (Some(max_swap), Some(limit)) = (linux.max_swap, spec.memory_limit_bytes) {
            spec.memory_swap_bytes = Some(limit + i64::from(max_swap) * MIB);
            spec.memory_swappiness = Some(i64::from(linux.swappiness.unwrap_or(60)));
        }
    }
    for control in container.system_controls.iter().flatten() {
        if let (Some(namespace), Some(value)) = (&control.namespace, &control.value) {
            spec.sysctls.insert(namespace.clone(), value.clone());
        }
    }
    spec.extra_hosts = container
        .extra_hosts
        .iter()
        .flatten()
        .map(|h| format!("{}:{}", h.hostname, h.ip_address))
        .collect();
    if let Some(log) = &container.log_configuration {
        let options = log.options.clone().unwrap_or_default();
        if log.log_driver == AWSLOGS_DRIVER {
            // The agent ships awslogs itself: the engine keeps the output in json-file (which
            // outlives agent restarts and keeps `docker logs` working), and the container
            // carries its destination so a restarted agent can finish the job.
            let task_id = task_id(context.task.task_arn.as_deref().unwrap_or(""));
            let destination =
                LogDestination::from_options(&options, &name, task_id).map_err(|error| {
                    SpecError::LogConfiguration {
                        container: name.clone(),
                        message: error.to_string(),
                    }
                })?;
            spec.labels.extend(destination.labels());
            spec.log_driver = Some((LOCAL_DRIVER.to_string(), BTreeMap::new()));
        } else {
            // Every other driver is the engine's own: passed on as written.
            spec.log_driver = Some((log.log_driver.clone(), options));
        }
    }

    if let Some(check) = &container.health_check {
        let seconds = |s: Option<i32>, default: Duration| {
            s.and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default)
        };
        spec.health_check = Some(HealthCheckSpec {
            test: check.command.clone(),
            interval: Some(seconds(check.interval, HEALTH_INTERVAL)),
            timeout: Some(seconds(check.timeout, HEALTH_TIMEOUT)),
            retries: Some(
                check
                    .retries
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(HEALTH_RETRIES),
            ),
            start_period: check
                .start_period
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs),
        });
    }

    // Ports: only bridge mode publishes; host mode uses the container ports directly.
    if *context.network_mode == NetworkMode::Bridge {
        for mapping in container.port_mappings.iter().flatten() {
            let invalid = |detail: String| SpecError::InvalidPortMapping {
                container: name.clone(),
                detail,
            };
            let container_port = mapping
                .container_port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid(format!("{:?}", mapping.container_port)))?;
            let protocol = Protocol::parse(mapping.protocol.as_deref().unwrap_or("tcp"))
                .ok_or_else(|| invalid(format!("protocol {:?}", mapping.protocol)))?;
            let host_port = match mapping.host_port.unwrap_or(0) {
                0 => allocate_port(protocol).map_err(|source| SpecError::Ports {
                    container: name.clone(),
                    source,
                })?,
                port => u16::try_from(port).map_err(|_| invalid(format!("hostPort {port}")))?,
            };
            spec.port_bindings.push(PortBindingSpec {
                container_port,
                protocol,
                host_port,
            });
        }
    }

    for mount in container.mount_points.iter().flatten() {
        let volume = mount.source_volume.clone().unwrap_or_default();
        let plan = context
            .volumes
            .get(&volume)
            .ok_or_else(|| SpecError::UnknownVolume {
                container: name.clone(),
                volume: volume.clone(),
            })?;
        spec.mounts.push(MountSpec {
            source: plan.mount_source(),
            target: mount.container_path.clone().unwrap_or_default(),
            read_only: mount.read_only.unwrap_or(false),
        });
    }
    for from in container.volumes_from.iter().flatten() {
        let source = from.source_container.clone().unwrap_or_default();
        let id = context
            .created
            .get(&source)
            .ok_or_else(|| SpecError::UnknownSourceContainer {
                container: name.clone(),
                source_container: source.clone(),
            })?;
        spec.volumes_from.push(VolumesFromSpec {
            container_id: id.clone(),
            read_only: from.read_only.unwrap_or(false),
        });
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::task::TaskOverride;
    use model::ecs::task_definition::{
        DockerVolumeConfiguration, HealthCheck, HostEntry, HostVolumeProperties, LinuxParameters,
        LogConfiguration, MountPoint, PortMapping, Ulimit, VolumeFrom,
    };
    use model::ecs::KeyValuePair;

    const TASK_ARN: &str =
        "arn:aws:ecs:us-east-1:000000000000:task/default/0123456789abcdef0123456789abcdef";

    fn pair(name: &str, value: &str) -> KeyValuePair {
        KeyValuePair {
            name: Some(name.into()),
            value: Some(value.into()),
        }
    }

    fn fixture() -> (Task, TaskDefinition, ContainerDefinition) {
        let container = ContainerDefinition {
            name: Some("app".into()),
            image: Some("wharf-test/busybox:latest".into()),
            cpu: Some(256),
            memory: Some(128),
            memory_reservation: Some(64),
            command: Some(vec!["httpd".into(), "-f".into()]),
            entry_point: Some(vec!["/bin/sh".into(), "-c".into()]),
            environment: Some(vec![pair("A", "1"), pair("B", "2")]),
            working_directory: Some("/www".into()),
            user: Some("nobody".into()),
            docker_labels: Some(BTreeMap::from([
                ("team".into(), "web".into()),
                (labels::TASK_ARN.into(), "forged".into()),
            ])),
            ulimits: Some(vec![Ulimit {
                name: "nofile".into(),
                soft_limit: 1024,
                hard_limit: 4096,
            }]),
            readonly_root_filesystem: Some(true),
            privileged: Some(true),
            linux_parameters: Some(LinuxParameters {
                init_process_enabled: Some(true),
                ..Default::default()
            }),
            port_mappings: Some(vec![
                PortMapping {
                    container_port: Some(80),
                    host_port: Some(8080),
                    ..Default::default()
                },
                PortMapping {
                    container_port: Some(53),
                    protocol: Some("udp".into()),
                    ..Default::default()
                },
            ]),
            mount_points: Some(vec![
                MountPoint {
                    source_volume: Some("data".into()),
                    container_path: Some("/data".into()),
                    read_only: Some(true),
                },
                MountPoint {
                    source_volume: Some("scratch".into()),
                    container_path: Some("/scratch".into()),
                    read_only: None,
                },
            ]),
            volumes_from: Some(vec![VolumeFrom {
                source_container: Some("seed".into()),
                read_only: Some(true),
            }]),
            health_check: Some(HealthCheck {
                command: vec!["CMD-SHELL".into(), "wget -q -O- localhost".into()],
                interval: Some(5),
                timeout: None,
                retries: None,
                start_period: Some(10),
            }),
            extra_hosts: Some(vec![HostEntry {
                hostname: "db".into(),
                ip_address: "10.1.1.1".into(),
            }]),
            hostname: Some("web".into()),
            dns_servers: Some(vec!["10.0.0.2".into()]),
            stop_timeout: Some(7),
            ..Default::default()
        };
        let definition = TaskDefinition {
            family: Some("web".into()),
            revision: Some(3),
            container_definitions: Some(vec![container.clone()]),
            volumes: Some(vec![
                Volume {
                    name: Some("data".into()),
                    host: Some(HostVolumeProperties {
                        source_path: Some("/srv/data".into()),
                    }),
                    ..Default::default()
                },
                Volume {
                    name: Some("scratch".into()),
                    docker_volume_configuration: Some(DockerVolumeConfiguration {
                        scope: Some("task".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ]),
            ..Default::default()
        };
        let task = Task {
            task_arn: Some(TASK_ARN.into()),
            overrides: Some(TaskOverride {
                container_overrides: Some(vec![ContainerOverride {
                    name: Some("app".into()),
                    command: Some(vec!["echo overridden".into()]),
                    environment: Some(vec![pair("B", "3"), pair("C", "4")]),
                    memory: Some(256),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        };
        (task, definition, container)
    }

    #[test]
    fn maps_every_supported_member_with_overrides() {
        let (task, definition, container) = fixture();
        let owner_labels = BTreeMap::from([(labels::TASK_ARN.to_string(), TASK_ARN.to_string())]);
        let volumes: BTreeMap<String, VolumePlan> = definition
            .volumes
            .iter()
            .flatten()
            .map(|v| {
                (
                    v.name.clone().unwrap_or_default(),
                    plan_volume(&task, &definition, v, &owner_labels),
                )
            })
            .collect();
        let created = BTreeMap::from([("seed".to_string(), "seedid".to_string())]);
        let context = SpecContext {
            task: &task,
            definition: &definition,
            network_mode: &NetworkMode::Bridge,
            owner_labels: &owner_labels,
            volumes: &volumes,
            created: &created,
            default_stop_timeout: Duration::from_secs(30),
        };
        let mut next = 49153;
        let spec = build_container_spec(&context, &container, &mut |_| {
            next += 1;
            Ok(next)
        })
        .expect("builds");
        assert_eq!(spec.name, "ecs-web-3-app-0123456789abcdef0123456789abcdef");
        assert_eq!(spec.cmd, Some(vec!["echo overridden".to_string()]));
        assert_eq!(spec.entrypoint, Some(vec!["/bin/sh".into(), "-c".into()]));
        assert_eq!(spec.env, vec!["A=1", "B=3", "C=4"]);
        assert_eq!(spec.cpu_shares, Some(256));
        assert_eq!(spec.memory_limit_bytes, Some(256 * MIB));
        assert_eq!(spec.memory_reservation_bytes, Some(64 * MIB));
        assert_eq!(spec.labels.get("team").map(String::as_str), Some("web"));
        assert_eq!(
            spec.labels.get(labels::TASK_ARN).map(String::as_str),
            Some(TASK_ARN),
            "dockerLabels cannot forge the agent's labels"
        );
        assert_eq!(
            spec.labels.get(labels::CONTAINER_NAME).map(String::as_str),
            Some("app")
        );
        assert!(spec.readonly_rootfs && spec.privileged && spec.init);
        assert_eq!(spec.ulimits[0].hard, 4096);
        assert_eq!(
            spec.port_bindings,
            vec![
                PortBindingSpec {
                    container_port: 80,
                    protocol: Protocol::Tcp,
                    host_port: 8080
                },
                PortBindingSpec {
                    container_port: 53,
                    protocol: Protocol::Udp,
                    host_port: 49154
                },
            ]
        );
        assert_eq!(spec.mounts[0].as_bind(), "/srv/data:/data:ro");
        assert_eq!(
            spec.mounts[1].as_bind(),
            "ecs-web-3-scratch-0123456789abcdef0123456789abcdef:/scratch"
        );
        assert_eq!(spec.volumes_from[0].as_docker(), "seedid:ro");
        let check = spec.health_check.expect("health check");
        assert_eq!(check.interval, Some(Duration::from_secs(5)));
        assert_eq!(check.timeout, Some(HEALTH_TIMEOUT));
        assert_eq!(check.retries, Some(3));
        assert_eq!(check.start_period, Some(Duration::from_secs(10)));
        assert_eq!(spec.extra_hosts, vec!["db:10.1.1.1"]);
        assert_eq!(spec.hostname.as_deref(), Some("web"));
        assert_eq!(spec.dns_servers, vec!["10.0.0.2"]);
        assert_eq!(spec.stop_timeout, Some(Duration::from_secs(7)));
        assert_eq!(spec.working_dir.as_deref(), Some("/www"));
        assert_eq!(spec.user.as_deref(), Some("nobody"));
    }

    #[test]
    fn unset_cpu_is_two_shares_and_host_mode_publishes_nothing() {
        let (task, definition, mut container) = fixture();
        container.cpu = None;
        container.mount_points = None;
        container.volumes_from = None;
        let empty = BTreeMap::new();
        let context = SpecContext {
            task: &Task {
                task_arn: task.task_arn.clone(),
                ..Default::default()
            },
            definition: &definition,
            network_mode: &NetworkMode::Host,
            owner_labels: &empty,
            volumes: &BTreeMap::new(),
            created: &empty,
            default_stop_timeout: Duration::from_secs(30),
        };
        let spec = build_container_spec(&context, &container, &mut |_| {
            panic!("host mode allocates no port")
        })
        .expect("builds");
        assert_eq!(spec.cpu_shares, Some(2));
        assert!(spec.port_bindings.is_empty());
        assert_eq!(spec.network_mode, NetworkMode::Host);
    }

    #[test]
    fn awslogs_runs_on_json_file_and_other_drivers_pass_through() {
        let (task, definition, mut container) = fixture();
        container.mount_points = None;
        container.volumes_from = None;
        let empty = BTreeMap::new();
        let context = SpecContext {
            task: &Task {
                task_arn: task.task_arn.clone(),
                ..Default::default()
            },
            definition: &definition,
            network_mode: &NetworkMode::Host,
            owner_labels: &empty,
            volumes: &BTreeMap::new(),
            created: &empty,
            default_stop_timeout: Duration::from_secs(30),
        };
        let build = |log: LogConfiguration| {
            let mut container = container.clone();
            container.log_configuration = Some(log);
            build_container_spec(&context, &container, &mut |_| panic!("host mode"))
        };
        let options = |pairs: &[(&str, &str)]| {
            Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<String, String>>(),
            )
        };
        let spec = build(LogConfiguration {
            log_driver: "awslogs".into(),
            options: options(&[
                ("awslogs-group", "/ecs/web"),
                ("awslogs-region", "us-east-1"),
                ("awslogs-stream-prefix", "ecs"),
            ]),
            secret_options: None,
        })
        .expect("builds");
        assert_eq!(
            spec.log_driver,
            Some(("json-file".to_string(), BTreeMap::new()))
        );
        assert_eq!(
            LogDestination::from_labels(&spec.labels),
            Some(LogDestination {
                group: "/ecs/web".into(),
                stream: Some("ecs/app/0123456789abcdef0123456789abcdef".into()),
                create_group: false,
            })
        );
        for driver in [
            "json-file",
            "none",
            "syslog",
            "journald",
            "gelf",
            "fluentd",
            "splunk",
        ] {
            let spec = build(LogConfiguration {
                log_driver: driver.into(),
                options: options(&[("tag", "{{.Name}}")]),
                secret_options: None,
            })
            .expect("builds");
            let (name, passed) = spec.log_driver.expect("a driver");
            assert_eq!(name, driver);
            assert_eq!(passed.get("tag").map(String::as_str), Some("{{.Name}}"));
            assert_eq!(LogDestination::from_labels(&spec.labels), None);
        }
        let missing_group = build(LogConfiguration {
            log_driver: "awslogs".into(),
            options: options(&[("awslogs-region", "us-east-1")]),
            secret_options: None,
        });
        assert_eq!(
            missing_group.map_err(|e| e.to_string()),
            Err("container app: the awslogs log driver needs the awslogs-group option".into())
        );
        // dockerLabels cannot forge a destination.
        let mut forged = container.clone();
        forged.docker_labels = Some(BTreeMap::from([(
            labels::AWSLOGS_GROUP.to_string(),
            "forged".to_string(),
        )]));
        let spec =
            build_container_spec(&context, &forged, &mut |_| panic!("host mode")).expect("builds");
        assert_eq!(LogDestination::from_labels(&spec.labels), None);
    }

    #[test]
    fn awslogs_options_the_agent_lacks_are_refused_at_start() {
        let (_, mut definition, mut container) = fixture();
        container.log_configuration = Some(LogConfiguration {
            log_driver: "awslogs".into(),
            options: Some(BTreeMap::from([
                ("awslogs-group".to_string(), "g".to_string()),
                ("awslogs-multiline-pattern".to_string(), "^INFO".to_string()),
            ])),
            secret_options: None,
        });
        definition.container_definitions = Some(vec![container.clone()]);
        assert_eq!(
            check_supported(&definition).map_err(|e| e.to_string()),
            Err("awslogs option awslogs-multiline-pattern (container app) is not supported by this agent yet".to_string())
        );
        container.log_configuration = Some(LogConfiguration {
            log_driver: "awsfirelens".into(),
            options: None,
            secret_options: None,
        });
        definition.container_definitions = Some(vec![container]);
        assert_eq!(
            check_supported(&definition).map_err(|e| e.to_string()),
            Err(
                "log driver awsfirelens (container app) is not supported by this agent yet"
                    .to_string()
            )
        );
    }

    #[test]
    fn unsupported_features_are_refused_by_name() {
        let (_, mut definition, _) = fixture();
        definition.network_mode = Some("nat".into());
        assert_eq!(
            check_supported(&definition).map_err(|e| e.to_string()),
            Err("network mode nat is not supported by this agent yet".to_string())
        );
        // awsvpc runs, without what the task's shared namespace decides.
        definition.network_mode = Some(AWSVPC.into());
        assert_eq!(
            check_supported(&definition).map_err(|e| e.to_string()),
            Err("container app: hostname is not supported in the awsvpc network mode".to_string())
        );
        if let Some(container) = definition
            .container_definitions
            .as_mut()
            .and_then(|c| c.first_mut())
        {
            container.hostname = None;
            container.dns_servers = None;
            container.extra_hosts = None;
        }
        assert_eq!(check_supported(&definition), Ok(()));
        let (_, definition, _) = fixture();
        assert_eq!(check_supported(&definition), Ok(()));
    }

    #[test]
    fn shared_volumes_keep_their_name() {
        let (task, definition, _) = fixture();
        let volume = Volume {
            name: Some("cache".into()),
            docker_volume_configuration: Some(DockerVolumeConfiguration {
                scope: Some("shared".into()),
                autoprovision: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        match plan_volume(&task, &definition, &volume, &BTreeMap::new()) {
            VolumePlan::Shared {
                spec,
                autoprovision,
            } => {
                assert_eq!(spec.name, "cache");
                assert!(autoprovision);
            }
            other => panic!("expected a shared volume, got {other:?}"),
        }
    }
}
