//! [`DockerRuntime`]: the [`ContainerRuntime`] over the Docker Engine API, through `bollard`.
//!
//! The client negotiates the API version down to what the engine speaks (Debian's 20.10 engine
//! speaks 1.41), so one agent build works against old and new engines. Nothing here decides
//! anything about tasks; it only translates specs and answers.
//!
//! Its [`NetworkEnforcer`] is [`IptablesEnforcer`] unless replaced
//! ([`DockerRuntime::with_enforcer`]): the engine's containers' namespaces are reached through
//! their PIDs on this host.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, EndpointIpamConfig, EndpointSettings,
    EventMessageTypeEnum, HealthConfig, HealthStatusEnum, HostConfig, HostConfigLogConfig, Ipam,
    IpamConfig, NetworkCreateRequest, NetworkingConfig, PortBinding, ResourcesUlimits,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, CreateImageOptionsBuilder, EventsOptionsBuilder,
    ListContainersOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use tokio::sync::{Mutex, OnceCell};

use super::details::{self, ContainerDetails, ContainerMount, ContainerNetwork, HealthDetail};
use super::{
    AssignedPort, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStats, ContainerStatus,
    ContainerSummary, EngineVersion, EventStream, HealthState, LogEntry, LogSource, LogStream,
    Protocol, RuntimeError, RuntimeEvent, RuntimeEventKind, VolumeSpec,
};
use super::{NetworkAttachment, NetworkSpec};
use crate::network::{IptablesEnforcer, NetworkEnforcer};

/// Requests wait this long for the engine's answer, except stops, which wait for the stop
/// timeout on top of it (the engine answers a stop only once the container is gone).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The Docker Engine.
#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// The host memory as the engine sees it (`MemTotal` of `docker info`), read once: the
    /// engine reports it as the limit of containers that have none.
    machine_memory: Arc<OnceCell<u64>>,
    enforcer: Arc<dyn NetworkEnforcer>,
    /// Serialises network creation: engines before API 1.44 do not refuse a second network of
    /// the same name, so two tasks of one subnet must not create it at once.
    network_creation: Arc<Mutex<()>>,
}

