//! Task definitions through the real AWS SDK for Rust: register, describe, list (with the SDK's
//! paginators), list families, deregister and delete, including ECS's error codes and messages.
//!
//! Definitions are written as JSON (like `aws ecs register-task-definition --cli-input-json`),
//! parsed with the model's serde types and converted member by member into the SDK's input, so
//! the JSON fixtures in `tests/fixtures/` go over the wire exactly as the SDK sends them.

mod support;

use std::collections::BTreeSet;
use std::future::Future;

use aws_sdk_ecs::types as sdk;
use model::ecs::task_definition as td;
use serde_json::{json, Value};
use support::{error_code, error_message, start, ACCOUNT, REGION};

fn fixture(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parse {path}: {e}"))
}

fn arn(family: &str, revision: i32) -> String {
    format!("arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}")
}

/// A minimal valid EC2 definition of `family`.
fn simple(family: &str) -> Value {
    json!({"family": family, "containerDefinitions": [{"name": "app", "image": "busybox", "memory": 64}]})
}

// ---- JSON -> SDK input -------------------------------------------------------------------
//
// Each conversion destructures the model type completely, so a member added to the model
// without being sent here fails to compile instead of silently not round-tripping.

fn key_values(pairs: Option<Vec<model::ecs::KeyValuePair>>) -> Option<Vec<sdk::KeyValuePair>> {
    pairs.map(|pairs| {
        pairs
            .into_iter()
            .map(|model::ecs::KeyValuePair { name, value }| {
                sdk::KeyValuePair::builder()
                    .set_name(name)
                    .set_value(value)
                    .build()
            })
            .collect()
    })
}

fn secrets(secrets: Option<Vec<td::Secret>>) -> Option<Vec<sdk::Secret>> {
    secrets.map(|secrets| {
        secrets
            .into_iter()
            .map(|td::Secret { name, value_from }| {
                sdk::Secret::builder()
                    .name(name)
                    .value_from(value_from)
                    .build()
                    .expect("secret")
            })
            .collect()
    })
}

fn map(
    values: Option<std::collections::BTreeMap<String, String>>,
) -> Option<std::collections::HashMap<String, String>> {
    values.map(|values| values.into_iter().collect())
}

