//! awsvpc networking and the Fargate launch type through `aws-sdk-ecs` and signed agent calls
//! against an in-process server: ENIs allocated with the task and released with it, distinct
//! addresses, the network PollTasks hands agents (security group rules resolved to CIDRs, woken
//! by group changes), AWS's validation, and Fargate capacity that is hidden and kept apart from
//! EC2 container instances.
//!
//! The VPC records are written into the store by the test itself (a VPC of its own, beside
//! whatever default VPC the server creates), so these tests do not depend on the EC2 API.

mod support;

use std::time::Duration;

use aws_sdk_ecs::types::{
    AssignPublicIp, AwsVpcConfiguration, CapacityProviderStrategyItem, Compatibility,
    ContainerDefinition, EphemeralStorage, LaunchType, NetworkConfiguration, NetworkMode,
    PortMapping, Resource, TaskOverride,
};
use model::ec2::{IpPermission, NetworkInterface, SecurityGroup, Subnet, UserIdGroupPair, Vpc};
use serde_json::json;
use store::Store;
use support::TestServer;

const VPC: &str = "vpc-0a11ce0000000test";
const SUBNET_A: &str = "subnet-0a0000000000000a1";
const SUBNET_B: &str = "subnet-0b0000000000000b1";
const SG_WEB: &str = "sg-0000000000000web1";
const SG_DEFAULT: &str = "sg-00000000000default";
const OTHER_VPC: &str = "vpc-0other00000000000";
const OTHER_SUBNET: &str = "subnet-0c0000000000000c1";
const OTHER_SG: &str = "sg-0000000000000other";

async fn put_json<T: serde::Serialize>(server: &TestServer, key: &str, value: &T) {
    server
        .store
        .put(key, serde_json::to_vec(value).unwrap().into())
        .await
        .unwrap();
}

fn subnet(id: &str, vpc: &str, cidr: &str, zone: &str) -> Subnet {
    Subnet {
        subnet_id: id.into(),
        subnet_arn: format!("arn:aws:ec2:us-east-1:123456789012:subnet/{id}"),
        vpc_id: vpc.into(),
        cidr_block: cidr.into(),
        availability_zone: zone.into(),
        availability_zone_id: "use1-az1".into(),
        available_ip_address_count: 251,
        state: "available".into(),
        owner_id: support::ACCOUNT.into(),
        ..Default::default()
    }
}

fn group(id: &str, name: &str, vpc: &str, ingress: Vec<IpPermission>) -> SecurityGroup {
    SecurityGroup {
        group_id: id.into(),
        group_name: name.into(),
        description: name.into(),
        vpc_id: vpc.into(),
        owner_id: support::ACCOUNT.into(),
        ip_permissions: ingress,
        ..Default::default()
    }
}

/// Port 80 from the group's own members (ECS's usual "tasks of this service talk to each
/// other" rule).
fn web_rules() -> Vec<IpPermission> {
    vec![IpPermission {
        ip_protocol: "tcp".into(),
        from_port: Some(80),
        to_port: Some(80),
        user_id_group_pairs: vec![UserIdGroupPair {
            group_id: SG_WEB.into(),
            ..Default::default()
        }],
        ..Default::default()
    }]
}

/// A VPC with two subnets in us-east-1a/b and two groups, and another VPC with one of each.
async fn seed_network(server: &TestServer) {
    for (id, cidr) in [(VPC, "10.0.0.0/16"), (OTHER_VPC, "10.9.0.0/16")] {
        let vpc = Vpc {
            vpc_id: id.into(),
            cidr_block: cidr.into(),
            state: "available".into(),
            owner_id: support::ACCOUNT.into(),
            ..Default::default()
        };
        put_json(server, &model::ec2::vpc_key(id), &vpc).await;
    }
    for subnet in [
        subnet(SUBNET_A, VPC, "10.0.0.0/24", "us-east-1a"),
        subnet(SUBNET_B, VPC, "10.0.1.0/24", "us-east-1b"),
        subnet(OTHER_SUBNET, OTHER_VPC, "10.9.0.0/24", "us-east-1a"),
    ] {
        put_json(server, &model::ec2::subnet_key(&subnet.subnet_id), &subnet).await;
    }
    for group in [
        group(SG_WEB, "web", VPC, web_rules()),
        group(SG_DEFAULT, "default", VPC, vec![]),
        group(OTHER_SG, "other", OTHER_VPC, vec![]),
    ] {
        put_json(
            server,
            &model::ec2::security_group_key(&group.group_id),
            &group,
        )
        .await;
    }
}

