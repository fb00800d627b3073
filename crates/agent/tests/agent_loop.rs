//! `Agent::run` against an in-process fake server (signatures verified with the server's own
//! SigV4 verifier) and the fake runtime: cluster creation and registration, the heartbeat, the
//! PollTasks watch driving tasks, report retries, and a restart that keeps the identity and
//! re-adopts the running containers.

mod fake_server;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent::runtime::fake::FakeRuntime;
use agent::runtime::ImagePullBehavior;
use agent::{Agent, AgentConfig, AgentCredentials, AgentError};
use fake_server::{FakeServer, ACCESS_KEY_ID, REGION, SECRET};
use store::clock::SystemClock;
use support::{agent_task, container, definition, task_arn};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const IMAGE: &str = "img:1";
const WAIT: Duration = Duration::from_secs(30);

fn config(server: &FakeServer, data_dir: &Path) -> AgentConfig {
    let mut config = AgentConfig::new(
        &server.url(),
        AgentCredentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET.into(),
        },
        data_dir.to_path_buf(),
    );
    config.region = REGION.into();
    config.attributes = vec![("stack".into(), "blue".into())];
    config.heartbeat_interval = Duration::from_millis(200);
    config.poll_wait = Duration::from_secs(2);
    config.cpu_units = Some(2048);
    config.memory_mib = Some(4096);
    config.reserved_memory_mib = 96;
    config.image_pull_behavior = ImagePullBehavior::PreferCached;
    config
}

struct RunningAgent {
    cancel: CancellationToken,
    handle: JoinHandle<Result<(), AgentError>>,
}

impl RunningAgent {
    fn start(config: AgentConfig, runtime: &FakeRuntime) -> Self {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(Agent::run(
            config,
            Arc::new(runtime.clone()),
            Arc::new(SystemClock),
            cancel.clone(),
        ));
        Self { cancel, handle }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(WAIT, self.handle)
            .await
            .expect("the agent stops when cancelled")
            .expect("the agent task does not panic");
        assert!(result.is_ok(), "{result:?}");
    }
}

#[tokio::test]
async fn the_agent_registers_and_runs_what_the_server_places() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    runtime.add_image(IMAGE);
    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);

    server
        .wait_until("registration", WAIT, |s| {
            !s.calls("RegisterContainerInstance").is_empty()
        })
        .await;
    let operations = server.operations();
    assert_eq!(
        &operations[..2],
        ["CreateCluster", "RegisterContainerInstance"]
    );
    assert_eq!(server.calls("CreateCluster")[0]["clusterName"], "default");
    let registration = &server.calls("RegisterContainerInstance")[0];
    assert_eq!(registration["cluster"], "default");
    assert!(registration.get("containerInstanceArn").is_none());
    let document: serde_json::Value = serde_json::from_str(
        registration["instanceIdentityDocument"]
            .as_str()
            .expect("string"),
    )
    .expect("a JSON document");
    let instance_id = document["instanceId"]
        .as_str()
        .expect("instance id")
        .to_string();
    assert!(instance_id.starts_with("i-") && instance_id.len() == 19);
    assert_eq!(document["availabilityZone"], "us-east-1a");
    assert_eq!(document["instanceType"], "wharf.local");
    assert_eq!(document["region"], "us-east-1");
    let resources = registration["totalResources"]
        .as_array()
        .expect("resources");
    let resource = |name: &str| {
        resources
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .clone()
    };
    assert_eq!(resource("CPU")["integerValue"], 2048);
    assert_eq!(resource("MEMORY")["integerValue"], 4000);
    assert_eq!(
        resource("PORTS")["stringSetValue"],
        serde_json::json!(["22", "2375", "2376", "51678", "51679"])
    );
    assert_eq!(resource("PORTS_UDP")["type"], "STRINGSET");
    assert_eq!(
        registration["versionInfo"]["agentVersion"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(
        registration["versionInfo"]["dockerVersion"],
        "DockerVersion: fake"
    );
    let attributes = registration["attributes"].as_array().expect("attributes");
    let attribute = |name: &str| {
        attributes
            .iter()
            .find(|a| a["name"] == name)
            .map(|a| a["value"].clone())
    };
    assert_eq!(attribute("ecs.os-type"), Some("linux".into()));
    assert_eq!(attribute("ecs.instance-type"), Some("wharf.local".into()));
    assert_eq!(
        attribute("ecs.availability-zone"),
        Some("us-east-1a".into())
    );
    assert!(attribute("ecs.cpu-architecture").is_some());
    assert_eq!(attribute("stack"), Some("blue".into()));
    assert!(attribute("ecs.capability.container-health-check").is_some());

    server
        .wait_until("heartbeats", WAIT, |s| s.calls("Heartbeat").len() >= 2)
        .await;
    let heartbeat = &server.calls("Heartbeat")[0];
    let instance_arn = heartbeat["containerInstanceArn"]
        .as_str()
        .expect("arn")
        .to_string();
    assert!(instance_arn.contains(":container-instance/default/"));

    let arn = task_arn(201);
    server.add_task(agent_task(
        &arn,
        definition("web", vec![container("app", IMAGE)]),
    ));
    server
        .wait_until("RUNNING", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("RUNNING".into())
        })
        .await;
    let app = runtime.find(&arn, "app").expect("the container exists");
    assert_eq!(
        runtime.container(&app).expect("app").spec.labels["wharf.container-instance-arn"],
        instance_arn
    );

    server.stop_task(&arn);
    server
        .wait_until("STOPPED", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("STOPPED".into())
        })
        .await;
    let last = server.reports(&arn).pop().expect("reports");
    assert_eq!(last.containers[0].exit_code, Some(143));
    let polls = server.calls("PollTasks");
    assert!(
        polls.iter().any(|p| p["sinceRevision"].as_i64() > Some(0)),
        "the watch resumes from the last revision"
    );
    assert!(polls
        .iter()
        .all(|p| p["containerInstanceArn"] == instance_arn.as_str()));

    agent.stop().await;
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("agent-state.json")).expect("state file"),
    )
    .expect("json");
    assert_eq!(state["containerInstanceArn"], instance_arn.as_str());
    assert_eq!(state["instanceId"], instance_id.as_str());
    server.stop().await;
}

