//! The documents' shapes against AWS's examples: member names, omissions, RFC 3339 times.

use std::collections::BTreeMap;

use chrono::DateTime;
use model::agent::{AgentTask, TaskNetwork};
use model::ecs::task::{Container, NetworkBinding, Task};
use model::ecs::task_definition::{
    ContainerDefinition, HealthCheck, LogConfiguration, TaskDefinition,
};
use serde_json::{json, Value};

use super::*;
use crate::runtime::{ContainerMount, ContainerNetwork, HealthDetail};

const TASK_ARN: &str =
    "arn:aws:ecs:us-west-2:111122223333:task/default/158d1c8083dd49d6b527399fd6414f5c";
const DOCKER_ID: &str = "ea32192c8553fbff06c9340478a2ff089b2bb5646fb718b4ee206641c9086d66";

fn at(seconds: i64, nanos: u32) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(seconds, nanos)
}

fn task(network_mode: &str) -> TaskSnapshot {
    let curl = ContainerDefinition {
        name: Some("curl".into()),
        image: Some("111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest".into()),
        cpu: Some(10),
        memory: Some(128),
        health_check: Some(HealthCheck {
            command: vec!["CMD-SHELL".into(), "true".into()],
            interval: None,
            timeout: None,
            retries: None,
            start_period: None,
        }),
        log_configuration: Some(LogConfiguration {
            log_driver: "awslogs".into(),
            options: Some(BTreeMap::from([
                ("awslogs-group".to_string(), "/ecs/metadata".to_string()),
                ("awslogs-region".to_string(), "us-west-2".to_string()),
                ("awslogs-stream-prefix".to_string(), "ecs".to_string()),
            ])),
            secret_options: None,
        }),
        ..Default::default()
    };
    TaskSnapshot {
        task: AgentTask {
            task: Task {
                task_arn: Some(TASK_ARN.into()),
                desired_status: Some("RUNNING".into()),
                group: Some("service:MyService".into()),
                cpu: Some("256".into()),
                memory: Some("0.5 GB".into()),
                containers: Some(vec![Container {
                    name: Some("curl".into()),
                    container_arn: Some(
                        "arn:aws:ecs:us-west-2:111122223333:container/0206b271-b33f-47ab-86c6-a0ba208a70a9"
                            .into(),
                    ),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            task_definition: TaskDefinition {
                family: Some("curltest".into()),
                revision: Some(26),
                network_mode: Some(network_mode.into()),
                container_definitions: Some(vec![curl]),
                ..Default::default()
            },
            network: None,
        },
        status: TaskStatus::Running,
        pull_started_at: Some(1_601_597_707.5),
        pull_stopped_at: Some(1_601_597_708.25),
        execution_stopped_at: None,
        containers: vec![ContainerSnapshot {
            name: "curl".into(),
            runtime_id: Some(DOCKER_ID.into()),
            phase: ContainerPhase::Running,
            exit_code: None,
            has_health_check: true,
            health: Some(HealthState::Healthy),
            bindings: vec![NetworkBinding {
                bind_ip: Some("0.0.0.0".into()),
                container_port: Some(80),
                host_port: Some(49153),
                protocol: Some("tcp".into()),
                container_port_range: None,
                host_port_range: None,
            }],
        }],
    }
}

fn details() -> ContainerDetails {
    ContainerDetails {
        id: DOCKER_ID.into(),
        name: "ecs-curltest-26-curl-cca48e8dcadd97805600".into(),
        image: "111122223333.dkr.ecr.us-west-2.amazonaws.com/curltest:latest".into(),
        image_id: Some(
            "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553".into(),
        ),
        labels: BTreeMap::from([
            (
                "com.amazonaws.ecs.cluster".to_string(),
                "default".to_string(),
            ),
            (
                "com.amazonaws.ecs.container-name".to_string(),
                "curl".to_string(),
            ),
            ("wharf.metadata-token".to_string(), "secret-ish".to_string()),
            (
                crate::labels::AWSLOGS_STREAM.to_string(),
                "ecs/curl/158d1c8083dd49d6b527399fd6414f5c".to_string(),
            ),
        ]),
        created_at: at(1_601_597_707, 620_912_337),
        started_at: at(1_601_597_708, 62_559_351),
        finished_at: None,
        running: true,
        networks: vec![ContainerNetwork {
            name: "bridge".into(),
            ipv4_address: Some("172.17.0.2".into()),
        }],
        mounts: vec![ContainerMount {
            name: Some("data".into()),
            source: Some("/var/lib/docker/volumes/data/_data".into()),
            destination: "/data".into(),
        }],
        restart_count: 0,
        health: Some(HealthDetail {
            status: HealthState::Healthy,
            since: at(1_601_597_710, 0),
            exit_code: Some(0),
            output: Some(String::new()),
        }),
    }
}

fn context() -> DocumentContext<'static> {
    DocumentContext {
        cluster: "default",
        availability_zone: "us-west-2a",
    }
}

fn keys(value: &Value) -> Vec<&str> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

fn assert_rfc3339(value: &Value) {
    let text = value.as_str().expect("a string");
    assert!(text.ends_with('Z'), "{text} is UTC");
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"));
}

#[test]
fn the_container_document_has_aws_member_names_and_values() {
    let task = task("bridge");
    let document = serde_json::to_value(container_response(
        &task,
        &task.containers[0],
        Some(&details()),
    ))
    .expect("serializes");
    let mut names = keys(&document);
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "ContainerARN",
            "CreatedAt",
            "DesiredStatus",
            "DockerId",
            "DockerName",
            "Health",
            "Image",
            "ImageID",
            "KnownStatus",
            "Labels",
            "Limits",
            "LogDriver",
            "LogOptions",
            "Name",
            "Networks",
            "Ports",
            "StartedAt",
            "Type",
            "Volumes",
        ]
    );
    assert_eq!(document["DockerId"], DOCKER_ID);
    assert_eq!(document["Name"], "curl");
    assert_eq!(
        document["DockerName"],
        "ecs-curltest-26-curl-cca48e8dcadd97805600"
    );
    assert_eq!(
        document["ImageID"],
        "sha256:d691691e9652791a60114e67b365688d20d19940dde7c4736ea30e660d8d3553"
    );
    assert_eq!(document["DesiredStatus"], "RUNNING");
    assert_eq!(document["KnownStatus"], "RUNNING");
    assert_eq!(document["Type"], "NORMAL");
    assert_eq!(document["Limits"], json!({"CPU": 10, "Memory": 128}));
    assert_eq!(
        serde_json::to_string(&document["Limits"]).expect("serializes"),
        r#"{"CPU":10,"Memory":128}"#,
        "whole CPU units without a fraction, as Go writes them"
    );
    assert_eq!(document["CreatedAt"], "2020-10-02T00:15:07.620912337Z");
    assert_rfc3339(&document["StartedAt"]);
    // The agent's bookkeeping labels stay private.
    assert_eq!(
        document["Labels"],
        json!({"com.amazonaws.ecs.cluster": "default", "com.amazonaws.ecs.container-name": "curl"})
    );
    assert_eq!(
        document["Networks"],
        json!([{"NetworkMode": "bridge", "IPv4Addresses": ["172.17.0.2"]}])
    );
    assert_eq!(
        document["Ports"],
        json!([{"ContainerPort": 80, "Protocol": "tcp", "HostPort": 49153, "HostIp": "0.0.0.0"}])
    );
    // Lower-case members, zero exit code and empty output omitted, as the ECS agent does.
    assert_eq!(
        document["Health"],
        json!({"status": "HEALTHY", "statusSince": "2020-10-02T00:15:10Z"})
    );
    assert_eq!(document["LogDriver"], "awslogs");
    assert_eq!(
        document["LogOptions"]["awslogs-stream"],
        "ecs/curl/158d1c8083dd49d6b527399fd6414f5c"
    );
    assert_eq!(document["LogOptions"]["awslogs-group"], "/ecs/metadata");
    assert_eq!(
        document["Volumes"],
        json!([{"DockerName": "data", "Source": "/var/lib/docker/volumes/data/_data", "Destination": "/data"}])
    );
    assert!(document["ContainerARN"]
        .as_str()
        .is_some_and(|arn| arn.starts_with("arn:aws:ecs:us-west-2:111122223333:container/")));
}

#[test]
fn a_stopped_container_has_its_exit_code_and_finish_time() {
    let mut task = task("bridge");
    task.containers[0].phase = ContainerPhase::Stopped;
    task.containers[0].exit_code = Some(3);
    task.containers[0].has_health_check = false;
    if let Some(definitions) = task.task.task_definition.container_definitions.as_mut() {
        definitions[0].log_configuration = None;
    }
    let mut details = details();
    details.running = false;
    details.finished_at = at(1_601_597_800, 0);
    let document = serde_json::to_value(container_response(
        &task,
        &task.containers[0],
        Some(&details),
    ))
    .expect("serializes");
    assert_eq!(document["KnownStatus"], "STOPPED");
    assert_eq!(document["ExitCode"], 3);
    assert_eq!(document["FinishedAt"], "2020-10-02T00:16:40Z");
    assert!(document.get("Health").is_none());
    // Without a logConfiguration ECS names no driver (the engine's default runs).
    assert!(document.get("LogDriver").is_none());
    assert!(document.get("LogOptions").is_none());
}

#[test]
fn without_engine_details_the_owner_view_still_makes_a_document() {
    let mut task = task("host");
    task.containers[0].phase = ContainerPhase::Pending;
    let document = serde_json::to_value(container_response(&task, &task.containers[0], None))
        .expect("serializes");
    assert_eq!(document["DockerId"], DOCKER_ID);
    assert_eq!(document["KnownStatus"], "CREATED");
    assert_eq!(document["Networks"], json!([{"NetworkMode": "host"}]));
    assert_eq!(document["Health"], json!({"status": "HEALTHY"}));
    assert!(document.get("CreatedAt").is_none());
    assert!(document.get("Labels").is_none());
    assert_eq!(document["LogDriver"], "awslogs");
    assert!(document["LogOptions"].get("awslogs-stream").is_none());
}

#[test]
fn the_task_document_has_aws_member_names_and_values() {
    let task = task("bridge");
    let containers = vec![container_response(
        &task,
        &task.containers[0],
        Some(&details()),
    )];
    let document =
        serde_json::to_value(task_response(&context(), &task, containers)).expect("serializes");
    let mut names = keys(&document);
    names.sort_unstable();
    assert_eq!(
        names,
        vec![
            "AvailabilityZone",
            "Cluster",
            "Containers",
            "DesiredStatus",
            "Family",
            "KnownStatus",
            "LaunchType",
            "Limits",
            "PullStartedAt",
            "PullStoppedAt",
            "Revision",
            "ServiceName",
            "TaskARN",
        ]
    );
    assert_eq!(document["Cluster"], "default");
    assert_eq!(document["TaskARN"], TASK_ARN);
    assert_eq!(document["Family"], "curltest");
    assert_eq!(document["Revision"], "26", "a string, as ECS serves it");
    assert_eq!(document["DesiredStatus"], "RUNNING");
    assert_eq!(document["KnownStatus"], "RUNNING");
    assert_eq!(document["Limits"], json!({"CPU": 0.25, "Memory": 512}));
    assert_eq!(document["PullStartedAt"], "2020-10-02T00:15:07.500Z");
    assert_rfc3339(&document["PullStoppedAt"]);
    assert_eq!(document["AvailabilityZone"], "us-west-2a");
    assert_eq!(document["LaunchType"], "EC2");
    assert_eq!(document["ServiceName"], "MyService");
    assert_eq!(document["Containers"][0]["DockerId"], DOCKER_ID);
}

#[test]
fn a_task_without_task_level_limits_omits_them() {
    let mut task = task("bridge");
    task.task.task.cpu = None;
    task.task.task.memory = None;
    task.task.task.group = Some("family:curltest".into());
    task.status = TaskStatus::Activating;
    let document =
        serde_json::to_value(task_response(&context(), &task, Vec::new())).expect("serializes");
    assert!(document.get("Limits").is_none());
    assert!(document.get("ServiceName").is_none());
    assert!(document.get("Containers").is_none());
    assert_eq!(document["KnownStatus"], "CREATED");
}

#[test]
fn awsvpc_networks_describe_the_eni() {
    let mut task = task("awsvpc");
    task.task.network = Some(TaskNetwork {
        network_interface_id: "eni-0123".into(),
        subnet_id: "subnet-0abc".into(),
        subnet_cidr: "10.0.2.0/24".into(),
        gateway_ipv4_address: "10.0.2.1".into(),
        private_ipv4_address: "10.0.2.106".into(),
        mac_address: "12:34:56:78:9a:bc".into(),
        security_groups: Vec::new(),
    });
    let document = serde_json::to_value(container_response(
        &task,
        &task.containers[0],
        Some(&details()),
    ))
    .expect("serializes");
    assert_eq!(
        document["Networks"],
        json!([{
            "AttachmentIndex": 0,
            "NetworkMode": "awsvpc",
            "IPv4Addresses": ["10.0.2.106"],
            "MACAddress": "12:34:56:78:9a:bc",
            "IPv4SubnetCIDRBlock": "10.0.2.0/24",
            "PrivateDNSName": "ip-10-0-2-106.us-west-2.compute.internal",
            "SubnetGatewayIpv4Address": "10.0.2.1/24",
        }])
    );
    assert_eq!(
        private_dns_name("10.0.0.5", Some("us-east-1")),
        "ip-10-0-0-5.ec2.internal"
    );
}

#[test]
fn timestamps_are_rfc3339_utc() {
    assert_eq!(
        timestamp_from_seconds(1_700_000_000.367).as_deref(),
        Some("2023-11-14T22:13:20.367Z")
    );
    assert_eq!(
        timestamp_from_seconds(1_700_000_000.0).as_deref(),
        Some("2023-11-14T22:13:20Z")
    );
    assert_eq!(timestamp_from_seconds(0.0), None);
    assert_eq!(
        at(1_601_597_707, 620_912_337).map(timestamp).as_deref(),
        Some("2020-10-02T00:15:07.620912337Z")
    );
}