fn sdk_container(container: td::ContainerDefinition) -> sdk::ContainerDefinition {
    let td::ContainerDefinition {
        name,
        image,
        repository_credentials,
        cpu,
        memory,
        memory_reservation,
        links,
        port_mappings,
        essential,
        restart_policy,
        entry_point,
        command,
        environment,
        environment_files,
        mount_points,
        volumes_from,
        linux_parameters,
        secrets: container_secrets,
        depends_on,
        start_timeout,
        stop_timeout,
        version_consistency,
        hostname,
        user,
        working_directory,
        disable_networking,
        privileged,
        readonly_root_filesystem,
        dns_servers,
        dns_search_domains,
        extra_hosts,
        docker_security_options,
        interactive,
        pseudo_terminal,
        docker_labels,
        ulimits,
        log_configuration,
        health_check,
        system_controls,
        resource_requirements,
        firelens_configuration,
        credential_specs,
    } = container;
    sdk::ContainerDefinition::builder()
        .set_name(name)
        .set_image(image)
        .set_repository_credentials(repository_credentials.map(|c| {
            sdk::RepositoryCredentials::builder()
                .credentials_parameter(c.credentials_parameter)
                .build()
                .expect("repository credentials")
        }))
        .set_cpu(cpu)
        .set_memory(memory)
        .set_memory_reservation(memory_reservation)
        .set_links(links)
        .set_port_mappings(port_mappings.map(|mappings| {
            mappings
                .into_iter()
                .map(
                    |td::PortMapping {
                         container_port,
                         host_port,
                         protocol,
                         name,
                         app_protocol,
                         container_port_range,
                     }| {
                        sdk::PortMapping::builder()
                            .set_container_port(container_port)
                            .set_host_port(host_port)
                            .set_protocol(protocol.as_deref().map(sdk::TransportProtocol::from))
                            .set_name(name)
                            .set_app_protocol(
                                app_protocol.as_deref().map(sdk::ApplicationProtocol::from),
                            )
                            .set_container_port_range(container_port_range)
                            .build()
                    },
                )
                .collect()
        }))
        .set_essential(essential)
        .set_restart_policy(restart_policy.map(|p| {
            sdk::ContainerRestartPolicy::builder()
                .enabled(p.enabled)
                .set_ignored_exit_codes(p.ignored_exit_codes)
                .set_restart_attempt_period(p.restart_attempt_period)
                .build()
                .expect("restart policy")
        }))
        .set_entry_point(entry_point)
        .set_command(command)
        .set_environment(key_values(environment))
        .set_environment_files(environment_files.map(|files| {
            files
                .into_iter()
                .map(|f| {
                    sdk::EnvironmentFile::builder()
                        .value(f.value)
                        .r#type(sdk::EnvironmentFileType::from(f.r#type.as_str()))
                        .build()
                        .expect("environment file")
                })
                .collect()
        }))
        .set_mount_points(mount_points.map(|mounts| {
            mounts
                .into_iter()
                .map(
                    |td::MountPoint {
                         source_volume,
                         container_path,
                         read_only,
                     }| {
                        sdk::MountPoint::builder()
                            .set_source_volume(source_volume)
                            .set_container_path(container_path)
                            .set_read_only(read_only)
                            .build()
                    },
                )
                .collect()
        }))
        .set_volumes_from(volumes_from.map(|froms| {
            froms
                .into_iter()
                .map(
                    |td::VolumeFrom {
                         source_container,
                         read_only,
                     }| {
                        sdk::VolumeFrom::builder()
                            .set_source_container(source_container)
                            .set_read_only(read_only)
                            .build()
                    },
                )
                .collect()
        }))
        .set_linux_parameters(linux_parameters.map(sdk_linux_parameters))
        .set_secrets(secrets(container_secrets))
        .set_depends_on(depends_on.map(|deps| {
            deps.into_iter()
                .map(|d| {
                    sdk::ContainerDependency::builder()
                        .container_name(d.container_name)
                        .condition(sdk::ContainerCondition::from(d.condition.as_str()))
                        .build()
                        .expect("dependency")
                })
                .collect()
        }))
        .set_start_timeout(start_timeout)
        .set_stop_timeout(stop_timeout)
        .set_version_consistency(
            version_consistency
                .as_deref()
                .map(sdk::VersionConsistency::from),
        )
        .set_hostname(hostname)
        .set_user(user)
        .set_working_directory(working_directory)
        .set_disable_networking(disable_networking)
        .set_privileged(privileged)
        .set_readonly_root_filesystem(readonly_root_filesystem)
        .set_dns_servers(dns_servers)
        .set_dns_search_domains(dns_search_domains)
        .set_extra_hosts(extra_hosts.map(|hosts| {
            hosts
                .into_iter()
                .map(|h| {
                    sdk::HostEntry::builder()
                        .hostname(h.hostname)
                        .ip_address(h.ip_address)
                        .build()
                        .expect("host entry")
                })
                .collect()
        }))
        .set_docker_security_options(docker_security_options)
        .set_interactive(interactive)
        .set_pseudo_terminal(pseudo_terminal)
        .set_docker_labels(map(docker_labels))
        .set_ulimits(ulimits.map(|limits| {
            limits
                .into_iter()
                .map(|u| {
                    sdk::Ulimit::builder()
                        .name(sdk::UlimitName::from(u.name.as_str()))
                        .soft_limit(u.soft_limit)
                        .hard_limit(u.hard_limit)
                        .build()
                        .expect("ulimit")
                })
                .collect()
        }))
        .set_log_configuration(log_configuration.map(|l| {
            sdk::LogConfiguration::builder()
                .log_driver(sdk::LogDriver::from(l.log_driver.as_str()))
                .set_options(map(l.options))
                .set_secret_options(secrets(l.secret_options))
                .build()
                .expect("log configuration")
        }))
        .set_health_check(health_check.map(|h| {
            sdk::HealthCheck::builder()
                .set_command(Some(h.command))
                .set_interval(h.interval)
                .set_timeout(h.timeout)
                .set_retries(h.retries)
                .set_start_period(h.start_period)
                .build()
                .expect("health check")
        }))
        .set_system_controls(system_controls.map(|controls| {
            controls
                .into_iter()
                .map(|td::SystemControl { namespace, value }| {
                    sdk::SystemControl::builder()
                        .set_namespace(namespace)
                        .set_value(value)
                        .build()
                })
                .collect()
        }))
        .set_resource_requirements(resource_requirements.map(|requirements| {
            requirements
                .into_iter()
                .map(|r| {
                    sdk::ResourceRequirement::builder()
                        .set_value(r.value)
                        .r#type(sdk::ResourceType::from(r.r#type.as_str()))
                        .set_sharing_strategy(r.sharing_strategy.and_then(|s| s.nvidia_mps).map(
                            |mps| {
                                sdk::SharingStrategy::NvidiaMps(
                                    sdk::NvidiaMpsAllocation::builder()
                                        .memory(mps.memory)
                                        .set_max_compute_percent(mps.max_compute_percent)
                                        .build()
                                        .expect("nvidia mps"),
                                )
                            },
                        ))
                        .build()
                        .expect("resource requirement")
                })
                .collect()
        }))
        .set_firelens_configuration(firelens_configuration.map(|f| {
            sdk::FirelensConfiguration::builder()
                .r#type(sdk::FirelensConfigurationType::from(f.r#type.as_str()))
                .set_options(map(f.options))
                .build()
                .expect("firelens configuration")
        }))
        .set_credential_specs(credential_specs)
        .build()
}

fn sdk_linux_parameters(linux: td::LinuxParameters) -> sdk::LinuxParameters {
    let td::LinuxParameters {
        capabilities,
        devices,
        init_process_enabled,
        shared_memory_size,
        tmpfs,
        max_swap,
        swappiness,
    } = linux;
    sdk::LinuxParameters::builder()
        .set_capabilities(capabilities.map(|td::KernelCapabilities { add, drop }| {
            sdk::KernelCapabilities::builder()
                .set_add(add)
                .set_drop(drop)
                .build()
        }))
        .set_devices(devices.map(|devices| {
            devices
                .into_iter()
                .map(|d| {
                    sdk::Device::builder()
                        .host_path(d.host_path)
                        .set_container_path(d.container_path)
                        .set_permissions(d.permissions.map(|p| {
                            p.iter()
                                .map(|p| sdk::DeviceCgroupPermission::from(p.as_str()))
                                .collect()
                        }))
                        .build()
                        .expect("device")
                })
                .collect()
        }))
        .set_init_process_enabled(init_process_enabled)
        .set_shared_memory_size(shared_memory_size)
        .set_tmpfs(tmpfs.map(|mounts| {
            mounts
                .into_iter()
                .map(|t| {
                    sdk::Tmpfs::builder()
                        .container_path(t.container_path)
                        .size(t.size)
                        .set_mount_options(t.mount_options)
                        .build()
                        .expect("tmpfs")
                })
                .collect()
        }))
        .set_max_swap(max_swap)
        .set_swappiness(swappiness)
        .build()
}

