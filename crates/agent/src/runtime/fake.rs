//! [`FakeRuntime`]: an in-memory [`ContainerRuntime`] for tests and simulations. Deterministic
//! (ids count up, nothing runs on its own) and driven from the test: make a container exit with
//! a code, turn its health check healthy or unhealthy, kill it for memory, fail a pull, or give
//! containers a behaviour (ignore SIGTERM, exit at once, fail to create or start) by their ECS
//! container name before the runner creates them.
//!
//! Tests also script what the stats and logs calls answer: [`FakeRuntime::set_stats`] for a
//! container's resource usage, [`FakeRuntime::log`] to append a log entry (followers see it at
//! once, as with Docker's `follow`).
//!
//! awsvpc: networks are recorded ([`FakeRuntime::networks`]), imports make images present
//! ([`FakeRuntime::imports`]), running containers have a made-up PID, and the enforcer is a
//! [`FakeEnforcer`] ([`FakeRuntime::enforcer`]) that records the rulesets loaded.
//!
//! Time passes only inside `stop_container` for a container that ignores SIGTERM (a tokio
//! sleep of the stop timeout), so tests on a paused tokio clock run instantly.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{broadcast, watch};

use super::details::{ContainerDetails, ContainerMount, ContainerNetwork, HealthDetail};
use super::{
    AssignedPort, ContainerInfo, ContainerRuntime, ContainerSpec, ContainerStats, ContainerStatus,
    ContainerSummary, EngineVersion, EventStream, HealthState, LogEntry, LogSource, LogStream,
    RuntimeError, RuntimeEvent, RuntimeEventKind, VolumeSpec,
};
use super::{NetworkAttachment, NetworkMode, NetworkSpec};
use crate::labels;
use crate::network::{FakeEnforcer, NetworkEnforcer};

/// How a fake container behaves, keyed by its ECS container name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FakeBehavior {
    /// SIGTERM is ignored: a stop takes the whole timeout and ends in SIGKILL (exit 137).
    pub ignore_sigterm: bool,
    /// The process exits with this code as soon as it starts.
    pub exit_on_start: Option<i64>,
    /// The health status right after start (otherwise `Starting` when it has a health check).
    pub health_on_start: Option<HealthState>,
    /// Creating the container fails with this engine message.
    pub create_error: Option<String>,
    /// Starting the container fails with this engine message.
    pub start_error: Option<String>,
}

/// A container as the fake engine holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeContainer {
    pub id: String,
    pub spec: ContainerSpec,
    pub status: ContainerStatus,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub health: Option<HealthState>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    /// How often it was started: re-adoption tests check it stays 1.
    pub start_count: u32,
    /// The timeouts of every stop request it received.
    pub stop_requests: Vec<Duration>,
    pub killed: bool,
    /// What the stats call answers while it runs (zeros unless set).
    pub stats: ContainerStats,
    /// Every entry logged, in order.
    pub logs: Vec<LogEntry>,
    /// When it was created, on the fake wall clock.
    pub created_at: f64,
}

#[derive(Debug, Default)]
struct FakeState {
    images: BTreeSet<String>,
    pull_failures: BTreeMap<String, String>,
    pulls: Vec<String>,
    containers: BTreeMap<String, FakeContainer>,
    removed: Vec<String>,
    volumes: BTreeMap<String, VolumeSpec>,
    behaviors: BTreeMap<String, FakeBehavior>,
    next_id: u64,
    /// A fake wall clock for started/finished times, in seconds; bumps on every change.
    now: f64,
    /// The timestamp of the latest log entry, nanoseconds.
    log_clock: i64,
    stats_calls: u64,
    networks: BTreeMap<String, NetworkSpec>,
    /// Images imported, in order.
    imports: Vec<String>,
    /// Network name → gateway, for [`ContainerRuntime::network_gateway`].
    gateways: BTreeMap<String, std::net::IpAddr>,
}

