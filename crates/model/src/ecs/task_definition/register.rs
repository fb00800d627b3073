//! What ECS does to a definition it accepts: the defaults it fills in, task-level cpu/memory
//! normalized to integers, the computed `compatibilities` and `requiresAttributes`.
//!
//! Defaults, as DescribeTaskDefinition shows them for definitions registered without them:
//! containers get `cpu: 0`, `essential: true` and empty `portMappings`, `environment`,
//! `mountPoints`, `volumesFrom` and `systemControls`; port mappings get `protocol: tcp` and, in
//! awsvpc and host mode, `hostPort` = `containerPort`; the task gets empty `volumes` and
//! `placementConstraints`. `requiresCompatibilities` and `networkMode` stay absent when unset.
//!
//! `compatibilities`: `EC2` always (a definition that passes validation is valid for EC2);
//! `FARGATE` when the definition also passes every Fargate check, whether or not FARGATE was
//! required; `EXTERNAL` and `MANAGED_INSTANCES` when required.
//!
//! `requiresAttributes` is a best-effort reproduction of the container-instance attributes ECS
//! derives from the features a definition uses (the names the ECS agent advertises):
//!
//! | feature | attributes |
//! | --- | --- |
//! | `taskRoleArn` | `com.amazonaws.ecs.capability.task-iam-role` (+ `…-network-host` in host mode) |
//! | networkMode awsvpc | `ecs.capability.task-eni` |
//! | pidMode / ipcMode | `ecs.capability.pid-ipc-namespace-sharing` |
//! | proxyConfiguration | `ecs.capability.aws-appmesh` |
//! | inferenceAccelerators | `ecs.capability.task-eia` |
//! | efs volume (with authorizationConfig) | `ecs.capability.efs` (+ `ecs.capability.efsAuth`) |
//! | fsx volume | `ecs.capability.fsxWindowsFileServer` |
//! | docker volume with a non-local driver | `ecs.capability.docker-plugin.<driver>` |
//! | enableFaultInjection | `ecs.capability.fault-injection` |
//! | ECR image (with execution role) | `com.amazonaws.ecs.capability.ecr-auth` (+ `ecs.capability.execution-role-ecr-pull`) |
//! | logConfiguration | `…docker-remote-api.1.18`, `…logging-driver.<driver>`, options: `…1.19`, awslogs with execution role: `ecs.capability.execution-role-awslogs` |
//! | log secretOptions | `ecs.capability.secrets.{ssm,asm}.bootstrap.log-driver` |
//! | dockerLabels, ulimits | `…docker-remote-api.1.18` |
//! | memoryReservation | `…docker-remote-api.1.21` |
//! | healthCheck | `…docker-remote-api.1.24`, `ecs.capability.container-health-check` |
//! | linuxParameters.initProcessEnabled | `…docker-remote-api.1.25` |
//! | secrets | `ecs.capability.secrets.{ssm,asm}.environment-variables` |
//! | dependsOn, startTimeout, stopTimeout | `ecs.capability.container-ordering` |
//! | repositoryCredentials | `ecs.capability.private-registry-authentication.secretsmanager` |
//! | environmentFiles | `ecs.capability.env-files.s3` |
//! | firelensConfiguration | `ecs.capability.firelens.<type>`, awsfirelens driver: `…logging-driver.awsfirelens` |
//! | privileged | `com.amazonaws.ecs.capability.privileged-container` |
//! | dockerSecurityOptions label:/apparmor: | `com.amazonaws.ecs.capability.selinux` / `…apparmor` |
//! | restartPolicy enabled | `ecs.capability.container-restart-policy` |
//! | containerPortRange | `ecs.capability.network.container-port-range` |
//! | credentialSpecs | `ecs.capability.gmsa` (`…gmsa-domainless` for domainless specs) |

use super::validate::fargate_problems;
use super::{ContainerDefinition, RegisterTaskDefinitionInput, TaskDefinition, STATUS_ACTIVE};
use crate::ecs::attribute::Attribute;

