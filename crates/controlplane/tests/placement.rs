//! Placement through RunTask and ListContainerInstances: strategies, constraints and the
//! cluster query language, on instances registered through the API.

mod support;

use std::collections::BTreeMap;

use aws_sdk_ecs::types::{
    Attribute, ContainerDefinition, PlacementConstraint, PlacementConstraintType,
    PlacementStrategy, PlacementStrategyType, Resource,
};
use serde_json::json;
use support::TestServer;

async fn instance(server: &TestServer, zone: &str, memory: i32) -> String {
    let identity = json!({"instanceId": format!("i-{zone}"), "availabilityZone": zone, "instanceType": "wharf.local"});
    let registered = server
        .ecs
        .register_container_instance()
        .cluster("p")
        .instance_identity_document(identity.to_string())
        .total_resources(
            Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(4096)
                .build(),
        )
        .total_resources(
            Resource::builder()
                .name("MEMORY")
                .r#type("INTEGER")
                .integer_value(memory)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let arn = registered
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();
    let heartbeat = support::agent_call(
        server,
        "Heartbeat",
        json!({"cluster": "p", "containerInstanceArn": arn}),
    )
    .await;
    assert_eq!(heartbeat.status, 200);
    arn
}

async fn setup() -> (TestServer, Vec<String>) {
    let server = support::start().await;
    server
        .ecs
        .create_cluster()
        .cluster_name("p")
        .send()
        .await
        .unwrap();
    server
        .ecs
        .register_task_definition()
        .family("small")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(128)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut arns = Vec::new();
    for (zone, memory) in [
        ("us-east-1a", 4096),
        ("us-east-1b", 4096),
        ("us-east-1c", 2048),
    ] {
        arns.push(instance(&server, zone, memory).await);
    }
    (server, arns)
}

/// How many of `tasks` landed on each instance ARN.
fn spread(tasks: &[aws_sdk_ecs::types::Task]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for task in tasks {
        *counts
            .entry(task.container_instance_arn().unwrap().to_string())
            .or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn the_default_spreads_across_zones_and_binpack_fills_one_instance() {
    let (server, _) = setup().await;
    let ran = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .count(10)
        .send()
        .await
        .unwrap();
    assert!(ran.failures().is_empty());
    let mut counts: Vec<usize> = spread(ran.tasks()).into_values().collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![3, 3, 4]);

    let packed = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .group("packed")
        .count(5)
        .placement_strategy(
            PlacementStrategy::builder()
                .r#type(PlacementStrategyType::Binpack)
                .field("memory")
                .build(),
        )
        .send()
        .await
        .unwrap();
    // Binpack on memory picks the instance with the least memory left: all five on one.
    assert_eq!(spread(packed.tasks()).len(), 1);
}

#[tokio::test]
async fn member_of_custom_attributes_and_distinct_instance() {
    let (server, arns) = setup().await;
    server
        .ecs
        .put_attributes()
        .cluster("p")
        .attributes(
            Attribute::builder()
                .name("stack")
                .value("prod")
                .target_id(&arns[1])
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let prod = PlacementConstraint::builder()
        .r#type(PlacementConstraintType::MemberOf)
        .expression("attribute:stack == prod")
        .build();
    let ran = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .count(3)
        .placement_constraints(prod.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 3);
    assert!(ran
        .tasks()
        .iter()
        .all(|t| t.container_instance_arn() == Some(arns[1].as_str())));

    let none = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression("attribute:stack == staging")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(none.tasks().is_empty());
    assert_eq!(none.failures().len(), 3);
    assert!(none
        .failures()
        .iter()
        .all(|f| f.reason() == Some("MemberOf placement constraint unsatisfied.")));

    let distinct = PlacementConstraint::builder()
        .r#type(PlacementConstraintType::DistinctInstance)
        .build();
    let ran = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .group("one-each")
        .count(4)
        .placement_constraints(distinct)
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 3);
    assert_eq!(spread(ran.tasks()).len(), 3);
    assert!(ran
        .failures()
        .iter()
        .all(|f| f.reason() == Some("DistinctInstance placement constraint unsatisfied.")));

    let error = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .placement_constraints(
            PlacementConstraint::builder()
                .r#type(PlacementConstraintType::MemberOf)
                .expression("attribute:stack ==")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    let error = server
        .ecs
        .run_task()
        .cluster("p")
        .task_definition("small")
        .placement_strategy(
            PlacementStrategy::builder()
                .r#type(PlacementStrategyType::Binpack)
                .field("disk")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn list_container_instances_filters_with_the_query_language() {
    let (server, arns) = setup().await;
    let listed = server
        .ecs
        .list_container_instances()
        .cluster("p")
        .filter("attribute:ecs.availability-zone in [us-east-1a, us-east-1c]")
        .send()
        .await
        .unwrap();
    let mut got = listed.container_instance_arns().to_vec();
    got.sort();
    let mut want = vec![arns[0].clone(), arns[2].clone()];
    want.sort();
    assert_eq!(got, want);
    let error = server
        .ecs
        .list_container_instances()
        .cluster("p")
        .filter("attribute:x ==")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn concurrent_run_task_calls_never_over_commit() {
    let (server, arns) = setup().await;
    server
        .ecs
        .register_task_definition()
        .family("big")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(1024)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // 4096 + 4096 + 2048 MiB hold exactly ten 1024 MiB tasks.
    let calls = (0..16).map(|_| {
        let ecs = server.ecs.clone();
        tokio::spawn(async move {
            ecs.run_task()
                .cluster("p")
                .task_definition("big")
                .send()
                .await
        })
    });
    let mut placed = 0;
    for call in calls {
        placed += call.await.unwrap().unwrap().tasks().len();
    }
    assert_eq!(placed, 10);
    let described = server
        .ecs
        .describe_container_instances()
        .cluster("p")
        .set_container_instances(Some(arns))
        .send()
        .await
        .unwrap();
    for instance in described.container_instances() {
        let memory = instance
            .remaining_resources()
            .iter()
            .find(|r| r.name() == Some("MEMORY"))
            .unwrap();
        assert_eq!(
            memory.integer_value(),
            0,
            "{:?}",
            instance.container_instance_arn()
        );
    }
}

#[tokio::test]
async fn two_servers_sharing_a_store_never_over_commit() {
    use std::sync::Arc;
    // Two replicas on one store: each has its own placer and scheduler, so only the
    // revision compares in their commits keep them from placing on the same free memory.
    let (first, arns) = setup().await;
    let clock: Arc<dyn store::clock::Clock> = Arc::new(store::clock::SystemClock);
    let second = support::start_on(
        first.store.clone(),
        clock,
        Default::default(),
        first.credentials.clone(),
    )
    .await;
    first
        .ecs
        .register_task_definition()
        .family("big")
        .container_definitions(
            ContainerDefinition::builder()
                .name("app")
                .image("wharf-test/busybox:latest")
                .memory(1024)
                .build(),
        )
        .send()
        .await
        .unwrap();
    // 4096 + 4096 + 2048 MiB hold exactly ten 1024 MiB tasks; ask for 24 through both servers.
    let calls = (0..24).map(|i| {
        let ecs = if i % 2 == 0 {
            first.ecs.clone()
        } else {
            second.ecs.clone()
        };
        tokio::spawn(async move {
            ecs.run_task()
                .cluster("p")
                .task_definition("big")
                .send()
                .await
        })
    });
    let mut placed = 0;
    for call in calls {
        placed += call.await.unwrap().unwrap().tasks().len();
    }
    assert_eq!(placed, 10);
    let listed = second.ecs.list_tasks().cluster("p").send().await.unwrap();
    assert_eq!(listed.task_arns().len(), 10);
    let described = second
        .ecs
        .describe_container_instances()
        .cluster("p")
        .set_container_instances(Some(arns))
        .send()
        .await
        .unwrap();
    for instance in described.container_instances() {
        let memory = instance
            .remaining_resources()
            .iter()
            .find(|r| r.name() == Some("MEMORY"))
            .unwrap();
        assert_eq!(
            memory.integer_value(),
            0,
            "{:?}",
            instance.container_instance_arn()
        );
    }
}
