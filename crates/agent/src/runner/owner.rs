//! The owner of one task: a single tokio task that holds everything known about it and is the
//! only thing that acts on it. It loops *observe → reconcile → report → wait*:
//!
//! - observe: inspect the task's containers in the engine;
//! - reconcile: compare the desired state (from the server) with what is known and take the
//!   next step forward: pull, create volumes and containers, start what `dependsOn` allows,
//!   or stop in reverse dependency order;
//! - report: hand a `ReportTaskState` to the reporter when anything observable changed;
//! - wait: for a new desired state, an engine event about its containers, the nearest
//!   `startTimeout` deadline, or the periodic resync.
//!
//! Events only wake the owner, which then inspects: a missed event costs latency (up to the
//! resync interval), never correctness. Statuses only move forward ([`TaskStatus`]).
//! Once STOPPED, the owner waits the cleanup delay, removes the containers and task-scoped
//! volumes, and ends.
//!
//! An awsvpc task also has a pause container, which the owner keeps apart from the task's
//! containers (it is never reported): created and started before them, its namespace given
//! the security groups (and re-given them whenever the desired task brings different ones),
//! stopped after them and removed with them. If it exits while the task runs, the task's
//! network is gone and the task stops.
//!
//! The owner also owns the log shippers of its awslogs containers (one per container, started
//! once the container has started, on the engine's tracker): before removing the containers it
//! waits for them to deliver everything the containers logged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use futures_util::future::join_all;
use model::agent::{AgentTask, ReportTaskStateInput};
use model::ecs::task::NetworkBinding;
use model::ecs::task_definition::ContainerDefinition;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::dependencies::{resolve, stoppable, ContainerPhase, Resolution};
use super::limits;
use super::spec::{self, SpecContext, VolumePlan};
use super::state::{
    build_report, network_bindings, KnownContainer, ReportInputs, StopDecision, TaskStatus,
    ESSENTIAL_CONTAINER_EXITED_REASON, OUT_OF_MEMORY_REASON, STOP_CODE_ESSENTIAL_CONTAINER_EXITED,
    STOP_CODE_TASK_FAILED_TO_START,
};
use super::{Desired, Shared};
use crate::labels;
use crate::logs::{LogDestination, Shipper, ShipperExit};
use crate::network::{self, PAUSE_CONTAINER_NAME};
use crate::runtime::{ensure_image, NetworkMode, Protocol, RuntimeError};

/// How soon a security group change that failed to load is tried again.
const FIREWALL_RETRY: std::time::Duration = std::time::Duration::from_secs(5);
/// The pause program exits on SIGTERM at once; this only bounds a stuck engine.
const PAUSE_STOP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// An awsvpc task's pause container, as its owner knows it.
#[derive(Debug, Clone)]
struct PauseContainer {
    id: String,
    /// Its PID while it runs (from the latest inspect).
    pid: Option<i64>,
    /// It ran and exited: the task's namespace is gone.
    exited: bool,
    /// The ruleset this process loaded into its namespace.
    applied: Option<String>,
    /// A failed load is retried from then on.
    retry_at: Option<Instant>,
}

impl PauseContainer {
    fn new(id: String) -> Self {
        Self {
            id,
            pid: None,
            exited: false,
            applied: None,
            retry_at: None,
        }
    }
}

/// A task network failure reason, in ECS's words for what fails before containers run.
fn network_failure(what: &str, error: impl std::fmt::Display) -> String {
    format!("ResourceInitializationError: {what}: {error}")
}

/// What the loop does after a reconcile step.
enum Step {
    /// Something changed: observe and reconcile again at once.
    Again,
    /// Nothing to do until woken, or until this deadline.
    Wait(Option<Instant>),
    /// The task is STOPPED.
    Stopped,
}

pub(crate) struct TaskOwner {
    task_arn: String,
    shared: Arc<Shared>,
    desired: watch::Receiver<Desired>,
    wake: Arc<Notify>,
    /// The latest desired state with its definition; `None` for a re-adopted task until the
    /// server's answer arrives.
    task: Option<AgentTask>,
    /// The server no longer lists the task: stop whatever runs, report nothing.
    gone: bool,
    containers: BTreeMap<String, KnownContainer>,
    status: TaskStatus,
    stop: Option<StopDecision>,
    /// Images pulled, volumes and containers created.
    prepared: bool,
    pull_started_at: Option<f64>,
    pull_stopped_at: Option<f64>,
    started_at: Option<f64>,
    execution_stopped_at: Option<f64>,
    /// Task-scoped volumes created (or to remove at cleanup).
    task_volumes: BTreeSet<String>,
    last_report: Option<ReportTaskStateInput>,
    /// Container id → its log shipper.
    shippers: BTreeMap<String, JoinHandle<ShipperExit>>,
    /// awsvpc: the pause container holding the task's network namespace.
    pause: Option<PauseContainer>,
}

