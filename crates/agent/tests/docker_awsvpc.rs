//! awsvpc and Fargate on the real Docker engine, with iptables through nsenter: the pause
//! image imported from the embedded binary, a task answering on its own address on a subnet
//! network the test creates (10.213.x.0/24, gateway .1, task .10) and its containers reaching
//! each other on localhost, security groups closing and then opening its port, and a
//! Fargate-limited container killed for memory. Every test removes the containers (by label)
//! and the network it created.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::network::pause::{image_reference, PauseImage};
use agent::network::{network_name, PAUSE_CONTAINER_NAME};
use agent::runner::EngineConfig;
use agent::testing::{ensure_test_image, DockerCleanup, TEST_IMAGE};
use agent::DockerRuntime;
use model::agent::{AgentTask, TaskNetwork};
use model::ec2::{IpPermission, IpRange, SecurityGroup};
use model::ecs::task_definition::{ContainerDefinition, LinuxParameters};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);

/// Removes the test's network when dropped (after the containers, which are declared later
/// and so dropped first).
struct NetworkCleanup(String);

impl NetworkCleanup {
    fn new(subnet_id: &str) -> Self {
        let cleanup = Self(network_name(subnet_id));
        cleanup.clean();
        cleanup
    }

    fn clean(&self) {
        let _ = std::process::Command::new("docker")
            .args(["network", "rm", &self.0])
            .output();
    }
}

impl Drop for NetworkCleanup {
    fn drop(&mut self) {
        self.clean();
    }
}

/// Imports the pause image once for the whole file: the tests run in parallel, and engines
/// importing at the same moment would leave an untagged copy behind.
async fn ensure_pause_image(runtime: &DockerRuntime) -> String {
    static IMPORT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _once = IMPORT.lock().await;
    PauseImage::new()
        .ensure(runtime)
        .await
        .expect("imports (or finds) the pause image")
}