#[tokio::test]
async fn a_restarted_agent_keeps_its_identity_and_its_containers() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    runtime.add_image(IMAGE);
    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);
    let arn = task_arn(202);
    server.add_task(agent_task(
        &arn,
        definition("keep", vec![container("app", IMAGE)]),
    ));
    server
        .wait_until("RUNNING", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("RUNNING".into())
        })
        .await;
    agent.stop().await;
    let reports_before = server.reports(&arn).len();
    let first_registration = server.calls("RegisterContainerInstance")[0].clone();

    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);
    server
        .wait_until("second registration", WAIT, |s| {
            s.calls("RegisterContainerInstance").len() == 2
        })
        .await;
    let second = server.calls("RegisterContainerInstance")[1].clone();
    assert!(
        second["containerInstanceArn"].is_string(),
        "registers with its previous ARN"
    );
    assert_eq!(
        second["instanceIdentityDocument"],
        first_registration["instanceIdentityDocument"]
    );
    // The re-adopted owner reports again once the server's answer arrives.
    server
        .wait_until("a report from the new process", WAIT, |s| {
            s.reports(&arn).len() > reports_before
        })
        .await;
    assert_eq!(
        server.reports(&arn).pop().expect("report").last_status,
        "RUNNING"
    );
    for container in runtime.containers() {
        assert_eq!(container.start_count, 1, "nothing was started again");
    }

    // And it keeps running the task: an essential exit ends it.
    runtime.exit(&runtime.find(&arn, "app").expect("app"), 2);
    server
        .wait_until("STOPPED", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("STOPPED".into())
        })
        .await;
    let task = server.task(&arn).expect("task");
    assert_eq!(
        task.task.stop_code.as_deref(),
        Some("EssentialContainerExited")
    );
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn reports_are_retried_until_the_server_takes_them() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    runtime.add_image(IMAGE);
    server.fail_next_reports(3);
    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);
    let arn = task_arn(203);
    server.add_task(agent_task(
        &arn,
        definition("retry", vec![container("app", IMAGE)]),
    ));
    server
        .wait_until("RUNNING despite failed reports", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("RUNNING".into())
        })
        .await;
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_refused_registration_ends_the_agent_with_the_server_error() {
    let server = FakeServer::start().await;
    server.refuse_registration();
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    let result = tokio::time::timeout(
        WAIT,
        Agent::run(
            config(&server, dir.path()),
            Arc::new(runtime),
            Arc::new(SystemClock),
            CancellationToken::new(),
        ),
    )
    .await
    .expect("returns");
    let error = result.expect_err("refused");
    let message = error.to_string();
    assert!(matches!(error, AgentError::Register { .. }), "{message}");
    assert!(
        message.contains("ClientException: registration refused"),
        "{message}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_agent_the_server_forgot_registers_anew_and_stops_its_old_tasks() {
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    runtime.add_image(IMAGE);
    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);
    let arn = task_arn(204);
    server.add_task(agent_task(
        &arn,
        definition("old", vec![container("app", IMAGE)]),
    ));
    server
        .wait_until("RUNNING", WAIT, |s| {
            s.task(&arn).and_then(|t| t.task.last_status) == Some("RUNNING".into())
        })
        .await;
    agent.stop().await;

    server.forget_instances();
    let agent = RunningAgent::start(config(&server, dir.path()), &runtime);
    server
        .wait_until("a fresh registration", WAIT, |s| {
            s.calls("RegisterContainerInstance")
                .iter()
                .skip(1)
                .any(|r| r.get("containerInstanceArn").is_none())
        })
        .await;
    let id = runtime.find(&arn, "app").expect("app");
    let deadline = tokio::time::Instant::now() + WAIT;
    while runtime
        .container(&id)
        .is_some_and(|c| c.status.is_running())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the old instance's task kept running"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("agent-state.json")).expect("state file"),
    )
    .expect("json");
    let new_arn = state["containerInstanceArn"].clone();
    let first_arn = server.calls("Heartbeat")[0]["containerInstanceArn"].clone();
    assert!(
        new_arn.is_string() && new_arn != first_arn,
        "the new ARN is persisted"
    );
    server
        .wait_until("heartbeats under the new ARN", WAIT, |s| {
            s.calls("Heartbeat")
                .last()
                .is_some_and(|h| h["containerInstanceArn"] == new_arn)
        })
        .await;
    agent.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn stats_and_awslogs_reach_the_server_signed_for_their_services() {
    use agent::runtime::{ContainerStats, LogSource};
    let server = FakeServer::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = FakeRuntime::new();
    runtime.add_image(IMAGE);
    let mut config = config(&server, dir.path());
    config.stats_sample_interval = Duration::from_millis(100);
    config.stats_report_interval = Duration::from_millis(300);
    let agent = RunningAgent::start(config, &runtime);

    let arn = task_arn(40);
    let mut app = container("app", IMAGE);
    app.log_configuration = Some(model::ecs::task_definition::LogConfiguration {
        log_driver: "awslogs".into(),
        options: Some(
            [
                ("awslogs-group", "/ecs/loop"),
                ("awslogs-region", "us-east-1"),
                ("awslogs-stream-prefix", "ecs"),
                ("awslogs-create-group", "true"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ),
        secret_options: None,
    });
    server.add_task(agent_task(&arn, definition("loop", vec![app])));
    let id = loop {
        if let Some(id) = runtime.find(&arn, "app") {
            if runtime
                .container(&id)
                .is_some_and(|c| c.status.is_running())
            {
                break id;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    runtime.set_stats(
        &id,
        ContainerStats {
            cpu_total_nanos: 123_456,
            memory_bytes: 7 << 20,
            memory_limit_bytes: 0,
        },
    );
    runtime.log(&id, LogSource::Stdout, "hello from the task\n");

    // (A sample taken before the stats were set may come first: wait for one after.)
    let set = |t: &serde_json::Value| {
        t["taskArn"] == arn.as_str()
            && t["samples"]
                .as_array()
                .is_some_and(|samples| samples.iter().any(|s| s["cpuTotalNanos"] == 123_456))
    };
    server
        .wait_until("task statistics", WAIT, |s| {
            s.calls("ReportTaskStats").iter().any(|input| {
                input["tasks"]
                    .as_array()
                    .is_some_and(|tasks| tasks.iter().any(set))
            })
        })
        .await;
    let report = server
        .calls("ReportTaskStats")
        .into_iter()
        .find(|input| set(&input["tasks"][0]))
        .expect("a report of the task");
    assert_eq!(report["cluster"], "default");
    let sample = report["tasks"][0]["samples"]
        .as_array()
        .and_then(|samples| samples.iter().find(|s| s["cpuTotalNanos"] == 123_456))
        .expect("the sample with the stats set")
        .clone();
    assert_eq!(sample["cpuTotalNanos"], 123_456);
    assert_eq!(sample["memoryBytes"], 7 << 20);
    assert_eq!(sample["containers"][0]["name"], "app");

    server
        .wait_until("log events", WAIT, |s| !s.calls("PutLogEvents").is_empty())
        .await;
    let stream = format!("ecs/app/{}", arn.rsplit('/').next().expect("task id"));
    assert_eq!(
        server.calls("CreateLogGroup")[0]["logGroupName"],
        "/ecs/loop"
    );
    assert_eq!(
        server.calls("CreateLogStream")[0]["logStreamName"],
        stream.as_str()
    );
    let put = &server.calls("PutLogEvents")[0];
    assert_eq!(put["logGroupName"], "/ecs/loop");
    assert_eq!(put["logStreamName"], stream.as_str());
    assert_eq!(put["logEvents"][0]["message"], "hello from the task");
    assert!(put["logEvents"][0]["timestamp"].as_i64().is_some());
    // The checkpoint lives in the data directory, written right after the delivery.
    let checkpoint = dir.path().join("logs").join(format!("{id}.json"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while !checkpoint.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    agent.stop().await;
    server.stop().await;
}