impl TaskOwner {
    pub(crate) fn new(
        task_arn: String,
        shared: Arc<Shared>,
        desired: watch::Receiver<Desired>,
        wake: Arc<Notify>,
        adopted: Vec<(String, String)>,
    ) -> Self {
        // The pause container is re-adopted with its task, apart from the task's containers.
        let (pause, adopted): (Vec<_>, Vec<_>) = adopted
            .into_iter()
            .partition(|(name, _)| name == PAUSE_CONTAINER_NAME);
        let pause = pause
            .into_iter()
            .next()
            .map(|(_, id)| PauseContainer::new(id));
        let containers = adopted
            .into_iter()
            .map(|(name, id)| {
                let mut known = KnownContainer::new(&name);
                known.runtime_id = Some(id);
                (name, known)
            })
            .collect();
        Self {
            task_arn,
            shared,
            desired,
            wake,
            task: None,
            gone: false,
            containers,
            status: TaskStatus::Provisioning,
            stop: None,
            prepared: false,
            pull_started_at: None,
            pull_stopped_at: None,
            started_at: None,
            execution_stopped_at: None,
            task_volumes: BTreeSet::new(),
            last_report: None,
            shippers: BTreeMap::new(),
            pause,
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            if self.shared.cancel.is_cancelled() {
                return;
            }
            self.absorb_desired();
            self.observe().await;
            self.start_log_shippers();
            let mut step = self.reconcile().await;
            if let Step::Wait(deadline) = step {
                let retry = self.sync_security_groups().await;
                step = Step::Wait(min_deadline(deadline, retry));
            }
            self.report();
            self.publish_metadata();
            match step {
                Step::Again => continue,
                Step::Stopped => {
                    self.clean_up_after_retention().await;
                    return;
                }
                Step::Wait(deadline) => {
                    let resync = Instant::now() + self.shared.config.resync_interval;
                    let until = deadline.map_or(resync, |d| d.min(resync));
                    tokio::select! {
                        _ = self.shared.cancel.cancelled() => return,
                        changed = self.desired.changed() => {
                            if changed.is_err() {
                                return;
                            }
                        }
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep_until(until) => {}
                    }
                }
            }
        }
    }

    fn now(&self) -> f64 {
        self.shared.clock.now_seconds_f64()
    }

    fn advance(&mut self, status: TaskStatus) {
        if status > self.status {
            tracing::info!(task_arn = %self.task_arn, from = self.status.as_str(), to = status.as_str(), "task status");
            self.status = status;
        }
    }

    fn definitions(&self) -> Vec<ContainerDefinition> {
        self.task
            .as_ref()
            .and_then(|t| t.task_definition.container_definitions.clone())
            .unwrap_or_default()
    }

    fn definition(&self, name: &str) -> Option<ContainerDefinition> {
        self.definitions()
            .into_iter()
            .find(|d| d.name.as_deref() == Some(name))
    }

    fn decide_stop(&mut self, code: Option<&str>, reason: Option<String>) {
        if self.stop.is_none() {
            tracing::info!(task_arn = %self.task_arn, stop_code = code.unwrap_or(""), reason = reason.as_deref().unwrap_or(""), "task stopping");
            self.stop = Some(StopDecision {
                code: code.map(str::to_string),
                reason,
            });
        }
    }

    fn fail_to_start(&mut self, reason: String) {
        self.decide_stop(Some(STOP_CODE_TASK_FAILED_TO_START), Some(reason));
    }

    fn absorb_desired(&mut self) {
        let desired = self.desired.borrow_and_update().clone();
        match desired {
            Desired::Unknown => {}
            Desired::Gone => self.gone = true,
            Desired::Task(task) => {
                for definition in task.task_definition.container_definitions.iter().flatten() {
                    if let Some(name) = &definition.name {
                        let known = self
                            .containers
                            .entry(name.clone())
                            .or_insert_with(|| KnownContainer::new(name));
                        known.has_health_check = definition.health_check.is_some();
                    }
                }
                self.task = Some(*task);
            }
        }
    }

    /// Inspects every container that may still change.
    async fn observe(&mut self) {
        let runtime = self.shared.runtime.clone();
        if let Some(pause) = self.pause.as_mut().filter(|p| !p.exited) {
            match runtime.inspect_container(&pause.id).await {
                Ok(info) => {
                    pause.pid = info.pid;
                    if info.status.is_stopped() {
                        tracing::warn!(task_arn = %self.task_arn, exit_code = ?info.exit_code, "pause container exited");
                        pause.exited = true;
                        pause.pid = None;
                    }
                }
                Err(RuntimeError::NoSuchContainer { .. }) => {
                    pause.exited = true;
                    pause.pid = None;
                }
                Err(error) => {
                    tracing::warn!(task_arn = %self.task_arn, error = %error, "cannot inspect the pause container");
                }
            }
        }
        let network_mode = self
            .task
            .as_ref()
            .and_then(|t| spec::network_mode(&t.task_definition).ok());
        for container in self.containers.values_mut() {
            let Some(id) = container.runtime_id.clone() else {
                continue;
            };
            if container.phase == ContainerPhase::Stopped {
                continue;
            }
            let info = match runtime.inspect_container(&id).await {
                Ok(info) => info,
                Err(RuntimeError::NoSuchContainer { .. }) => {
                    container.set_reason(
                        "container was removed from the engine outside the agent".into(),
                    );
                    container.advance(ContainerPhase::Stopped);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(task_arn = %self.task_arn, container = %container.name, error = %error, "cannot inspect container");
                    continue;
                }
            };
            container.image_digest = info.image_id.clone().or(container.image_digest.take());
            if container.log_destination.is_none() {
                container.log_destination = LogDestination::from_labels(&info.labels);
            }
            if let Some(metadata) = &self.shared.config.metadata {
                metadata.observed(&self.task_arn, &container.name, &info.labels);
            }
            if info.health.is_some() {
                container.health = info.health;
            }
            if network_mode != Some(NetworkMode::Host) && !info.ports.is_empty() {
                container.bindings = network_bindings(&info.ports);
                for port in &info.ports {
                    let key = (port.protocol, port.host_port);
                    if !container.host_ports.contains(&key) {
                        self.shared.ports.reserve(port.protocol, port.host_port);
                        container.host_ports.push(key);
                    }
                }
            }
            if info.status.is_running() {
                if !container.started {
                    container.started = true;
                    container.started_at = Some(Instant::now());
                }
                container.advance(ContainerPhase::Running);
            } else if info.status.is_stopped() {
                // A container that failed to start stays `created`; `exited` means it ran.
                container.started = true;
                container.exit_code = info.exit_code;
                if info.oom_killed {
                    container.set_reason(OUT_OF_MEMORY_REASON.to_string());
                } else if let Some(error) = info.error.clone() {
                    container.set_reason(error);
                }
                tracing::info!(task_arn = %self.task_arn, container = %container.name, exit_code = ?info.exit_code, oom_killed = info.oom_killed, "container stopped");
                container.advance(ContainerPhase::Stopped);
            }
        }
    }

