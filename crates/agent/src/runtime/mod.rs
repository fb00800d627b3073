//! The one seam between the agent and a container engine: the [`ContainerRuntime`] trait with
//! the engine-neutral types it speaks (container specs, inspected state, events, resource
//! usage, log entries), and the image pull behaviour that sits above it ([`ensure_image`]).
//!
//! Implementations: [`docker::DockerRuntime`] (the Docker Engine API through `bollard`) and
//! [`fake::FakeRuntime`] (in memory, driven by tests). Callers are handed an
//! `Arc<dyn ContainerRuntime>`; nothing here chooses an implementation by itself.
//!
//! This module does not know about ECS: task definitions are translated into [`ContainerSpec`]s
//! by the runner (`runner::spec`).
//!
//! For awsvpc tasks the engine also backs subnets with networks ([`NetworkSpec`]), imports the
//! locally built pause image ([`ContainerRuntime::import_image`]), and hands out the
//! [`NetworkEnforcer`] that reaches its containers' network namespaces.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::network::NetworkEnforcer;

use futures_util::stream::BoxStream;

pub mod details;
pub mod docker;
pub mod fake;

pub use details::{ContainerDetails, ContainerMount, ContainerNetwork, HealthDetail};

/// How a container attaches to the network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NetworkMode {
    /// Docker's default bridge, with published ports.
    #[default]
    Bridge,
    /// The host's network namespace: container ports are host ports.
    Host,
    /// A loopback interface only.
    None,
    /// Another container's network namespace (`container:<id>`): an awsvpc task's containers
    /// join its pause container's.
    Container(String),
    /// A user-defined network by name (an awsvpc task's pause container on its subnet's
    /// network; the address is in [`ContainerSpec::endpoint`]).
    Network(String),
}

impl NetworkMode {
    /// The value of Docker's `HostConfig.NetworkMode`.
    pub fn as_docker(&self) -> String {
        match self {
            NetworkMode::Bridge => "bridge".to_string(),
            NetworkMode::Host => "host".to_string(),
            NetworkMode::None => "none".to_string(),
            NetworkMode::Container(id) => format!("container:{id}"),
            NetworkMode::Network(name) => name.clone(),
        }
    }
}

/// A transport protocol of a published port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    /// Parses ECS's and Docker's spelling (`tcp`, `udp`, any case).
    pub fn parse(text: &str) -> Option<Protocol> {
        match text.to_ascii_lowercase().as_str() {
            "tcp" => Some(Protocol::Tcp),
            "udp" => Some(Protocol::Udp),
            _ => None,
        }
    }
}

/// A container port published on a host port (bridge mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortBindingSpec {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_port: u16,
}

/// What a mount is backed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountSource {
    /// A path on the host (`host.sourcePath`).
    HostPath(String),
    /// A named Docker volume.
    Volume(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountSpec {
    pub source: MountSource,
    pub target: String,
    pub read_only: bool,
}

impl MountSpec {
    /// Docker's `HostConfig.Binds` form: `source:target[:ro]`.
    pub fn as_bind(&self) -> String {
        let source = match &self.source {
            MountSource::HostPath(path) => path,
            MountSource::Volume(name) => name,
        };
        let mode = if self.read_only { ":ro" } else { "" };
        format!("{source}:{}{mode}", self.target)
    }
}

/// Mount every volume of another container (`volumesFrom`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumesFromSpec {
    /// The runtime id of the source container.
    pub container_id: String,
    pub read_only: bool,
}