/// Task cpu in CPU units from `1024`, `1 vCPU`, `0.25 vcpu`, …; `None` when it is neither.
pub fn parse_task_cpu(text: &str) -> Option<i64> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    match lower.strip_suffix("vcpu") {
        Some(number) => scaled(number, 1024),
        None => text.parse::<i64>().ok().filter(|n| *n > 0),
    }
}

/// Task memory in MiB from `2048`, `2 GB`, `0.5GB`, …; `None` when it is neither.
pub fn parse_task_memory(text: &str) -> Option<i64> {
    let text = text.trim();
    let lower = text.to_ascii_lowercase();
    match lower.strip_suffix("gb") {
        Some(number) => scaled(number, 1024),
        None => text.parse::<i64>().ok().filter(|n| *n > 0),
    }
}

/// `number × unit` when that is a whole positive amount (`0.25 vCPU` is 256 units, `0.3 vCPU`
/// is not a whole number of units and is rejected).
fn scaled(number: &str, unit: i64) -> Option<i64> {
    let value: f64 = number.trim().parse().ok()?;
    let amount = value * unit as f64;
    if !amount.is_finite() || amount <= 0.0 || amount.fract() != 0.0 || amount > i64::MAX as f64 {
        return None;
    }
    Some(amount as i64)
}

/// The Fargate task size table: the memory sizes (MiB) allowed for each cpu size.
pub fn fargate_size_is_valid(cpu: i64, memory: i64) -> bool {
    let stepped = |low: i64, high: i64, step: i64| {
        (low..=high).contains(&memory) && (memory - low) % step == 0
    };
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => stepped(1024, 4096, 1024),
        1024 => stepped(2048, 8192, 1024),
        2048 => stepped(4096, 16384, 1024),
        4096 => stepped(8192, 30720, 1024),
        8192 => stepped(16384, 61440, 4096),
        16384 => stepped(32768, 122880, 8192),
        _ => false,
    }
}

/// The definition ECS stores and returns for a validated input (tags are not part of it; they
/// are stored beside it). The caller resolves the ARN, revision, time and principal.
pub fn build(
    input: &RegisterTaskDefinitionInput,
    task_definition_arn: String,
    revision: i32,
    registered_at: f64,
    registered_by: String,
) -> TaskDefinition {
    let network_mode = input.network_mode.as_deref();
    let containers = input
        .container_definitions
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|container| with_container_defaults(container, network_mode))
        .collect();
    let mut definition = TaskDefinition {
        task_definition_arn: Some(task_definition_arn),
        container_definitions: Some(containers),
        family: input.family.clone(),
        task_role_arn: input.task_role_arn.clone(),
        execution_role_arn: input.execution_role_arn.clone(),
        network_mode: input.network_mode.clone(),
        revision: Some(revision),
        volumes: Some(input.volumes.clone().unwrap_or_default()),
        status: Some(STATUS_ACTIVE.to_string()),
        requires_attributes: None,
        placement_constraints: Some(input.placement_constraints.clone().unwrap_or_default()),
        compatibilities: Some(compatibilities(input)),
        runtime_platform: input.runtime_platform.clone(),
        requires_compatibilities: input.requires_compatibilities.clone(),
        // ECS stores the integer forms: "1 vCPU" comes back as "1024".
        cpu: input
            .cpu
            .as_deref()
            .map(|cpu| parse_task_cpu(cpu).map_or_else(|| cpu.to_string(), |n| n.to_string())),
        memory: input.memory.as_deref().map(|memory| {
            parse_task_memory(memory).map_or_else(|| memory.to_string(), |n| n.to_string())
        }),
        inference_accelerators: input.inference_accelerators.clone(),
        pid_mode: input.pid_mode.clone(),
        ipc_mode: input.ipc_mode.clone(),
        proxy_configuration: input.proxy_configuration.clone(),
        registered_at: Some(registered_at),
        deregistered_at: None,
        delete_requested_at: None,
        registered_by: Some(registered_by),
        ephemeral_storage: input.ephemeral_storage.clone(),
        enable_fault_injection: input.enable_fault_injection,
        trusted_execution_configuration: input.trusted_execution_configuration.clone(),
    };
    let attributes = requires_attributes(&definition);
    if !attributes.is_empty() {
        definition.requires_attributes = Some(attributes);
    }
    definition
}