    async fn reconcile(&mut self) -> Step {
        if self.status == TaskStatus::Stopped {
            return Step::Stopped;
        }
        if self.stop.is_none() {
            if self.gone {
                self.decide_stop(None, None);
            } else if let Some(task) = &self.task {
                if task.task.desired_status.as_deref() == Some("STOPPED") {
                    self.decide_stop(None, None);
                }
            } else {
                // Re-adopted, waiting for the server to say what it wants.
                return Step::Wait(None);
            }
        }
        if self.stop.is_none() {
            let exited = self.definitions().into_iter().find(|d| {
                d.essential.unwrap_or(true)
                    && d.name
                        .as_ref()
                        .and_then(|n| self.containers.get(n))
                        .is_some_and(|c| c.phase == ContainerPhase::Stopped)
            });
            if exited.is_some() {
                self.decide_stop(
                    Some(STOP_CODE_ESSENTIAL_CONTAINER_EXITED),
                    Some(ESSENTIAL_CONTAINER_EXITED_REASON.to_string()),
                );
            } else if self.prepared && self.pause.as_ref().is_some_and(|p| p.exited) {
                self.decide_stop(
                    Some(STOP_CODE_ESSENTIAL_CONTAINER_EXITED),
                    Some("Task network namespace exited: the pause container stopped".to_string()),
                );
            }
        }
        if self.stop.is_some() {
            return self.stop_task().await;
        }
        if !self.prepared {
            return self.prepare().await;
        }
        self.start_ready().await
    }