impl VolumesFromSpec {
    /// Docker's `HostConfig.VolumesFrom` form: `id[:ro]`.
    pub fn as_docker(&self) -> String {
        if self.read_only {
            format!("{}:ro", self.container_id)
        } else {
            self.container_id.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UlimitSpec {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// A Docker health check. Durations left unset take the engine's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckSpec {
    /// `["CMD", …]`, `["CMD-SHELL", "…"]` or `["NONE"]`, as Docker takes it.
    pub test: Vec<String>,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    pub start_period: Option<Duration>,
}

/// A container's fixed place on a user-defined network.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EndpointSpec {
    pub network: String,
    pub ipv4_address: Option<String>,
    /// Honoured by engines speaking API 1.44 or later; older ones assign their own (the runner
    /// then sets it inside the namespace).
    pub mac_address: Option<String>,
}

/// A bridge network to create when missing (an awsvpc subnet on this host).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkSpec {
    pub name: String,
    /// The range, e.g. `10.213.0.0/24`.
    pub subnet: String,
    /// The host's address on it.
    pub gateway: String,
    pub labels: BTreeMap<String, String>,
    /// Driver options (`com.docker.network.bridge.*`).
    pub options: BTreeMap<String, String>,
}

/// Everything needed to create one container. Built by the runner from a container
/// definition; the runtime maps it member by member.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ContainerSpec {
    /// The container's name in the engine (unique per engine).
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub cpu_shares: Option<i64>,
    /// A hard CPU limit in billionths of a CPU (Fargate's task-level cpu).
    pub nano_cpus: Option<i64>,
    pub memory_limit_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    /// Memory plus swap, bytes (`linuxParameters.maxSwap`).
    pub memory_swap_bytes: Option<i64>,
    pub memory_swappiness: Option<i64>,
    pub ulimits: Vec<UlimitSpec>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    /// Run an init process as PID 1 (`initProcessEnabled`).
    pub init: bool,
    pub network_mode: NetworkMode,
    /// With [`NetworkMode::Network`]: the address to take on it.
    pub endpoint: Option<EndpointSpec>,
    /// Disable networking altogether (`disableNetworking`).
    pub network_disabled: bool,
    pub port_bindings: Vec<PortBindingSpec>,
    pub mounts: Vec<MountSpec>,
    pub volumes_from: Vec<VolumesFromSpec>,
    pub health_check: Option<HealthCheckSpec>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<Duration>,
    /// `hostname:ip` entries for /etc/hosts.
    pub extra_hosts: Vec<String>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    pub hostname: Option<String>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub shm_size_bytes: Option<i64>,
    /// Mount path → mount options (`size=…m,…`).
    pub tmpfs: BTreeMap<String, String>,
    pub sysctls: BTreeMap<String, String>,
    pub security_opt: Vec<String>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Log driver and its options; `None` leaves the engine's default.
    pub log_driver: Option<(String, BTreeMap<String, String>)>,
}

/// A container's engine-side state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerStatus {
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl ContainerStatus {
    /// Whether the container's process has stopped (and will not run again on its own: the
    /// agent never sets a restart policy).
    pub fn is_stopped(self) -> bool {
        matches!(
            self,
            ContainerStatus::Exited | ContainerStatus::Dead | ContainerStatus::Removing
        )
    }

    /// Whether the process is (or was) started and has not stopped.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Restarting
        )
    }
}

/// The engine's view of a container's health check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Starting,
    Healthy,
    Unhealthy,
}

/// A published port as the engine actually bound it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignedPort {
    pub container_port: u16,
    pub protocol: Protocol,
    pub host_ip: String,
    pub host_port: u16,
}

/// A container's address on one network, as the engine assigned it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NetworkAttachment {
    pub ipv4_address: Option<String>,
    pub mac_address: Option<String>,
}

/// What inspecting a container tells.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerInfo {
    pub id: String,
    /// The name without Docker's leading `/`.
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// The engine's error for this container (for example why it could not start).
    pub error: Option<String>,
    /// `None` when the container has no health check.
    pub health: Option<HealthState>,
    /// Seconds since the epoch.
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub ports: Vec<AssignedPort>,
    /// The image the container runs, as the engine identifies it (`sha256:…`).
    pub image_id: Option<String>,
    /// The host PID of its process while it runs (its namespaces are reached through it).
    pub pid: Option<i64>,
    /// Network name → its address there.
    pub networks: BTreeMap<String, NetworkAttachment>,
}

