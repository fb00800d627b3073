//! A deterministic in-process cluster for controller scenarios: the real server (in-memory
//! store, a `ManualClock` the test moves) and real agents running on `agent::FakeRuntime`, so
//! every container's fate (exit, health, kill) is decided by the test. Agents, server and the
//! AWS SDK client talk over loopback HTTP as in production; only Docker and time are fakes.
//!
//! Controllers run with short periods so that scenarios take milliseconds to settle;
//! everything time-based in the control plane (grace periods, backoff) reads the manual clock.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent::runtime::fake::FakeBehavior;
use agent::runtime::HealthState;
use agent::{Agent, AgentConfig, AgentCredentials, AgentError, FakeRuntime};
use aws_sdk_ecs::types::{ContainerDefinition, DesiredStatus, HealthCheck, Service, Task};
use controlplane::{Credentials, InstanceHealthSettings, Server, ServerConfig, ServiceSettings};
use store::clock::{Clock, ManualClock, SystemClock};
use store::MemoryStore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const IMAGE: &str = "wharf-test/busybox:latest";
pub const WAIT: Duration = Duration::from_secs(30);

/// The scheduler's pacing for scenarios: quick resyncs, a short backoff.
pub fn fast_settings() -> ServiceSettings {
    ServiceSettings {
        resync: Duration::from_millis(100),
        restart_backoff_base: Duration::from_secs(2),
        restart_backoff_max: Duration::from_secs(8),
        event_repeat: Duration::from_secs(60),
    }
}

pub struct TestAgent {
    pub runtime: FakeRuntime,
    pub arn: String,
    pub zone: String,
    cancel: CancellationToken,
    handle: Option<JoinHandle<Result<(), AgentError>>>,
    _dir: tempfile::TempDir,
}

pub struct Cluster {
    server: Option<Server>,
    pub addr: SocketAddr,
    pub store: Arc<MemoryStore>,
    pub clock: Arc<ManualClock>,
    pub credentials: Credentials,
    pub ecs: aws_sdk_ecs::Client,
    pub agents: Vec<TestAgent>,
    settings: ServiceSettings,
}