    /// PENDING: pull; ACTIVATING: volumes and containers.
    async fn prepare(&mut self) -> Step {
        let Some(task) = self.task.clone() else {
            return Step::Wait(None);
        };
        self.advance(TaskStatus::Pending);
        let definition = &task.task_definition;
        if let Err(error) = spec::check_supported(definition) {
            self.fail_to_start(error.to_string());
            return Step::Again;
        }
        let task_limits = match limits::task_limits(&task.task, definition) {
            Ok(task_limits) => task_limits,
            Err(error) => {
                self.fail_to_start(format!("CannotCreateContainerError: {error}"));
                return Step::Again;
            }
        };
        let mut network_mode = spec::network_mode(definition).unwrap_or_default();
        let definitions = self.definitions();

        // Pull every image a container still to be created needs, once.
        let mut images: Vec<String> = Vec::new();
        for d in &definitions {
            let name = d.name.clone().unwrap_or_default();
            let image = d.image.clone().unwrap_or_default();
            let created = self
                .containers
                .get(&name)
                .is_some_and(|c| c.runtime_id.is_some());
            if !created && !images.contains(&image) {
                images.push(image);
            }
        }
        if !images.is_empty() {
            self.pull_started_at
                .get_or_insert(self.shared.clock.now_seconds_f64());
            self.report();
            for image in images {
                let runtime = self.shared.runtime.clone();
                let behavior = self.shared.config.image_pull_behavior;
                let pull = async move { ensure_image(&*runtime, &image, behavior).await };
                let result = tokio::select! {
                    result = pull => result,
                    _ = stop_requested(&mut self.desired) => return Step::Again,
                    _ = self.shared.cancel.cancelled() => return Step::Again,
                };
                if let Err(error) = result {
                    let crate::runtime::PullError::CannotPull { image, .. } = &error;
                    let reason = error.to_string();
                    tracing::warn!(task_arn = %self.task_arn, image = %image, error = %reason, "image pull failed");
                    for d in definitions
                        .iter()
                        .filter(|d| d.image.as_deref() == Some(image))
                    {
                        if let Some(known) =
                            d.name.as_ref().and_then(|n| self.containers.get_mut(n))
                        {
                            known.set_reason(reason.clone());
                            known.advance(ContainerPhase::Stopped);
                        }
                    }
                    self.pull_stopped_at = Some(self.now());
                    self.fail_to_start(reason);
                    return Step::Again;
                }
            }
            self.pull_stopped_at
                .get_or_insert(self.shared.clock.now_seconds_f64());
        }
        self.advance(TaskStatus::Activating);

        if spec::is_awsvpc(definition) {
            let cancel = self.shared.cancel.clone();
            let set_up = tokio::select! {
                set_up = self.set_up_task_network(&task) => set_up,
                _ = cancel.cancelled() => return Step::Again,
            };
            match set_up {
                Ok(pause_id) => network_mode = NetworkMode::Container(pause_id),
                Err(reason) => {
                    tracing::warn!(task_arn = %self.task_arn, reason = %reason, "task network setup failed");
                    self.fail_to_start(reason);
                    return Step::Again;
                }
            }
        }

        let owner_labels = self.owner_labels(&task);
        let mut volumes: BTreeMap<String, VolumePlan> = BTreeMap::new();
        for volume in definition.volumes.iter().flatten() {
            let plan = spec::plan_volume(&task.task, definition, volume, &owner_labels);
            if let Err(reason) = self.provision_volume(&plan).await {
                self.fail_to_start(reason);
                return Step::Again;
            }
            volumes.insert(volume.name.clone().unwrap_or_default(), plan);
        }

        // Create in an order where every volumesFrom source exists first.
        for d in creation_order(&definitions) {
            let name = d.name.clone().unwrap_or_default();
            if self
                .containers
                .get(&name)
                .is_some_and(|c| c.runtime_id.is_some())
            {
                continue;
            }
            let created: BTreeMap<String, String> = self
                .containers
                .iter()
                .filter_map(|(n, c)| Some((n.clone(), c.runtime_id.clone()?)))
                .collect();
            let context = SpecContext {
                task: &task.task,
                definition,
                network_mode: &network_mode,
                owner_labels: &owner_labels,
                volumes: &volumes,
                created: &created,
                default_stop_timeout: self.shared.config.default_stop_timeout,
            };
            let mut allocated: Vec<(Protocol, u16)> = Vec::new();
            let ports = &self.shared.ports;
            let built = spec::build_container_spec(&context, &d, &mut |protocol| {
                let port = ports.allocate(protocol)?;
                allocated.push((protocol, port));
                Ok(port)
            });
            let known = self
                .containers
                .entry(name.clone())
                .or_insert_with(|| KnownContainer::new(&name));
            known.host_ports.extend(allocated.iter().copied());
            let mut container_spec = match built {
                Ok(container_spec) => {
                    known.log_destination = LogDestination::from_labels(&container_spec.labels);
                    container_spec
                }
                Err(error) => {
                    let reason = format!("CannotCreateContainerError: {error}");
                    known.set_reason(reason.clone());
                    self.fail_to_start(reason);
                    return Step::Again;
                }
            };
            if let Some(container_limits) = task_limits.get(&name) {
                limits::apply(&mut container_spec, container_limits);
            }
            if network_mode == NetworkMode::Host {
                // Host mode: the container's ports are the host's.
                known.bindings = d
                    .port_mappings
                    .iter()
                    .flatten()
                    .filter_map(|m| {
                        Some(NetworkBinding {
                            bind_ip: Some("0.0.0.0".into()),
                            container_port: m.container_port,
                            host_port: m.container_port,
                            protocol: Some(m.protocol.clone().unwrap_or_else(|| "tcp".into())),
                            container_port_range: None,
                            host_port_range: None,
                        })
                        .filter(|b| b.container_port.is_some())
                    })
                    .collect();
            }
            let container_spec = crate::metadata::attach_to_spec(
                self.shared.config.metadata.as_ref(),
                container_spec,
                task.network.as_ref(),
            )
            .await;
            match self.shared.runtime.create_container(&container_spec).await {
                Ok(id) => {
                    tracing::info!(task_arn = %self.task_arn, container = %name, runtime_id = %id, "container created");
                    self.set_runtime_id(&name, id);
                }
                Err(RuntimeError::Conflict { message }) => {
                    // Created before a crash or a lost answer: adopt it, never duplicate it.
                    match self.find_existing(&name).await {
                        Some(id) => self.set_runtime_id(&name, id),
                        None => {
                            let reason = format!("CannotCreateContainerError: {message}");
                            self.fail_container(&name, reason);
                            return Step::Again;
                        }
                    }
                }
                Err(error) => {
                    let reason = format!("CannotCreateContainerError: {error}");
                    self.fail_container(&name, reason);
                    return Step::Again;
                }
            }
        }
        self.prepared = true;
        Step::Again
    }

