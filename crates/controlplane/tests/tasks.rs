//! Container instances, tasks and the agent protocol through `aws-sdk-ecs` and signed agent
//! calls against an in-process server: placement with AWS's failure reasons, the forward-only
//! task lifecycle, resource reservation and release, and disconnected agents.

mod support;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_ecs::types::{
    ContainerDefinition, ContainerInstanceStatus, DesiredStatus, PortMapping, TransportProtocol,
};
use serde_json::json;
use store::clock::{Clock, ManualClock};
use support::TestServer;

use support::register_instance;

async fn register_web(server: &TestServer, memory: i32, host_port: i32) -> String {
    server
        .ecs
        .register_task_definition()
        .family("web")
        .container_definitions(
            ContainerDefinition::builder()
                .name("httpd")
                .image("wharf-test/busybox:latest")
                .memory(memory)
                .cpu(256)
                .port_mappings(
                    PortMapping::builder()
                        .container_port(80)
                        .host_port(host_port)
                        .protocol(TransportProtocol::Tcp)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap()
        .task_definition()
        .unwrap()
        .task_definition_arn()
        .unwrap()
        .to_string()
}

fn remaining(instance: &aws_sdk_ecs::types::ContainerInstance, name: &str) -> i32 {
    instance
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some(name))
        .map(|r| r.integer_value())
        .unwrap_or(-1)
}

#[tokio::test]
async fn run_task_places_reserves_reports_and_releases() {
    let server = support::start().await;
    let ecs = &server.ecs;
    ecs.create_cluster()
        .cluster_name("c1")
        .send()
        .await
        .unwrap();

    let error = ecs
        .run_task()
        .cluster("c1")
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ClientException");
    register_web(&server, 512, 8080).await;
    let error = ecs
        .run_task()
        .cluster("c1")
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_message(&error),
        "No Container Instances were found in your cluster."
    );

    let instance_arn = register_instance(&server, "c1").await;
    let described = ecs
        .describe_container_instances()
        .cluster("c1")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    let instance = &described.container_instances()[0];
    assert!(instance.agent_connected());
    assert_eq!(instance.status(), Some("ACTIVE"));
    assert_eq!(instance.ec2_instance_id(), Some("i-0123456789abcdef0"));
    assert!(instance
        .attributes()
        .iter()
        .any(|a| a.name() == "ecs.availability-zone" && a.value() == Some("us-east-1a")));

    // Two tasks with the same static host port: one fits, the other is refused for its port.
    let ran = ecs
        .run_task()
        .cluster("c1")
        .task_definition("web")
        .count(2)
        .started_by("tester")
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 1);
    assert_eq!(ran.failures().len(), 1);
    assert_eq!(ran.failures()[0].reason(), Some("RESOURCE:PORTS"));
    assert_eq!(ran.failures()[0].arn(), Some(instance_arn.as_str()));
    let task = &ran.tasks()[0];
    let task_arn = task.task_arn().unwrap().to_string();
    assert!(task_arn.starts_with("arn:aws:ecs:us-east-1:123456789012:task/c1/"));
    assert_eq!(task_arn.rsplit('/').next().unwrap().len(), 32);
    assert_eq!(task.last_status(), Some("PROVISIONING"));
    assert_eq!(task.desired_status(), Some("RUNNING"));
    assert_eq!(task.group(), Some("family:web"));
    assert_eq!(task.containers()[0].last_status(), Some("PENDING"));

    let described = ecs
        .describe_container_instances()
        .cluster("c1")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    let instance = &described.container_instances()[0];
    assert_eq!(remaining(instance, "MEMORY"), 4096 - 512);
    assert_eq!(remaining(instance, "CPU"), 2048 - 256);
    assert_eq!(instance.pending_tasks_count(), 1);

    // Too much memory for what is left: RESOURCE:MEMORY.
    let big = ecs
        .run_task()
        .cluster("c1")
        .task_definition("web")
        .overrides(
            aws_sdk_ecs::types::TaskOverride::builder()
                .container_overrides(
                    aws_sdk_ecs::types::ContainerOverride::builder()
                        .name("httpd")
                        .memory(8192)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(big.failures()[0].reason(), Some("RESOURCE:MEMORY"));

    // The agent sees its task through the long poll, with the definition to run it.
    let poll = support::agent_call(
        &server,
        "PollTasks",
        json!({"cluster": "c1", "containerInstanceArn": instance_arn, "sinceRevision": 0, "waitSeconds": 0}),
    )
    .await;
    let poll = poll.json();
    assert_eq!(poll["tasks"].as_array().map(Vec::len), Some(1), "{poll}");
    assert_eq!(poll["tasks"][0]["taskDefinition"]["family"], "web");
    let revision = poll["revision"].as_i64().unwrap();

    let report = |status: &str, container: serde_json::Value| json!({"cluster": "c1", "taskArn": task_arn, "lastStatus": status, "containers": [container]});
    let running = report(
        "RUNNING",
        json!({"name": "httpd", "lastStatus": "RUNNING", "runtimeId": "abc123",
               "networkBindings": [{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 8080, "protocol": "tcp"}]}),
    );
    assert_eq!(
        support::agent_call(&server, "ReportTaskState", running)
            .await
            .status,
        200
    );
    // A stale report cannot move the task backwards.
    let stale = report("PENDING", json!({"name": "httpd", "lastStatus": "PENDING"}));
    assert_eq!(
        support::agent_call(&server, "ReportTaskState", stale)
            .await
            .status,
        200
    );
    let described = ecs
        .describe_tasks()
        .cluster("c1")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.last_status(), Some("RUNNING"));
    assert!(task.started_at().is_some());
    assert_eq!(task.containers()[0].runtime_id(), Some("abc123"));
    assert_eq!(
        task.containers()[0].network_bindings()[0].host_port(),
        Some(8080)
    );

    let listed = ecs
        .list_tasks()
        .cluster("c1")
        .started_by("tester")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns(), std::slice::from_ref(&task_arn));
    let listed = ecs
        .list_tasks()
        .cluster("c1")
        .family("nope")
        .send()
        .await
        .unwrap();
    assert!(listed.task_arns().is_empty());
    let listed = ecs
        .list_tasks()
        .cluster("c1")
        .container_instance(&instance_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_arns().len(), 1);

    // StopTask writes desired state; the next poll (after `revision`) carries it.
    let stopped = ecs
        .stop_task()
        .cluster("c1")
        .task(&task_arn)
        .reason("done testing")
        .send()
        .await
        .unwrap();
    assert_eq!(stopped.task().unwrap().desired_status(), Some("STOPPED"));
    assert_eq!(
        stopped.task().unwrap().stop_code(),
        Some(&aws_sdk_ecs::types::TaskStopCode::UserInitiated)
    );
    let poll = support::agent_call(
        &server,
        "PollTasks",
        json!({"cluster": "c1", "containerInstanceArn": instance_arn, "sinceRevision": revision, "waitSeconds": 5}),
    )
    .await
    .json();
    assert_eq!(
        poll["tasks"][0]["task"]["desiredStatus"], "STOPPED",
        "{poll}"
    );

    let done = report(
        "STOPPED",
        json!({"name": "httpd", "lastStatus": "STOPPED", "exitCode": 0}),
    );
    assert_eq!(
        support::agent_call(&server, "ReportTaskState", done)
            .await
            .status,
        200
    );
    let described = ecs
        .describe_tasks()
        .cluster("c1")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    let task = &described.tasks()[0];
    assert_eq!(task.last_status(), Some("STOPPED"));
    assert_eq!(task.stopped_reason(), Some("done testing"));
    assert!(task.stopped_at().is_some() && task.stopping_at().is_some());
    assert_eq!(task.containers()[0].exit_code(), Some(0));
    let described = ecs
        .describe_container_instances()
        .cluster("c1")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        remaining(&described.container_instances()[0], "MEMORY"),
        4096,
        "reservation released"
    );
    let stopped_list = ecs
        .list_tasks()
        .cluster("c1")
        .desired_status(DesiredStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(stopped_list.task_arns().len(), 1);

    let missing = ecs
        .describe_tasks()
        .cluster("c1")
        .tasks("0123456789abcdef0123456789abcdef")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.failures()[0].reason(), Some("MISSING"));
    let error = ecs
        .stop_task()
        .cluster("c1")
        .task("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn start_task_draining_and_deregistering_instances() {
    let server = support::start().await;
    let ecs = &server.ecs;
    ecs.create_cluster()
        .cluster_name("c2")
        .send()
        .await
        .unwrap();
    register_web(&server, 256, 0).await;
    let instance_arn = register_instance(&server, "c2").await;

    let started = ecs
        .start_task()
        .cluster("c2")
        .task_definition("web:1")
        .container_instances(&instance_arn)
        .container_instances("ffffffffffffffffffffffffffffffff")
        .send()
        .await
        .unwrap();
    assert_eq!(started.tasks().len(), 1);
    assert_eq!(started.failures()[0].reason(), Some("MISSING"));

    let error = ecs
        .deregister_container_instance()
        .cluster("c2")
        .container_instance(&instance_arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");

    let drained = ecs
        .update_container_instances_state()
        .cluster("c2")
        .container_instances(&instance_arn)
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(drained.container_instances()[0].status(), Some("DRAINING"));
    let listed = ecs
        .list_container_instances()
        .cluster("c2")
        .status(ContainerInstanceStatus::Draining)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.container_instance_arns().len(), 1);
    // Nothing new lands on a draining instance.
    let error = ecs
        .run_task()
        .cluster("c2")
        .task_definition("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_message(&error),
        "No Container Instances were found in your cluster."
    );

    let gone = ecs
        .deregister_container_instance()
        .cluster("c2")
        .container_instance(&instance_arn)
        .force(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        gone.container_instance().unwrap().status(),
        Some("INACTIVE")
    );
    let listed = ecs
        .list_container_instances()
        .cluster("c2")
        .send()
        .await
        .unwrap();
    assert!(listed.container_instance_arns().is_empty());
    // A deregistered instance's agent is told to register again.
    let heartbeat = support::agent_call(
        &server,
        "Heartbeat",
        json!({"cluster": "c2", "containerInstanceArn": instance_arn}),
    )
    .await;
    assert_eq!(heartbeat.status, 400);
}