fn sdk_volume(volume: td::Volume) -> sdk::Volume {
    let td::Volume {
        name,
        host,
        docker_volume_configuration,
        efs_volume_configuration,
        s3files_volume_configuration,
        fsx_windows_file_server_volume_configuration,
        configured_at_launch,
    } = volume;
    sdk::Volume::builder()
        .set_name(name)
        .set_host(host.map(|h| {
            sdk::HostVolumeProperties::builder()
                .set_source_path(h.source_path)
                .build()
        }))
        .set_docker_volume_configuration(docker_volume_configuration.map(|d| {
            sdk::DockerVolumeConfiguration::builder()
                .set_scope(d.scope.as_deref().map(sdk::Scope::from))
                .set_autoprovision(d.autoprovision)
                .set_driver(d.driver)
                .set_driver_opts(map(d.driver_opts))
                .set_labels(map(d.labels))
                .build()
        }))
        .set_efs_volume_configuration(efs_volume_configuration.map(|e| {
            sdk::EfsVolumeConfiguration::builder()
                .file_system_id(e.file_system_id)
                .set_root_directory(e.root_directory)
                .set_transit_encryption(
                    e.transit_encryption
                        .as_deref()
                        .map(sdk::EfsTransitEncryption::from),
                )
                .set_transit_encryption_port(e.transit_encryption_port)
                .set_authorization_config(e.authorization_config.map(|a| {
                    sdk::EfsAuthorizationConfig::builder()
                        .set_access_point_id(a.access_point_id)
                        .set_iam(a.iam.as_deref().map(sdk::EfsAuthorizationConfigIam::from))
                        .build()
                }))
                .build()
                .expect("efs volume")
        }))
        .set_s3files_volume_configuration(s3files_volume_configuration.map(|s| {
            sdk::S3FilesVolumeConfiguration::builder()
                .file_system_arn(s.file_system_arn)
                .set_root_directory(s.root_directory)
                .set_transit_encryption_port(s.transit_encryption_port)
                .set_access_point_arn(s.access_point_arn)
                .build()
                .expect("s3files volume")
        }))
        .set_fsx_windows_file_server_volume_configuration(
            fsx_windows_file_server_volume_configuration.map(|f| {
                sdk::FSxWindowsFileServerVolumeConfiguration::builder()
                    .file_system_id(f.file_system_id)
                    .root_directory(f.root_directory)
                    .authorization_config(
                        sdk::FSxWindowsFileServerAuthorizationConfig::builder()
                            .credentials_parameter(f.authorization_config.credentials_parameter)
                            .domain(f.authorization_config.domain)
                            .build()
                            .expect("fsx authorization"),
                    )
                    .build()
                    .expect("fsx volume")
            }),
        )
        .set_configured_at_launch(configured_at_launch)
        .build()
}