fn integer(name: &str, value: i32) -> Resource {
    Resource::builder()
        .name(name)
        .r#type("INTEGER")
        .integer_value(value)
        .build()
}

/// Register an instance (Fargate capacity when `fargate`) in `zone` and start its session.
async fn register(server: &TestServer, cluster: &str, zone: &str, fargate: bool) -> String {
    let identity = json!({"instanceId": "i-0123456789abcdef0", "availabilityZone": zone, "instanceType": "wharf.local"});
    let mut request = server
        .ecs
        .register_container_instance()
        .cluster(cluster)
        .instance_identity_document(identity.to_string())
        .total_resources(integer("CPU", 2048))
        .total_resources(integer("MEMORY", 4096));
    if fargate {
        request = request.attributes(
            aws_sdk_ecs::types::Attribute::builder()
                .name("wharf.capacity-type")
                .value("FARGATE")
                .build()
                .unwrap(),
        );
    }
    let arn = request
        .send()
        .await
        .unwrap()
        .container_instance()
        .unwrap()
        .container_instance_arn()
        .unwrap()
        .to_string();
    let heartbeat = support::agent_call(
        server,
        "Heartbeat",
        json!({"cluster": cluster, "containerInstanceArn": arn}),
    )
    .await;
    assert_eq!(heartbeat.status, 200, "{heartbeat:?}");
    arn
}

fn container(port: i32) -> ContainerDefinition {
    ContainerDefinition::builder()
        .name("app")
        .image("wharf-test/busybox:latest")
        .memory(64)
        .port_mappings(PortMapping::builder().container_port(port).build())
        .build()
}

/// An awsvpc definition: Fargate-compatible when it has a Fargate task size.
async fn register_definition(
    server: &TestServer,
    family: &str,
    mode: NetworkMode,
    size: Option<(&str, &str)>,
) {
    let mut request = server
        .ecs
        .register_task_definition()
        .family(family)
        .network_mode(mode)
        .container_definitions(container(80));
    if let Some((cpu, memory)) = size {
        request = request.cpu(cpu).memory(memory);
    } else {
        request = request.container_definitions(
            ContainerDefinition::builder()
                .name("sidecar")
                .image("wharf-test/busybox:latest")
                .memory(128)
                .build(),
        );
    }
    request.send().await.unwrap();
}

fn network(subnets: &[&str], groups: &[&str]) -> NetworkConfiguration {
    let mut configuration = AwsVpcConfiguration::builder();
    for subnet in subnets {
        configuration = configuration.subnets(*subnet);
    }
    for group in groups {
        configuration = configuration.security_groups(*group);
    }
    NetworkConfiguration::builder()
        .awsvpc_configuration(configuration.build().unwrap())
        .build()
}

fn detail<'a>(task: &'a aws_sdk_ecs::types::Task, name: &str) -> &'a str {
    task.attachments()[0]
        .details()
        .iter()
        .find(|d| d.name() == Some(name))
        .and_then(|d| d.value())
        .unwrap_or("")
}

async fn stored_task(server: &TestServer, cluster: &str, arn: &str) -> serde_json::Value {
    let id = arn.rsplit('/').next().unwrap();
    let kv = server
        .store
        .get(&format!("ecs/task/{cluster}/{id}"))
        .await
        .unwrap()
        .unwrap();
    serde_json::from_slice(&kv.value).unwrap()
}

async fn poll(server: &TestServer, cluster: &str, instance: &str, since: i64) -> serde_json::Value {
    support::agent_call(
        server,
        "PollTasks",
        json!({"cluster": cluster, "containerInstanceArn": instance, "sinceRevision": since, "waitSeconds": 0}),
    )
    .await
    .json()
}