    /// awsvpc: the subnet's network, the pause container on it with the ENI's address (created
    /// unless re-adopted, started unless running), and the security groups in its namespace.
    /// Returns the pause container's id; the error is the task's stop reason.
    async fn set_up_task_network(&mut self, task: &AgentTask) -> Result<String, String> {
        let Some(task_network) = task.network.clone() else {
            return Err(network_failure(
                "cannot set up the task's network",
                "the awsvpc task has no network interface",
            ));
        };
        let runtime = self.shared.runtime.clone();
        self.shared
            .pause_image
            .ensure(&*runtime)
            .await
            .map_err(|e| network_failure("cannot import the pause image", e))?;
        let network_spec = network::subnet_network(&task_network);
        runtime.ensure_network(&network_spec).await.map_err(|e| {
            network_failure(
                &format!(
                    "cannot create network {} for subnet {} ({})",
                    network_spec.name, task_network.subnet_id, task_network.subnet_cidr
                ),
                e,
            )
        })?;
        let id = match &self.pause {
            Some(pause) => pause.id.clone(),
            None => {
                let pause_spec = network::pause_container_spec(
                    &task.task,
                    &task.task_definition,
                    &task_network,
                    &self.owner_labels(task),
                );
                let id = match runtime.create_container(&pause_spec).await {
                    Ok(id) => id,
                    // Created before a crash: adopt it, never duplicate it.
                    Err(RuntimeError::Conflict { message }) => self
                        .find_existing(PAUSE_CONTAINER_NAME)
                        .await
                        .ok_or_else(|| {
                            network_failure("cannot create the pause container", message)
                        })?,
                    Err(error) => {
                        return Err(network_failure("cannot create the pause container", error))
                    }
                };
                tracing::info!(task_arn = %self.task_arn, runtime_id = %id, address = %task_network.private_ipv4_address, "pause container created");
                self.pause = Some(PauseContainer::new(id.clone()));
                id
            }
        };
        let inspect_failed = |e| network_failure("cannot inspect the pause container", e);
        let mut info = runtime
            .inspect_container(&id)
            .await
            .map_err(inspect_failed)?;
        if !info.status.is_running() {
            if self.containers.values().any(|c| c.started) {
                return Err(network_failure(
                    "cannot set up the task's network",
                    "the pause container exited while the task's containers ran",
                ));
            }
            runtime
                .start_container(&id)
                .await
                .map_err(|e| network_failure("cannot start the pause container", e))?;
            info = runtime
                .inspect_container(&id)
                .await
                .map_err(inspect_failed)?;
        }
        let Some(pid) = info.pid.filter(|_| info.status.is_running()) else {
            return Err(network_failure(
                "cannot set up the task's network",
                "the pause container is not running",
            ));
        };
        let enforcer = runtime.network_enforcer();
        // Engines before API 1.44 ignore the endpoint's MAC address: set it in the namespace.
        let wanted_mac = task_network.mac_address.to_ascii_lowercase();
        let actual_mac = info
            .networks
            .get(&network_spec.name)
            .and_then(|n| n.mac_address.clone())
            .map(|m| m.to_ascii_lowercase());
        if !wanted_mac.is_empty() && actual_mac.as_deref() != Some(wanted_mac.as_str()) {
            if let Err(error) = enforcer
                .set_mac_address(pid, network::TASK_INTERFACE, &wanted_mac)
                .await
            {
                tracing::warn!(task_arn = %self.task_arn, error = %error, mac_address = %wanted_mac, "cannot give the task its ENI's MAC address; it keeps the engine's");
            }
        }
        let ruleset = network::task_ruleset(&task_network);
        enforcer
            .restore_filter(pid, &ruleset)
            .await
            .map_err(|e| network_failure("cannot enforce the task's security groups", e))?;
        tracing::info!(task_arn = %self.task_arn, pid, groups = task_network.security_groups.len(), "security groups loaded");
        if let Some(pause) = self.pause.as_mut() {
            pause.pid = Some(pid);
            pause.applied = Some(ruleset);
            pause.retry_at = None;
        }
        Ok(id)
    }

    /// Loads the security groups of the latest desired task into the running task's namespace
    /// when they differ from what was loaded. Returns when to try again after a failure.
    async fn sync_security_groups(&mut self) -> Option<Instant> {
        if !self.prepared || self.stop.is_some() {
            return None;
        }
        let task_network = self.task.as_ref()?.network.as_ref()?;
        let pause = self.pause.as_mut()?;
        let pid = pause.pid?;
        let ruleset = network::task_ruleset(task_network);
        if pause.applied.as_ref() == Some(&ruleset) {
            return None;
        }
        if let Some(at) = pause.retry_at.filter(|at| Instant::now() < *at) {
            return Some(at);
        }
        let enforcer = self.shared.runtime.network_enforcer();
        match enforcer.restore_filter(pid, &ruleset).await {
            Ok(()) => {
                tracing::info!(task_arn = %self.task_arn, pid, "security groups changed; rules reloaded");
                pause.applied = Some(ruleset);
                pause.retry_at = None;
                None
            }
            Err(error) => {
                tracing::warn!(task_arn = %self.task_arn, error = %error, "cannot reload the security groups; retrying");
                let at = Instant::now() + FIREWALL_RETRY;
                pause.retry_at = Some(at);
                Some(at)
            }
        }
    }

    /// Gives every started awslogs container its shipper (once; a shipper that finished is
    /// not started again).
    fn start_log_shippers(&mut self) {
        let Some(logging) = self.shared.logs.clone() else {
            return;
        };
        for container in self.containers.values() {
            let (true, Some(id), Some(destination)) = (
                container.started,
                container.runtime_id.as_ref(),
                container.log_destination.as_ref(),
            ) else {
                continue;
            };
            if self.shippers.contains_key(id) {
                continue;
            }
            let shipper = Shipper::new(
                id,
                destination.clone(),
                self.shared.runtime.clone(),
                logging.sink.clone(),
                logging.checkpoints.clone(),
                self.shared.cancel.clone(),
            );
            let span = tracing::info_span!("log_shipper", task_arn = %self.task_arn, container = %container.name);
            let handle = self.shared.tracker.spawn(shipper.run().instrument(span));
            self.shippers.insert(id.clone(), handle);
        }
    }

    fn set_runtime_id(&mut self, name: &str, id: String) {
        if let Some(known) = self.containers.get_mut(name) {
            known.runtime_id = Some(id);
        }
    }

    fn fail_container(&mut self, name: &str, reason: String) {
        tracing::warn!(task_arn = %self.task_arn, container = %name, reason = %reason, "container failed");
        if let Some(known) = self.containers.get_mut(name) {
            known.set_reason(reason.clone());
            if !known.started {
                known.advance(ContainerPhase::Stopped);
            }
        }
        self.fail_to_start(reason);
    }