/// A RegisterTaskDefinition call built from a JSON request.
// Elastic Inference is retired and its SDK members deprecated, but they are still members of
// the API, so the conversion sends them like any other.
#[allow(deprecated)]
fn register(
    client: &aws_sdk_ecs::Client,
    request: Value,
) -> aws_sdk_ecs::operation::register_task_definition::builders::RegisterTaskDefinitionFluentBuilder
{
    let input: td::RegisterTaskDefinitionInput =
        serde_json::from_value(request).expect("request parses as RegisterTaskDefinition input");
    let td::RegisterTaskDefinitionInput {
        family,
        task_role_arn,
        execution_role_arn,
        network_mode,
        container_definitions,
        volumes,
        placement_constraints,
        requires_compatibilities,
        cpu,
        memory,
        tags,
        pid_mode,
        ipc_mode,
        proxy_configuration,
        inference_accelerators,
        ephemeral_storage,
        runtime_platform,
        enable_fault_injection,
        // Not in the SDK version these tests use.
        trusted_execution_configuration: _,
    } = input;
    client
        .register_task_definition()
        .set_family(family)
        .set_task_role_arn(task_role_arn)
        .set_execution_role_arn(execution_role_arn)
        .set_network_mode(network_mode.as_deref().map(sdk::NetworkMode::from))
        .set_container_definitions(
            container_definitions.map(|c| c.into_iter().map(sdk_container).collect()),
        )
        .set_volumes(volumes.map(|v| v.into_iter().map(sdk_volume).collect()))
        .set_placement_constraints(placement_constraints.map(|constraints| {
            constraints
                .into_iter()
                .map(|c| {
                    sdk::TaskDefinitionPlacementConstraint::builder()
                        .set_type(
                            c.r#type
                                .as_deref()
                                .map(sdk::TaskDefinitionPlacementConstraintType::from),
                        )
                        .set_expression(c.expression)
                        .build()
                })
                .collect()
        }))
        .set_requires_compatibilities(requires_compatibilities.map(|c| {
            c.iter()
                .map(|c| sdk::Compatibility::from(c.as_str()))
                .collect()
        }))
        .set_cpu(cpu)
        .set_memory(memory)
        .set_tags(tags.map(|tags| {
            tags.into_iter()
                .map(|t| {
                    sdk::Tag::builder()
                        .set_key(t.key)
                        .set_value(t.value)
                        .build()
                })
                .collect()
        }))
        .set_pid_mode(pid_mode.as_deref().map(sdk::PidMode::from))
        .set_ipc_mode(ipc_mode.as_deref().map(sdk::IpcMode::from))
        .set_proxy_configuration(proxy_configuration.map(|p| {
            sdk::ProxyConfiguration::builder()
                .set_type(p.r#type.as_deref().map(sdk::ProxyConfigurationType::from))
                .container_name(p.container_name)
                .set_properties(key_values(p.properties))
                .build()
                .expect("proxy configuration")
        }))
        .set_inference_accelerators(inference_accelerators.map(|accelerators| {
            accelerators
                .into_iter()
                .map(|a| {
                    sdk::InferenceAccelerator::builder()
                        .device_name(a.device_name)
                        .device_type(a.device_type)
                        .build()
                        .expect("inference accelerator")
                })
                .collect()
        }))
        .set_ephemeral_storage(ephemeral_storage.map(|e| {
            sdk::EphemeralStorage::builder()
                .size_in_gib(e.size_in_gib)
                .build()
        }))
        .set_runtime_platform(runtime_platform.map(|r| {
            sdk::RuntimePlatform::builder()
                .set_cpu_architecture(
                    r.cpu_architecture
                        .as_deref()
                        .map(sdk::CpuArchitecture::from),
                )
                .set_operating_system_family(
                    r.operating_system_family
                        .as_deref()
                        .map(sdk::OsFamily::from),
                )
                .build()
        }))
        .set_enable_fault_injection(enable_fault_injection)
}

async fn register_ok(client: &aws_sdk_ecs::Client, request: Value) -> sdk::TaskDefinition {
    register(client, request)
        .send()
        .await
        .expect("RegisterTaskDefinition succeeds")
        .task_definition
        .expect("taskDefinition in response")
}

async fn families(
    client: &aws_sdk_ecs::Client,
    status: Option<sdk::TaskDefinitionFamilyStatus>,
) -> Vec<String> {
    client
        .list_task_definition_families()
        .set_status(status)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListTaskDefinitionFamilies succeeds")
}

async fn arns(
    client: &aws_sdk_ecs::Client,
    family: Option<&str>,
    status: Option<sdk::TaskDefinitionStatus>,
) -> Vec<String> {
    client
        .list_task_definitions()
        .set_family_prefix(family.map(str::to_string))
        .set_status(status)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("ListTaskDefinitions succeeds")
}

// ---- RegisterTaskDefinition / DescribeTaskDefinition ----------------------------------------

#[tokio::test]
async fn web_app_fargate_definition_registers_and_describes() {
    let server = start().await;
    let ecs = &server.ecs;
    let response = register(ecs, fixture("web-app.json"))
        .tags(sdk::Tag::builder().key("app").value("web").build())
        .send()
        .await
        .expect("web-app registers");
    let registered = response.task_definition.clone().expect("taskDefinition");
    assert_eq!(
        response.tags(),
        [sdk::Tag::builder().key("app").value("web").build()]
    );

    assert_eq!(
        registered.task_definition_arn(),
        Some(arn("web-app", 1).as_str())
    );
    assert_eq!(registered.family(), Some("web-app"));
    assert_eq!(registered.revision(), 1);
    assert_eq!(
        registered.status(),
        Some(&sdk::TaskDefinitionStatus::Active)
    );
    assert_eq!(registered.network_mode(), Some(&sdk::NetworkMode::Awsvpc));
    assert_eq!(
        registered.requires_compatibilities(),
        [sdk::Compatibility::Fargate]
    );
    assert_eq!(
        registered.compatibilities(),
        [sdk::Compatibility::Ec2, sdk::Compatibility::Fargate]
    );
    assert_eq!(registered.cpu(), Some("256"));
    assert_eq!(registered.memory(), Some("512"));
    assert_eq!(
        registered.registered_by(),
        Some(format!("arn:aws:iam::{ACCOUNT}:root").as_str())
    );
    assert!(registered.registered_at().is_some());
    assert!(registered.deregistered_at().is_none());
    assert!(registered
        .requires_attributes()
        .iter()
        .any(|a| a.name() == "ecs.capability.task-eni"));

    let containers = registered.container_definitions();
    assert_eq!(containers.len(), 2);
    let backend = &containers[0];
    assert_eq!(backend.name(), Some("backend"));
    assert_eq!(backend.essential(), Some(true));
    let mapping = &backend.port_mappings()[0];
    assert_eq!(mapping.container_port(), Some(8080));
    // awsvpc: ECS fills hostPort with the container port.
    assert_eq!(mapping.host_port(), Some(8080));
    assert_eq!(mapping.protocol(), Some(&sdk::TransportProtocol::Tcp));
    let frontend = &containers[1];
    assert_eq!(frontend.name(), Some("frontend"));
    assert_eq!(frontend.command(), ["run"]);
    assert_eq!(frontend.environment(), []);
    assert_eq!(frontend.port_mappings()[0].container_port(), Some(8000));

    // Every way of naming it describes the same definition.
    for name in ["web-app", "web-app:1", arn("web-app", 1).as_str()] {
        let described = ecs
            .describe_task_definition()
            .task_definition(name)
            .send()
            .await
            .expect("DescribeTaskDefinition succeeds");
        assert_eq!(
            described.task_definition(),
            Some(&registered),
            "described as {name}"
        );
        assert_eq!(described.tags(), [], "tags only with include TAGS");
    }
    let with_tags = ecs
        .describe_task_definition()
        .task_definition("web-app")
        .include(sdk::TaskDefinitionField::Tags)
        .send()
        .await
        .expect("DescribeTaskDefinition with tags");
    assert_eq!(
        with_tags.tags(),
        [sdk::Tag::builder().key("app").value("web").build()]
    );
}

#[tokio::test]
async fn every_container_member_round_trips() {
    let server = start().await;
    let ecs = &server.ecs;
    let request = fixture("every-container-member.json");
    let input: td::RegisterTaskDefinitionInput = serde_json::from_value(request.clone()).unwrap();
    let sent_app = sdk_container(input.container_definitions.clone().unwrap()[0].clone());
    let sent_volumes: Vec<sdk::Volume> = input
        .volumes
        .clone()
        .unwrap()
        .into_iter()
        .map(sdk_volume)
        .collect();

    // The fixture really does set every member of ContainerDefinition.
    let app_json = &request["containerDefinitions"][0];
    let every_member = serde_json::to_value(td::ContainerDefinition::default()).unwrap();
    assert_eq!(every_member, json!({}), "absent members are not serialized");
    let set: BTreeSet<&str> = app_json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let full: td::ContainerDefinition = serde_json::from_value(app_json.clone()).unwrap();
    let round: Value = serde_json::to_value(&full).unwrap();
    assert_eq!(
        &round, app_json,
        "the model keeps every member of the fixture"
    );
    assert_eq!(
        set.len(),
        42,
        "ContainerDefinition has 42 members, all set: {set:?}"
    );

    let registered = register_ok(ecs, request).await;
    let described = ecs
        .describe_task_definition()
        .task_definition("every-member:1")
        .send()
        .await
        .expect("describe")
        .task_definition
        .expect("taskDefinition");
    assert_eq!(described, registered);
    assert_eq!(described.container_definitions()[0], sent_app);
    assert_eq!(described.volumes(), sent_volumes.as_slice());
    assert_eq!(described.compatibilities(), [sdk::Compatibility::Ec2]);
    let required: BTreeSet<&str> = described
        .requires_attributes()
        .iter()
        .map(|a| a.name())
        .collect();
    for expected in [
        "com.amazonaws.ecs.capability.task-iam-role",
        "ecs.capability.efs",
        "ecs.capability.efsAuth",
        "ecs.capability.fsxWindowsFileServer",
        "com.amazonaws.ecs.capability.ecr-auth",
        "ecs.capability.execution-role-ecr-pull",
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.private-registry-authentication.secretsmanager",
        "ecs.capability.secrets.asm.environment-variables",
        "ecs.capability.secrets.ssm.environment-variables",
        "ecs.capability.env-files.s3",
        "ecs.capability.firelens.fluentbit",
        "com.amazonaws.ecs.capability.logging-driver.awsfirelens",
        "com.amazonaws.ecs.capability.privileged-container",
        "ecs.capability.container-restart-policy",
        "ecs.capability.network.container-port-range",
        "ecs.capability.gmsa",
    ] {
        assert!(
            required.contains(expected),
            "missing {expected} in {required:?}"
        );
    }
}

#[tokio::test]
async fn ecs_fills_in_its_defaults() {
    let server = start().await;
    let registered = register_ok(&server.ecs, simple("defaults")).await;
    let app = &registered.container_definitions()[0];
    assert_eq!(app.cpu(), 0);
    assert_eq!(app.essential(), Some(true));
    assert_eq!(app.port_mappings(), []);
    assert!(app.environment.is_some() && app.mount_points.is_some() && app.volumes_from.is_some());
    assert_eq!(registered.volumes(), []);
    assert_eq!(registered.placement_constraints(), []);
    assert_eq!(registered.compatibilities(), [sdk::Compatibility::Ec2]);
    assert!(
        registered.requires_compatibilities.is_none(),
        "not set, not returned"
    );
    assert!(registered.network_mode.is_none(), "not set, not returned");

    let sized = register_ok(
        &server.ecs,
        json!({"family": "sized", "networkMode": "awsvpc", "cpu": "1 vCPU", "memory": "2 GB",
               "containerDefinitions": [{"name": "app", "image": "busybox"}]}),
    )
    .await;
    assert_eq!(sized.cpu(), Some("1024"));
    assert_eq!(sized.memory(), Some("2048"));
    assert_eq!(
        sized.compatibilities(),
        [sdk::Compatibility::Ec2, sdk::Compatibility::Fargate]
    );
}

#[tokio::test]
async fn revisions_count_up_per_family_even_under_concurrency() {
    let server = start().await;
    let ecs = &server.ecs;
    for expected in 1..=3 {
        assert_eq!(register_ok(ecs, simple("web")).await.revision(), expected);
    }
    assert_eq!(register_ok(ecs, simple("web-2")).await.revision(), 1);

    // The futures borrow the client, so they are polled together in place, not spawned.
    let racers: Vec<_> = (0..8).map(|_| register_ok(ecs, simple("web"))).collect();
    let revisions: BTreeSet<i32> = join_all(racers)
        .await
        .iter()
        .map(|definition| definition.revision())
        .collect();
    assert_eq!(
        revisions,
        (4..=11).collect::<BTreeSet<_>>(),
        "distinct, gap-free revisions"
    );
    assert_eq!(arns(ecs, Some("web"), None).await.len(), 11);
}

/// A minimal `join_all` so the test needs no extra crate: polls every future until all finish.
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(outputs.iter_mut().filter_map(Option::take).collect())
        }
    })
    .await
}

