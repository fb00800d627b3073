//! Every check RegisterTaskDefinition makes, as a pure function that returns all problems in
//! the order ECS would meet them (ECS reports only the first, so order matters).
//!
//! Messages are ECS's own where they are known from AWS responses; the others follow ECS's
//! phrasing patterns ("Invalid 'x' setting for container 'y'.") and are marked `guessed` in the
//! comments next to them.

use std::collections::{BTreeMap, BTreeSet};

use super::register::{fargate_size_is_valid, parse_task_cpu, parse_task_memory};
use super::{ContainerDefinition, PortMapping, RegisterTaskDefinitionInput};
use crate::ecs::tag::merge_tags;
use crate::validation::{Problem, Problems};

/// AWS's limit on a task definition's JSON size.
pub const MAX_TASK_DEFINITION_BYTES: usize = 65536;
/// AWS's limit on containers per task definition.
pub const MAX_CONTAINERS: usize = 10;
/// Docker refuses containers with a memory limit below 6 MiB (20.10+), so ECS does too.
pub const MIN_CONTAINER_MEMORY_MIB: i32 = 6;
const NETWORK_MODES: &[&str] = &["bridge", "host", "awsvpc", "none"];
const PID_MODES: &[&str] = &["host", "task"];
const IPC_MODES: &[&str] = &["host", "task", "none"];
const COMPATIBILITIES: &[&str] = &["EC2", "FARGATE", "EXTERNAL", "MANAGED_INSTANCES"];
const PROTOCOLS: &[&str] = &["tcp", "udp"];
const APP_PROTOCOLS: &[&str] = &["http", "http2", "grpc"];
const CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];
const LOG_DRIVERS: &[&str] = &[
    "json-file",
    "syslog",
    "journald",
    "gelf",
    "fluentd",
    "awslogs",
    "splunk",
    "awsfirelens",
];
const ULIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];
const CPU_ARCHITECTURES: &[&str] = &["X86_64", "ARM64"];
const OS_FAMILIES: &[&str] = &[
    "WINDOWS_SERVER_2019_FULL",
    "WINDOWS_SERVER_2019_CORE",
    "WINDOWS_SERVER_2016_FULL",
    "WINDOWS_SERVER_2004_CORE",
    "WINDOWS_SERVER_2022_CORE",
    "WINDOWS_SERVER_2022_FULL",
    "WINDOWS_SERVER_2025_CORE",
    "WINDOWS_SERVER_2025_FULL",
    "WINDOWS_SERVER_20H2_CORE",
    "LINUX",
];