    async fn find_existing(&self, name: &str) -> Option<String> {
        let wanted = [
            (labels::TASK_ARN.to_string(), self.task_arn.clone()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (
                labels::CONTAINER_INSTANCE_ARN.to_string(),
                self.shared.config.container_instance_arn.clone(),
            ),
        ];
        let found = self.shared.runtime.list_containers(&wanted).await.ok()?;
        found.into_iter().next().map(|c| c.id)
    }

    fn owner_labels(&self, task: &AgentTask) -> BTreeMap<String, String> {
        let definition = &task.task_definition;
        BTreeMap::from([
            (labels::TASK_ARN.to_string(), self.task_arn.clone()),
            (
                labels::CLUSTER.to_string(),
                task.task
                    .cluster_arn
                    .clone()
                    .unwrap_or_else(|| self.shared.config.cluster.clone()),
            ),
            (
                labels::TASK_DEFINITION_FAMILY.to_string(),
                definition.family.clone().unwrap_or_default(),
            ),
            (
                labels::TASK_DEFINITION_VERSION.to_string(),
                definition.revision.unwrap_or(0).to_string(),
            ),
            (
                labels::CONTAINER_INSTANCE_ARN.to_string(),
                self.shared.config.container_instance_arn.clone(),
            ),
        ])
    }

    /// Creates a task-scoped volume, or checks (and autoprovisions) a shared one.
    async fn provision_volume(&mut self, plan: &VolumePlan) -> Result<(), String> {
        let runtime = &self.shared.runtime;
        let failed = |name: &str, error: RuntimeError| {
            format!("CannotCreateContainerError: cannot create volume {name}: {error}")
        };
        match plan {
            VolumePlan::HostPath(_) => Ok(()),
            VolumePlan::TaskScoped(spec) => {
                self.task_volumes.insert(spec.name.clone());
                runtime
                    .create_volume(spec)
                    .await
                    .map_err(|e| failed(&spec.name, e))
            }
            VolumePlan::Shared {
                spec,
                autoprovision,
            } => match runtime.volume_exists(&spec.name).await {
                Ok(true) => Ok(()),
                Ok(false) if *autoprovision => runtime
                    .create_volume(spec)
                    .await
                    .map_err(|e| failed(&spec.name, e)),
                Ok(false) => Err(format!(
                    "CannotCreateContainerError: shared volume {} does not exist and autoprovision is not enabled",
                    spec.name
                )),
                Err(error) => Err(failed(&spec.name, error)),
            },
        }
    }

    /// ACTIVATING → RUNNING: start every created container whose dependencies hold.
    async fn start_ready(&mut self) -> Step {
        let definitions = self.definitions();
        let now = Instant::now();
        let mut deadline: Option<Instant> = None;
        let mut started_any = false;
        for d in &definitions {
            let name = d.name.clone().unwrap_or_default();
            let Some(known) = self.containers.get(&name) else {
                continue;
            };
            if known.phase != ContainerPhase::Pending {
                continue;
            }
            let Some(id) = known.runtime_id.clone() else {
                continue;
            };
            let mut resolution = Resolution::Satisfied;
            for dependency in d.depends_on.iter().flatten() {
                let target_definition = self.definition(&dependency.container_name);
                let view = match self.containers.get(&dependency.container_name) {
                    Some(target) => target.target_view(target_definition.as_ref()),
                    None => {
                        resolution = Resolution::Failed(format!(
                            "dependency {} does not exist in the task",
                            dependency.container_name
                        ));
                        break;
                    }
                };
                match resolve(&dependency.condition, &view, now) {
                    Resolution::Satisfied => {}
                    failed @ Resolution::Failed(_) => {
                        resolution = failed;
                        break;
                    }
                    Resolution::Waiting { deadline: d } => {
                        resolution = match resolution {
                            Resolution::Waiting { deadline: previous } => Resolution::Waiting {
                                deadline: min_deadline(previous, d),
                            },
                            _ => Resolution::Waiting { deadline: d },
                        };
                    }
                }
            }
            match resolution {
                Resolution::Satisfied => match self.shared.runtime.start_container(&id).await {
                    Ok(()) => {
                        tracing::info!(task_arn = %self.task_arn, container = %name, "container started");
                        if let Some(known) = self.containers.get_mut(&name) {
                            known.started = true;
                            known.started_at = Some(Instant::now());
                            known.advance(ContainerPhase::Running);
                        }
                        started_any = true;
                    }
                    Err(error) => {
                        self.fail_container(&name, format!("CannotStartContainerError: {error}"));
                        return Step::Again;
                    }
                },
                Resolution::Waiting { deadline: d } => deadline = min_deadline(deadline, d),
                Resolution::Failed(message) => {
                    let reason = format!("DependencyNotResolved: container {name}: {message}");
                    self.fail_container(&name, reason);
                    return Step::Again;
                }
            }
        }
        if started_any {
            // Inspect what just started (published ports, early exits) before the task can be
            // RUNNING: the RUNNING report must carry the network bindings.
            return Step::Again;
        }
        let all_started = definitions.iter().all(|d| {
            d.name
                .as_ref()
                .and_then(|n| self.containers.get(n))
                .is_some_and(|c| c.started)
        });
        if all_started {
            if self.status < TaskStatus::Running {
                // A re-adopted task keeps the start time the server already has.
                let known = self.task.as_ref().and_then(|t| t.task.started_at);
                let now = self.shared.clock.now_seconds_f64();
                self.started_at.get_or_insert(known.unwrap_or(now));
            }
            self.advance(TaskStatus::Running);
        }
        Step::Wait(deadline)
    }

    /// DEACTIVATING → STOPPING → DEPROVISIONING → STOPPED.
    async fn stop_task(&mut self) -> Step {
        // Containers that started and exited before the loop saw them all running (a one-shot
        // `exit 3`) still ran: report RUNNING with its start time first, as ECS does, so the
        // task carries `startedAt`.
        if self.status < TaskStatus::Running
            && !self.containers.is_empty()
            && self.containers.values().all(|c| c.started)
        {
            let known = self.task.as_ref().and_then(|t| t.task.started_at);
            let now = self.shared.clock.now_seconds_f64();
            self.started_at.get_or_insert(known.unwrap_or(now));
            self.advance(TaskStatus::Running);
            self.report();
        }
        if self.status < TaskStatus::Deactivating {
            self.advance(TaskStatus::Deactivating);
            self.report();
        }
        self.advance(TaskStatus::Stopping);
        // Containers that never started are done.
        for container in self.containers.values_mut() {
            if !container.started {
                container.advance(ContainerPhase::Stopped);
            }
        }
        let definitions = self.definitions();
        let depends_on: BTreeMap<String, Vec<String>> = self
            .containers
            .keys()
            .map(|name| {
                let targets = definitions
                    .iter()
                    .find(|d| d.name.as_deref() == Some(name))
                    .and_then(|d| d.depends_on.clone())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|dep| dep.container_name)
                    .collect();
                (name.clone(), targets)
            })
            .collect();
        loop {
            let stopped: BTreeSet<String> = self
                .containers
                .iter()
                .filter(|(_, c)| c.phase == ContainerPhase::Stopped)
                .map(|(n, _)| n.clone())
                .collect();
            if stopped.len() == self.containers.len() {
                break;
            }
            let wave = stoppable(&depends_on, &stopped);
            let runtime = self.shared.runtime.clone();
            let default_timeout = self.shared.config.default_stop_timeout;
            let stops = wave.iter().filter_map(|name| {
                let id = self.containers.get(name)?.runtime_id.clone()?;
                let timeout = definitions
                    .iter()
                    .find(|d| d.name.as_deref() == Some(name))
                    .map(|d| spec::stop_timeout(d, default_timeout))
                    .unwrap_or(default_timeout);
                let runtime = runtime.clone();
                let name = name.clone();
                Some(async move {
                    tracing::info!(container = %name, timeout_s = timeout.as_secs(), "stopping container");
                    let result = runtime.stop_container(&id, timeout).await;
                    (name, result)
                })
            });
            let results = tokio::select! {
                results = join_all(stops) => results,
                _ = self.shared.cancel.cancelled() => return Step::Wait(None),
            };
            self.observe().await;
            for (name, result) in results {
                if let Err(error) = result {
                    if let Some(known) = self.containers.get_mut(&name) {
                        known.set_reason(format!("CannotStopContainerError: {error}"));
                    }
                }
            }
            // Whatever the engine says, a wave ends stopped: a container that cannot be
            // stopped must not hold the task in STOPPING forever (its reason says why).
            for name in &wave {
                if let Some(known) = self.containers.get_mut(name) {
                    known.advance(ContainerPhase::Stopped);
                }
            }
        }
        if let Some(pause) = self.pause.as_mut().filter(|p| !p.exited) {
            // Last: the task's containers needed its network until they stopped.
            let stopped = tokio::select! {
                stopped = self.shared.runtime.stop_container(&pause.id, PAUSE_STOP_TIMEOUT) => stopped,
                _ = self.shared.cancel.cancelled() => return Step::Wait(None),
            };
            match stopped {
                Ok(()) | Err(RuntimeError::NoSuchContainer { .. }) => {
                    pause.exited = true;
                    pause.pid = None;
                }
                Err(error) => {
                    tracing::warn!(task_arn = %self.task_arn, error = %error, "cannot stop the pause container");
                }
            }
        }
        self.advance(TaskStatus::Deprovisioning);
        for container in self.containers.values_mut() {
            for (protocol, port) in container.host_ports.drain(..) {
                self.shared.ports.release(protocol, port);
            }
        }
        self.execution_stopped_at
            .get_or_insert(self.shared.clock.now_seconds_f64());
        self.advance(TaskStatus::Stopped);
        Step::Stopped
    }