#[tokio::test]
async fn invalid_definitions_are_rejected_with_ecs_messages_and_change_nothing() {
    let server = start().await;
    let ecs = &server.ecs;
    let cases = [
        (
            json!({"family": "bad family", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}),
            "ClientException",
            "Family contains invalid characters.",
        ),
        (json!({"family": "web", "containerDefinitions": []}), "ClientException", "Container list cannot be empty."),
        (
            json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "x"}]}),
            "ClientException",
            "Invalid setting for container 'a'. At least one of 'memory' or 'memoryReservation' must be specified.",
        ),
        (
            json!({"family": "web", "containerDefinitions": [{"name": "a", "memory": 64}]}),
            "ClientException",
            "Container.image should not be null or empty.",
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64}, {"name": "a", "image": "y", "memory": 64}]}),
            "ClientException",
            "Container names must be unique within a Task Definition.",
        ),
        (
            json!({"family": "web", "containerDefinitions": [{"name": "a", "image": "x", "memory": 64, "essential": false}]}),
            "ClientException",
            "Task definition must have at least one essential container.",
        ),
        (
            json!({"family": "web", "requiresCompatibilities": ["FARGATE"], "networkMode": "awsvpc", "cpu": "256", "memory": "4096",
                   "containerDefinitions": [{"name": "a", "image": "x"}]}),
            "ClientException",
            "No Fargate configuration exists for given values: 256 CPU, 4096 memory. See the Amazon ECS documentation for the valid values.",
        ),
        (
            json!({"family": "web", "requiresCompatibilities": ["FARGATE"], "cpu": "256", "memory": "512",
                   "containerDefinitions": [{"name": "a", "image": "x"}]}),
            "ClientException",
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ),
        (
            json!({"family": "web", "networkMode": "awsvpc", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "portMappings": [{"containerPort": 80, "hostPort": 8080}]}]}),
            "ClientException",
            "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "mountPoints": [{"sourceVolume": "data", "containerPath": "/data"}]}]}),
            "ClientException",
            "Unknown volume 'data'.",
        ),
        (
            json!({"family": "web", "containerDefinitions": [
                {"name": "a", "image": "x", "memory": 64, "healthCheck": {"command": ["CMD", "true"], "interval": 1}}]}),
            "ClientException",
            "Invalid 'healthCheck' setting for container 'a'. 'interval' must be between 5 and 300.",
        ),
        (
            json!({"family": "web", "tags": [{"key": "aws:reserved", "value": "x"}],
                   "containerDefinitions": [{"name": "a", "image": "x", "memory": 64}]}),
            "InvalidParameterException",
            "Tag keys cannot begin with the reserved prefix 'aws:'.",
        ),
    ];
    for (request, code, message) in cases {
        let error = register(ecs, request.clone())
            .send()
            .await
            .expect_err("rejected");
        assert_eq!(error_code(&error), code, "for {request}");
        assert_eq!(error_message(&error), message, "for {request}");
    }
    assert_eq!(
        families(ecs, None).await,
        Vec::<String>::new(),
        "nothing was written"
    );

    // A request without a family at all (the CLI's `--cli-input-json` can send that).
    let error = ecs
        .register_task_definition()
        .container_definitions(sdk_container(td::ContainerDefinition {
            name: Some("a".into()),
            image: Some("x".into()),
            memory: Some(64),
            ..Default::default()
        }))
        .send()
        .await
        .expect_err("no family");
    assert_eq!(error_code(&error), "ClientException");
    assert_eq!(error_message(&error), "Family can not be blank.");
}