#[tokio::test]
async fn awsvpc_tasks_get_their_own_addresses_which_stopping_gives_back() {
    let server = support::start().await;
    let ecs = &server.ecs;
    seed_network(&server).await;
    ecs.create_cluster()
        .cluster_name("c1")
        .send()
        .await
        .unwrap();
    let instance = register(&server, "c1", "us-east-1a", false).await;
    register_definition(&server, "vpcweb", NetworkMode::Awsvpc, None).await;

    // Two tasks: both in the subnet of the instance's zone, each with its own address.
    let ran = ecs
        .run_task()
        .cluster("c1")
        .task_definition("vpcweb")
        .count(2)
        .network_configuration(network(&[SUBNET_B, SUBNET_A], &[SG_WEB]))
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 2, "{:?}", ran.failures());
    let mut addresses = Vec::new();
    for task in ran.tasks() {
        assert_eq!(task.availability_zone(), Some("us-east-1a"));
        assert_eq!(task.container_instance_arn(), Some(instance.as_str()));
        assert_eq!(task.launch_type(), Some(&LaunchType::Ec2));
        let attachment = &task.attachments()[0];
        assert_eq!(attachment.r#type(), Some("ElasticNetworkInterface"));
        assert_eq!(attachment.status(), Some("PRECREATED"));
        assert_eq!(detail(task, "subnetId"), SUBNET_A);
        let ip = detail(task, "privateIPv4Address").to_string();
        assert_eq!(
            detail(task, "privateDnsName"),
            format!("ip-{}.ec2.internal", ip.replace('.', "-"))
        );
        assert!(detail(task, "macAddress").starts_with("0a:"));
        let eni = detail(task, "networkInterfaceId").to_string();
        assert!(eni.starts_with("eni-") && eni.len() == 21, "{eni}");
        let interfaces = task.containers()[0].network_interfaces();
        assert_eq!(interfaces[0].private_ipv4_address(), Some(ip.as_str()));
        assert_eq!(interfaces[0].attachment_id(), attachment.id());
        // The ENI record exists, in use by this task, with ECS's description.
        let kv = server
            .store
            .get(&model::ec2::network_interface_key(&eni))
            .await
            .unwrap()
            .expect("the ENI is stored with the task");
        let record: NetworkInterface = serde_json::from_slice(&kv.value).unwrap();
        assert_eq!(record.status, "in-use");
        assert_eq!(record.private_ip_address, ip);
        assert_eq!(record.groups[0].group_id, SG_WEB);
        assert!(record.requester_managed);
        assert_eq!(record.wharf_task_arn.as_deref(), task.task_arn());
        assert_eq!(
            record.description,
            format!(
                "arn:aws:ecs:us-east-1:123456789012:attachment/{}",
                attachment.id().unwrap()
            )
        );
        addresses.push(ip);
    }
    addresses.sort();
    assert_eq!(addresses, ["10.0.0.4", "10.0.0.5"]);

    // awsvpc tasks hold no host ports: port 80 is not reserved on the instance.
    let described = ecs
        .describe_container_instances()
        .cluster("c1")
        .container_instances(&instance)
        .send()
        .await
        .unwrap();
    let ports = described.container_instances()[0]
        .remaining_resources()
        .iter()
        .find(|r| r.name() == Some("PORTS"))
        .map(|r| r.string_set_value().to_vec())
        .unwrap_or_default();
    assert!(!ports.contains(&"80".to_string()), "{ports:?}");

    // The agent gets each task's network, its group's self-reference resolved to addresses.
    let answer = poll(&server, "c1", &instance, 0).await;
    let tasks = answer["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{answer}");
    for task in tasks {
        let network = &task["network"];
        assert_eq!(network["subnetId"], SUBNET_A);
        assert_eq!(network["subnetCidr"], "10.0.0.0/24");
        assert_eq!(network["gatewayIpv4Address"], "10.0.0.1");
        assert!(network["macAddress"].as_str().unwrap().starts_with("0a:"));
        let rule = &network["securityGroups"][0]["IpPermissions"][0];
        let mut cidrs: Vec<&str> = rule["IpRanges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["CidrIp"].as_str().unwrap())
            .collect();
        cidrs.sort();
        assert_eq!(cidrs, ["10.0.0.4/32", "10.0.0.5/32"], "{network}");
    }
    let revision = answer["revision"].as_i64().unwrap();

    // A change to the group reaches a waiting poll at once, not at its deadline.
    let waiting = {
        let call = support::agent_call(
            &server,
            "PollTasks",
            json!({"cluster": "c1", "containerInstanceArn": instance, "sinceRevision": revision, "waitSeconds": 20}),
        );
        let change = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut rules = web_rules();
            rules.push(IpPermission {
                ip_protocol: "tcp".into(),
                from_port: Some(443),
                to_port: Some(443),
                ip_ranges: vec![model::ec2::IpRange {
                    cidr_ip: "192.0.2.0/24".into(),
                    description: None,
                }],
                ..Default::default()
            });
            put_json(
                &server,
                &model::ec2::security_group_key(SG_WEB),
                &group(SG_WEB, "web", VPC, rules),
            )
            .await;
        };
        let started = std::time::Instant::now();
        let (answer, ()) = tokio::join!(call, change);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the poll waited {:?}",
            started.elapsed()
        );
        answer.json()
    };
    let permissions = &waiting["tasks"][0]["network"]["securityGroups"][0]["IpPermissions"];
    assert_eq!(permissions.as_array().map(Vec::len), Some(2), "{waiting}");

    // The task runs: its attachment is ATTACHED. Then it stops: the ENI and its address go.
    let first = ran.tasks()[0].task_arn().unwrap().to_string();
    let first_eni = detail(&ran.tasks()[0], "networkInterfaceId").to_string();
    let first_ip = detail(&ran.tasks()[0], "privateIPv4Address").to_string();
    for status in ["RUNNING", "STOPPED"] {
        let report = json!({"cluster": "c1", "taskArn": first, "lastStatus": status,
            "containers": [{"name": "app", "lastStatus": status}, {"name": "sidecar", "lastStatus": status}]});
        let answer = support::agent_call(&server, "ReportTaskState", report).await;
        assert_eq!(answer.status, 200, "{answer:?}");
        let described = ecs
            .describe_tasks()
            .cluster("c1")
            .tasks(&first)
            .send()
            .await
            .unwrap();
        let attachment = &described.tasks()[0].attachments()[0];
        let expected = if status == "RUNNING" {
            "ATTACHED"
        } else {
            "DELETED"
        };
        assert_eq!(attachment.status(), Some(expected));
        let eni = server
            .store
            .get(&model::ec2::network_interface_key(&first_eni))
            .await
            .unwrap();
        assert_eq!(eni.is_some(), status == "RUNNING", "ENI after {status}");
    }
    assert!(server
        .store
        .get(&model::ec2::ip_key(SUBNET_A, &first_ip))
        .await
        .unwrap()
        .is_none());
    // The freed address is the lowest again, so the next task gets it.
    let again = ecs
        .run_task()
        .cluster("c1")
        .task_definition("vpcweb")
        .network_configuration(network(&[SUBNET_A], &[]))
        .send()
        .await
        .unwrap();
    let task = &again.tasks()[0];
    assert_eq!(detail(task, "privateIPv4Address"), first_ip);
    // No groups named: the VPC's default group.
    let eni = detail(task, "networkInterfaceId").to_string();
    let kv = server
        .store
        .get(&model::ec2::network_interface_key(&eni))
        .await
        .unwrap()
        .unwrap();
    let record: NetworkInterface = serde_json::from_slice(&kv.value).unwrap();
    assert_eq!(record.groups[0].group_id, SG_DEFAULT);
}

