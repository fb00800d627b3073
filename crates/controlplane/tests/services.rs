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
            "Load balancers (loadBalancers) are not available in Wharf yet",
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