#[tokio::test]
async fn describe_resolves_references_like_ecs() {
    let server = start().await;
    let ecs = &server.ecs;
    for _ in 0..3 {
        register_ok(ecs, simple("web")).await;
    }
    let latest = |name: &'static str| async move {
        ecs.describe_task_definition()
            .task_definition(name)
            .send()
            .await
    };
    assert_eq!(
        latest("web")
            .await
            .unwrap()
            .task_definition()
            .unwrap()
            .revision(),
        3
    );

    // The latest ACTIVE revision wins over a newer INACTIVE one.
    ecs.deregister_task_definition()
        .task_definition("web:3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        latest("web")
            .await
            .unwrap()
            .task_definition()
            .unwrap()
            .revision(),
        2
    );
    // An INACTIVE revision is still describable by revision.
    let inactive = latest("web:3").await.unwrap();
    assert_eq!(
        inactive.task_definition().unwrap().status(),
        Some(&sdk::TaskDefinitionStatus::Inactive)
    );

    for missing in [
        "nope",
        "web:9",
        "arn:aws:ecs:us-east-1:123456789012:task-definition/nope:1",
    ] {
        let error = latest(missing).await.expect_err("unknown");
        assert_eq!(error_code(&error), "ClientException", "{missing}");
        assert_eq!(
            error_message(&error),
            "Unable to describe task definition.",
            "{missing}"
        );
    }
    let error = latest("web:latest").await.expect_err("not a number");
    assert_eq!(error_code(&error), "ClientException");
    assert_eq!(
        error_message(&error),
        "Invalid revision number. Number: latest"
    );
}

// ---- ListTaskDefinitions / ListTaskDefinitionFamilies -----------------------------------

