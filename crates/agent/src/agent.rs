//! The agent process: [`AgentConfig`] and [`Agent::run`].
//!
//! Start-up, in this order:
//! 1. load (or create) the identity in the data directory;
//! 2. if it registered before, re-adopt the containers labelled with its container instance
//!    ARN — before anything else, so nothing that was running is started again;
//! 3. create the cluster if missing (`CreateCluster` is idempotent) and register
//!    (`RegisterContainerInstance`, with the previous ARN so the identity is kept); persist the
//!    ARN;
//! 4. run, until cancelled: the heartbeat, the `PollTasks` long poll (a watch with resync:
//!    every answer is the full set of tasks, applied to the task engine), the reporter that
//!    delivers `ReportTaskState`, the statistics sampler (`ReportTaskStats`), and the task
//!    engine, which ships awslogs containers' output to CloudWatch Logs on the same endpoint
//!    (from step 2 on: re-adopted containers' logs are shipped before registration).
//!
//! While the server is unreachable the tasks keep running; polls and reports retry with
//! backoff and catch up when it returns. Cancelling stops the agent, not its containers.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use model::agent::{
    HeartbeatInput, PollTasksInput, PollTasksOutput, HEARTBEAT_INTERVAL_SECONDS,
    MAX_POLL_WAIT_SECONDS, STATS_REPORT_INTERVAL_SECONDS, STATS_SAMPLE_INTERVAL_SECONDS,
};
use model::ecs::attribute::Attribute;
use model::ecs::container_instance::{ContainerInstance, Resource, VersionInfo};
use store::clock::Clock;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::client::{AgentCredentials, ClientError, ServerClient, Service};
use crate::host;
use crate::identity::{Identity, IdentityError};
use crate::metadata::{MetadataConfig, MetadataServer};
use crate::reporter::ServerReporter;
use crate::runner::{self, EngineConfig, TaskEngine};
use crate::runtime::{ContainerRuntime, EngineVersion, ImagePullBehavior, RuntimeError};
use crate::stats::{StatsConfig, StatsSampler};

/// What kind of capacity the agent's instance is. A Fargate agent registers with the
/// attribute `wharf.capacity-type=FARGATE`, so the control plane can place FARGATE tasks on
/// it (EC2 agents say `EC2`). FARGATE tasks get their task size as container limits on any
/// agent (see `runner::limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CapacityType {
    #[default]
    Ec2,
    Fargate,
}

impl CapacityType {
    /// The attribute's value.
    pub fn as_str(self) -> &'static str {
        match self {
            CapacityType::Ec2 => "EC2",
            CapacityType::Fargate => "FARGATE",
        }
    }
}

/// The attribute naming an instance's [`CapacityType`].
pub const CAPACITY_TYPE_ATTRIBUTE: &str = "wharf.capacity-type";