/// What a 404 refers to, so it maps to the right "no such …" error.
#[derive(Clone, Copy)]
enum Subject<'a> {
    Container(&'a str),
    Image(&'a str),
    Volume(&'a str),
    Network,
    Engine,
}

impl DockerRuntime {
    /// Connects to the engine named by `DOCKER_HOST` (a unix socket or plain `tcp://`), or to
    /// the local default socket, and negotiates the API version.
    pub async fn connect() -> Result<Self, RuntimeError> {
        let docker =
            Docker::connect_with_defaults().map_err(|error| RuntimeError::Unavailable {
                message: error.to_string(),
            })?;
        Self::from_client(docker).await
    }

    /// Uses an already configured client (for example another socket), negotiating the API
    /// version.
    pub async fn from_client(docker: Docker) -> Result<Self, RuntimeError> {
        let docker = docker
            .with_timeout(REQUEST_TIMEOUT)
            .negotiate_version()
            .await
            .map_err(|error| RuntimeError::Unavailable {
                message: error.to_string(),
            })?;
        Ok(Self {
            docker,
            machine_memory: Arc::new(OnceCell::new()),
            enforcer: Arc::new(IptablesEnforcer),
            network_creation: Arc::new(Mutex::new(())),
        })
    }

    /// Uses another enforcer for the containers' namespaces (for tests without iptables).
    pub fn with_enforcer(mut self, enforcer: Arc<dyn NetworkEnforcer>) -> Self {
        self.enforcer = enforcer;
        self
    }

    async fn network_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_network(name, None).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(error) => Err(map_error(error, Subject::Network)),
        }
    }

    /// Remove the networks labelled with a Wharf subnet whose range is `subnet` and that no
    /// container is attached to; how many were removed.
    async fn remove_unused_networks_with_range(&self, subnet: &str) -> Result<usize, RuntimeError> {
        let filters = HashMap::from([("label", vec![crate::labels::SUBNET_ID])]);
        let options = bollard::query_parameters::ListNetworksOptionsBuilder::new()
            .filters(&filters)
            .build();
        let networks = self
            .docker
            .list_networks(Some(options))
            .await
            .map_err(|e| map_error(e, Subject::Network))?;
        let mut removed = 0;
        for network in networks {
            let same_range = network
                .ipam
                .as_ref()
                .and_then(|ipam| ipam.config.as_ref())
                .is_some_and(|configs| configs.iter().any(|c| c.subnet.as_deref() == Some(subnet)));
            let Some(name) = network.name.filter(|_| same_range) else {
                continue;
            };
            let in_use = match self.docker.inspect_network(&name, None).await {
                Ok(inspected) => inspected.containers.is_some_and(|c| !c.is_empty()),
                Err(_) => true,
            };
            if in_use {
                continue;
            }
            if self.docker.remove_network(&name).await.is_ok() {
                tracing::info!(network = %name, subnet, "removed an unused network with the same range");
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The engine's view of the host memory; 0 (never a limit) if it cannot tell.
    async fn machine_memory(&self) -> u64 {
        *self
            .machine_memory
            .get_or_init(|| async {
                match self.docker.info().await {
                    Ok(info) => info
                        .mem_total
                        .and_then(|m| u64::try_from(m).ok())
                        .unwrap_or(0),
                    Err(error) => {
                        tracing::debug!(error = %error, "cannot read the engine's host memory");
                        0
                    }
                }
            })
            .await
    }
}

/// A stats answer in engine-neutral terms, `None` for a container that is not running (the
/// engine then answers with empty memory stats).
///
/// Memory is computed as the Docker CLI does for `docker stats`: usage minus
/// `total_inactive_file` on cgroup v1, minus `inactive_file` on cgroup v2 (each only when
/// smaller than the usage). A container without a limit shows the host memory as its limit
/// (`machine_memory`), and is reported with 0.
fn stats_reading(
    stats: &bollard::models::ContainerStatsResponse,
    machine_memory: u64,
) -> Option<ContainerStats> {
    let memory = stats.memory_stats.as_ref()?;
    let usage = memory.usage?;
    let counters = memory.stats.as_ref();
    let counter = |name: &str| counters.and_then(|c| c.get(name)).copied();
    let memory_bytes = match (counter("total_inactive_file"), counter("inactive_file")) {
        (Some(inactive), _) if inactive < usage => usage - inactive,
        (Some(_), _) => usage,
        (None, Some(inactive)) if inactive < usage => usage - inactive,
        _ => usage,
    };
    let limit = memory.limit.unwrap_or(0);
    let memory_limit_bytes = if machine_memory > 0 && limit >= machine_memory {
        0
    } else {
        limit
    };
    let cpu_total_nanos = stats
        .cpu_stats
        .as_ref()
        .and_then(|cpu| cpu.cpu_usage.as_ref())
        .and_then(|usage| usage.total_usage)
        .unwrap_or(0);
    Some(ContainerStats {
        cpu_total_nanos,
        memory_bytes,
        memory_limit_bytes,
    })
}

/// One frame of the logs endpoint with `timestamps`: `<RFC 3339 nanos> <message>`. `None`
/// (skipped) for a frame without a readable timestamp.
fn parse_log_frame(frame: bollard::container::LogOutput) -> Option<LogEntry> {
    use bollard::container::LogOutput;
    let (source, payload) = match frame {
        LogOutput::StdOut { message } | LogOutput::Console { message } => {
            (LogSource::Stdout, message)
        }
        LogOutput::StdErr { message } => (LogSource::Stderr, message),
        LogOutput::StdIn { .. } => return None,
    };
    let space = payload.iter().position(|b| *b == b' ')?;
    let stamp = std::str::from_utf8(&payload[..space]).ok()?;
    let timestamp_nanos = chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .timestamp_nanos_opt()?;
    Some(LogEntry {
        timestamp_nanos,
        source,
        message: payload.slice(space + 1..),
    })
}

fn map_error(error: BollardError, subject: Subject<'_>) -> RuntimeError {
    match error {
        BollardError::DockerResponseServerError {
            status_code: 404,
            message,
        } => match subject {
            Subject::Container(id) => RuntimeError::NoSuchContainer { id: id.to_string() },
            Subject::Image(image) => RuntimeError::NoSuchImage {
                image: image.to_string(),
            },
            Subject::Volume(name) => RuntimeError::NoSuchVolume {
                name: name.to_string(),
            },
            Subject::Network | Subject::Engine => RuntimeError::Engine {
                status: 404,
                message,
            },
        },
        BollardError::DockerResponseServerError {
            status_code: 409,
            message,
        } => RuntimeError::Conflict { message },
        BollardError::DockerResponseServerError {
            status_code,
            message,
        } => RuntimeError::Engine {
            status: status_code,
            message,
        },
        // Errors reported inside a streamed answer (a failed pull) are the engine's own.
        BollardError::DockerStreamError { error } => RuntimeError::Engine {
            status: 500,
            message: error,
        },
        BollardError::RequestTimeoutError => RuntimeError::Timeout {
            seconds: REQUEST_TIMEOUT.as_secs(),
        },
        error @ (BollardError::JsonDataError { .. }
        | BollardError::JsonSerdeError { .. }
        | BollardError::StrParseError { .. }
        | BollardError::APIVersionParseError { .. }) => RuntimeError::Protocol {
            message: error.to_string(),
        },
        other => RuntimeError::Unavailable {
            message: other.to_string(),
        },
    }
}

/// Docker's `0001-01-01T00:00:00Z` means "never"; anything else is RFC 3339.
fn parse_time(text: Option<&str>) -> Option<f64> {
    let text = text?;
    let time = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    if time.timestamp() <= 0 {
        return None;
    }
    Some(time.timestamp_millis() as f64 / 1000.0)
}

fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    if items.is_empty() {
        None
    } else {
        Some(items)
    }
}

/// The create body for a spec: every member of [`ContainerSpec`] lands somewhere here.
fn create_body(spec: &ContainerSpec) -> ContainerCreateBody {
    let mut exposed_ports = Vec::new();
    let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for binding in &spec.port_bindings {
        let key = format!("{}/{}", binding.container_port, binding.protocol.as_str());
        exposed_ports.push(key.clone());
        port_bindings
            .entry(key)
            .or_default()
            .get_or_insert_with(Vec::new)
            .push(PortBinding {
                host_ip: None,
                host_port: Some(binding.host_port.to_string()),
            });
    }
    let healthcheck = spec.health_check.as_ref().map(|check| HealthConfig {
        test: Some(check.test.clone()),
        interval: check.interval.map(nanos),
        timeout: check.timeout.map(nanos),
        retries: check.retries.map(i64::from),
        start_period: check.start_period.map(nanos),
        start_interval: None,
    });
    let networking_config = spec.endpoint.as_ref().map(|endpoint| NetworkingConfig {
        endpoints_config: Some(HashMap::from([(
            endpoint.network.clone(),
            EndpointSettings {
                ipam_config: endpoint
                    .ipv4_address
                    .as_ref()
                    .map(|address| EndpointIpamConfig {
                        ipv4_address: Some(address.clone()),
                        ..Default::default()
                    }),
                mac_address: endpoint.mac_address.clone(),
                ..Default::default()
            },
        )])),
    });
    let host_config = HostConfig {
        cpu_shares: spec.cpu_shares,
        nano_cpus: spec.nano_cpus,
        memory: spec.memory_limit_bytes,
        memory_reservation: spec.memory_reservation_bytes,
        memory_swap: spec.memory_swap_bytes,
        memory_swappiness: spec.memory_swappiness,
        ulimits: non_empty(
            spec.ulimits
                .iter()
                .map(|u| ResourcesUlimits {
                    name: Some(u.name.clone()),
                    soft: Some(u.soft),
                    hard: Some(u.hard),
                })
                .collect(),
        ),
        readonly_rootfs: Some(spec.readonly_rootfs),
        privileged: Some(spec.privileged),
        init: spec.init.then_some(true),
        network_mode: Some(spec.network_mode.as_docker()),
        port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
        binds: non_empty(spec.mounts.iter().map(|m| m.as_bind()).collect()),
        volumes_from: non_empty(spec.volumes_from.iter().map(|v| v.as_docker()).collect()),
        extra_hosts: non_empty(spec.extra_hosts.clone()),
        dns: non_empty(spec.dns_servers.clone()),
        dns_search: non_empty(spec.dns_search_domains.clone()),
        cap_add: non_empty(spec.cap_add.clone()),
        cap_drop: non_empty(spec.cap_drop.clone()),
        shm_size: spec.shm_size_bytes,
        tmpfs: (!spec.tmpfs.is_empty()).then(|| to_hash_map(&spec.tmpfs)),
        sysctls: (!spec.sysctls.is_empty()).then(|| to_hash_map(&spec.sysctls)),
        security_opt: non_empty(spec.security_opt.clone()),
        log_config: spec
            .log_driver
            .as_ref()
            .map(|(driver, options)| HostConfigLogConfig {
                typ: Some(driver.clone()),
                config: Some(to_hash_map(options)),
            }),
        ..Default::default()
    };
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: spec.cmd.clone(),
        env: non_empty(spec.env.clone()),
        working_dir: spec.working_dir.clone(),
        user: spec.user.clone(),
        labels: Some(to_hash_map(&spec.labels)),
        hostname: spec.hostname.clone(),
        exposed_ports: non_empty(exposed_ports),
        healthcheck,
        stop_signal: spec.stop_signal.clone(),
        stop_timeout: spec.stop_timeout.map(|t| t.as_secs() as i64),
        network_disabled: spec.network_disabled.then_some(true),
        tty: spec.tty.then_some(true),
        open_stdin: spec.open_stdin.then_some(true),
        host_config: Some(host_config),
        networking_config,
        ..Default::default()
    }
}

/// The metadata endpoint's view of an inspect answer.
fn container_details(
    id: &str,
    inspected: bollard::models::ContainerInspectResponse,
) -> ContainerDetails {
    let state = inspected.state.unwrap_or_default();
    let health = state.health.as_ref().and_then(|health| {
        let status = match health.status {
            Some(HealthStatusEnum::STARTING) => HealthState::Starting,
            Some(HealthStatusEnum::HEALTHY) => HealthState::Healthy,
            Some(HealthStatusEnum::UNHEALTHY) => HealthState::Unhealthy,
            _ => return None,
        };
        let log = health.log.clone().unwrap_or_default();
        let runs: Vec<_> = log
            .iter()
            .map(|r| (details::engine_time(r.start.as_deref()), r.exit_code))
            .collect();
        let latest = log.last();
        Some(HealthDetail {
            status,
            since: details::health_since(status, &runs),
            exit_code: latest.and_then(|r| r.exit_code),
            output: latest.and_then(|r| r.output.clone()),
        })
    });
    let mut networks: Vec<ContainerNetwork> = inspected
        .network_settings
        .and_then(|settings| settings.networks)
        .unwrap_or_default()
        .into_iter()
        .map(|(name, endpoint)| ContainerNetwork {
            name,
            ipv4_address: endpoint.ip_address.filter(|ip| !ip.is_empty()),
        })
        .collect();
    networks.sort_by(|a, b| a.name.cmp(&b.name));
    let config = inspected.config.unwrap_or_default();
    ContainerDetails {
        id: inspected.id.unwrap_or_else(|| id.to_string()),
        name: inspected
            .name
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_string(),
        image: config.image.unwrap_or_default(),
        image_id: inspected.image,
        labels: config.labels.unwrap_or_default().into_iter().collect(),
        created_at: details::engine_time(inspected.created.as_deref()),
        started_at: details::engine_time(state.started_at.as_deref()),
        finished_at: details::engine_time(state.finished_at.as_deref()),
        running: container_status(state.status).is_running(),
        networks,
        mounts: inspected
            .mounts
            .unwrap_or_default()
            .into_iter()
            .map(|mount| ContainerMount {
                name: mount.name.filter(|n| !n.is_empty()),
                source: mount.source.filter(|s| !s.is_empty()),
                destination: mount.destination.unwrap_or_default(),
            })
            .collect(),
        restart_count: inspected.restart_count.unwrap_or(0),
        health,
    }
}

/// A network's gateway: IPAM's, else the first address of its subnet, which is where Docker
/// puts the gateway when IPAM names none (the default `bridge` on a pre-existing `docker0`
/// reports only its subnet).
fn network_gateway(network: &bollard::models::NetworkInspect) -> Option<std::net::IpAddr> {
    let configs = network.ipam.as_ref()?.config.as_ref()?;
    // IPv6 ranges hold colons; the first IPv4 range is the one containers reach the host on.
    let ipv4 = configs
        .iter()
        .find(|c| c.subnet.as_deref().is_some_and(|s| !s.contains(':')))?;
    if let Some(gateway) = ipv4.gateway.as_deref().and_then(|g| g.parse().ok()) {
        return Some(gateway);
    }
    let (address, _prefix) = ipv4.subnet.as_deref()?.split_once('/')?;
    let base: std::net::Ipv4Addr = address.parse().ok()?;
    Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
        u32::from(base).checked_add(1)?,
    )))
}