#[tokio::test]
async fn list_task_definitions_filters_sorts_and_paginates() {
    let server = start().await;
    let ecs = &server.ecs;
    for family in ["web", "web", "web", "web-2", "api", "web"] {
        register_ok(ecs, simple(family)).await;
    }
    ecs.deregister_task_definition()
        .task_definition("web:2")
        .send()
        .await
        .unwrap();

    let all_active = vec![
        arn("api", 1),
        arn("web", 1),
        arn("web", 3),
        arn("web", 4),
        arn("web-2", 1),
    ];
    assert_eq!(arns(ecs, None, None).await, all_active);
    // familyPrefix is an exact family here: web does not match web-2.
    assert_eq!(
        arns(ecs, Some("web"), None).await,
        vec![arn("web", 1), arn("web", 3), arn("web", 4)]
    );
    assert_eq!(arns(ecs, Some("we"), None).await, Vec::<String>::new());
    assert_eq!(
        arns(ecs, None, Some(sdk::TaskDefinitionStatus::Inactive)).await,
        vec![arn("web", 2)]
    );
    assert_eq!(
        arns(ecs, None, Some(sdk::TaskDefinitionStatus::DeleteInProgress)).await,
        Vec::<String>::new()
    );

    // Pages of two through the SDK paginator, both orders.
    let ascending: Vec<String> = ecs
        .list_task_definitions()
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(ascending, all_active);
    let pages: Vec<_> = ecs
        .list_task_definitions()
        .max_results(2)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[0].task_definition_arns().len(), 2);
    assert!(pages[2].next_token().is_none());

    let descending: Vec<String> = ecs
        .list_task_definitions()
        .sort(sdk::SortOrder::Desc)
        .max_results(2)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    let mut reversed = all_active.clone();
    reversed.reverse();
    assert_eq!(descending, reversed);

    let error = ecs
        .list_task_definitions()
        .max_results(101)
        .send()
        .await
        .expect_err("too many");
    assert_eq!(error_code(&error), "InvalidParameterException");
    assert_eq!(
        error_message(&error),
        "maxResults must be between 1 and 100."
    );

    // A token from one listing does not resume another.
    let first = ecs
        .list_task_definitions()
        .max_results(1)
        .send()
        .await
        .unwrap();
    let token = first.next_token().expect("more pages").to_string();
    let error = ecs
        .list_task_definitions()
        .sort(sdk::SortOrder::Desc)
        .next_token(token)
        .send()
        .await
        .expect_err("token of another listing");
    assert_eq!(error_code(&error), "InvalidParameterException");
}

#[tokio::test]
async fn list_task_definition_families_by_prefix_and_status() {
    let server = start().await;
    let ecs = &server.ecs;
    for family in ["web", "web-2", "webapp", "api", "api"] {
        register_ok(ecs, simple(family)).await;
    }
    ecs.deregister_task_definition()
        .task_definition("web-2:1")
        .send()
        .await
        .unwrap();
    ecs.deregister_task_definition()
        .task_definition("api:1")
        .send()
        .await
        .unwrap();

    // Default: every family, ACTIVE or not.
    assert_eq!(families(ecs, None).await, ["api", "web", "web-2", "webapp"]);
    assert_eq!(
        families(ecs, Some(sdk::TaskDefinitionFamilyStatus::All)).await,
        ["api", "web", "web-2", "webapp"]
    );
    assert_eq!(
        families(ecs, Some(sdk::TaskDefinitionFamilyStatus::Active)).await,
        ["api", "web", "webapp"]
    );
    assert_eq!(
        families(ecs, Some(sdk::TaskDefinitionFamilyStatus::Inactive)).await,
        ["web-2"]
    );

    // familyPrefix is a real prefix here.
    let prefixed: Vec<String> = ecs
        .list_task_definition_families()
        .family_prefix("web")
        .max_results(1)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .unwrap();
    assert_eq!(prefixed, ["web", "web-2", "webapp"]);
    let error = ecs
        .list_task_definition_families()
        .max_results(0)
        .send()
        .await
        .expect_err("zero");
    assert_eq!(error_code(&error), "InvalidParameterException");
}

// ---- DeregisterTaskDefinition / DeleteTaskDefinitions -----------------------------------

#[tokio::test]
async fn deregister_marks_inactive_and_needs_a_revision() {
    let server = start().await;
    let ecs = &server.ecs;
    register_ok(ecs, simple("web")).await;

    let error = ecs
        .deregister_task_definition()
        .task_definition("web")
        .send()
        .await
        .expect_err("bare family");
    assert_eq!(error_code(&error), "ClientException");
    assert_eq!(
        error_message(&error),
        "You must specify a revision (family:revision) or a full task definition ARN."
    );
    let active = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        active.task_definition().unwrap().status(),
        Some(&sdk::TaskDefinitionStatus::Active)
    );

    let deregistered = ecs
        .deregister_task_definition()
        .task_definition(arn("web", 1))
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    assert_eq!(
        deregistered.status(),
        Some(&sdk::TaskDefinitionStatus::Inactive)
    );
    let at = *deregistered.deregistered_at().expect("deregisteredAt");

    // Again: allowed, and nothing changes.
    let again = ecs
        .deregister_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap()
        .task_definition
        .unwrap();
    assert_eq!(again.deregistered_at(), Some(&at));

    let error = ecs
        .describe_task_definition()
        .task_definition("web")
        .send()
        .await
        .expect_err("no ACTIVE revision");
    assert_eq!(error_message(&error), "Unable to describe task definition.");
    let error = ecs
        .deregister_task_definition()
        .task_definition("web:7")
        .send()
        .await
        .expect_err("missing");
    assert_eq!(error_code(&error), "ClientException");
    assert_eq!(
        error_message(&error),
        "The specified task definition does not exist."
    );
}

