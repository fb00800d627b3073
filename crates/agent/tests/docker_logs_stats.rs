//! awslogs shipping and resource statistics on the real Docker engine with the locally built
//! busybox image: a task's stdout and stderr reach the (recording) CloudWatch Logs sink line
//! by line across an agent restart in the middle of its output, with no line lost or repeated;
//! and a CPU-burning container's statistics show its CPU time growing.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use agent::labels;
use agent::runner::EngineConfig;
use agent::runtime::ContainerSpec;
use agent::stats::{ReportOutcome, StatsConfig, StatsSampler};
use agent::testing::{ensure_test_image, DockerCleanup, RecordingStatsSink, TEST_IMAGE};
use agent::{ContainerRuntime, DockerRuntime};
use model::ecs::task_definition::{ContainerDefinition, LogConfiguration};
use store::clock::SystemClock;
use support::*;

const WAIT: Duration = Duration::from_secs(90);
const LINES: usize = 400;

fn busybox(name: &str, script: &str) -> ContainerDefinition {
    let mut definition = container(name, TEST_IMAGE);
    definition.command = Some(vec!["sh".into(), "-c".into(), script.into()]);
    definition
}

/// The agent's logs on stderr, filtered by `RUST_LOG` (nothing by default).
fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

#[tokio::test]
async fn awslogs_lines_are_shipped_once_across_an_agent_restart() {
    trace();
    ensure_test_image();
    let arn = instance_arn(&format!("docker-logs-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    let config = EngineConfig {
        task_cleanup_wait: Duration::from_secs(1),
        resync_interval: Duration::from_secs(5),
        log_checkpoint_dir: Some(dir.path().join("logs")),
        ..EngineConfig::new(CLUSTER, &arn)
    };
    let harness = Harness::start(Arc::new(runtime), config);

    // Numbered lines on stdout and stderr over a few seconds, a 40,000-byte line (the engine
    // stores it in 16 KiB parts), and a last line without a newline.
    let script = format!(
        "i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo out $i; echo err $i >&2; usleep 10000; done; \
         dd if=/dev/zero bs=1000 count=40 2>/dev/null | tr '\\0' x; echo; printf 'the end'"
    );
    let mut app = busybox("app", &script);
    app.log_configuration = Some(LogConfiguration {
        log_driver: "awslogs".into(),
        options: Some(BTreeMap::from([
            ("awslogs-group".to_string(), "/ecs/docker-logs".to_string()),
            ("awslogs-region".to_string(), "us-east-1".to_string()),
            ("awslogs-stream-prefix".to_string(), "ecs".to_string()),
            ("awslogs-create-group".to_string(), "true".to_string()),
        ])),
        secret_options: None,
    });
    let task_arn = task_arn(701);
    let task = agent_task(&task_arn, definition("docker-logs", vec![app]));
    let stream = format!("ecs/app/{}", task_arn.rsplit('/').next().expect("task id"));
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&task_arn, "RUNNING", WAIT).await;

    // Some lines are shipped, then the agent restarts while the container keeps printing.
    harness
        .logs
        .wait_for_messages("/ecs/docker-logs", &stream, 40, WAIT)
        .await;
    let harness = harness.restart().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    harness.engine.apply(vec![task]);
    harness.wait_status(&task_arn, "STOPPED", WAIT).await;

    let messages = harness
        .logs
        .wait_for_messages("/ecs/docker-logs", &stream, 2 * LINES + 2, WAIT)
        .await;
    let mut out: Vec<String> = messages
        .iter()
        .filter(|m| m.starts_with("out "))
        .cloned()
        .collect();
    let err: Vec<String> = messages
        .iter()
        .filter(|m| m.starts_with("err "))
        .cloned()
        .collect();
    let expected =
        |stream: &str| -> Vec<String> { (1..=LINES).map(|n| format!("{stream} {n}")).collect() };
    assert_eq!(err, expected("err"), "every stderr line once, in order");
    assert_eq!(out, expected("out"), "every stdout line once, in order");
    out.clear();
    let long: Vec<&String> = messages.iter().filter(|m| m.starts_with('x')).collect();
    assert_eq!(long.len(), 1, "the long line is one event");
    assert_eq!(long[0].len(), 40_000);
    assert!(long[0].bytes().all(|b| b == b'x'));
    assert_eq!(messages.last().map(String::as_str), Some("the end"));
    assert_eq!(messages.len(), 2 * LINES + 2, "nothing repeated");
    let events = harness.logs.events("/ecs/docker-logs", &stream);
    let now_ms = chrono::Utc::now().timestamp_millis();
    assert!(events
        .iter()
        .all(|e| e.timestamp <= now_ms && e.timestamp > now_ms - 600_000));
    assert!(harness.logs.violations().is_empty());

    // The engine still has the log: `docker logs` works for awslogs containers.
    let id = harness
        .sink
        .latest(&task_arn)
        .and_then(|r| r.containers[0].runtime_id.clone())
        .expect("runtime id");
    if let Ok(output) = std::process::Command::new("docker")
        .args(["logs", &id])
        .output()
    {
        if output.status.success() {
            assert!(String::from_utf8_lossy(&output.stdout).contains("out 1\n"));
        }
    }
    drop(cleanup);
}