fn with_container_defaults(
    mut container: ContainerDefinition,
    network_mode: Option<&str>,
) -> ContainerDefinition {
    container.cpu.get_or_insert(0);
    container.essential.get_or_insert(true);
    let host_port_is_container_port = matches!(network_mode, Some("awsvpc" | "host"));
    let mappings = container.port_mappings.get_or_insert_with(Vec::new);
    for mapping in mappings.iter_mut() {
        mapping.protocol.get_or_insert_with(|| "tcp".to_string());
        if host_port_is_container_port && mapping.host_port.is_none() {
            mapping.host_port = mapping.container_port;
        }
    }
    container.environment.get_or_insert_with(Vec::new);
    container.mount_points.get_or_insert_with(Vec::new);
    container.volumes_from.get_or_insert_with(Vec::new);
    container.system_controls.get_or_insert_with(Vec::new);
    container
}

/// The launch types the definition was validated against (see the module docs).
pub fn compatibilities(input: &RegisterTaskDefinitionInput) -> Vec<String> {
    let required = input
        .requires_compatibilities
        .as_deref()
        .unwrap_or_default();
    let mut result = vec!["EC2".to_string()];
    if fargate_problems(input).is_empty() {
        result.push("FARGATE".to_string());
    }
    for extra in ["EXTERNAL", "MANAGED_INSTANCES"] {
        if required.iter().any(|r| r == extra) {
            result.push(extra.to_string());
        }
    }
    result
}

const LEGACY: &str = "com.amazonaws.ecs.capability.";
const CAPABILITY: &str = "ecs.capability.";