/// The in-memory engine. Cheap to clone; clones share state.
#[derive(Debug, Clone)]
pub struct FakeRuntime {
    state: Arc<Mutex<FakeState>>,
    events: broadcast::Sender<RuntimeEvent>,
    /// Bumped on every log entry and container change: wakes log followers.
    changes: watch::Sender<u64>,
    enforcer: FakeEnforcer,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    pub fn new() -> Self {
        let (events, _) = broadcast::channel(1024);
        Self {
            state: Arc::new(Mutex::new(FakeState {
                now: 1_700_000_000.0,
                log_clock: 1_700_000_000_000_000_000,
                ..Default::default()
            })),
            events,
            changes: watch::channel(0).0,
            enforcer: FakeEnforcer::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A test that panicked while holding the lock already failed; keep the state usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn changed(&self) {
        self.changes.send_modify(|version| *version += 1);
    }

    fn emit(&self, container: &FakeContainer, kind: RuntimeEventKind) {
        self.changed();
        // No subscriber is fine: events only wake owners.
        let _ = self.events.send(RuntimeEvent {
            container_id: container.id.clone(),
            kind,
            labels: container.spec.labels.clone(),
        });
    }

    /// The enforcer this engine's containers' namespaces are changed through.
    pub fn enforcer(&self) -> FakeEnforcer {
        self.enforcer.clone()
    }

    /// Every network created, by name.
    pub fn networks(&self) -> Vec<NetworkSpec> {
        self.lock().networks.values().cloned().collect()
    }

    /// Every image imported, in order.
    pub fn imports(&self) -> Vec<String> {
        self.lock().imports.clone()
    }

    /// The made-up PID of a running container (what inspect answers).
    pub fn pid(&self, id: &str) -> Option<i64> {
        let state = self.lock();
        let container = state.containers.get(id)?;
        fake_pid(container)
    }

    /// Makes an image present locally.
    pub fn add_image(&self, image: &str) {
        self.lock().images.insert(image.to_string());
    }

    /// Makes pulls of `image` fail with this engine message.
    pub fn fail_pull(&self, image: &str, message: &str) {
        self.lock()
            .pull_failures
            .insert(image.to_string(), message.to_string());
    }

    /// Every image pull attempted, in order.
    pub fn pulls(&self) -> Vec<String> {
        self.lock().pulls.clone()
    }

    /// Gives containers with this ECS container name a behaviour (applies to later creates and
    /// starts).
    pub fn behave(&self, container_name: &str, behavior: FakeBehavior) {
        self.lock()
            .behaviors
            .insert(container_name.to_string(), behavior);
    }

    /// The id of the container of `task_arn` named `container_name`, if it exists.
    pub fn find(&self, task_arn: &str, container_name: &str) -> Option<String> {
        self.lock()
            .containers
            .values()
            .find(|c| {
                c.spec.labels.get(labels::TASK_ARN).map(String::as_str) == Some(task_arn)
                    && c.spec
                        .labels
                        .get(labels::CONTAINER_NAME)
                        .map(String::as_str)
                        == Some(container_name)
            })
            .map(|c| c.id.clone())
    }

    pub fn container(&self, id: &str) -> Option<FakeContainer> {
        self.lock().containers.get(id).cloned()
    }

    /// Every container that exists (not removed).
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.values().cloned().collect()
    }

    /// Ids of removed containers, in order.
    pub fn removed(&self) -> Vec<String> {
        self.lock().removed.clone()
    }

    pub fn volumes(&self) -> Vec<String> {
        self.lock().volumes.keys().cloned().collect()
    }

    /// The process of a running container exits with `code`.
    pub fn exit(&self, id: &str, code: i64) {
        self.finish(id, code, false);
    }

    /// The kernel kills a running container for exceeding its memory limit.
    pub fn oom_kill(&self, id: &str) {
        self.finish(id, 137, true);
    }

    fn finish(&self, id: &str, code: i64, oom: bool) {
        let snapshot = {
            let mut state = self.lock();
            state.now += 1.0;
            let now = state.now;
            let Some(container) = state.containers.get_mut(id) else {
                return;
            };
            if !container.status.is_running() {
                return;
            }
            container.status = ContainerStatus::Exited;
            container.exit_code = Some(code);
            container.oom_killed = oom;
            container.finished_at = Some(now);
            container.clone()
        };
        if oom {
            self.emit(&snapshot, RuntimeEventKind::Oom);
        }
        self.emit(&snapshot, RuntimeEventKind::Die);
    }

    /// What the stats call answers for the container while it runs.
    pub fn set_stats(&self, id: &str, stats: ContainerStats) {
        if let Some(container) = self.lock().containers.get_mut(id) {
            container.stats = stats;
        }
    }

    /// The gateway [`ContainerRuntime::network_gateway`] answers for `network`. Without one,
    /// `bridge` answers 127.0.0.1 (so metadata tests on the fake bind loopback only) and other
    /// networks are missing.
    pub fn set_network_gateway(&self, network: &str, gateway: std::net::IpAddr) {
        self.lock().gateways.insert(network.to_string(), gateway);
    }

    /// How many stats calls were answered.
    pub fn stats_calls(&self) -> u64 {
        self.lock().stats_calls
    }

    /// Appends a log entry stamped 1 µs after the previous one. `message` is taken as the
    /// engine stores it: a line ends with `\n`, a part of a longer line does not.
    pub fn log(&self, id: &str, source: LogSource, message: &str) {
        let timestamp = {
            let mut state = self.lock();
            state.log_clock += 1_000;
            state.log_clock
        };
        self.log_at(id, timestamp, source, message);
    }

    /// Appends a log entry with this timestamp (nanoseconds since the epoch).
    pub fn log_at(&self, id: &str, timestamp_nanos: i64, source: LogSource, message: &str) {
        {
            let mut state = self.lock();
            state.log_clock = state.log_clock.max(timestamp_nanos);
            let Some(container) = state.containers.get_mut(id) else {
                return;
            };
            container.logs.push(LogEntry {
                timestamp_nanos,
                source,
                message: bytes::Bytes::copy_from_slice(message.as_bytes()),
            });
        }
        self.changed();
    }

    /// Sets the health check's status of a running container.
    pub fn set_health(&self, id: &str, health: HealthState) {
        let snapshot = {
            let mut state = self.lock();
            let Some(container) = state.containers.get_mut(id) else {
                return;
            };
            container.health = Some(health);
            container.clone()
        };
        self.emit(&snapshot, RuntimeEventKind::HealthStatus);
    }

    fn behavior_of(state: &FakeState, spec: &ContainerSpec) -> FakeBehavior {
        spec.labels
            .get(labels::CONTAINER_NAME)
            .and_then(|name| state.behaviors.get(name))
            .cloned()
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn version(&self) -> Result<EngineVersion, RuntimeError> {
        Ok(EngineVersion {
            version: "fake".to_string(),
            api_version: "1.41".to_string(),
        })
    }

    async fn image_present(&self, image: &str) -> Result<bool, RuntimeError> {
        Ok(self.lock().images.contains(image))
    }

    async fn pull_image(&self, image: &str) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.pulls.push(image.to_string());
        if let Some(message) = state.pull_failures.get(image) {
            return Err(RuntimeError::Engine {
                status: 500,
                message: message.clone(),
            });
        }
        state.images.insert(image.to_string());
        Ok(())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> Result<String, RuntimeError> {
        let mut state = self.lock();
        if let Some(message) = Self::behavior_of(&state, spec).create_error {
            return Err(RuntimeError::Engine {
                status: 400,
                message,
            });
        }
        if !state.images.contains(&spec.image) {
            return Err(RuntimeError::NoSuchImage {
                image: spec.image.clone(),
            });
        }
        if state.containers.values().any(|c| c.spec.name == spec.name) {
            return Err(RuntimeError::Conflict {
                message: format!(
                    "Conflict. The container name \"/{}\" is already in use",
                    spec.name
                ),
            });
        }
        state.next_id += 1;
        let id = format!("fake{:060}", state.next_id);
        let created_at = state.now;
        state.containers.insert(
            id.clone(),
            FakeContainer {
                id: id.clone(),
                spec: spec.clone(),
                status: ContainerStatus::Created,
                exit_code: None,
                oom_killed: false,
                health: None,
                started_at: None,
                finished_at: None,
                start_count: 0,
                stop_requests: Vec::new(),
                killed: false,
                stats: ContainerStats::default(),
                logs: Vec::new(),
                created_at,
            },
        );
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let (snapshot, exit_code) = {
            let mut state = self.lock();
            state.now += 1.0;
            let now = state.now;
            let behavior = match state.containers.get(id) {
                Some(container) => Self::behavior_of(&state, &container.spec),
                None => return Err(RuntimeError::NoSuchContainer { id: id.to_string() }),
            };
            if let Some(message) = behavior.start_error {
                return Err(RuntimeError::Engine {
                    status: 500,
                    message,
                });
            }
            let Some(container) = state.containers.get_mut(id) else {
                return Err(RuntimeError::NoSuchContainer { id: id.to_string() });
            };
            if container.status.is_running() {
                return Ok(());
            }
            container.status = ContainerStatus::Running;
            container.start_count += 1;
            container.started_at = Some(now);
            container.exit_code = None;
            container.health = container
                .spec
                .health_check
                .as_ref()
                .map(|_| behavior.health_on_start.unwrap_or(HealthState::Starting));
            (container.clone(), behavior.exit_on_start)
        };
        self.emit(&snapshot, RuntimeEventKind::Start);
        if let Some(code) = exit_code {
            self.exit(id, code);
        }
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let ignores_sigterm = {
            let mut state = self.lock();
            let behavior = match state.containers.get(id) {
                Some(container) => Self::behavior_of(&state, &container.spec),
                None => return Err(RuntimeError::NoSuchContainer { id: id.to_string() }),
            };
            let Some(container) = state.containers.get_mut(id) else {
                return Err(RuntimeError::NoSuchContainer { id: id.to_string() });
            };
            container.stop_requests.push(timeout);
            if !container.status.is_running() {
                return Ok(());
            }
            behavior.ignore_sigterm
        };
        if ignores_sigterm {
            tokio::time::sleep(timeout).await;
            let was_running = self
                .container(id)
                .is_some_and(|container| container.status.is_running());
            if was_running {
                if let Some(container) = self.lock().containers.get_mut(id) {
                    container.killed = true;
                }
                self.exit(id, 137);
            }
        } else {
            // 128 + SIGTERM.
            self.exit(id, 143);
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let removed = {
            let mut state = self.lock();
            let removed = state.containers.remove(id);
            if removed.is_some() {
                state.removed.push(id.to_string());
            }
            removed
        };
        if let Some(container) = removed {
            self.emit(&container, RuntimeEventKind::Destroy);
        }
        Ok(())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let state = self.lock();
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NoSuchContainer { id: id.to_string() })?;
        Ok(ContainerInfo {
            id: container.id.clone(),
            name: container.spec.name.clone(),
            labels: container.spec.labels.clone(),
            status: container.status,
            exit_code: container.exit_code,
            oom_killed: container.oom_killed,
            error: None,
            health: container.health,
            started_at: container.started_at,
            finished_at: container.finished_at,
            // Published ports exist only while the container runs, as with Docker.
            ports: if container.status.is_running() {
                container
                    .spec
                    .port_bindings
                    .iter()
                    .map(|binding| AssignedPort {
                        container_port: binding.container_port,
                        protocol: binding.protocol,
                        host_ip: "0.0.0.0".to_string(),
                        host_port: binding.host_port,
                    })
                    .collect()
            } else {
                Vec::new()
            },
            image_id: Some(format!("sha256:fake-{}", container.spec.image)),
            pid: fake_pid(container),
            networks: fake_networks(container),
        })
    }

    async fn list_containers(
        &self,
        wanted: &[(String, String)],
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| {
                wanted
                    .iter()
                    .all(|(k, v)| c.spec.labels.get(k).map(String::as_str) == Some(v.as_str()))
            })
            .map(|c| ContainerSummary {
                id: c.id.clone(),
                name: c.spec.name.clone(),
                labels: c.spec.labels.clone(),
                running: c.status.is_running(),
            })
            .collect())
    }

