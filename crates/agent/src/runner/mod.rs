//! The task runner: the [`TaskEngine`] keeps one owner (a tokio task, [`owner`]) per task of
//! this container instance, feeds owners the desired state from the server, wakes them on
//! container events, and re-adopts running containers after a restart.
//!
//! ```text
//!   PollTasks answer ──apply──> TaskEngine ──watch (desired)──> owner per task ──> ContainerRuntime
//!   engine events ───pump────>      │        ──notify (wake)──>       │
//!                                    └── tombstones of finished tasks  └──> ReportSink
//! ```
//!
//! Invariants: only an owner acts on its task's containers; the engine never does. Each engine
//! touches only containers labelled with its own container instance ARN. Every owner, every
//! log shipper and the event pump are spawned on the engine's `TaskTracker` and end on its
//! cancellation token; cancelling leaves containers running (an agent restart is a recovery,
//! not a restart).
//!
//! Log shipping (awslogs, see [`crate::logs`]): an engine started with
//! [`TaskEngine::start_with_log_sink`] gives every started awslogs container a shipper, owned
//! by the task's owner, which waits for it to finish before it removes the container.
//!
//! awsvpc tasks (see [`crate::network`]): the owner creates the task's pause container on its
//! subnet's network before the task's containers, which join its namespace, keeps the
//! security groups loaded there (re-applied when the server's answer changes them), and
//! stops and removes it after them. It carries the task's labels, so it is re-adopted too.
//!
//! What is persisted: only the log shippers' checkpoints (`log_checkpoint_dir`). After a
//! restart the containers' labels and the server's next answer rebuild every owner.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use model::agent::AgentTask;
use store::clock::Clock;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::labels;
use crate::logs::{CheckpointStore, LogSink};
use crate::reporter::ReportSink;
use crate::runtime::{ContainerRuntime, ImagePullBehavior, RuntimeError};

pub mod dependencies;
pub mod limits;
mod owner;
pub mod ports;
pub mod spec;
pub mod state;

pub use state::TaskStatus;

/// ECS's default dynamic port range (`ECS_DYNAMIC_HOST_PORT_RANGE`).
pub const DEFAULT_DYNAMIC_PORTS: RangeInclusive<u16> = 49153..=65535;
/// ECS's default stop timeout (`ECS_CONTAINER_STOP_TIMEOUT`).
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// ECS's default `ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION`.
pub const DEFAULT_TASK_CLEANUP_WAIT: Duration = Duration::from_secs(3 * 60 * 60);

/// How the engine runs tasks.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The cluster reports name (as the agent registered with it).
    pub cluster: String,
    /// This agent's container instance: every container it creates carries it as a label.
    pub container_instance_arn: String,
    pub dynamic_ports: RangeInclusive<u16>,
    /// How long stopped containers are kept before they are removed.
    pub task_cleanup_wait: Duration,
    /// Stop timeout of containers without `stopTimeout`.
    pub default_stop_timeout: Duration,
    pub image_pull_behavior: ImagePullBehavior,
    /// How often an owner re-inspects without being woken (a safety net for missed events).
    pub resync_interval: Duration,
    /// Where log shippers keep their checkpoints; `None` keeps them in memory (a new process
    /// then ships awslogs containers' logs from the start again).
    pub log_checkpoint_dir: Option<PathBuf>,
    /// The task metadata endpoint containers are given (`ECS_CONTAINER_METADATA_URI_V4`);
    /// `None` creates them without one.
    pub metadata: Option<crate::metadata::MetadataServer>,
}

impl EngineConfig {
    pub fn new(cluster: &str, container_instance_arn: &str) -> Self {
        Self {
            cluster: cluster.to_string(),
            container_instance_arn: container_instance_arn.to_string(),
            dynamic_ports: DEFAULT_DYNAMIC_PORTS,
            task_cleanup_wait: DEFAULT_TASK_CLEANUP_WAIT,
            default_stop_timeout: DEFAULT_STOP_TIMEOUT,
            image_pull_behavior: ImagePullBehavior::Default,
            resync_interval: Duration::from_secs(30),
            log_checkpoint_dir: None,
            metadata: None,
        }
    }
}

/// The desired state an owner is given.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Desired {
    /// Re-adopted after a restart; the server has not answered yet.
    Unknown,
    Task(Box<AgentTask>),
    /// The server no longer lists the task: it is STOPPED there.
    Gone,
}

impl Desired {
    fn requests_stop(&self) -> bool {
        match self {
            Desired::Unknown => false,
            Desired::Gone => true,
            Desired::Task(task) => task.task.desired_status.as_deref() == Some("STOPPED"),
        }
    }
}

