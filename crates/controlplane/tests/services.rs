//! The service API through `aws-sdk-ecs` against an in-process server without agents:
//! shapes, validation and AWS's messages, listing and paging, tags, deletion, and the
//! deployment history API. What the scheduler does with running tasks is in
//! `service_scenarios.rs`.

mod support;

use std::time::Duration;

use aws_sdk_ecs::types::{
    AwsVpcConfiguration, ContainerDefinition, DeploymentConfiguration, LoadBalancer,
    NetworkConfiguration, NetworkMode, PlacementConstraint, PlacementConstraintType,
    PlacementStrategy, PlacementStrategyType, SchedulingStrategy, ServiceField, Tag,
};
use support::TestServer;

async fn setup(cluster: &str) -> TestServer {
    let server = support::start().await;
    server
        .ecs
        .create_cluster()
        .cluster_name(cluster)
        .send()
        .await
        .unwrap();
    register(&server, "web", None).await;
    server
}

async fn register(server: &TestServer, family: &str, network_mode: Option<NetworkMode>) -> String {
    let mut request = server.ecs.register_task_definition().family(family);
    if let Some(mode) = network_mode {
        request = request.network_mode(mode);
    }
    request
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(64)
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

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// Poll until `check` holds, failing after 10 s.
async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn create_describe_and_the_shapes_clients_read() {
    let server = setup("svc").await;
    let ecs = &server.ecs;
    let created = ecs
        .create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .tags(tag("team", "blue"))
        .propagate_tags(aws_sdk_ecs::types::PropagateTags::Service)
        .client_token("token-1")
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(
        service.service_arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:service/svc/web")
    );
    assert_eq!(
        service.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:cluster/svc")
    );
    assert_eq!(service.status(), Some("ACTIVE"));
    assert_eq!(service.desired_count(), 2);
    assert_eq!((service.running_count(), service.pending_count()), (0, 0));
    assert_eq!(service.launch_type().map(|l| l.as_str()), Some("EC2"));
    assert_eq!(
        service.scheduling_strategy(),
        Some(&SchedulingStrategy::Replica)
    );
    assert_eq!(
        service.task_definition(),
        Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1")
    );
    let configuration = service.deployment_configuration().unwrap();
    assert_eq!(configuration.minimum_healthy_percent(), Some(100));
    assert_eq!(configuration.maximum_percent(), Some(200));
    assert!(service.created_at().is_some());
    assert_eq!(service.tags(), &[tag("team", "blue")]);
    let deployment = &service.deployments()[0];
    let id = deployment.id().unwrap();
    assert!(
        id.starts_with("ecs-svc/")
            && id[8..].len() == 19
            && id[8..].chars().all(|c| c.is_ascii_digit())
    );
    assert_eq!(deployment.status(), Some("PRIMARY"));
    assert_eq!(
        deployment.rollout_state().map(|s| s.as_str()),
        Some("IN_PROGRESS")
    );
    assert_eq!(
        deployment.rollout_state_reason(),
        Some(format!("ECS deployment {id} in progress.").as_str())
    );
    assert_eq!(deployment.desired_count(), 2);
    assert_eq!(deployment.failed_tasks(), 0);
    assert!(service.current_service_deployment().is_some_and(
        |a| a.starts_with("arn:aws:ecs:us-east-1:123456789012:service-deployment/svc/web/")
    ));

    // The same clientToken answers with the same service; another request does not.
    let again = ecs
        .create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .client_token("token-1")
        .send()
        .await
        .unwrap();
    assert_eq!(again.service().unwrap().deployments()[0].id(), Some(id));
    let error = ecs
        .create_service()
        .cluster("svc")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    assert_eq!(
        support::error_message(&error),
        "Creation of service was not idempotent."
    );

    let described = ecs
        .describe_services()
        .cluster("svc")
        .services("web")
        .services("arn:aws:ecs:us-east-1:123456789012:service/svc/web")
        .services("nope")
        .include(ServiceField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(described.services().len(), 2);
    assert_eq!(described.services()[0].tags(), &[tag("team", "blue")]);
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    assert_eq!(
        described.failures()[0].arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:service/svc/nope")
    );
    let plain = ecs
        .describe_services()
        .cluster("svc")
        .services("web")
        .send()
        .await
        .unwrap();
    assert!(plain.services()[0].tags().is_empty());

    // Without instances the scheduler says why nothing runs, in ECS's words.
    eventually(|| async {
        let described = ecs
            .describe_services()
            .cluster("svc")
            .services("web")
            .send()
            .await
            .unwrap();
        described.services()[0].events().iter().any(|e| {
            e.message() == Some("(service web) was unable to place a task because no container instance met all of its requirements. Reason: No Container Instances were found in your cluster. For more information, see the Troubleshooting section of the Amazon ECS Developer Guide.")
                && e.id().is_some()
                && e.created_at().is_some()
        })
    })
    .await;

    // Tags through the tagging API, and cluster statistics count the service.
    let arn = "arn:aws:ecs:us-east-1:123456789012:service/svc/web";
    ecs.tag_resource()
        .resource_arn(arn)
        .tags(tag("stage", "prod"))
        .send()
        .await
        .unwrap();
    let tags = ecs
        .list_tags_for_resource()
        .resource_arn(arn)
        .send()
        .await
        .unwrap();
    assert_eq!(tags.tags().len(), 2);
    let cluster = ecs
        .describe_clusters()
        .clusters("svc")
        .include(aws_sdk_ecs::types::ClusterField::Statistics)
        .send()
        .await
        .unwrap();
    let cluster = &cluster.clusters()[0];
    assert_eq!(cluster.active_services_count(), 1);
    assert!(cluster
        .statistics()
        .iter()
        .any(|s| s.name() == Some("activeEC2ServiceCount") && s.value() == Some("1")));
    let error = ecs
        .delete_cluster()
        .cluster("svc")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_code(&error),
        "ClusterContainsServicesException"
    );
}

#[tokio::test]
async fn validation_follows_ecs() {
    let server = setup("v").await;
    register(&server, "vpc", Some(NetworkMode::Awsvpc)).await;
    let ecs = &server.ecs;
    let create = || {
        ecs.create_service()
            .cluster("v")
            .service_name("s")
            .task_definition("web")
    };
    let cases: Vec<(
        aws_sdk_ecs::operation::create_service::builders::CreateServiceFluentBuilder,
        &str,
        &str,
    )> = vec![
        (
            create().service_name("bad name"),
            "InvalidParameterException",
            "Service name can only contain",
        ),
        (
            create(),
            "InvalidParameterException",
            "desiredCount is required",
        ),
        (
            create()
                .scheduling_strategy(SchedulingStrategy::Daemon)
                .desired_count(1),
            "InvalidParameterException",
            "The daemon scheduling strategy does not support a desired count for services.",
        ),
        (
            create()
                .scheduling_strategy(SchedulingStrategy::Daemon)
                .placement_strategy(
                    PlacementStrategy::builder()
                        .r#type(PlacementStrategyType::Spread)
                        .field("instanceId")
                        .build(),
                ),
            "InvalidParameterException",
            "The daemon scheduling strategy does not support placement strategies.",
        ),
        (
            create()
                .scheduling_strategy(SchedulingStrategy::Daemon)
                .deployment_configuration(
                    DeploymentConfiguration::builder()
                        .maximum_percent(200)
                        .build(),
                ),
            "InvalidParameterException",
            "The daemon scheduling strategy does not support values above 100 for maximumPercent.",
        ),
        (
            create().desired_count(1).load_balancers(
                LoadBalancer::builder()
                    .target_group_arn(
                        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1",
                    )
                    .container_name("app")
                    .container_port(80)
                    .build(),
            ),
            "InvalidParameterException",
            "The target group with targetGroupArn arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1 does not exist.",
        ),
        (
            create()
                .desired_count(1)
                .launch_type(aws_sdk_ecs::types::LaunchType::Fargate),
            "InvalidParameterException",
            "Task definition does not support launch_type FARGATE.",
        ),
        (
            create().task_definition("vpc").desired_count(1),
            "InvalidParameterException",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        (
            create().desired_count(1).network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets("subnet-1")
                            .build()
                            .unwrap(),
                    )
                    .build(),
            ),
            "InvalidParameterException",
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ),
        (
            create().desired_count(1).placement_constraints(
                PlacementConstraint::builder()
                    .r#type(PlacementConstraintType::MemberOf)
                    .build(),
            ),
            "InvalidParameterException",
            "memberOf expression should be specified.",
        ),
        (
            create().desired_count(1).deployment_configuration(
                DeploymentConfiguration::builder()
                    .minimum_healthy_percent(150)
                    .build(),
            ),
            "InvalidParameterException",
            "minimumHealthyPercent must be between 0 and 100.",
        ),
        (
            create().task_definition("nope").desired_count(1),
            "ClientException",
            "TaskDefinition not found.",
        ),
        (
            create().cluster("missing").desired_count(1),
            "ClusterNotFoundException",
            "Cluster not found.",
        ),
    ];
    for (request, code, message) in cases {
        let error = request.send().await.unwrap_err();
        assert_eq!(support::error_code(&error), code, "{message}");
        assert!(
            support::error_message(&error).contains(message),
            "{} does not contain {message}",
            support::error_message(&error)
        );
    }
    let listed = ecs.list_services().cluster("v").send().await.unwrap();
    assert!(
        listed.service_arns().is_empty(),
        "a refused request changes nothing"
    );
}