#[tokio::test]
async fn tasks_of_an_agent_gone_past_the_grace_period_are_stopped() {
    let clock = Arc::new(ManualClock::new(store::clock::SystemClock.now_millis()));
    let settings = controlplane::InstanceHealthSettings {
        disconnect_grace: Duration::from_secs(60),
        task_retention: Duration::from_secs(3600),
        period: Duration::from_millis(20),
    };
    let server = support::start_with(clock.clone(), settings).await;
    let ecs = &server.ecs;
    ecs.create_cluster()
        .cluster_name("c3")
        .send()
        .await
        .unwrap();
    register_web(&server, 256, 0).await;
    let instance_arn = register_instance(&server, "c3").await;
    let ran = ecs
        .run_task()
        .cluster("c3")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    let task_arn = ran.tasks()[0].task_arn().unwrap().to_string();

    // The session lapses: no heartbeat for longer than its TTL.
    clock.advance(Duration::from_secs(
        model::agent::SESSION_TTL_SECONDS as u64 + 1,
    ));
    server.store.expire_leases_now();
    let described = ecs
        .describe_container_instances()
        .cluster("c3")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    assert!(!described.container_instances()[0].agent_connected());
    // RunTask now reports the disconnected agent.
    let ran = ecs
        .run_task()
        .cluster("c3")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    assert_eq!(ran.failures()[0].reason(), Some("AGENT"));

    // Let the controller notice (it records when it first saw the session gone), then pass
    // the grace period.
    let instance_key = format!(
        "ecs/container-instance/c3/{}",
        instance_arn.rsplit('/').next().unwrap()
    );
    wait_for(|| async {
        use store::Store;
        let kv = server.store.get(&instance_key).await.unwrap().unwrap();
        String::from_utf8_lossy(&kv.value).contains("wharfDisconnectedAt")
    })
    .await;
    let task = ecs
        .describe_tasks()
        .cluster("c3")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        task.tasks()[0].last_status(),
        Some("PROVISIONING"),
        "not stopped before the grace period"
    );
    clock.advance(Duration::from_secs(61));
    wait_for(|| async {
        let task = ecs
            .describe_tasks()
            .cluster("c3")
            .tasks(&task_arn)
            .send()
            .await
            .unwrap();
        task.tasks()[0].last_status() == Some("STOPPED")
    })
    .await;
    let task = ecs
        .describe_tasks()
        .cluster("c3")
        .tasks(&task_arn)
        .send()
        .await
        .unwrap();
    let reason = task.tasks()[0].stopped_reason().unwrap_or("");
    assert!(
        reason.contains("disconnected for more than 60 seconds"),
        "{reason}"
    );
    let described = ecs
        .describe_container_instances()
        .cluster("c3")
        .container_instances(&instance_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        remaining(&described.container_instances()[0], "MEMORY"),
        4096
    );
}