    fn report(&mut self) {
        if self.gone || self.status == TaskStatus::Provisioning {
            return;
        }
        let Some(task) = &self.task else {
            return;
        };
        let definitions = task
            .task_definition
            .container_definitions
            .clone()
            .unwrap_or_default();
        let report = build_report(&ReportInputs {
            cluster: &self.shared.config.cluster,
            task_arn: &self.task_arn,
            status: self.status,
            definitions: &definitions,
            containers: &self.containers,
            stop: self.stop.as_ref(),
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            started_at: self.started_at,
            execution_stopped_at: self.execution_stopped_at,
        });
        if self.last_report.as_ref() != Some(&report) {
            tracing::debug!(task_arn = %self.task_arn, last_status = %report.last_status, "reporting task state");
            self.shared.reports.submit(report.clone());
            self.last_report = Some(report);
        }
    }

    /// Keeps the stopped containers for inspection (logs, exit codes) for the cleanup delay,
    /// then removes them and the task's volumes, and forgets the task.
    async fn clean_up_after_retention(&mut self) {
        // Containers that ran and exited before the loop saw them still have logs to ship.
        self.start_log_shippers();
        tokio::select! {
            _ = self.shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(self.shared.config.task_cleanup_wait) => {}
        }
        // Removing a container deletes its log file: everything must be shipped first. A
        // shipper waits out an unreachable server, so this can take as long as the outage.
        for (id, shipper) in std::mem::take(&mut self.shippers) {
            tokio::select! {
                _ = self.shared.cancel.cancelled() => return,
                exit = shipper => {
                    if let Err(error) = exit {
                        tracing::warn!(task_arn = %self.task_arn, container_id = %id, error = %error, "log shipper failed");
                    }
                }
            }
        }
        let runtime = self.shared.runtime.clone();
        for container in self.containers.values() {
            if let Some(id) = &container.runtime_id {
                if let Err(error) = runtime.remove_container(id).await {
                    tracing::warn!(task_arn = %self.task_arn, container = %container.name, error = %error, "cannot remove container");
                }
                if let Some(logging) = &self.shared.logs {
                    logging.checkpoints.remove(id).await;
                }
            }
        }
        if let Some(pause) = &self.pause {
            if let Err(error) = runtime.remove_container(&pause.id).await {
                tracing::warn!(task_arn = %self.task_arn, error = %error, "cannot remove the pause container");
            }
        }
        if let Some(task) = &self.task {
            // Also the ones a previous agent process created (this one may not have).
            let owner_labels = self.owner_labels(task);
            for volume in task.task_definition.volumes.iter().flatten() {
                if let VolumePlan::TaskScoped(spec) =
                    spec::plan_volume(&task.task, &task.task_definition, volume, &owner_labels)
                {
                    self.task_volumes.insert(spec.name);
                }
            }
        }
        for name in &self.task_volumes {
            if let Err(error) = runtime.remove_volume(name).await {
                tracing::warn!(task_arn = %self.task_arn, volume = %name, error = %error, "cannot remove volume");
            }
        }
        tracing::info!(task_arn = %self.task_arn, "task cleaned up");
        self.shared.forget(&self.task_arn);
        if let Some(metadata) = &self.shared.config.metadata {
            metadata.forget_task(&self.task_arn);
        }
    }
}