#[tokio::test]
async fn concurrent_placements_never_share_an_address() {
    let server = support::start().await;
    seed_network(&server).await;
    server
        .ecs
        .create_cluster()
        .cluster_name("c1")
        .send()
        .await
        .unwrap();
    register(&server, "c1", "us-east-1a", false).await;
    register(&server, "c1", "us-east-1a", false).await;
    register_definition(&server, "vpcweb", NetworkMode::Awsvpc, None).await;
    let mut runs = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = server.ecs.clone();
        runs.spawn(async move {
            client
                .run_task()
                .cluster("c1")
                .task_definition("vpcweb")
                .count(2)
                .network_configuration(network(&[SUBNET_A], &[SG_WEB]))
                .send()
                .await
        });
    }
    let mut addresses = Vec::new();
    while let Some(ran) = runs.join_next().await {
        for task in ran.unwrap().unwrap().tasks() {
            addresses.push(detail(task, "privateIPv4Address").to_string());
        }
    }
    let placed = addresses.len();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), placed, "an address was given twice");
    let taken = server
        .store
        .range("ec2/ip/", Default::default())
        .await
        .unwrap();
    assert_eq!(taken.kvs.len(), placed);
}

#[tokio::test]
async fn awsvpc_and_fargate_requests_are_checked_as_aws_checks_them() {
    let server = support::start().await;
    let ecs = &server.ecs;
    seed_network(&server).await;
    ecs.create_cluster()
        .cluster_name("c1")
        .send()
        .await
        .unwrap();
    register(&server, "c1", "us-east-1a", false).await;
    register_definition(&server, "vpcweb", NetworkMode::Awsvpc, None).await;
    register_definition(&server, "tiny", NetworkMode::Awsvpc, Some(("256", "512"))).await;
    register_definition(&server, "bridged", NetworkMode::Bridge, None).await;
    let run = |family: &str| ecs.run_task().cluster("c1").task_definition(family);
    let cases = vec![
        (
            run("vpcweb"),
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ),
        (
            run("bridged").network_configuration(network(&[SUBNET_A], &[])),
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ),
        (
            run("vpcweb").network_configuration(network(&["subnet-0123456789abcdef0"], &[])),
            "Error retrieving subnet information for [subnet-0123456789abcdef0]: The subnet ID 'subnet-0123456789abcdef0' does not exist (ErrorCode: InvalidSubnetID.NotFound)",
        ),
        (
            run("vpcweb").network_configuration(network(&[SUBNET_A, OTHER_SUBNET], &[])),
            "belong to different VPCs",
        ),
        (
            run("vpcweb").network_configuration(network(&[SUBNET_A], &[OTHER_SG])),
            "belong to different networks",
        ),
        (
            run("vpcweb").network_configuration(
                NetworkConfiguration::builder()
                    .awsvpc_configuration(
                        AwsVpcConfiguration::builder()
                            .subnets(SUBNET_A)
                            .assign_public_ip(AssignPublicIp::Enabled)
                            .build()
                            .unwrap(),
                    )
                    .build(),
            ),
            "Assign public IP is not supported for this launch type.",
        ),
        (
            run("bridged").launch_type(LaunchType::Fargate),
            "Task definition does not support launch_type FARGATE.",
        ),
        (
            // awsvpc, but no task-level size: an EC2-only definition.
            run("vpcweb")
                .launch_type(LaunchType::Fargate)
                .network_configuration(network(&[SUBNET_A], &[])),
            "Task definition does not support launch_type FARGATE.",
        ),
        (
            run("tiny")
                .launch_type(LaunchType::Fargate)
                .network_configuration(network(&[SUBNET_A], &[]))
                .overrides(TaskOverride::builder().memory("4096").build()),
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory. See the Amazon ECS documentation for the valid values.",
        ),
        (
            run("tiny")
                .launch_type(LaunchType::Fargate)
                .network_configuration(network(&[SUBNET_A], &[]))
                .overrides(
                    TaskOverride::builder()
                        .ephemeral_storage(EphemeralStorage::builder().size_in_gib(20).build())
                        .build(),
                ),
            "Invalid 'ephemeralStorage' setting for task. sizeInGiB must be between 21 and 200.",
        ),
        (
            run("tiny")
                .launch_type(LaunchType::Ec2)
                .platform_version("LATEST")
                .network_configuration(network(&[SUBNET_A], &[])),
            "The platform version must be null when specifying an EC2 launch type.",
        ),
        (
            // FARGATE is not one of the cluster's capacity providers.
            run("tiny")
                .capacity_provider_strategy(
                    CapacityProviderStrategyItem::builder()
                        .capacity_provider("FARGATE")
                        .weight(1)
                        .build()
                        .unwrap(),
                )
                .network_configuration(network(&[SUBNET_A], &[])),
            "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster.",
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
            support::error_message(&error).contains(message),
            "{} does not contain {message}",
            support::error_message(&error)
        );
    }
    // Nothing was written by any refused request.
    let enis = server
        .store
        .range(model::ec2::NETWORK_INTERFACE_PREFIX, Default::default())
        .await
        .unwrap();
    assert!(enis.kvs.is_empty());
}