/// Everything an agent is configured with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The Wharf endpoint, e.g. `http://127.0.0.1:4566`.
    pub server_url: String,
    /// Cluster name (or ARN); created if missing. Default `default`.
    pub cluster: String,
    /// Custom attributes (`--attribute KEY=VALUE`).
    pub attributes: Vec<(String, String)>,
    /// Where the identity (`agent-state.json`) and the log shippers' checkpoints (`logs/`)
    /// live.
    pub data_dir: PathBuf,
    pub credentials: AgentCredentials,
    /// The signing region. Default `us-east-1`.
    pub region: String,
    /// CPU units to register instead of cores × 1024.
    pub cpu_units: Option<i64>,
    /// Memory (MiB) to register instead of the host's.
    pub memory_mib: Option<i64>,
    /// Held back from tasks (`ECS_RESERVED_CPU`-like).
    pub reserved_cpu_units: i64,
    /// Held back from tasks (`ECS_RESERVED_MEMORY`).
    pub reserved_memory_mib: i64,
    /// Registered as `PORTS` (default ECS's 22, 2375, 2376, 51678, 51679).
    pub reserved_ports: Vec<u16>,
    /// Registered as `PORTS_UDP`.
    pub reserved_udp_ports: Vec<u16>,
    /// Where dynamic host ports come from (default 49153–65535).
    pub dynamic_ports: RangeInclusive<u16>,
    /// `ecs.instance-type`. Default `wharf.local`.
    pub instance_type: String,
    /// `ecs.availability-zone`. Default `<region>a`.
    pub availability_zone: Option<String>,
    /// How long stopped containers are kept (default 3 h).
    pub task_cleanup_wait: Duration,
    /// Stop timeout of containers without `stopTimeout` (default 30 s).
    pub default_stop_timeout: Duration,
    pub image_pull_behavior: ImagePullBehavior,
    /// EC2 (default) or Fargate capacity: registered as `wharf.capacity-type`.
    pub capacity_type: CapacityType,
    /// Default `HEARTBEAT_INTERVAL_SECONDS`.
    pub heartbeat_interval: Duration,
    /// How long one PollTasks waits (default `MAX_POLL_WAIT_SECONDS`).
    pub poll_wait: Duration,
    /// How often running containers' resource usage is read (default
    /// `STATS_SAMPLE_INTERVAL_SECONDS`); zero turns statistics off.
    pub stats_sample_interval: Duration,
    /// How often the samples are sent with `ReportTaskStats` (default
    /// `STATS_REPORT_INTERVAL_SECONDS`).
    pub stats_report_interval: Duration,
    /// Whether containers get the task metadata endpoint (`ECS_CONTAINER_METADATA_URI_V4`).
    /// Default on.
    pub task_metadata: bool,
    /// The port the task metadata endpoint listens on at each network gateway; 0 (the
    /// default) lets the OS pick one.
    pub task_metadata_port: u16,
    /// The IPv4 address load balancers reach this host's published ports on (`privateIp` of
    /// the identity document; instance targets resolve to it). Default `127.0.0.1`.
    pub host_address: String,
}

impl AgentConfig {
    /// A configuration with ECS's defaults.
    pub fn new(server_url: &str, credentials: AgentCredentials, data_dir: PathBuf) -> Self {
        Self {
            server_url: server_url.to_string(),
            cluster: "default".to_string(),
            attributes: Vec::new(),
            data_dir,
            credentials,
            region: "us-east-1".to_string(),
            cpu_units: None,
            memory_mib: None,
            reserved_cpu_units: 0,
            reserved_memory_mib: 0,
            reserved_ports: host::DEFAULT_RESERVED_PORTS.to_vec(),
            reserved_udp_ports: Vec::new(),
            dynamic_ports: runner::DEFAULT_DYNAMIC_PORTS,
            instance_type: "wharf.local".to_string(),
            availability_zone: None,
            task_cleanup_wait: runner::DEFAULT_TASK_CLEANUP_WAIT,
            default_stop_timeout: runner::DEFAULT_STOP_TIMEOUT,
            image_pull_behavior: ImagePullBehavior::Default,
            capacity_type: CapacityType::Ec2,
            heartbeat_interval: Duration::from_secs(HEARTBEAT_INTERVAL_SECONDS),
            poll_wait: Duration::from_secs(MAX_POLL_WAIT_SECONDS),
            stats_sample_interval: Duration::from_secs(STATS_SAMPLE_INTERVAL_SECONDS),
            stats_report_interval: Duration::from_secs(STATS_REPORT_INTERVAL_SECONDS),
            task_metadata: true,
            task_metadata_port: 0,
            host_address: "127.0.0.1".to_string(),
        }
    }

    pub fn availability_zone(&self) -> String {
        self.availability_zone
            .clone()
            .unwrap_or_else(|| format!("{}a", self.region))
    }

    fn metadata_config(&self) -> MetadataConfig {
        MetadataConfig {
            port: self.task_metadata_port,
            ..MetadataConfig::new(&self.cluster, &self.availability_zone())
        }
    }

    fn engine_config(
        &self,
        container_instance_arn: &str,
        metadata: Option<&MetadataServer>,
    ) -> EngineConfig {
        EngineConfig {
            dynamic_ports: self.dynamic_ports.clone(),
            task_cleanup_wait: self.task_cleanup_wait,
            default_stop_timeout: self.default_stop_timeout,
            image_pull_behavior: self.image_pull_behavior,
            log_checkpoint_dir: Some(self.data_dir.join("logs")),
            metadata: metadata.cloned(),
            ..EngineConfig::new(&self.cluster, container_instance_arn)
        }
    }