    async fn create_volume(&self, spec: &VolumeSpec) -> Result<(), RuntimeError> {
        self.lock()
            .volumes
            .entry(spec.name.clone())
            .or_insert_with(|| spec.clone());
        Ok(())
    }

    async fn volume_exists(&self, name: &str) -> Result<bool, RuntimeError> {
        Ok(self.lock().volumes.contains_key(name))
    }

    async fn remove_volume(&self, name: &str) -> Result<(), RuntimeError> {
        self.lock().volumes.remove(name);
        Ok(())
    }

    async fn ensure_network(&self, spec: &NetworkSpec) -> Result<(), RuntimeError> {
        self.lock()
            .networks
            .entry(spec.name.clone())
            .or_insert_with(|| spec.clone());
        Ok(())
    }

    async fn import_image(
        &self,
        reference: &str,
        _rootfs_tar: bytes::Bytes,
        _changes: &[String],
    ) -> Result<(), RuntimeError> {
        let mut state = self.lock();
        state.imports.push(reference.to_string());
        state.images.insert(reference.to_string());
        Ok(())
    }

    fn network_enforcer(&self) -> std::sync::Arc<dyn NetworkEnforcer> {
        std::sync::Arc::new(self.enforcer.clone())
    }

    fn events(&self) -> EventStream {
        let receiver = self.events.subscribe();
        futures_util::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(event) => Some((Ok(event), receiver)),
                // A lagging subscriber must resync: report it so the caller wakes everyone.
                Err(broadcast::error::RecvError::Lagged(missed)) => Some((
                    Err(RuntimeError::Stream {
                        message: format!("missed {missed} events"),
                    }),
                    receiver,
                )),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
        .boxed()
    }