async fn boot(
    listen: SocketAddr,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
    credentials: &Credentials,
    settings: &ServiceSettings,
) -> Server {
    let config = ServerConfig {
        listen,
        region: "us-east-1".to_string(),
        account_id: "123456789012".to_string(),
        credentials: vec![credentials.clone()],
        instance_health: InstanceHealthSettings {
            period: Duration::from_millis(100),
            ..Default::default()
        },
        services: settings.clone(),
        telemetry_dir: None,
        load_balancer_address_pool: controlplane::elbv2::DEFAULT_ADDRESS_POOL.to_string(),
    };
    Server::start(config, store, clock)
        .await
        .expect("server starts")
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(fast_settings()).await
    }

    pub async fn start_with(settings: ServiceSettings) -> Cluster {
        let clock = Arc::new(ManualClock::new(SystemClock.now_millis()));
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let credentials = Credentials::generate();
        let server = boot(
            "127.0.0.1:0".parse().expect("address"),
            store.clone(),
            clock.clone(),
            &credentials,
            &settings,
        )
        .await;
        let addr = server.local_addr();
        let ecs = crate::support::ecs_client(
            &server.endpoint(),
            &credentials.access_key_id,
            &credentials.secret_access_key,
        )
        .await;
        Cluster {
            server: Some(server),
            addr,
            store,
            clock,
            credentials,
            ecs,
            agents: Vec::new(),
            settings,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stop the server (controllers included) and start a new one on the same store, clock,
    /// keys and address: what a restart or a leader change looks like to agents and clients.
    pub async fn restart_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
        let server = boot(
            self.addr,
            self.store.clone(),
            self.clock.clone(),
            &self.credentials,
            &self.settings,
        )
        .await;
        self.server = Some(server);
    }

    /// Stop the server only (no replacement yet).
    pub async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }

    /// Start an agent on a fresh fake engine in `zone`; returns once its instance is
    /// registered and connected.
    pub async fn add_agent(&mut self, zone: &str) -> String {
        let known: Vec<String> = self.instance_arns().await;
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = FakeRuntime::new();
        let config = agent_config(&self.endpoint(), &self.credentials, dir.path(), zone);
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(Agent::run(
            config,
            Arc::new(runtime.clone()),
            self.clock.clone(),
            cancel.clone(),
        ));
        let arn = self
            .wait_for("the agent to register", || async {
                self.instance_arns()
                    .await
                    .into_iter()
                    .find(|a| !known.contains(a))
            })
            .await;
        self.wait_for("the agent to connect", || async {
            let described = self
                .ecs
                .describe_container_instances()
                .container_instances(&arn)
                .send()
                .await
                .ok()?;
            described.container_instances()[0]
                .agent_connected()
                .then_some(())
        })
        .await;
        self.agents.push(TestAgent {
            runtime,
            arn: arn.clone(),
            zone: zone.to_string(),
            cancel,
            handle: Some(handle),
            _dir: dir,
        });
        arn
    }

    /// Stop an agent process (its containers keep running on its engine).
    pub async fn stop_agent(&mut self, arn: &str) {
        if let Some(agent) = self.agents.iter_mut().find(|a| a.arn == arn) {
            agent.cancel.cancel();
            if let Some(handle) = agent.handle.take() {
                let _ = tokio::time::timeout(WAIT, handle).await;
            }
        }
    }

    pub async fn instance_arns(&self) -> Vec<String> {
        self.ecs
            .list_container_instances()
            .send()
            .await
            .map(|l| l.container_instance_arns().to_vec())
            .unwrap_or_default()
    }

    /// Give containers named `container` a behaviour on every engine.
    pub fn behave_everywhere(&self, container: &str, behavior: FakeBehavior) {
        for agent in &self.agents {
            agent.runtime.behave(container, behavior.clone());
        }
    }

    /// The engine and container id running `container` of a task.
    pub fn container(&self, task_arn: &str, container: &str) -> Option<(FakeRuntime, String)> {
        self.agents.iter().find_map(|a| {
            a.runtime
                .find(task_arn, container)
                .map(|id| (a.runtime.clone(), id))
        })
    }

    /// Report a container's health check result, as Docker would.
    pub fn set_health(&self, task_arn: &str, container: &str, health: HealthState) -> bool {
        match self.container(task_arn, container) {
            Some((runtime, id)) => {
                runtime.set_health(&id, health);
                true
            }
            None => false,
        }
    }

    /// The process of a task's container exits with `code`.
    pub fn exit(&self, task_arn: &str, container: &str, code: i64) -> bool {
        match self.container(task_arn, container) {
            Some((runtime, id)) => {
                runtime.exit(&id, code);
                true
            }
            None => false,
        }
    }

    /// Poll `check` until it returns `Some`, failing after `WAIT`.
    pub async fn wait_for<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Register a one-container definition; with `health_check` its container has one.
    pub async fn register(&self, family: &str, container: &str, health_check: bool) -> String {
        let mut definition = ContainerDefinition::builder()
            .name(container)
            .image(IMAGE)
            .memory(64)
            .cpu(128)
            .command("sleep")
            .command("600");
        if health_check {
            definition = definition.health_check(
                HealthCheck::builder()
                    .command("CMD-SHELL")
                    .command("true")
                    .interval(5)
                    .build()
                    .expect("health check"),
            );
        }
        self.ecs
            .register_task_definition()
            .family(family)
            .container_definitions(definition.build())
            .send()
            .await
            .expect("registers")
            .task_definition()
            .and_then(|d| d.task_definition_arn())
            .expect("an ARN")
            .to_string()
    }

    /// Register a one-container definition whose container `app` maps container port 80 to a
    /// dynamic host port (bridge), or to 80 in the task's own address (`awsvpc`).
    pub async fn register_web(&self, family: &str, awsvpc: bool) -> String {
        let mapping = aws_sdk_ecs::types::PortMapping::builder().container_port(80);
        let mapping = if awsvpc {
            mapping
        } else {
            mapping.host_port(0)
        };
        let definition = ContainerDefinition::builder()
            .name("app")
            .image(IMAGE)
            .memory(64)
            .cpu(128)
            .command("sleep")
            .command("600")
            .port_mappings(mapping.build());
        let mut request = self
            .ecs
            .register_task_definition()
            .family(family)
            .container_definitions(definition.build());
        if awsvpc {
            request = request.network_mode(aws_sdk_ecs::types::NetworkMode::Awsvpc);
        }
        request
            .send()
            .await
            .expect("registers")
            .task_definition()
            .and_then(|d| d.task_definition_arn())
            .expect("an ARN")
            .to_string()
    }

    /// A target group of `target_type` (`instance` or `ip`) with a deregistration delay, put
    /// straight into the store with a listener forwarding to it, as the ELBv2 API would write
    /// them: the scheduler's side of load balancing is tested on its own here.
    pub async fn target_group(&self, name: &str, target_type: &str, delay_seconds: i64) -> String {
        use store::Store;
        let id = format!(
            "{:016x}",
            name.bytes()
                .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
        );
        let arn =
            format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/{id}");
        let record = model::elb::TargetGroupRecord {
            arn: arn.clone(),
            name: name.to_string(),
            id: id.clone(),
            protocol: Some("HTTP".to_string()),
            protocol_version: Some("HTTP1".to_string()),
            port: Some(80),
            vpc_id: None,
            target_type: target_type.to_string(),
            ip_address_type: Some("ipv4".to_string()),
            health_check: model::elb::HealthCheckConfig::aws_default("HTTP"),
            attributes: [(
                model::elb::DEREGISTRATION_DELAY_ATTRIBUTE.to_string(),
                delay_seconds.to_string(),
            )]
            .into_iter()
            .collect(),
            tags: vec![],
            created_at_ms: 0,
            targets: vec![],
        };
        self.store
            .put(
                &model::elb::keys::target_group(name),
                serde_json::to_vec(&record).expect("encodes").into(),
            )
            .await
            .expect("stored");
        let listener = serde_json::json!({
            "listenerArn": format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:listener/app/lb/1/{id}"),
            "defaultActions": [{"type": "forward", "targetGroupArn": arn}],
        });
        self.store
            .put(
                &model::elb::keys::listener("1", &id),
                serde_json::to_vec(&listener).expect("encodes").into(),
            )
            .await
            .expect("stored");
        arn
    }

    /// The default VPC's subnet in `zone` (the server creates one per zone).
    pub async fn default_subnet(&self, zone: &str) -> String {
        use store::Store;
        let subnets = self
            .store
            .range(model::ec2::SUBNET_PREFIX, Default::default())
            .await
            .expect("reads");
        subnets
            .kvs
            .iter()
            .filter_map(|kv| serde_json::from_slice::<model::ec2::Subnet>(&kv.value).ok())
            .find(|s| s.availability_zone == zone)
            .map(|s| s.subnet_id)
            .expect("a default subnet in the zone")
    }

    /// The target group record as stored now.
    pub async fn target_group_record(&self, name: &str) -> model::elb::TargetGroupRecord {
        use store::Store;
        let kv = self
            .store
            .get(&model::elb::keys::target_group(name))
            .await
            .expect("reads")
            .expect("the target group exists");
        serde_json::from_slice(&kv.value).expect("decodes")
    }

    /// Report a target's health as the data plane would (`healthy`, `unhealthy`, `initial`).
    pub async fn set_target_health(&self, name: &str, target: &str, port: i32, state: &str) {
        use store::clock::Clock;
        use store::Store;
        let group = self.target_group_record(name).await;
        let key = model::elb::keys::target_health(&group.id);
        let mut health: model::elb::TargetHealthRecord = match self.store.get(&key).await {
            Ok(Some(kv)) => serde_json::from_slice(&kv.value).expect("decodes"),
            _ => Default::default(),
        };
        health.targets.insert(
            model::elb::target_key(target, port),
            model::elb::ObservedTargetHealth {
                state: state.to_string(),
                reason: (state == "unhealthy").then(|| "Target.ResponseCodeMismatch".to_string()),
                description: (state == "unhealthy")
                    .then(|| "Health checks failed with these codes: [502]".to_string()),
                since_ms: self.clock.now_millis(),
            },
        );
        self.store
            .put(&key, serde_json::to_vec(&health).expect("encodes").into())
            .await
            .expect("stored");
    }

    /// Mark every target of a group registered now `healthy`; returns how many there are.
    pub async fn all_targets_healthy(&self, name: &str) -> usize {
        let group = self.target_group_record(name).await;
        let live: Vec<_> = group
            .targets
            .iter()
            .filter(|t| t.deregistered_at_ms.is_none())
            .collect();
        for target in &live {
            self.set_target_health(name, &target.id, target.port, "healthy")
                .await;
        }
        live.len()
    }

    pub async fn service(&self, name: &str) -> Service {
        let described = self
            .ecs
            .describe_services()
            .services(name)
            .send()
            .await
            .expect("describes");
        described.services()[0].clone()
    }

    /// The service's tasks with the given desired status, described.
    pub async fn tasks(&self, service: &str, desired: DesiredStatus) -> Vec<Task> {
        let arns = self
            .ecs
            .list_tasks()
            .service_name(service)
            .desired_status(desired)
            .send()
            .await
            .expect("lists")
            .task_arns()
            .to_vec();
        if arns.is_empty() {
            return Vec::new();
        }
        let mut tasks = Vec::new();
        for chunk in arns.chunks(100) {
            let described = self
                .ecs
                .describe_tasks()
                .set_tasks(Some(chunk.to_vec()))
                .send()
                .await
                .expect("describes");
            tasks.extend(described.tasks().iter().cloned());
        }
        tasks
    }

    /// Every event message of a service, oldest first.
    pub async fn events(&self, service: &str) -> Vec<String> {
        let mut messages: Vec<String> = self
            .service(service)
            .await
            .events()
            .iter()
            .filter_map(|e| e.message().map(str::to_string))
            .collect();
        messages.reverse();
        messages
    }

    pub async fn shutdown(mut self) {
        for agent in &mut self.agents {
            agent.cancel.cancel();
            if let Some(handle) = agent.handle.take() {
                let _ = tokio::time::timeout(WAIT, handle).await;
            }
        }
        if let Some(server) = self.server.take() {
            server.shutdown().await;
        }
    }
}

fn agent_config(server: &str, credentials: &Credentials, dir: &Path, zone: &str) -> AgentConfig {
    let mut config = AgentConfig::new(
        server,
        AgentCredentials {
            access_key_id: credentials.access_key_id.clone(),
            secret_access_key: credentials.secret_access_key.clone(),
        },
        dir.to_path_buf(),
    );
    config.availability_zone = Some(zone.to_string());
    config.cpu_units = Some(4096);
    config.memory_mib = Some(8192);
    config.heartbeat_interval = Duration::from_millis(200);
    config.poll_wait = Duration::from_secs(2);
    config.default_stop_timeout = Duration::from_millis(100);
    config
}