#[tokio::test]
async fn list_services_pages_and_filters() {
    let server = setup("l").await;
    let ecs = &server.ecs;
    for i in 0..12 {
        ecs.create_service()
            .cluster("l")
            .service_name(format!("s{i:02}"))
            .task_definition("web")
            .desired_count(0)
            .send()
            .await
            .unwrap();
    }
    ecs.create_service()
        .cluster("l")
        .service_name("daemon")
        .task_definition("web")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    let first = ecs.list_services().cluster("l").send().await.unwrap();
    assert_eq!(first.service_arns().len(), 10, "ECS's default page");
    let rest = ecs
        .list_services()
        .cluster("l")
        .next_token(first.next_token().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(rest.service_arns().len(), 3);
    assert!(rest.next_token().is_none());
    let all: Vec<String> = ecs
        .list_services()
        .cluster("l")
        .max_results(5)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 13);
    let daemons = ecs
        .list_services()
        .cluster("l")
        .scheduling_strategy(SchedulingStrategy::Daemon)
        .send()
        .await
        .unwrap();
    assert_eq!(
        daemons.service_arns(),
        &["arn:aws:ecs:us-east-1:123456789012:service/l/daemon".to_string()]
    );
    let error = ecs
        .list_services()
        .cluster("l")
        .next_token("forged")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn update_and_delete_follow_the_service_lifecycle() {
    let server = setup("u").await;
    let ecs = &server.ecs;
    ecs.create_service()
        .cluster("u")
        .service_name("web")
        .task_definition("web")
        .desired_count(2)
        .send()
        .await
        .unwrap();
    let error = ecs
        .update_service()
        .cluster("u")
        .service("nope")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ServiceNotFoundException");
    assert_eq!(support::error_message(&error), "Service not found.");

    // A count change is no deployment; a new revision or forceNewDeployment is.
    let updated = ecs
        .update_service()
        .cluster("u")
        .service("web")
        .desired_count(3)
        .send()
        .await
        .unwrap();
    let service = updated.service().unwrap();
    assert_eq!(service.desired_count(), 3);
    assert_eq!(service.deployments().len(), 1);
    let first = service.deployments()[0].id().unwrap().to_string();
    let v2 = register(&server, "web", None).await;
    let updated = ecs
        .update_service()
        .cluster("u")
        .service("web")
        .task_definition("web")
        .send()
        .await
        .unwrap();
    let service = updated.service().unwrap();
    assert_eq!(service.task_definition(), Some(v2.as_str()));
    assert_eq!(service.deployments().len(), 2);
    assert_eq!(service.deployments()[0].status(), Some("PRIMARY"));
    assert_eq!(service.deployments()[1].status(), Some("ACTIVE"));
    assert_eq!(service.deployments()[1].id(), Some(first.as_str()));
    let forced = ecs
        .update_service()
        .cluster("u")
        .service("web")
        .force_new_deployment(true)
        .send()
        .await
        .unwrap();
    // The new primary, with the one it replaces behind it (older ones without tasks are
    // gone as soon as the scheduler sees them).
    let deployments = forced.service().unwrap().deployments();
    let replaced = service.deployments()[0].id();
    assert_ne!(deployments[0].id(), replaced);
    assert_eq!(deployments[1].id(), replaced);

    let error = ecs
        .delete_service()
        .cluster("u")
        .service("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_message(&error),
        "The service cannot be stopped while it is scaled above 0."
    );
    let deleted = ecs
        .delete_service()
        .cluster("u")
        .service("web")
        .force(true)
        .send()
        .await
        .unwrap();
    let service = deleted.service().unwrap();
    assert_eq!(service.status(), Some("DRAINING"));
    assert_eq!(service.desired_count(), 0);
    let error = ecs
        .update_service()
        .cluster("u")
        .service("web")
        .desired_count(1)
        .send()
        .await
        .unwrap_err();
    // Draining or inactive, it is no longer ACTIVE.
    assert_eq!(support::error_code(&error), "ServiceNotActiveException");
    assert_eq!(support::error_message(&error), "Service was not ACTIVE.");
    // No task to wait for: INACTIVE at once, and gone from ListServices.
    eventually(|| async {
        let described = ecs
            .describe_services()
            .cluster("u")
            .services("web")
            .send()
            .await
            .unwrap();
        described.services()[0].status() == Some("INACTIVE")
    })
    .await;
    let listed = ecs.list_services().cluster("u").send().await.unwrap();
    assert!(listed.service_arns().is_empty());
    // The name can be used again.
    let again = ecs
        .create_service()
        .cluster("u")
        .service_name("web")
        .task_definition("web")
        .desired_count(0)
        .send()
        .await
        .unwrap();
    assert_eq!(again.service().unwrap().status(), Some("ACTIVE"));
    assert_eq!(again.service().unwrap().deployments().len(), 1);
}

#[tokio::test]
async fn the_deployment_history_api() {
    let server = setup("h").await;
    let ecs = &server.ecs;
    ecs.create_service()
        .cluster("h")
        .service_name("web")
        .task_definition("web")
        .desired_count(1)
        .send()
        .await
        .unwrap();
    ecs.update_service()
        .cluster("h")
        .service("web")
        .force_new_deployment(true)
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_service_deployments()
        .cluster("h")
        .service("web")
        .send()
        .await
        .unwrap();
    let briefs = listed.service_deployments();
    assert_eq!(briefs.len(), 2);
    assert_eq!(briefs[0].status().map(|s| s.as_str()), Some("IN_PROGRESS"));
    // The first change never finished (no instance) and was stopped by the second.
    assert_eq!(briefs[1].status().map(|s| s.as_str()), Some("STOPPED"));
    let only_stopped = ecs
        .list_service_deployments()
        .cluster("h")
        .service("web")
        .status(aws_sdk_ecs::types::ServiceDeploymentStatus::Stopped)
        .send()
        .await
        .unwrap();
    assert_eq!(only_stopped.service_deployments().len(), 1);

    let arn = briefs[0].service_deployment_arn().unwrap().to_string();
    let described = ecs
        .describe_service_deployments()
        .service_deployment_arns(&arn)
        .service_deployment_arns(format!("{arn}x"))
        .send()
        .await
        .unwrap();
    let deployment = &described.service_deployments()[0];
    assert_eq!(
        deployment.service_arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:service/h/web")
    );
    assert_eq!(deployment.source_service_revisions().len(), 1);
    let target = deployment.target_service_revision().unwrap();
    assert_eq!(target.requested_task_count(), 1);
    assert_eq!(
        deployment
            .deployment_circuit_breaker()
            .and_then(|b| b.status())
            .map(|s| s.as_str()),
        Some("DISABLED")
    );
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));

    let revisions = ecs
        .describe_service_revisions()
        .service_revision_arns(target.arn().unwrap())
        .send()
        .await
        .unwrap();
    let revision = &revisions.service_revisions()[0];
    assert_eq!(
        revision.task_definition(),
        Some("arn:aws:ecs:us-east-1:123456789012:task-definition/web:1")
    );
    assert_eq!(revision.container_images()[0].container_name(), Some("app"));
    assert!(revision.service_revision_arn().is_some_and(
        |a| a.starts_with("arn:aws:ecs:us-east-1:123456789012:service-revision/h/web/")
    ));

    // Nothing completed yet: nothing to roll back to.
    let error = ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ConflictException");
    let error = ecs
        .stop_service_deployment()
        .service_deployment_arn("arn:aws:ecs:us-east-1:123456789012:service-deployment/h/web/nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_code(&error),
        "ServiceDeploymentNotFoundException"
    );
    let error = ecs
        .stop_service_deployment()
        .service_deployment_arn(&arn)
        .stop_type(aws_sdk_ecs::types::StopServiceDeploymentStopType::Abort)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn list_services_by_namespace_knows_only_cluster_namespaces() {
    let server = setup("n").await;
    let error = server
        .ecs
        .list_services_by_namespace()
        .namespace("nowhere")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "NamespaceNotFoundException");
    server
        .ecs
        .update_cluster()
        .cluster("n")
        .service_connect_defaults(
            aws_sdk_ecs::types::ClusterServiceConnectDefaultsRequest::builder()
                .namespace("internal")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let listed = server
        .ecs
        .list_services_by_namespace()
        .namespace("internal")
        .send()
        .await
        .unwrap();
    assert!(listed.service_arns().is_empty());
}