async fn setup(name: &str) -> (Harness, DockerCleanup) {
    ensure_test_image();
    let arn = instance_arn(&format!("docker-awsvpc-{name}-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    ensure_pause_image(&runtime).await;
    let config = EngineConfig {
        task_cleanup_wait: Duration::from_secs(1),
        resync_interval: Duration::from_secs(5),
        ..EngineConfig::new(CLUSTER, &arn)
    };
    (Harness::start(Arc::new(runtime), config), cleanup)
}

fn busybox(name: &str, command: &[&str]) -> ContainerDefinition {
    let mut definition = container(name, TEST_IMAGE);
    definition.command = Some(command.iter().map(|s| s.to_string()).collect());
    // An init forwards SIGTERM, so stops are quick.
    definition.linux_parameters = Some(LinuxParameters {
        init_process_enabled: Some(true),
        ..Default::default()
    });
    definition
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

fn task_network(subnet_id: &str, third_octet: u8, ingress: Vec<IpPermission>) -> TaskNetwork {
    TaskNetwork {
        network_interface_id: format!("eni-{subnet_id}"),
        subnet_id: subnet_id.into(),
        subnet_cidr: format!("10.213.{third_octet}.0/24"),
        gateway_ipv4_address: format!("10.213.{third_octet}.1"),
        private_ipv4_address: format!("10.213.{third_octet}.10"),
        mac_address: format!("0e:77:d5:00:{third_octet:02x}:0a"),
        security_groups: vec![SecurityGroup {
            group_id: "sg-test".into(),
            group_name: "test".into(),
            ip_permissions: ingress,
            ..Default::default()
        }],
    }
}

fn awsvpc_task(arn: &str, containers: Vec<ContainerDefinition>, network: TaskNetwork) -> AgentTask {
    let mut definition = definition("awsvpc", containers);
    definition.network_mode = Some("awsvpc".into());
    let mut task = agent_task(arn, definition);
    task.network = Some(network);
    task
}

/// GET / from the task's address; `None` when nothing answers within a second.
async fn http_get(address: &str) -> Option<String> {
    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((address, 8080)).await.ok()?;
        stream
            .write_all(b"GET /index.html HTTP/1.0\r\nHost: task\r\n\r\n")
            .await
            .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(Duration::from_secs(1), attempt)
        .await
        .ok()
        .flatten()
}

fn docker(args: &[&str]) -> String {
    let output = std::process::Command::new("docker")
        .args(args)
        .output()
        .expect("docker runs");
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test]
async fn the_pause_image_is_imported_and_its_program_stops_at_once() {
    ensure_test_image();
    let arn = instance_arn(&format!("docker-awsvpc-pause-{}", std::process::id()));
    let _cleanup = DockerCleanup::new(&arn);
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    let reference = ensure_pause_image(&runtime).await;
    assert_eq!(reference, image_reference());
    assert_eq!(
        docker(&["image", "inspect", "-f", "{{json .Config.Cmd}}", &reference]),
        "[\"/pause\"]"
    );
    let label = format!("{}={arn}", agent::labels::CONTAINER_INSTANCE_ARN);
    let id = docker(&["run", "-d", "--label", &label, &reference]);
    assert_eq!(id.len(), 64, "the pause container runs: {id}");
    let asked = Instant::now();
    docker(&["stop", "-t", "20", &id]);
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "SIGTERM ends it at once"
    );
    assert_eq!(docker(&["inspect", "-f", "{{.State.ExitCode}}", &id]), "0");
}

#[tokio::test]
async fn an_awsvpc_task_answers_on_its_address_once_its_security_group_allows_it() {
    let subnet = format!("subnet-wharftest-{}-0", std::process::id());
    let _network = NetworkCleanup::new(&subnet);
    let (harness, _cleanup) = setup("vpc").await;
    let arn = task_arn(201);
    let web = busybox("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    // The second container reaches the first on localhost: the task's shared namespace.
    let mut probe = busybox(
        "probe",
        &[
            "sh",
            "-c",
            "for i in $(seq 1 30); do wget -q -O /dev/null http://127.0.0.1:8080/index.html && exit 0; sleep 1; done; exit 1",
        ],
    );
    probe.essential = Some(false);
    // The group opens another port only.
    let closed = awsvpc_task(
        &arn,
        vec![web.clone(), probe.clone()],
        task_network(&subnet, 0, vec![tcp_rule(9999, "0.0.0.0/0")]),
    );
    harness.engine.apply(vec![closed.clone()]);
    let running = harness.wait_status(&arn, "RUNNING", WAIT).await;
    assert_eq!(container_report(&running, "web").network_bindings, None);
    let probed = harness
        .sink
        .wait_for(&arn, WAIT, |r| {
            r.containers
                .iter()
                .any(|c| c.name == "probe" && c.last_status == "STOPPED")
        })
        .await;
    assert_eq!(
        container_report(&probed, "probe").exit_code,
        Some(0),
        "the probe reached httpd on 127.0.0.1"
    );

    // The pause container holds the ENI's address and MAC; no other container is on the
    // network.
    let network = network_name(&subnet);
    let pause_id = docker(&[
        "ps",
        "-q",
        "--no-trunc",
        "--filter",
        &format!("label={}={arn}", agent::labels::TASK_ARN),
        "--filter",
        &format!(
            "label={}={PAUSE_CONTAINER_NAME}",
            agent::labels::CONTAINER_NAME
        ),
    ]);
    assert_eq!(
        pause_id.len(),
        64,
        "one running pause container: {pause_id}"
    );
    let address = docker(&[
        "inspect",
        "-f",
        &format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}"),
        &pause_id,
    ]);
    assert_eq!(address, "10.213.0.10");
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &pause_id]);
    let link = std::process::Command::new("nsenter")
        .args(["-t", &pid, "-n", "ip", "-o", "link", "show", "eth0"])
        .output()
        .expect("nsenter runs");
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(link.contains("link/ether 0e:77:d5:00:00:0a"), "{link}");
    let labels = docker(&["network", "inspect", "-f", "{{json .Labels}}", &network]);
    assert!(labels.contains(&subnet), "{labels}");

    // Port 8080 is not in the group: the host cannot reach it.
    for _ in 0..3 {
        assert_eq!(
            http_get("10.213.0.10").await,
            None,
            "the security group drops 8080"
        );
    }
    // Adding the rule opens it within seconds.
    let opened_at = Instant::now();
    let open = awsvpc_task(
        &arn,
        vec![web, probe],
        task_network(
            &subnet,
            0,
            vec![tcp_rule(9999, "0.0.0.0/0"), tcp_rule(8080, "0.0.0.0/0")],
        ),
    );
    harness.engine.apply(vec![open.clone()]);
    let answer = loop {
        if let Some(answer) = http_get("10.213.0.10").await.filter(|a| a.contains("200")) {
            break answer;
        }
        assert!(
            opened_at.elapsed() < Duration::from_secs(10),
            "the task's address never answered after the rule was added"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(answer.contains("wharf test image"), "{answer}");
    // And removing it closes it again.
    harness.engine.apply(vec![closed.clone()]);
    let closed_at = Instant::now();
    while http_get("10.213.0.10").await.is_some() {
        assert!(
            closed_at.elapsed() < Duration::from_secs(10),
            "never closed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Stopping removes the pause container with the task; the network stays.
    harness.engine.apply(vec![stopped(closed)]);
    harness.wait_status(&arn, "STOPPED", WAIT).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !docker(&["ps", "-aq", "--filter", &format!("id={pause_id}")]).is_empty() {
        assert!(
            Instant::now() < deadline,
            "the pause container was never removed"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        docker(&[
            "network",
            "ls",
            "-q",
            "--filter",
            &format!("name=^{network}$")
        ])
        .len(),
        12
    );
}

#[tokio::test]
async fn a_fargate_container_over_its_share_of_the_task_memory_is_killed_for_it() {
    let subnet = format!("subnet-wharftest-{}-1", std::process::id());
    let _network = NetworkCleanup::new(&subnet);
    let (harness, _cleanup) = setup("fargate-oom").await;
    let arn = task_arn(202);
    let hog = busybox(
        "hog",
        &[
            "sh",
            "-c",
            "x=$(head -c 200m /dev/zero | tr '\\0' a); sleep 100",
        ],
    );
    let mut task = awsvpc_task(&arn, vec![hog], task_network(&subnet, 1, Vec::new()));
    task.task.launch_type = Some("FARGATE".into());
    task.task.cpu = Some("256".into());
    task.task.memory = Some("64".into());
    harness.engine.apply(vec![task]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    let hog = container_report(&done, "hog");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage"),
        "{done:#?}"
    );
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    let id = hog.runtime_id.clone().expect("created");
    let limits: BTreeMap<&str, String> = [
        ("memory", "{{.HostConfig.Memory}}"),
        ("swap", "{{.HostConfig.MemorySwap}}"),
        ("cpus", "{{.HostConfig.NanoCpus}}"),
    ]
    .into_iter()
    .map(|(k, f)| (k, docker(&["inspect", "-f", f, &id])))
    .collect();
    assert_eq!(limits["memory"], (64 * 1024 * 1024).to_string());
    assert_eq!(limits["swap"], (64 * 1024 * 1024).to_string());
    assert_eq!(limits["cpus"], "250000000");
}