/// ECS names (families, containers, volumes): up to 255 letters, numbers, hyphens and
/// underscores.
fn is_ecs_name(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn client(problems: &mut Problems, message: impl Into<String>) {
    problems.push(Problem::client(message));
}

/// An enumerated member with a value the model does not list.
fn bad_enum(problems: &mut Problems, member: &str, value: &str, allowed: &[&str]) {
    // guessed: ECS's wording for out-of-enum values is not known.
    problems.push(Problem::invalid_parameter(format!(
        "Invalid value '{value}' for {member}. Valid values are: {}.",
        allowed.join(", ")
    )));
}

fn requires(input: &RegisterTaskDefinitionInput, compatibility: &str) -> bool {
    input
        .requires_compatibilities
        .iter()
        .flatten()
        .any(|c| c == compatibility)
}

/// EC2 rules apply when EC2 is required, and when nothing is (EC2 is the default launch type).
fn requires_ec2(input: &RegisterTaskDefinitionInput) -> bool {
    input
        .requires_compatibilities
        .as_ref()
        .is_none_or(|c| c.is_empty())
        || requires(input, "EC2")
}

/// Check a RegisterTaskDefinition request. `Err` lists every problem found.
pub fn validate(input: &RegisterTaskDefinitionInput) -> Result<(), Problems> {
    let mut problems = Problems::default();

    let size = serde_json::to_vec(input)
        .map(|bytes| bytes.len())
        .unwrap_or(0);
    if size > MAX_TASK_DEFINITION_BYTES {
        client(
            &mut problems,
            format!("Actual length: '{size}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes."),
        );
    }

    validate_family(input.family.as_deref(), &mut problems);

    let containers = input.container_definitions.as_deref().unwrap_or_default();
    if containers.is_empty() {
        client(&mut problems, "Container list cannot be empty.");
    } else if containers.len() > MAX_CONTAINERS {
        client(&mut problems, "Too many containers.");
    }

    validate_task_settings(input, &mut problems);
    let task_memory = input.memory.as_deref().and_then(parse_task_memory);

    let mut seen = BTreeSet::new();
    if containers
        .iter()
        .filter_map(|c| c.name.as_deref())
        .any(|name| !seen.insert(name))
    {
        client(
            &mut problems,
            "Container names must be unique within a Task Definition.",
        );
    }

    let volume_names = validate_volumes(input, &mut problems);
    for container in containers {
        validate_container(input, container, &volume_names, task_memory, &mut problems);
    }
    if !containers.is_empty() && !containers.iter().any(|c| c.essential != Some(false)) {
        // guessed wording.
        client(
            &mut problems,
            "Task definition must have at least one essential container.",
        );
    }
    validate_port_conflicts(input, &mut problems);
    validate_dependencies(containers, &mut problems);
    validate_task_totals(input, task_memory, &mut problems);
    validate_task_features(input, &mut problems);

    if requires(input, "FARGATE") {
        for problem in fargate_problems(input) {
            problems.push(problem);
        }
    }

    if let Err(problem) = merge_tags(&[], input.tags.as_deref().unwrap_or_default()) {
        problems.push(problem);
    }
    problems.into_result()
}

fn validate_family(family: Option<&str>, problems: &mut Problems) {
    match family {
        None | Some("") => client(problems, "Family can not be blank."),
        Some(family) if family.chars().count() > 255 => {
            // guessed: the pattern of ECS's "Container.image should be 255 characters or less".
            client(problems, "Family should be 255 characters or less.")
        }
        Some(family) if !is_ecs_name(family) => {
            client(problems, "Family contains invalid characters.")
        }
        Some(_) => {}
    }
}

/// Task-level enumerations and sizes.
fn validate_task_settings(input: &RegisterTaskDefinitionInput, problems: &mut Problems) {
    if let Some(mode) = input.network_mode.as_deref() {
        if !NETWORK_MODES.contains(&mode) {
            bad_enum(problems, "networkMode", mode, NETWORK_MODES);
        }
    }
    if let Some(mode) = input.pid_mode.as_deref() {
        if !PID_MODES.contains(&mode) {
            bad_enum(problems, "pidMode", mode, PID_MODES);
        }
    }
    if let Some(mode) = input.ipc_mode.as_deref() {
        if !IPC_MODES.contains(&mode) {
            bad_enum(problems, "ipcMode", mode, IPC_MODES);
        }
    }
    for compatibility in input.requires_compatibilities.iter().flatten() {
        if !COMPATIBILITIES.contains(&compatibility.as_str()) {
            bad_enum(
                problems,
                "requiresCompatibilities",
                compatibility,
                COMPATIBILITIES,
            );
        }
    }
    if let Some(platform) = &input.runtime_platform {
        if let Some(arch) = platform.cpu_architecture.as_deref() {
            if !CPU_ARCHITECTURES.contains(&arch) {
                bad_enum(
                    problems,
                    "runtimePlatform.cpuArchitecture",
                    arch,
                    CPU_ARCHITECTURES,
                );
            }
        }
        if let Some(family) = platform.operating_system_family.as_deref() {
            if !OS_FAMILIES.contains(&family) {
                bad_enum(
                    problems,
                    "runtimePlatform.operatingSystemFamily",
                    family,
                    OS_FAMILIES,
                );
            }
        }
    }
    if let Some(cpu) = input.cpu.as_deref() {
        // AWS: task cpu is 128 (0.125 vCPU) to 196608 (192 vCPU) units.
        if !parse_task_cpu(cpu).is_some_and(|units| (128..=196_608).contains(&units)) {
            client(problems, "Invalid 'cpu' setting for task.");
        }
    }
    if let Some(memory) = input.memory.as_deref() {
        if parse_task_memory(memory).is_none() {
            // guessed: the memory twin of ECS's "Invalid 'cpu' setting for task.".
            client(problems, "Invalid 'memory' setting for task.");
        }
    }
    if let Some(storage) = &input.ephemeral_storage {
        if !(21..=200).contains(&storage.size_in_gib) {
            // guessed wording; the 21–200 GiB range is AWS's.
            client(
                problems,
                "Invalid 'ephemeralStorage' setting for task. sizeInGiB must be between 21 and 200.",
            );
        }
    }
    // placementConstraints are checked by the control plane with the scheduler that will
    // evaluate them (the cluster query language and AWS's messages live there).
}

/// Volume names must be valid and unique; returns the names for mount point checks.
fn validate_volumes(
    input: &RegisterTaskDefinitionInput,
    problems: &mut Problems,
) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for volume in input.volumes.iter().flatten() {
        match volume.name.as_deref() {
            None | Some("") => {
                // guessed: the pattern of "Container.name should not be null or empty.".
                client(problems, "Volume.name should not be null or empty.");
            }
            Some(name) if name.chars().count() > 255 || !is_ecs_name(name) => {
                // guessed: the pattern of "Container.name contains invalid characters.".
                client(problems, "Volume.name contains invalid characters.");
            }
            Some(name) => {
                if !names.insert(name.to_string()) {
                    // guessed: the pattern of ECS's unique container names message.
                    client(
                        problems,
                        "Volume names must be unique within a Task Definition.",
                    );
                }
            }
        }
        let kinds = [
            volume.host.is_some(),
            volume.docker_volume_configuration.is_some(),
            volume.efs_volume_configuration.is_some(),
            volume.s3files_volume_configuration.is_some(),
            volume
                .fsx_windows_file_server_volume_configuration
                .is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() > 1 {
            // guessed wording.
            client(
                problems,
                format!(
                    "Volume '{}' can specify only one of host, dockerVolumeConfiguration, efsVolumeConfiguration, s3filesVolumeConfiguration and fsxWindowsFileServerVolumeConfiguration.",
                    volume.name.as_deref().unwrap_or("")
                ),
            );
        }
        if let Some(docker) = &volume.docker_volume_configuration {
            if let Some(scope) = docker.scope.as_deref() {
                if !["task", "shared"].contains(&scope) {
                    bad_enum(
                        problems,
                        "dockerVolumeConfiguration.scope",
                        scope,
                        &["task", "shared"],
                    );
                }
            }
        }
        if let Some(efs) = &volume.efs_volume_configuration {
            for value in [
                efs.transit_encryption.as_deref(),
                efs.authorization_config
                    .as_ref()
                    .and_then(|a| a.iam.as_deref()),
            ]
            .into_iter()
            .flatten()
            {
                if !["ENABLED", "DISABLED"].contains(&value) {
                    bad_enum(
                        problems,
                        "efsVolumeConfiguration",
                        value,
                        &["ENABLED", "DISABLED"],
                    );
                }
            }
        }
    }
    names
}

fn validate_container(
    input: &RegisterTaskDefinitionInput,
    container: &ContainerDefinition,
    volume_names: &BTreeSet<String>,
    task_memory: Option<i64>,
    problems: &mut Problems,
) {
    let network_mode = input.network_mode.as_deref().unwrap_or("bridge");
    let name = container.name.as_deref().unwrap_or("");
    match container.name.as_deref() {
        None | Some("") => client(problems, "Container.name should not be null or empty."),
        Some(name) if name.chars().count() > 255 => {
            // guessed: the pattern of the verified image message below.
            client(problems, "Container.name should be 255 characters or less")
        }
        Some(name) if !is_ecs_name(name) => {
            client(problems, "Container.name contains invalid characters.")
        }
        Some(_) => {}
    }
    match container.image.as_deref() {
        None | Some("") => client(problems, "Container.image should not be null or empty."),
        Some(image) if image.chars().count() > 255 => {
            client(problems, "Container.image should be 255 characters or less")
        }
        Some(_) => {}
    }

    // Memory: AWS's rules for hard and soft limits.
    if let Some(memory) = container.memory {
        if memory < MIN_CONTAINER_MEMORY_MIB {
            // guessed wording; the 6 MiB floor is Docker's.
            client(
                problems,
                format!("Invalid 'memory' setting for container '{name}'. The minimum memory for a container is {MIN_CONTAINER_MEMORY_MIB} MiB."),
            );
        }
        if let Some(reservation) = container.memory_reservation {
            if reservation > memory {
                // guessed wording.
                client(
                    problems,
                    format!("Invalid 'memoryReservation' setting for container '{name}'. 'memoryReservation' must be less than or equal to 'memory'."),
                );
            }
        }
        if task_memory.is_some_and(|task| i64::from(memory) > task) {
            client(
                problems,
                format!(
                    "The 'memory' setting for container '{name}' is greater than for the task."
                ),
            );
        }
    }
    if container.memory_reservation.is_some_and(|r| r <= 0) {
        // guessed wording.
        client(
            problems,
            format!("Invalid 'memoryReservation' setting for container '{name}'."),
        );
    }
    if requires_ec2(input)
        && task_memory.is_none()
        && container.memory.is_none()
        && container.memory_reservation.is_none()
    {
        client(
            problems,
            format!("Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."),
        );
    }
    if container.cpu.is_some_and(|cpu| cpu < 0) {
        // guessed: the container twin of "Invalid 'cpu' setting for task.".
        client(
            problems,
            format!("Invalid 'cpu' setting for container '{name}'."),
        );
    }

    for mapping in container.port_mappings.iter().flatten() {
        validate_port_mapping(name, network_mode, mapping, problems);
    }

    if network_mode == "awsvpc" {
        if container.hostname.is_some() {
            client(
                problems,
                "hostname is not supported on container when networkMode=awsvpc.",
            );
        }
        if container
            .links
            .as_ref()
            .is_some_and(|links| !links.is_empty())
        {
            // guessed: the pattern of the hostname message above.
            client(
                problems,
                "links are not supported on container when networkMode=awsvpc.",
            );
        }
    }

    if let Some(check) = &container.health_check {
        if check.command.is_empty() {
            // guessed wording.
            client(problems, format!("Invalid 'healthCheck' setting for container '{name}'. 'command' must not be empty."));
        }
        // AWS's documented ranges, in seconds (retries is a count).
        for (member, value, low, high) in [
            ("interval", check.interval, 5, 300),
            ("timeout", check.timeout, 2, 60),
            ("retries", check.retries, 1, 10),
            ("startPeriod", check.start_period, 0, 300),
        ] {
            if let Some(value) = value {
                if !(low..=high).contains(&value) {
                    // guessed wording.
                    client(
                        problems,
                        format!("Invalid 'healthCheck' setting for container '{name}'. '{member}' must be between {low} and {high}."),
                    );
                }
            }
        }
    }

    for mount in container.mount_points.iter().flatten() {
        match mount.source_volume.as_deref() {
            None | Some("") => {
                // guessed wording.
                client(problems, format!("Invalid 'mountPoints' setting for container '{name}'. 'sourceVolume' should not be blank."))
            }
            Some(volume) if !volume_names.contains(volume) => {
                client(problems, format!("Unknown volume '{volume}'."))
            }
            Some(_) => {}
        }
        if mount.container_path.as_deref().unwrap_or("").is_empty() {
            // guessed wording.
            client(problems, format!("Invalid 'mountPoints' setting for container '{name}'. 'containerPath' should not be blank."));
        }
    }

    let container_names: BTreeSet<&str> = input
        .container_definitions
        .iter()
        .flatten()
        .filter_map(|c| c.name.as_deref())
        .collect();
    for from in container.volumes_from.iter().flatten() {
        let source = from.source_container.as_deref().unwrap_or("");
        if source == name || !container_names.contains(source) {
            // guessed: the pattern of ECS's "Unknown volume 'x'.".
            client(problems, format!("Unknown container '{source}'."));
        }
    }

    if let Some(log) = &container.log_configuration {
        if !LOG_DRIVERS.contains(&log.log_driver.as_str()) {
            bad_enum(
                problems,
                "logConfiguration.logDriver",
                &log.log_driver,
                LOG_DRIVERS,
            );
        }
    }
    if let Some(firelens) = &container.firelens_configuration {
        if !["fluentd", "fluentbit"].contains(&firelens.r#type.as_str()) {
            bad_enum(
                problems,
                "firelensConfiguration.type",
                &firelens.r#type,
                &["fluentd", "fluentbit"],
            );
        }
    }
    for ulimit in container.ulimits.iter().flatten() {
        if !ULIMIT_NAMES.contains(&ulimit.name.as_str()) {
            bad_enum(problems, "ulimits.name", &ulimit.name, ULIMIT_NAMES);
        }
        if ulimit.soft_limit > ulimit.hard_limit {
            // guessed wording.
            client(problems, format!("Invalid 'ulimits' setting for container '{name}'. The soft limit of '{}' cannot be greater than the hard limit.", ulimit.name));
        }
    }
    if let Some(linux) = &container.linux_parameters {
        // Docker's ranges: swappiness 0–100, sizes non-negative.
        if linux.swappiness.is_some_and(|s| !(0..=100).contains(&s)) {
            // guessed wording.
            client(problems, format!("Invalid 'swappiness' setting for container '{name}'. It must be between 0 and 100."));
        }
        if linux.max_swap.is_some_and(|s| s < 0) {
            // guessed wording.
            client(
                problems,
                format!("Invalid 'maxSwap' setting for container '{name}'."),
            );
        }
        if linux.shared_memory_size.is_some_and(|s| s <= 0) {
            // guessed wording.
            client(
                problems,
                format!("Invalid 'sharedMemorySize' setting for container '{name}'."),
            );
        }
        for tmpfs in linux.tmpfs.iter().flatten() {
            if tmpfs.size <= 0 {
                // guessed wording.
                client(problems, format!("Invalid 'tmpfs' setting for container '{name}'. 'size' must be greater than 0."));
            }
        }
        for device in linux.devices.iter().flatten() {
            for permission in device.permissions.iter().flatten() {
                if !["read", "write", "mknod"].contains(&permission.as_str()) {
                    bad_enum(
                        problems,
                        "devices.permissions",
                        permission,
                        &["read", "write", "mknod"],
                    );
                }
            }
        }
    }
    if let Some(consistency) = container.version_consistency.as_deref() {
        if !["enabled", "disabled"].contains(&consistency) {
            bad_enum(
                problems,
                "versionConsistency",
                consistency,
                &["enabled", "disabled"],
            );
        }
    }
    for file in container.environment_files.iter().flatten() {
        if file.r#type != "s3" {
            bad_enum(problems, "environmentFiles.type", &file.r#type, &["s3"]);
        }
    }
    for requirement in container.resource_requirements.iter().flatten() {
        if !["GPU", "InferenceAccelerator", "NeuronDevice"].contains(&requirement.r#type.as_str()) {
            bad_enum(
                problems,
                "resourceRequirements.type",
                &requirement.r#type,
                &["GPU", "InferenceAccelerator", "NeuronDevice"],
            );
        }
    }
}

fn validate_port_mapping(
    name: &str,
    network_mode: &str,
    mapping: &PortMapping,
    problems: &mut Problems,
) {
    match (&mapping.container_port_range, mapping.container_port) {
        (Some(range), _) => {
            let parsed = range.split_once('-').and_then(|(a, b)| {
                Some((a.trim().parse::<i32>().ok()?, b.trim().parse::<i32>().ok()?))
            });
            let valid =
                parsed.is_some_and(|(first, last)| 1 <= first && first < last && last <= 65535);
            if !valid || mapping.container_port.is_some() || mapping.host_port.is_some() {
                // guessed: the pattern of the verified containerPort message.
                client(
                    problems,
                    format!("Invalid 'containerPortRange' setting for container '{name}'."),
                );
            }
        }
        (None, Some(port)) if (1..=65535).contains(&port) => {}
        (None, _) => client(
            problems,
            format!("Invalid 'containerPort' setting for container '{name}'."),
        ),
    }
    if let Some(host_port) = mapping.host_port {
        if !(0..=65535).contains(&host_port) {
            // guessed: the pattern of the verified containerPort message.
            client(
                problems,
                format!("Invalid 'hostPort' setting for container '{name}'."),
            );
        } else if let Some(container_port) = mapping.container_port {
            if host_port != container_port {
                match network_mode {
                    "awsvpc" => client(
                        problems,
                        "When networkMode=awsvpc, the host ports and container ports in port mappings must match.",
                    ),
                    // guessed: the host-mode twin of the awsvpc message.
                    "host" => client(
                        problems,
                        "When networkMode=host, the host ports and container ports in port mappings must match.",
                    ),
                    _ => {}
                }
            }
        }
    }
    if network_mode == "none" {
        // guessed wording; AWS documents that none mode takes no port mappings.
        client(
            problems,
            "Port mappings are not supported when networkMode=none.",
        );
    }
    if let Some(protocol) = mapping.protocol.as_deref() {
        if !PROTOCOLS.contains(&protocol) {
            bad_enum(problems, "portMappings.protocol", protocol, PROTOCOLS);
        }
    }
    if let Some(app_protocol) = mapping.app_protocol.as_deref() {
        if !APP_PROTOCOLS.contains(&app_protocol) {
            bad_enum(
                problems,
                "portMappings.appProtocol",
                app_protocol,
                APP_PROTOCOLS,
            );
        }
    }
}

/// A port can be mapped once per network namespace: per container in bridge mode, per task in
/// awsvpc and host mode (where every container shares one namespace); a fixed host port can be
/// bound once per task in every mode.
fn validate_port_conflicts(input: &RegisterTaskDefinitionInput, problems: &mut Problems) {
    let shared_namespace = matches!(input.network_mode.as_deref(), Some("awsvpc" | "host"));
    let mut task_container_ports: BTreeMap<(i32, String), &str> = BTreeMap::new();
    let mut host_ports: BTreeSet<(i32, String)> = BTreeSet::new();
    for container in input.container_definitions.iter().flatten() {
        let name = container.name.as_deref().unwrap_or("");
        let mut own_ports = BTreeSet::new();
        for mapping in container.port_mappings.iter().flatten() {
            let protocol = mapping
                .protocol
                .clone()
                .unwrap_or_else(|| "tcp".to_string());
            if let Some(port) = mapping.container_port {
                let key = (port, protocol.clone());
                let clash = !own_ports.insert(key.clone())
                    || (shared_namespace
                        && task_container_ports
                            .get(&key)
                            .is_some_and(|other| *other != name));
                if clash {
                    // guessed wording.
                    client(problems, format!("Invalid 'portMappings' setting for container '{name}'. Container port {port}/{protocol} is mapped more than once."));
                }
                task_container_ports.entry(key).or_insert(name);
            }
            let host_port = match input.network_mode.as_deref() {
                Some("awsvpc" | "host") => mapping.host_port.or(mapping.container_port),
                _ => mapping.host_port,
            };
            if let Some(host_port) = host_port.filter(|p| *p > 0) {
                if !host_ports.insert((host_port, protocol.clone())) && !shared_namespace {
                    // guessed wording. (In shared-namespace modes the container port clash
                    // above already reports it.)
                    client(problems, format!("Invalid 'portMappings' setting for container '{name}'. Host port {host_port}/{protocol} is mapped more than once."));
                }
            }
        }
    }
}

/// `dependsOn`: conditions, targets, the HEALTHY and SUCCESS/COMPLETE rules, and cycles.
fn validate_dependencies(containers: &[ContainerDefinition], problems: &mut Problems) {
    let by_name: BTreeMap<&str, &ContainerDefinition> = containers
        .iter()
        .filter_map(|c| Some((c.name.as_deref()?, c)))
        .collect();
    for container in containers {
        let name = container.name.as_deref().unwrap_or("");
        for dependency in container.depends_on.iter().flatten() {
            if !CONDITIONS.contains(&dependency.condition.as_str()) {
                bad_enum(
                    problems,
                    "dependsOn.condition",
                    &dependency.condition,
                    CONDITIONS,
                );
            }
            let Some(target) = by_name.get(dependency.container_name.as_str()) else {
                // guessed wording.
                client(problems, format!("Invalid 'dependsOn' setting for container '{name}'. Container '{}' does not exist in the task definition.", dependency.container_name));
                continue;
            };
            match dependency.condition.as_str() {
                "HEALTHY" if target.health_check.is_none() => {
                    // guessed wording.
                    client(problems, format!("Invalid 'dependsOn' setting for container '{name}'. The HEALTHY condition requires container '{}' to have a health check.", dependency.container_name));
                }
                "SUCCESS" | "COMPLETE" if target.essential != Some(false) => {
                    client(problems, "A dependency container with SUCCESS or COMPLETE condition cannot be an essential container");
                }
                _ => {}
            }
        }
    }
    if let Some(name) = dependency_cycle(&by_name) {
        // guessed wording.
        client(problems, format!("Invalid 'dependsOn' setting for container '{name}'. Container dependencies must not form a cycle."));
    }
}

/// The first container found on a `dependsOn` cycle, if any (depth-first search).
fn dependency_cycle<'a>(by_name: &BTreeMap<&'a str, &'a ContainerDefinition>) -> Option<&'a str> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        name: &'a str,
        by_name: &BTreeMap<&'a str, &'a ContainerDefinition>,
        marks: &mut BTreeMap<&'a str, Mark>,
    ) -> Option<&'a str> {
        match marks.get(name) {
            Some(Mark::Visiting) => return Some(name),
            Some(Mark::Done) => return None,
            None => {}
        }
        marks.insert(name, Mark::Visiting);
        if let Some(container) = by_name.get(name) {
            for dependency in container.depends_on.iter().flatten() {
                if let Some((target, _)) = by_name.get_key_value(dependency.container_name.as_str())
                {
                    if let Some(found) = visit(target, by_name, marks) {
                        return Some(found);
                    }
                }
            }
        }
        marks.insert(name, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    by_name
        .keys()
        .find_map(|name| visit(name, by_name, &mut marks))
}