/// Poll a condition until it holds, failing after 10 seconds.
async fn wait_for<F, Fut>(mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn managed_tags_and_propagated_definition_tags_reach_the_task() {
    let server = support::start().await;
    let ecs = &server.ecs;
    ecs.create_cluster()
        .cluster_name("c4")
        .send()
        .await
        .unwrap();
    ecs.register_task_definition()
        .family("tagged")
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("team")
                .value("web")
                .build(),
        )
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(32)
                .build(),
        )
        .send()
        .await
        .unwrap();
    register_instance(&server, "c4").await;
    let ran = ecs
        .run_task()
        .cluster("c4")
        .task_definition("tagged")
        .enable_ecs_managed_tags(true)
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::TaskDefinition)
        .send()
        .await
        .unwrap();
    let arn = ran.tasks()[0].task_arn().unwrap();
    let described = ecs
        .describe_tasks()
        .cluster("c4")
        .tasks(arn)
        .include(aws_sdk_ecs::types::TaskField::Tags)
        .send()
        .await
        .unwrap();
    let tags: Vec<(&str, &str)> = described.tasks()[0]
        .tags()
        .iter()
        .map(|t| (t.key().unwrap(), t.value().unwrap()))
        .collect();
    assert!(tags.contains(&("team", "web")), "{tags:?}");
    assert!(tags.contains(&("aws:ecs:clusterName", "c4")), "{tags:?}");

    // Tasks are taggable resources like clusters.
    ecs.tag_resource()
        .resource_arn(arn)
        .tags(
            aws_sdk_ecs::types::Tag::builder()
                .key("stage")
                .value("test")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert!(
        listed.tags().iter().any(|t| t.key() == Some("stage")),
        "{:?}",
        listed.tags()
    );
}
