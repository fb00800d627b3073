//! What a task owner knows: the task's lifecycle status, each container's observed state, the
//! decision to stop and why, and how that becomes a `ReportTaskState` for the server.
//!
//! Nothing here is persisted: after a restart the owner rebuilds it from the engine (containers
//! found by their labels, then inspected) and from the server's desired state.

use std::collections::BTreeMap;

use model::agent::{ContainerStateReport, ReportTaskStateInput};
use model::ecs::task::NetworkBinding;
use model::ecs::task_definition::ContainerDefinition;
use tokio::time::Instant;

use super::dependencies::{ContainerPhase, TargetView};
use crate::logs::LogDestination;
use crate::runtime::{AssignedPort, HealthState, Protocol};

/// ECS's stop codes that the agent itself decides.
pub const STOP_CODE_TASK_FAILED_TO_START: &str = "TaskFailedToStart";
pub const STOP_CODE_ESSENTIAL_CONTAINER_EXITED: &str = "EssentialContainerExited";
pub const ESSENTIAL_CONTAINER_EXITED_REASON: &str = "Essential container in task exited";
/// The container reason ECS gives a container the kernel killed for memory.
pub const OUT_OF_MEMORY_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

/// A task's `lastStatus`, in lifecycle order; the owner only ever moves it forward.
///
/// ```text
/// PROVISIONING → PENDING (pulling) → ACTIVATING (volumes, create, start by dependsOn)
///   → RUNNING (every container started)
///   → DEACTIVATING → STOPPING (containers stopped in reverse dependency order)
///   → DEPROVISIONING (ports released) → STOPPED
/// ```
/// A task that fails to start skips RUNNING; a task stopped before it began skips to
/// DEACTIVATING.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Activating,
    Running,
    Deactivating,
    Stopping,
    Deprovisioning,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Activating => "ACTIVATING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Deactivating => "DEACTIVATING",
            TaskStatus::Stopping => "STOPPING",
            TaskStatus::Deprovisioning => "DEPROVISIONING",
            TaskStatus::Stopped => "STOPPED",
        }
    }
}

/// One container as its owner knows it.
#[derive(Debug, Clone)]
pub struct KnownContainer {
    pub name: String,
    /// The engine id once created (or found after a restart).
    pub runtime_id: Option<String>,
    pub phase: ContainerPhase,
    /// Whether it ever started.
    pub started: bool,
    /// When this agent first saw it started (tokio time, for `startTimeout`).
    pub started_at: Option<Instant>,
    pub exit_code: Option<i64>,
    pub reason: Option<String>,
    pub health: Option<HealthState>,
    pub has_health_check: bool,
    pub bindings: Vec<NetworkBinding>,
    pub image_digest: Option<String>,
    /// Host ports reserved in the agent's allocator for it, released when the task stops.
    pub host_ports: Vec<(Protocol, u16)>,
    /// Where its output is shipped (awslogs), from its spec or its labels.
    pub log_destination: Option<LogDestination>,
}

impl KnownContainer {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            runtime_id: None,
            phase: ContainerPhase::Pending,
            started: false,
            started_at: None,
            exit_code: None,
            reason: None,
            health: None,
            has_health_check: false,
            bindings: Vec::new(),
            image_digest: None,
            host_ports: Vec::new(),
            log_destination: None,
        }
    }

    /// Moves to `phase` if that is forward; never back.
    pub fn advance(&mut self, phase: ContainerPhase) {
        if phase > self.phase {
            self.phase = phase;
        }
    }

    /// Sets the reason unless one is already there (the first cause is the interesting one).
    pub fn set_reason(&mut self, reason: String) {
        self.reason.get_or_insert(reason);
    }

    pub fn target_view(&self, definition: Option<&ContainerDefinition>) -> TargetView {
        TargetView {
            name: self.name.clone(),
            phase: self.phase,
            started: self.started,
            started_at: self.started_at,
            exit_code: self.exit_code,
            health: self.health,
            has_health_check: self.has_health_check,
            start_timeout: definition
                .and_then(|d| d.start_timeout)
                .and_then(|s| u64::try_from(s).ok())
                .map(std::time::Duration::from_secs),
        }
    }

    /// `healthStatus` as ECS reports it: UNKNOWN without a check or before the first result.
    pub fn health_status(&self) -> &'static str {
        match (self.has_health_check, self.health) {
            (true, Some(HealthState::Healthy)) => "HEALTHY",
            (true, Some(HealthState::Unhealthy)) => "UNHEALTHY",
            _ => "UNKNOWN",
        }
    }
}

/// The ECS network bindings of a running container's published ports: the IPv4 wildcard
/// binding of each port (Docker also lists `::`), reported with bindIP 0.0.0.0 as ECS does.
pub fn network_bindings(ports: &[AssignedPort]) -> Vec<NetworkBinding> {
    let mut bindings: Vec<NetworkBinding> = Vec::new();
    for port in ports {
        if port.host_ip.contains(':') {
            continue;
        }
        let binding = NetworkBinding {
            bind_ip: Some("0.0.0.0".to_string()),
            container_port: Some(i32::from(port.container_port)),
            host_port: Some(i32::from(port.host_port)),
            protocol: Some(port.protocol.as_str().to_string()),
            container_port_range: None,
            host_port_range: None,
        };
        if !bindings.contains(&binding) {
            bindings.push(binding);
        }
    }
    bindings
}