/// A target group record as the ELBv2 API writes it, and with `attached` a listener that
/// forwards to it; returns its ARN.
async fn put_target_group(
    server: &TestServer,
    name: &str,
    target_type: &str,
    attached: bool,
) -> String {
    use store::Store;
    let id = format!(
        "{:016x}",
        name.bytes()
            .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    );
    let arn =
        format!("arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/{name}/{id}");
    let record = serde_json::json!({
        "arn": arn,
        "name": name,
        "id": id,
        "protocol": "HTTP",
        "port": 80,
        "targetType": target_type,
        "healthCheck": {
            "enabled": true, "protocol": "HTTP", "port": "traffic-port", "path": "/",
            "intervalSeconds": 30, "timeoutSeconds": 5, "healthyThresholdCount": 5,
            "unhealthyThresholdCount": 2, "matcherHttpCode": "200"
        },
        "attributes": {"deregistration_delay.timeout_seconds": "300"},
        "createdAtMs": 0,
        "targets": [],
    });
    server
        .store
        .put(
            &model::elb::keys::target_group(name),
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();
    if attached {
        let rule = serde_json::json!({
            "actions": [{"type": "forward", "forwardConfig": {"targetGroups": [{"targetGroupArn": arn}]}}],
        });
        server
            .store
            .put(
                &model::elb::keys::rule("l1", &id),
                serde_json::to_vec(&rule).unwrap().into(),
            )
            .await
            .unwrap();
    }
    arn
}

async fn register_with_port(server: &TestServer, family: &str, awsvpc: bool) -> String {
    let mapping = aws_sdk_ecs::types::PortMapping::builder().container_port(80);
    let mapping = if awsvpc {
        mapping
    } else {
        mapping.host_port(0)
    };
    let mut request = server.ecs.register_task_definition().family(family);
    if awsvpc {
        request = request.network_mode(NetworkMode::Awsvpc);
    }
    request
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(64)
                .port_mappings(mapping.build())
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

fn load_balancer(arn: &str, container: &str, port: i32) -> LoadBalancer {
    LoadBalancer::builder()
        .target_group_arn(arn)
        .container_name(container)
        .container_port(port)
        .build()
}

#[tokio::test]
async fn load_balancers_are_checked_as_ecs_checks_them() {
    let server = setup("lb").await;
    register_with_port(&server, "web80", false).await;
    register_with_port(&server, "vpc80", true).await;
    let instance_tg = put_target_group(&server, "inst", "instance", true).await;
    let ip_tg = put_target_group(&server, "addr", "ip", true).await;
    let lonely_tg = put_target_group(&server, "lonely", "instance", false).await;
    let subnet = {
        use store::Store;
        let subnets = server
            .store
            .range(model::ec2::SUBNET_PREFIX, Default::default())
            .await
            .unwrap();
        let key = subnets.kvs[0].key.clone();
        key.trim_start_matches(model::ec2::SUBNET_PREFIX)
            .to_string()
    };
    let vpc_network = NetworkConfiguration::builder()
        .awsvpc_configuration(
            AwsVpcConfiguration::builder()
                .subnets(subnet)
                .build()
                .unwrap(),
        )
        .build();
    let ecs = &server.ecs;
    let create = || {
        ecs.create_service()
            .cluster("lb")
            .service_name("s")
            .task_definition("web80")
            .desired_count(1)
    };
    let cases: Vec<(
        aws_sdk_ecs::operation::create_service::builders::CreateServiceFluentBuilder,
        String,
    )> = vec![
        (
            create().load_balancers(LoadBalancer::builder().container_name("app").container_port(80).build()),
            "Target Group ARN and Load Balancer Name cannot both be blank.".to_string(),
        ),
        (
            create().load_balancers(
                LoadBalancer::builder()
                    .load_balancer_name("classic")
                    .container_name("app")
                    .container_port(80)
                    .build(),
            ),
            "Classic Load Balancers (loadBalancerName) are not available in Wharf".to_string(),
        ),
        (
            create().load_balancers(load_balancer(&lonely_tg, "app", 80)),
            format!("The target group with targetGroupArn {lonely_tg} does not have an associated load balancer."),
        ),
        (
            create().load_balancers(load_balancer(&instance_tg, "app", 8080)),
            "The container app did not have a container port 8080 defined.".to_string(),
        ),
        (
            create().load_balancers(load_balancer(&instance_tg, "sidecar", 80)),
            "The container sidecar does not exist in the task definition.".to_string(),
        ),
        (
            create().load_balancers(load_balancer(&ip_tg, "app", 80)),
            format!("The provided target group {ip_tg} has target type ip, which is incompatible with the bridge network mode specified in the task definition."),
        ),
        (
            create()
                .task_definition("vpc80")
                .network_configuration(vpc_network.clone())
                .load_balancers(load_balancer(&instance_tg, "app", 80)),
            format!("The provided target group {instance_tg} has target type instance, which is incompatible with the awsvpc network mode specified in the task definition."),
        ),
        (
            create()
                .load_balancers(load_balancer(&instance_tg, "app", 80))
                .load_balancers(load_balancer(&instance_tg, "app", 80))
                .load_balancers(load_balancer(&instance_tg, "app", 80))
                .load_balancers(load_balancer(&instance_tg, "app", 80))
                .load_balancers(load_balancer(&instance_tg, "app", 80))
                .load_balancers(load_balancer(&instance_tg, "app", 80)),
            "at most 5 target groups".to_string(),
        ),
    ];
    for (request, message) in cases {
        let error = request.send().await.unwrap_err();
        assert_eq!(
            support::error_code(&error),
            "InvalidParameterException",
            "{message}"
        );
        assert!(
            support::error_message(&error).contains(&message),
            "{} does not contain {message}",
            support::error_message(&error)
        );
    }
    assert!(
        ecs.list_services()
            .cluster("lb")
            .send()
            .await
            .unwrap()
            .service_arns()
            .is_empty(),
        "a refused request changes nothing"
    );

    // Accepted: kept on the service, its revision and its deployment's view; the grace period
    // reads 0 when none was given.
    let created = create()
        .load_balancers(load_balancer(&instance_tg, "app", 80))
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(service.load_balancers().len(), 1);
    assert_eq!(
        service.load_balancers()[0].target_group_arn(),
        Some(instance_tg.as_str())
    );
    assert_eq!(service.load_balancers()[0].container_name(), Some("app"));
    assert_eq!(service.load_balancers()[0].container_port(), Some(80));
    assert_eq!(service.health_check_grace_period_seconds(), Some(0));
    let first = service.deployments()[0].id().unwrap().to_string();
    let vpc = ecs
        .create_service()
        .cluster("lb")
        .service_name("v")
        .task_definition("vpc80")
        .desired_count(0)
        .network_configuration(vpc_network)
        .load_balancers(load_balancer(&ip_tg, "app", 80))
        .send()
        .await
        .unwrap();
    assert_eq!(vpc.service().unwrap().load_balancers().len(), 1);

    // UpdateService checks new load balancers the same way, and a change starts a deployment.
    let error = ecs
        .update_service()
        .cluster("lb")
        .service("s")
        .load_balancers(load_balancer(&lonely_tg, "app", 80))
        .send()
        .await
        .unwrap_err();
    assert!(support::error_message(&error).contains("does not have an associated load balancer"));
    let second_tg = put_target_group(&server, "second", "instance", true).await;
    let updated = ecs
        .update_service()
        .cluster("lb")
        .service("s")
        .load_balancers(load_balancer(&second_tg, "app", 80))
        .send()
        .await
        .unwrap();
    let service = updated.service().unwrap();
    assert_eq!(
        service.load_balancers()[0].target_group_arn(),
        Some(second_tg.as_str())
    );
    assert_eq!(service.deployments().len(), 2);
    assert_ne!(service.deployments()[0].id(), Some(first.as_str()));
    let described = ecs
        .describe_services()
        .cluster("lb")
        .services("s")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.services()[0].load_balancers()[0].target_group_arn(),
        Some(second_tg.as_str())
    );
    let revision = ecs
        .describe_service_revisions()
        .service_revision_arns(
            described.services()[0].current_service_revisions()[0]
                .arn()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        revision.service_revisions()[0].load_balancers()[0].target_group_arn(),
        Some(second_tg.as_str())
    );
}
