//! Task resource usage from agents: `ReportTaskStats` samples become the live view of
//! `DescribeTaskStats` (what `wharf top` shows) and the `AWS/ECS` utilization metrics.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types::ContainerDefinition;
use serde_json::json;
use store::clock::{Clock, ManualClock};
use support::TestServer;

/// Report samples for `task_arn`: one per second from `start` (seconds), each adding
/// `cpu_per_second` nanoseconds of CPU time, with `memory_mib` in use.
async fn report(
    server: &TestServer,
    instance: &str,
    task_arn: &str,
    start: f64,
    seconds: u64,
    cpu_per_second: u64,
    memory_mib: u64,
) {
    let samples: Vec<_> = (0..=seconds)
        .map(|i| {
            json!({
                "timestamp": start + i as f64,
                "cpuTotalNanos": cpu_per_second * i,
                "memoryBytes": memory_mib * 1024 * 1024,
                "containers": [],
            })
        })
        .collect();
    let answer = support::agent_call(
        server,
        "ReportTaskStats",
        json!({
            "cluster": "usage",
            "containerInstanceArn": instance,
            "tasks": [{"taskArn": task_arn, "samples": samples}],
        }),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.json());
}

#[tokio::test]
async fn reported_samples_become_task_usage() {
    // Signatures are checked against this clock: start it at the real time.
    let clock = Arc::new(ManualClock::new(store::clock::SystemClock.now_millis()));
    let server = support::start_with(clock.clone(), Default::default()).await;
    server
        .ecs
        .create_cluster()
        .cluster_name("usage")
        .send()
        .await
        .unwrap();
    // Registered with a heartbeat: tasks are only placed where the agent is connected.
    let instance = support::register_instance(&server, "usage").await;
    server
        .ecs
        .register_task_definition()
        .family("burner")
        .cpu("256")
        .memory("512")
        .container_definitions(
            ContainerDefinition::builder()
                .name("burn")
                .image("busybox")
                .essential(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let run = server
        .ecs
        .run_task()
        .cluster("usage")
        .task_definition("burner")
        .group("service:web")
        .send()
        .await
        .unwrap();
    assert!(run.failures().is_empty(), "{:?}", run.failures());
    let task_arn = run.tasks()[0].task_arn().unwrap().to_string();

    // Whole seconds, so the five one-second intervals cover exactly five seconds.
    let now = (clock.now_millis() / 1000) as f64;
    // Half a core (512 units) on a task that reserved 256: 200 %.
    report(
        &server,
        &instance,
        &task_arn,
        now - 5.0,
        5,
        500_000_000,
        128,
    )
    .await;

    let stats = support::agent_call(&server, "DescribeTaskStats", json!({"cluster": "usage"}))
        .await
        .json();
    let tasks = stats["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{stats}");
    let usage = &tasks[0];
    assert_eq!(usage["taskArn"], task_arn.as_str());
    assert_eq!(usage["group"], "service:web");
    assert!(
        (usage["cpuUnitsUsed"].as_f64().unwrap() - 512.0).abs() < 1.0,
        "{usage}"
    );
    assert_eq!(usage["cpuUnitsReserved"], 256.0);
    assert_eq!(usage["memoryMibUsed"], 128.0);
    assert_eq!(usage["memoryMibReserved"], 512.0);

    // A container missing from one sample (its stats read failed) adds nothing, rather than
    // its whole lifetime of CPU when it reappears.
    let spiky = server
        .ecs
        .run_task()
        .cluster("usage")
        .task_definition("burner")
        .group("service:spiky")
        .send()
        .await
        .unwrap();
    let spiky_arn = spiky.tasks()[0].task_arn().unwrap().to_string();
    let container = |name: &str, cpu: u64| json!({"name": name, "cpuTotalNanos": cpu, "memoryBytes": 0, "memoryLimitBytes": 0});
    let samples = json!([
        {"timestamp": now - 3.0, "cpuTotalNanos": 101_000_000_000u64, "memoryBytes": 0,
         "containers": [container("a", 1_000_000_000), container("b", 100_000_000_000)]},
        {"timestamp": now - 2.0, "cpuTotalNanos": 1_250_000_000u64, "memoryBytes": 0,
         "containers": [container("a", 1_250_000_000)]},
        {"timestamp": now - 1.0, "cpuTotalNanos": 101_500_000_000u64, "memoryBytes": 0,
         "containers": [container("a", 1_500_000_000), container("b", 100_000_000_000)]},
    ]);
    let answer = support::agent_call(
        &server,
        "ReportTaskStats",
        json!({"cluster": "usage", "containerInstanceArn": instance,
               "tasks": [{"taskArn": spiky_arn, "samples": samples}]}),
    )
    .await;
    assert_eq!(answer.status, 200);
    let stats = support::agent_call(&server, "DescribeTaskStats", json!({"cluster": "usage"}))
        .await
        .json();
    let spiky_usage = stats["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["taskArn"] == spiky_arn.as_str())
        .cloned()
        .unwrap();
    // Only container a's quarter core over the last second: 256 units.
    assert!(
        (spiky_usage["cpuUnitsUsed"].as_f64().unwrap() - 256.0).abs() < 1.0,
        "{spiky_usage}"
    );

    // Another cluster's view is empty; an unknown task's samples are ignored.
    let other = support::agent_call(&server, "DescribeTaskStats", json!({"cluster": "other"}))
        .await
        .json();
    assert_eq!(other["tasks"], json!([]), "{other}");
    report(
        &server,
        &instance,
        "arn:aws:ecs:us-east-1:000000000000:task/usage/00000000000000000000000000000000",
        now - 3.0,
        2,
        1,
        1,
    )
    .await;

    // Once every agent had time to report, the seconds are published to CloudWatch: 200 % for
    // the service, and 512 of the instance's 2048 units (25 %) for the cluster.
    clock.advance(Duration::from_secs(15));
    let cloudwatch = support::cloudwatch_client(&server).await;
    let dimension = |name: &str, value: &str| {
        aws_sdk_cloudwatch::types::Dimension::builder()
            .name(name)
            .value(value)
            .build()
    };
    let statistics = |dimensions: Vec<aws_sdk_cloudwatch::types::Dimension>| {
        let cloudwatch = cloudwatch.clone();
        let start = now as i64 - 60;
        async move {
            cloudwatch
                .get_metric_statistics()
                .namespace("AWS/ECS")
                .metric_name("CPUUtilization")
                .set_dimensions(Some(dimensions))
                .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(start))
                .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(
                    start + 120,
                ))
                .period(60)
                .statistics(aws_sdk_cloudwatch::types::Statistic::Average)
                .statistics(aws_sdk_cloudwatch::types::Statistic::SampleCount)
                .send()
                .await
                .unwrap()
                .datapoints()
                .to_vec()
        }
    };
    let mut service_points = Vec::new();
    for _ in 0..100 {
        service_points = statistics(vec![
            dimension("ClusterName", "usage"),
            dimension("ServiceName", "web"),
        ])
        .await;
        let count: f64 = service_points.iter().filter_map(|p| p.sample_count()).sum();
        if count >= 5.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let count: f64 = service_points.iter().filter_map(|p| p.sample_count()).sum();
    assert_eq!(count, 5.0, "one point per second: {service_points:?}");
    for point in &service_points {
        assert!((point.average().unwrap() - 200.0).abs() < 0.5, "{point:?}");
    }
    let cluster_points = statistics(vec![dimension("ClusterName", "usage")]).await;
    assert!(!cluster_points.is_empty());
    // Per second: 512 of 2048 units, plus the spiky task's 256 units in the two seconds
    // it was sampled: (3 × 25 % + 2 × 37.5 %) ÷ 5 = 30 %. The five seconds may straddle a
    // minute, and so two 60 s points: their averages are weighed by their sample counts.
    let seconds: f64 = cluster_points.iter().filter_map(|p| p.sample_count()).sum();
    let weighted: f64 = cluster_points
        .iter()
        .map(|p| p.average().unwrap() * p.sample_count().unwrap())
        .sum();
    assert_eq!(seconds, 5.0, "{cluster_points:?}");
    assert!(
        (weighted / seconds - 30.0).abs() < 0.5,
        "{cluster_points:?}"
    );

    // Samples fall out of the live view when they stop.
    clock.advance(Duration::from_secs(16));
    let stale = support::agent_call(&server, "DescribeTaskStats", json!({"cluster": "usage"}))
        .await
        .json();
    assert_eq!(stale["tasks"], json!([]), "{stale}");
}
