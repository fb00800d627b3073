//! The task runner against the fake runtime on paused tokio time: ECS's task lifecycle,
//! essential and non-essential exits, dependsOn, stop timeouts and order, pull and create
//! failures, dynamic ports, cleanup, and re-adoption after a restart.

mod support;

use std::sync::Arc;
use std::time::Duration;

use agent::runner::EngineConfig;
use agent::runtime::fake::{FakeBehavior, FakeRuntime};
use agent::runtime::{HealthState, ImagePullBehavior};
use model::ecs::task_definition::{HealthCheck, PortMapping};
use support::*;

const IMAGE: &str = "img:1";
const LONG: Duration = Duration::from_secs(3600);

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

fn health_check() -> HealthCheck {
    HealthCheck {
        command: vec!["CMD-SHELL".into(), "true".into()],
        interval: Some(5),
        timeout: Some(2),
        retries: Some(3),
        start_period: None,
    }
}

#[tokio::test(start_paused = true)]
async fn a_task_goes_through_ecs_statuses_and_is_cleaned_up() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("lifecycle"));
    let arn = task_arn(1);
    let task = agent_task(&arn, definition("web", vec![container("app", IMAGE)]));
    harness.engine.apply(vec![task.clone()]);

    let running = harness.wait_status(&arn, "RUNNING", LONG).await;
    assert_eq!(
        harness.sink.statuses(&arn),
        vec!["PENDING", "ACTIVATING", "RUNNING"]
    );
    let app = container_report(&running, "app");
    assert_eq!(app.last_status, "RUNNING");
    assert_eq!(app.runtime_id, fake.find(&arn, "app"));
    assert_eq!(app.health_status.as_deref(), Some("UNKNOWN"));
    assert!(running.pull_started_at.is_some() && running.pull_stopped_at.is_some());
    assert!(running.started_at.is_some());
    assert_eq!(running.health_status.as_deref(), Some("UNKNOWN"));

    harness.engine.apply(vec![stopped(task.clone())]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(
        harness.sink.statuses(&arn),
        vec![
            "PENDING",
            "ACTIVATING",
            "RUNNING",
            "DEACTIVATING",
            "STOPPED"
        ]
    );
    assert_eq!(
        done.stop_code, None,
        "a stop the server asked for keeps the server's code"
    );
    assert_eq!(container_report(&done, "app").exit_code, Some(143));
    assert!(done.execution_stopped_at.is_some());

    // Stopped containers stay for the cleanup delay, then go, and the owner with them.
    let id = fake.find(&arn, "app").expect("still there after stopping");
    let deadline = tokio::time::Instant::now() + LONG;
    while fake.container(&id).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never cleaned up");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(fake.removed(), vec![id]);
    while !harness.engine.task_arns().is_empty() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The server may still list it until it has the STOPPED report: no new owner.
    harness.engine.apply(vec![stopped(task)]);
    assert!(harness.engine.task_arns().is_empty());
}

#[tokio::test(start_paused = true)]
async fn an_essential_exit_stops_the_task_and_a_non_essential_one_does_not() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("exits"));
    let arn = task_arn(2);
    let mut sidecar = container("sidecar", IMAGE);
    sidecar.essential = Some(false);
    let task = agent_task(
        &arn,
        definition("exits", vec![container("app", IMAGE), sidecar]),
    );
    harness.engine.apply(vec![task]);
    harness.wait_status(&arn, "RUNNING", LONG).await;

    fake.exit(&fake.find(&arn, "sidecar").expect("sidecar"), 1);
    let report = harness
        .sink
        .wait_for(&arn, LONG, |r| {
            container_report(r, "sidecar").last_status == "STOPPED"
        })
        .await;
    assert_eq!(
        report.last_status, "RUNNING",
        "a non-essential exit leaves the task running"
    );
    assert_eq!(container_report(&report, "sidecar").exit_code, Some(1));

    fake.exit(&fake.find(&arn, "app").expect("app"), 3);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("Essential container in task exited")
    );
    assert_eq!(container_report(&done, "app").exit_code, Some(3));
    assert_eq!(container_report(&done, "app").last_status, "STOPPED");
}