#[tokio::test]
async fn a_long_line_finished_after_an_agent_restart_is_shipped_once() {
    trace();
    ensure_test_image();
    let arn = instance_arn(&format!("docker-logs-split-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let dir = tempfile::tempdir().expect("temp dir");
    let runtime = DockerRuntime::connect().await.expect("docker is running");
    let config = EngineConfig {
        task_cleanup_wait: Duration::from_secs(1),
        resync_interval: Duration::from_secs(5),
        log_checkpoint_dir: Some(dir.path().join("logs")),
        ..EngineConfig::new(CLUSTER, &arn)
    };
    let harness = Harness::start(Arc::new(runtime), config);

    // 20,000 bytes without a newline: the engine logs the first 16 KiB as a part at once and
    // holds the rest. Stderr lines follow over seconds; the line ends only after the agent
    // restarted, and the engine stamps its last part with the first part's time, seconds
    // older than the stderr lines shipped before the restart.
    let script = "head -c 20000 /dev/zero | tr '\\0' x; usleep 1200000; echo err 1 >&2; \
                  usleep 1200000; echo err 2 >&2; usleep 9000000; echo; echo out after";
    let mut app = busybox("app", script);
    app.log_configuration = Some(LogConfiguration {
        log_driver: "awslogs".into(),
        options: Some(BTreeMap::from([
            ("awslogs-group".to_string(), "/ecs/docker-split".to_string()),
            ("awslogs-stream-prefix".to_string(), "ecs".to_string()),
            ("awslogs-create-group".to_string(), "true".to_string()),
        ])),
        secret_options: None,
    });
    let task_arn = task_arn(703);
    let task = agent_task(&task_arn, definition("docker-split", vec![app]));
    let stream = format!("ecs/app/{}", task_arn.rsplit('/').next().expect("task id"));
    harness.engine.apply(vec![task.clone()]);
    harness.wait_status(&task_arn, "RUNNING", WAIT).await;

    let before = harness
        .logs
        .wait_for_messages("/ecs/docker-split", &stream, 3, WAIT)
        .await;
    assert_eq!(before[1..], ["err 1".to_string(), "err 2".to_string()]);
    // Let the checkpoint after "err 2" reach the disk before the agent stops.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let harness = harness.restart().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(harness.engine.adopt().await.expect("adopts"), 1);
    harness.engine.apply(vec![task]);
    harness.wait_status(&task_arn, "STOPPED", WAIT).await;

    harness
        .logs
        .wait_for_messages("/ecs/docker-split", &stream, 5, WAIT)
        .await;
    // Anything sent twice would come right behind.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = harness.logs.messages("/ecs/docker-split", &stream);
    let lengths: Vec<usize> = messages.iter().map(String::len).collect();
    assert_eq!(
        lengths,
        vec![16 * 1024, 5, 5, 20_000 - 16 * 1024, 9],
        "the line's two parts, each once: {:?}",
        messages
            .iter()
            .map(|m| m.chars().take(12).collect::<String>())
            .collect::<Vec<_>>()
    );
    assert_eq!(messages[4], "out after");
    assert!(messages[0]
        .bytes()
        .chain(messages[3].bytes())
        .all(|b| b == b'x'));
    assert!(harness.logs.violations().is_empty());
    drop(cleanup);
}

#[tokio::test]
async fn a_cpu_burning_container_shows_its_cpu_time_growing() {
    ensure_test_image();
    let arn = instance_arn(&format!("docker-stats-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let runtime: Arc<dyn ContainerRuntime> =
        Arc::new(DockerRuntime::connect().await.expect("docker is running"));
    let task = task_arn(702);
    let spec = |name: &str, memory: Option<i64>| ContainerSpec {
        name: format!("wharf-stats-{name}-{}", std::process::id()),
        image: TEST_IMAGE.into(),
        cmd: Some(vec!["sh".into(), "-c".into(), "while :; do :; done".into()]),
        labels: BTreeMap::from([
            (labels::TASK_ARN.to_string(), task.clone()),
            (labels::CONTAINER_NAME.to_string(), name.to_string()),
            (labels::CONTAINER_INSTANCE_ARN.to_string(), arn.clone()),
        ]),
        memory_limit_bytes: memory,
        ..Default::default()
    };
    let burner = runtime
        .create_container(&spec("burner", Some(64 << 20)))
        .await
        .expect("creates");
    runtime.start_container(&burner).await.expect("starts");
    let unlimited = runtime
        .create_container(&spec("unlimited", None))
        .await
        .expect("creates");
    runtime.start_container(&unlimited).await.expect("starts");

    let started = std::time::Instant::now();
    let first = runtime
        .stats(&burner)
        .await
        .expect("reads")
        .expect("running");
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "one-shot stats answer without the engine's one-second wait ({:?})",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let second = runtime
        .stats(&burner)
        .await
        .expect("reads")
        .expect("running");
    assert!(
        second.cpu_total_nanos > first.cpu_total_nanos + 300_000_000,
        "a busy loop uses CPU: {first:?} then {second:?}"
    );
    assert!(second.memory_bytes > 0);
    assert_eq!(second.memory_limit_bytes, 64 << 20);
    let other = runtime
        .stats(&unlimited)
        .await
        .expect("reads")
        .expect("running");
    assert_eq!(other.memory_limit_bytes, 0, "no limit reads as 0");

    // The sampler sums both containers of the task.
    let sink = Arc::new(RecordingStatsSink::default());
    let sampler = StatsSampler::new(
        StatsConfig::new(CLUSTER, &arn),
        runtime.clone(),
        Arc::new(SystemClock),
        sink.clone(),
    );
    assert_eq!(sampler.sample_once().await, 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sampler.sample_once().await, 1);
    assert_eq!(sampler.report_once().await, ReportOutcome::Sent(2));
    let batch = &sink.batches()[0];
    let samples = &batch.tasks[0].samples;
    assert_eq!(batch.tasks[0].task_arn, task);
    assert_eq!(samples[0].containers.len(), 2);
    assert!(samples[1].cpu_total_nanos > samples[0].cpu_total_nanos);
    assert_eq!(
        samples[1].cpu_total_nanos,
        samples[1]
            .containers
            .iter()
            .map(|c| c.cpu_total_nanos)
            .sum::<u64>()
    );

    runtime
        .stop_container(&burner, Duration::from_secs(0))
        .await
        .expect("stops");
    assert_eq!(runtime.stats(&burner).await.expect("reads"), None);
    drop(cleanup);
}