/// One entry of a container listing.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerSummary {
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub running: bool,
}

/// A named volume to create.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSpec {
    pub name: String,
    pub driver: Option<String>,
    pub driver_opts: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineVersion {
    /// The engine's version, e.g. `20.10.24`.
    pub version: String,
    /// The highest API version it speaks, e.g. `1.41`.
    pub api_version: String,
}

/// What happened to a container. Events only wake the owner of a task; the owner then
/// inspects, so a lost or duplicated event costs latency, never correctness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeEventKind {
    Start,
    Die,
    HealthStatus,
    Oom,
    Destroy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEvent {
    pub container_id: String,
    pub kind: RuntimeEventKind,
    /// The container's labels, so events can be routed without an inspect.
    pub labels: BTreeMap<String, String>,
}

pub type EventStream = BoxStream<'static, Result<RuntimeEvent, RuntimeError>>;

/// One resource-usage reading of a running container.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContainerStats {
    /// CPU time used since the container started, nanoseconds.
    pub cpu_total_nanos: u64,
    /// Memory in use: usage minus inactive file pages (cgroup v2 `inactive_file`, v1
    /// `total_inactive_file`), as `docker stats` shows it.
    pub memory_bytes: u64,
    /// The memory limit, 0 when the container has none.
    pub memory_limit_bytes: u64,
}

/// Which output stream a log entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogSource {
    Stdout,
    Stderr,
}

/// One entry of a container's log as the engine stored it: a line with its trailing newline,
/// or a part of a longer line (the engine splits long lines; parts lack the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    /// When the engine received it, nanoseconds since the epoch.
    pub timestamp_nanos: i64,
    pub source: LogSource,
    pub message: bytes::Bytes,
}

pub type LogStream = BoxStream<'static, Result<LogEntry, RuntimeError>>;

/// Errors from a container engine. Messages are the engine's own, so they can go into task and
/// container `reason`s unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot reach the container engine: {message}")]
    Unavailable { message: String },
    #[error("no such container: {id}")]
    NoSuchContainer { id: String },
    #[error("no such image: {image}")]
    NoSuchImage { image: String },
    #[error("no such volume: {name}")]
    NoSuchVolume { name: String },
    /// A name already in use (HTTP 409).
    #[error("{message}")]
    Conflict { message: String },
    /// Any other error response of the engine, with its status and message.
    #[error("{message}")]
    Engine { status: u16, message: String },
    #[error("the container engine did not answer within {seconds} s")]
    Timeout { seconds: u64 },
    /// A stream of the engine broke off.
    #[error("the container engine's stream failed: {message}")]
    Stream { message: String },
    /// An answer the engine gave that cannot be understood.
    #[error("unexpected answer from the container engine: {message}")]
    Protocol { message: String },
}