struct OwnerHandle {
    desired: watch::Sender<Desired>,
    wake: Arc<Notify>,
}

/// What the engine and its owners share. Locks are never held across an await.
/// Where awslogs containers' output goes.
#[derive(Clone)]
pub(crate) struct LogShipping {
    pub(crate) sink: Arc<dyn LogSink>,
    pub(crate) checkpoints: CheckpointStore,
}

pub(crate) struct Shared {
    config: EngineConfig,
    /// `None`: awslogs containers run (on json-file) but nothing ships their output.
    logs: Option<LogShipping>,
    runtime: Arc<dyn ContainerRuntime>,
    clock: Arc<dyn Clock>,
    reports: Arc<dyn ReportSink>,
    ports: ports::PortAllocator,
    /// The pause image of awsvpc tasks, imported by the first task that needs it.
    pause_image: crate::network::pause::PauseImage,
    owners: Mutex<BTreeMap<String, OwnerHandle>>,
    /// Tasks whose owner finished (stopped and cleaned up) while the server still lists them
    /// (its STOPPED report may still be on its way): never start them again.
    finished: Mutex<BTreeSet<String>>,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    fn wake(&self, task_arn: &str) {
        if let Some(handle) = lock(&self.owners).get(task_arn) {
            handle.wake.notify_one();
        }
    }

    fn wake_all(&self) {
        for handle in lock(&self.owners).values() {
            handle.wake.notify_one();
        }
    }

    /// Called by an owner when it is done with its task.
    fn forget(&self, task_arn: &str) {
        // Both locks at once, in `apply`'s order: between a separate remove and insert, an
        // `apply` that still lists the task would see neither and start it again.
        let mut owners = lock(&self.owners);
        let mut finished = lock(&self.finished);
        owners.remove(task_arn);
        finished.insert(task_arn.to_string());
    }

    fn spawn_owner(
        self: &Arc<Self>,
        owners: &mut BTreeMap<String, OwnerHandle>,
        task_arn: &str,
        desired: Desired,
        adopted: Vec<(String, String)>,
    ) {
        let (sender, receiver) = watch::channel(desired);
        let wake = Arc::new(Notify::new());
        let owner = owner::TaskOwner::new(
            task_arn.to_string(),
            self.clone(),
            receiver,
            wake.clone(),
            adopted,
        );
        let span = tracing::info_span!("task_owner", task_arn = %task_arn);
        self.tracker.spawn(owner.run().instrument(span));
        owners.insert(
            task_arn.to_string(),
            OwnerHandle {
                desired: sender,
                wake,
            },
        );
    }
}

/// Runs the tasks of one container instance. Cheap to clone.
#[derive(Clone)]
pub struct TaskEngine {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TaskEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskEngine")
            .field("config", &self.shared.config)
            .field("tasks", &self.task_arns())
            .finish()
    }
}

impl TaskEngine {
    /// Starts the engine (and its engine-event pump). It runs until `cancel` fires; then
    /// [`shutdown`](Self::shutdown) waits for its tasks. awslogs containers run, but their
    /// output stays in the engine: see [`start_with_log_sink`](Self::start_with_log_sink).
    pub fn start(
        config: EngineConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        reports: Arc<dyn ReportSink>,
        cancel: CancellationToken,
    ) -> Self {
        Self::start_inner(config, runtime, clock, reports, None, cancel)
    }

    /// Like [`start`](Self::start), and ships awslogs containers' output to `logs`.
    pub fn start_with_log_sink(
        config: EngineConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        reports: Arc<dyn ReportSink>,
        logs: Arc<dyn LogSink>,
        cancel: CancellationToken,
    ) -> Self {
        let checkpoints = match &config.log_checkpoint_dir {
            Some(dir) => CheckpointStore::in_dir(dir.clone()),
            None => CheckpointStore::in_memory(),
        };
        let shipping = LogShipping {
            sink: logs,
            checkpoints,
        };
        Self::start_inner(config, runtime, clock, reports, Some(shipping), cancel)
    }