fn container_status(status: Option<ContainerStateStatusEnum>) -> ContainerStatus {
    match status {
        Some(ContainerStateStatusEnum::RUNNING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::PAUSED) => ContainerStatus::Paused,
        Some(ContainerStateStatusEnum::RESTARTING) => ContainerStatus::Restarting,
        Some(ContainerStateStatusEnum::REMOVING) => ContainerStatus::Removing,
        Some(ContainerStateStatusEnum::EXITED) => ContainerStatus::Exited,
        Some(ContainerStateStatusEnum::DEAD) => ContainerStatus::Dead,
        // STOPPING is still running as far as a task is concerned.
        Some(ContainerStateStatusEnum::STOPPING) => ContainerStatus::Running,
        Some(ContainerStateStatusEnum::CREATED) | Some(ContainerStateStatusEnum::EMPTY) | None => {
            ContainerStatus::Created
        }
    }
}

fn parse_event(message: bollard::models::EventMessage) -> Option<RuntimeEvent> {
    if message.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = message.action.unwrap_or_default();
    // Health events read `health_status: healthy`; exec events carry the command after `:`.
    let kind = match action.split(':').next().unwrap_or("") {
        "start" => RuntimeEventKind::Start,
        "die" => RuntimeEventKind::Die,
        "oom" => RuntimeEventKind::Oom,
        "destroy" => RuntimeEventKind::Destroy,
        "health_status" => RuntimeEventKind::HealthStatus,
        _ => return None,
    };
    let actor = message.actor?;
    Some(RuntimeEvent {
        container_id: actor.id?,
        kind,
        labels: actor.attributes.unwrap_or_default().into_iter().collect(),
    })
}