/// The seam to the container engine. Object safe: the agent holds an
/// `Arc<dyn ContainerRuntime>`.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// The engine's version, for registration (`versionInfo.dockerVersion`).
    async fn version(&self) -> Result<EngineVersion, RuntimeError>;

    /// Whether the image is present locally.
    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError>;

    /// Pulls the image from its registry. The error carries the engine's message.
    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError>;

    /// Creates (does not start) a container; returns its id.
    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError>;

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;

    /// Sends the stop signal (SIGTERM unless the container says otherwise), waits up to
    /// `timeout`, then SIGKILL. Stopping a stopped container succeeds.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError>;

    /// Removes a stopped container and its anonymous volumes. Removing a missing container
    /// succeeds.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError>;

    /// Every container (running or not) carrying all of these labels.
    async fn list_containers(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError>;

    /// Creates a named volume. Creating one that exists succeeds (the engine's semantics).
    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError>;

    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError>;

    /// Removes a named volume. Removing a missing volume succeeds.
    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError>;

    /// Creates the network unless one of that name exists (which is then used as it is, even
    /// if created by another agent or by hand). Safe to call concurrently.
    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError>;

    /// Imports a root file system (an uncompressed tar) as the image `reference`, applying
    /// Dockerfile `changes` such as `CMD ["/pause"]` (`docker import`).
    async fn import_image(
        &self,
        reference: &str,
        rootfs_tar: bytes::Bytes,
        changes: &[String],
    ) -> Result<(), RuntimeError>;

    /// What enforces security groups inside this engine's containers' network namespaces
    /// (iptables through nsenter for Docker on this host; a recorder for the fake).
    fn network_enforcer(&self) -> Arc<dyn NetworkEnforcer>;

    /// Container events (start, die, health status, OOM, destroy) from now on. The stream ends
    /// or fails when the engine goes away; callers resubscribe.
    fn events(&self) -> EventStream;

    /// One resource-usage reading, taken at once (no averaging wait). `None` when the
    /// container is not running.
    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>, RuntimeError>;

    /// Everything an inspect tells about a container, for the task metadata endpoint.
    async fn inspect_details(&self, id: &str) -> Result<ContainerDetails, RuntimeError>;

    /// The container's statistics as the engine's own JSON document (Docker's stats answer
    /// with `stream=false`: CPU, memory, block I/O, networks, with the previous CPU reading).
    /// `None` when the container is not running.
    async fn stats_document(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError>;

    /// The gateway address of a network (the host's side of it), `None` when the engine
    /// reports none. A missing network is [`RuntimeError::Engine`] with status 404.
    async fn network_gateway(
        &self,
        network: &str,
    ) -> Result<Option<std::net::IpAddr>, RuntimeError>;

    /// The container's stdout and stderr entries logged at or after `since_seconds` (0: from
    /// the start), then, while it runs, new entries as they come. The stream ends once the
    /// container is not running and every entry was delivered, or fails when the engine goes
    /// away; callers resubscribe. Only the engine's local drivers (`json-file`, `local`) can be
    /// read back.
    fn logs(&self, id: &str, since_seconds: i64) -> LogStream;
}

/// ECS's image pull behaviours (`ECS_IMAGE_PULL_BEHAVIOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImagePullBehavior {
    /// Pull; if the pull fails, use the cached image when there is one.
    #[default]
    Default,
    /// Pull; a failed pull fails the task even when the image is cached.
    Always,
    /// Use the cached image when there is one; pull only when it is missing.
    PreferCached,
}

/// Where the image a container runs came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    Pulled,
    /// The cached image; `pull_error` says why a pull that was tried failed.
    Cached {
        pull_error: Option<String>,
    },
}

/// Why an image could not be made available.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PullError {
    /// ECS's name for it, so the reason reads as it does on AWS.
    #[error("CannotPullContainerError: {message}")]
    CannotPull { image: String, message: String },
}

/// Makes `image` available locally following `behavior`.
pub async fn ensure_image(
    runtime: &dyn ContainerRuntime,
    image: &str,
    behavior: ImagePullBehavior,
) -> Result<ImageSource, PullError> {
    let cannot_pull = |error: RuntimeError| PullError::CannotPull {
        image: image.to_string(),
        message: error.to_string(),
    };
    if behavior == ImagePullBehavior::PreferCached
        && runtime.image_present(image).await.map_err(cannot_pull)?
    {
        return Ok(ImageSource::Cached { pull_error: None });
    }
    match runtime.pull_image(image).await {
        Ok(()) => Ok(ImageSource::Pulled),
        Err(error) if behavior == ImagePullBehavior::Default => {
            // A registry that cannot be reached must not stop tasks whose image is already
            // here: that is ECS's default behaviour, and the only way images built locally run.
            match runtime.image_present(image).await {
                Ok(true) => {
                    tracing::info!(image, error = %error, "pull failed, using the cached image");
                    Ok(ImageSource::Cached {
                        pull_error: Some(error.to_string()),
                    })
                }
                _ => Err(cannot_pull(error)),
            }
        }
        Err(error) => Err(cannot_pull(error)),
    }
}