    async fn stats(&self, id: &str) -> Result<Option<ContainerStats>, RuntimeError> {
        let mut state = self.lock();
        state.stats_calls += 1;
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NoSuchContainer { id: id.to_string() })?;
        Ok(container.status.is_running().then_some(container.stats))
    }

    async fn inspect_details(&self, id: &str) -> Result<ContainerDetails, RuntimeError> {
        let state = self.lock();
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NoSuchContainer { id: id.to_string() })?;
        Ok(fake_details(container))
    }

    async fn stats_document(&self, id: &str) -> Result<Option<serde_json::Value>, RuntimeError> {
        let state = self.lock();
        let container = state
            .containers
            .get(id)
            .ok_or_else(|| RuntimeError::NoSuchContainer { id: id.to_string() })?;
        Ok(container
            .status
            .is_running()
            .then(|| fake_stats_document(container, state.now)))
    }

    async fn network_gateway(
        &self,
        network: &str,
    ) -> Result<Option<std::net::IpAddr>, RuntimeError> {
        let state = self.lock();
        match state.gateways.get(network) {
            Some(gateway) => Ok(Some(*gateway)),
            None if network == "bridge" => {
                Ok(Some(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)))
            }
            None => Err(RuntimeError::Engine {
                status: 404,
                message: format!("network {network} not found"),
            }),
        }
    }

    fn logs(&self, id: &str, since_seconds: i64) -> LogStream {
        let follower = Follower {
            runtime: self.clone(),
            id: id.to_string(),
            since_nanos: since_seconds.saturating_mul(1_000_000_000),
            next: 0,
            changes: self.changes.subscribe(),
            done: false,
        };
        futures_util::stream::unfold(follower, |mut follower| async move {
            if follower.done {
                return None;
            }
            loop {
                // Mark the current version seen before looking, so no change is missed.
                follower.changes.borrow_and_update();
                let step = {
                    let state = follower.runtime.lock();
                    match state.containers.get(&follower.id) {
                        None => Err(RuntimeError::NoSuchContainer {
                            id: follower.id.clone(),
                        }),
                        Some(container) => match container.logs.get(follower.next) {
                            Some(entry) => Ok(Some(entry.clone())),
                            None if container.status.is_running() => Ok(None),
                            None => return None,
                        },
                    }
                };
                match step {
                    Err(error) => {
                        follower.done = true;
                        return Some((Err(error), follower));
                    }
                    Ok(Some(entry)) => {
                        follower.next += 1;
                        if entry.timestamp_nanos >= follower.since_nanos {
                            return Some((Ok(entry), follower));
                        }
                    }
                    Ok(None) => {
                        if follower.changes.changed().await.is_err() {
                            return None;
                        }
                    }
                }
            }
        })
        .boxed()
    }
}