/// The attributes a container instance needs to run this definition (see the module docs).
pub fn requires_attributes(definition: &TaskDefinition) -> Vec<Attribute> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !names.contains(&name) {
            names.push(name);
        }
    };
    let has_execution_role = definition.execution_role_arn.is_some();
    let network_mode = definition.network_mode.as_deref();

    if definition.task_role_arn.is_some() {
        add(format!("{LEGACY}task-iam-role"));
        if network_mode == Some("host") {
            add(format!("{LEGACY}task-iam-role-network-host"));
        }
    }
    if network_mode == Some("awsvpc") {
        add(format!("{CAPABILITY}task-eni"));
    }
    if definition.pid_mode.is_some() || definition.ipc_mode.is_some() {
        add(format!("{CAPABILITY}pid-ipc-namespace-sharing"));
    }
    if definition.proxy_configuration.is_some() {
        add(format!("{CAPABILITY}aws-appmesh"));
    }
    if definition
        .inference_accelerators
        .as_ref()
        .is_some_and(|a| !a.is_empty())
    {
        add(format!("{CAPABILITY}task-eia"));
    }
    for volume in definition.volumes.iter().flatten() {
        if let Some(efs) = &volume.efs_volume_configuration {
            add(format!("{CAPABILITY}efs"));
            if efs.authorization_config.is_some() {
                add(format!("{CAPABILITY}efsAuth"));
            }
        }
        if volume
            .fsx_windows_file_server_volume_configuration
            .is_some()
        {
            add(format!("{CAPABILITY}fsxWindowsFileServer"));
        }
        if let Some(driver) = volume
            .docker_volume_configuration
            .as_ref()
            .and_then(|docker| docker.driver.as_deref())
            .filter(|driver| *driver != "local")
        {
            add(format!("{CAPABILITY}docker-plugin.{driver}"));
        }
    }
    if definition.enable_fault_injection == Some(true) {
        add(format!("{CAPABILITY}fault-injection"));
    }

    for container in definition.container_definitions.iter().flatten() {
        if container
            .image
            .as_deref()
            .is_some_and(|image| image.contains(".dkr.ecr."))
        {
            add(format!("{LEGACY}ecr-auth"));
            if has_execution_role {
                add(format!("{CAPABILITY}execution-role-ecr-pull"));
            }
        }
        if let Some(log) = &container.log_configuration {
            add(format!("{LEGACY}logging-driver.{}", log.log_driver));
            add(format!("{LEGACY}docker-remote-api.1.18"));
            if log.options.as_ref().is_some_and(|o| !o.is_empty()) {
                add(format!("{LEGACY}docker-remote-api.1.19"));
            }
            if log.log_driver == "awslogs" && has_execution_role {
                add(format!("{CAPABILITY}execution-role-awslogs"));
            }
            for secret in log.secret_options.iter().flatten() {
                add(format!(
                    "{CAPABILITY}secrets.{}.bootstrap.log-driver",
                    secret_store(&secret.value_from)
                ));
            }
        }
        if container.docker_labels.is_some() || container.ulimits.is_some() {
            add(format!("{LEGACY}docker-remote-api.1.18"));
        }
        if container.memory_reservation.is_some() {
            add(format!("{LEGACY}docker-remote-api.1.21"));
        }
        if container.health_check.is_some() {
            add(format!("{LEGACY}docker-remote-api.1.24"));
            add(format!("{CAPABILITY}container-health-check"));
        }
        if container
            .linux_parameters
            .as_ref()
            .and_then(|l| l.init_process_enabled)
            .is_some()
        {
            add(format!("{LEGACY}docker-remote-api.1.25"));
        }
        for secret in container.secrets.iter().flatten() {
            add(format!(
                "{CAPABILITY}secrets.{}.environment-variables",
                secret_store(&secret.value_from)
            ));
        }
        if container.depends_on.as_ref().is_some_and(|d| !d.is_empty())
            || container.start_timeout.is_some()
            || container.stop_timeout.is_some()
        {
            add(format!("{CAPABILITY}container-ordering"));
        }
        if container.repository_credentials.is_some() {
            add(format!(
                "{CAPABILITY}private-registry-authentication.secretsmanager"
            ));
        }
        if container
            .environment_files
            .as_ref()
            .is_some_and(|f| !f.is_empty())
        {
            add(format!("{CAPABILITY}env-files.s3"));
        }
        if let Some(firelens) = &container.firelens_configuration {
            add(format!("{CAPABILITY}firelens.{}", firelens.r#type));
        }
        if container.privileged == Some(true) {
            add(format!("{LEGACY}privileged-container"));
        }
        for option in container.docker_security_options.iter().flatten() {
            if option.starts_with("label:") {
                add(format!("{LEGACY}selinux"));
            } else if option.starts_with("apparmor:") {
                add(format!("{LEGACY}apparmor"));
            }
        }
        if container.restart_policy.as_ref().is_some_and(|p| p.enabled) {
            add(format!("{CAPABILITY}container-restart-policy"));
        }
        if container
            .port_mappings
            .iter()
            .flatten()
            .any(|mapping| mapping.container_port_range.is_some())
        {
            add(format!("{CAPABILITY}network.container-port-range"));
        }
        for spec in container.credential_specs.iter().flatten() {
            if spec.starts_with("credentialspecdomainless:") {
                add(format!("{CAPABILITY}gmsa-domainless"));
            } else {
                add(format!("{CAPABILITY}gmsa"));
            }
        }
    }
    names.into_iter().map(name_only).collect()
}

/// Secrets come from Secrets Manager when `valueFrom` is a secretsmanager ARN, else from SSM
/// Parameter Store (a parameter ARN or name).
fn secret_store(value_from: &str) -> &'static str {
    if value_from.contains(":secretsmanager:") {
        "asm"
    } else {
        "ssm"
    }
}

fn name_only(name: String) -> Attribute {
    Attribute {
        name,
        value: None,
        target_type: None,
        target_id: None,
    }
}
