//! The task runner on the real Docker engine with the locally built busybox image: exit codes,
//! published dynamic ports answering HTTP, SIGTERM-ignoring containers killed after their stop
//! timeout, health checks gating `dependsOn`, OOM kills, volumes, pull errors, and re-adoption.
//! Every test labels what it creates with its own instance ARN and removes it on drop.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::runner::EngineConfig;
use agent::testing::{ensure_test_image, DockerCleanup, TEST_IMAGE};
use agent::DockerRuntime;
use model::ecs::task_definition::{
    DockerVolumeConfiguration, HealthCheck, LinuxParameters, MountPoint, PortMapping, Volume,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(90);

/// A runtime on the local engine, the test image, and a cleanup guard for `name`.
async fn setup(name: &str) -> (Harness, DockerCleanup) {
    ensure_test_image();
    let arn = instance_arn(&format!("docker-test-{name}-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    let config = EngineConfig {
        task_cleanup_wait: Duration::from_secs(1),
        resync_interval: Duration::from_secs(5),
        ..EngineConfig::new(CLUSTER, &arn)
    };
    (Harness::start(Arc::new(runtime), config), cleanup)
}

fn busybox(name: &str, command: &[&str]) -> model::ecs::task_definition::ContainerDefinition {
    let mut definition = container(name, TEST_IMAGE);
    definition.command = Some(command.iter().map(|s| s.to_string()).collect());
    definition
}

async fn http_get(port: u16) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    stream
        .write_all(b"GET /index.html HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.ok()?;
    Some(answer)
}

#[tokio::test]
async fn a_one_shot_container_reports_its_exit_code() {
    let (harness, _cleanup) = setup("exit").await;
    let arn = task_arn(101);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("exit", vec![busybox("main", &["sh", "-c", "exit 3"])]),
    )]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    let main = container_report(&done, "main");
    assert_eq!(main.exit_code, Some(3));
    assert!(main.runtime_id.as_ref().is_some_and(|id| id.len() == 64));
    assert!(main
        .image_digest
        .as_ref()
        .is_some_and(|d| d.starts_with("sha256:")));
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
}

#[tokio::test]
async fn httpd_answers_on_its_dynamic_host_port() {
    let (harness, _cleanup) = setup("httpd").await;
    let arn = task_arn(102);
    let mut web = busybox("web", &["httpd", "-f", "-p", "8080", "-h", "/www"]);
    web.port_mappings = Some(vec![PortMapping {
        container_port: Some(8080),
        ..Default::default()
    }]);
    web.memory = Some(64);
    // PID 1 ignores SIGTERM unless it handles it; an init forwards it so httpd stops at once.
    web.linux_parameters = Some(LinuxParameters {
        init_process_enabled: Some(true),
        ..Default::default()
    });
    web.cpu = Some(128);
    let task = agent_task(&arn, definition("httpd", vec![web]));
    harness.engine.apply(vec![task.clone()]);
    let running = harness.wait_status(&arn, "RUNNING", WAIT).await;
    let binding = container_report(&running, "web")
        .network_bindings
        .clone()
        .and_then(|b| b.into_iter().next())
        .expect("a network binding");
    assert_eq!(binding.bind_ip.as_deref(), Some("0.0.0.0"));
    assert_eq!(binding.container_port, Some(8080));
    let host_port = binding.host_port.expect("host port") as u16;
    assert!(
        (49153..=65535).contains(&host_port),
        "{host_port} is from the agent's range"
    );

    let deadline = Instant::now() + Duration::from_secs(20);
    let answer = loop {
        if let Some(answer) = http_get(host_port).await.filter(|a| a.contains("200")) {
            break answer;
        }
        assert!(
            Instant::now() < deadline,
            "httpd never answered on {host_port}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(answer.contains("wharf test image"), "{answer}");

    // The resources reached the engine.
    let id = container_report(&running, "web")
        .runtime_id
        .clone()
        .expect("id");
    let output = std::process::Command::new("docker")
        .args([
            "inspect",
            "-f",
            "{{.HostConfig.Memory}} {{.HostConfig.CpuShares}}",
            &id,
        ])
        .output()
        .expect("docker inspect");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "67108864 128"
    );

    let asked = Instant::now();
    harness.engine.apply(vec![stopped(task)]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "the init forwarded SIGTERM"
    );
    assert_eq!(container_report(&done, "web").exit_code, Some(143));
}

#[tokio::test]
async fn a_container_ignoring_sigterm_is_killed_after_its_stop_timeout() {
    let (harness, _cleanup) = setup("sigterm").await;
    let arn = task_arn(103);
    let mut stubborn = busybox(
        "stubborn",
        &["sh", "-c", "trap '' TERM; while true; do sleep 1; done"],
    );
    stubborn.stop_timeout = Some(2);
    let task = agent_task(&arn, definition("sigterm", vec![stubborn]));
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&arn, "RUNNING", WAIT).await;
    let asked = Instant::now();
    harness.engine.apply(vec![stopped(task)]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    let took = asked.elapsed();
    assert!(took >= Duration::from_secs(2), "stopped after {took:?}");
    assert!(took < Duration::from_secs(20), "stopped after {took:?}");
    assert_eq!(container_report(&done, "stubborn").exit_code, Some(137));
}

#[tokio::test]
async fn a_health_check_turns_healthy_and_releases_the_dependent() {
    let (harness, _cleanup) = setup("health").await;
    let arn = task_arn(104);
    let mut db = busybox(
        "db",
        &["sh", "-c", "sleep 2; touch /tmp/ready; exec sleep 1000"],
    );
    db.health_check = Some(HealthCheck {
        command: vec!["CMD-SHELL".into(), "test -f /tmp/ready".into()],
        interval: Some(1),
        timeout: Some(2),
        retries: Some(1),
        start_period: None,
    });
    let mut app = busybox("app", &["sleep", "1000"]);
    app.depends_on = Some(vec![depends("db", "HEALTHY")]);
    let started = Instant::now();
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("health", vec![db, app]))]);
    let running = harness.wait_status(&arn, "RUNNING", WAIT).await;
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "app waited for db to be healthy"
    );
    assert_eq!(
        container_report(&running, "db").health_status.as_deref(),
        Some("HEALTHY")
    );
    assert_eq!(running.health_status.as_deref(), Some("HEALTHY"));
    // The PENDING app was reported while db was starting.
    assert!(harness.sink.of(&arn).iter().any(|r| {
        container_report(r, "db").last_status == "RUNNING"
            && container_report(r, "app").last_status == "PENDING"
    }));
}