#[tokio::test]
async fn fargate_tasks_run_only_on_fargate_capacity_which_is_hidden() {
    let server = support::start().await;
    let ecs = &server.ecs;
    seed_network(&server).await;
    ecs.create_cluster()
        .cluster_name("f")
        .capacity_providers("FARGATE")
        .capacity_providers("FARGATE_SPOT")
        .send()
        .await
        .unwrap();
    let ec2 = register(&server, "f", "us-east-1a", false).await;
    let fargate = register(&server, "f", "us-east-1b", true).await;
    register_definition(&server, "tiny", NetworkMode::Awsvpc, Some(("256", "512"))).await;
    register_definition(&server, "bridged", NetworkMode::Bridge, None).await;

    // Fargate capacity is not a container instance of the cluster.
    let listed = ecs
        .list_container_instances()
        .cluster("f")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.container_instance_arns(), std::slice::from_ref(&ec2));
    let described = ecs
        .describe_container_instances()
        .cluster("f")
        .container_instances(&fargate)
        .send()
        .await
        .unwrap();
    assert!(described.container_instances().is_empty());
    assert_eq!(described.failures()[0].reason(), Some("MISSING"));
    let cluster = ecs.describe_clusters().clusters("f").send().await.unwrap();
    assert_eq!(
        cluster.clusters()[0].registered_container_instances_count(),
        1
    );

    // FARGATE tasks land on Fargate capacity, in the subnet of its zone, and show no instance.
    let ran = ecs
        .run_task()
        .cluster("f")
        .task_definition("tiny")
        .launch_type(LaunchType::Fargate)
        .count(2)
        .network_configuration(network(&[SUBNET_A, SUBNET_B], &[SG_WEB]))
        .overrides(
            TaskOverride::builder()
                .ephemeral_storage(EphemeralStorage::builder().size_in_gib(30).build())
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(ran.tasks().len(), 2, "{:?}", ran.failures());
    for task in ran.tasks() {
        assert_eq!(task.launch_type(), Some(&LaunchType::Fargate));
        assert_eq!(task.platform_version(), Some("1.4.0"));
        assert_eq!(task.platform_family(), Some("Linux"));
        assert_eq!(task.container_instance_arn(), None);
        assert_eq!(task.availability_zone(), Some("us-east-1b"));
        assert_eq!(detail(task, "subnetId"), SUBNET_B);
        assert_eq!(task.ephemeral_storage().map(|s| s.size_in_gib()), Some(30));
        let stored = stored_task(&server, "f", task.task_arn().unwrap()).await;
        assert_eq!(stored["containerInstanceArn"], fargate.as_str());
    }
    let described = ecs
        .describe_tasks()
        .cluster("f")
        .tasks(ran.tasks()[0].task_arn().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(described.tasks()[0].container_instance_arn(), None);
    // Its agent sees them, with their networks.
    let answer = poll(&server, "f", &fargate, 0).await;
    assert_eq!(
        answer["tasks"].as_array().map(Vec::len),
        Some(2),
        "{answer}"
    );
    assert_eq!(answer["tasks"][0]["network"]["subnetId"], SUBNET_B);

    // A capacity provider strategy names the provider; the task is still FARGATE.
    let spot = ecs
        .run_task()
        .cluster("f")
        .task_definition("tiny")
        .capacity_provider_strategy(
            CapacityProviderStrategyItem::builder()
                .capacity_provider("FARGATE_SPOT")
                .weight(1)
                .build()
                .unwrap(),
        )
        .network_configuration(network(&[SUBNET_B], &[]))
        .send()
        .await
        .unwrap();
    let task = &spot.tasks()[0];
    assert_eq!(task.capacity_provider_name(), Some("FARGATE_SPOT"));
    assert_eq!(task.launch_type(), Some(&LaunchType::Fargate));

    // EC2 tasks never land on Fargate capacity, and failures never name it.
    let ec2_tasks = ecs
        .run_task()
        .cluster("f")
        .task_definition("bridged")
        .count(10)
        .send()
        .await
        .unwrap();
    assert!(!ec2_tasks.tasks().is_empty());
    for task in ec2_tasks.tasks() {
        assert_eq!(task.container_instance_arn(), Some(ec2.as_str()));
    }
    for failure in ec2_tasks.failures() {
        assert_eq!(failure.arn(), Some(ec2.as_str()), "{failure:?}");
    }

    // No Fargate room for a task this size: ECS's capacity failure, with no ARN.
    register_definition(&server, "huge", NetworkMode::Awsvpc, Some(("4096", "8192"))).await;
    let none = ecs
        .run_task()
        .cluster("f")
        .task_definition("huge")
        .launch_type(LaunchType::Fargate)
        .network_configuration(network(&[SUBNET_B], &[]))
        .send()
        .await
        .unwrap();
    assert!(none.tasks().is_empty());
    assert_eq!(none.failures().len(), 1);
    assert_eq!(none.failures()[0].arn(), None);
    assert!(none.failures()[0]
        .reason()
        .unwrap()
        .starts_with("Capacity is unavailable at this time."));
}

#[tokio::test]
async fn fargate_services_run_their_tasks_on_fargate_capacity() {
    let server = support::start().await;
    let ecs = &server.ecs;
    seed_network(&server).await;
    ecs.create_cluster().cluster_name("s").send().await.unwrap();
    register(&server, "s", "us-east-1a", false).await;
    let fargate = register(&server, "s", "us-east-1a", true).await;
    register_definition(&server, "tiny", NetworkMode::Awsvpc, Some(("256", "512"))).await;
    let definition = ecs
        .describe_task_definition()
        .task_definition("tiny")
        .send()
        .await
        .unwrap();
    assert!(definition
        .task_definition()
        .unwrap()
        .compatibilities()
        .contains(&Compatibility::Fargate));

    let error = ecs
        .create_service()
        .cluster("s")
        .service_name("web")
        .task_definition("tiny")
        .desired_count(1)
        .launch_type(LaunchType::Fargate)
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        support::error_message(&error),
        "Network Configuration must be provided when networkMode 'awsvpc' is specified."
    );
    let created = ecs
        .create_service()
        .cluster("s")
        .service_name("web")
        .task_definition("tiny")
        .desired_count(2)
        .launch_type(LaunchType::Fargate)
        .network_configuration(network(&[SUBNET_A], &[SG_WEB]))
        .send()
        .await
        .unwrap();
    let service = created.service().unwrap();
    assert_eq!(service.launch_type(), Some(&LaunchType::Fargate));
    assert_eq!(service.platform_version(), Some("LATEST"));

    // The service scheduler starts both tasks on the Fargate capacity, with addresses.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let arns = loop {
        let listed = ecs
            .list_tasks()
            .cluster("s")
            .service_name("web")
            .send()
            .await
            .unwrap();
        if listed.task_arns().len() == 2 {
            break listed.task_arns().to_vec();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service did not start its tasks"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let described = ecs
        .describe_tasks()
        .cluster("s")
        .set_tasks(Some(arns))
        .send()
        .await
        .unwrap();
    for task in described.tasks() {
        assert_eq!(task.launch_type(), Some(&LaunchType::Fargate));
        assert_eq!(task.container_instance_arn(), None);
        assert_eq!(detail(task, "subnetId"), SUBNET_A);
        let stored = stored_task(&server, "s", task.task_arn().unwrap()).await;
        assert_eq!(stored["containerInstanceArn"], fargate.as_str());
    }
}