fn fake_time(seconds: f64) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
}

/// What the fake engine's inspect tells: bridge containers get an address derived from their
/// id, host containers none.
fn fake_details(container: &FakeContainer) -> ContainerDetails {
    let spec = &container.spec;
    let number: u64 = container.id.trim_start_matches("fake").parse().unwrap_or(0);
    let network = match &spec.network_mode {
        super::NetworkMode::Bridge => Some(ContainerNetwork {
            name: "bridge".to_string(),
            ipv4_address: container
                .status
                .is_running()
                .then(|| format!("172.17.{}.{}", number / 250, number % 250 + 2)),
        }),
        super::NetworkMode::Host => Some(ContainerNetwork {
            name: "host".to_string(),
            ipv4_address: None,
        }),
        _ => None,
    };
    ContainerDetails {
        id: container.id.clone(),
        name: spec.name.clone(),
        image: spec.image.clone(),
        image_id: Some(format!("sha256:fake-{}", spec.image)),
        labels: spec.labels.clone(),
        created_at: fake_time(container.created_at),
        started_at: container.started_at.and_then(fake_time),
        finished_at: container.finished_at.and_then(fake_time),
        running: container.status.is_running(),
        networks: network.into_iter().collect(),
        mounts: spec
            .mounts
            .iter()
            .map(|mount| match &mount.source {
                super::MountSource::HostPath(path) => ContainerMount {
                    name: None,
                    source: Some(path.clone()),
                    destination: mount.target.clone(),
                },
                super::MountSource::Volume(name) => ContainerMount {
                    name: Some(name.clone()),
                    source: Some(format!("/var/lib/docker/volumes/{name}/_data")),
                    destination: mount.target.clone(),
                },
            })
            .collect(),
        restart_count: 0,
        health: container.health.map(|status| HealthDetail {
            status,
            since: container.started_at.and_then(fake_time),
            exit_code: Some(i64::from(status == HealthState::Unhealthy)),
            output: None,
        }),
    }
}