#[tokio::test]
async fn delete_removes_inactive_revisions_and_reports_the_rest_as_failures() {
    let server = start().await;
    let ecs = &server.ecs;
    register(ecs, simple("web"))
        .tags(sdk::Tag::builder().key("team").value("web").build())
        .send()
        .await
        .unwrap();
    register_ok(ecs, simple("web")).await;
    ecs.deregister_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();

    let response = ecs
        .delete_task_definitions()
        .task_definitions("web:1")
        .task_definitions(arn("web", 2))
        .task_definitions("web:9")
        .send()
        .await
        .expect("DeleteTaskDefinitions succeeds");
    let deleted = response.task_definitions();
    assert_eq!(deleted.len(), 1);
    assert_eq!(
        deleted[0].task_definition_arn(),
        Some(arn("web", 1).as_str())
    );
    assert_eq!(
        deleted[0].status(),
        Some(&sdk::TaskDefinitionStatus::DeleteInProgress)
    );
    assert!(deleted[0].delete_requested_at().is_some());
    let failures: Vec<(Option<&str>, Option<&str>)> = response
        .failures()
        .iter()
        .map(|f| (f.arn(), f.reason()))
        .collect();
    assert_eq!(
        failures,
        vec![
            (Some(arn("web", 2).as_str()), Some("TASK_DEFINITION_ACTIVE")),
            (Some(arn("web", 9).as_str()), Some("MISSING")),
        ]
    );

    // Gone: not describable, not listed, tags removed; the active revision is untouched.
    let error = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .expect_err("deleted");
    assert_eq!(error_message(&error), "Unable to describe task definition.");
    assert_eq!(
        arns(ecs, None, Some(sdk::TaskDefinitionStatus::Inactive)).await,
        Vec::<String>::new()
    );
    let error = ecs
        .list_tags_for_resource()
        .resource_arn(arn("web", 1))
        .send()
        .await
        .expect_err("no resource");
    assert_eq!(error_code(&error), "ResourceNotFoundException");
    assert_eq!(arns(ecs, Some("web"), None).await, vec![arn("web", 2)]);

    // Revision numbers are never reused.
    assert_eq!(register_ok(ecs, simple("web")).await.revision(), 3);

    // Deleting every revision of a family removes it from the family list.
    ecs.deregister_task_definition()
        .task_definition("web:2")
        .send()
        .await
        .unwrap();
    ecs.deregister_task_definition()
        .task_definition("web:3")
        .send()
        .await
        .unwrap();
    ecs.delete_task_definitions()
        .task_definitions("web:2")
        .task_definitions("web:3")
        .send()
        .await
        .unwrap();
    assert_eq!(families(ecs, None).await, Vec::<String>::new());
    assert_eq!(register_ok(ecs, simple("web")).await.revision(), 4);
}

#[tokio::test]
async fn delete_validates_the_whole_request_first() {
    let server = start().await;
    let ecs = &server.ecs;
    register_ok(ecs, simple("web")).await;
    ecs.deregister_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .unwrap();

    // A bare family anywhere in the list fails the call and deletes nothing.
    let error = ecs
        .delete_task_definitions()
        .task_definitions("web:1")
        .task_definitions("web")
        .send()
        .await
        .expect_err("bare family");
    assert_eq!(error_code(&error), "ClientException");
    assert!(ecs
        .describe_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .is_ok());

    let mut too_many = ecs.delete_task_definitions();
    for revision in 1..=11 {
        too_many = too_many.task_definitions(format!("web:{revision}"));
    }
    let error = too_many.send().await.expect_err("more than 10");
    assert_eq!(error_code(&error), "InvalidParameterException");
    assert!(ecs
        .describe_task_definition()
        .task_definition("web:1")
        .send()
        .await
        .is_ok());
}

#[tokio::test]
async fn task_definition_tags_are_managed_by_the_tagging_api() {
    let server = start().await;
    let ecs = &server.ecs;
    register_ok(ecs, simple("web")).await;
    ecs.tag_resource()
        .resource_arn(arn("web", 1))
        .tags(sdk::Tag::builder().key("env").value("prod").build())
        .send()
        .await
        .expect("TagResource on a task definition");
    let described = ecs
        .describe_task_definition()
        .task_definition("web:1")
        .include(sdk::TaskDefinitionField::Tags)
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.tags(),
        [sdk::Tag::builder().key("env").value("prod").build()]
    );
}

#[tokio::test]
async fn placement_constraints_are_checked_at_registration() {
    let server = start().await;
    let with = |constraints: Value| {
        let mut request = simple("placed");
        request["placementConstraints"] = constraints;
        request
    };
    let ok = register_ok(
        &server.ecs,
        with(json!([{"type": "memberOf", "expression": "attribute:ecs.instance-type =~ t2.*"}])),
    )
    .await;
    assert_eq!(ok.placement_constraints().len(), 1);

    let error = register(&server.ecs, with(json!([{"type": "distinctInstance"}])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error), "ClientException");
    assert_eq!(
        error_message(&error),
        "constraint.type 'distinctInstance' is not supported."
    );

    let error = register(
        &server.ecs,
        with(json!([{"type": "memberOf", "expression": "attribute:stack =="}])),
    )
    .send()
    .await
    .unwrap_err();
    assert_eq!(error_code(&error), "InvalidParameterException");

    let error = register(&server.ecs, with(json!([{"type": "memberOf"}])))
        .send()
        .await
        .unwrap_err();
    assert_eq!(error_code(&error), "InvalidParameterException");
    // Nothing refused was registered: only the first revision exists.
    let listed = server
        .ecs
        .list_task_definitions()
        .family_prefix("placed")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.task_definition_arns().len(), 1);
}
