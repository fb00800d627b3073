//! awsvpc and Fargate on the fake runtime with its fake enforcer, on paused tokio time: the
//! subnet's network and the pause container come first, the task's containers join its
//! namespace, security groups are loaded there and reloaded when the server's answer changes
//! them, the pause container goes last and is re-adopted (not recreated) after a restart;
//! Fargate tasks' size becomes container limits; OOM kills read as on ECS.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agent::network::{network_name, task_ruleset, EnforcerError, PAUSE_CONTAINER_NAME};
use agent::runner::EngineConfig;
use agent::runtime::fake::FakeRuntime;
use agent::runtime::{ImagePullBehavior, NetworkMode};
use model::agent::{AgentTask, TaskNetwork};
use model::ec2::{IpPermission, IpRange, SecurityGroup};
use model::ecs::task_definition::PortMapping;
use support::*;

const IMAGE: &str = "img:1";
const LONG: Duration = Duration::from_secs(3600);
const MIB: i64 = 1024 * 1024;

fn fake() -> FakeRuntime {
    let fake = FakeRuntime::new();
    fake.add_image(IMAGE);
    fake
}

fn config(name: &str) -> EngineConfig {
    EngineConfig {
        task_cleanup_wait: Duration::from_secs(600),
        image_pull_behavior: ImagePullBehavior::PreferCached,
        ..EngineConfig::new(CLUSTER, &instance_arn(name))
    }
}

fn tcp_rule(port: i64, cidr: &str) -> IpPermission {
    IpPermission {
        ip_protocol: "tcp".into(),
        from_port: Some(port),
        to_port: Some(port),
        ip_ranges: vec![IpRange {
            cidr_ip: cidr.into(),
            description: None,
        }],
        ..Default::default()
    }
}