    fn stats_config(&self, container_instance_arn: &str) -> StatsConfig {
        StatsConfig {
            sample_interval: self.stats_sample_interval,
            report_interval: self.stats_report_interval,
            ..StatsConfig::new(&self.cluster, container_instance_arn)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("cannot talk to the server: {0}")]
    Client(#[source] ClientError),
    #[error("cannot re-adopt containers: {0}")]
    Adopt(#[source] RuntimeError),
    #[error("cannot create cluster {cluster}: {source}")]
    CreateCluster {
        cluster: String,
        #[source]
        source: ClientError,
    },
    #[error("cannot register the container instance in cluster {cluster}: {source}")]
    Register {
        cluster: String,
        #[source]
        source: ClientError,
    },
    #[error("the server's RegisterContainerInstance answer has no containerInstanceArn")]
    NoInstanceArn,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct CreateClusterInput<'a> {
    cluster_name: &'a str,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct RegisterContainerInstanceInput {
    cluster: String,
    instance_identity_document: String,
    total_resources: Vec<Resource>,
    version_info: VersionInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    container_instance_arn: Option<String>,
    attributes: Vec<Attribute>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterContainerInstanceOutput {
    container_instance: Option<ContainerInstance>,
}

const ECS_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The container-instance agent.
#[derive(Debug)]
pub struct Agent;

impl Agent {
    /// Runs the agent until `cancel` fires (then returns `Ok`), or until it fails to start:
    /// a broken data directory, or a server that refuses the cluster or the registration.
    /// Unreachable servers and engines are retried, not failures.
    pub async fn run(
        config: AgentConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
    ) -> Result<(), AgentError> {
        // The metadata endpoint outlives the task engines (their owners register with it) and
        // is shut down after them, whichever way the agent ends.
        let metadata = config.task_metadata.then(|| {
            MetadataServer::new(
                config.metadata_config(),
                runtime.clone(),
                cancel.child_token(),
            )
        });
        let result = Self::run_engines(config, runtime, clock, cancel, metadata.as_ref()).await;
        if let Some(metadata) = &metadata {
            metadata.shutdown().await;
        }
        result
    }

    async fn run_engines(
        config: AgentConfig,
        runtime: Arc<dyn ContainerRuntime>,
        clock: Arc<dyn Clock>,
        cancel: CancellationToken,
        metadata: Option<&MetadataServer>,
    ) -> Result<(), AgentError> {
        let mut identity = Identity::load_or_create(&config.data_dir)?;
        let client = ServerClient::new(
            &config.server_url,
            config.credentials.clone(),
            &config.region,
        )
        .map_err(AgentError::Client)?;
        let reporter = ServerReporter::new();

        // Re-adoption comes first: before the server is even asked anything.
        let previous_arn = identity.arn_for(&config.cluster).map(str::to_string);
        let mut adopted_engine = None;
        if let Some(arn) = &previous_arn {
            let engine = TaskEngine::start_with_log_sink(
                config.engine_config(arn, metadata),
                runtime.clone(),
                clock.clone(),
                reporter.clone(),
                Arc::new(client.clone()),
                cancel.child_token(),
            );
            let adopted = retry_runtime(&cancel, "list containers", || engine.adopt()).await;
            match adopted {
                Some(Ok(count)) => {
                    tracing::info!(container_instance_arn = %arn, tasks = count, "re-adopted running tasks")
                }
                Some(Err(error)) => return Err(AgentError::Adopt(error)),
                None => {
                    engine.shutdown().await;
                    return Ok(());
                }
            }
            adopted_engine = Some(engine);
        }

        let Some(engine_version) = retry_runtime(&cancel, "engine version", || runtime.version())
            .await
            .map(|r| {
                r.unwrap_or_else(|_| EngineVersion {
                    version: String::new(),
                    api_version: String::new(),
                })
            })
        else {
            shutdown_engines(adopted_engine.as_ref(), None).await;
            return Ok(());
        };

        let registered = tokio::select! {
            _ = cancel.cancelled() => None,
            registered = register(&client, &config, &identity, previous_arn.clone(), &engine_version) => Some(registered),
        };
        let arn = match registered {
            None => {
                shutdown_engines(adopted_engine.as_ref(), None).await;
                return Ok(());
            }
            Some(Err(error)) => {
                shutdown_engines(adopted_engine.as_ref(), None).await;
                return Err(error);
            }
            Some(Ok(arn)) => arn,
        };
        identity.cluster = Some(config.cluster.clone());
        identity.container_instance_arn = Some(arn.clone());
        identity.save(&config.data_dir)?;
        tracing::info!(container_instance_arn = %arn, cluster = %config.cluster, "registered");

        // The same ARN: the adopted engine is the engine. A new one: the old instance is gone
        // on the server, so its containers are stopped (after the server's first answer they
        // would be anyway) and a fresh engine serves the new ARN.
        let (engine, orphaned) = match adopted_engine {
            Some(engine) if engine.config().container_instance_arn == arn => (engine, None),
            other => {
                if let Some(old) = &other {
                    tracing::warn!(old = %old.config().container_instance_arn, new = %arn, "registered under a new container instance ARN; stopping the old instance's tasks");
                    old.apply(Vec::new());
                }
                let engine = TaskEngine::start_with_log_sink(
                    config.engine_config(&arn, metadata),
                    runtime.clone(),
                    clock.clone(),
                    reporter.clone(),
                    Arc::new(client.clone()),
                    cancel.child_token(),
                );
                (engine, other)
            }
        };

        let tracker = TaskTracker::new();
        tracker.spawn(
            reporter
                .clone()
                .run(client.clone(), cancel.clone())
                .instrument(tracing::info_span!("reporter")),
        );
        tracker.spawn(
            heartbeat(client.clone(), config.clone(), arn.clone(), cancel.clone())
                .instrument(tracing::info_span!("heartbeat")),
        );
        let sampler = StatsSampler::new(
            config.stats_config(&arn),
            runtime.clone(),
            clock.clone(),
            Arc::new(client.clone()),
        );
        tracker.spawn(
            sampler
                .run(cancel.clone())
                .instrument(tracing::info_span!("task_stats")),
        );
        tracker.spawn(
            poll_tasks(client, config.clone(), arn, engine.clone(), cancel.clone())
                .instrument(tracing::info_span!("poll_tasks")),
        );
        tracker.close();
        cancel.cancelled().await;
        tracker.wait().await;
        shutdown_engines(Some(&engine), orphaned.as_ref()).await;
        tracing::info!("agent stopped; containers keep running");
        Ok(())
    }
}

async fn shutdown_engines(first: Option<&TaskEngine>, second: Option<&TaskEngine>) {
    for engine in [first, second].into_iter().flatten() {
        engine.shutdown().await;
    }
}

/// Retries an engine call while the engine is unreachable. `None` when cancelled.
async fn retry_runtime<T, F, Fut>(
    cancel: &CancellationToken,
    what: &str,
    mut call: F,
) -> Option<Result<T, RuntimeError>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RuntimeError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        let result = tokio::select! {
            _ = cancel.cancelled() => return None,
            result = call() => result,
        };
        match result {
            Err(error @ (RuntimeError::Unavailable { .. } | RuntimeError::Timeout { .. })) => {
                tracing::warn!(call = what, error = %error, "container engine unavailable, retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return None,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
            other => return Some(other),
        }
    }
}

/// Retries a server call while the error is retryable.
async fn retry_server<T, F, Fut>(what: &str, mut call: F) -> Result<T, ClientError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(15));
    loop {
        match call().await {
            Err(error) if error.is_retryable() => {
                tracing::warn!(call = what, error = %error, "server call failed, retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            other => return other,
        }
    }
}

fn registration_input(
    config: &AgentConfig,
    identity: &Identity,
    previous_arn: Option<String>,
    engine: &EngineVersion,
) -> RegisterContainerInstanceInput {
    let availability_zone = config.availability_zone();
    let document = serde_json::json!({
        "instanceId": identity.instance_id,
        "availabilityZone": availability_zone,
        "instanceType": config.instance_type,
        "privateIp": config.host_address,
        "region": config.region,
        "architecture": host::cpu_architecture(),
    });
    let cpu = config.cpu_units.unwrap_or_else(host::host_cpu_units) - config.reserved_cpu_units;
    let memory = config
        .memory_mib
        .or_else(host::host_memory_mib)
        .unwrap_or(0)
        - config.reserved_memory_mib;
    let attribute = |name: &str, value: Option<&str>| Attribute {
        name: name.to_string(),
        value: value.map(str::to_string),
        target_type: None,
        target_id: None,
    };
    let mut attributes = vec![
        attribute("ecs.os-type", Some("linux")),
        attribute("ecs.cpu-architecture", Some(host::cpu_architecture())),
        attribute("ecs.availability-zone", Some(&availability_zone)),
        attribute("ecs.instance-type", Some(&config.instance_type)),
        attribute(CAPACITY_TYPE_ATTRIBUTE, Some(config.capacity_type.as_str())),
    ];
    attributes.extend(
        host::capability_attributes(&engine.api_version)
            .iter()
            .map(|name| attribute(name, None)),
    );
    for (name, value) in &config.attributes {
        attributes.retain(|a| &a.name != name);
        attributes.push(attribute(name, Some(value)));
    }
    RegisterContainerInstanceInput {
        cluster: config.cluster.clone(),
        instance_identity_document: document.to_string(),
        total_resources: host::total_resources(
            cpu,
            memory,
            &config.reserved_ports,
            &config.reserved_udp_ports,
        ),
        version_info: VersionInfo {
            agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            agent_hash: None,
            docker_version: Some(if engine.version.is_empty() {
                "unknown".to_string()
            } else {
                format!("DockerVersion: {}", engine.version)
            }),
        },
        container_instance_arn: previous_arn,
        attributes,
    }
}

/// CreateCluster (unless the cluster is given as an ARN), then RegisterContainerInstance.
async fn register(
    client: &ServerClient,
    config: &AgentConfig,
    identity: &Identity,
    previous_arn: Option<String>,
    engine: &EngineVersion,
) -> Result<String, AgentError> {
    if !config.cluster.starts_with("arn:") {
        let input = CreateClusterInput {
            cluster_name: &config.cluster,
        };
        retry_server("CreateCluster", || {
            client.call::<_, serde_json::Value>(
                Service::Ecs,
                "CreateCluster",
                &input,
                ECS_CALL_TIMEOUT,
            )
        })
        .await
        .map_err(|source| AgentError::CreateCluster {
            cluster: config.cluster.clone(),
            source,
        })?;
    }
    let register_with = |previous_arn: Option<String>| {
        let input = registration_input(config, identity, previous_arn, engine);
        async move {
            retry_server("RegisterContainerInstance", || {
                client.call::<_, RegisterContainerInstanceOutput>(
                    Service::Ecs,
                    "RegisterContainerInstance",
                    &input,
                    ECS_CALL_TIMEOUT,
                )
            })
            .await
        }
    };
    let output = match register_with(previous_arn.clone()).await {
        // The server no longer knows the previous instance (deregistered, or its state was
        // reset): register as a new one rather than give up; the old instance's containers
        // are then stopped by the caller.
        Err(error) if previous_arn.is_some() && !error.is_retryable() => {
            tracing::warn!(error = %error, "re-registration under the previous ARN refused; registering as a new instance");
            register_with(None).await
        }
        other => other,
    }
    .map_err(|source| AgentError::Register {
        cluster: config.cluster.clone(),
        source,
    })?;
    output
        .container_instance
        .and_then(|instance| instance.container_instance_arn)
        .ok_or(AgentError::NoInstanceArn)
}

async fn heartbeat(
    client: ServerClient,
    config: AgentConfig,
    arn: String,
    cancel: CancellationToken,
) {
    let input = HeartbeatInput {
        cluster: config.cluster.clone(),
        container_instance_arn: arn,
    };
    let mut ticks = tokio::time::interval(config.heartbeat_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let sent = tokio::select! {
            _ = cancel.cancelled() => return,
            sent = client.call::<_, serde_json::Value>(Service::Agent, "Heartbeat", &input, config.heartbeat_interval) => sent,
        };
        if let Err(error) = sent {
            tracing::warn!(error = %error, "heartbeat failed");
        }
    }
}

/// The long-lived watch: each answer is the full set of tasks, so each is also a resync; on
/// errors it backs off and asks again from the last revision it saw.
async fn poll_tasks(
    client: ServerClient,
    config: AgentConfig,
    arn: String,
    engine: TaskEngine,
    cancel: CancellationToken,
) {
    let mut since_revision = 0;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(15));
    let timeout = config.poll_wait + Duration::from_secs(15);
    loop {
        let input = PollTasksInput {
            cluster: config.cluster.clone(),
            container_instance_arn: arn.clone(),
            since_revision,
            wait_seconds: config.poll_wait.as_secs(),
        };
        let answer = tokio::select! {
            _ = cancel.cancelled() => return,
            answer = client.call::<_, PollTasksOutput>(Service::Agent, "PollTasks", &input, timeout) => answer,
        };
        match answer {
            Ok(output) => {
                backoff.reset();
                tracing::debug!(
                    revision = output.revision,
                    tasks = output.tasks.len(),
                    "desired tasks"
                );
                since_revision = output.revision;
                engine.apply(output.tasks);
            }
            Err(error) => {
                tracing::warn!(error = %error, "poll for tasks failed, retrying");
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registration_carries_identity_resources_and_attributes() {
        let mut config = AgentConfig::new(
            "http://127.0.0.1:1",
            AgentCredentials {
                access_key_id: "AKIA".into(),
                secret_access_key: "s".into(),
            },
            PathBuf::from("/tmp/unused"),
        );
        config.cpu_units = Some(4096);
        config.memory_mib = Some(8000);
        config.reserved_memory_mib = 256;
        config.attributes = vec![("stack".into(), "blue".into())];
        let identity = Identity {
            instance_id: "i-0123456789abcdef0".into(),
            cluster: None,
            container_instance_arn: None,
        };
        let input = registration_input(
            &config,
            &identity,
            Some("arn:previous".into()),
            &EngineVersion {
                version: "20.10.24".into(),
                api_version: "1.41".into(),
            },
        );
        let json = serde_json::to_value(&input).expect("serializes");
        let document: serde_json::Value = serde_json::from_str(
            json["instanceIdentityDocument"]
                .as_str()
                .expect("a JSON string"),
        )
        .expect("parses");
        assert_eq!(document["instanceId"], "i-0123456789abcdef0");
        assert_eq!(document["availabilityZone"], "us-east-1a");
        assert_eq!(document["instanceType"], "wharf.local");
        assert_eq!(document["privateIp"], "127.0.0.1");
        assert_eq!(json["containerInstanceArn"], "arn:previous");
        assert_eq!(json["totalResources"][0]["integerValue"], 4096);
        assert_eq!(json["totalResources"][1]["integerValue"], 7744);
        assert_eq!(
            json["versionInfo"]["agentVersion"],
            env!("CARGO_PKG_VERSION")
        );
        let names: Vec<&str> = input.attributes.iter().map(|a| a.name.as_str()).collect();
        for expected in [
            "ecs.os-type",
            "ecs.cpu-architecture",
            "ecs.availability-zone",
            "ecs.instance-type",
            "stack",
        ] {
            assert!(names.contains(&expected), "{expected} missing");
        }
        let capacity = |input: &RegisterContainerInstanceInput| {
            input
                .attributes
                .iter()
                .find(|a| a.name == CAPACITY_TYPE_ATTRIBUTE)
                .and_then(|a| a.value.clone())
        };
        assert_eq!(capacity(&input).as_deref(), Some("EC2"));
        config.capacity_type = CapacityType::Fargate;
        let fargate = registration_input(
            &config,
            &identity,
            None,
            &EngineVersion {
                version: "20.10.24".into(),
                api_version: "1.41".into(),
            },
        );
        assert_eq!(capacity(&fargate).as_deref(), Some("FARGATE"));
    }
}