/// Splits an image reference into the repository and the tag or digest to pull, defaulting the
/// tag to `latest` (a pull without a tag would fetch every tag of the repository).
pub fn split_image_reference(image: &str) -> (String, String) {
    if let Some((repository, digest)) = image.split_once('@') {
        return (repository.to_string(), digest.to_string());
    }
    // A colon after the last slash is a tag; one before it belongs to a registry host:port.
    let last_component_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_component_start..].rfind(':') {
        Some(colon) => {
            let at = last_component_start + colon;
            (image[..at].to_string(), image[at + 1..].to_string())
        }
        None => (image.to_string(), "latest".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::fake::FakeRuntime;

    #[test]
    fn image_references_split_into_repository_and_tag() {
        let cases = [
            ("busybox", ("busybox", "latest")),
            ("busybox:1.36", ("busybox", "1.36")),
            (
                "localhost:5000/team/app",
                ("localhost:5000/team/app", "latest"),
            ),
            (
                "localhost:5000/team/app:v2",
                ("localhost:5000/team/app", "v2"),
            ),
            ("app@sha256:abcd", ("app", "sha256:abcd")),
        ];
        for (image, (repository, tag)) in cases {
            assert_eq!(
                split_image_reference(image),
                (repository.to_string(), tag.to_string()),
                "{image}"
            );
        }
    }

    #[test]
    fn binds_and_volumes_from_use_docker_forms() {
        let bind = MountSpec {
            source: MountSource::HostPath("/srv/data".into()),
            target: "/data".into(),
            read_only: true,
        };
        assert_eq!(bind.as_bind(), "/srv/data:/data:ro");
        let volume = MountSpec {
            source: MountSource::Volume("cache".into()),
            target: "/cache".into(),
            read_only: false,
        };
        assert_eq!(volume.as_bind(), "cache:/cache");
        let from = VolumesFromSpec {
            container_id: "abc".into(),
            read_only: true,
        };
        assert_eq!(from.as_docker(), "abc:ro");
        assert_eq!(
            NetworkMode::Container("abc".into()).as_docker(),
            "container:abc"
        );
    }

    #[tokio::test]
    async fn default_behavior_falls_back_to_the_cached_image() {
        let fake = FakeRuntime::new();
        fake.add_image("local/app:latest");
        fake.fail_pull("local/app:latest", "registry unreachable");
        let source = ensure_image(&fake, "local/app:latest", ImagePullBehavior::Default)
            .await
            .expect("cached image is used");
        assert_eq!(
            source,
            ImageSource::Cached {
                pull_error: Some("registry unreachable".into())
            }
        );
        let error = ensure_image(&fake, "local/app:latest", ImagePullBehavior::Always)
            .await
            .expect_err("always insists on the pull");
        assert_eq!(
            error.to_string(),
            "CannotPullContainerError: registry unreachable"
        );
    }

    #[tokio::test]
    async fn missing_image_that_cannot_be_pulled_is_an_error_with_the_engine_message() {
        let fake = FakeRuntime::new();
        fake.fail_pull(
            "nope/missing:1",
            "pull access denied for nope/missing, repository does not exist",
        );
        let error = ensure_image(&fake, "nope/missing:1", ImagePullBehavior::Default)
            .await
            .expect_err("nothing to fall back to");
        assert!(error
            .to_string()
            .starts_with("CannotPullContainerError: pull access denied"));
        // Prefer-cached does not pull what is present.
        fake.add_image("here:1");
        fake.fail_pull("here:1", "should not be pulled");
        assert_eq!(
            ensure_image(&fake, "here:1", ImagePullBehavior::PreferCached).await,
            Ok(ImageSource::Cached { pull_error: None })
        );
    }
}