#[async_trait::async_trait]
impl ContainerRuntime for DockerRuntime {
    async fn version(&self) -> Result<EngineVersion, RuntimeError> {
        let version = self
            .docker
            .version()
            .await
            .map_err(|e| map_error(e, Subject::Engine))?;
        Ok(EngineVersion {
            version: version.version.unwrap_or_default(),
            api_version: version.api_version.unwrap_or_default(),
        })
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(error) => Err(map_error(error, Subject::Image(image))),
        }
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        let (repository, tag) = super::split_image_reference(image);
        let options = CreateImageOptionsBuilder::new()
            .from_image(&repository)
            .tag(&tag)
            .build();
        let mut progress = self.docker.create_image(Some(options), None, None);
        while let Some(item) = progress.next().await {
            item.map_err(|e| map_error(e, Subject::Image(image)))?;
        }
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let options = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let created = self
            .docker
            .create_container(Some(options), create_body(spec))
            .await
            .map_err(|e| map_error(e, Subject::Image(&spec.image)))?;
        Ok(created.id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.docker
            .start_container(id, None)
            .await
            .map_err(|e| map_error(e, Subject::Container(id)))
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptionsBuilder::new().t(seconds).build();
        // The engine answers once the container is gone: allow the whole grace period.
        let docker = self.docker.clone().with_timeout(REQUEST_TIMEOUT + timeout);
        match docker.stop_container(id, Some(options)).await {
            // 304: already stopped.
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(error) => Err(map_error(error, Subject::Container(id))),
        }
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let options = RemoveContainerOptionsBuilder::new()
            .v(true)
            .force(true)
            .build();
        match self.docker.remove_container(id, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(map_error(error, Subject::Container(id))),
        }
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| map_error(e, Subject::Container(id)))?;
        let state = inspected.state.unwrap_or_default();
        let health = state
            .health
            .as_ref()
            .and_then(|health| match health.status {
                Some(HealthStatusEnum::STARTING) => Some(HealthState::Starting),
                Some(HealthStatusEnum::HEALTHY) => Some(HealthState::Healthy),
                Some(HealthStatusEnum::UNHEALTHY) => Some(HealthState::Unhealthy),
                _ => None,
            });
        let mut ports = Vec::new();
        let settings = inspected.network_settings.unwrap_or_default();
        let networks: BTreeMap<String, NetworkAttachment> = settings
            .networks
            .unwrap_or_default()
            .into_iter()
            .map(|(name, endpoint)| {
                let attachment = NetworkAttachment {
                    ipv4_address: endpoint.ip_address.filter(|a| !a.is_empty()),
                    mac_address: endpoint.mac_address.filter(|a| !a.is_empty()),
                };
                (name, attachment)
            })
            .collect();
        let port_map = settings.ports.unwrap_or_default();
        for (key, bindings) in port_map {
            let Some((port, protocol)) = key.split_once('/') else {
                continue;
            };
            let (Ok(container_port), Some(protocol)) = (port.parse(), Protocol::parse(protocol))
            else {
                continue;
            };
            for binding in bindings.unwrap_or_default() {
                let Some(host_port) = binding.host_port.and_then(|p| p.parse().ok()) else {
                    continue;
                };
                ports.push(AssignedPort {
                    container_port,
                    protocol,
                    host_ip: binding.host_ip.unwrap_or_default(),
                    host_port,
                });
            }
        }
        ports.sort_by(|a, b| {
            (a.container_port, a.protocol, &a.host_ip).cmp(&(
                b.container_port,
                b.protocol,
                &b.host_ip,
            ))
        });
        let error = state.error.filter(|e| !e.is_empty());
        Ok(ContainerInfo {
            id: inspected.id.unwrap_or_else(|| id.to_string()),
            name: inspected
                .name
                .unwrap_or_default()
                .trim_start_matches('/')
                .to_string(),
            labels: inspected
                .config
                .and_then(|config| config.labels)
                .unwrap_or_default()
                .into_iter()
                .collect(),
            status: container_status(state.status),
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            error,
            health,
            started_at: parse_time(state.started_at.as_deref()),
            finished_at: parse_time(state.finished_at.as_deref()),
            ports,
            image_id: inspected.image,
            // The engine says 0 for a container that is not running.
            pid: state.pid.filter(|pid| *pid > 0),
            networks,
        })
    }

    async fn list_containers(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let filters: HashMap<String, Vec<String>> = HashMap::from([(
            "label".to_string(),
            labels.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        )]);
        let options = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let listed = self
            .docker
            .list_containers(Some(options))
            .await
            .map_err(|e| map_error(e, Subject::Engine))?;
        Ok(listed
            .into_iter()
            .filter_map(|summary| {
                Some(ContainerSummary {
                    id: summary.id?,
                    name: summary
                        .names
                        .and_then(|names| names.into_iter().next())
                        .unwrap_or_default()
                        .trim_start_matches('/')
                        .to_string(),
                    labels: summary.labels.unwrap_or_default().into_iter().collect(),
                    running: summary.state
                        == Some(bollard::models::ContainerSummaryStateEnum::RUNNING),
                })
            })
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        let request = VolumeCreateRequest {
            name: Some(spec.name.clone()),
            driver: spec.driver.clone(),
            driver_opts: Some(to_hash_map(&spec.driver_opts)),
            labels: Some(to_hash_map(&spec.labels)),
            cluster_volume_spec: None,
        };
        self.docker
            .create_volume(request)
            .await
            .map(|_| ())
            .map_err(|e| map_error(e, Subject::Volume(&spec.name)))
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        match self.docker.inspect_volume(name).await {
            Ok(_) => Ok(true),
            Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(false),
            Err(error) => Err(map_error(error, Subject::Volume(name))),
        }
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        let options = RemoveVolumeOptionsBuilder::new().force(false).build();
        match self.docker.remove_volume(name, Some(options)).await {
            Ok(())
            | Err(BollardError::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(error) => Err(map_error(error, Subject::Volume(name))),
        }
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        let _creating = self.network_creation.lock().await;
        if self.network_exists(&spec.name).await? {
            return Ok(());
        }
        let request = NetworkCreateRequest {
            name: spec.name.clone(),
            driver: Some("bridge".to_string()),
            ipam: Some(Ipam {
                driver: Some("default".to_string()),
                config: Some(vec![IpamConfig {
                    subnet: Some(spec.subnet.clone()),
                    gateway: Some(spec.gateway.clone()),
                    ..Default::default()
                }]),
                options: None,
            }),
            options: Some(to_hash_map(&spec.options)),
            labels: Some(to_hash_map(&spec.labels)),
            ..Default::default()
        };
        // Kept for one retry after removing a stale network with the same range.
        let retry = request.clone();
        match self.docker.create_network(request).await {
            Ok(created) => {
                tracing::info!(network = %spec.name, subnet = %spec.subnet, id = %created.id, "created network");
                Ok(())
            }
            Err(error) => {
                // Another agent on this engine may have created it meanwhile ("already
                // exists", or its range now overlapping ours): then it is there to use.
                if self.network_exists(&spec.name).await? {
                    return Ok(());
                }
                // A network Wharf made for another subnet with the same range (a previous
                // server's default VPC, after its data directory was removed) is left behind
                // once its tasks are gone; remove it if nothing uses it, then try once more.
                if self.remove_unused_networks_with_range(&spec.subnet).await? > 0 {
                    if let Ok(created) = self.docker.create_network(retry).await {
                        tracing::info!(network = %spec.name, subnet = %spec.subnet, id = %created.id, "created network after removing an unused one with its range");
                        return Ok(());
                    }
                }
                Err(map_error(error, Subject::Network))
            }
        }
    }

    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: bytes::Bytes,
        changes: &[String],
    ) -> Result<(), RuntimeError> {
        let (repository, tag) = super::split_image_reference(reference);
        let options = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(&repository)
            .tag(&tag)
            .changes(changes.to_vec())
            .build();
        let mut progress =
            self.docker
                .create_image(Some(options), Some(bollard::body_full(rootfs_tar)), None);
        while let Some(item) = progress.next().await {
            item.map_err(|e| map_error(e, Subject::Image(reference)))?;
        }
        Ok(())
    }

    fn network_enforcer(&self) -> Arc<dyn NetworkEnforcer> {
        self.enforcer.clone()
    }

    fn events(&self) -> EventStream {
        let filters: HashMap<String, Vec<String>> = HashMap::from([
            ("type".to_string(), vec!["container".to_string()]),
            (
                "event".to_string(),
                ["start", "die", "oom", "destroy", "health_status"]
                    .iter()
                    .map(|e| e.to_string())
                    .collect(),
            ),
        ]);
        let options = EventsOptionsBuilder::new().filters(&filters).build();
        // The events request is long-lived: no request timeout applies once the answer's
        // headers are in, which bollard's timeout covers.
        self.docker
            .events(Some(options))
            .filter_map(|item| async move {
                match item {
                    Ok(message) => parse_event(message).map(Ok),
                    Err(error) => Some(Err(RuntimeError::Stream {
                        message: error.to_string(),
                    })),
                }
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>, RuntimeError> {
        // One reading without the engine's one-second wait for a previous CPU sample: the
        // sampler derives rates from consecutive cumulative readings itself.
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(true)
            .build();
        let mut answers = self.docker.stats(id, Some(options));
        let Some(answer) = answers.next().await else {
            return Ok(None);
        };
        let stats = answer.map_err(|e| map_error(e, Subject::Container(id)))?;
        Ok(stats_reading(&stats, self.machine_memory().await))
    }

    async fn inspect_details(&self, id: &str) -> Result<ContainerDetails, RuntimeError> {
        let inspected = self
            .docker
            .inspect_container(id, None)
            .await
            .map_err(|e| map_error(e, Subject::Container(id)))?;
        Ok(container_details(id, inspected))
    }

    async fn stats_document(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        // Not one-shot: the engine waits for a second CPU reading so `precpu_stats` is filled
        // and readers can compute a CPU percentage from one document, as on ECS.
        let options = StatsOptionsBuilder::new()
            .stream(false)
            .one_shot(false)
            .build();
        let mut answers = self.docker.stats(id, Some(options));
        let Some(answer) = answers.next().await else {
            return Ok(None);
        };
        let stats = answer.map_err(|e| map_error(e, Subject::Container(id)))?;
        // A stopped container answers with empty memory statistics.
        if stats.memory_stats.as_ref().and_then(|m| m.usage).is_none() {
            return Ok(None);
        }
        serde_json::to_value(&stats)
            .map(Some)
            .map_err(|error| RuntimeError::Protocol {
                message: error.to_string(),
            })
    }

    async fn network_gateway(
        &self,
        network: &str,
    ) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        let inspected = self
            .docker
            .inspect_network(network, None)
            .await
            .map_err(|e| map_error(e, Subject::Engine))?;
        Ok(network_gateway(&inspected))
    }

    fn logs(&self, id: &str, since_seconds: i64) -> LogStream {
        // The API takes whole seconds; callers skip what they already have within that second.
        let since = i32::try_from(since_seconds.max(0)).unwrap_or(i32::MAX);
        let options = LogsOptionsBuilder::new()
            .follow(true)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let container = id.to_string();
        self.docker
            .logs(id, Some(options))
            .filter_map(move |item| {
                let container = container.clone();
                async move {
                    match item {
                        Ok(frame) => {
                            let entry = parse_log_frame(frame);
                            if entry.is_none() {
                                tracing::debug!(container_id = %container, "skipping a log frame without a timestamp");
                            }
                            entry.map(Ok)
                        }
                        Err(error) => Some(Err(map_error(error, Subject::Container(&container)))),
                    }
                }
            })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{
        HealthCheckSpec, MountSource, MountSpec, NetworkMode, PortBindingSpec, UlimitSpec,
    };

    #[test]
    fn create_body_maps_every_member() {
        let spec = ContainerSpec {
            name: "ecs-web-1-app-0123".into(),
            image: "wharf-test/busybox:latest".into(),
            entrypoint: Some(vec!["sh".into(), "-c".into()]),
            cmd: Some(vec!["httpd -f".into()]),
            env: vec!["A=1".into()],
            working_dir: Some("/www".into()),
            user: Some("nobody".into()),
            labels: BTreeMap::from([("k".into(), "v".into())]),
            cpu_shares: Some(256),
            memory_limit_bytes: Some(64 << 20),
            memory_reservation_bytes: Some(32 << 20),
            ulimits: vec![UlimitSpec {
                name: "nofile".into(),
                soft: 1024,
                hard: 2048,
            }],
            readonly_rootfs: true,
            privileged: false,
            init: true,
            network_mode: NetworkMode::Bridge,
            port_bindings: vec![PortBindingSpec {
                container_port: 80,
                protocol: Protocol::Tcp,
                host_port: 49200,
            }],
            mounts: vec![MountSpec {
                source: MountSource::Volume("v".into()),
                target: "/v".into(),
                read_only: true,
            }],
            health_check: Some(HealthCheckSpec {
                test: vec!["CMD-SHELL".into(), "true".into()],
                interval: Some(Duration::from_secs(5)),
                timeout: Some(Duration::from_secs(2)),
                retries: Some(3),
                start_period: None,
            }),
            stop_timeout: Some(Duration::from_secs(7)),
            extra_hosts: vec!["db:10.0.0.1".into()],
            dns_servers: vec!["10.0.0.2".into()],
            hostname: Some("app".into()),
            ..Default::default()
        };
        let body = create_body(&spec);
        let host = body.host_config.clone().expect("host config");
        assert_eq!(host.cpu_shares, Some(256));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.memory_reservation, Some(32 << 20));
        assert_eq!(host.init, Some(true));
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.network_mode.as_deref(), Some("bridge"));
        assert_eq!(host.binds, Some(vec!["v:/v:ro".to_string()]));
        assert_eq!(host.extra_hosts, Some(vec!["db:10.0.0.1".to_string()]));
        let bindings = host.port_bindings.expect("port bindings");
        assert_eq!(
            bindings["80/tcp"].as_ref().expect("binding")[0]
                .host_port
                .as_deref(),
            Some("49200")
        );
        assert_eq!(body.exposed_ports, Some(vec!["80/tcp".to_string()]));
        let check = body.healthcheck.expect("health check");
        assert_eq!(check.interval, Some(5_000_000_000));
        assert_eq!(check.retries, Some(3));
        assert_eq!(body.stop_timeout, Some(7));
        assert_eq!(body.hostname.as_deref(), Some("app"));
    }

    #[test]
    fn memory_in_use_leaves_out_inactive_file_pages_like_docker_stats() {
        use bollard::models::{
            ContainerCpuStats, ContainerCpuUsage, ContainerMemoryStats, ContainerStatsResponse,
        };
        let response = |stats: &[(&str, u64)], limit: u64| ContainerStatsResponse {
            cpu_stats: Some(ContainerCpuStats {
                cpu_usage: Some(ContainerCpuUsage {
                    total_usage: Some(5_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(100 << 20),
                limit: Some(limit),
                stats: Some(stats.iter().map(|(k, v)| (k.to_string(), *v)).collect()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let machine = 8 << 30;
        // cgroup v1: total_inactive_file.
        let v1 = stats_reading(
            &response(
                &[("total_inactive_file", 30 << 20), ("inactive_file", 1)],
                64 << 20,
            ),
            machine,
        )
        .expect("running");
        assert_eq!(
            v1,
            ContainerStats {
                cpu_total_nanos: 5_000_000,
                memory_bytes: 70 << 20,
                memory_limit_bytes: 64 << 20
            }
        );
        // cgroup v2: inactive_file; no limit shows the host memory.
        let v2 = stats_reading(&response(&[("inactive_file", 40 << 20)], machine), machine)
            .expect("running");
        assert_eq!((v2.memory_bytes, v2.memory_limit_bytes), (60 << 20, 0));
        // A counter above the usage is ignored.
        let odd =
            stats_reading(&response(&[("inactive_file", 200 << 20)], 0), machine).expect("running");
        assert_eq!(odd.memory_bytes, 100 << 20);
        // A stopped container answers with empty memory stats.
        let stopped = ContainerStatsResponse {
            memory_stats: Some(ContainerMemoryStats::default()),
            ..Default::default()
        };
        assert_eq!(stats_reading(&stopped, machine), None);
    }

    #[test]
    fn log_frames_carry_their_timestamp() {
        use bollard::container::LogOutput;
        let entry = parse_log_frame(LogOutput::StdErr {
            message: bytes::Bytes::from_static(b"2024-01-02T03:04:05.123456789Z hello world\n"),
        })
        .expect("parses");
        assert_eq!(entry.source, LogSource::Stderr);
        assert_eq!(entry.timestamp_nanos, 1_704_164_645_123_456_789);
        assert_eq!(&entry.message[..], b"hello world\n");
        assert!(parse_log_frame(LogOutput::StdOut {
            message: bytes::Bytes::from_static(b"no timestamp here\n"),
        })
        .is_none());
    }

    #[test]
    fn engine_times_parse_and_zero_means_never() {
        assert_eq!(parse_time(Some("0001-01-01T00:00:00Z")), None);
        assert_eq!(
            parse_time(Some("2024-01-02T03:04:05.5Z")),
            Some(1_704_164_645.5)
        );
        assert_eq!(parse_time(Some("garbage")), None);
    }

    #[test]
    fn a_network_gateway_falls_back_to_the_first_address_of_its_subnet() {
        use bollard::models::{Ipam, IpamConfig, NetworkInspect};
        let network = |configs: Vec<IpamConfig>| NetworkInspect {
            ipam: Some(Ipam {
                config: Some(configs),
                ..Default::default()
            }),
            ..Default::default()
        };
        let range = |subnet: &str, gateway: Option<&str>| IpamConfig {
            subnet: Some(subnet.into()),
            gateway: gateway.map(str::to_string),
            ..Default::default()
        };
        // The default bridge on a pre-existing docker0 names only its subnet.
        assert_eq!(
            network_gateway(&network(vec![range("172.17.0.0/16", None)])),
            Some("172.17.0.1".parse().expect("an address"))
        );
        assert_eq!(
            network_gateway(&network(vec![
                range("fd00::/64", Some("fd00::1")),
                range("10.213.0.0/24", Some("10.213.0.254")),
            ])),
            Some("10.213.0.254".parse().expect("an address"))
        );
        assert_eq!(network_gateway(&NetworkInspect::default()), None);
    }
}