#[tokio::test]
async fn an_oom_kill_is_reported_as_such() {
    let (harness, _cleanup) = setup("oom").await;
    let arn = task_arn(105);
    // Doubling a shell variable outgrows 8 MiB within a few iterations.
    let mut hog = busybox(
        "hog",
        &["sh", "-c", "x=0123456789; while true; do x=\"$x$x\"; done"],
    );
    hog.memory = Some(8);
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("oom", vec![hog]))]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    let hog = container_report(&done, "hog");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage"),
        "{done:#?}"
    );
    assert_eq!(hog.exit_code, Some(137));
}

#[tokio::test]
async fn task_volumes_are_shared_between_containers_and_removed_with_the_task() {
    let (harness, _cleanup) = setup("volumes").await;
    let arn = task_arn(106);
    let mount = |read_only| {
        Some(vec![MountPoint {
            source_volume: Some("scratch".into()),
            container_path: Some("/data".into()),
            read_only: Some(read_only),
        }])
    };
    let mut writer = busybox("writer", &["sh", "-c", "echo hello > /data/greeting"]);
    writer.essential = Some(false);
    writer.mount_points = mount(false);
    let mut reader = busybox(
        "reader",
        &["sh", "-c", "test \"$(cat /data/greeting)\" = hello"],
    );
    reader.mount_points = mount(true);
    reader.depends_on = Some(vec![depends("writer", "SUCCESS")]);
    let mut definition = definition("volumes", vec![writer, reader]);
    definition.volumes = Some(vec![Volume {
        name: Some("scratch".into()),
        docker_volume_configuration: Some(DockerVolumeConfiguration {
            scope: Some("task".into()),
            labels: Some(BTreeMap::from([("purpose".into(), "test".into())])),
            ..Default::default()
        }),
        ..Default::default()
    }]);
    harness
        .engine
        .apply(vec![agent_task(&arn, definition.clone())]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    assert_eq!(container_report(&done, "writer").exit_code, Some(0));
    assert_eq!(
        container_report(&done, "reader").exit_code,
        Some(0),
        "{done:#?}"
    );

    let volume = agent::runner::spec::task_volume_name(
        &agent_task(&arn, definition.clone()).task,
        &definition,
        "scratch",
    );
    let deadline = Instant::now() + WAIT;
    while harness
        .runtime
        .volume_exists(&volume)
        .await
        .expect("inspects")
    {
        assert!(
            Instant::now() < deadline,
            "task volume {volume} never removed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_missing_image_stops_the_task_with_docker_s_pull_error() {
    let (harness, _cleanup) = setup("pull").await;
    let arn = task_arn(107);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition(
            "pull",
            vec![container("app", "wharf-test/does-not-exist:1")],
        ),
    )]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    assert_eq!(done.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = done.stopped_reason.clone().expect("reason");
    assert!(reason.starts_with("CannotPullContainerError: "), "{reason}");
    assert!(
        reason.len() > "CannotPullContainerError: ".len() + 10,
        "{reason}"
    );
}

#[tokio::test]
async fn a_restarted_engine_re_adopts_running_containers_untouched() {
    let (harness, _cleanup) = setup("adopt").await;
    let arn = task_arn(108);
    let mut app = busybox("app", &["sleep", "1000"]);
    app.linux_parameters = Some(LinuxParameters {
        init_process_enabled: Some(true),
        ..Default::default()
    });
    let task = agent_task(&arn, definition("adopt", vec![app]));
    harness.engine.apply(vec![task.clone()]);
    let running = harness.wait_status(&arn, "RUNNING", WAIT).await;
    let id = container_report(&running, "app")
        .runtime_id
        .clone()
        .expect("id");
    let started_at = harness
        .runtime
        .inspect_container(&id)
        .await
        .expect("inspect")
        .started_at;

    let harness = harness.restart().await;
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    harness.engine.apply(vec![task.clone()]);
    harness
        .sink
        .wait_for(&arn, WAIT, |r| r.last_status == "RUNNING")
        .await;
    let info = harness
        .runtime
        .inspect_container(&id)
        .await
        .expect("inspect");
    assert!(info.status.is_running());
    assert_eq!(
        info.started_at, started_at,
        "the container was not restarted"
    );

    harness.engine.apply(vec![stopped(task)]);
    let done = harness.wait_status(&arn, "STOPPED", WAIT).await;
    assert_eq!(
        container_report(&done, "app").runtime_id.as_deref(),
        Some(id.as_str())
    );
}

#[tokio::test]
async fn engine_events_carry_the_container_labels() {
    use agent::runtime::{ContainerRuntime, ContainerSpec, RuntimeEventKind};
    use futures_util::StreamExt;
    ensure_test_image();
    let arn = instance_arn(&format!("docker-test-events-{}", std::process::id()));
    let _cleanup = DockerCleanup::new(&arn);
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    let version = runtime.version().await.expect("version");
    assert!(!version.version.is_empty() && version.api_version.starts_with("1."));
    let mut events = runtime.events();
    let spec = ContainerSpec {
        name: format!("wharf-events-test-{}", std::process::id()),
        image: TEST_IMAGE.into(),
        cmd: Some(vec!["sh".into(), "-c".into(), "exit 0".into()]),
        labels: BTreeMap::from([
            (
                agent::labels::CONTAINER_INSTANCE_ARN.to_string(),
                arn.clone(),
            ),
            (agent::labels::TASK_ARN.to_string(), "task-x".to_string()),
        ]),
        ..Default::default()
    };
    let id = runtime.create_container(&spec).await.expect("creates");
    // The events request is only sent on the first poll: poll once before starting (what
    // arrives meanwhile belongs to other tests' containers).
    let _ = tokio::time::timeout(Duration::from_millis(300), events.next()).await;
    runtime.start_container(&id).await.expect("starts");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !seen.contains(&RuntimeEventKind::Die) {
        let event = tokio::time::timeout_at(deadline, events.next())
            .await
            .expect("events arrive")
            .expect("stream open")
            .expect("no error");
        if event.container_id == id {
            assert_eq!(
                event
                    .labels
                    .get(agent::labels::TASK_ARN)
                    .map(String::as_str),
                Some("task-x")
            );
            seen.push(event.kind);
        }
    }
    assert_eq!(seen, vec![RuntimeEventKind::Start, RuntimeEventKind::Die]);
    let conflict = runtime.create_container(&spec).await;
    assert!(
        matches!(conflict, Err(agent::runtime::RuntimeError::Conflict { .. })),
        "{conflict:?}"
    );
    runtime.remove_container(&id).await.expect("removes");
    runtime
        .remove_container(&id)
        .await
        .expect("removing twice is fine");
    assert!(matches!(
        runtime.inspect_container(&id).await,
        Err(agent::runtime::RuntimeError::NoSuchContainer { .. })
    ));
}