/// What the containers reserve together must fit in the task.
fn validate_task_totals(
    input: &RegisterTaskDefinitionInput,
    task_memory: Option<i64>,
    problems: &mut Problems,
) {
    let containers = input.container_definitions.as_deref().unwrap_or_default();
    if let Some(task_memory) = task_memory {
        let reserved: i64 = containers
            .iter()
            .filter_map(|c| c.memory_reservation)
            .map(i64::from)
            .sum();
        if reserved > task_memory {
            client(problems, "The sum of all container 'memoryReservation' values cannot be greater than the value of the task 'memory'.");
        }
    }
    if let Some(task_cpu) = input.cpu.as_deref().and_then(parse_task_cpu) {
        let cpu: i64 = containers.iter().filter_map(|c| c.cpu).map(i64::from).sum();
        if cpu > task_cpu {
            // guessed: the cpu twin of the memoryReservation message above.
            client(problems, "The sum of all container 'cpu' values cannot be greater than the value of the task 'cpu'.");
        }
    }
}

/// Task features that name containers: the App Mesh proxy and FireLens.
fn validate_task_features(input: &RegisterTaskDefinitionInput, problems: &mut Problems) {
    let containers = input.container_definitions.as_deref().unwrap_or_default();
    if let Some(proxy) = &input.proxy_configuration {
        if let Some(kind) = proxy.r#type.as_deref() {
            if kind != "APPMESH" {
                bad_enum(problems, "proxyConfiguration.type", kind, &["APPMESH"]);
            }
        }
        if !containers
            .iter()
            .any(|c| c.name.as_deref() == Some(proxy.container_name.as_str()))
        {
            // guessed wording.
            client(problems, format!("Invalid 'proxyConfiguration' setting. Container '{}' does not exist in the task definition.", proxy.container_name));
        }
    }
    let routers = containers
        .iter()
        .filter(|c| c.firelens_configuration.is_some())
        .count();
    if routers > 1 {
        // guessed wording.
        client(
            problems,
            "Only one container in a task definition can have a firelensConfiguration.",
        );
    }
    let uses_firelens = containers.iter().any(|c| {
        c.log_configuration
            .as_ref()
            .is_some_and(|l| l.log_driver == "awsfirelens")
    });
    if uses_firelens && routers == 0 {
        // guessed wording.
        client(problems, "The awsfirelens log driver requires a container with a firelensConfiguration in the task definition.");
    }
}