#[tokio::test(start_paused = true)]
async fn depends_on_healthy_holds_the_dependent_until_the_check_passes() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("healthy"));
    let arn = task_arn(3);
    let mut db = container("db", IMAGE);
    db.health_check = Some(health_check());
    let mut app = container("app", IMAGE);
    app.depends_on = Some(vec![depends("db", "HEALTHY")]);
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("healthy", vec![app, db]))]);

    harness
        .sink
        .wait_for(&arn, LONG, |r| {
            container_report(r, "db").last_status == "RUNNING"
        })
        .await;
    // Time passes; the dependent is created but not started while db is not healthy.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let app_id = fake.find(&arn, "app").expect("created up front");
    assert_eq!(fake.container(&app_id).expect("exists").start_count, 0);
    let latest = harness.sink.latest(&arn).expect("reports");
    assert_eq!(latest.last_status, "ACTIVATING");
    assert_eq!(container_report(&latest, "app").last_status, "PENDING");

    fake.set_health(&fake.find(&arn, "db").expect("db"), HealthState::Healthy);
    let running = harness.wait_status(&arn, "RUNNING", LONG).await;
    assert_eq!(
        container_report(&running, "db").health_status.as_deref(),
        Some("HEALTHY")
    );
    assert_eq!(running.health_status.as_deref(), Some("HEALTHY"));

    fake.set_health(&fake.find(&arn, "db").expect("db"), HealthState::Unhealthy);
    let unhealthy = harness
        .sink
        .wait_for(&arn, LONG, |r| {
            r.health_status.as_deref() == Some("UNHEALTHY")
        })
        .await;
    assert_eq!(unhealthy.last_status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn success_and_complete_dependencies_wait_for_the_exit() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("success"));
    let arn = task_arn(4);
    let mut init = container("init", IMAGE);
    init.essential = Some(false);
    let mut migrate = container("migrate", IMAGE);
    migrate.essential = Some(false);
    let mut app = container("app", IMAGE);
    app.depends_on = Some(vec![
        depends("init", "SUCCESS"),
        depends("migrate", "COMPLETE"),
    ]);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("success", vec![init, migrate, app]),
    )]);
    harness
        .sink
        .wait_for(&arn, LONG, |r| {
            container_report(r, "init").last_status == "RUNNING"
        })
        .await;
    fake.exit(&fake.find(&arn, "init").expect("init"), 0);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let app_id = fake.find(&arn, "app").expect("app");
    assert_eq!(
        fake.container(&app_id).expect("app").start_count,
        0,
        "migrate has not completed"
    );
    fake.exit(&fake.find(&arn, "migrate").expect("migrate"), 7);
    let running = harness.wait_status(&arn, "RUNNING", LONG).await;
    assert_eq!(container_report(&running, "migrate").exit_code, Some(7));
    assert_eq!(container_report(&running, "app").last_status, "RUNNING");
}

#[tokio::test(start_paused = true)]
async fn an_unsatisfiable_dependency_stops_the_task_with_a_clear_reason() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("unsatisfiable"));
    // SUCCESS with a non-zero exit.
    let arn = task_arn(5);
    let mut init = container("init", IMAGE);
    init.essential = Some(false);
    let mut app = container("app", IMAGE);
    app.depends_on = Some(vec![depends("init", "SUCCESS")]);
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("dep", vec![init, app]))]);
    harness
        .sink
        .wait_for(&arn, LONG, |r| {
            container_report(r, "init").last_status == "RUNNING"
        })
        .await;
    fake.exit(&fake.find(&arn, "init").expect("init"), 2);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(done.stop_code.as_deref(), Some("TaskFailedToStart"));
    let reason = done.stopped_reason.clone().expect("a reason");
    assert!(reason.contains("init exited with code 2"), "{reason}");
    assert!(container_report(&done, "app")
        .reason
        .as_deref()
        .is_some_and(|r| r.starts_with("DependencyNotResolved")));

    // HEALTHY with a startTimeout that runs out.
    let arn = task_arn(6);
    let mut db = container("db", IMAGE);
    db.health_check = Some(health_check());
    db.start_timeout = Some(10);
    let mut app = container("app", IMAGE);
    app.depends_on = Some(vec![depends("db", "HEALTHY")]);
    let started = tokio::time::Instant::now();
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("timeout", vec![db, app]))]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert!(started.elapsed() >= Duration::from_secs(10));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the deadline wakes the owner"
    );
    let reason = done.stopped_reason.clone().expect("a reason");
    assert!(reason.contains("startTimeout of 10 s"), "{reason}");
}