    fn start_inner(
        config: EngineConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        reports: Arc<dyn ReportSink>,
        logs: Option<LogShipping>,
        cancel: CancellationToken,
    ) -> Self {
        let shared = Arc::new(Shared {
            ports: ports::PortAllocator::new(config.dynamic_ports.clone()),
            pause_image: crate::network::pause::PauseImage::new(),
            config,
            logs,
            runtime,
            clock,
            reports,
            owners: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(BTreeSet::new()),
            cancel,
            tracker: TaskTracker::new(),
        });
        shared
            .tracker
            .spawn(pump_events(shared.clone()).instrument(tracing::info_span!("engine_events")));
        Self { shared }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    /// Re-adopts the containers labelled with this instance's ARN: one owner per task, which
    /// watches its containers and waits for the server's desired state before acting. Nothing
    /// is started or stopped here. Returns how many tasks were adopted.
    pub async fn adopt(&self) -> Result<usize, RuntimeError> {
        let wanted = [(
            labels::CONTAINER_INSTANCE_ARN.to_string(),
            self.shared.config.container_instance_arn.clone(),
        )];
        let found = self.shared.runtime.list_containers(&wanted).await?;
        let mut tasks: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for container in found {
            let (Some(task_arn), Some(name)) = (
                container.labels.get(labels::TASK_ARN),
                container.labels.get(labels::CONTAINER_NAME),
            ) else {
                continue;
            };
            tasks
                .entry(task_arn.clone())
                .or_default()
                .push((name.clone(), container.id.clone()));
        }
        let mut owners = lock(&self.shared.owners);
        let mut adopted = 0;
        for (task_arn, containers) in tasks {
            if owners.contains_key(&task_arn) {
                continue;
            }
            tracing::info!(task_arn = %task_arn, containers = containers.len(), "re-adopting task");
            self.shared
                .spawn_owner(&mut owners, &task_arn, Desired::Unknown, containers);
            adopted += 1;
        }
        Ok(adopted)
    }

    /// Takes the full set of tasks the server wants this instance to care about (a PollTasks
    /// answer): new tasks get an owner, known ones their new desired state, and owners of
    /// tasks no longer listed are told their task is gone.
    pub fn apply(&self, tasks: Vec<AgentTask>) {
        let mut owners = lock(&self.shared.owners);
        let mut finished = lock(&self.shared.finished);
        let mut listed: BTreeSet<String> = BTreeSet::new();
        for task in tasks {
            let Some(task_arn) = task.task.task_arn.clone() else {
                continue;
            };
            listed.insert(task_arn.clone());
            let desired = Desired::Task(Box::new(task));
            if let Some(handle) = owners.get(&task_arn) {
                handle.desired.send_if_modified(|current| {
                    if *current == desired {
                        false
                    } else {
                        *current = desired;
                        true
                    }
                });
                continue;
            }
            if finished.contains(&task_arn) {
                continue;
            }
            tracing::info!(task_arn = %task_arn, "new task");
            self.shared
                .spawn_owner(&mut owners, &task_arn, desired, Vec::new());
        }
        for (task_arn, handle) in owners.iter() {
            if !listed.contains(task_arn) {
                handle.desired.send_if_modified(|current| {
                    if *current == Desired::Gone {
                        false
                    } else {
                        tracing::info!(task_arn = %task_arn, "task no longer listed by the server");
                        *current = Desired::Gone;
                        true
                    }
                });
            }
        }
        finished.retain(|task_arn| listed.contains(task_arn));
    }

    /// The tasks that have an owner now.
    pub fn task_arns(&self) -> Vec<String> {
        lock(&self.shared.owners).keys().cloned().collect()
    }

    /// Host ports currently reserved for tasks.
    pub fn ports_in_use(&self) -> usize {
        self.shared.ports.in_use()
    }

    /// Cancels the engine and waits for its owners and pump to end. Containers keep running.
    pub async fn shutdown(&self) {
        self.shared.cancel.cancel();
        self.shared.tracker.close();
        self.shared.tracker.wait().await;
    }
}

/// Routes engine events to the owners of the tasks they concern. After every (re)subscription
/// every owner is woken, since events may have been missed in between.
async fn pump_events(shared: Arc<Shared>) {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    let ours = shared.config.container_instance_arn.clone();
    loop {
        let mut events = shared.runtime.events();
        shared.wake_all();
        loop {
            let item = tokio::select! {
                _ = shared.cancel.cancelled() => return,
                item = events.next() => item,
            };
            match item {
                Some(Ok(event)) => {
                    backoff.reset();
                    if event.labels.get(labels::CONTAINER_INSTANCE_ARN) != Some(&ours) {
                        continue;
                    }
                    if let Some(task_arn) = event.labels.get(labels::TASK_ARN) {
                        tracing::debug!(task_arn = %task_arn, container_id = %event.container_id, kind = ?event.kind, "engine event");
                        shared.wake(task_arn);
                    }
                }
                Some(Err(error)) => {
                    tracing::warn!(error = %error, "engine event stream failed, resubscribing");
                    break;
                }
                None => {
                    tracing::debug!("engine event stream ended, resubscribing");
                    break;
                }
            }
        }
        let delay = backoff.next_delay();
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}