/// Why the definition cannot run on Fargate; empty when it can. Used both to reject a
/// definition that requires FARGATE and to decide whether FARGATE is in `compatibilities`.
pub fn fargate_problems(input: &RegisterTaskDefinitionInput) -> Vec<Problem> {
    let mut problems = Vec::new();
    if input.network_mode.as_deref() != Some("awsvpc") {
        // AWS's message, with its typographic quotes.
        problems.push(Problem::client(
            "Fargate only supports network mode \u{2018}awsvpc\u{2019}.",
        ));
    }
    let cpu = input.cpu.as_deref().and_then(parse_task_cpu);
    let memory = input.memory.as_deref().and_then(parse_task_memory);
    if input.cpu.is_none() {
        problems.push(Problem::client(
            "Fargate requires that 'cpu' be defined at the task level.",
        ));
    }
    if input.memory.is_none() {
        problems.push(Problem::client(
            "Fargate requires that 'memory' be defined at the task level.",
        ));
    }
    if let (Some(cpu), Some(memory)) = (cpu, memory) {
        if !fargate_size_is_valid(cpu, memory) {
            problems.push(Problem::client(format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {memory} memory. See the Amazon ECS documentation for the valid values."
            )));
        }
    }
    if input.ipc_mode.is_some() {
        problems.push(Problem::client(
            "Tasks using the Fargate launch type do not support ipcMode.",
        ));
    }
    if input.pid_mode.as_deref() == Some("host") {
        // guessed: the pidMode twin of the ipcMode message (Fargate allows pidMode task).
        problems.push(Problem::client(
            "Tasks using the Fargate launch type do not support pidMode 'host'.",
        ));
    }
    for volume in input.volumes.iter().flatten() {
        if volume
            .host
            .as_ref()
            .is_some_and(|host| host.source_path.is_some())
        {
            problems.push(Problem::client(
                "Fargate compatible task definitions do not support sourcePath",
            ));
        }
        if volume.docker_volume_configuration.is_some() {
            // guessed: the pattern of the sourcePath message.
            problems.push(Problem::client(
                "Fargate compatible task definitions do not support dockerVolumeConfiguration",
            ));
        }
    }
    let containers = input.container_definitions.as_deref().unwrap_or_default();
    for container in containers {
        let name = container.name.as_deref().unwrap_or("");
        if container.privileged == Some(true) {
            // guessed wording.
            problems.push(Problem::client(format!("Invalid 'privileged' setting for container '{name}'. Fargate does not support privileged containers.")));
        }
        let awslogs = container
            .log_configuration
            .as_ref()
            .is_some_and(|l| l.log_driver == "awslogs");
        if awslogs && input.execution_role_arn.is_none() {
            problems.push(Problem::client("Fargate requires task definition to have execution role ARN to support log driver awslogs."));
        }
    }
    problems
}