#[tokio::test(start_paused = true)]
async fn stopping_honours_stop_timeouts_and_reverse_dependency_order() {
    let fake = fake();
    fake.behave(
        "stubborn",
        FakeBehavior {
            ignore_sigterm: true,
            ..Default::default()
        },
    );
    let harness = Harness::start(Arc::new(fake.clone()), config("stop"));
    let arn = task_arn(7);
    let mut db = container("db", IMAGE);
    db.stop_timeout = Some(20);
    let mut stubborn = container("stubborn", IMAGE);
    stubborn.stop_timeout = Some(5);
    stubborn.depends_on = Some(vec![depends("db", "START")]);
    let task = agent_task(&arn, definition("stop", vec![db, stubborn]));
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&arn, "RUNNING", LONG).await;

    let asked = tokio::time::Instant::now();
    harness.engine.apply(vec![stopped(task)]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert!(
        asked.elapsed() >= Duration::from_secs(5),
        "SIGTERM is ignored for 5 s"
    );
    let stubborn = fake
        .container(&fake.find(&arn, "stubborn").expect("s"))
        .expect("s");
    let db = fake
        .container(&fake.find(&arn, "db").expect("db"))
        .expect("db");
    assert!(stubborn.killed);
    assert_eq!(stubborn.stop_requests, vec![Duration::from_secs(5)]);
    assert_eq!(db.stop_requests, vec![Duration::from_secs(20)]);
    assert!(
        stubborn.finished_at < db.finished_at,
        "the dependent stops before what it depends on"
    );
    assert_eq!(container_report(&done, "stubborn").exit_code, Some(137));
}

#[tokio::test(start_paused = true)]
async fn a_pull_failure_stops_the_task_with_the_engine_message() {
    let fake = FakeRuntime::new();
    fake.fail_pull(
        "nope/missing:1",
        "pull access denied for nope/missing, repository does not exist",
    );
    let mut config = config("pull");
    config.image_pull_behavior = ImagePullBehavior::Default;
    let harness = Harness::start(Arc::new(fake.clone()), config);
    let arn = task_arn(8);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("pull", vec![container("app", "nope/missing:1")]),
    )]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(done.stop_code.as_deref(), Some("TaskFailedToStart"));
    let expected =
        "CannotPullContainerError: pull access denied for nope/missing, repository does not exist";
    assert_eq!(done.stopped_reason.as_deref(), Some(expected));
    assert_eq!(
        container_report(&done, "app").reason.as_deref(),
        Some(expected)
    );
    assert_eq!(container_report(&done, "app").last_status, "STOPPED");
    assert!(done.pull_started_at.is_some() && done.pull_stopped_at.is_some());
    assert!(!harness.sink.statuses(&arn).contains(&"RUNNING".to_string()));
}

#[tokio::test(start_paused = true)]
async fn engine_errors_and_oom_kills_surface_in_reasons() {
    let fake = fake();
    fake.behave(
        "broken",
        FakeBehavior {
            create_error: Some("invalid mount config for type \"bind\"".into()),
            ..Default::default()
        },
    );
    let harness = Harness::start(Arc::new(fake.clone()), config("errors"));
    let arn = task_arn(9);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("broken", vec![container("broken", IMAGE)]),
    )]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("CannotCreateContainerError: invalid mount config for type \"bind\"")
    );

    let arn = task_arn(10);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("oom", vec![container("hog", IMAGE)]),
    )]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    fake.oom_kill(&fake.find(&arn, "hog").expect("hog"));
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    let hog = container_report(&done, "hog");
    assert_eq!(
        hog.reason.as_deref(),
        Some("OutOfMemoryError: Container killed due to memory usage")
    );
    assert_eq!(hog.exit_code, Some(137));
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
}

