//! Cluster operations through `aws-sdk-ecs` against an in-process server.

mod support;

use aws_sdk_ecs::types::{
    ClusterConfiguration, ClusterField, ClusterSetting, ClusterSettingName,
    ExecuteCommandConfiguration, ExecuteCommandLogging, Tag,
};

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

#[tokio::test]
async fn create_describe_update_delete_a_cluster() {
    let server = support::start().await;
    let ecs = &server.ecs;

    let created = ecs
        .create_cluster()
        .cluster_name("web")
        .tags(tag("team", "platform"))
        .settings(
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value("enabled")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let cluster = created.cluster().unwrap();
    assert_eq!(
        cluster.cluster_arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:cluster/web")
    );
    assert_eq!(cluster.cluster_name(), Some("web"));
    assert_eq!(cluster.status(), Some("ACTIVE"));
    assert_eq!(cluster.registered_container_instances_count(), 0);
    assert_eq!(cluster.running_tasks_count(), 0);
    assert_eq!(cluster.tags(), &[tag("team", "platform")]);
    assert_eq!(cluster.settings()[0].value(), Some("enabled"));

    // Creating it again is idempotent and changes nothing.
    let again = ecs
        .create_cluster()
        .cluster_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(
        again.cluster().unwrap().settings()[0].value(),
        Some("enabled")
    );

    // A default describe leaves out the optional parts; include brings them.
    let plain = ecs
        .describe_clusters()
        .clusters("web")
        .send()
        .await
        .unwrap();
    let plain = &plain.clusters()[0];
    assert!(
        plain.settings().is_empty() && plain.tags().is_empty() && plain.statistics().is_empty()
    );
    let full = ecs
        .describe_clusters()
        .clusters("arn:aws:ecs:us-east-1:123456789012:cluster/web")
        .include(ClusterField::Settings)
        .include(ClusterField::Statistics)
        .include(ClusterField::Tags)
        .send()
        .await
        .unwrap();
    let full = &full.clusters()[0];
    assert_eq!(full.tags(), &[tag("team", "platform")]);
    assert_eq!(full.settings().len(), 1);
    let stats: Vec<_> = full
        .statistics()
        .iter()
        .map(|s| (s.name().unwrap(), s.value().unwrap()))
        .collect();
    assert!(stats.contains(&("runningEC2TasksCount", "0")), "{stats:?}");
    assert!(
        stats.contains(&("activeFargateServiceCount", "0")),
        "{stats:?}"
    );

    let updated = ecs
        .update_cluster()
        .cluster("web")
        .configuration(
            ClusterConfiguration::builder()
                .execute_command_configuration(
                    ExecuteCommandConfiguration::builder()
                        .logging(ExecuteCommandLogging::Default)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let configuration = updated.cluster().unwrap().configuration().unwrap();
    assert_eq!(
        configuration
            .execute_command_configuration()
            .unwrap()
            .logging(),
        Some(&ExecuteCommandLogging::Default)
    );
    let with_config = ecs
        .describe_clusters()
        .clusters("web")
        .include(ClusterField::Configurations)
        .send()
        .await
        .unwrap();
    assert!(with_config.clusters()[0].configuration().is_some());

    let settings = ecs
        .update_cluster_settings()
        .cluster("web")
        .settings(
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value("disabled")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        settings.cluster().unwrap().settings()[0].value(),
        Some("disabled")
    );

    let deleted = ecs.delete_cluster().cluster("web").send().await.unwrap();
    assert_eq!(deleted.cluster().unwrap().status(), Some("INACTIVE"));
    // AWS keeps a deleted cluster describable as INACTIVE, but it is gone from listings.
    let after = ecs
        .describe_clusters()
        .clusters("web")
        .send()
        .await
        .unwrap();
    assert_eq!(after.clusters()[0].status(), Some("INACTIVE"));
    assert!(ecs
        .list_clusters()
        .send()
        .await
        .unwrap()
        .cluster_arns()
        .is_empty());
    let error = ecs
        .delete_cluster()
        .cluster("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ClusterNotFoundException");
    // And it can be created again.
    let revived = ecs
        .create_cluster()
        .cluster_name("web")
        .send()
        .await
        .unwrap();
    assert_eq!(revived.cluster().unwrap().status(), Some("ACTIVE"));
}

#[tokio::test]
async fn the_default_cluster_is_used_when_none_is_named() {
    let server = support::start().await;
    let created = server.ecs.create_cluster().send().await.unwrap();
    assert_eq!(created.cluster().unwrap().cluster_name(), Some("default"));
    let described = server.ecs.describe_clusters().send().await.unwrap();
    assert_eq!(described.clusters()[0].cluster_name(), Some("default"));
}

#[tokio::test]
async fn missing_clusters_are_reported_as_failures() {
    let server = support::start().await;
    server
        .ecs
        .create_cluster()
        .cluster_name("here")
        .send()
        .await
        .unwrap();
    let described = server
        .ecs
        .describe_clusters()
        .clusters("here")
        .clusters("gone")
        .send()
        .await
        .unwrap();
    assert_eq!(described.clusters().len(), 1);
    let failure = &described.failures()[0];
    assert_eq!(
        failure.arn(),
        Some("arn:aws:ecs:us-east-1:123456789012:cluster/gone")
    );
    assert_eq!(failure.reason(), Some("MISSING"));
}

#[tokio::test]
async fn bad_input_gets_aws_errors_and_changes_nothing() {
    let server = support::start().await;
    let ecs = &server.ecs;
    let error = ecs
        .create_cluster()
        .cluster_name("no spaces!")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    assert!(support::error_message(&error).contains("255 letters"));

    let error = ecs
        .create_cluster()
        .cluster_name("ok")
        .settings(
            ClusterSetting::builder()
                .name(ClusterSettingName::ContainerInsights)
                .value("sometimes")
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");

    let error = ecs
        .create_cluster()
        .cluster_name("ok")
        .tags(tag("aws:reserved", "x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");

    let error = ecs
        .create_cluster()
        .cluster_name("ok")
        .capacity_providers("my-asg-provider")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    assert!(ecs
        .list_clusters()
        .send()
        .await
        .unwrap()
        .cluster_arns()
        .is_empty());

    let error = ecs
        .update_cluster()
        .cluster("nope")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ClusterNotFoundException");
    assert_eq!(support::error_message(&error), "Cluster not found.");

    let error = ecs
        .describe_clusters()
        .clusters("arn:aws:sqs:us-east-1:1:queue")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn list_clusters_pages_with_opaque_tokens() {
    let server = support::start().await;
    for i in 0..7 {
        server
            .ecs
            .create_cluster()
            .cluster_name(format!("c{i}"))
            .send()
            .await
            .unwrap();
    }
    let first = server
        .ecs
        .list_clusters()
        .max_results(3)
        .send()
        .await
        .unwrap();
    assert_eq!(first.cluster_arns().len(), 3);
    let token = first.next_token().expect("more pages").to_string();
    assert!(!token.contains("c2"), "tokens are opaque: {token}");

    let all: Vec<String> = server
        .ecs
        .list_clusters()
        .max_results(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let mut sorted = all.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 7);

    let mut tampered = token.clone();
    tampered.insert(0, 'A');
    let error = server
        .ecs
        .list_clusters()
        .next_token(tampered)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");

    let error = server
        .ecs
        .list_clusters()
        .max_results(0)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
}