fn network(ingress: Vec<IpPermission>) -> TaskNetwork {
    TaskNetwork {
        network_interface_id: "eni-0123456789abcdef0".into(),
        subnet_id: "subnet-0a1b2c3d".into(),
        subnet_cidr: "10.213.0.0/24".into(),
        gateway_ipv4_address: "10.213.0.1".into(),
        private_ipv4_address: "10.213.0.10".into(),
        mac_address: "0e:10:d5:00:00:0a".into(),
        security_groups: vec![SecurityGroup {
            group_id: "sg-0123".into(),
            group_name: "web".into(),
            ip_permissions: ingress,
            ip_permissions_egress: vec![IpPermission {
                ip_protocol: "-1".into(),
                ip_ranges: vec![IpRange {
                    cidr_ip: "0.0.0.0/0".into(),
                    description: None,
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn awsvpc_task(arn: &str, ingress: Vec<IpPermission>) -> AgentTask {
    let mut web = container("web", IMAGE);
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8080),
        host_port: Some(8080),
        ..Default::default()
    }]);
    let mut definition = definition("vpc", vec![web, container("sidecar", IMAGE)]);
    definition.network_mode = Some("awsvpc".into());
    let mut task = agent_task(arn, definition);
    task.network = Some(network(ingress));
    task
}

#[tokio::test(start_paused = true)]
async fn an_awsvpc_task_runs_in_its_pause_containers_namespace_behind_its_security_groups() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("awsvpc"));
    let arn = task_arn(1);
    let task = awsvpc_task(&arn, vec![tcp_rule(8080, "10.0.0.0/8")]);
    harness.engine.apply(vec![task.clone()]);
    let running = harness.wait_status(&arn, "RUNNING", LONG).await;

    // The subnet's network, masqueraded, and the pause image imported from the embedded
    // binary.
    let networks = fake.networks();
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0].name, network_name("subnet-0a1b2c3d"));
    assert_eq!(networks[0].subnet, "10.213.0.0/24");
    assert_eq!(networks[0].gateway, "10.213.0.1");
    assert_eq!(
        fake.imports(),
        vec![agent::network::pause::image_reference()]
    );

    // The pause container holds the ENI's address; the task's containers join it.
    let pause_id = fake
        .find(&arn, PAUSE_CONTAINER_NAME)
        .expect("a pause container");
    let pause = fake.container(&pause_id).expect("exists");
    let endpoint = pause.spec.endpoint.clone().expect("an endpoint");
    assert_eq!(endpoint.ipv4_address.as_deref(), Some("10.213.0.10"));
    assert_eq!(endpoint.mac_address.as_deref(), Some("0e:10:d5:00:00:0a"));
    for name in ["web", "sidecar"] {
        let id = fake.find(&arn, name).expect("created");
        let spec = fake.container(&id).expect("exists").spec;
        assert_eq!(spec.network_mode, NetworkMode::Container(pause_id.clone()));
        assert!(spec.port_bindings.is_empty(), "awsvpc publishes nothing");
        // As on ECS, awsvpc containers report no network bindings.
        assert_eq!(container_report(&running, name).network_bindings, None);
    }
    // The pause container is not one of the task's containers.
    assert_eq!(running.containers.len(), 2);

    // Its namespace has the security groups.
    let pid = fake.pid(&pause_id).expect("running");
    let enforcer = fake.enforcer();
    let expected = task_ruleset(task.network.as_ref().expect("a network"));
    assert_eq!(enforcer.current(pid).as_deref(), Some(expected.as_str()));
    assert!(expected.contains("-A WHARF-SG -p tcp --dport 8080 -s 10.0.0.0/8 -j ACCEPT"));

    // The same answer again loads nothing; a new rule is loaded within moments.
    harness.engine.apply(vec![task.clone()]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(enforcer.rulesets(pid).len(), 1);
    let opened = awsvpc_task(
        &arn,
        vec![tcp_rule(8080, "10.0.0.0/8"), tcp_rule(9090, "0.0.0.0/0")],
    );
    harness.engine.apply(vec![opened.clone()]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let reloaded = enforcer.current(pid).expect("rules");
    assert!(
        reloaded.contains("-A WHARF-SG -p tcp --dport 9090 -s 0.0.0.0/0 -j ACCEPT"),
        "{reloaded}"
    );
    assert_eq!(enforcer.rulesets(pid).len(), 2);

    // A reload that fails is retried until it succeeds.
    enforcer.fail_with(Some(EnforcerError::Failed {
        command: "iptables-restore".into(),
        message: "busy".into(),
    }));
    harness
        .engine
        .apply(vec![awsvpc_task(&arn, vec![tcp_rule(22, "10.9.0.0/16")])]);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(enforcer.rulesets(pid).len(), 2);
    enforcer.fail_with(None);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(enforcer
        .current(pid)
        .expect("rules")
        .contains("--dport 22 -s 10.9.0.0/16"));

    // Stopping: the task's containers first, then the pause container; cleanup removes it;
    // the network stays for the subnet's other tasks.
    harness.engine.apply(vec![stopped(opened)]);
    harness.wait_status(&arn, "STOPPED", LONG).await;
    let pause = fake.container(&pause_id).expect("kept until cleanup");
    assert!(!pause.status.is_running());
    tokio::time::sleep(Duration::from_secs(601)).await;
    assert!(fake.container(&pause_id).is_none(), "removed with the task");
    assert!(fake.containers().is_empty());
    assert_eq!(fake.networks().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_re_adopts_the_pause_container_and_reloads_the_rules() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("awsvpc-restart"));
    let arn = task_arn(2);
    let task = awsvpc_task(&arn, vec![tcp_rule(8080, "0.0.0.0/0")]);
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let pause_id = fake
        .find(&arn, PAUSE_CONTAINER_NAME)
        .expect("a pause container");

    let harness = harness.restart().await;
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    harness.engine.apply(vec![task]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    let pauses: Vec<_> = fake
        .containers()
        .into_iter()
        .filter(|c| c.spec.labels.contains_key("wharf.pause"))
        .collect();
    assert_eq!(pauses.len(), 1, "not recreated");
    assert_eq!(pauses[0].id, pause_id);
    assert_eq!(pauses[0].start_count, 1, "not restarted");
    for name in ["web", "sidecar"] {
        let id = fake.find(&arn, name).expect("exists");
        assert_eq!(fake.container(&id).expect("exists").start_count, 1);
    }
    // The new process loads the rules it was given (the same ones: harmless).
    let pid = fake.pid(&pause_id).expect("running");
    assert_eq!(fake.enforcer().rulesets(pid).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn security_groups_that_cannot_be_enforced_fail_the_task_with_a_clear_reason() {
    let fake = fake();
    fake.enforcer().fail_with(Some(EnforcerError::MissingTool {
        tool: "iptables-restore".into(),
    }));
    let harness = Harness::start(Arc::new(fake.clone()), config("no-iptables"));
    let arn = task_arn(3);
    harness
        .engine
        .apply(vec![awsvpc_task(&arn, vec![tcp_rule(8080, "0.0.0.0/0")])]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(done.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = done.stopped_reason.clone().expect("a reason");
    assert!(
        reason.starts_with("ResourceInitializationError: cannot enforce the task's security groups: iptables-restore is not installed on this host"),
        "{reason}"
    );
    // Nothing of the task ran, and its pause container was stopped.
    assert!(fake.find(&arn, "web").is_none());
    let pause_id = fake.find(&arn, PAUSE_CONTAINER_NAME).expect("created");
    assert!(!fake
        .container(&pause_id)
        .expect("exists")
        .status
        .is_running());

    // An awsvpc task the server sent without its network cannot run either.
    let arn = task_arn(4);
    let mut task = awsvpc_task(&arn, Vec::new());
    task.network = None;
    harness.engine.apply(vec![task]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("ResourceInitializationError: cannot set up the task's network: the awsvpc task has no network interface")
    );
}

#[tokio::test(start_paused = true)]
async fn a_fargate_tasks_size_is_split_into_container_limits() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("fargate"));
    let arn = task_arn(5);
    let mut task = awsvpc_task(&arn, Vec::new());
    task.task.launch_type = Some("FARGATE".into());
    task.task.cpu = Some("512".into());
    task.task.memory = Some("1024".into());
    if let Some(web) = task
        .task_definition
        .container_definitions
        .as_mut()
        .and_then(|c| c.first_mut())
    {
        web.memory = Some(256);
        web.cpu = Some(256);
    }
    let mut third = container("third", IMAGE);
    third.memory_reservation = Some(900);
    task.task_definition
        .container_definitions
        .as_mut()
        .expect("containers")
        .push(third);
    harness.engine.apply(vec![task]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let spec = |name: &str| {
        fake.container(&fake.find(&arn, name).expect("created"))
            .expect("exists")
            .spec
    };
    let (web, sidecar, third) = (spec("web"), spec("sidecar"), spec("third"));
    assert_eq!(web.memory_limit_bytes, Some(256 * MIB));
    assert_eq!(sidecar.memory_limit_bytes, Some(384 * MIB));
    assert_eq!(third.memory_limit_bytes, Some(384 * MIB));
    assert_eq!(third.memory_reservation_bytes, Some(384 * MIB), "capped");
    assert_eq!(sidecar.memory_swap_bytes, Some(384 * MIB), "no swap");
    assert_eq!(web.nano_cpus, Some(250_000_000));
    assert_eq!(sidecar.nano_cpus, Some(125_000_000));
    assert_eq!(third.nano_cpus, Some(125_000_000));
}

#[tokio::test(start_paused = true)]
async fn an_oom_killed_essential_container_reads_as_on_ecs() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("fargate-oom"));
    let arn = task_arn(6);
    let mut task = awsvpc_task(&arn, Vec::new());
    task.task.launch_type = Some("FARGATE".into());
    task.task.memory = Some("512".into());
    harness.engine.apply(vec![task]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    fake.oom_kill(&fake.find(&arn, "web").expect("created"));
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    let web = container_report(&done, "web");
    assert_eq!(
        web.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert_eq!(web.exit_code, Some(137));
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
}