#[tokio::test(start_paused = true)]
async fn a_task_stopped_before_it_started_creates_nothing() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("early"));
    let arn = task_arn(11);
    let task = agent_task(&arn, definition("early", vec![container("app", IMAGE)]));
    harness.engine.apply(vec![stopped(task)]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(container_report(&done, "app").last_status, "STOPPED");
    assert!(fake.containers().is_empty());
    assert!(fake.pulls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn dynamic_host_ports_come_from_the_agent_range_and_are_released() {
    let fake = fake();
    let mut config = config("ports");
    config.dynamic_ports = 40100..=40199;
    let harness = Harness::start(Arc::new(fake.clone()), config);
    let arn = task_arn(12);
    let mut web = container("web", IMAGE);
    web.port_mappings = Some(vec![
        PortMapping {
            container_port: Some(80),
            ..Default::default()
        },
        PortMapping {
            container_port: Some(8443),
            host_port: Some(40443),
            ..Default::default()
        },
    ]);
    let task = agent_task(&arn, definition("ports", vec![web]));
    harness.engine.apply(vec![task.clone()]);
    let running = harness.wait_status(&arn, "RUNNING", LONG).await;
    let bindings = container_report(&running, "web")
        .network_bindings
        .clone()
        .expect("bindings");
    assert_eq!(bindings.len(), 2);
    let dynamic = bindings
        .iter()
        .find(|b| b.container_port == Some(80))
        .expect("port 80");
    assert!((40100..=40199).contains(&dynamic.host_port.expect("host port")));
    assert_eq!(dynamic.bind_ip.as_deref(), Some("0.0.0.0"));
    assert_eq!(dynamic.protocol.as_deref(), Some("tcp"));
    assert!(bindings.iter().any(|b| b.host_port == Some(40443)));
    assert!(harness.engine.ports_in_use() >= 1);
    harness.engine.apply(vec![stopped(task)]);
    harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(harness.engine.ports_in_use(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_restarted_engine_re_adopts_without_restarting_anything() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("restart"));
    let arn = task_arn(13);
    let mut sidecar = container("sidecar", IMAGE);
    sidecar.essential = Some(false);
    let task = agent_task(
        &arn,
        definition("restart", vec![container("app", IMAGE), sidecar]),
    );
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    // Another agent's container on the same engine is not ours to adopt.
    let other = Harness::start(Arc::new(fake.clone()), config("someone-else"));
    let other_arn = task_arn(14);
    other.engine.apply(vec![agent_task(
        &other_arn,
        definition("other", vec![container("x", IMAGE)]),
    )]);
    other.wait_status(&other_arn, "RUNNING", LONG).await;

    let harness = harness.restart().await;
    // While the agent was away, the non-essential sidecar exited.
    fake.exit(&fake.find(&arn, "sidecar").expect("sidecar"), 0);
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    assert_eq!(harness.engine.task_arns(), vec![arn.clone()]);

    let before = harness.sink.all().len();
    harness.engine.apply(vec![task.clone()]);
    let report = harness
        .sink
        .wait_for(&arn, LONG, |r| {
            r.last_status == "RUNNING" && container_report(r, "sidecar").last_status == "STOPPED"
        })
        .await;
    assert!(harness.sink.all().len() > before);
    assert_eq!(container_report(&report, "sidecar").exit_code, Some(0));
    for container in fake.containers() {
        assert_eq!(
            container.start_count, 1,
            "{} was started again",
            container.spec.name
        );
    }
    assert_eq!(fake.pulls().len(), 0, "nothing is pulled again");

    // The adopted owner runs the task from here: an essential exit still stops it.
    fake.exit(&fake.find(&arn, "app").expect("app"), 4);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(done.stop_code.as_deref(), Some("EssentialContainerExited"));
    let other_id = fake.find(&other_arn, "x").expect("other agent's container");
    assert!(fake.container(&other_id).expect("x").status.is_running());
}

#[tokio::test(start_paused = true)]
async fn adopted_tasks_the_server_no_longer_lists_are_stopped() {
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("forgotten"));
    let arn = task_arn(15);
    harness.engine.apply(vec![agent_task(
        &arn,
        definition("gone", vec![container("app", IMAGE)]),
    )]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let harness = harness.restart().await;
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    // The server's first answer does not list it: it is STOPPED there.
    harness.engine.apply(Vec::new());
    let id = fake.find(&arn, "app").expect("app");
    let deadline = tokio::time::Instant::now() + LONG;
    while fake.container(&id).is_some_and(|c| c.status.is_running()) {
        assert!(tokio::time::Instant::now() < deadline, "never stopped");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(
        fake.container(&id).expect("kept for cleanup").exit_code,
        Some(143)
    );
}

#[tokio::test(start_paused = true)]
async fn shared_volumes_are_autoprovisioned_and_kept_task_volumes_removed() {
    use model::ecs::task_definition::{DockerVolumeConfiguration, MountPoint, Volume};
    let fake = fake();
    let harness = Harness::start(Arc::new(fake.clone()), config("volumes"));
    let volume = |name: &str, scope: &str, autoprovision: bool| Volume {
        name: Some(name.into()),
        docker_volume_configuration: Some(DockerVolumeConfiguration {
            scope: Some(scope.into()),
            autoprovision: Some(autoprovision),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mount = |name: &str| MountPoint {
        source_volume: Some(name.into()),
        container_path: Some(format!("/{name}")),
        read_only: None,
    };
    let mut app = container("app", IMAGE);
    app.mount_points = Some(vec![mount("cache"), mount("scratch")]);
    let mut definition = definition("volumes", vec![app]);
    definition.volumes = Some(vec![
        volume("cache", "shared", true),
        volume("scratch", "task", false),
    ]);
    let arn = task_arn(16);
    let task = agent_task(&arn, definition.clone());
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let scratch = agent::runner::spec::task_volume_name(&task.task, &definition, "scratch");
    assert_eq!(fake.volumes(), vec!["cache".to_string(), scratch.clone()]);
    let spec = fake
        .container(&fake.find(&arn, "app").expect("app"))
        .expect("app")
        .spec;
    assert_eq!(
        spec.mounts.iter().map(|m| m.as_bind()).collect::<Vec<_>>(),
        vec!["cache:/cache".to_string(), format!("{scratch}:/scratch")]
    );
    harness.engine.apply(vec![stopped(task)]);
    harness.wait_status(&arn, "STOPPED", LONG).await;
    let deadline = tokio::time::Instant::now() + LONG;
    while fake.volumes().len() > 1 {
        assert!(tokio::time::Instant::now() < deadline, "task volume kept");
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    assert_eq!(
        fake.volumes(),
        vec!["cache".to_string()],
        "shared volumes stay"
    );

    // A shared volume that does not exist, without autoprovision, fails the task clearly.
    let mut app = container("app", IMAGE);
    app.mount_points = Some(vec![mount("missing")]);
    let mut definition = definition_with_name("strict", app);
    definition.volumes = Some(vec![volume("missing", "shared", false)]);
    let arn = task_arn(17);
    harness.engine.apply(vec![agent_task(&arn, definition)]);
    let done = harness.wait_status(&arn, "STOPPED", LONG).await;
    assert_eq!(
        done.stopped_reason.as_deref(),
        Some("CannotCreateContainerError: shared volume missing does not exist and autoprovision is not enabled")
    );
}

fn definition_with_name(
    family: &str,
    app: model::ecs::task_definition::ContainerDefinition,
) -> model::ecs::task_definition::TaskDefinition {
    definition(family, vec![app])
}

fn awslogs(
    container: &mut model::ecs::task_definition::ContainerDefinition,
    pairs: &[(&str, &str)],
) {
    container.log_configuration = Some(model::ecs::task_definition::LogConfiguration {
        log_driver: "awslogs".into(),
        options: Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        secret_options: None,
    });
}

#[tokio::test(start_paused = true)]
async fn awslogs_output_is_shipped_before_the_container_is_removed() {
    use agent::runtime::LogSource;
    let fake = fake();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        log_checkpoint_dir: Some(dir.path().join("logs")),
        ..config("awslogs")
    };
    let harness = Harness::start(Arc::new(fake.clone()), config);
    let arn = task_arn(30);
    let mut app = container("app", IMAGE);
    awslogs(
        &mut app,
        &[
            ("awslogs-group", "/ecs/web"),
            ("awslogs-region", "us-east-1"),
            ("awslogs-stream-prefix", "ecs"),
            ("awslogs-create-group", "true"),
        ],
    );
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("web", vec![app]))]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let id = fake.find(&arn, "app").expect("app");
    let created = fake.container(&id).expect("exists");
    assert_eq!(
        created.spec.log_driver.as_ref().map(|(d, _)| d.as_str()),
        Some("json-file")
    );
    let stream = format!("ecs/app/{}", arn.rsplit('/').next().expect("task id"));
    fake.log(&id, LogSource::Stdout, "started\n");
    let shipped = harness
        .logs
        .wait_for_messages("/ecs/web", &stream, 1, LONG)
        .await;
    assert_eq!(shipped, vec!["started"]);
    // The checkpoint is written right after the delivery.
    let checkpoint = dir.path().join("logs").join(format!("{id}.json"));
    let deadline = tokio::time::Instant::now() + LONG;
    while !checkpoint.exists() {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The server goes away; the container logs its last words and exits.
    harness.logs.fail_next_puts(100_000, true);
    fake.log(&id, LogSource::Stderr, "last words\n");
    fake.exit(&id, 1);
    harness.wait_status(&arn, "STOPPED", LONG).await;
    tokio::time::sleep(Duration::from_secs(3_600)).await;
    assert!(
        fake.container(&id).is_some(),
        "the container (and its log) is kept until its log is shipped"
    );
    harness.logs.clear_failures();
    let shipped = harness
        .logs
        .wait_for_messages("/ecs/web", &stream, 2, LONG)
        .await;
    assert_eq!(shipped, vec!["started", "last words"]);
    let deadline = tokio::time::Instant::now() + LONG;
    while fake.container(&id).is_some() {
        assert!(tokio::time::Instant::now() < deadline, "never removed");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // The checkpoint goes with the container.
    while checkpoint.exists() {
        assert!(tokio::time::Instant::now() < deadline, "checkpoint kept");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(harness.logs.violations().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_restarted_agent_ships_what_was_logged_while_it_was_away() {
    use agent::runtime::LogSource;
    let fake = fake();
    let dir = tempfile::tempdir().expect("temp dir");
    let config = EngineConfig {
        log_checkpoint_dir: Some(dir.path().join("logs")),
        ..config("awslogs-restart")
    };
    let harness = Harness::start(Arc::new(fake.clone()), config);
    harness.logs.add_group("/ecs/plain");
    let arn = task_arn(31);
    let mut app = container("app", IMAGE);
    // No stream prefix: the stream is named after the container id, as on EC2.
    awslogs(&mut app, &[("awslogs-group", "/ecs/plain")]);
    harness
        .engine
        .apply(vec![agent_task(&arn, definition("plain", vec![app]))]);
    harness.wait_status(&arn, "RUNNING", LONG).await;
    let id = fake.find(&arn, "app").expect("app");
    fake.log(&id, LogSource::Stdout, "a\n");
    fake.log(&id, LogSource::Stdout, "b\n");
    harness
        .logs
        .wait_for_messages("/ecs/plain", &id, 2, LONG)
        .await;

    let harness = harness.restart().await;
    fake.log(&id, LogSource::Stdout, "c\n");
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The server forgot the task meanwhile: the owner has no definition, only the
    // container's labels, and still ships what is left before cleaning up.
    harness.engine.apply(Vec::new());
    let shipped = harness
        .logs
        .wait_for_messages("/ecs/plain", &id, 3, LONG)
        .await;
    assert_eq!(shipped, vec!["a", "b", "c"]);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(harness.logs.messages("/ecs/plain", &id).len(), 3);
}