/// A Docker-shaped stats document (the members readers use) from the scripted reading.
fn fake_stats_document(container: &FakeContainer, now: f64) -> serde_json::Value {
    let stamp = |t: f64| {
        fake_time(t)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
            .unwrap_or_default()
    };
    let stats = container.stats;
    serde_json::json!({
        "read": stamp(now),
        "preread": stamp(now - 1.0),
        "name": format!("/{}", container.spec.name),
        "id": container.id,
        "num_procs": 0,
        "pids_stats": {"current": 1},
        "blkio_stats": {"io_service_bytes_recursive": [], "io_serviced_recursive": []},
        "cpu_stats": {
            "cpu_usage": {"total_usage": stats.cpu_total_nanos, "usage_in_kernelmode": 0, "usage_in_usermode": stats.cpu_total_nanos},
            "system_cpu_usage": 0,
            "online_cpus": 1,
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "precpu_stats": {
            "cpu_usage": {"total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0},
            "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
        },
        "memory_stats": {
            "usage": stats.memory_bytes,
            "limit": stats.memory_limit_bytes,
            "stats": {"inactive_file": 0},
        },
        "networks": {
            "eth0": {"rx_bytes": 0, "rx_packets": 0, "rx_errors": 0, "rx_dropped": 0,
                     "tx_bytes": 0, "tx_packets": 0, "tx_errors": 0, "tx_dropped": 0},
        },
    })
}

/// A running container's PID: 100000 plus the number in its id.
fn fake_pid(container: &FakeContainer) -> Option<i64> {
    if !container.status.is_running() {
        return None;
    }
    let number: i64 = container.id.trim_start_matches("fake").parse().ok()?;
    Some(100_000 + number)
}

/// A container on a named network has the address its endpoint asked for.
fn fake_networks(container: &FakeContainer) -> BTreeMap<String, NetworkAttachment> {
    match (&container.spec.network_mode, &container.spec.endpoint) {
        (NetworkMode::Network(name), endpoint) => BTreeMap::from([(
            name.clone(),
            NetworkAttachment {
                ipv4_address: endpoint.as_ref().and_then(|e| e.ipv4_address.clone()),
                mac_address: endpoint.as_ref().and_then(|e| e.mac_address.clone()),
            },
        )]),
        _ => BTreeMap::new(),
    }
}

/// A reader of one fake container's log, following it while it runs.
struct Follower {
    runtime: FakeRuntime,
    id: String,
    since_nanos: i64,
    next: usize,
    changes: watch::Receiver<u64>,
    done: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::HealthCheckSpec;

    fn spec(name: &str, container_name: &str) -> ContainerSpec {
        ContainerSpec {
            name: name.to_string(),
            image: "img:1".to_string(),
            labels: BTreeMap::from([
                (labels::TASK_ARN.to_string(), "task-1".to_string()),
                (
                    labels::CONTAINER_NAME.to_string(),
                    container_name.to_string(),
                ),
            ]),
            health_check: Some(HealthCheckSpec {
                test: vec!["CMD".into(), "true".into()],
                interval: None,
                timeout: None,
                retries: None,
                start_period: None,
            }),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn lifecycle_and_controls() {
        let fake = FakeRuntime::new();
        assert!(matches!(
            fake.create_container(&spec("a", "app")).await,
            Err(RuntimeError::NoSuchImage { .. })
        ));
        fake.add_image("img:1");
        let id = fake
            .create_container(&spec("a", "app"))
            .await
            .expect("creates");
        assert!(matches!(
            fake.create_container(&spec("a", "app")).await,
            Err(RuntimeError::Conflict { .. })
        ));
        assert_eq!(fake.find("task-1", "app"), Some(id.clone()));
        let mut events = fake.events();
        fake.start_container(&id).await.expect("starts");
        let started = events.next().await.expect("event").expect("ok");
        assert_eq!(started.kind, RuntimeEventKind::Start);
        let info = fake.inspect_container(&id).await.expect("inspects");
        assert_eq!(info.status, ContainerStatus::Running);
        assert_eq!(info.health, Some(HealthState::Starting));
        fake.set_health(&id, HealthState::Healthy);
        fake.exit(&id, 3);
        let info = fake.inspect_container(&id).await.expect("inspects");
        assert_eq!(
            (info.status, info.exit_code, info.health),
            (ContainerStatus::Exited, Some(3), Some(HealthState::Healthy))
        );
        fake.remove_container(&id).await.expect("removes");
        assert_eq!(fake.removed(), vec![id]);
    }

    #[tokio::test(start_paused = true)]
    async fn ignoring_sigterm_takes_the_whole_timeout() {
        let fake = FakeRuntime::new();
        fake.add_image("img:1");
        fake.behave(
            "stubborn",
            FakeBehavior {
                ignore_sigterm: true,
                ..Default::default()
            },
        );
        let id = fake
            .create_container(&spec("s", "stubborn"))
            .await
            .expect("creates");
        fake.start_container(&id).await.expect("starts");
        let before = tokio::time::Instant::now();
        fake.stop_container(&id, Duration::from_secs(2))
            .await
            .expect("stops");
        assert!(before.elapsed() >= Duration::from_secs(2));
        let container = fake.container(&id).expect("exists");
        assert!(container.killed);
        assert_eq!(container.exit_code, Some(137));
    }
}