impl TaskOwner {
    /// Hands the task metadata endpoint what this owner knows now (a re-adopted task only
    /// once the server said what it is).
    fn publish_metadata(&self) {
        let (Some(metadata), Some(task)) = (&self.shared.config.metadata, &self.task) else {
            return;
        };
        let definitions = self.definitions();
        let order = |name: &str| {
            definitions
                .iter()
                .position(|d| d.name.as_deref() == Some(name))
                .unwrap_or(usize::MAX)
        };
        let mut containers: Vec<_> = self
            .containers
            .values()
            .map(|c| crate::metadata::ContainerSnapshot {
                name: c.name.clone(),
                runtime_id: c.runtime_id.clone(),
                phase: c.phase,
                exit_code: c.exit_code,
                has_health_check: c.has_health_check,
                health: c.health,
                bindings: c.bindings.clone(),
            })
            .collect();
        containers.sort_by_key(|c| order(&c.name));
        metadata.publish(crate::metadata::TaskSnapshot {
            task: task.clone(),
            status: self.status,
            pull_started_at: self.pull_started_at,
            pull_stopped_at: self.pull_stopped_at,
            execution_stopped_at: self.execution_stopped_at,
            containers,
        });
    }
}

fn min_deadline(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Definitions ordered so that each `volumesFrom` source comes before its users (otherwise in
/// definition order).
fn creation_order(definitions: &[ContainerDefinition]) -> Vec<ContainerDefinition> {
    let mut ordered: Vec<ContainerDefinition> = Vec::new();
    let mut placed: BTreeSet<String> = BTreeSet::new();
    let mut remaining: Vec<ContainerDefinition> = definitions.to_vec();
    while !remaining.is_empty() {
        let before = remaining.len();
        remaining.retain(|d| {
            let ready = d.volumes_from.iter().flatten().all(|from| {
                from.source_container
                    .as_ref()
                    .is_none_or(|source| placed.contains(source))
            });
            if ready {
                placed.insert(d.name.clone().unwrap_or_default());
                ordered.push(d.clone());
            }
            !ready
        });
        if remaining.len() == before {
            // A missing source or a cycle: creating reports it with a clear reason.
            ordered.append(&mut remaining);
        }
    }
    ordered
}

/// Resolves once the desired state asks the task to stop.
async fn stop_requested(desired: &mut watch::Receiver<Desired>) {
    loop {
        if desired.borrow_and_update().requests_stop() {
            return;
        }
        if desired.changed().await.is_err() {
            // The engine is gone; cancellation ends the owner instead.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::ecs::task_definition::VolumeFrom;

    #[test]
    fn volumes_from_sources_are_created_first() {
        let definition = |name: &str, from: Option<&str>| ContainerDefinition {
            name: Some(name.into()),
            volumes_from: from.map(|f| {
                vec![VolumeFrom {
                    source_container: Some(f.into()),
                    read_only: None,
                }]
            }),
            ..Default::default()
        };
        let order: Vec<String> = creation_order(&[
            definition("app", Some("data")),
            definition("data", Some("seed")),
            definition("seed", None),
        ])
        .into_iter()
        .filter_map(|d| d.name)
        .collect();
        assert_eq!(order, vec!["seed", "data", "app"]);
    }
}