/// Why the task is stopping. Set once; the first cause wins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopDecision {
    /// Set when the agent decided (TaskFailedToStart, EssentialContainerExited); `None` when the
    /// server asked, since it already recorded its own code.
    pub code: Option<String>,
    pub reason: Option<String>,
}

/// The task health from its essential containers' health checks: UNHEALTHY if any is
/// unhealthy, HEALTHY if all are healthy, UNKNOWN otherwise (including when none has a check).
pub fn task_health<'a>(
    essential_containers: impl Iterator<Item = &'a KnownContainer>,
) -> &'static str {
    let mut checked = 0;
    let mut healthy = 0;
    for container in essential_containers.filter(|c| c.has_health_check) {
        checked += 1;
        match container.health {
            Some(HealthState::Unhealthy) => return "UNHEALTHY",
            Some(HealthState::Healthy) => healthy += 1,
            _ => {}
        }
    }
    if checked > 0 && healthy == checked {
        "HEALTHY"
    } else {
        "UNKNOWN"
    }
}

/// Everything a report is built from.
#[derive(Debug)]
pub struct ReportInputs<'a> {
    pub cluster: &'a str,
    pub task_arn: &'a str,
    pub status: TaskStatus,
    pub definitions: &'a [ContainerDefinition],
    pub containers: &'a BTreeMap<String, KnownContainer>,
    pub stop: Option<&'a StopDecision>,
    pub pull_started_at: Option<f64>,
    pub pull_stopped_at: Option<f64>,
    pub started_at: Option<f64>,
    pub execution_stopped_at: Option<f64>,
}

pub fn build_report(inputs: &ReportInputs<'_>) -> ReportTaskStateInput {
    let containers: Vec<ContainerStateReport> = inputs
        .definitions
        .iter()
        .filter_map(|definition| {
            let name = definition.name.as_deref()?;
            let known = inputs.containers.get(name)?;
            Some(ContainerStateReport {
                name: name.to_string(),
                last_status: known.phase.as_str().to_string(),
                runtime_id: known.runtime_id.clone(),
                image_digest: known.image_digest.clone(),
                exit_code: known.exit_code.map(|c| c as i32),
                reason: known.reason.clone(),
                network_bindings: (!known.bindings.is_empty()).then(|| known.bindings.clone()),
                health_status: Some(known.health_status().to_string()),
            })
        })
        .collect();
    let essential = inputs
        .definitions
        .iter()
        .filter(|d| d.essential.unwrap_or(true))
        .filter_map(|d| inputs.containers.get(d.name.as_deref()?));
    ReportTaskStateInput {
        cluster: inputs.cluster.to_string(),
        task_arn: inputs.task_arn.to_string(),
        last_status: inputs.status.as_str().to_string(),
        containers,
        pull_started_at: inputs.pull_started_at,
        pull_stopped_at: inputs.pull_stopped_at,
        started_at: inputs.started_at,
        execution_stopped_at: inputs.execution_stopped_at,
        stop_code: inputs.stop.and_then(|s| s.code.clone()),
        stopped_reason: inputs.stop.and_then(|s| s.reason.clone()),
        health_status: Some(task_health(essential).to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_health_follows_essential_containers() {
        let mut a = KnownContainer::new("a");
        let mut b = KnownContainer::new("b");
        assert_eq!(task_health([&a, &b].into_iter()), "UNKNOWN");
        a.has_health_check = true;
        b.has_health_check = true;
        a.health = Some(HealthState::Healthy);
        assert_eq!(task_health([&a, &b].into_iter()), "UNKNOWN");
        b.health = Some(HealthState::Healthy);
        assert_eq!(task_health([&a, &b].into_iter()), "HEALTHY");
        b.health = Some(HealthState::Unhealthy);
        assert_eq!(task_health([&a, &b].into_iter()), "UNHEALTHY");
    }

    #[test]
    fn bindings_keep_the_ipv4_wildcard_once() {
        let port = |ip: &str| AssignedPort {
            container_port: 80,
            protocol: Protocol::Tcp,
            host_ip: ip.to_string(),
            host_port: 49200,
        };
        let bindings = network_bindings(&[port("0.0.0.0"), port("::"), port("0.0.0.0")]);
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].bind_ip.as_deref(), Some("0.0.0.0"));
        assert_eq!(bindings[0].host_port, Some(49200));
    }

    #[test]
    fn statuses_are_ordered_like_ecs() {
        let names: Vec<&str> = [
            TaskStatus::Provisioning,
            TaskStatus::Pending,
            TaskStatus::Activating,
            TaskStatus::Running,
            TaskStatus::Deactivating,
            TaskStatus::Stopping,
            TaskStatus::Deprovisioning,
            TaskStatus::Stopped,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(names, model::ecs::task::TASK_STATUSES);
        assert!(TaskStatus::Running > TaskStatus::Activating);
    }
}
