//! The task metadata endpoint on the real Docker engine: a bridge-mode container fetches
//! `$ECS_CONTAINER_METADATA_URI_V4/task` and `…/stats` with busybox's wget through the bridge
//! gateway, and what it printed is its task's document and its Docker stats.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agent::metadata::{MetadataConfig, MetadataServer};
use agent::runner::EngineConfig;
use agent::testing::{ensure_test_image, DockerCleanup, TEST_IMAGE};
use agent::DockerRuntime;
use support::*;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(90);

fn docker_logs(id: &str) -> String {
    let output = std::process::Command::new("docker")
        .args(["logs", id])
        .output()
        .expect("docker logs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn a_bridge_container_reads_its_task_metadata_and_stats() {
    ensure_test_image();
    let arn = instance_arn(&format!("docker-metadata-{}", std::process::id()));
    let cleanup = DockerCleanup::new(&arn);
    cleanup.clean();
    let runtime: Arc<DockerRuntime> =
        Arc::new(DockerRuntime::connect().await.expect("docker is running"));
    let metadata = MetadataServer::new(
        MetadataConfig::new(CLUSTER, "us-east-1a"),
        runtime.clone(),
        CancellationToken::new(),
    );
    let config = EngineConfig {
        task_cleanup_wait: Duration::from_secs(600),
        resync_interval: Duration::from_secs(5),
        metadata: Some(metadata.clone()),
        ..EngineConfig::new(CLUSTER, &arn)
    };
    let harness = Harness::start(runtime, config);
    let task_arn = task_arn(301);
    let mut main = container("main", TEST_IMAGE);
    main.memory = Some(64);
    // `sleep` as PID 1 ignores SIGTERM: do not wait 30 s for it at the end.
    main.stop_timeout = Some(1);
    main.command = Some(vec![
        "sh".into(),
        "-c".into(),
        concat!(
            "wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/task\"; echo; ",
            "wget -qO- \"$ECS_CONTAINER_METADATA_URI_V4/stats\"; echo; ",
            "echo \"uri=$ECS_CONTAINER_METADATA_URI_V4\"; echo done; exec sleep 600"
        )
        .into(),
    ]);
    let task = agent_task(&task_arn, definition("metadata", vec![main]));
    harness.engine.apply(vec![task.clone()]);
    let running = harness.wait_status(&task_arn, "RUNNING", WAIT).await;
    let id = container_report(&running, "main")
        .runtime_id
        .clone()
        .expect("a runtime id");

    let deadline = Instant::now() + Duration::from_secs(60);
    let logs = loop {
        let logs = docker_logs(&id);
        if logs.lines().any(|l| l == "done") {
            break logs;
        }
        assert!(
            Instant::now() < deadline,
            "the container never finished asking; it printed:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let lines: Vec<&str> = logs.lines().collect();
    let task_document: serde_json::Value = serde_json::from_str(lines[0])
        .unwrap_or_else(|e| panic!("the task document ({e}):\n{logs}"));
    assert_eq!(task_document["TaskARN"], task_arn.as_str());
    assert_eq!(task_document["Cluster"], CLUSTER);
    assert_eq!(task_document["Family"], "metadata");
    assert_eq!(task_document["Revision"], "1");
    let containers = task_document["Containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "{task_document}");
    let main = &containers[0];
    assert_eq!(main["Name"], "main");
    assert_eq!(main["DockerId"], id.as_str());
    assert_eq!(main["Image"], TEST_IMAGE);
    assert!(main["ImageID"]
        .as_str()
        .is_some_and(|i| i.starts_with("sha256:")));
    assert_eq!(main["KnownStatus"], "RUNNING");
    assert_eq!(main["Limits"]["Memory"], 64);
    assert_eq!(main["Networks"][0]["NetworkMode"], "bridge");
    assert!(main["Networks"][0]["IPv4Addresses"][0]
        .as_str()
        .is_some_and(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok()));
    for member in ["CreatedAt", "StartedAt"] {
        let text = main[member].as_str().expect(member);
        chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    }
    assert_eq!(
        main["Labels"]["com.amazonaws.ecs.task-arn"],
        task_arn.as_str()
    );

    let stats: serde_json::Value =
        serde_json::from_str(lines[1]).unwrap_or_else(|e| panic!("the stats ({e}):\n{logs}"));
    assert!(
        stats["cpu_stats"]["cpu_usage"]["total_usage"].is_u64(),
        "{stats}"
    );
    assert!(stats["memory_stats"]["usage"].is_u64(), "{stats}");
    assert!(stats["read"].is_string(), "{stats}");

    // The URI points at the bridge gateway, never at a wildcard address.
    let uri = lines[2].strip_prefix("uri=").expect("the URI line");
    let address: std::net::SocketAddr = uri
        .trim_start_matches("http://")
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("an ip:port");
    assert!(!address.ip().is_unspecified() && !address.ip().is_loopback());
    assert_eq!(metadata.addresses(), vec![address]);

    harness.engine.apply(vec![stopped(task)]);
    harness.wait_status(&task_arn, "STOPPED", WAIT).await;
    harness.engine.shutdown().await;
    metadata.shutdown().await;
}
