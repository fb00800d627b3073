//! Tagging, custom attributes and account settings through `aws-sdk-ecs`.

mod support;

use aws_sdk_ecs::types::{Attribute, SettingName, Tag, TargetType};

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

#[tokio::test]
async fn tag_untag_and_list_tags_on_a_cluster() {
    let server = support::start().await;
    let ecs = &server.ecs;
    let arn = ecs
        .create_cluster()
        .cluster_name("tagged")
        .tags(tag("a", "1"))
        .send()
        .await
        .unwrap()
        .cluster()
        .unwrap()
        .cluster_arn()
        .unwrap()
        .to_string();
    ecs.tag_resource()
        .resource_arn(&arn)
        .tags(tag("a", "2"))
        .tags(tag("b", "3"))
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags(), &[tag("a", "2"), tag("b", "3")]);
    ecs.untag_resource()
        .resource_arn(&arn)
        .tag_keys("a")
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags(), &[tag("b", "3")]);

    let error = ecs
        .tag_resource()
        .resource_arn("arn:aws:ecs:us-east-1:123456789012:cluster/none")
        .tags(tag("a", "1"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ResourceNotFoundException");
    let error = ecs
        .list_tags_for_resource()
        .resource_arn("not-an-arn")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    let too_many: Vec<Tag> = (0..50).map(|i| tag(&format!("k{i}"), "v")).collect();
    let error = ecs
        .tag_resource()
        .resource_arn(&arn)
        .set_tags(Some(too_many))
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    // The refused call changed nothing.
    let listed = ecs
        .list_tags_for_resource()
        .resource_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.tags(), &[tag("b", "3")]);
}

#[tokio::test]
async fn attributes_on_container_instances() {
    let server = support::start().await;
    let ecs = &server.ecs;
    ecs.create_cluster()
        .cluster_name("attrs")
        .send()
        .await
        .unwrap();
    let registered = ecs
        .register_container_instance()
        .cluster("attrs")
        .total_resources(
            aws_sdk_ecs::types::Resource::builder()
                .name("CPU")
                .r#type("INTEGER")
                .integer_value(1024)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let instance_arn = registered
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();

    let attribute = |name: &str, value: &str| {
        Attribute::builder()
            .name(name)
            .value(value)
            .target_id(&instance_arn)
            .build()
            .unwrap()
    };
    ecs.put_attributes()
        .cluster("attrs")
        .attributes(attribute("stack", "prod"))
        .attributes(attribute("rack", "r1"))
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_attributes()
        .cluster("attrs")
        .target_type(TargetType::ContainerInstance)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 2);
    let prod = ecs
        .list_attributes()
        .cluster("attrs")
        .target_type(TargetType::ContainerInstance)
        .attribute_name("stack")
        .attribute_value("prod")
        .send()
        .await
        .unwrap();
    assert_eq!(prod.attributes().len(), 1);
    assert_eq!(
        prod.attributes()[0].target_id(),
        Some(instance_arn.as_str())
    );

    // Eleven custom attributes on one instance is one too many, and nothing is written.
    let mut put = ecs.put_attributes().cluster("attrs");
    for i in 0..9 {
        put = put.attributes(attribute(&format!("extra{i}"), "x"));
    }
    let error = put.send().await.unwrap_err();
    assert_eq!(
        support::error_code(&error),
        "AttributeLimitExceededException"
    );
    let listed = ecs
        .list_attributes()
        .cluster("attrs")
        .target_type(TargetType::ContainerInstance)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 2);

    ecs.delete_attributes()
        .cluster("attrs")
        .attributes(
            Attribute::builder()
                .name("rack")
                .target_id(&instance_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    let listed = ecs
        .list_attributes()
        .cluster("attrs")
        .target_type(TargetType::ContainerInstance)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.attributes().len(), 1);

    let error = ecs
        .put_attributes()
        .cluster("attrs")
        .attributes(
            Attribute::builder()
                .name("x")
                .value("y")
                .target_id("ffff")
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "TargetNotFoundException");
    let error = ecs
        .put_attributes()
        .cluster("attrs")
        .attributes(
            Attribute::builder()
                .name("bad name!")
                .value("y")
                .target_id(&instance_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");
    let error = ecs
        .list_attributes()
        .cluster("nope")
        .target_type(TargetType::ContainerInstance)
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "ClusterNotFoundException");
}

#[tokio::test]
async fn account_settings_put_default_list_and_delete() {
    let server = support::start().await;
    let ecs = &server.ecs;
    let effective = ecs
        .list_account_settings()
        .effective_settings(true)
        .max_results(10)
        .send()
        .await
        .unwrap();
    let insights = effective
        .settings()
        .iter()
        .find(|s| s.name() == Some(&SettingName::ContainerInsights))
        .expect("containerInsights listed");
    assert_eq!(insights.value(), Some("disabled"));

    let set = ecs
        .put_account_setting_default()
        .name(SettingName::ContainerInsights)
        .value("enabled")
        .send()
        .await
        .unwrap();
    assert_eq!(set.setting().unwrap().value(), Some("enabled"));
    let effective = ecs
        .list_account_settings()
        .name(SettingName::ContainerInsights)
        .effective_settings(true)
        .send()
        .await
        .unwrap();
    assert_eq!(effective.settings()[0].value(), Some("enabled"));

    let root = "arn:aws:iam::123456789012:root";
    ecs.put_account_setting()
        .name(SettingName::AwsvpcTrunking)
        .value("enabled")
        .principal_arn(root)
        .send()
        .await
        .unwrap();
    let own = ecs
        .list_account_settings()
        .principal_arn(root)
        .send()
        .await
        .unwrap();
    assert_eq!(own.settings().len(), 1);
    assert_eq!(own.settings()[0].name(), Some(&SettingName::AwsvpcTrunking));

    let deleted = ecs
        .delete_account_setting()
        .name(SettingName::AwsvpcTrunking)
        .principal_arn(root)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.setting().unwrap().value(), Some("enabled"));
    let own = ecs
        .list_account_settings()
        .principal_arn(root)
        .send()
        .await
        .unwrap();
    assert!(own.settings().is_empty());

    let error = ecs
        .put_account_setting()
        .name(SettingName::ContainerInsights)
        .value("maybe")
        .send()
        .await
        .unwrap_err();
    assert_eq!(support::error_code(&error), "InvalidParameterException");

    // Paging through the effective settings visits each once.
    let all: Vec<_> = ecs
        .list_account_settings()
        .effective_settings(true)
        .max_results(3)
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(all.len(), model::ecs::account_setting::DEFAULTS.len());
}
